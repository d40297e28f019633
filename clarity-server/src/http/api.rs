//! The `/v1` API: routing on (method, path) and one small handler per
//! operation. Handlers translate; the core decides.

use clarity_core::cache::{RateKey, RouteClass};
use clarity_core::model::{PatientProfile, PatientSearch};
use clarity_core::service::{
    BreakGlassRequest, CareTeamAssignment, LoginRequest, MfaCode, NewRecord, NewUser, RecordUpdate,
    RefreshRequest, SetupRequest, UserUpdate,
};
use http::{Method, Request, StatusCode};
use hyper::body::Incoming;
use serde_json::json;

use super::caller::principal;
use super::input::{id, if_match, json_body, page, param, public_json_body, query};
use super::reply::{ApiError, Reply, json, no_content, versioned};
use super::{
    Ctx, Routed, accounts, audit, identities, method_not_allowed, passwords, patient_view,
};

/// Every `/v1` route: (method, path template). `{...}` segments are ids.
/// The OpenAPI document lists exactly these (a test holds them together).
pub(crate) const ROUTES: &[(Method, &str)] = &[
    (Method::POST, "/v1/setup"),
    (Method::POST, "/v1/auth/login"),
    (Method::POST, "/v1/auth/refresh"),
    (Method::POST, "/v1/auth/token"),
    (Method::POST, "/v1/auth/oidc/backchannel-logout"),
    (Method::POST, "/v1/auth/logout"),
    (Method::POST, "/v1/auth/mfa/enroll"),
    (Method::POST, "/v1/auth/mfa/confirm"),
    (Method::POST, "/v1/auth/password-reset"),
    (Method::GET, "/v1/me"),
    (Method::POST, "/v1/me/password"),
    (Method::POST, "/v1/users"),
    (Method::GET, "/v1/users"),
    (Method::GET, "/v1/users/{id}"),
    (Method::PATCH, "/v1/users/{id}"),
    (Method::POST, "/v1/users/{id}/password-reset"),
    (Method::DELETE, "/v1/users/{id}/mfa"),
    (Method::GET, "/v1/users/{id}/identities"),
    (Method::POST, "/v1/users/{id}/identities"),
    (Method::DELETE, "/v1/users/{id}/identities/{link_id}"),
    (Method::POST, "/v1/service-accounts"),
    (Method::POST, "/v1/service-accounts/{id}/secret"),
    (Method::DELETE, "/v1/service-accounts/{id}"),
    (Method::POST, "/v1/patients"),
    (Method::GET, "/v1/patients"),
    (Method::POST, "/v1/patients/search"),
    (Method::GET, "/v1/patients/{id}"),
    (Method::PUT, "/v1/patients/{id}"),
    (Method::DELETE, "/v1/patients/{id}"),
    (Method::POST, "/v1/patients/{id}/care-team"),
    (Method::DELETE, "/v1/patients/{id}/care-team/{user_id}"),
    (Method::GET, "/v1/patients/{id}/access-log"),
    (Method::POST, "/v1/patients/{id}/disclosures"),
    (Method::GET, "/v1/patients/{id}/disclosures"),
    (Method::GET, "/v1/patients/{id}/disclosures/accounting"),
    (Method::POST, "/v1/patients/{id}/records"),
    (Method::GET, "/v1/patients/{id}/records"),
    (Method::GET, "/v1/records/{id}"),
    (Method::PUT, "/v1/records/{id}"),
    (Method::DELETE, "/v1/records/{id}"),
    (Method::POST, "/v1/break-glass"),
    (Method::GET, "/v1/break-glass/grants"),
    (Method::POST, "/v1/break-glass/grants/{id}/review"),
    (Method::GET, "/v1/research/patients"),
    (Method::GET, "/v1/audit/events"),
    (Method::GET, "/v1/audit/verify"),
    (Method::GET, "/v1/audit/export"),
    (Method::GET, "/v1/admin/keys"),
    (Method::POST, "/v1/admin/keys/rotate"),
];

/// The most segments any route has; longer paths match none.
const MAX_SEGMENTS: usize = 8;

/// A path cut at each `/` once, into at most [`MAX_SEGMENTS`] segments
/// (`None`: more than that, so no route).
fn segments(path: &str) -> Option<([&str; MAX_SEGMENTS], usize)> {
    let mut parts = [""; MAX_SEGMENTS];
    let mut count = 0;
    for part in path.split('/') {
        *parts.get_mut(count)? = part;
        count += 1;
    }
    Some((parts, count))
}

