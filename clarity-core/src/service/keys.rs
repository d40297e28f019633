//! Key management: the status of the key-encryption keys, and rotation
//! (S-KEY-2): a new KEK version, every data key re-wrapped under it in
//! batches, records untouched (their associated data names the DEK version,
//! not the KEK's). Old KEK versions stay available for unwrapping until
//! they are retired, which keeps the versions recorded backups still need
//! unless forced (S-BAK-2).

use serde::Serialize;

use super::Clarity;
use super::auditing::Ev;
use crate::access::{Action, Principal};
use crate::audit::{AuditAction, AuditOutcome};
use crate::backup::{BackupCatalog, RecordedBackup, in_words};
use crate::crypto::WrappedKey;
use crate::crypto::schedule::meta;
use crate::error::{Error, Result};
use crate::model::DataKeyRow;

/// Data keys re-wrapped per batch.
const BATCH: usize = 500;
/// The token key's version as kept in the store's metadata.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
struct TokenKeyState {
    version: u32,
    /// Until when the previous version is still accepted.
    previous_until: chrono::DateTime<chrono::Utc>,
}

/// The token keys in effect for a store: version 1, or the version its
/// last token-key rotation recorded (with the previous version's overlap).
pub(super) async fn token_keys(
    root: &crate::crypto::Key,
    auth: &crate::config::AuthConfig,
    store: &dyn crate::store::Store,
) -> Result<crate::auth::TokenKeys> {
    match stored_token_state(store).await? {
        None => crate::auth::TokenKeys::new(root, auth),
        Some(state) => crate::auth::TokenKeys::with_version(
            root,
            auth,
            state.version,
            Some(state.previous_until),
        ),
    }
}

/// The token key's state the last rotation recorded in `store`, if any.
async fn stored_token_state(store: &dyn crate::store::Store) -> Result<Option<TokenKeyState>> {
    match store.get_meta(meta::TOKEN_KEY).await? {
        None => Ok(None),
        Some(json) => serde_json::from_str(&json)
            .map(Some)
            .map_err(|_| crate::error::Error::Integrity),
    }
}

/// What a token-key rotation did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TokenRotation {
    /// The version new access tokens are issued under.
    pub version: u32,
    /// Tokens of the previous version are accepted until then (one token lifetime).
    pub previous_accepted_until: chrono::DateTime<chrono::Utc>,
}

/// How many data keys one KEK version wraps.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct KekUsage {
    /// The KEK version.
    pub kek_version: i32,
    /// Data keys it wraps.
    pub data_keys: u64,
}

/// `GET /v1/admin/keys`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct KeyStatus {
    /// The key provider (`local`, ...).
    pub provider: &'static str,
    /// Whether the provider serves keys now; why not, when it does not.
    pub provider_error: Option<String>,
    /// The provider's access to its key service (its token), when it keeps one.
    pub access: Option<crate::crypto::AccessStatus>,
    /// The KEK version new data keys are wrapped with (0 when the provider
    /// cannot be asked).
    pub current_kek_version: i32,
    /// Every KEK version the provider holds (none when it cannot be asked).
    pub kek_versions: Vec<i32>,
    /// Data keys per KEK version.
    pub usage: Vec<KekUsage>,
    /// The access-token key version new tokens are issued under.
    pub token_key_version: u32,
    /// After a token-key rotation: until when tokens of the previous
    /// version are still accepted.
    pub token_previous_accepted_until: Option<chrono::DateTime<chrono::Utc>>,
    /// The audit key version chains started from now on are written under.
    pub audit_key_version: u32,
}

/// What a retirement did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RetirementReport {
    /// KEK versions retired (unusable from now on).
    pub retired: Vec<i32>,
    /// KEK versions still available.
    pub kek_versions: Vec<i32>,
    /// Recorded backups that need a version retired by this (forced)
    /// retirement: from now on they restore only with a copy of the keys
    /// from before it (S-BAK-2). Empty unless forced.
    pub stranded_backups: Vec<RecordedBackup>,
}

/// Backups named in a refusal, at most; the rest are counted.
const NAMED_BACKUPS: usize = 5;

/// What a rotation did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RotationReport {
    /// The KEK version every data key is wrapped with now.
    pub kek_version: i32,
    /// `true` when a new version was made; `false` when an interrupted
    /// rotation was finished instead.
    pub new_version: bool,
    /// Data keys re-wrapped by this call.
    pub rewrapped: u64,
    /// Data keys that failed to unwrap (altered or foreign rows); they stay
    /// on their old version and raise an integrity alert each. Repair or
    /// erase them, then run the rotation again to finish.
    pub failed: u64,
}

