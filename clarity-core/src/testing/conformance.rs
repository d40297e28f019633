//! The backend conformance suite: the same behaviour, proven on every backend.
//!
//! Each case is a public async function taking a [`Harness`]. The
//! [`conformance_suite!`](crate::conformance_suite) macro turns the whole list
//! into one `#[tokio::test]` per case for a given harness factory:
//!
//! ```text
//! clarity_core::conformance_suite!(clarity_core::testing::sqlite());
//! ```

use std::sync::Arc;

use uuid::Uuid;

use super::Harness;
use crate::crypto::{Json, LocalKeyring};
use crate::error::{Error, ErrorKind};
use crate::model::{PageRequest, Patient, PatientLookup, PatientProfile};
use crate::store::PhiStore;

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
            erasure_removes_care_team_assignments
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

fn kind_of<T: std::fmt::Debug>(result: crate::Result<T>) -> ErrorKind {
    match result {
        Ok(value) => panic!("expected an error, got {value:?}"),
        Err(e) => e.kind(),
    }
}

/// Create, then read back identical content.
pub async fn patient_round_trip(h: &Harness) {
    let mrn = unique_mrn();
    let created = h.phi.create_patient(profile(&mrn)).await.expect("create");
    assert_eq!(created.version, 1);
    let read = h.phi.get_patient(created.id).await.expect("read");
    assert_eq!(read.id, created.id);
    assert_eq!(read.version, 1);
    assert_eq!(read.created_at, created.created_at);
    assert!(
        read.profile.expose() == &profile(&mrn),
        "profile differs after a round trip"
    );
}

/// S-INT-2: an update names the version it read; a stale one gets `Conflict`
/// and nothing is overwritten.
pub async fn patient_update_needs_current_version(h: &Harness) {
    let mrn = unique_mrn();
    let created = h.phi.create_patient(profile(&mrn)).await.expect("create");
    let mut changed = profile(&mrn);
    changed.given_name = "Augusta".into();
    let updated = h
        .phi
        .update_patient(created.id, 1, changed.clone())
        .await
        .expect("update");
    assert_eq!(updated.version, 2);

    let mut stale = profile(&mrn);
    stale.given_name = "Stale".into();
    match h.phi.update_patient(created.id, 1, stale).await {
        Err(Error::Conflict {
            expected, current, ..
        }) => assert_eq!((expected, current), (1, 2)),
        other => panic!("expected a conflict, got {other:?}"),
    }
    let read = h.phi.get_patient(created.id).await.expect("read");
    assert_eq!(read.version, 2);
    assert_eq!(read.profile.expose().given_name, "Augusta");
}

/// S-INT-2 under contention: of many updates from the same version, exactly one wins.
pub async fn concurrent_updates_one_wins(h: &Harness) {
    let patient = new_patient(h).await;
    let record = h
        .phi
        .create_record(patient.id, "observation", body(0), Uuid::now_v7())
        .await
        .expect("record");
    let tasks: Vec<_> = (1..=8u64)
        .map(|n| {
            let phi = h.phi.clone();
            tokio::spawn(async move { phi.update_record(record.id, 1, body(n)).await })
        })
        .collect();
    let mut wins = Vec::new();
    for task in tasks {
        match task.await.expect("task") {
            Ok(r) => wins.push(r),
            Err(e) => assert_eq!(e.kind(), ErrorKind::Conflict, "{e}"),
        }
    }
    assert_eq!(wins.len(), 1, "exactly one update wins");
    let read = h.phi.get_record(record.id).await.expect("read");
    assert_eq!(read.version, 2);
    assert_eq!(
        read.data.expose(),
        wins[0].data.expose(),
        "the winner's body is stored"
    );
}

