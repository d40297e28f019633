//! The patient's side of the audit trail (S-AUD-9): who accessed a patient's
//! record, disclosures to outside recipients, and their accounting.
//!
//! Common contract: `client`, `token`, `patient_id` and every named output
//! must not be NULL unless said otherwise; `err_out` may always be NULL.
//! Outputs are written only on success. String outputs are freed with
//! `clarity_string_free`. Every function is thread-safe.

use std::ffi::c_char;

use chrono::{DateTime, Utc};
use clarity_core::model::NewDisclosure;
use clarity_core::service::AccessLogRange;
use serde::Deserialize;

use crate::args;
use crate::call::json_result;
use crate::error::{Failure, clarity_error};
use crate::ffi::{self, Out};
use crate::handle::clarity_client;
use crate::panic::boundary;
use crate::result::clarity_result;

/// Which part of the access log: both bounds optional.
#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Range {
    #[serde(default)]
    from: Option<DateTime<Utc>>,
    #[serde(default)]
    to: Option<DateTime<Utc>>,
}

/// One page of who accessed the patient's record, oldest first, as
/// `{"items":[{"event_id","at","accessor_id","accessor_name",
/// "accessor_roles","action","action_code","purpose","break_glass",
/// "entity_id"},..],"next_cursor":..}`. `range_json` is NULL for all, or
/// `{"from"?,"to"?}` (RFC 3339). The patient (its own record) and auditors.
#[unsafe(no_mangle)]
pub extern "C" fn clarity_patient_access_log(
    client: *const clarity_client,
    token: *const c_char,
    patient_id: *const c_char,
    range_json: *const c_char,
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
            let range: Range = args::json_or_default(range_json, "range_json")?;
            let range = AccessLogRange {
                from: range.from,
                to: range.to,
            };
            let patient = args::uuid(patient_id, "patient_id")?;
            Ok((patient, range, args::page(limit, cursor)?))
        },
        async |core, p, (patient, range, page)| {
            core.patient_access_log(p, patient, range, &page).await
        },
    )
}

/// Records a disclosure of the patient's information, described by
/// `disclosure_json` (`{"recipient","recipient_address"?,"purpose",
/// "description","legal_basis","disclosed_at"?}`), and writes the recorded
/// disclosure to `*disclosure_out`. The care team and auditors.
#[unsafe(no_mangle)]
pub extern "C" fn clarity_disclosure_record(
    client: *const clarity_client,
    token: *const c_char,
    patient_id: *const c_char,
    disclosure_json: *const c_char,
    disclosure_out: *mut *mut c_char,
    err_out: *mut *mut clarity_error,
) -> clarity_result {
    json_result(
        client,
        token,
        (disclosure_out, "disclosure_out"),
        err_out,
        || {
            let patient = args::uuid(patient_id, "patient_id")?;
            let disclosure: NewDisclosure = args::json(disclosure_json, "disclosure_json")?;
            Ok((patient, disclosure))
        },
        async |core, p, (patient, disclosure)| core.record_disclosure(p, patient, disclosure).await,
    )
}

/// One page of the patient's disclosures, in the order they were recorded,
/// as `{"items":[..],"next_cursor":..}`. The patient, auditors and the care team.
#[unsafe(no_mangle)]
pub extern "C" fn clarity_disclosure_list(
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
        async |core, p, (patient, page)| core.list_disclosures(p, patient, &page).await,
    )
}

/// The accounting of the patient's disclosures from `from` (RFC 3339, at
/// most six years back; NULL for six years) until now, written to
/// `*accounting_out` as JSON (`format` NULL or `"json"`:
/// `{"patient_id","from","to","disclosures":[..]}`) or as text to print
/// (`format` `"text"`). The patient, auditors and the care team.
#[unsafe(no_mangle)]
pub extern "C" fn clarity_disclosure_accounting(
    client: *const clarity_client,
    token: *const c_char,
    patient_id: *const c_char,
    from: *const c_char,
    format: *const c_char,
    accounting_out: *mut *mut c_char,
    err_out: *mut *mut clarity_error,
) -> clarity_result {
    boundary(err_out, || {
        let client = ffi::try_ref(client)?;
        let token = ffi::str_arg(token, "token")?;
        let patient = args::uuid(patient_id, "patient_id")?;
        let from = ffi::opt_str_arg(from, "from")?
            .map(|t| {
                DateTime::parse_from_rfc3339(t.trim())
                    .map(|t| t.with_timezone(&Utc))
                    .map_err(|_| Failure::invalid("from must be an RFC 3339 time"))
            })
            .transpose()?;
        let text = match ffi::opt_str_arg(format, "format")? {
            None | Some("json") => false,
            Some("text") => true,
            Some(_) => return Err(Failure::invalid("format must be json or text")),
        };
        let out = Out::new(accounting_out, "accounting_out")?;
        let accounting = client.as_caller(token, async |core, p| {
            core.disclosure_accounting(p, patient, from).await
        })?;
        if text {
            out.write_string(accounting.printable())
        } else {
            out.write_json(&accounting)
        }
    })
}
