//! The operations users call: [`Clarity`] ties the store, keys,
//! authentication and the policy point together. Every operation on PHI takes
//! the caller's [`Principal`] and is decided by [`crate::access::decide`]
//! before anything is decrypted.
//!
//! A patient the caller may not read answers `NotFound`, exactly like one
//! that does not exist; an action the caller may not take on a patient it can
//! read answers `PermissionDenied`.

mod accounts;
mod alerts;
mod audit_log;
mod auditing;
mod backup;
mod care;
mod credentials;
mod directory;
mod disclosures;
mod external;
mod keys;
mod password_reset;
mod patients;
mod records;
mod sessions;
mod stats;
mod users;

use std::sync::Arc;

pub use crate::auth::oidc::{OidcStats, Refusal};
pub use accounts::{AccessToken, ClientSecret, NewServiceAccount, SecretRotation};
pub use alerts::{Alert, AlertHook, AlertKind, LogAlerts};
pub use care::{BreakGlassGrant, BreakGlassRequest, CareTeamAssignment, GrantView};
pub use credentials::MfaEnrollment;
pub use disclosures::AccessLogRange;
pub use external::{IdentityLink, LinkedIdentity};
pub use keys::{KekUsage, KeyStatus, RetirementReport, RotationReport, TokenRotation};
pub use password_reset::{
    PASSWORD_RESET_SECS, PasswordChange, PasswordReset, PasswordResetRequest,
};
pub use records::{NewRecord, RecordUpdate};
pub use sessions::{LoginRequest, MfaCode, RefreshRequest, Tokens};
pub use stats::{CacheStatus, Stats};

/// Largest JSON request body the HTTP server reads, in bytes.
pub const MAX_REQUEST_BODY: usize = 2 * 1024 * 1024;
pub use users::{NewUser, SetupRequest, User, UserUpdate};

use crate::access::{Action, Policy, Principal, Reason, Relation, decide};
use crate::audit::{AuditKeys, AuditStore, AuditWriter, WriterSettings};
use crate::auth::{PasswordHasher, Throttle, TokenKeys};
use crate::cache::{RateKey, RouteClass};
use crate::clock::Clock;
use crate::config::Config;
use crate::crypto::schedule::{self, SubKey};
use crate::crypto::{Key, KeyProvider};
use crate::error::{Error, Result};
use crate::store::{Backends, IdentityStore};
use crate::timings::{Stage, StageTimes};
use crate::vault::{PhiStore, open_key_provider};

use self::directory::Directory;

/// The actor id of local operator actions (see [`Clarity::operator`]); no
/// user ever has it (user ids are UUIDv7).
pub const OPERATOR_ID: uuid::Uuid =
    uuid::Uuid::from_u128(0x0000_0000_0000_4000_8000_0000_0000_0001);

/// Opens the store that `config` names and applies its pending schema
/// migrations, without keys or any data access (the `clarity migrate`
/// command); returns the backend's name and the schema version.
///
/// # Errors
/// Configuration and backend errors.
pub async fn migrate(config: &Config) -> Result<(&'static str, i64)> {
    config.validate()?;
    let rows = crate::store::open(&config.store, &config.data_dir)
        .await?
        .rows;
    Ok((rows.backend(), rows.schema_version().await?))
}