/// Every route's template cut into segments, once per process.
static ROUTE_SEGMENTS: std::sync::LazyLock<Vec<([&str; MAX_SEGMENTS], usize)>> =
    std::sync::LazyLock::new(|| {
        ROUTES
            .iter()
            .map(|(_, template)| segments(template).expect("a route has few segments"))
            .collect()
    });

/// The path's `{...}` values when `path` has `template`'s shape.
fn matches<'p>(template: &[&str], path: &[&'p str]) -> Option<Vec<&'p str>> {
    if template.len() != path.len() {
        return None;
    }
    let mut params = Vec::new();
    for (part, actual) in template.iter().zip(path) {
        if part.starts_with('{') {
            if actual.is_empty() {
                return None;
            }
            params.push(*actual);
        } else if part != actual {
            return None;
        }
    }
    Some(params)
}

/// The route for `method` and `path`: `Ok` with the template and parameters,
/// or `Err` with the methods the path accepts (`None`: no such path).
pub(crate) fn resolve<'p>(
    method: &Method,
    path: &'p str,
) -> Result<(&'static str, Vec<&'p str>), Option<String>> {
    let (parts, count) = segments(path).ok_or(None)?;
    let parts = &parts[..count];
    let mut allowed = Vec::new();
    for ((route_method, template), (shape, len)) in ROUTES.iter().zip(ROUTE_SEGMENTS.iter()) {
        if let Some(params) = matches(&shape[..*len], parts) {
            if route_method == method {
                return Ok((template, params));
            }
            allowed.push(route_method.as_str());
        }
    }
    Err((!allowed.is_empty()).then(|| allowed.join(", ")))
}

