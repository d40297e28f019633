//! [`SqliteStore`]: the embedded backend (bundled SQLite, WAL).
//!
//! One writer connection (SQLite allows one writer at a time; queuing writers
//! here avoids busy-waiting inside SQLite) and a pool of read-only readers,
//! which WAL lets run beside the writer. All SQL runs on Tokio's blocking pool.

mod audit;
mod audit_index;
mod change;
mod disclosures;
mod external;
mod identity;
mod pool;
mod service;

use std::fs::OpenOptions;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use rusqlite::types::{ToSqlOutput, ValueRef};
use rusqlite::{Connection, ErrorCode, OptionalExtension, Row, TransactionBehavior, params};
use uuid::Uuid;

pub(crate) use self::audit_index::index_path as audit_index_path;
use self::pool::{Opener, Pool};
use super::migrations::pending;
use super::{Store, patient_index_column};
use crate::crypto::{BlindIndex, IndexField};
use crate::error::{Error, Result};
use crate::model::{Change, DataKeyRow, DisclosureRow, PatientRow, RecordRow};
use crate::store::{SqliteSynchronous, StoreConfig};

const BACKEND: &str = "sqlite";

/// The embedded SQLite backend.
#[derive(Debug)]
pub struct SqliteStore {
    path: PathBuf,
    writer: Pool,
    readers: Pool,
    /// One connection that fills the audit index database and checkpoints
    /// the store's WAL, beside the writer.
    indexer: Pool,
}

impl SqliteStore {
    /// Opens (creating if needed, with mode 0600) the database that
    /// `settings` name (under `data_dir` unless `sqlite_path` is set) and
    /// applies pending migrations.
    ///
    /// # Errors
    /// [`Error::Backend`] when the file cannot be opened or migrated.
    pub async fn open(settings: &StoreConfig, data_dir: &std::path::Path) -> Result<SqliteStore> {
        Self::open_path(
            &settings.sqlite_file(data_dir),
            settings.pool_size,
            settings.sqlite_synchronous,
        )
        .await
    }

