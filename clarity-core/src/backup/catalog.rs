//! [`BackupCatalog`]: every backup this deployment wrote, with the KEK
//! versions each one needs to be restored, so that `keys retire` can refuse
//! to retire a version a recorded backup still needs (S-BAK-2).
//!
//! The catalog is kept outside the database, beside the erasure ledger (in
//! `keys.erasure_ledger_dir`), for the same reason as the ledger: a restore
//! replaces the database, and the backups taken after the restored one still
//! need their keys. Each host appends to a file of its own,
//! `backup-catalog-<host>.jsonl`; readers take the union of every
//! `backup-catalog*.jsonl` there. One JSON object per backup: its id, when it
//! was taken, the archive's path when written and the KEK versions it needs.
//! Identifiers, a time, a path and version numbers only: no PHI, no key.
//! Fields a later release adds are ignored; backups written before the
//! catalog existed are not in it.

use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::host_log::HostLog;
use crate::error::{Error, Result};

/// Names of catalog files start and end so.
const FILES: (&str, &str) = ("backup-catalog", ".jsonl");

/// One backup as the catalog recorded it when it was written.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct RecordedBackup {
    /// The archive's id (hex), as in its manifest.
    pub backup_id: String,
    /// When the backup was taken.
    pub created_at: DateTime<Utc>,
    /// Where the archive was written (it may have been moved since).
    pub archive: String,
    /// Every KEK version a restore of it needs, ascending.
    pub kek_versions: Vec<i32>,
}

impl RecordedBackup {
    /// A backup `backup_id` taken at `created_at`, written to `archive`,
    /// needing `kek_versions`.
    pub fn new(
        backup_id: impl Into<String>,
        created_at: DateTime<Utc>,
        archive: &Path,
        kek_versions: Vec<i32>,
    ) -> Self {
        RecordedBackup {
            backup_id: backup_id.into(),
            created_at,
            archive: archive.display().to_string(),
            kek_versions,
        }
    }
}

/// The record of backups written (see the module documentation).
#[derive(Debug, Clone)]
pub struct BackupCatalog {
    log: HostLog,
}

impl BackupCatalog {
    /// The catalog in `dir`; this host appends to its own file there.
    pub fn in_dir(dir: impl Into<PathBuf>) -> Self {
        Self::for_host(dir, &crate::host::name())
    }

    /// The catalog in `dir` as written by `host` (any name; characters
    /// other than letters, digits, `.`, `-` and `_` become `_`).
    pub fn for_host(dir: impl Into<PathBuf>, host: &str) -> Self {
        BackupCatalog {
            log: HostLog::new("backup catalog", FILES, dir.into(), host),
        }
    }

    /// The file this host appends to.
    pub fn path(&self) -> &Path {
        self.log.path()
    }

    /// Appends `backup` to this host's file and syncs it to disk, creating
    /// the directory (mode 0700) and file (mode 0600) when missing.
    ///
    /// # Errors
    /// [`Error::Key`] when the file cannot be written.
    pub fn record(&self, backup: &RecordedBackup) -> Result<()> {
        let mut line = serde_json::to_string(backup)
            .map_err(|_| Error::internal("cannot encode a backup catalog entry"))?;
        line.push('\n');
        self.log.append(&line)
    }

    /// Every backup recorded by any host, oldest first; empty when there
    /// is no catalog yet.
    ///
    /// # Errors
    /// [`Error::Key`] when a catalog file exists but cannot be read or
    /// parsed (the message names the file and line).
    pub fn load(&self) -> Result<Vec<RecordedBackup>> {
        let mut backups = self.log.entries(|line| serde_json::from_str(line).ok())?;
        backups.sort_by_key(|b: &RecordedBackup| b.created_at);
        Ok(backups)
    }

    /// The recorded backups that need any of `versions`, oldest first.
    ///
    /// # Errors
    /// As [`BackupCatalog::load`].
    pub fn needing(&self, versions: &[i32]) -> Result<Vec<RecordedBackup>> {
        let mut backups = self.load()?;
        backups.retain(|b| b.kek_versions.iter().any(|v| versions.contains(v)));
        Ok(backups)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // S-BAK-2: every host's backups count, later fields are ignored, a torn
    // last line is no backup, and damage is refused by file and line.
    #[test]
    fn hosts_record_their_backups_and_loads_join_them() {
        let dir = tempfile::tempdir().expect("tempdir");
        let shared = dir.path().join("ledger");
        let a = BackupCatalog::for_host(&shared, "pod-a");
        let b = BackupCatalog::for_host(&shared, "pod/b");
        assert!(a.load().expect("no directory yet").is_empty());
        let early = DateTime::parse_from_rfc3339("2026-11-01T08:00:00Z")
            .expect("time")
            .with_timezone(&Utc);
        let old = RecordedBackup::new("aa", early, Path::new("/b/old.cbak"), vec![1]);
        let new = RecordedBackup::new("bb", Utc::now(), Path::new("new.cbak"), vec![2, 3]);
        b.record(&new).expect("record");
        a.record(&old).expect("record");
        assert!(b.path().ends_with("backup-catalog-pod_b.jsonl"));
        assert_eq!(a.load().expect("load"), vec![old.clone(), new.clone()]);
        assert_eq!(a.needing(&[1]).expect("needing"), vec![old.clone()]);
        assert_eq!(a.needing(&[3, 4]).expect("needing"), vec![new.clone()]);
        assert!(a.needing(&[4]).expect("needing").is_empty());
        use std::os::unix::fs::PermissionsExt;
        let mode = |p: &Path| std::fs::metadata(p).expect("meta").permissions().mode() & 0o777;
        assert_eq!(mode(&shared), 0o700);
        assert_eq!(mode(a.path()), 0o600);

        // A field of a later release, then a torn line (a crash mid-append).
        let later = r#"{"backup_id":"cc","created_at":"2026-11-02T00:00:00Z","archive":"c","kek_versions":[4],"note":1}"#;
        std::fs::write(b.path(), format!("{later}\n{{\"backup_id\":")).expect("write");
        let ids: Vec<String> = a
            .load()
            .expect("load")
            .into_iter()
            .map(|b| b.backup_id)
            .collect();
        assert_eq!(ids, ["aa", "cc"]);
        std::fs::write(b.path(), "nonsense\nmore\n").expect("damage");
        let err = a.load().expect_err("damaged");
        assert!(
            err.to_string().contains("backup-catalog-pod_b.jsonl")
                && err.to_string().contains("line 1"),
            "{err}"
        );
    }
}
