//! [`Change`]: one write of PHI rows, as a value. A change either runs in a
//! transaction of its own (the store's `apply`) or inside the audit
//! writer's batch transaction, so that the change and its audit event
//! commit together or not at all (the audit store's `append_audit_batch`).

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::rows::{CareTeamRow, DataKeyRow, GrantRow, PatientRow, RecordRow};

/// A write of ciphertext rows. Every variant is all-or-nothing.
#[derive(Debug, Clone)]
pub enum Change {
    /// A new patient with its data key and, optionally, its first care-team
    /// member (the clinician who created it).
    ///
    /// Fails with [`crate::Error::AlreadyExists`] when the id or the MRN
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
    /// Fails with [`crate::Error::Conflict`] on a stale version,
    /// [`crate::Error::NotFound`] when absent or erased,
    /// [`crate::Error::AlreadyExists`] when the new MRN is taken.
    UpdatePatient {
        /// The new row.
        patient: PatientRow,
        /// The version the caller read.
        expected_version: i64,
    },
    /// A new record. Fails with [`crate::Error::NotFound`] when the patient
    /// does not exist or is erased.
    InsertRecord(RecordRow),
    /// A record's body replaced if its stored version is `expected_version`
    /// (`record.version` is `expected_version + 1`).
    ///
    /// Fails with [`crate::Error::Conflict`] on a stale version,
    /// [`crate::Error::NotFound`] when absent.
    UpdateRecord {
        /// The new row.
        record: RecordRow,
        /// The version the caller read.
        expected_version: i64,
    },
    /// A record deleted. Fails with [`crate::Error::NotFound`] when absent.
    DeleteRecord(Uuid),
    /// A patient erased: its data key destroyed, its records and care-team
    /// memberships deleted, its row blanked and marked erased at `at`.
    /// Idempotent for an erased patient; fails with
    /// [`crate::Error::NotFound`] when the patient never existed.
    ErasePatient {
        /// The patient.
        id: Uuid,
        /// When (kept from the first erasure).
        at: DateTime<Utc>,
    },
    /// A care-team membership added or replaced. Fails with
    /// [`crate::Error::NotFound`] for an unknown or erased patient or an
    /// unknown user.
    AddCareTeamMember(CareTeamRow),
    /// A care-team membership removed. Fails with
    /// [`crate::Error::NotFound`] when there is none.
    RemoveCareTeamMember {
        /// The patient.
        patient_id: Uuid,
        /// The member.
        user_id: Uuid,
    },
    /// A break-glass grant stored. Fails with [`crate::Error::NotFound`]
    /// for an unknown patient.
    InsertGrant(GrantRow),
}

/// The cached rows a change makes stale, for the cache layer to forget once
/// it has committed (or failed: a conflict means a cached row is stale).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Changed {
    /// A patient's row.
    Patient(Uuid),
    /// A record's row.
    Record(Uuid),
    /// A care-team membership (patient, member).
    CareTeam(Uuid, Uuid),
    /// A user's break-glass grants.
    Grants(Uuid),
}

impl Change {
    /// What the change may make stale in a cache (absent rows of patients
    /// and records are never cached, so inserts of them make nothing stale;
    /// an absent care-team membership is).
    pub fn changed(&self) -> Vec<Changed> {
        match self {
            Change::InsertPatient { creator, .. } => creator
                .iter()
                .map(|m| Changed::CareTeam(m.patient_id, m.user_id))
                .collect(),
            Change::UpdatePatient { patient, .. } => vec![Changed::Patient(patient.id)],
            Change::ErasePatient { id, .. } => vec![Changed::Patient(*id)],
            Change::InsertRecord(_) => Vec::new(),
            Change::UpdateRecord { record, .. } => vec![Changed::Record(record.id)],
            Change::DeleteRecord(id) => vec![Changed::Record(*id)],
            Change::AddCareTeamMember(m) => vec![Changed::CareTeam(m.patient_id, m.user_id)],
            Change::RemoveCareTeamMember {
                patient_id,
                user_id,
            } => vec![Changed::CareTeam(*patient_id, *user_id)],
            Change::InsertGrant(g) => vec![Changed::Grants(g.user_id)],
        }
    }
}
