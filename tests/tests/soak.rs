//! Soak (issue 10): mixed load for a bounded time against the real server,
//! sampling its memory (RSS), open file descriptors and sockets. Checks: no
//! non-2xx answer; no RSS sample exceeds `RSS_PEAK_BOUND_KIB`; in runs of at
//! least `TREND_MIN_SECS`, after warm-up (the first quarter) the mean RSS of
//! the second half exceeds that of the first by at most
//! `RSS_GROWTH_BOUND_KIB`; when
//! the clients go, sockets and file descriptors other than the database's
//! return to their count before the load, and the database's files never
//! exceed what the connection pool can hold; the audit trail gained exactly one
//! event per operation (S-AUD-1), and every chain verifies (S-AUD-3).
//!
//! `CLARITY_TEST_SOAK_SECS` (default 20). docs/RELIABILITY.md records the
//! 600-second run: `CLARITY_TEST_SOAK_SECS=600 cargo test -p clarity-tests
//! --test soak -- --nocapture` (not nextest: it stops tests after 5 minutes).

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use clarity_tests::Server;
use serde_json::json;
use support::{Api, LOAD_ENV, Rng, patient_body, record_body};

const CLIENTS: usize = 8;
const PATIENTS: u64 = 100;
/// Largest growth of mean RSS between the two halves after warm-up.
const RSS_GROWTH_BOUND_KIB: u64 = 32 * 1024;
/// Shortest run whose RSS trend is checked.
const TREND_MIN_SECS: u64 = 120;
/// Largest RSS at any sample (debug build, two allocator arenas).
const RSS_PEAK_BOUND_KIB: u64 = 400 * 1024;

/// Reader connections the soak's server may open (`store.pool_size`).
const READERS: usize = 8;
/// At most the SQLite files those connections, the writer and the audit
/// indexer hold: each has the database and, from its first read of a
/// non-empty write-ahead log, the log; the shared-memory index is one for
/// the process. The readers and the indexer also attach the audit index
/// database (`<file>-audit-index`), with its own log and shared memory.
const DATABASE_FILES_BOUND: usize = (2 * (READERS + 2) + 1) + (2 * (READERS + 1) + 1);

/// One sample of `pid`: RSS in KiB, open file descriptors other than
/// sockets and the database's files, sockets, and the database's files.
fn sample(pid: u32, data: &std::path::Path) -> (u64, usize, usize, usize) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("/proc status");
    let rss = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS");
    let database = data.join("clarity.db");
    let (mut other, mut sockets, mut database_files) = (0, 0, 0);
    for target in fd_targets(pid) {
        if target.starts_with("socket:") {
            sockets += 1;
        } else if target.starts_with(&*database.to_string_lossy()) {
            database_files += 1;
        } else {
            other += 1;
        }
    }
    (rss, other, sockets, database_files)
}

/// What each of `pid`'s file descriptors points at, sorted.
fn fd_targets(pid: u32) -> Vec<String> {
    let mut targets: Vec<String> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .expect("/proc fd")
        .flatten()
        .filter_map(|e| std::fs::read_link(e.path()).ok())
        .map(|t| t.to_string_lossy().into_owned())
        .collect();
    targets.sort();
    targets
}

