//! [`LocalKeyring`]: versioned KEKs and a root secret in a local file.
//!
//! The file is created on first use with mode 0600 and read under the
//! secret-file rule (`secret_file`): refused when others may read it. It is meant for development and single-node use: the
//! keys sit on the same disk as the data they protect, so whoever copies both
//! has everything. Production deployments use an external key service.

use std::collections::BTreeMap;
use std::fs::{self, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use async_trait::async_trait;
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use serde::{Deserialize, Serialize};
use zeroize::{Zeroize, Zeroizing};

use super::{Key, KeyProvider, WrappedKey, envelope};
use crate::error::{Error, Result};

/// Layout version of the keyring file.
const FILE_FORMAT: u32 = 1;

/// The keyring file as stored (base64 keys). Zeroized on drop.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct KeyringFile {
    format: u32,
    current_kek: i32,
    keks: BTreeMap<i32, String>,
    root: String,
}

impl Drop for KeyringFile {
    fn drop(&mut self) {
        self.keks.values_mut().for_each(Zeroize::zeroize);
        self.root.zeroize();
    }
}

/// KEKs and a root secret held in a local file (mode 0600).
pub struct LocalKeyring {
    path: PathBuf,
    keks: std::sync::RwLock<Keks>,
    root: Key,
}

/// The versioned KEKs; the current one wraps, all of them unwrap.
struct Keks {
    current: i32,
    keys: BTreeMap<i32, Key>,
}

impl std::fmt::Debug for LocalKeyring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let keks = self.keks.read().unwrap_or_else(|p| p.into_inner());
        f.debug_struct("LocalKeyring")
            .field("path", &self.path)
            .field("current_kek", &keks.current)
            .field("kek_versions", &keks.keys.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

impl LocalKeyring {
    /// Opens an existing keyring file.
    ///
    /// # Errors
    /// [`Error::Key`] when the file is missing, fails the secret-file rule
    /// (see `secret_file`), or is not a keyring. The message names the file, never its contents.
    pub fn open(path: &Path) -> Result<LocalKeyring> {
        let text = super::read_secret_file("keyring file", path)?;
        // serde_json's messages can quote the input; report only the position.
        let file: KeyringFile = serde_json::from_slice(&text).map_err(|e| {
            Error::key(format!(
                "keyring file {} is not a valid keyring (line {}, column {})",
                path.display(),
                e.line(),
                e.column()
            ))
        })?;
        Self::from_file(path, &file)
    }

    /// Creates a new keyring file with one KEK and a root secret. Fails if the
    /// file exists. Missing parent directories are created with mode 0700.
    ///
    /// # Errors
    /// [`Error::Key`] when the file exists or cannot be written.
    pub fn create(path: &Path) -> Result<LocalKeyring> {
        let kek = Key::generate()?;
        let root = Key::generate()?;
        let file = KeyringFile {
            format: FILE_FORMAT,
            current_kek: 1,
            keks: BTreeMap::from([(1, B64.encode(kek.expose()))]),
            root: B64.encode(root.expose()),
        };
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(parent)
                .map_err(|e| {
                    Error::key(format!("cannot create directory {}: {e}", parent.display()))
                })?;
        }
        write_file(path, &file).map_err(|e| {
            Error::key(format!(
                "cannot create keyring file {}: {e}",
                path.display()
            ))
        })?;
        Self::from_file(path, &file)
    }

    /// Adds a new KEK version and makes it current: new data keys are wrapped
    /// with it, older versions still unwrap. The file is replaced atomically
    /// (written beside it with mode 0600, synced, renamed over it).
    ///
    /// # Errors
    /// [`Error::Key`] when the file cannot be written; nothing changes then.
    pub fn add_kek(&self) -> Result<i32> {
        self.update_file(|keys| {
            let version = keys.keys().max().copied().unwrap_or(0) + 1;
            keys.insert(version, Key::generate()?);
            Ok(version)
        })
    }

    /// Removes every KEK version below `version` from the file (retirement):
    /// what they wrapped can no longer be unwrapped. The current version is
    /// never removed.
    ///
    /// # Errors
    /// [`Error::InvalidInput`] when `version` is above the current version;
    /// [`Error::Key`] when the file cannot be written.
    pub fn retire_below(&self, version: i32) -> Result<()> {
        self.update_file(|keys| {
            let current = keys.keys().max().copied().unwrap_or(0);
            if version > current {
                return Err(Error::invalid("cannot retire the current KEK version"));
            }
            keys.retain(|v, _| *v >= version);
            Ok(current)
        })
        .map(drop)
    }

    /// Changes the KEKs on disk under an exclusive lock (one change at a
    /// time, across processes: a server and the CLI). `change` edits the
    /// versions read from the file and returns the version to make current.
    /// The file is replaced atomically (written beside it with mode 0600,
    /// synced, renamed over it).
    fn update_file(
        &self,
        change: impl FnOnce(&mut BTreeMap<i32, Key>) -> Result<i32>,
    ) -> Result<i32> {
        let io = |e: std::io::Error| {
            Error::key(format!(
                "cannot write keyring file {}: {e}",
                self.path.display()
            ))
        };
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(0o600)
            .open(self.path.with_extension("json.lock"))
            .map_err(io)?;
        lock.lock().map_err(io)?;
        // What is on disk wins: another process may have changed it already.
        let disk = Self::open(&self.path)?;
        if disk.root.expose() != self.root.expose() {
            return Err(Error::key(format!(
                "keyring file {} now holds another keyring; refusing to change it",
                self.path.display()
            )));
        }
        let mut keys = disk
            .keks
            .into_inner()
            .unwrap_or_else(|p| p.into_inner())
            .keys;
        let current = change(&mut keys)?;
        let file = KeyringFile {
            format: FILE_FORMAT,
            current_kek: current,
            keks: keys
                .iter()
                .map(|(v, k)| (*v, B64.encode(k.expose())))
                .collect(),
            root: B64.encode(self.root.expose()),
        };
        let mut suffix = [0u8; 8];
        super::fill_random(&mut suffix)?;
        let staged = self
            .path
            .with_extension(format!("json.{}.new", hex::encode(suffix)));
        write_file(&staged, &file)
            .and_then(|()| fs::rename(&staged, &self.path))
            .and_then(
                |()| match self.path.parent().filter(|p| !p.as_os_str().is_empty()) {
                    Some(dir) => fs::File::open(dir)?.sync_all(),
                    None => Ok(()),
                },
            )
            .map_err(|e| {
                let _ = fs::remove_file(&staged);
                io(e)
            })?;
        let mut keks = self.keks.write().unwrap_or_else(|p| p.into_inner());
        *keks = Keks { current, keys };
        Ok(current)
    }

    /// Reads the KEKs from the file again (another process may have rotated),
    /// if it still holds this keyring.
    fn reload(&self) -> Result<()> {
        let disk = Self::open(&self.path)?;
        if disk.root.expose() != self.root.expose() {
            return Err(Error::key(format!(
                "keyring file {} now holds another keyring",
                self.path.display()
            )));
        }
        let fresh = disk.keks.into_inner().unwrap_or_else(|p| p.into_inner());
        *self.keks.write().unwrap_or_else(|p| p.into_inner()) = fresh;
        Ok(())
    }

    fn from_file(path: &Path, file: &KeyringFile) -> Result<LocalKeyring> {
        let bad = |what: &str| {
            Error::key(format!(
                "keyring file {} is not a valid keyring: {what}",
                path.display()
            ))
        };
        if file.format != FILE_FORMAT {
            return Err(bad("unsupported format version"));
        }
        let decode = |b64: &str| -> Result<Key> {
            let bytes = Zeroizing::new(B64.decode(b64).map_err(|_| bad("a key is not base64"))?);
            Key::from_slice(&bytes).map_err(|_| bad("a key is not 32 bytes"))
        };
        let keks = file
            .keks
            .iter()
            .map(|(version, b64)| Ok((*version, decode(b64)?)))
            .collect::<Result<BTreeMap<_, _>>>()?;
        if !keks.contains_key(&file.current_kek) {
            return Err(bad("the current KEK version is missing"));
        }
        Ok(LocalKeyring {
            path: path.to_path_buf(),
            keks: std::sync::RwLock::new(Keks {
                current: file.current_kek,
                keys: keks,
            }),
            root: decode(&file.root)?,
        })
    }

    /// The file this keyring was loaded from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn wrap_aad(context: &[u8]) -> Vec<u8> {
        let mut aad = b"clarity/v1|dek|".to_vec();
        aad.extend_from_slice(context);
        aad
    }
}

