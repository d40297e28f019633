//! The patient's side of the audit trail (S-AUD-9):
//! `GET /v1/patients/{id}/access-log`, `POST` and `GET
//! /v1/patients/{id}/disclosures`, and `GET
//! /v1/patients/{id}/disclosures/accounting` (JSON, or plain text to print).

use clarity_core::model::NewDisclosure;
use clarity_core::service::AccessLogRange;
use http::{Request, StatusCode};
use hyper::body::Incoming;

use super::Ctx;
use super::caller::principal;
use super::input::{id, json_body, page, param, query, time_param};
use super::reply::{ApiError, Reply, json};

pub(super) async fn access_log(ctx: &Ctx, req: Request<Incoming>, patient: &str) -> Reply {
    let p = principal(ctx, &req).await?;
    let q = query(&req, &["limit", "cursor", "from", "to"])?;
    let range = AccessLogRange {
        from: time_param(&q, "from")?,
        to: time_param(&q, "to")?,
    };
    let log = ctx
        .clarity
        .patient_access_log(&p, id(patient)?, range, &page(&q)?)
        .await?;
    Ok(json(StatusCode::OK, &log))
}

pub(super) async fn record_disclosure(ctx: &Ctx, req: Request<Incoming>, patient: &str) -> Reply {
    let p = principal(ctx, &req).await?;
    let patient = id(patient)?;
    let disclosure: NewDisclosure = json_body(req).await?;
    let recorded = ctx
        .clarity
        .record_disclosure(&p, patient, disclosure)
        .await?;
    Ok(json(StatusCode::CREATED, &recorded))
}

pub(super) async fn list_disclosures(ctx: &Ctx, req: Request<Incoming>, patient: &str) -> Reply {
    let p = principal(ctx, &req).await?;
    let q = query(&req, &["limit", "cursor"])?;
    let disclosures = ctx
        .clarity
        .list_disclosures(&p, id(patient)?, &page(&q)?)
        .await?;
    Ok(json(StatusCode::OK, &disclosures))
}

pub(super) async fn accounting(ctx: &Ctx, req: Request<Incoming>, patient: &str) -> Reply {
    let p = principal(ctx, &req).await?;
    let q = query(&req, &["from", "format"])?;
    let text = match param(&q, "format") {
        None | Some("json") => false,
        Some("text") => true,
        Some(_) => return Err(ApiError::bad_request("format must be json or text")),
    };
    let accounting = ctx
        .clarity
        .disclosure_accounting(&p, id(patient)?, time_param(&q, "from")?)
        .await?;
    if !text {
        return Ok(json(StatusCode::OK, &accounting));
    }
    let body = bytes::Bytes::from(accounting.printable());
    let mut response = http::Response::new(http_body_util::Full::new(body));
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    Ok(response)
}
