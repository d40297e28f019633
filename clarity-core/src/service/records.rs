//! Clinical records: create, read, update, delete and list a patient's
//! records, each decided by the policy point before anything is decrypted.

use serde::Deserialize;
use uuid::Uuid;

use super::Clarity;
use super::auditing::Ev;
use crate::access::{Action, Principal};
use crate::audit::AuditAction;
use crate::crypto::Json;
use crate::error::{Error, Result};
use crate::model::{Change, Page, PageRequest, Record, RecordKind};

/// `POST /v1/patients/{id}/records`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewRecord {
    /// What the record is, e.g. `note`.
    pub kind: String,
    /// The record's body (a JSON object).
    pub data: Json,
}

/// `PUT /v1/records/{id}`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RecordUpdate {
    /// The new body (a JSON object).
    pub data: Json,
}

impl Clarity {
    /// Creates a record of `kind` for a patient.
    ///
    /// # Errors
    /// [`Error::NotFound`]; [`Error::PermissionDenied`] (e.g. a nurse and a
    /// kind nurses may not write); [`Error::InvalidInput`].
    pub async fn create_record(
        &self,
        principal: &Principal,
        patient_id: Uuid,
        kind: &str,
        data: Json,
    ) -> Result<Record> {
        let mut created = None;
        let prepared = async {
            let kind = RecordKind::new(kind)?;
            let reason = self
                .authorize(
                    principal,
                    &Action::CreateRecord(kind.clone()),
                    Some(patient_id),
                )
                .await?;
            let (change, record) = self
                .phi
                .prepare_record(patient_id, kind.as_str(), data, principal.user_id)
                .await?;
            created = Some(record.id);
            Ok((change, record, reason))
        }
        .await;
        let mut ev = Ev::rest("record.create", AuditAction::Create).patient(patient_id);
        ev.entity = created;
        self.audited_change(principal, ev, prepared).await
    }

    /// Reads a record.
    ///
    /// # Errors
    /// [`Error::NotFound`] for a record that does not exist or whose patient
    /// the caller may not read.
    pub async fn get_record(&self, principal: &Principal, id: Uuid) -> Result<Record> {
        let mut patient = None;
        let result = async {
            let row = self.phi.record_row(id).await?;
            patient = Some(row.patient_id);
            let reason = self
                .authorize(principal, &Action::ReadRecords, Some(row.patient_id))
                .await
                .map_err(record_not_found)?;
            Ok((self.phi.decrypt_record(row).await?, reason))
        }
        .await;
        let mut ev = Ev::rest("record.read", AuditAction::Read).entity(id);
        ev.patient = patient;
        self.audited(principal, ev, result).await
    }

    /// Replaces a record's body if its version is `expected_version`.
    ///
    /// # Errors
    /// [`Error::NotFound`]; [`Error::PermissionDenied`]; [`Error::Conflict`];
    /// [`Error::InvalidInput`].
    pub async fn update_record(
        &self,
        principal: &Principal,
        id: Uuid,
        expected_version: i64,
        data: Json,
    ) -> Result<Record> {
        let mut patient = None;
        let result = async {
            let row = self.phi.record_row(id).await?;
            patient = Some(row.patient_id);
            let kind = RecordKind::new(&row.kind).map_err(|_| Error::Integrity)?;
            let reason = self
                .authorize(principal, &Action::UpdateRecord(kind), Some(row.patient_id))
                .await
                .map_err(record_not_found)?;
            let (change, record) = self
                .phi
                .prepare_record_update(id, expected_version, data)
                .await?;
            Ok((change, record, reason))
        }
        .await;
        let mut ev = Ev::rest("record.update", AuditAction::Update).entity(id);
        ev.patient = patient;
        self.audited_change(principal, ev, result).await
    }

    /// Deletes a record (clinicians on the care team).
    ///
    /// # Errors
    /// [`Error::NotFound`]; [`Error::PermissionDenied`].
    pub async fn delete_record(&self, principal: &Principal, id: Uuid) -> Result<()> {
        let mut patient = None;
        let result = async {
            let row = self.phi.record_row(id).await?;
            patient = Some(row.patient_id);
            let reason = self
                .authorize(principal, &Action::DeleteRecord, Some(row.patient_id))
                .await
                .map_err(record_not_found)?;
            Ok((Change::DeleteRecord(id), (), reason))
        }
        .await;
        let mut ev = Ev::rest("record.delete", AuditAction::Delete).entity(id);
        ev.patient = patient;
        self.audited_change(principal, ev, result).await
    }

    /// One page of a patient's records.
    ///
    /// # Errors
    /// [`Error::NotFound`]; [`Error::InvalidInput`] for a bad page.
    pub async fn list_records(
        &self,
        principal: &Principal,
        patient_id: Uuid,
        page: &PageRequest,
    ) -> Result<Page<Record>> {
        let result = async {
            let reason = self
                .authorize(principal, &Action::ReadRecords, Some(patient_id))
                .await?;
            Ok((self.phi.list_records(patient_id, page).await?, reason))
        }
        .await;
        let ev = Ev::rest("record.list", AuditAction::Read).patient(patient_id);
        self.audited(principal, ev, result).await
    }
}

/// For records, "patient not found" reads as "record not found".
fn record_not_found(err: Error) -> Error {
    match err {
        Error::NotFound { .. } => Error::NotFound { what: "record" },
        other => other,
    }
}
