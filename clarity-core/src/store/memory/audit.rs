//! [`AuditStore`] on the in-memory tables: the audit chains, their
//! checkpoints, and batches of changes committed with their events.

use std::collections::BTreeMap;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::{MemoryStore, Tables, change};
use crate::audit::{AuditBatch, AuditStore, StoredBatch};
use crate::audit::{AuditEvent, AuditFilter, Checkpoint};
use crate::error::{Error, Result};

fn audit_matches(event: &AuditEvent, filter: &AuditFilter) -> bool {
    filter
        .patient_id
        .is_none_or(|p| event.patient_id == Some(p))
        && filter.actor_id.is_none_or(|a| event.actor_id == Some(a))
        && filter.subtype.as_ref().is_none_or(|s| event.subtype == *s)
        && filter.outcome.as_ref().is_none_or(|o| event.outcome == *o)
        && filter.from.is_none_or(|t| event.recorded >= t)
        && filter.to.is_none_or(|t| event.recorded < t)
}

/// Refuses events or a checkpoint whose place in its chain is taken, as
/// the SQL backends' primary keys do, before anything is stored.
fn taken(t: &Tables, events: &[AuditEvent], checkpoint: Option<&Checkpoint>) -> Result<()> {
    if events
        .iter()
        .any(|e| t.audit_events.contains_key(&(e.chain_id, e.seq)))
    {
        return Err(Error::AlreadyExists {
            what: "audit event",
        });
    }
    if checkpoint.is_some_and(|cp| t.audit_checkpoints.contains_key(&(cp.chain_id, cp.seq))) {
        return Err(Error::AlreadyExists {
            what: "audit checkpoint",
        });
    }
    Ok(())
}

#[async_trait]
impl AuditStore for MemoryStore {
    async fn append_audit(
        &self,
        events: &[AuditEvent],
        checkpoint: Option<&Checkpoint>,
    ) -> Result<()> {
        self.with(|t| {
            taken(t, events, checkpoint)?;
            for e in events {
                t.audit_events.insert((e.chain_id, e.seq), e.clone());
            }
            if let Some(cp) = checkpoint {
                t.audit_checkpoints
                    .insert((cp.chain_id, cp.seq), cp.clone());
            }
            Ok(())
        })
    }

    async fn append_audit_batch(&self, batch: AuditBatch) -> Result<StoredBatch> {
        self.with(|t| {
            let mut saved = Vec::new();
            let outcomes: Vec<Result<()>> = batch
                .changes
                .iter()
                .map(|change| match change {
                    Some(change) => {
                        let before = change::before(t, change);
                        let outcome = change::apply_change(t, change);
                        if outcome.is_ok() {
                            saved.extend(before);
                        }
                        outcome
                    }
                    None => Ok(()),
                })
                .collect();
            let (events, checkpoint) = (batch.seal)(&outcomes);
            if let Err(e) = taken(t, &events, checkpoint.as_ref()) {
                change::undo(t, saved);
                return Err(e);
            }
            for e in &events {
                t.audit_events.insert((e.chain_id, e.seq), e.clone());
            }
            if let Some(cp) = &checkpoint {
                t.audit_checkpoints
                    .insert((cp.chain_id, cp.seq), cp.clone());
            }
            Ok(StoredBatch {
                outcomes,
                events,
                checkpoint,
            })
        })
    }

    async fn audit_chains(&self) -> Result<Vec<Uuid>> {
        self.with(|t| {
            let mut chains: Vec<Uuid> = t
                .audit_events
                .keys()
                .chain(t.audit_checkpoints.keys())
                .map(|(c, _)| *c)
                .collect();
            chains.sort();
            chains.dedup();
            Ok(chains)
        })
    }

    async fn audit_chain_events(
        &self,
        chain: Uuid,
        after_seq: i64,
        limit: usize,
    ) -> Result<Vec<AuditEvent>> {
        self.with(|t| {
            Ok(t.audit_events
                .range((chain, after_seq.saturating_add(1))..=(chain, i64::MAX))
                .take(limit)
                .map(|(_, e)| e.clone())
                .collect())
        })
    }

    async fn audit_checkpoints(&self, chain: Uuid) -> Result<Vec<Checkpoint>> {
        self.with(|t| {
            Ok(t.audit_checkpoints
                .range((chain, i64::MIN)..=(chain, i64::MAX))
                .map(|(_, c)| c.clone())
                .collect())
        })
    }

    async fn query_audit(
        &self,
        filter: &AuditFilter,
        after: Option<Uuid>,
        limit: usize,
    ) -> Result<Vec<AuditEvent>> {
        self.with(|t| {
            let mut found: Vec<AuditEvent> = t
                .audit_events
                .values()
                .filter(|e| after.is_none_or(|a| e.id > a) && audit_matches(e, filter))
                .cloned()
                .collect();
            found.sort_by_key(|e| e.id);
            found.truncate(limit);
            Ok(found)
        })
    }

    async fn purge_audit_before(&self, before: DateTime<Utc>) -> Result<u64> {
        self.with(|t| {
            let mut cut: BTreeMap<Uuid, i64> = BTreeMap::new();
            for (chain, seq) in t.audit_checkpoints.keys() {
                let old = t
                    .audit_events
                    .get(&(*chain, *seq))
                    .is_some_and(|e| e.recorded < before);
                if old {
                    let entry = cut.entry(*chain).or_insert(*seq);
                    *entry = (*entry).max(*seq);
                }
            }
            let before_len = t.audit_events.len();
            t.audit_events
                .retain(|(chain, seq), _| cut.get(chain).is_none_or(|limit| seq > limit));
            Ok((before_len - t.audit_events.len()) as u64)
        })
    }

    async fn audit_head_seq(&self, chain: Uuid) -> Result<i64> {
        self.with(|t| {
            Ok(t.audit_events
                .range((chain, i64::MIN)..=(chain, i64::MAX))
                .next_back()
                .map_or(0, |((_, seq), _)| *seq))
        })
    }

    async fn sink_cursors(&self, sink: &str) -> Result<Vec<(Uuid, i64)>> {
        self.with(|t| {
            Ok(t.audit_sink_cursors
                .iter()
                .filter(|((s, _), _)| s == sink)
                .map(|((_, chain), seq)| (*chain, *seq))
                .collect())
        })
    }

    async fn advance_sink_cursor(
        &self,
        sink: &str,
        chain: Uuid,
        seq: i64,
        _at: DateTime<Utc>,
    ) -> Result<()> {
        self.with(|t| {
            let cursor = t
                .audit_sink_cursors
                .entry((sink.to_string(), chain))
                .or_insert(seq);
            *cursor = (*cursor).max(seq);
            Ok(())
        })
    }

    async fn claim_sink_lease(
        &self,
        sink: &str,
        holder: Uuid,
        now: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> Result<bool> {
        self.with(|t| {
            let lease = t
                .audit_sink_leases
                .entry(sink.to_string())
                .or_insert((holder, until));
            if lease.0 == holder || lease.1 < now {
                *lease = (holder, until);
                Ok(true)
            } else {
                Ok(false)
            }
        })
    }
}
