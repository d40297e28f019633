//! [`CachedStore`]: a [`Store`] whose point reads of encrypted rows are
//! served from the cache, and whose writes invalidate what they changed.

use std::sync::Arc;

use async_trait::async_trait;
use uuid::Uuid;

use super::{Invalidation, Invalidator};
use crate::crypto::{BlindIndex, IndexField};
use crate::error::Result;
use crate::model::{Change, DataKeyRow, DisclosureRow, PatientRow, RecordRow};
use crate::store::Store;

/// A [`Store`] with cached point reads of patients, records and wrapped
/// data keys (all ciphertext). Lists, lookups and metadata always go to the
/// database.
#[derive(Debug)]
pub struct CachedStore {
    inner: Arc<dyn Store>,
    invalidator: Arc<Invalidator>,
}

impl CachedStore {
    /// Caches `inner` through `invalidator`.
    pub fn new(inner: Arc<dyn Store>, invalidator: Arc<Invalidator>) -> CachedStore {
        CachedStore { inner, invalidator }
    }
}

// A decorator forwards every method, defaulted ones included: a default
// would bypass the inner store (and its invalidation) silently.
#[deny(clippy::missing_trait_methods)]
#[async_trait]
impl Store for CachedStore {
    fn backend(&self) -> &'static str {
        self.inner.backend()
    }

    async fn ping(&self) -> Result<()> {
        self.inner.ping().await
    }

    fn pool_usage(&self) -> (usize, usize) {
        self.inner.pool_usage()
    }

    async fn outside_changes(&self) -> Result<Option<i64>> {
        self.inner.outside_changes().await
    }

    async fn schema_version(&self) -> Result<i64> {
        self.inner.schema_version().await
    }

    async fn get_meta(&self, key: &str) -> Result<Option<String>> {
        self.inner.get_meta(key).await
    }

    async fn set_meta_if_absent(&self, key: &str, value: &str) -> Result<String> {
        self.inner.set_meta_if_absent(key, value).await
    }

    async fn put_meta(&self, key: &str, value: &str) -> Result<()> {
        self.inner.put_meta(key, value).await
    }

    async fn take_meta(&self, key: &str) -> Result<Option<String>> {
        self.inner.take_meta(key).await
    }

    async fn data_keys_by_kek(&self) -> Result<Vec<(i32, u64)>> {
        self.inner.data_keys_by_kek().await
    }

    async fn data_keys_below(
        &self,
        kek_version: i32,
        after: Option<Uuid>,
        limit: usize,
    ) -> Result<Vec<DataKeyRow>> {
        self.inner.data_keys_below(kek_version, after, limit).await
    }

    async fn rewrap_data_key(&self, key: &DataKeyRow, old_kek_version: i32) -> Result<bool> {
        let result = self.inner.rewrap_data_key(key, old_kek_version).await;
        self.invalidator
            .invalidate(Invalidation::DataKey(key.patient_id))
            .await;
        result
    }

    async fn count_data_keys(&self) -> Result<u64> {
        self.inner.count_data_keys().await
    }

    async fn apply(&self, change: Change) -> Result<()> {
        let stale = change.invalidations();
        let result = self.inner.apply(change).await;
        // Also after a failure: a conflict means the cached row is stale.
        for what in stale {
            self.invalidator.invalidate(what).await;
        }
        result
    }

    async fn erase_patient(&self, id: Uuid, at: chrono::DateTime<chrono::Utc>) -> Result<()> {
        self.apply(Change::ErasePatient { id, at }).await
    }

    async fn get_patient(&self, id: Uuid) -> Result<Option<PatientRow>> {
        self.invalidator
            .cached(Invalidation::Patient(id), false, || {
                self.inner.get_patient(id)
            })
            .await
    }

    async fn find_patients(&self, field: IndexField, index: &BlindIndex) -> Result<Vec<Uuid>> {
        self.inner.find_patients(field, index).await
    }

    async fn get_data_key(&self, patient_id: Uuid) -> Result<Option<DataKeyRow>> {
        self.invalidator
            .cached(Invalidation::DataKey(patient_id), false, || {
                self.inner.get_data_key(patient_id)
            })
            .await
    }

    async fn get_record(&self, id: Uuid) -> Result<Option<RecordRow>> {
        self.invalidator
            .cached(Invalidation::Record(id), false, || {
                self.inner.get_record(id)
            })
            .await
    }

    async fn list_records(
        &self,
        patient_id: Uuid,
        after: Option<Uuid>,
        limit: usize,
    ) -> Result<Vec<RecordRow>> {
        self.inner.list_records(patient_id, after, limit).await
    }

    async fn list_disclosures(
        &self,
        patient_id: Uuid,
        since: Option<chrono::DateTime<chrono::Utc>>,
        after: Option<Uuid>,
        limit: usize,
    ) -> Result<Vec<DisclosureRow>> {
        self.inner
            .list_disclosures(patient_id, since, after, limit)
            .await
    }
}
