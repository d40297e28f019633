//! Clinical records: create, read, update, delete, list.
//!
//! Common contract: `client` and every named input and output must not be
//! NULL unless said otherwise; `err_out` may always be NULL. Outputs are
//! written only on success. JSON outputs are freed with
//! `clarity_string_free`. Every function is thread-safe. A record whose
//! patient the caller may not read answers `CLARITY_RESULT_NOT_FOUND`.

use std::ffi::c_char;

use clarity_core::crypto::Json;

use crate::args;
use crate::call::{json_result, no_result};
use crate::error::clarity_error;
use crate::ffi;
use crate::handle::clarity_client;
use crate::result::clarity_result;

/// Creates a record of `kind` (e.g. `"note"`) with body `data_json` (a JSON
/// object) for a patient, and writes `{"id","patient_id","kind","data",
/// "version","created_by","created_at","updated_at"}` to `*record_out`.
#[unsafe(no_mangle)]
pub extern "C" fn clarity_record_create(
    client: *const clarity_client,
    token: *const c_char,
    patient_id: *const c_char,
    kind: *const c_char,
    data_json: *const c_char,
    record_out: *mut *mut c_char,
    err_out: *mut *mut clarity_error,
) -> clarity_result {
    json_result(
        client,
        token,
        (record_out, "record_out"),
        err_out,
        || {
            let patient = args::uuid(patient_id, "patient_id")?;
            let kind = ffi::str_arg(kind, "kind")?;
            Ok((patient, kind, args::json::<Json>(data_json, "data_json")?))
        },
        async |core, p, (patient, kind, data)| core.create_record(p, patient, kind, data).await,
    )
}

/// Reads a record into `*record_out`.
#[unsafe(no_mangle)]
pub extern "C" fn clarity_record_get(
    client: *const clarity_client,
    token: *const c_char,
    record_id: *const c_char,
    record_out: *mut *mut c_char,
    err_out: *mut *mut clarity_error,
) -> clarity_result {
    json_result(
        client,
        token,
        (record_out, "record_out"),
        err_out,
        || args::uuid(record_id, "record_id"),
        async |core, p, id| core.get_record(p, id).await,
    )
}

/// Replaces a record's body with `data_json` if its current version is
/// `expected_version`; writes the updated record to `*record_out`.
///
/// # Errors
/// `CLARITY_RESULT_CONFLICT` when the version is stale (nothing is written).
#[unsafe(no_mangle)]
pub extern "C" fn clarity_record_update(
    client: *const clarity_client,
    token: *const c_char,
    record_id: *const c_char,
    expected_version: i64,
    data_json: *const c_char,
    record_out: *mut *mut c_char,
    err_out: *mut *mut clarity_error,
) -> clarity_result {
    json_result(
        client,
        token,
        (record_out, "record_out"),
        err_out,
        || {
            let id = args::uuid(record_id, "record_id")?;
            let version = args::version(expected_version)?;
            Ok((id, version, args::json::<Json>(data_json, "data_json")?))
        },
        async |core, p, (id, version, data)| core.update_record(p, id, version, data).await,
    )
}

/// Deletes a record (clinicians on the patient's care team).
#[unsafe(no_mangle)]
pub extern "C" fn clarity_record_delete(
    client: *const clarity_client,
    token: *const c_char,
    record_id: *const c_char,
    err_out: *mut *mut clarity_error,
) -> clarity_result {
    no_result(
        client,
        token,
        err_out,
        || args::uuid(record_id, "record_id"),
        async |core, p, id| core.delete_record(p, id).await,
    )
}

/// One page of a patient's records as `{"items":[..],"next_cursor":..}`.
/// `limit` 0 is the default page size; `cursor` may be NULL (first page).
#[unsafe(no_mangle)]
pub extern "C" fn clarity_record_list(
    client: *const clarity_client,
    token: *const c_char,
    patient_id: *const c_char,
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
        || {
            Ok((
                args::uuid(patient_id, "patient_id")?,
                args::page(limit, cursor)?,
            ))
        },
        async |core, p, (patient, page)| core.list_records(p, patient, &page).await,
    )
}
