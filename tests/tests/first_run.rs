//! The first-run experience, end to end against the real binary: start on an
//! empty directory, answer the health probes, stop cleanly, restart on the
//! same data, and refuse to run with a missing keyring.

use clarity_tests::{Server, run, run_with_input};

#[tokio::test]
async fn first_start_creates_keys_and_answers_health_probes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let server = Server::start(&data, &[]);
    let banner = server.stdout_lines.join("\n");
    assert!(
        banner.contains("for development or single-node use"),
        "{banner}"
    );
    // S-AC-2: no default account; a one-time setup code instead.
    let code = server
        .stdout_lines
        .iter()
        .find_map(|l| l.strip_prefix("setup code: "))
        .expect("the first start prints a setup code")
        .to_string();
    assert!(data.join("keyring.json").exists());
    assert!(data.join("clarity.db").exists());

    let client = reqwest::Client::new();
    let live = client
        .get(server.url("/health/live"))
        .send()
        .await
        .expect("live");
    assert_eq!(live.status(), 200);
    // S-HDR-1
    let headers = live.headers().clone();
    assert_eq!(headers["x-content-type-options"], "nosniff");
    assert!(
        headers["content-security-policy"]
            .to_str()
            .expect("csp")
            .contains("default-src 'none'")
    );
    assert!(headers.contains_key("x-request-id"));
    assert!(!headers.contains_key("server"), "no server version header");

    let ready = client
        .get(server.url("/health/ready"))
        .send()
        .await
        .expect("ready");
    assert_eq!(ready.status(), 200);
    let body: serde_json::Value = ready.json().await.expect("json");
    assert_eq!(body["status"], "ready");
    assert_eq!(body["checks"]["database"], "ok");
    assert_eq!(body["checks"]["keys"], "ok");
    assert_eq!(body["checks"]["audit"], "ok");

    // S-ERR-1: errors have the API's shape and carry the request id.
    let missing = client
        .get(server.url("/v1/nothing-here"))
        .send()
        .await
        .expect("404");
    assert_eq!(missing.status(), 404);
    let request_id = missing.headers()["x-request-id"]
        .to_str()
        .expect("id")
        .to_string();
    let body: serde_json::Value = missing.json().await.expect("json");
    assert_eq!(body["error"]["code"], "not_found");
    assert_eq!(body["error"]["request_id"], request_id.as_str());
    let wrong = client
        .delete(server.url("/health/live"))
        .send()
        .await
        .expect("405");
    assert_eq!(wrong.status(), 405);

    // S-AC-2: the one-time code creates the first admin, once.
    let setup = |code: &str| serde_json::json!({"setup_code": code, "email": "first.admin@example.org", "password": "our very first operator passphrase"});
    let post = |body: serde_json::Value| client.post(server.url("/v1/setup")).json(&body).send();
    let wrong = post(setup("0000")).await.expect("setup");
    assert_eq!(wrong.status(), 401);
    // The answer says it is the setup code that was refused, and what to do.
    let wrong = wrong.text().await.expect("body");
    assert!(
        wrong.contains("the setup code is wrong, expired or already used"),
        "{wrong}"
    );
    let created = post(setup(&code)).await.expect("setup");
    assert_eq!(created.status(), 201);
    let admin: serde_json::Value = created.json().await.expect("json");
    assert_eq!(admin["roles"], serde_json::json!(["admin"]));
    assert_eq!(
        post(setup(&code)).await.expect("setup").status(),
        401,
        "the code works once"
    );

    let (clean, logs) = server.terminate();
    assert!(clean, "SIGTERM ends the server cleanly; logs: {logs:?}");
    assert!(
        logs.iter()
            .any(|l| l.contains("\"route\":\"/health/ready\"")),
        "{logs:?}"
    );
    for line in &logs {
        let parsed: serde_json::Value = serde_json::from_str(line).expect("every log line is JSON");
        assert!(
            parsed["timestamp"]
                .as_str()
                .is_some_and(|t| t.ends_with('Z')),
            "UTC: {line}"
        );
    }

    // A restart on the same directory reuses the keyring, and prints no code.
    let again = Server::start(&data, &[]);
    assert!(
        !again
            .stdout_lines
            .iter()
            .any(|l| l.starts_with("setup code"))
    );
    let ready = client
        .get(again.url("/health/ready"))
        .send()
        .await
        .expect("ready");
    assert_eq!(ready.status(), 200);
    let (clean, logs) = again.terminate();
    assert!(clean);
    assert!(
        !logs
            .iter()
            .any(|l| l.contains("created a new local keyring")),
        "no second keyring: {logs:?}"
    );
}

