//! Cryptography: key providers, envelope encryption, blind indexes and the
//! wrappers that keep secrets and PHI out of logs.
//!
//! The key hierarchy: a key provider holds versioned key-encryption keys
//! (KEKs) and a root secret. Each patient has its own data key (DEK), kept in
//! the store only wrapped by a KEK; rows are sealed under the DEK with
//! [`envelope`]. Blind-index keys are derived from the root secret with HKDF.

mod blind_index;
pub mod envelope;
mod keyring;
mod provider;
mod secret;
mod transit;

pub use blind_index::{BlindIndex, BlindIndexer, IndexField};
pub use keyring::LocalKeyring;
pub use provider::{KeyProvider, WrappedKey, fingerprint};
pub use secret::{Json, Key, Phi, SecretString};
pub use transit::{ROOT_CONTEXT, RootRecord, TransitKeyProvider, TransitSettings};

use crate::error::{Error, Result};

/// Fills `buf` from the operating system's CSPRNG (S-AUTH-6).
///
/// # Errors
/// [`Error::Internal`] when the OS random source fails.
pub fn fill_random(buf: &mut [u8]) -> Result<()> {
    getrandom::fill(buf).map_err(|_| Error::internal("operating system random source failed"))
}
