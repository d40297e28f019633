//! `clarity_error`: the optional message of a failed call, and [`Failure`],
//! the Rust side of it.
//!
//! Messages are the core's error text, which never carries PHI, keys,
//! tokens or SQL (STYLE.md §3); input errors name fields and positions,
//! never values.

use std::ffi::{CString, c_char};

use crate::result::clarity_result;

/// Why a call failed: a result code and a message for people.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Failure {
    pub(crate) code: clarity_result,
    pub(crate) message: String,
}

impl Failure {
    /// A failure with `code` and `message`.
    pub(crate) fn new(code: clarity_result, message: impl Into<String>) -> Self {
        Failure {
            code,
            message: message.into(),
        }
    }

    /// A required pointer argument was NULL.
    pub(crate) fn null(name: &str) -> Self {
        Failure::new(
            clarity_result::NullParameter,
            format!("{name} must not be NULL"),
        )
    }

    /// Bad input (shorthand).
    pub(crate) fn invalid(message: impl Into<String>) -> Self {
        Failure::new(clarity_result::InvalidInput, message)
    }
}

impl From<clarity_core::Error> for Failure {
    fn from(err: clarity_core::Error) -> Self {
        Failure::new(err.kind().into(), err.to_string())
    }
}

/// The message of a failed call, handed out through the optional trailing
/// `clarity_error **err_out` parameter of every fallible function.
///
/// Owned by the caller: free it with `clarity_error_free`. Immutable, so it
/// may be read from any thread.
#[allow(non_camel_case_types)]
#[derive(Debug)]
pub struct clarity_error {
    code: clarity_result,
    message: CString,
}

impl clarity_error {
    /// The C form of `failure` (NUL bytes, which no core message holds, are dropped).
    pub(crate) fn from_failure(failure: &Failure) -> Self {
        let bytes: Vec<u8> = failure.message.bytes().filter(|b| *b != 0).collect();
        clarity_error {
            code: failure.code,
            message: CString::new(bytes).unwrap_or_default(),
        }
    }
}

impl crate::ffi::Boxed for clarity_error {}

/// The message of `err`: UTF-8, NUL-terminated, never PHI or secrets.
///
/// Borrowed from `err`: valid until `clarity_error_free(err)`; do not free it
/// separately. Returns NULL when `err` is NULL. Thread-safe.
#[unsafe(no_mangle)]
pub extern "C" fn clarity_error_message(err: *const clarity_error) -> *const c_char {
    crate::panic::never_unwind(std::ptr::null(), || match crate::ffi::try_ref(err) {
        Ok(err) => err.message.as_ptr(),
        Err(_) => std::ptr::null(),
    })
}

/// The result code `err` was reported with (`CLARITY_RESULT_NULL_PARAMETER`
/// when `err` is NULL). Thread-safe.
#[unsafe(no_mangle)]
pub extern "C" fn clarity_error_code(err: *const clarity_error) -> clarity_result {
    crate::panic::never_unwind(clarity_result::Panic, || match crate::ffi::try_ref(err) {
        Ok(err) => err.code,
        Err(_) => clarity_result::NullParameter,
    })
}

/// Frees an error returned through `err_out`. NULL is allowed and does
/// nothing. Freeing the same error twice is undefined behaviour.
#[unsafe(no_mangle)]
pub extern "C" fn clarity_error_free(err: *mut clarity_error) {
    crate::panic::never_unwind((), || drop(crate::ffi::take_box(err)));
}
