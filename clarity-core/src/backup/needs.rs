//! The KEK versions an archive needs (S-BAK-2): those that wrapped its data
//! keys, its directory key and, with transit, its root secret; and the
//! check that the configured keys still hold them, which `verify` and a
//! restore make before anything is written.

use std::collections::BTreeSet;

use serde::Deserialize;

use super::Manifest;
use super::schema::{Table, Value};
use crate::config::{Config, KeyProviderKind};
use crate::crypto::schedule::meta;
use crate::crypto::{KeyProvider, RootRecord};
use crate::error::{Error, Result};

/// A set of KEK versions an archive needs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct KekNeeds(BTreeSet<i32>);

/// The one field read from the stored forms of the directory key and of
/// the transit root record.
#[derive(Deserialize)]
struct Wrapped {
    kek_version: i32,
}

impl KekNeeds {
    /// What an archive's header says before anything is verified: with an
    /// external provider, the version that wrapped the root secret `root`.
    pub(crate) fn of_root(root: Option<&RootRecord>) -> Self {
        KekNeeds(root.iter().map(|r| r.kek_version).collect())
    }

    /// What the signed manifest and the header's root record declare: the
    /// versions that wrapped the data keys, and the root's.
    pub(crate) fn declared(manifest: &Manifest, root: Option<&RootRecord>) -> Self {
        let mut needs = Self::of_root(root);
        needs
            .0
            .extend(manifest.kek_usage.iter().map(|k| k.kek_version));
        needs
    }

    /// Notes what one row needs: a data key's KEK version, or the version
    /// that wrapped the directory key or the transit root (metadata rows).
    ///
    /// # Errors
    /// [`Error::Integrity`] when such a row does not say its version.
    pub(crate) fn note(&mut self, table: &Table, row: &[Value]) -> Result<()> {
        match (table.name, row) {
            ("data_keys", _) => {
                let column = table.columns.iter().position(|(n, _)| *n == "kek_version");
                if let Some(Value::Int(version)) = column.and_then(|c| row.get(c)) {
                    self.0
                        .insert(i32::try_from(*version).map_err(|_| Error::Integrity)?);
                }
            }
            ("meta", [Value::Text(key), Value::Text(value), ..])
                if key == meta::DIRECTORY_KEY || key == meta::TRANSIT_ROOT_KEY =>
            {
                let wrapped: Wrapped = serde_json::from_str(value).map_err(|_| Error::Integrity)?;
                self.0.insert(wrapped.kek_version);
            }
            _ => {}
        }
        Ok(())
    }

    /// Adds everything `other` needs.
    pub(crate) fn extend(&mut self, other: &KekNeeds) {
        self.0.extend(&other.0);
    }

    /// The versions, ascending.
    pub(crate) fn versions(&self) -> Vec<i32> {
        self.0.iter().copied().collect()
    }
}

/// Checks that `keys` hold every version in `needs`.
///
/// # Errors
/// [`Error::Key`] naming each missing version, whether it was retired or
/// is newer than the configured keys, and what to configure instead.
pub(crate) async fn ensure_held(
    config: &Config,
    keys: &dyn KeyProvider,
    needs: &KekNeeds,
) -> Result<()> {
    let held = keys.kek_versions().await?;
    let missing: Vec<i32> = needs
        .0
        .iter()
        .copied()
        .filter(|v| !held.contains(v))
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    let lowest = held.first().copied().unwrap_or(i32::MAX);
    let (retired, newer): (Vec<i32>, Vec<i32>) = missing.iter().partition(|v| **v < lowest);
    let holder = Holder::of(config);
    let problems: Vec<String> = [
        (!retired.is_empty()).then(|| holder.retired(&retired, &held)),
        (!newer.is_empty()).then(|| holder.newer(&newer, &held)),
    ]
    .into_iter()
    .flatten()
    .collect();
    Err(Error::key(problems.join("; ")))
}

/// The configured keys, as an operator names them.
enum Holder {
    Keyring(String),
    Transit(String),
    /// The token's label and the KEK objects' label.
    Pkcs11(String, String),
    /// The configured KMS key (the current one).
    Kms(String),
}

