//! The record half of [`PhiStore`]: clinical records sealed under their
//! patient's data key.

use uuid::Uuid;

use super::{PhiStore, RECORDS, binding};
use crate::crypto::{Json, Key, Phi};
use crate::error::{Error, Result};
use crate::model::{Change, Page, PageRequest, Record, RecordKind, RecordRow, check_document};
use crate::timings::Stage;

impl PhiStore {
    /// Creates a record of `kind` for a patient.
    ///
    /// # Errors
    /// [`Error::InvalidInput`] for a bad kind or body (not a non-empty JSON
    /// object, too deep, too large); [`Error::NotFound`] for an unknown or erased patient.
    pub async fn create_record(
        &self,
        patient_id: Uuid,
        kind: &str,
        data: Json,
        created_by: Uuid,
    ) -> Result<Record> {
        let (change, record) = self
            .prepare_record(patient_id, kind, data, created_by)
            .await?;
        self.store.apply(change).await?;
        Ok(record)
    }

    /// The change that creates a record, and the record it creates.
    ///
    /// # Errors
    /// As [`PhiStore::create_record`], for what can be known before applying.
    pub async fn prepare_record(
        &self,
        patient_id: Uuid,
        kind: &str,
        data: Json,
        created_by: Uuid,
    ) -> Result<(Change, Record)> {
        let kind = RecordKind::new(kind)?;
        check_document("data", &data.0, false)?;
        let (dek, _) = self.data_key(patient_id, "patient").await?;
        let id = Uuid::now_v7();
        let now = self.clock.now();
        let row = RecordRow {
            id,
            patient_id,
            kind: kind.as_str().to_string(),
            body: self.seal_doc(&dek, RECORDS, id, patient_id, 1, &data)?,
            version: 1,
            created_by,
            created_at: now,
            updated_at: now,
        };
        let record = Record {
            id,
            patient_id,
            kind,
            data: Phi::new(data),
            version: 1,
            created_by,
            created_at: now,
            updated_at: now,
        };
        Ok((Change::InsertRecord(row), record))
    }

    /// Reads and decrypts a record.
    ///
    /// # Errors
    /// [`Error::NotFound`] for an unknown record or one of an erased patient;
    /// [`Error::Integrity`] when its body fails to decrypt.
    pub async fn get_record(&self, id: Uuid) -> Result<Record> {
        let row = self.record_row(id).await?;
        self.decrypt_record(row).await
    }

    /// Replaces a record's body if its current version is `expected_version`.
    ///
    /// # Errors
    /// [`Error::Conflict`] on a stale version (nothing is written);
    /// [`Error::NotFound`]; [`Error::InvalidInput`] for a bad body.
    pub async fn update_record(
        &self,
        id: Uuid,
        expected_version: i64,
        data: Json,
    ) -> Result<Record> {
        let (change, record) = self
            .prepare_record_update(id, expected_version, data)
            .await?;
        self.store.apply(change).await?;
        Ok(record)
    }

    /// The change that replaces a record's body if its version is still
    /// `expected_version` when applied, and the record it makes.
    ///
    /// # Errors
    /// As [`PhiStore::update_record`], for what can be known before applying.
    pub async fn prepare_record_update(
        &self,
        id: Uuid,
        expected_version: i64,
        data: Json,
    ) -> Result<(Change, Record)> {
        check_document("data", &data.0, false)?;
        let current = self
            .store
            .get_record(id)
            .await?
            .ok_or(Error::NotFound { what: "record" })?;
        if current.version != expected_version {
            return Err(Error::Conflict {
                what: "record",
                expected: expected_version,
                current: current.version,
            });
        }
        let (dek, _) = self.data_key(current.patient_id, "record").await?;
        let version = expected_version + 1;
        let row = RecordRow {
            body: self.seal_doc(&dek, RECORDS, id, current.patient_id, version, &data)?,
            version,
            updated_at: self.clock.now(),
            ..current
        };
        let record = Record {
            id,
            patient_id: row.patient_id,
            kind: RecordKind::new(&row.kind)?,
            data: Phi::new(data),
            version,
            created_by: row.created_by,
            created_at: row.created_at,
            updated_at: row.updated_at,
        };
        let change = Change::UpdateRecord {
            record: row,
            expected_version,
        };
        Ok((change, record))
    }

    /// Deletes a record.
    ///
    /// # Errors
    /// [`Error::NotFound`] when absent.
    pub async fn delete_record(&self, id: Uuid) -> Result<()> {
        self.store.apply(Change::DeleteRecord(id)).await
    }

    /// One page of a patient's records, oldest first.
    ///
    /// # Errors
    /// [`Error::NotFound`] for an unknown or erased patient;
    /// [`Error::InvalidInput`] for a bad limit or cursor.
    pub async fn list_records(&self, patient_id: Uuid, page: &PageRequest) -> Result<Page<Record>> {
        let limit = page.limit()?;
        let after = page.after()?;
        let (dek, dek_version) = self.data_key(patient_id, "patient").await?;
        let mut rows = self
            .store
            .list_records(patient_id, after, limit + 1)
            .await?;
        let more = rows.len() > limit;
        rows.truncate(limit);
        let items = rows
            .into_iter()
            .map(|row| self.open_record(&dek, dek_version, row))
            .collect::<Result<Vec<_>>>()?;
        let next_cursor = more
            .then(|| items.last().map(|r| r.id.to_string()))
            .flatten();
        Ok(Page { items, next_cursor })
    }

    /// A record's stored row, without decrypting it: lets a caller decide
    /// access on its patient before any plaintext exists.
    ///
    /// # Errors
    /// [`Error::NotFound`] for an unknown record.
    pub async fn record_row(&self, id: Uuid) -> Result<RecordRow> {
        self.times
            .time(Stage::RowRead, self.store.get_record(id))
            .await?
            .ok_or(Error::NotFound { what: "record" })
    }

    /// Decrypts a row read by [`PhiStore::record_row`].
    ///
    /// # Errors
    /// [`Error::NotFound`] once its patient is erased; [`Error::Integrity`].
    pub async fn decrypt_record(&self, row: RecordRow) -> Result<Record> {
        let (dek, dek_version) = self.data_key(row.patient_id, "record").await?;
        self.open_record(&dek, dek_version, row)
    }

    fn open_record(&self, dek: &Key, dek_version: i32, row: RecordRow) -> Result<Record> {
        let binding = binding(RECORDS, row.id, row.patient_id, row.version, dek_version);
        let data: Json = self.open_sealed(dek, &binding, &row.body)?;
        Ok(Record {
            id: row.id,
            patient_id: row.patient_id,
            kind: RecordKind::new(&row.kind).map_err(|_| Error::Integrity)?,
            data: Phi::new(data),
            version: row.version,
            created_by: row.created_by,
            created_at: row.created_at,
            updated_at: row.updated_at,
        })
    }
}