/// A Clarity instance: open one per process (or per embedding handle).
pub struct Clarity {
    config: Arc<Config>,
    phi: PhiStore,
    identity: Arc<dyn IdentityStore>,
    directory: Directory,
    tokens: TokenKeys,
    hasher: PasswordHasher,
    pseudonym_key: Key,
    /// Keys the hashes of lookups recorded in the audit trail.
    query_key: Key,
    policy: Policy,
    clock: Arc<dyn Clock>,
    /// Verified access tokens by SHA-256 of the token: skips the PASETO
    /// check on the hot path. Sessions are still checked on every use.
    verified: crate::cache::ExpiringCache<
        [u8; 32],
        Arc<(crate::auth::AccessClaims, chrono::DateTime<chrono::Utc>)>,
    >,
    /// Verified identity-provider tokens by SHA-256 of the token (links,
    /// logouts and users are still checked on every use).
    verified_external: crate::cache::ExpiringCache<[u8; 32], Arc<crate::auth::oidc::ExternalToken>>,
    /// The configured OpenID Connect providers and their keys.
    oidc: Arc<crate::auth::oidc::OidcVerifier>,
    addresses: Throttle<std::net::IpAddr>,
    unknown_accounts: Throttle<[u8; 16]>,
    account_locks: crate::auth::KeyedLocks<[u8; 16]>,
    address_locks: crate::auth::KeyedLocks<std::net::IpAddr>,
    alerts: Arc<alerts::Alerting>,
    audit: AuditWriter,
    /// Fills the trail's query indexes off the commit path.
    audit_indexer: crate::audit::AuditIndexer,
    audit_store: Arc<dyn crate::audit::AuditStore>,
    audit_keys: AuditKeys,
    /// Where chains' progress is recorded outside the audit tables (S-AUD-7).
    witness: crate::audit::Witness,
    /// Where the trail is streamed (S-AUD-8).
    sinks: crate::audit::Sinks,
    /// Whether the store held accounts or patients when this instance
    /// opened it (S-AUD-7).
    opened_on_data: bool,
    /// Where the last verification left each chain intact, for the next
    /// incremental one.
    verified_heads:
        std::sync::Mutex<std::collections::BTreeMap<uuid::Uuid, crate::audit::VerifiedHead>>,
    /// Scheduled verifications run so far (every [`crate::audit::FULL_VERIFY_EVERY`]th is full).
    scheduled_verifications: std::sync::atomic::AtomicU64,
    counters: stats::Counters,
    times: StageTimes,
    caching: crate::cache::Caching,
    /// Where erasures are recorded for restores (S-KEY-3): every erasure
    /// takes the one path that writes it.
    erasure_ledger: crate::backup::ErasureLedger,
}

impl std::fmt::Debug for Clarity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Clarity")
            .field("backend", &self.phi.store().backend())
            .finish_non_exhaustive()
    }
}

impl Clarity {
    /// Opens the store and keys that `config` names.
    ///
    /// # Errors
    /// Configuration, key and backend errors (see [`PhiStore::open`]).
    pub async fn open(config: Config) -> Result<Clarity> {
        let backends = crate::store::open(&config.store, &config.data_dir).await?;
        let keys = open_key_provider(&config, backends.rows.as_ref()).await?;
        Self::with_parts(config, backends, keys, Arc::new(crate::clock::SystemClock)).await
    }

    /// [`Clarity::open`] for a store that must exist already: nothing is
    /// created (no database, no keyring) when it does not. For commands
    /// that read or maintain a store, so that a mistyped data directory is
    /// an error, not a new empty store.
    ///
    /// # Errors
    /// [`Error::Config`] naming where no store was found; as
    /// [`Clarity::open`] otherwise.
    pub async fn open_existing(config: Config) -> Result<Clarity> {
        if !crate::store::exists(&config.store, &config.data_dir).await? {
            let place = match config.store.backend {
                crate::store::Backend::Sqlite => config.sqlite_path().display().to_string(),
                crate::store::Backend::Postgres => match &config.store.postgres_schema {
                    Some(schema) => format!("the PostgreSQL schema {schema}"),
                    None => "the PostgreSQL database".to_string(),
                },
            };
            return Err(Error::config(
                "data_dir",
                format!(
                    "no Clarity store at {place}; this command creates none: check the data \
                     directory (--data-dir, CLARITY_DATA_DIR) or create the store with \
                     `clarity migrate` or `clarity serve`"
                ),
            ));
        }
        Self::open(config).await
    }

