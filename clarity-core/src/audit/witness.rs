//! The audit witness (S-AUD-7): where each chain's start, every checkpoint
//! and the heads that instances find are also recorded, outside the audit
//! tables, so that deleting a whole chain, a tail together with its
//! checkpoints, or every event is reported by verification rather than
//! passing as a shorter (or empty) trail.
//!
//! The witness is a directory (`audit.witness_dir`, by default
//! `<data_dir>/audit-witness`). Each host appends to a file of its own,
//! `witness-<host>.log`, so instances sharing the directory (one volume for
//! the deployment) never write to the same file; verification reads the
//! union of every `witness-*.log` there. One JSON line per entry, appended
//! and synced; identifiers and MACs only, never PHI. Each entry is signed
//! with the audit checkpoint key, so lines written by anyone else are
//! reported rather than believed.
//!
//! Entry kinds:
//! - `start`: a writer began a chain (sequence 0);
//! - `checkpoint`: a checkpoint of the chain was committed to the store;
//! - `head`: an instance that started found this chain's last event in the
//!   store (the tail a killed predecessor left unwitnessed);
//! - `end`: the chain's writer shut down cleanly at this head;
//! - `restore`: a backup was restored, holding the chain up to this
//!   sequence number (0: not at all); what was witnessed of the chain
//!   before, past that point, is no longer expected.

use std::collections::BTreeMap;
use std::fs::OpenOptions;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::AuditStore;
use super::chain::{AuditKeys, WitnessedChain};
use crate::error::{Error, Result};

/// Names of witness files start and end so.
const PREFIX: &str = "witness-";
const SUFFIX: &str = ".log";

/// What an entry records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WitnessKind {
    /// A writer began the chain.
    Start,
    /// A checkpoint was committed.
    Checkpoint,
    /// An instance starting found the chain's head in the store.
    Head,
    /// The chain's writer shut down cleanly.
    End,
    /// A restore left the chain at this point.
    Restore,
}

impl WitnessKind {
    fn tag(self) -> u8 {
        match self {
            WitnessKind::Start => b's',
            WitnessKind::Checkpoint => b'c',
            WitnessKind::Head => b'h',
            WitnessKind::End => b'e',
            WitnessKind::Restore => b'r',
        }
    }
}

/// One line of a witness file.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Line {
    kind: WitnessKind,
    chain: Uuid,
    seq: i64,
    /// The MAC of the event at `seq`, hex (zeros at a chain's start).
    mac: String,
    /// When the entry was made, microseconds since the epoch.
    at: i64,
    /// Ed25519 signature with the audit checkpoint key, hex.
    sig: String,
}

/// The bytes an entry's signature covers.
fn message(kind: WitnessKind, chain: Uuid, seq: i64, mac: &[u8], at: i64) -> Vec<u8> {
    let mut m = b"clarity/v1 witness|".to_vec();
    m.push(kind.tag());
    m.extend_from_slice(chain.as_bytes());
    m.extend_from_slice(&seq.to_be_bytes());
    m.extend_from_slice(&at.to_be_bytes());
    m.extend_from_slice(mac);
    m
}

/// An append-only record of the audit chains' progress, outside the
/// database (see the module documentation).
#[derive(Debug, Clone)]
pub struct Witness {
    dir: PathBuf,
    file: PathBuf,
}

impl Witness {
    /// The witness in `dir`; this host appends to its own file there.
    pub fn in_dir(dir: impl Into<PathBuf>) -> Self {
        Self::for_host(dir, &crate::host::name())
    }

    /// The witness in `dir` as written by `host`.
    pub fn for_host(dir: impl Into<PathBuf>, host: &str) -> Self {
        let dir = dir.into();
        let file = dir.join(format!("{PREFIX}{}{SUFFIX}", crate::host::file_safe(host)));
        Witness { dir, file }
    }

    /// The directory verification reads.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The file this host appends to.
    pub fn path(&self) -> &Path {
        &self.file
    }

    fn io(&self, e: std::io::Error) -> Error {
        Error::Unavailable {
            message: format!(
                "cannot write the audit witness {}: {e}",
                self.file.display()
            ),
        }
    }

