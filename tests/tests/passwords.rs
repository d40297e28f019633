//! Accounts people can manage, against the real binary: changing one's own
//! password, an admin's password reset with a one-time code that only sets
//! a new password, and an admin removing a lost second factor; over HTTP
//! and from the command line; audited and throttled (S-AUTH-1, S-AUTH-2).

mod support;

use clarity_tests::{Server, run};
use reqwest::StatusCode;
use serde_json::{Value, json};
use support::{Api, PASSWORD};

fn login_body(email: &str, password: &str) -> Value {
    json!({"email": email, "password": password})
}

/// The status of a login; its access token when it succeeded.
async fn login(api: &Api, email: &str, password: &str) -> (StatusCode, Option<String>) {
    let reply = api
        .call(
            "POST",
            "/v1/auth/login",
            None,
            None,
            Some(&login_body(email, password)),
        )
        .await;
    let token = reply.body["access_token"].as_str().map(str::to_string);
    (reply.status, token)
}

/// `POST /v1/auth/password-reset` for `email` with `code` and a new password.
async fn complete_reset(api: &Api, email: &str, code: &str, new: &str) -> support::Reply {
    let body = json!({"email": email, "reset_code": code, "new_password": new});
    api.call("POST", "/v1/auth/password-reset", None, None, Some(&body))
        .await
}

/// A server on a fresh data directory, a client, and the first admin's token.
async fn start() -> (tempfile::TempDir, Server, Api, String) {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(&dir.path().join("data"), &[]);
    let api = Api::new(&server);
    let admin = api.bootstrap(&server).await;
    (dir, server, api, admin)
}

/// The audit subtypes recorded for `entity`.
async fn audited(api: &Api, auditor: &str, entity: &str) -> Vec<String> {
    let page = api
        .ok("GET", "/v1/audit/events?limit=500", Some(auditor), None)
        .await;
    page["items"]
        .as_array()
        .expect("items")
        .iter()
        .filter(|e| e["entity_id"] == entity || e["actor_id"] == entity)
        .filter_map(|e| e["subtype"].as_str().map(str::to_string))
        .collect()
}

// S-AUTH-1
#[tokio::test]
async fn a_user_changes_their_own_password() {
    let (_dir, _server, api, admin) = start().await;
    let (id, token) = api.user(&admin, "nurse.one@example.org", &["nurse"]).await;
    let (_, other_session) = login(&api, "nurse.one@example.org", PASSWORD).await;
    let change =
        |current: &str, new: &str| json!({"current_password": current, "new_password": new});
    let new_password = "a fresh passphrase after the first";

    let wrong = api
        .call(
            "POST",
            "/v1/me/password",
            Some(&token),
            None,
            Some(&change("not it at all, no", new_password)),
        )
        .await;
    assert_eq!(wrong.status, StatusCode::UNAUTHORIZED, "{}", wrong.body);
    let weak = api
        .call(
            "POST",
            "/v1/me/password",
            Some(&token),
            None,
            Some(&change(PASSWORD, "password1234")),
        )
        .await;
    assert_eq!(weak.status, StatusCode::BAD_REQUEST, "{}", weak.body);
    let changed = api
        .call(
            "POST",
            "/v1/me/password",
            Some(&token),
            None,
            Some(&change(PASSWORD, new_password)),
        )
        .await;
    assert_eq!(changed.status, StatusCode::NO_CONTENT, "{}", changed.body);

    // Every session ended, the caller's and the other one.
    for session in [&token, other_session.as_ref().expect("token")] {
        let me = api.call("GET", "/v1/me", Some(session), None, None).await;
        assert_eq!(me.status, StatusCode::UNAUTHORIZED);
    }
    assert_eq!(
        login(&api, "nurse.one@example.org", PASSWORD).await.0,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        login(&api, "nurse.one@example.org", new_password).await.0,
        StatusCode::OK
    );
    assert!(
        audited(&api, &admin, &id)
            .await
            .contains(&"user.password".to_string())
    );
}

