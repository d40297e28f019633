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
//! Each backup written is recorded in the backup catalog with the KEK
//! versions it needs, so that retiring a version a recorded backup needs is
//! refused unless forced (S-BAK-2).
//!
//! A restore checks the keys, the manifest and that the configured keys hold
//! every KEK version the archive needs (S-BAK-2) before reading any row, loads
//! the rows into a staging database (a file beside the SQLite database, or a
//! schema beside the PostgreSQL one), leaves out the data keys of patients
//! erased since the backup (the [`ErasureLedger`], S-KEY-3), checks every
//! table's rows against the manifest and verifies every audit chain, and only
//! then (the KEK versions its rows need checked once more, the directory
//! key's included) swaps the staging database in. A tampered archive, a
//! wrong key or a missing KEK version is refused with a message that says
//! which, and the target is left as it was.

mod archive;
mod catalog;
mod host_log;
mod ledger;
mod needs;
#[cfg(feature = "postgres")]
mod postgres;
mod restore;
mod schema;
#[cfg(feature = "sqlite")]
mod sqlite;

use std::path::Path;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

#[cfg(feature = "testing")]
pub use catalog::BackupCatalog;
#[cfg(not(feature = "testing"))]
pub(crate) use catalog::BackupCatalog;
pub use catalog::RecordedBackup;
#[cfg(feature = "testing")]
pub use ledger::ErasureLedger;
#[cfg(not(feature = "testing"))]
pub(crate) use ledger::ErasureLedger;
pub(crate) use needs::in_words;
pub(crate) use restore::restore_unrecorded;
pub use restore::verify;

use self::archive::{ArchiveKeys, ArchiveWriter, Header};
use self::restore::Importer;
use self::schema::Table;
use crate::config::{Backend, Config};
use crate::crypto::{KeyProvider, RootRecord, fingerprint};
use crate::error::{Error, Result};
use crate::store::Store;

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

/// What [`verify`] found: the archive is intact, and the configured keys
/// hold every KEK version a restore of it needs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct Verification {
    /// The archive's signed manifest.
    pub manifest: Manifest,
    /// Every KEK version a restore needs (data keys, the directory key and,
    /// with transit, the root secret), ascending; the configured keys hold
    /// them all.
    pub kek_versions: Vec<i32>,
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
/// exist, and records it in the [`BackupCatalog`]. Called through
/// `Clarity::backup`, which authorises and audits it.
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
    let transit_root = match store
        .get_meta(crate::crypto::schedule::meta::TRANSIT_ROOT_KEY)
        .await?
    {
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
    let result = async {
        export(config, &mut writer, progress).await?;
        let needs = writer.kek_needs().versions();
        let manifest = writer.finish(manifest)?;
        record(config, out, &manifest, needs)?;
        Ok(manifest)
    }
    .await;
    if result.is_err() {
        let _ = std::fs::remove_file(out);
    }
    result
}

/// Records a written backup, with the KEK versions its rows need, in the
/// catalog beside the erasure ledger (S-BAK-2). A backup that cannot be
/// recorded fails, so that no archive exists that `keys retire` would not
/// know about.
fn record(config: &Config, out: &Path, manifest: &Manifest, needs: Vec<i32>) -> Result<()> {
    let archive = std::fs::canonicalize(out).unwrap_or_else(|_| out.to_path_buf());
    BackupCatalog::in_dir(config.erasure_ledger_dir()).record(&RecordedBackup::new(
        manifest.backup_id.clone(),
        manifest.created_at,
        &archive,
        needs,
    ))
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
            let mut client = crate::store::PgTarget::from_settings(&config.store)?
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
