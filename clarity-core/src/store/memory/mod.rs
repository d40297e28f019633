//! [`MemoryStore`]: everything in process memory. The reference backend for
//! the conformance suite and the store of doctests; nothing survives the process.

use std::collections::BTreeMap;
use std::sync::Mutex;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use uuid::Uuid;

mod change;

use super::identity::IdentityStore;
use super::migrations::migrations_for;
use super::{Store, patient_index_column};
use crate::audit::{AuditBatch, AuditStore, StoredBatch};
use crate::audit::{AuditEvent, AuditFilter, Checkpoint};
use crate::crypto::{BlindIndex, IndexField};
use crate::error::{Error, Result};
use crate::model::{
    CareTeamRow, Change, DataKeyRow, GrantRow, LoginFailures, PatientRow, RecordRow, RefreshRow,
    SessionRow, UserRow,
};

#[derive(Debug, Default)]
pub(crate) struct Tables {
    pub(crate) meta: BTreeMap<String, String>,
    /// Live patients.
    pub(crate) patients: BTreeMap<Uuid, PatientRow>,
    /// Ids of erased patients (tombstones).
    pub(crate) erased: BTreeMap<Uuid, DateTime<Utc>>,
    pub(crate) data_keys: BTreeMap<Uuid, DataKeyRow>,
    pub(crate) records: BTreeMap<Uuid, RecordRow>,
    users: BTreeMap<Uuid, UserRow>,
    mfa_steps: BTreeMap<Uuid, i64>,
    login_failures: BTreeMap<Uuid, LoginFailures>,
    sessions: BTreeMap<Uuid, SessionRow>,
    refresh: BTreeMap<[u8; 32], RefreshRow>,
    care_team: BTreeMap<(Uuid, Uuid), CareTeamRow>,
    grants: BTreeMap<Uuid, GrantRow>,
    pub(crate) audit_events: BTreeMap<(Uuid, i64), AuditEvent>,
    audit_checkpoints: BTreeMap<(Uuid, i64), Checkpoint>,
}

/// An in-memory [`Store`].
#[derive(Debug, Default)]
pub struct MemoryStore {
    tables: Mutex<Tables>,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// Edits the tables directly, bypassing every check (tamper tests).
    #[cfg(feature = "testing")]
    pub(crate) fn raw_edit(&self, f: impl FnOnce(&mut Tables)) {
        let mut tables = self.tables.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut tables);
    }

    fn with<T>(&self, f: impl FnOnce(&mut Tables) -> Result<T>) -> Result<T> {
        let mut tables = self.tables.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut tables)
    }
}

/// The values of `map` with ids after `after` (all when `None`), in id order:
/// the cursor pagination every list of this store shares.
fn after_id<V>(map: &BTreeMap<Uuid, V>, after: Option<Uuid>) -> impl Iterator<Item = &V> {
    let start = after.map_or(std::ops::Bound::Unbounded, std::ops::Bound::Excluded);
    map.range((start, std::ops::Bound::Unbounded))
        .map(|(_, v)| v)
}

fn check_version(what: &'static str, current: i64, expected: i64) -> Result<()> {
    if current == expected {
        Ok(())
    } else {
        Err(Error::Conflict {
            what,
            expected,
            current,
        })
    }
}

fn mrn_taken(tables: &Tables, patient: &PatientRow) -> bool {
    tables
        .patients
        .values()
        .any(|p| p.id != patient.id && p.mrn_index == patient.mrn_index)
}

