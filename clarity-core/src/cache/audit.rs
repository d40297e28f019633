//! [`CachedAudit`]: the audit store on the write path of changes. A change
//! commits in its audit event's batch (see `audit::AuditBatch`); once the
//! batch has committed, or failed, this decorator drops what its changes made
//! stale from the cache, here and on the other instances.

use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::Invalidator;
use crate::audit::{AuditBatch, AuditEvent, AuditFilter, AuditStore, Checkpoint, StoredBatch};
use crate::error::Result;

/// An [`AuditStore`] whose batches invalidate what their changes touched.
#[derive(Debug)]
pub struct CachedAudit {
    inner: Arc<dyn AuditStore>,
    invalidator: Arc<Invalidator>,
}

impl CachedAudit {
    /// Writes to `inner`, invalidating through `invalidator`.
    pub fn new(inner: Arc<dyn AuditStore>, invalidator: Arc<Invalidator>) -> CachedAudit {
        CachedAudit { inner, invalidator }
    }
}

// A decorator forwards every method, defaulted ones included.
#[deny(clippy::missing_trait_methods)]
#[async_trait]
impl AuditStore for CachedAudit {
    async fn append_audit(
        &self,
        events: &[AuditEvent],
        checkpoint: Option<&Checkpoint>,
    ) -> Result<()> {
        self.inner.append_audit(events, checkpoint).await
    }

    async fn append_audit_batch(&self, batch: AuditBatch) -> Result<StoredBatch> {
        let stale: Vec<_> = batch
            .changes
            .iter()
            .flatten()
            .flat_map(|change| change.invalidations())
            .collect();
        let result = self.inner.append_audit_batch(batch).await;
        // Also after a failure: a conflict means a cached row is stale, and
        // a batch whose commit failed may still have reached the database.
        for what in stale {
            self.invalidator.invalidate(what).await;
        }
        result
    }

    async fn index_audit(&self, max: usize) -> Result<usize> {
        self.inner.index_audit(max).await
    }

    async fn audit_chains(&self) -> Result<Vec<Uuid>> {
        self.inner.audit_chains().await
    }

    async fn audit_chain_events(
        &self,
        chain: Uuid,
        after_seq: i64,
        limit: usize,
    ) -> Result<Vec<AuditEvent>> {
        self.inner.audit_chain_events(chain, after_seq, limit).await
    }

    async fn audit_checkpoints(&self, chain: Uuid) -> Result<Vec<Checkpoint>> {
        self.inner.audit_checkpoints(chain).await
    }

    async fn query_audit(
        &self,
        filter: &AuditFilter,
        after: Option<Uuid>,
        limit: usize,
    ) -> Result<Vec<AuditEvent>> {
        self.inner.query_audit(filter, after, limit).await
    }

    async fn purge_audit_before(&self, before: DateTime<Utc>) -> Result<u64> {
        self.inner.purge_audit_before(before).await
    }

    async fn audit_head_seq(&self, chain: Uuid) -> Result<i64> {
        self.inner.audit_head_seq(chain).await
    }

    async fn sink_cursors(&self, sink: &str) -> Result<Vec<(Uuid, i64)>> {
        self.inner.sink_cursors(sink).await
    }

    async fn advance_sink_cursor(
        &self,
        sink: &str,
        chain: Uuid,
        seq: i64,
        at: DateTime<Utc>,
    ) -> Result<()> {
        self.inner.advance_sink_cursor(sink, chain, seq, at).await
    }

    async fn claim_sink_lease(
        &self,
        sink: &str,
        holder: Uuid,
        now: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> Result<bool> {
        self.inner.claim_sink_lease(sink, holder, now, until).await
    }
}