    /// Appends an entry, signed with `keys`, and syncs it to disk; creates
    /// the directory (mode 0700) and file (mode 0600) when missing.
    ///
    /// # Errors
    /// [`Error::Unavailable`] when the file cannot be written.
    pub fn record(
        &self,
        keys: &AuditKeys,
        kind: WitnessKind,
        chain: Uuid,
        seq: i64,
        mac: &[u8],
        at: DateTime<Utc>,
    ) -> Result<()> {
        let at = at.timestamp_micros();
        let sig = keys.sign_bytes(&message(kind, chain, seq, mac, at));
        let line = Line {
            kind,
            chain,
            seq,
            mac: hex::encode(mac),
            at,
            sig: hex::encode(sig),
        };
        let mut text = serde_json::to_string(&line)
            .map_err(|_| Error::internal("cannot encode a witness entry"))?;
        text.push('\n');
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&self.dir)
            .map_err(|e| self.io(e))?;
        let mut file = OpenOptions::new()
            .append(true)
            .create(true)
            .mode(0o600)
            .open(&self.file)
            .map_err(|e| self.io(e))?;
        // One write per line: appends from processes sharing the file do
        // not interleave within a line.
        file.write_all(text.as_bytes()).map_err(|e| self.io(e))?;
        file.sync_data().map_err(|e| self.io(e))
    }

    /// Creates the directory and this host's file if missing and checks
    /// that the file can be appended to, so that an instance whose witness
    /// is not writable refuses to start rather than run unwitnessed.
    ///
    /// # Errors
    /// [`Error::Config`] naming `audit.witness_dir`.
    pub fn check_writable(&self) -> Result<()> {
        let refuse = |e: std::io::Error| {
            Error::config(
                "audit.witness_dir",
                format!(
                    "cannot write the audit witness {}: {e}",
                    self.file.display()
                ),
            )
        };
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&self.dir)
            .map_err(refuse)?;
        OpenOptions::new()
            .append(true)
            .create(true)
            .mode(0o600)
            .open(&self.file)
            .map(drop)
            .map_err(refuse)
    }

    /// Everything witnessed, by every host writing to this directory;
    /// empty when there is no witness yet.
    ///
    /// # Errors
    /// [`Error::Integrity`]-free: damaged or forged lines are reported in
    /// [`Witnessed::problems`]; an unreadable file is
    /// [`Error::Unavailable`].
    pub fn load(&self, keys: &AuditKeys) -> Result<Witnessed> {
        let mut files = Vec::new();
        match std::fs::read_dir(&self.dir) {
            Ok(entries) => {
                for entry in entries {
                    let path = entry.map_err(|e| self.unreadable(&self.dir, e))?.path();
                    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
                    if name.starts_with(PREFIX) && name.ends_with(SUFFIX) {
                        files.push(path);
                    }
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(self.unreadable(&self.dir, e)),
        }
        files.sort();
        let mut witnessed = Witnessed::default();
        for path in files {
            let file = std::fs::File::open(&path).map_err(|e| self.unreadable(&path, e))?;
            read_file(&path, BufReader::new(file), keys, &mut witnessed)
                .map_err(|e| self.unreadable(&path, e))?;
        }
        Ok(witnessed)
    }

    fn unreadable(&self, path: &Path, e: std::io::Error) -> Error {
        Error::Unavailable {
            message: format!("cannot read the audit witness {}: {e}", path.display()),
        }
    }

    /// Records, for each chain this host began that did not end cleanly,
    /// the head the store holds now when it is past what was witnessed: the
    /// tail a killed instance left between its last checkpoint and its
    /// death. Called as an instance starts, before its own chain begins.
    ///
    /// # Errors
    /// Reading the store or writing the witness.
    pub async fn record_predecessors(
        &self,
        store: &dyn AuditStore,
        keys: &AuditKeys,
        now: DateTime<Utc>,
    ) -> Result<usize> {
        let mine = Witness {
            dir: self.dir.clone(),
            file: self.file.clone(),
        };
        let open = match std::fs::File::open(&self.file) {
            Ok(file) => {
                let mut own = Witnessed::default();
                read_file(&self.file, BufReader::new(file), keys, &mut own)
                    .map_err(|e| self.unreadable(&self.file, e))?;
                own.chains
                    .into_iter()
                    .filter(|(_, c)| !c.ended)
                    .map(|(id, c)| (id, c.last_seq))
                    .collect::<Vec<_>>()
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(self.unreadable(&self.file, e)),
        };
        let mut recorded = 0;
        for (chain, witnessed) in open {
            let mut head = None;
            let mut after = witnessed;
            loop {
                let page = store.audit_chain_events(chain, after, 10_000).await?;
                let Some(last) = page.last() else { break };
                after = last.seq;
                head = Some((last.seq, last.mac.clone()));
            }
            if let Some((seq, mac)) = head {
                mine.record(keys, WitnessKind::Head, chain, seq, &mac, now)?;
                recorded += 1;
            }
        }
        Ok(recorded)
    }
}

impl Witness {
    /// Records, after a restore into this witness's store, the point each
    /// witnessed chain was restored to (its last event or checkpoint in
    /// `store`, 0 when the archive did not hold it): events witnessed past
    /// it were lost with the restore, and are expected no more.
    ///
    /// # Errors
    /// Reading the witness or the store, or writing the witness.
    pub async fn record_restore(
        &self,
        store: &dyn AuditStore,
        keys: &AuditKeys,
        now: DateTime<Utc>,
    ) -> Result<usize> {
        let (me, k) = (self.clone(), keys.clone());
        let known = tokio::task::spawn_blocking(move || me.load(&k))
            .await
            .map_err(|_| Error::internal("cannot read the audit witness"))??;
        let mut recorded = 0;
        for &chain in known.chains.keys() {
            let checkpoints = store.audit_checkpoints(chain).await?;
            let mut head = checkpoints.last().map(|c| (c.seq, c.mac.clone()));
            let mut after = head.as_ref().map_or(0, |h| h.0);
            loop {
                let page = store.audit_chain_events(chain, after, 10_000).await?;
                let Some(last) = page.last() else { break };
                after = last.seq;
                head = Some((last.seq, last.mac.clone()));
            }
            let (seq, mac) = head.unwrap_or((0, vec![0; super::chain::MAC_LEN]));
            self.record(keys, WitnessKind::Restore, chain, seq, &mac, now)?;
            recorded += 1;
        }
        Ok(recorded)
    }
}

/// Everything a witness directory holds.
#[derive(Default)]
pub struct Witnessed {
    /// Per chain.
    pub chains: BTreeMap<Uuid, WitnessedChain>,
    /// Lines that are damaged or carry no valid signature, named by file and line.
    pub problems: Vec<String>,
    raw: BTreeMap<Uuid, Vec<Entry>>,
}

impl std::fmt::Debug for Witnessed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Witnessed")
            .field("chains", &self.chains)
            .field("problems", &self.problems)
            .finish_non_exhaustive()
    }
}

