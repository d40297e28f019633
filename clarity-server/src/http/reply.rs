//! Responses: JSON bodies, the one error shape, and the headers every
//! response carries (S-HDR-1, S-ERR-1).

use bytes::Bytes;
use clarity_core::ErrorKind;
use std::io::Write as _;

use http::HeaderMap;
use http::header::{CACHE_CONTROL, CONTENT_TYPE, HeaderName, HeaderValue};
use http::{Response, StatusCode};
use http_body_util::Full;
use serde::Serialize;
use serde_json::json;

/// The body type of every response.
pub(crate) type Body = Full<Bytes>;

const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// How many [`SECURITY_HEADERS`] there are.
const SECURITY_HEADER_COUNT: usize = 4;

/// Headers on every response: no sniffing, nothing may be framed or loaded,
/// no referrer, nothing cached (every API response may carry PHI).
const SECURITY_HEADERS: [(HeaderName, &str); SECURITY_HEADER_COUNT] = [
    (HeaderName::from_static("x-content-type-options"), "nosniff"),
    (
        HeaderName::from_static("content-security-policy"),
        "default-src 'none'; frame-ancestors 'none'",
    ),
    (HeaderName::from_static("referrer-policy"), "no-referrer"),
    (CACHE_CONTROL, "no-store"),
];

/// What a handler fails with: a core error, or an HTTP-level one.
#[derive(Debug)]
pub(crate) enum ApiError {
    /// From the core; mapped by kind.
    Core(clarity_core::Error),
    /// Decided at the HTTP layer (bad request shape, missing header, ...).
    Http {
        status: StatusCode,
        code: &'static str,
        message: String,
    },
}

impl From<clarity_core::Error> for ApiError {
    fn from(err: clarity_core::Error) -> Self {
        ApiError::Core(err)
    }
}

impl ApiError {
    pub(crate) fn bad_request(message: impl Into<String>) -> Self {
        ApiError::Http {
            status: StatusCode::BAD_REQUEST,
            code: "invalid_input",
            message: message.into(),
        }
    }

    pub(crate) fn unauthenticated() -> Self {
        ApiError::Core(clarity_core::Error::Unauthenticated)
    }

    /// The response for this error, carrying the request id.
    pub(crate) fn response(&self, request_id: &str) -> Response<Body> {
        match self {
            ApiError::Http {
                status,
                code,
                message,
            } => error(*status, code, message, request_id),
            ApiError::Core(err) => core_error(err, request_id),
        }
    }
}

/// A handler's result.
pub(crate) type Reply = Result<Response<Body>, ApiError>;

/// A JSON response.
pub(crate) fn json<T: Serialize>(status: StatusCode, value: &T) -> Response<Body> {
    // Sized for a typical record or profile, so the body is written without
    // growing (and copying) the buffer several times.
    let mut body = Vec::with_capacity(BODY_CAPACITY);
    if serde_json::to_writer(&mut body, value).is_err() {
        body = b"{}".to_vec();
    }
    let mut resp = Response::new(Full::new(Bytes::from(body)));
    *resp.status_mut() = status;
    // Room for every header a response gets (`finish`), allocated once.
    *resp.headers_mut() = HeaderMap::with_capacity(HEADER_CAPACITY);
    resp.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    resp
}

/// The bytes a JSON body starts with room for.
const BODY_CAPACITY: usize = 1024;

/// The headers a JSON response starts with room for: its content type and
/// `ETag`, [`SECURITY_HEADERS`], the request id and HSTS.
const HEADER_CAPACITY: usize = 4 + SECURITY_HEADER_COUNT;

/// `204 No Content`.
pub(crate) fn no_content() -> Response<Body> {
    let mut resp = Response::new(Full::new(Bytes::new()));
    *resp.status_mut() = StatusCode::NO_CONTENT;
    resp
}

