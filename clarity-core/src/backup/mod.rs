//! Encrypted backups with a signed manifest, and verified restores (S-BAK-1).
//!
//! A backup is a consistent snapshot of every table (SQLite: the online
//! backup API; PostgreSQL: one `REPEATABLE READ` read-only transaction) in a
//! backend-neutral logical form, so an archive of either backend restores into
//! either. The rows are encrypted (AES-256-GCM, in chunks) under a key derived
//! from the key provider's root secret, and a manifest holding the hashes,
//! schema version, key versions and row counts is signed (HMAC-SHA-256) under
//! another derived key: see [`archive`](self) for the file layout.
//!
//! A restore checks the keys and the manifest before reading any row, loads
//! the rows into a staging database (a file beside the SQLite database, or a
//! schema beside the PostgreSQL one), leaves out the data keys of patients
//! erased since the backup (the [`ErasureLedger`], S-KEY-3), checks every
//! table's rows against the manifest and verifies every audit chain, and only
//! then swaps the staging database in. A tampered archive or a wrong key is
//! refused with a message that says which.

mod archive;
mod ledger;
#[cfg(feature = "postgres")]
mod postgres;
mod schema;
#[cfg(feature = "sqlite")]
mod sqlite;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use uuid::Uuid;

pub use ledger::ErasureLedger;

use self::archive::{ArchiveKeys, ArchiveReader, ArchiveWriter, Header};
use self::schema::{Table, Value};
use crate::config::{Backend, Config, KeyProviderKind};
use crate::crypto::{Key, KeyProvider, LocalKeyring, RootRecord, fingerprint};
use crate::error::{Error, Result};
use crate::store::{Backends, Store};

/// Progress of a backup, verification or restore, for progress bars.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Progress {
    /// What is being done: a table name while exporting, `restore` or `verify` while reading.
    pub phase: &'static str,
    /// Rows exported so far, or archive bytes read so far.
    pub done: u64,
    /// Archive bytes in all (when reading).
    pub total: Option<u64>,
}

impl Progress {
    fn rows(phase: &'static str, done: u64) -> Self {
        Progress {
            phase,
            done,
            total: None,
        }
    }
}

/// A progress callback.
pub type ProgressFn<'a> = dyn Fn(&Progress) + Send + Sync + 'a;

/// One table in a manifest: its rows and the SHA-256 of their encoding.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TableSummary {
    /// Table name.
    pub name: String,
    /// Rows in the archive.
    pub rows: u64,
    /// Hex SHA-256 of the rows' encoding, in primary-key order.
    pub sha256: String,
}

/// Data keys wrapped by one KEK version when the backup was taken.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KekCount {
    /// The KEK version.
    pub kek_version: i32,
    /// Data keys it wrapped.
    pub data_keys: u64,
}

/// The signed manifest of an archive.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct Manifest {
    /// Manifest format version (1).
    pub format: u32,
    /// Random id of the archive (hex).
    pub backup_id: String,
    /// When the backup was taken.
    pub created_at: DateTime<Utc>,
    /// Version of Clarity that wrote it.
    pub clarity_version: String,
    /// Backend it was taken from (`sqlite`, `postgres`).
    pub source_backend: String,
    /// Schema version of the store.
    pub schema_version: i64,
    /// Key provider (`local`, `transit`).
    pub provider: String,
    /// Public fingerprint of the root secret.
    pub root_fingerprint: String,
    /// The KEK version current at backup time.
    pub current_kek_version: i32,
    /// Data keys per KEK version (the versions a restore needs).
    pub kek_usage: Vec<KekCount>,
    /// Every table, in restore order.
    pub tables: Vec<TableSummary>,
    /// Encrypted chunks.
    pub chunks: u64,
    /// Hex SHA-256 of the chunks as stored.
    pub ciphertext_sha256: String,
    /// Hex SHA-256 of the plaintext header.
    pub header_sha256: String,
}

/// What a restore did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct RestoreReport {
    /// The archive restored.
    pub backup_id: String,
    /// When it was taken.
    pub created_at: DateTime<Utc>,
    /// Backend it came from.
    pub source_backend: String,
    /// Backend it went into.
    pub target_backend: String,
    /// Rows restored per table.
    pub tables: Vec<TableSummary>,
    /// Patients erased after the backup: their data keys were left out, so
    /// their records stay unreadable (S-KEY-3).
    pub erased_patients_skipped: u64,
    /// Audit chains verified before the swap.
    pub audit_chains_verified: usize,
}

