//! Patients, records, care teams, break-glass and the research view, each
//! decided by the policy point before anything is decrypted.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::auditing::Ev;
use super::users::secs;
use super::{Alert, AlertKind, Clarity};
use crate::access::{Action, DeidentifiedPatient, Principal, Reason, deidentify};
use crate::audit::AuditAction;
use crate::crypto::Json;
use crate::error::{Error, Result};
use crate::model::Role;
use crate::model::{
    CareTeamRow, Change, GrantRow, Page, PageRequest, Patient, PatientLookup, PatientProfile,
    Record, RecordKind,
};

const GRANTS: &str = "access_grants";

/// `POST /v1/patients/{id}/care-team`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CareTeamAssignment {
    /// The user to assign.
    pub user_id: Uuid,
    /// e.g. `attending` (default `member`).
    #[serde(default)]
    pub relationship: Option<String>,
    /// When the assignment ends by itself.
    #[serde(default)]
    pub expires_at: Option<DateTime<Utc>>,
}

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

/// `POST /v1/break-glass`.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BreakGlassRequest {
    /// The patient.
    pub patient_id: Uuid,
    /// Why (10–1000 characters); reviewed by an admin.
    pub reason: String,
    /// A current TOTP code, when break-glass requires MFA.
    #[serde(default)]
    pub totp: Option<String>,
}

/// A granted break-glass access.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BreakGlassGrant {
    /// Grant id.
    pub grant_id: Uuid,
    /// The patient.
    pub patient_id: Uuid,
    /// When it ends by itself.
    pub expires_at: DateTime<Utc>,
}

/// A grant as listed for review.
#[derive(Clone, PartialEq, Eq, Serialize)]
pub struct GrantView {
    /// Grant id.
    pub grant_id: Uuid,
    /// Who used it.
    pub user_id: Uuid,
    /// The patient.
    pub patient_id: Uuid,
    /// The reason given.
    pub reason: String,
    /// When.
    pub created_at: DateTime<Utc>,
    /// When it ends (or ended).
    pub expires_at: DateTime<Utc>,
    /// When an admin reviewed it.
    pub reviewed_at: Option<DateTime<Utc>>,
    /// Which admin.
    pub reviewed_by: Option<Uuid>,
}

fn page_of<T>(mut items: Vec<T>, limit: usize, id: impl Fn(&T) -> Uuid) -> Page<T> {
    let more = items.len() > limit;
    items.truncate(limit);
    let next_cursor = more
        .then(|| items.last().map(|i| id(i).to_string()))
        .flatten();
    Page { items, next_cursor }
}

impl Clarity {
    /// Creates a patient (clinicians). The creator joins its care team.
    ///
    /// # Errors
    /// [`Error::PermissionDenied`]; [`Error::InvalidInput`]; [`Error::AlreadyExists`].
    pub async fn create_patient(
        &self,
        principal: &Principal,
        profile: PatientProfile,
    ) -> Result<Patient> {
        let mut created = None;
        let prepared = async {
            let reason = self
                .authorize(principal, &Action::CreatePatient, None)
                .await?;
            let (change, patient) = self
                .phi
                .prepare_patient(profile, Some((principal.user_id, "creator")))
                .await?;
            created = Some(patient.id);
            Ok((change, patient, reason))
        }
        .await;
        let mut ev = Ev::rest("patient.create", AuditAction::Create);
        ev.patient = created;
        self.audited_change(principal, ev, prepared).await
    }

    /// Reads a patient.
    ///
    /// # Errors
    /// [`Error::NotFound`] for a patient that does not exist or that the caller may not read.
    pub async fn get_patient(&self, principal: &Principal, id: Uuid) -> Result<Patient> {
        let result = async {
            let reason = self
                .authorize(principal, &Action::ReadPatient, Some(id))
                .await?;
            Ok((self.phi.get_patient(id).await?, reason))
        }
        .await;
        let ev = Ev::rest("patient.read", AuditAction::Read).patient(id);
        self.audited(principal, ev, result).await
    }