/// Routes a `/v1` request.
pub(crate) async fn dispatch(ctx: &Ctx, req: Request<Incoming>) -> Routed {
    let path = req.uri().path().to_string();
    let method = req.method().clone();
    let (template, params) = match resolve(&method, &path) {
        Ok(found) => found,
        Err(Some(allow)) => {
            return (
                "method_not_allowed",
                Ok(method_not_allowed(&ctx.request_id, &allow)),
            );
        }
        Err(None) => {
            return (
                "unknown",
                Err(ApiError::Http {
                    status: StatusCode::NOT_FOUND,
                    code: "not_found",
                    message: "no such route".into(),
                }),
            );
        }
    };
    if let Err(e) = limit_address(ctx, &method, template).await {
        return (template, Err(e));
    }
    let p = |i: usize| params.get(i).copied().unwrap_or_default();
    use Method as M;
    let reply = match (&method, template) {
        (&M::POST, "/v1/setup") => setup(ctx, req).await,
        (&M::POST, "/v1/auth/login") => login(ctx, req).await,
        (&M::POST, "/v1/auth/refresh") => refresh(ctx, req).await,
        (&M::POST, "/v1/auth/token") => accounts::token(ctx, req).await,
        (&M::POST, "/v1/auth/oidc/backchannel-logout") => {
            identities::backchannel_logout(ctx, req).await
        }
        (&M::POST, "/v1/auth/logout") => logout(ctx, req).await,
        (&M::POST, "/v1/auth/mfa/enroll") => mfa_enroll(ctx, req).await,
        (&M::POST, "/v1/auth/mfa/confirm") => mfa_confirm(ctx, req).await,
        (&M::POST, "/v1/auth/password-reset") => passwords::complete_reset(ctx, req).await,
        (&M::GET, "/v1/me") => me(ctx, req).await,
        (&M::POST, "/v1/me/password") => passwords::change_own(ctx, req).await,
        (&M::POST, "/v1/users") => create_user(ctx, req).await,
        (&M::GET, "/v1/users") => list_users(ctx, req).await,
        (&M::GET, "/v1/users/{id}") => get_user(ctx, req, p(0)).await,
        (&M::PATCH, "/v1/users/{id}") => update_user(ctx, req, p(0)).await,
        (&M::POST, "/v1/users/{id}/password-reset") => passwords::reset(ctx, req, p(0)).await,
        (&M::DELETE, "/v1/users/{id}/mfa") => passwords::reset_mfa(ctx, req, p(0)).await,
        (&M::GET, "/v1/users/{id}/identities") => identities::list(ctx, req, p(0)).await,
        (&M::POST, "/v1/users/{id}/identities") => identities::link(ctx, req, p(0)).await,
        (&M::DELETE, "/v1/users/{id}/identities/{link_id}") => {
            identities::unlink(ctx, req, p(0), p(1)).await
        }
        (&M::POST, "/v1/service-accounts") => accounts::create(ctx, req).await,
        (&M::POST, "/v1/service-accounts/{id}/secret") => accounts::rotate(ctx, req, p(0)).await,
        (&M::DELETE, "/v1/service-accounts/{id}") => accounts::delete(ctx, req, p(0)).await,
        (&M::POST, "/v1/patients") => create_patient(ctx, req).await,
        (&M::GET, "/v1/patients") => list_patients(ctx, req).await,
        (&M::POST, "/v1/patients/search") => search_patients(ctx, req).await,
        (&M::GET, "/v1/patients/{id}") => get_patient(ctx, req, p(0)).await,
        (&M::PUT, "/v1/patients/{id}") => update_patient(ctx, req, p(0)).await,
        (&M::DELETE, "/v1/patients/{id}") => erase_patient(ctx, req, p(0)).await,
        (&M::POST, "/v1/patients/{id}/care-team") => add_care_team(ctx, req, p(0)).await,
        (&M::DELETE, "/v1/patients/{id}/care-team/{user_id}") => {
            remove_care_team(ctx, req, p(0), p(1)).await
        }
        (&M::GET, "/v1/patients/{id}/access-log") => patient_view::access_log(ctx, req, p(0)).await,
        (&M::POST, "/v1/patients/{id}/disclosures") => {
            patient_view::record_disclosure(ctx, req, p(0)).await
        }
        (&M::GET, "/v1/patients/{id}/disclosures") => {
            patient_view::list_disclosures(ctx, req, p(0)).await
        }
        (&M::GET, "/v1/patients/{id}/disclosures/accounting") => {
            patient_view::accounting(ctx, req, p(0)).await
        }
        (&M::POST, "/v1/patients/{id}/records") => create_record(ctx, req, p(0)).await,
        (&M::GET, "/v1/patients/{id}/records") => list_records(ctx, req, p(0)).await,
        (&M::GET, "/v1/records/{id}") => get_record(ctx, req, p(0)).await,
        (&M::PUT, "/v1/records/{id}") => update_record(ctx, req, p(0)).await,
        (&M::DELETE, "/v1/records/{id}") => delete_record(ctx, req, p(0)).await,
        (&M::POST, "/v1/break-glass") => break_glass(ctx, req).await,
        (&M::GET, "/v1/break-glass/grants") => list_grants(ctx, req).await,
        (&M::POST, "/v1/break-glass/grants/{id}/review") => review_grant(ctx, req, p(0)).await,
        (&M::GET, "/v1/research/patients") => research(ctx, req).await,
        (&M::GET, "/v1/audit/events") => audit::events(ctx, req).await,
        (&M::GET, "/v1/audit/verify") => audit::verify(ctx, req).await,
        (&M::GET, "/v1/audit/export") => audit::export(ctx, req).await,
        (&M::GET, "/v1/admin/keys") => key_status(ctx, req).await,
        (&M::POST, "/v1/admin/keys/rotate") => rotate_keys(ctx, req).await,
        _ => Err(ApiError::Core(clarity_core::Error::internal(
            "route without a handler",
        ))),
    };
    (template, reply)
}

/// The rate-limit class of a route: authentication routes are limited per
/// client address; the others per account, by what they do.
pub(crate) fn route_class(method: &Method, template: &str) -> RouteClass {
    match (method, template) {
        // Where a secret is checked: limited per client address too.
        (
            _,
            "/v1/setup"
            | "/v1/auth/login"
            | "/v1/auth/refresh"
            | "/v1/auth/token"
            | "/v1/auth/password-reset"
            | "/v1/me/password",
        ) => RouteClass::Auth,
        // Called by an identity provider, which may end many sessions at
        // once and seldom retries: only the per-address limit of every
        // request applies (there is no account to limit per).
        (_, "/v1/auth/oidc/backchannel-logout") => RouteClass::Write,
        (_, t)
            if t.starts_with("/v1/audit/")
                || t.starts_with("/v1/admin/")
                || t.starts_with("/v1/users")
                || t.starts_with("/v1/service-accounts")
                || t.starts_with("/v1/break-glass/grants") =>
        {
            RouteClass::Admin
        }
        (&Method::GET, _) | (_, "/v1/patients/search") => RouteClass::Read,
        _ => RouteClass::Write,
    }
}

