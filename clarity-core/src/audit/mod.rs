//! The audit trail: every PHI access, authentication, administrative,
//! care-team, break-glass and key event, as FHIR-compatible events (S-AUD-1),
//! chained with HMAC-SHA-256 per writer and pinned by Ed25519-signed
//! checkpoints (S-AUD-3), written by a group-commit writer, queried, exported
//! as FHIR R4 AuditEvent NDJSON (S-AUD-5) and purged only past retention
//! (S-AUD-6). A witness outside the audit tables records each chain's start,
//! checkpoints and heads, so that deleting whole chains or tails is reported
//! (S-AUD-7). Sinks stream the trail out of the database as it is written
//! (S-AUD-8).

mod chain;
mod event;
mod fhir;
mod indexer;
mod settings;
mod sink;
mod store;
mod witness;
mod writer;

pub use chain::{ChainReport, FULL_VERIFY_EVERY, VerifiedHead, WitnessedChain};
// The writer, the keys and verification over a raw store: test-only outside
// the crate; applications verify with `Clarity::verify_audit`.
pub use crate::model::RequestContext;
#[cfg(feature = "testing")]
pub use chain::{AuditKeys, verify, verify_incremental, verify_witnessed};
#[cfg(not(feature = "testing"))]
pub(crate) use chain::{AuditKeys, verify, verify_incremental, verify_witnessed};
pub use event::{AuditAction, AuditEvent, AuditFilter, AuditOutcome, Checkpoint, EventDraft};
pub use fhir::to_fhir;
pub(crate) use indexer::AuditIndexer;
pub use settings::AuditConfig;
pub use sink::{LEASE as SINK_LEASE, SinkConfig, SinkFormat, SinkKind, SinkStatus};
pub(crate) use sink::{SinkGate, Sinks};
#[cfg(feature = "testing")]
pub use store::{AuditBatch, AuditStore, SealBatch, StoredBatch};
#[cfg(not(feature = "testing"))]
pub(crate) use store::{AuditBatch, AuditStore, SealBatch, StoredBatch};
pub use witness::{Witness, WitnessKind, Witnessed};
#[cfg(feature = "testing")]
pub use writer::{AuditWriter, WriterSettings};
#[cfg(not(feature = "testing"))]
pub(crate) use writer::{AuditWriter, WriterSettings};

use chrono::{DateTime, Utc};

use crate::error::{Error, Result};

/// Default retention: six years (HIPAA documentation retention).
pub const DEFAULT_RETENTION_DAYS: u32 = 6 * 366;

/// Deletes events recorded before `before`, cutting each chain at a signed
/// checkpoint so that what remains still verifies. Refuses to touch events
/// younger than the retention period (S-AUD-6).
///
/// # Errors
/// [`Error::InvalidInput`] when `before` is inside the retention period.
pub async fn purge(
    store: &dyn AuditStore,
    before: DateTime<Utc>,
    now: DateTime<Utc>,
    retention_days: u32,
) -> Result<u64> {
    let oldest_allowed = now - chrono::Duration::days(i64::from(retention_days));
    if before > oldest_allowed {
        return Err(Error::invalid(format!(
            "audit events are kept for {retention_days} days; only events recorded before {} may be purged",
            oldest_allowed.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
        )));
    }
    store.purge_audit_before(before).await
}
