//! Audit benchmarks: durable appends through the group-commit writer on
//! SQLite (`synchronous = FULL`) with many concurrent callers; chain
//! verification at three log lengths (10k, 100k and 1M events), and the
//! incremental verification of a server's scheduled runs after 1M events;
//! and the audit query by patient over 1M events (with its p50 and p99).
//!
//! `cargo bench -p clarity-benches --bench audit`

// criterion_group! generates an undocumented public function.
#![allow(missing_docs)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use std::collections::BTreeMap;

use clarity_core::audit::{AuditFilter, AuditStore};
use clarity_core::audit::{AuditKeys, AuditWriter, WriterSettings, verify, verify_incremental};
use clarity_core::clock::SystemClock;
use clarity_core::config::SqliteSynchronous;
use clarity_core::crypto::Key;
use clarity_core::store::SqliteStore;
use clarity_core::testing;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};

const CALLERS: u64 = 256;
/// Log lengths at which verification is measured.
const VERIFY_LENGTHS: [u64; 3] = [10_240, 102_400, 1_024_000];

/// Events added between two scheduled verifications in the incremental bench.
const NEW_EVENTS: u64 = 1024;
/// Patients the query bench's events are about.
const PATIENTS: usize = 10_000;

/// A SQLite store in `dir` for filling with many events
/// (`synchronous = normal`: the fill's durability is not what is measured).
async fn fill_store(dir: &tempfile::TempDir) -> Arc<SqliteStore> {
    Arc::new(
        SqliteStore::open_path(&dir.path().join("audit.db"), 2, SqliteSynchronous::Normal)
            .await
            .expect("sqlite"),
    )
}

/// Appends about `count` events (a multiple of [`CALLERS`]) on a new chain;
/// returns how many.
async fn fill(store: &Arc<SqliteStore>, keys: &AuditKeys, count: u64) -> u64 {
    fill_about(store, keys, count, &[]).await
}

