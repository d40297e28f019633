//! Configuration: a TOML file, overridden by `CLARITY_*` environment
//! variables, validated before anything starts.
//!
//! Every setting has a default that runs Clarity embedded on one machine
//! (SQLite and a local keyring under `./clarity-data/`). Environment variables
//! name a setting by its dotted key with `.` replaced by `_` and the
//! `CLARITY_` prefix: `store.postgres_url` is `CLARITY_STORE_POSTGRES_URL`,
//! `data_dir` is `CLARITY_DATA_DIR`. `CLARITY_CONFIG` names the file itself,
//! and variables starting with `CLARITY_TEST_` belong to the test suite; both
//! are ignored here. Any other unknown key, in
//! the file or in the environment, is an error that names it.

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use figment::Figment;
use figment::providers::{Env, Format, Toml};
use serde::Deserialize;

use crate::crypto::SecretString;
use crate::error::{Error, Result};

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

/// Where cached state lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum CacheBackend {
    /// In each instance's memory (moka), invalidated across instances by the channel.
    #[default]
    Memory,
    /// In Redis, shared by every instance; values sealed.
    Redis,
}

/// Cache settings (`[cache]`).
///
/// Every instance caches verified tokens, session and user state, care-team
/// membership and encrypted documents in memory. Changes made by this
/// instance invalidate its cache at once; changes made elsewhere arrive
/// through the invalidation channel (Redis pub/sub when `redis_url` is set,
/// otherwise PostgreSQL LISTEN/NOTIFY on the PostgreSQL backend). Without a
/// live channel, cached state lives `fallback_ttl_secs` at most.
#[derive(Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct CacheConfig {
    /// Where cached state lives: `memory` (default; in each instance) or
    /// `redis` (shared by every instance; needs `redis_url`).
    pub backend: CacheBackend,
    /// Redis URL (`redis://` or `rediss://`): shared rate limits and
    /// invalidation across instances. Treated as a secret.
    pub redis_url: Option<SecretString>,
    /// Prefix of Clarity's keys and channels in Redis (default `clarity`).
    pub redis_prefix: String,
    /// Entries kept per in-process cache (default 100000).
    pub max_entries: u64,
    /// Lifetime of cached state while the invalidation channel is up (default 60).
    pub ttl_secs: u64,
    /// Lifetime of cached state while no channel is up (default 1).
    pub fallback_ttl_secs: u64,
}

impl Default for CacheConfig {
    fn default() -> Self {
        CacheConfig {
            backend: CacheBackend::Memory,
            redis_url: None,
            redis_prefix: "clarity".into(),
            max_entries: 100_000,
            ttl_secs: 60,
            fallback_ttl_secs: 1,
        }
    }
}

impl fmt::Debug for CacheConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CacheConfig")
            .field("backend", &self.backend)
            .field("redis_url", &self.redis_url.as_ref().map(|_| "[REDACTED]"))
            .field("redis_prefix", &self.redis_prefix)
            .field("max_entries", &self.max_entries)
            .field("ttl_secs", &self.ttl_secs)
            .field("fallback_ttl_secs", &self.fallback_ttl_secs)
            .finish()
    }
}

/// Rate limits (`[rate_limit]`): a GCRA limit is a steady rate per second
/// and a burst. Shared by every instance through Redis when
/// `cache.redis_url` is set; per instance otherwise.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct RateLimitConfig {
    /// Limit requests at all (default true).
    pub enabled: bool,
    /// Requests per second from one client address, any route (default 1000).
    pub address_per_sec: u32,
    /// Burst of requests from one client address (default 2000).
    pub address_burst: u32,
    /// Login, refresh and setup requests per second from one address (default 5).
    pub auth_per_sec: u32,
    /// Burst of login, refresh and setup requests from one address (default 20).
    pub auth_burst: u32,
    /// Reads per second by one account (default 500).
    pub read_per_sec: u32,
    /// Burst of reads by one account (default 1000).
    pub read_burst: u32,
    /// Writes per second by one account (default 100).
    pub write_per_sec: u32,
    /// Burst of writes by one account (default 200).
    pub write_burst: u32,
    /// Administration and audit requests per second by one account (default 20).
    pub admin_per_sec: u32,
    /// Burst of administration and audit requests by one account (default 100).
    pub admin_burst: u32,
}

impl Default for RateLimitConfig {
    fn default() -> Self {
        RateLimitConfig {
            enabled: true,
            address_per_sec: 1000,
            address_burst: 2000,
            auth_per_sec: 5,
            auth_burst: 20,
            read_per_sec: 500,
            read_burst: 1000,
            write_per_sec: 100,
            write_burst: 200,
            admin_per_sec: 20,
            admin_burst: 100,
        }
    }
}

