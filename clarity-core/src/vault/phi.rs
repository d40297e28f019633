//! [`PhiStore`]: patients, records and disclosures in plaintext for the caller, sealed
//! envelopes for the [`Store`].
//!
//! Each patient gets its own data key (DEK) at creation, wrapped by the key
//! provider's current KEK and stored beside the patient. Every profile and
//! record body is sealed under that DEK and bound to its row (table, id,
//! patient, version, DEK version). Erasing a patient deletes its DEK, so any
//! copy of its ciphertext that survives anywhere stays unreadable.

use std::sync::Arc;

use serde::Serialize;
use uuid::Uuid;
use zeroize::Zeroizing;

use super::keys::{foreign_keyring, open_key_provider};
use crate::cache::{ExpiringCache, Invalidator};
use crate::clock::{Clock, SystemClock};
use crate::config::Config;
use crate::crypto::envelope::{RowBinding, open_row, seal_row};
use crate::crypto::schedule::meta;
use crate::crypto::{BlindIndexer, IndexField, Key, KeyProvider, Phi, WrappedKey, fingerprint};
use crate::error::{Error, Result};
use crate::model::{
    CareTeamRow, Change, DataKeyRow, Invalidation, Patient, PatientLookup, PatientProfile,
    PatientRow,
};
use crate::store::Store;
use crate::timings::{Stage, StageTimes};

mod disclosures;
mod records;

/// Every DEK is version 1 until DEK rotation exists; the version is in every envelope's AAD.
const DEK_VERSION: i32 = 1;
const PATIENTS: &str = "patients";
const RECORDS: &str = "records";
const DISCLOSURES: &str = "disclosures";

/// Encrypted storage of patients and records over any [`Store`]: plaintext
/// for its caller, sealed rows for the store. It decides nothing and audits
/// nothing, so only the service calls it (and, with the `testing` feature,
/// this workspace's tests); applications use `Clarity` (S-API-1).
#[derive(Debug, Clone)]
pub struct PhiStore {
    store: Arc<dyn Store>,
    keys: Arc<dyn KeyProvider>,
    indexer: Arc<BlindIndexer>,
    clock: Arc<dyn Clock>,
    max_document_bytes: usize,
    times: StageTimes,
    /// The database past the cache, and the cache to correct, for a cached
    /// wrapping that no longer unwraps (see [`PhiStore::with_fresh_reads`]).
    fresh: Option<(Arc<dyn Store>, Arc<Invalidator>)>,
    /// Data keys already unwrapped, each beside the wrapping it came from:
    /// a read whose key row still holds that wrapping skips the unwrap (an
    /// AES key unwrap locally, a round trip to a remote key service).
    unwrapped: ExpiringCache<Uuid, Arc<UnwrappedKey>>,
}

/// A data key and the stored wrapping it was unwrapped from. Zeroized when
/// the last copy is dropped ([`Key`] is).
struct UnwrappedKey {
    kek_version: i32,
    dek_version: i32,
    wrapped: Vec<u8>,
    key: Key,
}

/// The cache of unwrapped data keys that `keys` configures.
fn unwrapped_keys(keys: &crate::crypto::KeysConfig) -> ExpiringCache<Uuid, Arc<UnwrappedKey>> {
    ExpiringCache::new(
        keys.dek_cache_entries,
        std::time::Duration::from_secs(keys.dek_cache_secs),
    )
}

impl std::fmt::Debug for UnwrappedKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UnwrappedKey")
            .field("kek_version", &self.kek_version)
            .field("dek_version", &self.dek_version)
            .finish_non_exhaustive()
    }
}

impl PhiStore {
    /// Opens the store and the key provider that `config` names.
    ///
    /// On an empty store with no keyring file, a new local keyring is created.
    /// A store that already holds data is never given a new keyring: a missing
    /// or foreign keyring is an error, and nothing is written.
    ///
    /// # Errors
    /// [`Error::Key`] for a missing, unreadable or foreign keyring; the
    /// backend's errors when the store cannot be opened.
    pub async fn open(config: &Config) -> Result<PhiStore> {
        let store = crate::store::open(&config.store, &config.data_dir)
            .await?
            .rows;
        let keys = open_key_provider(config, store.as_ref()).await?;
        Ok(Self::new(store, keys)
            .await?
            .with_max_document_bytes(config.store.max_document_bytes))
    }

