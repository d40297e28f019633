//! Crash safety (issue 10): a write-heavy load of patients, records and
//! logins against the real server, which is killed with SIGKILL at random
//! moments and restarted on the same data. After every kill: the database
//! passes its integrity check (SQLite), every audit chain verifies
//! (`clarity audit verify`, S-AUD-3), and after every restart every write
//! acknowledged to the client is present, whole and decrypts, with the
//! exact content and version acknowledged (or a later one the client sent:
//! a write in flight at the kill may have committed). Acknowledged logins
//! keep their sessions. No lost update (S-INT-2). Every stored version of
//! a patient or record has exactly one successful audit event and every
//! such event its version (S-AUD-1, S-AUD-2: a change and its event commit
//! together).
//!
//! Kills: `CLARITY_TEST_CRASH_KILLS_SQLITE` (default 10) and
//! `CLARITY_TEST_CRASH_KILLS_POSTGRES` (default 5); the full run in
//! docs/RELIABILITY.md uses 50 and 20. The
//! seed is printed; `CLARITY_TEST_SEED` replays it.

mod support;

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use clarity_core::testing::service_var;
use clarity_tests::Server;
use reqwest::StatusCode;
use serde_json::json;
use support::{Api, LOAD_ENV, Ledger, Rng, Tracked, patient_body, record_body};

const CLINICIAN: &str = "crash-clinician@reliability.example";
const WRITERS: usize = 6;

