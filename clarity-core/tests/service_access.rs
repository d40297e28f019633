//! Access through the service layer with a fake clock: care-team expiry,
//! break-glass, the research view, and failing closed.

use std::sync::{Arc, Mutex};

use chrono::{DateTime, Duration, Utc};
use clarity_core::clock::ManualClock;
use clarity_core::crypto::Json;
use clarity_core::model::Role;
use clarity_core::model::{PageRequest, PatientProfile};
use clarity_core::service::{Alert, AlertHook, AlertKind, BreakGlassRequest, CareTeamAssignment};
use clarity_core::testing::{self, Harness, principal};
use clarity_core::{Clarity, Config, ErrorKind};

#[derive(Debug, Default)]
struct Alerts(Mutex<Vec<Alert>>);

impl AlertHook for Alerts {
    fn alert(&self, alert: &Alert) {
        self.0.lock().expect("lock").push(alert.clone());
    }
}

fn start() -> DateTime<Utc> {
    DateTime::from_timestamp(1_800_000_000, 0).expect("time")
}

fn profile(birth_date: &str) -> PatientProfile {
    PatientProfile {
        mrn: format!("A-{}", uuid::Uuid::new_v4().simple()),
        given_name: "Rosalind".into(),
        family_name: "Franklin".into(),
        birth_date: birth_date.into(),
        sex: "female".into(),
        email: Some("rosalind@example.org".into()),
        phone: None,
        address: None,
        data: None,
    }
}

fn kind<T: std::fmt::Debug>(r: clarity_core::Result<T>) -> ErrorKind {
    r.expect_err("expected an error").kind()
}

async fn clocked(h: &Harness, clock: Arc<ManualClock>) -> Clarity {
    h.clarity_with(Config::default(), clock).await
}

// S-AC-3: a care-team assignment ends by itself.
#[tokio::test]
async fn care_team_assignments_expire() {
    let h = testing::memory().await.expect("memory");
    let clock = Arc::new(ManualClock::new(start()));
    let clarity = clocked(&h, clock.clone()).await;
    let admin = principal(&clarity, Role::Admin).await;
    let owner = principal(&clarity, Role::Clinician).await;
    let nurse = principal(&clarity, Role::Nurse).await;
    let patient = clarity
        .create_patient(&owner, profile("1960-04-01"))
        .await
        .expect("patient");
    let assignment = CareTeamAssignment {
        user_id: nurse.user_id(),
        relationship: Some("night-shift".into()),
        expires_at: Some(start() + Duration::hours(8)),
    };
    clarity
        .add_care_team_member(&admin, patient.id, assignment)
        .await
        .expect("assign");
    clarity
        .get_patient(&nurse, patient.id)
        .await
        .expect("on the team");
    // Principals are checked at authentication; here time moves under one.
    clock.advance(Duration::hours(7));
    clarity
        .get_patient(&nurse, patient.id)
        .await
        .expect("still on the team");
    clock.advance(Duration::hours(2));
    assert_eq!(
        kind(clarity.get_patient(&nurse, patient.id).await),
        ErrorKind::NotFound
    );
    let listed = clarity
        .list_patients(&nurse, &PageRequest::default())
        .await
        .expect("list");
    assert!(
        listed.items.is_empty(),
        "expired assignments are not listed"
    );
    let past = CareTeamAssignment {
        user_id: nurse.user_id(),
        relationship: None,
        expires_at: Some(start()),
    };
    assert_eq!(
        kind(clarity.add_care_team_member(&admin, patient.id, past).await),
        ErrorKind::InvalidInput
    );
}

