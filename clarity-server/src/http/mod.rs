//! The HTTP layer: thin. It reads requests, asks the core, and writes
//! responses; every decision is the core's.

mod accounts;
mod api;
mod audit;
mod caller;
mod identities;
mod input;
mod passwords;
mod patient_view;
mod reply;
mod uncancelled;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use clarity_core::Clarity;
use http::{Method, Request, Response, StatusCode};
use hyper::body::Incoming;
use hyper::service::Service;
use serde_json::json;

use self::reply::{Body, Reply, error, finish, json};
use self::uncancelled::Uncancelled;

/// Dispatches requests to handlers. Cheap to clone per connection.
#[derive(Debug, Clone)]
pub(crate) struct Router {
    clarity: Arc<Clarity>,
    metrics: Arc<crate::metrics::Metrics>,
    /// Whether connections are TLS (then responses carry HSTS).
    tls: bool,
}

/// The per-connection service.
#[derive(Debug, Clone)]
pub(crate) struct ConnectionService {
    router: Router,
    peer: SocketAddr,
    /// Set once a request head has arrived (S-NET-1: a connection without
    /// one within the header timeout is closed).
    first_request: Arc<std::sync::atomic::AtomicBool>,
}

/// What a handler knows about its request besides the request itself.
#[derive(Debug)]
pub(crate) struct Ctx {
    pub(crate) clarity: Arc<Clarity>,
    pub(crate) request_id: String,
    pub(crate) peer: SocketAddr,
    /// The authenticated caller, once known (for the request log line).
    pub(crate) actor: std::sync::Mutex<Option<uuid::Uuid>>,
    /// The rate-limit class of the route, once resolved.
    pub(crate) class: std::sync::OnceLock<clarity_core::cache::RouteClass>,
}

impl Router {
    pub(crate) fn new(clarity: Arc<Clarity>, tls: bool) -> Self {
        Router {
            metrics: Arc::new(crate::metrics::Metrics::new(clarity.stage_times())),
            clarity,
            tls,
        }
    }

    /// The service of one connection from `peer`; it sets `first_request`
    /// when a request head has arrived.
    pub(crate) fn service(
        &self,
        peer: SocketAddr,
        first_request: Arc<std::sync::atomic::AtomicBool>,
    ) -> ConnectionService {
        ConnectionService {
            router: self.clone(),
            peer,
            first_request,
        }
    }