/// MRNs are unique among live patients, on create and on update.
pub async fn duplicate_mrn_is_rejected(h: &Harness) {
    let mrn = unique_mrn();
    h.phi.create_patient(profile(&mrn)).await.expect("create");
    let mut same = profile(&mrn);
    same.mrn = format!("  {}  ", mrn.to_lowercase());
    assert_eq!(
        kind_of(h.phi.create_patient(same).await),
        ErrorKind::AlreadyExists
    );

    let other = new_patient(h).await;
    assert_eq!(
        kind_of(h.phi.update_patient(other.id, 1, profile(&mrn)).await),
        ErrorKind::AlreadyExists
    );
    assert_eq!(h.phi.get_patient(other.id).await.expect("read").version, 1);
}

/// Lookups by MRN, email and family name + birth date find exactly the match.
pub async fn lookup_by_blind_index(h: &Harness) {
    let mrn = unique_mrn();
    let mut p = profile(&mrn);
    p.family_name = format!("Family{}", Uuid::new_v4().simple());
    let family = p.family_name.clone();
    let email = p.email.clone().expect("email");
    let patient = h.phi.create_patient(p).await.expect("create");
    new_patient(h).await;

    let found = |lookup: PatientLookup| {
        let phi = h.phi.clone();
        async move { phi.find_patients(&lookup).await.expect("lookup") }
    };
    assert_eq!(
        found(PatientLookup::Mrn(mrn.to_lowercase())).await,
        vec![patient.id]
    );
    assert_eq!(
        found(PatientLookup::Email(email.to_uppercase())).await,
        vec![patient.id]
    );
    assert_eq!(
        found(PatientLookup::NameBirthDate {
            family_name: family.clone(),
            birth_date: "1985-12-10".into()
        })
        .await,
        vec![patient.id]
    );
    assert!(
        found(PatientLookup::NameBirthDate {
            family_name: family,
            birth_date: "1985-12-11".into()
        })
        .await
        .is_empty()
    );
    assert!(
        found(PatientLookup::Mrn("no such mrn".into()))
            .await
            .is_empty()
    );
}

/// Records: create, read, update, delete, with typed errors afterwards.
pub async fn record_lifecycle(h: &Harness) {
    let patient = new_patient(h).await;
    let author = Uuid::now_v7();
    let created = h
        .phi
        .create_record(patient.id, "observation", body(72), author)
        .await
        .expect("create record");
    let read = h.phi.get_record(created.id).await.expect("read");
    assert_eq!(read.kind.as_str(), "observation");
    assert_eq!(read.created_by, author);
    assert_eq!(read.patient_id, patient.id);
    assert_eq!(read.data.expose(), &body(72));

    let updated = h
        .phi
        .update_record(created.id, 1, body(80))
        .await
        .expect("update");
    assert_eq!(updated.version, 2);
    assert_eq!(updated.created_at, created.created_at);
    assert_eq!(
        kind_of(h.phi.update_record(created.id, 1, body(90)).await),
        ErrorKind::Conflict
    );
    assert_eq!(
        h.phi
            .get_record(created.id)
            .await
            .expect("read")
            .data
            .expose(),
        &body(80)
    );

    h.phi.delete_record(created.id).await.expect("delete");
    assert_eq!(
        kind_of(h.phi.get_record(created.id).await),
        ErrorKind::NotFound
    );
    assert_eq!(
        kind_of(h.phi.delete_record(created.id).await),
        ErrorKind::NotFound
    );
    assert_eq!(
        kind_of(h.phi.update_record(created.id, 2, body(1)).await),
        ErrorKind::NotFound
    );
}

/// An unchained event for slot `seq` of `chain` (the store does not check
/// MACs; the writer makes them).
fn bare_event(chain: Uuid, seq: i64, outcome: &crate::Result<()>) -> crate::audit::AuditEvent {
    crate::audit::AuditEvent {
        id: Uuid::now_v7(),
        chain_id: chain,
        seq,
        recorded: chrono::Utc::now(),
        event_type: "rest".into(),
        subtype: "record.update".into(),
        action: "U".into(),
        outcome: if outcome.is_ok() { "0" } else { "4" }.into(),
        purpose: None,
        actor_id: None,
        actor_roles: None,
        client_address: None,
        patient_id: None,
        entity_id: None,
        query_hash: None,
        reason: None,
        request_id: None,
        prev_mac: vec![0; 32],
        mac: vec![1; 32],
    }
}

