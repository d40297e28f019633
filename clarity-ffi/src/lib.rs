//! The C ABI over `clarity-core`.
//!
//! This first version exposes the library version, so that a C caller can
//! check which Clarity it linked. The handle-based ABI over the service layer
//! (login, patients, records, audit) is built on top of it.

use std::ffi::{CStr, c_char};

/// The version as a NUL-terminated string, fixed at compile time.
const VERSION: &CStr =
    match CStr::from_bytes_with_nul(concat!(env!("CARGO_PKG_VERSION"), "\0").as_bytes()) {
        Ok(version) => version,
        Err(_) => panic!("the crate version contains a NUL byte"),
    };

/// Returns the library version, e.g. `"0.1.0"`.
///
/// The string is static: never free it. Never NULL. Safe to call from any thread.
#[unsafe(no_mangle)]
pub extern "C" fn clarity_version() -> *const c_char {
    VERSION.as_ptr()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_matches_the_crate() {
        // SAFETY: clarity_version returns a pointer to a static NUL-terminated string.
        let version = unsafe { CStr::from_ptr(clarity_version()) };
        assert_eq!(version.to_str().expect("utf-8"), env!("CARGO_PKG_VERSION"));
    }
}
