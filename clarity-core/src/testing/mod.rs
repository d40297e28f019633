//! Test support (feature `testing`): harnesses for every backend, direct
//! access to stored rows for tamper tests, and the backend conformance suite.
//! Not for production: the feature opens ways around the audited service
//! (raw stores, the encrypting layer, key providers) for this workspace's
//! own tests and benchmarks.
//!
//! Services: tests that need PostgreSQL read `CLARITY_TEST_POSTGRES_URL`.
//! When it is unset they print a loud `SKIPPED` line and pass; in CI
//! (`CI=true`) an unset variable fails the test instead. Each PostgreSQL
//! harness works in its own freshly created schema, dropped afterwards.

pub mod conformance;
pub mod fuzz;
mod identity_conformance;
pub mod matrix;
mod openbao;
#[cfg(feature = "postgres")]
mod query_plans;
pub(crate) mod raw;

use std::sync::Arc;

pub use openbao::OpenBao;
pub use raw::RawAccess;

use crate::audit::AuditStore;
use crate::clock::{Clock, SystemClock};
use crate::config::Config;
use crate::crypto::{KeyProvider, LocalKeyring};
use crate::service::Clarity;
use crate::store::{Backends, IdentityStore, MemoryStore, Store};
use crate::vault::PhiStore;

/// Environment variable naming the PostgreSQL server for tests.
pub const POSTGRES_URL_VAR: &str = "CLARITY_TEST_POSTGRES_URL";

/// Environment variable naming the OpenBao server for transit tests.
pub const OPENBAO_ADDR_VAR: &str = "CLARITY_TEST_OPENBAO_ADDR";
/// Environment variable holding a token of that server with transit rights.
pub const OPENBAO_TOKEN_VAR: &str = "CLARITY_TEST_OPENBAO_TOKEN";
/// Environment variable naming the PEM file of the CA that signed that
/// server's certificate, for an `https://` address (`scripts/test` starts
/// OpenBao with TLS).
pub const OPENBAO_CA_CERT_VAR: &str = "CLARITY_TEST_OPENBAO_CA_CERT";

/// Environment variable naming the SoftHSM2 PKCS#11 module for PKCS#11
/// tests (e.g. `/usr/lib/softhsm/libsofthsm2.so`). `SOFTHSM2_CONF` must
/// name a configuration whose `directories.tokendir` is a scratch directory
/// (`scripts/test` writes one): every test creates a token of its own there.
pub const SOFTHSM2_MODULE_VAR: &str = "CLARITY_TEST_SOFTHSM2_MODULE";

/// Environment variable naming the KMS endpoint for KMS tests (a `moto_server`
/// on a loopback port, which `scripts/test` starts). The AWS credentials
/// come from the standard chain: `scripts/test` sets `AWS_ACCESS_KEY_ID`
/// and `AWS_SECRET_ACCESS_KEY` to dummy values and
/// `AWS_EC2_METADATA_DISABLED=true`.
pub const KMS_ENDPOINT_VAR: &str = "CLARITY_TEST_KMS_ENDPOINT";

/// The user PIN of the tokens [`pkcs11_settings`] creates.
pub const TEST_PKCS11_PIN: &str = "clarity-test-pin-1234";

