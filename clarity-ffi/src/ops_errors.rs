//! The exported accessors of errors and result codes: what a C caller reads
//! from a `clarity_error` and the stable name of a `clarity_result`.

use std::ffi::c_char;

use crate::error::clarity_error;
use crate::ffi;
use crate::panic::never_unwind;
use crate::result::{self, clarity_result};

/// The message of `err`: UTF-8, NUL-terminated, never PHI or secrets.
///
/// Borrowed from `err`: valid until `clarity_error_free(err)`; do not free it
/// separately. Returns NULL when `err` is NULL. Thread-safe.
#[unsafe(no_mangle)]
pub extern "C" fn clarity_error_message(err: *const clarity_error) -> *const c_char {
    never_unwind(std::ptr::null(), || match ffi::try_ref(err) {
        Ok(err) => err.message.as_ptr(),
        Err(_) => std::ptr::null(),
    })
}

/// The result code `err` was reported with (`CLARITY_RESULT_NULL_PARAMETER`
/// when `err` is NULL). Thread-safe.
#[unsafe(no_mangle)]
pub extern "C" fn clarity_error_code(err: *const clarity_error) -> clarity_result {
    never_unwind(clarity_result::Panic, || match ffi::try_ref(err) {
        Ok(err) => err.code,
        Err(_) => clarity_result::NullParameter,
    })
}

/// Frees an error returned through `err_out`. NULL is allowed and does
/// nothing. Freeing the same error twice is undefined behaviour.
#[unsafe(no_mangle)]
pub extern "C" fn clarity_error_free(err: *mut clarity_error) {
    never_unwind((), || drop(ffi::take_box(err)));
}

/// The stable name of a result code, e.g. `"not_found"`; `"unknown"` for a
/// value this library does not define.
///
/// The string is static: never free it. Never NULL. Thread-safe.
#[unsafe(no_mangle)]
pub extern "C" fn clarity_result_name(result: u32) -> *const c_char {
    never_unwind(c"unknown".as_ptr(), || {
        result::from_code(result).name().as_ptr()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::panic::boundary;

    #[test]
    fn a_panic_becomes_a_result_code_and_a_message() {
        let mut err: *mut clarity_error = std::ptr::null_mut();
        let result = boundary(&mut err, || panic!("boom"));
        assert_eq!(result, clarity_result::Panic);
        assert!(!err.is_null());
        assert_eq!(clarity_error_code(err), clarity_result::Panic);
        clarity_error_free(err);
        // Without an error out-parameter, only the code comes back.
        assert_eq!(
            boundary(std::ptr::null_mut(), || panic!("boom")),
            clarity_result::Panic
        );
    }
}