#[async_trait]
impl KeyProvider for LocalKeyring {
    fn name(&self) -> &'static str {
        "local"
    }

    async fn current_kek_version(&self) -> Result<i32> {
        Ok(self.keks.read().unwrap_or_else(|p| p.into_inner()).current)
    }

    async fn kek_versions(&self) -> Result<Vec<i32>> {
        let keks = self.keks.read().unwrap_or_else(|p| p.into_inner());
        Ok(keks.keys.keys().copied().collect())
    }

    async fn rotate(&self) -> Result<i32> {
        self.add_kek()
    }

    async fn wrap(&self, key: &Key, context: &[u8]) -> Result<WrappedKey> {
        let keks = self.keks.read().unwrap_or_else(|p| p.into_inner());
        let kek = keks
            .keys
            .get(&keks.current)
            .ok_or_else(|| Error::internal("current KEK missing"))?;
        Ok(WrappedKey {
            kek_version: keks.current,
            ciphertext: envelope::seal(kek, &Self::wrap_aad(context), key.expose())?,
        })
    }

    async fn unwrap(&self, wrapped: &WrappedKey, context: &[u8]) -> Result<Key> {
        let known = self
            .keks
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .keys
            .contains_key(&wrapped.kek_version);
        if !known {
            // A newer version made by another process (e.g. `clarity keys rotate`).
            self.reload()?;
        }
        let keks = self.keks.read().unwrap_or_else(|p| p.into_inner());
        let kek = keks.keys.get(&wrapped.kek_version).ok_or_else(|| {
            Error::key(format!(
                "KEK version {} is not in the keyring",
                wrapped.kek_version
            ))
        })?;
        let plain = envelope::open(kek, &Self::wrap_aad(context), &wrapped.ciphertext)?;
        Key::from_slice(&plain).map_err(|_| Error::Integrity)
    }

    async fn retire_below(&self, version: i32) -> Result<()> {
        LocalKeyring::retire_below(self, version)
    }

    async fn root_key(&self) -> Result<Key> {
        Ok(self.root.clone())
    }

    async fn check(&self) -> Result<()> {
        Ok(())
    }
}

