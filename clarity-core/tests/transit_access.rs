//! The transit provider keeps its access to OpenBao alive (S-KEY-4): a
//! token is renewed before half its lease has passed, AppRole logs in again
//! when its token reaches its maximum lifetime, and a token that can no
//! longer be renewed is a metric and one alert until a good one replaces it.
//! Against the OpenBao dev server of the test run (`scripts/test` starts
//! it), with tokens of a few seconds so that several lifetimes pass in a
//! test.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use clarity_core::Clarity;
use clarity_core::config::{Config, KeyProviderKind, TransitAuthMethod};
use clarity_core::crypto::{Key, KeyProvider, TransitAuth, TransitKeyProvider};
use clarity_core::service::{Alert, AlertHook, AlertKind};
use clarity_core::testing;
use serde_json::{Value, json};

/// A transit key name of its own for a test.
fn fresh_key() -> String {
    testing::OpenBao::fresh_key()
}

/// Writes `secret` to a new file readable by its owner only.
fn secret_file(dir: &Path, name: &str, secret: &str) -> PathBuf {
    let path = dir.join(name);
    testing::write_secret_file(&path, secret);
    path
}

/// Wraps and unwraps a key through transit once a second for `run`;
/// every round must succeed.
async fn keep_using(provider: &TransitKeyProvider, run: Duration) {
    let started = Instant::now();
    let mut round = 0;
    while started.elapsed() < run {
        round += 1;
        let key = Key::generate().expect("key");
        let context = format!("patient-{round}");
        let wrapped = provider
            .wrap(&key, context.as_bytes())
            .await
            .unwrap_or_else(|e| panic!("wrap, round {round}, {:?}: {e}", started.elapsed()));
        let back = provider
            .unwrap(&wrapped, context.as_bytes())
            .await
            .unwrap_or_else(|e| panic!("unwrap, round {round}, {:?}: {e}", started.elapsed()));
        assert_eq!(back.expose(), key.expose());
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

// S-KEY-4: a token of 4 s serves for 14 s (three and a half lifetimes),
// renewed before half of each lease has passed.
#[tokio::test]
async fn a_token_is_renewed_past_three_lifetimes() {
    let Some(bao) = testing::OpenBao::from_env() else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let key = fresh_key();
    let token = bao.token(&key, 4).await;
    let file = secret_file(dir.path(), "token", &token);
    let provider = TransitKeyProvider::connect(bao.settings(&key, TransitAuth::TokenFile(file)))
        .await
        .expect("connect");
    keep_using(&provider, Duration::from_secs(14)).await;
    // The documented policy allows what `keys rotate` and `keys retire` ask.
    let version = provider.rotate().await.expect("rotate");
    provider.retire_below(version).await.expect("retire");
    assert_eq!(
        provider.kek_versions().await.expect("versions"),
        vec![version]
    );
    let access = provider.access().expect("transit reports its access");
    assert_eq!(access.method, "token");
    assert!(access.renewals >= 5, "{access:?}");
    assert_eq!(access.failures, 0, "{access:?}");
    assert!(access.healthy, "{access:?}");
    assert!(access.expires_in_secs.is_some_and(|s| s <= 4), "{access:?}");
}

// S-KEY-4: AppRole tokens live 3 s and at most 6 s; the provider renews
// them, and logs in again with its secret id when renewal would not
// outlive the maximum.
#[tokio::test]
async fn approle_logs_in_again_at_the_maximum_lifetime() {
    let Some(bao) = testing::OpenBao::from_env() else {
        return;
    };
    enable_auth(&bao, "approle", "approle").await;
    let key = fresh_key();
    let policy = bao.documented_policy(&key).await;
    let role = format!("clarity-{}", uuid::Uuid::new_v4().simple());
    bao.post(
        &format!("auth/approle/role/{role}"),
        json!({ "token_policies": [policy], "token_ttl": "3s", "token_max_ttl": "6s" }),
    )
    .await;
    let (_, reply) = bao
        .call(
            reqwest::Method::GET,
            &format!("auth/approle/role/{role}/role-id"),
            Value::Null,
        )
        .await;
    let role_id = reply["data"]["role_id"]
        .as_str()
        .expect("role id")
        .to_string();
    let reply = bao
        .post(&format!("auth/approle/role/{role}/secret-id"), json!({}))
        .await;
    let secret_id = reply["data"]["secret_id"].as_str().expect("secret id");
    let dir = tempfile::tempdir().expect("tempdir");
    let secret_id_file = secret_file(dir.path(), "secret-id", secret_id);

    let provider = TransitKeyProvider::connect(bao.settings(
        &key,
        TransitAuth::AppRole {
            mount: "approle".into(),
            role_id,
            secret_id_file,
        },
    ))
    .await
    .expect("connect");
    keep_using(&provider, Duration::from_secs(14)).await;
    let access = provider.access().expect("access");
    assert_eq!(access.method, "approle");
    assert!(access.logins >= 3, "logged in again: {access:?}");
    assert!(access.renewals >= 1, "{access:?}");
    assert_eq!(access.failures, 0, "{access:?}");
}

/// Enables an auth method at `mount`, unless the server has it already.
async fn enable_auth(bao: &testing::OpenBao, mount: &str, kind: &str) {
    let (status, reply) = bao
        .call(
            reqwest::Method::POST,
            &format!("sys/auth/{mount}"),
            json!({ "type": kind }),
        )
        .await;
    assert!(
        status < 300 || reply.to_string().contains("path is already in use"),
        "enable {kind}: HTTP {status}: {reply}"
    );
}

/// A stand-in for the Kubernetes API's TokenReview, which OpenBao's
/// Kubernetes auth asks whether a service-account token is valid: it
/// answers "authenticated" for `jwt` alone. Returns its address and a
/// count of the reviews it answered.
async fn token_review(
    jwt: String,
    user: String,
    uid: String,
) -> (String, Arc<std::sync::atomic::AtomicUsize>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = format!("http://{}", listener.local_addr().expect("addr"));
    let reviews = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counted = Arc::clone(&reviews);
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            let mut request = Vec::new();
            let mut buf = [0u8; 4096];
            // Headers, then the body its Content-Length announces.
            loop {
                let n = socket.read(&mut buf).await.unwrap_or(0);
                if n == 0 {
                    break;
                }
                request.extend_from_slice(&buf[..n]);
                let text = String::from_utf8_lossy(&request);
                if let Some((head, body)) = text.split_once("\r\n\r\n") {
                    let length = head
                        .lines()
                        .find_map(|l| {
                            l.to_ascii_lowercase()
                                .strip_prefix("content-length:")
                                .map(|v| v.trim().parse::<usize>().unwrap_or(0))
                        })
                        .unwrap_or(0);
                    if body.len() >= length {
                        break;
                    }
                }
            }
            let text = String::from_utf8_lossy(&request);
            let body = text.split_once("\r\n\r\n").map_or("", |(_, b)| b);
            let review: Value = serde_json::from_str(body).unwrap_or(Value::Null);
            let authenticated = review["spec"]["token"].as_str() == Some(jwt.as_str());
            counted.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let status = if authenticated {
                json!({ "authenticated": true, "user": { "username": user, "uid": uid, "groups": ["system:serviceaccounts"] } })
            } else {
                json!({ "authenticated": false, "error": "token not valid" })
            };
            let reply = json!({
                "apiVersion": "authentication.k8s.io/v1",
                "kind": "TokenReview",
                "status": status,
            })
            .to_string();
            let response = format!(
                "HTTP/1.1 201 Created\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{reply}",
                reply.len()
            );
            let _ = socket.write_all(response.as_bytes()).await;
        }
    });
    (addr, reviews)
}

