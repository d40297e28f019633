//! Write-ahead-log checkpoints on a thread of their own.
//!
//! SQLite's automatic checkpoint runs inside the commit that crosses its
//! threshold, so every few dozen audit batches one commit also copied the
//! log into the database file and synced it, and the single writer waited.
//! Here the writer's automatic checkpoint is off and this thread, with its
//! own connection, checkpoints the log every 200 ms alongside the
//! writer (a passive checkpoint takes no lock the writer needs).
//!
//! A log that is always being appended to is never fully copied at the
//! moment the writer starts, so SQLite would never start it over; once it
//! holds more than 64 MiB of frames, a restarting checkpoint waits
//! for the writer between two transactions, finishes the copy, and makes
//! the next transaction start the log from the beginning.

use std::sync::mpsc::{self, RecvTimeoutError};
use std::thread::JoinHandle;
use std::time::Duration;

use rusqlite::Connection;

use super::pool::Opener;
use super::sqlite_error;
use crate::error::{Error, Result};

/// When the log is checkpointed, and when it is started over.
#[derive(Debug, Clone, Copy)]
pub(super) struct Schedule {
    /// How often the log is checkpointed.
    pub(super) interval: Duration,
    /// Frames in the log above which the checkpoint restarts it.
    pub(super) restart_frames: i64,
}

impl Default for Schedule {
    fn default() -> Self {
        Schedule {
            interval: Duration::from_millis(200),
            // 64 MiB of 4 KiB pages.
            restart_frames: 16_384,
        }
    }
}

/// The checkpoint thread; stops when dropped.
#[derive(Debug)]
pub(super) struct Checkpointer {
    stop: Option<mpsc::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Checkpointer {
    /// Opens the thread's connection (so a failure shows at start) and
    /// starts it.
    ///
    /// # Errors
    /// [`Error::Backend`] when the connection cannot be opened.
    pub(super) fn start(opener: &Opener, schedule: Schedule) -> Result<Checkpointer> {
        let conn = opener.open()?;
        let (stop, stopped) = mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("clarity-sqlite-checkpoint".into())
            .spawn(move || run(&conn, schedule, &stopped))
            .map_err(|e| Error::internal(format!("cannot start the checkpoint thread: {e}")))?;
        Ok(Checkpointer {
            stop: Some(stop),
            thread: Some(thread),
        })
    }
}

impl Drop for Checkpointer {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn run(conn: &Connection, schedule: Schedule, stopped: &mpsc::Receiver<()>) {
    while let Err(RecvTimeoutError::Timeout) = stopped.recv_timeout(schedule.interval) {
        if let Err(e) = checkpoint(conn, schedule.restart_frames) {
            tracing::warn!(error = %e, "write-ahead-log checkpoint failed; retrying");
        }
    }
}

/// One checkpoint: passive, or restarting when the log has grown large.
fn checkpoint(conn: &Connection, restart_frames: i64) -> Result<()> {
    let frames = wal_checkpoint(conn, "PASSIVE")?;
    if frames > restart_frames {
        wal_checkpoint(conn, "RESTART")?;
    }
    Ok(())
}

/// Runs `PRAGMA wal_checkpoint(mode)`; returns the frames in the log.
fn wal_checkpoint(conn: &Connection, mode: &str) -> Result<i64> {
    conn.query_row(&format!("PRAGMA wal_checkpoint({mode})"), [], |row| {
        row.get::<_, i64>(1)
    })
    .map_err(sqlite_error)
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::config::SqliteSynchronous;
    use crate::store::sqlite::SqliteStore;

    /// The size of the database's write-ahead log file.
    fn wal_bytes(db: &Path) -> u64 {
        let mut wal = db.as_os_str().to_owned();
        wal.push("-wal");
        std::fs::metadata(wal).map(|m| m.len()).unwrap_or(0)
    }

    /// Commits `count` rows of about a page each, in one transaction.
    async fn write_pages(store: &SqliteStore, from: i64, count: i64) {
        store
            .writer
            .run(move |conn| {
                let tx = conn.transaction().map_err(sqlite_error)?;
                for i in from..from + count {
                    tx.execute(
                        "INSERT INTO scratch (id, body) VALUES (?1, zeroblob(4000))",
                        [i],
                    )
                    .map_err(sqlite_error)?;
                }
                tx.commit().map_err(sqlite_error)
            })
            .await
            .expect("write");
    }

    /// Under commits that follow each other without a pause the log is
    /// never fully copied when the writer starts, yet it is started over:
    /// it stays bounded, and nothing written is lost.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_log_is_checkpointed_beside_the_writer_and_stays_bounded() {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = dir.path().join("c.db");
        let store = SqliteStore::open_path(&db, 2, SqliteSynchronous::Normal)
            .await
            .expect("open");
        store
            .writer
            .run(|conn| {
                conn.execute_batch("CREATE TABLE scratch (id INTEGER PRIMARY KEY, body BLOB)")
                    .map_err(sqlite_error)
            })
            .await
            .expect("table");
        // A second checkpointer with a small restart threshold, polling fast.
        let _fast = Checkpointer::start(
            store.writer.opener(),
            Schedule {
                interval: Duration::from_millis(5),
                restart_frames: 200,
            },
        )
        .expect("checkpointer");

        write_pages(&store, 0, 2_000).await;

        // Commits of 20 pages back to back, for a while: the log restarts.
        let mut largest = 0;
        let rows = 20 * 1_000;
        for batch in 0..1_000 {
            write_pages(&store, 2_000 + batch * 20, 20).await;
            largest = largest.max(wal_bytes(&db));
        }
        // A restarted log is written again from its start: the file holds
        // what came between restarts (about 24 MB here), not all of the
        // 90 MB written, which is what it grows to when it never restarts.
        assert!(
            largest < 8 * 2_000 * 4_200,
            "the log grew to {largest} bytes"
        );
        let count: i64 = store
            .readers
            .run(|conn| {
                conn.query_row("SELECT count(*) FROM scratch", [], |r| r.get(0))
                    .map_err(sqlite_error)
            })
            .await
            .expect("count");
        assert_eq!(count, 2_000 + rows);
    }
}
