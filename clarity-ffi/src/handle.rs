//! `clarity_client`: the handle that owns a Clarity instance and the Tokio
//! runtime its operations run on.
//!
//! Callers authenticate per call: every operation on behalf of a user takes
//! that user's access token and resolves it with `Clarity::authenticate`
//! (verified tokens are cached, and the session is checked on every call, so
//! a logout or a role change takes effect at once). There is no principal
//! object to keep in sync, and a handle serves any number of users from any
//! number of threads.

use std::ffi::c_char;
use std::future::Future;

use clarity_core::access::Principal;
use clarity_core::model::RequestContext;
use clarity_core::{Clarity, Config};

use crate::error::{Failure, clarity_error};
use crate::ffi::{self, Out};
use crate::panic::{boundary, never_unwind};
use crate::result::clarity_result;

/// How long `clarity_client_close` waits for blocking work after the audit
/// trail is flushed.
const SHUTDOWN_GRACE: std::time::Duration = std::time::Duration::from_secs(10);

/// The purpose of use recorded for calls through the ABI, as the HTTP API
/// records for requests without an `X-Purpose-Of-Use` header.
const PURPOSE: &str = "TREAT";

/// An open Clarity instance: the store, the keys, the audit writer and a
/// Tokio runtime, opened by `clarity_client_open` and closed by
/// `clarity_client_close`.
///
/// Thread-safe: any number of threads may call operations on one handle at
/// once. It must not be closed while calls on it are running.
#[allow(non_camel_case_types)]
pub struct clarity_client {
    runtime: tokio::runtime::Runtime,
    core: Clarity,
}

impl std::fmt::Debug for clarity_client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("clarity_client")
            .field("core", &self.core)
            .finish_non_exhaustive()
    }
}

impl ffi::Boxed for clarity_client {}

impl clarity_client {
    /// Runs `work` to completion on the handle's runtime, blocking the
    /// calling thread.
    ///
    /// The future is boxed: its state lives on the heap, not on the caller's
    /// stack, which may be small (koffi runs async calls on 128 KiB stacks).
    pub(crate) fn block_on<F: Future>(&self, work: F) -> F::Output {
        self.runtime.block_on(Box::pin(work))
    }

    /// The Clarity instance.
    pub(crate) fn core(&self) -> &Clarity {
        &self.core
    }

    /// Authenticates `token`, then runs `op` as that principal.
    pub(crate) fn as_caller<T>(
        &self,
        token: &str,
        op: impl AsyncFnOnce(&Clarity, &Principal) -> clarity_core::Result<T>,
    ) -> Result<T, Failure> {
        self.block_on(async {
            let context = RequestContext {
                purpose: Some(PURPOSE.into()),
                ..RequestContext::default()
            };
            let principal = self.core.authenticate_with(token, context).await?;
            op(&self.core, &principal).await.map_err(Failure::from)
        })
    }
}

/// The configuration in `text`: a JSON object when it starts with `{`,
/// TOML otherwise (an empty text is the default configuration: SQLite and a
/// local keyring under `./clarity-data`). Environment variables are not read.
fn parse_config(text: &str) -> Result<Config, Failure> {
    if text.trim_start().starts_with('{') {
        let config: Config = clarity_core::model::parse_json(text)
            .map_err(|e| Failure::new(clarity_result::Config, format!("configuration {e}")))?;
        config.validate()?;
        Ok(config)
    } else {
        Ok(Config::from_toml(text)?)
    }
}

fn runtime() -> Result<tokio::runtime::Runtime, Failure> {
    let workers = std::thread::available_parallelism()
        .map(|n| n.get().clamp(2, 4))
        .unwrap_or(2);
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers)
        .thread_name("clarity-ffi")
        .enable_all()
        .build()
        .map_err(|_| Failure::new(clarity_result::Internal, "could not start the runtime"))
}

/// Opens Clarity with the configuration `config` (TOML text, or a JSON
/// object; `""` for the defaults) and writes the new handle to `*client_out`.
///
/// The same settings as the server's configuration file (see
/// docs/configuration.md), without environment overrides. On a store
/// without a keyring a new local keyring is created, as the server does.
///
/// Ownership: the handle belongs to the caller; close it with
/// `clarity_client_close`. `config` and `client_out` must not be NULL;
/// `err_out` may be NULL. `*client_out` is written only on success.
/// Thread-safe.
#[unsafe(no_mangle)]
pub extern "C" fn clarity_client_open(
    config: *const c_char,
    client_out: *mut *mut clarity_client,
    err_out: *mut *mut clarity_error,
) -> clarity_result {
    boundary(err_out, || {
        let config = parse_config(ffi::str_arg(config, "config")?)?;
        let out = Out::new(client_out, "client_out")?;
        let runtime = runtime()?;
        let core = runtime.block_on(Box::pin(Clarity::open(config)))?;
        out.write(ffi::into_raw(clarity_client { runtime, core }));
        Ok(())
    })
}

/// Readiness: the database answers and the key provider serves keys.
///
/// `client` must not be NULL; `err_out` may be NULL. Thread-safe.
#[unsafe(no_mangle)]
pub extern "C" fn clarity_client_check(
    client: *const clarity_client,
    err_out: *mut *mut clarity_error,
) -> clarity_result {
    boundary(err_out, || {
        let client = ffi::try_ref(client)?;
        Ok(client.block_on(client.core.check())?)
    })
}

/// Closes a handle: writes queued audit events and a final checkpoint,
/// closes the store, stops the runtime's threads and frees the handle.
///
/// NULL is allowed and does nothing. No call on `client` may be running or
/// made afterwards; closing twice is undefined behaviour.
#[unsafe(no_mangle)]
pub extern "C" fn clarity_client_close(client: *mut clarity_client) {
    never_unwind((), || {
        if let Some(client) = ffi::take_box(client) {
            let clarity_client { runtime, core } = *client;
            runtime.block_on(Box::pin(core.shutdown()));
            {
                // Pools and caches may hand work to the runtime as they drop.
                let _entered = runtime.enter();
                drop(core);
            }
            runtime.shutdown_timeout(SHUTDOWN_GRACE);
        }
    });
}

/// Frees a string returned by this library (JSON results, tokens, setup
/// codes), overwriting it with zeros first: results hold PHI and secrets.
///
/// NULL is allowed and does nothing. Freeing a string twice, or one that
/// this library did not return, is undefined behaviour. Thread-safe.
#[unsafe(no_mangle)]
pub extern "C" fn clarity_string_free(string: *mut c_char) {
    never_unwind((), || ffi::free_string(string));
}