async fn audit_events(api: &Api) -> u64 {
    let reply = api.call("GET", "/metrics", None, None, None).await;
    let text = reply.body.as_str().expect("metrics text").to_string();
    text.lines()
        .find(|l| l.starts_with("clarity_audit_events_written") && !l.starts_with('#'))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse::<f64>().ok())
        .map(|v| v as u64)
        .expect("clarity_audit_events_written")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn soak_mixed_load_without_leaks_or_lost_audit_events() {
    let secs: u64 = std::env::var("CLARITY_TEST_SOAK_SECS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20);
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    // glibc keeps each thread arena's freed argon2id work area (19 MiB); with
    // its default of 8 arenas per core RSS climbs to ~450 MiB within seconds
    // and stays there, which hides a leak. Two arenas, as docs/RELIABILITY.md
    // recommends for deployments; CLARITY_TEST_SOAK_ARENAS=0 keeps glibc's default.
    let arenas = std::env::var("CLARITY_TEST_SOAK_ARENAS").unwrap_or_else(|_| "2".into());
    let readers = READERS.to_string();
    let mut env = LOAD_ENV.to_vec();
    env.push(("CLARITY_STORE_POOL_SIZE", readers.as_str()));
    if arenas != "0" {
        env.push(("MALLOC_ARENA_MAX", arenas.as_str()));
        // A fixed mmap threshold: glibc otherwise raises it to the size of
        // the last freed work area, and then keeps every later 19 MiB area
        // in the heap; fixed, each one is mapped and returned on release.
        env.push(("MALLOC_MMAP_THRESHOLD_", "1048576"));
    }
    let server = Server::start(&data, &env);
    let pid = server.pid();
    let setup = Api::new(&server);
    let admin = setup.bootstrap(&server).await;
    let email = "soak@reliability.example";
    let (_, token) = setup.user(&admin, email, &["clinician"]).await;
    let mut patients = Vec::new();
    for n in 0..PATIENTS {
        let p = setup
            .ok(
                "POST",
                "/v1/patients",
                Some(&token),
                Some(&patient_body(&format!("SOAK-{n}"), n)),
            )
            .await;
        let id = p["id"].as_str().expect("id").to_string();
        let r = setup
            .ok(
                "POST",
                &format!("/v1/patients/{id}/records"),
                Some(&token),
                Some(&record_body(n)),
            )
            .await;
        patients.push((id, r["id"].as_str().expect("id").to_string()));
    }
    let patients = Arc::new(patients);
    let before_events = audit_events(&setup).await;
    let baseline = sample(pid, &data);
    let baseline_files = fd_targets(pid);

    let ops = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let mut rng = Rng::from_env("soak");
    let tasks: Vec<_> = (0..CLIENTS)
        .map(|c| {
            let (api, token, patients, ops, stop) = (
                Api::new(&server),
                token.clone(),
                patients.clone(),
                ops.clone(),
                stop.clone(),
            );
            let mut rng = Rng::seeded(rng.next());
            tokio::spawn(async move {
                // Each client owns its slice of the patients: its updates never conflict.
                let mine: Vec<&(String, String)> =
                    patients.iter().skip(c).step_by(CLIENTS).collect();
                let mut n = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    n += 1;
                    let (pid, rid) = mine[rng.range(0, mine.len() as u64) as usize];
                    let op = rng.range(0, 100);
                    let reply = match op {
                        0..=39 => {
                            api.call(
                                "GET",
                                &format!("/v1/patients/{pid}"),
                                Some(&token),
                                None,
                                None,
                            )
                            .await
                        }
                        40..=69 => {
                            api.call(
                                "GET",
                                &format!("/v1/records/{rid}"),
                                Some(&token),
                                None,
                                None,
                            )
                            .await
                        }
                        70..=79 => {
                            let current = api
                                .call(
                                    "GET",
                                    &format!("/v1/records/{rid}"),
                                    Some(&token),
                                    None,
                                    None,
                                )
                                .await;
                            ops.fetch_add(1, Ordering::Relaxed);
                            let version = current.body["version"].as_i64().expect("version");
                            let body = json!({"data": {"n": n}});
                            api.call(
                                "PUT",
                                &format!("/v1/records/{rid}"),
                                Some(&token),
                                Some(version),
                                Some(&body),
                            )
                            .await
                        }
                        80..=89 => {
                            api.call(
                                "GET",
                                &format!("/v1/patients/{pid}/records?limit=10"),
                                Some(&token),
                                None,
                                None,
                            )
                            .await
                        }
                        90..=97 => {
                            api.call(
                                "POST",
                                &format!("/v1/patients/{pid}/records"),
                                Some(&token),
                                None,
                                Some(&record_body(n)),
                            )
                            .await
                        }
                        _ => {
                            let body = json!({"email": email, "password": support::PASSWORD});
                            api.call("POST", "/v1/auth/login", None, None, Some(&body))
                                .await
                        }
                    };
                    assert!(
                        reply.status.is_success(),
                        "soak op {op}: {} {}",
                        reply.status,
                        reply.body
                    );
                    ops.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();

    let started = Instant::now();
    let total = Duration::from_secs(secs);
    let every = (total / 20).max(Duration::from_secs(1));
    let mut curve = vec![(0u64, baseline)];
    while started.elapsed() < total {
        tokio::time::sleep(every).await;
        curve.push((started.elapsed().as_secs(), sample(pid, &data)));
    }
    stop.store(true, Ordering::Relaxed);
    for task in tasks {
        task.await.expect("soak client");
    }
    let performed = ops.load(Ordering::Relaxed);
    let after_events = audit_events(&setup).await;
    // Let the server close the clients' connections.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let end = sample(pid, &data);
    let end_files = fd_targets(pid);
    println!(
        "soak: {secs}s, {performed} operations ({:.0}/s), {CLIENTS} clients",
        performed as f64 / secs as f64
    );
    println!("soak: t(s)  RSS(MiB)  other fds  sockets  database files");
    for (t, (rss, other, sockets, database)) in &curve {
        println!(
            "soak: {t:>4}  {:>8.1}  {other:>9}  {sockets:>7}  {database:>14}",
            *rss as f64 / 1024.0
        );
    }
    println!(
        "soak: after the clients left: RSS {:.1} MiB, {} other fds, {} sockets, {} database files \
         (baseline {} other fds, {} sockets)",
        end.0 as f64 / 1024.0,
        end.1,
        end.2,
        end.3,
        baseline.1,
        baseline.2
    );
    println!(
        "soak: audit events written {} for {performed} operations",
        after_events - before_events
    );

    assert_eq!(
        after_events - before_events,
        performed,
        "exactly one audit event per operation (S-AUD-1)"
    );
    // Warm-up (caches, allocator arenas) ends by the first quarter or 10 s,
    // whichever is later; from there on, flat.
    let warm = curve
        .iter()
        .position(|c| c.0 >= (secs / 4).max(10))
        .unwrap_or(curve.len() - 1);
    // Single samples swing by a few argon2id work areas (logins in flight);
    // a leak shows as a trend: compare the means of the two halves after
    // warm-up.
    let after: Vec<u64> = curve[warm..].iter().map(|c| c.1.0).collect();
    let mean = |s: &[u64]| s.iter().sum::<u64>() / s.len().max(1) as u64;
    let (early, late) = after.split_at(after.len() / 2);
    let (early, late) = (mean(early), mean(late));
    // A 20 s run holds too few samples for a trend: logins in flight move
    // single samples by 19 MiB each. Its memory check is the peak.
    if secs >= TREND_MIN_SECS {
        assert!(
            late <= early + RSS_GROWTH_BOUND_KIB,
            "RSS grew after warm-up: mean {early} KiB, then {late} KiB"
        );
    }
    println!("soak: mean RSS after warm-up {early} KiB, then {late} KiB");
    let peak = curve.iter().map(|c| c.1.0).max().unwrap_or_default();
    assert!(peak <= RSS_PEAK_BOUND_KIB, "RSS peaked at {peak} KiB");
    // The database's files grow with the readers the load wakes, up to a
    // fixed bound; every other descriptor is back to its count before the load.
    let database_peak = curve.iter().map(|c| c.1.3).max().unwrap_or_default();
    assert!(
        database_peak <= DATABASE_FILES_BOUND,
        "database files: {database_peak} open, more than {DATABASE_FILES_BOUND}: {end_files:?}"
    );
    assert!(
        end.1 <= baseline.1 + 2,
        "file descriptors leaked: {} → {}; before the load {baseline_files:?}, after {end_files:?}",
        baseline.1,
        end.1
    );
    assert!(
        end.2 <= baseline.2 + 2,
        "sockets leaked: {} → {}",
        baseline.2,
        end.2
    );
    let (clean, logs) = server.terminate();
    assert!(clean, "clean shutdown after the soak");
    assert!(!logs.iter().any(|l| l.contains("panicked")), "no panic");
    support::audit_verify(&data, LOAD_ENV);
}
