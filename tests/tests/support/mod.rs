//! Shared by the reliability tests (crash, outage, concurrency, soak): an
//! API client that keeps the client's side of the story, a seeded RNG, and
//! the checks run against a server after a fault.
#![allow(dead_code)] // each test file uses part of this module

pub(crate) mod private_postgres;

use std::collections::HashMap;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use clarity_tests::Server;
use reqwest::{Client, StatusCode};
use serde_json::{Value, json};

pub(crate) const ADMIN_EMAIL: &str = "admin@reliability.example";
pub(crate) const PASSWORD: &str = "faults must not lose a single write";

/// Outside CI, says why a test is skipped; in CI, fails: CI runs every test.
pub(crate) fn skip_or_fail(why: &str) {
    assert!(!clarity_core::testing::in_ci(), "{why}: CI runs every test");
    eprintln!("SKIPPED: {why}");
}

/// Settings for load: no rate limits (one client address, one account).
pub(crate) const LOAD_ENV: &[(&str, &str)] = &[("CLARITY_RATE_LIMIT_ENABLED", "false")];

/// SplitMix64: small, seeded, reproducible (the seed is printed).
#[derive(Debug, Clone)]
pub(crate) struct Rng(u64);

impl Rng {
    /// Seeded from `CLARITY_TEST_SEED`, else from the clock; prints the seed.
    pub(crate) fn from_env(name: &str) -> Rng {
        let seed = std::env::var("CLARITY_TEST_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| {
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_nanos() as u64)
                    .unwrap_or(1)
            });
        println!("{name}: seed {seed} (rerun with CLARITY_TEST_SEED={seed})");
        Rng(seed)
    }

    pub(crate) fn seeded(seed: u64) -> Rng {
        Rng(seed)
    }

    pub(crate) fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `lo..hi`.
    pub(crate) fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next() % (hi - lo).max(1)
    }
}

/// One HTTP answer.
#[derive(Debug)]
pub(crate) struct Reply {
    pub(crate) status: StatusCode,
    pub(crate) body: Value,
}

/// A client of one server address.
#[derive(Debug, Clone)]
pub(crate) struct Api {
    pub(crate) base: String,
    pub(crate) client: Client,
}

impl Api {
    pub(crate) fn new(server: &Server) -> Api {
        Api {
            base: server.url(""),
            client: Client::builder()
                .timeout(Duration::from_secs(20))
                .build()
                .expect("http client"),
        }
    }

    /// One request; `Err` when no answer came (server gone, connection cut).
    pub(crate) async fn try_call(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        if_match: Option<i64>,
        body: Option<&Value>,
    ) -> Result<Reply, reqwest::Error> {
        let method = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
        let mut request = self.client.request(method, format!("{}{path}", self.base));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        if let Some(version) = if_match {
            request = request.header("if-match", format!("\"{version}\""));
        }
        if let Some(body) = body {
            request = request.json(body);
        }
        let response = request.send().await?;
        let status = response.status();
        let text = response.text().await?;
        let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
        Ok(Reply { status, body })
    }

    /// A request that must be answered.
    pub(crate) async fn call(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        if_match: Option<i64>,
        body: Option<&Value>,
    ) -> Reply {
        self.try_call(method, path, token, if_match, body)
            .await
            .unwrap_or_else(|e| panic!("{method} {path}: no answer: {e}"))
    }

    /// A request that must succeed; its body.
    pub(crate) async fn ok(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<&Value>,
    ) -> Value {
        let reply = self.call(method, path, token, None, body).await;
        assert!(
            reply.status.is_success(),
            "{method} {path}: {} {}",
            reply.status,
            reply.body
        );
        reply.body
    }

    pub(crate) async fn login(&self, email: &str) -> String {
        let body = json!({"email": email, "password": PASSWORD});
        self.ok("POST", "/v1/auth/login", None, Some(&body)).await["access_token"]
            .as_str()
            .expect("access_token")
            .to_string()
    }

