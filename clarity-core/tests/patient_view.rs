//! The patient's side of the audit trail (S-AUD-9), through the service on
//! every backend: a patient lists who accessed its record, disclosures to
//! outside recipients are recorded by those who treat the patient, and the
//! accounting of disclosures covers six years.

use std::sync::Arc;

use chrono::{DateTime, Duration, Months, Utc};
use clarity_core::access::Principal;
use clarity_core::clock::{Clock, ManualClock};
use clarity_core::crypto::{Json, SecretString};
use clarity_core::model::{
    NewDisclosure, PageRequest, PatientProfile, RequestContext, Role, RoleSet,
};
use clarity_core::service::{AccessLogRange, BreakGlassRequest, NewUser};
use clarity_core::testing::{self, Harness, TEST_PASSWORD, access_token, principal};
use clarity_core::{Clarity, Config, ErrorKind};
use uuid::Uuid;

fn start() -> DateTime<Utc> {
    DateTime::from_timestamp(1_800_000_000, 0).expect("time")
}

fn profile() -> PatientProfile {
    PatientProfile {
        mrn: format!("PV-{}", Uuid::new_v4().simple()),
        given_name: "Ada".into(),
        family_name: "Lovelace".into(),
        birth_date: "1975-12-10".into(),
        sex: "female".into(),
        email: None,
        phone: None,
        address: None,
        data: None,
    }
}

fn kind<T: std::fmt::Debug>(r: clarity_core::Result<T>) -> ErrorKind {
    r.expect_err("expected an error").kind()
}

/// A user with `roles`, a display name and optionally a patient link,
/// logged in with `purpose` as its purpose of use.
async fn person(
    clarity: &Clarity,
    role: Role,
    name: &str,
    patient_id: Option<Uuid>,
    purpose: &str,
) -> Principal {
    let email = format!("{}-{}@test.example", role, Uuid::new_v4().simple());
    clarity
        .create_user_as_operator(NewUser {
            email: email.clone(),
            password: SecretString::new(TEST_PASSWORD),
            roles: RoleSet::from_roles([role]),
            display_name: Some(name.into()),
            patient_id,
        })
        .await
        .expect("user");
    let token = access_token(clarity, &email).await;
    let context = RequestContext {
        purpose: Some(purpose.into()),
        ..RequestContext::default()
    };
    clarity
        .authenticate_with(&token, context)
        .await
        .expect("authenticate")
}

fn disclosure(recipient: &str, disclosed_at: Option<DateTime<Utc>>) -> NewDisclosure {
    serde_json::from_value(serde_json::json!({
        "recipient": recipient,
        "recipient_address": "1 Public Health Way",
        "purpose": "notifiable disease report",
        "description": "laboratory result of 2026-11-02",
        "legal_basis": "state public health reporting statute",
        "disclosed_at": disclosed_at,
    }))
    .expect("disclosure")
}

