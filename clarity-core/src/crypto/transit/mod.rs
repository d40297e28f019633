//! [`TransitKeyProvider`]: KEKs held by an OpenBao / HashiCorp Vault transit
//! engine. Data keys are sent to the engine to be wrapped and unwrapped; the
//! KEKs never leave it. Unwrapped data keys are cached by the encrypting
//! layer, whatever the provider (see `PhiStore`), not here.
//!
//! The root secret (from which blind-index, token and audit keys are derived)
//! is a random key generated once per store and kept in the store's metadata
//! wrapped by the transit key (never in plaintext, S-KEY-1); it is unwrapped
//! at start.
//!
//! Each wrapped key binds its context (e.g. the patient id): the engine
//! encrypts the data key followed by a SHA-256 digest of the context, and an
//! unwrap checks that digest, so a wrapped key moved to another patient fails
//! like a damaged one. This needs no "derived" transit key, so any transit key
//! of type `aes256-gcm96` works.

mod auth;
mod client;
mod settings;

use async_trait::async_trait;
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

pub use settings::{TransitAuth, TransitSettings};

use self::client::TransitClient;
use super::{Key, KeyProvider, WrappedKey};
use crate::error::{Error, Result};

/// The context the root secret is wrapped under.
pub const ROOT_CONTEXT: &[u8] = b"clarity/v1 root";

/// The root secret as kept in the store's metadata: wrapped by transit.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RootRecord {
    /// Transit key version that wrapped it.
    pub kek_version: i32,
    /// The transit ciphertext (`vault:vN:...`).
    pub wrapped: String,
}

/// KEKs in an OpenBao / Vault transit engine (see the module documentation).
pub struct TransitKeyProvider {
    client: std::sync::Arc<TransitClient>,
    /// Renews the token (see `auth`); stopped when the provider is dropped.
    keeper: tokio::task::JoinHandle<()>,
    root: Option<Key>,
}

impl Drop for TransitKeyProvider {
    fn drop(&mut self) {
        self.keeper.abort();
    }
}

impl std::fmt::Debug for TransitKeyProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TransitKeyProvider")
            .field("key", &self.client.key_name())
            .field("root_loaded", &self.root.is_some())
            .finish_non_exhaustive()
    }
}

impl TransitKeyProvider {
    /// Logs in, connects to the transit engine and checks the key, creating
    /// it (`aes256-gcm96`, not exportable) when it does not exist yet. From
    /// then on a task renews the token before half its lease has passed, and
    /// logs in again when it must (S-KEY-4). The provider has no root secret
    /// until [`TransitKeyProvider::with_root`].
    ///
    /// # Errors
    /// [`Error::Unavailable`] when the server does not answer; [`Error::Key`]
    /// when the credentials are refused or the key cannot be made.
    pub async fn connect(settings: TransitSettings) -> Result<TransitKeyProvider> {
        let client = TransitClient::new(settings)?;
        client.log_in().await?;
        if client.key_info().await?.is_none() {
            client.create_key().await?;
            tracing::warn!(key = client.key_name(), "created the transit key");
        }
        let client = std::sync::Arc::new(client);
        let keeper = tokio::spawn(auth::keep(std::sync::Arc::downgrade(&client)));
        Ok(TransitKeyProvider {
            client,
            keeper,
            root: None,
        })
    }

    /// Generates a new root secret and returns it wrapped, for storing.
    ///
    /// # Errors
    /// Transit errors.
    pub async fn new_root(&self) -> Result<RootRecord> {
        let root = Key::generate()?;
        let wrapped = self.wrap(&root, ROOT_CONTEXT).await?;
        RootRecord::from_wrapped(&wrapped)
    }

    /// Unwraps `record` and uses it as the root secret from now on.
    ///
    /// # Errors
    /// [`Error::Integrity`] when the record was altered or belongs to another
    /// transit key; transit errors.
    pub async fn with_root(mut self, record: &RootRecord) -> Result<TransitKeyProvider> {
        let root = self.unwrap(&record.to_wrapped(), ROOT_CONTEXT).await?;
        self.root = Some(root);
        Ok(self)
    }

    async fn info(&self) -> Result<client::KeyInfo> {
        self.client.key_info().await?.ok_or_else(|| {
            Error::key(format!(
                "transit key {} does not exist",
                self.client.key_name()
            ))
        })
    }
}