    /// Opens the database at `path` with `readers` reader connections.
    ///
    /// # Errors
    /// [`Error::Backend`] when the file cannot be opened or migrated.
    pub async fn open_path(
        path: &Path,
        readers: usize,
        synchronous: SqliteSynchronous,
    ) -> Result<SqliteStore> {
        create_private_file(path)?;
        let synchronous = match synchronous {
            SqliteSynchronous::Full => "FULL",
            SqliteSynchronous::Normal => "NORMAL",
        };
        let common =
            "PRAGMA busy_timeout = 5000; PRAGMA foreign_keys = ON; PRAGMA secure_delete = ON;";
        let index = audit_index::index_path(path);
        create_private_file(&index)?;
        // The writer's own checkpoints are a backstop (16 MiB of WAL): the
        // indexer checkpoints passively every round, outside the commits.
        let writer = Pool::new(
            Opener {
                path: path.to_path_buf(),
                read_only: false,
                pragmas: format!(
                    "PRAGMA journal_mode = WAL; PRAGMA synchronous = {synchronous}; \
                     PRAGMA wal_autocheckpoint = 4096; {common}"
                ),
                attach: None,
            },
            1,
        );
        let indexer = Pool::new(
            Opener {
                path: path.to_path_buf(),
                read_only: false,
                pragmas: format!("PRAGMA synchronous = {synchronous}; {common}"),
                attach: Some(index.clone()),
            },
            1,
        );
        let store_readers = Pool::new(
            Opener {
                path: path.to_path_buf(),
                read_only: true,
                pragmas: format!("{common} PRAGMA query_only = ON;"),
                attach: Some(index),
            },
            readers.max(1),
        );
        writer.run(migrate).await?;
        // The index database's tables exist before the readers attach it,
        // and readers open once the schema exists (WAL mode is set by then).
        indexer.open_all().await?;
        store_readers.open_all().await?;
        Ok(SqliteStore {
            path: path.to_path_buf(),
            writer,
            readers: store_readers,
            indexer,
        })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// Creates the database file (and its directory) readable by its owner only;
/// SQLite gives the WAL and shared-memory files the same mode.
fn create_private_file(path: &Path) -> Result<()> {
    let io =
        |e: std::io::Error| Error::backend(BACKEND, format!("cannot create {}", path.display()), e);
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(parent)
            .map_err(io)?;
    }
    match OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
    {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(io(e)),
    }
}

fn migrate(conn: &mut Connection) -> Result<()> {
    conn.execute_batch(
        "CREATE TABLE IF NOT EXISTS schema_migrations (
            version    INTEGER PRIMARY KEY,
            name       TEXT NOT NULL,
            checksum   TEXT NOT NULL,
            applied_at INTEGER NOT NULL
        ) STRICT;",
    )
    .map_err(sqlite_error)?;
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(sqlite_error)?;
    let applied = {
        let mut stmt = tx
            .prepare("SELECT version, checksum FROM schema_migrations")
            .map_err(sqlite_error)?;
        stmt.query_map([], |row| Ok((row.get(0)?, row.get(1)?)))
            .map_err(sqlite_error)?
            .collect::<rusqlite::Result<Vec<(i64, String)>>>()
            .map_err(sqlite_error)?
    };
    for migration in pending(BACKEND, &applied)? {
        tx.execute_batch(migration.sql).map_err(sqlite_error)?;
        tx.execute(
            "INSERT INTO schema_migrations (version, name, checksum, applied_at) VALUES (?1, ?2, ?3, ?4)",
            params![
                migration.version,
                migration.name,
                migration.checksum(),
                micros(Utc::now())
            ],
        )
        .map_err(sqlite_error)?;
        tracing::info!(
            backend = BACKEND,
            version = migration.version,
            name = migration.name,
            "applied migration"
        );
    }
    tx.commit().map_err(sqlite_error)
}

/// Maps a rusqlite error to ours: busy and full disks are `Unavailable`
/// (retrying later may work), everything else a backend error. The message
/// carries no SQL and no parameters.
pub(super) fn sqlite_error(err: rusqlite::Error) -> Error {
    match err.sqlite_error_code() {
        Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked) => Error::Unavailable {
            message: "the database is busy".into(),
        },
        Some(ErrorCode::DiskFull) => Error::Unavailable {
            message: "the database disk is full".into(),
        },
        _ => Error::backend(BACKEND, "database operation failed", err),
    }
}

/// Maps a unique-constraint violation to `AlreadyExists { what }`.
fn unique_or(what: &'static str) -> impl FnOnce(rusqlite::Error) -> Error {
    move |err| match err.sqlite_error_code() {
        Some(ErrorCode::ConstraintViolation) => Error::AlreadyExists { what },
        _ => sqlite_error(err),
    }
}

/// `id` bound as the 16-byte blob rusqlite stores a [`Uuid`] as, borrowed:
/// binding the `Uuid` itself copies it into a new allocation first, which
/// the statements run on every request (the audit trail's inserts, five ids
/// an event, its index, and the writes of patients and records) paid.
fn uuid_blob(id: &Uuid) -> ToSqlOutput<'_> {
    ToSqlOutput::Borrowed(ValueRef::Blob(id.as_bytes()))
}

fn micros(t: DateTime<Utc>) -> i64 {
    t.timestamp_micros()
}

fn from_micros(us: i64) -> rusqlite::Result<DateTime<Utc>> {
    DateTime::from_timestamp_micros(us).ok_or_else(|| {
        rusqlite::Error::FromSqlConversionFailure(
            0,
            rusqlite::types::Type::Integer,
            "timestamp out of range".into(),
        )
    })
}

