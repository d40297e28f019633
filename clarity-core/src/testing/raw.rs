//! Direct access to stored rows, bypassing every check: what an attacker with
//! database access (or a surviving copy of the database) can do. Tamper tests
//! use it; it panics on failure because it only runs in tests.

use std::sync::Arc;

use async_trait::async_trait;
use uuid::Uuid;

use crate::model::RecordRow;
use crate::store::{MemoryStore, Store};

/// Direct reads and writes of stored ciphertext.
#[async_trait]
pub trait RawAccess: Send + Sync {
    /// The stored (sealed) body of a record.
    async fn record_body(&self, id: Uuid) -> Vec<u8>;
    /// Overwrites the stored body of a record.
    async fn set_record_body(&self, id: Uuid, body: Vec<u8>);
    /// Overwrites the stored version of a record, leaving its body alone.
    async fn set_record_version(&self, id: Uuid, version: i64);
    /// The stored (sealed) profile of a patient.
    async fn patient_profile(&self, id: Uuid) -> Vec<u8>;
    /// Overwrites the stored profile of a patient.
    async fn set_patient_profile(&self, id: Uuid, profile: Vec<u8>);
    /// Puts a record row back as it was (a row that survived somewhere).
    async fn insert_record_row(&self, row: &RecordRow);
    /// Runs literal SQL (tamper tests), returning the rows changed.
    ///
    /// # Panics
    /// On backends without SQL (memory), and when the SQL fails.
    async fn execute_sql(&self, sql: &str) -> u64 {
        panic!("this backend has no SQL to run {sql:?} on")
    }
    /// `sqlite` or `postgres`: which SQL dialect [`RawAccess::execute_sql`] speaks.
    fn dialect(&self) -> &'static str {
        "none"
    }
}

/// Raw access to a backend whose reads an instance caches: a write behind
/// the cache's back, followed (as an operator does with
/// `Clarity::clear_cache`) by emptying the cache, so tamper tests see the
/// tampered rows through the cached layers too.
pub(super) struct BehindCache {
    pub(super) inner: Box<dyn RawAccess>,
    pub(super) cache: Arc<crate::cache::Invalidator>,
}

impl BehindCache {
    async fn cleared(&self) {
        self.cache.invalidate(crate::model::Invalidation::All).await;
    }
}

// Forwards every method, defaulted ones included.
#[deny(clippy::missing_trait_methods)]
#[async_trait]
impl RawAccess for BehindCache {
    async fn record_body(&self, id: Uuid) -> Vec<u8> {
        self.inner.record_body(id).await
    }
    async fn set_record_body(&self, id: Uuid, body: Vec<u8>) {
        self.inner.set_record_body(id, body).await;
        self.cleared().await;
    }
    async fn set_record_version(&self, id: Uuid, version: i64) {
        self.inner.set_record_version(id, version).await;
        self.cleared().await;
    }
    async fn patient_profile(&self, id: Uuid) -> Vec<u8> {
        self.inner.patient_profile(id).await
    }
    async fn set_patient_profile(&self, id: Uuid, profile: Vec<u8>) {
        self.inner.set_patient_profile(id, profile).await;
        self.cleared().await;
    }
    async fn insert_record_row(&self, row: &RecordRow) {
        self.inner.insert_record_row(row).await;
        self.cleared().await;
    }
    async fn execute_sql(&self, sql: &str) -> u64 {
        let changed = self.inner.execute_sql(sql).await;
        self.cleared().await;
        changed
    }
    fn dialect(&self) -> &'static str {
        self.inner.dialect()
    }
}

pub(super) struct MemoryRaw(pub(super) Arc<MemoryStore>);

#[async_trait]
impl RawAccess for MemoryRaw {
    async fn record_body(&self, id: Uuid) -> Vec<u8> {
        self.0
            .get_record(id)
            .await
            .expect("read")
            .expect("record")
            .body
    }
    async fn set_record_body(&self, id: Uuid, body: Vec<u8>) {
        self.0
            .raw_edit(|t| t.records.get_mut(&id).expect("record").body = body);
    }
    async fn set_record_version(&self, id: Uuid, version: i64) {
        self.0
            .raw_edit(|t| t.records.get_mut(&id).expect("record").version = version);
    }
    async fn patient_profile(&self, id: Uuid) -> Vec<u8> {
        self.0
            .get_patient(id)
            .await
            .expect("read")
            .expect("patient")
            .profile
    }
    async fn set_patient_profile(&self, id: Uuid, profile: Vec<u8>) {
        self.0
            .raw_edit(|t| t.patients.get_mut(&id).expect("patient").profile = profile);
    }
    async fn insert_record_row(&self, row: &RecordRow) {
        let row = row.clone();
        self.0.raw_edit(|t| {
            t.records.insert(row.id, row);
        });
    }
}

