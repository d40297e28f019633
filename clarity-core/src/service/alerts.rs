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
    /// The key provider could not renew or replace its access to the key
    /// service (an OpenBao / Vault token about to expire, S-KEY-4).
    KeyAccessFailing,
}

impl AlertKind {
    /// Every kind, in a fixed order.
    pub const ALL: [AlertKind; 6] = [
        AlertKind::BreakGlass,
        AlertKind::AccountLocked,
        AlertKind::RefreshTokenReuse,
        AlertKind::AuditTampered,
        AlertKind::IntegrityFailure,
        AlertKind::KeyAccessFailing,
    ];
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
    counts: [std::sync::atomic::AtomicU64; AlertKind::ALL.len()],
}

impl LogAlerts {
    fn slot(kind: AlertKind) -> usize {
        AlertKind::ALL
            .iter()
            .position(|k| *k == kind)
            .unwrap_or_default()
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
            // Absent ids are left out, not written as `None`.
            user_id = alert.user_id.map(tracing::field::display),
            patient_id = alert.patient_id.map(tracing::field::display),
            "security alert"
        );
    }
}

/// Where a service's alerts go: its hook, which may be replaced, and a count
/// per kind. Shared with the parts that raise alerts on their own (the key
/// provider's keeper).
#[derive(Debug)]
pub(crate) struct Alerting {
    hook: std::sync::RwLock<std::sync::Arc<dyn AlertHook>>,
    counts: LogAlerts,
}

impl Alerting {
    /// Alerts logged by [`LogAlerts`].
    pub(crate) fn new() -> Alerting {
        Alerting {
            hook: std::sync::RwLock::new(std::sync::Arc::new(LogAlerts::default())),
            counts: LogAlerts::default(),
        }
    }

    /// Sends alerts to `hook` from now on.
    pub(crate) fn set_hook(&self, hook: std::sync::Arc<dyn AlertHook>) {
        *self.hook.write().unwrap_or_else(|p| p.into_inner()) = hook;
    }

    /// Counts an alert and hands it to the hook.
    pub(crate) fn raise(&self, alert: &Alert) {
        self.counts.count_only(alert.kind);
        let hook = std::sync::Arc::clone(&self.hook.read().unwrap_or_else(|p| p.into_inner()));
        hook.alert(alert);
    }

    /// Alerts of `kind` raised so far.
    pub(crate) fn count(&self, kind: AlertKind) -> u64 {
        self.counts.count(kind)
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
