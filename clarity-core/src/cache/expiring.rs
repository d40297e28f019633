//! [`ExpiringCache`]: a bounded in-process map whose entries each stop
//! counting a fixed time after they were stored; the one such map behind
//! the in-process cache, the verified-token caches and the unwrapped data
//! keys.
//!
//! A hit is a hash look-up under one shard's read lock (quick_cache) and a
//! clock read: no read log to record, no housekeeping queue to drain, which
//! is what a general-purpose cache does on each read and what the hot path
//! paid for on every request. Expired entries are removed when they are
//! next asked for, and all at once by a sweep that runs at most once per
//! quarter of the lifetime, on a read or a write: an idle entry (a data key
//! unwrapped once) leaves memory within about 1¼ lifetimes of its storing
//! whenever the map is in use, not only when it is evicted for room.

use std::hash::Hash;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// A map of at most a given number of entries, each living at most a given
/// time; values are cloned out (keep them small or behind an `Arc`). A
/// clone is another handle on the same map.
pub(crate) struct ExpiringCache<K, V> {
    entries: Arc<quick_cache::sync::Cache<K, (Instant, V)>>,
    /// The longest an entry lives (and the default lifetime).
    ttl: Duration,
    /// When this map was made: the clock the sweep's schedule counts from.
    born: Instant,
    /// Nanoseconds after `born` at which the next sweep is due.
    next_sweep: Arc<AtomicU64>,
}

impl<K, V> Clone for ExpiringCache<K, V> {
    fn clone(&self) -> Self {
        ExpiringCache {
            entries: Arc::clone(&self.entries),
            ttl: self.ttl,
            born: self.born,
            next_sweep: Arc::clone(&self.next_sweep),
        }
    }
}

impl<K: Eq + Hash, V: Clone> std::fmt::Debug for ExpiringCache<K, V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ExpiringCache")
            .field("entries", &self.entries.len())
            .field("ttl", &self.ttl)
            .finish()
    }
}

impl<K: Eq + Hash + Clone, V: Clone> ExpiringCache<K, V> {
    /// A map of at most `max_entries` (at least one), none living longer
    /// than `ttl`.
    pub(crate) fn new(max_entries: u64, ttl: Duration) -> Self {
        let capacity = usize::try_from(max_entries).unwrap_or(usize::MAX).max(1);
        ExpiringCache {
            entries: Arc::new(quick_cache::sync::Cache::new(capacity)),
            ttl,
            born: Instant::now(),
            next_sweep: Arc::new(AtomicU64::new(sweep_gap(ttl))),
        }
    }

    /// The value under `key` when present and still live; an expired one
    /// is removed.
    pub(crate) fn get(&self, key: &K) -> Option<V> {
        let now = Instant::now();
        self.sweep_if_due(now);
        let (expires, value) = self.entries.get(key)?;
        if expires > now {
            return Some(value);
        }
        // Only the expired entry: a fresh one stored meanwhile stays.
        self.entries.remove_if(key, |(at, _)| *at <= now);
        None
    }

    /// Stores `value` under `key` for the map's lifetime.
    pub(crate) fn insert(&self, key: K, value: V) {
        self.insert_for(key, value, self.ttl);
    }

    /// Stores `value` under `key` for `ttl`, or the map's lifetime if that
    /// is shorter.
    pub(crate) fn insert_for(&self, key: K, value: V, ttl: Duration) {
        let now = Instant::now();
        self.sweep_if_due(now);
        self.entries.insert(key, (now + ttl.min(self.ttl), value));
    }

    /// Removes the entry under `key`.
    pub(crate) fn remove(&self, key: &K) {
        self.entries.remove(key);
    }

    /// Removes every entry.
    pub(crate) fn clear(&self) {
        self.entries.clear();
    }

    /// Keeps only the entries whose key `keep` accepts.
    pub(crate) fn retain(&self, keep: impl Fn(&K) -> bool) {
        self.entries.retain(|key, _| keep(key));
    }

    /// Entries held, expired ones not yet removed included.
    pub(crate) fn entry_count(&self) -> u64 {
        u64::try_from(self.entries.len()).unwrap_or(u64::MAX)
    }