#[tokio::test]
async fn a_store_with_data_and_no_keyring_does_not_start() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let mut config = clarity_core::Config::from_toml("").expect("config");
    config.data_dir = data.clone();
    let phi = clarity_core::vault::PhiStore::open(&config)
        .await
        .expect("open");
    phi.create_patient(
        clarity_core::model::PatientProfile::from_json(
            r#"{"mrn":"R-1","given_name":"A","family_name":"B","birth_date":"2000-01-01","sex":"unknown"}"#,
        )
        .expect("profile"),
    )
    .await
    .expect("create");
    drop(phi);
    std::fs::remove_file(data.join("keyring.json")).expect("remove keyring");

    let data_arg = data.to_str().expect("utf-8 path");
    let (ok, _stdout, stderr) = run(
        &["--data-dir", data_arg, "serve", "--listen", "127.0.0.1:0"],
        &[],
    );
    assert!(!ok, "must not start");
    assert!(
        stderr.contains("keyring file") && stderr.contains("not found"),
        "{stderr}"
    );
    assert!(
        !data.join("keyring.json").exists(),
        "no keyring was invented"
    );
}

#[test]
fn operators_create_users_from_the_command_line() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let data_arg = data.to_str().expect("utf-8 path");
    let args = [
        "--data-dir",
        data_arg,
        "user",
        "create",
        "--email",
        "ops@example.org",
        "--role",
        "admin",
    ];
    let (ok, stdout, stderr) = run_with_input(&args, &[], "an operator chose this passphrase\n");
    assert!(ok, "{stderr}");
    assert!(
        stdout.contains("created user") && stdout.contains("admin"),
        "{stdout}"
    );
    assert!(!stdout.contains("passphrase") && !stderr.contains("passphrase"));
    let (ok, _, stderr) = run_with_input(&args, &[], "an operator chose this passphrase\n");
    assert!(!ok && stderr.contains("already exists"), "{stderr}");
    let weak = [
        "--data-dir",
        data_arg,
        "user",
        "create",
        "--email",
        "w@example.org",
        "--role",
        "nurse",
    ];
    let (ok, _, stderr) = run_with_input(&weak, &[], "password1234\n");
    assert!(!ok && stderr.contains("password"), "{stderr}");
    let (ok, _, stderr) = run_with_input(
        &[
            "--data-dir",
            data_arg,
            "user",
            "create",
            "--email",
            "x@example.org",
            "--role",
            "root",
        ],
        &[],
        "x\n",
    );
    assert!(!ok && stderr.contains("unknown role"), "{stderr}");
}

#[test]
fn migrate_reports_the_schema_version_and_bad_config_is_named() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let data_arg = data.to_str().expect("utf-8 path");
    let (ok, stdout, stderr) = run(&["--data-dir", data_arg, "migrate"], &[]);
    assert!(ok, "{stderr}");
    assert!(stdout.contains("sqlite schema is at version 8"), "{stdout}");

    let (ok, _, stderr) = run(
        &["--data-dir", data_arg, "migrate"],
        &[("CLARITY_STORE_POOL_SIZE", "zero")],
    );
    assert!(!ok);
    assert!(stderr.contains("store.pool_size"), "{stderr}");
    let (ok, _, stderr) = run(
        &["--data-dir", data_arg, "migrate"],
        &[("CLARITY_STORE_BACKEND", "postgres")],
    );
    assert!(!ok);
    assert!(stderr.contains("store.postgres_url"), "{stderr}");
}

// A stop signal sent as soon as the server says it listens (as an
// orchestrator rolling back a fresh instance may) is handled: the server
// drains and exits successfully instead of dying by the signal. Repeated,
// because the window the handler once missed was short.
#[test]
fn a_stop_signal_right_after_start_is_a_clean_stop() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    for round in 0..5 {
        let server = Server::start(&data, &[]);
        let (clean, logs) = server.terminate();
        assert!(clean, "round {round}: {logs:?}");
    }
}
