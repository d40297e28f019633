//! Audit sinks (S-AUD-8): the trail streamed out of the database as it is
//! written, to syslog over TLS, an HTTP endpoint, a file or standard output.
//!
//! Each sink reads committed events from the audit store, chain by chain in
//! sequence order, and moves a cursor kept in the store (per sink and chain)
//! only once the receiver has acknowledged a batch: delivery is at least
//! once, in order within each chain, and a restart resumes at the cursor.
//! When several instances share a store, the one holding the sink's lease
//! (renewed every poll, lost after [`LEASE`] without renewal) delivers; the
//! others watch the same cursors, so that every instance reports the sink's
//! lag and, for a fail-closed sink, refuses audited operations while the
//! oldest undelivered event is older than allowed. A sink outage otherwise
//! delays delivery, never the service.

mod format;
mod settings;
mod transport;

pub(crate) use settings::validate_all;
pub use settings::{SinkConfig, SinkFormat, SinkKind};

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::time::Duration;

use uuid::Uuid;

use self::transport::Transport;
use super::AuditStore;
use crate::clock::Clock;
use crate::error::{Error, Result};

/// How often a sink looks for new events.
const POLL: Duration = Duration::from_millis(500);
/// How long a sink's delivery lease lasts without renewal.
pub const LEASE: Duration = Duration::from_secs(15);
/// How often a sink looks for chains it does not know yet.
const DISCOVERY: Duration = Duration::from_secs(5);
/// The longest wait between attempts after failures.
const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// How long a stopping instance keeps delivering its backlog.
const FINAL_DRAIN: Duration = Duration::from_secs(10);
/// Batches one poll delivers at most before it looks again.
const BATCHES_PER_POLL: usize = 20;

/// What one sink has done, for metrics and `GET /v1/health`-style reports.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct SinkStatus {
    /// The sink's configured name.
    pub name: String,
    /// `syslog`, `http`, `file` or `stdout`.
    pub kind: &'static str,
    /// Events this instance delivered.
    pub delivered: u64,
    /// Deliveries by this instance that failed.
    pub failures: u64,
    /// Times delivery found events missing after the cursor (purged or
    /// deleted before they were sent).
    pub gaps: u64,
    /// Events written but not yet delivered, as of the last poll.
    pub pending: u64,
    /// Age in seconds of the oldest undelivered event (0 when none).
    pub oldest_pending_secs: f64,
    /// Whether this instance holds the sink's delivery lease.
    pub delivering: bool,
    /// Whether this fail-closed sink is refusing audited operations now.
    pub blocking: bool,
    /// When this instance last delivered a batch (Unix seconds; 0: never).
    pub last_delivery_unix: i64,
}

/// One sink's live state, shared by its task and the service.
#[derive(Debug)]
struct SinkState {
    config: SinkConfig,
    delivered: AtomicU64,
    failures: AtomicU64,
    gaps: AtomicU64,
    pending: AtomicU64,
    oldest_pending_ms: AtomicU64,
    delivering: AtomicBool,
    blocking: AtomicBool,
    last_delivery_unix: AtomicI64,
}

impl SinkState {
    fn status(&self) -> SinkStatus {
        SinkStatus {
            name: self.config.name.clone(),
            kind: self.config.kind.as_str(),
            delivered: self.delivered.load(Ordering::Relaxed),
            failures: self.failures.load(Ordering::Relaxed),
            gaps: self.gaps.load(Ordering::Relaxed),
            pending: self.pending.load(Ordering::Relaxed),
            oldest_pending_secs: self.oldest_pending_ms.load(Ordering::Relaxed) as f64 / 1000.0,
            delivering: self.delivering.load(Ordering::Relaxed),
            blocking: self.blocking.load(Ordering::Relaxed),
            last_delivery_unix: self.last_delivery_unix.load(Ordering::Relaxed),
        }
    }
}

/// Whether a fail-closed sink is holding the service: the audit writer asks
/// before it accepts events.
#[derive(Debug, Default)]
pub(crate) struct SinkGate {
    sinks: Vec<Arc<SinkState>>,
}

impl SinkGate {
    /// The error an audited operation gets while a fail-closed sink is too
    /// far behind; `None` when events may be written.
    pub(crate) fn refusal(&self) -> Option<Error> {
        self.sinks
            .iter()
            .find(|s| s.blocking.load(Ordering::Relaxed))
            .map(|s| Error::Unavailable {
                message: format!(
                    "the audit sink {} has not received events for over {} s and is \
                     fail-closed: audited operations wait until it catches up",
                    s.config.name, s.config.fail_closed_after_secs
                ),
            })
    }
}

/// The running sinks of one instance.
#[derive(Debug)]
pub(crate) struct Sinks {
    states: Vec<Arc<SinkState>>,
    gate: Arc<SinkGate>,
    stop: tokio::sync::watch::Sender<bool>,
    tasks: tokio::sync::Mutex<Vec<tokio::task::JoinHandle<()>>>,
}

