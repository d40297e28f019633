//! The transit provider's session with OpenBao / Vault: the current token
//! and its lease ([`Session`]), and [`Access`], which holds it for the
//! client and its keeper (see `auth`) and counts logins, renewals and
//! failures for `keys status` and metrics.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock, RwLock};
use std::time::{Duration, Instant};

use reqwest::header::HeaderValue;

use crate::crypto::AccessStatus;
use crate::error::Error;

/// A token and its lease.
pub(super) struct Session {
    /// The token as a header value marked sensitive.
    pub(super) token: HeaderValue,
    /// How long the token lives from `obtained`; `None` when it never
    /// expires (a root token).
    pub(super) lease: Option<Duration>,
    pub(super) renewable: bool,
    pub(super) obtained: Instant,
    /// Which login or renewal made this session, to tell sessions apart.
    generation: u64,
}

impl Session {
    /// Which login or renewal made this session.
    pub(super) fn generation(&self) -> u64 {
        self.generation
    }

    pub(super) fn expires(&self) -> Option<Instant> {
        self.lease.map(|lease| self.obtained + lease)
    }
}

/// The session of one client, shared by its clones and its keeper.
pub(super) struct Access {
    pub(super) method: &'static str,
    session: RwLock<Option<Arc<Session>>>,
    /// Held while logging in, so concurrent refusals log in once.
    pub(super) login_lock: tokio::sync::Mutex<()>,
    generations: AtomicU64,
    pub(super) renewals: AtomicU64,
    pub(super) logins: AtomicU64,
    failures: AtomicU64,
    healthy: AtomicBool,
    on_failure: OnceLock<Arc<dyn Fn() + Send + Sync>>,
}

impl Access {
    pub(super) fn new(method: &'static str) -> Access {
        Access {
            method,
            session: RwLock::new(None),
            login_lock: tokio::sync::Mutex::new(()),
            generations: AtomicU64::new(0),
            renewals: AtomicU64::new(0),
            logins: AtomicU64::new(0),
            failures: AtomicU64::new(0),
            healthy: AtomicBool::new(true),
            on_failure: OnceLock::new(),
        }
    }

    /// The current session, if logged in.
    pub(super) fn session(&self) -> Option<Arc<Session>> {
        self.session
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    pub(super) fn replace(&self, token: HeaderValue, lease: Option<Duration>, renewable: bool) {
        let session = Session {
            token,
            lease,
            renewable,
            obtained: Instant::now(),
            generation: self.generations.fetch_add(1, Ordering::Relaxed) + 1,
        };
        *self.session.write().unwrap_or_else(|p| p.into_inner()) = Some(Arc::new(session));
        self.healthy.store(true, Ordering::Relaxed);
    }

    /// Calls `hook` when renewals or logins start failing. Set once.
    pub(super) fn on_failure(&self, hook: Arc<dyn Fn() + Send + Sync>) {
        let _ = self.on_failure.set(hook);
    }

    /// Counts a failed renewal or login; the first of a run of failures
    /// calls the failure hook (one alert per outage, not one per retry).
    pub(super) fn failed(&self, e: &Error) {
        self.failures.fetch_add(1, Ordering::Relaxed);
        let was_healthy = self.healthy.swap(false, Ordering::Relaxed);
        tracing::error!(method = self.method, error = %e, "the transit token could not be renewed or replaced");
        if was_healthy && let Some(hook) = self.on_failure.get() {
            hook();
        }
    }

    pub(super) fn status(&self) -> AccessStatus {
        let expires_in_secs = self
            .session()
            .and_then(|s| s.expires())
            .map(|at| at.saturating_duration_since(Instant::now()).as_secs());
        AccessStatus {
            method: self.method,
            expires_in_secs,
            renewals: self.renewals.load(Ordering::Relaxed),
            logins: self.logins.load(Ordering::Relaxed),
            failures: self.failures.load(Ordering::Relaxed),
            healthy: self.healthy.load(Ordering::Relaxed),
        }
    }
}
