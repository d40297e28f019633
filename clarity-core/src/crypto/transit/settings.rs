//! [`TransitSettings`]: what the transit provider needs, read from `[keys]`.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::Duration;

use zeroize::Zeroizing;

use crate::crypto::KeysConfig;
use crate::crypto::SecretString;
use crate::error::{Error, Result};

/// Connection and cache settings of a [`super::TransitKeyProvider`].
#[derive(Clone)]
pub struct TransitSettings {
    /// Base URL of the OpenBao / Vault server, e.g. `https://bao.internal:8200`.
    pub addr: String,
    /// The token sent as `X-Vault-Token`.
    pub token: SecretString,
    /// Mount path of the transit engine.
    pub mount: String,
    /// Name of the transit key.
    pub key: String,
    /// PEM of a CA to trust for the server's certificate, besides the built-in roots.
    pub ca_cert_pem: Option<Vec<u8>>,
    /// Timeout of one request.
    pub timeout: Duration,
}

impl std::fmt::Debug for TransitSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TransitSettings")
            .field("addr", &self.addr)
            .field("token", &"[REDACTED]")
            .field("mount", &self.mount)
            .field("key", &self.key)
            .field("ca_cert", &self.ca_cert_pem.is_some())
            .field("timeout", &self.timeout)
            .finish()
    }
}

impl TransitSettings {
    /// Settings with defaults for everything but the address and token.
    pub fn new(addr: impl Into<String>, token: SecretString) -> Self {
        let defaults = KeysConfig::default();
        TransitSettings {
            addr: addr.into(),
            token,
            mount: defaults.transit_mount,
            key: defaults.transit_key,
            ca_cert_pem: None,
            timeout: Duration::from_millis(defaults.transit_timeout_ms),
        }
    }

    /// Uses the transit key `key` (tests give each run its own).
    pub fn with_key(mut self, key: impl Into<String>) -> Self {
        self.key = key.into();
        self
    }

    /// Reads the settings of a validated `[keys]` section, including the
    /// token file (which must be readable by its owner only).
    ///
    /// # Errors
    /// [`Error::Config`] naming the key that is missing; [`Error::Key`] for an
    /// unreadable or too widely readable token file or CA file.
    pub fn from_config(keys: &KeysConfig) -> Result<TransitSettings> {
        let addr = keys.transit_addr.clone().ok_or_else(|| {
            Error::config("keys.transit_addr", "required for the transit provider")
        })?;
        let token_file = keys.transit_token_file.as_deref().ok_or_else(|| {
            Error::config(
                "keys.transit_token_file",
                "required for the transit provider",
            )
        })?;
        let ca_cert_pem = match &keys.transit_ca_cert {
            Some(path) => Some(std::fs::read(path).map_err(|e| {
                Error::key(format!(
                    "cannot read keys.transit_ca_cert {}: {e}",
                    path.display()
                ))
            })?),
            None => None,
        };
        Ok(TransitSettings {
            addr: addr.trim_end_matches('/').to_string(),
            token: read_token_file(token_file)?,
            mount: keys.transit_mount.clone(),
            key: keys.transit_key.clone(),
            ca_cert_pem,
            timeout: Duration::from_millis(keys.transit_timeout_ms),
        })
    }
}

/// Reads a token file, refusing one that group or others may read (S-KEY-1).
fn read_token_file(path: &Path) -> Result<SecretString> {
    let meta = std::fs::metadata(path).map_err(|e| {
        Error::key(format!(
            "cannot read keys.transit_token_file {}: {e}",
            path.display()
        ))
    })?;
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(Error::key(format!(
            "keys.transit_token_file {} has mode {mode:03o}: it must be readable by its owner only (chmod 600)",
            path.display()
        )));
    }
    let bytes = Zeroizing::new(std::fs::read(path).map_err(|e| {
        Error::key(format!(
            "cannot read keys.transit_token_file {}: {e}",
            path.display()
        ))
    })?);
    let text = std::str::from_utf8(&bytes).map_err(|_| {
        Error::key(format!(
            "keys.transit_token_file {} is not UTF-8",
            path.display()
        ))
    })?;
    let token = text.trim();
    if token.is_empty() || token.chars().any(|c| c.is_control() || c == ' ') {
        return Err(Error::key(format!(
            "keys.transit_token_file {} does not hold one token",
            path.display()
        )));
    }
    Ok(SecretString::new(token))
}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;

    use super::*;

    // S-KEY-1: the token file is a secret like the keyring.
    #[test]
    fn token_file_must_be_private() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("token");
        let mut out = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)
            .expect("create");
        out.write_all(b"s.secret-token-value\n").expect("write");
        assert_eq!(
            read_token_file(&path).expect("private file").expose(),
            "s.secret-token-value"
        );
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        let err = read_token_file(&path).unwrap_err().to_string();
        assert!(err.contains("chmod 600"), "{err}");
        assert!(!err.contains("secret-token"), "{err}");
        let settings = TransitSettings::new("http://127.0.0.1:1", SecretString::new("tok-xyz"));
        assert!(!format!("{settings:?}").contains("tok-xyz"));
    }
}