/// Audit settings (`[audit]`).
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct AuditConfig {
    /// Events waiting to be written at most; more callers wait (default 65536).
    pub queue: usize,
    /// A signed checkpoint after this many events (default 1000)...
    pub checkpoint_every: i64,
    /// ... or after this many seconds with new events (default 60).
    pub checkpoint_secs: u64,
    /// Days events are kept before they may be purged (default 2196: six years).
    pub retention_days: u32,
}

impl Default for AuditConfig {
    fn default() -> Self {
        AuditConfig {
            queue: 65_536,
            checkpoint_every: 1000,
            checkpoint_secs: 60,
            retention_days: crate::audit::DEFAULT_RETENTION_DAYS,
        }
    }
}

/// Which PASETO v4 purpose access tokens use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum TokenPurpose {
    /// `v4.local`: encrypted and authenticated with a symmetric key (default).
    #[default]
    Local,
    /// `v4.public`: signed with Ed25519, so other services can verify tokens.
    Public,
}

/// Authentication settings (`[auth]`).
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct AuthConfig {
    /// Token issuer (`iss`), default `clarity`.
    pub issuer: String,
    /// Token audience (`aud`), default `clarity`.
    pub audience: String,
    /// `local` (default) or `public`.
    pub token_purpose: TokenPurpose,
    /// Access-token lifetime in seconds (default 900).
    pub access_token_secs: u64,
    /// A session ends after this many seconds without use (default 900).
    pub session_idle_secs: u64,
    /// A session ends this many seconds after login, used or not (default 43200).
    pub session_absolute_secs: u64,
    /// argon2id memory in KiB (default 19456, the minimum).
    pub argon2_memory_kib: u32,
    /// argon2id iterations (default 2, the minimum).
    pub argon2_iterations: u32,
    /// argon2id lanes (default 1).
    pub argon2_parallelism: u32,
    /// Password hashes computed at once (default 2); more callers wait.
    pub hash_concurrency: usize,
    /// Failed logins allowed per account per hour before it locks (default and maximum 100).
    pub max_failed_logins_per_hour: u32,
    /// Failed logins after which each further attempt must wait exponentially longer (default 5).
    pub backoff_after_failures: u32,
    /// Require TOTP at login for users with the admin role (default false).
    pub require_mfa_for_admin: bool,
    /// Lifetime of the one-time setup code in seconds (default 3600).
    pub setup_code_secs: u64,
}

impl Default for AuthConfig {
    fn default() -> Self {
        AuthConfig {
            issuer: "clarity".into(),
            audience: "clarity".into(),
            token_purpose: TokenPurpose::Local,
            access_token_secs: 900,
            session_idle_secs: 900,
            session_absolute_secs: 12 * 3600,
            argon2_memory_kib: 19 * 1024,
            argon2_iterations: 2,
            argon2_parallelism: 1,
            hash_concurrency: 2,
            max_failed_logins_per_hour: 100,
            backoff_after_failures: 5,
            require_mfa_for_admin: false,
            setup_code_secs: 3600,
        }
    }
}

/// Access-control settings (`[access]`).
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct AccessConfig {
    /// Lifetime of a break-glass grant in seconds (default 14400, four hours).
    pub break_glass_secs: u64,
    /// Require a TOTP code with every break-glass request (default false).
    pub require_mfa_for_break_glass: bool,
    /// Record kinds a nurse may create and update (default `observation`, `note`, `vital-signs`).
    pub nurse_writable_kinds: Vec<String>,
}

impl Default for AccessConfig {
    fn default() -> Self {
        AccessConfig {
            break_glass_secs: 4 * 3600,
            require_mfa_for_break_glass: false,
            nurse_writable_kinds: vec!["observation".into(), "note".into(), "vital-signs".into()],
        }
    }
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// One JSON object per line (default), for log collectors.
    #[default]
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
    /// `json` (default) or `text`.
    pub format: LogFormat,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            level: "info".into(),
            format: LogFormat::Json,
        }
    }
}

/// Which storage backend to use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    /// Embedded SQLite in `data_dir` (one machine).
    #[default]
    Sqlite,
    /// PostgreSQL (several instances).
    Postgres,
}

/// How hard SQLite pushes each commit to disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum SqliteSynchronous {
    /// Every commit is on disk before it is acknowledged, even across power loss (default).
    #[default]
    Full,
    /// Commits survive a crash of the process but the last ones may be lost on power loss.
    Normal,
}

