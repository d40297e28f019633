//! TLS for the server (S-TLS-1): rustls, TLS 1.2 and 1.3 only, HTTP/2 or
//! HTTP/1.1 by ALPN, from a PEM certificate chain and key.

use std::path::Path;
use std::sync::Arc;

use clarity_core::{Error, Result};
use rustls::ServerConfig;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::TlsAcceptor;

/// An acceptor for the configured certificate and key.
///
/// # Errors
/// [`Error::Config`] naming `tls_cert` or `tls_key` when they cannot be read
/// or do not belong together; [`Error::Key`] when the key file fails the
/// secret-file rule.
pub(crate) fn acceptor(cert: &Path, key: &Path) -> Result<TlsAcceptor> {
    let chain = CertificateDer::pem_file_iter(cert)
        .and_then(|certs| certs.collect::<std::result::Result<Vec<_>, _>>())
        .map_err(|_| Error::config("tls_cert", "is not a PEM certificate chain"))?;
    if chain.is_empty() {
        return Err(Error::config("tls_cert", "holds no certificate"));
    }
    // A secret file like the keyring: read under the one rule (S-KEY-1).
    let pem = clarity_core::crypto::read_secret_file("tls_key", key)?;
    let key = PrivateKeyDer::from_pem_slice(&pem)
        .map_err(|_| Error::config("tls_key", "is not a PEM private key"))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| Error::internal(format!("TLS setup: {e}")))?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(|_| Error::config("tls_key", "does not match the certificate in tls_cert"))?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}