/// A JSON response with an `ETag` of `version`.
pub(crate) fn versioned<T: Serialize>(
    status: StatusCode,
    value: &T,
    version: i64,
) -> Response<Body> {
    let mut resp = json(status, value);
    // A quoted i64 fits in 22 bytes; written on the stack, copied once.
    let mut tag = [0u8; 24];
    let mut cursor = std::io::Cursor::new(&mut tag[..]);
    if write!(cursor, "\"{version}\"").is_ok() {
        let written = usize::try_from(cursor.position()).unwrap_or(0);
        if let Ok(tag) = HeaderValue::from_bytes(&tag[..written]) {
            resp.headers_mut().insert(http::header::ETAG, tag);
        }
    }
    resp
}

/// An error response in the API's error shape.
pub(crate) fn error(
    status: StatusCode,
    code: &str,
    message: &str,
    request_id: &str,
) -> Response<Body> {
    json(
        status,
        &json!({ "error": { "code": code, "message": message, "request_id": request_id } }),
    )
}

/// The response for a core error: a status by kind, and a message that
/// carries no internal detail (S-ERR-1).
pub(crate) fn core_error(err: &clarity_core::Error, rid: &str) -> Response<Body> {
    let (status, message) = match err.kind() {
        ErrorKind::InvalidInput => (StatusCode::BAD_REQUEST, err.to_string()),
        ErrorKind::NotFound => (StatusCode::NOT_FOUND, err.to_string()),
        ErrorKind::AlreadyExists => (StatusCode::CONFLICT, err.to_string()),
        ErrorKind::Conflict => (StatusCode::PRECONDITION_FAILED, err.to_string()),
        ErrorKind::Unauthenticated => (StatusCode::UNAUTHORIZED, err.to_string()),
        ErrorKind::MfaRequired => (StatusCode::UNAUTHORIZED, err.to_string()),
        ErrorKind::PermissionDenied => (StatusCode::FORBIDDEN, err.to_string()),
        ErrorKind::RateLimited => (StatusCode::TOO_MANY_REQUESTS, err.to_string()),
        ErrorKind::Backend | ErrorKind::Unavailable | ErrorKind::Key => (
            StatusCode::SERVICE_UNAVAILABLE,
            "a dependency is unavailable; retry later".to_string(),
        ),
        _ => (
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal error".to_string(),
        ),
    };
    if status.is_server_error() {
        tracing::error!(request_id = rid, error = %err, "request failed");
    }
    let mut response = error(status, err.kind().as_str(), &message, rid);
    match err {
        clarity_core::Error::RateLimited { retry_after_secs } => {
            response.headers_mut().insert(
                http::header::RETRY_AFTER,
                HeaderValue::from(*retry_after_secs),
            );
        }
        clarity_core::Error::Unauthenticated | clarity_core::Error::MfaRequired => {
            response.headers_mut().insert(
                http::header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer"),
            );
        }
        _ => {}
    }
    response
}

/// Adds the request id header and the security headers; HSTS over TLS.
pub(crate) fn finish(response: &mut Response<Body>, request_id: &str, tls: bool) {
    let headers = response.headers_mut();
    if tls {
        headers.insert(
            http::header::STRICT_TRANSPORT_SECURITY,
            HeaderValue::from_static("max-age=63072000; includeSubDomains"),
        );
    }
    for (name, value) in SECURITY_HEADERS {
        headers.insert(name, HeaderValue::from_static(value));
    }
    if let Ok(value) = HeaderValue::from_str(request_id) {
        headers.insert(REQUEST_ID, value);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // The ETag is the version in quotes, for any version a row can hold.
    #[test]
    fn the_etag_is_the_quoted_version() {
        for version in [1, 42, i64::MAX, i64::MIN] {
            let resp = versioned(StatusCode::OK, &json!({"v": version}), version);
            assert_eq!(
                resp.headers()[http::header::ETAG],
                format!("\"{version}\"").as_str()
            );
        }
    }

    // A response has room for every header it is given without growing.
    #[test]
    fn a_finished_response_fits_its_headers() {
        let mut resp = versioned(StatusCode::OK, &json!({}), 7);
        let capacity = resp.headers().capacity();
        finish(&mut resp, "request-id", true);
        assert_eq!(resp.headers().len(), HEADER_CAPACITY);
        assert_eq!(resp.headers().capacity(), capacity, "the header map grew");
    }
}