/// A verified entry, as read.
struct Entry {
    kind: WitnessKind,
    seq: i64,
    mac: Vec<u8>,
    at: i64,
}

fn read_file(
    path: &Path,
    reader: impl BufRead,
    keys: &AuditKeys,
    out: &mut Witnessed,
) -> std::io::Result<()> {
    let mut entries: BTreeMap<Uuid, Vec<Entry>> = BTreeMap::new();
    let mut lines = reader.lines().peekable();
    let mut n = 0;
    while let Some(line) = lines.next() {
        let line = line?;
        n += 1;
        let last = lines.peek().is_none();
        let parsed = serde_json::from_str::<Line>(&line).ok().and_then(|l| {
            let mac = hex::decode(&l.mac).ok()?;
            let sig = hex::decode(&l.sig).ok()?;
            Some((l, mac, sig))
        });
        let Some((line, mac, sig)) = parsed else {
            // A torn last line (a crash mid-append) is not an entry.
            if !last {
                out.problems
                    .push(format!("{} line {n}: not a witness entry", path.display()));
            }
            continue;
        };
        if !keys.verify_bytes(
            &message(line.kind, line.chain, line.seq, &mac, line.at),
            &sig,
        ) {
            out.problems.push(format!(
                "{} line {n}: the signature is not the audit key's",
                path.display()
            ));
            continue;
        }
        entries.entry(line.chain).or_default().push(Entry {
            kind: line.kind,
            seq: line.seq,
            mac,
            at: line.at,
        });
    }
    for (chain, mut list) in entries {
        let summary = out.raw.entry(chain).or_default();
        summary.append(&mut list);
    }
    out.summarize();
    Ok(())
}