impl Sinks {
    /// Starts a task per sink in `configs` on the current runtime,
    /// delivering from `store` under the lease holder id `holder`
    /// (`server_address`: `audit.server_address`, for FHIR records).
    ///
    /// # Errors
    /// [`Error::Config`] when a sink's CA file or token cannot be used.
    pub(crate) fn start(
        configs: &[SinkConfig],
        store: Arc<dyn AuditStore>,
        clock: Arc<dyn Clock>,
        holder: Uuid,
        server_address: Option<&str>,
    ) -> Result<Sinks> {
        let mut transports = Vec::with_capacity(configs.len());
        for config in configs {
            transports.push(Transport::new(config, server_address.map(str::to_string))?);
        }
        let states: Vec<Arc<SinkState>> = configs
            .iter()
            .map(|config| {
                Arc::new(SinkState {
                    config: config.clone(),
                    delivered: AtomicU64::new(0),
                    failures: AtomicU64::new(0),
                    gaps: AtomicU64::new(0),
                    pending: AtomicU64::new(0),
                    oldest_pending_ms: AtomicU64::new(0),
                    delivering: AtomicBool::new(false),
                    blocking: AtomicBool::new(false),
                    last_delivery_unix: AtomicI64::new(0),
                })
            })
            .collect();
        let (stop, _) = tokio::sync::watch::channel(false);
        let tasks = states
            .iter()
            .zip(transports)
            .map(|(state, transport)| {
                let runner = Runner {
                    store: Arc::clone(&store),
                    clock: Arc::clone(&clock),
                    state: Arc::clone(state),
                    transport,
                    holder,
                    chains: BTreeMap::new(),
                    last_discovery: None,
                };
                tokio::spawn(runner.run(stop.subscribe()))
            })
            .collect();
        Ok(Sinks {
            gate: Arc::new(SinkGate {
                sinks: states.clone(),
            }),
            states,
            stop,
            tasks: tokio::sync::Mutex::new(tasks),
        })
    }

    /// The gate the audit writer consults.
    pub(crate) fn gate(&self) -> Arc<SinkGate> {
        Arc::clone(&self.gate)
    }

    /// Each sink's status.
    pub(crate) fn statuses(&self) -> Vec<SinkStatus> {
        self.states.iter().map(|s| s.status()).collect()
    }

    /// Delivers what is left (each sink tries once more) and stops.
    pub(crate) async fn shutdown(&self) {
        let _ = self.stop.send(true);
        let tasks: Vec<_> = self.tasks.lock().await.drain(..).collect();
        for task in tasks {
            let _ = task.await;
        }
    }
}

/// What a sink knows of one chain.
#[derive(Debug, Clone, Copy, Default)]
struct Progress {
    /// Delivered up to here.
    cursor: i64,
    /// The chain's last sequence number, as last seen.
    head: i64,
}

struct Runner {
    store: Arc<dyn AuditStore>,
    clock: Arc<dyn Clock>,
    state: Arc<SinkState>,
    transport: Transport,
    holder: Uuid,
    chains: BTreeMap<Uuid, Progress>,
    last_discovery: Option<std::time::Instant>,
}

