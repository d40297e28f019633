//! Conformance cases for patients: round trips, versioned updates, unique
//! MRNs and lookups by blind index.

use uuid::Uuid;

use super::{kind_of, new_patient, profile, unique_mrn};
use crate::error::{Error, ErrorKind};
use crate::model::PatientLookup;
use crate::testing::Harness;

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
