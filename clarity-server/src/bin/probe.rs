//! `clarity-probe`: a container health check that needs no shell and no curl.
//!
//! The runtime image has neither (it is distroless), so Docker's
//! `HEALTHCHECK` and Compose's `healthcheck` run this instead. It sends one
//! `GET /health/ready` (or `/health/live` with `--live`) over plaintext
//! HTTP/1.1 to the address in `CLARITY_LISTEN` (an unspecified address such
//! as `0.0.0.0` means loopback) and exits 0 on a 200 answer, 1 otherwise.
//! Kubernetes, ECS behind an ALB and other orchestrators probe the endpoints
//! over the network and do not need it. A server with `tls_cert` set speaks
//! only TLS: probe it from outside instead.
//!
//! Usage: `clarity-probe [--live] [ADDR]`.

use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpStream};
use std::process::ExitCode;
use std::time::Duration;

/// How long connecting, writing and reading may each take.
const TIMEOUT: Duration = Duration::from_secs(3);

fn main() -> ExitCode {
    let mut path = "/health/ready";
    let mut addr = std::env::var("CLARITY_LISTEN").unwrap_or_else(|_| "127.0.0.1:8080".into());
    for arg in std::env::args().skip(1) {
        match arg.as_str() {
            "--live" => path = "/health/live",
            "-h" | "--help" => {
                println!(
                    "usage: clarity-probe [--live] [ADDR]  (ADDR defaults to $CLARITY_LISTEN)"
                );
                return ExitCode::SUCCESS;
            }
            other => addr = other.to_string(),
        }
    }
    match probe(&addr, path) {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("clarity-probe: {path} on {addr}: {message}");
            ExitCode::FAILURE
        }
    }
}

/// Sends one request and checks the status line.
fn probe(addr: &str, path: &str) -> Result<(), String> {
    let mut target: SocketAddr = addr.parse().map_err(|e| format!("not an address ({e})"))?;
    // The server may listen on every interface; the probe runs beside it.
    if target.ip().is_unspecified() {
        target.set_ip(match target.ip() {
            IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::LOCALHOST),
            IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::LOCALHOST),
        });
    }
    let mut stream =
        TcpStream::connect_timeout(&target, TIMEOUT).map_err(|e| format!("connect: {e}"))?;
    stream
        .set_read_timeout(Some(TIMEOUT))
        .and_then(|()| stream.set_write_timeout(Some(TIMEOUT)))
        .map_err(|e| format!("socket: {e}"))?;
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {target}\r\nConnection: close\r\nUser-Agent: clarity-probe\r\n\r\n"
    );
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
