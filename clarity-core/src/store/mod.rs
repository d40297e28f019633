//! Persistence: the [`Store`] and [`IdentityStore`] traits and their
//! backends, which open from their own settings ([`StoreConfig`]).
//!
//! A [`Store`] sees ciphertext only: rows carry sealed envelopes, blind
//! indexes and wrapped keys; the encrypting layer above it (`vault`) turns
//! plaintext into those rows and back. Rows are written only through
//! [`Store::apply`] or in an audit batch. Backends:
//! - [`MemoryStore`]: in memory, the reference implementation (tests);
//! - `SqliteStore` (feature `sqlite`): embedded, one machine;
//! - `PostgresStore` (feature `postgres`): several instances.
//!
//! Every backend passes the same conformance suite (the `testing` module,
//! feature `testing`).

use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::audit::AuditStore;
use crate::crypto::{BlindIndex, IndexField};
use crate::error::Result;
use crate::model::{Change, DataKeyRow, DisclosureRow, PatientRow, RecordRow};

#[cfg(any(feature = "sqlite", feature = "postgres"))]
mod audit_sql;
#[cfg(any(feature = "sqlite", feature = "postgres"))]
pub(crate) use audit_sql::{
    AUDIT_CHAINS_SQL, Dialect, IndexedEvent, audit_query_sql, discover_chains_sql, purge_condition,
    sorted_entries,
};
mod identity;
mod memory;
mod migrations;
#[cfg(feature = "postgres")]
mod postgres;
mod settings;
#[cfg(feature = "sqlite")]
mod sqlite;

pub use identity::IdentityStore;
pub use memory::MemoryStore;
pub use migrations::{Migration, migrations_for};
#[cfg(feature = "postgres")]
pub use postgres::{PgTarget, PostgresStore};
#[cfg(feature = "postgres")]
pub(crate) use settings::validate_identifier;
pub use settings::{Backend, SqliteSynchronous, StoreConfig};
#[cfg(feature = "sqlite")]
pub use sqlite::SqliteStore;
#[cfg(feature = "sqlite")]
pub(crate) use sqlite::audit_index_path;

/// Persistence of ciphertext rows. Implementations never see plaintext PHI.
///
/// Methods that change several rows do so in one transaction: either all of
/// it is stored or none.
#[async_trait]
pub trait Store: Send + Sync + fmt::Debug {
    /// The backend's name: `memory`, `sqlite` or `postgres`.
    fn backend(&self) -> &'static str;

    /// Checks that the database answers (readiness).
    async fn ping(&self) -> Result<()>;

    /// Connections in use and the pool's size, for metrics (`(0, 0)` without a pool).
    fn pool_usage(&self) -> (usize, usize) {
        (0, 0)
    }

    /// A counter that moves when another process commits to the database,
    /// and never for this store's own commits: on SQLite, `PRAGMA
    /// data_version` on the writing connection. `None` for a backend
    /// without one (memory; PostgreSQL, whose instances announce their
    /// changes on a channel instead).
    ///
    /// # Errors
    /// The backend's, when the database cannot be read.
    async fn outside_changes(&self) -> Result<Option<i64>> {
        Ok(None)
    }

    /// The highest schema migration applied.
    async fn schema_version(&self) -> Result<i64>;

    /// Reads a metadata value.
    async fn get_meta(&self, key: &str) -> Result<Option<String>>;

    /// Stores `value` under `key` unless a value is there already; returns the stored value.
    async fn set_meta_if_absent(&self, key: &str, value: &str) -> Result<String>;

    /// Stores `value` under `key`, replacing any value.
    async fn put_meta(&self, key: &str, value: &str) -> Result<()>;

    /// Removes `key` and returns its value, atomically: of concurrent callers
    /// at most one gets the value.
    async fn take_meta(&self, key: &str) -> Result<Option<String>>;

    /// Number of data keys per KEK version, in version order.
    async fn data_keys_by_kek(&self) -> Result<Vec<(i32, u64)>>;

    /// Up to `limit` data keys wrapped by a KEK version below `kek_version`,
    /// of patients with ids after `after`, in patient id order.
    async fn data_keys_below(
        &self,
        kek_version: i32,
        after: Option<Uuid>,
        limit: usize,
    ) -> Result<Vec<DataKeyRow>>;

    /// Replaces a data key's wrapping if it is still wrapped by
    /// `old_kek_version`; `false` when it changed meanwhile (or is gone).
    async fn rewrap_data_key(&self, key: &DataKeyRow, old_kek_version: i32) -> Result<bool>;

    /// Number of data keys stored (zero means the store holds no encrypted data).
    async fn count_data_keys(&self) -> Result<u64>;

    /// Applies `change` in a transaction of its own.
    ///
    /// # Errors
    /// Those each [`Change`] variant names, and the backend's.
    async fn apply(&self, change: Change) -> Result<()>;

    /// Reads a live (not erased) patient.
    async fn get_patient(&self, id: Uuid) -> Result<Option<PatientRow>>;

    /// Erases a patient: destroys its data key, deletes its records, blanks
    /// its row and marks it erased. Idempotent for an erased patient.
    ///
    /// # Errors
    /// [`crate::error::Error::NotFound`] when the patient never existed.
    async fn erase_patient(&self, id: Uuid, at: DateTime<Utc>) -> Result<()> {
        self.apply(Change::ErasePatient { id, at }).await
    }

    /// Ids of live patients whose `field` index equals `index`, in id order.
    async fn find_patients(&self, field: IndexField, index: &BlindIndex) -> Result<Vec<Uuid>>;

    /// The data key of a live patient.
    async fn get_data_key(&self, patient_id: Uuid) -> Result<Option<DataKeyRow>>;

