//! [`TransitSettings`]: what the transit provider needs, read from `[keys]`,
//! and [`TransitAuth`]: how it logs in to OpenBao / Vault.

use std::path::PathBuf;
use std::time::Duration;

use crate::crypto::SecretString;
use crate::crypto::{KeysConfig, TransitAuthMethod};
use crate::error::{Error, Result};

/// Connection and cache settings of a [`super::TransitKeyProvider`].
#[derive(Clone)]
pub struct TransitSettings {
    /// Base URL of the OpenBao / Vault server, e.g. `https://bao.internal:8200`.
    pub addr: String,
    /// How the provider gets the token it sends as `X-Vault-Token`.
    pub auth: TransitAuth,
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
            .field("auth", &self.auth.method())
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
        Self::with_auth(addr, TransitAuth::Token(token))
    }

    /// Settings with defaults for everything but the address and the way
    /// to log in.
    pub fn with_auth(addr: impl Into<String>, auth: TransitAuth) -> Self {
        let defaults = KeysConfig::default();
        TransitSettings {
            addr: addr.into(),
            auth,
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

    /// Reads the settings of a validated `[keys]` section. Secret files
    /// (token, secret id, service-account token) are read when the provider
    /// logs in, under the secret-file rule.
    ///
    /// # Errors
    /// [`Error::Config`] naming the key that is missing; [`Error::Key`] for an
    /// unreadable CA file.
    pub fn from_config(keys: &KeysConfig) -> Result<TransitSettings> {
        let addr = keys.transit_addr.clone().ok_or_else(|| {
            Error::config("keys.transit_addr", "required for the transit provider")
        })?;
        let auth = TransitAuth::from_config(keys)?;
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
            auth,
            mount: keys.transit_mount.clone(),
            key: keys.transit_key.clone(),
            ca_cert_pem,
            timeout: Duration::from_millis(keys.transit_timeout_ms),
        })
    }
}

/// How the transit provider logs in. Every method but a fixed token can log
/// in again when its token expires or is revoked; every token is renewed
/// before half its lease has passed (S-KEY-4).
#[derive(Clone)]
#[non_exhaustive]
pub enum TransitAuth {
    /// A token given directly (tests, embedding applications).
    Token(SecretString),
    /// A token read from a secret file; read again when the token is
    /// refused, so an agent or operator may replace it.
    TokenFile(PathBuf),
    /// AppRole: a role id and a secret id read from a secret file.
    AppRole {
        /// Mount path of the AppRole auth method.
        mount: String,
        /// The role id (not a secret on its own).
        role_id: String,
        /// File holding the secret id.
        secret_id_file: PathBuf,
    },
    /// Kubernetes: the pod's service-account token, exchanged for a token.
    Kubernetes {
        /// Mount path of the Kubernetes auth method.
        mount: String,
        /// The role to log in as.
        role: String,
        /// File holding the service-account token (a JWT).
        jwt_file: PathBuf,
    },
}

impl TransitAuth {
    /// The method's name, as `keys.transit_auth` spells it.
    pub fn method(&self) -> &'static str {
        match self {
            TransitAuth::Token(_) | TransitAuth::TokenFile(_) => "token",
            TransitAuth::AppRole { .. } => "approle",
            TransitAuth::Kubernetes { .. } => "kubernetes",
        }
    }

    /// Whether a refused or expired token can be replaced by logging in.
    pub(super) fn can_log_in(&self) -> bool {
        !matches!(self, TransitAuth::Token(_))
    }

    fn from_config(keys: &KeysConfig) -> Result<TransitAuth> {
        let required = |key: &'static str| {
            move || {
                Error::config(
                    key,
                    format!(
                        "required when keys.transit_auth is \"{}\"",
                        keys.transit_auth.as_str()
                    ),
                )
            }
        };
        let mount = || {
            keys.transit_auth_mount
                .clone()
                .unwrap_or_else(|| keys.transit_auth.as_str().to_string())
        };
        Ok(match keys.transit_auth {
            TransitAuthMethod::Token => TransitAuth::TokenFile(
                keys.transit_token_file
                    .clone()
                    .ok_or_else(required("keys.transit_token_file"))?,
            ),
            TransitAuthMethod::Approle => TransitAuth::AppRole {
                mount: mount(),
                role_id: keys
                    .transit_approle_role_id
                    .clone()
                    .ok_or_else(required("keys.transit_approle_role_id"))?,
                secret_id_file: keys
                    .transit_approle_secret_id_file
                    .clone()
                    .ok_or_else(required("keys.transit_approle_secret_id_file"))?,
            },
            TransitAuthMethod::Kubernetes => TransitAuth::Kubernetes {
                mount: mount(),
                role: keys
                    .transit_kubernetes_role
                    .clone()
                    .ok_or_else(required("keys.transit_kubernetes_role"))?,
                jwt_file: keys.transit_kubernetes_jwt_file.clone(),
            },
        })
    }
}

impl std::fmt::Debug for TransitAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.method())
    }
}