impl Witnessed {
    /// Rebuilds [`Witnessed::chains`] from every entry read so far: the
    /// latest restore of a chain drops what was witnessed before it past
    /// the point it restored.
    fn summarize(&mut self) {
        self.chains.clear();
        for (&chain, entries) in &self.raw {
            let restore = entries
                .iter()
                .filter(|e| e.kind == WitnessKind::Restore)
                .max_by_key(|e| e.at)
                .map(|e| (e.at, e.seq));
            let superseded = |e: &Entry| restore.is_some_and(|(at, seq)| e.at < at && e.seq > seq);
            let mut c = WitnessedChain::default();
            for e in entries.iter().filter(|e| !superseded(e)) {
                c.last_seq = c.last_seq.max(e.seq);
                match e.kind {
                    WitnessKind::Start => {}
                    WitnessKind::Checkpoint => {
                        c.checkpoints.insert(e.seq, e.mac.clone());
                    }
                    WitnessKind::Head | WitnessKind::End | WitnessKind::Restore => {
                        c.ended |= e.kind != WitnessKind::Head;
                        if e.seq > 0 {
                            c.heads.insert(e.seq, e.mac.clone());
                        }
                    }
                }
            }
            self.chains.insert(chain, c);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::Key;

    fn keys() -> AuditKeys {
        AuditKeys::derive(&Key::from_slice(&[7; 32]).expect("key")).expect("keys")
    }

    // S-AUD-7: entries of every host are read; forged and damaged lines are
    // reported, a torn last line is not an entry.
    #[test]
    fn hosts_append_and_forgeries_are_reported() {
        let dir = tempfile::tempdir().expect("tempdir");
        let keys = keys();
        let a = Witness::for_host(dir.path(), "pod-a");
        let b = Witness::for_host(dir.path(), "pod/b");
        assert!(a.load(&keys).expect("no witness yet").chains.is_empty());
        let (one, two) = (Uuid::now_v7(), Uuid::now_v7());
        let now = Utc::now();
        a.record(&keys, WitnessKind::Start, one, 0, &[0; 32], now)
            .expect("start");
        a.record(&keys, WitnessKind::Checkpoint, one, 10, &[1; 32], now)
            .expect("cp");
        b.record(&keys, WitnessKind::Head, two, 4, &[2; 32], now)
            .expect("head");
        b.record(&keys, WitnessKind::End, two, 5, &[3; 32], now)
            .expect("end");
        assert!(b.path().ends_with("witness-pod_b.log"));
        let seen = a.load(&keys).expect("load");
        assert!(seen.problems.is_empty(), "{:?}", seen.problems);
        assert_eq!(seen.chains[&one].last_seq, 10);
        assert_eq!(seen.chains[&one].checkpoints[&10], vec![1; 32]);
        assert!(!seen.chains[&one].ended);
        assert_eq!(seen.chains[&two].last_seq, 5);
        assert!(seen.chains[&two].ended);

        // A line signed with another key, and one that is not JSON.
        let other = AuditKeys::derive(&Key::from_slice(&[8; 32]).expect("key")).expect("keys");
        a.record(&other, WitnessKind::Checkpoint, one, 99, &[9; 32], now)
            .expect("forged");
        let mut file = OpenOptions::new()
            .append(true)
            .open(a.path())
            .expect("open");
        file.write_all(b"garbage\n{\"kind\":\"che").expect("write");
        let seen = a.load(&keys).expect("load");
        assert_eq!(seen.problems.len(), 2, "{:?}", seen.problems);
        assert!(seen.problems[0].contains("line 3") && seen.problems[0].contains("signature"));
        assert!(seen.problems[1].contains("line 4"));
        assert_eq!(
            seen.chains[&one].last_seq, 10,
            "the forged entry is not believed"
        );
    }
}
