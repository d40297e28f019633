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
mod kms;
mod pkcs11;
mod provider;
mod root;
pub(crate) mod schedule;
mod secret;
mod secret_file;
mod settings;
mod transit;

pub use blind_index::{BlindIndex, BlindIndexer, IndexField};
pub use kms::KmsSettings;
pub use pkcs11::Pkcs11Settings;
pub(crate) use root::split_versioned;
pub(crate) use root::{HoldsRoot, with_root};
pub use secret::{Json, Key, Phi, SecretString};
pub use secret_file::{read_secret_file, read_token_file};
pub(crate) use settings::readable_file;
pub use settings::{KeyProviderKind, KeysConfig, TransitAuthMethod};
pub use transit::{TransitAuth, TransitSettings};
// Key providers hand out the root secret: outside the crate only for tests
// (S-API-1); applications reach keys through `Clarity::open` alone.
#[cfg(feature = "testing")]
pub use keyring::LocalKeyring;
#[cfg(not(feature = "testing"))]
pub(crate) use keyring::LocalKeyring;
#[cfg(not(feature = "testing"))]
pub(crate) use kms::KmsKeyProvider;
#[cfg(feature = "testing")]
pub use kms::{KmsKeyProvider, create_key as create_kms_key, disable_key as disable_kms_key};
#[cfg(not(feature = "testing"))]
pub(crate) use pkcs11::Pkcs11KeyProvider;
#[cfg(feature = "testing")]
pub use pkcs11::{Pkcs11KeyProvider, create_token as create_pkcs11_token};
pub use provider::AccessStatus;
#[cfg(feature = "testing")]
pub use provider::{KeyProvider, WrappedKey};
#[cfg(not(feature = "testing"))]
pub(crate) use provider::{KeyProvider, WrappedKey};
#[cfg(feature = "testing")]
pub use root::{ROOT_CONTEXT, RootRecord};
#[cfg(not(feature = "testing"))]
pub(crate) use root::{ROOT_CONTEXT, RootRecord};
#[cfg(feature = "testing")]
pub use schedule::fingerprint;
#[cfg(not(feature = "testing"))]
pub(crate) use schedule::fingerprint;
#[cfg(feature = "testing")]
pub use transit::TransitKeyProvider;
#[cfg(not(feature = "testing"))]
pub(crate) use transit::TransitKeyProvider;

use crate::error::{Error, Result};

/// Fills `buf` from the operating system's CSPRNG (S-AUTH-6).
///
/// # Errors
/// [`Error::Internal`] when the OS random source fails.
pub fn fill_random(buf: &mut [u8]) -> Result<()> {
    getrandom::fill(buf).map_err(|_| Error::internal("operating system random source failed"))
}
