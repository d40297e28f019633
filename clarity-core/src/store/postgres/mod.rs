//! [`PostgresStore`]: the PostgreSQL backend for several instances
//! (deadpool-postgres, prepared statements cached per connection).

mod audit;
mod change;
mod disclosures;
mod external;
mod identity;
mod service;
mod target;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use deadpool_postgres::{Manager, ManagerConfig, Object, Pool, RecyclingMethod};
use tokio_postgres::Row;
use tokio_postgres::error::SqlState;
use uuid::Uuid;

pub use self::target::PgTarget;
use super::migrations::pending;
use super::{Store, patient_index_column};
use crate::crypto::{BlindIndex, IndexField};
use crate::error::{Error, Result};
use crate::model::{Change, DataKeyRow, DisclosureRow, PatientRow, RecordRow};
use crate::store::StoreConfig;

const BACKEND: &str = "postgres";
/// Advisory lock key held while migrating, so instances starting together
/// migrate one at a time.
const MIGRATION_LOCK: i64 = 0x636c_6172_6974_7901;

/// The PostgreSQL backend.
#[derive(Debug, Clone)]
pub struct PostgresStore {
    pool: Pool,
    schema: Option<String>,
}

impl PostgresStore {
    /// Connects with `settings` and applies pending migrations.
    ///
    /// # Errors
    /// [`Error::Config`] for a malformed URL or TLS setting (see [`PgTarget`]);
    /// [`Error::Unavailable`] when the server cannot be reached;
    /// [`Error::Backend`] when migration fails.
    pub async fn open(settings: &StoreConfig) -> Result<PostgresStore> {
        Self::connect(&PgTarget::from_settings(settings)?, settings.pool_size).await
    }

    /// Connects to `target` with at most `pool_size` connections, keeping
    /// tables in its schema (created if missing) when it names one.
    ///
    /// # Errors
    /// As [`PostgresStore::open`].
    pub async fn connect(target: &PgTarget, pool_size: usize) -> Result<PostgresStore> {
        let manager = Manager::from_config(
            target.pg().clone(),
            target.tls(),
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(pool_size.max(1))
            .wait_timeout(Some(std::time::Duration::from_secs(10)))
            .create_timeout(Some(std::time::Duration::from_secs(10)))
            .runtime(deadpool_postgres::Runtime::Tokio1)
            .build()
            .map_err(|e| Error::backend(BACKEND, "cannot build the connection pool", e))?;
        let store = PostgresStore {
            pool,
            schema: target.schema().map(str::to_string),
        };
        store.migrate().await?;
        Ok(store)
    }

    async fn client(&self) -> Result<Object> {
        self.pool.get().await.map_err(|e| {
            tracing::warn!(error = %crate::error::causes(&e), "PostgreSQL connection unavailable");
            Error::Unavailable {
                message: "the database is unreachable".into(),
            }
        })
    }

    async fn migrate(&self) -> Result<()> {
        let mut client = self.client().await?;
        if let Some(schema) = &self.schema {
            // The identifier was validated; it cannot be a parameter here.
            client
                .batch_execute(&format!("CREATE SCHEMA IF NOT EXISTS {schema}"))
                .await
                .map_err(pg_error)?;
        }
        let tx = client.transaction().await.map_err(pg_error)?;
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
            .await
            .map_err(pg_error)?;
        tx.batch_execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations (
                version    bigint PRIMARY KEY,
                name       text NOT NULL,
                checksum   text NOT NULL,
                applied_at timestamptz NOT NULL
            )",
        )
        .await
        .map_err(pg_error)?;
        let applied: Vec<(i64, String)> = tx
            .query("SELECT version, checksum FROM schema_migrations", &[])
            .await
            .map_err(pg_error)?
            .iter()
            .map(|row| (row.get(0), row.get(1)))
            .collect();
        for migration in pending(BACKEND, &applied)? {
            tx.batch_execute(migration.sql).await.map_err(pg_error)?;
            tx.execute(
                "INSERT INTO schema_migrations (version, name, checksum, applied_at) VALUES ($1, $2, $3, now())",
                &[&migration.version, &migration.name, &migration.checksum()],
            )
            .await
            .map_err(pg_error)?;
            tracing::info!(
                backend = BACKEND,
                version = migration.version,
                name = migration.name,
                "applied migration"
            );
        }
        tx.commit().await.map_err(pg_error)
    }
}

/// Maps a driver error: lost connections are `Unavailable`, everything else a
/// backend error whose message carries no SQL or parameters.
fn pg_error(err: tokio_postgres::Error) -> Error {
    if err.is_closed() || err.code().is_none() && err.as_db_error().is_none() {
        return Error::Unavailable {
            message: "the database connection failed".into(),
        };
    }
    Error::backend(BACKEND, "database operation failed", err)
}

fn unique_or(what: &'static str) -> impl FnOnce(tokio_postgres::Error) -> Error {
    move |err| {
        if err.code() == Some(&SqlState::UNIQUE_VIOLATION) {
            Error::AlreadyExists { what }
        } else {
            pg_error(err)
        }
    }
}