/// The per-address limits: every request, and the authentication routes.
async fn limit_address(ctx: &Ctx, method: &Method, template: &'static str) -> Result<(), ApiError> {
    let class = route_class(method, template);
    let _ = ctx.class.set(class);
    let address = RateKey::Address(ctx.peer.ip());
    ctx.clarity.rate_limit(RouteClass::Address, address).await?;
    if class == RouteClass::Auth {
        ctx.clarity.rate_limit(RouteClass::Auth, address).await?;
    }
    Ok(())
}

async fn setup(ctx: &Ctx, req: Request<Incoming>) -> Reply {
    let request: SetupRequest = public_json_body(req).await?;
    let user = ctx.clarity.setup(request).await.map_err(|e| match e {
        // Say which secret was refused, and how to get a good one.
        clarity_core::Error::Unauthenticated => ApiError::Http {
            status: StatusCode::UNAUTHORIZED,
            code: "unauthenticated",
            message: "the setup code is wrong, expired or already used, or users exist \
                      already: the server prints a new code at each start while it has no \
                      users (or run `clarity setup`)"
                .into(),
        },
        other => ApiError::from(other),
    })?;
    Ok(json(StatusCode::CREATED, &user))
}

async fn login(ctx: &Ctx, req: Request<Incoming>) -> Reply {
    let request: LoginRequest = public_json_body(req).await?;
    let tokens = ctx.clarity.login(request, Some(ctx.peer.ip())).await?;
    Ok(json(StatusCode::OK, &tokens))
}

async fn refresh(ctx: &Ctx, req: Request<Incoming>) -> Reply {
    let request: RefreshRequest = public_json_body(req).await?;
    let tokens = ctx.clarity.refresh(&request.refresh_token).await?;
    Ok(json(StatusCode::OK, &tokens))
}

async fn logout(ctx: &Ctx, req: Request<Incoming>) -> Reply {
    let p = principal(ctx, &req).await?;
    ctx.clarity.logout(&p).await?;
    Ok(no_content())
}

async fn mfa_enroll(ctx: &Ctx, req: Request<Incoming>) -> Reply {
    let p = principal(ctx, &req).await?;
    Ok(json(StatusCode::OK, &ctx.clarity.mfa_enroll(&p).await?))
}

async fn mfa_confirm(ctx: &Ctx, req: Request<Incoming>) -> Reply {
    let p = principal(ctx, &req).await?;
    let body: MfaCode = json_body(req).await?;
    Ok(json(
        StatusCode::OK,
        &ctx.clarity.mfa_confirm(&p, body.code.expose()).await?,
    ))
}

async fn me(ctx: &Ctx, req: Request<Incoming>) -> Reply {
    let p = principal(ctx, &req).await?;
    let user = ctx.clarity.get_user(&p, p.user_id()).await?;
    Ok(json(
        StatusCode::OK,
        &json!({
            "user": user,
            "session_id": p.session_id(),
            "mfa": p.mfa(),
            "identity": p.identity(),
        }),
    ))
}

async fn create_user(ctx: &Ctx, req: Request<Incoming>) -> Reply {
    let p = principal(ctx, &req).await?;
    let user: NewUser = json_body(req).await?;
    Ok(json(
        StatusCode::CREATED,
        &ctx.clarity.create_user(&p, user).await?,
    ))
}

async fn list_users(ctx: &Ctx, req: Request<Incoming>) -> Reply {
    let p = principal(ctx, &req).await?;
    let q = query(&req, &["limit", "cursor"])?;
    Ok(json(
        StatusCode::OK,
        &ctx.clarity.list_users(&p, &page(&q)?).await?,
    ))
}

async fn get_user(ctx: &Ctx, req: Request<Incoming>, user: &str) -> Reply {
    let p = principal(ctx, &req).await?;
    Ok(json(
        StatusCode::OK,
        &ctx.clarity.get_user(&p, id(user)?).await?,
    ))
}

async fn update_user(ctx: &Ctx, req: Request<Incoming>, user: &str) -> Reply {
    let p = principal(ctx, &req).await?;
    let user = id(user)?;
    let update: UserUpdate = json_body(req).await?;
    Ok(json(
        StatusCode::OK,
        &ctx.clarity.update_user(&p, user, update).await?,
    ))
}

async fn create_patient(ctx: &Ctx, req: Request<Incoming>) -> Reply {
    let p = principal(ctx, &req).await?;
    let profile: PatientProfile = json_body(req).await?;
    let patient = ctx.clarity.create_patient(&p, profile).await?;
    Ok(versioned(StatusCode::CREATED, &patient, patient.version))
}

