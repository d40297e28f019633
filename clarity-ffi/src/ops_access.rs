//! Care teams, break-glass access and the review of break-glass grants.
//!
//! Common contract: `client` and every named input and output must not be
//! NULL unless said otherwise; `err_out` may always be NULL. Outputs are
//! written only on success. JSON outputs are freed with
//! `clarity_string_free`. Every function is thread-safe.

use std::ffi::c_char;

use clarity_core::service::{BreakGlassRequest, CareTeamAssignment};

use crate::args;
use crate::call::{json_result, no_result};
use crate::error::clarity_error;
use crate::handle::clarity_client;
use crate::result::clarity_result;

/// Assigns a user to a patient's care team (admins) with `assignment_json`
/// (`{"user_id","relationship"?,"expires_at"?}`, `expires_at` RFC 3339).
#[unsafe(no_mangle)]
pub extern "C" fn clarity_care_team_add(
    client: *const clarity_client,
    token: *const c_char,
    patient_id: *const c_char,
    assignment_json: *const c_char,
    err_out: *mut *mut clarity_error,
) -> clarity_result {
    no_result(
        client,
        token,
        err_out,
        || {
            let patient = args::uuid(patient_id, "patient_id")?;
            let assignment = args::json::<CareTeamAssignment>(assignment_json, "assignment_json")?;
            Ok((patient, assignment))
        },
        async |core, p, (patient, assignment)| {
            core.add_care_team_member(p, patient, assignment).await
        },
    )
}

/// Removes a user from a patient's care team (admins).
#[unsafe(no_mangle)]
pub extern "C" fn clarity_care_team_remove(
    client: *const clarity_client,
    token: *const c_char,
    patient_id: *const c_char,
    user_id: *const c_char,
    err_out: *mut *mut clarity_error,
) -> clarity_result {
    no_result(
        client,
        token,
        err_out,
        || {
            Ok((
                args::uuid(patient_id, "patient_id")?,
                args::uuid(user_id, "user_id")?,
            ))
        },
        async |core, p, (patient, user)| core.remove_care_team_member(p, patient, user).await,
    )
}

/// Emergency access (clinicians) with `request_json`
/// (`{"patient_id","reason","totp"?}`): a grant that ends by itself, raises
/// an alert and is listed for review. Writes
/// `{"grant_id","patient_id","expires_at"}` to `*grant_out`.
#[unsafe(no_mangle)]
pub extern "C" fn clarity_break_glass(
    client: *const clarity_client,
    token: *const c_char,
    request_json: *const c_char,
    grant_out: *mut *mut c_char,
    err_out: *mut *mut clarity_error,
) -> clarity_result {
    json_result(
        client,
        token,
        (grant_out, "grant_out"),
        err_out,
        || args::json::<BreakGlassRequest>(request_json, "request_json"),
        async |core, p, request| core.break_glass(p, request).await,
    )
}

/// One page of break-glass grants for review (admins), oldest first, as
/// `{"items":[..],"next_cursor":..}`; only unreviewed ones when
/// `unreviewed_only`. `limit` 0 is the default; `cursor` may be NULL.
#[unsafe(no_mangle)]
pub extern "C" fn clarity_grant_list(
    client: *const clarity_client,
    token: *const c_char,
    unreviewed_only: bool,
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
        async |core, p, page| core.list_grants(p, unreviewed_only, &page).await,
    )
}

/// Marks a break-glass grant reviewed by the caller (admins).
#[unsafe(no_mangle)]
pub extern "C" fn clarity_grant_review(
    client: *const clarity_client,
    token: *const c_char,
    grant_id: *const c_char,
    err_out: *mut *mut clarity_error,
) -> clarity_result {
    no_result(
        client,
        token,
        err_out,
        || args::uuid(grant_id, "grant_id"),
        async |core, p, grant| core.review_grant(p, grant).await,
    )
}
