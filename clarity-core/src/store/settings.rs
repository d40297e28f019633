//! The `[store]` settings: which backend, where, and how it is tuned.

use std::fmt;
use std::path::PathBuf;

use serde::Deserialize;

use crate::crypto::SecretString;
use crate::error::{Error, Result};

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

impl StoreConfig {
    /// The SQLite database file: `sqlite_path`, else `clarity.db` in `data_dir`.
    pub fn sqlite_file(&self, data_dir: &std::path::Path) -> PathBuf {
        self.sqlite_path
            .clone()
            .unwrap_or_else(|| data_dir.join("clarity.db"))
    }

    /// Checks the `[store]` settings; errors name the key.
    ///
    /// # Errors
    /// [`Error::Config`] naming the first offending key.
    pub fn validate(&self) -> Result<()> {
        if self.backend == Backend::Postgres && self.postgres_url.is_none() {
            return Err(Error::config(
                "store.postgres_url",
                "required when store.backend is \"postgres\"",
            ));
        }
        if let Some(url) = &self.postgres_url {
            let url = url.expose();
            if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
                return Err(Error::config(
                    "store.postgres_url",
                    "must be a postgres:// or postgresql:// URL",
                ));
            }
        }
        if let Some(schema) = &self.postgres_schema {
            validate_identifier(schema).map_err(|m| Error::config("store.postgres_schema", m))?;
        }
        crate::crypto::readable_file("store.postgres_ca_cert", &self.postgres_ca_cert)?;
        if !(1..=1024).contains(&self.pool_size) {
            return Err(Error::config(
                "store.pool_size",
                "must be between 1 and 1024",
            ));
        }
        if !(1024..=64 * 1024 * 1024).contains(&self.max_document_bytes) {
            return Err(Error::config(
                "store.max_document_bytes",
                "must be between 1024 and 67108864",
            ));
        }
        Ok(())
    }
}