fn kills(var: &str, default: u64) -> u64 {
    std::env::var(var)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// One writer's share of the objects and what it learns in one round.
#[derive(Default)]
struct Share {
    patients: Vec<(String, Tracked)>,
    records: Vec<(String, Tracked)>,
    logins: Vec<String>,
    acked: u64,
}

/// Writes until the server stops answering or `stop` is set.
async fn writer(
    api: Api,
    token: String,
    mut share: Share,
    mut rng: Rng,
    tag: String,
    stop: Arc<AtomicBool>,
) -> Share {
    let mut n = 0u64;
    while !stop.load(Ordering::Relaxed) {
        n += 1;
        let op = rng.range(0, 10);
        let answered = match op {
            0..=2 => {
                let body = patient_body(&format!("MRN-{tag}-{n}"), n);
                match api
                    .try_call("POST", "/v1/patients", Some(&token), None, Some(&body))
                    .await
                {
                    Ok(r) => {
                        assert_eq!(r.status, StatusCode::CREATED, "create patient: {}", r.body);
                        let id = r.body["id"].as_str().expect("id").to_string();
                        let tracked = Tracked {
                            acked_version: 1,
                            acked: body.clone(),
                            attempts: [(1, body)].into(),
                        };
                        share.patients.push((id, tracked));
                        share.acked += 1;
                        true
                    }
                    Err(_) => false,
                }
            }
            3..=5 if !share.patients.is_empty() => {
                let i = rng.range(0, share.patients.len() as u64) as usize;
                let (id, tracked) = &mut share.patients[i];
                let mrn = tracked.acked["mrn"].as_str().expect("mrn").to_string();
                let body = patient_body(&mrn, n);
                let version = tracked.acked_version;
                tracked.attempts.insert(version + 1, body.clone());
                let path = format!("/v1/patients/{id}");
                match api
                    .try_call("PUT", &path, Some(&token), Some(version), Some(&body))
                    .await
                {
                    Ok(r) => {
                        assert_eq!(r.status, StatusCode::OK, "update patient: {}", r.body);
                        assert_eq!(r.body["version"], version + 1);
                        tracked.acked_version = version + 1;
                        tracked.acked = body;
                        share.acked += 1;
                        true
                    }
                    Err(_) => false,
                }
            }
            6..=7 if !share.patients.is_empty() => {
                let i = rng.range(0, share.patients.len() as u64) as usize;
                let path = format!("/v1/patients/{}/records", share.patients[i].0);
                let body = record_body(n);
                match api
                    .try_call("POST", &path, Some(&token), None, Some(&body))
                    .await
                {
                    Ok(r) => {
                        assert!(
                            r.status.is_success(),
                            "create record: {} {}",
                            r.status,
                            r.body
                        );
                        let id = r.body["id"].as_str().expect("id").to_string();
                        let tracked = Tracked {
                            acked_version: 1,
                            acked: body.clone(),
                            attempts: [(1, body)].into(),
                        };
                        share.records.push((id, tracked));
                        share.acked += 1;
                        true
                    }
                    Err(_) => false,
                }
            }
            8 if !share.records.is_empty() => {
                let i = rng.range(0, share.records.len() as u64) as usize;
                let (id, tracked) = &mut share.records[i];
                let full = record_body(n);
                let version = tracked.acked_version;
                tracked.attempts.insert(version + 1, full.clone());
                let path = format!("/v1/records/{id}");
                let body = json!({"data": full["data"]});
                match api
                    .try_call("PUT", &path, Some(&token), Some(version), Some(&body))
                    .await
                {
                    Ok(r) => {
                        assert_eq!(r.status, StatusCode::OK, "update record: {}", r.body);
                        tracked.acked_version = version + 1;
                        tracked.acked = full;
                        share.acked += 1;
                        true
                    }
                    Err(_) => false,
                }
            }
            _ => {
                let body = json!({"email": CLINICIAN, "password": support::PASSWORD});
                match api
                    .try_call("POST", "/v1/auth/login", None, None, Some(&body))
                    .await
                {
                    Ok(r) => {
                        assert_eq!(r.status, StatusCode::OK, "login: {}", r.body);
                        share
                            .logins
                            .push(r.body["access_token"].as_str().expect("token").to_string());
                        share.acked += 1;
                        true
                    }
                    Err(_) => false,
                }
            }
        };
        if !answered {
            break;
        }
    }
    share
}

/// Load, SIGKILL at a random moment, check, restart; `rounds` times.
/// Where the test's database is, to query it directly.
enum Db<'a> {
    Sqlite(&'a Path),
    Postgres { url: &'a str, schema: &'a str },
}

impl Db<'_> {
    /// One integer from `query`, run by the database's own shell.
    fn scalar(&self, query: &str) -> i64 {
        let output = match self {
            Db::Sqlite(db) => std::process::Command::new("sqlite3")
                .arg(db)
                .arg(query)
                .output(),
            Db::Postgres { url, schema } => std::process::Command::new("psql")
                .arg(url)
                .args([
                    "-qAt",
                    "-c",
                    &format!("SET search_path TO {schema}"),
                    "-c",
                    query,
                ])
                .output(),
        }
        .expect("the database shell (sqlite3 or psql) is required");
        let text = String::from_utf8_lossy(&output.stdout);
        text.trim().parse().unwrap_or_else(|_| {
            panic!(
                "{query}: {text} {}",
                String::from_utf8_lossy(&output.stderr)
            )
        })
    }

    /// S-AUD-1, S-AUD-2: every stored version of a patient or record has
    /// exactly one successful audit event, and every successful write event
    /// its version: a change and its event commit together, whenever the
    /// kill came.
    fn assert_writes_match_events(&self) {
        for (table, create, update) in [
            ("patients", "patient.create", "patient.update"),
            ("records", "record.create", "record.update"),
        ] {
            let versions = self.scalar(&format!("SELECT COALESCE(SUM(version), 0) FROM {table}"));
            let events = self.scalar(&format!(
                "SELECT COUNT(*) FROM audit_events \
                 WHERE subtype IN ('{create}', '{update}') AND outcome = '0'"
            ));
            assert_eq!(
                versions, events,
                "{table}: {versions} stored versions but {events} successful write events"
            );
        }
    }
}