pub(crate) fn column_list(table: &Table) -> String {
    table
        .columns
        .iter()
        .map(|(name, _)| *name)
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(feature = "sqlite")]
pub(crate) fn insert_sql(table: &Table, placeholder: impl Fn(usize) -> String) -> String {
    let marks = (1..=table.columns.len())
        .map(placeholder)
        .collect::<Vec<_>>()
        .join(", ");
    format!(
        "INSERT INTO {} ({}) VALUES ({marks})",
        table.name,
        column_list(table)
    )
}

/// Writes a backup of `store` (opened from `config`) to `out`, which must not
/// exist. Called through `Clarity::backup`, which authorises and audits it.
pub(crate) async fn write(
    config: &Config,
    store: &dyn Store,
    keys: &dyn KeyProvider,
    out: &Path,
    progress: &ProgressFn<'_>,
) -> Result<Manifest> {
    let configured = match config.store.backend {
        Backend::Sqlite => "sqlite",
        Backend::Postgres => "postgres",
    };
    if store.backend() != configured {
        return Err(Error::invalid(format!(
            "backups are taken from the configured {configured} store, not a {} one",
            store.backend()
        )));
    }
    let root = keys.root_key().await?;
    let mut id = [0u8; 16];
    crate::crypto::fill_random(&mut id)?;
    let transit_root = match store.get_meta(crate::store::TRANSIT_ROOT_KEY).await? {
        Some(json) => Some(RootRecord::parse(&json)?),
        None => None,
    };
    let header = Header {
        format: 1,
        backup_id: hex::encode(id),
        provider: keys.name().to_string(),
        root_fingerprint: fingerprint(&root),
        transit_root,
    };
    let manifest = Manifest {
        format: 1,
        backup_id: header.backup_id.clone(),
        created_at: Utc::now(),
        clarity_version: env!("CARGO_PKG_VERSION").to_string(),
        source_backend: configured.to_string(),
        schema_version: store.schema_version().await?,
        provider: header.provider.clone(),
        root_fingerprint: header.root_fingerprint.clone(),
        current_kek_version: keys.current_kek_version().await?,
        kek_usage: store
            .data_keys_by_kek()
            .await?
            .into_iter()
            .map(|(kek_version, data_keys)| KekCount {
                kek_version,
                data_keys,
            })
            .collect(),
        tables: Vec::new(),
        chunks: 0,
        ciphertext_sha256: String::new(),
        header_sha256: String::new(),
    };
    let mut writer = ArchiveWriter::create(out, &header, ArchiveKeys::derive(&root, id)?)?;
    let exported = export(config, &mut writer, progress).await;
    let result = exported.and_then(|()| writer.finish(manifest));
    if result.is_err() {
        let _ = std::fs::remove_file(out);
    }
    result
}

async fn export(
    config: &Config,
    writer: &mut ArchiveWriter,
    progress: &ProgressFn<'_>,
) -> Result<()> {
    match config.store.backend {
        #[cfg(feature = "sqlite")]
        Backend::Sqlite => sqlite::export(&config.sqlite_path(), writer, progress),
        #[cfg(feature = "postgres")]
        Backend::Postgres => {
            let mut client = crate::store::PgTarget::from_config(config)?
                .connect("backup")
                .await?;
            postgres::export(&mut client, writer, progress).await
        }
        #[allow(unreachable_patterns)]
        other => Err(not_compiled(other)),
    }
}

fn not_compiled(backend: Backend) -> Error {
    Error::config(
        "store.backend",
        format!("{backend:?} support is not compiled into this build"),
    )
}

