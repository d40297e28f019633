//! First-admin setup, login, refresh, logout, token checks, TOTP enrolment
//! and password changes.
//!
//! Common contract: `client` and every named input and output must not be
//! NULL unless said otherwise; `err_out` may always be NULL. Outputs are
//! written only on success. JSON outputs are freed with
//! `clarity_string_free`. Every function is thread-safe.

use std::ffi::c_char;

use clarity_core::crypto::SecretString;
use clarity_core::service::{LoginRequest, SetupRequest};

use crate::args;
use crate::call::{json_result, no_result};
use crate::error::{Failure, clarity_error};
use crate::ffi::{self, Out};
use crate::handle::clarity_client;
use crate::panic::boundary;
use crate::result::clarity_result;

/// Makes a new one-time setup code for the first admin and writes it to
/// `*code_out` (free it with `clarity_string_free`). Each call replaces the
/// previous code. The code is a secret: show it once, to the operator.
///
/// # Errors
/// `CLARITY_RESULT_ALREADY_EXISTS` once a user exists (setup is done).
#[unsafe(no_mangle)]
pub extern "C" fn clarity_setup_code_issue(
    client: *const clarity_client,
    code_out: *mut *mut c_char,
    err_out: *mut *mut clarity_error,
) -> clarity_result {
    boundary(err_out, || {
        let client = ffi::try_ref(client)?;
        let out = Out::new(code_out, "code_out")?;
        match client.block_on(client.core().issue_setup_code())? {
            Some(code) => out.write_string(code.expose().to_string()),
            None => Err(Failure::new(
                clarity_result::AlreadyExists,
                "users exist already: setup is done",
            )),
        }
    })
}

/// Creates the first admin from `request_json`
/// (`{"setup_code","email","password"}`) and writes the user as JSON to
/// `*user_out`.
///
/// # Errors
/// `CLARITY_RESULT_UNAUTHENTICATED` for a wrong, expired or used code;
/// `CLARITY_RESULT_INVALID_INPUT` for a bad email or password.
#[unsafe(no_mangle)]
pub extern "C" fn clarity_setup(
    client: *const clarity_client,
    request_json: *const c_char,
    user_out: *mut *mut c_char,
    err_out: *mut *mut clarity_error,
) -> clarity_result {
    boundary(err_out, || {
        let client = ffi::try_ref(client)?;
        let request: SetupRequest = args::json(request_json, "request_json")?;
        let out = Out::new(user_out, "user_out")?;
        out.write_json(&client.block_on(client.core().setup(request))?)
    })
}

/// Logs in with `request_json` (`{"email","password","totp"?}`) and writes
/// `{"access_token","refresh_token","expires_in","token_type","user"}` to
/// `*tokens_out`. The tokens are secrets; the string is zeroized when freed.
///
/// # Errors
/// `CLARITY_RESULT_UNAUTHENTICATED` for bad credentials;
/// `CLARITY_RESULT_MFA_REQUIRED`; `CLARITY_RESULT_RATE_LIMITED` while throttled.
#[unsafe(no_mangle)]
pub extern "C" fn clarity_login(
    client: *const clarity_client,
    request_json: *const c_char,
    tokens_out: *mut *mut c_char,
    err_out: *mut *mut clarity_error,
) -> clarity_result {
    boundary(err_out, || {
        let client = ffi::try_ref(client)?;
        let request: LoginRequest = args::json(request_json, "request_json")?;
        let out = Out::new(tokens_out, "tokens_out")?;
        out.write_json(&client.block_on(client.core().login(request, None))?)
    })
}

/// Exchanges a refresh token for new tokens (same JSON as `clarity_login`).
/// A refresh token works once; presenting a used one ends its session.
///
/// # Errors
/// `CLARITY_RESULT_UNAUTHENTICATED`.
#[unsafe(no_mangle)]
pub extern "C" fn clarity_refresh(
    client: *const clarity_client,
    refresh_token: *const c_char,
    tokens_out: *mut *mut c_char,
    err_out: *mut *mut clarity_error,
) -> clarity_result {
    boundary(err_out, || {
        let client = ffi::try_ref(client)?;
        let token = SecretString::new(ffi::str_arg(refresh_token, "refresh_token")?);
        let out = Out::new(tokens_out, "tokens_out")?;
        out.write_json(&client.block_on(client.core().refresh(&token))?)
    })
}

/// Ends the session of `token` now: its access and refresh tokens stop working.
///
/// # Errors
/// `CLARITY_RESULT_UNAUTHENTICATED` for a token that is not live.
#[unsafe(no_mangle)]
pub extern "C" fn clarity_logout(
    client: *const clarity_client,
    token: *const c_char,
    err_out: *mut *mut clarity_error,
) -> clarity_result {
    no_result(
        client,
        token,
        err_out,
        || Ok(()),
        async |core, p, ()| core.logout(p).await,
    )
}

