//! The audit trail: query, verify, FHIR export and purge (auditors, admins).
//!
//! Common contract: `client` and every named input and output must not be
//! NULL unless said otherwise; `err_out` may always be NULL. Outputs are
//! written only on success. String outputs are freed with
//! `clarity_string_free`. Every function is thread-safe.

use std::ffi::c_char;

use chrono::{DateTime, Utc};
use clarity_core::audit::AuditFilter;
use serde::Deserialize;
use serde_json::json;
use uuid::Uuid;

use crate::args;
use crate::call::json_result;
use crate::error::{Failure, clarity_error};
use crate::ffi::{self, Out};
use crate::handle::clarity_client;
use crate::panic::boundary;
use crate::result::clarity_result;

/// Export size when the caller names none, and the most one call returns.
const EXPORT_DEFAULT: u32 = 10_000;
const EXPORT_MAX: u32 = 100_000;

/// Which events: every field optional, all given ones must match.
#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Filter {
    #[serde(default)]
    patient_id: Option<Uuid>,
    #[serde(default)]
    actor_id: Option<Uuid>,
    /// The event's action, e.g. `patient.read`.
    #[serde(default)]
    action: Option<String>,
    /// `"0"` success, `"4"` minor failure, `"8"` serious failure.
    #[serde(default)]
    outcome: Option<String>,
    #[serde(default)]
    from: Option<DateTime<Utc>>,
    #[serde(default)]
    to: Option<DateTime<Utc>>,
}

impl Filter {
    fn into_core(self) -> Result<AuditFilter, Failure> {
        if self
            .outcome
            .as_deref()
            .is_some_and(|o| !matches!(o, "0" | "4" | "8"))
        {
            return Err(Failure::invalid("filter_json: outcome must be 0, 4 or 8"));
        }
        Ok(AuditFilter {
            patient_id: self.patient_id,
            actor_id: self.actor_id,
            subtype: self.action,
            outcome: self.outcome,
            from: self.from,
            to: self.to,
        })
    }
}

fn filter(ptr: *const c_char) -> Result<AuditFilter, Failure> {
    args::json_or_default::<Filter>(ptr, "filter_json")?.into_core()
}

/// One page of audit events matching `filter_json` (NULL for all;
/// `{"patient_id"?,"actor_id"?,"action"?,"outcome"?,"from"?,"to"?}`),
/// oldest first, as `{"items":[..],"next_cursor":..}`.
#[unsafe(no_mangle)]
pub extern "C" fn clarity_audit_query(
    client: *const clarity_client,
    token: *const c_char,
    filter_json: *const c_char,
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
        || Ok((filter(filter_json)?, args::page(limit, cursor)?)),
        async |core, p, (filter, page)| core.audit_events(p, &filter, &page).await,
    )
}

/// Verifies every audit chain and writes `{"ok":bool,"chains":[{"chain_id",
/// "events","checkpoints","last_seq","ok","first_bad_seq","problem"},..]}`
/// to `*report_out`. A broken chain is reported there, not as an error.
#[unsafe(no_mangle)]
pub extern "C" fn clarity_audit_verify(
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
        async |core, p, ()| {
            let chains = core.verify_audit(p).await?;
            let ok = chains.iter().all(|c| c.ok);
            Ok(json!({ "ok": ok, "chains": chains }))
        },
    )
}

/// Writes the events matching `filter_json` (NULL for all) as FHIR R4
/// AuditEvent NDJSON, one resource per line, to `*ndjson_out`: at most
/// `limit` events (0: 10 000; at most 100 000).
#[unsafe(no_mangle)]
pub extern "C" fn clarity_audit_export(
    client: *const clarity_client,
    token: *const c_char,
    filter_json: *const c_char,
    limit: u32,
    ndjson_out: *mut *mut c_char,
    err_out: *mut *mut clarity_error,
) -> clarity_result {
    boundary(err_out, || {
        let client = ffi::try_ref(client)?;
        let token = ffi::str_arg(token, "token")?;
        let filter = filter(filter_json)?;
        let limit = if limit == 0 {
            EXPORT_DEFAULT
        } else {
            limit.min(EXPORT_MAX)
        };
        let out = Out::new(ndjson_out, "ndjson_out")?;
        let ndjson = client.as_caller(token, async |core, p| {
            core.export_audit_fhir(p, &filter, limit as usize).await
        })?;
        out.write_string(ndjson)
    })
}

/// Deletes audit events recorded before `before` (RFC 3339) (admins) and
/// writes how many to `*purged_out`. Events younger than the retention
/// period (`audit.retention_days`, six years by default) are refused.
#[unsafe(no_mangle)]
pub extern "C" fn clarity_audit_purge(
    client: *const clarity_client,
    token: *const c_char,
    before: *const c_char,
    purged_out: *mut u64,
    err_out: *mut *mut clarity_error,
) -> clarity_result {
    boundary(err_out, || {
        let client = ffi::try_ref(client)?;
        let token = ffi::str_arg(token, "token")?;
        let before = DateTime::parse_from_rfc3339(ffi::str_arg(before, "before")?)
            .map_err(|_| Failure::invalid("before must be an RFC 3339 time"))?
            .with_timezone(&Utc);
        let out = Out::new(purged_out, "purged_out")?;
        out.write(client.as_caller(token, async |core, p| core.purge_audit(p, before).await)?);
        Ok(())
    })
}
