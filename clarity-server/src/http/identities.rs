//! Identity providers over HTTP: the OpenID Connect back-channel logout
//! endpoint `POST /v1/auth/oidc/backchannel-logout` (called by a provider),
//! and the links of users to providers' subjects (admins):
//! `GET`/`POST /v1/users/{id}/identities`,
//! `DELETE /v1/users/{id}/identities/{link_id}`.

use clarity_core::model::RequestContext;
use clarity_core::service::IdentityLink;
use http::header::CACHE_CONTROL;
use http::{HeaderValue, Request, StatusCode};
use hyper::body::Incoming;
use serde_json::json;

use super::Ctx;
use super::accounts::is_form;
use super::caller::principal;
use super::input::{MAX_PUBLIC_BODY, body_up_to, id, json_body};
use super::reply::{Reply, json, no_content};

/// An error body of the back-channel logout endpoint (Back-Channel Logout
/// 1.0 §2.8: 400 with an OAuth-style error), never saying why a token was
/// refused.
fn logout_error(status: StatusCode, error: &str, description: &str) -> Reply {
    let mut response = json(
        status,
        &json!({ "error": error, "error_description": description }),
    );
    response
        .headers_mut()
        .insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(response)
}

/// `POST /v1/auth/oidc/backchannel-logout`: a provider ends sessions.
pub(super) async fn backchannel_logout(ctx: &Ctx, req: Request<Incoming>) -> Reply {
    if !is_form(&req) {
        return logout_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "the body must be application/x-www-form-urlencoded",
        );
    }
    let body = body_up_to(req, MAX_PUBLIC_BODY).await?;
    let mut tokens = form_urlencoded::parse(&body)
        .filter(|(name, _)| name == "logout_token")
        .map(|(_, value)| value.into_owned());
    let (Some(token), None) = (tokens.next(), tokens.next()) else {
        return logout_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "exactly one logout_token is required",
        );
    };
    let context = RequestContext {
        purpose: None,
        client_address: Some(ctx.peer.ip()),
        request_id: Some(ctx.request_id.clone()),
    };
    match ctx.clarity.backchannel_logout(&token, context).await {
        Ok(()) => {
            let mut response = no_content();
            response
                .headers_mut()
                .insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
            *response.status_mut() = StatusCode::OK;
            Ok(response)
        }
        Err(e) if e.kind() == clarity_core::ErrorKind::InvalidInput => logout_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "the logout token was refused",
        ),
        Err(e) => Err(e.into()),
    }
}

/// `GET /v1/users/{id}/identities`.
pub(super) async fn list(ctx: &Ctx, req: Request<Incoming>, user: &str) -> Reply {
    let p = principal(ctx, &req).await?;
    let links = ctx.clarity.list_identities(&p, id(user)?).await?;
    Ok(json(StatusCode::OK, &json!({ "items": links })))
}

/// `POST /v1/users/{id}/identities`.
pub(super) async fn link(ctx: &Ctx, req: Request<Incoming>, user: &str) -> Reply {
    let p = principal(ctx, &req).await?;
    let user = id(user)?;
    let link: IdentityLink = json_body(req).await?;
    Ok(json(
        StatusCode::CREATED,
        &ctx.clarity.link_identity(&p, user, link).await?,
    ))
}

/// `DELETE /v1/users/{id}/identities/{link_id}`.
pub(super) async fn unlink(ctx: &Ctx, req: Request<Incoming>, user: &str, link: &str) -> Reply {
    let p = principal(ctx, &req).await?;
    ctx.clarity
        .unlink_identity(&p, id(user)?, id(link)?)
        .await?;
    Ok(no_content())
}
