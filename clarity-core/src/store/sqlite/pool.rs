//! A small pool of rusqlite connections whose work runs on Tokio's blocking
//! pool, so SQLite never stalls the async runtime.
//!
//! Why not deadpool-sqlite: it checks every connection with a query on each
//! checkout, which doubles the cost of a point read. Here connections are
//! configured once, when opened, and handed out as they are.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use rusqlite::{Connection, OpenFlags};
use tokio::sync::{Semaphore, SemaphorePermit};

use super::sqlite_error;
use crate::error::{Error, Result};

/// How a connection is opened.
#[derive(Debug)]
pub(super) struct Opener {
    pub(super) path: PathBuf,
    pub(super) read_only: bool,
    pub(super) pragmas: String,
    /// The audit index database to attach, if any (see
    /// [`audit_index`](super::audit_index)).
    pub(super) attach: Option<PathBuf>,
}

impl Opener {
    fn open(&self) -> Result<Connection> {
        let flags = if self.read_only {
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX
        } else {
            OpenFlags::SQLITE_OPEN_READ_WRITE
                | OpenFlags::SQLITE_OPEN_CREATE
                | OpenFlags::SQLITE_OPEN_NO_MUTEX
        };
        let conn = Connection::open_with_flags(&self.path, flags).map_err(sqlite_error)?;
        conn.execute_batch(&self.pragmas).map_err(sqlite_error)?;
        if let Some(index) = &self.attach {
            super::audit_index::attach(&conn, index, !self.read_only)?;
        }
        Ok(conn)
    }
}

/// At most `size` connections, opened lazily unless [`Pool::open_all`]
/// opened them first.
#[derive(Debug)]
pub(super) struct Pool {
    size: usize,
    idle: Mutex<Vec<Connection>>,
    permits: Semaphore,
    opener: Arc<Opener>,
}

impl Pool {
    pub(super) fn new(opener: Opener, size: usize) -> Self {
        Pool {
            size,
            idle: Mutex::new(Vec::with_capacity(size)),
            permits: Semaphore::new(size),
            opener: Arc::new(opener),
        }
    }

    /// Opens every connection the pool may hold, so an unopenable database
    /// fails at start rather than under load, and the process holds the same
    /// files from then on.
    pub(super) async fn open_all(&self) -> Result<()> {
        let opener = Arc::clone(&self.opener);
        let missing = self.size - self.idle.lock().unwrap_or_else(|p| p.into_inner()).len();
        let opened = tokio::task::spawn_blocking(move || {
            (0..missing)
                .map(|_| opener.open())
                .collect::<Result<Vec<_>>>()
        })
        .await
        .map_err(|_| Error::internal("sqlite task failed"))??;
        self.idle
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .extend(opened);
        Ok(())
    }

    /// Connections in use and the pool's size.
    pub(super) fn usage(&self) -> (usize, usize) {
        (self.size - self.permits.available_permits(), self.size)
    }

    /// Waits for a permit; with it, an idle connection if there is one.
    async fn checkout(&self) -> Result<(SemaphorePermit<'_>, Option<Connection>)> {
        let permit = self
            .permits
            .acquire()
            .await
            .map_err(|_| Error::internal("sqlite pool closed"))?;
        let idle = self.idle.lock().unwrap_or_else(|p| p.into_inner()).pop();
        Ok((permit, idle))
    }

    /// Returns a connection to the idle list.
    fn checkin(&self, conn: Connection) {
        self.idle
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(conn);
    }

    /// Runs `work`, a point read by primary key that takes microseconds, on
    /// the calling thread: crossing to the blocking pool and back would cost
    /// more than the read. Only for such reads; anything that may scan or
    /// wait goes through [`Pool::run`]. A panic in `work` becomes an error
    /// and its connection is dropped.
    pub(super) async fn run_point<T, F>(&self, work: F) -> Result<T>
    where
        F: FnOnce(&mut Connection) -> Result<T>,
    {
        let (_permit, idle) = self.checkout().await?;
        let mut conn = match idle {
            Some(conn) => conn,
            None => self.opener.open()?,
        };
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| work(&mut conn)))
            .map_err(|_| Error::internal("sqlite read failed"))?;
        self.checkin(conn);
        result
    }

    /// Runs `work` with a connection on the blocking pool.
    pub(super) async fn run<T, F>(&self, work: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<T> + Send + 'static,
    {
        let (_permit, idle) = self.checkout().await?;
        let opener = Arc::clone(&self.opener);
        let (conn, result) = tokio::task::spawn_blocking(move || {
            let mut conn = match idle {
                Some(conn) => conn,
                None => match opener.open() {
                    Ok(conn) => conn,
                    Err(e) => return (None, Err(e)),
                },
            };
            let result = work(&mut conn);
            (Some(conn), result)
        })
        .await
        .map_err(|_| Error::internal("sqlite task failed"))?;
        if let Some(conn) = conn {
            self.checkin(conn);
        }
        result
    }
}
