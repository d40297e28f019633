//! The invalidation channel between instances: Redis pub/sub or PostgreSQL
//! LISTEN/NOTIFY. Each runs in a task that reconnects by itself; while it is
//! disconnected the [`Invalidator`] caches nothing.

use std::sync::Weak;
use std::time::Duration;

use futures_util::StreamExt;
use tokio::sync::mpsc;

use super::Invalidator;
use crate::model::Invalidation;
use crate::store::Store;

/// Which channel carries invalidations.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ChannelKind {
    /// None: one instance (SQLite). Cached state lives `cache.ttl_secs`
    /// while the database's change counter is watched, otherwise
    /// `cache.fallback_ttl_secs`.
    None,
    /// Redis pub/sub (`cache.redis_url`).
    Redis,
    /// PostgreSQL LISTEN/NOTIFY (the PostgreSQL backend without Redis).
    Postgres,
}

impl ChannelKind {
    /// `none`, `redis` or `postgres`.
    pub fn as_str(&self) -> &'static str {
        match self {
            ChannelKind::None => "none",
            ChannelKind::Redis => "redis",
            ChannelKind::Postgres => "postgres",
        }
    }
}

/// The invalidation channel as this instance sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct ChannelState {
    /// Which channel.
    pub kind: ChannelKind,
    /// Connected (always `true` for [`ChannelKind::None`]).
    pub up: bool,
    /// Invalidations this instance announced.
    pub announced: u64,
    /// Invalidations received from other instances.
    pub received: u64,
}

/// Wait between reconnection attempts.
const RETRY: Duration = Duration::from_millis(200);

/// How often the database's change counter is read.
pub(crate) const OUTSIDE_POLL: Duration = Duration::from_millis(100);

/// Without a channel (one instance on SQLite): watches the counter the
/// store keeps of commits by other processes (the CLI on the same
/// database). While it can be read, cached state lives `cache.ttl_secs`,
/// and each move of the counter empties the cache; while it cannot,
/// cached state lives `cache.fallback_ttl_secs`, as before there was a
/// watcher. Runs until the invalidator or the store is gone; a store
/// without such a counter ends it at once.
pub(crate) fn spawn_outside_watch(invalidator: Weak<Invalidator>, store: Weak<dyn Store>) {
    tokio::spawn(async move {
        let mut seen = None;
        let mut tick = tokio::time::interval(OUTSIDE_POLL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let (Some(inv), Some(store)) = (invalidator.upgrade(), store.upgrade()) else {
                return;
            };
            match store.outside_changes().await {
                Ok(None) => return,
                Ok(Some(counter)) => {
                    if seen.is_some_and(|seen| seen != counter) {
                        inv.forget(Invalidation::All).await;
                    }
                    seen = Some(counter);
                    inv.set_watched(true).await;
                }
                Err(e) => {
                    tracing::debug!(error = %e, "the database's change counter could not be read");
                    seen = None;
                    inv.set_watched(false).await;
                }
            }
        }
    });
}

/// Runs the Redis channel until the invalidator is dropped.
pub(crate) fn spawn_redis(
    invalidator: Weak<Invalidator>,
    client: redis::Client,
    topic: String,
    mut outbox: mpsc::UnboundedReceiver<String>,
) {
    tokio::spawn(async move {
        loop {
            match redis_session(&invalidator, &client, &topic, &mut outbox).await {
                Ok(()) => return,
                Err(e) => {
                    let Some(inv) = invalidator.upgrade() else {
                        return;
                    };
                    tracing::debug!(error = %e, "Redis invalidation channel lost");
                    inv.set_up(false).await;
                    drop(inv);
                    tokio::time::sleep(RETRY).await;
                }
            }
        }
    });
}