    /// Replaces a patient's profile if its version is `expected_version`.
    ///
    /// # Errors
    /// [`Error::NotFound`]; [`Error::PermissionDenied`]; [`Error::Conflict`];
    /// [`Error::InvalidInput`].
    pub async fn update_patient(
        &self,
        principal: &Principal,
        id: Uuid,
        expected_version: i64,
        profile: PatientProfile,
    ) -> Result<Patient> {
        let prepared = async {
            let reason = self
                .authorize(principal, &Action::UpdatePatient, Some(id))
                .await?;
            let (change, patient) = self
                .phi
                .prepare_patient_update(id, expected_version, profile)
                .await?;
            Ok((change, patient, reason))
        }
        .await;
        let ev = Ev::rest("patient.update", AuditAction::Update).patient(id);
        self.audited_change(principal, ev, prepared).await
    }

    /// Erases a patient (admins): destroys its data key. The erasure
    /// commits with its audit event; then it is appended to the erasure
    /// ledger (which keeps restores of older backups from bringing it back).
    ///
    /// # Errors
    /// [`Error::PermissionDenied`]; [`Error::NotFound`]; the ledger's error
    /// when it cannot be written (the erasure stands; erasing again is
    /// harmless and retries the ledger).
    pub async fn erase_patient(&self, principal: &Principal, id: Uuid) -> Result<()> {
        let at = self.clock.now();
        let prepared = async {
            let reason = self
                .authorize(principal, &Action::ErasePatient, None)
                .await?;
            Ok((Change::ErasePatient { id, at }, (), reason))
        }
        .await;
        let ev = Ev::rest("patient.erase", AuditAction::Delete).patient(id);
        self.audited_change(principal, ev, prepared).await?;
        self.erasure_ledger.record(id, at)?;
        Ok(())
    }

    /// The patients the caller may read, in id order: its care-team and
    /// break-glass patients (clinicians, nurses) or its own record (patients).
    ///
    /// # Errors
    /// [`Error::PermissionDenied`] for roles that read no patients.
    pub async fn list_patients(
        &self,
        principal: &Principal,
        page: &PageRequest,
    ) -> Result<Page<Patient>> {
        let (page, reasons) = match self.list_visible(principal, page).await {
            Ok(found) => found,
            Err(e) => {
                let ev = Ev::rest("patient.list", AuditAction::Read);
                return self.audited(principal, ev, Err(e)).await;
            }
        };
        if page.items.is_empty() {
            let ev = Ev::rest("patient.list", AuditAction::Read);
            return self.audited(principal, ev, Ok((page, Reason::Role))).await;
        }
        // One event per patient disclosed, with the reason the caller could
        // see that patient, so that a patient's accounting of disclosures
        // (and break-glass review) finds every list that returned them.
        let events = page
            .items
            .iter()
            .map(|p| {
                let reason = reasons.get(&p.id).copied().unwrap_or(Reason::Role);
                let ev = Ev::rest("patient.list", AuditAction::Read).patient(p.id);
                (ev, reason.as_str().to_string())
            })
            .collect();
        self.record_all(principal, events).await?;
        Ok(page)
    }

