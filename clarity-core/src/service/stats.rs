//! What an instance reports about itself, for metrics and readiness:
//! counters, the stage timings, and how its cache and rate limits work.

use super::{AlertKind, Clarity};
use crate::cache::RouteClass;
use crate::timings::StageTimes;

/// Operation counters, for metrics.
#[derive(Debug, Default)]
pub(super) struct Counters {
    pub(super) token_cache_hits: std::sync::atomic::AtomicU64,
    pub(super) token_cache_misses: std::sync::atomic::AtomicU64,
    pub(super) rate_limited: [std::sync::atomic::AtomicU64; 5],
    pub(super) verifications: std::sync::atomic::AtomicU64,
    pub(super) verifications_failed: std::sync::atomic::AtomicU64,
    /// 0: none yet; 1: the last one was ok; 2: it was not.
    pub(super) last_verification: std::sync::atomic::AtomicU8,
    pub(super) last_verification_unix: std::sync::atomic::AtomicI64,
}

impl Counters {
    /// Counts a verification of the whole trail and its verdict.
    pub(super) fn record_verification(&self, ok: bool) {
        use std::sync::atomic::Ordering::Relaxed;
        self.verifications.fetch_add(1, Relaxed);
        if !ok {
            self.verifications_failed.fetch_add(1, Relaxed);
        }
        self.last_verification
            .store(if ok { 1 } else { 2 }, Relaxed);
        self.last_verification_unix
            .store(chrono::Utc::now().timestamp(), Relaxed);
    }
}

/// A snapshot of counters and gauges for metrics. Numbers only: no PHI.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Stats {
    /// Password verifications (logins and password changes).
    pub password_verifications: u64,
    /// Access tokens found already verified in the cache.
    pub token_cache_hits: u64,
    /// Access tokens verified cryptographically.
    pub token_cache_misses: u64,
    /// Verified tokens cached now.
    pub token_cache_entries: u64,
    /// Audit events waiting to be written.
    pub audit_queue_depth: u64,
    /// Audit events written by this instance.
    pub audit_events_written: u64,
    /// Audit transactions committed by this instance.
    pub audit_batches: u64,
    /// Time spent in audit commits, in microseconds.
    pub audit_commit_micros: u64,
    /// Verifications of the whole audit trail by this instance (scheduled
    /// and asked for).
    pub audit_verifications: u64,
    /// Those that found a problem.
    pub audit_verifications_failed: u64,
    /// The verdict of the last one; `None` before the first.
    pub audit_last_verification_ok: Option<bool>,
    /// When the last one finished, seconds since the epoch (0: never).
    pub audit_last_verification_unix: i64,
    /// Security alerts raised, per kind.
    pub alerts: Vec<(AlertKind, u64)>,
    /// The key provider's access to its key service (its token), when it
    /// keeps one.
    pub key_access: Option<crate::crypto::AccessStatus>,
    /// Database connections in use.
    pub pool_in_use: u64,
    /// Database pool size.
    pub pool_size: u64,
    /// Reads of cached state answered from the cache.
    pub cache_hits: u64,
    /// Reads of cached state that went to the database.
    pub cache_misses: u64,
    /// Entries in this instance's cache.
    pub cache_entries: u64,
    /// Requests refused by a rate limit, per route class.
    pub rate_limited: Vec<(RouteClass, u64)>,
    /// The cache, its invalidation channel and the rate limiter.
    pub caching: CacheStatus,
    /// Identity-provider tokens: verified, refused by reason, JWKS fetches.
    pub oidc: crate::auth::oidc::OidcStats,
}

/// How caching works right now, for readiness and metrics.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct CacheStatus {
    /// `memory` or `redis`.
    pub backend: &'static str,
    /// The invalidation channel.
    pub channel: crate::cache::ChannelState,
    /// `local` or `redis`; `None` when rate limits are off.
    pub rate_limiter: Option<&'static str>,
    /// `false` while shared rate limits fall back to per-instance ones.
    pub rate_limiter_healthy: bool,
}

impl CacheStatus {
    /// Whether everything works as configured (readiness reports it; the
    /// server keeps answering either way).
    pub fn healthy(&self) -> bool {
        self.channel.up && self.rate_limiter_healthy
    }
}

impl Default for CacheStatus {
    fn default() -> Self {
        CacheStatus {
            backend: "memory",
            channel: crate::cache::ChannelState {
                kind: crate::cache::ChannelKind::None,
                up: true,
                announced: 0,
                received: 0,
            },
            rate_limiter: None,
            rate_limiter_healthy: true,
        }
    }
}

impl Clarity {
    /// How long the stages of serving requests take (latency
    /// histograms, for metrics).
    pub fn stage_times(&self) -> &StageTimes {
        &self.times
    }

    /// Counters and gauges for metrics.
    pub fn stats(&self) -> Stats {
        use std::sync::atomic::Ordering::Relaxed;
        let audit = self.audit.stats();
        let (pool_in_use, pool_size) = self.phi.store().pool_usage();
        let cache = self.caching.invalidator.stats();
        Stats {
            password_verifications: self.hasher.verifications(),
            token_cache_hits: self.counters.token_cache_hits.load(Relaxed),
            token_cache_misses: self.counters.token_cache_misses.load(Relaxed),
            token_cache_entries: self.verified.entry_count(),
            audit_queue_depth: self.audit.queue_depth() as u64,
            audit_events_written: audit.0,
            audit_batches: audit.1,
            audit_commit_micros: audit.2,
            audit_verifications: self.counters.verifications.load(Relaxed),
            audit_verifications_failed: self.counters.verifications_failed.load(Relaxed),
            audit_last_verification_ok: match self.counters.last_verification.load(Relaxed) {
                0 => None,
                n => Some(n == 1),
            },
            audit_last_verification_unix: self.counters.last_verification_unix.load(Relaxed),
            pool_in_use: pool_in_use as u64,
            pool_size: pool_size as u64,
            cache_hits: cache.hits,
            cache_misses: cache.misses,
            cache_entries: cache.entries,
            rate_limited: RouteClass::ALL
                .into_iter()
                .zip(&self.counters.rate_limited)
                .map(|(class, n)| (class, n.load(Relaxed)))
                .collect(),
            caching: self.cache_status(),
            oidc: self.oidc.stats(),
            alerts: AlertKind::ALL
                .into_iter()
                .map(|kind| (kind, self.alerts.count(kind)))
                .collect(),
            key_access: self.phi.keys().access(),
        }
    }

    /// [`Clarity::cache_status`] after checking a degraded shared rate
    /// limiter again (for readiness).
    pub async fn probe_cache_status(&self) -> CacheStatus {
        if let Some(limiter) = &self.caching.limiter {
            limiter.probe().await;
        }
        self.cache_status()
    }

    /// The cache backend, its invalidation channel and the rate limiter.
    pub fn cache_status(&self) -> CacheStatus {
        let limiter = self.caching.limiter.as_ref();
        CacheStatus {
            backend: self.caching.invalidator.cache().name(),
            channel: self.caching.invalidator.channel(),
            rate_limiter: limiter.map(|l| l.name()),
            rate_limiter_healthy: limiter.is_none_or(|l| l.healthy()),
        }
    }

    /// Password verifications run so far (login attempts that reached the
    /// hash check, whether or not the account exists).
    pub fn password_verifications(&self) -> u64 {
        self.hasher.verifications()
    }
}
