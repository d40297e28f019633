//! Users: creation (by an admin, or by the operator that holds the handle),
//! reading, listing and changes.
//!
//! Common contract: `client` and every named input and output must not be
//! NULL unless said otherwise; `err_out` may always be NULL. Outputs are
//! written only on success. JSON outputs are freed with
//! `clarity_string_free`. Every function is thread-safe.

use std::ffi::c_char;

use clarity_core::service::{NewUser, UserUpdate};

use crate::args;
use crate::call::json_result;
use crate::error::clarity_error;
use crate::ffi::{self, Out};
use crate::handle::clarity_client;
use crate::panic::boundary;
use crate::result::clarity_result;

/// Creates a user (admins) from `user_json`
/// (`{"email","password","roles":[..],"display_name"?,"patient_id"?}`) and
/// writes it to `*user_out`.
///
/// # Errors
/// `CLARITY_RESULT_PERMISSION_DENIED`; `CLARITY_RESULT_INVALID_INPUT`;
/// `CLARITY_RESULT_ALREADY_EXISTS` for a taken email.
#[unsafe(no_mangle)]
pub extern "C" fn clarity_user_create(
    client: *const clarity_client,
    token: *const c_char,
    user_json: *const c_char,
    user_out: *mut *mut c_char,
    err_out: *mut *mut clarity_error,
) -> clarity_result {
    json_result(
        client,
        token,
        (user_out, "user_out"),
        err_out,
        || args::json::<NewUser>(user_json, "user_json"),
        async |core, p, user| core.create_user(p, user).await,
    )
}

/// Creates a user without a caller, as the local operator (the
/// `clarity user create` command): whoever holds the handle holds the data
/// directory and the keys already. Audited as an operator action. Same JSON
/// as `clarity_user_create`.
#[unsafe(no_mangle)]
pub extern "C" fn clarity_user_create_as_operator(
    client: *const clarity_client,
    user_json: *const c_char,
    user_out: *mut *mut c_char,
    err_out: *mut *mut clarity_error,
) -> clarity_result {
    boundary(err_out, || {
        let client = ffi::try_ref(client)?;
        let user: NewUser = args::json(user_json, "user_json")?;
        let out = Out::new(user_out, "user_out")?;
        out.write_json(&client.block_on(client.core().create_user_as_operator(user))?)
    })
}

/// Reads a user (admins read anyone, others only themselves) into `*user_out`.
///
/// # Errors
/// `CLARITY_RESULT_NOT_FOUND`.
#[unsafe(no_mangle)]
pub extern "C" fn clarity_user_get(
    client: *const clarity_client,
    token: *const c_char,
    user_id: *const c_char,
    user_out: *mut *mut c_char,
    err_out: *mut *mut clarity_error,
) -> clarity_result {
    json_result(
        client,
        token,
        (user_out, "user_out"),
        err_out,
        || args::uuid(user_id, "user_id"),
        async |core, p, id| core.get_user(p, id).await,
    )
}

/// One page of users (admins) as `{"items":[..],"next_cursor":..}`.
/// `limit` 0 is the default page size; `cursor` may be NULL (first page).
#[unsafe(no_mangle)]
pub extern "C" fn clarity_user_list(
    client: *const clarity_client,
    token: *const c_char,
    limit: u32,
    cursor: *const c_char,
    page_out: *mut *mut c_char,
    err_out: *mut *mut clarity_error,
) -> clarity_result {
    json_result(
        client,
        token,
        (page_out, "page_out"),
        err_out,
        || args::page(limit, cursor),
        async |core, p, page| core.list_users(p, &page).await,
    )
}

/// Resets a user's password (admins, not their own): the old password stops
/// working, every session of the user ends, and `*reset_out` receives
/// `{"user_id","reset_code","expires_at"}`: a one-time code, valid for 24
/// hours, with which the user sets a new password
/// (`clarity_password_reset_complete`). The code never logs in.
#[unsafe(no_mangle)]
pub extern "C" fn clarity_password_reset(
    client: *const clarity_client,
    token: *const c_char,
    user_id: *const c_char,
    reset_out: *mut *mut c_char,
    err_out: *mut *mut clarity_error,
) -> clarity_result {
    json_result(
        client,
        token,
        (reset_out, "reset_out"),
        err_out,
        || args::uuid(user_id, "user_id"),
        async |core, p, id| core.reset_password(p, id).await,
    )
}

/// Removes a user's second factor (admins, not their own), for a lost
/// authenticator: every session of the user ends. Writes the user to
/// `*user_out`.
#[unsafe(no_mangle)]
pub extern "C" fn clarity_mfa_reset(
    client: *const clarity_client,
    token: *const c_char,
    user_id: *const c_char,
    user_out: *mut *mut c_char,
    err_out: *mut *mut clarity_error,
) -> clarity_result {
    json_result(
        client,
        token,
        (user_out, "user_out"),
        err_out,
        || args::uuid(user_id, "user_id"),
        async |core, p, id| core.reset_mfa(p, id).await,
    )
}

/// Changes a user (admins) with `update_json`
/// (`{"roles"?,"disabled"?,"display_name"?,"patient_id"?}`); changing roles
/// or disabling ends the user's sessions at once. Writes the user to `*user_out`.
#[unsafe(no_mangle)]
pub extern "C" fn clarity_user_update(
    client: *const clarity_client,
    token: *const c_char,
    user_id: *const c_char,
    update_json: *const c_char,
    user_out: *mut *mut c_char,
    err_out: *mut *mut clarity_error,
) -> clarity_result {
    json_result(
        client,
        token,
        (user_out, "user_out"),
        err_out,
        || {
            let id = args::uuid(user_id, "user_id")?;
            Ok((id, args::json::<UserUpdate>(update_json, "update_json")?))
        },
        async |core, p, (id, update)| core.update_user(p, id, update).await,
    )
}