#[async_trait]
impl Store for MemoryStore {
    fn backend(&self) -> &'static str {
        "memory"
    }

    async fn ping(&self) -> Result<()> {
        Ok(())
    }

    async fn schema_version(&self) -> Result<i64> {
        Ok(migrations_for("sqlite").last().map_or(0, |m| m.version))
    }

    async fn get_meta(&self, key: &str) -> Result<Option<String>> {
        self.with(|t| Ok(t.meta.get(key).cloned()))
    }

    async fn set_meta_if_absent(&self, key: &str, value: &str) -> Result<String> {
        self.with(|t| {
            Ok(t.meta
                .entry(key.to_string())
                .or_insert_with(|| value.to_string())
                .clone())
        })
    }

    async fn put_meta(&self, key: &str, value: &str) -> Result<()> {
        self.with(|t| {
            t.meta.insert(key.to_string(), value.to_string());
            Ok(())
        })
    }

    async fn take_meta(&self, key: &str) -> Result<Option<String>> {
        self.with(|t| Ok(t.meta.remove(key)))
    }

    async fn data_keys_by_kek(&self) -> Result<Vec<(i32, u64)>> {
        self.with(|t| {
            let mut counts: BTreeMap<i32, u64> = BTreeMap::new();
            for key in t.data_keys.values() {
                *counts.entry(key.kek_version).or_default() += 1;
            }
            Ok(counts.into_iter().collect())
        })
    }

    async fn data_keys_below(
        &self,
        kek_version: i32,
        after: Option<Uuid>,
        limit: usize,
    ) -> Result<Vec<DataKeyRow>> {
        self.with(|t| {
            Ok(after_id(&t.data_keys, after)
                .filter(|k| k.kek_version < kek_version)
                .take(limit)
                .cloned()
                .collect())
        })
    }

    async fn rewrap_data_key(&self, key: &DataKeyRow, old_kek_version: i32) -> Result<bool> {
        self.with(|t| match t.data_keys.get_mut(&key.patient_id) {
            Some(stored) if stored.kek_version == old_kek_version => {
                *stored = key.clone();
                Ok(true)
            }
            _ => Ok(false),
        })
    }

    async fn count_data_keys(&self) -> Result<u64> {
        self.with(|t| Ok(t.data_keys.len() as u64))
    }

    async fn apply(&self, change: Change) -> Result<()> {
        self.with(|t| change::apply_change(t, &change))
    }

    async fn get_patient(&self, id: Uuid) -> Result<Option<PatientRow>> {
        self.with(|t| Ok(t.patients.get(&id).cloned()))
    }

    async fn find_patients(&self, field: IndexField, index: &BlindIndex) -> Result<Vec<Uuid>> {
        // The same fields, and the same refusal of others, as the SQL backends.
        patient_index_column(field)?;
        let value = |p: &PatientRow| match field {
            IndexField::PatientMrn => Some(p.mrn_index),
            IndexField::PatientEmail => p.email_index,
            _ => Some(p.name_dob_index),
        };
        self.with(|t| {
            Ok(t.patients
                .values()
                .filter(|p| value(p).as_ref() == Some(index))
                .map(|p| p.id)
                .collect())
        })
    }

    async fn get_data_key(&self, patient_id: Uuid) -> Result<Option<DataKeyRow>> {
        self.with(|t| Ok(t.data_keys.get(&patient_id).cloned()))
    }

    async fn get_record(&self, id: Uuid) -> Result<Option<RecordRow>> {
        self.with(|t| Ok(t.records.get(&id).cloned()))
    }

    async fn list_records(
        &self,
        patient_id: Uuid,
        after: Option<Uuid>,
        limit: usize,
    ) -> Result<Vec<RecordRow>> {
        self.with(|t| {
            Ok(after_id(&t.records, after)
                .filter(|r| r.patient_id == patient_id)
                .take(limit)
                .cloned()
                .collect())
        })
    }
}

fn email_taken(tables: &Tables, user: &UserRow) -> bool {
    tables
        .users
        .values()
        .any(|u| u.id != user.id && u.email_index == user.email_index)
}

#[async_trait]
impl IdentityStore for MemoryStore {
    async fn count_users(&self) -> Result<u64> {
        self.with(|t| Ok(t.users.len() as u64))
    }

    async fn insert_user(&self, user: &UserRow) -> Result<()> {
        self.with(|t| {
            if t.users.contains_key(&user.id) || email_taken(t, user) {
                return Err(Error::AlreadyExists { what: "user" });
            }
            if user
                .patient_id
                .is_some_and(|p| !t.patients.contains_key(&p))
            {
                return Err(Error::NotFound { what: "patient" });
            }
            t.users.insert(user.id, user.clone());
            Ok(())
        })
    }

