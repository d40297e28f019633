//! [`ErasureLedger`]: the ids of erased patients, kept outside the database
//! (beside the keys by default), so a restore of a backup taken before an
//! erasure does not bring the erased patient's data key back (S-KEY-3).
//!
//! The ledger is a directory (`keys.erasure_ledger_dir`). Each host appends
//! to a file of its own, `erasure-ledger-<host>.log`, so instances sharing
//! the directory over a network file system never write to the same file; a
//! restore reads the union of every `erasure-ledger*.log` there (including
//! `erasure-ledger.log` of earlier releases). One line per erasure:
//! `<patient uuid> <RFC 3339 time>`. Identifiers only, no PHI. Files are
//! created with mode 0600, appended to and synced at each erasure.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::host_log::HostLog;
use crate::error::Result;

/// Names of ledger files start and end so.
const FILES: (&str, &str) = ("erasure-ledger", ".log");

/// An append-only list of erased patients (see the module documentation).
#[derive(Debug, Clone)]
pub struct ErasureLedger {
    log: HostLog,
}

impl ErasureLedger {
    /// The ledger in `dir`; this host appends to its own file there.
    pub fn in_dir(dir: impl Into<PathBuf>) -> Self {
        Self::for_host(dir, &crate::host::name())
    }

    /// The ledger in `dir` as written by `host` (any name; characters other
    /// than letters, digits, `.`, `-` and `_` become `_`).
    pub fn for_host(dir: impl Into<PathBuf>, host: &str) -> Self {
        ErasureLedger {
            log: HostLog::new("erasure ledger", FILES, dir.into(), host),
        }
    }

    /// The file this host appends to.
    pub fn path(&self) -> &Path {
        self.log.path()
    }

    /// Appends an erasure to this host's file and syncs it to disk,
    /// creating the directory (mode 0700) when missing.
    ///
    /// # Errors
    /// [`crate::error::Error::Key`] when the file cannot be written.
    pub fn record(&self, patient: Uuid, at: DateTime<Utc>) -> Result<()> {
        self.log.append(&format!(
            "{patient} {}\n",
            at.to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
        ))
    }

    /// Every erasure recorded by any host, by patient (the earliest time);
    /// empty when there is no ledger yet.
    ///
    /// # Errors
    /// [`crate::error::Error::Key`] when a ledger file exists but cannot be
    /// read or parsed.
    pub fn load(&self) -> Result<BTreeMap<Uuid, DateTime<Utc>>> {
        let mut out = BTreeMap::new();
        for (id, at) in self.log.entries(parse)? {
            let earliest = out.entry(id).or_insert(at);
            *earliest = (*earliest).min(at);
        }
        Ok(out)
    }
}

/// One ledger line: `<patient uuid> <RFC 3339 time>`.
fn parse(line: &str) -> Option<(Uuid, DateTime<Utc>)> {
    let (id, at) = line.split_once(' ')?;
    Some((
        id.parse::<Uuid>().ok()?,
        DateTime::parse_from_rfc3339(at).ok()?.with_timezone(&Utc),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    // S-KEY-3: every host's erasures count; damage is refused by name.
    #[test]
    fn hosts_append_to_their_own_files_and_loads_join_them() {
        let dir = tempfile::tempdir().expect("tempdir");
        let shared = dir.path().join("ledger");
        let a = ErasureLedger::for_host(&shared, "pod-a");
        let b = ErasureLedger::for_host(&shared, "pod/b");
        assert!(a.load().expect("no directory yet").is_empty());
        let (one, two) = (Uuid::now_v7(), Uuid::now_v7());
        let early = DateTime::parse_from_rfc3339("2026-11-01T08:00:00.000001Z")
            .expect("time")
            .with_timezone(&Utc);
        a.record(one, Utc::now()).expect("record");
        a.record(one, Utc::now()).expect("again");
        b.record(one, early).expect("the same patient elsewhere");
        b.record(two, Utc::now()).expect("record");
        assert_ne!(a.path(), b.path());
        assert!(b.path().ends_with("erasure-ledger-pod_b.log"));
        // An earlier release's single file is read too.
        let three = Uuid::now_v7();
        std::fs::write(
            shared.join("erasure-ledger.log"),
            format!("{three} 2026-01-01T00:00:00Z\n"),
        )
        .expect("legacy");
        std::fs::write(shared.join("notes.txt"), "not a ledger").expect("other file");
        let all = ErasureLedger::for_host(&shared, "restore-host")
            .load()
            .expect("load");
        assert_eq!(all.len(), 3);
        assert_eq!(all[&one], early, "the earliest erasure time");
        use std::os::unix::fs::PermissionsExt;
        let mode = |p: &Path| std::fs::metadata(p).expect("meta").permissions().mode() & 0o777;
        assert_eq!(mode(&shared), 0o700);
        assert_eq!(mode(a.path()), 0o600);
        std::fs::write(b.path(), "nonsense\nmore\n").expect("damage");
        let err = a.load().expect_err("damaged");
        assert!(
            err.to_string().contains("erasure-ledger-pod_b.log"),
            "{err}"
        );
    }
}