impl Clarity {
    /// The KEK versions and how many data keys each wraps (admins).
    ///
    /// # Errors
    /// [`crate::error::Error::PermissionDenied`]; provider and backend errors.
    pub async fn key_status(&self, principal: &Principal) -> Result<KeyStatus> {
        let result = async {
            let reason = self.authorize(principal, &Action::ManageKeys, None).await?;
            let keys = self.phi.keys();
            let store = self.phi.store();
            let token = stored_token_state(store.as_ref()).await?;
            let status = KeyStatus {
                provider: keys.name(),
                provider_error: keys.check().await.err().map(|e| e.to_string()),
                access: keys.access(),
                // Reported as unknown (0, none) while the provider is down.
                current_kek_version: keys.current_kek_version().await.unwrap_or_default(),
                kek_versions: keys.kek_versions().await.unwrap_or_default(),
                usage: self
                    .phi
                    .store()
                    .data_keys_by_kek()
                    .await?
                    .into_iter()
                    .map(|(kek_version, data_keys)| KekUsage {
                        kek_version,
                        data_keys,
                    })
                    .collect(),
                token_key_version: token.as_ref().map_or(1, |t| t.version),
                token_previous_accepted_until: token.map(|t| t.previous_until),
                audit_key_version: crate::vault::audit_key_version(store.as_ref()).await?,
            };
            Ok((status, reason))
        }
        .await;
        let ev = Ev::of("security", "keys.status", AuditAction::Read);
        self.audited(principal, ev, result).await
    }

    /// Rotates the KEK (admins): makes a new version current and re-wraps
    /// every data key under it, calling `progress` with the running count
    /// after each batch. If data keys are still wrapped by an older version
    /// (an earlier rotation was interrupted), it finishes that one instead of
    /// making another version: rotation is resumable.
    ///
    /// # Errors
    /// [`crate::error::Error::PermissionDenied`]; provider and backend errors (what
    /// was re-wrapped stays re-wrapped; run it again to finish).
    pub async fn rotate_keys(
        &self,
        principal: &Principal,
        progress: &(dyn Fn(u64) + Send + Sync),
    ) -> Result<RotationReport> {
        let result = async {
            let reason = self.authorize(principal, &Action::ManageKeys, None).await?;
            Ok((self.rotate_and_rewrap(principal, progress).await?, reason))
        }
        .await;
        if let Ok((report, _)) = &result {
            tracing::info!(
                kek_version = report.kek_version,
                new_version = report.new_version,
                rewrapped = report.rewrapped,
                "key rotation"
            );
        }
        let ev = Ev::of("security", "keys.rotate", AuditAction::Execute);
        self.audited(principal, ev, result).await
    }

    async fn rotate_and_rewrap(
        &self,
        principal: &Principal,
        progress: &(dyn Fn(u64) + Send + Sync),
    ) -> Result<RotationReport> {
        let keys = self.phi.keys();
        let store = self.phi.store();
        let current = keys.current_kek_version().await?;
        let unfinished = !store.data_keys_below(current, None, 1).await?.is_empty()
            || self.directory.kek_version(store.as_ref()).await? < current;
        let (version, new_version) = if unfinished {
            (current, false)
        } else {
            let version = keys.rotate().await?;
            // Durable before any re-wrapping, so even an interrupted rotation
            // leaves the new version on record.
            let ev = Ev::of("security", "keys.kek_created", AuditAction::Create);
            let reason = Some(format!("kek_version={version}"));
            self.record(Some(principal), None, ev, AuditOutcome::Success, reason)
                .await?;
            (version, true)
        };
        let mut rewrapped = 0;
        let mut failed = 0;
        let mut after = None;
        loop {
            let batch = store.data_keys_below(version, after, BATCH).await?;
            let Some(last) = batch.last() else { break };
            after = Some(last.patient_id);
            for row in batch {
                let context = row.patient_id.as_bytes();
                let old = WrappedKey {
                    kek_version: row.kek_version,
                    ciphertext: row.wrapped.clone(),
                };
                // One damaged key must not stop the others from moving; an
                // unavailable key service stops the run (resume it later).
                let new = match keys.rewrap(&old, context).await {
                    Ok(new) => new,
                    Err(e @ crate::error::Error::Unavailable { .. }) => return Err(e),
                    Err(e) => {
                        failed += 1;
                        tracing::error!(patient_id = %row.patient_id, error = %e, "data key could not be unwrapped during rotation");
                        self.raise(&super::Alert {
                            kind: super::AlertKind::IntegrityFailure,
                            user_id: None,
                            patient_id: Some(row.patient_id),
                        });
                        continue;
                    }
                };
                let updated = DataKeyRow {
                    kek_version: new.kek_version,
                    wrapped: new.ciphertext,
                    ..row.clone()
                };
                // `false`: erased or re-wrapped meanwhile; nothing to do.
                if store.rewrap_data_key(&updated, row.kek_version).await? {
                    rewrapped += 1;
                }
            }
            progress(rewrapped);
        }
        self.directory.rewrap(store.as_ref(), keys.as_ref()).await?;
        crate::vault::rewrap_root_record(store.as_ref(), keys.as_ref()).await?;
        Ok(RotationReport {
            kek_version: version,
            new_version,
            rewrapped,
            failed,
        })
    }

