//! [`MemoryCache`]: the in-process cache (moka), bounded by entry count and
//! by each entry's lifetime.

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;

use super::Cache;
use crate::error::Result;

/// An entry: its bytes and the moment it stops counting.
#[derive(Debug)]
struct Entry {
    expires: Instant,
    value: Vec<u8>,
}

/// The in-process cache: moka with a size bound; each entry also carries
/// its own deadline, so entries stored while the invalidation channel is
/// down live only briefly.
#[derive(Debug, Clone)]
pub struct MemoryCache {
    entries: moka::sync::Cache<Arc<str>, Arc<Entry>>,
}

impl MemoryCache {
    /// A cache of at most `max_entries`, none older than `max_ttl`.
    pub fn new(max_entries: u64, max_ttl: Duration) -> MemoryCache {
        MemoryCache {
            entries: moka::sync::Cache::builder()
                .max_capacity(max_entries)
                .time_to_live(max_ttl)
                .support_invalidation_closures()
                .build(),
        }
    }
}

#[async_trait]
impl Cache for MemoryCache {
    fn name(&self) -> &'static str {
        "memory"
    }

    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>> {
        Ok(match self.entries.get(key) {
            Some(entry) if entry.expires > Instant::now() => Some(entry.value.clone()),
            Some(_) => {
                self.entries.invalidate(key);
                None
            }
            None => None,
        })
    }

    async fn put(&self, key: &str, value: Vec<u8>, ttl: Duration) -> Result<()> {
        let entry = Entry {
            expires: Instant::now() + ttl,
            value,
        };
        self.entries.insert(Arc::from(key), Arc::new(entry));
        Ok(())
    }

    async fn remove(&self, key: &str) -> Result<()> {
        self.entries.invalidate(key);
        Ok(())
    }

    async fn remove_prefix(&self, prefix: &str) -> Result<()> {
        let prefix: Arc<str> = Arc::from(prefix);
        // Closures are registered now and applied lazily, but no entry that
        // matches is returned from here on.
        self.entries
            .invalidate_entries_if(move |key, _| key.starts_with(&*prefix))
            .map_err(|_| {
                crate::error::Error::internal("cache invalidation closures are disabled")
            })?;
        Ok(())
    }

    async fn clear(&self) -> Result<()> {
        self.entries.invalidate_all();
        Ok(())
    }

    async fn contents(&self) -> Result<Vec<Vec<u8>>> {
        let now = Instant::now();
        Ok(self
            .entries
            .iter()
            .filter(|(_, e)| e.expires > now)
            .map(|(_, e)| e.value.clone())
            .collect())
    }

    fn is_shared(&self) -> bool {
        false
    }

    fn entry_count(&self) -> u64 {
        self.entries.run_pending_tasks();
        self.entries.entry_count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn entries_expire_and_are_removed_by_key_and_prefix() {
        let cache = MemoryCache::new(100, Duration::from_secs(60));
        cache
            .put("s:1", b"one".to_vec(), Duration::from_secs(60))
            .await
            .expect("put");
        cache
            .put("s:2", b"two".to_vec(), Duration::from_secs(60))
            .await
            .expect("put");
        cache
            .put("u:1", b"user".to_vec(), Duration::from_millis(1))
            .await
            .expect("put");
        std::thread::sleep(Duration::from_millis(5));
        assert_eq!(cache.get("u:1").await.expect("get"), None, "expired");
        assert_eq!(cache.get("s:1").await.expect("get"), Some(b"one".to_vec()));
        cache.remove("s:1").await.expect("remove");
        assert_eq!(cache.get("s:1").await.expect("get"), None);
        cache.remove_prefix("s:").await.expect("prefix");
        assert_eq!(cache.get("s:2").await.expect("get"), None);
    }
}
