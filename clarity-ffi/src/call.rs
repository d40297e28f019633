//! The one shape of an operation on behalf of a user: check the handle and
//! the token, build the arguments, check the out slot, authenticate, run the
//! core operation, hand back the result — inside the panic boundary.
//!
//! Arguments are built (and refused) before anything runs, so a bad
//! argument never leaves a half-done operation behind.

use std::ffi::c_char;

use clarity_core::Clarity;
use clarity_core::access::Principal;
use serde::Serialize;

use crate::error::{Failure, clarity_error};
use crate::ffi::{self, Out};
use crate::handle::clarity_client;
use crate::panic::boundary;
use crate::result::clarity_result;

/// An out-parameter for a JSON string, and its name for error messages.
pub(crate) type JsonOut = (*mut *mut c_char, &'static str);

/// Runs `op` as the holder of `token` with the arguments `args` builds, and
/// writes its result to `out` as JSON.
pub(crate) fn json_result<A, T: Serialize>(
    client: *const clarity_client,
    token: *const c_char,
    out: JsonOut,
    err_out: *mut *mut clarity_error,
    args: impl FnOnce() -> Result<A, Failure>,
    op: impl AsyncFnOnce(&Clarity, &Principal, A) -> clarity_core::Result<T>,
) -> clarity_result {
    boundary(err_out, || {
        let client = ffi::try_ref(client)?;
        let token = ffi::str_arg(token, "token")?;
        let args = args()?;
        let out = Out::new(out.0, out.1)?;
        let value = client.as_caller(token, async |core, p| op(core, p, args).await)?;
        out.write_json(&value)
    })
}

/// Runs `op` as the holder of `token`; nothing to hand back.
pub(crate) fn no_result<A>(
    client: *const clarity_client,
    token: *const c_char,
    err_out: *mut *mut clarity_error,
    args: impl FnOnce() -> Result<A, Failure>,
    op: impl AsyncFnOnce(&Clarity, &Principal, A) -> clarity_core::Result<()>,
) -> clarity_result {
    boundary(err_out, || {
        let client = ffi::try_ref(client)?;
        let token = ffi::str_arg(token, "token")?;
        let args = args()?;
        client.as_caller(token, async |core, p| op(core, p, args).await)
    })
}
