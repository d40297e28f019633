//! Routing, responses and the headers every response carries.
//!
//! The error body is `{"error":{"code","message","request_id"}}`; messages
//! are generic and carry no internal detail (S-ERR-1).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use clarity_core::store::PhiStore;
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
    phi: Arc<PhiStore>,
}

/// The per-connection service.
#[derive(Debug, Clone)]
pub(crate) struct ConnectionService {
    router: Router,
    peer: SocketAddr,
}

impl Router {
    pub(crate) fn new(phi: Arc<PhiStore>) -> Self {
        Router { phi }
    }

    pub(crate) fn service(&self, peer: SocketAddr) -> ConnectionService {
        ConnectionService {
            router: self.clone(),
            peer,
        }
    }

    async fn route(&self, req: &Request<Incoming>, rid: &str) -> (&'static str, Response<Body>) {
        let method = req.method();
        match req.uri().path() {
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
        let (database, keys) = tokio::join!(self.phi.store().ping(), self.phi.keys().check());
        let state = |r: &clarity_core::Result<()>| if r.is_ok() { "ok" } else { "unavailable" };
        if let Err(e) = &database {
            tracing::warn!(error = %e, "readiness: database unavailable");
        }
        if let Err(e) = &keys {
            tracing::warn!(error = %e, "readiness: key provider unavailable");
        }
        let ready = database.is_ok() && keys.is_ok();
        let status = if ready {
            StatusCode::OK
        } else {
            StatusCode::SERVICE_UNAVAILABLE
        };
        json_response(
            status,
            &json!({
                "status": if ready { "ready" } else { "not_ready" },
                "checks": { "database": state(&database), "keys": state(&keys) },
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
            let (route, mut response) = this.router.route(&req, &request_id).await;
            finish(&mut response, &request_id);
            tracing::info!(
                request_id,
                method = %req.method(),
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
