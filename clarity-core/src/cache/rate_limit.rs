//! Rate limiting with GCRA (the generic cell rate algorithm): each key has a
//! steady rate and a burst. [`LocalRateLimiter`] keeps the state in this
//! process (the `governor` crate); [`RedisRateLimiter`] keeps it in Redis,
//! updated atomically by a script, so every instance shares one limit;
//! [`FallbackRateLimiter`] uses Redis and, while Redis is unreachable, the
//! local limits.

use std::fmt;
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use governor::clock::{Clock, DefaultClock};

use super::RateLimitConfig;
use crate::error::{Error, Result};

/// What a limit applies to: a client address (any route, or the
/// authentication routes), or an account's reads, writes or administration.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum RouteClass {
    /// Every request from a client address.
    Address,
    /// Login, refresh and setup, per client address.
    Auth,
    /// Reads, per account.
    Read,
    /// Writes, per account.
    Write,
    /// Administration and audit, per account.
    Admin,
}

impl RouteClass {
    /// Every class, in a fixed order.
    pub const ALL: [RouteClass; 5] = [
        RouteClass::Address,
        RouteClass::Auth,
        RouteClass::Read,
        RouteClass::Write,
        RouteClass::Admin,
    ];

    /// `address`, `auth`, `read`, `write` or `admin`.
    pub fn as_str(&self) -> &'static str {
        match self {
            RouteClass::Address => "address",
            RouteClass::Auth => "auth",
            RouteClass::Read => "read",
            RouteClass::Write => "write",
            RouteClass::Admin => "admin",
        }
    }
}

/// Who a limit is counted for: a client address or an account. A value,
/// not text, so that counting a request formats and allocates nothing; its
/// text form (the address, or the account id) names the shared counter in
/// Redis.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RateKey {
    /// A client address ([`RouteClass::Address`], [`RouteClass::Auth`]).
    Address(IpAddr),
    /// An account ([`RouteClass::Read`], [`RouteClass::Write`], [`RouteClass::Admin`]).
    Account(uuid::Uuid),
}

impl fmt::Display for RateKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RateKey::Address(address) => address.fmt(f),
            RateKey::Account(id) => id.fmt(f),
        }
    }
}

/// A GCRA limit: a steady rate and the burst allowed on top of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limit {
    /// Requests per second in the long run.
    pub per_sec: u32,
    /// Requests allowed at once.
    pub burst: u32,
}

impl Limit {
    /// The limit of `class` in `config`.
    pub fn of(config: &RateLimitConfig, class: RouteClass) -> Limit {
        let (per_sec, burst) = match class {
            RouteClass::Address => (config.address_per_sec, config.address_burst),
            RouteClass::Auth => (config.auth_per_sec, config.auth_burst),
            RouteClass::Read => (config.read_per_sec, config.read_burst),
            RouteClass::Write => (config.write_per_sec, config.write_burst),
            RouteClass::Admin => (config.admin_per_sec, config.admin_burst),
        };
        Limit { per_sec, burst }
    }

    /// Time between two requests at the steady rate, in microseconds.
    fn interval_micros(&self) -> u64 {
        1_000_000 / u64::from(self.per_sec.max(1))
    }
}

/// The answer of a limiter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RateLimitDecision {
    /// Go ahead.
    Allowed,
    /// Over the limit: try again after this long.
    Limited(Duration),
}

/// Decides whether one more request of `class` by `key` is within its limit.
#[async_trait]
pub trait RateLimiter: Send + Sync + fmt::Debug {
    /// `local` or `redis`.
    fn name(&self) -> &'static str;

    /// Counts one request of `class` by `key`.
    ///
    /// # Errors
    /// [`Error::Unavailable`] when a shared limiter cannot be reached.
    async fn check(&self, class: RouteClass, key: RateKey) -> Result<RateLimitDecision>;

    /// Whether the limiter works as configured (`false`: degraded to local limits).
    fn healthy(&self) -> bool {
        true
    }

    /// Checks a degraded limiter's shared store again (readiness calls it,
    /// so recovery shows even when no limited request arrives).
    async fn probe(&self) {}
}

type Keyed = governor::DefaultKeyedRateLimiter<RateKey>;

/// Limits kept in this process.
pub struct LocalRateLimiter {
    limiters: Vec<(RouteClass, Keyed)>,
    checks: AtomicU64,
}

impl fmt::Debug for LocalRateLimiter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LocalRateLimiter").finish_non_exhaustive()
    }
}

