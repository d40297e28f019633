//! Who is calling: the bearer token authenticated with this request's
//! context for the audit trail, and the caller's own rate limit.

use clarity_core::access::Principal;
use clarity_core::cache::RateKey;
use clarity_core::model::RequestContext;
use http::Request;
use hyper::body::Incoming;

use super::Ctx;
use super::input::{bearer, purpose};
use super::reply::ApiError;

/// The authenticated caller, with this request's context for the audit trail.
pub(super) async fn principal(ctx: &Ctx, req: &Request<Incoming>) -> Result<Principal, ApiError> {
    let context = RequestContext {
        purpose: Some(purpose(req)?),
        client_address: Some(ctx.peer.ip()),
        request_id: Some(ctx.request_id.clone()),
    };
    let principal = ctx.clarity.authenticate_with(bearer(req)?, context).await?;
    *ctx.actor.lock().unwrap_or_else(|p| p.into_inner()) = Some(principal.user_id());
    if let Some(class) = ctx.class.get() {
        ctx.clarity
            .rate_limit(*class, RateKey::Account(principal.user_id()))
            .await?;
    }
    Ok(principal)
}
