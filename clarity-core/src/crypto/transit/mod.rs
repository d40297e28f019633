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
mod session;
mod settings;

use async_trait::async_trait;
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

pub use settings::{TransitAuth, TransitSettings};

use self::client::TransitClient;
use super::{HoldsRoot, Key, KeyProvider, WrappedKey};
use crate::error::{Error, Result};

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
    /// until [`super::with_root`].
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

    async fn info(&self) -> Result<client::KeyInfo> {
        self.client.key_info().await?.ok_or_else(|| {
            Error::key(format!(
                "transit key {} does not exist",
                self.client.key_name()
            ))
        })
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
    super::split_versioned("vault", ciphertext).map(|(version, _)| version)
}

impl HoldsRoot for TransitKeyProvider {
    fn set_root(&mut self, root: Key) {
        self.root = Some(root);
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