fn index(bytes: Option<Vec<u8>>) -> rusqlite::Result<Option<BlindIndex>> {
    bytes
        .map(|b| {
            BlindIndex::from_slice(&b).map_err(|_| {
                rusqlite::Error::FromSqlConversionFailure(
                    0,
                    rusqlite::types::Type::Blob,
                    "bad index".into(),
                )
            })
        })
        .transpose()
}

fn required_index(bytes: Option<Vec<u8>>) -> rusqlite::Result<BlindIndex> {
    index(bytes)?.ok_or(rusqlite::Error::InvalidColumnType(
        0,
        "index".into(),
        rusqlite::types::Type::Null,
    ))
}

const PATIENT_COLUMNS: &str =
    "id, profile, mrn_index, email_index, name_dob_index, version, created_at, updated_at";

fn patient_row(row: &Row<'_>) -> rusqlite::Result<PatientRow> {
    Ok(PatientRow {
        id: row.get(0)?,
        profile: row.get(1)?,
        mrn_index: required_index(row.get(2)?)?,
        email_index: index(row.get(3)?)?,
        name_dob_index: required_index(row.get(4)?)?,
        version: row.get(5)?,
        created_at: from_micros(row.get(6)?)?,
        updated_at: from_micros(row.get(7)?)?,
    })
}

const RECORD_COLUMNS: &str =
    "id, patient_id, kind, body, version, created_by, created_at, updated_at";

fn record_row(row: &Row<'_>) -> rusqlite::Result<RecordRow> {
    Ok(RecordRow {
        id: row.get(0)?,
        patient_id: row.get(1)?,
        kind: row.get(2)?,
        body: row.get(3)?,
        version: row.get(4)?,
        created_by: row.get(5)?,
        created_at: from_micros(row.get(6)?)?,
        updated_at: from_micros(row.get(7)?)?,
    })
}

/// After a conditional update matched no row: a conflict when the row
/// exists with another version, otherwise not found.
fn conflict_or_missing(
    conn: &Connection,
    sql: &str,
    id: Uuid,
    what: &'static str,
    expected: i64,
) -> Result<()> {
    let current: Option<i64> = conn
        .query_row(sql, [id], |row| row.get(0))
        .optional()
        .map_err(sqlite_error)?;
    match current {
        Some(current) => Err(Error::Conflict {
            what,
            expected,
            current,
        }),
        None => Err(Error::NotFound { what }),
    }
}

