//! Reading requests: bounded bodies, strict JSON, bearer tokens, `If-Match`,
//! query strings and the purpose of use (S-IN-1).

use bytes::Bytes;
use http::Request;
use http::header::{AUTHORIZATION, CONTENT_TYPE, IF_MATCH};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use serde::de::DeserializeOwned;

use super::reply::ApiError;

/// Largest request body accepted, in bytes.
pub(crate) const MAX_BODY: usize = clarity_core::service::MAX_REQUEST_BODY;
/// How long a client may take to send a request body.
const BODY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// Purposes of use accepted in `X-Purpose-Of-Use` (HL7 v3 ActReason).
const PURPOSES: &[&str] = &[
    "TREAT",
    "ETREAT",
    "HPAYMT",
    "HOPERAT",
    "HRESCH",
    "PATRQT",
    "PUBHLTH",
    "HMARKT",
    "HSYSADMIN",
    "COC",
    "HLEGAL",
];

/// Largest body of the routes anyone may call (setup, login, refresh).
pub(crate) const MAX_PUBLIC_BODY: usize = 16 * 1024;

/// The body, at most `max` bytes. A body declared larger (`Content-Length`)
/// is refused at once, before any of it is read (S-NET-1).
pub(crate) async fn body_up_to(req: Request<Incoming>, max: usize) -> Result<Bytes, ApiError> {
    let declared = req
        .headers()
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|len| len > max as u64) {
        return Err(too_large(max));
    }
    let limited = http_body_util::Limited::new(req.into_body(), max);
    match tokio::time::timeout(BODY_TIMEOUT, limited.collect()).await {
        Ok(Ok(collected)) => Ok(collected.to_bytes()),
        Ok(Err(_)) => Err(too_large(max)),
        Err(_) => Err(ApiError::Http {
            status: http::StatusCode::REQUEST_TIMEOUT,
            code: "request_timeout",
            message: "the request body did not arrive in time".into(),
        }),
    }
}

fn too_large(max: usize) -> ApiError {
    ApiError::Http {
        status: http::StatusCode::PAYLOAD_TOO_LARGE,
        code: "payload_too_large",
        message: format!("request body must be at most {max} bytes"),
    }
}

/// The body as `T`: JSON, UTF-8, known fields only. Errors name positions
/// and field names, never values.
pub(crate) async fn json_body<T: DeserializeOwned>(req: Request<Incoming>) -> Result<T, ApiError> {
    json_body_up_to(req, MAX_BODY).await
}

/// [`json_body`] for routes anyone may call: at most [`MAX_PUBLIC_BODY`].
pub(crate) async fn public_json_body<T: DeserializeOwned>(
    req: Request<Incoming>,
) -> Result<T, ApiError> {
    json_body_up_to(req, MAX_PUBLIC_BODY).await
}

async fn json_body_up_to<T: DeserializeOwned>(
    req: Request<Incoming>,
    max: usize,
) -> Result<T, ApiError> {
    let is_json = req
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_none_or(|v| v.starts_with("application/json"));
    if !is_json {
        return Err(ApiError::Http {
            status: http::StatusCode::UNSUPPORTED_MEDIA_TYPE,
            code: "unsupported_media_type",
            message: "request bodies are application/json".into(),
        });
    }
    let bytes = body_up_to(req, max).await?;
    let text = std::str::from_utf8(&bytes)
        .map_err(|_| ApiError::bad_request("request body is not valid UTF-8"))?;
    Ok(clarity_core::model::parse_json(text)?)
}

/// The bearer token of the request.
pub(crate) fn bearer<B>(req: &Request<B>) -> Result<&str, ApiError> {
    req.headers()
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .ok_or_else(ApiError::unauthenticated)
}

/// The version named by `If-Match` (`"3"`, `W/"3"` or `3`); required.
pub(crate) fn if_match<B>(req: &Request<B>) -> Result<i64, ApiError> {
    let value = req
        .headers()
        .get(IF_MATCH)
        .and_then(|v| v.to_str().ok())
        .ok_or(ApiError::Http {
            status: http::StatusCode::PRECONDITION_REQUIRED,
            code: "precondition_required",
            message: "updates need an If-Match header with the version they are based on".into(),
        })?;
    value
        .trim()
        .trim_start_matches("W/")
        .trim_matches('"')
        .parse::<i64>()
        .ok()
        .filter(|v| *v >= 1)
        .ok_or_else(|| ApiError::bad_request("If-Match must name a version, e.g. \"3\""))
}

/// The purpose of use (`X-Purpose-Of-Use`); `TREAT` when absent.
pub(crate) fn purpose<B>(req: &Request<B>) -> Result<String, ApiError> {
    match req.headers().get("x-purpose-of-use") {
        None => Ok("TREAT".into()),
        Some(value) => {
            let value = value
                .to_str()
                .unwrap_or_default()
                .trim()
                .to_ascii_uppercase();
            if PURPOSES.contains(&value.as_str()) {
                Ok(value)
            } else {
                Err(ApiError::bad_request(format!(
                    "X-Purpose-Of-Use must be one of: {}",
                    PURPOSES.join(", ")
                )))
            }
        }
    }
}

/// The query parameters, each name at most once.
pub(crate) fn query<B>(
    req: &Request<B>,
    allowed: &[&str],
) -> Result<Vec<(String, String)>, ApiError> {
    let mut pairs: Vec<(String, String)> = Vec::new();
    for (name, value) in form_urlencoded::parse(req.uri().query().unwrap_or_default().as_bytes()) {
        if !allowed.contains(&name.as_ref()) {
            return Err(ApiError::bad_request(format!(
                "unknown query parameter; allowed: {}",
                allowed.join(", ")
            )));
        }
        if pairs.iter().any(|(n, _)| *n == name) {
            return Err(ApiError::bad_request("a query parameter appears twice"));
        }
        pairs.push((name.into_owned(), value.into_owned()));
    }
    Ok(pairs)
}

/// One query parameter.
pub(crate) fn param<'a>(pairs: &'a [(String, String)], name: &str) -> Option<&'a str> {
    pairs
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.as_str())
}

/// An optional RFC 3339 time query parameter.
pub(crate) fn time_param(
    pairs: &[(String, String)],
    name: &str,
) -> Result<Option<chrono::DateTime<chrono::Utc>>, ApiError> {
    param(pairs, name)
        .map(|v| {
            chrono::DateTime::parse_from_rfc3339(v)
                .map(|t| t.with_timezone(&chrono::Utc))
                .map_err(|_| ApiError::bad_request(format!("{name} must be an RFC 3339 time")))
        })
        .transpose()
}

/// The page of a list request (`limit`, `cursor`).
pub(crate) fn page(
    pairs: &[(String, String)],
) -> Result<clarity_core::model::PageRequest, ApiError> {
    let limit = param(pairs, "limit")
        .map(|l| {
            l.parse::<usize>()
                .map_err(|_| ApiError::bad_request("limit must be a whole number"))
        })
        .transpose()?;
    Ok(clarity_core::model::PageRequest {
        limit,
        cursor: param(pairs, "cursor").map(str::to_string),
    })
}

/// A UUID from a path segment; anything else is a 404, as an unknown id is.
pub(crate) fn id(segment: &str) -> Result<uuid::Uuid, ApiError> {
    uuid::Uuid::try_parse(segment)
        .map_err(|_| ApiError::Core(clarity_core::Error::NotFound { what: "resource" }))
}