/// The root secret of the configured keys, checked against the archive's.
async fn archive_root(config: &Config, header: &Header) -> Result<Key> {
    let root = match config.keys.provider {
        KeyProviderKind::Local => {
            let keyring = LocalKeyring::open(&config.keyring_path())?;
            keyring.root_key().await?
        }
        KeyProviderKind::Transit => {
            let record = header.transit_root.as_ref().ok_or_else(|| {
                Error::key(
                    "wrong key: the archive was made with a local keyring, but the transit provider is configured; configure that keyring (keys.provider = \"local\") to read it",
                )
            })?;
            let settings = crate::crypto::TransitSettings::from_config(&config.keys)?;
            let provider = crate::crypto::TransitKeyProvider::connect(settings)
                .await?
                .with_root(record)
                .await
                .map_err(|e| match e {
                    Error::Integrity | Error::NotFound { .. } => Error::key(
                        "wrong key: the configured transit key cannot unwrap this archive's root secret",
                    ),
                    other => other,
                })?;
            provider.root_key().await?
        }
    };
    let ours = fingerprint(&root);
    if ours != header.root_fingerprint {
        return Err(Error::key(format!(
            "wrong key: the archive was made with keys {} but the configured keys are {ours}; configure the keyring (or transit key) of the store that was backed up",
            header.root_fingerprint
        )));
    }
    Ok(root)
}

/// Opens an archive and checks keys and manifest before anything else.
async fn open_verified(config: &Config, path: &Path) -> Result<(ArchiveReader, Manifest, Key)> {
    let mut reader = ArchiveReader::open(path)?;
    let root = archive_root(config, reader.header()).await?;
    let id: [u8; 16] = hex::decode(&reader.header().backup_id)
        .ok()
        .and_then(|b| b.try_into().ok())
        .ok_or_else(|| {
            Error::invalid("backup archive refused: its header names no valid archive id")
        })?;
    let manifest = reader.verify_manifest(ArchiveKeys::derive(&root, id)?)?;
    Ok((reader, manifest, root))
}

/// Follows the rows of an archive: hashes and counts them per table, and
/// decides which to restore (not the data keys of erased patients).
pub(crate) struct Importer {
    erased: BTreeMap<Uuid, DateTime<Utc>>,
    skipped: Vec<(Uuid, DateTime<Utc>)>,
    current: Option<(&'static Table, Sha256, u64, u64)>,
    seen: Vec<TableSummary>,
    restored: Vec<TableSummary>,
    scratch: Vec<u8>,
    rows: u64,
}

impl std::fmt::Debug for Importer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Importer")
            .field("rows", &self.rows)
            .finish_non_exhaustive()
    }
}

impl Importer {
    fn new(erased: BTreeMap<Uuid, DateTime<Utc>>) -> Self {
        Importer {
            erased,
            skipped: Vec::new(),
            current: None,
            seen: Vec::new(),
            restored: Vec::new(),
            scratch: Vec::new(),
            rows: 0,
        }
    }

    pub(crate) fn begin(&mut self, table: &'static Table) -> Result<()> {
        if self.current.is_some() || self.seen.iter().any(|t| t.name == table.name) {
            return Err(schema::malformed());
        }
        self.current = Some((table, Sha256::new(), 0, 0));
        Ok(())
    }

    /// Counts and hashes a row; `false` when it must not be restored.
    pub(crate) fn accept(&mut self, table: &Table, row: &[Value]) -> Result<bool> {
        self.scratch.clear();
        schema::encode_row(table, row, &mut self.scratch)?;
        let (_, hash, seen, restored) = self.current.as_mut().ok_or_else(schema::malformed)?;
        hash.update(&self.scratch);
        *seen += 1;
        self.rows += 1;
        if table.name == "data_keys"
            && let Some(Value::Uuid(patient)) = row.first()
            && let Some(at) = self.erased.get(patient)
        {
            self.skipped.push((*patient, *at));
            return Ok(false);
        }
        *restored += 1;
        Ok(true)
    }

    pub(crate) fn end(&mut self) -> Result<()> {
        let (table, hash, seen, restored) = self.current.take().ok_or_else(schema::malformed)?;
        self.seen.push(TableSummary {
            name: table.name.to_string(),
            rows: seen,
            sha256: hex::encode(hash.finalize()),
        });
        self.restored.push(TableSummary {
            name: table.name.to_string(),
            rows: restored,
            sha256: String::new(),
        });
        Ok(())
    }

    pub(crate) fn report(&self, reader: &ArchiveReader, progress: &ProgressFn<'_>) {
        if self.rows.is_multiple_of(10_000) {
            let (done, total) = reader.progress();
            progress(&Progress {
                phase: "read",
                done,
                total: Some(total),
            });
        }
    }

