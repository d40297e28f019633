//! The panic boundary: no panic ever unwinds into C.
//!
//! Every exported function runs its body in [`boundary`] (fallible
//! functions: a caught panic becomes `CLARITY_RESULT_PANIC` with a message)
//! or [`never_unwind`] (accessors and `_free` functions: a caught panic
//! becomes a neutral value, NULL or nothing). Unwinding across `extern "C"`
//! would abort the caller's process.

use std::panic::{AssertUnwindSafe, catch_unwind};

use crate::error::{Failure, clarity_error};
use crate::ffi;
use crate::result::clarity_result;

/// Runs a fallible body: `Ok` → `CLARITY_RESULT_OK`; a failure or a panic →
/// its code, with a `clarity_error` written to `err_out` when it is not NULL.
pub(crate) fn boundary(
    err_out: *mut *mut clarity_error,
    body: impl FnOnce() -> Result<(), Failure>,
) -> clarity_result {
    // The closure only touches its own arguments and the handle, whose state
    // stays consistent across a panic (the core holds no locks across calls
    // that a panic could poison into misbehaviour), so asserting unwind
    // safety is sound here.
    let failure = match catch_unwind(AssertUnwindSafe(body)) {
        Ok(Ok(())) => return clarity_result::Ok,
        Ok(Err(failure)) => failure,
        Err(_) => Failure::new(
            clarity_result::Panic,
            "internal error: a panic was caught at the C ABI boundary",
        ),
    };
    ffi::write_error(err_out, &failure);
    failure.code
}

/// Runs an infallible body, answering `fallback` if it panics.
pub(crate) fn never_unwind<T>(fallback: T, body: impl FnOnce() -> T) -> T {
    catch_unwind(AssertUnwindSafe(body)).unwrap_or(fallback)
}
