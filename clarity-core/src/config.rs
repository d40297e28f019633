//! Configuration: a TOML file, overridden by `CLARITY_*` environment
//! variables, validated before anything starts.
//!
//! Every setting has a default that runs Clarity embedded on one machine
//! (SQLite and a local keyring under `./clarity-data/`). Environment variables
//! name a setting by its dotted key with `.` replaced by `_` and the
//! `CLARITY_` prefix: `store.postgres_url` is `CLARITY_STORE_POSTGRES_URL`,
//! `data_dir` is `CLARITY_DATA_DIR`. `CLARITY_CONFIG` names the file itself,
//! `CLARITY_FORMAT` is the command line's output format, and variables
//! starting with `CLARITY_TEST_` belong to the test suite; all are ignored
//! here. Any other unknown key, in
//! the file or in the environment, is an error that names it.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use figment::Figment;
use figment::providers::{Env, Format, Toml};
use serde::Deserialize;

use crate::crypto::readable_file;
use crate::error::{Error, Result};

// Each module owns its settings; the configuration composes them.
pub use crate::access::AccessConfig;
pub use crate::audit::AuditConfig;
pub use crate::auth::oidc::OidcProviderConfig;
pub use crate::auth::{AuthConfig, TokenPurpose};
pub use crate::cache::{CacheBackend, CacheConfig, RateLimitConfig};
pub use crate::crypto::{KeyProviderKind, KeysConfig, TransitAuthMethod};
pub use crate::store::{Backend, SqliteSynchronous, StoreConfig};

/// Prefix of the environment variables that override the file.
pub const ENV_PREFIX: &str = "CLARITY_";

/// The sections of [`Config`]; `CLARITY_<SECTION>_<KEY>` maps to `<section>.<key>`.
const SECTIONS: &[&str] = &[
    "store",
    "keys",
    "log",
    "auth",
    "access",
    "audit",
    "cache",
    "rate_limit",
];

/// The whole configuration of a Clarity instance.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct Config {
    /// Directory for the SQLite database and the local keyring (default `./clarity-data`).
    pub data_dir: PathBuf,
    /// Address the HTTP server listens on (default `127.0.0.1:8080`).
    pub listen: SocketAddr,
    /// Open connections one client address may hold at once (default 256);
    /// further ones are closed at once (S-NET-1).
    pub max_connections_per_address: usize,
    /// PEM certificate chain: with `tls_key`, the server speaks only TLS 1.2/1.3 (HTTP/2 by ALPN).
    pub tls_cert: Option<PathBuf>,
    /// PEM private key of `tls_cert`. A secret: keep the file readable by the server only.
    pub tls_key: Option<PathBuf>,
    /// Where and how data is stored.
    pub store: StoreConfig,
    /// Where the key-encryption keys come from.
    pub keys: KeysConfig,
    /// Logging.
    pub log: LogConfig,
    /// Passwords, tokens, sessions, MFA and login throttling.
    pub auth: AuthConfig,
    /// Access-control policy settings.
    pub access: AccessConfig,
    /// The audit trail.
    pub audit: AuditConfig,
    /// Caches and, with several instances, Redis.
    pub cache: CacheConfig,
    /// Request rate limits.
    pub rate_limit: RateLimitConfig,
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines when standard error is a terminal, JSON
    /// otherwise (the default).
    #[default]
    Auto,
    /// One JSON object per line, for log collectors.
    Json,
    /// Human-readable lines, for a terminal.
    Text,
}

/// Logging settings (`[log]`). Logs go to standard error and never carry PHI or secrets.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct LogConfig {
    /// Minimum level, or a filter such as `info,clarity_core=debug` (default `info`).
    pub level: String,
    /// `auto` (default: `text` on a terminal, `json` otherwise), `json` or `text`.
    pub format: LogFormat,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            level: "info".into(),
            format: LogFormat::Auto,
        }
    }
}

