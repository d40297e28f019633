//! The cache serves the hot path: once warm, authenticating and reading a
//! patient go to the database for nothing (counted by the cache's own
//! hit and miss counters, not timed).

use clarity_core::access::Principal;
use clarity_core::crypto::Json;
use clarity_core::model::PatientProfile;
use clarity_core::model::Role;
use clarity_core::{Clarity, testing};

/// A SQLite harness with its service and a clinician's token and principal.
async fn clinician() -> (testing::Harness, Clarity, String, Principal) {
    let h = testing::sqlite().await.expect("sqlite");
    let clarity = h.clarity().await;
    let (_, email) = testing::user_with_role(&clarity, Role::Clinician).await;
    let token = testing::access_token(&clarity, &email).await;
    let principal = clarity.authenticate(&token).await.expect("token");
    (h, clarity, token, principal)
}

fn profile(mrn: &str, given: &str) -> PatientProfile {
    PatientProfile {
        mrn: mrn.into(),
        given_name: given.into(),
        family_name: "Use".into(),
        birth_date: "1990-01-01".into(),
        sex: "unknown".into(),
        email: None,
        phone: None,
        address: None,
        data: None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_warm_read_path_reads_nothing_from_the_database() {
    let (_h, clarity, token, principal) = clinician().await;
    let mrn = format!("CU-{}", uuid::Uuid::new_v4().simple());
    let patient = clarity
        .create_patient(&principal, profile(&mrn, "Cache"))
        .await
        .expect("patient");
    // Warm up, then count. The fallback lifetime on SQLite is one second;
    // a hundred rounds take far less, and a refresh would show as misses.
    for _ in 0..2 {
        let principal = clarity.authenticate(&token).await.expect("token");
        clarity
            .get_patient(&principal, patient.id)
            .await
            .expect("read");
    }
    let before = clarity.stats();
    for _ in 0..100 {
        let principal = clarity.authenticate(&token).await.expect("token");
        clarity
            .get_patient(&principal, patient.id)
            .await
            .expect("read");
    }
    let after = clarity.stats();
    let misses = after.cache_misses - before.cache_misses;
    let hits = after.cache_hits - before.cache_hits;
    assert!(misses <= 5, "{misses} misses in 100 warm rounds");
    assert!(
        hits >= 500,
        "{hits} hits: session, user, care team, patient row, data key per round"
    );
}

/// Writes commit inside the audit batch, past the cache layer: each one must
/// still make this instance forget the rows it changed, so a read right
/// after a write (well inside the cache's lifetime) sees the write. The
/// creator's care-team membership, committed with the patient, counts at
/// once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_is_read_back_at_once_through_the_cache() {
    let (_h, clarity, _, principal) = clinician().await;
    let patient = clarity
        .create_patient(&principal, profile("CU-WRITE", "First"))
        .await
        .expect("patient");
    // The creator's membership committed with the patient: readable at once.
    let read = clarity
        .get_patient(&principal, patient.id)
        .await
        .expect("the creator reads its new patient");
    assert_eq!(read.profile.expose().given_name, "First");
    let updated = clarity
        .update_patient(&principal, patient.id, 1, profile("CU-WRITE", "Second"))
        .await
        .expect("update");
    let read = clarity
        .get_patient(&principal, patient.id)
        .await
        .expect("read");
    assert_eq!(
        (read.version, read.profile.expose().given_name.as_str()),
        (updated.version, "Second")
    );

    let record = clarity
        .create_record(
            &principal,
            patient.id,
            "note",
            Json(serde_json::json!({"n": 1})),
        )
        .await
        .expect("record");
    let first = clarity
        .get_record(&principal, record.id)
        .await
        .expect("read");
    assert_eq!(first.version, 1);
    clarity
        .update_record(&principal, record.id, 1, Json(serde_json::json!({"n": 2})))
        .await
        .expect("update record");
    let second = clarity
        .get_record(&principal, record.id)
        .await
        .expect("read");
    assert_eq!(second.version, 2);
    assert_eq!(second.data.expose().0, serde_json::json!({"n": 2}));
    clarity
        .delete_record(&principal, record.id)
        .await
        .expect("delete");
    let gone = clarity.get_record(&principal, record.id).await;
    assert_eq!(
        gone.expect_err("deleted").kind(),
        clarity_core::ErrorKind::NotFound
    );
}

/// Without an invalidation channel (one instance on SQLite) the instance
/// watches the database's counter of commits made by other processes: its
/// cached state outlives `cache.fallback_ttl_secs` while nothing changes
/// behind it, and a change another process commits to the same file (the
/// CLI, say) is seen within a poll. Here the other process is a second
/// instance with connections of its own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_from_another_process_is_seen_and_the_cache_outlives_the_fallback() {
    use std::sync::Arc;
    use std::time::{Duration, Instant};

    use clarity_core::clock::SystemClock;
    use clarity_core::config::SqliteSynchronous;
    use clarity_core::service::UserUpdate;
    use clarity_core::store::{Backends, SqliteStore};

    let (h, clarity, token, principal) = clinician().await;
    let patient = clarity
        .create_patient(&principal, profile("CU-OUTSIDE", "Outside"))
        .await
        .expect("patient");
    let read = || async {
        let principal = clarity.authenticate(&token).await?;
        clarity.get_patient(&principal, patient.id).await
    };
    read().await.expect("warm");
    // Past the fallback lifetime (1 s), with nothing changed elsewhere.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let before = clarity.stats();
    for _ in 0..20 {
        read().await.expect("read");
    }
    let misses = clarity.stats().cache_misses - before.cache_misses;
    assert_eq!(misses, 0, "the cache outlived the fallback lifetime");

    let other_store =
        SqliteStore::open_path(&h.dir.path().join("clarity.db"), 1, SqliteSynchronous::Full)
            .await
            .expect("second store");
    let other = testing::with_parts(
        h.config(),
        Backends::of(Arc::new(other_store)),
        Arc::clone(&h.keys),
        Arc::new(SystemClock),
    )
    .await
    .expect("second instance");
    let (_, admin_email) = testing::user_with_role(&other, Role::Admin).await;
    let admin_token = testing::access_token(&other, &admin_email).await;
    let admin = other.authenticate(&admin_token).await.expect("admin");
    other
        .update_user(
            &admin,
            principal.user_id(),
            UserUpdate {
                disabled: Some(true),
                ..UserUpdate::default()
            },
        )
        .await
        .expect("disable the clinician elsewhere");
    let disabled_at = Instant::now();
    loop {
        if clarity.authenticate(&token).await.is_err() {
            break;
        }
        assert!(
            disabled_at.elapsed() < Duration::from_millis(900),
            "a user disabled by another process still authenticates"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
