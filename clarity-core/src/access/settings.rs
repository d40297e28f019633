//! The `[access]` settings: break-glass and what nurses may write.

use serde::Deserialize;

use crate::error::{Error, Result};
use crate::model::RecordKind;

/// Access-control settings (`[access]`).
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct AccessConfig {
    /// Lifetime of a break-glass grant in seconds (default 14400, four hours).
    pub break_glass_secs: u64,
    /// Require a TOTP code with every break-glass request (default false).
    pub require_mfa_for_break_glass: bool,
    /// Record kinds a nurse may create and update (default `observation`, `note`, `vital-signs`).
    pub nurse_writable_kinds: Vec<String>,
}

impl Default for AccessConfig {
    fn default() -> Self {
        AccessConfig {
            break_glass_secs: 4 * 3600,
            require_mfa_for_break_glass: false,
            nurse_writable_kinds: vec!["observation".into(), "note".into(), "vital-signs".into()],
        }
    }
}

impl AccessConfig {
    /// Checks the `[access]` settings; errors name the key.
    ///
    /// # Errors
    /// [`Error::Config`] naming the first offending key.
    pub fn validate(&self) -> Result<()> {
        if !(1..=365 * 24 * 3600).contains(&self.break_glass_secs) {
            return Err(Error::config(
                "access.break_glass_secs",
                "must be between 1 second and one year",
            ));
        }
        for kind in &self.nurse_writable_kinds {
            RecordKind::new(kind).map_err(|_| {
                Error::config(
                    "access.nurse_writable_kinds",
                    "holds an invalid record kind",
                )
            })?;
        }
        Ok(())
    }
}