fn index(bytes: Option<Vec<u8>>) -> Result<Option<BlindIndex>> {
    bytes.map(|b| BlindIndex::from_slice(&b)).transpose()
}

fn required_index(bytes: Option<Vec<u8>>) -> Result<BlindIndex> {
    index(bytes)?.ok_or(Error::Integrity)
}

const PATIENT_COLUMNS: &str =
    "id, profile, mrn_index, email_index, name_dob_index, version, created_at, updated_at";

fn patient_row(row: &Row) -> Result<PatientRow> {
    Ok(PatientRow {
        id: row.get(0),
        profile: row.get::<_, Option<Vec<u8>>>(1).ok_or(Error::Integrity)?,
        mrn_index: required_index(row.get(2))?,
        email_index: index(row.get(3))?,
        name_dob_index: required_index(row.get(4))?,
        version: row.get(5),
        created_at: row.get(6),
        updated_at: row.get(7),
    })
}

const RECORD_COLUMNS: &str =
    "id, patient_id, kind, body, version, created_by, created_at, updated_at";

fn record_row(row: &Row) -> RecordRow {
    RecordRow {
        id: row.get(0),
        patient_id: row.get(1),
        kind: row.get(2),
        body: row.get(3),
        version: row.get(4),
        created_by: row.get(5),
        created_at: row.get(6),
        updated_at: row.get(7),
    }
}

/// After a conditional update matched no row: conflict or not found.
async fn conflict_or_missing(
    client: &impl deadpool_postgres::GenericClient,
    sql: &str,
    id: Uuid,
    what: &'static str,
    expected: i64,
) -> Result<()> {
    let current = client.query_opt(sql, &[&id]).await.map_err(pg_error)?;
    match current {
        Some(row) => Err(Error::Conflict {
            what,
            expected,
            current: row.get(0),
        }),
        None => Err(Error::NotFound { what }),
    }
}

