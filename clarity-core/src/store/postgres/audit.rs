//! [`AuditStore`] on PostgreSQL.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use tokio_postgres::Row;
use tokio_postgres::types::{ToSql, Type};
use uuid::Uuid;

use deadpool_postgres::GenericClient;

use super::change::apply_all_in_batch;
use super::{PostgresStore, pg_error};
use crate::audit::{AuditBatch, AuditStore, StoredBatch};
use crate::audit::{AuditEvent, AuditFilter, Checkpoint};
use crate::error::Result;
use crate::store::audit_query_sql;

const COLUMNS: &str = "id, chain_id, seq, recorded, event_type, subtype, action, outcome, purpose, \
     actor_id, actor_roles, client_address, patient_id, entity_id, query_hash, reason, request_id, \
     prev_mac, mac, actor_issuer, actor_subject";

fn event_row(row: &Row) -> AuditEvent {
    AuditEvent {
        id: row.get(0),
        chain_id: row.get(1),
        seq: row.get(2),
        recorded: row.get(3),
        event_type: row.get(4),
        subtype: row.get(5),
        action: row.get(6),
        outcome: row.get(7),
        purpose: row.get(8),
        actor_id: row.get(9),
        actor_roles: row.get(10),
        client_address: row.get(11),
        patient_id: row.get(12),
        entity_id: row.get(13),
        query_hash: row.get(14),
        reason: row.get(15),
        request_id: row.get(16),
        prev_mac: row.get(17),
        mac: row.get(18),
        actor_issuer: row.get(19),
        actor_subject: row.get(20),
    }
}

fn limit(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// Inserts `events` and `checkpoint` inside the transaction `tx`.
async fn insert_events(
    tx: &impl GenericClient,
    events: &[AuditEvent],
    checkpoint: Option<&Checkpoint>,
) -> Result<()> {
    let insert = tx
        .prepare_cached(&format!(
            "INSERT INTO audit_events ({COLUMNS}) VALUES
             ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20, $21)"
        ))
        .await
        .map_err(pg_error)?;
    // One round trip for the whole batch: the inserts are pipelined.
    let inserts = events.iter().map(|e| {
        let params: [&(dyn ToSql + Sync); 21] = [
            &e.id,
            &e.chain_id,
            &e.seq,
            &e.recorded,
            &e.event_type,
            &e.subtype,
            &e.action,
            &e.outcome,
            &e.purpose,
            &e.actor_id,
            &e.actor_roles,
            &e.client_address,
            &e.patient_id,
            &e.entity_id,
            &e.query_hash,
            &e.reason,
            &e.request_id,
            &e.prev_mac,
            &e.mac,
            &e.actor_issuer,
            &e.actor_subject,
        ];
        tx.execute_raw(&insert, params)
    });
    futures_util::future::try_join_all(inserts)
        .await
        .map_err(pg_error)?;
    if let Some(cp) = checkpoint {
        tx.execute(
            "INSERT INTO audit_checkpoints (chain_id, seq, mac, signed_at, signature) VALUES ($1, $2, $3, $4, $5)",
            &[&cp.chain_id, &cp.seq, &cp.mac, &cp.signed_at, &cp.signature],
        )
        .await
        .map_err(pg_error)?;
    }
    Ok(())
}

