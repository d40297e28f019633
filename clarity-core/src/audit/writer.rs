//! The group-commit audit writer: events from concurrent operations are
//! chained and stored in one transaction per batch; each caller is released
//! once its batch has committed (so its event is durable). A write of PHI
//! rides along with its event: its [`Change`] is applied in the same
//! transaction, so the change and its event commit together or not at all.
//! The queue is bounded: when it is full, callers wait (back-pressure).

use std::borrow::Cow;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use uuid::Uuid;

use super::chain::{AuditKeys, MAC_LEN};
use super::witness::{Witness, WitnessKind};
use super::{AuditEvent, AuditOutcome, Checkpoint, EventDraft};
use crate::audit::{AuditBatch, AuditStore, StoredBatch};
use crate::clock::Clock;
use crate::error::{Error, Result};
use crate::model::Change;
use crate::timings::{Stage, StageTimes};

/// Events per transaction at most.
const MAX_BATCH: usize = 1024;

/// Writer settings.
#[derive(Debug, Clone, Copy)]
pub struct WriterSettings {
    /// Queue capacity (events waiting to be written).
    pub queue: usize,
    /// A checkpoint after this many events...
    pub checkpoint_every: i64,
    /// ... or after this long, whichever comes first.
    pub checkpoint_interval: Duration,
}

impl Default for WriterSettings {
    fn default() -> Self {
        WriterSettings {
            queue: 65_536,
            checkpoint_every: 1000,
            checkpoint_interval: Duration::from_secs(60),
        }
    }
}

struct Job {
    draft: EventDraft,
    change: Option<Change>,
    done: oneshot::Sender<Result<()>>,
}

/// Appends events to this writer's chain.
#[derive(Debug)]
pub struct AuditWriter {
    chain_id: Uuid,
    jobs: std::sync::Mutex<Option<mpsc::Sender<Job>>>,
    task: tokio::sync::Mutex<Option<tokio::task::JoinHandle<()>>>,
    stats: Arc<WriterStats>,
    /// Fail-closed sinks that may hold new events back (S-AUD-8).
    gate: std::sync::OnceLock<Arc<super::SinkGate>>,
}

/// What a writer holds and has done, for back-pressure and metrics.
#[derive(Debug, Default)]
struct WriterStats {
    queued: AtomicUsize,
    events: std::sync::atomic::AtomicU64,
    batches: std::sync::atomic::AtomicU64,
    commit_micros: std::sync::atomic::AtomicU64,
    times: StageTimes,
}

struct Chain {
    id: Uuid,
    seq: i64,
    mac: Vec<u8>,
    checkpointed: i64,
}

impl AuditWriter {
    /// Starts a writer with a new chain on the current Tokio runtime.
    pub fn start(
        store: Arc<dyn AuditStore>,
        keys: AuditKeys,
        clock: Arc<dyn Clock>,
        settings: WriterSettings,
    ) -> AuditWriter {
        AuditWriter::start_timed(store, keys, clock, settings, StageTimes::new(), None)
    }

    /// [`AuditWriter::start`], counting each batch into `times` as
    /// [`Stage::AuditCommit`] and each caller's wait as [`Stage::AuditWait`],
    /// and recording the chain's start, every checkpoint and a clean end in
    /// `witness` (S-AUD-7).
    pub fn start_timed(
        store: Arc<dyn AuditStore>,
        keys: AuditKeys,
        clock: Arc<dyn Clock>,
        settings: WriterSettings,
        times: StageTimes,
        witness: Option<Witness>,
    ) -> AuditWriter {
        let chain_id = Uuid::now_v7();
        let (tx, rx) = mpsc::channel(settings.queue.max(1));
        let chain = Chain {
            id: chain_id,
            seq: 0,
            mac: vec![0u8; MAC_LEN],
            checkpointed: 0,
        };
        let stats = Arc::new(WriterStats {
            times,
            ..WriterStats::default()
        });
        let task = tokio::spawn(run(
            Parts {
                store,
                keys: Arc::new(keys),
                clock,
                settings,
                witness: witness.map(Arc::new),
            },
            chain,
            rx,
            Arc::clone(&stats),
        ));
        AuditWriter {
            chain_id,
            jobs: std::sync::Mutex::new(Some(tx)),
            task: tokio::sync::Mutex::new(Some(task)),
            stats,
            gate: std::sync::OnceLock::new(),
        }
    }

    /// Refuses events while `gate` says a fail-closed sink is too far
    /// behind (S-AUD-8). Set once; later calls are ignored.
    pub(crate) fn hold_for(&self, gate: Arc<super::SinkGate>) {
        let _ = self.gate.set(gate);
    }

