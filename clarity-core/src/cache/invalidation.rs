//! [`Invalidator`]: removes what a write changed ([`Invalidation`]) from
//! this instance's cache and announces it to the others.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::sync::mpsc;
use uuid::Uuid;

use super::channel::{ChannelKind, ChannelState};
use super::{Cache, CacheStats};
use crate::error::Result;
use crate::model::Invalidation;

/// The start of every session entry's key.
const SESSION_PREFIX: &str = "s:";

/// Removes the cache entries this invalidation names. A cache entry's
/// key is the wire form of the invalidation that removes it alone
/// (`Invalidation::Session(id).encode()` keys session `id`).
async fn remove_from(invalidation: &Invalidation, cache: &dyn Cache) -> Result<()> {
    if let Some(memory) = cache.as_memory() {
        return memory.remove_what(invalidation);
    }
    match invalidation {
        Invalidation::UserSessions(_) => cache.remove_prefix(SESSION_PREFIX).await,
        Invalidation::Patient(id) => {
            cache.remove(&invalidation.encode()).await?;
            cache.remove(&Invalidation::DataKey(*id).encode()).await
        }
        Invalidation::All => cache.clear().await,
        other => cache.remove(&other.encode()).await,
    }
}

/// Removes changed state from this instance's cache and announces it to the
/// other instances; decides how long cached state may live.
///
/// Lifetimes: `cache.ttl_secs` while the invalidation channel is up;
/// `cache.fallback_ttl_secs` when no channel is configured (one instance,
/// SQLite: only another process such as the CLI changes state behind it);
/// nothing is cached while a configured channel is down, so a revocation
/// made elsewhere is seen at once (fail closed).
#[derive(Debug)]
pub struct Invalidator {
    cache: Arc<dyn Cache>,
    /// Bumped by every invalidation: a value read from the database before
    /// an invalidation arrived is not cached after it.
    generation: AtomicU64,
    kind: ChannelKind,
    up: AtomicBool,
    /// Without a channel: whether the database's own change counter is
    /// being watched (see `channel::spawn_outside_watch`), so that changes
    /// made by other processes are seen within a poll.
    watched: AtomicBool,
    outbox: Option<mpsc::UnboundedSender<String>>,
    origin: Uuid,
    ttl: Duration,
    fallback_ttl: Duration,
    hits: AtomicU64,
    misses: AtomicU64,
    announced: AtomicU64,
    received: AtomicU64,
}

impl Invalidator {
    /// An invalidator over `cache` with no channel to other instances.
    pub fn local(cache: Arc<dyn Cache>, ttl: Duration, fallback_ttl: Duration) -> Invalidator {
        Invalidator::with_channel(cache, ttl, fallback_ttl, ChannelKind::None, None)
    }

    pub(crate) fn with_channel(
        cache: Arc<dyn Cache>,
        ttl: Duration,
        fallback_ttl: Duration,
        kind: ChannelKind,
        outbox: Option<mpsc::UnboundedSender<String>>,
    ) -> Invalidator {
        Invalidator {
            cache,
            generation: AtomicU64::new(0),
            kind,
            up: AtomicBool::new(false),
            watched: AtomicBool::new(false),
            outbox,
            origin: Uuid::new_v4(),
            ttl,
            fallback_ttl,
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
            announced: AtomicU64::new(0),
            received: AtomicU64::new(0),
        }
    }

    /// The cache underneath.
    pub fn cache(&self) -> &Arc<dyn Cache> {
        &self.cache
    }

    /// The channel and whether it is up.
    pub fn channel(&self) -> ChannelState {
        ChannelState {
            kind: self.kind,
            up: self.kind == ChannelKind::None || self.up.load(Ordering::Acquire),
            announced: self.announced.load(Ordering::Relaxed),
            received: self.received.load(Ordering::Relaxed),
        }
    }

    /// Hits, misses and entries.
    pub fn stats(&self) -> CacheStats {
        CacheStats {
            hits: self.hits.load(Ordering::Relaxed),
            misses: self.misses.load(Ordering::Relaxed),
            entries: self.cache.entry_count(),
        }
    }

    /// How long a value read now may be cached; `None`: do not cache.
    fn ttl(&self) -> Option<Duration> {
        match self.kind {
            // A shared cache is invalidated for everyone by removing the entry.
            ChannelKind::None if self.cache.is_shared() => Some(self.ttl),
            ChannelKind::None if self.watched.load(Ordering::Acquire) => Some(self.ttl),
            ChannelKind::None => Some(self.fallback_ttl),
            _ if self.up.load(Ordering::Acquire) => Some(self.ttl),
            _ => None,
        }
    }

    /// Removes what `change` names here, then announces it to the other
    /// instances. Call after the change is committed.
    pub async fn invalidate(&self, change: Invalidation) {
        self.apply(change).await;
        if let Some(outbox) = &self.outbox {
            self.announced.fetch_add(1, Ordering::Relaxed);
            // A closed outbox means the channel task ended with the instance.
            let _ = outbox.send(format!("{}|{}", self.origin.simple(), change.encode()));
        }
    }

    /// Removes what `change` names from this instance only (e.g. a session
    /// touch that other instances need not hear about).
    pub async fn forget(&self, change: Invalidation) {
        self.apply(change).await;
    }

    async fn apply(&self, change: Invalidation) {
        self.generation.fetch_add(1, Ordering::AcqRel);
        if let Err(e) = remove_from(&change, self.cache.as_ref()).await {
            // A shared cache that cannot be reached: its entries expire by
            // themselves; until then the channel is down and nothing is read.
            tracing::warn!(error = %e, "cache invalidation failed");
        }
    }

