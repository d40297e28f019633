//! `clarity_error`: the optional message of a failed call, and [`Failure`],
//! the Rust side of it.
//!
//! Messages are the core's error text, which never carries PHI, keys,
//! tokens or SQL (STYLE.md §3); input errors name fields and positions,
//! never values.

use std::ffi::CString;

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
    pub(crate) code: clarity_result,
    pub(crate) message: CString,
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
