//! [`RedisCache`]: a cache shared by every instance, in Redis. Values are
//! sealed (AES-256-GCM under a key derived from the root secret, bound to
//! their cache key), so Redis holds no readable state and a value cannot be
//! forged or moved to another key by whoever can write to Redis.

use std::fmt;
use std::time::Duration;

use async_trait::async_trait;

use super::Cache;
use crate::crypto::{Key, envelope};
use crate::error::{Error, Result};

/// The shared cache in Redis, under `<prefix>:c:`.
pub struct RedisCache {
    connection: redis::aio::ConnectionManager,
    prefix: String,
    key: Key,
}

impl fmt::Debug for RedisCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisCache")
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

fn unavailable(_: redis::RedisError) -> Error {
    Error::Unavailable {
        message: "the shared cache (Redis) does not answer".into(),
    }
}

impl RedisCache {
    /// A cache under `<prefix>:c:` whose values are sealed with `key`.
    pub fn new(connection: redis::aio::ConnectionManager, prefix: &str, key: Key) -> RedisCache {
        RedisCache {
            connection,
            prefix: format!("{prefix}:c:"),
            key,
        }
    }

    fn full(&self, key: &str) -> String {
        format!("{}{key}", self.prefix)
    }

    async fn delete_matching(&self, pattern: String) -> Result<()> {
        let mut connection = self.connection.clone();
        let mut cursor: u64 = 0;
        loop {
            let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
                .arg(cursor)
                .arg("MATCH")
                .arg(&pattern)
                .arg("COUNT")
                .arg(1000)
                .query_async(&mut connection)
                .await
                .map_err(unavailable)?;
            if !keys.is_empty() {
                let _: i64 = redis::cmd("DEL")
                    .arg(&keys)
                    .query_async(&mut connection)
                    .await
                    .map_err(unavailable)?;
            }
            if next == 0 {
                return Ok(());
            }
            cursor = next;
        }
    }
}

#[async_trait]
impl Cache for RedisCache {
    fn name(&self) -> &'static str {
        "redis"
    }

    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>> {
        let full = self.full(key);
        let mut connection = self.connection.clone();
        let sealed: Option<Vec<u8>> = redis::cmd("GET")
            .arg(&full)
            .query_async(&mut connection)
            .await
            .map_err(unavailable)?;
        match sealed {
            Some(sealed) => match envelope::open(&self.key, full.as_bytes(), &sealed) {
                Ok(plain) => Ok(Some(plain.to_vec())),
                Err(_) => {
                    tracing::warn!("a shared cache entry failed its integrity check; ignored");
                    Ok(None)
                }
            },
            None => Ok(None),
        }
    }

    async fn put(&self, key: &str, value: Vec<u8>, ttl: Duration) -> Result<()> {
        let full = self.full(key);
        let sealed = envelope::seal(&self.key, full.as_bytes(), &value)?;
        let mut connection = self.connection.clone();
        let millis = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1);
        let _: () = redis::cmd("SET")
            .arg(&full)
            .arg(sealed)
            .arg("PX")
            .arg(millis)
            .query_async(&mut connection)
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    async fn remove(&self, key: &str) -> Result<()> {
        let mut connection = self.connection.clone();
        let _: i64 = redis::cmd("DEL")
            .arg(self.full(key))
            .query_async(&mut connection)
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    async fn remove_prefix(&self, prefix: &str) -> Result<()> {
        // Keys are ids and fixed tags: no glob characters to escape.
        self.delete_matching(format!("{}*", self.full(prefix)))
            .await
    }

    async fn clear(&self) -> Result<()> {
        self.delete_matching(format!("{}*", self.prefix)).await
    }

    async fn contents(&self) -> Result<Vec<Vec<u8>>> {
        let mut connection = self.connection.clone();
        let mut cursor: u64 = 0;
        let mut values = Vec::new();
        loop {
            let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
                .arg(cursor)
                .arg("MATCH")
                .arg(format!("{}*", self.prefix))
                .query_async(&mut connection)
                .await
                .map_err(unavailable)?;
            for key in keys {
                let value: Option<Vec<u8>> = redis::cmd("GET")
                    .arg(&key)
                    .query_async(&mut connection)
                    .await
                    .map_err(unavailable)?;
                values.extend(value);
            }
            if next == 0 {
                return Ok(values);
            }
            cursor = next;
        }
    }

    fn is_shared(&self) -> bool {
        true
    }

    fn entry_count(&self) -> u64 {
        0
    }
}
