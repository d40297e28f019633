//! S-AC-6 for the store: PHI written through the API is nowhere in the clear
//! at rest — not in the SQLite database or its WAL, not in a `pg_dump`.

use std::path::Path;
use std::sync::Arc;

use clarity_core::crypto::Json;
use clarity_core::model::PatientProfile;
use clarity_core::testing::{self, Harness};
use clarity_core::vault::PhiStore;
use uuid::Uuid;

/// A profile and a record body full of a unique canary string.
async fn write_canaries(phi: &PhiStore) -> String {
    let canary = format!("CANARY{}", Uuid::new_v4().simple());
    let profile = PatientProfile {
        mrn: format!("{canary}-mrn"),
        given_name: format!("{canary}-given"),
        family_name: format!("{canary}-family"),
        birth_date: "1970-01-01".into(),
        sex: "other".into(),
        email: Some(format!("{canary}@example.org")),
        phone: Some("+1 555 0100".into()),
        address: None,
        data: Some(Json(
            serde_json::json!({ "note": format!("{canary}-profile-data") }),
        )),
    };
    let patient = phi.create_patient(profile).await.expect("create patient");
    for n in 0..20 {
        phi.create_record(
            patient.id,
            "note",
            Json(serde_json::json!({ "text": format!("{canary}-record-{n}") })),
            Uuid::now_v7(),
        )
        .await
        .expect("create record");
    }
    // The data reads back, so the canary really went through the store.
    let read = phi.get_patient(patient.id).await.expect("read back");
    assert!(read.profile.expose().given_name.contains(&canary));
    canary
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    let needle = needle.as_bytes();
    haystack.windows(needle.len()).any(|w| w == needle)
}

fn assert_absent(path: &Path, canary: &str) {
    let bytes = std::fs::read(path).expect("read file");
    assert!(!bytes.is_empty() || path.extension().is_some());
    // The canary, and its lower-case form (blind-index normalisation).
    for needle in [canary.to_string(), canary.to_lowercase()] {
        assert!(
            !contains(&bytes, &needle),
            "PHI canary found in {}",
            path.display()
        );
    }
}

// S-AC-6
#[tokio::test]
async fn canary_is_absent_from_the_sqlite_file_and_wal() {
    let h: Harness = testing::sqlite().await.expect("sqlite harness");
    let canary = write_canaries(&h.phi).await;
    let db = h.dir.path().join("clarity.db");
    let wal = h.dir.path().join("clarity.db-wal");
    assert!(wal.exists(), "the WAL holds the fresh writes");
    assert!(std::fs::metadata(&wal).expect("wal").len() > 0);
    assert_absent(&db, &canary);
    assert_absent(&wal, &canary);
    // The check itself can fail: plaintext written next to the database is found.
    let probe = h.dir.path().join("probe");
    std::fs::write(&probe, format!("xx{canary}xx")).expect("write probe");
    let found = std::panic::catch_unwind(|| assert_absent(&probe, &canary));
    assert!(found.is_err(), "the scan detects a plaintext canary");
}

// S-AC-6
#[tokio::test]
async fn canary_is_absent_from_a_pg_dump() {
    let Some(h) = testing::postgres().await else {
        return;
    };
    let canary = write_canaries(&h.phi).await;
    let url = testing::service_var(testing::POSTGRES_URL_VAR, "PostgreSQL").expect("url");
    let schema = h.schema().expect("postgres harness has a schema");
    let output = std::process::Command::new("pg_dump")
        .args(["--no-owner", "--schema", schema, "--dbname", &url])
        .output()
        .expect("run pg_dump (PostgreSQL client tools are required)");
    assert!(
        output.status.success(),
        "pg_dump failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let dump = h.dir.path().join("dump.sql");
    std::fs::write(&dump, &output.stdout).expect("write dump");
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(
        text.contains("COPY") && text.contains(".records"),
        "the dump holds the tables"
    );
    assert_absent(&dump, &canary);
    let _ = Arc::clone(h.store());
}

/// Writes canaries through the service, reads them back (which fills the
/// cache), and checks the cache holds none of them readable.
async fn cache_holds_no_phi(clarity: &clarity_core::service::Clarity) {
    use clarity_core::model::Role;
    let owner = testing::principal(clarity, Role::Clinician).await;
    let canary = format!("CANARY{}", Uuid::new_v4().simple());
    let profile = PatientProfile {
        mrn: format!("{canary}-mrn"),
        given_name: format!("{canary}-given"),
        family_name: format!("{canary}-family"),
        birth_date: "1970-01-01".into(),
        sex: "other".into(),
        email: None,
        phone: None,
        address: None,
        data: None,
    };
    let patient = clarity
        .create_patient(&owner, profile)
        .await
        .expect("create patient");
    let record = clarity
        .create_record(
            &owner,
            patient.id,
            "note",
            Json(serde_json::json!({ "text": format!("{canary}-record") })),
        )
        .await
        .expect("create record");
    for _ in 0..2 {
        let read = clarity.get_patient(&owner, patient.id).await.expect("read");
        assert!(read.profile.expose().given_name.contains(&canary));
        clarity.get_record(&owner, record.id).await.expect("record");
    }
    let contents = clarity.cache_contents().await.expect("cache contents");
    assert!(
        contents.len() >= 3,
        "the reads were cached: {}",
        contents.len()
    );
    for value in &contents {
        for needle in [canary.clone(), canary.to_lowercase()] {
            assert!(!contains(value, &needle), "PHI canary found in the cache");
        }
    }
}

// S-AC-6: the in-process cache holds patients and records only encrypted.
#[tokio::test]
async fn no_phi_in_the_memory_cache() {
    let h = testing::sqlite().await.expect("sqlite");
    let clarity = h.clarity().await;
    cache_holds_no_phi(&clarity).await;
}

// S-AC-6: the shared Redis cache holds only sealed values.
#[tokio::test]
async fn no_phi_in_the_redis_cache() {
    let Some(url) = testing::service_var("CLARITY_TEST_REDIS_URL", "Redis") else {
        return;
    };
    let h = testing::memory().await.expect("memory");
    let prefix = format!("t{}", Uuid::new_v4().simple());
    let config = clarity_core::config::Config::from_toml(&format!(
        "[cache]\nbackend = \"redis\"\nredis_url = \"{url}\"\nredis_prefix = \"{prefix}\""
    ))
    .expect("config");
    let clarity = h
        .clarity_with(config, Arc::new(clarity_core::clock::SystemClock))
        .await;
    assert_eq!(clarity.cache_status().backend, "redis");
    cache_holds_no_phi(&clarity).await;
}

// S-AC-6, S-BAK-1: a backup archive holds no PHI in the clear.
#[tokio::test]
async fn canary_is_absent_from_a_backup_file() {
    let h: Harness = testing::sqlite().await.expect("sqlite harness");
    let canary = write_canaries(&h.phi).await;
    let mut config = clarity_core::Config::default();
    config.data_dir = h.dir.path().to_path_buf();
    let clarity = clarity_core::Clarity::open(config).await.expect("open");
    let archive = h.dir.path().join("backup.cbak");
    let manifest = clarity
        .backup(
            &clarity.operator().await.expect("operator"),
            &archive,
            &|_| {},
        )
        .await
        .expect("backup");
    clarity.shutdown().await;
    assert!(
        manifest
            .tables
            .iter()
            .any(|t| t.name == "records" && t.rows == 20)
    );
    assert_absent(&archive, &canary);
}
