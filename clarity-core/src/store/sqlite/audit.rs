//! [`AuditStore`] on SQLite.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use rusqlite::{Connection, Row, TransactionBehavior, params};
use uuid::Uuid;

use super::change::apply_in_savepoint;
use super::{SqliteStore, from_micros, micros, sqlite_error, uuid_blob};
use crate::audit::{AuditBatch, AuditStore, StoredBatch};
use crate::audit::{AuditEvent, AuditFilter, Checkpoint};
use crate::error::Result;
use crate::store::{Dialect, audit_query_sql, purge_condition};

const COLUMNS: &str = "id, chain_id, seq, recorded, event_type, subtype, action, outcome, purpose, \
     actor_id, actor_roles, client_address, patient_id, entity_id, query_hash, reason, request_id, \
     prev_mac, mac, actor_issuer, actor_subject";

fn event_row(row: &Row<'_>) -> rusqlite::Result<AuditEvent> {
    Ok(AuditEvent {
        id: row.get(0)?,
        chain_id: row.get(1)?,
        seq: row.get(2)?,
        recorded: from_micros(row.get(3)?)?,
        event_type: row.get(4)?,
        subtype: row.get(5)?,
        action: row.get(6)?,
        outcome: row.get(7)?,
        purpose: row.get(8)?,
        actor_id: row.get(9)?,
        actor_roles: row.get(10)?,
        client_address: row.get(11)?,
        patient_id: row.get(12)?,
        entity_id: row.get(13)?,
        query_hash: row.get(14)?,
        reason: row.get(15)?,
        request_id: row.get(16)?,
        prev_mac: row.get(17)?,
        mac: row.get(18)?,
        actor_issuer: row.get(19)?,
        actor_subject: row.get(20)?,
    })
}

fn checkpoint_row(row: &Row<'_>) -> rusqlite::Result<Checkpoint> {
    Ok(Checkpoint {
        chain_id: row.get(0)?,
        seq: row.get(1)?,
        mac: row.get(2)?,
        signed_at: from_micros(row.get(3)?)?,
        signature: row.get(4)?,
    })
}

/// Inserts `events` and `checkpoint` inside the caller's transaction.
fn insert_events(
    conn: &Connection,
    events: &[AuditEvent],
    checkpoint: Option<&Checkpoint>,
) -> Result<()> {
    let mut insert = conn
        .prepare_cached(&format!(
            "INSERT INTO audit_events ({COLUMNS}) VALUES
             (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19, ?20, ?21)"
        ))
        .map_err(sqlite_error)?;
    for e in events {
        insert
            .execute(params![
                uuid_blob(&e.id),
                uuid_blob(&e.chain_id),
                e.seq,
                micros(e.recorded),
                e.event_type,
                e.subtype,
                e.action,
                e.outcome,
                e.purpose,
                e.actor_id.as_ref().map(uuid_blob),
                e.actor_roles,
                e.client_address,
                e.patient_id.as_ref().map(uuid_blob),
                e.entity_id.as_ref().map(uuid_blob),
                e.query_hash,
                e.reason,
                e.request_id,
                e.prev_mac,
                e.mac,
                e.actor_issuer,
                e.actor_subject
            ])
            .map_err(sqlite_error)?;
    }
    if let Some(cp) = checkpoint {
        conn.execute(
            "INSERT INTO audit_checkpoints (chain_id, seq, mac, signed_at, signature) VALUES (?1, ?2, ?3, ?4, ?5)",
            params![uuid_blob(&cp.chain_id), cp.seq, cp.mac, micros(cp.signed_at), cp.signature],
        )
        .map_err(sqlite_error)?;
    }
    Ok(())
}

/// The audit query for `filter` in SQLite's placeholder syntax (see
/// [`audit_query_sql`]).
fn query_sql(filter: &AuditFilter) -> String {
    audit_query_sql(COLUMNS, filter, Dialect::Sqlite)
}

#[async_trait]
impl AuditStore for SqliteStore {
    async fn append_audit(
        &self,
        events: &[AuditEvent],
        checkpoint: Option<&Checkpoint>,
    ) -> Result<()> {
        let (events, checkpoint) = (events.to_vec(), checkpoint.cloned());
        self.writer
            .run(move |conn| {
                let tx = conn
                    .transaction_with_behavior(TransactionBehavior::Immediate)
                    .map_err(sqlite_error)?;
                insert_events(&tx, &events, checkpoint.as_ref())?;
                tx.commit().map_err(sqlite_error)
            })
            .await
    }

    async fn append_audit_batch(&self, batch: AuditBatch) -> Result<StoredBatch> {
        self.writer
            .run(move |conn| {
                let tx = conn
                    .transaction_with_behavior(TransactionBehavior::Immediate)
                    .map_err(sqlite_error)?;
                let outcomes: Vec<Result<()>> = batch
                    .changes
                    .iter()
                    .map(|change| match change {
                        Some(change) => apply_in_savepoint(&tx, change),
                        None => Ok(()),
                    })
                    .collect();
                let (events, checkpoint) = (batch.seal)(&outcomes);
                insert_events(&tx, &events, checkpoint.as_ref())?;
                tx.commit().map_err(sqlite_error)?;
                Ok(StoredBatch {
                    outcomes,
                    events,
                    checkpoint,
                })
            })
            .await
    }

