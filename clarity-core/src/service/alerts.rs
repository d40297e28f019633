//! Security alerts: events an operator must hear about at once.

use serde::Serialize;
use uuid::Uuid;

/// What happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum AlertKind {
    /// A clinician used break-glass access.
    BreakGlass,
    /// An account reached its failed-login limit.
    AccountLocked,
    /// A used refresh token was presented again; its session was ended.
    RefreshTokenReuse,
    /// An audit chain failed verification.
    AuditTampered,
    /// Stored data failed its integrity check (a ciphertext moved or altered).
    IntegrityFailure,
}

/// An alert. Identifiers only: never PHI, never secrets.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Alert {
    /// What happened.
    pub kind: AlertKind,
    /// The user concerned.
    pub user_id: Option<Uuid>,
    /// The patient concerned.
    pub patient_id: Option<Uuid>,
}

/// Receives security alerts. Implementations must return quickly.
pub trait AlertHook: Send + Sync + std::fmt::Debug {
    /// Called once per alert.
    fn alert(&self, alert: &Alert);
}

/// The default hook: an error-level log line per alert, and a count per
/// kind (for metrics).
#[derive(Debug, Default)]
pub struct LogAlerts {
    counts: [std::sync::atomic::AtomicU64; 5],
}

impl LogAlerts {
    fn slot(kind: AlertKind) -> usize {
        match kind {
            AlertKind::BreakGlass => 0,
            AlertKind::AccountLocked => 1,
            AlertKind::RefreshTokenReuse => 2,
            AlertKind::AuditTampered => 3,
            AlertKind::IntegrityFailure => 4,
        }
    }

    /// Counts an alert without logging it.
    pub(crate) fn count_only(&self, kind: AlertKind) {
        self.counts[Self::slot(kind)].fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }

    /// Alerts of `kind` raised so far.
    pub fn count(&self, kind: AlertKind) -> u64 {
        self.counts[Self::slot(kind)].load(std::sync::atomic::Ordering::Relaxed)
    }
}

impl AlertHook for LogAlerts {
    fn alert(&self, alert: &Alert) {
        self.counts[Self::slot(alert.kind)].fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        tracing::error!(
            alert = ?alert.kind,
            user_id = ?alert.user_id,
            patient_id = ?alert.patient_id,
            "security alert"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_hook_counts_each_kind() {
        let hook = LogAlerts::default();
        let alert = |kind| Alert {
            kind,
            user_id: None,
            patient_id: None,
        };
        hook.alert(&alert(AlertKind::BreakGlass));
        hook.alert(&alert(AlertKind::BreakGlass));
        hook.alert(&alert(AlertKind::AuditTampered));
        assert_eq!(hook.count(AlertKind::BreakGlass), 2);
        assert_eq!(hook.count(AlertKind::AuditTampered), 1);
        assert_eq!(hook.count(AlertKind::AccountLocked), 0);
    }
}
