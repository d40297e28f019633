//! The read side of backups: opening an archive and checking its keys,
//! signed manifest and the KEK versions it needs, [`verify`] (read and check
//! everything, touch nothing), and [`restore_unrecorded`] through a staging
//! database that is swapped in only once every check has passed.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use super::archive::{self, ArchiveKeys, ArchiveReader, Header};
use super::needs::{self, KekNeeds};
#[cfg(feature = "postgres")]
use super::postgres;
use super::schema::{self, Table, Value};
#[cfg(feature = "sqlite")]
use super::sqlite;
use super::{
    ErasureLedger, Manifest, Progress, ProgressFn, RestoreReport, TableSummary, Verification,
    not_compiled,
};
use crate::config::{Backend, Config, KeyProviderKind};
use crate::crypto::{HoldsRoot, Key, KeyProvider, LocalKeyring, fingerprint, with_root};
use crate::error::{Error, Result};
use crate::store::Backends;

/// The configured keys, opened for an archive: the provider and the root
/// secret, checked against the archive's.
async fn archive_keys(config: &Config, header: &Header) -> Result<(Arc<dyn KeyProvider>, Key)> {
    let keys: Arc<dyn KeyProvider> = match config.keys.provider {
        KeyProviderKind::Local => Arc::new(LocalKeyring::open(&config.keyring_path())?),
        KeyProviderKind::Transit => {
            let settings = crate::crypto::TransitSettings::from_config(&config.keys)?;
            let provider = crate::crypto::TransitKeyProvider::connect(settings).await?;
            Arc::new(external_keys(config, header, provider).await?)
        }
        KeyProviderKind::Pkcs11 => {
            let settings = crate::crypto::Pkcs11Settings::from_config(&config.keys)?;
            let provider = crate::crypto::Pkcs11KeyProvider::connect(settings).await?;
            Arc::new(external_keys(config, header, provider).await?)
        }
        KeyProviderKind::Kms => {
            let settings = crate::crypto::KmsSettings::from_config(&config.keys)?;
            let provider = crate::crypto::KmsKeyProvider::connect(settings).await?;
            Arc::new(external_keys(config, header, provider).await?)
        }
    };
    let root = keys.root_key().await?;
    let ours = fingerprint(&root);
    if ours != header.root_fingerprint {
        return Err(Error::key(format!(
            "wrong key: the archive was made with keys {} but the configured keys are {ours}; configure the keyring (or transit key) of the store that was backed up",
            header.root_fingerprint
        )));
    }
    Ok((keys, root))
}

/// An external provider (transit, PKCS#11, KMS) with the archive's root secret
/// unwrapped, once the provider is known to still hold the KEK version
/// that wrapped it (S-BAK-2).
async fn external_keys<P: HoldsRoot>(config: &Config, header: &Header, provider: P) -> Result<P> {
    let record = header.transit_root.as_ref().ok_or_else(|| {
        Error::key(format!(
            "wrong key: the archive was made with a local keyring, but the {} provider is configured; configure that keyring (keys.provider = \"local\") to read it",
            provider.name()
        ))
    })?;
    needs::ensure_held(
        config,
        &provider,
        &KekNeeds::of_root(header.transit_root.as_ref()),
    )
    .await?;
    let name = provider.name();
    with_root(provider, record).await.map_err(|e| match e {
        Error::Integrity | Error::NotFound { .. } => Error::key(format!(
            "wrong key: the configured {name} key cannot unwrap this archive's root secret"
        )),
        other => other,
    })
}

/// An archive whose keys and signed manifest are checked.
struct Opened {
    reader: ArchiveReader,
    manifest: Manifest,
    root: Key,
    keys: Arc<dyn KeyProvider>,
}