/// Storage settings (`[store]`).
#[derive(Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct StoreConfig {
    /// `sqlite` (default) or `postgres`.
    pub backend: Backend,
    /// SQLite database file (default `<data_dir>/clarity.db`).
    pub sqlite_path: Option<PathBuf>,
    /// SQLite durability: `full` (default) or `normal`.
    pub sqlite_synchronous: SqliteSynchronous,
    /// PostgreSQL connection URL; required when `backend = "postgres"`. Treated as a secret.
    pub postgres_url: Option<SecretString>,
    /// PostgreSQL schema to keep Clarity's tables in (default: the server's search path).
    pub postgres_schema: Option<String>,
    /// PEM file of the CA that signed the PostgreSQL server's certificate.
    /// When set, every connection requires TLS (1.2 or 1.3) and verifies the
    /// server's certificate and host name; when unset, connections are plain.
    pub postgres_ca_cert: Option<PathBuf>,
    /// Maximum database connections (PostgreSQL pool size; SQLite readers). Default 16.
    pub pool_size: usize,
    /// Largest encrypted document (patient profile or record body) in bytes. Default 1 MiB.
    pub max_document_bytes: usize,
}

impl fmt::Debug for StoreConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StoreConfig")
            .field("backend", &self.backend)
            .field("sqlite_path", &self.sqlite_path)
            .field("sqlite_synchronous", &self.sqlite_synchronous)
            .field(
                "postgres_url",
                &self.postgres_url.as_ref().map(|_| "[REDACTED]"),
            )
            .field("postgres_schema", &self.postgres_schema)
            .field("postgres_ca_cert", &self.postgres_ca_cert)
            .field("pool_size", &self.pool_size)
            .field("max_document_bytes", &self.max_document_bytes)
            .finish()
    }
}

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
    /// File holding the transit token; readable by its owner only, like the keyring.
    pub transit_token_file: Option<PathBuf>,
    /// Mount path of the transit engine (default `transit`).
    pub transit_mount: String,
    /// Name of the transit key that wraps data keys (default `clarity`).
    pub transit_key: String,
    /// PEM file of the CA that signed the transit server's certificate (default: system roots).
    pub transit_ca_cert: Option<PathBuf>,
    /// Timeout of one transit request, in milliseconds (default 5000).
    pub transit_timeout_ms: u64,
    /// Unwrapped data keys kept in memory at most (default 10000).
    pub dek_cache_entries: u64,
    /// Seconds an unwrapped data key stays in memory (default 300).
    pub dek_cache_secs: u64,
    /// Directory of the erasure ledger (default: the keyring file's
    /// directory). With several instances, a directory they all mount
    /// (each host writes a file of its own) outside the database.
    pub erasure_ledger_dir: Option<PathBuf>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            data_dir: PathBuf::from("./clarity-data"),
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
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

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            backend: Backend::Sqlite,
            sqlite_path: None,
            sqlite_synchronous: SqliteSynchronous::Full,
            postgres_url: None,
            postgres_schema: None,
            postgres_ca_cert: None,
            pool_size: 16,
            max_document_bytes: 1024 * 1024,
        }
    }
}

impl Default for KeysConfig {
    fn default() -> Self {
        KeysConfig {
            provider: KeyProviderKind::Local,
            keyring_path: None,
            transit_addr: None,
            transit_token_file: None,
            transit_mount: "transit".into(),
            transit_key: "clarity".into(),
            transit_ca_cert: None,
            transit_timeout_ms: 5000,
            dek_cache_entries: 10_000,
            dek_cache_secs: 300,
            erasure_ledger_dir: None,
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
        match (&self.tls_cert, &self.tls_key) {
            (Some(_), None) => return Err(Error::config("tls_key", "required with tls_cert")),
            (None, Some(_)) => return Err(Error::config("tls_cert", "required with tls_key")),
            _ => {}
        }
        for (key, path) in [("tls_cert", &self.tls_cert), ("tls_key", &self.tls_key)] {
            readable_file(key, path)?;
        }
        let store = &self.store;
        if store.backend == Backend::Postgres && store.postgres_url.is_none() {
            return Err(Error::config(
                "store.postgres_url",
                "required when store.backend is \"postgres\"",
            ));
        }
        if let Some(url) = &store.postgres_url {
            let url = url.expose();
            if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
                return Err(Error::config(
                    "store.postgres_url",
                    "must be a postgres:// or postgresql:// URL",
                ));
            }
        }
        if let Some(schema) = &store.postgres_schema {
            validate_identifier(schema).map_err(|m| Error::config("store.postgres_schema", m))?;
        }
        readable_file("store.postgres_ca_cert", &store.postgres_ca_cert)?;
        if !(1..=1024).contains(&store.pool_size) {
            return Err(Error::config(
                "store.pool_size",
                "must be between 1 and 1024",
            ));
        }
        if !(1024..=64 * 1024 * 1024).contains(&store.max_document_bytes) {
            return Err(Error::config(
                "store.max_document_bytes",
                "must be between 1024 and 67108864",
            ));
        }
        self.validate_cache()?;
        self.keys.validate()?;
        self.validate_auth()
    }