impl RootRecord {
    /// The record of a wrapped root secret.
    ///
    /// # Errors
    /// [`Error::Internal`] when the ciphertext is not transit's text form.
    pub fn from_wrapped(wrapped: &WrappedKey) -> Result<RootRecord> {
        Ok(RootRecord {
            kek_version: wrapped.kek_version,
            wrapped: String::from_utf8(wrapped.ciphertext.clone())
                .map_err(|_| Error::internal("transit ciphertext is not text"))?,
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

/// The digest appended to a data key before transit encrypts it.
fn context_digest(context: &[u8]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(b"clarity/v1|dek|");
    h.update(context);
    h.finalize().into()
}

/// The key version named in a transit ciphertext `vault:v<N>:...`.
fn version_of(ciphertext: &str) -> Result<i32> {
    let mut parts = ciphertext.splitn(3, ':');
    match (parts.next(), parts.next(), parts.next()) {
        (Some("vault"), Some(v), Some(_)) => v
            .strip_prefix('v')
            .and_then(|n| n.parse::<i32>().ok())
            .filter(|n| *n > 0)
            .ok_or(Error::Integrity),
        _ => Err(Error::Integrity),
    }
}

#[async_trait]
impl KeyProvider for TransitKeyProvider {
    fn name(&self) -> &'static str {
        "transit"
    }

    async fn current_kek_version(&self) -> Result<i32> {
        Ok(self.info().await?.latest_version)
    }

    async fn kek_versions(&self) -> Result<Vec<i32>> {
        let info = self.info().await?;
        let mut versions: Vec<i32> = info
            .keys
            .keys()
            .filter_map(|v| v.parse().ok())
            .filter(|v| *v >= info.min_decryption_version)
            .collect();
        versions.sort_unstable();
        Ok(versions)
    }

    async fn rotate(&self) -> Result<i32> {
        self.client.rotate().await?;
        self.current_kek_version().await
    }

    async fn wrap(&self, key: &Key, context: &[u8]) -> Result<WrappedKey> {
        let mut plain = Zeroizing::new(Vec::with_capacity(64));
        plain.extend_from_slice(key.expose());
        plain.extend_from_slice(&context_digest(context));
        let b64 = Zeroizing::new(B64.encode(plain.as_slice()));
        let ciphertext = self.client.encrypt(&b64).await?;
        Ok(WrappedKey {
            kek_version: version_of(&ciphertext)?,
            ciphertext: ciphertext.into_bytes(),
        })
    }

    async fn unwrap(&self, wrapped: &WrappedKey, context: &[u8]) -> Result<Key> {
        let ciphertext = std::str::from_utf8(&wrapped.ciphertext).map_err(|_| Error::Integrity)?;
        if version_of(ciphertext)? != wrapped.kek_version {
            return Err(Error::Integrity);
        }
        let b64 = self.client.decrypt(ciphertext).await?;
        let plain = Zeroizing::new(B64.decode(b64.expose()).map_err(|_| Error::Integrity)?);
        if plain.len() != Key::LEN + 32 {
            return Err(Error::Integrity);
        }
        let (key, digest) = plain.split_at(Key::LEN);
        if !bool::from(digest.ct_eq(&context_digest(context))) {
            return Err(Error::Integrity);
        }
        Key::from_slice(key)
    }

    async fn rewrap(&self, wrapped: &WrappedKey, _context: &[u8]) -> Result<WrappedKey> {
        // Inside the engine: the data key is never exposed, not even to us.
        // The context digest travels inside the ciphertext unchanged.
        let ciphertext = std::str::from_utf8(&wrapped.ciphertext).map_err(|_| Error::Integrity)?;
        if version_of(ciphertext)? != wrapped.kek_version {
            return Err(Error::Integrity);
        }
        let fresh = self.client.rewrap(ciphertext).await?;
        Ok(WrappedKey {
            kek_version: version_of(&fresh)?,
            ciphertext: fresh.into_bytes(),
        })
    }

    async fn retire_below(&self, version: i32) -> Result<()> {
        let info = self.info().await?;
        if version > info.latest_version {
            return Err(Error::invalid("cannot retire the current KEK version"));
        }
        if version > info.min_decryption_version {
            self.client.set_min_decryption_version(version).await?;
        }
        Ok(())
    }

    async fn root_key(&self) -> Result<Key> {
        self.root
            .clone()
            .ok_or_else(|| Error::key("the transit provider has no root secret loaded"))
    }

    async fn check(&self) -> Result<()> {
        self.info().await.map(drop)
    }

    fn access(&self) -> Option<crate::crypto::AccessStatus> {
        Some(self.client.access.status())
    }

    fn on_access_failure(&self, hook: std::sync::Arc<dyn Fn() + Send + Sync>) {
        self.client.access.on_failure(hook);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_are_read_from_ciphertexts() {
        assert_eq!(version_of("vault:v3:abc").expect("v3"), 3);
        for bad in ["vault:v0:x", "vault:3:x", "other:v1:x", "vault:v1", ""] {
            assert!(version_of(bad).is_err(), "{bad}");
        }
    }
}