/// Opens an archive and checks, before anything else: the keys, the
/// manifest's signature, and that the configured keys hold every KEK
/// version the manifest declares (S-BAK-2).
async fn open_verified(config: &Config, path: &Path) -> Result<Opened> {
    let mut reader = ArchiveReader::open(path)?;
    let (keys, root) = archive_keys(config, reader.header()).await?;
    let id: [u8; 16] = hex::decode(&reader.header().backup_id)
        .ok()
        .and_then(|b| b.try_into().ok())
        .ok_or_else(|| {
            Error::invalid("backup archive refused: its header names no valid archive id")
        })?;
    let manifest = reader.verify_manifest(ArchiveKeys::derive(&root, id)?)?;
    let declared = KekNeeds::declared(&manifest, reader.header().transit_root.as_ref());
    needs::ensure_held(config, keys.as_ref(), &declared).await?;
    Ok(Opened {
        reader,
        manifest,
        root,
        keys,
    })
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
    /// The KEK versions of the rows to restore (S-BAK-2).
    needs: KekNeeds,
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
            needs: KekNeeds::default(),
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
        self.needs.note(table, row)?;
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
/// touching any store: keys, signature, every chunk, every table's rows; and
/// whether the configured keys can restore it: they must hold every KEK
/// version it needs (S-BAK-2).
///
/// # Errors
/// [`Error::Key`] for a missing or wrong key, or a KEK version the
/// configured keys do not hold (the same message a restore gives);
/// [`Error::InvalidInput`] for a tampered, truncated or foreign archive (the
/// message says which).
pub async fn verify(
    config: &Config,
    path: &Path,
    progress: &ProgressFn<'_>,
) -> Result<Verification> {
    let Opened {
        mut reader,
        manifest,
        keys,
        ..
    } = open_verified(config, path).await?;
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
    let mut all = KekNeeds::declared(&manifest, reader.header().transit_root.as_ref());
    all.extend(&importer.needs);
    needs::ensure_held(config, keys.as_ref(), &all).await?;
    Ok(Verification {
        manifest,
        kek_versions: all.versions(),
    })
}

/// Restores an archive into the store `config` names, which must be empty
/// (stop Clarity first; move the old database away or drop it). See the
/// module documentation for the order of checks. `Clarity::restore` calls
/// this and audits the restore in the restored store.
///
/// Keys, signature and the KEK versions the manifest declares are checked
/// before the target is looked at; the KEK versions of the rows themselves
/// (the directory key's too) before the swap (S-BAK-2).
///
/// # Errors
/// As [`verify`]; [`Error::InvalidInput`] when the target holds data, the
/// schema versions differ, the rows do not match the manifest or an audit
/// chain fails to verify. Nothing is swapped in then: the target is as it
/// was, and the same restore works once the cause is fixed.
pub(crate) async fn restore_unrecorded(
    config: &Config,
    path: &Path,
    progress: &ProgressFn<'_>,
) -> Result<RestoreReport> {
    let Opened {
        mut reader,
        manifest,
        root,
        keys,
    } = open_verified(config, path).await?;
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
        keys: keys.as_ref(),
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
    // S-AUD-7: the witness expects the chains no further than restored.
    let restored = crate::store::open(&config.store, &config.data_dir).await?;
    let keys = crate::vault::audit_keys(&root, restored.rows.as_ref()).await?;
    crate::audit::Witness::in_dir(config.witness_dir())
        .record_restore(restored.audit.as_ref(), &keys, Utc::now())
        .await?;
    let report = RestoreReport {
        backup_id: manifest.backup_id.clone(),
        created_at: manifest.created_at,
        source_backend: manifest.source_backend.clone(),
        target_backend: backend.to_string(),
        tables: importer.restored.clone(),
        erased_patients_skipped: importer.skipped.len() as u64,
        audit_chains_verified: verified,
    };
    Ok(report)
}

async fn ensure_empty_target(config: &Config) -> Result<()> {
    // Opening a store that does not exist would create it: a refused
    // restore must leave no store behind where there was none.
    if !crate::store::exists(&config.store, &config.data_dir).await? {
        return Ok(());
    }
    let target = crate::store::open(&config.store, &config.data_dir).await?;
    let used = target.rows.count_data_keys().await? > 0
        || target
            .rows
            .get_meta(crate::crypto::schedule::meta::KEYRING_FINGERPRINT)
            .await?
            .is_some()
        || target
            .rows
            .get_meta(crate::crypto::schedule::meta::TRANSIT_ROOT_KEY)
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
    keys: &'a dyn KeyProvider,
    progress: &'a ProgressFn<'a>,
}

/// The checks on a filled staging store, before it is swapped in: rows
/// against the manifest, the KEK versions they need held by the configured
/// keys (S-BAK-2), erasures applied, every audit chain verified.
async fn check_staging(job: &mut RestoreJob<'_>, staging: Backends) -> Result<usize> {
    let (importer, root, config) = (&*job.importer, job.root, job.config);
    importer.check(job.reader, job.manifest)?;
    needs::ensure_held(config, job.keys, &importer.needs).await?;
    for (patient, at) in &importer.skipped {
        staging.rows.erase_patient(*patient, *at).await?;
    }
    let keys = crate::vault::audit_keys(root, staging.rows.as_ref()).await?;
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
    let server = PgTarget::from_settings(&config.store)?;
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