    /// Builds an instance from already opened parts (tests use a
    /// [`crate::clock::ManualClock`] and the in-memory backend here, through
    /// `testing::with_parts`). Erasures are recorded in the erasure ledger
    /// that `config` names, as with [`Clarity::open`].
    ///
    /// # Errors
    /// [`Error::Key`] when the keyring is not the store's.
    pub(crate) async fn with_parts(
        config: Config,
        backends: Backends,
        keys: Arc<dyn KeyProvider>,
        clock: Arc<dyn Clock>,
    ) -> Result<Clarity> {
        config.validate()?;
        let root = keys.root_key().await?;
        let alerts = Arc::new(alerts::Alerting::new());
        let raise_on = Arc::clone(&alerts);
        keys.on_access_failure(Arc::new(move || {
            raise_on.raise(&Alert {
                kind: AlertKind::KeyAccessFailing,
                user_id: None,
                patient_id: None,
            });
        }));
        let caching = crate::cache::open(
            &config.cache,
            &config.rate_limit,
            &config.store,
            schedule::derive(&root, SubKey::SharedCache)?,
        )?;
        crate::cache::watch_outside_changes(&caching.invalidator, &backends.rows);
        let rows: Arc<dyn crate::store::Store> = Arc::new(crate::cache::CachedStore::new(
            Arc::clone(&backends.rows),
            Arc::clone(&caching.invalidator),
        ));
        let identity: Arc<dyn IdentityStore> = Arc::new(crate::cache::CachedIdentity::new(
            Arc::clone(&backends.identity),
            Arc::clone(&caching.invalidator),
        ));
        let times = StageTimes::new();
        let phi = PhiStore::new(rows, Arc::clone(&keys))
            .await?
            .with_clock(Arc::clone(&clock))
            .with_stage_times(times.clone())
            .with_max_document_bytes(config.store.max_document_bytes)
            .with_data_key_cache(&config.keys)
            .with_fresh_reads(Arc::clone(&backends.rows), Arc::clone(&caching.invalidator));
        let directory = Directory::open(backends.rows.as_ref(), keys.as_ref()).await?;
        let tokens = keys::token_keys(&root, &config.auth, backends.rows.as_ref()).await?;
        let hasher = PasswordHasher::new(&config.auth)?;
        let pseudonym_key = schedule::derive(&root, SubKey::ResearchPseudonyms)?;
        let query_key = schedule::derive(&root, SubKey::AuditQueryHashes)?;
        let audit_keys = crate::vault::audit_keys(&root, backends.rows.as_ref()).await?;
        // Changes commit in their event's batch: the cache forgets what they
        // touched as each batch commits.
        let audit_writes: Arc<dyn AuditStore> = Arc::new(crate::cache::CachedAudit::new(
            Arc::clone(&backends.audit),
            Arc::clone(&caching.invalidator),
        ));
        // S-AUD-7: whether this instance opened a store that already held
        // data, which an audit trail from before it must then account for.
        let opened_on_data = !backends.identity.list_users(None, 1).await?.is_empty()
            || !backends
                .identity
                .list_patient_ids(None, 1)
                .await?
                .is_empty();
        // S-AUD-7: the witness must be writable; heads a killed predecessor
        // left unwitnessed are recorded before this instance's chain begins.
        let witness = crate::audit::Witness::in_dir(config.witness_dir());
        witness.check_writable()?;
        witness
            .record_predecessors(backends.audit.as_ref(), &audit_keys, clock.now())
            .await?;
        let audit = AuditWriter::start_timed(
            audit_writes,
            audit_keys.clone(),
            Arc::clone(&clock),
            WriterSettings {
                queue: config.audit.queue,
                checkpoint_every: config.audit.checkpoint_every,
                checkpoint_interval: std::time::Duration::from_secs(config.audit.checkpoint_secs),
            },
            times.clone(),
            Some(witness.clone()),
        );
        // S-AUD-8: the sinks stream what this and every other instance
        // writes; a fail-closed one holds this writer's events back.
        let sinks = match crate::audit::Sinks::start(
            &config.audit.sinks,
            Arc::clone(&backends.audit),
            Arc::clone(&clock),
            audit.chain_id(),
            config.audit.server_address.as_deref(),
        ) {
            Ok(sinks) => sinks,
            Err(e) => {
                audit.shutdown().await;
                return Err(e);
            }
        };
        audit.hold_for(sinks.gate());
        let audit_indexer = crate::audit::AuditIndexer::start(Arc::clone(&backends.audit));
        let erasure_ledger = crate::backup::ErasureLedger::in_dir(config.erasure_ledger_dir());
        let oidc = Arc::new(crate::auth::oidc::OidcVerifier::new(&config.auth.oidc)?);
        let free = config.auth.backoff_after_failures;
        let config_token_secs = config.auth.access_token_secs;
        Ok(Clarity {
            policy: Policy::from_kinds(&config.access.nurse_writable_kinds),
            config: Arc::new(config),
            phi,
            identity,
            directory,
            tokens,
            hasher,
            pseudonym_key,
            query_key,
            clock,
            verified: crate::cache::ExpiringCache::new(
                100_000,
                std::time::Duration::from_secs(config_token_secs),
            ),
            verified_external: crate::cache::ExpiringCache::new(
                100_000,
                std::time::Duration::from_secs(3600),
            ),
            oidc,
            addresses: Throttle::new(free),
            unknown_accounts: Throttle::new(free),
            account_locks: Default::default(),
            address_locks: Default::default(),
            alerts,
            audit,
            audit_indexer,
            audit_store: backends.audit,
            audit_keys,
            witness,
            sinks,
            opened_on_data,
            verified_heads: Default::default(),
            scheduled_verifications: Default::default(),
            counters: stats::Counters::default(),
            times,
            caching,
            erasure_ledger,
        })
    }

