//! PostgreSQL over TLS (S-TLS-1, the database's side). A private PostgreSQL
//! with a certificate for `localhost` signed by a test CA accepts TCP
//! connections over TLS only (`hostnossl … reject`). With
//! `store.postgres_ca_cert` naming that CA, the server, its invalidation
//! channel and backups work, and every TCP session PostgreSQL sees is TLS
//! 1.2 or 1.3; a certificate from another CA, or one that does not name the
//! host in the URL, is refused at start without the password in the
//! message; and without a CA, `sslmode=require` is refused as unverifiable.

mod support;

use std::path::Path;
use std::time::{Duration, Instant};

use clarity_tests::Server;
use serde_json::Value;
use support::private_postgres::PrivatePostgres;
use support::{Api, LOAD_ENV, record_body, skip_or_fail};

/// The password in every URL: it must never show in an error.
const PASSWORD: &str = "pg-secret-never-shown";

/// A CA and, signed by it, a certificate for `localhost` with its key.
struct Pki {
    ca_pem: String,
    server_pem: String,
    server_key_pem: String,
}

fn ca() -> (rcgen::CertifiedIssuer<'static, rcgen::KeyPair>, String) {
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("ca params");
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "Clarity test CA");
    let issuer =
        rcgen::CertifiedIssuer::self_signed(params, rcgen::KeyPair::generate().expect("key"))
            .expect("ca");
    let pem = issuer.pem();
    (issuer, pem)
}

fn pki() -> Pki {
    let (issuer, ca_pem) = ca();
    let key = rcgen::KeyPair::generate().expect("key");
    let params = rcgen::CertificateParams::new(vec!["localhost".to_string()]).expect("params");
    let cert = params.signed_by(&key, &issuer).expect("server certificate");
    Pki {
        ca_pem,
        server_pem: cert.pem(),
        server_key_pem: key.serialize_pem(),
    }
}

/// The private server, TLS only over TCP; `None` when PostgreSQL's server
/// binaries are missing.
fn tls_only_postgres(pki: &Pki) -> Option<PrivatePostgres> {
    let pg = PrivatePostgres::init()?;
    pg.configure(
        "ssl = on\nssl_cert_file = 'server.crt'\nssl_key_file = 'server.key'\n\
         ssl_min_protocol_version = 'TLSv1.2'\npassword_encryption = 'scram-sha-256'",
        &[
            ("server.crt", pki.server_pem.as_str()),
            ("server.key", pki.server_key_pem.as_str()),
        ],
        Some(
            "local all all trust\n\
             hostnossl all all 0.0.0.0/0 reject\n\
             hostssl all all 127.0.0.1/32 trust\n",
        ),
    );
    pg.start_again();
    Some(pg)
}

/// TCP sessions as PostgreSQL sees them: (client address, TLS, version),
/// asked over the Unix socket, which is not TCP and so not listed.
async fn tcp_sessions(pg: &PrivatePostgres) -> Vec<(String, bool, Option<String>)> {
    let mut config = tokio_postgres::Config::new();
    config
        .host_path(pg.socket_dir())
        .port(pg.port())
        .user("postgres")
        .dbname("postgres");
    let (client, connection) = config
        .connect(tokio_postgres::NoTls)
        .await
        .expect("local socket");
    tokio::spawn(connection);
    client
        .query(
            "SELECT host(a.client_addr), s.ssl, s.version \
             FROM pg_stat_activity a JOIN pg_stat_ssl s USING (pid) \
             WHERE a.backend_type = 'client backend' AND a.client_addr IS NOT NULL",
            &[],
        )
        .await
        .expect("pg_stat_ssl")
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect()
}

fn write(dir: &Path, name: &str, contents: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, contents).expect("write");
    path.to_str().expect("utf-8").to_string()
}

