//! Connection hygiene against the real binary (S-NET-1): a connection that
//! sends no request head is closed after the header timeout, one address
//! cannot hold more connections than its cap, and a body declared larger
//! than the limit is refused at once, before it is sent.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use clarity_tests::Server;

fn connect(server: &Server) -> TcpStream {
    let url = server.url("");
    let address = url.trim_start_matches("http://").trim_end_matches('/');
    let stream = TcpStream::connect(address).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .expect("read timeout");
    stream
}

/// Reads until the server closes the connection; what it sent.
fn read_to_close(stream: &mut TcpStream) -> String {
    let mut out = Vec::new();
    let _ = stream.read_to_end(&mut out);
    String::from_utf8_lossy(&out).into_owned()
}

// S-NET-1
#[test]
fn a_silent_connection_is_closed_after_the_header_timeout() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(&dir.path().join("data"), &[]);
    let mut silent = connect(&server);
    let started = Instant::now();
    let said = read_to_close(&mut silent);
    let waited = started.elapsed();
    assert!(said.is_empty(), "{said}");
    assert!(
        waited >= Duration::from_secs(9) && waited < Duration::from_secs(15),
        "closed after {waited:?}"
    );
}

// S-NET-1
#[test]
fn one_address_holds_at_most_its_cap_of_connections() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(
        &dir.path().join("data"),
        &[("CLARITY_MAX_CONNECTIONS_PER_ADDRESS", "3")],
    );
    let held: Vec<TcpStream> = (0..3).map(|_| connect(&server)).collect();
    let mut extra = connect(&server);
    let started = Instant::now();
    let said = read_to_close(&mut extra);
    assert!(said.is_empty(), "{said}");
    assert!(started.elapsed() < Duration::from_secs(5), "closed at once");
    // A place freed is a place to use.
    drop(held);
    std::thread::sleep(Duration::from_millis(300));
    let mut next = connect(&server);
    next.write_all(b"GET /health/live HTTP/1.1\r\nHost: clarity\r\nConnection: close\r\n\r\n")
        .expect("send");
    let answer = read_to_close(&mut next);
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
}

// S-NET-1, S-IN-1 (the size limit)
#[test]
fn a_declared_oversized_body_is_refused_at_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(&dir.path().join("data"), &[]);
    let mut stream = connect(&server);
    stream
        .write_all(
            b"POST /v1/auth/login HTTP/1.1\r\nHost: clarity\r\nContent-Type: application/json\r\n\
              Content-Length: 100000000\r\nConnection: close\r\n\r\n{",
        )
        .expect("send");
    let started = Instant::now();
    let answer = read_to_close(&mut stream);
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    assert!(answer.contains("payload_too_large"), "{answer}");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "answered at once, not after the body timeout"
    );
}
