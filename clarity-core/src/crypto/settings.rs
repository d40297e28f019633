//! The `[keys]` settings: which key provider, and how to reach it; and the
//! rule for files that settings name.

use std::path::PathBuf;

use serde::Deserialize;

use crate::error::{Error, Result};

/// Which key provider holds the key-encryption keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum KeyProviderKind {
    /// A keyring file on local disk (0600), created on first use. For development
    /// and single-node deployments.
    #[default]
    Local,
    /// An OpenBao / HashiCorp Vault transit engine: KEKs never leave it.
    Transit,
    /// A PKCS#11 token (an HSM): KEKs never leave it.
    Pkcs11,
    /// AWS KMS: KEKs never leave it.
    Kms,
}

/// How the transit provider logs in to OpenBao / Vault (`keys.transit_auth`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum TransitAuthMethod {
    /// A token from `keys.transit_token_file`, renewed while it runs.
    #[default]
    Token,
    /// AppRole: `keys.transit_approle_role_id` and a secret id from
    /// `keys.transit_approle_secret_id_file`.
    Approle,
    /// Kubernetes: the pod's service-account token as role
    /// `keys.transit_kubernetes_role`.
    Kubernetes,
}

impl TransitAuthMethod {
    /// The name as the setting spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            TransitAuthMethod::Token => "token",
            TransitAuthMethod::Approle => "approle",
            TransitAuthMethod::Kubernetes => "kubernetes",
        }
    }
}

/// Key settings (`[keys]`).
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct KeysConfig {
    /// The key provider (default `local`).
    pub provider: KeyProviderKind,
    /// Local keyring file (default `<data_dir>/keyring.json`).
    pub keyring_path: Option<PathBuf>,
    /// Transit server URL; `https://` except for loopback `http://` (provider `transit`).
    pub transit_addr: Option<String>,
    /// How the transit provider logs in (default `token`).
    pub transit_auth: TransitAuthMethod,
    /// File holding the transit token (auth `token`); a secret file.
    pub transit_token_file: Option<PathBuf>,
    /// Mount path of the auth method (default: the method's name).
    pub transit_auth_mount: Option<String>,
    /// The AppRole role id (auth `approle`).
    pub transit_approle_role_id: Option<String>,
    /// File holding the AppRole secret id (auth `approle`); a secret file.
    pub transit_approle_secret_id_file: Option<PathBuf>,
    /// The Kubernetes auth role (auth `kubernetes`).
    pub transit_kubernetes_role: Option<String>,
    /// The service-account token file (auth `kubernetes`; default
    /// `/var/run/secrets/kubernetes.io/serviceaccount/token`).
    pub transit_kubernetes_jwt_file: PathBuf,
    /// Mount path of the transit engine (default `transit`).
    pub transit_mount: String,
    /// Name of the transit key that wraps data keys (default `clarity`).
    pub transit_key: String,
    /// PEM file of the CA that signed the transit server's certificate (default: system roots).
    pub transit_ca_cert: Option<PathBuf>,
    /// Timeout of one transit request, in milliseconds (default 5000).
    pub transit_timeout_ms: u64,
    /// Path of the PKCS#11 module (provider `pkcs11`), e.g.
    /// `/usr/lib/softhsm/libsofthsm2.so`.
    pub pkcs11_module: Option<PathBuf>,
    /// Label of the PKCS#11 token holding the KEKs (provider `pkcs11`).
    pub pkcs11_token_label: Option<String>,
    /// File holding the token's user PIN (provider `pkcs11`); a secret file.
    pub pkcs11_pin_file: Option<PathBuf>,
    /// Label of the KEK objects in the token (default `clarity-kek`).
    pub pkcs11_key_label: String,
    /// Logged-in PKCS#11 sessions kept open at most (default 4).
    pub pkcs11_sessions: usize,
    /// The AWS KMS key that wraps data keys now (provider `kms`): a key id,
    /// a key ARN or `alias/...`.
    pub kms_key_id: Option<String>,
    /// Older KMS keys, still used to unwrap until `keys rotate` has
    /// re-wrapped everything under `kms_key_id` (KEK version i is the
    /// i-th of them; the current key is the version after the last). A
    /// retired version's entry is `"retired"`, which keeps its place.
    pub kms_previous_key_ids: Vec<String>,
    /// The AWS region (default: from the standard AWS configuration chain).
    pub kms_region: Option<String>,
    /// The KMS endpoint URL (default: the region's); `https://` except for
    /// loopback `http://`.
    pub kms_endpoint: Option<String>,
    /// Unwrapped data keys kept in memory at most (default 10000).
    pub dek_cache_entries: u64,
    /// Seconds an unwrapped data key stays in memory (default 300).
    pub dek_cache_secs: u64,
    /// Directory of the erasure ledger (default: the keyring file's
    /// directory). With several instances, a directory they all mount
    /// (each host writes a file of its own) outside the database.
    pub erasure_ledger_dir: Option<PathBuf>,
}

