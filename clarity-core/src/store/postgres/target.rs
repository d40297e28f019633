//! [`PgTarget`]: where and how Clarity reaches PostgreSQL, shared by the
//! store's pool, the cache's LISTEN/NOTIFY channel and backup and restore.
//!
//! TLS (S-TLS-1, the database's side): with `store.postgres_ca_cert` set,
//! every connection requires TLS 1.2 or 1.3 (rustls) and verifies the
//! server's certificate against that CA and the URL's host name; a server
//! that offers no TLS, or another certificate, is refused. Without it,
//! connections are plain, and a URL asking for `sslmode=require` is refused
//! at start: TLS without verification would only look safe.

use std::path::Path;
use std::time::Duration;

use rustls::RootCertStore;
use tokio_postgres::config::SslMode;
use tokio_postgres_rustls::MakeRustlsConnect;

use crate::crypto::SecretString;
use crate::error::{Error, Result, causes};
use crate::store::{StoreConfig, validate_identifier};
use crate::tls::client_config;

/// How long a connection attempt may take unless the URL says otherwise.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// A PostgreSQL server to connect to: the parsed URL, the schema put first
/// on the search path, and the TLS settings.
#[derive(Clone)]
pub struct PgTarget {
    pg: tokio_postgres::Config,
    tls: MakeRustlsConnect,
    schema: Option<String>,
}

impl std::fmt::Debug for PgTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The parsed URL holds the password: only what is safe to show.
        f.debug_struct("PgTarget")
            .field("hosts", &self.pg.get_hosts())
            .field("tls", &(self.pg.get_ssl_mode() == SslMode::Require))
            .field("schema", &self.schema)
            .finish()
    }
}

impl PgTarget {
    /// The target `config` describes (`store.postgres_url`,
    /// `store.postgres_schema`, `store.postgres_ca_cert`).
    ///
    /// # Errors
    /// [`Error::Config`] when the URL is missing or malformed, or its
    /// `sslmode` contradicts the CA setting; [`Error::Config`] when the CA
    /// file cannot be read or holds no certificate.
    pub fn from_settings(settings: &StoreConfig) -> Result<PgTarget> {
        let url = settings.postgres_url.as_ref().ok_or_else(|| {
            Error::config("store.postgres_url", "required for the postgres backend")
        })?;
        PgTarget::new(
            url,
            settings.postgres_schema.as_deref(),
            settings.postgres_ca_cert.as_deref(),
        )
    }

    /// The target at `url`, with `schema` first on the search path when
    /// given, and TLS verified against the CA in `ca_cert` when given.
    ///
    /// # Errors
    /// As [`PgTarget::from_settings`].
    pub fn new(
        url: &SecretString,
        schema: Option<&str>,
        ca_cert: Option<&Path>,
    ) -> Result<PgTarget> {
        let mut pg: tokio_postgres::Config = url
            .expose()
            .parse()
            .map_err(|_| Error::config("store.postgres_url", "is not a valid PostgreSQL URL"))?;
        if pg.get_connect_timeout().is_none() {
            pg.connect_timeout(CONNECT_TIMEOUT);
        }
        let tls = match ca_cert {
            Some(path) => {
                if pg.get_ssl_mode() == SslMode::Disable {
                    return Err(Error::config(
                        "store.postgres_url",
                        "says sslmode=disable while store.postgres_ca_cert asks for TLS",
                    ));
                }
                pg.ssl_mode(SslMode::Require);
                verifying(path)?
            }
            None => {
                if pg.get_ssl_mode() == SslMode::Require {
                    return Err(Error::config(
                        "store.postgres_url",
                        "says sslmode=require: set store.postgres_ca_cert to the CA that \
                         signed the server's certificate, so that it can be verified",
                    ));
                }
                pg.ssl_mode(SslMode::Disable);
                // Never used with TLS disabled; one type serves both cases.
                MakeRustlsConnect::new(client_config(RootCertStore::empty())?)
            }
        };
        let mut target = PgTarget {
            pg,
            tls,
            schema: None,
        };
        if let Some(schema) = schema {
            target = target.in_schema(schema)?;
        }
        Ok(target)
    }

    /// The same server with `schema` first on the search path.
    ///
    /// # Errors
    /// [`Error::Config`] when `schema` is not a plain identifier.
    pub fn in_schema(&self, schema: &str) -> Result<PgTarget> {
        validate_identifier(schema).map_err(|m| Error::config("store.postgres_schema", m))?;
        let mut target = self.clone();
        target.pg.options(format!("-c search_path={schema}"));
        target.schema = Some(schema.to_string());
        Ok(target)
    }

