//! Service accounts over HTTP: `POST /v1/service-accounts`,
//! `POST /v1/service-accounts/{id}/secret`, `DELETE /v1/service-accounts/{id}`
//! (admins), and the OAuth 2.0 token endpoint `POST /v1/auth/token`
//! (client-credentials grant, RFC 6749 §4.4, with its own error bodies, §5.2).

use base64::Engine;
use clarity_core::crypto::SecretString;
use clarity_core::service::{NewServiceAccount, SecretRotation};
use http::header::{AUTHORIZATION, CONTENT_TYPE, RETRY_AFTER, WWW_AUTHENTICATE};
use http::{HeaderValue, Request, StatusCode};
use hyper::body::Incoming;
use serde_json::json;

use super::Ctx;
use super::caller::principal;
use super::input::{MAX_PUBLIC_BODY, body_up_to, id, json_body};
use super::reply::{Reply, json, no_content};

pub(super) async fn create(ctx: &Ctx, req: Request<Incoming>) -> Reply {
    let p = principal(ctx, &req).await?;
    let account: NewServiceAccount = json_body(req).await?;
    let created = ctx.clarity.create_service_account(&p, account).await?;
    Ok(json(StatusCode::CREATED, &created))
}

pub(super) async fn rotate(ctx: &Ctx, req: Request<Incoming>, account: &str) -> Reply {
    let p = principal(ctx, &req).await?;
    let account = id(account)?;
    // The body is optional: none (or an empty one) asks for the defaults.
    let body = body_up_to(req, MAX_PUBLIC_BODY).await?;
    let rotation: SecretRotation = if body.is_empty() {
        SecretRotation::default()
    } else {
        let text = std::str::from_utf8(&body)
            .map_err(|_| super::reply::ApiError::bad_request("request body is not valid UTF-8"))?;
        clarity_core::model::parse_json(text)?
    };
    let rotated = ctx
        .clarity
        .rotate_service_secret(&p, account, rotation)
        .await?;
    Ok(json(StatusCode::OK, &rotated))
}

pub(super) async fn delete(ctx: &Ctx, req: Request<Incoming>, account: &str) -> Reply {
    let p = principal(ctx, &req).await?;
    ctx.clarity.delete_service_account(&p, id(account)?).await?;
    Ok(no_content())
}

/// An OAuth error response (RFC 6749 §5.2): a code from the RFC and a
/// description that helps a client author, never a value sent.
fn oauth_error(status: StatusCode, error: &str, description: &str) -> Reply {
    let mut response = json(
        status,
        &json!({ "error": error, "error_description": description }),
    );
    if status == StatusCode::UNAUTHORIZED {
        response.headers_mut().insert(
            WWW_AUTHENTICATE,
            HeaderValue::from_static("Basic realm=\"clarity\""),
        );
    }
    Ok(response)
}

/// Whether the request's body is declared `application/x-www-form-urlencoded`
/// (media types compare case-insensitively; parameters are ignored).
pub(super) fn is_form(req: &Request<Incoming>) -> bool {
    req.headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.split(';').next().is_some_and(|t| {
                t.trim()
                    .eq_ignore_ascii_case("application/x-www-form-urlencoded")
            })
        })
}

/// The client's credentials from HTTP Basic (RFC 6749 §2.3.1: each part
/// form-encoded, then joined by `:` and base64-encoded).
fn basic_credentials(header: &str) -> Option<(String, SecretString)> {
    let (scheme, encoded) = header.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()?;
    let text = zeroize::Zeroizing::new(String::from_utf8(decoded).ok()?);
    let (id, secret) = text.split_once(':')?;
    let unescape = |part: &str| -> String {
        form_urlencoded::parse(format!("v={part}").as_bytes())
            .next()
            .map(|(_, v)| v.into_owned())
            .unwrap_or_default()
    };
    Some((unescape(id), SecretString::new(unescape(secret))))
}

/// `POST /v1/auth/token`: the client-credentials grant.
pub(super) async fn token(ctx: &Ctx, req: Request<Incoming>) -> Reply {
    if !is_form(&req) {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "the body must be application/x-www-form-urlencoded",
        );
    }
    let basic = match req.headers().get(AUTHORIZATION) {
        Some(value) => match value.to_str().ok().and_then(basic_credentials) {
            Some(credentials) => Some(credentials),
            None => {
                return oauth_error(
                    StatusCode::UNAUTHORIZED,
                    "invalid_client",
                    "client authentication failed",
                );
            }
        },
        None => None,
    };
    let body = body_up_to(req, MAX_PUBLIC_BODY).await?;
    let mut grant_type = None;
    let mut form_id = None;
    let mut form_secret = None;
    for (name, value) in form_urlencoded::parse(&body) {
        // RFC 6749 §3.1: a parameter sent without a value is as if omitted.
        if value.is_empty() {
            continue;
        }
        let slot = match name.as_ref() {
            "grant_type" => &mut grant_type,
            "client_id" => &mut form_id,
            "client_secret" => &mut form_secret,
            "scope" => {
                return oauth_error(
                    StatusCode::BAD_REQUEST,
                    "invalid_scope",
                    "scopes are not used: a service account's roles decide what it may do",
                );
            }
            _ => continue,
        };
        if slot.replace(value.into_owned()).is_some() {
            return oauth_error(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                "a parameter is repeated",
            );
        }
    }
    match grant_type.as_deref() {
        None => {
            return oauth_error(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                "grant_type is required",
            );
        }
        Some("client_credentials") => {}
        Some(_) => {
            return oauth_error(
                StatusCode::BAD_REQUEST,
                "unsupported_grant_type",
                "only grant_type=client_credentials is supported",
            );
        }
    }
    let (client_id, client_secret) = match (basic, form_id, form_secret) {
        (Some(basic), None, None) => basic,
        (None, Some(id), Some(secret)) => (id, SecretString::new(secret)),
        (Some(_), _, _) => {
            return oauth_error(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                "use one client authentication method: HTTP Basic or the form fields",
            );
        }
        (None, _, _) => {
            return oauth_error(
                StatusCode::UNAUTHORIZED,
                "invalid_client",
                "client authentication is required: HTTP Basic, or client_id and client_secret",
            );
        }
    };
    let granted = ctx
        .clarity
        .client_credentials(&client_id, &client_secret, Some(ctx.peer.ip()))
        .await;
    match granted {
        Ok(token) => {
            let mut response = json(StatusCode::OK, &token);
            response
                .headers_mut()
                .insert(http::header::PRAGMA, HeaderValue::from_static("no-cache"));
            Ok(response)
        }
        Err(clarity_core::Error::Unauthenticated) => oauth_error(
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            "client authentication failed",
        ),
        Err(clarity_core::Error::RateLimited { retry_after_secs }) => {
            let mut response = oauth_error(
                StatusCode::TOO_MANY_REQUESTS,
                "invalid_client",
                "too many attempts; try again later",
            )?;
            response
                .headers_mut()
                .insert(RETRY_AFTER, HeaderValue::from(retry_after_secs));
            Ok(response)
        }
        Err(other) => Err(other.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn basic_credentials_are_form_decoded() {
        let header = format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode("my%3Aid:s3cr%2Bt+x")
        );
        let (id, secret) = basic_credentials(&header).expect("credentials");
        assert_eq!(id, "my:id");
        assert_eq!(secret.expose(), "s3cr+t x");
        assert!(basic_credentials("Bearer abc").is_none());
        assert!(basic_credentials("Basic !!!").is_none());
        let no_colon = format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode("nocolon")
        );
        assert!(basic_credentials(&no_colon).is_none());
    }
}
