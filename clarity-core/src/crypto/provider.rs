//! The [`KeyProvider`] trait: where key-encryption keys live.

use std::fmt;

use async_trait::async_trait;

use super::Key;
use crate::error::Result;

/// A data key wrapped (encrypted) by a key-encryption key.
#[derive(Clone, PartialEq, Eq)]
pub struct WrappedKey {
    /// The KEK version that wrapped it.
    pub kek_version: i32,
    /// The wrapped bytes, opaque to everyone but the provider.
    pub ciphertext: Vec<u8>,
}

impl fmt::Debug for WrappedKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WrappedKey")
            .field("kek_version", &self.kek_version)
            .field("ciphertext_len", &self.ciphertext.len())
            .finish()
    }
}

/// How a provider's access to its key service is doing (its login and
/// token), for `keys status` and metrics.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct AccessStatus {
    /// The auth method (`token`, `approle`, `kubernetes`).
    pub method: &'static str,
    /// Seconds until the current token expires; `None` when it never does.
    pub expires_in_secs: Option<u64>,
    /// Successful renewals so far.
    pub renewals: u64,
    /// Successful logins so far (the first one included).
    pub logins: u64,
    /// Failed renewals and logins so far.
    pub failures: u64,
    /// Whether the last renewal or login succeeded.
    pub healthy: bool,
}

/// Holds the key-encryption keys (KEKs) and the root secret.
///
/// KEKs never leave the provider: it wraps and unwraps data keys. Only the
/// root secret, from which locally used keys (blind indexes) are derived, is
/// handed out. Implementations: [`super::LocalKeyring`].
#[async_trait]
pub trait KeyProvider: Send + Sync + fmt::Debug {
    /// A short name for logs and health reports, e.g. `local`.
    fn name(&self) -> &'static str;

    /// The KEK version that [`KeyProvider::wrap`] uses now.
    async fn current_kek_version(&self) -> Result<i32>;

    /// Every KEK version the provider can unwrap with.
    async fn kek_versions(&self) -> Result<Vec<i32>>;

    /// Creates a new KEK version and makes it current (S-KEY-2); returns it.
    /// Older versions stay available for unwrapping.
    ///
    /// # Errors
    /// [`crate::error::Error::Key`] when the provider cannot rotate; nothing changes then.
    async fn rotate(&self) -> Result<i32>;

    /// Wraps `key` with the current KEK, bound to `context` (e.g. the patient id).
    ///
    /// # Errors
    /// [`crate::error::Error::Key`] or [`crate::error::Error::Unavailable`] when the provider cannot wrap.
    async fn wrap(&self, key: &Key, context: &[u8]) -> Result<WrappedKey>;

    /// Unwraps a key wrapped by [`KeyProvider::wrap`] with the same `context`.
    ///
    /// # Errors
    /// [`crate::error::Error::Integrity`] when the wrapped key or context was altered;
    /// [`crate::error::Error::Key`] when its KEK version is unknown.
    async fn unwrap(&self, wrapped: &WrappedKey, context: &[u8]) -> Result<Key>;

    /// Re-wraps a wrapped key under the current KEK version (rotation). The
    /// default unwraps and wraps again in memory; providers that can do it
    /// inside the key service (transit `rewrap`) never expose the data key.
    ///
    /// # Errors
    /// As [`KeyProvider::unwrap`] and [`KeyProvider::wrap`].
    async fn rewrap(&self, wrapped: &WrappedKey, context: &[u8]) -> Result<WrappedKey> {
        let key = self.unwrap(wrapped, context).await?;
        self.wrap(&key, context).await
    }

    /// Retires every KEK version below `version`: afterwards they can no
    /// longer unwrap. Callers make sure nothing is wrapped by them first
    /// (see `Clarity::retire_keys`).
    ///
    /// # Errors
    /// [`crate::error::Error::InvalidInput`] when `version` is above the current
    /// version; provider errors.
    async fn retire_below(&self, version: i32) -> Result<()>;

    /// The root secret from which local keys are derived.
    ///
    /// # Errors
    /// [`crate::error::Error::Key`] or [`crate::error::Error::Unavailable`].
    async fn root_key(&self) -> Result<Key>;

    /// How the provider's access to its key service is doing; `None` for a
    /// provider that keeps no session (the local keyring).
    fn access(&self) -> Option<AccessStatus> {
        None
    }

    /// Calls `hook` each time the provider fails to renew or replace its
    /// access (S-KEY-4), so the failure can be raised as an alert. Set once.
    fn on_access_failure(&self, hook: std::sync::Arc<dyn Fn() + Send + Sync>) {
        let _ = hook;
    }

    /// Checks that the provider can serve keys now (for readiness).
    ///
    /// # Errors
    /// Whatever prevents it from serving keys.
    async fn check(&self) -> Result<()>;
}