/// S-AUD-2: a change commits in its audit event's transaction. In a batch,
/// a change that fails (stale version, unknown patient) is undone alone and
/// its outcome reaches its event, the others commit; when the batch cannot
/// be stored, none of its changes is.
pub async fn changes_commit_with_their_audit_events(h: &Harness) {
    use crate::audit::AuditBatch;
    use crate::model::Change;

    let patient = new_patient(h).await;
    let author = Uuid::now_v7();
    let existing = h
        .phi
        .create_record(patient.id, "observation", body(60), author)
        .await
        .expect("record");
    let (insert, inserted) = h
        .phi
        .prepare_record(patient.id, "observation", body(61), author)
        .await
        .expect("prepare");
    let (mut stale, _) = h
        .phi
        .prepare_record_update(existing.id, 1, body(62))
        .await
        .expect("prepare update");
    if let Change::UpdateRecord {
        expected_version, ..
    } = &mut stale
    {
        *expected_version = 5;
    }
    let (orphan, _) = h
        .phi
        .prepare_record(patient.id, "observation", body(63), author)
        .await
        .expect("prepare");
    let Change::InsertRecord(mut orphan) = orphan else {
        panic!("an insert")
    };
    orphan.patient_id = Uuid::now_v7();
    // Inserts on either side of the orphan: a run of inserts, which a
    // backend may send together, still gets one outcome per insert.
    let (before, before_row) = h
        .phi
        .prepare_record(patient.id, "observation", body(66), author)
        .await
        .expect("prepare");
    let (after, after_row) = h
        .phi
        .prepare_record(patient.id, "observation", body(67), author)
        .await
        .expect("prepare");

    let chain = Uuid::now_v7();
    let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
    let seen_in_seal = Arc::clone(&seen);
    let stored = h
        .audit
        .append_audit_batch(AuditBatch {
            changes: vec![
                Some(insert),
                Some(stale),
                None,
                Some(before),
                Some(Change::InsertRecord(orphan.clone())),
                Some(after),
            ],
            seal: Box::new(move |outcomes| {
                seen_in_seal
                    .lock()
                    .expect("lock")
                    .extend(outcomes.iter().map(|o| o.as_ref().err().map(Error::kind)));
                let events = (1..)
                    .zip(outcomes)
                    .map(|(seq, o)| bare_event(chain, seq, o))
                    .collect();
                (events, None)
            }),
        })
        .await
        .expect("the batch commits");
    let kinds: Vec<Option<ErrorKind>> = stored
        .outcomes
        .iter()
        .map(|o| o.as_ref().err().map(Error::kind))
        .collect();
    let expected = vec![
        None,
        Some(ErrorKind::Conflict),
        None,
        None,
        Some(ErrorKind::NotFound),
        None,
    ];
    assert_eq!(kinds, expected, "each change's own outcome");
    assert_eq!(
        *seen.lock().expect("lock"),
        expected,
        "the events are sealed with those outcomes"
    );
    let events = h
        .audit
        .audit_chain_events(chain, 0, 100)
        .await
        .expect("events");
    let outcomes: Vec<&str> = events.iter().map(|e| e.outcome.as_str()).collect();
    assert_eq!(outcomes, ["0", "4", "0", "0", "4", "0"]);
    for (id, n) in [(inserted.id, 61), (before_row.id, 66), (after_row.id, 67)] {
        let read = h.phi.get_record(id).await.expect("inserted");
        assert_eq!(read.data.expose(), &body(n));
    }
    let kept = h.phi.get_record(existing.id).await.expect("kept");
    assert_eq!((kept.version, kept.data.expose()), (1, &body(60)));
    assert_eq!(
        kind_of(h.phi.get_record(orphan.id).await),
        ErrorKind::NotFound
    );

    // A batch that cannot be stored (its events clash with stored ones)
    // leaves no change behind.
    let (insert, lost) = h
        .phi
        .prepare_record(patient.id, "observation", body(64), author)
        .await
        .expect("prepare");
    let (update, _) = h
        .phi
        .prepare_record_update(existing.id, 1, body(65))
        .await
        .expect("prepare update");
    let spared = new_patient(h).await;
    let spared_record = h
        .phi
        .create_record(spared.id, "observation", body(66), author)
        .await
        .expect("record");
    let erase = Change::ErasePatient {
        id: spared.id,
        at: chrono::Utc::now(),
    };
    let failed = h
        .audit
        .append_audit_batch(AuditBatch {
            changes: vec![Some(insert), Some(update), Some(erase)],
            seal: Box::new(move |outcomes| {
                assert!(outcomes.iter().all(Result::is_ok), "the changes apply");
                let events = (1..)
                    .zip(outcomes)
                    .map(|(seq, o)| bare_event(chain, seq, o))
                    .collect();
                (events, None)
            }),
        })
        .await;
    assert!(failed.is_err(), "events with taken sequence numbers");
    assert_eq!(
        kind_of(h.phi.get_record(lost.id).await),
        ErrorKind::NotFound
    );
    h.phi
        .get_patient(spared.id)
        .await
        .expect("the erasure of a failed batch is undone");
    h.phi
        .get_record(spared_record.id)
        .await
        .expect("with the patient's records and data key");
    let kept = h.phi.get_record(existing.id).await.expect("kept");
    assert_eq!((kept.version, kept.data.expose()), (1, &body(60)));
    assert_eq!(
        h.audit
            .audit_chain_events(chain, 0, 100)
            .await
            .expect("events")
            .len(),
        6
    );
}