#[async_trait]
impl Store for SqliteStore {
    fn backend(&self) -> &'static str {
        BACKEND
    }

    fn pool_usage(&self) -> (usize, usize) {
        let (readers_used, readers) = self.readers.usage();
        let (writer_used, writer) = self.writer.usage();
        (readers_used + writer_used, readers + writer)
    }

    async fn outside_changes(&self) -> Result<Option<i64>> {
        // On the writer: its own commits (every write of this process) do
        // not move the counter; the CLI's, from another process, do.
        self.writer
            .run_point(|conn| {
                conn.query_row("PRAGMA data_version", [], |r| r.get(0))
                    .map(Some)
                    .map_err(sqlite_error)
            })
            .await
    }

    async fn ping(&self) -> Result<()> {
        self.readers
            .run(|conn| {
                conn.query_row("SELECT count(*) FROM schema_migrations", [], |_| Ok(()))
                    .map_err(sqlite_error)
            })
            .await
    }

    async fn schema_version(&self) -> Result<i64> {
        self.readers
            .run(|conn| {
                conn.query_row(
                    "SELECT coalesce(max(version), 0) FROM schema_migrations",
                    [],
                    |row| row.get(0),
                )
                .map_err(sqlite_error)
            })
            .await
    }

    async fn get_meta(&self, key: &str) -> Result<Option<String>> {
        let key = key.to_string();
        self.readers
            .run(move |conn| {
                conn.query_row("SELECT value FROM meta WHERE key = ?1", [key], |row| {
                    row.get(0)
                })
                .optional()
                .map_err(sqlite_error)
            })
            .await
    }

    async fn set_meta_if_absent(&self, key: &str, value: &str) -> Result<String> {
        let (key, value) = (key.to_string(), value.to_string());
        self.writer
            .run(move |conn| {
                let tx = conn
                    .transaction_with_behavior(TransactionBehavior::Immediate)
                    .map_err(sqlite_error)?;
                tx.execute(
                    "INSERT INTO meta (key, value) VALUES (?1, ?2) ON CONFLICT (key) DO NOTHING",
                    params![key, value],
                )
                .map_err(sqlite_error)?;
                let stored = tx
                    .query_row("SELECT value FROM meta WHERE key = ?1", [&key], |row| {
                        row.get(0)
                    })
                    .map_err(sqlite_error)?;
                tx.commit().map_err(sqlite_error)?;
                Ok(stored)
            })
            .await
    }

    async fn put_meta(&self, key: &str, value: &str) -> Result<()> {
        let (key, value) = (key.to_string(), value.to_string());
        self.writer
            .run(move |conn| {
                conn.execute(
                    "INSERT INTO meta (key, value) VALUES (?1, ?2)
                     ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                    params![key, value],
                )
                .map(|_| ())
                .map_err(sqlite_error)
            })
            .await
    }

    async fn take_meta(&self, key: &str) -> Result<Option<String>> {
        let key = key.to_string();
        self.writer
            .run(move |conn| {
                conn.query_row(
                    "DELETE FROM meta WHERE key = ?1 RETURNING value",
                    [key],
                    |row| row.get(0),
                )
                .optional()
                .map_err(sqlite_error)
            })
            .await
    }

    async fn data_keys_by_kek(&self) -> Result<Vec<(i32, u64)>> {
        self.readers
            .run(|conn| {
                let mut stmt = conn
                    .prepare("SELECT kek_version, count(*) FROM data_keys GROUP BY kek_version ORDER BY kek_version")
                    .map_err(sqlite_error)?;
                stmt.query_map([], |row| Ok((row.get::<_, i32>(0)?, row.get::<_, i64>(1)?)))
                    .map_err(sqlite_error)?
                    .map(|r| r.map(|(v, n)| (v, u64::try_from(n).unwrap_or(0))))
                    .collect::<rusqlite::Result<Vec<_>>>()
                    .map_err(sqlite_error)
            })
            .await
    }

    async fn data_keys_below(
        &self,
        kek_version: i32,
        after: Option<Uuid>,
        limit: usize,
    ) -> Result<Vec<DataKeyRow>> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let after = after.unwrap_or(Uuid::nil());
        self.readers
            .run(move |conn| {
                let mut stmt = conn
                    .prepare(
                        "SELECT patient_id, dek_version, kek_version, wrapped FROM data_keys
                                                  WHERE kek_version < ?1 AND patient_id > ?3 ORDER BY patient_id LIMIT ?2",
                    )
                    .map_err(sqlite_error)?;
                                stmt.query_map(params![kek_version, limit, after], |row| {
                    Ok(DataKeyRow {
                        patient_id: row.get(0)?,
                        dek_version: row.get(1)?,
                        kek_version: row.get(2)?,
                        wrapped: row.get(3)?,
                    })
                })
                .map_err(sqlite_error)?
                .collect::<rusqlite::Result<Vec<_>>>()
                .map_err(sqlite_error)
            })
            .await
    }

    async fn rewrap_data_key(&self, key: &DataKeyRow, old_kek_version: i32) -> Result<bool> {
        let key = key.clone();
        self.writer
            .run(move |conn| {
                conn.execute(
                    "UPDATE data_keys SET kek_version = ?1, wrapped = ?2 WHERE patient_id = ?3 AND kek_version = ?4",
                    params![key.kek_version, key.wrapped, key.patient_id, old_kek_version],
                )
                .map(|n| n == 1)
                .map_err(sqlite_error)
            })
            .await
    }

    async fn count_data_keys(&self) -> Result<u64> {
        self.readers
            .run(|conn| {
                let count: i64 = conn
                    .query_row("SELECT count(*) FROM data_keys", [], |row| row.get(0))
                    .map_err(sqlite_error)?;
                u64::try_from(count).map_err(|_| Error::internal("negative count"))
            })
            .await
    }

    async fn apply(&self, change: Change) -> Result<()> {
        self.writer
            .run(move |conn| {
                let tx = conn
                    .transaction_with_behavior(TransactionBehavior::Immediate)
                    .map_err(sqlite_error)?;
                change::apply_change(&tx, &change)?;
                tx.commit().map_err(sqlite_error)
            })
            .await
    }

    async fn get_patient(&self, id: Uuid) -> Result<Option<PatientRow>> {
        self.readers
            .run_point(move |conn| {
                conn.prepare_cached(&format!(
                    "SELECT {PATIENT_COLUMNS} FROM patients WHERE id = ?1 AND erased_at IS NULL"
                ))
                .and_then(|mut stmt| stmt.query_row([id], patient_row).optional())
                .map_err(sqlite_error)
            })
            .await
    }

    async fn find_patients(&self, field: IndexField, index: &BlindIndex) -> Result<Vec<Uuid>> {
        let column = patient_index_column(field)?;
        let index = index.0;
        self.readers
            .run(move |conn| {
                let mut stmt = conn
                    .prepare_cached(&format!(
                        "SELECT id FROM patients WHERE {column} = ?1 AND erased_at IS NULL ORDER BY id LIMIT 1000"
                    ))
                    .map_err(sqlite_error)?;
                stmt.query_map([index.as_slice()], |row| row.get(0))
                    .map_err(sqlite_error)?
                    .collect::<rusqlite::Result<Vec<Uuid>>>()
                    .map_err(sqlite_error)
            })
            .await
    }

    async fn get_data_key(&self, patient_id: Uuid) -> Result<Option<DataKeyRow>> {
        self.readers
            .run_point(move |conn| {
                conn.prepare_cached(
                    "SELECT patient_id, dek_version, kek_version, wrapped FROM data_keys WHERE patient_id = ?1",
                )
                .and_then(|mut stmt| {
                    stmt.query_row([patient_id], |row| {
                        Ok(DataKeyRow {
                            patient_id: row.get(0)?,
                            dek_version: row.get(1)?,
                            kek_version: row.get(2)?,
                            wrapped: row.get(3)?,
                        })
                    })
                    .optional()
                })
                .map_err(sqlite_error)
            })
            .await
    }

    async fn get_record(&self, id: Uuid) -> Result<Option<RecordRow>> {
        self.readers
            .run_point(move |conn| {
                conn.prepare_cached(&format!(
                    "SELECT {RECORD_COLUMNS} FROM records WHERE id = ?1"
                ))
                .and_then(|mut stmt| stmt.query_row([id], record_row).optional())
                .map_err(sqlite_error)
            })
            .await
    }

    async fn list_records(
        &self,
        patient_id: Uuid,
        after: Option<Uuid>,
        limit: usize,
    ) -> Result<Vec<RecordRow>> {
        let after = after.unwrap_or(Uuid::nil());
        let limit = i64::try_from(limit).map_err(|_| Error::invalid("limit is too large"))?;
        self.readers
            .run(move |conn| {
                let mut stmt = conn
                    .prepare_cached(&format!(
                        "SELECT {RECORD_COLUMNS} FROM records WHERE patient_id = ?1 AND id > ?2 ORDER BY id LIMIT ?3"
                    ))
                    .map_err(sqlite_error)?;
                stmt.query_map(params![patient_id, after, limit], record_row)
                    .map_err(sqlite_error)?
                    .collect::<rusqlite::Result<Vec<_>>>()
                    .map_err(sqlite_error)
            })
            .await
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
