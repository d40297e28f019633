//! `clarity-probe`: a container health check that needs no shell and no curl.
//!
//! The runtime image has neither (it is distroless), so Docker's
//! `HEALTHCHECK` and Compose's `healthcheck` run this instead. It sends one
//! `GET /health/ready` (or `/health/live` with `--live`) over plaintext
//! HTTP/1.1 to the address in `CLARITY_LISTEN` (an unspecified address such
//! as `0.0.0.0` means loopback) and exits 0 on a 200 answer, 1 otherwise.
//! Kubernetes, ECS behind an ALB and other orchestrators probe the endpoints
//! over the network and do not need it.
//!
//! A server with `tls_cert` set speaks only TLS: give the probe the CA that
//! signed its certificate (`--ca FILE`, or `CLARITY_PROBE_CA`) and it speaks
//! TLS 1.2/1.3, checking the certificate against that CA for the address it
//! connects to (the loopback address, for a server on every interface).
//!
//! Usage: `clarity-probe [--live] [--ca FILE] [ADDR]`.

use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpStream};
use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;

/// How long connecting, writing and reading may each take.
const TIMEOUT: Duration = Duration::from_secs(3);

fn main() -> ExitCode {
    let mut path = "/health/ready";
    let mut addr = std::env::var("CLARITY_LISTEN").unwrap_or_else(|_| "127.0.0.1:8080".into());
    let mut ca = std::env::var_os("CLARITY_PROBE_CA").filter(|v| !v.is_empty());
    let mut args = std::env::args_os().skip(1);
    while let Some(arg) = args.next() {
        match arg.to_str() {
            Some("--live") => path = "/health/live",
            Some("--ca") => match args.next() {
                Some(file) => ca = Some(file),
                None => {
                    eprintln!("clarity-probe: --ca needs a file");
                    return ExitCode::FAILURE;
                }
            },
            Some("-h" | "--help") => {
                println!(
                    "usage: clarity-probe [--live] [--ca FILE] [ADDR]  \
                     (ADDR defaults to $CLARITY_LISTEN, FILE to $CLARITY_PROBE_CA)"
                );
                return ExitCode::SUCCESS;
            }
            _ => addr = arg.to_string_lossy().into_owned(),
        }
    }
    match probe(&addr, path, ca.as_deref().map(Path::new)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("clarity-probe: {path} on {addr}: {message}");
            ExitCode::FAILURE
        }
    }
}

/// Sends one request, over TLS when a CA is given, and checks the status line.
fn probe(addr: &str, path: &str, ca: Option<&Path>) -> Result<(), String> {
    let mut target: SocketAddr = addr.parse().map_err(|e| format!("not an address ({e})"))?;
    // The server may listen on every interface; the probe runs beside it.
    if target.ip().is_unspecified() {
        target.set_ip(match target.ip() {
            IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::LOCALHOST),
            IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::LOCALHOST),
        });
    }
    let socket =
        TcpStream::connect_timeout(&target, TIMEOUT).map_err(|e| format!("connect: {e}"))?;
    socket
        .set_read_timeout(Some(TIMEOUT))
        .and_then(|()| socket.set_write_timeout(Some(TIMEOUT)))
        .map_err(|e| format!("socket: {e}"))?;
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {target}\r\nConnection: close\r\nUser-Agent: clarity-probe\r\n\r\n"
    );
    match ca {
        None => exchange(socket, &request),
        Some(ca) => {
            let connection = rustls::ClientConnection::new(tls_config(ca)?, target.ip().into())
                .map_err(|e| format!("TLS: {e}"))?;
            exchange(rustls::StreamOwned::new(connection, socket), &request)
        }
    }
}

/// A TLS 1.2/1.3 client that trusts the certificates in `ca` only.
fn tls_config(ca: &Path) -> Result<Arc<rustls::ClientConfig>, String> {
    let mut roots = rustls::RootCertStore::empty();
    let certs = CertificateDer::pem_file_iter(ca)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|e| format!("CA file {}: {e}", ca.display()))?;
    let (added, _) = roots.add_parsable_certificates(certs);
    if added == 0 {
        return Err(format!("CA file {}: holds no certificate", ca.display()));
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| format!("TLS setup: {e}"))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

/// Writes the request on `stream` and reads the status line of the answer.
fn exchange(mut stream: impl Read + Write, request: &str) -> Result<(), String> {
    stream
        .write_all(request.as_bytes())
        .map_err(|e| format!("write: {e}"))?;
    // The status line is all that matters; the body is a few bytes of JSON.
    let mut head = [0u8; 64];
    let mut read = 0;
    while read < head.len() {
        match stream.read(&mut head[read..]) {
            Ok(0) => break,
            Ok(n) => read += n,
            Err(e) => return Err(format!("read: {e}")),
        }
        if head[..read].contains(&b'\n') {
            break;
        }
    }
    let line = String::from_utf8_lossy(&head[..read]);
    let status = line.lines().next().unwrap_or_default();
    if status.starts_with("HTTP/1.1 200 ") || status.starts_with("HTTP/1.0 200 ") {
        Ok(())
    } else if status.is_empty() {
        Err("no answer".into())
    } else {
        Err(format!("answered {status:?}"))
    }
}