#[async_trait]
impl Store for PostgresStore {
    fn backend(&self) -> &'static str {
        BACKEND
    }

    fn pool_usage(&self) -> (usize, usize) {
        let status = self.pool.status();
        (
            status.size.saturating_sub(status.available),
            status.max_size,
        )
    }

    async fn ping(&self) -> Result<()> {
        let client = self.client().await?;
        client
            .query_one("SELECT 1", &[])
            .await
            .map(|_| ())
            .map_err(pg_error)
    }

    async fn schema_version(&self) -> Result<i64> {
        let client = self.client().await?;
        let row = client
            .query_one(
                "SELECT coalesce(max(version), 0)::bigint FROM schema_migrations",
                &[],
            )
            .await
            .map_err(pg_error)?;
        Ok(row.get(0))
    }

    async fn get_meta(&self, key: &str) -> Result<Option<String>> {
        let client = self.client().await?;
        let row = client
            .query_opt("SELECT value FROM meta WHERE key = $1", &[&key])
            .await
            .map_err(pg_error)?;
        Ok(row.map(|r| r.get(0)))
    }

    async fn set_meta_if_absent(&self, key: &str, value: &str) -> Result<String> {
        let client = self.client().await?;
        client
            .execute(
                "INSERT INTO meta (key, value) VALUES ($1, $2) ON CONFLICT (key) DO NOTHING",
                &[&key, &value],
            )
            .await
            .map_err(pg_error)?;
        let row = client
            .query_one("SELECT value FROM meta WHERE key = $1", &[&key])
            .await
            .map_err(pg_error)?;
        Ok(row.get(0))
    }

    async fn put_meta(&self, key: &str, value: &str) -> Result<()> {
        let client = self.client().await?;
        client
            .execute(
                "INSERT INTO meta (key, value) VALUES ($1, $2)
                 ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                &[&key, &value],
            )
            .await
            .map(|_| ())
            .map_err(pg_error)
    }

    async fn take_meta(&self, key: &str) -> Result<Option<String>> {
        let client = self.client().await?;
        let row = client
            .query_opt("DELETE FROM meta WHERE key = $1 RETURNING value", &[&key])
            .await
            .map_err(pg_error)?;
        Ok(row.map(|r| r.get(0)))
    }

    async fn data_keys_by_kek(&self) -> Result<Vec<(i32, u64)>> {
        let client = self.client().await?;
        let rows = client
            .query(
                "SELECT kek_version, count(*) FROM data_keys GROUP BY kek_version ORDER BY kek_version",
                &[],
            )
            .await
            .map_err(pg_error)?;
        Ok(rows
            .iter()
            .map(|r| (r.get(0), u64::try_from(r.get::<_, i64>(1)).unwrap_or(0)))
            .collect())
    }

    async fn data_keys_below(
        &self,
        kek_version: i32,
        after: Option<Uuid>,
        limit: usize,
    ) -> Result<Vec<DataKeyRow>> {
        let client = self.client().await?;
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let rows = client
            .query(
                "SELECT patient_id, dek_version, kek_version, wrapped FROM data_keys
                                  WHERE kek_version < $1 AND patient_id > $3 ORDER BY patient_id LIMIT $2",
                &[&kek_version, &limit, &after.unwrap_or(Uuid::nil())],
            )
            .await
            .map_err(pg_error)?;
        Ok(rows
            .iter()
            .map(|row| DataKeyRow {
                patient_id: row.get(0),
                dek_version: row.get(1),
                kek_version: row.get(2),
                wrapped: row.get(3),
            })
            .collect())
    }

    async fn rewrap_data_key(&self, key: &DataKeyRow, old_kek_version: i32) -> Result<bool> {
        let client = self.client().await?;
        let n = client
            .execute(
                "UPDATE data_keys SET kek_version = $1, wrapped = $2 WHERE patient_id = $3 AND kek_version = $4",
                &[&key.kek_version, &key.wrapped, &key.patient_id, &old_kek_version],
            )
            .await
            .map_err(pg_error)?;
        Ok(n == 1)
    }

    async fn count_data_keys(&self) -> Result<u64> {
        let client = self.client().await?;
        let row = client
            .query_one("SELECT count(*) FROM data_keys", &[])
            .await
            .map_err(pg_error)?;
        u64::try_from(row.get::<_, i64>(0)).map_err(|_| Error::internal("negative count"))
    }

    async fn apply(&self, change: Change) -> Result<()> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(pg_error)?;
        change::apply_change(&tx, &change).await?;
        tx.commit().await.map_err(pg_error)
    }

    async fn get_patient(&self, id: Uuid) -> Result<Option<PatientRow>> {
        let client = self.client().await?;
        let stmt = client
            .prepare_cached(&format!(
                "SELECT {PATIENT_COLUMNS} FROM patients WHERE id = $1 AND erased_at IS NULL"
            ))
            .await
            .map_err(pg_error)?;
        client
            .query_opt(&stmt, &[&id])
            .await
            .map_err(pg_error)?
            .as_ref()
            .map(patient_row)
            .transpose()
    }

    async fn find_patients(&self, field: IndexField, index: &BlindIndex) -> Result<Vec<Uuid>> {
        let column = patient_index_column(field)?;
        let client = self.client().await?;
        let stmt = client
            .prepare_cached(&format!(
                "SELECT id FROM patients WHERE {column} = $1 AND erased_at IS NULL ORDER BY id LIMIT 1000"
            ))
            .await
            .map_err(pg_error)?;
        let rows = client
            .query(&stmt, &[&index.0.as_slice()])
            .await
            .map_err(pg_error)?;
        Ok(rows.iter().map(|r| r.get(0)).collect())
    }

    async fn get_data_key(&self, patient_id: Uuid) -> Result<Option<DataKeyRow>> {
        let client = self.client().await?;
        let stmt = client
            .prepare_cached(
                "SELECT patient_id, dek_version, kek_version, wrapped FROM data_keys WHERE patient_id = $1",
            )
            .await
            .map_err(pg_error)?;
        let row = client
            .query_opt(&stmt, &[&patient_id])
            .await
            .map_err(pg_error)?;
        Ok(row.map(|row| DataKeyRow {
            patient_id: row.get(0),
            dek_version: row.get(1),
            kek_version: row.get(2),
            wrapped: row.get(3),
        }))
    }

    async fn get_record(&self, id: Uuid) -> Result<Option<RecordRow>> {
        let client = self.client().await?;
        let stmt = client
            .prepare_cached(&format!(
                "SELECT {RECORD_COLUMNS} FROM records WHERE id = $1"
            ))
            .await
            .map_err(pg_error)?;
        let row = client.query_opt(&stmt, &[&id]).await.map_err(pg_error)?;
        Ok(row.as_ref().map(record_row))
    }

    async fn list_records(
        &self,
        patient_id: Uuid,
        after: Option<Uuid>,
        limit: usize,
    ) -> Result<Vec<RecordRow>> {
        let after = after.unwrap_or(Uuid::nil());
        let limit = i64::try_from(limit).map_err(|_| Error::invalid("limit is too large"))?;
        let client = self.client().await?;
        let stmt = client
            .prepare_cached(&format!(
                "SELECT {RECORD_COLUMNS} FROM records WHERE patient_id = $1 AND id > $2 ORDER BY id LIMIT $3"
            ))
            .await
            .map_err(pg_error)?;
        let rows = client
            .query(&stmt, &[&patient_id, &after, &limit])
            .await
            .map_err(pg_error)?;
        Ok(rows.iter().map(record_row).collect())
    }

    async fn list_disclosures(
        &self,
        patient_id: Uuid,
        since: Option<DateTime<Utc>>,
        after: Option<Uuid>,
        limit: usize,
    ) -> Result<Vec<DisclosureRow>> {
        self.disclosures_of(patient_id, since, after, limit).await
    }
}