/// Settings for a fresh SoftHSM2 token of its own (S-KEY-4), created in the
/// module named by `CLARITY_TEST_SOFTHSM2_MODULE`, its PIN file written in
/// `dir`; or `None` after a SKIPPED line when the variable is unset
/// outside CI.
///
/// # Panics
/// In CI when the variable is unset; when `SOFTHSM2_CONF` is unset (the
/// tokens would go to the system's token directory) or the token cannot be
/// created.
pub fn pkcs11_settings(dir: &std::path::Path) -> Option<crate::crypto::Pkcs11Settings> {
    let module = service_var(SOFTHSM2_MODULE_VAR, "SoftHSM2 PKCS#11")?;
    if std::env::var_os("SOFTHSM2_CONF").is_none() {
        panic!(
            "{SOFTHSM2_MODULE_VAR} is set but SOFTHSM2_CONF is not: point it at a softhsm2.conf whose directories.tokendir is a scratch directory (scripts/test writes one)"
        );
    }
    // Token labels are at most 32 bytes.
    let mut label = format!("clarity-{}", uuid::Uuid::new_v4().simple());
    label.truncate(32);
    crate::crypto::create_pkcs11_token(std::path::Path::new(&module), &label, TEST_PKCS11_PIN)
        .unwrap_or_else(|e| panic!("{SOFTHSM2_MODULE_VAR}={module} cannot create a token: {e}"));
    let pin_file = dir.join("pkcs11.pin");
    write_secret_file(&pin_file, TEST_PKCS11_PIN);
    Some(crate::crypto::Pkcs11Settings::new(module, label, pin_file))
}

/// Settings for the KMS endpoint of the test run (`CLARITY_TEST_KMS_ENDPOINT`,
/// region `us-east-1`), with a fresh KMS key of its own; or `None` after a
/// SKIPPED line when the variable is unset outside CI.
///
/// # Panics
/// In CI when the variable is unset; when no AWS credentials are in the
/// environment (the chain would look further, up to the EC2 metadata
/// service) or the key cannot be created.
pub async fn kms_settings() -> Option<crate::crypto::KmsSettings> {
    let endpoint = service_var(KMS_ENDPOINT_VAR, "AWS KMS (moto)")?;
    if std::env::var_os("AWS_ACCESS_KEY_ID").is_none() {
        panic!(
            "{KMS_ENDPOINT_VAR} is set but AWS_ACCESS_KEY_ID is not: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (dummy values for moto) and AWS_EC2_METADATA_DISABLED=true"
        );
    }
    let mut settings = crate::crypto::KmsSettings::new("pending");
    settings.region = Some("us-east-1".into());
    settings.endpoint = Some(endpoint.clone());
    settings.key_id = crate::crypto::create_kms_key(&settings)
        .await
        .unwrap_or_else(|e| panic!("{KMS_ENDPOINT_VAR}={endpoint} cannot create a key: {e}"));
    Some(settings)
}

/// Settings for the OpenBao server of the test run, with a transit key of
/// its own for each call (created on first use), or `None` after a SKIPPED
/// line when the variables are unset outside CI.
///
/// # Panics
/// In CI when a variable is unset.
pub fn transit_settings() -> Option<crate::crypto::TransitSettings> {
    let addr = service_var(OPENBAO_ADDR_VAR, "OpenBao transit")?;
    let token = service_var(OPENBAO_TOKEN_VAR, "OpenBao transit")?;
    let mut settings =
        crate::crypto::TransitSettings::new(addr, crate::crypto::SecretString::new(token))
            .with_key(format!("clarity-test-{}", uuid::Uuid::new_v4().simple()));
    if let Ok(path) = std::env::var(OPENBAO_CA_CERT_VAR) {
        settings.ca_cert_pem = Some(
            std::fs::read(&path)
                .unwrap_or_else(|e| panic!("{OPENBAO_CA_CERT_VAR}={path} is unreadable: {e}")),
        );
    }
    Some(settings)
}

/// Asserts that `wrapped`, made by `keys` for `context`, is bound to it
/// (S-KEY-4): moved to the context `other`, altered, or relabelled as
/// another KEK version, it fails with [`crate::error::Error::Integrity`].
///
/// # Panics
/// When one of them unwraps or fails otherwise.
pub async fn assert_wrapping_is_bound(
    keys: &dyn KeyProvider,
    wrapped: &crate::crypto::WrappedKey,
    context: &[u8],
    other: &[u8],
) {
    let mut altered = wrapped.clone();
    let at = altered.ciphertext.len().saturating_sub(3);
    if let Some(byte) = altered.ciphertext.get_mut(at) {
        *byte = if *byte == b'A' { b'B' } else { b'A' };
    }
    let mut relabelled = wrapped.clone();
    relabelled.kek_version += 1;
    for (what, candidate, context) in [
        ("moved", wrapped, other),
        ("altered", &altered, context),
        ("relabelled", &relabelled, context),
    ] {
        let result = keys.unwrap(candidate, context).await;
        assert!(
            matches!(result, Err(crate::error::Error::Integrity)),
            "{what}: {:?}",
            result.map(drop)
        );
    }
}

