//! S-TLS-1: with a certificate configured the server speaks TLS 1.2/1.3
//! only, offers HTTP/2 by ALPN, sends HSTS, and refuses plaintext.

use std::os::unix::fs::PermissionsExt;
use std::sync::Arc;

use clarity_tests::Server;
use rustls::pki_types::ServerName;
use rustls_pki_types::CertificateDer;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

struct Tls {
    server: Server,
    cert: CertificateDer<'static>,
    _dir: tempfile::TempDir,
}

fn start() -> Tls {
    let dir = tempfile::tempdir().expect("tempdir");
    let issued =
        rcgen::generate_simple_self_signed(vec!["localhost".to_string(), "127.0.0.1".to_string()])
            .expect("certificate");
    let cert_path = dir.path().join("cert.pem");
    let key_path = dir.path().join("key.pem");
    std::fs::write(&cert_path, issued.cert.pem()).expect("write cert");
    std::fs::write(&key_path, issued.signing_key.serialize_pem()).expect("write key");
    // The key is a secret file: readable by its owner only (S-KEY-1).
    std::fs::set_permissions(&key_path, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    let ca_path = dir.path().join("ca.pem");
    std::fs::write(&ca_path, issued.cert.pem()).expect("write CA");
    // CLARITY_PROBE_CA is the health check's, set beside the server's
    // settings in a container: the server must start with it set.
    let env = [
        ("CLARITY_TLS_CERT", cert_path.to_str().expect("utf-8")),
        ("CLARITY_TLS_KEY", key_path.to_str().expect("utf-8")),
        ("CLARITY_PROBE_CA", ca_path.to_str().expect("utf-8")),
    ];
    let server = Server::start(&dir.path().join("data"), &env);
    assert!(
        server
            .stdout_lines
            .iter()
            .any(|l| l.starts_with("Listening on https://"))
    );
    Tls {
        server,
        cert: issued.cert.der().clone(),
        _dir: dir,
    }
}

/// Runs `clarity-probe` (beside `clarity`) with `args`; true when it exits 0.
fn probe(args: &[&str]) -> (bool, String) {
    let binary = clarity_tests::server_binary().with_file_name("clarity-probe");
    let out = std::process::Command::new(binary)
        .args(args)
        .env_remove("CLARITY_PROBE_CA")
        .env_remove("CLARITY_LISTEN")
        .output()
        .expect("run clarity-probe");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

// S-TLS-1: the container health check speaks TLS to a TLS-only server when
// given the CA, checks the certificate, and fails without it.
#[tokio::test]
async fn the_probe_checks_a_tls_server_against_its_ca() {
    let tls = start();
    let addr = tls.server.addr.to_string();
    let ca = tls._dir.path().join("ca.pem");
    let ca = ca.to_str().expect("utf-8");
    let (ok, err) = probe(&["--ca", ca, &addr]);
    assert!(ok, "ready over TLS: {err}");
    let (ok, err) = probe(&["--live", "--ca", ca, &addr]);
    assert!(ok, "live over TLS: {err}");

    // Plaintext to the TLS port gets no HTTP answer.
    let (ok, _) = probe(&[&addr]);
    assert!(!ok, "plaintext probe of a TLS server must fail");

    // A certificate from another CA is refused.
    let other = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_string()]).expect("cert");
    let other_ca = tls._dir.path().join("other-ca.pem");
    std::fs::write(&other_ca, other.cert.pem()).expect("write");
    let (ok, err) = probe(&["--ca", other_ca.to_str().expect("utf-8"), &addr]);
    assert!(!ok, "a server certificate from another CA must be refused");
    assert!(err.contains("TLS") || err.contains("certificate"), "{err}");

    // A CA file with no certificate is named as such.
    let empty = tls._dir.path().join("empty.pem");
    std::fs::write(&empty, "").expect("write");
    let (ok, err) = probe(&["--ca", empty.to_str().expect("utf-8"), &addr]);
    assert!(!ok && err.contains("holds no certificate"), "{err}");
}

fn connector(
    tls: &Tls,
    versions: &[&'static rustls::SupportedProtocolVersion],
    alpn: &[&[u8]],
) -> TlsConnector {
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(tls.cert.clone())
        .expect("trust the test certificate");
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(versions)
        .expect("versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    TlsConnector::from(Arc::new(config))
}

// S-TLS-1 S-HDR-1
#[tokio::test]
async fn tls_13_with_h2_by_alpn_and_hsts() {
    let tls = start();
    let name = ServerName::try_from("localhost").expect("name");

    let tcp = TcpStream::connect(tls.server.addr).await.expect("connect");
    let stream = connector(&tls, &[&rustls::version::TLS13], &[b"h2", b"http/1.1"])
        .connect(name.clone(), tcp)
        .await
        .expect("TLS 1.3 handshake");
    let (_, session) = stream.get_ref();
    assert_eq!(
        session.protocol_version(),
        Some(rustls::ProtocolVersion::TLSv1_3)
    );
    assert_eq!(session.alpn_protocol(), Some(&b"h2"[..]), "HTTP/2 by ALPN");
    drop(stream);

    // HTTP/1.1 over TLS 1.2 works too, and responses carry HSTS.
    let tcp = TcpStream::connect(tls.server.addr).await.expect("connect");
    let mut stream = connector(&tls, &[&rustls::version::TLS12], &[b"http/1.1"])
        .connect(name, tcp)
        .await
        .expect("TLS 1.2 handshake");
    stream
        .write_all(b"GET /health/live HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .await
        .expect("write");
    let mut response = Vec::new();
    let _ = stream.read_to_end(&mut response).await;
    let response = String::from_utf8_lossy(&response).to_lowercase();
    assert!(response.starts_with("http/1.1 200"), "{response}");
    assert!(
        response.contains("strict-transport-security: max-age="),
        "{response}"
    );
}

// S-TLS-1
#[tokio::test]
async fn plaintext_to_the_tls_port_gets_no_http() {
    let tls = start();
    let mut tcp = TcpStream::connect(tls.server.addr).await.expect("connect");
    tcp.write_all(b"GET /health/live HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await
        .expect("write");
    let mut answer = Vec::new();
    let read = tokio::time::timeout(
        std::time::Duration::from_secs(10),
        tcp.read_to_end(&mut answer),
    )
    .await;
    assert!(read.is_ok(), "the server closes the connection");
    assert!(
        !String::from_utf8_lossy(&answer).contains("HTTP/1.1 200"),
        "no HTTP over plaintext"
    );
}
