//! Key status and rotation (admins).
//!
//! Common contract: `client` and every named input and output must not be
//! NULL; `err_out` may be NULL. Outputs are written only on success and
//! freed with `clarity_string_free`. Every function is thread-safe.

use std::ffi::c_char;

use crate::call::json_result;
use crate::error::clarity_error;
use crate::handle::clarity_client;
use crate::result::clarity_result;

/// Writes the KEK versions and how many data keys each wraps
/// (`{"provider","current_kek_version","kek_versions","usage"}`) to `*status_out`.
#[unsafe(no_mangle)]
pub extern "C" fn clarity_keys_status(
    client: *const clarity_client,
    token: *const c_char,
    status_out: *mut *mut c_char,
    err_out: *mut *mut clarity_error,
) -> clarity_result {
    json_result(
        client,
        token,
        (status_out, "status_out"),
        err_out,
        || Ok(()),
        async |core, p, ()| core.key_status(p).await,
    )
}

/// Rotates the key-encryption key: a new version, every data key re-wrapped
/// (resumable: an interrupted rotation is finished instead). Writes
/// `{"kek_version","new_version","rewrapped","failed"}` to `*report_out`.
#[unsafe(no_mangle)]
pub extern "C" fn clarity_keys_rotate(
    client: *const clarity_client,
    token: *const c_char,
    report_out: *mut *mut c_char,
    err_out: *mut *mut clarity_error,
) -> clarity_result {
    json_result(
        client,
        token,
        (report_out, "report_out"),
        err_out,
        || Ok(()),
        async |core, p, ()| core.rotate_keys(p, &|_| {}).await,
    )
}
