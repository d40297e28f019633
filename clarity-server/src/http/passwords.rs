//! Passwords and second factors people can manage over HTTP:
//! `POST /v1/me/password` (one's own, with the current one),
//! `POST /v1/users/{id}/password-reset` and `DELETE /v1/users/{id}/mfa`
//! (admins), and `POST /v1/auth/password-reset` (a new password set with
//! an admin's one-time reset code; anyone may call it, throttled like login).

use clarity_core::service::{PasswordChange, PasswordResetRequest};
use http::{Request, StatusCode};
use hyper::body::Incoming;

use super::Ctx;
use super::caller::principal;
use super::input::{id, json_body, public_json_body};
use super::reply::{Reply, json, no_content};

pub(super) async fn change_own(ctx: &Ctx, req: Request<Incoming>) -> Reply {
    let p = principal(ctx, &req).await?;
    let body: PasswordChange = json_body(req).await?;
    ctx.clarity
        .change_password(&p, &body.current_password, &body.new_password)
        .await?;
    Ok(no_content())
}

pub(super) async fn reset(ctx: &Ctx, req: Request<Incoming>, user: &str) -> Reply {
    let p = principal(ctx, &req).await?;
    let reset = ctx.clarity.reset_password(&p, id(user)?).await?;
    Ok(json(StatusCode::CREATED, &reset))
}

pub(super) async fn complete_reset(ctx: &Ctx, req: Request<Incoming>) -> Reply {
    let body: PasswordResetRequest = public_json_body(req).await?;
    ctx.clarity
        .complete_password_reset(body, Some(ctx.peer.ip()))
        .await?;
    Ok(no_content())
}

pub(super) async fn reset_mfa(ctx: &Ctx, req: Request<Incoming>, user: &str) -> Reply {
    let p = principal(ctx, &req).await?;
    Ok(json(
        StatusCode::OK,
        &ctx.clarity.reset_mfa(&p, id(user)?).await?,
    ))
}