#[async_trait]
impl AuditStore for PostgresStore {
    async fn append_audit(
        &self,
        events: &[AuditEvent],
        checkpoint: Option<&Checkpoint>,
    ) -> Result<()> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(pg_error)?;
        insert_events(&tx, events, checkpoint).await?;
        tx.commit().await.map_err(pg_error)
    }

    async fn append_audit_batch(&self, batch: AuditBatch) -> Result<StoredBatch> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(pg_error)?;
        let outcomes = apply_all_in_batch(&tx, &batch.changes).await;
        let (events, checkpoint) = (batch.seal)(&outcomes);
        insert_events(&tx, &events, checkpoint.as_ref()).await?;
        tx.commit().await.map_err(pg_error)?;
        Ok(StoredBatch {
            outcomes,
            events,
            checkpoint,
        })
    }

    async fn audit_chains(&self) -> Result<Vec<Uuid>> {
        let client = self.client().await?;
        let rows = client
            .query(crate::store::AUDIT_CHAINS_SQL, &[])
            .await
            .map_err(pg_error)?;
        Ok(rows.iter().map(|r| r.get(0)).collect())
    }

    async fn audit_chain_events(
        &self,
        chain: Uuid,
        after_seq: i64,
        n: usize,
    ) -> Result<Vec<AuditEvent>> {
        let client = self.client().await?;
        let rows = client
            .query(
                &format!("SELECT {COLUMNS} FROM audit_events WHERE chain_id = $1 AND seq > $2 ORDER BY seq LIMIT $3"),
                &[&chain, &after_seq, &limit(n)],
            )
            .await
            .map_err(pg_error)?;
        Ok(rows.iter().map(event_row).collect())
    }

    async fn audit_checkpoints(&self, chain: Uuid) -> Result<Vec<Checkpoint>> {
        let client = self.client().await?;
        let rows = client
            .query(
                "SELECT chain_id, seq, mac, signed_at, signature FROM audit_checkpoints WHERE chain_id = $1 ORDER BY seq",
                &[&chain],
            )
            .await
            .map_err(pg_error)?;
        Ok(rows
            .iter()
            .map(|r| Checkpoint {
                chain_id: r.get(0),
                seq: r.get(1),
                mac: r.get(2),
                signed_at: r.get(3),
                signature: r.get(4),
            })
            .collect())
    }

    async fn query_audit(
        &self,
        f: &AuditFilter,
        after: Option<Uuid>,
        n: usize,
    ) -> Result<Vec<AuditEvent>> {
        let client = self.client().await?;
        // Typed, because the parameters of absent conditions appear nowhere
        // in the text for PostgreSQL to infer their types from; cached per
        // combination of filters (at most 64).
        let stmt = client
            .prepare_typed_cached(
                &audit_query_sql(COLUMNS, f, |n| format!("${n}")),
                &[
                    Type::UUID,
                    Type::UUID,
                    Type::UUID,
                    Type::TEXT,
                    Type::TEXT,
                    Type::TIMESTAMPTZ,
                    Type::TIMESTAMPTZ,
                    Type::INT8,
                ],
            )
            .await
            .map_err(pg_error)?;
        let rows = client
            .query(
                &stmt,
                &[
                    &after.unwrap_or(Uuid::nil()),
                    &f.patient_id,
                    &f.actor_id,
                    &f.subtype,
                    &f.outcome,
                    &f.from,
                    &f.to,
                    &limit(n),
                ],
            )
            .await
            .map_err(pg_error)?;
        Ok(rows.iter().map(event_row).collect())
    }

    async fn purge_audit_before(&self, before: DateTime<Utc>) -> Result<u64> {
        let client = self.client().await?;
        client
            .execute(
                "DELETE FROM audit_events e WHERE e.seq <= (
                     SELECT max(c.seq) FROM audit_checkpoints c
                     JOIN audit_events x ON x.chain_id = c.chain_id AND x.seq = c.seq
                     WHERE c.chain_id = e.chain_id AND x.recorded < $1)",
                &[&before],
            )
            .await
            .map_err(pg_error)
    }

    async fn audit_head_seq(&self, chain: Uuid) -> Result<i64> {
        let client = self.client().await?;
        let row = client
            .query_one(
                "SELECT coalesce(max(seq), 0) FROM audit_events WHERE chain_id = $1",
                &[&chain],
            )
            .await
            .map_err(pg_error)?;
        Ok(row.get(0))
    }

    async fn sink_cursors(&self, sink: &str) -> Result<Vec<(Uuid, i64)>> {
        let client = self.client().await?;
        let rows = client
            .query(
                "SELECT chain_id, seq FROM audit_sink_cursors WHERE sink = $1 ORDER BY chain_id",
                &[&sink],
            )
            .await
            .map_err(pg_error)?;
        Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
    }

    async fn advance_sink_cursor(
        &self,
        sink: &str,
        chain: Uuid,
        seq: i64,
        at: DateTime<Utc>,
    ) -> Result<()> {
        let client = self.client().await?;
        client
            .execute(
                "INSERT INTO audit_sink_cursors (sink, chain_id, seq, updated_at)
                 VALUES ($1, $2, $3, $4)
                 ON CONFLICT (sink, chain_id) DO UPDATE
                 SET seq = excluded.seq, updated_at = excluded.updated_at
                 WHERE audit_sink_cursors.seq < excluded.seq",
                &[&sink, &chain, &seq, &at],
            )
            .await
            .map_err(pg_error)?;
        Ok(())
    }

    async fn claim_sink_lease(
        &self,
        sink: &str,
        holder: Uuid,
        now: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> Result<bool> {
        let client = self.client().await?;
        let changed = client
            .execute(
                "INSERT INTO audit_sink_leases (sink, holder, expires_at) VALUES ($1, $2, $3)
                 ON CONFLICT (sink) DO UPDATE
                 SET holder = excluded.holder, expires_at = excluded.expires_at
                 WHERE audit_sink_leases.holder = excluded.holder
                    OR audit_sink_leases.expires_at < $4",
                &[&sink, &holder, &until, &now],
            )
            .await
            .map_err(pg_error)?;
        Ok(changed == 1)
    }
}
