//! The root secret of a store whose KEKs live outside Clarity (transit,
//! PKCS#11): a random key generated once per store, kept in the store's
//! metadata wrapped by the provider under [`ROOT_CONTEXT`] (never in
//! plaintext, S-KEY-1), and unwrapped at start.

use serde::{Deserialize, Serialize};

use super::{Key, KeyProvider, WrappedKey};
use crate::error::{Error, Result};

/// The context the root secret is wrapped under.
pub const ROOT_CONTEXT: &[u8] = b"clarity/v1 root";

/// The root secret as kept in the store's metadata: wrapped by the provider.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RootRecord {
    /// KEK version that wrapped it.
    pub kek_version: i32,
    /// The provider's ciphertext in text form (`vault:vN:...`,
    /// `pkcs11:vN:...`).
    pub wrapped: String,
}

impl RootRecord {
    /// Generates a new root secret and returns it wrapped by `keys`, for
    /// storing.
    ///
    /// # Errors
    /// The provider's.
    pub async fn generate(keys: &dyn KeyProvider) -> Result<RootRecord> {
        let root = Key::generate()?;
        let wrapped = keys.wrap(&root, ROOT_CONTEXT).await?;
        RootRecord::from_wrapped(&wrapped)
    }

    /// The root secret in this record, unwrapped by `keys`.
    ///
    /// # Errors
    /// [`Error::Integrity`] when the record was altered or belongs to
    /// another key; the provider's errors.
    pub async fn unwrap_with(&self, keys: &dyn KeyProvider) -> Result<Key> {
        keys.unwrap(&self.to_wrapped(), ROOT_CONTEXT).await
    }

    /// The record of a wrapped root secret.
    ///
    /// # Errors
    /// [`Error::Internal`] when the ciphertext is not in text form.
    pub fn from_wrapped(wrapped: &WrappedKey) -> Result<RootRecord> {
        Ok(RootRecord {
            kek_version: wrapped.kek_version,
            wrapped: String::from_utf8(wrapped.ciphertext.clone())
                .map_err(|_| Error::internal("wrapped root secret is not text"))?,
        })
    }

    /// The wrapped root secret, for the provider to unwrap or re-wrap.
    pub fn to_wrapped(&self) -> WrappedKey {
        WrappedKey {
            kek_version: self.kek_version,
            ciphertext: self.wrapped.as_bytes().to_vec(),
        }
    }

    /// Parses a stored record.
    ///
    /// # Errors
    /// [`Error::Integrity`] when it is not a root record.
    pub fn parse(json: &str) -> Result<RootRecord> {
        serde_json::from_str(json).map_err(|_| Error::Integrity)
    }

    /// The stored form.
    ///
    /// # Errors
    /// [`Error::Internal`] if encoding fails.
    pub fn to_json(&self) -> Result<String> {
        serde_json::to_string(self).map_err(|_| Error::internal("encoding"))
    }
}

/// A provider whose root secret is kept wrapped in the store's metadata
/// (transit, PKCS#11): it is given the root once unwrapped ([`with_root`]).
pub(crate) trait HoldsRoot: KeyProvider + Sized {
    /// Uses `root` as the root secret from now on.
    fn set_root(&mut self, root: Key);
}

/// Unwraps `record` with `provider` and makes it the provider's root secret.
///
/// # Errors
/// [`Error::Integrity`] when the record was altered or belongs to another
/// key; the provider's errors.
pub(crate) async fn with_root<P: HoldsRoot>(mut provider: P, record: &RootRecord) -> Result<P> {
    let root = record.unwrap_with(&provider).await?;
    provider.set_root(root);
    Ok(provider)
}

/// The version and body of a wrapped key in text form, `<prefix>:v<N>:<body>`.
///
/// # Errors
/// [`Error::Integrity`] for any other form.
pub(crate) fn split_versioned<'a>(prefix: &str, text: &'a str) -> Result<(i32, &'a str)> {
    let mut parts = text.splitn(3, ':');
    match (parts.next(), parts.next(), parts.next()) {
        (Some(p), Some(v), Some(body)) if p == prefix => v
            .strip_prefix('v')
            .and_then(|n| n.parse::<i32>().ok())
            .filter(|n| *n > 0)
            .map(|n| (n, body))
            .ok_or(Error::Integrity),
        _ => Err(Error::Integrity),
    }
}
