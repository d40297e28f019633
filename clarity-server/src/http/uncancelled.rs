//! A request's handler that finishes even when its client goes away.
//!
//! hyper drops a request's future when its connection closes. A handler
//! stopped there could end between a write and its audit event's commit, or
//! before its metrics and log line. Spawning every handler as its own task
//! avoids that, but costs each request a task, a wake-up and copies of its
//! future. [`Uncancelled`] runs the handler on the connection's own task
//! instead, and only when it is dropped unfinished does it hand the rest to
//! the runtime, so the rare cancelled request pays for the task, not every
//! request.

use std::future::Future;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::pin::Pin;
use std::task::{Context, Poll};

/// Polls its future in place; finishes it as a task of its own if dropped
/// before it is done. A panic in the future becomes its `Err` output.
pub(crate) struct Uncancelled<F>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    /// `None` once the future has finished or panicked.
    future: Option<Pin<Box<F>>>,
}

impl<F> Uncancelled<F>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    /// Wraps `future`; boxed once, so handing it on moves a pointer.
    pub(crate) fn new(future: F) -> Self {
        Uncancelled {
            future: Some(Box::pin(future)),
        }
    }
}

impl<F> Future for Uncancelled<F>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    type Output = std::thread::Result<F::Output>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        let Some(future) = this.future.as_mut() else {
            // Polled again after it finished: nothing more will come.
            return Poll::Pending;
        };
        match catch_unwind(AssertUnwindSafe(|| future.as_mut().poll(cx))) {
            Ok(Poll::Pending) => Poll::Pending,
            Ok(Poll::Ready(output)) => {
                this.future = None;
                Poll::Ready(Ok(output))
            }
            Err(panic) => {
                this.future = None;
                Poll::Ready(Err(panic))
            }
        }
    }
}

impl<F> Drop for Uncancelled<F>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    fn drop(&mut self) {
        if let Some(rest) = self.future.take()
            && let Ok(runtime) = tokio::runtime::Handle::try_current()
        {
            drop(runtime.spawn(rest));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// Polls `future` once.
    async fn poll_once<F: Future + Unpin>(future: &mut F) -> Poll<F::Output> {
        std::future::poll_fn(|cx| Poll::Ready(Pin::new(&mut *future).poll(cx))).await
    }

    /// S-AUD-1: an operation whose client goes away still reaches its audit
    /// event, because the rest of its handler runs on.
    #[tokio::test]
    async fn a_handler_dropped_unfinished_still_runs_to_its_end() {
        let (go, wait) = tokio::sync::oneshot::channel::<()>();
        let (finished, finish) = tokio::sync::oneshot::channel::<&str>();
        let mut handler = Uncancelled::new(async move {
            let _ = wait.await;
            let _ = finished.send("the rest ran");
        });
        assert!(poll_once(&mut handler).await.is_pending());
        drop(handler);
        go.send(()).expect("the handler is still waiting");
        let ran = tokio::time::timeout(Duration::from_secs(5), finish)
            .await
            .expect("the handler finished after its drop")
            .expect("the handler sent its result");
        assert_eq!(ran, "the rest ran");
    }

    #[tokio::test]
    async fn a_finished_handler_gives_its_output_and_is_not_run_again() {
        let runs = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counted = std::sync::Arc::clone(&runs);
        let mut handler = Uncancelled::new(async move {
            counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            7
        });
        match poll_once(&mut handler).await {
            Poll::Ready(Ok(7)) => {}
            other => panic!("expected the handler's output, got {:?}", other.is_ready()),
        }
        assert!(poll_once(&mut handler).await.is_pending());
        drop(handler);
        tokio::task::yield_now().await;
        assert_eq!(runs.load(std::sync::atomic::Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn a_panicking_handler_becomes_an_error_not_a_lost_connection_task() {
        let handler = Uncancelled::new(async {
            if std::hint::black_box(true) {
                panic!("handler failed");
            }
        });
        assert!(handler.await.is_err());
    }
}
