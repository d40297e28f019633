//! [`AuditStore`] on PostgreSQL.

use std::sync::LazyLock;

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
use crate::store::{
    Dialect, audit_query_sql, discover_chains_sql, purge_condition, sorted_entries,
};

const COLUMNS: &str = "id, chain_id, seq, recorded, event_type, subtype, action, outcome, purpose, \
     actor_id, actor_roles, client_address, patient_id, entity_id, query_hash, reason, request_id, \
     prev_mac, mac, actor_issuer, actor_subject";

fn event_row(row: &Row) -> AuditEvent {
    AuditEvent {
        id: row.get(0),
        chain_id: row.get(1),
        seq: row.get(2),
        recorded: row.get(3),
        event_type: row.get::<_, String>(4).into(),
        subtype: row.get::<_, String>(5).into(),
        action: row.get::<_, String>(6).into(),
        outcome: row.get::<_, String>(7).into(),
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

/// Inserts a batch's events, one statement for them all, their columns as
/// arrays: one parse, plan and executor start instead of one per event.
static INSERT_EVENTS: LazyLock<String> = LazyLock::new(|| {
    format!(
        "INSERT INTO audit_events ({COLUMNS})
         SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::bigint[], $4::timestamptz[],
             $5::text[], $6::text[], $7::text[], $8::text[], $9::text[], $10::uuid[],
             $11::text[], $12::text[], $13::uuid[], $14::uuid[], $15::text[], $16::text[],
             $17::text[], $18::bytea[], $19::bytea[], $20::text[], $21::text[])"
    )
});

/// [`INSERT_EVENTS`] and a checkpoint, still one statement.
static INSERT_EVENTS_AND_CHECKPOINT: LazyLock<String> = LazyLock::new(|| {
    format!(
        "WITH events AS ({})
         INSERT INTO audit_checkpoints (chain_id, seq, mac, signed_at, signature)
         VALUES ($22, $23, $24, $25, $26)",
        *INSERT_EVENTS
    )
});

/// Inserts `events` and `checkpoint` in one statement, which is atomic by
/// itself: outside a transaction it is one round trip and one commit.
async fn insert_events(
    client: &impl GenericClient,
    events: &[AuditEvent],
    checkpoint: Option<&Checkpoint>,
) -> Result<()> {
    if events.is_empty() && checkpoint.is_none() {
        return Ok(());
    }
    let sql = match checkpoint {
        None => &*INSERT_EVENTS,
        Some(_) => &*INSERT_EVENTS_AND_CHECKPOINT,
    };
    let insert = client.prepare_cached(sql).await.map_err(pg_error)?;
    // Borrowed from the events: nothing is copied but the arrays.
    let column =
        |f: for<'e> fn(&'e AuditEvent) -> Option<&'e str>| events.iter().map(f).collect::<Vec<_>>();
    let ids: Vec<Uuid> = events.iter().map(|e| e.id).collect();
    let chains: Vec<Uuid> = events.iter().map(|e| e.chain_id).collect();
    let seqs: Vec<i64> = events.iter().map(|e| e.seq).collect();
    let recorded: Vec<DateTime<Utc>> = events.iter().map(|e| e.recorded).collect();
    let event_types = column(|e| Some(&*e.event_type));
    let subtypes = column(|e| Some(&*e.subtype));
    let actions = column(|e| Some(&*e.action));
    let outcomes = column(|e| Some(&*e.outcome));
    let purposes = column(|e| e.purpose.as_deref());
    let actors: Vec<Option<Uuid>> = events.iter().map(|e| e.actor_id).collect();
    let roles = column(|e| e.actor_roles.as_deref());
    let addresses = column(|e| e.client_address.as_deref());
    let patients: Vec<Option<Uuid>> = events.iter().map(|e| e.patient_id).collect();
    let entities: Vec<Option<Uuid>> = events.iter().map(|e| e.entity_id).collect();
    let query_hashes = column(|e| e.query_hash.as_deref());
    let reasons = column(|e| e.reason.as_deref());
    let request_ids = column(|e| e.request_id.as_deref());
    let prev_macs: Vec<&[u8]> = events.iter().map(|e| e.prev_mac.as_slice()).collect();
    let macs: Vec<&[u8]> = events.iter().map(|e| e.mac.as_slice()).collect();
    let issuers = column(|e| e.actor_issuer.as_deref());
    let subjects = column(|e| e.actor_subject.as_deref());
    let mut params: Vec<&(dyn ToSql + Sync)> = vec![
        &ids,
        &chains,
        &seqs,
        &recorded,
        &event_types,
        &subtypes,
        &actions,
        &outcomes,
        &purposes,
        &actors,
        &roles,
        &addresses,
        &patients,
        &entities,
        &query_hashes,
        &reasons,
        &request_ids,
        &prev_macs,
        &macs,
        &issuers,
        &subjects,
    ];
    if let Some(cp) = checkpoint {
        params.extend([
            &cp.chain_id as &(dyn ToSql + Sync),
            &cp.seq,
            &cp.mac,
            &cp.signed_at,
            &cp.signature,
        ]);
    }
    client.execute(&insert, &params).await.map_err(pg_error)?;
    Ok(())
}

