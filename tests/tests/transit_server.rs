//! S-KEY-4: `clarity serve` on OpenBao transit with a token of 4 s runs
//! past three of its lifetimes without failing: the server renews the token
//! before half of each lease, its readiness (which asks transit about the
//! key every time) stays ready, and its metrics count the renewals and no
//! failure. Configured only through `CLARITY_*` variables and a token file,
//! as a deployment does.

use std::time::{Duration, Instant};

use clarity_core::testing;
use clarity_tests::Server;

/// The value of the metric `name` in an OpenMetrics text.
fn metric(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
}

#[tokio::test]
async fn a_server_on_transit_outlives_three_token_lifetimes() {
    let Some(bao) = testing::OpenBao::from_env() else {
        return;
    };
    let key = testing::OpenBao::fresh_key();
    let token = bao.token(&key, 4).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let token_file = dir.path().join("openbao-token");
    testing::write_secret_file(&token_file, &token);
    let token_path = token_file.to_str().expect("utf-8");
    let ca = bao
        .ca
        .as_ref()
        .map(|p| p.to_str().expect("utf-8").to_string());
    let mut env = vec![
        ("CLARITY_KEYS_PROVIDER", "transit"),
        ("CLARITY_KEYS_TRANSIT_ADDR", bao.addr.as_str()),
        ("CLARITY_KEYS_TRANSIT_AUTH", "token"),
        ("CLARITY_KEYS_TRANSIT_TOKEN_FILE", token_path),
        ("CLARITY_KEYS_TRANSIT_KEY", key.as_str()),
    ];
    if let Some(ca) = &ca {
        env.push(("CLARITY_KEYS_TRANSIT_CA_CERT", ca.as_str()));
    }
    let server = Server::start(&dir.path().join("data"), &env);
    let client = reqwest::Client::new();

    let started = Instant::now();
    let mut checks = 0;
    while started.elapsed() < Duration::from_secs(14) {
        let ready = client
            .get(server.url("/health/ready"))
            .send()
            .await
            .expect("the server answers");
        let status = ready.status();
        let body: serde_json::Value = ready.json().await.expect("json");
        assert_eq!(
            (status.as_u16(), &body["checks"]["keys"]),
            (200, &serde_json::json!("ok")),
            "after {:?}: {body}; logs: {:?}",
            started.elapsed(),
            server.logs()
        );
        checks += 1;
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert!(checks >= 20, "{checks} readiness checks");

    let text = server.metrics().await;
    let renewals = metric(&text, "clarity_key_provider_token_renewals").expect("renewals");
    let failures = metric(&text, "clarity_key_provider_access_failures").expect("failures");
    let healthy = metric(&text, "clarity_key_provider_access_healthy").expect("healthy");
    assert!(renewals >= 5.0, "renewed every ~2 s: {renewals}");
    assert_eq!((failures, healthy), (0.0, 1.0));
    // The token is never printed.
    assert!(
        server.logs().iter().all(|l| !l.contains(&token)),
        "the token stays out of the logs"
    );
}