    async fn audit_chains(&self) -> Result<Vec<Uuid>> {
        self.readers
            .run(|conn| {
                let mut stmt = conn
                    .prepare(crate::store::AUDIT_CHAINS_SQL)
                    .map_err(sqlite_error)?;
                stmt.query_map([], |r| r.get(0))
                    .map_err(sqlite_error)?
                    .collect::<rusqlite::Result<Vec<Uuid>>>()
                    .map_err(sqlite_error)
            })
            .await
    }

    async fn audit_chain_events(
        &self,
        chain: Uuid,
        after_seq: i64,
        limit: usize,
    ) -> Result<Vec<AuditEvent>> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.readers
            .run(move |conn| {
                let mut stmt = conn
                    .prepare_cached(&format!(
                        "SELECT {COLUMNS} FROM audit_events WHERE chain_id = ?1 AND seq > ?2 ORDER BY seq LIMIT ?3"
                    ))
                    .map_err(sqlite_error)?;
                stmt.query_map(params![chain, after_seq, limit], event_row)
                    .map_err(sqlite_error)?
                    .collect::<rusqlite::Result<Vec<_>>>()
                    .map_err(sqlite_error)
            })
            .await
    }

    async fn audit_checkpoints(&self, chain: Uuid) -> Result<Vec<Checkpoint>> {
        self.readers
            .run(move |conn| {
                let mut stmt = conn
                    .prepare_cached(
                        "SELECT chain_id, seq, mac, signed_at, signature FROM audit_checkpoints
                         WHERE chain_id = ?1 ORDER BY seq",
                    )
                    .map_err(sqlite_error)?;
                stmt.query_map([chain], checkpoint_row)
                    .map_err(sqlite_error)?
                    .collect::<rusqlite::Result<Vec<_>>>()
                    .map_err(sqlite_error)
            })
            .await
    }

    async fn query_audit(
        &self,
        filter: &AuditFilter,
        after: Option<Uuid>,
        limit: usize,
    ) -> Result<Vec<AuditEvent>> {
        let f = filter.clone();
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.readers
            .run(move |conn| {
                let mut stmt = conn.prepare_cached(&query_sql(&f)).map_err(sqlite_error)?;
                stmt.query_map(
                    params![
                        after.unwrap_or(Uuid::nil()),
                        f.patient_id,
                        f.actor_id,
                        f.subtype,
                        f.outcome,
                        f.from.map(micros),
                        f.to.map(micros),
                        limit
                    ],
                    event_row,
                )
                .map_err(sqlite_error)?
                .collect::<rusqlite::Result<Vec<_>>>()
                .map_err(sqlite_error)
            })
            .await
    }

    async fn purge_audit_before(&self, before: DateTime<Utc>) -> Result<u64> {
        let gone = self
            .writer
            .run(move |conn| {
                let tx = conn
                    .transaction_with_behavior(TransactionBehavior::Immediate)
                    .map_err(sqlite_error)?;
                let gone = {
                    let mut delete = tx
                        .prepare(&format!(
                            "DELETE FROM audit_events AS e WHERE {}
                             RETURNING id, patient_id, actor_id",
                            purge_condition("?1")
                        ))
                        .map_err(sqlite_error)?;
                    delete
                        .query_map([micros(before)], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
                        .map_err(sqlite_error)?
                        .collect::<rusqlite::Result<Vec<_>>>()
                        .map_err(sqlite_error)?
                };
                tx.commit().map_err(sqlite_error)?;
                Ok(gone)
            })
            .await?;
        let count = gone.len() as u64;
        self.indexer
            .run(move |conn| super::audit_index::forget(conn, &gone))
            .await?;
        Ok(count)
    }

    async fn index_audit(&self, max: usize) -> Result<usize> {
        self.indexer
            .run(move |conn| super::audit_index::index_step(conn, max))
            .await
    }

    async fn audit_head_seq(&self, chain: Uuid) -> Result<i64> {
        self.readers
            .run(move |conn| {
                conn.prepare_cached(
                    "SELECT coalesce(max(seq), 0) FROM audit_events WHERE chain_id = ?1",
                )
                .and_then(|mut stmt| stmt.query_row(params![chain], |r| r.get(0)))
                .map_err(sqlite_error)
            })
            .await
    }

    async fn sink_cursors(&self, sink: &str) -> Result<Vec<(Uuid, i64)>> {
        let sink = sink.to_string();
        self.readers
            .run(move |conn| {
                let mut stmt = conn
                    .prepare_cached(
                        "SELECT chain_id, seq FROM audit_sink_cursors WHERE sink = ?1 ORDER BY chain_id",
                    )
                    .map_err(sqlite_error)?;
                stmt.query_map(params![sink], |r| Ok((r.get(0)?, r.get(1)?)))
                    .map_err(sqlite_error)?
                    .collect::<rusqlite::Result<Vec<_>>>()
                    .map_err(sqlite_error)
            })
            .await
    }

    async fn advance_sink_cursor(
        &self,
        sink: &str,
        chain: Uuid,
        seq: i64,
        at: DateTime<Utc>,
    ) -> Result<()> {
        let sink = sink.to_string();
        self.writer
            .run(move |conn| {
                conn.prepare_cached(
                    "INSERT INTO audit_sink_cursors (sink, chain_id, seq, updated_at)
                     VALUES (?1, ?2, ?3, ?4)
                     ON CONFLICT (sink, chain_id) DO UPDATE
                     SET seq = excluded.seq, updated_at = excluded.updated_at
                     WHERE audit_sink_cursors.seq < excluded.seq",
                )
                .and_then(|mut stmt| stmt.execute(params![sink, chain, seq, micros(at)]))
                .map(|_| ())
                .map_err(sqlite_error)
            })
            .await
    }

    async fn claim_sink_lease(
        &self,
        sink: &str,
        holder: Uuid,
        now: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> Result<bool> {
        let sink = sink.to_string();
        self.writer
            .run(move |conn| {
                conn.prepare_cached(
                    "INSERT INTO audit_sink_leases (sink, holder, expires_at) VALUES (?1, ?2, ?3)
                     ON CONFLICT (sink) DO UPDATE
                     SET holder = excluded.holder, expires_at = excluded.expires_at
                     WHERE audit_sink_leases.holder = excluded.holder
                        OR audit_sink_leases.expires_at < ?4",
                )
                .and_then(|mut stmt| {
                    stmt.execute(params![sink, holder, micros(until), micros(now)])
                })
                .map(|changed| changed == 1)
                .map_err(sqlite_error)
            })
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::SqliteSynchronous;

    /// The query plan of the audit query for `filter` on a migrated database.
    async fn plan(store: &SqliteStore, filter: AuditFilter) -> String {
        store
            .readers
            .run(move |conn| {
                let mut stmt = conn
                    .prepare(&format!("EXPLAIN QUERY PLAN {}", query_sql(&filter)))
                    .map_err(sqlite_error)?;
                let details = stmt
                    .query_map(
                        params![Uuid::nil(), Uuid::nil(), Uuid::nil(), "", "", 0, 0, 10],
                        |r| r.get::<_, String>(3),
                    )
                    .map_err(sqlite_error)?
                    .collect::<rusqlite::Result<Vec<_>>>()
                    .map_err(sqlite_error)?;
                Ok(details.join("; "))
            })
            .await
            .expect("plan")
    }

    /// A patient's or a user's audit trail is found through its index,
    /// not by reading the whole log.
    // S-AUD-5
    #[tokio::test]
    async fn audit_queries_by_patient_or_actor_use_their_index() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = SqliteStore::open_path(&dir.path().join("q.db"), 1, SqliteSynchronous::Normal)
            .await
            .expect("open");
        let by_patient = plan(
            &store,
            AuditFilter {
                patient_id: Some(Uuid::nil()),
                ..AuditFilter::default()
            },
        )
        .await;
        // The index entries by their key, the tails by each chain's key,
        // and no pass over the whole log.
        let tail = "SEARCH e USING INDEX sqlite_autoindex_audit_events_2 (chain_id=? AND seq>?)";
        assert!(
            by_patient.contains("SEARCH x USING PRIMARY KEY (patient_id=? AND id>?)"),
            "{by_patient}"
        );
        assert!(by_patient.contains(tail), "{by_patient}");
        assert!(!by_patient.contains("SCAN e"), "{by_patient}");
        let by_actor = plan(
            &store,
            AuditFilter {
                actor_id: Some(Uuid::nil()),
                subtype: Some("patient.read".into()),
                ..AuditFilter::default()
            },
        )
        .await;
        assert!(
            by_actor.contains("SEARCH x USING PRIMARY KEY (actor_id=? AND id>?)"),
            "{by_actor}"
        );
        assert!(by_actor.contains(tail), "{by_actor}");
        assert!(!by_actor.contains("SCAN e"), "{by_actor}");
    }

    // An id bound borrowed is stored exactly as rusqlite stores a `Uuid`,
    // so rows written either way are found by the same queries.
    #[test]
    fn a_borrowed_id_is_stored_as_a_bound_uuid() {
        let conn = Connection::open_in_memory().expect("open");
        let id = Uuid::new_v4();
        let same: bool = conn
            .query_row("SELECT ?1 IS ?2", params![uuid_blob(&id), id], |r| r.get(0))
            .expect("compare");
        assert!(same);
        let read: Uuid = conn
            .query_row("SELECT ?1", params![uuid_blob(&id)], |r| r.get(0))
            .expect("read back");
        assert_eq!(read, id);
    }
}
