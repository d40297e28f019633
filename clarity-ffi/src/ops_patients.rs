//! Patients: create, read, update, erase, list, look up, and the
//! de-identified research view.
//!
//! Common contract: `client` and every named input and output must not be
//! NULL unless said otherwise; `err_out` may always be NULL. Outputs are
//! written only on success. JSON outputs are freed with
//! `clarity_string_free`. Every function is thread-safe. A patient the
//! caller may not read answers `CLARITY_RESULT_NOT_FOUND`, exactly as one
//! that does not exist.

use std::ffi::c_char;

use clarity_core::model::{Page, PatientProfile, PatientSearch};

use crate::args;
use crate::error::clarity_error;
use crate::ffi::{self, Out};
use crate::handle::clarity_client;
use crate::panic::boundary;
use crate::result::clarity_result;

/// Creates a patient (clinicians) from `profile_json` (`{"mrn","given_name",
/// "family_name","birth_date","sex","email"?,"phone"?,"address"?,"data"?}`)
/// and writes it, with `"id","version","created_at","updated_at"`, to
/// `*patient_out`. The creator joins the patient's care team.
#[unsafe(no_mangle)]
pub extern "C" fn clarity_patient_create(
    client: *const clarity_client,
    token: *const c_char,
    profile_json: *const c_char,
    patient_out: *mut *mut c_char,
    err_out: *mut *mut clarity_error,
) -> clarity_result {
    boundary(err_out, || {
        let client = ffi::try_ref(client)?;
        let token = ffi::str_arg(token, "token")?;
        let profile: PatientProfile = args::json(profile_json, "profile_json")?;
        let out = Out::new(patient_out, "patient_out")?;
        let patient =
            client.as_caller(token, async |core, p| core.create_patient(p, profile).await)?;
        out.write_json(&patient)
    })
}

/// Reads a patient into `*patient_out`.
#[unsafe(no_mangle)]
pub extern "C" fn clarity_patient_get(
    client: *const clarity_client,
    token: *const c_char,
    patient_id: *const c_char,
    patient_out: *mut *mut c_char,
    err_out: *mut *mut clarity_error,
) -> clarity_result {
    boundary(err_out, || {
        let client = ffi::try_ref(client)?;
        let token = ffi::str_arg(token, "token")?;
        let id = args::uuid(patient_id, "patient_id")?;
        let out = Out::new(patient_out, "patient_out")?;
        out.write_json(&client.as_caller(token, async |core, p| core.get_patient(p, id).await)?)
    })
}

/// Replaces a patient's profile if its current version is
/// `expected_version`, and writes the updated patient to `*patient_out`.
///
/// # Errors
/// `CLARITY_RESULT_CONFLICT` when the version is stale (nothing is written).
#[unsafe(no_mangle)]
pub extern "C" fn clarity_patient_update(
    client: *const clarity_client,
    token: *const c_char,
    patient_id: *const c_char,
    expected_version: i64,
    profile_json: *const c_char,
    patient_out: *mut *mut c_char,
    err_out: *mut *mut clarity_error,
) -> clarity_result {
    boundary(err_out, || {
        let client = ffi::try_ref(client)?;
        let token = ffi::str_arg(token, "token")?;
        let id = args::uuid(patient_id, "patient_id")?;
        let version = args::version(expected_version)?;
        let profile: PatientProfile = args::json(profile_json, "profile_json")?;
        let out = Out::new(patient_out, "patient_out")?;
        let patient = client.as_caller(token, async |core, p| {
            core.update_patient(p, id, version, profile).await
        })?;
        out.write_json(&patient)
    })
}

/// Erases a patient (admins) by destroying its data key: its profile and
/// records become unreadable everywhere, backups included.
#[unsafe(no_mangle)]
pub extern "C" fn clarity_patient_erase(
    client: *const clarity_client,
    token: *const c_char,
    patient_id: *const c_char,
    err_out: *mut *mut clarity_error,
) -> clarity_result {
    boundary(err_out, || {
        let client = ffi::try_ref(client)?;
        let token = ffi::str_arg(token, "token")?;
        let id = args::uuid(patient_id, "patient_id")?;
        client.as_caller(token, async |core, p| core.erase_patient(p, id).await)
    })
}

/// One page of the patients the caller may read, as
/// `{"items":[..],"next_cursor":..}`. `limit` 0 is the default page size;
/// `cursor` may be NULL (first page).
#[unsafe(no_mangle)]
pub extern "C" fn clarity_patient_list(
    client: *const clarity_client,
    token: *const c_char,
    limit: u32,
    cursor: *const c_char,
    page_out: *mut *mut c_char,
    err_out: *mut *mut clarity_error,
) -> clarity_result {
    boundary(err_out, || {
        let client = ffi::try_ref(client)?;
        let token = ffi::str_arg(token, "token")?;
        let page = args::page(limit, cursor)?;
        let out = Out::new(page_out, "page_out")?;
        let patients =
            client.as_caller(token, async |core, p| core.list_patients(p, &page).await)?;
        out.write_json(&patients)
    })
}

/// Looks patients up by an exact value (`search_json`: `{"mrn"}`,
/// `{"email"}` or `{"family_name","birth_date"}`) and writes the matching
/// patients the caller may read as `{"items":[..],"next_cursor":null}`.
#[unsafe(no_mangle)]
pub extern "C" fn clarity_patient_search(
    client: *const clarity_client,
    token: *const c_char,
    search_json: *const c_char,
    page_out: *mut *mut c_char,
    err_out: *mut *mut clarity_error,
) -> clarity_result {
    boundary(err_out, || {
        let client = ffi::try_ref(client)?;
        let token = ffi::str_arg(token, "token")?;
        let lookup = args::json::<PatientSearch>(search_json, "search_json")?.into_lookup()?;
        let out = Out::new(page_out, "page_out")?;
        let page = client.as_caller(token, async |core, p| {
            let mut items = Vec::new();
            for id in core.find_patients(p, &lookup).await? {
                items.push(core.get_patient(p, id).await?);
            }
            Ok(Page {
                items,
                next_cursor: None,
            })
        })?;
        out.write_json(&page)
    })
}

/// One page of de-identified patients (researchers): pseudonyms, birth
/// year, age (90+ grouped) and sex only, as `{"items":[..],"next_cursor":..}`.
#[unsafe(no_mangle)]
pub extern "C" fn clarity_research_patients(
    client: *const clarity_client,
    token: *const c_char,
    limit: u32,
    cursor: *const c_char,
    page_out: *mut *mut c_char,
    err_out: *mut *mut clarity_error,
) -> clarity_result {
    boundary(err_out, || {
        let client = ffi::try_ref(client)?;
        let token = ffi::str_arg(token, "token")?;
        let page = args::page(limit, cursor)?;
        let out = Out::new(page_out, "page_out")?;
        let patients = client.as_caller(token, async |core, p| {
            core.research_patients(p, &page).await
        })?;
        out.write_json(&patients)
    })
}
