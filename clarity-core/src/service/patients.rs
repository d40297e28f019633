//! Patient profiles: create, read, update, erase, list and look up the
//! patients the caller may read, and the de-identified research view, each
//! decided by the policy point before anything is decrypted.

use std::collections::BTreeMap;

use uuid::Uuid;

use super::Clarity;
use super::auditing::Ev;
use crate::access::{Action, DeidentifiedPatient, Principal, Reason, deidentify};
use crate::audit::AuditAction;
use crate::error::{Error, Result};
use crate::model::Role;
use crate::model::{Change, Page, PageRequest, Patient, PatientLookup, PatientProfile};

pub(super) fn page_of<T>(mut items: Vec<T>, limit: usize, id: impl Fn(&T) -> Uuid) -> Page<T> {
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
        self.phi.forget_data_key(id);
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