    /// Handles a message from the channel: `<origin>|<invalidation>`.
    pub(crate) async fn receive(&self, message: &str) {
        let Some((origin, body)) = message.split_once('|') else {
            return;
        };
        if origin == self.origin.simple().to_string() {
            return;
        }
        match Invalidation::decode(body) {
            Some(change) => {
                self.received.fetch_add(1, Ordering::Relaxed);
                self.apply(change).await;
            }
            None => tracing::warn!("ignored a malformed cache invalidation message"),
        }
    }

    /// Records whether the database's change counter is watched. Either
    /// way the cache is emptied: entries cached under the other lifetime
    /// must not outlive it.
    pub(crate) async fn set_watched(&self, watched: bool) {
        if self.watched.swap(watched, Ordering::AcqRel) != watched {
            self.apply(Invalidation::All).await;
            if !watched {
                tracing::warn!(
                    "the database's change counter cannot be read: cached state lives cache.fallback_ttl_secs until it can"
                );
            }
        }
    }

    /// Records that the channel came up or went down. Either way the cache
    /// is emptied: announcements may have been missed.
    pub(crate) async fn set_up(&self, up: bool) {
        if self.up.swap(up, Ordering::AcqRel) != up {
            self.apply(Invalidation::All).await;
            if up {
                tracing::info!(
                    channel = self.kind.as_str(),
                    "cache invalidation channel up"
                );
            } else {
                tracing::warn!(
                    channel = self.kind.as_str(),
                    "cache invalidation channel down: authentication and access state is read from the database until it returns"
                );
            }
        }
    }

    /// A value from the cache, or from `fill` (then cached), under the
    /// invalidation that removes it. `cache_absent` also caches "there is
    /// none". A cache that cannot be read is skipped: the database stays
    /// the source of truth. The in-process cache keeps the value itself
    /// (a hit is a clone); a shared one keeps it encoded.
    pub(crate) async fn cached<T, F, Fut>(
        &self,
        key: Invalidation,
        cache_absent: bool,
        fill: F,
    ) -> Result<Option<T>>
    where
        T: Serialize + DeserializeOwned + Clone + Send + Sync + 'static,
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Option<T>>>,
    {
        let Some(ttl) = self.ttl() else {
            self.misses.fetch_add(1, Ordering::Relaxed);
            return fill().await;
        };
        let place = match self.cache.as_memory() {
            Some(memory) => Place::Memory(memory),
            None => Place::Shared(key.encode()),
        };
        let hit = match &place {
            Place::Memory(memory) => memory.get_value::<Option<T>>(&key),
            Place::Shared(name) => match self.cache.get(name).await {
                Ok(Some(bytes)) => postcard::from_bytes::<Option<T>>(&bytes).ok(),
                _ => None,
            },
        };
        if let Some(value) = hit {
            self.hits.fetch_add(1, Ordering::Relaxed);
            return Ok(value);
        }
        self.misses.fetch_add(1, Ordering::Relaxed);
        let generation = self.generation.load(Ordering::Acquire);
        let value = fill().await?;
        if (value.is_some() || cache_absent)
            && self.generation.load(Ordering::Acquire) == generation
        {
            match place {
                Place::Memory(memory) => memory.put_value(key, value.clone(), ttl),
                Place::Shared(name) => {
                    let encoded = postcard::to_stdvec(&value);
                    // Every cached type serialises; a failure is a bug to catch in tests.
                    debug_assert!(encoded.is_ok(), "a cache value does not serialise");
                    if let Ok(bytes) = encoded {
                        // Not caching is always safe.
                        let _ = self.cache.put(&name, bytes, ttl).await;
                    }
                }
            }
        }
        Ok(value)
    }
}

/// Where [`Invalidator::cached`] keeps a value: the in-process cache holds
/// it as itself, under its invalidation; a shared cache holds it encoded,
/// under the invalidation's wire form.
enum Place<'a> {
    Memory(&'a super::MemoryCache),
    Shared(String),
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::MemoryCache;

    #[test]
    fn invalidations_round_trip_through_text() {
        let (a, b) = (Uuid::now_v7(), Uuid::now_v7());
        for change in [
            Invalidation::Session(a),
            Invalidation::UserSessions(a),
            Invalidation::User(a),
            Invalidation::CareTeam {
                patient: a,
                user: b,
            },
            Invalidation::Grants(a),
            Invalidation::Patient(a),
            Invalidation::DataKey(a),
            Invalidation::Record(a),
            Invalidation::ExternalIdentity(a),
            Invalidation::ExternalSession(a),
            Invalidation::All,
        ] {
            assert_eq!(Invalidation::decode(&change.encode()), Some(change));
        }
        assert_eq!(Invalidation::decode("x:1"), None);
        assert_eq!(Invalidation::decode("s:not-a-uuid"), None);
    }

    #[tokio::test]
    async fn a_fill_racing_an_invalidation_is_not_cached() {
        let cache = Arc::new(MemoryCache::new(100, Duration::from_secs(60)));
        let inv = Invalidator::local(cache, Duration::from_secs(60), Duration::from_secs(60));
        let id = Uuid::now_v7();
        let value = inv
            .cached(Invalidation::Session(id), false, || async {
                // The value read is stale by the time it returns.
                inv.invalidate(Invalidation::Session(id)).await;
                Ok(Some(1u32))
            })
            .await
            .expect("fill");
        assert_eq!(value, Some(1));
        let again = inv
            .cached(Invalidation::Session(id), false, || async {
                Ok(Some(2u32))
            })
            .await
            .expect("fill");
        assert_eq!(again, Some(2), "the racing value was not cached");
        let cached = inv
            .cached(Invalidation::Session(id), false, || async {
                Ok(Some(3u32))
            })
            .await
            .expect("hit");
        assert_eq!(cached, Some(2));
        assert_eq!(inv.stats().hits, 1);
    }
}
