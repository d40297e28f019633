//! [`MemoryCache`]: the in-process cache (an [`ExpiringCache`]), bounded by
//! entry count and by each entry's lifetime.
//!
//! Entries are kept as the values themselves, keyed by the
//! [`Invalidation`] that removes them: a hit is a hash of ids and a clone,
//! with no key to format and nothing to decode (the shared Redis cache
//! keeps bytes; see [`super::RedisCache`]). What is cached holds no
//! plaintext PHI either way: rows stay encrypted, data keys wrapped.

use std::any::Any;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use serde::Serialize;

use super::Cache;
use super::expiring::ExpiringCache;
use crate::error::{Error, Result};
use crate::model::Invalidation;

/// A cached value: readable as its own type, and encodable for
/// inspection ([`Cache::contents`]).
trait Value: Send + Sync {
    fn as_any(&self) -> &dyn Any;
    fn encoded(&self) -> Vec<u8>;
}

/// A typed value, encoded with postcard only when inspected.
struct Typed<T>(T);

impl<T: Serialize + Send + Sync + 'static> Value for Typed<T> {
    fn as_any(&self) -> &dyn Any {
        &self.0
    }

    fn encoded(&self) -> Vec<u8> {
        postcard::to_stdvec(&self.0).unwrap_or_default()
    }
}

/// Bytes stored through the byte interface of [`Cache`].
struct Bytes(Vec<u8>);

impl Value for Bytes {
    fn as_any(&self) -> &dyn Any {
        &self.0
    }

    fn encoded(&self) -> Vec<u8> {
        self.0.clone()
    }
}

/// The in-process cache: an [`ExpiringCache`] bounded by entry count (a hit
/// is a hash look-up under a shard's read lock, with no bookkeeping queue
/// to drain); each entry carries its own deadline, so entries stored while
/// the invalidation channel is down live only briefly, and none outlives
/// the cache's longest lifetime.
#[derive(Clone)]
pub struct MemoryCache {
    entries: ExpiringCache<Invalidation, Arc<dyn Value>>,
}

impl std::fmt::Debug for MemoryCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryCache")
            .field("entries", &self.entries.entry_count())
            .finish()
    }
}

impl MemoryCache {
    /// A cache of at most `max_entries`, none older than `max_ttl`.
    pub fn new(max_entries: u64, max_ttl: Duration) -> MemoryCache {
        MemoryCache {
            entries: ExpiringCache::new(max_entries, max_ttl),
        }
    }

    /// The value of type `T` under `key`, if present and not expired.
    pub(crate) fn get_value<T: Clone + 'static>(&self, key: &Invalidation) -> Option<T> {
        self.entries.get(key)?.as_any().downcast_ref::<T>().cloned()
    }

    /// Stores `value` under `key` for `ttl`.
    pub(crate) fn put_value<T: Serialize + Send + Sync + 'static>(
        &self,
        key: Invalidation,
        value: T,
        ttl: Duration,
    ) {
        self.entries.insert_for(key, Arc::new(Typed(value)), ttl);
    }

    /// Removes the entries `invalidation` names: its own, all sessions for
    /// [`Invalidation::UserSessions`], a patient's data key with the
    /// patient, everything for [`Invalidation::All`].
    pub(crate) fn remove_what(&self, invalidation: &Invalidation) -> Result<()> {
        match invalidation {
            Invalidation::UserSessions(_) => {
                self.entries
                    .retain(|key| !matches!(key, Invalidation::Session(_)));
            }
            Invalidation::Patient(id) => {
                self.entries.remove(invalidation);
                self.entries.remove(&Invalidation::DataKey(*id));
            }
            Invalidation::All => self.entries.clear(),
            other => self.entries.remove(other),
        }
        Ok(())
    }
}

/// The key a byte-interface caller names: the wire form of an invalidation.
fn key_of(key: &str) -> Result<Invalidation> {
    Invalidation::decode(key)
        .ok_or_else(|| Error::invalid("a memory cache key names an invalidation"))
}

