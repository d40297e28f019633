//! Service accounts end to end against the real binary: created by an admin
//! over HTTP and by the operator from the command line, tokens by the OAuth
//! 2.0 client-credentials grant (RFC 6749 §4.4, errors §5.2) with HTTP Basic
//! or form fields, rotation and deletion (S-ID-2).

mod support;

use clarity_tests::{Server, run};
use reqwest::{Client, StatusCode};
use serde_json::{Value, json};
use support::Api;

/// A token request that must fail: the form, HTTP Basic credentials, and
/// the status and RFC 6749 error code expected.
type Case<'a> = (
    Vec<(&'a str, &'a str)>,
    Option<(&'a str, &'a str)>,
    StatusCode,
    &'a str,
);

/// `POST /v1/auth/token` with `form`, and HTTP Basic when given; (status,
/// body, the `WWW-Authenticate` header, the `Cache-Control` header).
async fn token(
    server: &Server,
    form: &[(&str, &str)],
    basic: Option<(&str, &str)>,
) -> (StatusCode, Value, Option<String>, Option<String>) {
    let mut request = Client::new().post(server.url("/v1/auth/token")).form(form);
    if let Some((id, secret)) = basic {
        request = request.basic_auth(id, Some(secret));
    }
    let response = request.send().await.expect("answer");
    let header = |name: &str| {
        response
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    let (www, cache) = (header("www-authenticate"), header("cache-control"));
    let status = response.status();
    let body = response.json().await.unwrap_or(Value::Null);
    (status, body, www, cache)
}

// S-ID-2
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_credentials_over_http() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(&dir.path().join("data"), &[]);
    let api = Api::new(&server);
    let admin = api.bootstrap(&server).await;

    let body =
        json!({"name": "nightly-export", "roles": ["auditor"], "display_name": "Nightly export"});
    let created = api
        .ok("POST", "/v1/service-accounts", Some(&admin), Some(&body))
        .await;
    let id = created["client_id"]
        .as_str()
        .expect("client_id")
        .to_string();
    let secret = created["client_secret"]
        .as_str()
        .expect("secret")
        .to_string();
    assert_eq!(created["account"]["service_account"], true);

    // HTTP Basic and form fields both work; the token works within the
    // account's roles (auditor: the audit log, no users).
    for (form, basic) in [
        (
            vec![("grant_type", "client_credentials")],
            Some((id.as_str(), secret.as_str())),
        ),
        (
            vec![
                ("grant_type", "client_credentials"),
                ("client_id", id.as_str()),
                ("client_secret", secret.as_str()),
            ],
            None,
        ),
    ] {
        let (status, body, _, cache) = token(&server, &form, basic).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body["token_type"], "Bearer");
        assert!(body["expires_in"].as_i64().expect("expires_in") > 0);
        assert!(body.get("refresh_token").is_none());
        assert_eq!(cache.as_deref(), Some("no-store"));
        let access = body["access_token"].as_str().expect("token");
        let events = api
            .call("GET", "/v1/audit/events?limit=5", Some(access), None, None)
            .await;
        assert_eq!(events.status, StatusCode::OK);
        let users = api.call("GET", "/v1/users", Some(access), None, None).await;
        assert_eq!(users.status, StatusCode::FORBIDDEN);
    }

    // RFC 6749 §5.2 errors, and nothing that helps a guesser.
    let wrong = "ccs_0000000000000000000000000000000000000000000000000000000000000000";
    let cases: Vec<Case<'_>> = vec![
        (
            vec![("grant_type", "client_credentials")],
            Some((id.as_str(), wrong)),
            StatusCode::UNAUTHORIZED,
            "invalid_client",
        ),
        (
            vec![("grant_type", "client_credentials")],
            Some(("not-a-client", secret.as_str())),
            StatusCode::UNAUTHORIZED,
            "invalid_client",
        ),
        (
            vec![("grant_type", "client_credentials")],
            None,
            StatusCode::UNAUTHORIZED,
            "invalid_client",
        ),
        (
            vec![("grant_type", "password")],
            Some((id.as_str(), secret.as_str())),
            StatusCode::BAD_REQUEST,
            "unsupported_grant_type",
        ),
        (
            vec![],
            Some((id.as_str(), secret.as_str())),
            StatusCode::BAD_REQUEST,
            "invalid_request",
        ),
        (
            vec![
                ("grant_type", "client_credentials"),
                ("grant_type", "client_credentials"),
            ],
            Some((id.as_str(), secret.as_str())),
            StatusCode::BAD_REQUEST,
            "invalid_request",
        ),
        (
            vec![
                ("grant_type", "client_credentials"),
                ("client_id", id.as_str()),
                ("client_secret", secret.as_str()),
            ],
            Some((id.as_str(), secret.as_str())),
            StatusCode::BAD_REQUEST,
            "invalid_request",
        ),
        (
            vec![
                ("grant_type", "client_credentials"),
                ("scope", "everything"),
            ],
            Some((id.as_str(), secret.as_str())),
            StatusCode::BAD_REQUEST,
            "invalid_scope",
        ),
    ];
    for (form, basic, status, error) in cases {
        let (got, body, www, _) = token(&server, &form, basic).await;
        assert_eq!(
            (got, body["error"].as_str()),
            (status, Some(error)),
            "{form:?}"
        );
        if status == StatusCode::UNAUTHORIZED {
            assert_eq!(www.as_deref(), Some("Basic realm=\"clarity\""));
        }
        let text = body.to_string();
        assert!(!text.contains(&secret) && !text.contains(wrong), "{text}");
    }
    // Not a form: invalid_request.
    let response = Client::new()
        .post(server.url("/v1/auth/token"))
        .json(&json!({"grant_type": "client_credentials"}))
        .send()
        .await
        .expect("answer");
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);

    // Rotation without overlap retires the old secret at once.
    let rotated = api
        .ok(
            "POST",
            &format!("/v1/service-accounts/{id}/secret"),
            Some(&admin),
            Some(&json!({"overlap_secs": 0})),
        )
        .await;
    let new_secret = rotated["client_secret"].as_str().expect("secret");
    let basic = |s| Some((id.as_str(), s));
    let form = [("grant_type", "client_credentials")];
    assert_eq!(
        token(&server, &form, basic(secret.as_str())).await.0,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        token(&server, &form, basic(new_secret)).await.0,
        StatusCode::OK
    );

    // Admin with a PHI role and non-admins are refused.
    let mixed = json!({"name": "mixed", "roles": ["admin", "clinician"]});
    let reply = api
        .call(
            "POST",
            "/v1/service-accounts",
            Some(&admin),
            None,
            Some(&mixed),
        )
        .await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    let (_, clinician) = api.user(&admin, "c@example.org", &["clinician"]).await;
    let reply = api
        .call(
            "POST",
            "/v1/service-accounts",
            Some(&clinician),
            None,
            Some(&body),
        )
        .await;
    assert_eq!(reply.status, StatusCode::FORBIDDEN);

    // Deletion ends access at once.
    let (_, granted, _, _) = token(&server, &form, basic(new_secret)).await;
    let access = granted["access_token"].as_str().expect("token").to_string();
    let reply = api
        .call(
            "DELETE",
            &format!("/v1/service-accounts/{id}"),
            Some(&admin),
            None,
            None,
        )
        .await;
    assert_eq!(reply.status, StatusCode::NO_CONTENT);
    let reply = api.call("GET", "/v1/me", Some(&access), None, None).await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        token(&server, &form, basic(new_secret)).await.0,
        StatusCode::UNAUTHORIZED
    );

    // No secret reached the logs.
    let logs = server.logs().join("\n");
    assert!(!logs.contains(&secret) && !logs.contains(new_secret));
}

