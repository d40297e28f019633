//! TLS client settings shared by every outbound connection Clarity makes
//! itself (PostgreSQL, audit sinks): TLS 1.2 and 1.3 with the ring
//! provider, the server verified against the CA certificates an operator
//! names.

use std::path::Path;
use std::sync::Arc;

use rustls::RootCertStore;
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;

use crate::error::{Error, Result};

/// The CA certificates in the PEM file `path`; errors name the setting
/// `key` and the file.
///
/// # Errors
/// [`Error::Config`] when the file cannot be read or holds no usable CA
/// certificate.
pub(crate) fn roots_from_pem(path: &Path, key: &str) -> Result<RootCertStore> {
    let unreadable = |why: String| Error::config(key, format!("{}: {why}", path.display()));
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(path).map_err(|e| unreadable(e.to_string()))? {
        let cert = cert.map_err(|e| unreadable(e.to_string()))?;
        roots
            .add(cert)
            .map_err(|e| unreadable(format!("not a usable CA certificate: {e}")))?;
    }
    if roots.is_empty() {
        return Err(unreadable("holds no certificate".into()));
    }
    Ok(roots)
}

/// TLS 1.2 and 1.3 with the ring provider, the server verified against
/// `roots`, no client certificate.
///
/// # Errors
/// [`Error::Internal`] if the provider refuses the protocol versions.
pub(crate) fn client_config(roots: RootCertStore) -> Result<rustls::ClientConfig> {
    Ok(rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| Error::internal(format!("TLS settings: {e}")))?
    .with_root_certificates(roots)
    .with_no_client_auth())
}

/// Whether `host` (a name, an IP address, or an IPv6 address in brackets)
/// is this machine: `localhost` or a loopback address.
pub(crate) fn is_loopback_host(host: &str) -> bool {
    host == "localhost"
        || host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// Whether Clarity may connect to `url`: `https`, or `http` to a loopback
/// host only (a service on the same machine, in development and tests), so
/// that nothing leaves the machine in clear (S-NET-1).
pub(crate) fn acceptable_url(url: &str) -> bool {
    let Ok(parsed) = reqwest::Url::parse(url) else {
        return false;
    };
    match parsed.scheme() {
        "https" => parsed.host().is_some(),
        "http" => parsed.host_str().is_some_and(is_loopback_host),
        _ => false,
    }
}