/// Writes `secret` to `path` as a secret file (mode 0600), replacing a
/// file that is there.
///
/// # Panics
/// When the file cannot be written.
pub fn write_secret_file(path: &std::path::Path, secret: &str) {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let _ = std::fs::remove_file(path);
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .and_then(|mut out| out.write_all(secret.as_bytes()))
        .unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
}

/// True when running in CI (`CI=true`), where a missing service is a failure.
pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
}

/// The value of a service variable, or `None` after a loud SKIPPED line.
///
/// # Panics
/// In CI when the variable is unset: CI must never skip a service test.
pub fn service_var(var: &str, service: &str) -> Option<String> {
    match std::env::var(var) {
        Ok(value) if !value.trim().is_empty() => Some(value),
        _ if in_ci() => panic!("{var} is not set: CI runs every {service} test"),
        _ => {
            eprintln!("SKIPPED: {service} test not run: set {var} to run it");
            None
        }
    }
}

/// A store under test: the encrypting layer, direct row access for tampering,
/// and whatever must live as long as the test (temporary directories, schemas).
pub struct Harness {
    /// The encrypting store under test.
    pub phi: PhiStore,
    /// The backend itself.
    pub store: Arc<dyn Store>,
    /// The same backend's identity tables.
    pub identity: Arc<dyn IdentityStore>,
    /// The same backend's audit tables.
    pub audit: Arc<dyn AuditStore>,
    /// The keyring in use.
    pub keys: Arc<dyn KeyProvider>,
    /// Direct access to stored rows, bypassing the store.
    pub raw: Box<dyn RawAccess>,
    /// Temporary directory holding the keyring (and SQLite files).
    pub dir: tempfile::TempDir,
    _schema: Option<raw::SchemaGuard>,
}

impl Harness {
    /// The PostgreSQL schema of this harness, if it is a PostgreSQL one.
    pub fn schema(&self) -> Option<&str> {
        self._schema.as_ref().map(|s| s.schema.as_str())
    }

    /// Default settings with the erasure ledger and the audit witness in
    /// this harness's directory (for instances built with [`with_parts`]).
    pub fn config(&self) -> Config {
        let mut config = Config::default();
        config.keys.erasure_ledger_dir = Some(self.dir.path().join("erasures"));
        config.audit.witness_dir = Some(self.dir.path().join("audit-witness"));
        config
    }

    /// The backend under test.
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }
}

impl std::fmt::Debug for Harness {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Harness")
            .field("backend", &self.store.backend())
            .finish_non_exhaustive()
    }
}

fn temp_keyring() -> (tempfile::TempDir, Arc<dyn KeyProvider>) {
    let dir = tempfile::tempdir().expect("temporary directory");
    let keys = LocalKeyring::create(&dir.path().join("keyring.json")).expect("keyring");
    (dir, Arc::new(keys))
}

async fn harness(
    backends: Backends,
    raw: Box<dyn RawAccess>,
    dir: tempfile::TempDir,
    keys: Arc<dyn KeyProvider>,
    schema: Option<raw::SchemaGuard>,
) -> Harness {
    let store = backends.rows;
    let phi = PhiStore::new(Arc::clone(&store), Arc::clone(&keys))
        .await
        .expect("bind keyring");
    Harness {
        phi,
        store,
        identity: backends.identity,
        audit: backends.audit,
        keys,
        raw,
        dir,
        _schema: schema,
    }
}

