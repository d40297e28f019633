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

/// The default hook: an error-level log line per alert.
#[derive(Debug, Clone, Copy, Default)]
pub struct LogAlerts;

impl AlertHook for LogAlerts {
    fn alert(&self, alert: &Alert) {
        tracing::error!(
            alert = ?alert.kind,
            user_id = ?alert.user_id,
            patient_id = ?alert.patient_id,
            "security alert"
        );
    }
}