    /// Retires every KEK version that wraps nothing any more (admins): after
    /// a finished rotation, the versions below the oldest one in use are
    /// removed from the local keyring, or made undecryptable in transit
    /// (`min_decryption_version`). A version still wrapping a data key, the
    /// directory key or the root secret is never retired. A version that a
    /// backup recorded in the backup catalog needs is retired only when
    /// `force` is set (S-BAK-2); the report then names those backups, and so
    /// does the audit event (`keys.retire`).
    ///
    /// # Errors
    /// [`crate::error::Error::PermissionDenied`];
    /// [`crate::error::Error::InvalidInput`] when recorded backups need a
    /// version to retire and `force` is not set (the message names the
    /// backups and versions; nothing is retired); [`crate::error::Error::Key`]
    /// when the backup catalog cannot be read; provider and backend errors.
    pub async fn retire_keys(
        &self,
        principal: &Principal,
        force: bool,
    ) -> Result<RetirementReport> {
        let result = async {
            let reason = self.authorize(principal, &Action::ManageKeys, None).await?;
            Ok((self.retire_unused(force).await?, reason))
        }
        .await;
        let ev = Ev::of("security", "keys.retire", AuditAction::Delete);
        match result {
            Ok((report, _)) if !report.stranded_backups.is_empty() => {
                let reason = Some(forced_reason(&report));
                self.record(Some(principal), None, ev, AuditOutcome::Success, reason)
                    .await?;
                Ok(report)
            }
            result => self.audited(principal, ev, result).await,
        }
    }

    async fn retire_unused(&self, force: bool) -> Result<RetirementReport> {
        let keys = self.phi.keys();
        let oldest = self.oldest_kek_in_use().await?;
        let before = keys.kek_versions().await?;
        let retired: Vec<i32> = before.iter().copied().filter(|v| *v < oldest).collect();
        let stranded = BackupCatalog::in_dir(self.config.erasure_ledger_dir()).needing(&retired)?;
        if !stranded.is_empty() && !force {
            return Err(refusal(&retired, &stranded));
        }
        if !retired.is_empty() {
            keys.retire_below(oldest).await?;
            self.phi.forget_data_keys();
        }
        tracing::info!(
            below = oldest,
            retired = retired.len(),
            stranded_backups = stranded.len(),
            "key retirement"
        );
        Ok(RetirementReport {
            retired,
            kek_versions: keys.kek_versions().await?,
            stranded_backups: stranded,
        })
    }

    /// The oldest KEK version still wrapping a data key, the directory key
    /// or the transit root (the current one when nothing older does).
    async fn oldest_kek_in_use(&self) -> Result<i32> {
        let store = self.phi.store();
        let current = self.phi.keys().current_kek_version().await?;
        let mut oldest = self
            .directory
            .kek_version(store.as_ref())
            .await?
            .min(current);
        if let Some(first) = store.data_keys_by_kek().await?.first() {
            oldest = oldest.min(first.0);
        }
        if let Some(json) = store
            .get_meta(crate::crypto::schedule::meta::TRANSIT_ROOT_KEY)
            .await?
        {
            oldest = oldest.min(crate::crypto::RootRecord::parse(&json)?.kek_version);
        }
        Ok(oldest)
    }