#[async_trait]
impl AuditStore for PostgresStore {
    async fn append_audit(
        &self,
        events: &[AuditEvent],
        checkpoint: Option<&Checkpoint>,
    ) -> Result<()> {
        let client = self.client().await?;
        insert_events(&client, events, checkpoint).await
    }

    async fn append_audit_batch(&self, batch: AuditBatch) -> Result<StoredBatch> {
        let mut client = self.client().await?;
        if batch.changes.iter().all(Option::is_none) {
            // Events alone (reads): one statement, atomic by itself, so one
            // round trip instead of three (BEGIN, the insert, COMMIT).
            let outcomes: Vec<Result<()>> = batch.changes.iter().map(|_| Ok(())).collect();
            let (events, checkpoint) = (batch.seal)(&outcomes);
            insert_events(&client, &events, checkpoint.as_ref()).await?;
            return Ok(StoredBatch {
                outcomes,
                events,
                checkpoint,
            });
        }
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
                &audit_query_sql(COLUMNS, f, Dialect::Postgres),
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
        // The index entries go in the same statement as their events.
        let row = client
            .query_one(
                &format!(
                    "WITH gone AS (
                         DELETE FROM audit_events e WHERE {}
                         RETURNING e.id, e.patient_id, e.actor_id),
                     p AS (DELETE FROM audit_by_patient x USING gone g
                           WHERE x.patient_id = g.patient_id AND x.id = g.id),
                     a AS (DELETE FROM audit_by_actor x USING gone g
                           WHERE x.actor_id = g.actor_id AND x.id = g.id)
                     SELECT count(*) FROM gone",
                    purge_condition("$1")
                ),
                &[&before],
            )
            .await
            .map_err(pg_error)?;
        Ok(u64::try_from(row.get::<_, i64>(0)).unwrap_or_default())
    }

    async fn index_audit(&self, max: usize) -> Result<usize> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(pg_error)?;
        tx.execute(&discover_chains_sql(Dialect::Postgres), &[])
            .await
            .map_err(pg_error)?;
        // Another instance indexing at the same time takes other chains.
        let marks = tx
            .query(
                "SELECT chain_id, seq FROM audit_index_marks ORDER BY chain_id
                 FOR UPDATE SKIP LOCKED",
                &[],
            )
            .await
            .map_err(pg_error)?;
        let pending = tx
            .prepare_cached(
                "SELECT id, seq, patient_id, actor_id FROM audit_events
                 WHERE chain_id = $1 AND seq > $2 ORDER BY seq LIMIT $3",
            )
            .await
            .map_err(pg_error)?;
        let mut events = Vec::new();
        let (mut chains, mut seqs) = (Vec::new(), Vec::new());
        for mark in &marks {
            let room = max.saturating_sub(events.len());
            if room == 0 {
                break;
            }
            let (chain, from): (Uuid, i64) = (mark.get(0), mark.get(1));
            let rows = tx
                .query(&pending, &[&chain, &from, &limit(room)])
                .await
                .map_err(pg_error)?;
            if let Some(last) = rows.last() {
                chains.push(chain);
                seqs.push(last.get::<_, i64>(1));
            }
            events.extend(rows.iter().map(|r| (r.get(0), r.get(2), r.get(3))));
        }
        let (by_patient, by_actor) = sorted_entries(&events);
        for (sql, entries) in [
            (
                "INSERT INTO audit_by_patient (patient_id, id)
                 SELECT * FROM unnest($1::uuid[], $2::uuid[]) ON CONFLICT DO NOTHING",
                by_patient,
            ),
            (
                "INSERT INTO audit_by_actor (actor_id, id)
                 SELECT * FROM unnest($1::uuid[], $2::uuid[]) ON CONFLICT DO NOTHING",
                by_actor,
            ),
        ] {
            if entries.is_empty() {
                continue;
            }
            let (keys, ids): (Vec<Uuid>, Vec<Uuid>) = entries.into_iter().unzip();
            tx.execute(sql, &[&keys, &ids]).await.map_err(pg_error)?;
        }
        if !chains.is_empty() {
            tx.execute(
                "UPDATE audit_index_marks m SET seq = v.seq
                 FROM unnest($1::uuid[], $2::bigint[]) AS v(chain_id, seq)
                 WHERE m.chain_id = v.chain_id",
                &[&chains, &seqs],
            )
            .await
            .map_err(pg_error)?;
        }
        tx.commit().await.map_err(pg_error)?;
        Ok(events.len())
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
