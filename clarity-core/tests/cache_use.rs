//! The cache serves the hot path: once warm, authenticating and reading a
//! patient go to the database for nothing (counted by the cache's own
//! hit and miss counters, not timed).

use clarity_core::access::Role;
use clarity_core::store::PatientProfile;
use clarity_core::testing;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_warm_read_path_reads_nothing_from_the_database() {
    let h = testing::sqlite().await.expect("sqlite");
    let clarity = h.clarity().await;
    let (_, email) = testing::user_with_role(&clarity, Role::Clinician).await;
    let token = testing::access_token(&clarity, &email).await;
    let principal = clarity.authenticate(&token).await.expect("token");
    let patient = clarity
        .create_patient(
            &principal,
            PatientProfile {
                mrn: format!("CU-{}", uuid::Uuid::new_v4().simple()),
                given_name: "Cache".into(),
                family_name: "Use".into(),
                birth_date: "1990-01-01".into(),
                sex: "unknown".into(),
                email: None,
                phone: None,
                address: None,
                data: None,
            },
        )
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