/// One connected period: `Ok` when the instance is gone, `Err` when the
/// connection broke.
async fn redis_session(
    invalidator: &Weak<Invalidator>,
    client: &redis::Client,
    topic: &str,
    outbox: &mut mpsc::UnboundedReceiver<String>,
) -> redis::RedisResult<()> {
    let timeout = Duration::from_secs(2);
    let mut pubsub = tokio::time::timeout(timeout, client.get_async_pubsub())
        .await
        .map_err(|_| timed_out())??;
    pubsub.subscribe(topic).await?;
    let mut publisher = tokio::time::timeout(timeout, client.get_multiplexed_async_connection())
        .await
        .map_err(|_| timed_out())??;
    let mut messages = pubsub.on_message();
    match invalidator.upgrade() {
        Some(inv) => inv.set_up(true).await,
        None => return Ok(()),
    }
    loop {
        tokio::select! {
            message = messages.next() => {
                let Some(message) = message else {
                    return Err(closed());
                };
                let Some(inv) = invalidator.upgrade() else { return Ok(()) };
                if let Ok(text) = message.get_payload::<String>() {
                    inv.receive(&text).await;
                }
            }
            out = outbox.recv() => {
                let Some(out) = out else { return Ok(()) };
                let _: i64 = tokio::time::timeout(
                    timeout,
                    redis::cmd("PUBLISH").arg(topic).arg(&out).query_async(&mut publisher),
                )
                .await
                .map_err(|_| timed_out())??;
            }
        }
    }
}

fn timed_out() -> redis::RedisError {
    redis::RedisError::from((redis::ErrorKind::Io, "timed out"))
}

fn closed() -> redis::RedisError {
    redis::RedisError::from((redis::ErrorKind::Io, "connection closed"))
}

/// Runs the PostgreSQL channel until the invalidator is dropped.
#[cfg(feature = "postgres")]
pub(crate) fn spawn_postgres(
    invalidator: Weak<Invalidator>,
    target: crate::store::PgTarget,
    topic: String,
    mut outbox: mpsc::UnboundedReceiver<String>,
) {
    tokio::spawn(async move {
        loop {
            match postgres_session(&invalidator, &target, &topic, &mut outbox).await {
                Ok(()) => return,
                Err(e) => {
                    let Some(inv) = invalidator.upgrade() else {
                        return;
                    };
                    tracing::debug!(error = %e, "PostgreSQL invalidation channel lost");
                    inv.set_up(false).await;
                    drop(inv);
                    tokio::time::sleep(RETRY).await;
                }
            }
        }
    });
}

#[cfg(feature = "postgres")]
async fn postgres_session(
    invalidator: &Weak<Invalidator>,
    target: &crate::store::PgTarget,
    topic: &str,
    outbox: &mut mpsc::UnboundedReceiver<String>,
) -> std::result::Result<(), String> {
    let (client, mut connection) = target
        .pg()
        .connect(target.tls())
        .await
        .map_err(|e| crate::error::causes(&e))?;
    // The connection yields notifications; forward them to this task.
    let (notes_tx, mut notes) = mpsc::unbounded_channel::<String>();
    let driver = tokio::spawn(async move {
        let mut stream = futures_util::stream::poll_fn(move |cx| connection.poll_message(cx));
        while let Some(message) = stream.next().await {
            match message {
                Ok(tokio_postgres::AsyncMessage::Notification(note)) => {
                    if notes_tx.send(note.payload().to_string()).is_err() {
                        break;
                    }
                }
                Ok(_) => {}
                Err(_) => break,
            }
        }
    });
    let result = async {
        // The topic is derived from a validated identifier.
        client
            .batch_execute(&format!("LISTEN \"{topic}\""))
            .await
            .map_err(|e| e.to_string())?;
        match invalidator.upgrade() {
            Some(inv) => inv.set_up(true).await,
            None => return Ok(()),
        }
        loop {
            tokio::select! {
                note = notes.recv() => {
                    let Some(note) = note else {
                        return Err("connection closed".to_string());
                    };
                    let Some(inv) = invalidator.upgrade() else { return Ok(()) };
                    inv.receive(&note).await;
                }
                out = outbox.recv() => {
                    let Some(out) = out else { return Ok(()) };
                    client
                        .execute("SELECT pg_notify($1, $2)", &[&topic, &out])
                        .await
                        .map_err(|e| e.to_string())?;
                }
            }
        }
    }
    .await;
    driver.abort();
    result
}