impl Holder {
    fn of(config: &Config) -> Holder {
        match config.keys.provider {
            KeyProviderKind::Local => Holder::Keyring(config.keyring_path().display().to_string()),
            KeyProviderKind::Transit => Holder::Transit(config.keys.transit_key.clone()),
            KeyProviderKind::Pkcs11 => Holder::Pkcs11(
                config.keys.pkcs11_token_label.clone().unwrap_or_default(),
                config.keys.pkcs11_key_label.clone(),
            ),
            KeyProviderKind::Kms => Holder::Kms(config.keys.kms_key_id.clone().unwrap_or_default()),
        }
    }

    fn name(&self) -> String {
        match self {
            Holder::Keyring(_) => "the configured keyring".to_string(),
            Holder::Transit(key) => format!("the configured transit key {key}"),
            Holder::Pkcs11(token, key) => {
                format!("the PKCS#11 token {token} (keys labelled {key})")
            }
            Holder::Kms(key) => format!("the KMS configuration (current key {key})"),
        }
    }

    fn retired(&self, versions: &[i32], held: &[i32]) -> String {
        let remedy = match self {
            Holder::Keyring(path) => format!(
                "put a copy of the keyring file from before the retirement at keys.keyring_path ({path}), then try again"
            ),
            Holder::Transit(_) => format!(
                "lower the transit key's min_decryption_version to {} (the versions are still in the engine), then try again",
                versions.first().copied().unwrap_or_default()
            ),
            Holder::Kms(_) => "put the ids of the KMS keys of those versions back in keys.kms_previous_key_ids in place of \"retired\" (and enable the keys, or cancel their deletion, in KMS), then try again".to_string(),
            Holder::Pkcs11(..) => "restore the token from the HSM's backup taken before the retirement (retiring destroyed the key objects), then try again".to_string(),
        };
        format!(
            "this backup needs {}, which {} no longer holds (retired: it holds {}); {remedy}",
            in_words("KEK version", versions),
            self.name(),
            in_words("version", held)
        )
    }

    fn newer(&self, versions: &[i32], held: &[i32]) -> String {
        format!(
            "this backup needs {}, which {} does not hold (it holds {}: keys older than the backup, or another deployment's); configure the keys the backup was taken with",
            in_words("KEK version", versions),
            self.name(),
            in_words("version", held)
        )
    }
}

/// `noun` with `versions` in words: `KEK version 1`, `KEK versions 1, 2`;
/// `no KEK version` for none.
pub(crate) fn in_words(noun: &str, versions: &[i32]) -> String {
    let numbers: Vec<String> = versions.iter().map(i32::to_string).collect();
    match numbers.len() {
        0 => format!("no {noun}"),
        1 => format!("{noun} {}", numbers[0]),
        _ => format!("{noun}s {}", numbers.join(", ")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_read_as_words() {
        assert_eq!(in_words("KEK version", &[1]), "KEK version 1");
        assert_eq!(in_words("version", &[2, 3]), "versions 2, 3");
        assert_eq!(in_words("version", &[]), "no version");
    }

    // S-BAK-2: a data key's row and the directory key's metadata row are
    // needs; other rows are not.
    #[test]
    fn rows_name_the_versions_they_need() {
        let table = |name| super::super::schema::table(name).expect("table");
        let mut needs = KekNeeds::default();
        let key = |v| {
            vec![
                Value::Uuid(uuid::Uuid::nil()),
                Value::Int(1),
                Value::Int(v),
                Value::Bytes(vec![1]),
                Value::Time(0),
            ]
        };
        needs.note(table("data_keys"), &key(3)).expect("data key");
        needs.note(table("data_keys"), &key(3)).expect("again");
        let meta_row = |k: &str, v: &str| vec![Value::Text(k.into()), Value::Text(v.into())];
        needs
            .note(
                table("meta"),
                &meta_row(meta::DIRECTORY_KEY, r#"{"kek_version":1,"wrapped":"x"}"#),
            )
            .expect("directory key");
        needs
            .note(table("meta"), &meta_row(meta::TOKEN_KEY, "{}"))
            .expect("not a wrapped key");
        assert_eq!(needs.versions(), vec![1, 3]);
        assert!(
            needs
                .note(table("meta"), &meta_row(meta::DIRECTORY_KEY, "garbage"))
                .is_err()
        );
    }
}
