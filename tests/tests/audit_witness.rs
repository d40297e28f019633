//! The audit witness against the real binary (S-AUD-7): after the audit
//! tables are emptied with SQL, `clarity audit verify` exits non-zero naming
//! the chain and its last witnessed sequence number, `GET /v1/audit/verify`
//! answers `ok: false`, and the server's scheduled verification raises the
//! alert within one interval; on SQLite and PostgreSQL.

mod support;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use clarity_tests::{Server, run};

use support::{ADMIN_EMAIL, Api};

/// Where the store is: SQLite in the data directory, or a PostgreSQL schema.
enum Db {
    Sqlite,
    Postgres { url: String, schema: String },
}

impl Db {
    fn env(&self) -> Vec<(&str, &str)> {
        let mut env = vec![
            ("CLARITY_RATE_LIMIT_ENABLED", "false"),
            ("CLARITY_AUDIT_VERIFY_INTERVAL_SECS", "2"),
        ];
        if let Db::Postgres { url, schema } = self {
            env.extend([
                ("CLARITY_STORE_BACKEND", "postgres"),
                ("CLARITY_STORE_POSTGRES_URL", url.as_str()),
                ("CLARITY_STORE_POSTGRES_SCHEMA", schema.as_str()),
            ]);
        }
        env
    }

    /// Runs `sql` on the store directly, as an attacker with database access.
    fn execute(&self, data: &Path, sql: &str) {
        let output = match self {
            Db::Sqlite => Command::new("sqlite3")
                .arg(data.join("clarity.db"))
                .arg(sql)
                .output()
                .expect("sqlite3 (Debian: sqlite3)"),
            Db::Postgres { url, schema } => Command::new("psql")
                .arg(url)
                .args(["-qAtc", &format!("SET search_path TO {schema}; {sql}")])
                .output()
                .expect("psql (Debian: postgresql-client)"),
        };
        assert!(
            output.status.success(),
            "{sql}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
}

impl Drop for Db {
    fn drop(&mut self) {
        if let Db::Postgres { url, schema } = self {
            let _ = Command::new("psql")
                .arg(url.as_str())
                .args(["-qAtc", &format!("DROP SCHEMA IF EXISTS {schema} CASCADE")])
                .status();
        }
    }
}

/// Waits up to `limit` for the metric `name` to read `want`.
async fn wait_for_metric(api: &Api, name: &str, want: f64, limit: Duration) {
    let started = Instant::now();
    loop {
        let got = api.metric(name).await;
        if got == Some(want) {
            return;
        }
        assert!(
            started.elapsed() < limit,
            "{name} is {got:?}, not {want}, after {limit:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn emptied_tables_are_reported(db: Db) {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let env = db.env();
    let server = Server::start(&data, &env);
    let api = Api::new(&server);
    let (clinician, patient) = api
        .clinician_with_patient(&server, "witnessed@example.org", "WIT-1")
        .await;
    for _ in 0..5 {
        api.ok(
            "GET",
            &format!("/v1/patients/{patient}"),
            Some(&clinician),
            None,
        )
        .await;
    }
    // The first scheduled verification finds the trail whole.
    wait_for_metric(
        &api,
        "clarity_audit_verify_ok ",
        1.0,
        Duration::from_secs(20),
    )
    .await;
    let admin = api.login(ADMIN_EMAIL).await;
    let before = api.ok("GET", "/v1/audit/verify", Some(&admin), None).await;
    assert_eq!(before["ok"], true, "{before}");
    let chain = before["chains"]
        .as_array()
        .expect("chains")
        .iter()
        .max_by_key(|c| c["events"].as_i64())
        .and_then(|c| c["chain_id"].as_str())
        .expect("the server's chain")
        .to_string();
    let (stopped, _) = server.terminate();
    assert!(stopped, "the server stops cleanly");

    // An attacker with database access empties the audit tables.
    db.execute(
        &data,
        "DELETE FROM audit_events; DELETE FROM audit_checkpoints;",
    );

    let dir_arg = data.to_str().expect("utf-8");
    let (ok, stdout, stderr) = run(&["--data-dir", dir_arg, "audit", "verify"], &env);
    assert!(!ok, "verify must fail: {stdout} {stderr}");
    let line = stdout
        .lines()
        .find(|l| {
            l.starts_with(&format!(
                "chain {chain}: FAILED at seq 1 (last witnessed seq "
            ))
        })
        .unwrap_or_else(|| panic!("the emptied chain is named: {stdout}"));
    assert!(line.contains("missing from the store"), "{line}");

    // The server, started again, answers ok: false and its scheduled
    // verification raises the alert within an interval or two.
    let server = Server::start(&data, &env);
    let api = Api::new(&server);
    let admin = api.login(ADMIN_EMAIL).await;
    wait_for_metric(
        &api,
        "clarity_audit_verify_ok ",
        0.0,
        Duration::from_secs(20),
    )
    .await;
    let alerts = api
        .metric("clarity_security_alerts{kind=\"AuditTampered\"}")
        .await
        .unwrap_or(0.0);
    assert!(alerts >= 1.0, "the tamper alert is raised: {alerts}");
    let after = api.ok("GET", "/v1/audit/verify", Some(&admin), None).await;
    assert_eq!(after["ok"], false, "{after}");
    let reported = after["chains"]
        .as_array()
        .expect("chains")
        .iter()
        .find(|c| c["chain_id"] == chain.as_str())
        .unwrap_or_else(|| panic!("the chain is reported: {after}"));
    assert_eq!(reported["ok"], false);
    assert!(
        reported["witnessed_seq"].as_i64().unwrap_or(0) >= 8,
        "{reported}"
    );
    server.terminate();
}

// S-AUD-7
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn emptied_audit_tables_are_reported_on_sqlite() {
    emptied_tables_are_reported(Db::Sqlite).await;
}

// S-AUD-7
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn emptied_audit_tables_are_reported_on_postgres() {
    let Ok(url) = std::env::var("CLARITY_TEST_POSTGRES_URL") else {
        support::skip_or_fail("PostgreSQL test not run: set CLARITY_TEST_POSTGRES_URL");
        return;
    };
    let schema = format!("aw_{}", uuid::Uuid::new_v4().simple());
    emptied_tables_are_reported(Db::Postgres { url, schema }).await;
}