    /// The server's `/metrics` text.
    pub(crate) async fn metrics(&self) -> String {
        self.client
            .get(format!("{}/metrics", self.base))
            .send()
            .await
            .expect("metrics")
            .text()
            .await
            .expect("metrics text")
    }

    /// The value of the first `/metrics` line starting with `name` (labels
    /// included, e.g. `clarity_audit_sink_failures{sink="siem"}`).
    pub(crate) async fn metric(&self, name: &str) -> Option<f64> {
        self.metrics()
            .await
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
    }

    /// Creates the first admin with the setup code `server` printed; the
    /// admin's token.
    pub(crate) async fn bootstrap(&self, server: &Server) -> String {
        let code = server
            .stdout_lines
            .iter()
            .find_map(|l| l.strip_prefix("setup code: "))
            .expect("setup code on a fresh store");
        let body = json!({"setup_code": code, "email": ADMIN_EMAIL, "password": PASSWORD});
        self.ok("POST", "/v1/setup", None, Some(&body)).await;
        self.login(ADMIN_EMAIL).await
    }

    /// Bootstraps `server`, adds the clinician `email` and creates a patient
    /// with `mrn`; (the clinician's token, the patient's id).
    pub(crate) async fn clinician_with_patient(
        &self,
        server: &Server,
        email: &str,
        mrn: &str,
    ) -> (String, String) {
        let admin = self.bootstrap(server).await;
        let (_, token) = self.user(&admin, email, &["clinician"]).await;
        let patient = self
            .ok(
                "POST",
                "/v1/patients",
                Some(&token),
                Some(&patient_body(mrn, 0)),
            )
            .await;
        let id = patient["id"].as_str().expect("id").to_string();
        (token, id)
    }

    /// A new user with `roles`; (id, token).
    pub(crate) async fn user(&self, admin: &str, email: &str, roles: &[&str]) -> (String, String) {
        let body = json!({"email": email, "password": PASSWORD, "roles": roles});
        let user = self.ok("POST", "/v1/users", Some(admin), Some(&body)).await;
        let token = self.login(email).await;
        (user["id"].as_str().expect("user id").to_string(), token)
    }

    /// `/health/ready` status.
    pub(crate) async fn ready(&self) -> Option<StatusCode> {
        self.try_call("GET", "/health/ready", None, None, None)
            .await
            .ok()
            .map(|r| r.status)
    }
}

/// The current code of the authenticator whose base32 `secret` a TOTP
/// enrolment returned.
pub(crate) fn current_totp(secret: &str) -> String {
    let secret = totp_rs::Secret::Encoded(secret.into())
        .to_bytes()
        .expect("base32");
    totp_rs::TOTP::new(totp_rs::Algorithm::SHA1, 6, 1, 30, secret, None, "x".into())
        .expect("totp")
        .generate_current()
        .expect("code")
}

/// A patient profile; `n` varies the content so each version is distinct.
pub(crate) fn patient_body(mrn: &str, n: u64) -> Value {
    json!({
        "mrn": mrn, "given_name": format!("Given{n}"), "family_name": "Reliable",
        "birth_date": "1970-01-02", "sex": "other",
        "data": {"n": n, "note": format!("version payload {n}")}
    })
}

/// A record body.
pub(crate) fn record_body(n: u64) -> Value {
    json!({"kind": "note", "data": {"n": n, "text": format!("observation {n}")}})
}

/// What the client knows about one object it wrote: the last acknowledged
/// version and content, and every content it ever sent per version (an
/// unacknowledged write may still have committed).
#[derive(Debug, Clone, Default)]
pub(crate) struct Tracked {
    pub(crate) acked_version: i64,
    pub(crate) acked: Value,
    pub(crate) attempts: HashMap<i64, Value>,
}

/// The client's acknowledgement log.
#[derive(Debug, Default)]
pub(crate) struct Ledger {
    pub(crate) patients: HashMap<String, Tracked>,
    pub(crate) records: HashMap<String, Tracked>,
    /// Tokens of acknowledged logins.
    pub(crate) logins: Vec<String>,
    pub(crate) acked_writes: u64,
    pub(crate) checked_writes: u64,
}

