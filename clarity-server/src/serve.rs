//! `clarity serve`: open the store, listen, answer, and shut down cleanly.

use std::sync::Arc;
use std::time::Duration;

use clarity_core::config::{Backend, Config, KeyProviderKind};
use clarity_core::{Clarity, Error, Result};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;

use crate::http::Router;

/// How long in-flight requests may take to finish after a shutdown signal.
const DRAIN_DEADLINE: Duration = Duration::from_secs(10);
/// How long a client may take to send its request headers: from accept for
/// the first request of a connection (TLS handshake included), from the end
/// of the previous one for the others.
const HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// Open connections at most; further ones are closed at once.
const MAX_CONNECTIONS: usize = 10_000;

/// Runs the server until SIGINT or SIGTERM, then drains in-flight requests.
///
/// # Errors
/// When the store or keys cannot be opened or the address cannot be bound.
pub async fn serve(config: Config) -> Result<()> {
    let tls = match (&config.tls_cert, &config.tls_key) {
        (Some(cert), Some(key)) => Some(crate::tls::acceptor(cert, key)?),
        _ => None,
    };
    let clarity = Clarity::open(config.clone()).await?;
    let listener = TcpListener::bind(config.listen)
        .await
        .map_err(|e| Error::config("listen", format!("cannot listen on {}: {e}", config.listen)))?;
    let local = listener
        .local_addr()
        .map_err(|e| Error::internal(format!("listener has no address: {e}")))?;
    announce(&config, &clarity);
    if let Some(code) = clarity.issue_setup_code().await? {
        println!("setup code: {}", code.expose());
        println!(
            "(no users yet: create the first admin within {} minutes with POST /v1/setup, or run `clarity user create --role admin`)",
            config.auth.setup_code_secs / 60
        );
    }
    // Before the line below: whoever sees it may send SIGTERM at once, and
    // a signal that arrives before its handler would kill the process
    // without draining.
    let shutdown = shutdown_signal();
    // Last, so that whoever waits for this line has seen the ones above.
    let scheme = if tls.is_some() { "https" } else { "http" };
    println!("Listening on {scheme}://{local}");
    tracing::info!(%local, backend = clarity.backend(), "listening");

    let clarity = Arc::new(clarity);
    let verifier = scheduled_verification(Arc::clone(&clarity), config.audit.verify_interval_secs);
    let router = Router::new(Arc::clone(&clarity), tls.is_some());
    let graceful = GracefulShutdown::new();
    let mut builder = Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_TIMEOUT);
    // HTTP/2: ping idle connections and drop dead ones; bound the streams
    // (and so the bodies) one connection can have in flight.
    builder
        .http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(Some(Duration::from_secs(30)))
        .keep_alive_timeout(Duration::from_secs(10))
        .max_concurrent_streams(64);

    let connections = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    let per_address = PerAddress::new(config.max_connections_per_address);
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let (stream, peer) = match accepted {
                    Ok(conn) => conn,
                    Err(e) => {
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let Ok(permit) = Arc::clone(&connections).try_acquire_owned() else {
                    tracing::warn!(client = %peer.ip(), "connection limit reached; closing");
                    drop(stream);
                    continue;
                };
                // S-NET-1: one address cannot hold every connection.
                let Some(slot) = per_address.take(peer.ip()) else {
                    tracing::warn!(client = %peer.ip(), "connection limit of the address reached; closing");
                    drop(stream);
                    continue;
                };
                let _ = stream.set_nodelay(true);
                let first_request = Arc::new(std::sync::atomic::AtomicBool::new(false));
                let service = router.service(peer, Arc::clone(&first_request));
                let builder = builder.clone();
                let watcher = graceful.watcher();
                let tls = tls.clone();
                tokio::spawn(async move {
                    let _permit = permit;
                    let _slot = slot;
                    // S-NET-1: a connection whose first request head has not
                    // arrived within the header timeout of accept is closed
                    // (hyper's own timeout starts only once bytes arrive).
                    let deadline = async {
                        tokio::time::sleep(HEADER_TIMEOUT).await;
                        if first_request.load(std::sync::atomic::Ordering::Relaxed) {
                            std::future::pending::<()>().await;
                        }
                    };
                    let serve = async {
                        match tls {
                        Some(acceptor) => {
                            let handshake = tokio::time::timeout(HEADER_TIMEOUT, acceptor.accept(stream)).await;
                            let Ok(Ok(stream)) = handshake else {
                                tracing::debug!(client = %peer.ip(), "TLS handshake failed");
                                return Ok(());
                            };
                            let conn = builder.serve_connection(TokioIo::new(stream), service);
                            watcher.watch(conn.into_owned()).await
                        }
                        None => {
                            let conn = builder.serve_connection(TokioIo::new(stream), service);
                            watcher.watch(conn.into_owned()).await
                        }
                        }
                    };
                    let result = tokio::select! {
                        result = serve => result,
                        () = deadline => {
                            tracing::debug!(client = %peer.ip(), "no request head within the header timeout; closing");
                            return;
                        }
                    };
                    if let Err(e) = result {
                        tracing::debug!(error = %e, "connection ended with an error");
                    }
                });
            }
            () = &mut shutdown => break,
        }
    }
    drop(listener);
    tracing::info!("shutting down: draining in-flight requests");
    if tokio::time::timeout(DRAIN_DEADLINE, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("drain deadline passed; closing remaining connections");
    }
    if let Some(verifier) = verifier {
        verifier.abort();
    }
    // Every event of every finished request is written, then a final checkpoint.
    clarity.shutdown().await;
    tracing::info!("stopped");
    Ok(())
}

