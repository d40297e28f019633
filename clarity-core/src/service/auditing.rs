//! How the service writes its audit events: after the operation, before the
//! result is returned; if the event cannot be stored, the caller gets an
//! error and no data (S-AUD-2).

use uuid::Uuid;

use super::Clarity;
use crate::access::{Principal, Reason};
use crate::audit::{AuditAction, AuditOutcome, EventDraft};
use crate::error::{ErrorKind, Result};
use crate::model::Change;
use crate::model::RequestContext;

/// What an operation is, for its audit event.
#[derive(Debug, Clone)]
pub(super) struct Ev {
    pub(super) event_type: &'static str,
    pub(super) subtype: &'static str,
    pub(super) action: AuditAction,
    pub(super) patient: Option<Uuid>,
    pub(super) entity: Option<Uuid>,
    pub(super) query_hash: Option<String>,
}

impl Ev {
    /// A data-access event.
    pub(super) fn rest(subtype: &'static str, action: AuditAction) -> Self {
        Ev {
            event_type: "rest",
            subtype,
            action,
            patient: None,
            entity: None,
            query_hash: None,
        }
    }

    /// An event of another type (`login`, `logout`, `security`, `admin`).
    pub(super) fn of(event_type: &'static str, subtype: &'static str, action: AuditAction) -> Self {
        Ev {
            event_type,
            ..Ev::rest(subtype, action)
        }
    }

    pub(super) fn patient(mut self, id: Uuid) -> Self {
        self.patient = Some(id);
        self
    }

    pub(super) fn entity(mut self, id: Uuid) -> Self {
        self.entity = Some(id);
        self
    }
}

/// The event for `ev`, by `principal` (or `actor` when there is none).
pub(super) fn draft(
    principal: Option<&Principal>,
    actor: Option<Uuid>,
    ev: Ev,
    outcome: AuditOutcome,
    reason: Option<String>,
    context: RequestContext,
) -> EventDraft {
    EventDraft {
        event_type: ev.event_type,
        subtype: ev.subtype,
        action: ev.action,
        outcome,
        actor_id: principal.map(|p| p.user_id).or(actor),
        actor_roles: principal.map(|p| p.roles.to_csv()),
        patient_id: ev.patient,
        entity_id: ev.entity,
        query_hash: ev.query_hash,
        reason,
        context,
        identity: principal.and_then(|p| p.identity.clone()),
    }
}

impl Clarity {
    /// Records the event of an operation by `principal` and passes its
    /// result on only once the event is durable.
    pub(super) async fn audited<T>(
        &self,
        principal: &Principal,
        ev: Ev,
        result: Result<(T, Reason)>,
    ) -> Result<T> {
        let (outcome, reason) = match &result {
            Ok((_, reason)) => (AuditOutcome::Success, reason.as_str().to_string()),
            Err(e) => (
                AuditOutcome::of_error(e.kind()),
                e.kind().as_str().to_string(),
            ),
        };
        if matches!(&result, Err(e) if e.kind() == ErrorKind::Integrity) {
            // S-INT-1: a moved or altered ciphertext is a security event.
            self.raise(&super::Alert {
                kind: super::AlertKind::IntegrityFailure,
                user_id: Some(principal.user_id),
                patient_id: ev.patient,
            });
        }
        self.record(Some(principal), None, ev, outcome, Some(reason))
            .await?;
        result.map(|(value, _)| value)
    }

    /// Makes a prepared change together with its event, in one transaction
    /// (so a change is never stored without its event, nor an event of
    /// success without its change), and returns the prepared value once
    /// both are durable. A failed preparation is audited as
    /// [`Clarity::audited`] does; a change that fails when applied (a stale
    /// version, say) is stored as a failure event and its error returned.
    pub(super) async fn audited_change<T>(
        &self,
        principal: &Principal,
        ev: Ev,
        prepared: Result<(Change, T, Reason)>,
    ) -> Result<T> {
        let (change, value, reason) = match prepared {
            Ok(prepared) => prepared,
            Err(e) => return self.audited(principal, ev, Err(e)).await,
        };
        let event = draft(
            Some(principal),
            None,
            ev,
            AuditOutcome::Success,
            Some(reason.as_str().to_string()),
            principal.context.clone(),
        );
        // The cache drops what the change made stale as its batch commits
        // (cache::CachedAudit, on the write path).
        self.audit
            .append_change(event, change)
            .await
            .map(|()| value)
    }

    /// Appends one successful event per `(ev, reason)` for `principal`,
    /// together; returns once all are durable.
    pub(super) async fn record_all(
        &self,
        principal: &Principal,
        events: Vec<(Ev, String)>,
    ) -> Result<()> {
        let drafts = events
            .into_iter()
            .map(|(ev, reason)| {
                let context = principal.context.clone();
                draft(
                    Some(principal),
                    None,
                    ev,
                    AuditOutcome::Success,
                    Some(reason),
                    context,
                )
            })
            .collect();
        self.audit.append_all(drafts).await
    }

    /// Appends one event; returns once it is durable.
    pub(super) async fn record(
        &self,
        principal: Option<&Principal>,
        actor: Option<Uuid>,
        ev: Ev,
        outcome: AuditOutcome,
        reason: Option<String>,
    ) -> Result<()> {
        let context = principal.map(|p| p.context.clone()).unwrap_or_default();
        self.record_with_context(principal, actor, ev, outcome, reason, context)
            .await
    }

    /// [`Clarity::record`] for callers without a principal (login, setup).
    pub(super) async fn record_with_context(
        &self,
        principal: Option<&Principal>,
        actor: Option<Uuid>,
        ev: Ev,
        outcome: AuditOutcome,
        reason: Option<String>,
        context: RequestContext,
    ) -> Result<()> {
        self.audit
            .append(draft(principal, actor, ev, outcome, reason, context))
            .await
    }
}
