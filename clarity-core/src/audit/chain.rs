//! The integrity of the audit trail: each event's MAC covers the previous
//! one's (`mac_n = HMAC-SHA-256(k_audit, mac_{n-1} | canonical(event_n))`),
//! and Ed25519-signed checkpoints pin a chain's progress, so that editing,
//! deleting, inserting, reordering or truncating events is detected and
//! located, and nobody without the audit key can forge a chain (S-AUD-3).

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac};
use serde::Serialize;
use sha2::Sha256;
use uuid::Uuid;

use super::{AuditEvent, Checkpoint};
use crate::audit::AuditStore;
use crate::crypto::Key;
use crate::crypto::schedule::{self, SubKey};
use crate::error::{Error, Result};

/// Length of a MAC.
pub(crate) const MAC_LEN: usize = 32;

/// What the witness holds about one chain.
#[derive(Debug, Clone, Default)]
pub struct WitnessedChain {
    /// The highest sequence number witnessed (0: only the start).
    pub last_seq: i64,
    /// Witnessed checkpoints: sequence number → MAC.
    pub checkpoints: BTreeMap<i64, Vec<u8>>,
    /// Witnessed heads (`head` and `end` entries past 0): sequence number → MAC.
    pub heads: BTreeMap<i64, Vec<u8>>,
    /// Whether its writer shut down cleanly (or a restore replaced it).
    pub ended: bool,
}

/// The audit MAC key and checkpoint signing key, derived from the root secret.
///
/// Versioned: new chains are written under the current version; older
/// versions are kept for verification, and each chain is verified with the
/// version its first event (or checkpoint) was made with.
#[derive(Clone)]
pub struct AuditKeys {
    version: u32,
    mac: Key,
    signing: ed25519_compact::KeyPair,
    older: std::sync::Arc<Vec<AuditKeys>>,
}

impl std::fmt::Debug for AuditKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AuditKeys([REDACTED])")
    }
}

impl AuditKeys {
    /// Derives the keys (version 1) from the key provider's root secret.
    ///
    /// # Errors
    /// [`Error::Internal`] if derivation fails.
    pub fn derive(root: &Key) -> Result<Self> {
        Self::derive_version(root, 1, Vec::new())
    }

    fn derive_version(root: &Key, version: u32, older: Vec<AuditKeys>) -> Result<Self> {
        let mac = schedule::derive(root, SubKey::AuditChainMac(version))?;
        let seed = schedule::derive_bytes(root, SubKey::AuditSigningSeed(version))?;
        Ok(AuditKeys {
            version,
            mac,
            signing: ed25519_compact::KeyPair::from_seed(ed25519_compact::Seed::new(*seed)),
            older: std::sync::Arc::new(older),
        })
    }

    /// Derives version `version` for new chains, keeping versions below it
    /// for verifying older chains.
    ///
    /// # Errors
    /// [`Error::Internal`] if derivation fails.
    pub fn derive_up_to(root: &Key, version: u32) -> Result<Self> {
        let older = (1..version.max(1))
            .map(|v| Self::derive_version(root, v, Vec::new()))
            .collect::<Result<Vec<_>>>()?;
        Self::derive_version(root, version.max(1), older)
    }

    /// The version new chains are written under.
    pub fn version(&self) -> u32 {
        self.version
    }

    /// The version that made a chain, judged by its first event (or, with
    /// no events, its first checkpoint); the current one when none matches
    /// (verification then reports the mismatch).
    fn for_chain(&self, first: Option<&AuditEvent>, checkpoints: &[Checkpoint]) -> &AuditKeys {
        let matches = |k: &AuditKeys| match first {
            Some(e) => k.mac(&e.prev_mac, e) == e.mac,
            None => checkpoints.first().is_some_and(|c| k.verify_checkpoint(c)),
        };
        if matches(self) {
            return self;
        }
        self.older.iter().find(|k| matches(k)).unwrap_or(self)
    }

    /// The checkpoint verification key (public), hex.
    pub fn public_key_hex(&self) -> String {
        hex::encode(self.signing.pk.as_ref())
    }

    /// The MAC of `event` after `prev_mac`.
    pub fn mac(&self, prev_mac: &[u8], event: &AuditEvent) -> Vec<u8> {
        self.macer().mac(prev_mac, event)
    }

    /// A MAC calculator for many events under this key.
    pub(crate) fn macer(&self) -> Macer {
        Macer {
            keyed: <Hmac<Sha256> as Mac>::new_from_slice(self.mac.expose())
                .expect("HMAC-SHA-256 accepts a 32-byte key"),
            canonical: Vec::with_capacity(512),
        }
    }