#[cfg(feature = "sqlite")]
pub(super) struct SqliteRaw(pub(super) std::path::PathBuf);

#[cfg(feature = "sqlite")]
impl SqliteRaw {
    fn exec(&self, sql: &str, params: impl rusqlite::Params) {
        let conn = rusqlite::Connection::open(&self.0).expect("open sqlite");
        conn.busy_timeout(std::time::Duration::from_secs(5))
            .expect("busy timeout");
        let changed = conn.execute(sql, params).expect("raw sql");
        assert_eq!(changed, 1, "raw sql changed {changed} rows");
    }

    fn blob(&self, sql: &str, id: Uuid) -> Vec<u8> {
        let conn = rusqlite::Connection::open(&self.0).expect("open sqlite");
        conn.query_row(sql, [id], |row| row.get(0))
            .expect("raw read")
    }
}

#[cfg(feature = "sqlite")]
#[async_trait]
impl RawAccess for SqliteRaw {
    async fn execute_sql(&self, sql: &str) -> u64 {
        let conn = rusqlite::Connection::open(&self.0).expect("open sqlite");
        conn.busy_timeout(std::time::Duration::from_secs(5))
            .expect("busy timeout");
        conn.execute(sql, []).expect("raw sql") as u64
    }
    fn dialect(&self) -> &'static str {
        "sqlite"
    }
    async fn record_body(&self, id: Uuid) -> Vec<u8> {
        self.blob("SELECT body FROM records WHERE id = ?1", id)
    }
    async fn set_record_body(&self, id: Uuid, body: Vec<u8>) {
        self.exec(
            "UPDATE records SET body = ?1 WHERE id = ?2",
            rusqlite::params![body, id],
        );
    }
    async fn set_record_version(&self, id: Uuid, version: i64) {
        self.exec(
            "UPDATE records SET version = ?1 WHERE id = ?2",
            rusqlite::params![version, id],
        );
    }
    async fn patient_profile(&self, id: Uuid) -> Vec<u8> {
        self.blob("SELECT profile FROM patients WHERE id = ?1", id)
    }
    async fn set_patient_profile(&self, id: Uuid, profile: Vec<u8>) {
        self.exec(
            "UPDATE patients SET profile = ?1 WHERE id = ?2",
            rusqlite::params![profile, id],
        );
    }
    async fn insert_record_row(&self, row: &RecordRow) {
        self.exec(
            "INSERT INTO records (id, patient_id, kind, body, version, created_by, created_at, updated_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            rusqlite::params![
                row.id,
                row.patient_id,
                row.kind,
                row.body,
                row.version,
                row.created_by,
                row.created_at.timestamp_micros(),
                row.updated_at.timestamp_micros()
            ],
        );
    }
}

#[cfg(feature = "postgres")]
pub(super) struct PostgresRaw {
    pub(super) url: String,
    pub(super) schema: String,
}

/// A direct connection to `url` with `schema` first on the search path.
#[cfg(feature = "postgres")]
pub(crate) async fn pg_connect(url: &str, schema: Option<&str>) -> tokio_postgres::Client {
    let mut config: tokio_postgres::Config = url.parse().expect("postgres url");
    if let Some(schema) = schema {
        config.options(format!("-c search_path={schema}"));
    }
    let (client, connection) = config
        .connect(tokio_postgres::NoTls)
        .await
        .expect("connect to postgres");
    tokio::spawn(async move {
        let _ = connection.await;
    });
    client
}

#[cfg(feature = "postgres")]
impl PostgresRaw {
    async fn exec(&self, sql: &str, params: &[&(dyn tokio_postgres::types::ToSql + Sync)]) {
        let client = pg_connect(&self.url, Some(&self.schema)).await;
        let changed = client.execute(sql, params).await.expect("raw sql");
        assert_eq!(changed, 1, "raw sql changed {changed} rows");
    }

    async fn blob(&self, sql: &str, id: Uuid) -> Vec<u8> {
        let client = pg_connect(&self.url, Some(&self.schema)).await;
        client
            .query_one(sql, &[&id])
            .await
            .expect("raw read")
            .get(0)
    }
}

