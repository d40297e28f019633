//! Keeps the audit trail's query indexes (by patient, by actor) up to date
//! beside the writer, in large sorted batches, so that no audit commit
//! pays for them. Queries never wait for it: they read each chain's
//! unindexed tail as well (see [`AuditStore::index_audit`]).

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use super::AuditStore;

/// Events indexed in one transaction at most.
const CHUNK: usize = 16_384;
/// The pause after a round that caught up.
const PAUSE: Duration = Duration::from_millis(250);

/// The background task that indexes the trail.
#[derive(Debug)]
pub(crate) struct AuditIndexer {
    stop: watch::Sender<bool>,
    task: tokio::sync::Mutex<Option<tokio::task::JoinHandle<()>>>,
}

impl AuditIndexer {
    /// Starts indexing `store` on the current Tokio runtime.
    pub(crate) fn start(store: Arc<dyn AuditStore>) -> AuditIndexer {
        let (stop, stopped) = watch::channel(false);
        AuditIndexer {
            stop,
            task: tokio::sync::Mutex::new(Some(tokio::spawn(run(store, stopped)))),
        }
    }

    /// Stops after the round under way.
    pub(crate) async fn shutdown(&self) {
        let _ = self.stop.send(true);
        if let Some(task) = self.task.lock().await.take() {
            let _ = task.await;
        }
    }
}

async fn run(store: Arc<dyn AuditStore>, mut stop: watch::Receiver<bool>) {
    loop {
        tokio::select! {
            _ = stop.changed() => return,
            _ = tokio::time::sleep(PAUSE) => {}
        }
        loop {
            match store.index_audit(CHUNK).await {
                Ok(n) if n == CHUNK && !*stop.borrow() => tokio::task::yield_now().await,
                Ok(_) => break,
                Err(e) => {
                    // Queries stay complete through the unindexed tails;
                    // the next round tries again.
                    tracing::warn!(error = %e, "the audit index could not be brought up to date");
                    break;
                }
            }
        }
    }
}