    async fn get_user(&self, id: Uuid) -> Result<Option<UserRow>> {
        self.with(|t| Ok(t.users.get(&id).cloned()))
    }

    async fn find_user(&self, email_index: &BlindIndex) -> Result<Option<UserRow>> {
        self.with(|t| {
            Ok(t.users
                .values()
                .find(|u| u.email_index == *email_index)
                .cloned())
        })
    }

    async fn list_users(&self, after: Option<Uuid>, limit: usize) -> Result<Vec<UserRow>> {
        self.with(|t| Ok(after_id(&t.users, after).take(limit).cloned().collect()))
    }

    async fn update_user(&self, user: &UserRow, expected_version: i64) -> Result<()> {
        self.with(|t| {
            let current = t
                .users
                .get(&user.id)
                .ok_or(Error::NotFound { what: "user" })?
                .version;
            check_version("user", current, expected_version)?;
            if email_taken(t, user) {
                return Err(Error::AlreadyExists { what: "user" });
            }
            if user
                .patient_id
                .is_some_and(|p| !t.patients.contains_key(&p))
            {
                return Err(Error::NotFound { what: "patient" });
            }
            t.users.insert(user.id, user.clone());
            Ok(())
        })
    }

    async fn advance_mfa_step(&self, user_id: Uuid, step: i64) -> Result<bool> {
        self.with(|t| {
            let last = t.mfa_steps.entry(user_id).or_insert(i64::MIN);
            if step > *last {
                *last = step;
                Ok(true)
            } else {
                Ok(false)
            }
        })
    }

    async fn login_failures(&self, user_id: Uuid) -> Result<Option<LoginFailures>> {
        self.with(|t| Ok(t.login_failures.get(&user_id).copied()))
    }

    async fn record_login_failure(
        &self,
        user_id: Uuid,
        at: DateTime<Utc>,
        window: chrono::Duration,
    ) -> Result<LoginFailures> {
        self.with(|t| {
            let entry = t.login_failures.entry(user_id).or_insert(LoginFailures {
                count: 0,
                window_start: at,
                last_at: at,
            });
            if at - entry.window_start > window {
                entry.count = 0;
                entry.window_start = at;
            }
            entry.count = entry.count.saturating_add(1);
            entry.last_at = at;
            Ok(*entry)
        })
    }

    async fn clear_login_failures(&self, user_id: Uuid) -> Result<()> {
        self.with(|t| {
            t.login_failures.remove(&user_id);
            Ok(())
        })
    }

    async fn insert_session(&self, session: &SessionRow, refresh: &RefreshRow) -> Result<()> {
        self.with(|t| {
            t.sessions.insert(session.id, session.clone());
            t.refresh.insert(refresh.hash, refresh.clone());
            Ok(())
        })
    }

    async fn get_session(&self, id: Uuid) -> Result<Option<SessionRow>> {
        self.with(|t| Ok(t.sessions.get(&id).cloned()))
    }

    async fn touch_session(&self, id: Uuid, at: DateTime<Utc>) -> Result<()> {
        self.with(|t| {
            if let Some(s) = t.sessions.get_mut(&id) {
                s.last_seen_at = s.last_seen_at.max(at);
            }
            Ok(())
        })
    }

    async fn revoke_session(&self, id: Uuid, at: DateTime<Utc>) -> Result<()> {
        self.with(|t| {
            if let Some(s) = t.sessions.get_mut(&id) {
                s.revoked_at.get_or_insert(at);
            }
            Ok(())
        })
    }

    async fn revoke_user_sessions(&self, user_id: Uuid, at: DateTime<Utc>) -> Result<u64> {
        self.with(|t| {
            let mut count = 0;
            for s in t.sessions.values_mut() {
                if s.user_id == user_id && s.revoked_at.is_none() {
                    s.revoked_at = Some(at);
                    count += 1;
                }
            }
            Ok(count)
        })
    }

