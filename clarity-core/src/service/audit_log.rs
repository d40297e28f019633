//! The audit log as callers see it: query, verify, export, purge — each
//! itself audited.

use chrono::{DateTime, Utc};

use super::Clarity;
use super::auditing::Ev;
use crate::access::{Action, Principal};
use std::collections::BTreeMap;

use crate::audit::{
    AuditAction, AuditEvent, AuditFilter, ChainReport, FULL_VERIFY_EVERY, purge, to_fhir,
    verify_incremental,
};
use crate::error::Result;
use crate::model::{Page, PageRequest};

use super::{Alert, AlertKind};

impl Clarity {
    /// Audit events matching `filter`, oldest first (auditors, admins).
    ///
    /// # Errors
    /// [`crate::error::Error::PermissionDenied`]; [`crate::error::Error::InvalidInput`] for a bad page.
    pub async fn audit_events(
        &self,
        principal: &Principal,
        filter: &AuditFilter,
        page: &PageRequest,
    ) -> Result<Page<AuditEvent>> {
        let result = async {
            let reason = self.authorize(principal, &Action::ReadAudit, None).await?;
            let limit = page.limit()?;
            let mut items = self
                .audit_store
                .query_audit(filter, page.after()?, limit + 1)
                .await?;
            let more = items.len() > limit;
            items.truncate(limit);
            let next_cursor = more
                .then(|| items.last().map(|e| e.id.to_string()))
                .flatten();
            Ok((Page { items, next_cursor }, reason))
        }
        .await;
        let ev = Ev::of("admin", "audit.query", AuditAction::Read);
        self.audited(principal, ev, result).await
    }

    /// Verifies every audit chain (auditors, admins), each held to what
    /// the audit witness saw of it (S-AUD-3, S-AUD-7). Besides one report
    /// per chain, problems of the store as a whole come as reports under
    /// the nil chain id: a damaged or forged witness line, and a store that
    /// holds accounts or patients but no audit trail. Anything not ok
    /// raises an `AuditTampered` alert.
    ///
    /// # Errors
    /// [`crate::error::Error::PermissionDenied`]; backend errors; an
    /// unreadable witness.
    pub async fn verify_audit(&self, principal: &Principal) -> Result<Vec<ChainReport>> {
        self.verify_as(principal, false).await
    }

    /// The scheduled verification of a running server, as the local
    /// operator and audited under its id: the first run and every
    /// [`crate::audit::FULL_VERIFY_EVERY`]th are full ([`Clarity::verify_audit`]); the
    /// others read only the events written since the last run left each
    /// chain intact, and check everything else in full (docs/audit.md,
    /// "Completeness: the witness").
    ///
    /// # Errors
    /// As [`Clarity::verify_audit`].
    pub async fn verify_audit_scheduled(&self) -> Result<Vec<ChainReport>> {
        let run = self
            .scheduled_verifications
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let incremental = !run.is_multiple_of(FULL_VERIFY_EVERY);
        self.verify_as(&self.operator_principal(), incremental)
            .await
    }

    /// An audited verification by `principal`, in full or incremental.
    async fn verify_as(
        &self,
        principal: &Principal,
        incremental: bool,
    ) -> Result<Vec<ChainReport>> {
        let result = async {
            let reason = self.authorize(principal, &Action::ReadAudit, None).await?;
            Ok((self.verify_trail(incremental).await?, reason))
        }
        .await;
        let ev = Ev::of("security", "audit.verify", AuditAction::Execute);
        self.audited(principal, ev, result).await
    }

    /// Counts a verification that could not run (the database or the
    /// witness unreadable) as a failed one, and raises the alert.
    pub fn count_failed_verification(&self) {
        self.counters.record_verification(false);
        self.raise(&Alert {
            kind: AlertKind::AuditTampered,
            user_id: None,
            patient_id: None,
        });
    }

