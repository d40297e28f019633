//! [`AuditStore`]: where audit events and checkpoints are kept.

use std::fmt;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::{AuditEvent, AuditFilter, Checkpoint};
use crate::error::Result;
use crate::model::Change;

/// Chains and signs a batch's events once the outcome of each slot's change
/// is known (`Ok` for a slot without a change): returns the events, one per
/// slot in slot order, and the checkpoint to store with them, if any.
pub type SealBatch = Box<dyn FnOnce(&[Result<()>]) -> (Vec<AuditEvent>, Option<Checkpoint>) + Send>;

/// One group commit of the audit writer: the slots' changes and their
/// events, in one transaction.
pub struct AuditBatch {
    /// Per slot, the change its event records, if any.
    pub changes: Vec<Option<Change>>,
    /// Builds the events from the changes' outcomes.
    pub seal: SealBatch,
}

impl fmt::Debug for AuditBatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuditBatch")
            .field("slots", &self.changes.len())
            .finish_non_exhaustive()
    }
}

/// What a committed [`AuditBatch`] stored.
#[derive(Debug)]
pub struct StoredBatch {
    /// Per slot, its change's outcome (`Ok` for a slot without a change).
    pub outcomes: Vec<Result<()>>,
    /// The events stored, one per slot.
    pub events: Vec<AuditEvent>,
    /// The checkpoint stored with them, if any.
    pub checkpoint: Option<Checkpoint>,
}

/// Persistence of the audit trail.
#[async_trait]
pub trait AuditStore: Send + Sync + fmt::Debug {
    /// Stores `events` and `checkpoint` in one transaction.
    async fn append_audit(
        &self,
        events: &[AuditEvent],
        checkpoint: Option<&Checkpoint>,
    ) -> Result<()>;
    /// In one transaction: applies each slot's change (a failed change is
    /// undone alone and its outcome reported, the others go on), then seals
    /// the events with those outcomes and stores them with the checkpoint.
    /// Nothing of the batch is stored unless all of it is.
    ///
    /// # Errors
    /// The backend's, when the batch as a whole could not be committed.
    async fn append_audit_batch(&self, batch: AuditBatch) -> Result<StoredBatch>;
    /// Every chain id with events or checkpoints.
    async fn audit_chains(&self) -> Result<Vec<Uuid>>;
    /// Events of `chain` with `seq > after_seq`, in seq order.
    async fn audit_chain_events(
        &self,
        chain: Uuid,
        after_seq: i64,
        limit: usize,
    ) -> Result<Vec<AuditEvent>>;
    /// Checkpoints of `chain`, in seq order.
    async fn audit_checkpoints(&self, chain: Uuid) -> Result<Vec<Checkpoint>>;
    /// Events matching `filter` with ids after `after`, in id (time) order.
    async fn query_audit(
        &self,
        filter: &AuditFilter,
        after: Option<Uuid>,
        limit: usize,
    ) -> Result<Vec<AuditEvent>>;
    /// Deletes, per chain, the events up to the last checkpoint whose event
    /// was recorded before `before`; returns how many.
    async fn purge_audit_before(&self, before: DateTime<Utc>) -> Result<u64>;
    /// Brings the query indexes of the trail (by patient, by actor) forward
    /// by up to `max` events not yet indexed, off the commit path, and
    /// returns how many it indexed. Queries are complete whether or not
    /// this has run: they also read each chain's events past its index
    /// mark. Several instances may run it at once. A backend without such
    /// indexes (the in-memory one) indexes nothing.
    async fn index_audit(&self, max: usize) -> Result<usize> {
        let _ = max;
        Ok(0)
    }
    /// The highest sequence number stored for `chain` (0 when it has none).
    async fn audit_head_seq(&self, chain: Uuid) -> Result<i64>;
    /// Per chain, the last sequence number delivered to the sink `sink`
    /// (S-AUD-8).
    async fn sink_cursors(&self, sink: &str) -> Result<Vec<(Uuid, i64)>>;
    /// Records that `sink` has received `chain` up to `seq`; a cursor never
    /// moves back.
    async fn advance_sink_cursor(
        &self,
        sink: &str,
        chain: Uuid,
        seq: i64,
        at: DateTime<Utc>,
    ) -> Result<()>;
    /// Takes or renews the delivery lease of `sink` for `holder` until
    /// `until`, when the lease is free, expired at `now` or already
    /// `holder`'s; returns whether `holder` holds it now. An `until`
    /// before `now` releases the holder's lease.
    async fn claim_sink_lease(
        &self,
        sink: &str,
        holder: Uuid,
        now: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> Result<bool>;
}