    /// The live values.
    pub(crate) fn live_values(&self) -> Vec<V> {
        let now = Instant::now();
        self.entries
            .iter()
            .filter(|(_, (expires, _))| *expires > now)
            .map(|(_, (_, value))| value)
            .collect()
    }

    /// Removes every expired entry when a sweep is due; one caller sweeps,
    /// the others go on.
    fn sweep_if_due(&self, now: Instant) {
        let at = u64::try_from(now.duration_since(self.born).as_nanos()).unwrap_or(u64::MAX);
        let due = self.next_sweep.load(Ordering::Relaxed);
        if at < due {
            return;
        }
        let next = at.saturating_add(sweep_gap(self.ttl));
        if self
            .next_sweep
            .compare_exchange(due, next, Ordering::Relaxed, Ordering::Relaxed)
            .is_ok()
        {
            self.entries.retain(|_, (expires, _)| *expires > now);
        }
    }
}

/// A quarter of `ttl`, in nanoseconds (at least one): the time between sweeps.
fn sweep_gap(ttl: Duration) -> u64 {
    u64::try_from(ttl.as_nanos() / 4).unwrap_or(u64::MAX).max(1)
}

#[cfg(test)]
mod tests {
    use super::ExpiringCache;
    use std::time::Duration;

    // A stored value is returned until its lifetime ends, then it is gone.
    #[test]
    fn an_entry_is_returned_until_it_expires() {
        let cache = ExpiringCache::new(10, Duration::from_millis(200));
        cache.insert(1u32, "one");
        assert_eq!(cache.get(&1), Some("one"));
        std::thread::sleep(Duration::from_millis(250));
        assert_eq!(cache.get(&1), None);
        assert_eq!(cache.entry_count(), 0, "the expired entry is removed");
    }

    // A shorter lifetime asked for an entry holds; a longer one is cut to
    // the map's.
    #[test]
    fn an_entry_lives_the_shorter_of_its_own_and_the_maps_lifetime() {
        let cache = ExpiringCache::new(10, Duration::from_millis(300));
        cache.insert_for(1u32, 1u8, Duration::from_millis(50));
        cache.insert_for(2u32, 2u8, Duration::from_secs(3600));
        std::thread::sleep(Duration::from_millis(120));
        assert_eq!(cache.get(&1), None);
        assert_eq!(cache.get(&2), Some(2));
        std::thread::sleep(Duration::from_millis(250));
        assert_eq!(cache.get(&2), None, "no entry outlives the map's lifetime");
    }

    // An entry nobody asks for again leaves memory once its lifetime is
    // over, as soon as the map is used for anything else.
    #[test]
    fn an_idle_expired_entry_is_swept_by_other_use() {
        let cache = ExpiringCache::new(100, Duration::from_millis(100));
        cache.insert(1u32, vec![7u8; 32]);
        std::thread::sleep(Duration::from_millis(150));
        cache.insert(2u32, vec![8u8; 32]);
        assert_eq!(
            cache.entry_count(),
            1,
            "entry 1 is swept without being read"
        );
        assert_eq!(cache.get(&2), Some(vec![8u8; 32]));
    }

    // The map holds no more than its bound.
    #[test]
    fn the_entry_count_is_bounded() {
        let cache = ExpiringCache::new(50, Duration::from_secs(60));
        for key in 0..1_000u32 {
            cache.insert(key, key);
        }
        assert!(
            cache.entry_count() <= 50,
            "{} entries held",
            cache.entry_count()
        );
    }

    // Removing, clearing and retaining act on what they name only.
    #[test]
    fn entries_are_removed_as_asked() {
        let cache = ExpiringCache::new(10, Duration::from_secs(60));
        for key in 0..6u32 {
            cache.insert(key, key);
        }
        cache.remove(&0);
        assert_eq!(cache.get(&0), None);
        cache.retain(|key| key % 2 == 1);
        let mut live = cache.live_values();
        live.sort_unstable();
        assert_eq!(live, vec![1, 3, 5]);
        cache.clear();
        assert_eq!(cache.entry_count(), 0);
    }
}
