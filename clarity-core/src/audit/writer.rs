//! The group-commit audit writer: events from concurrent operations are
//! chained and stored in one transaction per batch; each caller is released
//! once its batch has committed (so its event is durable). The queue is
//! bounded: when it is full, callers wait (back-pressure).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use uuid::Uuid;

use super::chain::{AuditKeys, MAC_LEN};
use super::{AuditEvent, Checkpoint, EventDraft};
use crate::clock::Clock;
use crate::error::{Error, Result};
use crate::store::AuditStore;

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
    done: oneshot::Sender<Result<()>>,
}

/// Appends events to this writer's chain.
#[derive(Debug)]
pub struct AuditWriter {
    chain_id: Uuid,
    jobs: std::sync::Mutex<Option<mpsc::Sender<Job>>>,
    task: tokio::sync::Mutex<Option<tokio::task::JoinHandle<()>>>,
    stats: Arc<WriterStats>,
}

/// What a writer holds and has done, for back-pressure and metrics.
#[derive(Debug, Default)]
struct WriterStats {
    queued: AtomicUsize,
    events: std::sync::atomic::AtomicU64,
    batches: std::sync::atomic::AtomicU64,
    commit_micros: std::sync::atomic::AtomicU64,
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
        let chain_id = Uuid::now_v7();
        let (tx, rx) = mpsc::channel(settings.queue.max(1));
        let chain = Chain {
            id: chain_id,
            seq: 0,
            mac: vec![0u8; MAC_LEN],
            checkpointed: 0,
        };
        let stats = Arc::new(WriterStats::default());
        let task = tokio::spawn(run(
            store,
            keys,
            clock,
            settings,
            chain,
            rx,
            Arc::clone(&stats),
        ));
        AuditWriter {
            chain_id,
            jobs: std::sync::Mutex::new(Some(tx)),
            task: tokio::sync::Mutex::new(Some(task)),
            stats,
        }
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
        let sender = self
            .jobs
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
            .ok_or_else(stopped)?;
        let mut waits = Vec::with_capacity(drafts.len());
        for draft in drafts {
            let (done, wait) = oneshot::channel();
            self.stats.queued.fetch_add(1, Ordering::Relaxed);
            if sender.send(Job { draft, done }).await.is_err() {
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

async fn run(
    store: Arc<dyn AuditStore>,
    keys: AuditKeys,
    clock: Arc<dyn Clock>,
    settings: WriterSettings,
    mut chain: Chain,
    mut rx: mpsc::Receiver<Job>,
    stats: Arc<WriterStats>,
) {
    let mut tick = tokio::time::interval(settings.checkpoint_interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let first = tokio::select! {
            job = rx.recv() => job,
            _ = tick.tick() => {
                checkpoint_if_due(store.as_ref(), &keys, clock.as_ref(), &mut chain).await;
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
        if write_batch(
            store.as_ref(),
            &keys,
            clock.as_ref(),
            &settings,
            &mut chain,
            jobs,
        )
        .await
        {
            stats.events.fetch_add(count, Ordering::Relaxed);
            stats.batches.fetch_add(1, Ordering::Relaxed);
            let micros = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
            stats.commit_micros.fetch_add(micros, Ordering::Relaxed);
        }
    }
    checkpoint_if_due(store.as_ref(), &keys, clock.as_ref(), &mut chain).await;
}

async fn write_batch(
    store: &dyn AuditStore,
    keys: &AuditKeys,
    clock: &dyn Clock,
    settings: &WriterSettings,
    chain: &mut Chain,
    jobs: Vec<Job>,
) -> bool {
    let now = clock.now();
    let mut seq = chain.seq;
    let mut mac = chain.mac.clone();
    let mut events = Vec::with_capacity(jobs.len());
    let mut waiters = Vec::with_capacity(jobs.len());
    for job in jobs {
        seq += 1;
        let d = job.draft;
        let mut event = AuditEvent {
            id: Uuid::now_v7(),
            chain_id: chain.id,
            seq,
            recorded: now,
            event_type: d.event_type.into(),
            subtype: d.subtype.into(),
            action: d.action.code().into(),
            outcome: d.outcome.code().into(),
            purpose: d.context.purpose,
            actor_id: d.actor_id,
            actor_roles: d.actor_roles,
            client_address: d.context.client_address.map(|a| a.to_string()),
            patient_id: d.patient_id,
            entity_id: d.entity_id,
            query_hash: d.query_hash,
            reason: d.reason,
            request_id: d.context.request_id,
            prev_mac: mac.clone(),
            mac: Vec::new(),
        };
        event.mac = keys.mac(&mac, &event);
        mac = event.mac.clone();
        events.push(event);
        waiters.push(job.done);
    }
    let checkpoint = (seq - chain.checkpointed >= settings.checkpoint_every).then(|| Checkpoint {
        chain_id: chain.id,
        seq,
        mac: mac.clone(),
        signed_at: now,
        signature: keys.sign(chain.id, seq, &mac, now),
    });
    let result = store.append_audit(&events, checkpoint.as_ref()).await;
    match result {
        Ok(()) => {
            chain.seq = seq;
            chain.mac = mac;
            if checkpoint.is_some() {
                chain.checkpointed = seq;
            }
            for waiter in waiters {
                let _ = waiter.send(Ok(()));
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
                    chain.mac = last.mac.clone();
                }
                let landed = stored.len() == events.len()
                    && stored.iter().zip(&events).all(|(s, e)| s.id == e.id);
                if landed {
                    tracing::warn!(error = %e, "audit batch reported an error but was stored");
                    for waiter in waiters {
                        let _ = waiter.send(Ok(()));
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

async fn checkpoint_if_due(
    store: &dyn AuditStore,
    keys: &AuditKeys,
    clock: &dyn Clock,
    chain: &mut Chain,
) {
    if chain.seq == chain.checkpointed {
        return;
    }
    let signed_at = clock.now();
    let checkpoint = Checkpoint {
        chain_id: chain.id,
        seq: chain.seq,
        mac: chain.mac.clone(),
        signed_at,
        signature: keys.sign(chain.id, chain.seq, &chain.mac, signed_at),
    };
    match store.append_audit(&[], Some(&checkpoint)).await {
        Ok(()) => chain.checkpointed = chain.seq,
        Err(e) => tracing::error!(error = %e, "audit checkpoint could not be stored"),
    }
}
