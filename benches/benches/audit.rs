//! Audit benchmarks: durable appends through the group-commit writer on
//! SQLite (`synchronous = FULL`) with many concurrent callers, and chain
//! verification at three log lengths (10k, 100k and 1M events).
//!
//! `cargo bench -p clarity-benches --bench audit`

// criterion_group! generates an undocumented public function.
#![allow(missing_docs)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use clarity_core::audit::AuditStore;
use clarity_core::audit::{AuditKeys, AuditWriter, WriterSettings, verify};
use clarity_core::clock::SystemClock;
use clarity_core::config::SqliteSynchronous;
use clarity_core::crypto::Key;
use clarity_core::store::SqliteStore;
use clarity_core::testing;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};

const CALLERS: u64 = 256;
/// Log lengths at which verification is measured.
const VERIFY_LENGTHS: [u64; 3] = [10_240, 102_400, 1_024_000];

/// Appends about `count` events (a multiple of [`CALLERS`]) on a new chain;
/// returns how many.
async fn fill(store: &Arc<SqliteStore>, keys: &AuditKeys, count: u64) -> u64 {
    let writer = Arc::new(AuditWriter::start(
        store.clone(),
        keys.clone(),
        Arc::new(SystemClock),
        WriterSettings::default(),
    ));
    let tasks: Vec<_> = (0..CALLERS)
        .map(|_| {
            let writer = Arc::clone(&writer);
            tokio::spawn(async move {
                for _ in 0..count / CALLERS {
                    writer
                        .append(testing::read_event_draft())
                        .await
                        .expect("append");
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
    let verify_store: Arc<SqliteStore> = Arc::new(
        rt.block_on(SqliteStore::open_path(
            &verify_dir.path().join("v.db"),
            2,
            SqliteSynchronous::Normal,
        ))
        .expect("sqlite"),
    );
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