#[cfg(feature = "postgres")]
#[async_trait]
impl RawAccess for PostgresRaw {
    async fn execute_sql(&self, sql: &str) -> u64 {
        let client = pg_connect(&self.url, Some(&self.schema)).await;
        client.execute(sql, &[]).await.expect("raw sql")
    }
    fn dialect(&self) -> &'static str {
        "postgres"
    }
    async fn record_body(&self, id: Uuid) -> Vec<u8> {
        self.blob("SELECT body FROM records WHERE id = $1", id)
            .await
    }
    async fn set_record_body(&self, id: Uuid, body: Vec<u8>) {
        self.exec("UPDATE records SET body = $1 WHERE id = $2", &[&body, &id])
            .await;
    }
    async fn set_record_version(&self, id: Uuid, version: i64) {
        self.exec(
            "UPDATE records SET version = $1 WHERE id = $2",
            &[&version, &id],
        )
        .await;
    }
    async fn patient_profile(&self, id: Uuid) -> Vec<u8> {
        self.blob("SELECT profile FROM patients WHERE id = $1", id)
            .await
    }
    async fn set_patient_profile(&self, id: Uuid, profile: Vec<u8>) {
        self.exec(
            "UPDATE patients SET profile = $1 WHERE id = $2",
            &[&profile, &id],
        )
        .await;
    }
    async fn insert_record_row(&self, row: &RecordRow) {
        self.exec(
            "INSERT INTO records (id, patient_id, kind, body, version, created_by, created_at, updated_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
            &[
                &row.id,
                &row.patient_id,
                &row.kind,
                &row.body,
                &row.version,
                &row.created_by,
                &row.created_at,
                &row.updated_at,
            ],
        )
        .await;
    }
}

/// Drops a test's PostgreSQL schema when the harness goes away (a build
/// without PostgreSQL never makes one).
#[cfg_attr(not(feature = "postgres"), allow(dead_code))]
pub(super) struct SchemaGuard {
    pub(super) url: String,
    pub(super) schema: String,
}

#[cfg(feature = "postgres")]
impl Drop for SchemaGuard {
    fn drop(&mut self) {
        let (url, schema) = (self.url.clone(), self.schema.clone());
        // Drop runs inside the test's runtime; a separate thread with its own
        // runtime can block on the cleanup.
        let cleanup = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            runtime.block_on(drop_schema(&url, &schema));
        });
        let _ = cleanup.join();
    }
}

/// Drops `schema` at the end of a test. The test's runtime is blocked on
/// this cleanup, so a session of its own caught inside a transaction (a
/// background task's, say) can never finish it, and `DROP SCHEMA` would wait
/// for its locks for ever: the sessions holding locks in the schema are
/// ended first. A lock taken in between fails the drop after `lock_timeout`
/// and the next attempt ends that session too.
#[cfg(feature = "postgres")]
async fn drop_schema(url: &str, schema: &str) {
    let client = pg_connect(url, None).await;
    client
        .batch_execute("SET lock_timeout = '5s'")
        .await
        .expect("set lock_timeout");
    let mut attempts = 0;
    loop {
        attempts += 1;
        client
            .execute(
                "SELECT pg_terminate_backend(pid) FROM (
                     SELECT DISTINCT l.pid FROM pg_locks l
                     JOIN pg_class c ON c.oid = l.relation
                     JOIN pg_namespace n ON n.oid = c.relnamespace
                     WHERE n.nspname = $1 AND l.pid <> pg_backend_pid()) holders",
                &[&schema],
            )
            .await
            .expect("end the sessions holding the test schema");
        match client
            .batch_execute(&format!("DROP SCHEMA IF EXISTS {schema} CASCADE"))
            .await
        {
            Ok(()) => return,
            Err(e) if attempts >= 5 => panic!("drop test schema {schema}: {e}"),
            Err(_) => {}
        }
    }
}

#[cfg(all(test, feature = "postgres"))]
mod tests {
    use super::*;

    // A test that ends while a session of its own is still inside a
    // transaction on its schema (as a background task can be) must not hang
    // dropping the schema: the drop used to wait for that transaction, which
    // could never end while the test's runtime waited for the drop.
    #[tokio::test]
    async fn a_schema_held_by_an_open_transaction_is_still_dropped() {
        let Some(url) = super::super::service_var(super::super::POSTGRES_URL_VAR, "PostgreSQL")
        else {
            return;
        };
        let schema = format!("t_{}", Uuid::new_v4().simple());
        let admin = pg_connect(&url, None).await;
        admin
            .batch_execute(&format!(
                "CREATE SCHEMA {schema}; CREATE TABLE {schema}.t (n int)"
            ))
            .await
            .expect("schema");
        let holder = pg_connect(&url, Some(&schema)).await;
        holder
            .batch_execute("BEGIN; SELECT count(*) FROM t")
            .await
            .expect("open transaction");
        let guard = SchemaGuard {
            url: url.clone(),
            schema: schema.clone(),
        };
        let dropped = tokio::time::timeout(
            std::time::Duration::from_secs(60),
            tokio::task::spawn_blocking(move || drop(guard)),
        )
        .await;
        assert!(
            dropped.is_ok(),
            "the schema drop waited on the open transaction"
        );
        let left = admin
            .query_one(
                "SELECT count(*) FROM pg_namespace WHERE nspname = $1",
                &[&schema],
            )
            .await
            .expect("query");
        assert_eq!(left.get::<_, i64>(0), 0, "the schema is gone");
        assert!(
            holder.batch_execute("COMMIT").await.is_err(),
            "the holding session was ended"
        );
    }
}
