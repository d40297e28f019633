//! The patient's side of the audit trail (S-AUD-9): who accessed a
//! patient's record, disclosures to outside recipients, and the accounting
//! of disclosures (45 CFR 164.528). Each call is decided by the policy
//! point and audited like any other access to the patient.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::Clarity;
use super::auditing::Ev;
use crate::access::{Action, Principal, Reason};
use crate::audit::{AuditAction, AuditEvent, AuditFilter};
use crate::error::{Error, Result};
use crate::model::{
    AccessLogEntry, Accounting, Disclosure, MAX_PAGE, NewDisclosure, Page, PageRequest,
};

/// The outcome code of an access that went ahead.
const SUCCESS: &str = "0";

/// Which part of a patient's access log to list: accesses recorded at or
/// after `from` and before `to`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AccessLogRange {
    /// Recorded at or after.
    pub from: Option<DateTime<Utc>>,
    /// Recorded before.
    pub to: Option<DateTime<Utc>>,
}

impl Clarity {
    /// Who accessed a patient's record: every audited operation on the
    /// patient that went ahead, oldest first, with when, the accessor's
    /// name and roles, the action, the declared purpose of use, and whether
    /// it went through break-glass (S-AUD-9). The patient sees its own;
    /// auditors see any patient's. Reading the log is itself an access, and
    /// appears in it.
    ///
    /// # Errors
    /// [`Error::NotFound`] for a patient that does not exist or that the
    /// caller may not see; [`Error::PermissionDenied`] for a caller who may
    /// see the patient but not its access log; [`Error::InvalidInput`] for a
    /// bad page or range.
    pub async fn patient_access_log(
        &self,
        principal: &Principal,
        patient_id: Uuid,
        range: AccessLogRange,
        page: &PageRequest,
    ) -> Result<Page<AccessLogEntry>> {
        let result = async {
            let reason = self
                .authorize(principal, &Action::ReadAccessLog, Some(patient_id))
                .await?;
            self.live_patient(patient_id).await?;
            if let (Some(from), Some(to)) = (range.from, range.to)
                && from >= to
            {
                return Err(Error::invalid("from must be before to"));
            }
            let filter = AuditFilter {
                patient_id: Some(patient_id),
                outcome: Some(SUCCESS.to_string()),
                from: range.from,
                to: range.to,
                ..AuditFilter::default()
            };
            let limit = page.limit()?;
            let mut events = self
                .audit_store
                .query_audit(&filter, page.after()?, limit + 1)
                .await?;
            let more = events.len() > limit;
            events.truncate(limit);
            let next_cursor = more
                .then(|| events.last().map(|e| e.id.to_string()))
                .flatten();
            let names = self.display_names(&events).await?;
            let items = events
                .into_iter()
                .map(|e| access_entry(e, &names))
                .collect();
            Ok((Page { items, next_cursor }, reason))
        }
        .await;
        let ev = Ev::rest("patient.access_log", AuditAction::Read).patient(patient_id);
        self.audited(principal, ev, result).await
    }

    /// Records a disclosure of a patient's information to an outside
    /// recipient: who received it, why, what was disclosed and under which
    /// legal basis, sealed under the patient's data key. Clinicians and
    /// nurses on the patient's care team (and clinicians under break-glass)
    /// record disclosures.
    ///
    /// # Errors
    /// [`Error::NotFound`] for a patient that does not exist or that the
    /// caller may not see; [`Error::PermissionDenied`];
    /// [`Error::InvalidInput`] for missing or malformed details.
    pub async fn record_disclosure(
        &self,
        principal: &Principal,
        patient_id: Uuid,
        disclosure: NewDisclosure,
    ) -> Result<Disclosure> {
        let mut recorded = None;
        let prepared = async {
            let reason = self
                .authorize(principal, &Action::RecordDisclosure, Some(patient_id))
                .await?;
            let (change, disclosure) = self
                .phi
                .prepare_disclosure(patient_id, disclosure, principal.user_id)
                .await?;
            recorded = Some(disclosure.id);
            Ok((change, disclosure, reason))
        }
        .await;
        let mut ev = Ev::rest("disclosure.create", AuditAction::Create).patient(patient_id);
        ev.entity = recorded;
        self.audited_change(principal, ev, prepared).await
    }