    /// Signs a checkpoint of `chain` at `seq` with `mac`, made at `signed_at`.
    pub fn sign(&self, chain: Uuid, seq: i64, mac: &[u8], signed_at: DateTime<Utc>) -> Vec<u8> {
        self.signing
            .sk
            .sign(checkpoint_message(chain, seq, mac, signed_at), None)
            .to_vec()
    }

    /// Signs `message` with the checkpoint key (witness entries).
    pub(crate) fn sign_bytes(&self, message: &[u8]) -> Vec<u8> {
        self.signing.sk.sign(message, None).to_vec()
    }

    /// Whether `signature` over `message` is this key's or an older
    /// version's.
    pub(crate) fn verify_bytes(&self, message: &[u8], signature: &[u8]) -> bool {
        let Ok(signature) = ed25519_compact::Signature::from_slice(signature) else {
            return false;
        };
        std::iter::once(self)
            .chain(self.older.iter())
            .any(|k| k.signing.pk.verify(message, &signature).is_ok())
    }

    /// Whether `checkpoint` carries a valid signature.
    pub fn verify_checkpoint(&self, checkpoint: &Checkpoint) -> bool {
        let Ok(signature) = ed25519_compact::Signature::from_slice(&checkpoint.signature) else {
            return false;
        };
        self.signing
            .pk
            .verify(
                checkpoint_message(
                    checkpoint.chain_id,
                    checkpoint.seq,
                    &checkpoint.mac,
                    checkpoint.signed_at,
                ),
                &signature,
            )
            .is_ok()
    }
}

fn checkpoint_message(chain: Uuid, seq: i64, mac: &[u8], signed_at: DateTime<Utc>) -> Vec<u8> {
    let mut message = b"clarity/v1 checkpoint|".to_vec();
    message.extend_from_slice(chain.as_bytes());
    message.extend_from_slice(&seq.to_be_bytes());
    message.extend_from_slice(&signed_at.timestamp_micros().to_be_bytes());
    message.extend_from_slice(mac);
    message
}

/// MACs of events under one key: the keyed HMAC state is set up once and
/// cloned per event, and the canonical form is written into one buffer, so a
/// run of events (a batch, a chain being verified) allocates only the MACs.
pub(crate) struct Macer {
    keyed: Hmac<Sha256>,
    canonical: Vec<u8>,
}

impl Macer {
    /// The MAC of `event` after `prev_mac`.
    pub(crate) fn mac(&mut self, prev_mac: &[u8], event: &AuditEvent) -> Vec<u8> {
        self.canonical.clear();
        write_canonical(event, &mut self.canonical);
        let mut mac = self.keyed.clone();
        mac.update(prev_mac);
        mac.update(&self.canonical);
        mac.finalize().into_bytes().to_vec()
    }
}

/// Writes the bytes an event's MAC covers into `out`: every field but the
/// MACs, in a fixed order, as JSON (times in microseconds).
fn write_canonical(e: &AuditEvent, out: &mut Vec<u8>) {
    #[derive(Serialize)]
    struct Canonical<'a> {
        v: u8,
        id: Uuid,
        chain: Uuid,
        seq: i64,
        recorded: i64,
        event_type: &'a str,
        subtype: &'a str,
        action: &'a str,
        outcome: &'a str,
        purpose: Option<&'a str>,
        actor_id: Option<Uuid>,
        actor_roles: Option<&'a str>,
        client_address: Option<&'a str>,
        patient_id: Option<Uuid>,
        entity_id: Option<Uuid>,
        query_hash: Option<&'a str>,
        reason: Option<&'a str>,
        request_id: Option<&'a str>,
        // Absent (not null) for events without them, so events made before
        // these fields existed keep their MACs.
        #[serde(skip_serializing_if = "Option::is_none")]
        actor_issuer: Option<&'a str>,
        #[serde(skip_serializing_if = "Option::is_none")]
        actor_subject: Option<&'a str>,
    }
    // Serialising these plain fields into a Vec cannot fail.
    let _ = serde_json::to_writer(
        out,
        &Canonical {
            v: 1,
            id: e.id,
            chain: e.chain_id,
            seq: e.seq,
            recorded: e.recorded.timestamp_micros(),
            event_type: &e.event_type,
            subtype: &e.subtype,
            action: &e.action,
            outcome: &e.outcome,
            purpose: e.purpose.as_deref(),
            actor_id: e.actor_id,
            actor_roles: e.actor_roles.as_deref(),
            client_address: e.client_address.as_deref(),
            patient_id: e.patient_id,
            entity_id: e.entity_id,
            query_hash: e.query_hash.as_deref(),
            reason: e.reason.as_deref(),
            request_id: e.request_id.as_deref(),
            actor_issuer: e.actor_issuer.as_deref(),
            actor_subject: e.actor_subject.as_deref(),
        },
    );
}