    /// This writer's chain.
    pub fn chain_id(&self) -> Uuid {
        self.chain_id
    }

    /// Events written, batches committed and microseconds spent committing.
    pub fn stats(&self) -> (u64, u64, u64) {
        (
            self.stats.events.load(Ordering::Relaxed),
            self.stats.batches.load(Ordering::Relaxed),
            self.stats.commit_micros.load(Ordering::Relaxed),
        )
    }

    /// Whether the writer still accepts events.
    pub fn is_running(&self) -> bool {
        self.jobs
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
            .is_some_and(|tx| !tx.is_closed())
    }

    /// Events waiting to be written.
    pub fn queue_depth(&self) -> usize {
        self.stats.queued.load(Ordering::Relaxed)
    }

    /// Appends an event and returns once it is durable.
    ///
    /// # Errors
    /// [`Error::Unavailable`] when the event could not be stored (the caller
    /// must then fail its operation, S-AUD-2) or the writer has stopped.
    pub async fn append(&self, draft: EventDraft) -> Result<()> {
        self.append_all(vec![draft]).await
    }

    /// Appends several events and returns once all are durable; they queue
    /// together, so group commit usually stores them in one transaction.
    ///
    /// # Errors
    /// As [`AuditWriter::append`], if any of them could not be stored.
    pub async fn append_all(&self, drafts: Vec<EventDraft>) -> Result<()> {
        self.enqueue(drafts.into_iter().map(|d| (d, None)).collect())
            .await
    }

    /// Applies `change` and appends its event in one transaction; returns
    /// once both are durable. When the change fails (a stale version, a
    /// missing row), nothing of it is stored, the event is stored with the
    /// failure as its outcome, and the change's error is returned.
    ///
    /// # Errors
    /// The change's error; [`Error::Unavailable`] when the batch could not
    /// be stored (then neither the change nor its event is) or the writer
    /// has stopped.
    pub async fn append_change(&self, draft: EventDraft, change: Change) -> Result<()> {
        self.enqueue(vec![(draft, Some(change))]).await
    }

    async fn enqueue(&self, jobs: Vec<(EventDraft, Option<Change>)>) -> Result<()> {
        self.stats
            .times
            .time(Stage::AuditWait, self.enqueue_untimed(jobs))
            .await
    }

    async fn enqueue_untimed(&self, jobs: Vec<(EventDraft, Option<Change>)>) -> Result<()> {
        if let Some(refusal) = self.gate.get().and_then(|gate| gate.refusal()) {
            return Err(refusal);
        }
        let sender = self
            .jobs
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
            .ok_or_else(stopped)?;
        let mut waits = Vec::with_capacity(jobs.len());
        for (draft, change) in jobs {
            let (done, wait) = oneshot::channel();
            self.stats.queued.fetch_add(1, Ordering::Relaxed);
            if sender
                .send(Job {
                    draft,
                    change,
                    done,
                })
                .await
                .is_err()
            {
                self.stats.queued.fetch_sub(1, Ordering::Relaxed);
                return Err(stopped());
            }
            waits.push(wait);
        }
        let mut outcome = Ok(());
        for wait in waits {
            let result = wait.await.map_err(|_| stopped()).and_then(|r| r);
            if outcome.is_ok() {
                outcome = result;
            }
        }
        outcome
    }

    /// Writes what is queued, a final checkpoint, and stops. Later appends fail.
    pub async fn shutdown(&self) {
        drop(self.jobs.lock().unwrap_or_else(|p| p.into_inner()).take());
        if let Some(task) = self.task.lock().await.take() {
            let _ = task.await;
        }
    }
}

fn stopped() -> Error {
    Error::Unavailable {
        message: "the audit log is not accepting events".into(),
    }
}

/// What the writer's task works with.
struct Parts {
    store: Arc<dyn AuditStore>,
    /// Shared with each batch's sealer, so the key material is not copied.
    keys: Arc<AuditKeys>,
    clock: Arc<dyn Clock>,
    settings: WriterSettings,
    witness: Option<Arc<Witness>>,
}

impl Parts {
    /// Records an entry in the witness off the async runtime (a synced
    /// append). A failure is logged: the events are stored, and
    /// verification holds the chain to what the witness did record.
    async fn witness(&self, kind: WitnessKind, chain: &Chain) {
        let Some(witness) = self.witness.clone() else {
            return;
        };
        let (keys, id, seq, mac) = (
            Arc::clone(&self.keys),
            chain.id,
            chain.seq,
            chain.mac.clone(),
        );
        let at = self.clock.now();
        let recorded =
            tokio::task::spawn_blocking(move || witness.record(&keys, kind, id, seq, &mac, at))
                .await;
        match recorded {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                tracing::error!(error = %e, "the audit witness could not record the chain")
            }
            Err(_) => tracing::error!("the audit witness could not record the chain"),
        }
    }
}