    async fn ready(&self) -> Response<Body> {
        let (database, keys) = self.clarity.readiness().await;
        let state = |r: &clarity_core::Result<()>| if r.is_ok() { "ok" } else { "unavailable" };
        if let Err(e) = &database {
            tracing::warn!(error = %e, "readiness: database unavailable");
        }
        if let Err(e) = &keys {
            tracing::warn!(error = %e, "readiness: key provider unavailable");
        }
        let audit = self.clarity.audit_running();
        let ready = database.is_ok() && keys.is_ok() && audit;
        // Caching degrades without stopping service: reported, still ready.
        let caching = self.clarity.probe_cache_status().await;
        let cache = if caching.healthy() { "ok" } else { "degraded" };
        let status = if ready {
            StatusCode::OK
        } else {
            StatusCode::SERVICE_UNAVAILABLE
        };
        json(
            status,
            &json!({
                "status": match (ready, caching.healthy()) {
                    (false, _) => "not_ready",
                    (true, true) => "ready",
                    (true, false) => "degraded",
                },
                "checks": {
                    "database": state(&database),
                    "keys": state(&keys),
                    "audit": if audit { "ok" } else { "unavailable" },
                    "cache": cache,
                },
                "cache": {
                    "backend": caching.backend,
                    "invalidation_channel": caching.channel.kind.as_str(),
                    "invalidation_channel_up": caching.channel.up,
                    "rate_limiter": caching.rate_limiter.unwrap_or("off"),
                    "rate_limiter_healthy": caching.rate_limiter_healthy,
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
        self.first_request
            .store(true, std::sync::atomic::Ordering::Relaxed);
        let this = self.clone();
        Box::pin(async move {
            let started = Instant::now();
            let method = req.method().clone();
            let ctx = Arc::new(Ctx {
                clarity: Arc::clone(&this.router.clarity),
                request_id: uuid::Uuid::new_v4().to_string(),
                peer: this.peer,
                actor: std::sync::Mutex::new(None),
                class: std::sync::OnceLock::new(),
            });
            let router = this.router.clone();
            let peer = this.peer;
            let failed = Arc::clone(&ctx);
            // The handler, answer, metrics and log line included, cannot be
            // cancelled: if the client goes away, it finishes as a task of
            // its own (audit event included) and is counted, instead of
            // stopping between a commit and its event. Until then it runs
            // on the connection's task, with no task or wake-up of its own.
            let handler = Uncancelled::new(async move {
                let routed: Routed = async {
                    match (req.method(), req.uri().path()) {
                        (&Method::GET | &Method::HEAD, "/health/live") => (
                            "/health/live",
                            Ok(json(StatusCode::OK, &json!({"status": "live"}))),
                        ),
                        (&Method::GET | &Method::HEAD, "/health/ready") => {
                            ("/health/ready", Ok(router.ready().await))
                        }
                        (&Method::GET | &Method::HEAD, "/metrics") => {
                            let text = router.metrics.render(&router.clarity);
                            let mut response = http::Response::new(http_body_util::Full::new(
                                bytes::Bytes::from(text),
                            ));
                            response.headers_mut().insert(
                                http::header::CONTENT_TYPE,
                                http::HeaderValue::from_static(
                                    "application/openmetrics-text; version=1.0.0; charset=utf-8",
                                ),
                            );
                            ("/metrics", Ok(response))
                        }
                        (&Method::GET | &Method::HEAD, "/openapi.json") => {
                            let mut response = http::Response::new(http_body_util::Full::new(
                                bytes::Bytes::from_static(OPENAPI.as_bytes()),
                            ));
                            response.headers_mut().insert(
                                http::header::CONTENT_TYPE,
                                http::HeaderValue::from_static("application/json"),
                            );
                            ("/openapi.json", Ok(response))
                        }
                        (_, "/health/live" | "/health/ready" | "/openapi.json" | "/metrics") => (
                            "/health",
                            Ok(method_not_allowed(&ctx.request_id, "GET, HEAD")),
                        ),
                        _ => api::dispatch(&ctx, req).await,
                    }
                }
                .await;
                respond(&router, &ctx, peer, &method, started, routed)
            });
            let response = handler.await.unwrap_or_else(|_| {
                let mut response =
                    reply::ApiError::Core(clarity_core::Error::internal("request handler failed"))
                        .response(&failed.request_id);
                finish(&mut response, &failed.request_id, this.router.tls);
                response
            });
            Ok(response)
        })
    }
}

/// Turns a handler's result into the response, and counts and logs it.
fn respond(
    router: &Router,
    ctx: &Ctx,
    peer: SocketAddr,
    method: &Method,
    started: Instant,
    (route, result): Routed,
) -> Response<Body> {
    let request_id = ctx.request_id.as_str();
    let mut response = match result {
        Ok(response) => response,
        Err(e) => e.response(request_id),
    };
    if *method == Method::HEAD {
        *response.body_mut() = http_body_util::Full::new(bytes::Bytes::new());
    }
    finish(&mut response, request_id, router.tls);
    router
        .metrics
        .request(route, method, response.status().as_u16(), started.elapsed());
    let actor = *ctx.actor.lock().unwrap_or_else(|p| p.into_inner());
    tracing::info!(
        request_id,
        method = %method,
        route,
        actor = actor.map(|a| a.to_string()),
        status = response.status().as_u16(),
        latency_us = started.elapsed().as_micros() as u64,
        client = %peer.ip(),
        "request"
    );
    response
}

/// `405` with the methods the route accepts.
fn method_not_allowed(request_id: &str, allow: &str) -> Response<Body> {
    let mut resp = error(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "this route does not accept this method",
        request_id,
    );
    if let Ok(allow) = http::HeaderValue::from_str(allow) {
        resp.headers_mut().insert(http::header::ALLOW, allow);
    }
    resp
}

/// The OpenAPI 3.1 document of this API, served at `/openapi.json`.
pub(crate) const OPENAPI: &str = include_str!("../../openapi.json");

/// A handler result with its route template (for logs; never the raw path).
pub(crate) type Routed = (&'static str, Reply);