    /// Binds `store` to `keys`. The first binding records the keyring's
    /// fingerprint in the store; later ones must present the same keyring.
    ///
    /// # Errors
    /// [`Error::Key`] when the keyring is not the store's.
    pub async fn new(store: Arc<dyn Store>, keys: Arc<dyn KeyProvider>) -> Result<PhiStore> {
        let root = keys.root_key().await?;
        let ours = fingerprint(&root);
        match store.get_meta(meta::KEYRING_FINGERPRINT).await? {
            Some(theirs) if theirs != ours => return Err(foreign_keyring(&ours, &theirs)),
            Some(_) => {}
            None => {
                if store.count_data_keys().await? > 0 {
                    return Err(Error::key(
                        "the store holds encrypted data but no keyring fingerprint; refusing to bind a keyring to it",
                    ));
                }
                let stored = store
                    .set_meta_if_absent(meta::KEYRING_FINGERPRINT, &ours)
                    .await?;
                if stored != ours {
                    return Err(foreign_keyring(&ours, &stored));
                }
            }
        }
        Ok(PhiStore {
            indexer: Arc::new(BlindIndexer::new(&root)?),
            store,
            keys,
            clock: Arc::new(SystemClock),
            times: StageTimes::new(),
            max_document_bytes: 1024 * 1024,
            fresh: None,
            unwrapped: unwrapped_keys(&crate::crypto::KeysConfig::default()),
        })
    }

    /// Uses `clock` for timestamps (tests move time with [`crate::clock::ManualClock`]).
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// Counts its row reads and data-key look-ups into `times`
    /// ([`Stage::RowRead`], [`Stage::DataKey`]).
    pub fn with_stage_times(mut self, times: StageTimes) -> Self {
        self.times = times;
        self
    }

    /// Sets the largest accepted document, in bytes of JSON.
    pub fn with_max_document_bytes(mut self, bytes: usize) -> Self {
        self.max_document_bytes = bytes;
        self
    }

    /// When this store's reads are cached: `database` is the same store past
    /// the cache. A cached data-key wrapping that no longer unwraps (another
    /// process re-wrapped it and retired its KEK, and the invalidation was
    /// missed) is dropped from the cache and read again from `database`.
    pub fn with_fresh_reads(mut self, database: Arc<dyn Store>, cache: Arc<Invalidator>) -> Self {
        self.fresh = Some((database, cache));
        self
    }

    /// The underlying store.
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    /// The key provider.
    pub fn keys(&self) -> &Arc<dyn KeyProvider> {
        &self.keys
    }

    /// The blind indexer (keys derived from this store's keyring).
    pub fn indexer(&self) -> &BlindIndexer {
        &self.indexer
    }

    /// The clock in use.
    pub fn clock(&self) -> &Arc<dyn Clock> {
        &self.clock
    }

    /// Readiness: the database answers and the key provider serves keys.
    ///
    /// # Errors
    /// The first dependency that is not ready.
    pub async fn check(&self) -> Result<()> {
        self.store.ping().await?;
        self.keys.check().await
    }

    /// Creates a patient with a fresh data key.
    ///
    /// # Errors
    /// [`Error::InvalidInput`] for an invalid profile; [`Error::AlreadyExists`]
    /// when the MRN is taken.
    pub async fn create_patient(&self, profile: PatientProfile) -> Result<Patient> {
        let (change, patient) = self.prepare_patient(profile, None).await?;
        self.store.apply(change).await?;
        Ok(patient)
    }

    /// The change that creates a patient with a fresh data key (and, with
    /// `creator`, that user's care-team membership under that
    /// relationship), and the patient it creates once applied.
    ///
    /// # Errors
    /// [`Error::InvalidInput`] for an invalid profile; the key provider's errors.
    pub async fn prepare_patient(
        &self,
        profile: PatientProfile,
        creator: Option<(Uuid, &str)>,
    ) -> Result<(Change, Patient)> {
        profile.validate()?;
        let id = Uuid::now_v7();
        let now = self.clock.now();
        let dek = Key::generate()?;
        let wrapped = self.keys.wrap(&dek, id.as_bytes()).await?;
        let row = self.patient_row(&dek, id, 1, &profile, now, now)?;
        let key = DataKeyRow {
            patient_id: id,
            dek_version: DEK_VERSION,
            kek_version: wrapped.kek_version,
            wrapped: wrapped.ciphertext,
        };
        let creator = creator.map(|(user_id, relationship)| CareTeamRow {
            patient_id: id,
            user_id,
            relationship: relationship.to_string(),
            expires_at: None,
            created_at: now,
        });
        let change = Change::InsertPatient {
            key,
            patient: row,
            creator,
        };
        let patient = Patient {
            id,
            version: 1,
            created_at: now,
            updated_at: now,
            profile: Phi::new(profile),
        };
        Ok((change, patient))
    }