async fn run(parts: Parts, mut chain: Chain, mut rx: mpsc::Receiver<Job>, stats: Arc<WriterStats>) {
    parts.witness(WitnessKind::Start, &chain).await;
    // The first timed checkpoint one interval from now: an interval's first
    // tick is immediate, and would race the first events for a checkpoint.
    let interval = parts.settings.checkpoint_interval;
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + interval, interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let first = tokio::select! {
            job = rx.recv() => job,
            _ = tick.tick() => {
                checkpoint_if_due(&parts, &mut chain).await;
                continue;
            }
        };
        let Some(first) = first else { break };
        let mut jobs = vec![first];
        while jobs.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(job) => jobs.push(job),
                Err(_) => break,
            }
        }
        stats.queued.fetch_sub(jobs.len(), Ordering::Relaxed);
        let started = std::time::Instant::now();
        let count = jobs.len() as u64;
        let before = chain.checkpointed;
        if write_batch(&parts, &mut chain, jobs).await {
            stats.events.fetch_add(count, Ordering::Relaxed);
            stats.batches.fetch_add(1, Ordering::Relaxed);
            let took = started.elapsed();
            stats.times.observe(Stage::AuditCommit, took);
            let micros = u64::try_from(took.as_micros()).unwrap_or(u64::MAX);
            stats.commit_micros.fetch_add(micros, Ordering::Relaxed);
        }
        if chain.checkpointed != before && chain.checkpointed == chain.seq {
            parts.witness(WitnessKind::Checkpoint, &chain).await;
        }
    }
    checkpoint_if_due(&parts, &mut chain).await;
    if chain.seq == chain.checkpointed {
        parts.witness(WitnessKind::End, &chain).await;
    }
}

async fn write_batch(parts: &Parts, chain: &mut Chain, jobs: Vec<Job>) -> bool {
    let store = parts.store.as_ref();
    let mut drafts = Vec::with_capacity(jobs.len());
    let mut changes = Vec::with_capacity(jobs.len());
    let mut waiters = Vec::with_capacity(jobs.len());
    for job in jobs {
        drafts.push(job.draft);
        changes.push(job.change);
        waiters.push(job.done);
    }
    let with_change: Vec<bool> = changes.iter().map(Option::is_some).collect();
    let ids: Vec<Uuid> = drafts.iter().map(|_| Uuid::now_v7()).collect();
    let seal = Sealer {
        keys: Arc::clone(&parts.keys),
        chain_id: chain.id,
        seq: chain.seq,
        mac: chain.mac.clone(),
        checkpoint_due: chain.checkpointed + parts.settings.checkpoint_every,
        now: parts.clock.now(),
        ids: ids.clone(),
        drafts,
    };
    let batch = AuditBatch {
        changes,
        seal: Box::new(move |outcomes| seal.seal(outcomes)),
    };
    match store.append_audit_batch(batch).await {
        Ok(StoredBatch {
            outcomes,
            events,
            checkpoint,
        }) => {
            if let Some(last) = events.last() {
                chain.seq = last.seq;
                chain.mac.clone_from(&last.mac);
            }
            if let Some(cp) = checkpoint {
                chain.checkpointed = cp.seq;
            }
            for (waiter, outcome) in waiters.into_iter().zip(outcomes) {
                let _ = waiter.send(outcome);
            }
            true
        }
        Err(e) => {
            // A lost connection can hide a commit that landed: this writer is
            // the chain's only writer, so what is stored past the head is ours.
            if let Ok(stored) = store
                .audit_chain_events(chain.id, chain.seq, usize::MAX >> 1)
                .await
            {
                if let Some(last) = stored.last() {
                    chain.seq = last.seq;
                    chain.mac.clone_from(&last.mac);
                }
                let landed =
                    stored.len() == ids.len() && stored.iter().zip(&ids).all(|(s, id)| s.id == *id);
                if landed {
                    tracing::warn!(error = %e, "audit batch reported an error but was stored");
                    // A checkpoint sealed into the batch landed with it.
                    if let Ok(checkpoints) = store.audit_checkpoints(chain.id).await
                        && let Some(last) = checkpoints.last()
                    {
                        chain.checkpointed = chain.checkpointed.max(last.seq);
                    }
                    for ((waiter, event), changed) in
                        waiters.into_iter().zip(&stored).zip(with_change)
                    {
                        // A change's own error is not stored, only its outcome.
                        let outcome = if !changed || event.outcome == AuditOutcome::Success.code() {
                            Ok(())
                        } else {
                            Err(Error::Unavailable {
                                message: "the change could not be made".into(),
                            })
                        };
                        let _ = waiter.send(outcome);
                    }
                    return true;
                }
            }
            tracing::error!(error = %e, events = waiters.len(), "audit batch could not be stored");
            for waiter in waiters {
                let _ = waiter.send(Err(Error::Unavailable {
                    message: "the audit log could not record the event".into(),
                }));
            }
            false
        }
    }
}

