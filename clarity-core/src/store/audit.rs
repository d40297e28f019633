//! [`AuditStore`]: where audit events and checkpoints are kept.

use std::fmt;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::audit::{AuditEvent, AuditFilter, Checkpoint};
use crate::error::Result;

/// Persistence of the audit trail.
#[async_trait]
pub trait AuditStore: Send + Sync + fmt::Debug {
    /// Stores `events` and `checkpoint` in one transaction.
    async fn append_audit(
        &self,
        events: &[AuditEvent],
        checkpoint: Option<&Checkpoint>,
    ) -> Result<()>;
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
}
