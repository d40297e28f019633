//! Conformance cases for keys and ciphertext: integrity binding (S-INT-1),
//! erasure by destroying the data key (S-KEY-3), refusal of a foreign
//! keyring, and the set-once store metadata that binding relies on.

use std::sync::Arc;

use uuid::Uuid;

use super::{body, kind_of, new_patient};
use crate::crypto::LocalKeyring;
use crate::error::{Error, ErrorKind};
use crate::model::{PageRequest, PatientLookup};
use crate::testing::Harness;
use crate::vault::PhiStore;

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