    /// Verifies every chain, in full or past the heads the last run left
    /// intact; keeps the heads of this run for the next incremental one.
    async fn verify_trail(&self, incremental: bool) -> Result<Vec<ChainReport>> {
        let retention = chrono::Duration::days(i64::from(self.config.audit.retention_days));
        let cutoff = self.clock.now() - retention;
        let (witness, keys) = (self.witness.clone(), self.audit_keys.clone());
        let witnessed = tokio::task::spawn_blocking(move || witness.load(&keys))
            .await
            .map_err(|_| crate::error::Error::internal("cannot read the audit witness"))??;
        let from = if incremental {
            self.verified_heads
                .lock()
                .map(|heads| heads.clone())
                .unwrap_or_default()
        } else {
            BTreeMap::new()
        };
        let (mut reports, heads) = verify_incremental(
            self.audit_store.as_ref(),
            &self.audit_keys,
            cutoff,
            &witnessed.chains,
            &from,
        )
        .await?;
        if let Ok(mut kept) = self.verified_heads.lock() {
            *kept = heads;
        }
        for problem in &witnessed.problems {
            reports.push(store_report(format!(
                "the audit witness is damaged: {problem}"
            )));
        }
        // This instance's own chain began after it opened: when the store
        // held data then, a trail from before it must exist.
        let own = self.audit_chain();
        let trail = reports
            .iter()
            .any(|r| r.chain_id != own && (r.events > 0 || r.checkpoints > 0));
        if self.opened_on_data && !trail {
            reports.push(store_report(
                "the store held accounts or patients when this instance opened it, \
                 but there is no audit trail from before"
                    .to_string(),
            ));
        }
        for report in reports.iter().filter(|r| !r.ok) {
            tracing::error!(chain = %report.chain_id, seq = report.first_bad_seq, problem = report.problem.as_deref(), "audit chain failed verification");
            self.raise(&Alert {
                kind: AlertKind::AuditTampered,
                user_id: None,
                patient_id: None,
            });
        }
        self.counters
            .record_verification(reports.iter().all(|r| r.ok));
        Ok(reports)
    }

    /// The events matching `filter` as FHIR R4 AuditEvent NDJSON (one
    /// resource per line), at most `limit` events (auditors, admins). Each
    /// declares the IHE BALP profile it conforms to, if any
    /// ([`crate::audit::to_fhir`], docs/audit.md).
    ///
    /// # Errors
    /// [`crate::error::Error::PermissionDenied`]; backend errors.
    pub async fn export_audit_fhir(
        &self,
        principal: &Principal,
        filter: &AuditFilter,
        limit: usize,
    ) -> Result<String> {
        let result = async {
            let reason = self.authorize(principal, &Action::ReadAudit, None).await?;
            let mut out = String::new();
            let mut after = None;
            let mut written = 0;
            let server = self.config.audit.server_address.as_deref();
            while written < limit {
                let batch = self
                    .audit_store
                    .query_audit(filter, after, (limit - written).min(1000))
                    .await?;
                let Some(last) = batch.last() else { break };
                after = Some(last.id);
                for event in &batch {
                    out.push_str(&to_fhir(event, server).to_string());
                    out.push('\n');
                }
                written += batch.len();
            }
            Ok((out, reason))
        }
        .await;
        let ev = Ev::of("admin", "audit.export", AuditAction::Read);
        self.audited(principal, ev, result).await
    }

    /// Deletes audit events recorded before `before` (admins); refuses
    /// events younger than `audit.retention_days` (S-AUD-6).
    ///
    /// # Errors
    /// [`crate::error::Error::PermissionDenied`]; [`crate::error::Error::InvalidInput`].
    pub async fn purge_audit(&self, principal: &Principal, before: DateTime<Utc>) -> Result<u64> {
        let result = async {
            let reason = self.authorize(principal, &Action::PurgeAudit, None).await?;
            let now = self.clock.now();
            let purged = purge(
                self.audit_store.as_ref(),
                before,
                now,
                self.config.audit.retention_days,
            )
            .await?;
            Ok((purged, reason))
        }
        .await;
        let ev = Ev::of("admin", "audit.purge", AuditAction::Delete);
        self.audited(principal, ev, result).await
    }
}

/// A failed report about the store as a whole, under the nil chain id.
fn store_report(problem: String) -> ChainReport {
    ChainReport {
        chain_id: uuid::Uuid::nil(),
        events: 0,
        checkpoints: 0,
        last_seq: 0,
        witnessed_seq: None,
        ok: false,
        first_bad_seq: None,
        problem: Some(problem),
    }
}