impl Default for KeysConfig {
    fn default() -> Self {
        KeysConfig {
            provider: KeyProviderKind::Local,
            keyring_path: None,
            transit_addr: None,
            transit_auth: TransitAuthMethod::Token,
            transit_token_file: None,
            transit_auth_mount: None,
            transit_approle_role_id: None,
            transit_approle_secret_id_file: None,
            transit_kubernetes_role: None,
            transit_kubernetes_jwt_file: PathBuf::from(
                "/var/run/secrets/kubernetes.io/serviceaccount/token",
            ),
            transit_mount: "transit".into(),
            transit_key: "clarity".into(),
            transit_ca_cert: None,
            transit_timeout_ms: 5000,
            pkcs11_module: None,
            pkcs11_token_label: None,
            pkcs11_pin_file: None,
            pkcs11_key_label: "clarity-kek".into(),
            pkcs11_sessions: 4,
            kms_key_id: None,
            kms_previous_key_ids: Vec::new(),
            kms_region: None,
            kms_endpoint: None,
            dek_cache_entries: 10_000,
            dek_cache_secs: 300,
            erasure_ledger_dir: None,
        }
    }
}

impl KeysConfig {
    /// Checks the `[keys]` settings; errors name the key.
    ///
    /// # Errors
    /// [`Error::Config`] naming the first offending key.
    pub fn validate(&self) -> Result<()> {
        if !(1..=60_000).contains(&self.transit_timeout_ms) {
            return Err(Error::config(
                "keys.transit_timeout_ms",
                "must be between 1 and 60000",
            ));
        }
        if !(1..=10_000_000).contains(&self.dek_cache_entries) {
            return Err(Error::config(
                "keys.dek_cache_entries",
                "must be between 1 and 10000000",
            ));
        }
        if !(1..=86_400).contains(&self.dek_cache_secs) {
            return Err(Error::config(
                "keys.dek_cache_secs",
                "must be between 1 and 86400",
            ));
        }
        let paths = [
            ("keys.transit_mount", Some(&self.transit_mount)),
            ("keys.transit_key", Some(&self.transit_key)),
            ("keys.transit_auth_mount", self.transit_auth_mount.as_ref()),
        ];
        for (key, value) in paths.into_iter().filter_map(|(k, v)| Some((k, v?))) {
            let ok = !value.is_empty()
                && value.len() <= 128
                && value
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '/'))
                && !value.starts_with('/')
                && !value.contains("..");
            if !ok {
                return Err(Error::config(
                    key,
                    "must be a path of letters, digits, -, _, . and / (no leading / or ..)",
                ));
            }
        }
        if let Some(addr) = &self.transit_addr {
            check_service_url(addr).map_err(|m| Error::config("keys.transit_addr", m))?;
        }
        if self.provider == KeyProviderKind::Transit {
            if self.transit_addr.is_none() {
                return Err(Error::config(
                    "keys.transit_addr",
                    "required when keys.provider is \"transit\"",
                ));
            }
            let method = self.transit_auth.as_str();
            let missing = match self.transit_auth {
                TransitAuthMethod::Token => self
                    .transit_token_file
                    .is_none()
                    .then_some("keys.transit_token_file"),
                TransitAuthMethod::Approle => {
                    if self.transit_approle_role_id.is_none() {
                        Some("keys.transit_approle_role_id")
                    } else {
                        self.transit_approle_secret_id_file
                            .is_none()
                            .then_some("keys.transit_approle_secret_id_file")
                    }
                }
                TransitAuthMethod::Kubernetes => self
                    .transit_kubernetes_role
                    .is_none()
                    .then_some("keys.transit_kubernetes_role"),
            };
            if let Some(key) = missing {
                return Err(Error::config(
                    key,
                    format!(
                        "required when keys.provider is \"transit\" and keys.transit_auth is \"{method}\""
                    ),
                ));
            }
        }
        self.validate_pkcs11()?;
        self.validate_kms()?;
        readable_file("keys.transit_ca_cert", &self.transit_ca_cert)
    }

    /// The `pkcs11_*` settings.
    fn validate_pkcs11(&self) -> Result<()> {
        if !(1..=256).contains(&self.pkcs11_sessions) {
            return Err(Error::config(
                "keys.pkcs11_sessions",
                "must be between 1 and 256",
            ));
        }
        // PKCS#11 labels are at most 32 bytes.
        let labels = [
            ("keys.pkcs11_key_label", Some(&self.pkcs11_key_label)),
            ("keys.pkcs11_token_label", self.pkcs11_token_label.as_ref()),
        ];
        for (key, label) in labels.into_iter().filter_map(|(k, v)| Some((k, v?))) {
            if label.trim().is_empty() || label.len() > 32 || label.chars().any(char::is_control) {
                return Err(Error::config(
                    key,
                    "must be a label of 1 to 32 bytes, without control characters",
                ));
            }
        }
        if self.provider != KeyProviderKind::Pkcs11 {
            return Ok(());
        }
        let required = [
            ("keys.pkcs11_module", self.pkcs11_module.is_some()),
            ("keys.pkcs11_token_label", self.pkcs11_token_label.is_some()),
            ("keys.pkcs11_pin_file", self.pkcs11_pin_file.is_some()),
        ];
        if let Some((key, _)) = required.into_iter().find(|(_, set)| !set) {
            return Err(Error::config(
                key,
                "required when keys.provider is \"pkcs11\"",
            ));
        }
        Ok(())
    }
}