/// Checks an access token and its session and writes the caller as JSON
/// (`{"user_id","session_id","roles","patient_id","mfa","identity",...}`)
/// to `*principal_out`. The token is Clarity's own, or a configured OpenID
/// Connect provider's access token (`[[auth.oidc]]`); for the latter
/// `"identity"` is `{"issuer","subject"}`, otherwise null. Every operation
/// taking a `token` accepts either kind.
///
/// # Errors
/// `CLARITY_RESULT_UNAUTHENTICATED` for a token that does not verify or is
/// no longer live. For a provider's token also:
/// `CLARITY_RESULT_PERMISSION_DENIED` when its roles map to none Clarity can
/// use, `CLARITY_RESULT_MFA_REQUIRED` for an admin without a second factor
/// where one is required, `CLARITY_RESULT_UNAVAILABLE` while the provider's
/// keys cannot be fetched.
#[unsafe(no_mangle)]
pub extern "C" fn clarity_authenticate(
    client: *const clarity_client,
    token: *const c_char,
    principal_out: *mut *mut c_char,
    err_out: *mut *mut clarity_error,
) -> clarity_result {
    json_result(
        client,
        token,
        (principal_out, "principal_out"),
        err_out,
        || Ok(()),
        async |_, p, ()| Ok(p.clone()),
    )
}

/// Starts TOTP enrolment for the caller and writes `{"secret","otpauth_url"}`
/// to `*enrollment_out` (secrets: show once).
#[unsafe(no_mangle)]
pub extern "C" fn clarity_mfa_enroll(
    client: *const clarity_client,
    token: *const c_char,
    enrollment_out: *mut *mut c_char,
    err_out: *mut *mut clarity_error,
) -> clarity_result {
    json_result(
        client,
        token,
        (enrollment_out, "enrollment_out"),
        err_out,
        || Ok(()),
        async |core, p, ()| core.mfa_enroll(p).await,
    )
}

/// Confirms TOTP enrolment with a current `code`; writes the user to `*user_out`.
///
/// # Errors
/// `CLARITY_RESULT_UNAUTHENTICATED` for a wrong or replayed code.
#[unsafe(no_mangle)]
pub extern "C" fn clarity_mfa_confirm(
    client: *const clarity_client,
    token: *const c_char,
    code: *const c_char,
    user_out: *mut *mut c_char,
    err_out: *mut *mut clarity_error,
) -> clarity_result {
    json_result(
        client,
        token,
        (user_out, "user_out"),
        err_out,
        || Ok(SecretString::new(ffi::str_arg(code, "code")?)),
        async |core, p, code| core.mfa_confirm(p, code.expose()).await,
    )
}

/// Changes the caller's password with `request_json`
/// (`{"current_password","new_password"}`). Every session of the user ends,
/// the caller's too: log in again.
///
/// # Errors
/// `CLARITY_RESULT_UNAUTHENTICATED` for a wrong current password;
/// `CLARITY_RESULT_INVALID_INPUT` when the new one breaks the policy.
#[unsafe(no_mangle)]
pub extern "C" fn clarity_password_change(
    client: *const clarity_client,
    token: *const c_char,
    request_json: *const c_char,
    err_out: *mut *mut clarity_error,
) -> clarity_result {
    no_result(
        client,
        token,
        err_out,
        || args::json::<clarity_core::service::PasswordChange>(request_json, "request_json"),
        async |core, p, change| {
            core.change_password(p, &change.current_password, &change.new_password)
                .await
        },
    )
}

/// Sets a new password with the one-time code of an admin's reset
/// (`clarity_password_reset`), from `request_json`
/// (`{"email","reset_code","new_password","totp"?}`). Needs no token. The
/// code is checked like a password at login (throttling, lockout, a TOTP
/// code when the account has a second factor) and works once; every session
/// of the user ends.
///
/// # Errors
/// `CLARITY_RESULT_UNAUTHENTICATED` for a wrong email, code or TOTP code, or
/// an expired code; `CLARITY_RESULT_MFA_REQUIRED`;
/// `CLARITY_RESULT_RATE_LIMITED`; `CLARITY_RESULT_INVALID_INPUT` when the
/// new password breaks the policy.
#[unsafe(no_mangle)]
pub extern "C" fn clarity_password_reset_complete(
    client: *const clarity_client,
    request_json: *const c_char,
    err_out: *mut *mut clarity_error,
) -> clarity_result {
    boundary(err_out, || {
        let client = ffi::try_ref(client)?;
        let request: clarity_core::service::PasswordResetRequest =
            args::json(request_json, "request_json")?;
        Ok(client.block_on(client.core().complete_password_reset(request, None))?)
    })
}

/// Ends sessions at an OpenID Connect provider's request (back-channel
/// logout, S-ID-1): a host application that receives the provider's
/// `logout_token` at its own endpoint passes it on here. The token is
/// verified (signature, issuer, `aud` = the provider's `logout_client_id`,
/// the logout event); then the tokens of the subject it names issued until
/// its `iat`, and every token of the provider session it names, stop
/// working at once. Audited.
///
/// # Errors
/// `CLARITY_RESULT_INVALID_INPUT` for a token that does not verify (no
/// detail); `CLARITY_RESULT_UNAVAILABLE` while the provider's keys cannot
/// be fetched.
#[unsafe(no_mangle)]
pub extern "C" fn clarity_oidc_backchannel_logout(
    client: *const clarity_client,
    logout_token: *const c_char,
    err_out: *mut *mut clarity_error,
) -> clarity_result {
    boundary(err_out, || {
        let client = ffi::try_ref(client)?;
        let token = ffi::str_arg(logout_token, "logout_token")?;
        Ok(client.block_on(
            client
                .core()
                .backchannel_logout(token, clarity_core::model::RequestContext::default()),
        )?)
    })
}