    /// Reads and decrypts a patient.
    ///
    /// # Errors
    /// [`Error::NotFound`] for an unknown or erased patient; [`Error::Integrity`]
    /// when the stored profile fails to decrypt.
    pub async fn get_patient(&self, id: Uuid) -> Result<Patient> {
        let row = self
            .times
            .time(Stage::RowRead, self.store.get_patient(id))
            .await?
            .ok_or(Error::NotFound { what: "patient" })?;
        let (dek, dek_version) = self.data_key(id, "patient").await?;
        let binding = binding(PATIENTS, id, id, row.version, dek_version);
        let profile: PatientProfile = self.open_sealed(&dek, &binding, &row.profile)?;
        Ok(Patient {
            id,
            version: row.version,
            created_at: row.created_at,
            updated_at: row.updated_at,
            profile: Phi::new(profile),
        })
    }

    /// Replaces a patient's profile if its current version is `expected_version`.
    ///
    /// # Errors
    /// [`Error::Conflict`] on a stale version (nothing is written);
    /// [`Error::NotFound`]; [`Error::InvalidInput`]; [`Error::AlreadyExists`] for a taken MRN.
    pub async fn update_patient(
        &self,
        id: Uuid,
        expected_version: i64,
        profile: PatientProfile,
    ) -> Result<Patient> {
        let (change, patient) = self
            .prepare_patient_update(id, expected_version, profile)
            .await?;
        self.store.apply(change).await?;
        Ok(patient)
    }

    /// The change that replaces a patient's profile if its version is still
    /// `expected_version` when applied, and the patient it makes.
    ///
    /// # Errors
    /// As [`PhiStore::update_patient`], for what can be known before applying.
    pub async fn prepare_patient_update(
        &self,
        id: Uuid,
        expected_version: i64,
        profile: PatientProfile,
    ) -> Result<(Change, Patient)> {
        profile.validate()?;
        let current = self
            .store
            .get_patient(id)
            .await?
            .ok_or(Error::NotFound { what: "patient" })?;
        if current.version != expected_version {
            return Err(Error::Conflict {
                what: "patient",
                expected: expected_version,
                current: current.version,
            });
        }
        let (dek, _) = self.data_key(id, "patient").await?;
        let version = expected_version + 1;
        let now = self.clock.now();
        let row = self.patient_row(&dek, id, version, &profile, current.created_at, now)?;
        let change = Change::UpdatePatient {
            patient: row,
            expected_version,
        };
        let patient = Patient {
            id,
            version,
            created_at: current.created_at,
            updated_at: now,
            profile: Phi::new(profile),
        };
        Ok((change, patient))
    }

    /// Erases a patient by destroying its data key (crypto-shredding) and
    /// deleting its records. Idempotent.
    ///
    /// # Errors
    /// [`Error::NotFound`] when the patient never existed.
    pub async fn erase_patient(&self, id: Uuid) -> Result<()> {
        self.forget_data_key(id);
        self.store.erase_patient(id, self.clock.now()).await
    }

    /// Ids of live patients matching `lookup` exactly (after normalisation).
    ///
    /// # Errors
    /// The backend's errors.
    pub async fn find_patients(&self, lookup: &PatientLookup) -> Result<Vec<Uuid>> {
        let (field, index) = match lookup {
            PatientLookup::Mrn(mrn) => (
                IndexField::PatientMrn,
                self.indexer.index(IndexField::PatientMrn, mrn),
            ),
            PatientLookup::Email(email) => (
                IndexField::PatientEmail,
                self.indexer.index(IndexField::PatientEmail, email),
            ),
            PatientLookup::NameBirthDate {
                family_name,
                birth_date,
            } => (
                IndexField::PatientNameBirthDate,
                self.indexer.name_birth_date(family_name, birth_date),
            ),
        };
        self.store.find_patients(field, &index).await
    }

    /// A patient row: the sealed profile and its blind indexes.
    fn patient_row(
        &self,
        dek: &Key,
        id: Uuid,
        version: i64,
        profile: &PatientProfile,
        created_at: chrono::DateTime<chrono::Utc>,
        updated_at: chrono::DateTime<chrono::Utc>,
    ) -> Result<PatientRow> {
        Ok(PatientRow {
            id,
            profile: self.seal_doc(dek, PATIENTS, id, id, version, profile)?,
            mrn_index: self.indexer.index(IndexField::PatientMrn, &profile.mrn),
            email_index: profile
                .email
                .as_deref()
                .map(|e| self.indexer.index(IndexField::PatientEmail, e)),
            name_dob_index: self
                .indexer
                .name_birth_date(&profile.family_name, &profile.birth_date),
            version,
            created_at,
            updated_at,
        })
    }

    /// Keeps unwrapped data keys as `keys` says (`keys.dek_cache_entries`
    /// at most, each `keys.dek_cache_secs` after it was unwrapped): a key
    /// is never used once its key row is gone (an erasure) or re-wrapped,
    /// and does not outlive that in memory for longer than this.
    pub fn with_data_key_cache(mut self, keys: &crate::crypto::KeysConfig) -> Self {
        self.unwrapped = unwrapped_keys(keys);
        self
    }

