//! [`Change`]: one write of PHI rows, as a value. A change either runs in a
//! transaction of its own (the store's `apply`) or inside the audit
//! writer's batch transaction, so that the change and its audit event
//! commit together or not at all (the audit store's `append_audit_batch`).

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::Invalidation;
use super::rows::{
    CareTeamRow, DataKeyRow, DisclosureRow, GrantRow, PatientRow, RecordRow, UserRow,
};

/// A write of ciphertext rows. Every variant is all-or-nothing.
#[derive(Debug, Clone)]
pub enum Change {
    /// A new patient with its data key and, optionally, its first care-team
    /// member (the clinician who created it).
    ///
    /// Fails with [`crate::error::Error::AlreadyExists`] when the id or the MRN
    /// index is taken.
    InsertPatient {
        /// The wrapped data key.
        key: DataKeyRow,
        /// The patient row.
        patient: PatientRow,
        /// The creator's membership, if any.
        creator: Option<CareTeamRow>,
    },
    /// A patient row replaced if its stored version is `expected_version`
    /// (`patient.version` is `expected_version + 1`).
    ///
    /// Fails with [`crate::error::Error::Conflict`] on a stale version,
    /// [`crate::error::Error::NotFound`] when absent or erased,
    /// [`crate::error::Error::AlreadyExists`] when the new MRN is taken.
    UpdatePatient {
        /// The new row.
        patient: PatientRow,
        /// The version the caller read.
        expected_version: i64,
    },
    /// A new record. Fails with [`crate::error::Error::NotFound`] when the patient
    /// does not exist or is erased.
    InsertRecord(RecordRow),
    /// A record's body replaced if its stored version is `expected_version`
    /// (`record.version` is `expected_version + 1`).
    ///
    /// Fails with [`crate::error::Error::Conflict`] on a stale version,
    /// [`crate::error::Error::NotFound`] when absent.
    UpdateRecord {
        /// The new row.
        record: RecordRow,
        /// The version the caller read.
        expected_version: i64,
    },
    /// A record deleted. Fails with [`crate::error::Error::NotFound`] when absent.
    DeleteRecord(Uuid),
    /// A patient erased: its data key destroyed, its records and care-team
    /// memberships deleted, its row blanked and marked erased at `at`.
    /// Idempotent for an erased patient; fails with
    /// [`crate::error::Error::NotFound`] when the patient never existed.
    ErasePatient {
        /// The patient.
        id: Uuid,
        /// When (kept from the first erasure).
        at: DateTime<Utc>,
    },
    /// A care-team membership added or replaced. Fails with
    /// [`crate::error::Error::NotFound`] for an unknown or erased patient or an
    /// unknown user.
    AddCareTeamMember(CareTeamRow),
    /// A care-team membership removed. Fails with
    /// [`crate::error::Error::NotFound`] when there is none.
    RemoveCareTeamMember {
        /// The patient.
        patient_id: Uuid,
        /// The member.
        user_id: Uuid,
    },
    /// A break-glass grant stored. Fails with [`crate::error::Error::NotFound`]
    /// for an unknown patient.
    InsertGrant(GrantRow),
    /// A disclosure recorded. Fails with [`crate::error::Error::NotFound`]
    /// when the patient does not exist or is erased,
    /// [`crate::error::Error::AlreadyExists`] for a taken id.
    InsertDisclosure(DisclosureRow),
    /// A new user. Fails with [`crate::error::Error::AlreadyExists`] for a
    /// taken id or email index, [`crate::error::Error::NotFound`] when its
    /// patient link names no patient.
    InsertUser(UserRow),
    /// A user row replaced if its stored version is `expected_version`
    /// (`user.version` is `expected_version + 1`). Fails with
    /// [`crate::error::Error::Conflict`] on a stale version,
    /// [`crate::error::Error::NotFound`] when absent or when the patient link
    /// names no patient, [`crate::error::Error::AlreadyExists`] for a taken
    /// email index.
    UpdateUser {
        /// The new row.
        user: UserRow,
        /// The version the caller read.
        expected_version: i64,
    },
}

impl Change {
    /// What the change may make stale in a cache (absent rows of patients
    /// and records are never cached, so inserts of them make nothing stale;
    /// an absent care-team membership is). Caches drop these once the
    /// change has committed, or failed: a conflict means a cached row is
    /// stale.
    pub fn invalidations(&self) -> Vec<Invalidation> {
        match self {
            Change::InsertPatient { creator, .. } => creator
                .iter()
                .map(|m| Invalidation::CareTeam {
                    patient: m.patient_id,
                    user: m.user_id,
                })
                .collect(),
            Change::UpdatePatient { patient, .. } => vec![Invalidation::Patient(patient.id)],
            Change::ErasePatient { id, .. } => vec![Invalidation::Patient(*id)],
            Change::InsertRecord(_) => Vec::new(),
            Change::UpdateRecord { record, .. } => vec![Invalidation::Record(record.id)],
            Change::DeleteRecord(id) => vec![Invalidation::Record(*id)],
            Change::AddCareTeamMember(m) => vec![Invalidation::CareTeam {
                patient: m.patient_id,
                user: m.user_id,
            }],
            Change::RemoveCareTeamMember {
                patient_id,
                user_id,
            } => vec![Invalidation::CareTeam {
                patient: *patient_id,
                user: *user_id,
            }],
            Change::InsertGrant(g) => vec![Invalidation::Grants(g.user_id)],
            Change::InsertDisclosure(_) => Vec::new(),
            Change::InsertUser(_) => Vec::new(),
            Change::UpdateUser { user, .. } => vec![Invalidation::User(user.id)],
        }
    }
}