/// Cursor pagination visits every record once, in creation order.
pub async fn record_pagination(h: &Harness) {
    let patient = new_patient(h).await;
    let other = new_patient(h).await;
    let mut ids = Vec::new();
    for n in 0..7 {
        let r = h
            .phi
            .create_record(patient.id, "observation", body(n), Uuid::now_v7())
            .await
            .expect("record");
        ids.push(r.id);
        h.phi
            .create_record(other.id, "note", body(n), Uuid::now_v7())
            .await
            .expect("other record");
    }
    let mut seen = Vec::new();
    let mut sizes = Vec::new();
    let mut page = PageRequest::first(3);
    loop {
        let result = h.phi.list_records(patient.id, &page).await.expect("page");
        sizes.push(result.items.len());
        seen.extend(result.items.iter().map(|r| r.id));
        match result.next_cursor {
            Some(cursor) => page.cursor = Some(cursor),
            None => break,
        }
    }
    assert_eq!(sizes, vec![3, 3, 1]);
    assert_eq!(seen, ids);
}

/// Bad input never panics and always gets a typed error.
pub async fn bad_input_gives_typed_errors(h: &Harness) {
    let unknown = Uuid::now_v7();
    assert_eq!(
        kind_of(h.phi.get_patient(unknown).await),
        ErrorKind::NotFound
    );
    assert_eq!(
        kind_of(
            h.phi
                .update_patient(unknown, 1, profile(&unique_mrn()))
                .await
        ),
        ErrorKind::NotFound
    );
    assert_eq!(
        kind_of(h.phi.create_record(unknown, "note", body(1), unknown).await),
        ErrorKind::NotFound
    );
    assert_eq!(
        kind_of(h.phi.get_record(unknown).await),
        ErrorKind::NotFound
    );
    assert_eq!(
        kind_of(h.phi.list_records(unknown, &PageRequest::default()).await),
        ErrorKind::NotFound
    );
    assert_eq!(
        kind_of(h.phi.erase_patient(unknown).await),
        ErrorKind::NotFound
    );

    let patient = new_patient(h).await;
    let empty = Json(serde_json::json!({}));
    let not_object = Json(serde_json::json!([1, 2, 3]));
    let huge = Json(serde_json::json!({"text": "x".repeat(2 * 1024 * 1024)}));
    for data in [empty, not_object, huge] {
        assert_eq!(
            kind_of(h.phi.create_record(patient.id, "note", data, unknown).await),
            ErrorKind::InvalidInput
        );
    }
    assert_eq!(
        kind_of(
            h.phi
                .create_record(patient.id, "Bad Kind", body(1), unknown)
                .await
        ),
        ErrorKind::InvalidInput
    );
    let mut invalid = profile(&unique_mrn());
    invalid.birth_date = "yesterday".into();
    assert_eq!(
        kind_of(h.phi.create_patient(invalid).await),
        ErrorKind::InvalidInput
    );
    assert_eq!(
        kind_of(
            h.phi
                .update_patient(patient.id, 7, profile(&unique_mrn()))
                .await
        ),
        ErrorKind::Conflict
    );
    let bad_cursor = PageRequest {
        limit: Some(10),
        cursor: Some("not-a-cursor".into()),
    };
    assert_eq!(
        kind_of(h.phi.list_records(patient.id, &bad_cursor).await),
        ErrorKind::InvalidInput
    );
    assert_eq!(
        kind_of(h.phi.list_records(patient.id, &PageRequest::first(0)).await),
        ErrorKind::InvalidInput
    );
    let record = h
        .phi
        .create_record(patient.id, "note", body(1), unknown)
        .await
        .expect("record");
    assert_eq!(
        kind_of(
            h.phi
                .update_record(record.id, 1, Json(serde_json::json!("text")))
                .await
        ),
        ErrorKind::InvalidInput
    );
}