impl LocalRateLimiter {
    /// One limiter per class, with the limits of `config`.
    pub fn new(config: &RateLimitConfig) -> LocalRateLimiter {
        let limiters = RouteClass::ALL
            .into_iter()
            .map(|class| {
                let limit = Limit::of(config, class);
                let rate = NonZeroU32::new(limit.per_sec).unwrap_or(NonZeroU32::MIN);
                let burst = NonZeroU32::new(limit.burst).unwrap_or(NonZeroU32::MIN);
                let quota = governor::Quota::per_second(rate).allow_burst(burst);
                (class, governor::RateLimiter::keyed(quota))
            })
            .collect();
        LocalRateLimiter {
            limiters,
            checks: AtomicU64::new(0),
        }
    }

    fn decide(&self, class: RouteClass, key: RateKey) -> RateLimitDecision {
        let Some((_, limiter)) = self.limiters.iter().find(|(c, _)| *c == class) else {
            return RateLimitDecision::Allowed;
        };
        // Forget idle keys now and then, so memory stays bounded.
        if self.checks.fetch_add(1, Ordering::Relaxed) % 65_536 == 65_535 {
            for (_, limiter) in &self.limiters {
                limiter.retain_recent();
            }
        }
        match limiter.check_key(&key) {
            Ok(()) => RateLimitDecision::Allowed,
            Err(not_until) => {
                RateLimitDecision::Limited(not_until.wait_time_from(DefaultClock::default().now()))
            }
        }
    }
}

#[async_trait]
impl RateLimiter for LocalRateLimiter {
    fn name(&self) -> &'static str {
        "local"
    }

    async fn check(&self, class: RouteClass, key: RateKey) -> Result<RateLimitDecision> {
        Ok(self.decide(class, key))
    }
}

/// GCRA in one atomic step on the Redis server, with the server's clock so
/// that every instance agrees. Returns 0 when allowed, otherwise the
/// microseconds to wait.
const GCRA_SCRIPT: &str = r"
local now_parts = redis.call('TIME')
local now = tonumber(now_parts[1]) * 1000000 + tonumber(now_parts[2])
local interval = tonumber(ARGV[1])
local tolerance = tonumber(ARGV[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or now)
if tat < now then tat = now end
local next_tat = tat + interval
local allow_at = next_tat - tolerance
if allow_at > now then return allow_at - now end
redis.call('SET', KEYS[1], next_tat, 'PX', math.ceil((next_tat - now) / 1000) + 1)
return 0
";

/// Limits shared by every instance through Redis.
pub struct RedisRateLimiter {
    connection: redis::aio::ConnectionManager,
    script: redis::Script,
    prefix: String,
    limits: Vec<(RouteClass, Limit)>,
}

impl fmt::Debug for RedisRateLimiter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisRateLimiter")
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

impl RedisRateLimiter {
    /// Limits of `config`, kept under `<prefix>:rl:` in Redis.
    pub fn new(
        connection: redis::aio::ConnectionManager,
        prefix: &str,
        config: &RateLimitConfig,
    ) -> RedisRateLimiter {
        RedisRateLimiter {
            connection,
            script: redis::Script::new(GCRA_SCRIPT),
            prefix: prefix.to_string(),
            limits: RouteClass::ALL
                .into_iter()
                .map(|class| (class, Limit::of(config, class)))
                .collect(),
        }
    }
}

#[async_trait]
impl RateLimiter for RedisRateLimiter {
    fn name(&self) -> &'static str {
        "redis"
    }

    async fn check(&self, class: RouteClass, key: RateKey) -> Result<RateLimitDecision> {
        let Some((_, limit)) = self.limits.iter().find(|(c, _)| *c == class) else {
            return Ok(RateLimitDecision::Allowed);
        };
        let interval = limit.interval_micros();
        let tolerance = interval * u64::from(limit.burst);
        let mut connection = self.connection.clone();
        let wait: u64 = self
            .script
            .key(format!("{}:rl:{}:{key}", self.prefix, class.as_str()))
            .arg(interval)
            .arg(tolerance)
            .invoke_async(&mut connection)
            .await
            .map_err(|_| Error::Unavailable {
                message: "the shared rate limiter (Redis) does not answer".into(),
            })?;
        Ok(if wait == 0 {
            RateLimitDecision::Allowed
        } else {
            RateLimitDecision::Limited(Duration::from_micros(wait))
        })
    }
}

