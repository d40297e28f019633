//! The audit endpoints: `GET /v1/audit/events`, `/v1/audit/verify` and
//! `/v1/audit/export` (auditors and admins).

use clarity_core::audit::AuditFilter;
use http::{Request, StatusCode};
use hyper::body::Incoming;
use serde_json::json;
use uuid::Uuid;

use super::Ctx;
use super::caller::principal;
use super::input::{page, param, query, time_param};
use super::reply::{ApiError, Reply, json};

fn audit_filter(q: &[(String, String)]) -> Result<AuditFilter, ApiError> {
    let uuid = |name: &str| {
        param(q, name)
            .map(|v| {
                Uuid::try_parse(v)
                    .map_err(|_| ApiError::bad_request(format!("{name} must be a UUID")))
            })
            .transpose()
    };
    let outcome = param(q, "outcome").map(str::to_string);
    if outcome
        .as_deref()
        .is_some_and(|o| !matches!(o, "0" | "4" | "8"))
    {
        return Err(ApiError::bad_request("outcome must be 0, 4 or 8"));
    }
    Ok(AuditFilter {
        patient_id: uuid("patient_id")?,
        actor_id: uuid("actor_id")?,
        subtype: param(q, "action").map(str::to_string),
        outcome,
        from: time_param(q, "from")?,
        to: time_param(q, "to")?,
    })
}

const AUDIT_QUERY: &[&str] = &[
    "limit",
    "cursor",
    "patient_id",
    "actor_id",
    "action",
    "outcome",
    "from",
    "to",
];

pub(super) async fn events(ctx: &Ctx, req: Request<Incoming>) -> Reply {
    let p = principal(ctx, &req).await?;
    let q = query(&req, AUDIT_QUERY)?;
    let events = ctx
        .clarity
        .audit_events(&p, &audit_filter(&q)?, &page(&q)?)
        .await?;
    Ok(json(StatusCode::OK, &events))
}

pub(super) async fn verify(ctx: &Ctx, req: Request<Incoming>) -> Reply {
    let p = principal(ctx, &req).await?;
    let chains = ctx.clarity.verify_audit(&p).await?;
    let ok = chains.iter().all(|c| c.ok);
    Ok(json(StatusCode::OK, &json!({ "ok": ok, "chains": chains })))
}

pub(super) async fn export(ctx: &Ctx, req: Request<Incoming>) -> Reply {
    let p = principal(ctx, &req).await?;
    let mut q = query(&req, &[AUDIT_QUERY, &["format"]].concat())?;
    match param(&q, "format") {
        Some("fhir") | None => {}
        Some(_) => return Err(ApiError::bad_request("format must be fhir")),
    }
    q.retain(|(n, _)| n != "format");
    let limit = param(&q, "limit")
        .map(|l| {
            l.parse::<usize>()
                .map_err(|_| ApiError::bad_request("limit must be a whole number"))
        })
        .transpose()?
        .unwrap_or(10_000)
        .min(100_000);
    let ndjson = ctx
        .clarity
        .export_audit_fhir(&p, &audit_filter(&q)?, limit)
        .await?;
    let mut response = http::Response::new(http_body_util::Full::new(bytes::Bytes::from(ndjson)));
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/fhir+ndjson"),
    );
    Ok(response)
}