async fn list_patients(ctx: &Ctx, req: Request<Incoming>) -> Reply {
    let p = principal(ctx, &req).await?;
    let q = query(&req, &["limit", "cursor"])?;
    Ok(json(
        StatusCode::OK,
        &ctx.clarity.list_patients(&p, &page(&q)?).await?,
    ))
}

// `POST /v1/patients/search`: lookups carry PHI (an MRN, an email, a name
// and birth date), so they travel in the body, never in the URL (S-HDR-1).
async fn search_patients(ctx: &Ctx, req: Request<Incoming>) -> Reply {
    let p = principal(ctx, &req).await?;
    let lookup = json_body::<PatientSearch>(req).await?.into_lookup()?;
    let ids = ctx.clarity.find_patients(&p, &lookup).await?;
    let mut items = Vec::with_capacity(ids.len());
    for patient in ids {
        items.push(ctx.clarity.get_patient(&p, patient).await?);
    }
    Ok(json(
        StatusCode::OK,
        &json!({ "items": items, "next_cursor": null }),
    ))
}

async fn get_patient(ctx: &Ctx, req: Request<Incoming>, patient: &str) -> Reply {
    let p = principal(ctx, &req).await?;
    let patient = ctx.clarity.get_patient(&p, id(patient)?).await?;
    Ok(versioned(StatusCode::OK, &patient, patient.version))
}

async fn update_patient(ctx: &Ctx, req: Request<Incoming>, patient: &str) -> Reply {
    let p = principal(ctx, &req).await?;
    let patient = id(patient)?;
    let version = if_match(&req)?;
    let profile: PatientProfile = json_body(req).await?;
    let updated = ctx
        .clarity
        .update_patient(&p, patient, version, profile)
        .await?;
    Ok(versioned(StatusCode::OK, &updated, updated.version))
}

async fn erase_patient(ctx: &Ctx, req: Request<Incoming>, patient: &str) -> Reply {
    let p = principal(ctx, &req).await?;
    ctx.clarity.erase_patient(&p, id(patient)?).await?;
    Ok(no_content())
}

async fn add_care_team(ctx: &Ctx, req: Request<Incoming>, patient: &str) -> Reply {
    let p = principal(ctx, &req).await?;
    let patient = id(patient)?;
    let assignment: CareTeamAssignment = json_body(req).await?;
    ctx.clarity
        .add_care_team_member(&p, patient, assignment)
        .await?;
    Ok(no_content())
}

async fn remove_care_team(ctx: &Ctx, req: Request<Incoming>, patient: &str, user: &str) -> Reply {
    let p = principal(ctx, &req).await?;
    ctx.clarity
        .remove_care_team_member(&p, id(patient)?, id(user)?)
        .await?;
    Ok(no_content())
}

async fn create_record(ctx: &Ctx, req: Request<Incoming>, patient: &str) -> Reply {
    let p = principal(ctx, &req).await?;
    let patient = id(patient)?;
    let body: NewRecord = json_body(req).await?;
    let record = ctx
        .clarity
        .create_record(&p, patient, &body.kind, body.data)
        .await?;
    Ok(versioned(StatusCode::CREATED, &record, record.version))
}

async fn list_records(ctx: &Ctx, req: Request<Incoming>, patient: &str) -> Reply {
    let p = principal(ctx, &req).await?;
    let q = query(&req, &["limit", "cursor"])?;
    let records = ctx
        .clarity
        .list_records(&p, id(patient)?, &page(&q)?)
        .await?;
    Ok(json(StatusCode::OK, &records))
}

async fn get_record(ctx: &Ctx, req: Request<Incoming>, record: &str) -> Reply {
    let p = principal(ctx, &req).await?;
    let record = ctx.clarity.get_record(&p, id(record)?).await?;
    Ok(versioned(StatusCode::OK, &record, record.version))
}

async fn update_record(ctx: &Ctx, req: Request<Incoming>, record: &str) -> Reply {
    let p = principal(ctx, &req).await?;
    let record = id(record)?;
    let version = if_match(&req)?;
    let body: RecordUpdate = json_body(req).await?;
    let updated = ctx
        .clarity
        .update_record(&p, record, version, body.data)
        .await?;
    Ok(versioned(StatusCode::OK, &updated, updated.version))
}