/// The verdict on one chain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ChainReport {
    /// The chain (one per writer: server instance or embedded handle).
    pub chain_id: Uuid,
    /// Events read (in an incremental run, those past where the last run
    /// left the chain).
    pub events: u64,
    /// Checkpoints read.
    pub checkpoints: u64,
    /// The last sequence number present.
    pub last_seq: i64,
    /// The highest sequence number the witness saw the chain reach, when
    /// the witness knows the chain (S-AUD-7).
    pub witnessed_seq: Option<i64>,
    /// Whether the chain verified.
    pub ok: bool,
    /// The first sequence number where it failed.
    pub first_bad_seq: Option<i64>,
    /// What was wrong there.
    pub problem: Option<String>,
}

/// Verifies every chain in `store` (S-AUD-3). Events may be missing from the
/// start of a chain only where a retention purge could have removed them:
/// up to a checkpoint signed before `purge_cutoff` (now minus the retention).
///
/// # Errors
/// Backend errors while reading; a broken chain is a report, not an error.
pub async fn verify(
    store: &dyn AuditStore,
    keys: &AuditKeys,
    purge_cutoff: DateTime<Utc>,
) -> Result<Vec<ChainReport>> {
    verify_witnessed(store, keys, purge_cutoff, &BTreeMap::new()).await
}

/// [`verify`], holding each chain to what `witnessed` saw of it as well
/// (S-AUD-7): a witnessed chain missing from the store, a chain shorter than
/// witnessed, a witnessed checkpoint that is gone or differs, and an event
/// that differs from the witnessed head at its sequence number all fail.
///
/// # Errors
/// As [`verify`].
pub async fn verify_witnessed(
    store: &dyn AuditStore,
    keys: &AuditKeys,
    purge_cutoff: DateTime<Utc>,
    witnessed: &BTreeMap<Uuid, WitnessedChain>,
) -> Result<Vec<ChainReport>> {
    let (reports, _) =
        verify_incremental(store, keys, purge_cutoff, witnessed, &BTreeMap::new()).await?;
    Ok(reports)
}

/// Where an earlier verification of a chain ended with the chain intact:
/// its last event's sequence number and the MAC that event links to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedHead {
    /// The last event verified.
    pub seq: i64,
    /// The MAC of the event before it (what it links to).
    pub prev_mac: Vec<u8>,
}

/// [`verify_witnessed`], reading each chain's events only past where an
/// earlier run left it intact (`from`); the heads of the chains that verify
/// now come back for the next run. Everything but the events before a head
/// is checked as in a full run: every chain the store and the witness know,
/// every checkpoint's signature and presence, the witness's view; and the
/// event at the head is verified again (its link and MAC), so a head that
/// was altered fails. A chain whose head event is gone (a retention purge,
/// or a deletion) is verified in full. Edits to events before a head are found
/// only by a full run: run one regularly (the server does, every
/// [`FULL_VERIFY_EVERY`] scheduled runs).
///
/// # Errors
/// As [`verify`].
pub async fn verify_incremental(
    store: &dyn AuditStore,
    keys: &AuditKeys,
    purge_cutoff: DateTime<Utc>,
    witnessed: &BTreeMap<Uuid, WitnessedChain>,
    from: &BTreeMap<Uuid, VerifiedHead>,
) -> Result<(Vec<ChainReport>, BTreeMap<Uuid, VerifiedHead>)> {
    let stored = store.audit_chains().await?;
    let mut reports = Vec::with_capacity(stored.len());
    let mut heads = BTreeMap::new();
    for &chain in &stored {
        let seen = witnessed.get(&chain);
        let (report, head) =
            verify_chain(store, keys, chain, purge_cutoff, seen, from.get(&chain)).await?;
        if let Some(head) = head.filter(|_| report.ok) {
            heads.insert(chain, head);
        }
        reports.push(report);
    }
    let stored: std::collections::HashSet<Uuid> = stored.into_iter().collect();
    // A chain witnessed only at its start may never have stored anything.
    for (&chain, seen) in witnessed {
        if seen.last_seq > 0 && !stored.contains(&chain) {
            reports.push(ChainReport {
                chain_id: chain,
                events: 0,
                checkpoints: 0,
                last_seq: 0,
                witnessed_seq: Some(seen.last_seq),
                ok: false,
                first_bad_seq: Some(1),
                problem: Some(format!(
                    "the chain is missing from the store: the witness saw it reach {}",
                    seen.last_seq
                )),
            });
        }
    }
    Ok((reports, heads))
}