    fn validate_cache(&self) -> Result<()> {
        let cache = &self.cache;
        if let Some(url) = &cache.redis_url {
            let url = url.expose();
            if !(url.starts_with("redis://") || url.starts_with("rediss://")) {
                return Err(Error::config(
                    "cache.redis_url",
                    "must be a redis:// or rediss:// URL",
                ));
            }
        }
        if cache.backend == CacheBackend::Redis && cache.redis_url.is_none() {
            return Err(Error::config(
                "cache.redis_url",
                "required when cache.backend is \"redis\"",
            ));
        }
        let prefix_ok = !cache.redis_prefix.is_empty()
            && cache.redis_prefix.len() <= 64
            && cache
                .redis_prefix
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'));
        if !prefix_ok {
            return Err(Error::config(
                "cache.redis_prefix",
                "must be 1-64 characters: letters, digits, _, - and .",
            ));
        }
        if !(1..=100_000_000).contains(&cache.max_entries) {
            return Err(Error::config(
                "cache.max_entries",
                "must be between 1 and 100000000",
            ));
        }
        if !(1..=3600).contains(&cache.ttl_secs) {
            return Err(Error::config(
                "cache.ttl_secs",
                "must be between 1 and 3600",
            ));
        }
        if !(1..=cache.ttl_secs).contains(&cache.fallback_ttl_secs) {
            return Err(Error::config(
                "cache.fallback_ttl_secs",
                "must be between 1 and cache.ttl_secs",
            ));
        }
        let limits = &self.rate_limit;
        for (key, value) in [
            ("rate_limit.address_per_sec", limits.address_per_sec),
            ("rate_limit.address_burst", limits.address_burst),
            ("rate_limit.auth_per_sec", limits.auth_per_sec),
            ("rate_limit.auth_burst", limits.auth_burst),
            ("rate_limit.read_per_sec", limits.read_per_sec),
            ("rate_limit.read_burst", limits.read_burst),
            ("rate_limit.write_per_sec", limits.write_per_sec),
            ("rate_limit.write_burst", limits.write_burst),
            ("rate_limit.admin_per_sec", limits.admin_per_sec),
            ("rate_limit.admin_burst", limits.admin_burst),
        ] {
            if !(1..=10_000_000).contains(&value) {
                return Err(Error::config(key, "must be between 1 and 10000000"));
            }
        }
        Ok(())
    }

    fn validate_auth(&self) -> Result<()> {
        let auth = &self.auth;
        let positive = [
            ("auth.access_token_secs", auth.access_token_secs),
            ("auth.session_idle_secs", auth.session_idle_secs),
            ("auth.session_absolute_secs", auth.session_absolute_secs),
            ("auth.setup_code_secs", auth.setup_code_secs),
            ("access.break_glass_secs", self.access.break_glass_secs),
        ];
        for (key, value) in positive {
            if !(1..=365 * 24 * 3600).contains(&value) {
                return Err(Error::config(key, "must be between 1 second and one year"));
            }
        }
        if auth.issuer.trim().is_empty() {
            return Err(Error::config("auth.issuer", "must not be empty"));
        }
        if auth.audience.trim().is_empty() {
            return Err(Error::config("auth.audience", "must not be empty"));
        }
        if auth.argon2_memory_kib < 19 * 1024 {
            return Err(Error::config(
                "auth.argon2_memory_kib",
                "must be at least 19456 (19 MiB)",
            ));
        }
        if auth.argon2_iterations < 2 {
            return Err(Error::config(
                "auth.argon2_iterations",
                "must be at least 2",
            ));
        }
        if !(1..=16).contains(&auth.argon2_parallelism) {
            return Err(Error::config(
                "auth.argon2_parallelism",
                "must be between 1 and 16",
            ));
        }
        if !(1..=64).contains(&auth.hash_concurrency) {
            return Err(Error::config(
                "auth.hash_concurrency",
                "must be between 1 and 64",
            ));
        }
        if !(1..=100).contains(&auth.max_failed_logins_per_hour) {
            return Err(Error::config(
                "auth.max_failed_logins_per_hour",
                "must be between 1 and 100",
            ));
        }
        if auth.backoff_after_failures >= auth.max_failed_logins_per_hour {
            return Err(Error::config(
                "auth.backoff_after_failures",
                "must be below auth.max_failed_logins_per_hour",
            ));
        }
        let audit = &self.audit;
        if !(1..=1_000_000).contains(&audit.queue) {
            return Err(Error::config(
                "audit.queue",
                "must be between 1 and 1000000",
            ));
        }
        if !(1..=1_000_000).contains(&audit.checkpoint_every) {
            return Err(Error::config(
                "audit.checkpoint_every",
                "must be between 1 and 1000000",
            ));
        }
        if !(1..=86_400).contains(&audit.checkpoint_secs) {
            return Err(Error::config(
                "audit.checkpoint_secs",
                "must be between 1 and 86400",
            ));
        }
        if audit.retention_days < crate::audit::DEFAULT_RETENTION_DAYS {
            return Err(Error::config(
                "audit.retention_days",
                "must be at least 2196 (six years)",
            ));
        }
        for kind in &self.access.nurse_writable_kinds {
            crate::model::RecordKind::new(kind).map_err(|_| {
                Error::config(
                    "access.nurse_writable_kinds",
                    "holds an invalid record kind",
                )
            })?;
        }
        Ok(())
    }