    /// Reads a record.
    async fn get_record(&self, id: Uuid) -> Result<Option<RecordRow>>;

    /// Records of a patient with ids greater than `after`, in id order, at most `limit`.
    async fn list_records(
        &self,
        patient_id: Uuid,
        after: Option<Uuid>,
        limit: usize,
    ) -> Result<Vec<RecordRow>>;

    /// Disclosures of a patient made at or after `since` (all when `None`), with ids greater
    /// than `after`, in id order, at most `limit`.
    async fn list_disclosures(
        &self,
        patient_id: Uuid,
        since: Option<DateTime<Utc>>,
        after: Option<Uuid>,
        limit: usize,
    ) -> Result<Vec<DisclosureRow>>;
}

/// The column holding a patient blind index: a fixed string, never input,
/// shared by the SQL backends.
#[cfg_attr(not(any(feature = "sqlite", feature = "postgres")), allow(dead_code))]
pub(crate) fn patient_index_column(field: IndexField) -> Result<&'static str> {
    match field {
        IndexField::PatientMrn => Ok("mrn_index"),
        IndexField::PatientEmail => Ok("email_index"),
        IndexField::PatientNameBirthDate => Ok("name_dob_index"),
        _ => Err(crate::error::Error::invalid("not a patient index")),
    }
}

/// One opened backend, seen through both of its traits.
#[derive(Debug, Clone)]
pub struct Backends {
    /// Patients, records, data keys, metadata.
    pub rows: Arc<dyn Store>,
    /// Users, sessions, care teams, grants.
    pub identity: Arc<dyn IdentityStore>,
    /// The audit trail.
    pub audit: Arc<dyn AuditStore>,
}

impl Backends {
    /// Both views of one backend object.
    pub fn of<T: Store + IdentityStore + AuditStore + 'static>(backend: Arc<T>) -> Self {
        Backends {
            rows: Arc::clone(&backend) as Arc<dyn Store>,
            identity: Arc::clone(&backend) as Arc<dyn IdentityStore>,
            audit: backend,
        }
    }
}

/// Whether the store that `settings` name already exists (its SQLite file,
/// or its PostgreSQL schema's migration table), without creating anything.
///
/// # Errors
/// [`crate::error::Error::Unavailable`] when PostgreSQL cannot be reached;
/// [`crate::error::Error::Config`] for a backend not compiled in.
pub async fn exists(settings: &StoreConfig, data_dir: &std::path::Path) -> Result<bool> {
    match settings.backend {
        #[cfg(feature = "sqlite")]
        Backend::Sqlite => Ok(settings.sqlite_file(data_dir).is_file()),
        #[cfg(feature = "postgres")]
        Backend::Postgres => {
            let client = PgTarget::from_settings(settings)?
                .connect("existence check")
                .await?;
            let row = client
                .query_one("SELECT to_regclass('schema_migrations') IS NOT NULL", &[])
                .await
                .map_err(|_| crate::error::Error::Unavailable {
                    message: "the database did not answer".into(),
                })?;
            Ok(row.get::<_, bool>(0))
        }
        #[allow(unreachable_patterns)]
        other => Err(crate::error::Error::config(
            "store.backend",
            format!("{other:?} support is not compiled into this build"),
        )),
    }
}

/// Opens the backend that `settings` name (SQLite files under `data_dir`)
/// and applies pending migrations.
///
/// # Errors
/// [`crate::error::Error::Config`] for a backend not compiled in, or the backend's
/// error when it cannot be opened or migrated.
pub async fn open(settings: &StoreConfig, data_dir: &std::path::Path) -> Result<Backends> {
    match settings.backend {
        #[cfg(feature = "sqlite")]
        Backend::Sqlite => Ok(Backends::of(Arc::new(
            SqliteStore::open(settings, data_dir).await?,
        ))),
        #[cfg(feature = "postgres")]
        Backend::Postgres => Ok(Backends::of(Arc::new(PostgresStore::open(settings).await?))),
        #[allow(unreachable_patterns)]
        other => Err(crate::error::Error::config(
            "store.backend",
            format!("{other:?} support is not compiled into this build"),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// [`RecordRow`] as it was cached before its body was marked as bytes
    /// (decoded element by element).
    #[derive(serde::Serialize, serde::Deserialize)]
    struct PlainRecordRow {
        id: Uuid,
        patient_id: Uuid,
        kind: String,
        body: Vec<u8>,
        version: i64,
        created_by: Uuid,
        created_at: DateTime<Utc>,
        updated_at: DateTime<Utc>,
    }

    /// Cached rows keep their encoding, so instances of both kinds can
    /// share a cache during an upgrade: the bytes are the same either way.
    #[test]
    fn byte_fields_keep_their_cached_encoding() {
        let now = Utc::now();
        let row = RecordRow {
            id: Uuid::now_v7(),
            patient_id: Uuid::now_v7(),
            kind: "note".into(),
            body: (0..=255u8).cycle().take(1300).collect(),
            version: 3,
            created_by: Uuid::now_v7(),
            created_at: now,
            updated_at: now,
        };
        let plain = PlainRecordRow {
            id: row.id,
            patient_id: row.patient_id,
            kind: row.kind.clone(),
            body: row.body.clone(),
            version: row.version,
            created_by: row.created_by,
            created_at: now,
            updated_at: now,
        };
        let ours = postcard::to_stdvec(&row).expect("encode");
        assert_eq!(ours, postcard::to_stdvec(&plain).expect("encode"));
        let back: RecordRow = postcard::from_bytes(&ours).expect("decode");
        assert_eq!(back, row);
        let theirs: PlainRecordRow = postcard::from_bytes(&ours).expect("decode");
        assert_eq!(theirs.body, row.body);
    }
}
