//! The audit event: identifiers only, never PHI values or secrets (S-AUD-4),
//! shaped after FHIR R4 AuditEvent / IHE BALP.

use std::borrow::Cow;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::model::RequestContext;

/// What was done (FHIR `AuditEvent.action`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum AuditAction {
    /// `C`: create.
    Create,
    /// `R`: read, list, look up, export.
    Read,
    /// `U`: update.
    Update,
    /// `D`: delete, erase.
    Delete,
    /// `E`: execute (login, logout, break-glass, key operations).
    Execute,
}

impl AuditAction {
    /// The FHIR code.
    pub fn code(self) -> &'static str {
        match self {
            AuditAction::Create => "C",
            AuditAction::Read => "R",
            AuditAction::Update => "U",
            AuditAction::Delete => "D",
            AuditAction::Execute => "E",
        }
    }
}

/// How it went (FHIR `AuditEvent.outcome`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum AuditOutcome {
    /// `0`: success.
    Success,
    /// `4`: minor failure (denied, not found, bad input).
    MinorFailure,
    /// `8`: serious failure (the operation failed).
    SeriousFailure,
}

impl AuditOutcome {
    /// The FHIR code.
    pub fn code(self) -> &'static str {
        match self {
            AuditOutcome::Success => "0",
            AuditOutcome::MinorFailure => "4",
            AuditOutcome::SeriousFailure => "8",
        }
    }

    /// The outcome of an operation that failed with `kind`: denials,
    /// absences, conflicts and bad input are minor failures; the rest serious.
    pub fn of_error(kind: crate::error::ErrorKind) -> Self {
        use crate::error::ErrorKind;
        match kind {
            ErrorKind::NotFound
            | ErrorKind::PermissionDenied
            | ErrorKind::InvalidInput
            | ErrorKind::Conflict
            | ErrorKind::AlreadyExists
            | ErrorKind::Unauthenticated
            | ErrorKind::MfaRequired
            | ErrorKind::RateLimited => AuditOutcome::MinorFailure,
            _ => AuditOutcome::SeriousFailure,
        }
    }
}

/// An event as the service describes it, before it joins a chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventDraft {
    /// Event type: `rest` (data access), `login`, `logout`, `security`, `admin`.
    pub event_type: &'static str,
    /// What exactly, e.g. `patient.read`.
    pub subtype: &'static str,
    /// C/R/U/D/E.
    pub action: AuditAction,
    /// How it went.
    pub outcome: AuditOutcome,
    /// Who (user id), when known.
    pub actor_id: Option<Uuid>,
    /// The actor's roles (`clinician,nurse`).
    pub actor_roles: Option<String>,
    /// The patient concerned.
    pub patient_id: Option<Uuid>,
    /// The record, user or grant concerned.
    pub entity_id: Option<Uuid>,
    /// A hash of a query (lookups), never the query itself.
    pub query_hash: Option<String>,
    /// Why: the access decision's reason, or the kind of failure.
    pub reason: Option<String>,
    /// The request's context.
    pub context: RequestContext,
    /// The identity provider and subject the actor came with, if any.
    pub identity: Option<std::sync::Arc<crate::model::ExternalIdentity>>,
}

/// A stored audit event, linked into its writer's chain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AuditEvent {
    /// Event id (UUIDv7: sorts by time).
    pub id: Uuid,
    /// The writer's chain.
    pub chain_id: Uuid,
    /// Position in the chain, from 1.
    pub seq: i64,
    /// When (UTC, microseconds).
    pub recorded: DateTime<Utc>,
    /// Event type.
    pub event_type: Cow<'static, str>,
    /// Subtype.
    pub subtype: Cow<'static, str>,
    /// Action code.
    pub action: Cow<'static, str>,
    /// Outcome code.
    pub outcome: Cow<'static, str>,
    /// Purpose of use.
    pub purpose: Option<String>,
    /// Actor.
    pub actor_id: Option<Uuid>,
    /// Actor's roles.
    pub actor_roles: Option<String>,
    /// Client address.
    pub client_address: Option<String>,
    /// Patient.
    pub patient_id: Option<Uuid>,
    /// Entity.
    pub entity_id: Option<Uuid>,
    /// Query hash.
    pub query_hash: Option<String>,
    /// Reason.
    pub reason: Option<String>,
    /// Request id.
    pub request_id: Option<String>,
    /// For a caller who came with an identity provider's token: its issuer.
    pub actor_issuer: Option<String>,
    /// For a caller who came with an identity provider's token: the subject.
    pub actor_subject: Option<String>,
    /// MAC of the previous event (zeros for the first).
    #[serde(skip)]
    pub prev_mac: Vec<u8>,
    /// `HMAC(k_audit, prev_mac | canonical(event))`.
    #[serde(skip)]
    pub mac: Vec<u8>,
}

/// A signed statement that a chain reached `seq` with `mac`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    /// The chain.
    pub chain_id: Uuid,
    /// The last sequence number covered.
    pub seq: i64,
    /// That event's MAC.
    pub mac: Vec<u8>,
    /// When it was signed.
    pub signed_at: DateTime<Utc>,
    /// Ed25519 signature over `clarity/v1 checkpoint | chain | seq | mac`.
    pub signature: Vec<u8>,
}

/// Filters of an audit query; all given ones must match.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuditFilter {
    /// Events about this patient.
    pub patient_id: Option<Uuid>,
    /// Events by this user.
    pub actor_id: Option<Uuid>,
    /// Events with this subtype, e.g. `patient.read`.
    pub subtype: Option<String>,
    /// Events with this outcome code (`0`, `4`, `8`).
    pub outcome: Option<String>,
    /// Recorded at or after.
    pub from: Option<DateTime<Utc>>,
    /// Recorded before.
    pub to: Option<DateTime<Utc>>,
}