impl Default for Config {
    fn default() -> Self {
        Config {
            data_dir: PathBuf::from("./clarity-data"),
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            max_connections_per_address: 256,
            tls_cert: None,
            tls_key: None,
            store: StoreConfig::default(),
            keys: KeysConfig::default(),
            log: LogConfig::default(),
            auth: AuthConfig::default(),
            access: AccessConfig::default(),
            audit: AuditConfig::default(),
            cache: CacheConfig::default(),
            rate_limit: RateLimitConfig::default(),
        }
    }
}

impl Config {
    /// Loads the configuration: defaults, then the TOML file at `path` (which
    /// must exist when given), then `CLARITY_*` environment variables; then
    /// validates it.
    ///
    /// # Errors
    /// [`Error::Config`] naming the offending key (or the file).
    pub fn load(path: Option<&Path>) -> Result<Config> {
        let mut figment = Figment::new();
        if let Some(path) = path {
            if !path.is_file() {
                return Err(Error::config(
                    "config file",
                    format!("{} does not exist or is not a file", path.display()),
                ));
            }
            figment = figment.merge(Toml::file_exact(path));
        }
        Self::extract(figment.merge(env_provider()))
    }

    /// Parses a configuration from TOML text alone (no environment), then validates it.
    ///
    /// # Errors
    /// [`Error::Config`] naming the offending key.
    pub fn from_toml(text: &str) -> Result<Config> {
        Self::extract(Figment::from(Toml::string(text)))
    }

    fn extract(figment: Figment) -> Result<Config> {
        let config: Config = figment.extract().map_err(config_error)?;
        config.validate()?;
        Ok(config)
    }

    /// Checks the settings that types alone cannot.
    ///
    /// # Errors
    /// [`Error::Config`] naming the first offending key.
    pub fn validate(&self) -> Result<()> {
        if self.data_dir.as_os_str().is_empty() {
            return Err(Error::config("data_dir", "must not be empty"));
        }
        if !(1..=100_000).contains(&self.max_connections_per_address) {
            return Err(Error::config(
                "max_connections_per_address",
                "must be between 1 and 100000",
            ));
        }
        match (&self.tls_cert, &self.tls_key) {
            (Some(_), None) => return Err(Error::config("tls_key", "required with tls_cert")),
            (None, Some(_)) => return Err(Error::config("tls_cert", "required with tls_key")),
            _ => {}
        }
        for (key, path) in [("tls_cert", &self.tls_cert), ("tls_key", &self.tls_key)] {
            readable_file(key, path)?;
        }
        self.store.validate()?;
        self.cache.validate()?;
        self.rate_limit.validate()?;
        self.keys.validate()?;
        self.auth.validate()?;
        self.access.validate()?;
        self.audit.validate()
    }

    /// The SQLite database file in effect.
    pub fn sqlite_path(&self) -> PathBuf {
        self.store.sqlite_file(&self.data_dir)
    }

    /// The erasure ledger's directory: `keys.erasure_ledger_dir`, else the
    /// keyring file's directory (see `backup::ErasureLedger`), so a restore
    /// of an older backup cannot bring an erased patient's data key back.
    pub fn erasure_ledger_dir(&self) -> PathBuf {
        match &self.keys.erasure_ledger_dir {
            Some(dir) => dir.clone(),
            None => self
                .keyring_path()
                .parent()
                .map_or_else(|| self.data_dir.clone(), Path::to_path_buf),
        }
    }

    /// The audit witness's directory: `audit.witness_dir`, else
    /// `<data_dir>/audit-witness` (S-AUD-7).
    pub fn witness_dir(&self) -> PathBuf {
        self.audit
            .witness_dir
            .clone()
            .unwrap_or_else(|| self.data_dir.join("audit-witness"))
    }

    /// The local keyring file in effect.
    pub fn keyring_path(&self) -> PathBuf {
        self.keys
            .keyring_path
            .clone()
            .unwrap_or_else(|| self.data_dir.join("keyring.json"))
    }
}