    /// The SQLite database file in effect.
    pub fn sqlite_path(&self) -> PathBuf {
        self.store
            .sqlite_path
            .clone()
            .unwrap_or_else(|| self.data_dir.join("clarity.db"))
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

    /// The local keyring file in effect.
    pub fn keyring_path(&self) -> PathBuf {
        self.keys
            .keyring_path
            .clone()
            .unwrap_or_else(|| self.data_dir.join("keyring.json"))
    }
}

impl KeysConfig {
    /// Checks the `[keys]` settings; errors name the key.
    fn validate(&self) -> Result<()> {
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
        for (key, value) in [
            ("keys.transit_mount", &self.transit_mount),
            ("keys.transit_key", &self.transit_key),
        ] {
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
            check_transit_addr(addr).map_err(|m| Error::config("keys.transit_addr", m))?;
        }
        if self.provider == KeyProviderKind::Transit {
            if self.transit_addr.is_none() {
                return Err(Error::config(
                    "keys.transit_addr",
                    "required when keys.provider is \"transit\"",
                ));
            }
            if self.transit_token_file.is_none() {
                return Err(Error::config(
                    "keys.transit_token_file",
                    "required when keys.provider is \"transit\"",
                ));
            }
        }
        readable_file("keys.transit_ca_cert", &self.transit_ca_cert)
    }
}

/// The file a setting names, when it names one, must exist.
fn readable_file(key: &str, path: &Option<PathBuf>) -> Result<()> {
    if path.as_ref().is_some_and(|p| !p.is_file()) {
        return Err(Error::config(key, "is not a readable file"));
    }
    Ok(())
}

/// `https://host[:port]`, or `http://` to a loopback address only.
fn check_transit_addr(addr: &str) -> std::result::Result<(), &'static str> {
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

/// The environment provider: `CLARITY_STORE_BACKEND` → `store.backend`.
fn env_provider() -> Env {
    Env::prefixed(ENV_PREFIX)
        .filter(|key| {
            // CLARITY_TEST_* belong to the test suite, CLARITY_CONFIG names the file.
            let key = key.as_str().to_ascii_lowercase();
            !key.starts_with("test_") && key != "config"
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

/// Checks that `name` is a plain SQL identifier: `[a-z_][a-z0-9_]{0,62}`.
pub(crate) fn validate_identifier(name: &str) -> std::result::Result<(), &'static str> {
    let mut chars = name.chars();
    let ok_first = chars
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c == '_');
    let ok_rest = chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if ok_first && ok_rest && name.len() <= 63 {
        Ok(())
    } else {
        Err("must be a lowercase identifier: letters, digits and _, at most 63 characters")
    }
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
            ("[keys]\nprovider = \"kms\"", "keys.provider"),
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
            assert!(check_transit_addr(addr).is_ok(), "{addr}");
        }
    }

    #[test]
    fn missing_file_is_an_error() {
        let err = Config::load(Some(Path::new("/nonexistent/clarity.toml"))).unwrap_err();
        assert!(err.to_string().contains("/nonexistent/clarity.toml"));
    }
}