impl Harness {
    /// A [`Clarity`] over this harness's backend and keyring, with `config`
    /// and `clock`.
    ///
    /// # Panics
    /// When the instance cannot be built.
    pub async fn clarity_with(&self, mut config: Config, clock: Arc<dyn Clock>) -> Clarity {
        // Erasures are recorded in the ledger (S-KEY-3): keep it in this
        // harness's directory unless the test names one.
        if config.keys.erasure_ledger_dir.is_none() {
            config.keys.erasure_ledger_dir = Some(self.dir.path().join("erasures"));
        }
        // Likewise the audit witness (S-AUD-7).
        if config.audit.witness_dir.is_none() {
            config.audit.witness_dir = Some(self.dir.path().join("audit-witness"));
        }
        let backends = Backends {
            rows: Arc::clone(&self.store),
            identity: Arc::clone(&self.identity),
            audit: Arc::clone(&self.audit),
        };
        Clarity::with_parts(config, backends, Arc::clone(&self.keys), clock)
            .await
            .expect("open Clarity")
    }

    /// A [`Clarity`] with default settings and the system clock.
    pub async fn clarity(&self) -> Clarity {
        self.clarity_with(Config::default(), Arc::new(SystemClock))
            .await
    }
}

/// An instance over already opened parts, for tests (`Clarity::with_parts`).
/// Not for production: it takes raw backends and a key provider.
///
/// # Errors
/// As [`Clarity::open`].
pub async fn with_parts(
    config: Config,
    backends: Backends,
    keys: Arc<dyn KeyProvider>,
    clock: Arc<dyn Clock>,
) -> crate::error::Result<Clarity> {
    Clarity::with_parts(config, backends, keys, clock).await
}

/// Whether the store under `clarity` still holds `patient`'s data key
/// (erasure destroys it, S-KEY-3).
///
/// # Errors
/// The store's.
pub async fn has_data_key(clarity: &Clarity, patient: uuid::Uuid) -> crate::error::Result<bool> {
    Ok(clarity.phi().store().get_data_key(patient).await?.is_some())
}

/// The password of users made by [`user_with_role`].
pub const TEST_PASSWORD: &str = "a test passphrase nobody would guess";

/// Creates a user holding `role` (operator path); returns its id and email.
///
/// # Panics
/// When the user cannot be created.
pub async fn user_with_role(clarity: &Clarity, role: crate::model::Role) -> (uuid::Uuid, String) {
    let email = format!("{role}-{}@test.example", uuid::Uuid::new_v4().simple());
    let user = clarity
        .create_user_as_operator(crate::service::NewUser {
            email: email.clone(),
            password: crate::crypto::SecretString::new(TEST_PASSWORD),
            roles: crate::model::RoleSet::from_roles([role]),
            display_name: None,
            patient_id: None,
        })
        .await
        .expect("create user");
    (user.id, email)
}

/// Logs `email` in with [`TEST_PASSWORD`]; returns the access token.
///
/// # Panics
/// When the login fails.
pub async fn access_token(clarity: &Clarity, email: &str) -> String {
    let request = crate::service::LoginRequest {
        email: email.into(),
        password: crate::crypto::SecretString::new(TEST_PASSWORD),
        totp: None,
    };
    let tokens = clarity.login(request, None).await.expect("login");
    tokens.access_token.expose().to_string()
}

/// A new user holding `role`, logged in and authenticated.
///
/// # Panics
/// When any step fails.
pub async fn principal(clarity: &Clarity, role: crate::model::Role) -> crate::access::Principal {
    let (_, email) = user_with_role(clarity, role).await;
    let token = access_token(clarity, &email).await;
    clarity.authenticate(&token).await.expect("authenticate")
}

