//! Outages under load (issue 10): the database goes away while clients
//! write, and comes back. A private PostgreSQL (initdb in a temporary
//! directory, on a free port; never the shared server) is stopped with
//! `pg_ctl stop -m immediate`; an SQLite data directory on a small tmpfs
//! runs out of space. In both: the server answers 503 in the one error shape
//! with a clear message (S-ERR-1), readiness reports the failure where the
//! probe can see it, nothing panics, no acknowledged write is lost, and
//! service comes back by itself within seconds once the fault ends.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use clarity_tests::Server;
use reqwest::StatusCode;
use serde_json::{Value, json};
use support::private_postgres::{PrivatePostgres, is_root};
use support::{Api, LOAD_ENV, skip_or_fail};

/// How long recovery may take at most (loopback, loaded 2-core machine).
const RECOVERY_BOUND: Duration = Duration::from_secs(30);

/// Writers that add records to one patient until stopped; they keep what was
/// acknowledged and count the 503s (each checked for the error shape).
struct Load {
    stop: Arc<AtomicBool>,
    unavailable: Arc<AtomicU64>,
    tasks: Vec<tokio::task::JoinHandle<Vec<(String, Value)>>>,
}

impl Load {
    fn start(api: &Api, token: &str, patient: &str, writers: usize, payload: usize) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let unavailable = Arc::new(AtomicU64::new(0));
        let tasks = (0..writers)
            .map(|w| {
                let (api, token, stop, unavailable) = (api.clone(), token.to_string(), stop.clone(), unavailable.clone());
                let path = format!("/v1/patients/{patient}/records");
                tokio::spawn(async move {
                    let mut acked = Vec::new();
                    let mut n = 0u64;
                    while !stop.load(Ordering::Relaxed) {
                        n += 1;
                        let body = json!({"kind": "note", "data": {"w": w, "n": n, "pad": "x".repeat(payload)}});
                        let reply = api.call("POST", &path, Some(&token), None, Some(&body)).await;
                        match reply.status {
                            StatusCode::CREATED => {
                                acked.push((reply.body["id"].as_str().expect("id").to_string(), body["data"].clone()));
                            }
                            StatusCode::SERVICE_UNAVAILABLE => {
                                let error = &reply.body["error"];
                                assert!(
                                    error["code"].is_string() && error["request_id"].is_string(),
                                    "503 in the error shape: {}",
                                    reply.body
                                );
                                assert!(!error["message"].as_str().unwrap_or_default().is_empty(), "a clear message");
                                unavailable.fetch_add(1, Ordering::Relaxed);
                                tokio::time::sleep(Duration::from_millis(20)).await;
                            }
                            other => panic!("during an outage: {other} {}", reply.body),
                        }
                    }
                    acked
                })
            })
            .collect();
        Load {
            stop,
            unavailable,
            tasks,
        }
    }

    async fn wait_for_503(&self) {
        let deadline = Instant::now() + RECOVERY_BOUND;
        while self.unavailable.load(Ordering::Relaxed) == 0 {
            assert!(
                Instant::now() < deadline,
                "writes kept succeeding during the outage"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    async fn finish(self) -> (Vec<(String, Value)>, u64) {
        self.stop.store(true, Ordering::Relaxed);
        let mut acked = Vec::new();
        for task in self.tasks {
            acked.extend(task.await.expect("writer"));
        }
        (acked, self.unavailable.load(Ordering::Relaxed))
    }
}

/// Every acknowledged record is there with its content.
async fn check_acked(api: &Api, token: &str, acked: &[(String, Value)]) {
    for (id, data) in acked {
        let reply = api
            .call("GET", &format!("/v1/records/{id}"), Some(token), None, None)
            .await;
        assert_eq!(
            reply.status,
            StatusCode::OK,
            "acknowledged record {id} lost: {}",
            reply.body
        );
        assert_eq!(&reply.body["data"], data, "record {id} content");
    }
}

/// Retries one write until it is acknowledged again.
async fn until_write_ok(api: &Api, token: &str, patient: &str, since: Instant) {
    let body = json!({"kind": "note", "data": {"after": "the fault"}});
    let path = format!("/v1/patients/{patient}/records");
    loop {
        let reply = api
            .call("POST", &path, Some(token), None, Some(&body))
            .await;
        if reply.status == StatusCode::CREATED {
            return;
        }
        assert!(
            since.elapsed() < RECOVERY_BOUND,
            "writes did not recover: {}",
            reply.body
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Polls until readiness is `want`; how long it took.
async fn until_ready(api: &Api, want: StatusCode) -> Duration {
    let start = Instant::now();
    while api.ready().await != Some(want) {
        assert!(
            start.elapsed() < RECOVERY_BOUND,
            "readiness did not become {want} within {RECOVERY_BOUND:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    start.elapsed()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_outage_answers_503_and_recovers_by_itself() {
    let Some(pg) = PrivatePostgres::start() else {
        return skip_or_fail(
            "PostgreSQL server binaries (initdb, pg_ctl) not found under /usr/lib/postgresql",
        );
    };
    let url = pg.url();
    let mut env: Vec<(&str, &str)> = LOAD_ENV.to_vec();
    env.extend([
        ("CLARITY_STORE_BACKEND", "postgres"),
        ("CLARITY_STORE_POSTGRES_URL", url.as_str()),
        ("CLARITY_STORE_POOL_SIZE", "4"),
    ]);
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(&dir.path().join("data"), &env);
    let api = Api::new(&server);
    let (token, patient) = api
        .clinician_with_patient(&server, "outage@reliability.example", "OUT-1")
        .await;

    let mut acked = Vec::new();
    let mut outages = 0;
    let mut recoveries = Vec::new();
    for _ in 0..2 {
        let load = Load::start(&api, &token, &patient, 4, 64);
        tokio::time::sleep(Duration::from_millis(700)).await;
        pg.stop_now();
        load.wait_for_503().await;
        until_ready(&api, StatusCode::SERVICE_UNAVAILABLE).await;
        let ready = api.call("GET", "/health/ready", None, None, None).await;
        assert_eq!(
            ready.body["checks"]["database"], "unavailable",
            "{}",
            ready.body
        );
        tokio::time::sleep(Duration::from_secs(2)).await;
        let restarted = Instant::now();
        pg.start_again();
        until_ready(&api, StatusCode::OK).await;
        until_write_ok(&api, &token, &patient, restarted).await;
        recoveries.push(restarted.elapsed());
        let (mut round, unavailable) = load.finish().await;
        assert!(unavailable > 0);
        acked.append(&mut round);
        outages += 1;
    }
    check_acked(&api, &token, &acked).await;
    let (clean, logs) = server.terminate();
    assert!(clean, "clean shutdown after the outages");
    assert!(
        !logs.iter().any(|l| l.contains("panicked")),
        "no panic in the logs"
    );
    println!(
        "outage/postgres: {outages} outages survived, {} acknowledged writes kept, recovery after restart {recoveries:?}",
        acked.len()
    );
}

/// Unmounts the small filesystem at the end.
struct Mount(PathBuf);

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// Fills `dir`'s filesystem with a file; returns its path.
fn fill(dir: &Path) -> PathBuf {
    use std::io::Write;
    let path = dir.join("filler");
    let mut file = std::fs::File::create(&path).expect("filler");
    let chunk = vec![0u8; 64 * 1024];
    while file.write_all(&chunk).is_ok() {}
    let _ = file.sync_all();
    path
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite_full_disk_fails_clearly_and_recovers() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mnt = dir.path().join("mnt");
    std::fs::create_dir(&mnt).expect("mount point");
    let mounted = is_root()
        && Command::new("mount")
            .args(["-t", "tmpfs", "-o", "size=24m", "tmpfs"])
            .arg(&mnt)
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
    if !mounted {
        return skip_or_fail("full-disk test needs root to mount a small tmpfs");
    }
    let _mount = Mount(mnt.clone());
    let data = mnt.join("data");
    let server = Server::start(&data, LOAD_ENV);
    let api = Api::new(&server);
    let (token, patient) = api
        .clinician_with_patient(&server, "disk@reliability.example", "DISK-1")
        .await;

    let mut acked = Vec::new();
    let mut outages = 0;
    let mut recoveries = Vec::new();
    for _ in 0..2 {
        let load = Load::start(&api, &token, &patient, 4, 2048);
        tokio::time::sleep(Duration::from_millis(500)).await;
        let filler = fill(&mnt);
        load.wait_for_503().await;
        tokio::time::sleep(Duration::from_secs(1)).await;
        std::fs::remove_file(&filler).expect("free the space");
        let freed = Instant::now();
        until_write_ok(&api, &token, &patient, freed).await;
        recoveries.push(freed.elapsed());
        until_ready(&api, StatusCode::OK).await;
        let (mut round, unavailable) = load.finish().await;
        assert!(unavailable > 0);
        acked.append(&mut round);
        outages += 1;
    }
    check_acked(&api, &token, &acked).await;
    let (clean, logs) = server.terminate();
    assert!(clean, "clean shutdown after the full disk");
    assert!(
        !logs.iter().any(|l| l.contains("panicked")),
        "no panic in the logs"
    );
    support::sqlite_integrity(&data.join("clarity.db"));
    support::audit_verify(&data, LOAD_ENV);
    println!(
        "outage/sqlite-full-disk: {outages} full disks survived, {} acknowledged writes kept, recovery after freeing space {recoveries:?}",
        acked.len()
    );
}