    /// Rotates the access-token key (admins): new tokens are issued under
    /// the next version at once; tokens of the current version stay valid
    /// until they expire (one token lifetime), so live sessions go on. The
    /// version is recorded in the store, so a restart (or another instance
    /// starting) keeps it; a running instance that meets a token of the next
    /// version adopts that version. Audited.
    ///
    /// # Errors
    /// [`crate::error::Error::PermissionDenied`]; backend errors.
    pub async fn rotate_token_key(&self, principal: &Principal) -> Result<TokenRotation> {
        let result = async {
            let reason = self.authorize(principal, &Action::ManageKeys, None).await?;
            let store = self.phi.store();
            let recorded = stored_token_state(store.as_ref())
                .await?
                .map_or(1, |t| t.version);
            let (version, until) = self.tokens.rotate(recorded, self.clock.now())?;
            let state = TokenKeyState {
                version,
                previous_until: until,
            };
            let json = serde_json::to_string(&state)
                .map_err(|_| crate::error::Error::internal("encoding"))?;
            self.phi.store().put_meta(meta::TOKEN_KEY, &json).await?;
            let report = TokenRotation {
                version,
                previous_accepted_until: until,
            };
            Ok((report, reason))
        }
        .await;
        let ev = Ev::of("security", "keys.token_rotate", AuditAction::Execute);
        self.audited(principal, ev, result).await
    }

    /// Rotates the audit key (admins): audit chains started from now on
    /// (each instance starts a chain when it starts) are written under the
    /// next key version; existing chains, this instance's included, keep
    /// their version, and verification picks each chain's version, so every
    /// chain keeps verifying. Audited. Returns the new version.
    ///
    /// # Errors
    /// [`crate::error::Error::PermissionDenied`]; backend errors.
    pub async fn rotate_audit_key(&self, principal: &Principal) -> Result<u32> {
        let result = async {
            let reason = self.authorize(principal, &Action::ManageKeys, None).await?;
            let version =
                crate::vault::advance_audit_key(&self.audit_keys, self.phi.store().as_ref())
                    .await?;
            Ok((version, reason))
        }
        .await;
        let ev = Ev::of("security", "keys.audit_rotate", AuditAction::Execute);
        self.audited(principal, ev, result).await
    }
}

/// The refusal to retire `retired` while the `needing` recorded backups
/// need some of them: which versions, which backups (the newest
/// [`NAMED_BACKUPS`], the rest counted), and what to do.
fn refusal(retired: &[i32], needing: &[RecordedBackup]) -> Error {
    let wanted = |b: &RecordedBackup| -> Vec<i32> {
        let mut versions: Vec<i32> = b
            .kek_versions
            .iter()
            .copied()
            .filter(|v| retired.contains(v))
            .collect();
        versions.dedup();
        versions
    };
    let mut needed: Vec<i32> = needing.iter().flat_map(wanted).collect();
    needed.sort_unstable();
    needed.dedup();
    let named: Vec<String> = needing
        .iter()
        .rev()
        .take(NAMED_BACKUPS)
        .map(|b| {
            format!(
                "backup {} taken {} ({}) needs {}",
                b.backup_id,
                b.created_at
                    .to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                b.archive,
                in_words("KEK version", &wanted(b))
            )
        })
        .collect();
    let more = match needing.len().saturating_sub(NAMED_BACKUPS) {
        0 => String::new(),
        n => format!(" and {n} older"),
    };
    let (count, verb) = match needing.len() {
        1 => ("1 recorded backup".to_string(), "needs"),
        n => (format!("{n} recorded backups"), "need"),
    };
    let it = if needed.len() == 1 { "it" } else { "them" };
    Error::invalid(format!(
        "refused to retire {}: {count} still {verb} {it}: {}{more}; keep the keys while those backups are kept, or force the retirement (clarity keys retire --force) and keep a copy of the keys from before it with those backups",
        in_words("KEK version", &needed),
        named.join("; ")
    ))
}

/// Backup ids an audit reason names, at most; the rest are counted.
const AUDITED_BACKUPS: usize = 20;

/// The audit reason of a forced retirement: which recorded backups it
/// stranded (identifiers only; the newest [`AUDITED_BACKUPS`], the rest
/// counted).
fn forced_reason(report: &RetirementReport) -> String {
    let stranded = &report.stranded_backups;
    let ids: Vec<&str> = stranded
        .iter()
        .rev()
        .take(AUDITED_BACKUPS)
        .map(|b| b.backup_id.as_str())
        .collect();
    let more = match stranded.len().saturating_sub(AUDITED_BACKUPS) {
        0 => String::new(),
        n => format!(" and {n} older"),
    };
    let retired: Vec<String> = report.retired.iter().map(i32::to_string).collect();
    format!(
        "forced: retired KEK versions {} needed by recorded backups {}{more}",
        retired.join(","),
        ids.join(",")
    )
}