#[async_trait]
impl Cache for MemoryCache {
    fn name(&self) -> &'static str {
        "memory"
    }

    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>> {
        Ok(self.get_value::<Vec<u8>>(&key_of(key)?))
    }

    async fn put(&self, key: &str, value: Vec<u8>, ttl: Duration) -> Result<()> {
        self.entries
            .insert_for(key_of(key)?, Arc::new(Bytes(value)), ttl);
        Ok(())
    }

    async fn remove(&self, key: &str) -> Result<()> {
        self.entries.remove(&key_of(key)?);
        Ok(())
    }

    async fn remove_prefix(&self, prefix: &str) -> Result<()> {
        self.entries.retain(|key| !key.encode().starts_with(prefix));
        Ok(())
    }

    async fn clear(&self) -> Result<()> {
        self.entries.clear();
        Ok(())
    }

    async fn contents(&self) -> Result<Vec<Vec<u8>>> {
        Ok(self
            .entries
            .live_values()
            .iter()
            .map(|value| value.encoded())
            .collect())
    }

    fn is_shared(&self) -> bool {
        false
    }

    fn entry_count(&self) -> u64 {
        self.entries.entry_count()
    }

    fn as_memory(&self) -> Option<&MemoryCache> {
        Some(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use uuid::Uuid;

    #[tokio::test]
    async fn entries_expire_and_are_removed_by_key_and_prefix() {
        let (s1, s2, u1) = (
            Invalidation::Session(Uuid::now_v7()).encode(),
            Invalidation::Session(Uuid::now_v7()).encode(),
            Invalidation::User(Uuid::now_v7()).encode(),
        );
        let cache = MemoryCache::new(100, Duration::from_secs(60));
        cache
            .put(&s1, b"one".to_vec(), Duration::from_secs(60))
            .await
            .expect("put");
        cache
            .put(&s2, b"two".to_vec(), Duration::from_secs(60))
            .await
            .expect("put");
        cache
            .put(&u1, b"user".to_vec(), Duration::from_millis(1))
            .await
            .expect("put");
        std::thread::sleep(Duration::from_millis(5));
        assert_eq!(cache.get(&u1).await.expect("get"), None, "expired");
        assert_eq!(cache.get(&s1).await.expect("get"), Some(b"one".to_vec()));
        cache.remove(&s1).await.expect("remove");
        assert_eq!(cache.get(&s1).await.expect("get"), None);
        cache.remove_prefix("s:").await.expect("prefix");
        assert_eq!(cache.get(&s2).await.expect("get"), None);
        assert!(
            cache.get("not a key").await.is_err(),
            "keys name invalidations"
        );
    }

    #[test]
    fn typed_values_are_read_back_as_their_type_and_removed_with_what_names_them() {
        let cache = MemoryCache::new(100, Duration::from_secs(60));
        let (patient, session) = (Uuid::now_v7(), Uuid::now_v7());
        let ttl = Duration::from_secs(60);
        cache.put_value(Invalidation::Patient(patient), Some(7u32), ttl);
        cache.put_value(Invalidation::DataKey(patient), Some(vec![1u8, 2]), ttl);
        cache.put_value(Invalidation::Session(session), Some(9u64), ttl);
        assert_eq!(
            cache.get_value::<Option<u32>>(&Invalidation::Patient(patient)),
            Some(Some(7))
        );
        assert_eq!(
            cache.get_value::<Option<u64>>(&Invalidation::Patient(patient)),
            None,
            "another type is a miss, never a wrong value"
        );
        cache
            .remove_what(&Invalidation::Patient(patient))
            .expect("remove");
        assert_eq!(
            cache.get_value::<Option<Vec<u8>>>(&Invalidation::DataKey(patient)),
            None,
            "a patient's invalidation drops its data key"
        );
        cache
            .remove_what(&Invalidation::UserSessions(Uuid::now_v7()))
            .expect("remove");
        assert_eq!(
            cache.get_value::<Option<u64>>(&Invalidation::Session(session)),
            None
        );
    }
}
