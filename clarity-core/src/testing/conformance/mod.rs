//! The backend conformance suite: the same behaviour, proven on every backend.
//!
//! Each case is a public async function taking a [`Harness`]. The
//! [`conformance_suite!`](crate::conformance_suite) macro turns the whole list
//! into one `#[tokio::test]` per case for a given harness factory:
//!
//! ```text
//! clarity_core::conformance_suite!(clarity_core::testing::sqlite());
//! ```

mod audit;
mod keys;
mod patients;
mod records;

use uuid::Uuid;

use super::Harness;
use crate::crypto::Json;
use crate::error::ErrorKind;
use crate::model::{Patient, PatientProfile};

pub use self::audit::{
    audit_queries_read_the_index_and_the_tail, bare_event, changes_commit_with_their_audit_events,
    events_alone_are_stored_whole, sink_cursors_and_leases,
};
pub use self::keys::{
    erasure_destroys_the_data_key, metadata_is_set_once,
    moved_or_altered_ciphertext_fails_uniformly, store_refuses_a_foreign_keyring,
};
pub use self::patients::{
    duplicate_mrn_is_rejected, lookup_by_blind_index, patient_round_trip,
    patient_update_needs_current_version,
};
pub use self::records::{
    bad_input_gives_typed_errors, concurrent_updates_one_wins, record_lifecycle, record_pagination,
};

/// Expands to one `#[tokio::test]` per conformance case, each running on a
/// fresh harness from `$factory` (an expression yielding a future of
/// `Option<Harness>`; `None` skips).
#[macro_export]
macro_rules! conformance_suite {
    ($factory:expr) => {
        $crate::conformance_suite!(@cases $factory;
            patient_round_trip,
            patient_update_needs_current_version,
            concurrent_updates_one_wins,
            duplicate_mrn_is_rejected,
            lookup_by_blind_index,
            record_lifecycle,
            record_pagination,
            changes_commit_with_their_audit_events,
            events_alone_are_stored_whole,
            sink_cursors_and_leases,
            audit_queries_read_the_index_and_the_tail,
            bad_input_gives_typed_errors,
            moved_or_altered_ciphertext_fails_uniformly,
            erasure_destroys_the_data_key,
            store_refuses_a_foreign_keyring,
            metadata_is_set_once,
            users_are_unique_by_email_and_versioned,
            totp_steps_only_move_forward,
            login_failures_count_within_a_window,
            sessions_end_and_refresh_tokens_rotate_once,
            care_teams_and_grants,
            erasure_removes_care_team_assignments,
            service_account_secrets_are_versioned
        );
    };
    (@cases $factory:expr; $($case:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() {
                let Some(harness) = $factory.await else { return };
                $crate::testing::conformance::$case(&harness).await;
            }
        )*
    };
}

/// A valid profile with a unique MRN.
pub fn profile(mrn: &str) -> PatientProfile {
    PatientProfile {
        mrn: mrn.to_string(),
        given_name: "Ada".into(),
        family_name: "Lovelace".into(),
        birth_date: "1985-12-10".into(),
        sex: "female".into(),
        email: Some(format!("{}@example.org", mrn.to_lowercase())),
        phone: Some("+44 20 7946 0000".into()),
        address: None,
        data: Some(Json(serde_json::json!({"allergies": ["penicillin"]}))),
    }
}

fn unique_mrn() -> String {
    format!("MRN-{}", Uuid::new_v4().simple())
}

/// Creates a patient with a fresh MRN.
async fn new_patient(h: &Harness) -> Patient {
    h.phi
        .create_patient(profile(&unique_mrn()))
        .await
        .expect("create patient")
}

fn body(n: u64) -> Json {
    Json(serde_json::json!({"code": "8867-4", "value": n, "unit": "/min"}))
}

fn kind_of<T: std::fmt::Debug>(result: crate::error::Result<T>) -> ErrorKind {
    match result {
        Ok(value) => panic!("expected an error, got {value:?}"),
        Err(e) => e.kind(),
    }
}

pub use super::identity_conformance::{
    care_teams_and_grants, erasure_removes_care_team_assignments,
    login_failures_count_within_a_window, service_account_secrets_are_versioned,
    sessions_end_and_refresh_tokens_rotate_once, totp_steps_only_move_forward,
    users_are_unique_by_email_and_versioned,
};