    /// Records every erasure in `ledger`, so that restoring a backup taken
    /// before an erasure leaves the erased patient unreadable (S-KEY-3).
    /// For tests only (feature `testing`): a store's erasures belong in the
    /// ledger its configuration names, which restores read.
    #[cfg(feature = "testing")]
    pub fn with_erasure_ledger(mut self, ledger: crate::backup::ErasureLedger) -> Self {
        self.erasure_ledger = ledger;
        self
    }

    /// Sends security alerts (break-glass, refresh-token reuse, lockouts,
    /// a key provider that cannot keep its access) to `hook`.
    pub fn with_alert_hook(self, hook: Arc<dyn AlertHook>) -> Self {
        self.alerts.set_hook(hook);
        self
    }

    /// The encrypted store underneath: for the test helpers only (every
    /// PHI access goes through the audited operations of [`Clarity`],
    /// S-API-1).
    #[cfg(feature = "testing")]
    pub(crate) fn phi(&self) -> &PhiStore {
        &self.phi
    }

    /// The storage backend's name: `memory`, `sqlite` or `postgres`.
    pub fn backend(&self) -> &'static str {
        self.phi.store().backend()
    }

    /// Readiness of each dependency: the database, then the key provider.
    pub async fn readiness(&self) -> (Result<()>, Result<()>) {
        tokio::join!(self.phi.store().ping(), self.phi.keys().check())
    }

    /// The principal of the local operator: whoever opened this handle from
    /// the configuration, and so holds the data directory and keys (the
    /// `clarity` command on the server, or an application embedding
    /// Clarity that bootstraps its first accounts). It holds the admin and
    /// auditor roles and never a PHI-reading role (S-AC-8); every call
    /// writes an `operator.session` audit event before the principal is
    /// handed out, and its actions are audited under the reserved id
    /// [`OPERATOR_ID`] with purpose `HSYSADMIN`.
    ///
    /// # Errors
    /// The audit write's error: no event, no principal.
    pub async fn operator(&self) -> Result<Principal> {
        let principal = self.operator_principal();
        let ev = auditing::Ev::of(
            "admin",
            "operator.session",
            crate::audit::AuditAction::Execute,
        );
        self.audited(&principal, ev, Ok(((), Reason::Role))).await?;
        Ok(principal)
    }

    /// [`Clarity::operator`] without its audit event: for operations that
    /// write their own event under the operator's id.
    pub(crate) fn operator_principal(&self) -> Principal {
        Principal {
            user_id: OPERATOR_ID,
            session_id: uuid::Uuid::nil(),
            roles: crate::model::RoleSet::from_roles([
                crate::model::Role::Admin,
                crate::model::Role::Auditor,
            ]),
            patient_id: None,
            mfa: false,
            identity: None,
            context: crate::model::RequestContext {
                purpose: Some("HSYSADMIN".into()),
                client_address: None,
                request_id: None,
            },
        }
    }

    /// Empties this instance's cache (after a change made directly in the
    /// database, behind Clarity's back). Other instances are told too.
    pub async fn clear_cache(&self) {
        self.caching
            .invalidator
            .invalidate(crate::cache::Invalidation::All)
            .await;
    }

    /// Every value in the cache as stored (sealed, in Redis): for
    /// inspection, such as the test that no PHI is readable there (S-AC-6).
    ///
    /// # Errors
    /// [`Error::Unavailable`] when a shared cache cannot be reached.
    #[cfg(feature = "testing")]
    pub async fn cache_contents(&self) -> Result<Vec<Vec<u8>>> {
        self.caching.invalidator.cache().contents().await
    }

    /// Counts one request of `class` by `key` (a client address, or an
    /// account) against its rate limit.
    ///
    /// # Errors
    /// [`Error::RateLimited`] with the seconds to wait when over the limit.
    pub async fn rate_limit(&self, class: RouteClass, key: RateKey) -> Result<()> {
        let Some(limiter) = &self.caching.limiter else {
            return Ok(());
        };
        // A shared limiter that fails falls back to local limits itself; an
        // error here would come from a limiter without fallback: let it pass
        // rather than refuse every request (limits protect capacity, not data).
        match limiter.check(class, key).await {
            Ok(crate::cache::RateLimitDecision::Limited(wait)) => {
                let index = RouteClass::ALL
                    .iter()
                    .position(|c| *c == class)
                    .unwrap_or(0);
                self.counters.rate_limited[index]
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                Err(Error::RateLimited {
                    retry_after_secs: wait.as_secs_f64().ceil().max(1.0) as u64,
                })
            }
            Ok(crate::cache::RateLimitDecision::Allowed) => Ok(()),
            Err(e) => {
                tracing::warn!(error = %e, "rate limiter unavailable; request let through");
                Ok(())
            }
        }
    }

    /// Counts an alert and hands it to the hook.
    fn raise(&self, alert: &Alert) {
        self.alerts.raise(alert);
    }

    /// The configuration in effect.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Writes queued audit events and a final checkpoint, then stops the
    /// audit writer and gives each audit sink a last chance to deliver:
    /// call before the process exits. Later operations fail.
    pub async fn shutdown(&self) {
        self.audit.shutdown().await;
        self.sinks.shutdown().await;
        self.audit_indexer.shutdown().await;
    }

    /// Each configured audit sink's progress as this instance sees it
    /// (S-AUD-8): delivered, failed, pending, and whether it is holding
    /// the service.
    pub fn audit_sinks(&self) -> Vec<crate::audit::SinkStatus> {
        self.sinks.statuses()
    }

    /// This instance's audit chain.
    pub fn audit_chain(&self) -> uuid::Uuid {
        self.audit.chain_id()
    }

    /// Audit events waiting to be written.
    pub fn audit_queue_depth(&self) -> usize {
        self.audit.queue_depth()
    }

    /// Whether the audit writer accepts events (readiness).
    pub fn audit_running(&self) -> bool {
        self.audit.is_running()
    }

    /// Readiness: the database answers and the key provider serves keys.
    ///
    /// # Errors
    /// The first dependency that is not ready.
    pub async fn check(&self) -> Result<()> {
        self.phi.check().await
    }

    /// Decides `action` for `principal`, with its relation to `patient`
    /// gathered from the store. Fails closed: a storage error is an error,
    /// never an allow (S-AC-7).
    async fn authorize(
        &self,
        principal: &Principal,
        action: &Action,
        patient: Option<uuid::Uuid>,
    ) -> Result<Reason> {
        self.times
            .time(
                Stage::Authorize,
                self.authorize_untimed(principal, action, patient),
            )
            .await
    }

    async fn authorize_untimed(
        &self,
        principal: &Principal,
        action: &Action,
        patient: Option<uuid::Uuid>,
    ) -> Result<Reason> {
        let relation = match patient {
            Some(id) => Some(self.relation(principal, id).await?),
            None => None,
        };
        let decision = decide(&self.policy, principal, action, relation);
        if decision.allow {
            return Ok(decision.reason);
        }
        // A patient the caller cannot read is indistinguishable from none (S-AC-3).
        if patient.is_some()
            && !decide(&self.policy, principal, &Action::ReadPatient, relation).allow
        {
            return Err(Error::NotFound { what: "patient" });
        }
        Err(Error::PermissionDenied)
    }

    /// The caller's relationship to a patient, now.
    async fn relation(&self, principal: &Principal, patient: uuid::Uuid) -> Result<Relation> {
        use crate::model::Role;
        let now = self.clock.now();
        let clinical =
            principal.roles.contains(Role::Clinician) || principal.roles.contains(Role::Nurse);
        let care_team = if clinical {
            self.identity
                .care_team_member(patient, principal.user_id)
                .await?
                .is_some_and(|m| m.expires_at.is_none_or(|end| end > now))
        } else {
            false
        };
        let break_glass = if principal.roles.contains(Role::Clinician) && !care_team {
            self.identity
                .grants_of_user(principal.user_id)
                .await?
                .iter()
                .any(|g| g.patient_id == patient && g.expires_at > now)
        } else {
            false
        };
        Ok(Relation {
            care_team,
            break_glass,
            own_record: principal.patient_id == Some(patient),
        })
    }
}
