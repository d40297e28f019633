//! Service accounts through the C ABI: creation, secret rotation and deletion
//! (admins), and the client-credentials grant that gives a machine its
//! access token, so a host application authenticates its machine clients in
//! process as the HTTP API does.
//!
//! Common contract: `client` and every named input and output must not be
//! NULL unless said otherwise; `err_out` may always be NULL. Outputs are
//! written only on success. JSON outputs are freed with
//! `clarity_string_free` (secrets in them are zeroized when freed). Every
//! function is thread-safe.

use std::ffi::c_char;

use clarity_core::crypto::SecretString;
use clarity_core::service::{NewServiceAccount, SecretRotation};

use crate::args;
use crate::call::{json_result, no_result};
use crate::error::clarity_error;
use crate::ffi::{self, Out};
use crate::handle::clarity_client;
use crate::panic::boundary;
use crate::result::clarity_result;

/// Creates a service account (admins) from `account_json`
/// (`{"name","roles":[..],"display_name"?}`) and writes
/// `{"client_id","client_secret","previous_secret_expires_at","account"}` to
/// `*secret_out`: the client secret is shown this once.
///
/// # Errors
/// `CLARITY_RESULT_PERMISSION_DENIED`; `CLARITY_RESULT_INVALID_INPUT` for a
/// bad name or roles (none, `patient`, admin with a PHI role);
/// `CLARITY_RESULT_ALREADY_EXISTS` for a taken name.
#[unsafe(no_mangle)]
pub extern "C" fn clarity_service_account_create(
    client: *const clarity_client,
    token: *const c_char,
    account_json: *const c_char,
    secret_out: *mut *mut c_char,
    err_out: *mut *mut clarity_error,
) -> clarity_result {
    json_result(
        client,
        token,
        (secret_out, "secret_out"),
        err_out,
        || args::json::<NewServiceAccount>(account_json, "account_json"),
        async |core, p, account| core.create_service_account(p, account).await,
    )
}

/// Gives a service account a new client secret (admins), with
/// `rotation_json` (`{"overlap_secs"?}`; NULL for the default one-day
/// overlap), and writes the same JSON as `clarity_service_account_create`.
///
/// # Errors
/// `CLARITY_RESULT_NOT_FOUND` for anything but a service account;
/// `CLARITY_RESULT_INVALID_INPUT` for an overlap over seven days;
/// `CLARITY_RESULT_CONFLICT` when another rotation came first.
#[unsafe(no_mangle)]
pub extern "C" fn clarity_service_secret_rotate(
    client: *const clarity_client,
    token: *const c_char,
    account_id: *const c_char,
    rotation_json: *const c_char,
    secret_out: *mut *mut c_char,
    err_out: *mut *mut clarity_error,
) -> clarity_result {
    json_result(
        client,
        token,
        (secret_out, "secret_out"),
        err_out,
        || {
            let id = args::uuid(account_id, "account_id")?;
            let rotation = args::json_or_default::<SecretRotation>(rotation_json, "rotation_json")?;
            Ok((id, rotation))
        },
        async |core, p, (id, rotation)| core.rotate_service_secret(p, id, rotation).await,
    )
}

/// Deletes a service account (admins): its secrets are destroyed and its
/// sessions end at once.
///
/// # Errors
/// `CLARITY_RESULT_NOT_FOUND` for anything but a service account.
#[unsafe(no_mangle)]
pub extern "C" fn clarity_service_account_delete(
    client: *const clarity_client,
    token: *const c_char,
    account_id: *const c_char,
    err_out: *mut *mut clarity_error,
) -> clarity_result {
    no_result(
        client,
        token,
        err_out,
        || args::uuid(account_id, "account_id"),
        async |core, p, id| core.delete_service_account(p, id).await,
    )
}

/// The client-credentials grant: a service account's `client_id` and
/// `client_secret` for an access token, written to `*token_out` as
/// `{"access_token","token_type","expires_in"}` (no refresh token: ask
/// again). Use the access token like a login's.
///
/// # Errors
/// `CLARITY_RESULT_UNAUTHENTICATED` for an unknown client, a wrong or
/// retired secret, or a disabled or deleted account (alike);
/// `CLARITY_RESULT_RATE_LIMITED` while throttled.
#[unsafe(no_mangle)]
pub extern "C" fn clarity_client_credentials(
    client: *const clarity_client,
    client_id: *const c_char,
    client_secret: *const c_char,
    token_out: *mut *mut c_char,
    err_out: *mut *mut clarity_error,
) -> clarity_result {
    boundary(err_out, || {
        let client = ffi::try_ref(client)?;
        let id = ffi::str_arg(client_id, "client_id")?;
        let secret = SecretString::new(ffi::str_arg(client_secret, "client_secret")?);
        let out = Out::new(token_out, "token_out")?;
        out.write_json(&client.block_on(client.core().client_credentials(id, &secret, None))?)
    })
}