impl KeysConfig {
    /// The `kms_*` settings.
    fn validate_kms(&self) -> Result<()> {
        let ids = self
            .kms_key_id
            .iter()
            .map(|id| ("keys.kms_key_id", id))
            .chain(
                self.kms_previous_key_ids
                    .iter()
                    .map(|id| ("keys.kms_previous_key_ids", id)),
            );
        let mut seen = std::collections::BTreeSet::new();
        for (key, id) in ids {
            if id.is_empty() || id.len() > 2048 || !id.chars().all(|c| c.is_ascii_graphic()) {
                return Err(Error::config(
                    key,
                    "must be a KMS key id, key ARN or alias/... (1 to 2048 printable characters, no spaces)",
                ));
            }
            if id != super::kms::RETIRED && !seen.insert(id.as_str()) {
                return Err(Error::config(
                    key,
                    format!(
                        "names the KMS key {id} twice (in keys.kms_key_id and keys.kms_previous_key_ids)"
                    ),
                ));
            }
        }
        if let Some(region) = &self.kms_region {
            let ok = !region.is_empty()
                && region.len() <= 64
                && region
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-');
            if !ok {
                return Err(Error::config(
                    "keys.kms_region",
                    "must be an AWS region name such as eu-west-1",
                ));
            }
        }
        if let Some(url) = &self.kms_endpoint {
            check_service_url(url).map_err(|m| Error::config("keys.kms_endpoint", m))?;
        }
        if self.provider == KeyProviderKind::Kms && self.kms_key_id.is_none() {
            return Err(Error::config(
                "keys.kms_key_id",
                "required when keys.provider is \"kms\"",
            ));
        }
        Ok(())
    }
}

/// The file a setting names, when it names one, must exist.
pub(crate) fn readable_file(key: &str, path: &Option<PathBuf>) -> Result<()> {
    if path.as_ref().is_some_and(|p| !p.is_file()) {
        return Err(Error::config(key, "is not a readable file"));
    }
    Ok(())
}

/// The URL of a key service (transit, KMS): `https://host[:port]`, or
/// `http://` to a loopback address only.
fn check_service_url(addr: &str) -> std::result::Result<(), &'static str> {
    let (scheme, rest) = addr
        .split_once("://")
        .ok_or("must be an https:// URL (http:// only to a loopback address)")?;
    let authority = rest.split('/').next().unwrap_or_default();
    if authority.is_empty() || authority.contains('@') {
        return Err("must name a host, without credentials");
    }
    match scheme {
        "https" => Ok(()),
        "http" => {
            let host = match authority.strip_prefix('[') {
                Some(v6) => v6.split(']').next().unwrap_or_default(),
                None => authority.rsplit_once(':').map_or(authority, |(h, _)| h),
            };
            let loopback = host == "localhost"
                || host
                    .parse::<std::net::IpAddr>()
                    .is_ok_and(|ip| ip.is_loopback());
            if loopback {
                Ok(())
            } else {
                Err("must use https:// (http:// is allowed only to a loopback address)")
            }
        }
        _ => Err("must be an https:// URL (http:// only to a loopback address)"),
    }
}
