//! Login throttling (S-AUTH-2): exponential back-off per account, and a
//! bounded in-memory record of failures per key (client address, or the
//! email index of an account that does not exist).

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::Mutex;
use std::time::Duration;

use chrono::{DateTime, Utc};

/// Longest back-off between attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(15 * 60);
/// Addresses remembered at most; the oldest are forgotten first.
const MAX_ADDRESSES: usize = 100_000;

/// How long an account (or address) with `failures` recent failures must
/// wait after its last failure: nothing up to `free` failures, then 1 s,
/// 2 s, 4 s, ... capped at 15 minutes.
pub fn backoff_delay(failures: u32, free: u32) -> Duration {
    if failures < free {
        return Duration::ZERO;
    }
    let exponent = (failures - free).min(20);
    Duration::from_secs(1u64 << exponent).min(MAX_BACKOFF)
}

#[derive(Debug, Clone, Copy)]
struct Entry {
    failures: u32,
    window_start: DateTime<Utc>,
    last: DateTime<Utc>,
}

/// Failures per key within an hour window, bounded in size.
#[derive(Debug)]
pub struct Throttle<K> {
    free: u32,
    entries: Mutex<HashMap<K, Entry>>,
}

impl<K: Hash + Eq + Copy> Throttle<K> {
    /// Allows `free` failures per key before back-off starts.
    pub fn new(free: u32) -> Self {
        Throttle {
            free,
            entries: Mutex::new(HashMap::new()),
        }
    }

    /// How long `addr` must still wait at `now`, if at all.
    pub fn wait(&self, addr: K, now: DateTime<Utc>) -> Option<Duration> {
        let entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        let entry = entries.get(&addr)?;
        if now - entry.window_start > chrono::Duration::hours(1) {
            return None;
        }
        let delay = backoff_delay(entry.failures, self.free);
        let ready = entry.last + chrono::Duration::from_std(delay).ok()?;
        (ready > now).then(|| (ready - now).to_std().unwrap_or(Duration::ZERO))
    }

    /// Records a failure from `addr`.
    pub fn failed(&self, addr: K, now: DateTime<Utc>) {
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        if entries.len() >= MAX_ADDRESSES && !entries.contains_key(&addr) {
            let cutoff = now - chrono::Duration::hours(1);
            entries.retain(|_, e| e.last > cutoff);
            let oldest = entries.iter().min_by_key(|(_, e)| e.last).map(|(k, _)| *k);
            if let Some(oldest) = oldest.filter(|_| entries.len() >= MAX_ADDRESSES) {
                entries.remove(&oldest);
            }
        }
        let entry = entries.entry(addr).or_insert(Entry {
            failures: 0,
            window_start: now,
            last: now,
        });
        if now - entry.window_start > chrono::Duration::hours(1) {
            *entry = Entry {
                failures: 0,
                window_start: now,
                last: now,
            };
        }
        entry.failures = entry.failures.saturating_add(1);
        entry.last = now;
    }

    /// Forgets the failures of `addr` after a success.
    pub fn succeeded(&self, addr: K) {
        self.entries
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&addr);
    }
}

/// One lock per key: login attempts for the same account (or from the same
/// address) run one after another, so each sees the failures of the one
/// before and concurrent requests cannot slip past the throttle together.
#[derive(Debug)]
pub struct KeyedLocks<K> {
    locks: Mutex<HashMap<K, std::sync::Arc<tokio::sync::Mutex<()>>>>,
}

impl<K> Default for KeyedLocks<K> {
    fn default() -> Self {
        KeyedLocks {
            locks: Mutex::new(HashMap::new()),
        }
    }
}

impl<K: Hash + Eq + Copy> KeyedLocks<K> {
    /// Waits for the lock of `key` and holds it until the guard is dropped.
    pub async fn lock(&self, key: K) -> KeyedGuard<'_, K> {
        let lock = {
            let mut locks = self.locks.lock().unwrap_or_else(|p| p.into_inner());
            std::sync::Arc::clone(locks.entry(key).or_default())
        };
        let guard = std::sync::Arc::clone(&lock).lock_owned().await;
        KeyedGuard {
            owner: self,
            key,
            lock,
            _guard: guard,
        }
    }
}

/// Holds one key's lock; forgets the key when nobody else waits for it.
#[derive(Debug)]
pub struct KeyedGuard<'a, K: Hash + Eq + Copy> {
    owner: &'a KeyedLocks<K>,
    key: K,
    lock: std::sync::Arc<tokio::sync::Mutex<()>>,
    _guard: tokio::sync::OwnedMutexGuard<()>,
}

impl<K: Hash + Eq + Copy> Drop for KeyedGuard<'_, K> {
    fn drop(&mut self) {
        let mut locks = self.owner.locks.lock().unwrap_or_else(|p| p.into_inner());
        // The map, this guard's handle and the owned guard hold the Arc; more
        // means someone else waits for it.
        if std::sync::Arc::strong_count(&self.lock) <= 3 {
            locks.remove(&self.key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_and_is_capped() {
        assert_eq!(backoff_delay(4, 5), Duration::ZERO);
        assert_eq!(backoff_delay(5, 5), Duration::from_secs(1));
        assert_eq!(backoff_delay(8, 5), Duration::from_secs(8));
        assert_eq!(backoff_delay(99, 5), MAX_BACKOFF);
    }

    // S-AUTH-2
    #[test]
    fn an_address_waits_after_repeated_failures_and_recovers() {
        let throttle = Throttle::new(2);
        let addr: std::net::IpAddr = "192.0.2.7".parse().expect("ip");
        let t0 = DateTime::from_timestamp(1_800_000_000, 0).expect("time");
        throttle.failed(addr, t0);
        assert_eq!(throttle.wait(addr, t0), None);
        throttle.failed(addr, t0);
        assert_eq!(throttle.wait(addr, t0), Some(Duration::from_secs(1)));
        throttle.failed(addr, t0);
        assert_eq!(throttle.wait(addr, t0), Some(Duration::from_secs(2)));
        assert_eq!(throttle.wait(addr, t0 + chrono::Duration::seconds(3)), None);
        throttle.succeeded(addr);
        assert_eq!(throttle.wait(addr, t0), None);
    }
}
