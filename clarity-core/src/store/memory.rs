//! [`MemoryStore`]: everything in process memory. The reference backend for
//! the conformance suite and the store of doctests; nothing survives the process.

use std::collections::BTreeMap;
use std::sync::Mutex;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::migrations::migrations_for;
use super::{DataKeyRow, PatientRow, RecordRow, Store, patient_index_column};
use crate::crypto::{BlindIndex, IndexField};
use crate::error::{Error, Result};

#[derive(Debug, Default)]
pub(crate) struct Tables {
    pub(crate) meta: BTreeMap<String, String>,
    /// Live patients.
    pub(crate) patients: BTreeMap<Uuid, PatientRow>,
    /// Ids of erased patients (tombstones).
    pub(crate) erased: BTreeMap<Uuid, DateTime<Utc>>,
    pub(crate) data_keys: BTreeMap<Uuid, DataKeyRow>,
    pub(crate) records: BTreeMap<Uuid, RecordRow>,
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

    async fn count_data_keys(&self) -> Result<u64> {
        self.with(|t| Ok(t.data_keys.len() as u64))
    }

    async fn insert_patient(&self, key: &DataKeyRow, patient: &PatientRow) -> Result<()> {
        self.with(|t| {
            if t.patients.contains_key(&patient.id)
                || t.erased.contains_key(&patient.id)
                || mrn_taken(t, patient)
            {
                return Err(Error::AlreadyExists { what: "patient" });
            }
            t.patients.insert(patient.id, patient.clone());
            t.data_keys.insert(key.patient_id, key.clone());
            Ok(())
        })
    }

    async fn get_patient(&self, id: Uuid) -> Result<Option<PatientRow>> {
        self.with(|t| Ok(t.patients.get(&id).cloned()))
    }

    async fn update_patient(&self, patient: &PatientRow, expected_version: i64) -> Result<()> {
        self.with(|t| {
            let current = t
                .patients
                .get(&patient.id)
                .ok_or(Error::NotFound { what: "patient" })?
                .version;
            check_version("patient", current, expected_version)?;
            if mrn_taken(t, patient) {
                return Err(Error::AlreadyExists {
                    what: "patient with this MRN",
                });
            }
            t.patients.insert(patient.id, patient.clone());
            Ok(())
        })
    }

    async fn erase_patient(&self, id: Uuid, at: DateTime<Utc>) -> Result<()> {
        self.with(|t| {
            if t.patients.remove(&id).is_none() && !t.erased.contains_key(&id) {
                return Err(Error::NotFound { what: "patient" });
            }
            t.erased.entry(id).or_insert(at);
            t.data_keys.remove(&id);
            t.records.retain(|_, r| r.patient_id != id);
            Ok(())
        })
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

    async fn insert_record(&self, record: &RecordRow) -> Result<()> {
        self.with(|t| {
            if !t.patients.contains_key(&record.patient_id) {
                return Err(Error::NotFound { what: "patient" });
            }
            if t.records.contains_key(&record.id) {
                return Err(Error::AlreadyExists { what: "record" });
            }
            t.records.insert(record.id, record.clone());
            Ok(())
        })
    }

    async fn get_record(&self, id: Uuid) -> Result<Option<RecordRow>> {
        self.with(|t| Ok(t.records.get(&id).cloned()))
    }

    async fn update_record(&self, record: &RecordRow, expected_version: i64) -> Result<()> {
        self.with(|t| {
            let stored = t
                .records
                .get_mut(&record.id)
                .ok_or(Error::NotFound { what: "record" })?;
            check_version("record", stored.version, expected_version)?;
            stored.body = record.body.clone();
            stored.version = record.version;
            stored.updated_at = record.updated_at;
            Ok(())
        })
    }

    async fn delete_record(&self, id: Uuid) -> Result<()> {
        self.with(|t| {
            t.records
                .remove(&id)
                .map(|_| ())
                .ok_or(Error::NotFound { what: "record" })
        })
    }

    async fn list_records(
        &self,
        patient_id: Uuid,
        after: Option<Uuid>,
        limit: usize,
    ) -> Result<Vec<RecordRow>> {
        let after = after.unwrap_or(Uuid::nil());
        self.with(|t| {
            Ok(t.records
                .range((std::ops::Bound::Excluded(after), std::ops::Bound::Unbounded))
                .map(|(_, r)| r)
                .filter(|r| r.patient_id == patient_id)
                .take(limit)
                .cloned()
                .collect())
        })
    }
}
