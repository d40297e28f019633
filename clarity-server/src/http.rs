//! Routing, responses and the headers every response carries.
//!
//! The error body is `{"error":{"code","message","request_id"}}`; messages
//! are generic and carry no internal detail (S-ERR-1).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use clarity_core::{Clarity, ErrorKind};
use http::header::{CACHE_CONTROL, CONTENT_TYPE, HeaderName, HeaderValue};
use http::{Method, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::Service;
use serde_json::json;

/// The body type of every response.
type Body = Full<Bytes>;

const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Headers on every response (S-HDR-1): no sniffing, nothing may be framed or
/// loaded, no referrer, nothing cached. HSTS is added when TLS is on.
const SECURITY_HEADERS: [(HeaderName, &str); 4] = [
    (HeaderName::from_static("x-content-type-options"), "nosniff"),
    (
        HeaderName::from_static("content-security-policy"),
        "default-src 'none'; frame-ancestors 'none'",
    ),
    (HeaderName::from_static("referrer-policy"), "no-referrer"),
    (CACHE_CONTROL, "no-store"),
];

/// Dispatches requests to handlers. Cheap to clone per connection.
#[derive(Debug, Clone)]
pub(crate) struct Router {
    clarity: Arc<Clarity>,
}

/// The per-connection service.
#[derive(Debug, Clone)]
pub(crate) struct ConnectionService {
    router: Router,
    peer: SocketAddr,
}

impl Router {
    pub(crate) fn new(clarity: Arc<Clarity>) -> Self {
        Router { clarity }
    }

    pub(crate) fn service(&self, peer: SocketAddr) -> ConnectionService {
        ConnectionService {
            router: self.clone(),
            peer,
        }
    }

    async fn route(&self, req: Request<Incoming>, rid: &str) -> (&'static str, Response<Body>) {
        let method = req.method().clone();
        let method = &method;
        match req.uri().path() {
            "/v1/setup" if method == Method::POST => ("/v1/setup", self.setup(req, rid).await),
            "/v1/setup" => (
                "/v1/setup",
                error(
                    StatusCode::METHOD_NOT_ALLOWED,
                    "method_not_allowed",
                    "this route accepts POST only",
                    rid,
                ),
            ),
            "/health/live" => ("/health/live", only_get(method, rid).unwrap_or_else(live)),
            "/health/ready" => match only_get(method, rid) {
                Some(resp) => ("/health/ready", resp),
                None => ("/health/ready", self.ready().await),
            },
            // The raw path is never logged: it is the caller's text.
            _ => (
                "unknown",
                error(StatusCode::NOT_FOUND, "not_found", "no such route", rid),
            ),
        }
    }

    async fn ready(&self) -> Response<Body> {
        let phi = self.clarity.phi();
        let (database, keys) = tokio::join!(phi.store().ping(), phi.keys().check());
        let state = |r: &clarity_core::Result<()>| if r.is_ok() { "ok" } else { "unavailable" };
        if let Err(e) = &database {
            tracing::warn!(error = %e, "readiness: database unavailable");
        }
        if let Err(e) = &keys {
            tracing::warn!(error = %e, "readiness: key provider unavailable");
        }
        let audit = self.clarity.audit_running();
        let ready = database.is_ok() && keys.is_ok() && audit;
        let status = if ready {
            StatusCode::OK
        } else {
            StatusCode::SERVICE_UNAVAILABLE
        };
        json_response(
            status,
            &json!({
                "status": if ready { "ready" } else { "not_ready" },
                "checks": {
                    "database": state(&database),
                    "keys": state(&keys),
                    "audit": if audit { "ok" } else { "unavailable" },
                },
            }),
        )
    }
}

impl Service<Request<Incoming>> for ConnectionService {
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = std::pin::Pin<
        Box<dyn std::future::Future<Output = Result<Self::Response, Self::Error>> + Send>,
    >;

    fn call(&self, req: Request<Incoming>) -> Self::Future {
        let this = self.clone();
        Box::pin(async move {
            let started = Instant::now();
            let request_id = uuid::Uuid::new_v4().to_string();
            let method = req.method().clone();
            let (route, mut response) = this.router.route(req, &request_id).await;
            finish(&mut response, &request_id);
            tracing::info!(
                request_id,
                method = %method,
                route,
                status = response.status().as_u16(),
                latency_us = started.elapsed().as_micros() as u64,
                client = %this.peer.ip(),
                "request"
            );
            Ok(response)
        })
    }
}

/// Largest request body accepted, in bytes.
const MAX_BODY: usize = 64 * 1024;

impl Router {
    /// `POST /v1/setup`: the first admin, with the one-time setup code.
    async fn setup(&self, req: Request<Incoming>, rid: &str) -> Response<Body> {
        let body = match read_body(req, rid).await {
            Ok(body) => body,
            Err(resp) => return resp,
        };
        let request: clarity_core::service::SetupRequest = match serde_json::from_slice(&body) {
            Ok(r) => r,
            Err(_) => {
                return error(
                    StatusCode::BAD_REQUEST,
                    "invalid_input",
                    "body must be {\"setup_code\", \"email\", \"password\"} as JSON",
                    rid,
                );
            }
        };
        match self.clarity.setup(request).await {
            Ok(user) => json_response(StatusCode::CREATED, &json!(user)),
            Err(e) => core_error(&e, rid),
        }
    }
}

/// The body, at most [`MAX_BODY`] bytes, or the error response to send.
async fn read_body(req: Request<Incoming>, rid: &str) -> Result<Bytes, Response<Body>> {
    use http_body_util::BodyExt;
    let limited = http_body_util::Limited::new(req.into_body(), MAX_BODY);
    match limited.collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(_) => Err(error(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            "request body is too large or was cut off",
            rid,
        )),
    }
}

/// The response for a core error: a status by kind, and a message that
/// carries no internal detail (S-ERR-1).
fn core_error(err: &clarity_core::Error, rid: &str) -> Response<Body> {
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
    if let clarity_core::Error::RateLimited { retry_after_secs } = err {
        response.headers_mut().insert(
            http::header::RETRY_AFTER,
            HeaderValue::from(*retry_after_secs),
        );
    }
    response
}

/// `None` for GET/HEAD, a 405 otherwise.
fn only_get(method: &Method, rid: &str) -> Option<Response<Body>> {
    if method == Method::GET || method == Method::HEAD {
        None
    } else {
        let mut resp = error(
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
            "this route accepts GET only",
            rid,
        );
        resp.headers_mut()
            .insert(http::header::ALLOW, HeaderValue::from_static("GET, HEAD"));
        Some(resp)
    }
}

fn live() -> Response<Body> {
    json_response(StatusCode::OK, &json!({ "status": "live" }))
}

fn json_response(status: StatusCode, value: &serde_json::Value) -> Response<Body> {
    let mut resp = Response::new(Full::new(Bytes::from(value.to_string())));
    *resp.status_mut() = status;
    resp.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    resp
}

/// An error response in the API's error shape.
fn error(status: StatusCode, code: &str, message: &str, request_id: &str) -> Response<Body> {
    json_response(
        status,
        &json!({ "error": { "code": code, "message": message, "request_id": request_id } }),
    )
}

/// Adds the request id header and the security headers.
fn finish(response: &mut Response<Body>, request_id: &str) {
    let headers = response.headers_mut();
    for (name, value) in SECURITY_HEADERS {
        headers.insert(name, HeaderValue::from_static(value));
    }
    if let Ok(value) = HeaderValue::from_str(request_id) {
        headers.insert(REQUEST_ID, value);
    }
}
