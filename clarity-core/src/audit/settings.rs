//! The `[audit]` settings: the writer's queue, checkpoints, retention,
//! witness, scheduled verification and sinks.

use std::path::PathBuf;

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
    /// ... or after this many seconds with new events (default 5): the
    /// most an instance killed at once can leave unwitnessed.
    pub checkpoint_secs: u64,
    /// Days events are kept before they may be purged (default 2196: six years).
    pub retention_days: u32,
    /// The audit witness's directory (S-AUD-7); default
    /// `<data_dir>/audit-witness`. Give it a volume of its own, out of
    /// reach of whoever can write to the database.
    pub witness_dir: Option<PathBuf>,
    /// Seconds between scheduled verifications of the trail by a running
    /// server (default 3600; incremental, with a full pass first and every
    /// [`crate::audit::FULL_VERIFY_EVERY`]th run); 0 turns them off.
    pub verify_interval_secs: u64,
    /// Where the trail is streamed as it is written (`[[audit.sinks]]`,
    /// S-AUD-8).
    pub sinks: Vec<super::SinkConfig>,
    /// The network address clients reach Clarity's server at (a host name,
    /// IP address or URL), named as the server's address in FHIR
    /// AuditEvent exports (S-AUD-5). IHE BALP profiles need it: unset, no
    /// exported event declares one. Events do not record it, so it must be
    /// one address for the whole deployment.
    pub server_address: Option<String>,
}

impl Default for AuditConfig {
    fn default() -> Self {
        AuditConfig {
            queue: 65_536,
            checkpoint_every: 1000,
            checkpoint_secs: 5,
            retention_days: crate::audit::DEFAULT_RETENTION_DAYS,
            witness_dir: None,
            verify_interval_secs: 3600,
            sinks: Vec::new(),
            server_address: None,
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
        if self.verify_interval_secs > 604_800 {
            return Err(Error::config(
                "audit.verify_interval_secs",
                "must be 0 (off) or at most 604800 (a week)",
            ));
        }
        if self
            .witness_dir
            .as_ref()
            .is_some_and(|d| d.as_os_str().is_empty())
        {
            return Err(Error::config("audit.witness_dir", "must not be empty"));
        }
        super::sink::validate_all(&self.sinks)?;
        if self
            .server_address
            .as_ref()
            .is_some_and(|a| a.is_empty() || a.len() > 255 || a.chars().any(char::is_whitespace))
        {
            return Err(Error::config(
                "audit.server_address",
                "must be a host name, IP address or URL: not empty, no spaces, at most 255 characters",
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
