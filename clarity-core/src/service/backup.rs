//! Backups through the service: authorised (admins, like keys) and audited.
//! The archive format and restore live in [`crate::backup`].

use std::path::Path;

use super::Clarity;
use super::auditing::Ev;
use crate::access::{Action, Principal};
use crate::audit::{AuditAction, AuditOutcome};
use crate::backup::{Manifest, ProgressFn, RestoreReport};
use crate::error::Result;

impl Clarity {
    /// Writes an encrypted, signed backup of the whole store to `out`, which
    /// must not exist (S-BAK-1), and records it, with the KEK versions it
    /// needs, in the backup catalog beside the erasure ledger, so that
    /// [`Clarity::retire_keys`] keeps those versions (S-BAK-2). Admins only;
    /// audited.
    ///
    /// # Errors
    /// [`crate::error::Error::PermissionDenied`]; file, key and backend errors,
    /// [`crate::error::Error::Key`] when the catalog cannot be written (a
    /// partial or unrecorded archive is removed).
    pub async fn backup(
        &self,
        principal: &Principal,
        out: &Path,
        progress: &ProgressFn<'_>,
    ) -> Result<Manifest> {
        let result = async {
            let reason = self.authorize(principal, &Action::ManageKeys, None).await?;
            let store = self.phi.store();
            let keys = self.phi.keys();
            let manifest =
                crate::backup::write(&self.config, store.as_ref(), keys.as_ref(), out, progress)
                    .await?;
            Ok((manifest, reason))
        }
        .await;
        if let Ok((manifest, _)) = &result {
            tracing::info!(backup_id = %manifest.backup_id, chunks = manifest.chunks, "backup written");
        }
        let ev = Ev::of("security", "backup.create", AuditAction::Execute);
        self.audited(principal, ev, result).await
    }

    /// Restores the archive at `path` into the empty store that `config`
    /// names, after verifying everything (S-BAK-1), then records the restore
    /// in the restored store's audit trail. For the local operator (the
    /// `clarity restore` command): stop Clarity first.
    ///
    /// # Errors
    /// As [`crate::backup::verify`]; [`crate::error::Error::InvalidInput`]
    /// when the target holds data, the schema versions differ, the rows do
    /// not match the manifest or an audit chain fails to verify. Nothing is
    /// swapped in then.
    pub async fn restore(
        config: &crate::config::Config,
        path: &Path,
        progress: &ProgressFn<'_>,
    ) -> Result<RestoreReport> {
        let report = crate::backup::restore_unrecorded(config, path, progress).await?;
        let clarity = Clarity::open(config.clone()).await?;
        let recorded = clarity.record_restore(&report).await;
        clarity.shutdown().await;
        recorded?;
        Ok(report)
    }

    /// Records a finished restore in the restored store's audit trail.
    pub(crate) async fn record_restore(&self, report: &RestoreReport) -> Result<()> {
        let operator = self.operator_principal();
        let ev = Ev::of("security", "backup.restore", AuditAction::Create);
        let reason = Some(format!(
            "backup_id={} erased_patients_skipped={}",
            report.backup_id, report.erased_patients_skipped
        ));
        self.record(Some(&operator), None, ev, AuditOutcome::Success, reason)
            .await
    }
}