    /// Checks everything read against the signed manifest.
    fn check(&self, reader: &mut ArchiveReader, manifest: &Manifest) -> Result<()> {
        let (ciphertext, chunks) = reader.finish()?;
        if ciphertext != manifest.ciphertext_sha256 || chunks != manifest.chunks {
            return Err(Error::invalid(
                "backup archive refused: its data does not match the signed manifest",
            ));
        }
        if self.current.is_some() || self.seen != manifest.tables {
            return Err(Error::invalid(
                "backup archive refused: its tables do not match the signed manifest",
            ));
        }
        Ok(())
    }
}

/// Reads a whole archive and checks it against its manifest, without
/// touching any store: keys, signature, every chunk, every table's rows.
///
/// # Errors
/// [`Error::Key`] for a missing or wrong key; [`Error::InvalidInput`] for a
/// tampered, truncated or foreign archive (the message says which).
pub async fn verify(config: &Config, path: &Path, progress: &ProgressFn<'_>) -> Result<Manifest> {
    let (mut reader, manifest, _) = open_verified(config, path).await?;
    let mut importer = Importer::new(BTreeMap::new());
    let mut current = None;
    while let Some(item) = archive::next_item(&mut reader, current)? {
        match item {
            archive::Item::Table(table) => {
                importer.begin(table)?;
                current = Some(table);
            }
            archive::Item::Row(row) => {
                let table = current.ok_or_else(schema::malformed)?;
                importer.accept(table, &row)?;
                importer.report(&reader, progress);
            }
            archive::Item::TableEnd => {
                importer.end()?;
                current = None;
            }
        }
    }
    importer.check(&mut reader, &manifest)?;
    Ok(manifest)
}

/// Restores an archive into the store `config` names, which must be empty
/// (stop Clarity first; move the old database away or drop it). See the
/// module documentation for the order of checks. The restore is audited in
/// the restored store.
///
/// # Errors
/// As [`verify`]; [`Error::InvalidInput`] when the target holds data, the
/// schema versions differ, the rows do not match the manifest or an audit
/// chain fails to verify. Nothing is swapped in then.
pub async fn restore(
    config: &Config,
    path: &Path,
    progress: &ProgressFn<'_>,
) -> Result<RestoreReport> {
    let (mut reader, manifest, root) = open_verified(config, path).await?;
    let (backend, latest) = match config.store.backend {
        Backend::Sqlite => ("sqlite", crate::store::migrations_for("sqlite")),
        Backend::Postgres => ("postgres", crate::store::migrations_for("postgres")),
    };
    let latest = latest.last().map_or(0, |m| m.version);
    if manifest.schema_version != latest {
        return Err(Error::invalid(format!(
            "restore refused: the archive has schema version {}, this build has {latest}; restore with the version of Clarity that took it",
            manifest.schema_version
        )));
    }
    ensure_empty_target(config).await?;
    let erased = ErasureLedger::in_dir(config.erasure_ledger_dir()).load()?;
    let mut importer = Importer::new(erased);
    let mut job = RestoreJob {
        config,
        reader: &mut reader,
        importer: &mut importer,
        manifest: &manifest,
        root: &root,
        progress,
    };
    let verified = match config.store.backend {
        #[cfg(feature = "sqlite")]
        Backend::Sqlite => restore_sqlite(&mut job).await?,
        #[cfg(feature = "postgres")]
        Backend::Postgres => restore_postgres(&mut job).await?,
        #[allow(unreachable_patterns)]
        other => return Err(not_compiled(other)),
    };
    let report = RestoreReport {
        backup_id: manifest.backup_id.clone(),
        created_at: manifest.created_at,
        source_backend: manifest.source_backend.clone(),
        target_backend: backend.to_string(),
        tables: importer.restored.clone(),
        erased_patients_skipped: importer.skipped.len() as u64,
        audit_chains_verified: verified,
    };
    let clarity = crate::Clarity::open(config.clone()).await?;
    let recorded = clarity.record_restore(&report).await;
    clarity.shutdown().await;
    recorded?;
    Ok(report)
}

