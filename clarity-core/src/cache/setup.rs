//! Builds the cache, the invalidation channel and the rate limiter that
//! `[cache]` and `[rate_limit]` describe.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;

use super::channel::{self, ChannelKind};
use super::{
    Cache, FallbackRateLimiter, Invalidator, LocalRateLimiter, MemoryCache, RateLimiter,
    RedisCache, RedisRateLimiter,
};
use super::{CacheBackend, CacheConfig, RateLimitConfig};
use crate::crypto::Key;
use crate::error::{Error, Result};
#[cfg(feature = "postgres")]
use crate::store::Backend;
use crate::store::{Store, StoreConfig};

/// The caching parts of an instance.
#[derive(Debug)]
pub struct Caching {
    /// Cache and invalidation.
    pub invalidator: Arc<Invalidator>,
    /// Rate limits; `None` when `rate_limit.enabled` is false.
    pub limiter: Option<Arc<dyn RateLimiter>>,
}

/// Opens what `settings` and `limits` ask for (with PostgreSQL's
/// LISTEN/NOTIFY as the invalidation channel when the `store` is PostgreSQL
/// and no Redis is set). Redis is connected lazily: an instance
/// starts while Redis is down and uses it once it answers.
///
/// # Errors
/// [`Error::Config`] for a URL the Redis or PostgreSQL client refuses.
pub fn open(
    settings: &CacheConfig,
    limits: &RateLimitConfig,
    store: &StoreConfig,
    cache_key: Key,
) -> Result<Caching> {
    // The store's settings matter only for PostgreSQL's LISTEN/NOTIFY.
    #[cfg(not(feature = "postgres"))]
    let _ = store;
    let ttl = Duration::from_secs(settings.ttl_secs);
    let fallback_ttl = Duration::from_secs(settings.fallback_ttl_secs);
    let redis = match &settings.redis_url {
        Some(url) => Some(
            redis::Client::open(url.expose())
                .map_err(|_| Error::config("cache.redis_url", "is not a valid Redis URL"))?,
        ),
        None => None,
    };
    let manager = match &redis {
        Some(client) => Some(
            redis::aio::ConnectionManager::new_lazy_with_config(
                client.clone(),
                redis::aio::ConnectionManagerConfig::new()
                    .set_connection_timeout(Some(Duration::from_secs(1)))
                    .set_response_timeout(Some(Duration::from_millis(500)))
                    .set_number_of_retries(1),
            )
            .map_err(|_| Error::config("cache.redis_url", "cannot be used"))?,
        ),
        None => None,
    };
    let prefix = settings.redis_prefix.as_str();

    let invalidator = match (settings.backend, &redis, &manager) {
        (CacheBackend::Redis, _, Some(manager)) => {
            let cache: Arc<dyn Cache> =
                Arc::new(RedisCache::new(manager.clone(), prefix, cache_key));
            Arc::new(Invalidator::local(cache, ttl, fallback_ttl))
        }
        (_, Some(client), _) => {
            let (outbox, inbox) = mpsc::unbounded_channel();
            let invalidator = Arc::new(Invalidator::with_channel(
                memory(settings, ttl),
                ttl,
                fallback_ttl,
                ChannelKind::Redis,
                Some(outbox),
            ));
            channel::spawn_redis(
                Arc::downgrade(&invalidator),
                client.clone(),
                format!("{prefix}:invalidate"),
                inbox,
            );
            invalidator
        }
        #[cfg(feature = "postgres")]
        (_, None, _) if store.backend == Backend::Postgres => {
            let target = crate::store::PgTarget::from_settings(store)?;
            let topic = match &store.postgres_schema {
                Some(schema) => format!("clarity_invalidate_{schema}"),
                None => "clarity_invalidate".to_string(),
            };
            let (outbox, inbox) = mpsc::unbounded_channel();
            let invalidator = Arc::new(Invalidator::with_channel(
                memory(settings, ttl),
                ttl,
                fallback_ttl,
                ChannelKind::Postgres,
                Some(outbox),
            ));
            channel::spawn_postgres(Arc::downgrade(&invalidator), target, topic, inbox);
            invalidator
        }
        _ => Arc::new(Invalidator::local(memory(settings, ttl), ttl, fallback_ttl)),
    };

    let limiter: Option<Arc<dyn RateLimiter>> = if !limits.enabled {
        None
    } else if let Some(manager) = manager {
        let shared = RedisRateLimiter::new(manager, prefix, limits);
        Some(Arc::new(FallbackRateLimiter::new(
            shared,
            LocalRateLimiter::new(limits),
        )))
    } else {
        Some(Arc::new(LocalRateLimiter::new(limits)))
    };
    Ok(Caching {
        invalidator,
        limiter,
    })
}

/// Without an invalidation channel or a shared cache, watches `store`'s
/// counter of commits by other processes, so that cached state can live
/// `cache.ttl_secs` (see `channel::spawn_outside_watch`). Needs a Tokio
/// runtime.
pub(crate) fn watch_outside_changes(invalidator: &Arc<Invalidator>, store: &Arc<dyn Store>) {
    if invalidator.channel().kind == ChannelKind::None && !invalidator.cache().is_shared() {
        channel::spawn_outside_watch(Arc::downgrade(invalidator), Arc::downgrade(store));
    }
}

fn memory(settings: &CacheConfig, ttl: Duration) -> Arc<dyn Cache> {
    Arc::new(MemoryCache::new(settings.max_entries, ttl))
}