// S-KEY-4: Kubernetes auth: the provider logs in with the service-account
// token from its file (as a pod's is mounted), and logs in again when its
// OpenBao token reaches its maximum lifetime. OpenBao is real; the
// Kubernetes API that confirms the service-account token is a stand-in.
#[tokio::test]
async fn kubernetes_auth_logs_in_with_the_service_account_token() {
    use base64::Engine;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
    let Some(bao) = testing::OpenBao::from_env() else {
        return;
    };
    let mount = format!("k8s-{}", uuid::Uuid::new_v4().simple());
    enable_auth(&bao, &mount, "kubernetes").await;
    // A service-account token as the kubelet mounts it (its signature is
    // checked by the TokenReview, not by OpenBao).
    let uid = uuid::Uuid::new_v4().to_string();
    let claims = json!({
        "iss": "kubernetes/serviceaccount",
        "sub": "system:serviceaccount:clarity:clarity",
        "kubernetes.io/serviceaccount/namespace": "clarity",
        "kubernetes.io/serviceaccount/service-account.name": "clarity",
        "kubernetes.io/serviceaccount/service-account.uid": uid,
    });
    let jwt = format!(
        "{}.{}.{}",
        B64.encode(br#"{"alg":"RS256","typ":"JWT"}"#),
        B64.encode(claims.to_string()),
        B64.encode(b"not-checked-by-openbao")
    );
    let (api, reviews) = token_review(
        jwt.clone(),
        "system:serviceaccount:clarity:clarity".into(),
        uid,
    )
    .await;
    bao.post(
        &format!("auth/{mount}/config"),
        json!({
            "kubernetes_host": api,
            "disable_local_ca_jwt": true,
            // Required, and unused for an http:// stand-in.
            "kubernetes_ca_cert": rcgen::generate_simple_self_signed(vec!["kubernetes".to_string()])
                .expect("a certificate")
                .cert
                .pem(),
        }),
    )
    .await;
    let key = fresh_key();
    let policy = bao.documented_policy(&key).await;
    bao.post(
        &format!("auth/{mount}/role/clarity"),
        json!({
            "bound_service_account_names": ["clarity"],
            "bound_service_account_namespaces": ["clarity"],
            "token_policies": [policy],
            "token_ttl": "3s",
            "token_max_ttl": "6s",
        }),
    )
    .await;
    let dir = tempfile::tempdir().expect("tempdir");
    let jwt_file = secret_file(dir.path(), "token", &jwt);

    let provider = TransitKeyProvider::connect(bao.settings(
        &key,
        TransitAuth::Kubernetes {
            mount: mount.clone(),
            role: "clarity".into(),
            jwt_file,
        },
    ))
    .await
    .expect("connect");
    keep_using(&provider, Duration::from_secs(10)).await;
    let access = provider.access().expect("access");
    assert_eq!(access.method, "kubernetes");
    assert!(access.logins >= 2, "logged in again: {access:?}");
    assert_eq!(access.failures, 0, "{access:?}");
    let reviewed = reviews.load(std::sync::atomic::Ordering::Relaxed);
    assert!(reviewed >= 2, "each login was reviewed: {reviewed}");

    // Another role's name is refused, and says which method.
    let wrong = TransitKeyProvider::connect(bao.settings(
        &key,
        TransitAuth::Kubernetes {
            mount,
            role: "not-a-role".into(),
            jwt_file: secret_file(dir.path(), "token-2", &jwt),
        },
    ))
    .await
    .expect_err("unknown role");
    assert!(wrong.to_string().contains("Kubernetes login"), "{wrong}");
}

/// Alerts a test receives.
#[derive(Debug, Default)]
struct Received(Mutex<Vec<AlertKind>>);

impl AlertHook for Received {
    fn alert(&self, alert: &Alert) {
        self.0.lock().expect("lock").push(alert.kind);
    }
}

/// Waits up to `limit` for `ready`.
async fn wait_for(limit: Duration, mut ready: impl FnMut() -> bool) -> bool {
    let started = Instant::now();
    while started.elapsed() < limit {
        if ready() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    ready()
}

// S-KEY-4: configured as an operator would (`keys.transit_auth = "token"`),
// a revoked token fails its renewal: the failure is counted, raised as one
// alert, and shown by `keys status`; once the token file holds a good
// token again, the provider takes it and is healthy.
#[tokio::test]
async fn a_failing_renewal_is_an_alert_until_the_token_file_is_replaced() {
    let Some(bao) = testing::OpenBao::from_env() else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let key = fresh_key();
    let first = bao.token(&key, 3).await;
    let token_file = secret_file(dir.path(), "token", &first);
    let mut config = Config::default();
    config.data_dir = dir.path().join("data");
    config.keys.provider = KeyProviderKind::Transit;
    config.keys.transit_auth = TransitAuthMethod::Token;
    config.keys.transit_addr = Some(bao.addr.clone());
    config.keys.transit_token_file = Some(token_file);
    config.keys.transit_ca_cert = bao.ca.clone();
    config.keys.transit_key = key.clone();
    let received = Arc::new(Received::default());
    let clarity = Clarity::open(config)
        .await
        .expect("open on transit")
        .with_alert_hook(received.clone());
    let operator = clarity.operator().await.expect("operator");
    let status = clarity.key_status(&operator).await.expect("status");
    assert_eq!(status.provider, "transit");
    assert_eq!(status.provider_error, None);
    assert!(
        status.access.as_ref().is_some_and(|a| a.healthy),
        "{status:?}"
    );

    bao.post("auth/token/revoke", json!({ "token": first }))
        .await;
    let failing = wait_for(Duration::from_secs(8), || {
        clarity
            .stats()
            .key_access
            .is_some_and(|a| !a.healthy && a.failures >= 2)
    })
    .await;
    assert!(
        failing,
        "renewal failed and was retried: {:?}",
        clarity.stats().key_access
    );
    assert_eq!(
        *received.0.lock().expect("lock"),
        vec![AlertKind::KeyAccessFailing],
        "one alert for the outage, not one per retry"
    );
    let status = clarity.key_status(&operator).await.expect("status");
    assert!(status.provider_error.is_some(), "{status:?}");

    // The operator (or an agent) puts a good token in the file.
    let second = bao.token(&key, 3).await;
    secret_file(dir.path(), "token", &second);
    let healthy = wait_for(Duration::from_secs(40), || {
        clarity.stats().key_access.is_some_and(|a| a.healthy)
    })
    .await;
    assert!(healthy, "{:?}", clarity.stats().key_access);
    let status = clarity.key_status(&operator).await.expect("status");
    assert_eq!(status.provider_error, None, "{status:?}");
    assert!(status.current_kek_version >= 1);
    clarity.shutdown().await;
}