async fn crash_loop(data_dir: &Path, env: &[(&str, &str)], rounds: u64, db: Db<'_>, label: &str) {
    let mut rng = Rng::from_env(label);
    let started = Instant::now();
    let server = Server::start(data_dir, env);
    let api = Api::new(&server);
    let admin = api.bootstrap(&server).await;
    let (_, clinician) = api.user(&admin, CLINICIAN, &["clinician"]).await;
    drop(server);
    let mut ledger = Ledger::default();
    for round in 0..rounds {
        let server = Server::start(data_dir, env);
        let api = Api::new(&server);
        ledger.check(&api, &clinician).await;
        // Share the known objects out among the writers.
        let mut shares: Vec<Share> = (0..WRITERS).map(|_| Share::default()).collect();
        for (i, (id, t)) in ledger.patients.drain().enumerate() {
            shares[i % WRITERS].patients.push((id, t));
        }
        for (i, (id, t)) in ledger.records.drain().enumerate() {
            shares[i % WRITERS].records.push((id, t));
        }
        let stop = Arc::new(AtomicBool::new(false));
        let tasks: Vec<_> = shares
            .into_iter()
            .enumerate()
            .map(|(w, share)| {
                let seed = Rng::seeded(rng.next());
                tokio::spawn(writer(
                    api.clone(),
                    clinician.clone(),
                    share,
                    seed,
                    format!("{round}-{w}"),
                    stop.clone(),
                ))
            })
            .collect();
        tokio::time::sleep(Duration::from_millis(rng.range(100, 900))).await;
        drop(server); // SIGKILL, then reaped
        stop.store(true, Ordering::Relaxed);
        for task in tasks {
            let share = task.await.expect("writer");
            ledger.patients.extend(share.patients);
            ledger.records.extend(share.records);
            // Keep a few logins per round: each is checked after every restart.
            ledger.logins.extend(share.logins.into_iter().take(2));
            ledger.acked_writes += share.acked;
        }
        if let Db::Sqlite(path) = db {
            support::sqlite_integrity(path);
        }
        support::audit_verify(data_dir, env);
        db.assert_writes_match_events();
    }
    let server = Server::start(data_dir, env);
    let api = Api::new(&server);
    ledger.check(&api, &clinician).await;
    let (clean, _) = server.terminate();
    assert!(clean, "clean shutdown after the crash rounds");
    let verified = support::audit_verify(data_dir, env);
    println!(
        "{label}: {rounds} SIGKILLs survived in {:.0?}; {} writes acknowledged, {} checks of acknowledged state, \
         {} patients, {} records, {} login sessions kept; {}",
        started.elapsed(),
        ledger.acked_writes,
        ledger.checked_writes,
        ledger.patients.len(),
        ledger.records.len(),
        ledger.logins.len(),
        verified.lines().last().unwrap_or_default()
    );
    assert!(
        ledger.acked_writes > rounds,
        "the load wrote too little to mean anything"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite_survives_sigkill_under_write_load() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    crash_loop(
        &data,
        LOAD_ENV,
        kills("CLARITY_TEST_CRASH_KILLS_SQLITE", 10),
        Db::Sqlite(&data.join("clarity.db")),
        "crash/sqlite",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_survives_sigkill_under_write_load() {
    let Some(url) = service_var("CLARITY_TEST_POSTGRES_URL", "PostgreSQL") else {
        return;
    };
    let schema = format!("crash_{}", uuid::Uuid::new_v4().simple());
    let _guard = DropSchema(url.clone(), schema.clone());
    let mut env: Vec<(&str, &str)> = LOAD_ENV.to_vec();
    env.extend([
        ("CLARITY_STORE_BACKEND", "postgres"),
        ("CLARITY_STORE_POSTGRES_URL", url.as_str()),
        ("CLARITY_STORE_POSTGRES_SCHEMA", schema.as_str()),
        ("CLARITY_STORE_POOL_SIZE", "4"),
    ]);
    let dir = tempfile::tempdir().expect("tempdir");
    let rounds = kills("CLARITY_TEST_CRASH_KILLS_POSTGRES", 5);
    crash_loop(
        &dir.path().join("data"),
        &env,
        rounds,
        Db::Postgres {
            url: &url,
            schema: &schema,
        },
        "crash/postgres",
    )
    .await;
}

/// Drops the test's PostgreSQL schema at the end.
struct DropSchema(String, String);

impl Drop for DropSchema {
    fn drop(&mut self) {
        let _ = std::process::Command::new("psql")
            .arg(&self.0)
            .args([
                "-qAtc",
                &format!("DROP SCHEMA IF EXISTS {} CASCADE", self.1),
            ])
            .status();
    }
}
