//! [`ErasureLedger`]: the ids of erased patients, kept beside the keys, so a
//! restore of a backup taken before an erasure does not bring the erased
//! patient's data key back (S-KEY-3).
//!
//! One line per erasure: `<patient uuid> <RFC 3339 time>`. Identifiers only,
//! no PHI. The file is created with mode 0600, appended to and synced at each
//! erasure.

use std::collections::BTreeMap;
use std::fs::OpenOptions;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::error::{Error, Result};

/// An append-only list of erased patients (see the module documentation).
#[derive(Debug, Clone)]
pub struct ErasureLedger {
    path: PathBuf,
}

impl ErasureLedger {
    /// The ledger kept in `path`.
    pub fn at(path: impl Into<PathBuf>) -> Self {
        ErasureLedger { path: path.into() }
    }

    /// The ledger's file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends an erasure and syncs it to disk.
    ///
    /// # Errors
    /// [`Error::Key`] when the file cannot be written.
    pub fn record(&self, patient: Uuid, at: DateTime<Utc>) -> Result<()> {
        let io = |e: std::io::Error| {
            Error::key(format!(
                "cannot write the erasure ledger {}: {e}",
                self.path.display()
            ))
        };
        let mut file = OpenOptions::new()
            .append(true)
            .create(true)
            .mode(0o600)
            .open(&self.path)
            .map_err(io)?;
        let line = format!(
            "{patient} {}\n",
            at.to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
        );
        file.write_all(line.as_bytes()).map_err(io)?;
        file.sync_all().map_err(io)
    }

    /// Every erasure recorded, by patient; empty when there is no ledger yet.
    ///
    /// # Errors
    /// [`Error::Key`] when the file exists but cannot be read or parsed.
    pub fn load(&self) -> Result<BTreeMap<Uuid, DateTime<Utc>>> {
        let text = match std::fs::read_to_string(&self.path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(BTreeMap::new()),
            Err(e) => {
                return Err(Error::key(format!(
                    "cannot read the erasure ledger {}: {e}",
                    self.path.display()
                )));
            }
        };
        let mut out = BTreeMap::new();
        for (n, line) in text.lines().enumerate() {
            let parsed = line.split_once(' ').and_then(|(id, at)| {
                Some((
                    id.parse::<Uuid>().ok()?,
                    DateTime::parse_from_rfc3339(at).ok()?.with_timezone(&Utc),
                ))
            });
            match parsed {
                Some((id, at)) => {
                    out.entry(id).or_insert(at);
                }
                // A torn last line (a crash mid-append) is not an erasure.
                None if n + 1 == text.lines().count() && !text.ends_with('\n') => {}
                None => {
                    return Err(Error::key(format!(
                        "the erasure ledger {} is damaged at line {}",
                        self.path.display(),
                        n + 1
                    )));
                }
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_and_loads() {
        let dir = tempfile::tempdir().expect("tempdir");
        let ledger = ErasureLedger::at(dir.path().join("erasures.log"));
        assert!(ledger.load().expect("empty").is_empty());
        let a = Uuid::now_v7();
        ledger.record(a, Utc::now()).expect("record");
        ledger.record(a, Utc::now()).expect("again");
        assert_eq!(ledger.load().expect("load").len(), 1);
        std::fs::write(ledger.path(), "nonsense\nmore\n").expect("damage");
        assert!(ledger.load().is_err());
    }
}