    /// Drops every unwrapped data key from memory (after a KEK version is
    /// retired: what it wrapped must unwrap through the provider again).
    pub(crate) fn forget_data_keys(&self) {
        self.unwrapped.clear();
    }

    /// Drops the patient's unwrapped data key from memory (after an
    /// erasure: it could no longer be used, as its key row is gone).
    pub(crate) fn forget_data_key(&self, patient_id: Uuid) {
        self.unwrapped.remove(&patient_id);
    }

    /// The unwrapped DEK of a live patient; `NotFound { what }` once erased.
    async fn data_key(&self, patient_id: Uuid, what: &'static str) -> Result<(Key, i32)> {
        self.times
            .time(Stage::DataKey, self.data_key_untimed(patient_id, what))
            .await
    }

    async fn data_key_untimed(&self, patient_id: Uuid, what: &'static str) -> Result<(Key, i32)> {
        let row = self
            .store
            .get_data_key(patient_id)
            .await?
            .ok_or(Error::NotFound { what })?;
        if let Some(known) = self.unwrapped.get(&patient_id).filter(|k| {
            k.kek_version == row.kek_version
                && k.dek_version == row.dek_version
                && k.wrapped == row.wrapped
        }) {
            return Ok((known.key.clone(), known.dek_version));
        }
        let wrapped = WrappedKey {
            kek_version: row.kek_version,
            ciphertext: row.wrapped,
        };
        match self.keys.unwrap(&wrapped, patient_id.as_bytes()).await {
            Ok(dek) => {
                self.unwrapped.insert(
                    patient_id,
                    Arc::new(UnwrappedKey {
                        kek_version: wrapped.kek_version,
                        dek_version: row.dek_version,
                        wrapped: wrapped.ciphertext,
                        key: dek.clone(),
                    }),
                );
                Ok((dek, row.dek_version))
            }
            // A cached wrapping can be stale (re-wrapped, and its KEK
            // retired, by another process): read it again before failing.
            Err(e @ (Error::Integrity | Error::Key { .. })) => {
                let fresh = match &self.fresh {
                    Some((database, cache)) => {
                        cache.forget(Invalidation::DataKey(patient_id)).await;
                        database.get_data_key(patient_id).await?
                    }
                    None => self.store.get_data_key(patient_id).await?,
                }
                .ok_or(Error::NotFound { what })?;
                if fresh.kek_version == wrapped.kek_version && fresh.wrapped == wrapped.ciphertext {
                    return Err(unwrap_failed(patient_id, e));
                }
                let wrapped = WrappedKey {
                    kek_version: fresh.kek_version,
                    ciphertext: fresh.wrapped,
                };
                let dek = self
                    .keys
                    .unwrap(&wrapped, patient_id.as_bytes())
                    .await
                    .map_err(|e| unwrap_failed(patient_id, e))?;
                Ok((dek, fresh.dek_version))
            }
            Err(other) => Err(other),
        }
    }

    fn seal_doc<T: Serialize>(
        &self,
        dek: &Key,
        table: &str,
        row_id: Uuid,
        patient_id: Uuid,
        version: i64,
        value: &T,
    ) -> Result<Vec<u8>> {
        let mut plain = Zeroizing::new(Vec::with_capacity(512));
        serde_json::to_writer(&mut *plain, value)
            .map_err(|_| Error::internal("document serialisation failed"))?;
        if plain.len() > self.max_document_bytes {
            return Err(Error::invalid(format!(
                "document is {} bytes; the limit is {} bytes",
                plain.len(),
                self.max_document_bytes
            )));
        }
        let binding = binding(table, row_id, patient_id, version, DEK_VERSION);
        seal_row(dek, &binding, &plain)
    }

    fn open_sealed<T: serde::de::DeserializeOwned>(
        &self,
        dek: &Key,
        binding: &RowBinding<'_>,
        envelope: &[u8],
    ) -> Result<T> {
        let plain = open_row(dek, binding, envelope).inspect_err(|_| {
            tracing::error!(
                table = binding.table,
                row_id = %binding.row_id,
                "stored ciphertext failed its integrity check"
            );
        })?;
        serde_json::from_slice(&plain).map_err(|_| Error::Integrity)
    }
}

/// Logs a wrapped data key that fails its integrity check, and passes the error on.
fn unwrap_failed(patient_id: Uuid, error: Error) -> Error {
    if matches!(error, Error::Integrity) {
        tracing::error!(%patient_id, "wrapped data key failed its integrity check");
    }
    error
}

fn binding(
    table: &str,
    row_id: Uuid,
    patient_id: Uuid,
    version: i64,
    dek_version: i32,
) -> RowBinding<'_> {
    RowBinding {
        table,
        row_id,
        patient_id,
        version,
        dek_version,
    }
}