// S-AC-4: break-glass needs a reason, alerts, is listed for review, and expires.
#[tokio::test]
async fn break_glass_is_reasoned_alerted_reviewed_and_expires() {
    let h = testing::memory().await.expect("memory");
    let clock = Arc::new(ManualClock::new(start()));
    let alerts = Arc::new(Alerts::default());
    let clarity = clocked(&h, clock.clone())
        .await
        .with_alert_hook(alerts.clone());
    let admin = principal(&clarity, Role::Admin).await;
    let owner = principal(&clarity, Role::Clinician).await;
    let er = principal(&clarity, Role::Clinician).await;
    let patient = clarity
        .create_patient(&owner, profile("1960-04-01"))
        .await
        .expect("patient");
    clarity
        .create_record(
            &owner,
            patient.id,
            "allergy",
            Json(serde_json::json!({"substance": "penicillin"})),
        )
        .await
        .expect("record");

    assert_eq!(
        kind(clarity.get_patient(&er, patient.id).await),
        ErrorKind::NotFound
    );
    let request = |reason: &str| BreakGlassRequest {
        patient_id: patient.id,
        reason: reason.into(),
        totp: None,
    };
    assert_eq!(
        kind(clarity.break_glass(&er, request("")).await),
        ErrorKind::InvalidInput
    );
    assert_eq!(
        kind(clarity.break_glass(&er, request("because")).await),
        ErrorKind::InvalidInput
    );
    let grant = clarity
        .break_glass(&er, request("unconscious on arrival, allergies unknown"))
        .await
        .expect("grant");
    assert_eq!(grant.expires_at, start() + Duration::hours(4));
    let alert = alerts
        .0
        .lock()
        .expect("lock")
        .last()
        .cloned()
        .expect("an alert");
    assert_eq!(
        (alert.kind, alert.user_id, alert.patient_id),
        (AlertKind::BreakGlass, Some(er.user_id()), Some(patient.id))
    );

    clarity
        .get_patient(&er, patient.id)
        .await
        .expect("emergency access");
    let records = clarity
        .list_records(&er, patient.id, &PageRequest::default())
        .await
        .expect("records");
    assert_eq!(records.items.len(), 1);

    let review = clarity
        .list_grants(&admin, true, &PageRequest::default())
        .await
        .expect("review list");
    let listed = review
        .items
        .iter()
        .find(|g| g.grant_id == grant.grant_id)
        .expect("listed");
    assert_eq!(listed.reason, "unconscious on arrival, allergies unknown");
    assert_eq!(
        kind(
            clarity
                .list_grants(&er, true, &PageRequest::default())
                .await
        ),
        ErrorKind::PermissionDenied
    );
    clarity
        .review_grant(&admin, grant.grant_id)
        .await
        .expect("review");
    let open = clarity
        .list_grants(&admin, true, &PageRequest::default())
        .await
        .expect("list");
    assert!(open.items.iter().all(|g| g.grant_id != grant.grant_id));

    clock.advance(Duration::hours(4));
    assert_eq!(
        kind(clarity.get_patient(&er, patient.id).await),
        ErrorKind::NotFound,
        "expired"
    );
    assert_eq!(
        kind(
            clarity
                .list_records(&er, patient.id, &PageRequest::default())
                .await
        ),
        ErrorKind::NotFound
    );
}

// S-AC-4: break-glass can require a second factor.
#[tokio::test]
async fn break_glass_can_require_mfa() {
    let h = testing::memory().await.expect("memory");
    let mut config = Config::default();
    config.access.require_mfa_for_break_glass = true;
    let clarity = h
        .clarity_with(config, Arc::new(ManualClock::new(start())))
        .await;
    let owner = principal(&clarity, Role::Clinician).await;
    let er = principal(&clarity, Role::Clinician).await;
    let patient = clarity
        .create_patient(&owner, profile("1960-04-01"))
        .await
        .expect("patient");
    let request = BreakGlassRequest {
        patient_id: patient.id,
        reason: "unconscious on arrival, allergies unknown".into(),
        totp: None,
    };
    assert_eq!(
        kind(clarity.break_glass(&er, request).await),
        ErrorKind::MfaRequired
    );
}