/// How many scheduled verifications of a server make one full verification:
/// the first after start is full, then every this many (with the default
/// hourly interval, a full verification a day); the others are incremental
/// (they read each chain only from where the last run left it intact).
pub const FULL_VERIFY_EVERY: u64 = 24;

/// Records the first failure of a chain; later ones add nothing.
fn fail(report: &mut ChainReport, seq: i64, problem: String) {
    if report.ok {
        report.ok = false;
        report.first_bad_seq = Some(seq);
        report.problem = Some(problem);
    }
}

async fn verify_chain(
    store: &dyn AuditStore,
    keys: &AuditKeys,
    chain: Uuid,
    purge_cutoff: DateTime<Utc>,
    seen: Option<&WitnessedChain>,
    from: Option<&VerifiedHead>,
) -> Result<(ChainReport, Option<VerifiedHead>)> {
    const PAGE: usize = 10_000;
    // Resume at a head only while an event is stored there.
    let from = match from {
        Some(head) => {
            let at = store.audit_chain_events(chain, head.seq - 1, 1).await?;
            at.first()
                .is_some_and(|e| e.seq == head.seq)
                .then_some(head)
        }
        None => None,
    };
    let checkpoints = store.audit_checkpoints(chain).await?;
    let first = store.audit_chain_events(chain, 0, 1).await?;
    let keys = keys.for_chain(first.first(), &checkpoints);
    let mut report = ChainReport {
        chain_id: chain,
        events: 0,
        checkpoints: checkpoints.len() as u64,
        last_seq: 0,
        witnessed_seq: seen.map(|w| w.last_seq),
        ok: true,
        first_bad_seq: None,
        problem: None,
    };
    for cp in &checkpoints {
        if !keys.verify_checkpoint(cp) {
            fail(
                &mut report,
                cp.seq,
                format!("checkpoint at {} has an invalid signature", cp.seq),
            );
        }
    }
    // Pages are checked on the blocking pool while the next one is read, so
    // reading and MAC work overlap (and neither holds up the async runtime).
    let mut links = Links {
        macer: keys.macer(),
        checkpoints,
        purge_cutoff,
        prev: None,
        expected_seq: 0,
        macs_at_checkpoints: Vec::new(),
        watched: seen.map_or_else(Vec::new, |w| {
            let mut seqs: Vec<i64> = w
                .checkpoints
                .keys()
                .chain(w.heads.keys())
                .copied()
                .collect();
            seqs.sort_unstable();
            seqs.dedup();
            seqs
        }),
        macs_at_watched: Vec::new(),
        report,
    };
    if let Some(head) = from {
        links.prev = Some(head.prev_mac.clone());
        links.expected_seq = head.seq;
    }
    let mut page = store
        .audit_chain_events(chain, from.map_or(0, |h| h.seq - 1), PAGE)
        .await?;
    let mut last_prev = None;
    while let Some(last) = page.last() {
        let (after, full) = (last.seq, page.len() == PAGE);
        last_prev = Some(last.prev_mac.clone());
        let check = tokio::task::spawn_blocking(move || {
            links.check(&page);
            links
        });
        let next = if full {
            store.audit_chain_events(chain, after, PAGE).await
        } else {
            Ok(Vec::new())
        };
        links = check
            .await
            .map_err(|_| Error::internal("audit verification failed"))?;
        page = next?;
    }
    let Links {
        checkpoints,
        macs_at_checkpoints,
        macs_at_watched,
        mut report,
        ..
    } = links;
    // A chain whose events were all purged keeps only old checkpoints.
    let fully_purged = from.is_none()
        && report.events == 0
        && checkpoints.iter().all(|c| c.signed_at < purge_cutoff);
    for cp in checkpoints.iter().filter(|_| !fully_purged) {
        let last = report.last_seq;
        if cp.seq > last {
            fail(
                &mut report,
                last + 1,
                format!(
                    "events after {last} are missing: a checkpoint covers up to {}",
                    cp.seq
                ),
            );
        } else if macs_at_checkpoints
            .binary_search_by_key(&cp.seq, |(seq, _)| *seq)
            .is_ok_and(|i| macs_at_checkpoints[i].1 != cp.mac)
        {
            fail(
                &mut report,
                cp.seq,
                format!("event {} differs from its checkpoint", cp.seq),
            );
        }
    }
    if let Some(seen) = seen {
        check_witnessed(&mut report, seen, &checkpoints, &macs_at_watched);
    }
    let head = last_prev.map(|prev_mac| VerifiedHead {
        seq: report.last_seq,
        prev_mac,
    });
    Ok((report, head))
}

