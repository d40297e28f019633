//! The service's hot read as an embedding application sees it: authenticate
//! a cached access token, then `get_record` (policy decision, decryption and
//! a durable audit event), on SQLite. The Python and Node packages measure
//! the same read through the C ABI (bindings/python/bench.py,
//! bindings/node/bench.js), so the three figures compare.
//!
//! Measured twice: one caller at a time (a lone read waits for its own
//! commit) and 64 callers at once (their audit events share commits).
//!
//! `cargo bench -p clarity-benches --bench service`

// criterion_group! generates an undocumented public function.
#![allow(missing_docs)]

use clarity_core::crypto::Json;
use clarity_core::model::PatientProfile;
use clarity_core::model::Role;
use clarity_core::testing;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};

/// Concurrent callers in the second benchmark (as the HTTP benchmark's
/// connections).
const IN_FLIGHT: u64 = 64;

fn cached_authenticated_read(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let (harness, clarity, token, record) = rt.block_on(async {
        let h = testing::sqlite().await.expect("harness");
        let clarity = h.clarity().await;
        let (_, email) = testing::user_with_role(&clarity, Role::Clinician).await;
        let token = testing::access_token(&clarity, &email).await;
        let doctor = clarity.authenticate(&token).await.expect("authenticate");
        let profile = PatientProfile::from_json(
            r#"{"mrn":"BENCH-1","given_name":"Bench","family_name":"Mark","birth_date":"1980-01-01","sex":"other"}"#,
        )
        .expect("profile");
        let patient = clarity.create_patient(&doctor, profile).await.expect("patient");
        let body = Json(serde_json::json!({"code": "8867-4", "heart_rate": 72}));
        let record = clarity
            .create_record(&doctor, patient.id, "observation", body)
            .await
            .expect("record");
        (h, clarity, token, record.id)
    });
    let mut group = c.benchmark_group("service");
    group.throughput(Throughput::Elements(1));
    group.bench_function("get_record_cached_token/sqlite", |b| {
        b.to_async(&rt).iter(|| async {
            let principal = clarity.authenticate(&token).await.expect("valid");
            clarity.get_record(&principal, record).await.expect("read")
        })
    });
    // The same read with IN_FLIGHT callers at once, as a server's requests
    // arrive: their audit events share commits (group commit).
    let clarity = std::sync::Arc::new(clarity);
    group.bench_function(format!("get_record_{IN_FLIGHT}_in_flight/sqlite"), |b| {
        b.iter_custom(|iters| {
            let per_caller = iters.div_ceil(IN_FLIGHT);
            rt.block_on(async {
                let start = std::time::Instant::now();
                let callers: Vec<_> = (0..IN_FLIGHT)
                    .map(|_| {
                        let (clarity, token) = (std::sync::Arc::clone(&clarity), token.clone());
                        tokio::spawn(async move {
                            for _ in 0..per_caller {
                                let principal = clarity.authenticate(&token).await.expect("valid");
                                clarity.get_record(&principal, record).await.expect("read");
                            }
                        })
                    })
                    .collect();
                for caller in callers {
                    caller.await.expect("caller");
                }
                // Scaled to the requested count (the callers may do a little more).
                start
                    .elapsed()
                    .mul_f64(iters as f64 / (per_caller * IN_FLIGHT) as f64)
            })
        })
    });
    group.finish();
    rt.block_on(clarity.shutdown());
    drop(harness);
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(std::time::Duration::from_secs(1))
        .measurement_time(std::time::Duration::from_secs(5));
    targets = cached_authenticated_read
}
criterion_main!(benches);