async fn scenario(h: Harness) {
    let clock = Arc::new(ManualClock::new(start()));
    let clarity = h.clarity_with(Config::default(), clock.clone()).await;
    let grey = person(&clarity, Role::Clinician, "Dr Meredith Grey", None, "TREAT").await;
    let patient = clarity
        .create_patient(&grey, profile())
        .await
        .expect("patient");
    let other = clarity
        .create_patient(&grey, profile())
        .await
        .expect("other patient");
    let record = clarity
        .create_record(
            &grey,
            patient.id,
            "note",
            Json(serde_json::json!({"text": "seen in clinic"})),
        )
        .await
        .expect("record");
    let ada = person(&clarity, Role::Patient, "Ada", Some(patient.id), "PATRQT").await;
    let auditor = person(&clarity, Role::Auditor, "Privacy Office", None, "HOPERAT").await;
    let admin = principal(&clarity, Role::Admin).await;
    let er = person(
        &clarity,
        Role::Clinician,
        "Dr Derek Shepherd",
        None,
        "ETREAT",
    )
    .await;
    let outsider = person(&clarity, Role::Clinician, "Dr Nobody", None, "TREAT").await;

    clock.advance(Duration::minutes(1));
    clarity
        .get_record(&grey, record.id)
        .await
        .expect("grey reads");
    clock.advance(Duration::minutes(1));
    clarity
        .break_glass(
            &er,
            BreakGlassRequest {
                patient_id: patient.id,
                reason: "unconscious in the emergency department".into(),
                totp: None,
            },
        )
        .await
        .expect("break-glass");
    clarity
        .get_patient(&er, patient.id)
        .await
        .expect("er reads");
    // A refused attempt is not an access.
    assert_eq!(
        kind(clarity.get_patient(&outsider, patient.id).await),
        ErrorKind::NotFound
    );

    // S-AUD-9: the patient sees who accessed its record.
    let log = clarity
        .patient_access_log(
            &ada,
            patient.id,
            AccessLogRange::default(),
            &PageRequest::default(),
        )
        .await
        .expect("own access log");
    let entries = &log.items;
    assert!(
        entries.windows(2).all(|w| w[0].at <= w[1].at),
        "oldest first"
    );
    let grey_read = entries
        .iter()
        .find(|e| e.action == "record.read" && e.accessor_id == Some(grey.user_id()))
        .expect("grey's read is listed");
    assert_eq!(grey_read.accessor_name.as_deref(), Some("Dr Meredith Grey"));
    assert_eq!(grey_read.accessor_roles, vec!["clinician".to_string()]);
    assert_eq!(grey_read.purpose.as_deref(), Some("TREAT"));
    assert_eq!(grey_read.action_code, "R");
    assert_eq!(grey_read.entity_id, Some(record.id));
    assert!(!grey_read.break_glass);
    let er_entries: Vec<_> = entries
        .iter()
        .filter(|e| e.accessor_id == Some(er.user_id()))
        .collect();
    assert!(
        er_entries.iter().any(|e| e.action == "break_glass"),
        "{er_entries:?}"
    );
    let er_read = er_entries
        .iter()
        .find(|e| e.action == "patient.read")
        .expect("the emergency read is listed");
    assert!(er_read.break_glass, "break-glass access is flagged");
    assert_eq!(er_read.accessor_name.as_deref(), Some("Dr Derek Shepherd"));
    assert_eq!(er_read.purpose.as_deref(), Some("ETREAT"));
    assert!(er_entries.iter().all(|e| e.break_glass));
    assert!(
        entries
            .iter()
            .all(|e| e.accessor_id != Some(outsider.user_id())),
        "refused attempts are not accesses"
    );

    // The auditor sees the same log (plus the patient's own reading of it).
    let audited = clarity
        .patient_access_log(
            &auditor,
            patient.id,
            AccessLogRange::default(),
            &PageRequest::default(),
        )
        .await
        .expect("auditor's view");
    assert_eq!(audited.items.len(), entries.len() + 1);
    assert!(
        audited
            .items
            .iter()
            .any(|e| e.action == "patient.access_log"
                && e.accessor_id == Some(ada.user_id())
                && e.purpose.as_deref() == Some("PATRQT"))
    );
    // Paging: one entry at a time reaches the same entries. Each read of
    // the log is an access too, so the pages stop at a fixed time.
    let until = clock.now() + Duration::seconds(1);
    clock.advance(Duration::minutes(1));
    let mut paged = Vec::new();
    let mut page = PageRequest {
        limit: Some(1),
        cursor: None,
    };
    let fixed = AccessLogRange {
        from: None,
        to: Some(until),
    };
    loop {
        let got = clarity
            .patient_access_log(&auditor, patient.id, fixed, &page)
            .await
            .expect("page");
        assert!(got.items.len() <= 1);
        paged.extend(got.items);
        match got.next_cursor {
            Some(c) => page.cursor = Some(c),
            None => break,
        }
    }
    // The auditor's own first read is the one entry past what it saw.
    assert_eq!(paged.len(), audited.items.len() + 1);
    assert_eq!(paged[..audited.items.len()], audited.items[..]);
    // A range narrows it.
    let range = AccessLogRange {
        from: Some(start() + Duration::seconds(90)),
        to: None,
    };
    let later = clarity
        .patient_access_log(&auditor, patient.id, range, &PageRequest::default())
        .await
        .expect("range");
    assert!(
        later
            .items
            .iter()
            .all(|e| e.at >= start() + Duration::seconds(90))
    );
    assert!(later.items.iter().all(|e| e.action != "record.create"));

    // Nobody else sees it; for those who may not see the patient at all
    // (another patient, an admin), it looks like no patient (S-AC-3).
    assert_eq!(
        kind(
            clarity
                .patient_access_log(
                    &ada,
                    other.id,
                    AccessLogRange::default(),
                    &PageRequest::default()
                )
                .await
        ),
        ErrorKind::NotFound
    );
    assert_eq!(
        kind(
            clarity
                .patient_access_log(
                    &grey,
                    patient.id,
                    AccessLogRange::default(),
                    &PageRequest::default()
                )
                .await
        ),
        ErrorKind::PermissionDenied
    );
    assert_eq!(
        kind(
            clarity
                .patient_access_log(
                    &admin,
                    patient.id,
                    AccessLogRange::default(),
                    &PageRequest::default()
                )
                .await
        ),
        ErrorKind::NotFound
    );
    assert_eq!(
        kind(
            clarity
                .patient_access_log(
                    &auditor,
                    Uuid::now_v7(),
                    AccessLogRange::default(),
                    &PageRequest::default()
                )
                .await
        ),
        ErrorKind::NotFound
    );

    // S-AUD-9: disclosures are recorded by those who treat the patient.
    let canary = format!("CANARY{}", Uuid::new_v4().simple());
    let recent = clarity
        .record_disclosure(
            &grey,
            patient.id,
            disclosure(&format!("County Health {canary}"), None),
        )
        .await
        .expect("record a disclosure");
    assert_eq!(recent.recorded_by, grey.user_id());
    assert_eq!(recent.disclosed_at, clock.now());
    let backdated = clarity
        .record_disclosure(
            &er,
            patient.id,
            disclosure("State Registry", Some(start() - Duration::days(30))),
        )
        .await
        .expect("a clinician under break-glass records one");
    // Seven years ago: listed, but outside the accounting.
    let ancient_at = start().checked_sub_months(Months::new(84)).expect("time");
    let ancient = clarity
        .record_disclosure(
            &grey,
            patient.id,
            disclosure("Old Insurer", Some(ancient_at)),
        )
        .await
        .expect("an old disclosure");
    assert_eq!(
        kind(
            clarity
                .record_disclosure(&ada, patient.id, disclosure("X", None))
                .await
        ),
        ErrorKind::PermissionDenied
    );
    // The privacy office answers legal requests.
    let subpoena = clarity
        .record_disclosure(
            &auditor,
            patient.id,
            disclosure("Court of Appeals", Some(start() - Duration::days(2))),
        )
        .await
        .expect("an auditor records one");
    assert_eq!(
        kind(
            clarity
                .record_disclosure(&outsider, patient.id, disclosure("X", None))
                .await
        ),
        ErrorKind::NotFound
    );
    let mut blank = disclosure("X", None);
    blank.details.expose_mut().legal_basis = " ".into();
    let err = clarity
        .record_disclosure(&grey, patient.id, blank)
        .await
        .expect_err("blank legal basis");
    assert_eq!(err.kind(), ErrorKind::InvalidInput);
    assert!(err.to_string().contains("legal_basis"), "{err}");
    assert_eq!(
        kind(
            clarity
                .record_disclosure(
                    &grey,
                    patient.id,
                    disclosure("X", Some(start() + Duration::days(1)))
                )
                .await
        ),
        ErrorKind::InvalidInput
    );

    // Details are sealed at rest and never in the audit trail (S-AUD-4).
    let rows = h
        .store
        .list_disclosures(patient.id, None, None, 100)
        .await
        .expect("rows");
    assert_eq!(rows.len(), 4);
    for row in &rows {
        assert!(
            !row.details
                .windows(canary.len())
                .any(|w| w == canary.as_bytes()),
            "disclosure details are stored sealed"
        );
    }
    let events = clarity
        .audit_events(
            &auditor,
            &clarity_core::audit::AuditFilter {
                patient_id: Some(patient.id),
                subtype: Some("disclosure.create".into()),
                ..Default::default()
            },
            &PageRequest::default(),
        )
        .await
        .expect("events");
    assert_eq!(events.items.len(), 4 + 4, "four recorded, four refused");
    let recorded_ids: Vec<_> = events.items.iter().filter_map(|e| e.entity_id).collect();
    assert!(recorded_ids.contains(&recent.id));
    assert!(
        !serde_json::to_string(&events.items)
            .expect("json")
            .contains(&canary)
    );

    // The list: the patient, the care team and the auditor; in recorded order.
    let listed = clarity
        .list_disclosures(&ada, patient.id, &PageRequest::default())
        .await
        .expect("patient lists its disclosures");
    let ids: Vec<_> = listed.items.iter().map(|d| d.id).collect();
    assert_eq!(ids, vec![recent.id, backdated.id, ancient.id, subpoena.id]);
    assert_eq!(
        listed.items[0].details.expose().recipient,
        format!("County Health {canary}")
    );
    clarity
        .list_disclosures(&auditor, patient.id, &PageRequest::default())
        .await
        .expect("auditor lists");
    assert_eq!(
        kind(
            clarity
                .list_disclosures(&admin, patient.id, &PageRequest::default())
                .await
        ),
        ErrorKind::NotFound
    );
    assert_eq!(
        kind(
            clarity
                .list_disclosures(&ada, other.id, &PageRequest::default())
                .await
        ),
        ErrorKind::NotFound
    );

    // S-AUD-9: the accounting covers six years, oldest disclosure first.
    let accounting = clarity
        .disclosure_accounting(&ada, patient.id, None)
        .await
        .expect("accounting");
    assert_eq!(accounting.to, clock.now());
    assert_eq!(
        accounting.from,
        clock
            .now()
            .checked_sub_months(Months::new(72))
            .expect("time")
    );
    let ids: Vec<_> = accounting.disclosures.iter().map(|d| d.id).collect();
    assert_eq!(
        ids,
        vec![backdated.id, subpoena.id, recent.id],
        "six years, oldest first"
    );
    let text = accounting.printable();
    assert!(text.contains("ACCOUNTING OF DISCLOSURES"));
    assert!(text.contains("State Registry"));
    assert!(text.contains(&canary));
    assert!(!text.contains("Old Insurer"));
    let json = serde_json::to_value(&accounting).expect("json");
    assert_eq!(json["disclosures"][0]["recipient"], "State Registry");
    assert_eq!(
        json["disclosures"][0]["legal_basis"],
        "state public health reporting statute"
    );
    let narrower = clarity
        .disclosure_accounting(&auditor, patient.id, Some(start() - Duration::days(1)))
        .await
        .expect("a shorter period");
    assert_eq!(narrower.disclosures.len(), 1, "only the one recorded today");
    assert_eq!(
        kind(
            clarity
                .disclosure_accounting(&auditor, patient.id, Some(ancient_at))
                .await
        ),
        ErrorKind::InvalidInput
    );

    // Recording, listing and producing the accounting are themselves
    // accesses the patient can see.
    let log = clarity
        .patient_access_log(
            &ada,
            patient.id,
            AccessLogRange::default(),
            &PageRequest {
                limit: Some(1000),
                cursor: None,
            },
        )
        .await
        .expect("log");
    for action in [
        "disclosure.create",
        "disclosure.list",
        "disclosure.accounting",
    ] {
        assert!(log.items.iter().any(|e| e.action == action), "{action}");
    }

    // Erasing the patient leaves its disclosures unreadable.
    clarity
        .erase_patient(&admin, patient.id)
        .await
        .expect("erase");
    assert_eq!(
        kind(
            clarity
                .disclosure_accounting(&auditor, patient.id, None)
                .await
        ),
        ErrorKind::NotFound
    );
    clarity.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory() {
    scenario(testing::memory().await.expect("memory")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite() {
    scenario(testing::sqlite().await.expect("sqlite")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres() {
    let Some(h) = testing::postgres().await else {
        return;
    };
    scenario(h).await;
}