// S-ID-2: the operator's commands, and a token from the printed secret.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn service_accounts_from_the_command_line() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let data_arg = data.to_str().expect("utf-8");
    // Maintenance commands create no store: make it first.
    let (ok, _, stderr) = run(&["--data-dir", data_arg, "migrate"], &[]);
    assert!(ok, "{stderr}");
    let (ok, stdout, stderr) = run(
        &[
            "--data-dir",
            data_arg,
            "service-account",
            "create",
            "--name",
            "hl7-engine",
            "--role",
            "nurse",
        ],
        &[],
    );
    assert!(ok, "{stderr}");
    let field = |out: &str, name: &str| {
        out.lines()
            .find_map(|l| l.strip_prefix(&format!("{name}: ")))
            .unwrap_or_else(|| panic!("{name} in {out}"))
            .to_string()
    };
    let id = field(&stdout, "client_id");
    let first = field(&stdout, "client_secret");
    let (ok, stdout, stderr) = run(
        &[
            "--data-dir",
            data_arg,
            "service-account",
            "rotate",
            "--id",
            &id,
            "--overlap-secs",
            "600",
        ],
        &[],
    );
    assert!(ok, "{stderr}");
    let second = field(&stdout, "client_secret");
    assert!(stdout.contains("previous secret works until: "), "{stdout}");

    let server = Server::start(&data, &[]);
    let form = [("grant_type", "client_credentials")];
    for secret in [&first, &second] {
        let (status, body, _, _) = token(&server, &form, Some((&id, secret))).await;
        assert_eq!(status, StatusCode::OK, "{body}");
    }
    drop(server);
    let (ok, _, stderr) = run(
        &[
            "--data-dir",
            data_arg,
            "service-account",
            "delete",
            "--id",
            &id,
        ],
        &[],
    );
    assert!(ok, "{stderr}");
    let (ok, _, stderr) = run(
        &[
            "--data-dir",
            data_arg,
            "service-account",
            "create",
            "--name",
            "both",
            "--role",
            "admin",
            "--role",
            "nurse",
        ],
        &[],
    );
    assert!(
        !ok && stderr.contains("admin cannot be combined"),
        "{stderr}"
    );
    let server = Server::start(&data, &[]);
    let (status, _, _, _) = token(&server, &form, Some((&id, &second))).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}