/// S-INT-1: a ciphertext moved to another row, version or patient, or with a
/// flipped byte, fails with the one uniform integrity error.
pub async fn moved_or_altered_ciphertext_fails_uniformly(h: &Harness) {
    let a = new_patient(h).await;
    let b = new_patient(h).await;
    let author = Uuid::now_v7();
    let new_record = |patient: Uuid, n: u64| {
        let phi = h.phi.clone();
        async move {
            phi.create_record(patient, "observation", body(n), author)
                .await
                .expect("record")
                .id
        }
    };
    let (a1, a2, b1) = (
        new_record(a.id, 1).await,
        new_record(a.id, 2).await,
        new_record(b.id, 3).await,
    );

    // Same patient, another row.
    let a1_body = h.raw.record_body(a1).await;
    h.raw.set_record_body(a2, a1_body.clone()).await;
    assert!(matches!(h.phi.get_record(a2).await, Err(Error::Integrity)));
    // Another patient's row.
    h.raw.set_record_body(b1, a1_body.clone()).await;
    assert!(matches!(h.phi.get_record(b1).await, Err(Error::Integrity)));
    // Same row, another version (a replayed old ciphertext).
    let old = h.raw.record_body(a1).await;
    h.phi.update_record(a1, 1, body(10)).await.expect("update");
    h.raw.set_record_body(a1, old).await;
    assert!(matches!(h.phi.get_record(a1).await, Err(Error::Integrity)));
    // Version changed under an intact ciphertext.
    let fresh = new_record(a.id, 4).await;
    h.raw.set_record_version(fresh, 5).await;
    assert!(matches!(
        h.phi.get_record(fresh).await,
        Err(Error::Integrity)
    ));
    // One flipped byte, anywhere.
    let flip = new_record(a.id, 5).await;
    let original = h.raw.record_body(flip).await;
    for at in [0, 1, 13, original.len() / 2, original.len() - 1] {
        let mut flipped = original.clone();
        flipped[at] ^= 0x40;
        h.raw.set_record_body(flip, flipped).await;
        assert!(
            matches!(h.phi.get_record(flip).await, Err(Error::Integrity)),
            "byte {at}"
        );
    }
    h.raw.set_record_body(flip, original).await;
    h.phi
        .get_record(flip)
        .await
        .expect("restored ciphertext reads again");
    // Profiles are bound the same way.
    let a_profile = h.raw.patient_profile(a.id).await;
    h.raw.set_patient_profile(b.id, a_profile).await;
    assert!(matches!(
        h.phi.get_patient(b.id).await,
        Err(Error::Integrity)
    ));
    // A list containing a bad row fails as a whole, with the same error.
    assert!(matches!(
        h.phi.list_records(a.id, &PageRequest::default()).await,
        Err(Error::Integrity)
    ));
}