/// Writes a new keyring file with mode 0600 (never over an existing file).
fn write_file(path: &Path, file: &KeyringFile) -> std::io::Result<()> {
    let json = Zeroizing::new(serde_json::to_vec_pretty(file).map_err(std::io::Error::other)?);
    let mut out = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    out.write_all(&json)?;
    out.sync_all()
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    #[tokio::test]
    async fn create_then_open_round_trips() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("sub/keyring.json");
        let created = LocalKeyring::create(&path).expect("create");
        let mode = fs::metadata(&path).expect("meta").permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);

        let dek = Key::generate().expect("rng");
        let wrapped = created.wrap(&dek, b"patient-1").await.expect("wrap");
        let opened = LocalKeyring::open(&path).expect("open");
        let unwrapped = opened.unwrap(&wrapped, b"patient-1").await.expect("unwrap");
        assert_eq!(unwrapped.expose(), dek.expose());
        assert!(matches!(
            opened.unwrap(&wrapped, b"patient-2").await,
            Err(Error::Integrity)
        ));
        assert!(LocalKeyring::create(&path).is_err(), "never overwrites");

        // S-KEY-2: a new version wraps; the old one still unwraps.
        assert_eq!(opened.add_kek().expect("rotate"), 2);
        let rewrapped = opened.wrap(&dek, b"patient-1").await.expect("wrap");
        assert_eq!(rewrapped.kek_version, 2);
        let mode = fs::metadata(&path).expect("meta").permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "the rewritten file stays private");
        let reopened = LocalKeyring::open(&path).expect("open");
        assert_eq!(reopened.kek_versions().await.expect("versions"), vec![1, 2]);
        assert_eq!(reopened.current_kek_version().await.expect("current"), 2);
        for wrapped in [&wrapped, &rewrapped] {
            let key = reopened
                .unwrap(wrapped, b"patient-1")
                .await
                .expect("unwrap");
            assert_eq!(key.expose(), dek.expose());
        }
        assert_eq!(
            reopened.root_key().await.expect("root").expose(),
            created.root_key().await.expect("root").expose(),
            "rotation keeps the root secret"
        );

        // Two processes rotating one after the other never reuse a version,
        // and each can unwrap what the other wrapped.
        let other = LocalKeyring::open(&path).expect("a second process");
        assert_eq!(reopened.add_kek().expect("rotate"), 3);
        assert_eq!(
            other.add_kek().expect("rotate"),
            4,
            "reads the file, not its stale copy"
        );
        let by_three = reopened.wrap(&dek, b"patient-1").await.expect("wrap");
        assert_eq!(by_three.kek_version, 3);
        let by_four = other.wrap(&dek, b"patient-1").await.expect("wrap");
        let key = reopened
            .unwrap(&by_four, b"patient-1")
            .await
            .expect("reloads to unwrap v4");
        assert_eq!(key.expose(), dek.expose());
        assert_eq!(
            other
                .unwrap(&by_three, b"patient-1")
                .await
                .expect("v3")
                .expose(),
            dek.expose()
        );

        // Retirement removes old versions for good; the current one stays.
        assert!(other.retire_below(5).is_err(), "never the current version");
        other.retire_below(4).expect("retire");
        let after = LocalKeyring::open(&path).expect("open");
        assert_eq!(after.kek_versions().await.expect("versions"), vec![4]);
        assert!(after.unwrap(&by_three, b"patient-1").await.is_err());
        assert!(after.unwrap(&by_four, b"patient-1").await.is_ok());
    }

    // S-KEY-1: a keyring readable by others is refused.
    #[test]
    fn refuses_a_file_readable_by_others() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("keyring.json");
        LocalKeyring::create(&path).expect("create");
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).expect("chmod");
        let err = LocalKeyring::open(&path).unwrap_err();
        assert!(err.to_string().contains("chmod 600"), "{err}");
    }

    #[test]
    fn malformed_file_is_reported_without_contents() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("keyring.json");
        let mut out = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)
            .expect("open");
        out.write_all(
            br#"{"format": 1, "current_kek": 1, "keks": {"1": "c2VjcmV0LXNlY3JldA=="}, "root": 5}"#,
        )
        .expect("write");
        let err = LocalKeyring::open(&path).unwrap_err().to_string();
        assert!(err.contains("not a valid keyring"), "{err}");
        assert!(!err.contains("c2VjcmV0"), "{err}");
        assert!(LocalKeyring::open(&dir.path().join("missing.json")).is_err());
    }
}
