//! The `[audit]` settings: the writer's queue, checkpoints and retention.

use serde::Deserialize;

use crate::error::{Error, Result};

/// Audit settings (`[audit]`).
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct AuditConfig {
    /// Events waiting to be written at most; more callers wait (default 65536).
    pub queue: usize,
    /// A signed checkpoint after this many events (default 1000)...
    pub checkpoint_every: i64,
    /// ... or after this many seconds with new events (default 60).
    pub checkpoint_secs: u64,
    /// Days events are kept before they may be purged (default 2196: six years).
    pub retention_days: u32,
}

impl Default for AuditConfig {
    fn default() -> Self {
        AuditConfig {
            queue: 65_536,
            checkpoint_every: 1000,
            checkpoint_secs: 60,
            retention_days: crate::audit::DEFAULT_RETENTION_DAYS,
        }
    }
}

impl AuditConfig {
    /// Checks the `[audit]` settings; errors name the key.
    ///
    /// # Errors
    /// [`Error::Config`] naming the first offending key.
    pub fn validate(&self) -> Result<()> {
        if !(1..=1_000_000).contains(&self.queue) {
            return Err(Error::config(
                "audit.queue",
                "must be between 1 and 1000000",
            ));
        }
        if !(1..=1_000_000).contains(&self.checkpoint_every) {
            return Err(Error::config(
                "audit.checkpoint_every",
                "must be between 1 and 1000000",
            ));
        }
        if !(1..=86_400).contains(&self.checkpoint_secs) {
            return Err(Error::config(
                "audit.checkpoint_secs",
                "must be between 1 and 86400",
            ));
        }
        if self.retention_days < super::DEFAULT_RETENTION_DAYS {
            return Err(Error::config(
                "audit.retention_days",
                "must be at least 2196 (six years)",
            ));
        }
        Ok(())
    }
}