#[tokio::test]
async fn researchers_see_only_de_identified_data() {
    let h = testing::memory().await.expect("memory");
    let clarity = clocked(&h, Arc::new(ManualClock::new(start()))).await;
    let owner = principal(&clarity, Role::Clinician).await;
    let researcher = principal(&clarity, Role::Researcher).await;
    let young = clarity
        .create_patient(&owner, profile("1990-07-15"))
        .await
        .expect("patient");
    clarity
        .create_patient(&owner, profile("1920-01-01"))
        .await
        .expect("patient");
    assert_eq!(
        kind(clarity.get_patient(&researcher, young.id).await),
        ErrorKind::NotFound
    );
    let mut seen = Vec::new();
    let mut page = PageRequest::first(1);
    loop {
        let result = clarity
            .research_patients(&researcher, &page)
            .await
            .expect("research");
        seen.extend(result.items);
        match result.next_cursor {
            Some(cursor) => {
                assert!(
                    uuid::Uuid::try_parse(&cursor).is_err(),
                    "cursors carry no patient id"
                );
                page.cursor = Some(cursor);
            }
            None => break,
        }
    }
    assert_eq!(seen.len(), 2);
    let json = serde_json::to_string(&seen).expect("json");
    for identifier in [
        "Rosalind",
        "Franklin",
        "rosalind@example.org",
        "A-",
        &young.id.to_string(),
        "07-15",
    ] {
        assert!(!json.contains(identifier), "{identifier} leaked");
    }
    assert!(
        seen.iter()
            .any(|p| p.age == "90+" && p.birth_year.is_none())
    );
    assert!(seen.iter().any(|p| p.birth_year == Some(1990)));
    assert_eq!(
        kind(
            clarity
                .research_patients(&owner, &PageRequest::default())
                .await
        ),
        ErrorKind::PermissionDenied
    );
}

// S-AC-7: a storage error while deciding denies; nothing is returned.
#[tokio::test]
async fn storage_errors_during_a_decision_deny() {
    let h = testing::sqlite().await.expect("sqlite");
    let clarity = h.clarity().await;
    let owner = principal(&clarity, Role::Clinician).await;
    let patient = clarity
        .create_patient(&owner, profile("1960-04-01"))
        .await
        .expect("patient");
    clarity
        .get_patient(&owner, patient.id)
        .await
        .expect("readable before");
    // The care-team table becomes unreadable.
    let conn = rusqlite::Connection::open(h.dir.path().join("clarity.db")).expect("open");
    conn.execute_batch("ALTER TABLE care_team RENAME TO care_team_gone")
        .expect("break the table");
    // The decision must come from storage, not from state cached before.
    clarity.clear_cache().await;
    let result = clarity.get_patient(&owner, patient.id).await;
    let err = result.expect_err("no PHI without a decision");
    assert!(
        matches!(err.kind(), ErrorKind::Backend | ErrorKind::Unavailable),
        "{err}"
    );
    assert!(!err.to_string().contains("Rosalind"));
}

// S-AC-4, S-AUD-1: a patient reached through break-glass and returned by a
// list is recorded as a break-glass disclosure, not a routine one.
#[tokio::test]
async fn listing_break_glass_patients_is_recorded_as_break_glass() {
    let h = testing::memory().await.expect("memory");
    let clarity = h.clarity().await;
    let owner = principal(&clarity, Role::Clinician).await;
    let er = principal(&clarity, Role::Clinician).await;
    let patient = clarity
        .create_patient(&owner, profile("1960-04-01"))
        .await
        .expect("patient");
    let request = BreakGlassRequest {
        patient_id: patient.id,
        reason: "unconscious on arrival, allergies unknown".into(),
        totp: None,
    };
    clarity.break_glass(&er, request).await.expect("grant");
    let listed = clarity
        .list_patients(&er, &PageRequest::default())
        .await
        .expect("list");
    assert_eq!(listed.items.len(), 1);
    let filter = clarity_core::audit::AuditFilter {
        actor_id: Some(er.user_id()),
        patient_id: Some(patient.id),
        subtype: Some("patient.list".into()),
        ..Default::default()
    };
    let events = h.audit.query_audit(&filter, None, 10).await.expect("query");
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].reason.as_deref(), Some("break_glass"));
}