    async fn list_visible(
        &self,
        principal: &Principal,
        page: &PageRequest,
    ) -> Result<(Page<Patient>, BTreeMap<Uuid, Reason>)> {
        let limit = page.limit()?;
        let after = page.after()?;
        let visible = self.visible_patients(principal).await?;
        let mut items = Vec::new();
        for id in visible
            .keys()
            .copied()
            .filter(|id| after.is_none_or(|a| *id > a))
        {
            if items.len() > limit {
                break;
            }
            match self.phi.get_patient(id).await {
                Ok(p) => items.push(p),
                Err(Error::NotFound { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        Ok((page_of(items, limit, |p| p.id), visible))
    }

    /// The ids of live patients matching `lookup` that the caller may read.
    ///
    /// # Errors
    /// [`Error::PermissionDenied`] for roles that read no patients.
    pub async fn find_patients(
        &self,
        principal: &Principal,
        lookup: &PatientLookup,
    ) -> Result<Vec<Uuid>> {
        let result = async {
            let visible = self.visible_patients(principal).await?;
            let found = self.phi.find_patients(lookup).await?;
            let ids: Vec<Uuid> = found
                .into_iter()
                .filter(|id| visible.contains_key(id))
                .collect();
            Ok((ids, Reason::Role))
        }
        .await;
        let mut ev = Ev::rest("patient.lookup", AuditAction::Read);
        ev.query_hash = Some(lookup_hash(&self.query_key, lookup));
        self.audited(principal, ev, result).await
    }

    /// The patients the caller may read, each with the reason why.
    async fn visible_patients(&self, principal: &Principal) -> Result<BTreeMap<Uuid, Reason>> {
        let roles = principal.roles;
        let clinical = roles.contains(Role::Clinician) || roles.contains(Role::Nurse);
        if !clinical && !roles.contains(Role::Patient) {
            return Err(Error::PermissionDenied);
        }
        let now = self.clock.now();
        let mut ids = BTreeMap::new();
        if clinical {
            for member in self.identity.care_team_of_user(principal.user_id).await? {
                if member.expires_at.is_none_or(|end| end > now) {
                    ids.insert(member.patient_id, Reason::CareTeam);
                }
            }
        }
        if roles.contains(Role::Clinician) {
            for grant in self.identity.grants_of_user(principal.user_id).await? {
                if grant.expires_at > now {
                    ids.entry(grant.patient_id).or_insert(Reason::BreakGlass);
                }
            }
        }
        if let Some(own) = principal
            .patient_id
            .filter(|_| roles.contains(Role::Patient))
        {
            ids.entry(own).or_insert(Reason::OwnRecord);
        }
        Ok(ids)
    }

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

    /// Assigns a user to a patient's care team (admins).
    ///
    /// # Errors
    /// [`Error::PermissionDenied`]; [`Error::NotFound`] for an unknown patient
    /// or user; [`Error::InvalidInput`].
    pub async fn add_care_team_member(
        &self,
        principal: &Principal,
        patient_id: Uuid,
        assignment: CareTeamAssignment,
    ) -> Result<()> {
        let user = assignment.user_id;
        let prepared = self.assign(principal, patient_id, assignment).await;
        let ev = Ev::of("admin", "care_team.add", AuditAction::Create)
            .patient(patient_id)
            .entity(user);
        self.audited_change(principal, ev, prepared).await
    }

    async fn assign(
        &self,
        principal: &Principal,
        patient_id: Uuid,
        assignment: CareTeamAssignment,
    ) -> Result<(Change, (), Reason)> {
        let reason = self
            .authorize(principal, &Action::ManageCareTeam, None)
            .await?;
        let relationship = assignment.relationship.unwrap_or_else(|| "member".into());
        RecordKind::new(&relationship).map_err(|_| {
            Error::invalid("relationship must be 1-64 characters of a-z, 0-9, '-', '_' or '.'")
        })?;
        if assignment
            .expires_at
            .is_some_and(|end| end <= self.clock.now())
        {
            return Err(Error::invalid("expires_at must be in the future"));
        }
        self.user_row(assignment.user_id).await?;
        let member = CareTeamRow {
            patient_id,
            user_id: assignment.user_id,
            relationship,
            expires_at: assignment.expires_at,
            created_at: self.clock.now(),
        };
        Ok((Change::AddCareTeamMember(member), (), reason))
    }

    /// Removes a user from a patient's care team (admins).
    ///
    /// # Errors
    /// [`Error::PermissionDenied`]; [`Error::NotFound`].
    pub async fn remove_care_team_member(
        &self,
        principal: &Principal,
        patient_id: Uuid,
        user_id: Uuid,
    ) -> Result<()> {
        let prepared = async {
            let reason = self
                .authorize(principal, &Action::ManageCareTeam, None)
                .await?;
            let change = Change::RemoveCareTeamMember {
                patient_id,
                user_id,
            };
            Ok((change, (), reason))
        }
        .await;
        let ev = Ev::of("admin", "care_team.remove", AuditAction::Delete)
            .patient(patient_id)
            .entity(user_id);
        self.audited_change(principal, ev, prepared).await
    }

    /// Emergency access (clinicians): a grant on one patient that needs a
    /// reason (and a TOTP code when `access.require_mfa_for_break_glass`),
    /// ends by itself after `access.break_glass_secs`, raises an alert and is
    /// listed for review (S-AC-4).
    ///
    /// # Errors
    /// [`Error::PermissionDenied`]; [`Error::InvalidInput`] for a missing
    /// reason; [`Error::MfaRequired`]; [`Error::NotFound`] for an unknown patient.
    pub async fn break_glass(
        &self,
        principal: &Principal,
        request: BreakGlassRequest,
    ) -> Result<BreakGlassGrant> {
        let patient_id = request.patient_id;
        let prepared = self.grant_break_glass(principal, request).await;
        let mut ev = Ev::of("security", "break_glass", AuditAction::Execute).patient(patient_id);
        ev.entity = prepared.as_ref().ok().map(|(_, g, _)| g.grant_id);
        let granted = self.audited_change(principal, ev, prepared).await?;
        self.raise(&Alert {
            kind: AlertKind::BreakGlass,
            user_id: Some(principal.user_id),
            patient_id: Some(patient_id),
        });
        Ok(granted)
    }

    async fn grant_break_glass(
        &self,
        principal: &Principal,
        request: BreakGlassRequest,
    ) -> Result<(Change, BreakGlassGrant, Reason)> {
        self.authorize(principal, &Action::BreakGlass, None).await?;
        let reason = request.reason.trim();
        let length = reason.chars().count();
        if !(10..=1000).contains(&length) || reason.chars().any(|c| c.is_control() && c != '\n') {
            return Err(Error::invalid(
                "reason must be 10-1000 characters saying why emergency access is needed",
            ));
        }
        if self.config.access.require_mfa_for_break_glass {
            let user = self.user_row(principal.user_id).await?;
            let code = request.totp.as_deref().ok_or(Error::MfaRequired)?;
            // Guessing codes here counts against the account like failed logins.
            self.check_account_throttle(&user).await?;
            if let Err(e) = self.check_totp(&user, code).await {
                self.record_account_failure(&user, principal.context.client_address)
                    .await?;
                return Err(e);
            }
        }
        if self
            .phi
            .store()
            .get_patient(request.patient_id)
            .await?
            .is_none()
        {
            return Err(Error::NotFound { what: "patient" });
        }
        let now = self.clock.now();
        let id = Uuid::now_v7();
        let grant = GrantRow {
            id,
            user_id: principal.user_id,
            patient_id: request.patient_id,
            reason: self.directory.seal(GRANTS, id, 0, &reason)?,
            created_at: now,
            expires_at: now + chrono::Duration::seconds(secs(self.config.access.break_glass_secs)),
            reviewed_at: None,
            reviewed_by: None,
        };
        let granted = BreakGlassGrant {
            grant_id: id,
            patient_id: grant.patient_id,
            expires_at: grant.expires_at,
        };
        Ok((Change::InsertGrant(grant), granted, Reason::BreakGlass))
    }

    /// Break-glass grants for review (admins), oldest first.
    ///
    /// # Errors
    /// [`Error::PermissionDenied`]; [`Error::InvalidInput`] for a bad page.
    pub async fn list_grants(
        &self,
        principal: &Principal,
        unreviewed_only: bool,
        page: &PageRequest,
    ) -> Result<Page<GrantView>> {
        let result = self.grants_page(principal, unreviewed_only, page).await;
        let ev = Ev::of("admin", "grant.list", AuditAction::Read);
        self.audited(principal, ev, result).await
    }

    async fn grants_page(
        &self,
        principal: &Principal,
        unreviewed_only: bool,
        page: &PageRequest,
    ) -> Result<(Page<GrantView>, Reason)> {
        let reason = self
            .authorize(principal, &Action::ReviewGrants, None)
            .await?;
        let limit = page.limit()?;
        let rows = self
            .identity
            .list_grants(unreviewed_only, page.after()?, limit + 1)
            .await?;
        let items = rows
            .into_iter()
            .map(|g| {
                Ok(GrantView {
                    reason: self.directory.open_sealed(GRANTS, g.id, 0, &g.reason)?,
                    grant_id: g.id,
                    user_id: g.user_id,
                    patient_id: g.patient_id,
                    created_at: g.created_at,
                    expires_at: g.expires_at,
                    reviewed_at: g.reviewed_at,
                    reviewed_by: g.reviewed_by,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok((page_of(items, limit, |g| g.grant_id), reason))
    }

    /// Marks a grant reviewed by the caller (admins).
    ///
    /// # Errors
    /// [`Error::PermissionDenied`]; [`Error::NotFound`].
    pub async fn review_grant(&self, principal: &Principal, grant_id: Uuid) -> Result<()> {
        let result = async {
            let reason = self
                .authorize(principal, &Action::ReviewGrants, None)
                .await?;
            self.identity
                .review_grant(grant_id, principal.user_id, self.clock.now())
                .await?;
            Ok(((), reason))
        }
        .await;
        let ev = Ev::of("admin", "grant.review", AuditAction::Update).entity(grant_id);
        self.audited(principal, ev, result).await
    }

    /// De-identified patients (researchers): pseudonyms, birth year, age
    /// (90+ grouped) and sex only.
    ///
    /// # Errors
    /// [`Error::PermissionDenied`]; [`Error::InvalidInput`] for a bad page.
    pub async fn research_patients(
        &self,
        principal: &Principal,
        page: &PageRequest,
    ) -> Result<Page<DeidentifiedPatient>> {
        let result = self.research_page(principal, page).await;
        let ev = Ev::rest("research.list", AuditAction::Read);
        self.audited(principal, ev, result).await
    }

    async fn research_page(
        &self,
        principal: &Principal,
        page: &PageRequest,
    ) -> Result<(Page<DeidentifiedPatient>, Reason)> {
        let reason = self
            .authorize(principal, &Action::ReadResearch, None)
            .await?;
        let limit = page.limit()?;
        let after = page
            .cursor
            .as_deref()
            .map(|c| self.directory.open_cursor(c))
            .transpose()?;
        let ids = self.identity.list_patient_ids(after, limit + 1).await?;
        let more = ids.len() > limit;
        let today = self.clock.now().date_naive();
        let mut items = Vec::new();
        let mut last = None;
        for id in ids.into_iter().take(limit) {
            match self.phi.get_patient(id).await {
                Ok(p) => items.push(deidentify(
                    &self.pseudonym_key,
                    id,
                    p.profile.expose(),
                    today,
                )),
                Err(Error::NotFound { .. }) => {}
                Err(e) => return Err(e),
            }
            last = Some(id);
        }
        // Researchers never see patient ids, so the cursor is sealed.
        let next_cursor = match (more, last) {
            (true, Some(id)) => Some(self.directory.seal_cursor(id)?),
            _ => None,
        };
        Ok((Page { items, next_cursor }, reason))
    }
}

/// A keyed hash of a lookup for the audit trail: the field and an
/// HMAC-SHA-256 of the normalised value under a key derived from the root
/// secret, so an auditor can match repeated lookups without seeing them, and
/// nobody can recover a short value (an MRN) by trying them all.
fn lookup_hash(key: &crate::crypto::Key, lookup: &PatientLookup) -> String {
    use hmac::{Hmac, Mac};
    let (field, value) = match lookup {
        PatientLookup::Mrn(v) => ("mrn", v.trim().to_lowercase()),
        PatientLookup::Email(v) => ("email", v.trim().to_lowercase()),
        PatientLookup::NameBirthDate {
            family_name,
            birth_date,
        } => (
            "name_birth_date",
            format!(
                "{}|{}",
                family_name.trim().to_lowercase(),
                birth_date.trim()
            ),
        ),
    };
    let value = zeroize::Zeroizing::new(value);
    let mut mac = <Hmac<sha2::Sha256> as Mac>::new_from_slice(key.expose())
        .expect("HMAC-SHA-256 accepts a 32-byte key");
    mac.update(value.as_bytes());
    format!(
        "{field}:{}",
        hex::encode(&mac.finalize().into_bytes()[..16])
    )
}

/// For records, "patient not found" reads as "record not found".
fn record_not_found(err: Error) -> Error {
    match err {
        Error::NotFound { .. } => Error::NotFound { what: "record" },
        other => other,
    }
}

impl std::fmt::Debug for BreakGlassRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Personal data and secrets stay out of Debug output.
        f.debug_struct("BreakGlassRequest")
            .field("patient_id", &self.patient_id)
            .finish_non_exhaustive()
    }
}

impl std::fmt::Debug for GrantView {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Personal data and secrets stay out of Debug output.
        f.debug_struct("GrantView")
            .field("grant_id", &self.grant_id)
            .field("user_id", &self.user_id)
            .field("patient_id", &self.patient_id)
            .field("expires_at", &self.expires_at)
            .finish_non_exhaustive()
    }
}