/// The audit event of a clinician's successful read of a new patient, with
/// fresh identifiers: for filling audit logs in tests and benchmarks.
pub fn read_event_draft() -> crate::audit::EventDraft {
    use crate::audit::{AuditAction, AuditOutcome, EventDraft};
    use crate::model::RequestContext;
    EventDraft {
        event_type: "rest",
        subtype: "patient.read",
        action: AuditAction::Read,
        outcome: AuditOutcome::Success,
        actor_id: Some(uuid::Uuid::now_v7()),
        actor_roles: Some("clinician".into()),
        patient_id: Some(uuid::Uuid::now_v7()),
        entity_id: None,
        query_hash: None,
        reason: Some("care_team".into()),
        context: RequestContext {
            purpose: Some("TREAT".into()),
            client_address: Some(std::net::IpAddr::from([10, 1, 2, 3])),
            request_id: Some(uuid::Uuid::new_v4().to_string()),
        },
        identity: None,
    }
}

/// A harness over [`MemoryStore`].
pub async fn memory() -> Option<Harness> {
    let (dir, keys) = temp_keyring();
    let store = Arc::new(MemoryStore::new());
    let raw = Box::new(raw::MemoryRaw(Arc::clone(&store)));
    Some(harness(Backends::of(store), raw, dir, keys, None).await)
}

/// A harness over the in-memory backend seen through the cache decorators
/// an instance uses ([`crate::cache::CachedStore`], `CachedIdentity`,
/// `CachedAudit`, with a local cache): the conformance suite holds them to
/// the same behaviour as the store underneath.
///
/// # Panics
/// When the cache cannot be set up.
pub async fn memory_cached() -> Option<Harness> {
    use crate::cache::{CachedAudit, CachedIdentity, CachedStore};
    let (dir, keys) = temp_keyring();
    let store = Arc::new(MemoryStore::new());
    let caching = crate::cache::open(
        &crate::cache::CacheConfig::default(),
        &crate::cache::RateLimitConfig::default(),
        &crate::store::StoreConfig::default(),
        crate::crypto::Key::generate().expect("cache key"),
    )
    .expect("local cache");
    let invalidator = caching.invalidator;
    let raw = Box::new(raw::BehindCache {
        inner: Box::new(raw::MemoryRaw(Arc::clone(&store))),
        cache: Arc::clone(&invalidator),
    });
    let backends = Backends {
        rows: Arc::new(CachedStore::new(store.clone(), Arc::clone(&invalidator))),
        identity: Arc::new(CachedIdentity::new(store.clone(), Arc::clone(&invalidator))),
        audit: Arc::new(CachedAudit::new(store, invalidator)),
    };
    Some(harness(backends, raw, dir, keys, None).await)
}

/// A fresh SQLite database in `dir`, and its path.
#[cfg(feature = "sqlite")]
async fn open_sqlite(dir: &tempfile::TempDir) -> (crate::store::SqliteStore, std::path::PathBuf) {
    let path = dir.path().join("clarity.db");
    let store =
        crate::store::SqliteStore::open_path(&path, 4, crate::config::SqliteSynchronous::Full)
            .await
            .expect("open sqlite");
    (store, path)
}

/// A harness over `store`, a SQLite database at `path` in `dir`.
#[cfg(feature = "sqlite")]
async fn sqlite_harness(
    dir: tempfile::TempDir,
    store: crate::store::SqliteStore,
    path: std::path::PathBuf,
    keys: Arc<dyn KeyProvider>,
) -> Harness {
    let raw = Box::new(raw::SqliteRaw(path));
    harness(Backends::of(Arc::new(store)), raw, dir, keys, None).await
}

/// A harness over a fresh SQLite database in a temporary directory.
#[cfg(feature = "sqlite")]
pub async fn sqlite() -> Option<Harness> {
    let (dir, keys) = temp_keyring();
    let (store, path) = open_sqlite(&dir).await;
    Some(sqlite_harness(dir, store, path, keys).await)
}

