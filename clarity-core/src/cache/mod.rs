//! Caches of hot authentication, access and document state, their
//! invalidation across instances, and rate limiting.
//!
//! - [`Cache`]: a byte cache with per-entry lifetimes; [`MemoryCache`]
//!   (in process, the default) and [`RedisCache`] (shared).
//! - [`CachedStore`] and [`CachedIdentity`]: the storage traits with reads
//!   served from a [`Cache`] and every write invalidating what it changed.
//! - [`Invalidator`]: applies invalidations locally and announces them to
//!   the other instances through Redis pub/sub or PostgreSQL LISTEN/NOTIFY;
//!   while that channel is down, authentication and access state is read
//!   from the database on every use (fail closed for revocations).
//! - [`RateLimiter`]: GCRA limits, per instance ([`LocalRateLimiter`]) or
//!   shared through Redis ([`RedisRateLimiter`]).
//!
//! What is cached holds no plaintext PHI: patient profiles and record bodies
//! stay in their encrypted form and are decrypted on every read (a
//! microsecond for a 1 KiB body), data keys stay wrapped. Values sent to
//! Redis are additionally sealed (AES-256-GCM, bound to their key).

mod audit;
mod channel;
mod expiring;
mod identity;
mod invalidation;
mod layer;
mod memory;
mod rate_limit;
mod redis;
mod settings;
mod setup;

use std::fmt;
use std::time::Duration;

use async_trait::async_trait;

use crate::error::Result;

pub use self::audit::CachedAudit;
pub use self::channel::{ChannelKind, ChannelState};
pub(crate) use self::expiring::ExpiringCache;
pub use self::identity::CachedIdentity;
pub use self::invalidation::Invalidator;
pub use self::layer::CachedStore;
pub use self::memory::MemoryCache;
pub use self::rate_limit::{
    FallbackRateLimiter, Limit, LocalRateLimiter, RateKey, RateLimitDecision, RateLimiter,
    RedisRateLimiter, RouteClass,
};
pub use self::redis::RedisCache;
pub use self::settings::{CacheBackend, CacheConfig, RateLimitConfig};
pub(crate) use self::setup::watch_outside_changes;
pub use self::setup::{Caching, open};
pub use crate::model::Invalidation;

/// Hit and size counters of a cache, for metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct CacheStats {
    /// Lookups answered from the cache.
    pub hits: u64,
    /// Lookups that went to the database.
    pub misses: u64,
    /// Entries held now (for a shared cache: this instance's view, or 0).
    pub entries: u64,
}

/// A cache of byte values with a lifetime per entry.
///
/// Keys are short ASCII strings that name ids, never PHI (`s:<session id>`,
/// `p:<patient id>`). Implementations must be safe to call from many tasks.
#[async_trait]
pub trait Cache: Send + Sync + fmt::Debug {
    /// A short name for logs and metrics (`memory`, `redis`).
    fn name(&self) -> &'static str;

    /// The value under `key`, if present and not expired.
    ///
    /// # Errors
    /// [`crate::error::Error::Unavailable`] when a shared cache cannot be reached.
    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>>;

    /// Stores `value` under `key` for `ttl`.
    ///
    /// # Errors
    /// [`crate::error::Error::Unavailable`] when a shared cache cannot be reached.
    async fn put(&self, key: &str, value: Vec<u8>, ttl: Duration) -> Result<()>;

    /// Removes `key`.
    ///
    /// # Errors
    /// [`crate::error::Error::Unavailable`] when a shared cache cannot be reached.
    async fn remove(&self, key: &str) -> Result<()>;

    /// Removes every key that starts with `prefix`.
    ///
    /// # Errors
    /// [`crate::error::Error::Unavailable`] when a shared cache cannot be reached.
    async fn remove_prefix(&self, prefix: &str) -> Result<()>;

    /// Removes everything this cache holds for Clarity.
    ///
    /// # Errors
    /// [`crate::error::Error::Unavailable`] when a shared cache cannot be reached.
    async fn clear(&self) -> Result<()>;

    /// Every value as stored (sealed, for Redis): for inspection, such as
    /// the test that no PHI is readable in the cache (S-AC-6).
    ///
    /// # Errors
    /// [`crate::error::Error::Unavailable`] when a shared cache cannot be reached.
    async fn contents(&self) -> Result<Vec<Vec<u8>>>;

    /// Whether every instance sees the same entries (removals need no announcement).
    fn is_shared(&self) -> bool;

    /// Entries held now, when known.
    fn entry_count(&self) -> u64;

    /// The in-process cache, whose entries are kept as typed values
    /// rather than bytes; `None` for a shared cache.
    fn as_memory(&self) -> Option<&MemoryCache> {
        None
    }
}