/// The environment provider: `CLARITY_STORE_BACKEND` → `store.backend`.
fn env_provider() -> Env {
    Env::prefixed(ENV_PREFIX)
        .filter(|key| {
            // CLARITY_TEST_* belong to the test suite, CLARITY_CONFIG names the
            // file, CLARITY_FORMAT is the CLI's output format (`--format`),
            // CLARITY_PROBE_CA is the container health check's
            // (clarity-probe), set beside the server's own settings.
            let key = key.as_str().to_ascii_lowercase();
            !key.starts_with("test_") && !["config", "format", "probe_ca"].contains(&key.as_str())
        })
        .map(|key| {
            // Keys keep the variable's case here; settings are lower case.
            let key = key.as_str().to_ascii_lowercase();
            for section in SECTIONS {
                if let Some(rest) = key.strip_prefix(section).and_then(|r| r.strip_prefix('_')) {
                    return format!("{section}.{rest}").into();
                }
            }
            key.into()
        })
}

/// Turns figment's error into one that names the key and where it came from,
/// without echoing the value (which may be a secret).
fn config_error(err: figment::Error) -> Error {
    // figment's path already ends with the unknown field's name.
    let key = if err.path.is_empty() {
        match &err.kind {
            figment::error::Kind::UnknownField(field, _) => field.clone(),
            _ => "config".to_string(),
        }
    } else {
        err.path.join(".")
    };
    let source = err
        .metadata
        .as_ref()
        .map(|m| format!(" (from {})", m.name))
        .unwrap_or_default();
    let message = match &err.kind {
        figment::error::Kind::UnknownField(_, expected) => {
            format!(
                "unknown setting{source}; expected one of: {}",
                expected.join(", ")
            )
        }
        figment::error::Kind::InvalidType(actual, expected) => {
            format!("expected {expected}, found {actual}{source}")
        }
        figment::error::Kind::InvalidValue(_, expected) => {
            format!("invalid value{source}; expected {expected}")
        }
        figment::error::Kind::UnknownVariant(_, expected) => {
            format!(
                "unknown value{source}; expected one of: {}",
                expected.join(", ")
            )
        }
        figment::error::Kind::Message(message) => format!("{message}{source}"),
        other => format!("{other}{source}"),
    };
    Error::config(key, message)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_run_embedded() {
        let config = Config::from_toml("").expect("defaults are valid");
        assert_eq!(config.store.backend, Backend::Sqlite);
        assert_eq!(config.sqlite_path(), Path::new("./clarity-data/clarity.db"));
        assert_eq!(
            config.keyring_path(),
            Path::new("./clarity-data/keyring.json")
        );
        assert_eq!(config.listen.to_string(), "127.0.0.1:8080");
    }

    #[test]
    fn unknown_key_is_named() {
        let err = Config::from_toml("[store]\nbakend = \"sqlite\"").unwrap_err();
        match err {
            Error::Config { key, message } => {
                assert_eq!(key, "store.bakend");
                assert!(message.contains("backend"), "{message}");
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn wrong_type_is_named() {
        let err = Config::from_toml("[store]\npool_size = \"many\"").unwrap_err();
        assert!(
            matches!(err, Error::Config { ref key, .. } if key == "store.pool_size"),
            "{err}"
        );
        let err = Config::from_toml("listen = \"not an address\"").unwrap_err();
        assert!(
            matches!(err, Error::Config { ref key, .. } if key == "listen"),
            "{err}"
        );
    }

    #[test]
    fn postgres_needs_a_url_and_url_is_redacted() {
        let err = Config::from_toml("[store]\nbackend = \"postgres\"").unwrap_err();
        assert!(matches!(err, Error::Config { ref key, .. } if key == "store.postgres_url"));

        let config = Config::from_toml(
            "[store]\nbackend = \"postgres\"\npostgres_url = \"postgres://u:hunter2hunter2@db/x\"",
        )
        .expect("valid");
        assert!(!format!("{config:?}").contains("hunter2"));
    }

    // S-KEY-4: a KMS configuration with retired versions (placeholders that
    // keep the later versions' numbers) and a loopback test endpoint.
    #[test]
    fn kms_settings_are_read() {
        let config = Config::from_toml(
            "[keys]\nprovider = \"kms\"\nkms_key_id = \"alias/clarity\"\nkms_previous_key_ids = [\"retired\", \"retired\", \"k2\"]\nkms_region = \"eu-west-1\"\nkms_endpoint = \"http://127.0.0.1:4566\"",
        )
        .expect("valid");
        assert_eq!(config.keys.provider, KeyProviderKind::Kms);
        assert_eq!(config.keys.kms_previous_key_ids.len(), 3);
    }

    #[test]
    fn bad_values_are_named() {
        for (toml, key) in [
            ("[store]\npool_size = 0", "store.pool_size"),
            (
                "[store]\npostgres_schema = \"x; drop\"",
                "store.postgres_schema",
            ),
            ("[store]\nbackend = \"mysql\"", "store.backend"),
            (
                "[store]\npostgres_ca_cert = \"/nonexistent/ca.pem\"",
                "store.postgres_ca_cert",
            ),
            (
                "[store]\nmax_document_bytes = 1",
                "store.max_document_bytes",
            ),
            ("data_dir = \"\"", "data_dir"),
            ("[audit]\nserver_address = \"\"", "audit.server_address"),
            (
                "[audit]\nserver_address = \"clarity example\"",
                "audit.server_address",
            ),
            ("[cache]\nredis_url = \"http://x\"", "cache.redis_url"),
            ("[cache]\nfallback_ttl_secs = 0", "cache.fallback_ttl_secs"),
            ("[rate_limit]\nread_burst = 0", "rate_limit.read_burst"),
            ("[keys]\nprovider = \"transit\"", "keys.transit_addr"),
            (
                "[keys]\nprovider = \"transit\"\ntransit_addr = \"https://bao.example:8200\"",
                "keys.transit_token_file",
            ),
            (
                "[keys]\ntransit_addr = \"http://bao.example:8200\"",
                "keys.transit_addr",
            ),
            ("[keys]\ntransit_addr = \"bao:8200\"", "keys.transit_addr"),
            ("[keys]\ntransit_mount = \"../sys\"", "keys.transit_mount"),
            ("[keys]\ntransit_key = \"\"", "keys.transit_key"),
            ("[keys]\ntransit_timeout_ms = 0", "keys.transit_timeout_ms"),
            ("[keys]\ndek_cache_entries = 0", "keys.dek_cache_entries"),
            ("[keys]\ndek_cache_secs = 0", "keys.dek_cache_secs"),
            (
                "[keys]\ntransit_ca_cert = \"/nonexistent/ca.pem\"",
                "keys.transit_ca_cert",
            ),
            ("[keys]\nprovider = \"hsm\"", "keys.provider"),
            ("[keys]\nprovider = \"kms\"", "keys.kms_key_id"),
            ("[keys]\nkms_key_id = \"alias/a b\"", "keys.kms_key_id"),
            (
                "[keys]\nkms_key_id = \"k1\"\nkms_previous_key_ids = [\"k0\", \"k1\"]",
                "keys.kms_previous_key_ids",
            ),
            (
                "[keys]\nkms_previous_key_ids = [\"\"]",
                "keys.kms_previous_key_ids",
            ),
            ("[keys]\nkms_region = \"eu west 1\"", "keys.kms_region"),
            (
                "[keys]\nkms_endpoint = \"http://kms.example\"",
                "keys.kms_endpoint",
            ),
        ] {
            let err = Config::from_toml(toml).unwrap_err();
            assert!(
                matches!(&err, Error::Config { key: k, .. } if k == key),
                "{toml}: {err}"
            );
        }
    }

    #[test]
    #[allow(
        clippy::result_large_err,
        reason = "figment's Jail API fixes the error type"
    )]
    fn environment_overrides_file() {
        figment::Jail::expect_with(|jail| {
            jail.create_file(
                "clarity.toml",
                "listen = \"127.0.0.1:9000\"\n[store]\npool_size = 4",
            )?;
            jail.set_env("CLARITY_LISTEN", "127.0.0.1:9100");
            jail.set_env("CLARITY_STORE_POOL_SIZE", "8");
            jail.set_env("CLARITY_TEST_POSTGRES_URL", "ignored");
            jail.set_env("CLARITY_FORMAT", "json");
            jail.set_env("CLARITY_RATE_LIMIT_READ_PER_SEC", "7");
            jail.set_env("CLARITY_CACHE_TTL_SECS", "30");
            let config = Config::load(Some(Path::new("clarity.toml"))).expect("valid");
            assert_eq!(config.rate_limit.read_per_sec, 7);
            assert_eq!(config.cache.ttl_secs, 30);
            assert_eq!(config.listen.to_string(), "127.0.0.1:9100");
            assert_eq!(config.store.pool_size, 8);

            jail.set_env("CLARITY_STORE_POOL_SIZ", "8");
            let err = Config::load(None).unwrap_err();
            assert!(
                matches!(&err, Error::Config { key, message } if key == "store.pool_siz" && message.contains("CLARITY_")),
                "{err}"
            );
            Ok(())
        });
    }

    // S-KEY-4: each auth method names the settings it needs.
    #[test]
    fn transit_auth_methods_name_what_they_need() {
        let base = "[keys]\nprovider = \"transit\"\ntransit_addr = \"https://bao.example\"\n";
        let refused = |extra: &str, key: &str| {
            let err = Config::from_toml(&format!("{base}{extra}")).expect_err(extra);
            assert!(
                matches!(&err, Error::Config { key: k, .. } if k == key),
                "{extra}: {err}"
            );
        };
        refused("", "keys.transit_token_file");
        refused("transit_auth = \"approle\"", "keys.transit_approle_role_id");
        refused(
            "transit_auth = \"approle\"\ntransit_approle_role_id = \"r\"",
            "keys.transit_approle_secret_id_file",
        );
        refused(
            "transit_auth = \"kubernetes\"",
            "keys.transit_kubernetes_role",
        );
        refused(
            "transit_auth = \"kubernetes\"\ntransit_kubernetes_role = \"clarity\"\ntransit_auth_mount = \"/k8s\"",
            "keys.transit_auth_mount",
        );
        let approle = Config::from_toml(&format!(
            "{base}transit_auth = \"approle\"\ntransit_approle_role_id = \"r\"\ntransit_approle_secret_id_file = \"/run/secrets/secret-id\""
        ))
        .expect("approle");
        assert_eq!(approle.keys.transit_auth, TransitAuthMethod::Approle);
        let kubernetes = Config::from_toml(&format!(
            "{base}transit_auth = \"kubernetes\"\ntransit_kubernetes_role = \"clarity\"\ntransit_auth_mount = \"kubernetes/prod\""
        ))
        .expect("kubernetes");
        assert_eq!(
            kubernetes.keys.transit_kubernetes_jwt_file,
            std::path::Path::new("/var/run/secrets/kubernetes.io/serviceaccount/token")
        );
    }

    #[test]
    fn transit_settings_parse() {
        let config = Config::from_toml(
            "[keys]\nprovider = \"transit\"\ntransit_addr = \"http://127.0.0.1:8200\"\ntransit_token_file = \"/run/secrets/bao\"",
        )
        .expect("loopback http is allowed");
        assert_eq!(config.keys.provider, KeyProviderKind::Transit);
        assert_eq!(config.keys.transit_mount, "transit");
        assert_eq!(config.keys.transit_key, "clarity");
        assert_eq!(config.keys.transit_timeout_ms, 5000);
        assert_eq!(config.keys.dek_cache_entries, 10_000);
        assert_eq!(config.keys.dek_cache_secs, 300);
        for addr in [
            "https://bao.example",
            "http://[::1]:8200",
            "http://localhost:1",
        ] {
            let toml = format!(
                "[keys]\nprovider = \"transit\"\ntransit_addr = \"{addr}\"\ntransit_token_file = \"/run/secrets/bao\""
            );
            assert!(Config::from_toml(&toml).is_ok(), "{addr}");
        }
    }

    #[test]
    fn missing_file_is_an_error() {
        let err = Config::load(Some(Path::new("/nonexistent/clarity.toml"))).unwrap_err();
        assert!(err.to_string().contains("/nonexistent/clarity.toml"));
    }
}