/// A harness over a fresh SQLite database whose keys live in the OpenBao
/// transit engine named by `CLARITY_TEST_OPENBAO_ADDR` (a transit key of its
/// own); `None` (after a SKIPPED line) when unset outside CI.
///
/// # Panics
/// When the variables are unset in CI, or OpenBao cannot be reached.
#[cfg(feature = "sqlite")]
pub async fn sqlite_transit() -> Option<Harness> {
    let settings = transit_settings()?;
    let dir = tempfile::tempdir().expect("temporary directory");
    let (store, path) = open_sqlite(&dir).await;
    let keys = crate::vault::open_transit(settings, &store)
        .await
        .unwrap_or_else(|e| {
            panic!("{OPENBAO_ADDR_VAR} is set but OpenBao transit is not usable: {e}")
        });
    Some(sqlite_harness(dir, store, path, keys).await)
}

/// A harness over a fresh SQLite database whose keys live in a fresh
/// SoftHSM2 token (see [`pkcs11_settings`]); `None` (after a SKIPPED line)
/// when `CLARITY_TEST_SOFTHSM2_MODULE` is unset outside CI.
///
/// # Panics
/// When the variable is unset in CI, or the token is not usable.
#[cfg(feature = "sqlite")]
pub async fn sqlite_pkcs11() -> Option<Harness> {
    let dir = tempfile::tempdir().expect("temporary directory");
    let settings = pkcs11_settings(dir.path())?;
    let (store, path) = open_sqlite(&dir).await;
    let keys = crate::vault::open_pkcs11(settings, &store)
        .await
        .unwrap_or_else(|e| {
            panic!("{SOFTHSM2_MODULE_VAR} is set but the PKCS#11 token is not usable: {e}")
        });
    Some(sqlite_harness(dir, store, path, keys).await)
}

/// A harness over a fresh SQLite database whose keys live in a fresh KMS
/// key (see [`kms_settings`]); `None` (after a SKIPPED line) when
/// `CLARITY_TEST_KMS_ENDPOINT` is unset outside CI.
///
/// # Panics
/// When the variable is unset in CI, or KMS is not usable.
#[cfg(feature = "sqlite")]
pub async fn sqlite_kms() -> Option<Harness> {
    Some(sqlite_kms_with(kms_settings().await?).await)
}

/// A harness over a fresh SQLite database whose keys live in the KMS keys
/// `settings` name (see [`kms_settings`]).
///
/// # Panics
/// When KMS is not usable.
#[cfg(feature = "sqlite")]
pub async fn sqlite_kms_with(settings: crate::crypto::KmsSettings) -> Harness {
    let dir = tempfile::tempdir().expect("temporary directory");
    let (store, path) = open_sqlite(&dir).await;
    let keys = crate::vault::open_kms(settings, &store)
        .await
        .unwrap_or_else(|e| panic!("{KMS_ENDPOINT_VAR} is set but KMS is not usable: {e}"));
    sqlite_harness(dir, store, path, keys).await
}

/// A harness over a fresh schema of the PostgreSQL server named by
/// `CLARITY_TEST_POSTGRES_URL`; `None` (after a SKIPPED line) when unset outside CI.
///
/// # Panics
/// When the variable is unset in CI, or the server cannot be reached.
#[cfg(feature = "postgres")]
pub async fn postgres() -> Option<Harness> {
    let url = service_var(POSTGRES_URL_VAR, "PostgreSQL")?;
    let (dir, keys) = temp_keyring();
    let schema = format!("t_{}", uuid::Uuid::new_v4().simple());
    let secret = crate::crypto::SecretString::new(url.clone());
    let target = crate::store::PgTarget::new(&secret, Some(&schema), None)
        .unwrap_or_else(|e| panic!("{POSTGRES_URL_VAR} is not usable: {e}"));
    let store = crate::store::PostgresStore::connect(&target, 8)
        .await
        .unwrap_or_else(|e| panic!("{POSTGRES_URL_VAR} is set but PostgreSQL is not usable: {e}"));
    let guard = raw::SchemaGuard {
        url: url.clone(),
        schema: schema.clone(),
    };
    let raw = Box::new(raw::PostgresRaw { url, schema });
    Some(harness(Backends::of(Arc::new(store)), raw, dir, keys, Some(guard)).await)
}
