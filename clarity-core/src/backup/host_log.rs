//! [`HostLog`]: a log kept outside the database as append-only files, one
//! per host, in a directory instances may share (the erasure ledger and the
//! backup catalog). Each host appends to its own file, so instances sharing
//! the directory over a network file system never write to the same file;
//! readers take the union of every file of the log there. Files are created
//! with mode 0600 (the directory 0700), appended to one line at a time and
//! synced.

use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// One log: `<dir>/<prefix>-<host><suffix>` per host.
#[derive(Debug, Clone)]
pub(crate) struct HostLog {
    /// What the log is, for messages (`erasure ledger`).
    what: &'static str,
    prefix: &'static str,
    suffix: &'static str,
    dir: PathBuf,
    file: PathBuf,
}

impl HostLog {
    /// The log `what` in `dir` as written by `host` (any name; characters
    /// other than letters, digits, `.`, `-` and `_` become `_`).
    pub(crate) fn new(
        what: &'static str,
        (prefix, suffix): (&'static str, &'static str),
        dir: PathBuf,
        host: &str,
    ) -> Self {
        let file = dir.join(format!("{prefix}-{}{suffix}", crate::host::file_safe(host)));
        HostLog {
            what,
            prefix,
            suffix,
            dir,
            file,
        }
    }

    /// The file this host appends to.
    pub(crate) fn path(&self) -> &Path {
        &self.file
    }

    /// Appends `line` (ending in `\n`) to this host's file in one write, so
    /// appends of processes sharing the file never interleave within a line,
    /// and syncs it.
    ///
    /// # Errors
    /// [`Error::Key`] naming the file when it cannot be written.
    pub(crate) fn append(&self, line: &str) -> Result<()> {
        let write = || -> std::io::Result<()> {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(&self.dir)?;
            let mut out = std::fs::OpenOptions::new()
                .append(true)
                .create(true)
                .mode(0o600)
                .open(&self.file)?;
            out.write_all(line.as_bytes())?;
            out.sync_all()
        };
        write().map_err(|e| {
            Error::key(format!(
                "cannot write the {} {}: {e}",
                self.what,
                self.file.display()
            ))
        })
    }

    /// Every line of every host's file, parsed by `parse`, file by file in
    /// name order; empty when the directory does not exist. A torn last line
    /// (a crash mid-append: no final newline) is left out.
    ///
    /// # Errors
    /// [`Error::Key`] naming the file when one cannot be read, or naming the
    /// file and line when a line does not parse.
    pub(crate) fn entries<T>(&self, parse: impl Fn(&str) -> Option<T>) -> Result<Vec<T>> {
        let mut out = Vec::new();
        for path in self.files()? {
            let text = std::fs::read_to_string(&path).map_err(|e| self.unreadable(&path, e))?;
            let lines = text.lines().count();
            for (n, line) in text.lines().enumerate() {
                match parse(line) {
                    Some(entry) => out.push(entry),
                    None if n + 1 == lines && !text.ends_with('\n') => {}
                    None => {
                        return Err(Error::key(format!(
                            "the {} {} is damaged at line {}",
                            self.what,
                            path.display(),
                            n + 1
                        )));
                    }
                }
            }
        }
        Ok(out)
    }

    /// Every host's file of this log, in name order.
    fn files(&self) -> Result<Vec<PathBuf>> {
        let entries = match std::fs::read_dir(&self.dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(self.unreadable(&self.dir, e)),
        };
        let mut files = Vec::new();
        for entry in entries {
            let path = entry.map_err(|e| self.unreadable(&self.dir, e))?.path();
            let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
            if name.starts_with(self.prefix) && name.ends_with(self.suffix) {
                files.push(path);
            }
        }
        files.sort();
        Ok(files)
    }

    fn unreadable(&self, path: &Path, e: std::io::Error) -> Error {
        Error::key(format!(
            "cannot read the {} {}: {e}",
            self.what,
            path.display()
        ))
    }
}