// S-TLS-1
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verified_tls_to_postgres_for_the_store_the_channel_and_backups() {
    let pki = pki();
    let Some(pg) = tls_only_postgres(&pki) else {
        return skip_or_fail("PostgreSQL server binaries (initdb, pg_ctl) not found");
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let ca = write(dir.path(), "ca.pem", &pki.ca_pem);
    let url = format!("postgres://postgres@localhost:{}/postgres", pg.port());
    let mut env: Vec<(&str, &str)> = LOAD_ENV.to_vec();
    env.extend([
        ("CLARITY_STORE_BACKEND", "postgres"),
        ("CLARITY_STORE_POSTGRES_URL", url.as_str()),
        ("CLARITY_STORE_POSTGRES_CA_CERT", ca.as_str()),
        ("CLARITY_STORE_POOL_SIZE", "4"),
    ]);
    let data = dir.path().join("data");
    let server = Server::start(&data, &env);
    let api = Api::new(&server);
    let (token, id) = api
        .clinician_with_patient(&server, "tls@clarity.example", "TLS-1")
        .await;
    api.ok(
        "POST",
        &format!("/v1/patients/{id}/records"),
        Some(&token),
        Some(&record_body(1)),
    )
    .await;
    let read = api
        .ok("GET", &format!("/v1/patients/{id}"), Some(&token), None)
        .await;
    assert_eq!(read["mrn"], "TLS-1");

    // The LISTEN/NOTIFY channel is a connection of its own: readiness says
    // "ready" only once it is up.
    let deadline = Instant::now() + Duration::from_secs(15);
    let state: Value = loop {
        let reply = api.call("GET", "/health/ready", None, None, None).await;
        if reply.body["status"] == "ready" || Instant::now() > deadline {
            break reply.body;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(state["status"], "ready", "{state}");
    assert_eq!(state["cache"]["invalidation_channel_up"], true, "{state}");

    let sessions = tcp_sessions(&pg).await;
    assert!(
        sessions.len() >= 2,
        "the pool and the channel are connected: {sessions:?}"
    );
    for (addr, tls, version) in &sessions {
        assert!(*tls, "a plain TCP session from {addr}: {sessions:?}");
        assert!(
            matches!(version.as_deref(), Some("TLSv1.3" | "TLSv1.2")),
            "{sessions:?}"
        );
    }

    // Backups read over the same verified TLS.
    let archive = dir.path().join("backup.clarity");
    let archive = archive.to_str().expect("utf-8");
    let data_arg = data.to_str().expect("utf-8");
    for args in [
        ["--data-dir", data_arg, "backup", "-o", archive],
        ["--data-dir", data_arg, "backup", "verify", archive],
    ] {
        let (ok, out, err) = clarity_tests::run(&args, &env);
        assert!(ok, "{args:?} over TLS: {out} {err}");
    }
    let (clean, _) = server.terminate();
    assert!(clean, "clean shutdown");
}

// S-TLS-1
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unverifiable_postgres_is_refused_at_start() {
    let pki = pki();
    let Some(pg) = tls_only_postgres(&pki) else {
        return skip_or_fail("PostgreSQL server binaries (initdb, pg_ctl) not found");
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let right_ca = write(dir.path(), "ca.pem", &pki.ca_pem);
    let (_, other_pem) = ca();
    let other_ca = write(dir.path(), "other-ca.pem", &other_pem);
    let data = dir.path().join("data");
    let data_arg = data.to_str().expect("utf-8");
    let port = pg.port();
    let by_name = format!("postgres://postgres:{PASSWORD}@localhost:{port}/postgres");
    let by_address = format!("postgres://postgres:{PASSWORD}@127.0.0.1:{port}/postgres");
    // (URL, CA file, what the operator is told)
    let cases = [
        // Signed by a CA Clarity was not told to trust.
        (
            by_name.clone(),
            Some(other_ca.as_str()),
            "invalid peer certificate",
        ),
        // The right CA, but the certificate names localhost, not 127.0.0.1.
        (
            by_address,
            Some(right_ca.as_str()),
            "certificate not valid for name",
        ),
        // No CA: plain TCP, which this server rejects.
        (by_name.clone(), None, "no encryption"),
        // TLS demanded without a CA to verify the server: refused by Clarity.
        (
            format!("{by_name}?sslmode=require"),
            None,
            "set store.postgres_ca_cert",
        ),
    ];
    for (url, ca, reason) in &cases {
        let mut env = vec![
            ("CLARITY_STORE_BACKEND", "postgres"),
            ("CLARITY_STORE_POSTGRES_URL", url.as_str()),
        ];
        if let Some(ca) = ca {
            env.push(("CLARITY_STORE_POSTGRES_CA_CERT", ca));
        }
        let (ok, out, err) = clarity_tests::run(&["--data-dir", data_arg, "migrate"], &env);
        assert!(!ok, "{url} with CA {ca:?} must be refused: {out}");
        assert!(
            !out.contains(PASSWORD) && !err.contains(PASSWORD),
            "the password shows: {err}"
        );
        assert!(err.contains(reason), "{url} with CA {ca:?}: {err}");
    }
    assert!(
        tcp_sessions(&pg).await.is_empty(),
        "no session survived a refused start"
    );
}