impl Runner {
    async fn run(mut self, mut stop: tokio::sync::watch::Receiver<bool>) {
        let name = self.state.config.name.clone();
        let mut wait = Duration::ZERO;
        let mut backoff = POLL;
        loop {
            tokio::select! {
                () = tokio::time::sleep(wait) => {}
                _ = stop.changed() => {
                    // One last attempt to hand over what the instance wrote,
                    // and what instances it has not noticed yet wrote.
                    self.last_discovery = None;
                    let deadline = tokio::time::Instant::now() + FINAL_DRAIN;
                    loop {
                        match self.poll().await {
                            Ok(true) if tokio::time::Instant::now() < deadline => continue,
                            Ok(_) => break,
                            Err(e) => {
                                tracing::warn!(sink = %name, error = %e, "audit sink: final delivery failed; the next instance resumes from the cursor");
                                break;
                            }
                        }
                    }
                    self.release().await;
                    return;
                }
            }
            match self.poll().await {
                Ok(more) => {
                    backoff = POLL;
                    wait = if more { Duration::ZERO } else { POLL };
                }
                Err(e) => {
                    self.state.failures.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(sink = %name, error = %e, retry_in_ms = backoff.as_millis() as u64, "audit sink: delivery failed");
                    wait = backoff;
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
            }
        }
    }

    /// Hands the lease back, if held, so another instance delivers at once.
    async fn release(&self) {
        let now = self.clock.now();
        let released = self
            .store
            .claim_sink_lease(
                &self.state.config.name,
                self.holder,
                now,
                now - chrono::Duration::seconds(1),
            )
            .await;
        if let Err(e) = released {
            tracing::warn!(sink = %self.state.config.name, error = %e, "audit sink: could not release the lease; another instance takes over when it expires");
        }
        self.state.delivering.store(false, Ordering::Relaxed);
    }

    /// One round: renew the lease, learn chains and cursors, deliver what
    /// is pending (when holding the lease), and update the status. Returns
    /// whether more is pending right away.
    async fn poll(&mut self) -> Result<bool> {
        let config = &self.state.config;
        let now = self.clock.now();
        let lease = chrono::Duration::from_std(LEASE).unwrap_or(chrono::Duration::seconds(15));
        let delivering = self
            .store
            .claim_sink_lease(&config.name, self.holder, now, now + lease)
            .await?;
        self.state.delivering.store(delivering, Ordering::Relaxed);
        let discover = self
            .last_discovery
            .is_none_or(|at| at.elapsed() >= DISCOVERY);
        if discover {
            for chain in self.store.audit_chains().await? {
                self.chains.entry(chain).or_default();
            }
            self.last_discovery = Some(std::time::Instant::now());
        }
        // The holder's own chain is new before discovery finds it.
        self.chains.entry(self.holder).or_default();
        for (chain, seq) in self.store.sink_cursors(&config.name).await? {
            let progress = self.chains.entry(chain).or_default();
            progress.cursor = progress.cursor.max(seq);
        }
        // Heads of the chains that may have moved: all of them on a
        // discovery round; otherwise this instance's chain and any with
        // events pending.
        for (chain, progress) in &mut self.chains {
            if discover || *chain == self.holder || progress.cursor < progress.head {
                progress.head = self.store.audit_head_seq(*chain).await?;
            }
        }
        let mut more = false;
        let outcome = if delivering {
            self.deliver_pending().await.map(|m| more = m)
        } else {
            Ok(())
        };
        self.update_lag().await?;
        outcome.map(|()| more)
    }

    /// Delivers pending events chain by chain, in sequence order, moving
    /// each chain's cursor after every acknowledged batch.
    async fn deliver_pending(&mut self) -> Result<bool> {
        let config = &self.state.config;
        let mut batches = 0;
        let chains: Vec<Uuid> = self.chains.keys().copied().collect();
        for chain in chains {
            loop {
                let progress = self.chains.get(&chain).copied().unwrap_or_default();
                if progress.cursor >= progress.head {
                    break;
                }
                if batches == BATCHES_PER_POLL {
                    return Ok(true);
                }
                let events = self
                    .store
                    .audit_chain_events(chain, progress.cursor, config.batch)
                    .await?;
                let (Some(first), Some(last)) = (events.first(), events.last()) else {
                    // Deleted or purged since the head was read: nothing to send.
                    self.chains.entry(chain).or_default().head = progress.cursor;
                    break;
                };
                if first.seq != progress.cursor + 1 {
                    self.state.gaps.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(sink = %config.name, chain = %chain, after = progress.cursor, next = first.seq, "audit sink: events missing from the store before delivery");
                }
                self.transport.deliver(&events, config.format).await?;
                let last_seq = last.seq;
                self.store
                    .advance_sink_cursor(&config.name, chain, last_seq, self.clock.now())
                    .await?;
                let entry = self.chains.entry(chain).or_default();
                entry.cursor = last_seq;
                entry.head = entry.head.max(last_seq);
                self.state
                    .delivered
                    .fetch_add(events.len() as u64, Ordering::Relaxed);
                self.state
                    .last_delivery_unix
                    .store(self.clock.now().timestamp(), Ordering::Relaxed);
                batches += 1;
            }
        }
        Ok(false)
    }

    /// Pending events, the age of the oldest, and whether a fail-closed
    /// sink must hold the service.
    async fn update_lag(&mut self) -> Result<()> {
        let config = &self.state.config;
        let mut pending = 0u64;
        let mut oldest = None;
        for (chain, progress) in &self.chains {
            if progress.cursor >= progress.head {
                continue;
            }
            pending += u64::try_from(progress.head - progress.cursor).unwrap_or(0);
            if let Some(first) = self
                .store
                .audit_chain_events(*chain, progress.cursor, 1)
                .await?
                .first()
            {
                oldest = Some(
                    oldest.map_or(first.recorded, |o: chrono::DateTime<chrono::Utc>| {
                        o.min(first.recorded)
                    }),
                );
            }
        }
        let age_ms = oldest.map_or(0, |o| {
            u64::try_from((self.clock.now() - o).num_milliseconds()).unwrap_or(0)
        });
        self.state.pending.store(pending, Ordering::Relaxed);
        self.state
            .oldest_pending_ms
            .store(age_ms, Ordering::Relaxed);
        let blocking = config.fail_closed && age_ms > config.fail_closed_after_secs * 1000;
        if blocking != self.state.blocking.swap(blocking, Ordering::Relaxed) {
            if blocking {
                tracing::error!(sink = %config.name, pending, "audit sink is fail-closed and behind: audited operations are refused until it catches up");
            } else {
                tracing::warn!(sink = %config.name, "audit sink caught up: audited operations resume");
            }
        }
        Ok(())
    }
}