impl Ledger {
    pub(crate) fn merge(&mut self, other: Ledger) {
        for (id, t) in other.patients {
            self.patients.insert(id, t);
        }
        for (id, t) in other.records {
            self.records.insert(id, t);
        }
        self.logins.extend(other.logins);
        self.acked_writes += other.acked_writes;
    }

    /// Every acknowledged write is present, whole and decrypts; the state is
    /// then brought up to what the server holds (a write in flight at the
    /// fault may have committed: it must then equal what was sent).
    pub(crate) async fn check(&mut self, api: &Api, token: &str) {
        for (kind, path) in [("patient", "/v1/patients/"), ("record", "/v1/records/")] {
            let map = if kind == "patient" {
                &mut self.patients
            } else {
                &mut self.records
            };
            let ids: Vec<String> = map.keys().cloned().collect();
            for chunk in ids.chunks(16) {
                let replies = futures_join(chunk.iter().map(|id| {
                    let api = api.clone();
                    let token = token.to_string();
                    let url = format!("{path}{id}");
                    async move { api.call("GET", &url, Some(&token), None, None).await }
                }))
                .await;
                for (id, reply) in chunk.iter().zip(replies) {
                    let tracked = map.get_mut(id).expect("tracked");
                    assert_eq!(
                        reply.status,
                        StatusCode::OK,
                        "{kind} {id} lost: {}",
                        reply.body
                    );
                    let version = reply.body["version"].as_i64().expect("version");
                    assert!(
                        version >= tracked.acked_version,
                        "{kind} {id}: acknowledged version {} but the server has {version}",
                        tracked.acked_version
                    );
                    let expected = if version == tracked.acked_version {
                        &tracked.acked
                    } else {
                        tracked.attempts.get(&version).unwrap_or_else(|| {
                            panic!("{kind} {id}: version {version} was never written by the client")
                        })
                    };
                    assert_same(kind, id, expected, &reply.body);
                    tracked.acked_version = version;
                    tracked.acked = expected.clone();
                    self.checked_writes += 1;
                }
            }
        }
        for token in &self.logins {
            let reply = api.call("GET", "/v1/me", Some(token), None, None).await;
            assert_eq!(
                reply.status,
                StatusCode::OK,
                "an acknowledged login's session was lost"
            );
        }
    }
}

/// Every field the client sent is in the answer, byte for byte.
fn assert_same(kind: &str, id: &str, sent: &Value, got: &Value) {
    let sent = sent.as_object().expect("object");
    for (key, value) in sent {
        if key == "kind" && kind == "record" {
            continue;
        }
        assert_eq!(
            &got[key], value,
            "{kind} {id}: field {key} differs (partial write?)"
        );
    }
}

async fn futures_join<F: std::future::Future<Output = Reply> + Send + 'static>(
    futures: impl Iterator<Item = F>,
) -> Vec<Reply> {
    let handles: Vec<_> = futures.map(tokio::spawn).collect();
    let mut out = Vec::with_capacity(handles.len());
    for handle in handles {
        out.push(handle.await.expect("check task"));
    }
    out
}

/// `PRAGMA integrity_check` of an SQLite file (with the sqlite3 shell).
pub(crate) fn sqlite_integrity(db: &Path) {
    let output = Command::new("sqlite3")
        .arg(db)
        .arg("PRAGMA integrity_check;")
        .output()
        .expect("sqlite3 is required for the integrity check (Debian: sqlite3)");
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success() && text.trim() == "ok",
        "integrity_check of {}: {text} {}",
        db.display(),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// `clarity audit verify` with the server's settings: every chain verifies.
pub(crate) fn audit_verify(data_dir: &Path, env: &[(&str, &str)]) -> String {
    let dir = data_dir.to_str().expect("utf-8 path");
    let (ok, out, err) = clarity_tests::run(&["--data-dir", dir, "audit", "verify"], env);
    assert!(ok, "audit verify failed after a fault:\n{out}\n{err}");
    out
}
