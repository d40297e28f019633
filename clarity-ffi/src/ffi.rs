//! Every raw pointer that crosses the ABI is checked and converted here, and
//! nowhere else: NULL checks, UTF-8 checks, handle casts, and the strings and
//! errors handed back to C. The `unsafe` of the crate lives in this module.
//!
//! The exported functions cannot be `unsafe fn` (C has no such notion); the
//! contract they rely on is the one the header documents: a non-NULL
//! pointer points to what its type says (a live handle from this library, a
//! NUL-terminated string, a writable out slot) for the duration of the call.

use std::ffi::{CStr, CString, c_char};

use zeroize::Zeroize;

use crate::error::{Failure, clarity_error};
use crate::result::clarity_result;

/// A type handed to C as an owned, boxed handle (`Box::into_raw`) and taken
/// back exactly once by its `_free`/`_close` function.
pub(crate) trait Boxed: Sized {}

impl Boxed for clarity_error {}

/// Moves `value` to the heap and hands ownership to C.
pub(crate) fn into_raw<T: Boxed>(value: T) -> *mut T {
    Box::into_raw(Box::new(value))
}

/// Takes back ownership of a handle made by [`into_raw`]; `None` for NULL.
pub(crate) fn take_box<T: Boxed>(ptr: *mut T) -> Option<Box<T>> {
    if ptr.is_null() {
        return None;
    }
    // SAFETY: non-NULL pointers of `Boxed` types come from `into_raw` (the
    // header says so), and the caller hands each back once.
    Some(unsafe { Box::from_raw(ptr) })
}

/// Borrows the object behind a handle for the duration of the call.
pub(crate) fn try_ref<'a, T>(ptr: *const T) -> Result<&'a T, Failure> {
    // SAFETY: a non-NULL handle points to a live object from this library
    // (the documented contract); `as_ref` checks NULL.
    unsafe { ptr.as_ref() }.ok_or_else(|| Failure::null("handle"))
}

/// A required string argument: non-NULL, NUL-terminated UTF-8.
pub(crate) fn str_arg<'a>(ptr: *const c_char, name: &str) -> Result<&'a str, Failure> {
    opt_str_arg(ptr, name)?.ok_or_else(|| Failure::null(name))
}

/// An optional string argument: NULL is `None`.
pub(crate) fn opt_str_arg<'a>(ptr: *const c_char, name: &str) -> Result<Option<&'a str>, Failure> {
    if ptr.is_null() {
        return Ok(None);
    }
    // SAFETY: non-NULL string arguments are NUL-terminated and live for the
    // call (the documented contract).
    let text = unsafe { CStr::from_ptr(ptr) };
    text.to_str()
        .map(Some)
        .map_err(|_| Failure::invalid(format!("{name} is not valid UTF-8")))
}

/// A required out-parameter, checked for NULL before any work is done, and
/// written only when the call succeeds.
#[derive(Debug)]
pub(crate) struct Out<T> {
    ptr: *mut T,
}

impl<T> Out<T> {
    /// Checks the out slot `ptr`.
    pub(crate) fn new(ptr: *mut T, name: &str) -> Result<Self, Failure> {
        if ptr.is_null() {
            return Err(Failure::null(name));
        }
        Ok(Out { ptr })
    }

    /// Writes `value` to the slot.
    pub(crate) fn write(self, value: T) {
        // SAFETY: `ptr` is non-NULL (checked in `new`) and points to a
        // writable slot of `T` (the documented contract); the old content is
        // not read or dropped (it is the caller's uninitialised slot).
        unsafe { self.ptr.write(value) }
    }
}

impl Out<*mut c_char> {
    /// Hands `text` to C as a string the caller frees with `clarity_string_free`.
    pub(crate) fn write_string(self, text: String) -> Result<(), Failure> {
        let text = zeroize::Zeroizing::new(text);
        // Copy into a buffer of the exact size, so no reallocation leaves an
        // unzeroized copy of PHI or tokens behind; the original is zeroized.
        let mut bytes = Vec::with_capacity(text.len() + 1);
        bytes.extend_from_slice(text.as_bytes());
        bytes.push(0);
        let c = CString::from_vec_with_nul(bytes).map_err(|e| {
            let mut bytes = e.into_bytes();
            bytes.zeroize();
            Failure::new(
                clarity_result::Internal,
                "internal error: a result contains a NUL byte",
            )
        })?;
        self.write(c.into_raw());
        Ok(())
    }

    /// Serialises `value` as JSON and hands it to C.
    pub(crate) fn write_json<T: serde::Serialize>(self, value: &T) -> Result<(), Failure> {
        let json = serde_json::to_string(value).map_err(|_| {
            Failure::new(
                clarity_result::Internal,
                "internal error: a result could not be encoded as JSON",
            )
        })?;
        self.write_string(json)
    }
}

/// Frees a string made by [`Out::write_string`], zeroizing it first (results
/// hold PHI and tokens).
pub(crate) fn free_string(ptr: *mut c_char) {
    if ptr.is_null() {
        return;
    }
    // SAFETY: non-NULL strings passed to `clarity_string_free` come from
    // `CString::into_raw` in `write_string` and are freed once (the
    // documented contract).
    let mut bytes = unsafe { CString::from_raw(ptr) }.into_bytes_with_nul();
    bytes.zeroize();
}

/// Writes a `clarity_error` for `failure` to `err_out` unless it is NULL.
pub(crate) fn write_error(err_out: *mut *mut clarity_error, failure: &Failure) {
    if let Ok(out) = Out::new(err_out, "err_out") {
        out.write(into_raw(clarity_error::from_failure(failure)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn null_and_invalid_strings_are_refused() {
        assert_eq!(
            str_arg(std::ptr::null(), "token").unwrap_err().code,
            clarity_result::NullParameter
        );
        assert_eq!(opt_str_arg(std::ptr::null(), "cursor"), Ok(None));
        let bad = [0xffu8, 0xfe, 0];
        let err = str_arg(bad.as_ptr().cast(), "token").unwrap_err();
        assert_eq!(err.code, clarity_result::InvalidInput);
        assert_eq!(err.message, "token is not valid UTF-8");
        assert_eq!(str_arg(c"ok".as_ptr(), "x"), Ok("ok"));
    }

    #[test]
    fn strings_round_trip_and_free() {
        let mut slot: *mut c_char = std::ptr::null_mut();
        Out::new(&mut slot, "out")
            .expect("slot")
            .write_json(&serde_json::json!({"a": 1}))
            .expect("write");
        // SAFETY: `slot` was just written with a NUL-terminated string.
        let text = unsafe { CStr::from_ptr(slot) }.to_str().expect("utf-8");
        assert_eq!(text, r#"{"a":1}"#);
        free_string(slot);
        free_string(std::ptr::null_mut());
        assert!(Out::<*mut c_char>::new(std::ptr::null_mut(), "out").is_err());
    }
}
