//! Authentication and authorisation benchmarks: authenticate a valid access
//! token (PASETO verify + live-session and user checks), a warm `decide`,
//! and a login (argon2id-bound).
//!
//! `cargo bench -p clarity-benches --bench auth`

// criterion_group! generates an undocumented public function.
#![allow(missing_docs)]

use std::hint::black_box;

use clarity_core::access::{Action, Policy, Principal, Relation, decide};
use clarity_core::auth::TokenKeys;
use clarity_core::config::AuthConfig;
use clarity_core::crypto::{Key, SecretString};
use clarity_core::model::RecordKind;
use clarity_core::model::{Role, RoleSet};
use clarity_core::service::{LoginRequest, NewUser};
use clarity_core::testing;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use uuid::Uuid;

/// Single `decide` calls timed for its tail latency.
const DECIDE_SAMPLES: usize = 1_000_000;

const PASSWORD: &str = "benchmarks deserve good passwords too";

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
}

fn decide_warm(c: &mut Criterion) {
    let policy = Policy::default();
    // A principal comes only from authentication (S-API-1): a nurse of an
    // in-memory instance, logged in.
    let nurse: Principal = runtime().block_on(async {
        let harness = testing::memory().await.expect("in-memory harness");
        testing::principal(&harness.clarity().await, Role::Nurse).await
    });
    let action = Action::CreateRecord(RecordKind::new("note").expect("kind"));
    let relation = Some(Relation {
        care_team: true,
        break_glass: false,
        own_record: false,
    });
    let mut group = c.benchmark_group("access");
    group.throughput(Throughput::Elements(1));
    group.bench_function("decide", |b| {
        b.iter(|| {
            decide(
                black_box(&policy),
                black_box(&nurse),
                black_box(&action),
                black_box(relation),
            )
        })
    });
    group.finish();
    // The goal is a tail (p99 ≤ 2 µs), which criterion's mean and median do
    // not show: time single calls (each timing includes the clock read).
    let mut samples: Vec<u128> = (0..DECIDE_SAMPLES)
        .map(|_| {
            let start = std::time::Instant::now();
            black_box(decide(
                black_box(&policy),
                black_box(&nurse),
                black_box(&action),
                black_box(relation),
            ));
            start.elapsed().as_nanos()
        })
        .collect();
    samples.sort_unstable();
    let at = |q: f64| samples[((samples.len() as f64 * q) as usize).min(samples.len() - 1)];
    println!(
        "access/decide single calls ({DECIDE_SAMPLES}, clock read included): \
         p50 {} ns, p99 {} ns, p99.9 {} ns, max {} ns",
        at(0.50),
        at(0.99),
        at(0.999),
        samples[samples.len() - 1]
    );
}

fn token_verify_cold(c: &mut Criterion) {
    let root = Key::generate().expect("rng");
    let keys = TokenKeys::new(&root, &AuthConfig::default()).expect("keys");
    let now = chrono::Utc::now();
    let token = keys
        .issue(
            Uuid::now_v7(),
            Uuid::now_v7(),
            RoleSet::from_roles([Role::Nurse]),
            now,
        )
        .expect("issue");
    let mut group = c.benchmark_group("auth");
    group.throughput(Throughput::Elements(1));
    group.bench_function("token_verify/v4.local", |b| {
        b.iter(|| keys.verify(black_box(&token), now).expect("valid"))
    });
    group.finish();
}

fn authenticate_and_login(c: &mut Criterion) {
    let rt = runtime();
    let mut group = c.benchmark_group("auth");
    group.throughput(Throughput::Elements(1));
    for backend in ["memory", "sqlite"] {
        let (harness, clarity, token) = rt.block_on(async {
            let h = match backend {
                "memory" => testing::memory().await,
                _ => testing::sqlite().await,
            }
            .expect("harness");
            let clarity = h.clarity().await;
            clarity
                .create_user_as_operator(NewUser {
                    email: "perf@example.org".into(),
                    password: SecretString::new(PASSWORD),
                    roles: RoleSet::from_roles([Role::Clinician]),
                    display_name: None,
                    patient_id: None,
                })
                .await
                .expect("user");
            let tokens = clarity.login(request(), None).await.expect("login");
            (h, clarity, tokens.access_token)
        });
        group.bench_function(format!("authenticate_cached_token/{backend}"), |b| {
            b.to_async(&rt)
                .iter(|| async { clarity.authenticate(token.expose()).await.expect("valid") })
        });
        // The same with the state cache emptied first: what every request
        // cost before the cache (sessions and users read from the store).
        group.bench_function(format!("authenticate_cache_emptied/{backend}"), |b| {
            b.to_async(&rt).iter(|| async {
                clarity.clear_cache().await;
                clarity.authenticate(token.expose()).await.expect("valid")
            })
        });
        if backend == "memory" {
            group.sample_size(20);
            group.bench_function("login/argon2id-19MiB", |b| {
                b.to_async(&rt)
                    .iter(|| async { clarity.login(request(), None).await.expect("login") })
            });
            group.sample_size(100);
        }
        drop(harness);
    }
    group.finish();
}

fn request() -> LoginRequest {
    LoginRequest {
        email: "perf@example.org".into(),
        password: SecretString::new(PASSWORD),
        totp: None,
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(std::time::Duration::from_secs(1))
        .measurement_time(std::time::Duration::from_secs(3));
    targets = decide_warm, token_verify_cold, authenticate_and_login
}
criterion_main!(benches);