/// Builds a batch's chained events once its changes' outcomes are known;
/// runs inside the store's transaction.
struct Sealer {
    keys: Arc<AuditKeys>,
    chain_id: Uuid,
    /// The chain's head before this batch.
    seq: i64,
    mac: Vec<u8>,
    /// A checkpoint once the chain reaches this sequence number.
    checkpoint_due: i64,
    now: chrono::DateTime<chrono::Utc>,
    ids: Vec<Uuid>,
    drafts: Vec<EventDraft>,
}

impl Sealer {
    fn seal(self, outcomes: &[Result<()>]) -> (Vec<AuditEvent>, Option<Checkpoint>) {
        let Sealer {
            keys,
            chain_id,
            mut seq,
            mut mac,
            checkpoint_due,
            now,
            ids,
            drafts,
        } = self;
        let mut events = Vec::with_capacity(drafts.len());
        let mut macer = keys.macer();
        for ((d, id), outcome) in drafts.into_iter().zip(ids).zip(outcomes) {
            seq += 1;
            let (outcome, reason) = match outcome {
                Ok(()) => (d.outcome, d.reason),
                Err(e) => (
                    AuditOutcome::of_error(e.kind()),
                    Some(e.kind().as_str().to_string()),
                ),
            };
            let mut event = AuditEvent {
                id,
                chain_id,
                seq,
                recorded: now,
                event_type: Cow::Borrowed(d.event_type),
                subtype: Cow::Borrowed(d.subtype),
                action: Cow::Borrowed(d.action.code()),
                outcome: Cow::Borrowed(outcome.code()),
                purpose: d.context.purpose,
                actor_id: d.actor_id,
                actor_roles: d.actor_roles,
                client_address: d.context.client_address.map(address_text),
                patient_id: d.patient_id,
                entity_id: d.entity_id,
                query_hash: d.query_hash,
                reason,
                request_id: d.context.request_id,
                actor_issuer: d.identity.as_ref().map(|i| i.issuer.clone()),
                actor_subject: d.identity.as_ref().map(|i| i.subject.clone()),
                prev_mac: mac,
                mac: Vec::new(),
            };
            event.mac = macer.mac(&event.prev_mac, &event);
            mac = event.mac.clone();
            events.push(event);
        }
        let checkpoint = (seq >= checkpoint_due).then(|| Checkpoint {
            chain_id,
            seq,
            mac: mac.clone(),
            signed_at: now,
            signature: keys.sign(chain_id, seq, &mac, now),
        });
        (events, checkpoint)
    }
}

/// A client address as text, written into one allocation of the longest
/// address's size instead of a string grown as the digits arrive.
fn address_text(address: std::net::IpAddr) -> String {
    use std::fmt::Write as _;
    // "ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255" is the longest form.
    let mut text = String::with_capacity(45);
    let _ = write!(text, "{address}");
    text
}

async fn checkpoint_if_due(parts: &Parts, chain: &mut Chain) {
    if chain.seq == chain.checkpointed {
        return;
    }
    let keys = &parts.keys;
    let signed_at = parts.clock.now();
    let checkpoint = Checkpoint {
        chain_id: chain.id,
        seq: chain.seq,
        mac: chain.mac.clone(),
        signed_at,
        signature: keys.sign(chain.id, chain.seq, &chain.mac, signed_at),
    };
    match parts.store.append_audit(&[], Some(&checkpoint)).await {
        Ok(()) => {
            chain.checkpointed = chain.seq;
            parts.witness(WitnessKind::Checkpoint, chain).await;
        }
        Err(e) => tracing::error!(error = %e, "audit checkpoint could not be stored"),
    }
}

#[cfg(test)]
mod tests {
    use super::address_text;

    // An event names its client address as the address's usual text.
    #[test]
    fn an_address_is_written_as_its_text() {
        for text in [
            "192.0.2.7",
            "2001:db8::1",
            "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
            "::ffff:255.255.255.255",
        ] {
            let address: std::net::IpAddr = text.parse().expect("address");
            assert_eq!(address_text(address), text);
        }
    }
}
