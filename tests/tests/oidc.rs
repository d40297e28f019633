//! OpenID Connect resource-server mode end to end (S-ID-1): the real
//! binary configured with `[[auth.oidc]]` as docs/authentication.md shows,
//! against a real OpenID Provider on loopback (npm `oidc-provider`, started
//! from tests/oidc/provider.mjs), users logged in through its pages by a
//! scripted browser, and forged tokens minted here.

mod support;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use clarity_tests::Server;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use reqwest::StatusCode;
use serde_json::{Value, json};
use support::{Api, patient_body, skip_or_fail};

fn harness_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("oidc")
}

/// Whether the provider's packages are installed (`npm ci --prefix tests/oidc`).
fn harness_ready() -> bool {
    let installed = harness_dir().join("node_modules/oidc-provider").is_dir();
    let node = Command::new("node").arg("--version").output().is_ok();
    if !(installed && node) {
        skip_or_fail("OIDC tests need node and `npm ci --prefix tests/oidc`");
        return false;
    }
    true
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// The provider, stopped when dropped.
struct Provider {
    child: Child,
    issuer: String,
}

impl Provider {
    fn start(port: u16, keys: &Path, logout_uri: Option<&str>, jwks_delay_ms: u64) -> Provider {
        let mut command = Command::new("node");
        command
            .arg(harness_dir().join("provider.mjs"))
            .args(["--port", &port.to_string(), "--keys"])
            .arg(keys)
            .args(["--jwks-delay-ms", &jwks_delay_ms.to_string()])
            .stdout(Stdio::piped());
        // Its notices go beside its key file, for the message below.
        let notices = keys.with_extension("stderr.log");
        command.stderr(std::fs::File::create(&notices).expect("the provider's log"));
        if let Some(uri) = logout_uri {
            command.args(["--backchannel-logout-uri", uri]);
        }
        let mut child = command.spawn().expect("start the provider");
        let stdout = child.stdout.take().expect("stdout");
        // Bounded: a provider that never announces itself fails the test
        // instead of hanging it.
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = BufReader::new(stdout).read_line(&mut line);
            let _ = tx.send(line);
        });
        let Ok(line) = rx.recv_timeout(std::time::Duration::from_secs(30)) else {
            let _ = child.kill();
            let said = std::fs::read_to_string(&notices).unwrap_or_default();
            panic!("the provider did not start within 30 s; it said:\n{said}");
        };
        let issuer = line
            .trim()
            .strip_prefix("READY ")
            .unwrap_or_else(|| panic!("the provider did not start: {line:?}"))
            .to_string();
        Provider { child, issuer }
    }
}

impl Drop for Provider {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let _ = self.child.wait();
    }
}