/// S-KEY-3: erasure destroys the patient's data key; its ciphertext, even
/// when a copy survives and is put back, can no longer be read.
pub async fn erasure_destroys_the_data_key(h: &Harness) {
    let patient = new_patient(h).await;
    let keep = new_patient(h).await;
    let record = h
        .phi
        .create_record(patient.id, "observation", body(1), Uuid::now_v7())
        .await
        .expect("record");
    let surviving_row = h
        .store
        .get_record(record.id)
        .await
        .expect("read")
        .expect("row");
    let keys_before = h.store.count_data_keys().await.expect("count");

    h.phi.erase_patient(patient.id).await.expect("erase");
    h.phi
        .erase_patient(patient.id)
        .await
        .expect("erasure is idempotent");

    assert_eq!(
        h.store.count_data_keys().await.expect("count"),
        keys_before - 1
    );
    assert!(
        h.store
            .get_data_key(patient.id)
            .await
            .expect("read")
            .is_none()
    );
    assert_eq!(
        kind_of(h.phi.get_patient(patient.id).await),
        ErrorKind::NotFound
    );
    assert_eq!(
        kind_of(h.phi.get_record(record.id).await),
        ErrorKind::NotFound
    );
    assert_eq!(
        kind_of(
            h.phi
                .create_record(patient.id, "note", body(2), Uuid::now_v7())
                .await
        ),
        ErrorKind::NotFound
    );
    let mrn = PatientLookup::Mrn(keep.profile.expose().mrn.clone());
    assert_eq!(
        h.phi.find_patients(&mrn).await.expect("lookup"),
        vec![keep.id]
    );

    // A copy of the record row survived elsewhere and is written back.
    h.raw.insert_record_row(&surviving_row).await;
    assert_eq!(
        kind_of(h.phi.get_record(record.id).await),
        ErrorKind::NotFound
    );
    // The other patient is untouched.
    h.phi
        .get_patient(keep.id)
        .await
        .expect("other patient still reads");
}

/// A store bound to one keyring refuses another; the data is left alone.
pub async fn store_refuses_a_foreign_keyring(h: &Harness) {
    let patient = new_patient(h).await;
    let other_dir = tempfile::tempdir().expect("tempdir");
    let other = LocalKeyring::create(&other_dir.path().join("other.json")).expect("keyring");
    let err = PhiStore::new(Arc::clone(&h.store), Arc::new(other))
        .await
        .expect_err("a foreign keyring is refused");
    assert_eq!(err.kind(), ErrorKind::Key);
    assert!(err.to_string().contains("does not belong"), "{err}");
    let again = PhiStore::new(Arc::clone(&h.store), Arc::clone(&h.keys))
        .await
        .expect("the store's own keyring binds again");
    again.get_patient(patient.id).await.expect("data intact");
}

/// Metadata is written once and never replaced.
pub async fn metadata_is_set_once(h: &Harness) {
    let key = format!("test_{}", Uuid::new_v4().simple());
    assert_eq!(h.store.get_meta(&key).await.expect("get"), None);
    assert_eq!(
        h.store.set_meta_if_absent(&key, "one").await.expect("set"),
        "one"
    );
    assert_eq!(
        h.store.set_meta_if_absent(&key, "two").await.expect("set"),
        "one"
    );
    assert_eq!(
        h.store.get_meta(&key).await.expect("get").as_deref(),
        Some("one")
    );
    h.store.ping().await.expect("ping");
    assert!(h.store.schema_version().await.expect("version") >= 1);
    h.store.put_meta(&key, "three").await.expect("put");
    assert_eq!(
        h.store.take_meta(&key).await.expect("take").as_deref(),
        Some("three")
    );
    assert_eq!(
        h.store.take_meta(&key).await.expect("take"),
        None,
        "taken once"
    );
}

pub use super::identity_conformance::{
    care_teams_and_grants, erasure_removes_care_team_assignments,
    login_failures_count_within_a_window, sessions_end_and_refresh_tokens_rotate_once,
    totp_steps_only_move_forward, users_are_unique_by_email_and_versioned,
};
