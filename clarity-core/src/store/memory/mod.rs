//! [`MemoryStore`]: everything in process memory. The reference backend for
//! the conformance suite and the store of doctests; nothing survives the process.

use std::collections::BTreeMap;
use std::sync::Mutex;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use uuid::Uuid;

mod audit;
mod change;
mod external;
mod identity;
mod service;

use super::migrations::migrations_for;
use super::{Store, patient_index_column};
use crate::audit::{AuditEvent, Checkpoint};
use crate::crypto::{BlindIndex, IndexField};
use crate::error::{Error, Result};
use crate::model::{
    CareTeamRow, Change, DataKeyRow, DisclosureRow, GrantRow, LoginFailures, PatientRow, RecordRow,
    RefreshRow, ServiceSecretRow, SessionRow, UserRow,
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
    pub(crate) disclosures: BTreeMap<Uuid, DisclosureRow>,
    pub(crate) users: BTreeMap<Uuid, UserRow>,
    mfa_steps: BTreeMap<Uuid, i64>,
    login_failures: BTreeMap<Uuid, LoginFailures>,
    sessions: BTreeMap<Uuid, SessionRow>,
    refresh: BTreeMap<[u8; 32], RefreshRow>,
    care_team: BTreeMap<(Uuid, Uuid), CareTeamRow>,
    grants: BTreeMap<Uuid, GrantRow>,
    pub(crate) service_secrets: BTreeMap<Uuid, ServiceSecretRow>,
    pub(crate) external_identities: BTreeMap<Uuid, crate::model::ExternalIdentityRow>,
    external_sessions_ended: BTreeMap<Uuid, DateTime<Utc>>,
    pub(crate) audit_events: BTreeMap<(Uuid, i64), AuditEvent>,
    audit_checkpoints: BTreeMap<(Uuid, i64), Checkpoint>,
    audit_sink_cursors: BTreeMap<(String, Uuid), i64>,
    /// Per sink: the holder of its delivery lease, and until when.
    audit_sink_leases: BTreeMap<String, (Uuid, DateTime<Utc>)>,
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
    async fn list_disclosures(
        &self,
        patient_id: Uuid,
        since: Option<DateTime<Utc>>,
        after: Option<Uuid>,
        limit: usize,
    ) -> Result<Vec<DisclosureRow>> {
        self.with(|t| {
            Ok(after_id(&t.disclosures, after)
                .filter(|d| d.patient_id == patient_id && since.is_none_or(|s| d.disclosed_at >= s))
                .take(limit)
                .cloned()
                .collect())
        })
    }
}