async fn delete_record(ctx: &Ctx, req: Request<Incoming>, record: &str) -> Reply {
    let p = principal(ctx, &req).await?;
    ctx.clarity.delete_record(&p, id(record)?).await?;
    Ok(no_content())
}

async fn break_glass(ctx: &Ctx, req: Request<Incoming>) -> Reply {
    let p = principal(ctx, &req).await?;
    let request: BreakGlassRequest = json_body(req).await?;
    Ok(json(
        StatusCode::CREATED,
        &ctx.clarity.break_glass(&p, request).await?,
    ))
}

async fn list_grants(ctx: &Ctx, req: Request<Incoming>) -> Reply {
    let p = principal(ctx, &req).await?;
    let q = query(&req, &["limit", "cursor", "unreviewed"])?;
    let unreviewed = match param(&q, "unreviewed") {
        None | Some("false") => false,
        Some("true") => true,
        Some(_) => return Err(ApiError::bad_request("unreviewed must be true or false")),
    };
    Ok(json(
        StatusCode::OK,
        &ctx.clarity.list_grants(&p, unreviewed, &page(&q)?).await?,
    ))
}

async fn review_grant(ctx: &Ctx, req: Request<Incoming>, grant: &str) -> Reply {
    let p = principal(ctx, &req).await?;
    ctx.clarity.review_grant(&p, id(grant)?).await?;
    Ok(no_content())
}

async fn research(ctx: &Ctx, req: Request<Incoming>) -> Reply {
    let p = principal(ctx, &req).await?;
    let q = query(&req, &["limit", "cursor"])?;
    Ok(json(
        StatusCode::OK,
        &ctx.clarity.research_patients(&p, &page(&q)?).await?,
    ))
}

async fn key_status(ctx: &Ctx, req: Request<Incoming>) -> Reply {
    let p = principal(ctx, &req).await?;
    Ok(json(StatusCode::OK, &ctx.clarity.key_status(&p).await?))
}

async fn rotate_keys(ctx: &Ctx, req: Request<Incoming>) -> Reply {
    let p = principal(ctx, &req).await?;
    Ok(json(
        StatusCode::OK,
        &ctx.clarity.rotate_keys(&p, &|_| {}).await?,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The OpenAPI document in the repository (also served at `/openapi.json`).
    fn openapi() -> serde_json::Value {
        serde_json::from_str(super::super::OPENAPI).expect("openapi.json is JSON")
    }

    #[test]
    fn every_route_is_documented_and_every_documented_route_exists() {
        let doc = openapi();
        assert_eq!(doc["openapi"], "3.1.0");
        let paths = doc["paths"].as_object().expect("paths");
        let mut documented = Vec::new();
        for (path, item) in paths {
            for method in ["get", "head", "post", "put", "patch", "delete"] {
                if item.get(method).is_some() {
                    documented.push((method.to_uppercase(), path.clone()));
                }
            }
        }
        for (method, template) in ROUTES {
            assert!(
                documented.contains(&(method.as_str().to_string(), template.to_string())),
                "{method} {template} is routed but not in openapi.json"
            );
        }
        for (method, path) in &documented {
            if path.starts_with("/health") || path == "/openapi.json" || path == "/metrics" {
                continue;
            }
            let concrete = path
                .replace("{id}", "0198f0c4-0000-7000-8000-000000000000")
                .replace("{user_id}", "0198f0c4-0000-7000-8000-000000000001");
            let method = Method::from_bytes(method.as_bytes()).expect("method");
            let (template, _) = resolve(&method, &concrete)
                .unwrap_or_else(|_| panic!("{method} {path} is documented but not routed"));
            assert_eq!(template, path);
        }
    }

    #[test]
    fn resolution_extracts_ids_and_names_allowed_methods() {
        let (template, params) =
            resolve(&Method::DELETE, "/v1/patients/a/care-team/b").expect("route");
        assert_eq!(
            (template, params),
            ("/v1/patients/{id}/care-team/{user_id}", vec!["a", "b"])
        );
        assert_eq!(
            resolve(&Method::PATCH, "/v1/patients")
                .unwrap_err()
                .as_deref(),
            Some("POST, GET")
        );
        assert_eq!(resolve(&Method::GET, "/v1/nowhere").unwrap_err(), None);
        assert_eq!(
            resolve(&Method::GET, "/v1/patients/").unwrap_err(),
            None,
            "an empty id is no route"
        );
        assert!(resolve(&Method::GET, "/v1/patients/x/records/extra").is_err());
    }
}