/// Runs the scripted browser; its JSON output. Bounded by `timeout`: a
/// browser stuck on a request fails the test instead of hanging it.
fn browser(args: &[&str]) -> Value {
    let output = Command::new("timeout")
        .args(["--kill-after=5", "60", "node"])
        .arg(harness_dir().join("browser.mjs"))
        .args(args)
        .output()
        .expect("run the browser");
    assert!(
        output.status.success(),
        "browser {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).unwrap_or(Value::Null)
}

fn login(issuer: &str, user: &str, jar: &Path) -> String {
    let jar = jar.to_str().expect("utf-8 path");
    browser(&["login", "--issuer", issuer, "--user", user, "--jar", jar])["access_token"]
        .as_str()
        .expect("access_token")
        .to_string()
}

/// The provider's key file: (kid, alg, PKCS#8 PEM) of each key.
fn keys(path: &Path) -> Vec<(String, Algorithm, String)> {
    let file: Value =
        serde_json::from_slice(&std::fs::read(path).expect("key file")).expect("key JSON");
    file["keys"]
        .as_array()
        .expect("keys")
        .iter()
        .map(|k| {
            let kid = k["kid"].as_str().expect("kid").to_string();
            let alg = match k["alg"].as_str() {
                Some("RS256") => Algorithm::RS256,
                Some("ES256") => Algorithm::ES256,
                Some("EdDSA") => Algorithm::EdDSA,
                other => panic!("unexpected alg {other:?}"),
            };
            let pem = file["pem"][&kid].as_str().expect("pem").to_string();
            (kid, alg, pem)
        })
        .collect()
}

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

/// A token signed with `key` (kid `kid`), with claims `claims`.
fn mint(key: &(String, Algorithm, String), kid: &str, claims: &Value) -> String {
    let (_, alg, pem) = key;
    let encoding = match alg {
        Algorithm::RS256 => EncodingKey::from_rsa_pem(pem.as_bytes()),
        Algorithm::ES256 => EncodingKey::from_ec_pem(pem.as_bytes()),
        _ => EncodingKey::from_ed_pem(pem.as_bytes()),
    }
    .expect("encoding key");
    let mut header = Header::new(*alg);
    header.kid = Some(kid.to_string());
    jsonwebtoken::encode(&header, claims, &encoding).expect("sign")
}

fn claims(issuer: &str, sub: &str, roles: &[&str]) -> Value {
    json!({
        "iss": issuer, "aud": "clarity", "sub": sub, "roles": roles,
        "iat": now(), "exp": now() + 300, "jti": uuid::Uuid::new_v4().to_string(),
    })
}

fn b64(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

fn config(dir: &Path, issuer: &str, provision: bool) -> PathBuf {
    let path = dir.join(format!("clarity-{provision}.toml"));
    let text = format!(
        r#"[[auth.oidc]]
issuer = "{issuer}"
audience = "clarity"
roles_claim = "roles"
provision = {provision}
logout_client_id = "clarity-web"
jwks_min_refresh_secs = 1
fetch_timeout_secs = 2
[auth.oidc.role_map]
"ehr-clinician" = "clinician"
"ehr-nurse" = "nurse"
"ehr-admin" = "admin"
"#
    );
    std::fs::write(&path, text).expect("config");
    path
}

/// The status and body of `GET path` with `token`.
async fn get(api: &Api, path: &str, token: &str) -> (StatusCode, Value) {
    let reply = api.call("GET", path, Some(token), None, None).await;
    (reply.status, reply.body)
}

/// Refused with 401 and nothing but the generic message.
async fn refused(api: &Api, token: &str, what: &str) {
    let (status, body) = get(api, "/v1/me", token).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{what}: {body}");
    assert_eq!(
        body["error"]["message"], "authentication required",
        "{what}: {body}"
    );
}

async fn metric(api: &Api, name: &str) -> f64 {
    api.metrics()
        .await
        .lines()
        .filter(|l| l.starts_with(name))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

// S-ID-1
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn provider_tokens_authenticate_map_roles_and_end_with_logout() {
    if !harness_ready() {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let port = free_port();
    let issuer = format!("http://127.0.0.1:{port}");
    let config = config(dir.path(), &issuer, true);
    let env = [
        ("CLARITY_CONFIG", config.to_str().expect("utf-8")),
        ("CLARITY_RATE_LIMIT_ENABLED", "false"),
    ];
    // Discovery is lazy: the server starts before the provider does.
    let server = Server::start(&dir.path().join("data"), &env);
    let api = Api::new(&server);
    let admin = api.bootstrap(&server).await;
    let logout_uri = server.url("/v1/auth/oidc/backchannel-logout");
    let keys1 = dir.path().join("keys1.json");
    let provider = Provider::start(port, &keys1, Some(&logout_uri), 0);
    assert_eq!(provider.issuer, issuer);
    let k1 = keys(&keys1);

    // A user logged in at the provider is provisioned with the mapped role.
    let alice = login(&issuer, "alice", &dir.path().join("alice.jar"));
    let (status, me) = get(&api, "/v1/me", &alice).await;
    assert_eq!(status, StatusCode::OK, "{me}");
    assert_eq!(me["user"]["roles"], json!(["clinician"]));
    assert_eq!(
        me["identity"],
        json!({"issuer": issuer, "subject": "alice"})
    );
    let alice_id = me["user"]["id"].as_str().expect("id").to_string();

    // She reads a patient whose care team she is on; the event names the
    // provider and subject.
    let (_, doctor) = api
        .user(&admin, "doctor@oidc.example", &["clinician"])
        .await;
    let (_, auditor) = api.user(&admin, "audit@oidc.example", &["auditor"]).await;
    let patient = api
        .ok(
            "POST",
            "/v1/patients",
            Some(&doctor),
            Some(&patient_body("OIDC-1", 1)),
        )
        .await;
    let pid = patient["id"].as_str().expect("id").to_string();
    assert_eq!(
        get(&api, &format!("/v1/patients/{pid}"), &alice).await.0,
        StatusCode::NOT_FOUND,
        "not on the care team yet"
    );
    api.ok(
        "POST",
        &format!("/v1/patients/{pid}/care-team"),
        Some(&admin),
        Some(&json!({"user_id": alice_id})),
    )
    .await;
    let (status, read) = get(&api, &format!("/v1/patients/{pid}"), &alice).await;
    assert_eq!(status, StatusCode::OK, "{read}");
    let events = api
        .ok(
            "GET",
            &format!("/v1/audit/events?actor_id={alice_id}"),
            Some(&auditor),
            None,
        )
        .await;
    let event = events["items"]
        .as_array()
        .and_then(|items| {
            items
                .iter()
                .find(|e| e["subtype"] == "patient.read" && e["outcome"] == "0")
        })
        .unwrap_or_else(|| panic!("a successful read event: {events}"));
    assert_eq!(event["actor_issuer"], issuer.as_str());
    assert_eq!(event["actor_subject"], "alice");
    assert_eq!(event["patient_id"], pid.as_str());

    // A nurse is a nurse; unmapped roles give none; admin with a PHI role is refused.
    let nina = login(&issuer, "nina", &dir.path().join("nina.jar"));
    let (status, me) = get(&api, "/v1/me", &nina).await;
    assert_eq!(
        (status, me["user"]["roles"].clone()),
        (StatusCode::OK, json!(["nurse"]))
    );
    for user in ["nobody", "root"] {
        let token = login(&issuer, user, &dir.path().join(format!("{user}.jar")));
        let (status, body) = get(&api, "/v1/me", &token).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{user}: {body}");
    }

    // The provider's own machine client (client credentials) works too.
    let machine = browser(&[
        "client-credentials",
        "--issuer",
        &issuer,
        "--client",
        "ehr-integration",
        "--secret",
        "integration-secret-0123456789abcdef0123456789ab",
    ])["access_token"]
        .as_str()
        .expect("token")
        .to_string();
    assert_eq!(get(&api, "/v1/me", &machine).await.0, StatusCode::OK);

    // Forged and broken tokens: 401 with no detail.
    let rsa = &k1[0];
    let good = claims(&issuer, "alice", &["ehr-clinician"]);
    assert_eq!(
        get(&api, "/v1/me", &mint(rsa, &rsa.0, &good)).await.0,
        StatusCode::OK
    );
    let header_none = b64(br#"{"alg":"none","typ":"JWT"}"#);
    let body = b64(good.to_string().as_bytes());
    refused(&api, &format!("{header_none}.{body}."), "alg none").await;
    let public_pem = serde_json::from_slice::<Value>(&std::fs::read(&keys1).expect("keys"))
        .expect("json")["public_pem"][&rsa.0]
        .as_str()
        .expect("public pem")
        .to_string();
    let mut hs = Header::new(Algorithm::HS256);
    hs.kid = Some(rsa.0.clone());
    let hmac = jsonwebtoken::encode(&hs, &good, &EncodingKey::from_secret(public_pem.as_bytes()))
        .expect("hs256");
    refused(&api, &hmac, "HS256 keyed with the public key").await;
    let with = |edit: &dyn Fn(&mut Value)| {
        let mut c = good.clone();
        edit(&mut c);
        mint(rsa, &rsa.0, &c)
    };
    refused(
        &api,
        &with(&|c| c["aud"] = json!("someone-else")),
        "wrong aud",
    )
    .await;
    refused(
        &api,
        &with(&|c| c["iss"] = json!("http://127.0.0.1:9")),
        "wrong iss",
    )
    .await;
    refused(&api, &with(&|c| c["exp"] = json!(now() - 61)), "expired").await;
    refused(&api, &with(&|c| c["nbf"] = json!(now() + 300)), "nbf ahead").await;
    refused(&api, &with(&|c| c["iat"] = json!(now() + 300)), "iat ahead").await;
    refused(
        &api,
        &with(&|c| {
            c.as_object_mut().expect("object").remove("exp");
        }),
        "no exp",
    )
    .await;
    refused(&api, &mint(rsa, "no-such-kid", &good), "unknown kid").await;
    let ec = &k1[1];
    refused(
        &api,
        &mint(ec, &rsa.0, &good),
        "another key under the RSA kid",
    )
    .await;
    let token = mint(rsa, &rsa.0, &good);
    refused(&api, &token[..token.len() - 8], "truncated").await;
    let oversized = format!(
        "{}.{}.{}",
        b64(br#"{"alg":"RS256"}"#),
        "A".repeat(20_000),
        "B"
    );
    refused(&api, &oversized, "oversized").await;
    assert!(metric(&api, "clarity_oidc_tokens_refused").await >= 10.0);
    assert!(metric(&api, "clarity_oidc_tokens_verified").await >= 3.0);

    // Disabling the user in Clarity ends access at once.
    let user = api
        .ok("GET", &format!("/v1/users/{alice_id}"), Some(&admin), None)
        .await;
    let version = user["version"].as_i64().expect("version");
    let reply = api
        .call(
            "PATCH",
            &format!("/v1/users/{alice_id}"),
            Some(&admin),
            Some(version),
            Some(&json!({"disabled": true})),
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    refused(&api, &alice, "disabled user").await;

    // A back-channel logout from the provider ends nina's session at once.
    assert_eq!(get(&api, "/v1/me", &nina).await.0, StatusCode::OK);
    let jar = dir.path().join("nina.jar");
    browser(&[
        "logout",
        "--issuer",
        &issuer,
        "--jar",
        jar.to_str().expect("utf-8"),
    ]);
    refused(&api, &nina, "after back-channel logout").await;
    // A forged logout token is refused with 400 and changes nothing.
    let doctor_token = mint(rsa, &rsa.0, &claims(&issuer, "sam", &["ehr-clinician"]));
    assert_eq!(get(&api, "/v1/me", &doctor_token).await.0, StatusCode::OK);
    let forged_logout = mint(
        ec,
        &rsa.0,
        &json!({"iss": issuer, "aud": "clarity-web", "sub": "sam", "iat": now(),
                "jti": "x", "events": {"http://schemas.openid.net/event/backchannel-logout": {}}}),
    );
    let reply = api
        .client
        .post(&logout_uri)
        .form(&[("logout_token", forged_logout.as_str())])
        .send()
        .await
        .expect("answer");
    assert_eq!(reply.status(), StatusCode::BAD_REQUEST);
    assert_eq!(get(&api, "/v1/me", &doctor_token).await.0, StatusCode::OK);

    // The provider goes away: cached keys keep working; an unknown key is
    // refused promptly, never hangs.
    drop(provider);
    assert_eq!(
        get(
            &api,
            "/v1/me",
            &mint(rsa, &rsa.0, &claims(&issuer, "sam", &["ehr-clinician"]))
        )
        .await
        .0,
        StatusCode::OK
    );
    tokio::time::sleep(Duration::from_millis(1100)).await; // past the refresh interval
    let started = Instant::now();
    let (status, _) = get(&api, "/v1/me", &mint(rsa, "rotated-away", &good)).await;
    assert!(
        status == StatusCode::UNAUTHORIZED || status == StatusCode::SERVICE_UNAVAILABLE,
        "{status}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );

    // The provider rotates its keys: new tokens verify after one refresh,
    // tokens under the removed key no longer do.
    let keys2 = dir.path().join("keys2.json");
    let provider = Provider::start(port, &keys2, Some(&logout_uri), 0);
    let k2 = keys(&keys2);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let rotated = mint(
        &k2[0],
        &k2[0].0,
        &claims(&issuer, "sam", &["ehr-clinician"]),
    );
    assert_eq!(get(&api, "/v1/me", &rotated).await.0, StatusCode::OK);
    let fresh_login = login(&issuer, "nina", &dir.path().join("nina2.jar"));
    assert_eq!(
        get(&api, "/v1/me", &fresh_login).await.0,
        StatusCode::OK,
        "a new login after the logout"
    );
    refused(
        &api,
        &mint(rsa, &rsa.0, &claims(&issuer, "sam", &["ehr-clinician"])),
        "signed with the removed key",
    )
    .await;
    drop(provider);

    // A JWKS that answers too slowly: the request ends within the fetch
    // timeout with 503, and tokens under cached keys keep working.
    let keys3 = dir.path().join("keys3.json");
    let _provider = Provider::start(port, &keys3, Some(&logout_uri), 10_000);
    let k3 = keys(&keys3);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let started = Instant::now();
    let (status, _) = get(
        &api,
        "/v1/me",
        &mint(
            &k3[0],
            &k3[0].0,
            &claims(&issuer, "sam", &["ehr-clinician"]),
        ),
    )
    .await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(
        get(
            &api,
            "/v1/me",
            &mint(
                &k2[0],
                &k2[0].0,
                &claims(&issuer, "sam", &["ehr-clinician"])
            )
        )
        .await
        .0,
        StatusCode::OK
    );
    assert!(metric(&api, "clarity_oidc_jwks_refresh_failures").await >= 1.0);
}

// S-ID-1
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_provisioning_an_admin_links_the_subject_first() {
    if !harness_ready() {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let port = free_port();
    let issuer = format!("http://127.0.0.1:{port}");
    let config = config(dir.path(), &issuer, false);
    let env = [
        ("CLARITY_CONFIG", config.to_str().expect("utf-8")),
        ("CLARITY_RATE_LIMIT_ENABLED", "false"),
    ];
    let server = Server::start(&dir.path().join("data"), &env);
    let api = Api::new(&server);
    let admin = api.bootstrap(&server).await;
    let keys_file = dir.path().join("keys.json");
    let _provider = Provider::start(port, &keys_file, None, 0);
    let early = login(&issuer, "alice", &dir.path().join("early.jar"));
    // The provider logs alice out before she is linked: that token stays
    // ended once she is.
    let key = &keys(&keys_file)[0];
    let logout = mint(
        key,
        &key.0,
        &json!({"iss": issuer, "aud": "clarity-web", "sub": "alice", "iat": now(),
                "jti": uuid::Uuid::new_v4().to_string(),
                "events": {"http://schemas.openid.net/event/backchannel-logout": {}}}),
    );
    let reply = api
        .client
        .post(server.url("/v1/auth/oidc/backchannel-logout"))
        .form(&[("logout_token", logout.as_str())])
        .send()
        .await
        .expect("answer");
    assert_eq!(reply.status(), StatusCode::OK);
    tokio::time::sleep(Duration::from_millis(1100)).await; // a later iat
    let alice = login(&issuer, "alice", &dir.path().join("alice.jar"));

    let (status, body) = get(&api, "/v1/me", &alice).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("not linked")),
        "{body}"
    );

    let (alice_id, _) = api
        .user(&admin, "alice@clinic.example", &["clinician"])
        .await;
    let path = format!("/v1/users/{alice_id}/identities");
    let bad = api
        .call(
            "POST",
            &path,
            Some(&admin),
            None,
            Some(&json!({"issuer": "https://elsewhere.example", "subject": "alice"})),
        )
        .await;
    assert_eq!(
        bad.status,
        StatusCode::BAD_REQUEST,
        "an issuer that is not configured"
    );
    let link = api
        .ok(
            "POST",
            &path,
            Some(&admin),
            Some(&json!({"issuer": issuer, "subject": "alice"})),
        )
        .await;
    let again = api
        .call(
            "POST",
            &path,
            Some(&admin),
            None,
            Some(&json!({"issuer": issuer, "subject": "alice"})),
        )
        .await;
    assert_eq!(again.status, StatusCode::CONFLICT);
    let (status, me) = get(&api, "/v1/me", &alice).await;
    assert_eq!(status, StatusCode::OK, "{me}");
    assert_eq!(me["user"]["id"], alice_id.as_str());
    refused(&api, &early, "a token the provider ended before the link").await;
    let links = api.ok("GET", &path, Some(&admin), None).await;
    assert_eq!(links["items"][0]["subject"], "alice");

    let link_id = link["id"].as_str().expect("link id");
    let reply = api
        .call(
            "DELETE",
            &format!("{path}/{link_id}"),
            Some(&admin),
            None,
            None,
        )
        .await;
    assert_eq!(reply.status, StatusCode::NO_CONTENT);
    assert_eq!(
        get(&api, "/v1/me", &alice).await.0,
        StatusCode::UNAUTHORIZED
    );
}