    async fn get_refresh(&self, hash: &[u8; 32]) -> Result<Option<RefreshRow>> {
        self.with(|t| Ok(t.refresh.get(hash).cloned()))
    }

    async fn rotate_refresh(
        &self,
        used: &[u8; 32],
        at: DateTime<Utc>,
        next: &RefreshRow,
    ) -> Result<bool> {
        self.with(|t| {
            match t.refresh.get_mut(used) {
                Some(row) if row.used_at.is_none() => row.used_at = Some(at),
                _ => return Ok(false),
            }
            t.refresh.insert(next.hash, next.clone());
            Ok(true)
        })
    }

    async fn upsert_care_team(&self, member: &CareTeamRow) -> Result<()> {
        self.with(|t| change::upsert_care_team(t, member))
    }

    async fn remove_care_team(&self, patient_id: Uuid, user_id: Uuid) -> Result<()> {
        let change = Change::RemoveCareTeamMember {
            patient_id,
            user_id,
        };
        self.with(|t| change::apply_change(t, &change))
    }

    async fn care_team_member(
        &self,
        patient_id: Uuid,
        user_id: Uuid,
    ) -> Result<Option<CareTeamRow>> {
        self.with(|t| Ok(t.care_team.get(&(patient_id, user_id)).cloned()))
    }

    async fn care_team_of_user(&self, user_id: Uuid) -> Result<Vec<CareTeamRow>> {
        self.with(|t| {
            Ok(t.care_team
                .values()
                .filter(|m| m.user_id == user_id)
                .cloned()
                .collect())
        })
    }

    async fn insert_grant(&self, grant: &GrantRow) -> Result<()> {
        self.with(|t| change::apply_change(t, &Change::InsertGrant(grant.clone())))
    }

    async fn grants_of_user(&self, user_id: Uuid) -> Result<Vec<GrantRow>> {
        self.with(|t| {
            Ok(t.grants
                .values()
                .rev()
                .filter(|g| g.user_id == user_id)
                .cloned()
                .collect())
        })
    }

    async fn list_grants(
        &self,
        unreviewed_only: bool,
        after: Option<Uuid>,
        limit: usize,
    ) -> Result<Vec<GrantRow>> {
        self.with(|t| {
            Ok(after_id(&t.grants, after)
                .filter(|g| !unreviewed_only || g.reviewed_at.is_none())
                .take(limit)
                .cloned()
                .collect())
        })
    }

    async fn review_grant(&self, id: Uuid, by: Uuid, at: DateTime<Utc>) -> Result<()> {
        self.with(|t| {
            let grant = t
                .grants
                .get_mut(&id)
                .ok_or(Error::NotFound { what: "grant" })?;
            grant.reviewed_at = Some(at);
            grant.reviewed_by = Some(by);
            Ok(())
        })
    }

    async fn list_patient_ids(&self, after: Option<Uuid>, limit: usize) -> Result<Vec<Uuid>> {
        self.with(|t| {
            Ok(after_id(&t.patients, after)
                .take(limit)
                .map(|p| p.id)
                .collect())
        })
    }
}

fn audit_matches(event: &AuditEvent, filter: &AuditFilter) -> bool {
    filter
        .patient_id
        .is_none_or(|p| event.patient_id == Some(p))
        && filter.actor_id.is_none_or(|a| event.actor_id == Some(a))
        && filter.subtype.as_ref().is_none_or(|s| event.subtype == *s)
        && filter.outcome.as_ref().is_none_or(|o| event.outcome == *o)
        && filter.from.is_none_or(|t| event.recorded >= t)
        && filter.to.is_none_or(|t| event.recorded < t)
}

