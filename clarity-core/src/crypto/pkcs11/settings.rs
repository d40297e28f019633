//! [`Pkcs11Settings`]: what the PKCS#11 provider needs, read from `[keys]`.

use std::path::PathBuf;

use crate::crypto::KeysConfig;
use crate::error::{Error, Result};

/// Where the PKCS#11 provider finds its token and keys.
#[derive(Debug, Clone)]
pub struct Pkcs11Settings {
    /// Path of the PKCS#11 module (a shared library).
    pub module: PathBuf,
    /// Label of the token holding the KEKs.
    pub token_label: String,
    /// File holding the user PIN; a secret file, read when the provider
    /// logs in.
    pub pin_file: PathBuf,
    /// Label of the KEK objects (one per version).
    pub key_label: String,
    /// Logged-in sessions kept open at most.
    pub sessions: usize,
}

impl Pkcs11Settings {
    /// Settings with defaults for everything but the module, token and PIN file.
    pub fn new(
        module: impl Into<PathBuf>,
        token_label: impl Into<String>,
        pin_file: impl Into<PathBuf>,
    ) -> Self {
        let defaults = KeysConfig::default();
        Pkcs11Settings {
            module: module.into(),
            token_label: token_label.into(),
            pin_file: pin_file.into(),
            key_label: defaults.pkcs11_key_label,
            sessions: defaults.pkcs11_sessions,
        }
    }

    /// Reads the settings of a validated `[keys]` section.
    ///
    /// # Errors
    /// [`Error::Config`] naming the key that is missing.
    pub fn from_config(keys: &KeysConfig) -> Result<Pkcs11Settings> {
        let required = |key: &str| Error::config(key, "required for the pkcs11 provider");
        Ok(Pkcs11Settings {
            module: keys
                .pkcs11_module
                .clone()
                .ok_or_else(|| required("keys.pkcs11_module"))?,
            token_label: keys
                .pkcs11_token_label
                .clone()
                .ok_or_else(|| required("keys.pkcs11_token_label"))?,
            pin_file: keys
                .pkcs11_pin_file
                .clone()
                .ok_or_else(|| required("keys.pkcs11_pin_file"))?,
            key_label: keys.pkcs11_key_label.clone(),
            sessions: keys.pkcs11_sessions,
        })
    }
}