/// Verifies the whole audit trail every `secs` seconds, the first time one
/// interval after start (S-AUD-7). A failure raises the `AuditTampered`
/// alert and shows in the metrics (`clarity_audit_verify_ok`); an error
/// (the database or witness unreadable) is logged and counts as a failure.
fn scheduled_verification(clarity: Arc<Clarity>, secs: u64) -> Option<tokio::task::JoinHandle<()>> {
    if secs == 0 {
        return None;
    }
    let every = Duration::from_secs(secs);
    Some(tokio::spawn(async move {
        let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            match clarity.verify_audit_scheduled().await {
                Ok(reports) if reports.iter().all(|r| r.ok) => {
                    tracing::info!(chains = reports.len(), "scheduled audit verification: ok");
                }
                Ok(reports) => {
                    let failed = reports.iter().filter(|r| !r.ok).count();
                    tracing::error!(failed, "scheduled audit verification: FAILED");
                }
                Err(e) => {
                    clarity.count_failed_verification();
                    tracing::error!(error = %e, "scheduled audit verification could not run");
                }
            }
        }
    }))
}

/// The operator-facing lines on standard output.
fn announce(config: &Config, clarity: &Clarity) {
    let backend = clarity.backend();
    match config.store.backend {
        Backend::Sqlite => println!(
            "Clarity {} on {backend} at {}",
            env!("CARGO_PKG_VERSION"),
            config.sqlite_path().display()
        ),
        Backend::Postgres => println!("Clarity {} on {backend}", env!("CARGO_PKG_VERSION")),
    }
    if config.keys.provider == KeyProviderKind::Local {
        println!(
            "Keys: local keyring {} - for development or single-node use only; back it up, without it the data cannot be read.",
            config.keyring_path().display()
        );
    }
}

/// Watches SIGTERM and SIGINT from now on (the handlers are installed by
/// this call, not when the future is first polled) and completes at the
/// first of them.
#[cfg(unix)]
fn shutdown_signal() -> impl std::future::Future<Output = ()> {
    use tokio::signal::unix::{SignalKind, signal};
    let watch = |kind: SignalKind, name: &'static str| {
        signal(kind)
            .map_err(|e| tracing::warn!(error = %e, signal = name, "cannot watch this signal"))
            .ok()
    };
    let term = watch(SignalKind::terminate(), "SIGTERM");
    let int = watch(SignalKind::interrupt(), "SIGINT");
    async move {
        let received = |stream: Option<tokio::signal::unix::Signal>| async move {
            match stream {
                Some(mut stream) => {
                    stream.recv().await;
                }
                None => std::future::pending::<()>().await,
            }
        };
        tokio::select! {
            () = received(term) => {}
            () = received(int) => {}
        }
    }
}

/// Completes at Ctrl-C.
#[cfg(not(unix))]
fn shutdown_signal() -> impl std::future::Future<Output = ()> {
    async {
        let _ = tokio::signal::ctrl_c().await;
    }
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;

    // A SIGTERM that arrives after `shutdown_signal` returns, before its
    // future is ever polled, is caught and completes the future; it must
    // not take the signal's default action (ending this process).
    #[tokio::test]
    async fn stop_signals_are_watched_from_the_call_on() {
        let stop = shutdown_signal();
        let sent = std::process::Command::new("kill")
            .args(["-TERM", &std::process::id().to_string()])
            .status()
            .expect("kill");
        assert!(sent.success());
        tokio::time::timeout(Duration::from_secs(5), stop)
            .await
            .expect("the signal completes the future");
    }
}

/// Open connections per client address, at most a limit (S-NET-1).
#[derive(Debug, Clone)]
struct PerAddress {
    limit: usize,
    open: Arc<std::sync::Mutex<std::collections::HashMap<std::net::IpAddr, usize>>>,
}

/// One connection's place in its address's count; given back on drop.
#[derive(Debug)]
struct AddressSlot {
    address: std::net::IpAddr,
    open: Arc<std::sync::Mutex<std::collections::HashMap<std::net::IpAddr, usize>>>,
}

impl PerAddress {
    fn new(limit: usize) -> Self {
        PerAddress {
            limit,
            open: Arc::default(),
        }
    }

    /// A slot for a new connection from `address`, unless it has `limit` open.
    fn take(&self, address: std::net::IpAddr) -> Option<AddressSlot> {
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        let count = open.entry(address).or_insert(0);
        if *count >= self.limit {
            return None;
        }
        *count += 1;
        Some(AddressSlot {
            address,
            open: Arc::clone(&self.open),
        })
    }
}

impl Drop for AddressSlot {
    fn drop(&mut self) {
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(count) = open.get_mut(&self.address) {
            *count -= 1;
            if *count == 0 {
                open.remove(&self.address);
            }
        }
    }
}
