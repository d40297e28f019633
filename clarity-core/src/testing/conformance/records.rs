//! Conformance cases for records: their lifecycle, concurrent updates,
//! cursor pagination, and typed errors for bad input.

use uuid::Uuid;

use super::{body, kind_of, new_patient, profile, unique_mrn};
use crate::crypto::Json;
use crate::error::ErrorKind;
use crate::model::PageRequest;
use crate::testing::Harness;

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