#[async_trait]
impl AuditStore for MemoryStore {
    async fn append_audit(
        &self,
        events: &[AuditEvent],
        checkpoint: Option<&Checkpoint>,
    ) -> Result<()> {
        self.with(|t| {
            if events
                .iter()
                .any(|e| t.audit_events.contains_key(&(e.chain_id, e.seq)))
            {
                return Err(Error::AlreadyExists {
                    what: "audit event",
                });
            }
            for e in events {
                t.audit_events.insert((e.chain_id, e.seq), e.clone());
            }
            if let Some(cp) = checkpoint {
                t.audit_checkpoints
                    .insert((cp.chain_id, cp.seq), cp.clone());
            }
            Ok(())
        })
    }

    async fn append_audit_batch(&self, batch: AuditBatch) -> Result<StoredBatch> {
        self.with(|t| {
            let mut saved = Vec::new();
            let outcomes: Vec<Result<()>> = batch
                .changes
                .iter()
                .map(|change| match change {
                    Some(change) => {
                        let before = change::before(t, change);
                        let outcome = change::apply_change(t, change);
                        if outcome.is_ok() {
                            saved.extend(before);
                        }
                        outcome
                    }
                    None => Ok(()),
                })
                .collect();
            let (events, checkpoint) = (batch.seal)(&outcomes);
            if events
                .iter()
                .any(|e| t.audit_events.contains_key(&(e.chain_id, e.seq)))
            {
                change::undo(t, saved);
                return Err(Error::AlreadyExists {
                    what: "audit event",
                });
            }
            for e in &events {
                t.audit_events.insert((e.chain_id, e.seq), e.clone());
            }
            if let Some(cp) = &checkpoint {
                t.audit_checkpoints
                    .insert((cp.chain_id, cp.seq), cp.clone());
            }
            Ok(StoredBatch {
                outcomes,
                events,
                checkpoint,
            })
        })
    }

    async fn audit_chains(&self) -> Result<Vec<Uuid>> {
        self.with(|t| {
            let mut chains: Vec<Uuid> = t
                .audit_events
                .keys()
                .chain(t.audit_checkpoints.keys())
                .map(|(c, _)| *c)
                .collect();
            chains.sort();
            chains.dedup();
            Ok(chains)
        })
    }

    async fn audit_chain_events(
        &self,
        chain: Uuid,
        after_seq: i64,
        limit: usize,
    ) -> Result<Vec<AuditEvent>> {
        self.with(|t| {
            Ok(t.audit_events
                .range((chain, after_seq.saturating_add(1))..=(chain, i64::MAX))
                .take(limit)
                .map(|(_, e)| e.clone())
                .collect())
        })
    }

    async fn audit_checkpoints(&self, chain: Uuid) -> Result<Vec<Checkpoint>> {
        self.with(|t| {
            Ok(t.audit_checkpoints
                .range((chain, i64::MIN)..=(chain, i64::MAX))
                .map(|(_, c)| c.clone())
                .collect())
        })
    }

    async fn query_audit(
        &self,
        filter: &AuditFilter,
        after: Option<Uuid>,
        limit: usize,
    ) -> Result<Vec<AuditEvent>> {
        self.with(|t| {
            let mut found: Vec<AuditEvent> = t
                .audit_events
                .values()
                .filter(|e| after.is_none_or(|a| e.id > a) && audit_matches(e, filter))
                .cloned()
                .collect();
            found.sort_by_key(|e| e.id);
            found.truncate(limit);
            Ok(found)
        })
    }

    async fn purge_audit_before(&self, before: DateTime<Utc>) -> Result<u64> {
        self.with(|t| {
            let mut cut: BTreeMap<Uuid, i64> = BTreeMap::new();
            for (chain, seq) in t.audit_checkpoints.keys() {
                let old = t
                    .audit_events
                    .get(&(*chain, *seq))
                    .is_some_and(|e| e.recorded < before);
                if old {
                    let entry = cut.entry(*chain).or_insert(*seq);
                    *entry = (*entry).max(*seq);
                }
            }
            let before_len = t.audit_events.len();
            t.audit_events
                .retain(|(chain, seq), _| cut.get(chain).is_none_or(|limit| seq > limit));
            Ok((before_len - t.audit_events.len()) as u64)
        })
    }
}