    /// The schema first on the search path, if one was set.
    pub fn schema(&self) -> Option<&str> {
        self.schema.as_deref()
    }

    /// Whether connections require verified TLS.
    pub fn uses_tls(&self) -> bool {
        self.pg.get_ssl_mode() == SslMode::Require
    }

    /// The connection settings (URL, search path, TLS mode).
    pub(crate) fn pg(&self) -> &tokio_postgres::Config {
        &self.pg
    }

    /// The TLS connector matching [`PgTarget::pg`]'s mode.
    pub(crate) fn tls(&self) -> MakeRustlsConnect {
        self.tls.clone()
    }

    /// One connection; its driver runs on its own task until the client
    /// is dropped.
    ///
    /// # Errors
    /// [`Error::Unavailable`] when the server cannot be reached or refuses
    /// the connection (the cause is logged, without the URL).
    pub(crate) async fn connect(&self, purpose: &'static str) -> Result<tokio_postgres::Client> {
        let (client, connection) = self.pg.connect(self.tls()).await.map_err(|e| {
            tracing::warn!(error = %causes(&e), purpose, "PostgreSQL connection failed");
            Error::Unavailable {
                message: "the database is unreachable".into(),
            }
        })?;
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::warn!(error = %e, purpose, "PostgreSQL connection ended");
            }
        });
        Ok(client)
    }
}

/// A connector that trusts only the CA certificates in the PEM file `path`.
fn verifying(path: &Path) -> Result<MakeRustlsConnect> {
    let roots = crate::tls::roots_from_pem(path, "store.postgres_ca_cert")?;
    Ok(MakeRustlsConnect::new(client_config(roots)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url(s: &str) -> SecretString {
        SecretString::new(s.to_string())
    }

    fn ca_file() -> tempfile::NamedTempFile {
        let key = rcgen::KeyPair::generate().expect("key");
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let cert = params.self_signed(&key).expect("ca");
        let file = tempfile::NamedTempFile::new().expect("temp");
        std::fs::write(file.path(), cert.pem()).expect("write");
        file
    }

    // S-TLS-1: TLS is verified or not attempted, never unverified.
    #[test]
    fn without_a_ca_connections_are_plain_and_sslmode_require_is_refused() {
        let plain = PgTarget::new(&url("postgres://u@127.0.0.1/db"), None, None).expect("plain");
        assert!(!plain.uses_tls());
        assert_eq!(plain.pg().get_ssl_mode(), SslMode::Disable);
        let err = PgTarget::new(&url("postgres://u@h/db?sslmode=require"), None, None)
            .expect_err("unverifiable TLS");
        assert!(err.to_string().contains("store.postgres_ca_cert"), "{err}");
    }

    #[test]
    fn with_a_ca_tls_is_required_even_where_the_url_would_allow_plain() {
        let ca = ca_file();
        for u in [
            "postgres://u@h/db",
            "postgres://u@h/db?sslmode=prefer",
            "postgres://u@h/db?sslmode=require",
        ] {
            let t = PgTarget::new(&url(u), None, Some(ca.path())).expect("tls");
            assert!(t.uses_tls(), "{u}");
        }
        let err = PgTarget::new(
            &url("postgres://u@h/db?sslmode=disable"),
            None,
            Some(ca.path()),
        )
        .expect_err("contradiction");
        assert!(err.to_string().contains("sslmode=disable"), "{err}");
    }

    #[test]
    fn a_ca_file_without_certificates_is_refused_by_name() {
        let empty = tempfile::NamedTempFile::new().expect("temp");
        std::fs::write(empty.path(), "not a certificate\n").expect("write");
        let err = PgTarget::new(&url("postgres://u@h/db"), None, Some(empty.path()))
            .expect_err("no certificate");
        assert!(err.to_string().contains("store.postgres_ca_cert"), "{err}");
        assert!(err.to_string().contains("no certificate"), "{err}");
    }

    #[test]
    fn the_password_never_shows_and_schemas_are_checked() {
        let t = PgTarget::new(&url("postgres://u:hunter2@h/db"), Some("clarity"), None)
            .expect("target");
        assert!(!format!("{t:?}").contains("hunter2"));
        assert_eq!(t.schema(), Some("clarity"));
        assert!(t.in_schema("x; drop").is_err());
    }
}