async fn ensure_empty_target(config: &Config) -> Result<()> {
    if config.store.backend == Backend::Sqlite && !config.sqlite_path().exists() {
        return Ok(());
    }
    let target = crate::store::open(config).await?;
    let used = target.rows.count_data_keys().await? > 0
        || target
            .rows
            .get_meta(crate::store::FINGERPRINT_KEY)
            .await?
            .is_some()
        || target
            .rows
            .get_meta(crate::store::TRANSIT_ROOT_KEY)
            .await?
            .is_some()
        || !target.audit.audit_chains().await?.is_empty();
    if used {
        return Err(Error::invalid(
            "restore refused: the target store is not empty; a restore goes into an empty store (stop Clarity, then move the database away or drop it)",
        ));
    }
    Ok(())
}

/// A restore under way: the verified archive and what follows its rows.
struct RestoreJob<'a> {
    config: &'a Config,
    reader: &'a mut ArchiveReader,
    importer: &'a mut Importer,
    manifest: &'a Manifest,
    root: &'a Key,
    progress: &'a ProgressFn<'a>,
}

/// The checks on a filled staging store, before it is swapped in: rows
/// against the manifest, erasures applied, every audit chain verified.
async fn check_staging(job: &mut RestoreJob<'_>, staging: Backends) -> Result<usize> {
    let (importer, root, config) = (&*job.importer, job.root, job.config);
    importer.check(job.reader, job.manifest)?;
    for (patient, at) in &importer.skipped {
        staging.rows.erase_patient(*patient, *at).await?;
    }
    let keys = crate::audit::AuditKeys::load(root, staging.rows.as_ref()).await?;
    let cutoff = Utc::now() - chrono::Duration::days(i64::from(config.audit.retention_days));
    let reports = crate::audit::verify(staging.audit.as_ref(), &keys, cutoff).await?;
    if let Some(bad) = reports.iter().find(|r| !r.ok) {
        return Err(Error::invalid(format!(
            "restore refused: audit chain {} fails verification at seq {}: {}",
            bad.chain_id,
            bad.first_bad_seq.unwrap_or_default(),
            bad.problem.as_deref().unwrap_or("unknown")
        )));
    }
    Ok(reports.len())
}

#[cfg(feature = "sqlite")]
async fn restore_sqlite(job: &mut RestoreJob<'_>) -> Result<usize> {
    let config = job.config;
    use crate::store::SqliteStore;
    let target = config.sqlite_path();
    let staging = sqlite::sibling(&target, "restore")?;
    let synchronous = config.store.sqlite_synchronous;
    let result = async {
        drop(SqliteStore::open_path(&staging, 1, synchronous).await?);
        sqlite::import(&staging, job.reader, job.importer, job.progress)?;
        let store = Arc::new(SqliteStore::open_path(&staging, 2, synchronous).await?);
        let verified = check_staging(job, Backends::of(store)).await?;
        sqlite::seal(&staging)?;
        sqlite::swap(&staging, &target)?;
        Ok(verified)
    }
    .await;
    if result.is_err() {
        sqlite::remove_db(&staging);
    }
    result
}

#[cfg(feature = "postgres")]
async fn restore_postgres(job: &mut RestoreJob<'_>) -> Result<usize> {
    let config = job.config;
    use crate::store::{PgTarget, PostgresStore};
    let server = PgTarget::from_config(config)?;
    let mut admin = server.connect("restore").await?;
    let target = postgres::target_schema(&admin, config.store.postgres_schema.as_deref()).await?;
    let mut suffix = [0u8; 8];
    crate::crypto::fill_random(&mut suffix)?;
    let staging = format!("clarity_restore_{}", hex::encode(suffix));
    let result = async {
        let staged = server.in_schema(&staging)?;
        let store = Arc::new(PostgresStore::connect(&staged, 2).await?);
        let mut client = staged.connect("restore").await?;
        postgres::import(&mut client, job.reader, job.importer, job.progress).await?;
        drop(client);
        let verified = check_staging(job, Backends::of(store)).await?;
        postgres::swap(&mut admin, &staging, &target).await?;
        Ok(verified)
    }
    .await;
    if result.is_err() {
        postgres::drop_schema(&admin, &staging).await;
    }
    result
}
