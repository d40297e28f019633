//! Store benchmarks: envelope encryption of a 1 KiB document; the
//! encrypted record read and write paths and the blind-index patient
//! look-up on each backend (in-memory, SQLite, and PostgreSQL when
//! `CLARITY_TEST_POSTGRES_URL` names a server: a fresh schema, dropped
//! afterwards).
//!
//! `cargo bench -p clarity-benches --bench store`

// criterion_group! generates an undocumented public function.
#![allow(missing_docs)]

use std::sync::Arc;

use clarity_core::crypto::envelope::{RowBinding, open_row, seal_row};
use clarity_core::crypto::{IndexField, Json, Key, LocalKeyring};
use clarity_core::model::{PatientLookup, PatientProfile};
use clarity_core::store::{MemoryStore, SqliteStore, Store};
use clarity_core::vault::PhiStore;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use uuid::Uuid;

fn one_kib_body() -> Json {
    Json(serde_json::json!({ "code": "8867-4", "note": "x".repeat(1000) }))
}

fn envelope(c: &mut Criterion) {
    let key = Key::generate().expect("rng");
    let binding = RowBinding {
        table: "records",
        row_id: Uuid::now_v7(),
        patient_id: Uuid::now_v7(),
        version: 1,
        dek_version: 1,
    };
    let plain = vec![7u8; 1024];
    let sealed = seal_row(&key, &binding, &plain).expect("seal");
    let mut group = c.benchmark_group("envelope_1KiB");
    group.throughput(Throughput::Elements(1));
    group.bench_function("seal", |b| {
        b.iter(|| seal_row(&key, &binding, &plain).expect("seal"))
    });
    group.bench_function("open", |b| {
        b.iter(|| open_row(&key, &binding, &sealed).expect("open"))
    });
    group.finish();
}

async fn phi_over(store: Arc<dyn Store>, dir: &std::path::Path) -> (PhiStore, Uuid, Uuid) {
    let keys = Arc::new(LocalKeyring::create(&dir.join("keyring.json")).expect("keyring"));
    let phi = PhiStore::new(store, keys).await.expect("phi");
    sample_rows(phi).await
}

/// `phi` with one patient (MRN `B-1`) and one 1 KiB record of theirs.
async fn sample_rows(phi: PhiStore) -> (PhiStore, Uuid, Uuid) {
    let profile = PatientProfile::from_json(
        r#"{"mrn":"B-1","given_name":"Bench","family_name":"Mark","birth_date":"1980-01-01","sex":"other"}"#,
    )
    .expect("profile");
    let patient = phi.create_patient(profile).await.expect("patient");
    let record = phi
        .create_record(patient.id, "observation", one_kib_body(), Uuid::now_v7())
        .await
        .expect("record");
    (phi, patient.id, record.id)
}

/// The blind index of an MRN alone: HMAC-SHA-256 over the normalised value.
fn blind_index(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("tempdir");
    let keys = LocalKeyring::create(&dir.path().join("keyring.json")).expect("keyring");
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let phi = runtime
        .block_on(PhiStore::new(Arc::new(MemoryStore::new()), Arc::new(keys)))
        .expect("phi");
    let indexer = phi.indexer();
    let mut group = c.benchmark_group("blind_index");
    group.throughput(Throughput::Elements(1));
    group.bench_function("mrn", |b| {
        b.iter(|| indexer.index(IndexField::PatientMrn, "B-000123"))
    });
    group.finish();
}

fn records(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let dir = tempfile::tempdir().expect("tempdir");
    let memory_dir = dir.path().join("memory");
    std::fs::create_dir_all(&memory_dir).expect("dir");
    let sqlite_dir = dir.path().join("sqlite");
    let backends: Vec<(&str, PhiStore, Uuid, Uuid)> = runtime.block_on(async {
        let (m, mp, mr) = phi_over(Arc::new(MemoryStore::new()), &memory_dir).await;
        std::fs::create_dir_all(&sqlite_dir).expect("dir");
        let sqlite = SqliteStore::open_path(
            &sqlite_dir.join("clarity.db"),
            4,
            clarity_core::config::SqliteSynchronous::Full,
        )
        .await
        .expect("sqlite");
        let (s, sp, sr) = phi_over(Arc::new(sqlite), &sqlite_dir).await;
        vec![("memory", m, mp, mr), ("sqlite", s, sp, sr)]
    });
    // Kept until the end: dropping the harness drops its schema.
    let postgres = runtime.block_on(clarity_core::testing::postgres());
    let mut backends = backends;
    if let Some(harness) = &postgres {
        let (p, pp, pr) = runtime.block_on(sample_rows(harness.phi.clone()));
        backends.push(("postgres", p, pp, pr));
    }

    let mut group = c.benchmark_group("record_1KiB");
    group.throughput(Throughput::Elements(1));
    for (name, phi, patient, record) in &backends {
        group.bench_function(format!("get/{name}"), |b| {
            b.to_async(&runtime)
                .iter(|| async { phi.get_record(*record).await.expect("get") })
        });
        group.bench_function(format!("create/{name}"), |b| {
            b.to_async(&runtime).iter(|| async {
                phi.create_record(*patient, "observation", one_kib_body(), *patient)
                    .await
                    .expect("create")
            })
        });
    }
    group.finish();

    // A patient found by MRN: the blind index, then the index look-up.
    let mut group = c.benchmark_group("patient_by_mrn");
    group.throughput(Throughput::Elements(1));
    let lookup = PatientLookup::Mrn("B-1".into());
    for (name, phi, patient, _) in &backends {
        group.bench_function(*name, |b| {
            b.to_async(&runtime).iter(|| async {
                let found = phi.find_patients(&lookup).await.expect("lookup");
                assert_eq!(found, [*patient]);
            })
        });
    }
    group.finish();
    drop(backends);
    drop(postgres);
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(std::time::Duration::from_secs(1))
        .measurement_time(std::time::Duration::from_secs(3));
    targets = envelope, blind_index, records
}
criterion_main!(benches);