/// [`fill`], each event about one of `patients` in turn (a new patient
/// each when empty).
async fn fill_about(
    store: &Arc<SqliteStore>,
    keys: &AuditKeys,
    count: u64,
    patients: &[uuid::Uuid],
) -> u64 {
    let patients: Arc<Vec<uuid::Uuid>> = Arc::new(patients.to_vec());
    let writer = Arc::new(AuditWriter::start(
        store.clone(),
        keys.clone(),
        Arc::new(SystemClock),
        WriterSettings::default(),
    ));
    let tasks: Vec<_> = (0..CALLERS)
        .map(|caller| {
            let writer = Arc::clone(&writer);
            let patients = Arc::clone(&patients);
            tokio::spawn(async move {
                for i in 0..count / CALLERS {
                    let mut draft = testing::read_event_draft();
                    if !patients.is_empty() {
                        let n = (caller * (count / CALLERS) + i) as usize;
                        draft.patient_id = Some(patients[n % patients.len()]);
                    }
                    writer.append(draft).await.expect("append");
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.expect("task");
    }
    writer.shutdown().await;
    (count / CALLERS) * CALLERS
}

fn audit(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let dir = tempfile::tempdir().expect("tempdir");
    let keys = AuditKeys::derive(&Key::generate().expect("rng")).expect("keys");
    let store: Arc<SqliteStore> = Arc::new(
        rt.block_on(SqliteStore::open_path(
            &dir.path().join("audit.db"),
            2,
            SqliteSynchronous::Full,
        ))
        .expect("sqlite"),
    );
    let writer = Arc::new(rt.block_on(async {
        AuditWriter::start(
            store.clone(),
            keys.clone(),
            Arc::new(SystemClock),
            WriterSettings::default(),
        )
    }));

    let mut group = c.benchmark_group("audit");
    group.throughput(Throughput::Elements(1));
    group.bench_function("append_durable_group_commit/sqlite", |b| {
        b.iter_custom(|iters| {
            let writer = Arc::clone(&writer);
            rt.block_on(async move {
                let per_caller = iters.div_ceil(CALLERS);
                let start = Instant::now();
                let tasks: Vec<_> = (0..CALLERS)
                    .map(|_| {
                        let writer = Arc::clone(&writer);
                        tokio::spawn(async move {
                            for _ in 0..per_caller {
                                writer
                                    .append(testing::read_event_draft())
                                    .await
                                    .expect("durable append");
                            }
                        })
                    })
                    .collect();
                for task in tasks {
                    task.await.expect("task");
                }
                // Scale to the requested count (callers may have done a little more).
                let elapsed = start.elapsed();
                elapsed.mul_f64(iters as f64 / (per_caller * CALLERS) as f64)
            })
        })
    });

    // Verification cost against log length: the log grows to each length
    // in VERIFY_LENGTHS (one chain per step) and all of it is verified.
    let verify_dir = tempfile::tempdir().expect("tempdir");
    let verify_store = rt.block_on(fill_store(&verify_dir));
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(10));
    let mut events = 0;
    for length in VERIFY_LENGTHS {
        events += rt.block_on(fill(&verify_store, &keys, length - events));
        group.throughput(Throughput::Elements(events));
        group.bench_function(format!("verify_{events}_events/sqlite"), |b| {
            b.iter(|| {
                let reports = rt
                    .block_on(verify(
                        verify_store.as_ref() as &dyn AuditStore,
                        &keys,
                        chrono::Utc::now() - chrono::Duration::days(2196),
                    ))
                    .expect("verify");
                assert!(reports.iter().all(|r| r.ok));
            })
        });
    }

    // A server's scheduled verification between two full passes: the log
    // above (1M events), NEW_EVENTS more on a new chain, and each chain
    // read only from where the last run left it.
    let cutoff = chrono::Utc::now() - chrono::Duration::days(2196);
    let witnessed = BTreeMap::new();
    let (_, heads) = rt
        .block_on(verify_incremental(
            verify_store.as_ref() as &dyn AuditStore,
            &keys,
            cutoff,
            &witnessed,
            &BTreeMap::new(),
        ))
        .expect("full pass");
    let added = rt.block_on(fill(&verify_store, &keys, NEW_EVENTS));
    group.throughput(Throughput::Elements(added));
    group.bench_function(
        format!("verify_incremental_{added}_after_{events}/sqlite"),
        |b| {
            b.iter(|| {
                let (reports, _) = rt
                    .block_on(verify_incremental(
                        verify_store.as_ref() as &dyn AuditStore,
                        &keys,
                        cutoff,
                        &witnessed,
                        &heads,
                    ))
                    .expect("incremental");
                assert!(reports.iter().all(|r| r.ok));
            })
        },
    );

    // The audit query by patient (its first page of 100) over 1M events
    // about 10k patients: ~100 events each, 16,384 of them not yet indexed.
    let query_dir = tempfile::tempdir().expect("tempdir");
    let query_store = rt.block_on(fill_store(&query_dir));
    let patients: Vec<uuid::Uuid> = (0..PATIENTS).map(|_| uuid::Uuid::now_v7()).collect();
    let indexed = rt.block_on(fill_about(&query_store, &keys, 1_024_000, &patients));
    // Indexed as the server's indexer would, then one indexer chunk more
    // left unindexed (the most it lags by when it keeps up): each query
    // reads the index and that tail.
    rt.block_on(async { while query_store.index_audit(16_384).await.expect("index") > 0 {} });
    let stored = indexed + rt.block_on(fill_about(&query_store, &keys, 16_384, &patients));
    let query = |i: usize| {
        let filter = AuditFilter {
            patient_id: Some(patients[i.wrapping_mul(7919) % PATIENTS]),
            ..AuditFilter::default()
        };
        let page = rt
            .block_on(query_store.query_audit(&filter, None, 100))
            .expect("query");
        assert!(!page.is_empty());
    };
    // Latency distribution of single queries, beside criterion's mean.
    let mut latencies: Vec<Duration> = (0..2000)
        .map(|i| {
            let start = Instant::now();
            query(i);
            start.elapsed()
        })
        .collect();
    latencies.sort_unstable();
    eprintln!(
        "audit/query_by_patient over {stored} events: p50 {:?}, p99 {:?}, max {:?} (2000 queries)",
        latencies[1000], latencies[1980], latencies[1999]
    );
    group.sample_size(50);
    group.measurement_time(Duration::from_secs(5));
    group.throughput(Throughput::Elements(1));
    let mut n = 0;
    group.bench_function(format!("query_by_patient_{stored}_events/sqlite"), |b| {
        b.iter(|| {
            n += 1;
            query(n);
        })
    });
    group.finish();
    rt.block_on(writer.shutdown());
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(5));
    targets = audit
}
criterion_main!(benches);