    /// One page of a patient's recorded disclosures, in the order they were
    /// recorded (the patient, auditors, and the care team).
    ///
    /// # Errors
    /// As [`Clarity::patient_access_log`].
    pub async fn list_disclosures(
        &self,
        principal: &Principal,
        patient_id: Uuid,
        page: &PageRequest,
    ) -> Result<Page<Disclosure>> {
        let result = async {
            let reason = self
                .authorize(principal, &Action::ReadDisclosures, Some(patient_id))
                .await?;
            let limit = page.limit()?;
            let mut items = self
                .phi
                .list_disclosures(patient_id, None, page.after()?, limit + 1)
                .await?;
            let more = items.len() > limit;
            items.truncate(limit);
            let next_cursor = more
                .then(|| items.last().map(|d| d.id.to_string()))
                .flatten();
            Ok((Page { items, next_cursor }, reason))
        }
        .await;
        let ev = Ev::rest("disclosure.list", AuditAction::Read).patient(patient_id);
        self.audited(principal, ev, result).await
    }

    /// The accounting of disclosures for a patient (45 CFR 164.528): every
    /// disclosure made from `from` (at most six years back; six years when
    /// absent) until now, oldest first. [`Accounting::printable`] renders it
    /// for print. The patient, auditors and the care team may produce it.
    ///
    /// # Errors
    /// As [`Clarity::patient_access_log`]; [`Error::InvalidInput`] for a
    /// start more than six years back or in the future.
    pub async fn disclosure_accounting(
        &self,
        principal: &Principal,
        patient_id: Uuid,
        from: Option<DateTime<Utc>>,
    ) -> Result<Accounting> {
        let result = async {
            let reason = self
                .authorize(principal, &Action::ReadDisclosures, Some(patient_id))
                .await?;
            let to = self.clock.now();
            let from = crate::model::accounting_period(from, to)?;
            let mut disclosures = Vec::new();
            let mut after = None;
            loop {
                let batch = self
                    .phi
                    .list_disclosures(patient_id, Some(from), after, MAX_PAGE)
                    .await?;
                let full = batch.len() == MAX_PAGE;
                after = batch.last().map(|d| d.id);
                disclosures.extend(batch.into_iter().filter(|d| d.disclosed_at <= to));
                if !full {
                    break;
                }
            }
            disclosures.sort_by_key(|d| (d.disclosed_at, d.id));
            let accounting = Accounting {
                patient_id,
                from,
                to,
                disclosures,
            };
            Ok((accounting, reason))
        }
        .await;
        let ev = Ev::rest("disclosure.accounting", AuditAction::Read).patient(patient_id);
        self.audited(principal, ev, result).await
    }

    /// Fails with [`Error::NotFound`] unless the patient exists and is not
    /// erased.
    async fn live_patient(&self, patient_id: Uuid) -> Result<()> {
        self.phi
            .store()
            .get_patient(patient_id)
            .await?
            .map(|_| ())
            .ok_or(Error::NotFound { what: "patient" })
    }

    /// The display names of the actors of `events`, where they have one.
    async fn display_names(&self, events: &[AuditEvent]) -> Result<BTreeMap<Uuid, String>> {
        let mut names = BTreeMap::new();
        let actors: std::collections::BTreeSet<Uuid> =
            events.iter().filter_map(|e| e.actor_id).collect();
        for id in actors {
            let row = match self.user_row(id).await {
                Ok(row) => row,
                // An account deleted since, or the local operator.
                Err(Error::NotFound { .. }) => continue,
                Err(e) => return Err(e),
            };
            if let Some(name) = self.user_view(&row)?.display_name {
                names.insert(id, name);
            }
        }
        Ok(names)
    }
}

/// What the patient sees of one audit event.
fn access_entry(event: AuditEvent, names: &BTreeMap<Uuid, String>) -> AccessLogEntry {
    let break_glass = event.subtype == "break_glass"
        || event.reason.as_deref() == Some(Reason::BreakGlass.as_str());
    AccessLogEntry {
        event_id: event.id,
        at: event.recorded,
        accessor_id: event.actor_id,
        accessor_name: event.actor_id.and_then(|id| names.get(&id).cloned()),
        accessor_roles: event
            .actor_roles
            .as_deref()
            .unwrap_or_default()
            .split(',')
            .filter(|r| !r.is_empty())
            .map(str::to_string)
            .collect(),
        action: event.subtype.into_owned(),
        action_code: event.action.into_owned(),
        purpose: event.purpose,
        break_glass,
        entity_id: event.entity_id,
    }
}