/// Redis limits, with local limits while Redis cannot be reached: requests
/// keep being limited (per instance) and Redis is tried again every second.
#[derive(Debug)]
pub struct FallbackRateLimiter {
    shared: RedisRateLimiter,
    local: LocalRateLimiter,
    started: Instant,
    /// Milliseconds after `started` before which Redis is not tried.
    retry_at_ms: AtomicU64,
    degraded: AtomicBool,
}

/// How long Redis is left alone after it failed.
const RETRY_AFTER_FAILURE: Duration = Duration::from_secs(1);

impl FallbackRateLimiter {
    /// Shared limits from `shared`, local ones from `local` meanwhile.
    pub fn new(shared: RedisRateLimiter, local: LocalRateLimiter) -> FallbackRateLimiter {
        FallbackRateLimiter {
            shared,
            local,
            started: Instant::now(),
            retry_at_ms: AtomicU64::new(0),
            degraded: AtomicBool::new(false),
        }
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX)
    }
}

#[async_trait]
impl RateLimiter for FallbackRateLimiter {
    fn name(&self) -> &'static str {
        "redis"
    }

    async fn check(&self, class: RouteClass, key: RateKey) -> Result<RateLimitDecision> {
        if self.now_ms() >= self.retry_at_ms.load(Ordering::Relaxed) {
            match self.shared.check(class, key).await {
                Ok(decision) => {
                    if self.degraded.swap(false, Ordering::Relaxed) {
                        tracing::info!("shared rate limits (Redis) available again");
                    }
                    return Ok(decision);
                }
                Err(_) => {
                    let retry = self.now_ms() + RETRY_AFTER_FAILURE.as_millis() as u64;
                    self.retry_at_ms.store(retry, Ordering::Relaxed);
                    if !self.degraded.swap(true, Ordering::Relaxed) {
                        tracing::warn!(
                            "shared rate limits (Redis) unavailable: limiting per instance until it returns"
                        );
                    }
                }
            }
        }
        self.local.check(class, key).await
    }

    fn healthy(&self) -> bool {
        !self.degraded.load(Ordering::Relaxed)
    }

    async fn probe(&self) {
        if !self.degraded.load(Ordering::Relaxed) {
            return;
        }
        let mut connection = self.shared.connection.clone();
        let pong: redis::RedisResult<String> =
            redis::cmd("PING").query_async(&mut connection).await;
        if pong.is_ok() {
            self.retry_at_ms.store(0, Ordering::Relaxed);
            self.degraded.store(false, Ordering::Relaxed);
            tracing::info!("shared rate limits (Redis) available again");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(per_sec: u32, burst: u32) -> RateLimitConfig {
        RateLimitConfig {
            read_per_sec: per_sec,
            read_burst: burst,
            ..RateLimitConfig::default()
        }
    }

    #[tokio::test]
    async fn local_limits_allow_the_burst_then_ask_to_wait() {
        let limiter = LocalRateLimiter::new(&config(1, 3));
        let a = RateKey::Account(uuid::Uuid::new_v4());
        let b = RateKey::Account(uuid::Uuid::new_v4());
        for _ in 0..3 {
            assert_eq!(
                limiter.check(RouteClass::Read, a).await.expect("check"),
                RateLimitDecision::Allowed
            );
        }
        match limiter.check(RouteClass::Read, a).await.expect("check") {
            RateLimitDecision::Limited(wait) => {
                assert!(
                    wait > Duration::ZERO && wait <= Duration::from_secs(1),
                    "{wait:?}"
                );
            }
            other => panic!("expected a limit, got {other:?}"),
        }
        // Keys and classes are independent; an address is a key of its own.
        assert_eq!(
            limiter.check(RouteClass::Read, b).await.expect("check"),
            RateLimitDecision::Allowed
        );
        assert_eq!(
            limiter.check(RouteClass::Write, a).await.expect("check"),
            RateLimitDecision::Allowed
        );
        let address = RateKey::Address("192.0.2.7".parse().expect("address"));
        assert_eq!(
            limiter
                .check(RouteClass::Read, address)
                .await
                .expect("check"),
            RateLimitDecision::Allowed
        );
    }

    // The shared counters keep their names: the address, or the account id.
    #[test]
    fn a_key_is_named_by_its_address_or_account_id() {
        let id = uuid::Uuid::new_v4();
        assert_eq!(RateKey::Account(id).to_string(), id.to_string());
        let address = RateKey::Address("2001:db8::1".parse().expect("address"));
        assert_eq!(address.to_string(), "2001:db8::1");
    }
}
