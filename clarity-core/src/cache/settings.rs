//! The `[cache]` and `[rate_limit]` settings.

use std::fmt;

use serde::Deserialize;

use crate::crypto::SecretString;
use crate::error::{Error, Result};

/// Where cached state lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum CacheBackend {
    /// In each instance's memory, invalidated across instances by the channel.
    #[default]
    Memory,
    /// In Redis, shared by every instance; values sealed.
    Redis,
}

/// Cache settings (`[cache]`).
///
/// Every instance caches verified tokens, session and user state, care-team
/// membership and encrypted documents in memory. Changes made by this
/// instance invalidate its cache at once; changes made elsewhere arrive
/// through the invalidation channel (Redis pub/sub when `redis_url` is set,
/// otherwise PostgreSQL LISTEN/NOTIFY on the PostgreSQL backend). One
/// instance on SQLite needs no channel: it watches SQLite's counter of
/// commits by other processes. Without either, cached state lives
/// `fallback_ttl_secs` at most.
#[derive(Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct CacheConfig {
    /// Where cached state lives: `memory` (default; in each instance) or
    /// `redis` (shared by every instance; needs `redis_url`).
    pub backend: CacheBackend,
    /// Redis URL (`redis://` or `rediss://`): shared rate limits and
    /// invalidation across instances. Treated as a secret.
    pub redis_url: Option<SecretString>,
    /// Prefix of Clarity's keys and channels in Redis (default `clarity`).
    pub redis_prefix: String,
    /// Entries kept per in-process cache (default 100000).
    pub max_entries: u64,
    /// Lifetime of cached state while the invalidation channel is up (default 60).
    pub ttl_secs: u64,
    /// Lifetime of cached state while neither a channel nor the database's
    /// change counter tells of changes made elsewhere (default 1).
    pub fallback_ttl_secs: u64,
}

impl Default for CacheConfig {
    fn default() -> Self {
        CacheConfig {
            backend: CacheBackend::Memory,
            redis_url: None,
            redis_prefix: "clarity".into(),
            max_entries: 100_000,
            ttl_secs: 60,
            fallback_ttl_secs: 1,
        }
    }
}

impl fmt::Debug for CacheConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CacheConfig")
            .field("backend", &self.backend)
            .field("redis_url", &self.redis_url.as_ref().map(|_| "[REDACTED]"))
            .field("redis_prefix", &self.redis_prefix)
            .field("max_entries", &self.max_entries)
            .field("ttl_secs", &self.ttl_secs)
            .field("fallback_ttl_secs", &self.fallback_ttl_secs)
            .finish()
    }
}

/// Rate limits (`[rate_limit]`): a GCRA limit is a steady rate per second
/// and a burst. Shared by every instance through Redis when
/// `cache.redis_url` is set; per instance otherwise.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct RateLimitConfig {
    /// Limit requests at all (default true).
    pub enabled: bool,
    /// Requests per second from one client address, any route (default 1000).
    pub address_per_sec: u32,
    /// Burst of requests from one client address (default 2000).
    pub address_burst: u32,
    /// Login, refresh and setup requests per second from one address (default 5).
    pub auth_per_sec: u32,
    /// Burst of login, refresh and setup requests from one address (default 20).
    pub auth_burst: u32,
    /// Reads per second by one account (default 500).
    pub read_per_sec: u32,
    /// Burst of reads by one account (default 1000).
    pub read_burst: u32,
    /// Writes per second by one account (default 100).
    pub write_per_sec: u32,
    /// Burst of writes by one account (default 200).
    pub write_burst: u32,
    /// Administration and audit requests per second by one account (default 20).
    pub admin_per_sec: u32,
    /// Burst of administration and audit requests by one account (default 100).
    pub admin_burst: u32,
}

impl Default for RateLimitConfig {
    fn default() -> Self {
        RateLimitConfig {
            enabled: true,
            address_per_sec: 1000,
            address_burst: 2000,
            auth_per_sec: 5,
            auth_burst: 20,
            read_per_sec: 500,
            read_burst: 1000,
            write_per_sec: 100,
            write_burst: 200,
            admin_per_sec: 20,
            admin_burst: 100,
        }
    }
}

impl CacheConfig {
    /// Checks the `[cache]` settings; errors name the key.
    ///
    /// # Errors
    /// [`Error::Config`] naming the first offending key.
    pub fn validate(&self) -> Result<()> {
        if let Some(url) = &self.redis_url {
            let url = url.expose();
            if !(url.starts_with("redis://") || url.starts_with("rediss://")) {
                return Err(Error::config(
                    "cache.redis_url",
                    "must be a redis:// or rediss:// URL",
                ));
            }
        }
        if self.backend == CacheBackend::Redis && self.redis_url.is_none() {
            return Err(Error::config(
                "cache.redis_url",
                "required when cache.backend is \"redis\"",
            ));
        }
        let prefix_ok = !self.redis_prefix.is_empty()
            && self.redis_prefix.len() <= 64
            && self
                .redis_prefix
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'));
        if !prefix_ok {
            return Err(Error::config(
                "cache.redis_prefix",
                "must be 1-64 characters: letters, digits, _, - and .",
            ));
        }
        if !(1..=100_000_000).contains(&self.max_entries) {
            return Err(Error::config(
                "cache.max_entries",
                "must be between 1 and 100000000",
            ));
        }
        if !(1..=3600).contains(&self.ttl_secs) {
            return Err(Error::config(
                "cache.ttl_secs",
                "must be between 1 and 3600",
            ));
        }
        if !(1..=self.ttl_secs).contains(&self.fallback_ttl_secs) {
            return Err(Error::config(
                "cache.fallback_ttl_secs",
                "must be between 1 and cache.ttl_secs",
            ));
        }
        Ok(())
    }
}

impl RateLimitConfig {
    /// Checks the `[rate_limit]` settings; errors name the key.
    ///
    /// # Errors
    /// [`Error::Config`] naming the first offending key.
    pub fn validate(&self) -> Result<()> {
        for (key, value) in [
            ("rate_limit.address_per_sec", self.address_per_sec),
            ("rate_limit.address_burst", self.address_burst),
            ("rate_limit.auth_per_sec", self.auth_per_sec),
            ("rate_limit.auth_burst", self.auth_burst),
            ("rate_limit.read_per_sec", self.read_per_sec),
            ("rate_limit.read_burst", self.read_burst),
            ("rate_limit.write_per_sec", self.write_per_sec),
            ("rate_limit.write_burst", self.write_burst),
            ("rate_limit.admin_per_sec", self.admin_per_sec),
            ("rate_limit.admin_burst", self.admin_burst),
        ] {
            if !(1..=10_000_000).contains(&value) {
                return Err(Error::config(key, "must be between 1 and 10000000"));
            }
        }
        Ok(())
    }
}