/// Holds a verified chain to what the witness saw of it (S-AUD-7).
fn check_witnessed(
    report: &mut ChainReport,
    seen: &WitnessedChain,
    checkpoints: &[Checkpoint],
    macs_at_watched: &[(i64, Vec<u8>)],
) {
    // Retention purges delete events, never checkpoints: a chain reaches
    // its last event or its last checkpoint, whichever is further.
    let reached = checkpoints
        .last()
        .map_or(report.last_seq, |c| c.seq.max(report.last_seq));
    if seen.last_seq > reached {
        fail(
            report,
            reached + 1,
            format!(
                "events after {reached} are missing: the witness saw the chain reach {}",
                seen.last_seq
            ),
        );
    }
    for (&seq, mac) in &seen.checkpoints {
        match checkpoints.binary_search_by_key(&seq, |c| c.seq) {
            Err(_) => fail(
                report,
                seq,
                format!("the checkpoint at {seq} is gone: the witness holds it"),
            ),
            Ok(i) if checkpoints[i].mac != *mac => fail(
                report,
                seq,
                format!("the checkpoint at {seq} differs from the witness's"),
            ),
            Ok(_) => {}
        }
    }
    for (seq, mac) in macs_at_watched {
        let witnessed = seen.checkpoints.get(seq).or_else(|| seen.heads.get(seq));
        if witnessed.is_some_and(|w| w != mac) {
            fail(
                report,
                *seq,
                format!("event {seq} differs from what the witness saw"),
            );
        }
    }
}

/// The state of a chain's verification between pages: the link to the
/// previous event, the next sequence number expected, and the MACs seen at
/// checkpoints.
struct Links {
    macer: Macer,
    /// The chain's checkpoints, in sequence order.
    checkpoints: Vec<Checkpoint>,
    purge_cutoff: DateTime<Utc>,
    prev: Option<Vec<u8>>,
    expected_seq: i64,
    macs_at_checkpoints: Vec<(i64, Vec<u8>)>,
    /// Sequence numbers the witness saw, in order, and the MACs found there.
    watched: Vec<i64>,
    macs_at_watched: Vec<(i64, Vec<u8>)>,
    report: ChainReport,
}

impl Links {
    /// Checks the next `events` of the chain, in sequence order.
    fn check(&mut self, events: &[AuditEvent]) {
        for event in events {
            self.report.events += 1;
            let prev = match self.prev.take() {
                Some(prev) => prev,
                None => {
                    self.expected_seq = event.seq;
                    self.start(event)
                }
            };
            if event.seq != self.expected_seq {
                let expected = self.expected_seq;
                fail(
                    &mut self.report,
                    expected,
                    format!("event {expected} is missing or out of order"),
                );
            } else if event.prev_mac != prev {
                fail(
                    &mut self.report,
                    event.seq,
                    "the link to the previous event is broken".into(),
                );
            } else if self.macer.mac(&prev, event) != event.mac {
                fail(
                    &mut self.report,
                    event.seq,
                    "the event was altered or forged (MAC mismatch)".into(),
                );
            }
            if self
                .checkpoints
                .binary_search_by_key(&event.seq, |c| c.seq)
                .is_ok()
            {
                self.macs_at_checkpoints
                    .push((event.seq, event.mac.clone()));
            }
            if self.watched.binary_search(&event.seq).is_ok() {
                self.macs_at_watched.push((event.seq, event.mac.clone()));
            }
            self.prev = Some(event.mac.clone());
            self.expected_seq = event.seq + 1;
            self.report.last_seq = event.seq;
        }
    }

    /// The MAC the chain's first stored event must link to: zeros at the
    /// chain's start, or a checkpoint's right before it (retention purge).
    fn start(&mut self, event: &AuditEvent) -> Vec<u8> {
        if event.seq == 1 {
            return vec![0u8; MAC_LEN];
        }
        if let Some(cp) = self
            .checkpoints
            .iter()
            .find(|c| c.seq == event.seq - 1 && c.signed_at < self.purge_cutoff)
        {
            return cp.mac.clone();
        }
        fail(
            &mut self.report,
            1,
            format!("events before {} are missing", event.seq),
        );
        event.prev_mac.clone()
    }
}