// S-AUTH-1 S-AUTH-2
#[tokio::test]
async fn an_admin_resets_a_password_and_the_code_only_sets_a_new_one() {
    let (_dir, _server, api, admin) = start().await;
    let (id, token) = api
        .user(&admin, "dr.reset@example.org", &["clinician"])
        .await;
    let (_, nurse) = api.user(&admin, "nurse.two@example.org", &["nurse"]).await;

    // Only admins, and not for their own account.
    let path = format!("/v1/users/{id}/password-reset");
    assert_eq!(
        api.call("POST", &path, Some(&nurse), None, None)
            .await
            .status,
        StatusCode::FORBIDDEN
    );
    let me = api.ok("GET", "/v1/me", Some(&admin), None).await;
    let own = format!(
        "/v1/users/{}/password-reset",
        me["user"]["id"].as_str().expect("id")
    );
    assert_eq!(
        api.call("POST", &own, Some(&admin), None, None)
            .await
            .status,
        StatusCode::FORBIDDEN
    );

    let reset = api.call("POST", &path, Some(&admin), None, None).await;
    assert_eq!(reset.status, StatusCode::CREATED, "{}", reset.body);
    let code = reset.body["reset_code"]
        .as_str()
        .expect("reset_code")
        .to_string();
    assert_eq!(reset.body["user_id"], json!(id));
    assert!(reset.body["expires_at"].is_string());

    // The old password and the user's sessions are gone at once.
    assert_eq!(
        api.call("GET", "/v1/me", Some(&token), None, None)
            .await
            .status,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        login(&api, "dr.reset@example.org", PASSWORD).await.0,
        StatusCode::UNAUTHORIZED
    );
    // The code does not log in: it says what it is for.
    let (status, _) = login(&api, "dr.reset@example.org", &code).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let reply = api
        .call(
            "POST",
            "/v1/auth/login",
            None,
            None,
            Some(&login_body("dr.reset@example.org", &code)),
        )
        .await;
    assert!(
        reply.body.to_string().contains("password reset is pending"),
        "{}",
        reply.body
    );

    let new_password = "chosen by the doctor after the reset";
    let wrong = complete_reset(&api, "dr.reset@example.org", "0000-0000", new_password).await;
    assert_eq!(wrong.status, StatusCode::UNAUTHORIZED, "{}", wrong.body);
    let weak = complete_reset(&api, "dr.reset@example.org", &code, "dr.reset").await;
    assert_eq!(weak.status, StatusCode::BAD_REQUEST, "{}", weak.body);
    let done = complete_reset(&api, "dr.reset@example.org", &code, new_password).await;
    assert_eq!(done.status, StatusCode::NO_CONTENT, "{}", done.body);
    // Once only.
    let again = complete_reset(
        &api,
        "dr.reset@example.org",
        &code,
        "yet another passphrase here",
    )
    .await;
    assert_eq!(again.status, StatusCode::UNAUTHORIZED, "{}", again.body);
    assert_eq!(
        login(&api, "dr.reset@example.org", new_password).await.0,
        StatusCode::OK
    );

    let events = audited(&api, &admin, &id).await;
    for subtype in ["user.password.reset", "user.password.reset_complete"] {
        assert!(
            events.contains(&subtype.to_string()),
            "{subtype} not in {events:?}"
        );
    }

    // Guessing codes is throttled like guessing passwords.
    api.call("POST", &path, Some(&admin), None, None).await;
    let mut throttled = false;
    for _ in 0..12 {
        let guess = complete_reset(&api, "dr.reset@example.org", "1111-2222", new_password).await;
        if guess.status == StatusCode::TOO_MANY_REQUESTS {
            throttled = true;
            break;
        }
        assert_eq!(guess.status, StatusCode::UNAUTHORIZED, "{}", guess.body);
    }
    assert!(throttled, "wrong reset codes are never throttled");
}

// S-AUTH-5
#[tokio::test]
async fn an_admin_removes_a_lost_second_factor() {
    let (_dir, _server, api, admin) = start().await;
    let (id, token) = api
        .user(&admin, "mfa.lost@example.org", &["clinician"])
        .await;
    let enrolment = api
        .ok("POST", "/v1/auth/mfa/enroll", Some(&token), None)
        .await;
    let code = support::current_totp(enrolment["secret"].as_str().expect("secret"));
    api.ok(
        "POST",
        "/v1/auth/mfa/confirm",
        Some(&token),
        Some(&json!({"code": code})),
    )
    .await;
    let (status, _) = login(&api, "mfa.lost@example.org", PASSWORD).await;
    assert_eq!(
        status,
        StatusCode::UNAUTHORIZED,
        "a second factor is required now"
    );

    let path = format!("/v1/users/{id}/mfa");
    let user = api.ok("DELETE", &path, Some(&admin), None).await;
    assert_eq!(user["mfa_enabled"], json!(false));
    assert_eq!(
        api.call("GET", "/v1/me", Some(&token), None, None)
            .await
            .status,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        login(&api, "mfa.lost@example.org", PASSWORD).await.0,
        StatusCode::OK
    );
    let again = api.call("DELETE", &path, Some(&admin), None, None).await;
    assert_eq!(again.status, StatusCode::BAD_REQUEST, "{}", again.body);
    assert!(
        audited(&api, &admin, &id)
            .await
            .contains(&"user.mfa.reset".to_string())
    );
}

// S-AUTH-1
#[tokio::test]
async fn operators_reset_passwords_and_second_factors_from_the_command_line() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let data_arg = data.to_str().expect("utf-8");
    let server = Server::start(&data, &[]);
    let api = Api::new(&server);
    let admin = api.bootstrap(&server).await;
    let (id, _) = api.user(&admin, "cli.reset@example.org", &["nurse"]).await;
    drop(server);

    let (ok, stdout, stderr) = run(
        &[
            "--data-dir",
            data_arg,
            "user",
            "reset-password",
            "--id",
            &id,
        ],
        &[],
    );
    assert!(ok, "{stderr}");
    let code = stdout
        .lines()
        .find_map(|l| l.strip_prefix("reset code: "))
        .expect("the code is printed")
        .to_string();
    let (ok, _, stderr) = run(
        &["--data-dir", data_arg, "user", "reset-mfa", "--id", &id],
        &[],
    );
    assert!(!ok && stderr.contains("no second factor"), "{stderr}");

    let server = Server::start(&data, &[]);
    let api = Api::new(&server);
    let new_password = "set from the operator's code";
    let body =
        json!({"email": "cli.reset@example.org", "reset_code": code, "new_password": new_password});
    let done = api
        .call("POST", "/v1/auth/password-reset", None, None, Some(&body))
        .await;
    assert_eq!(done.status, StatusCode::NO_CONTENT, "{}", done.body);
    assert_eq!(
        login(&api, "cli.reset@example.org", new_password).await.0,
        StatusCode::OK
    );
}
