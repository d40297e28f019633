//! The HTTP API end to end against the real binary: the main flows, bad
//! input, and PHI staying out of logs.

mod support;

use clarity_tests::Server;
use reqwest::{Client, Response, StatusCode};
use serde_json::{Value, json};

const ADMIN_PASSWORD: &str = "the first operator keeps this safe";
const PASSWORD: &str = "a clinician's long passphrase";

struct Api {
    server: Server,
    client: Client,
    _dir: tempfile::TempDir,
}

impl Api {
    fn start() -> Api {
        let dir = tempfile::tempdir().expect("tempdir");
        let server = Server::start(&dir.path().join("data"), &[]);
        Api {
            server,
            client: Client::new(),
            _dir: dir,
        }
    }

    fn setup_code(&self) -> String {
        self.server
            .stdout_lines
            .iter()
            .find_map(|l| l.strip_prefix("setup code: "))
            .expect("setup code")
            .to_string()
    }

    async fn call(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> Response {
        let method = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
        let mut request = self.client.request(method, self.server.url(path));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        request.send().await.expect("request")
    }

    async fn ok(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> Value {
        let response = self.call(method, path, token, body).await;
        let status = response.status();
        let text = response.text().await.expect("body");
        assert!(status.is_success(), "{method} {path}: {status} {text}");
        if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).expect("json")
        }
    }

    async fn login(&self, email: &str, password: &str) -> Value {
        self.ok(
            "POST",
            "/v1/auth/login",
            None,
            Some(json!({"email": email, "password": password})),
        )
        .await
    }

    /// Setup, then an admin token.
    async fn admin(&self) -> String {
        let setup = json!({"setup_code": self.setup_code(), "email": "admin@example.org", "password": ADMIN_PASSWORD});
        self.ok("POST", "/v1/setup", None, Some(setup)).await;
        self.login("admin@example.org", ADMIN_PASSWORD).await["access_token"]
            .as_str()
            .expect("token")
            .to_string()
    }

    async fn user(&self, admin: &str, email: &str, roles: &[&str]) -> (String, String) {
        let user = self
            .ok(
                "POST",
                "/v1/users",
                Some(admin),
                Some(json!({"email": email, "password": PASSWORD, "roles": roles})),
            )
            .await;
        let token = self.login(email, PASSWORD).await["access_token"]
            .as_str()
            .expect("token")
            .to_string();
        (user["id"].as_str().expect("id").to_string(), token)
    }
}

fn patient_body(mrn: &str, given: &str) -> Value {
    json!({
        "mrn": mrn, "given_name": given, "family_name": "Example",
        "birth_date": "1980-06-15", "sex": "female", "email": format!("{}@example.org", mrn.to_lowercase()),
        "address": {"line": ["1 Main St"], "city": "Springfield", "country": "US"},
        "data": {"allergies": ["latex"]}
    })
}

#[tokio::test]
async fn the_main_flows_work_over_http() {
    let api = Api::start();
    let admin = api.admin().await;
    let (_, clinician) = api.user(&admin, "c@example.org", &["clinician"]).await;
    let (nurse_id, nurse) = api.user(&admin, "n@example.org", &["nurse"]).await;
    let (_, er) = api.user(&admin, "er@example.org", &["clinician"]).await;
    let (_, auditor) = api.user(&admin, "a@example.org", &["auditor"]).await;
    let (_, researcher) = api.user(&admin, "r@example.org", &["researcher"]).await;

    let me = api.ok("GET", "/v1/me", Some(&clinician), None).await;
    assert_eq!(me["user"]["roles"], json!(["clinician"]));

    // Patients, with versions as ETags.
    let created = api
        .call(
            "POST",
            "/v1/patients",
            Some(&clinician),
            Some(patient_body("MRN-1", "Ada")),
        )
        .await;
    assert_eq!(created.status(), StatusCode::CREATED);
    assert_eq!(created.headers()["etag"], "\"1\"");
    assert_eq!(created.headers()["cache-control"], "no-store");
    let patient: Value = created.json().await.expect("json");
    let pid = patient["id"].as_str().expect("id").to_string();
    assert_eq!(patient["given_name"], "Ada");

    let update = |version: Option<&str>| {
        let mut request = api
            .client
            .put(api.server.url(&format!("/v1/patients/{pid}")))
            .bearer_auth(&clinician);
        if let Some(v) = version {
            request = request.header("if-match", v);
        }
        request.json(&patient_body("MRN-1", "Augusta")).send()
    };
    assert_eq!(
        update(None).await.expect("put").status(),
        StatusCode::PRECONDITION_REQUIRED
    );
    let updated = update(Some("\"1\"")).await.expect("put");
    assert_eq!(updated.status(), StatusCode::OK);
    assert_eq!(updated.headers()["etag"], "\"2\"");
    let stale = update(Some("\"1\"")).await.expect("put");
    assert_eq!(stale.status(), StatusCode::PRECONDITION_FAILED);

    let found = api
        .ok(
            "POST",
            "/v1/patients/search",
            Some(&clinician),
            Some(json!({"mrn": "mrn-1"})),
        )
        .await;
    assert_eq!(found["items"][0]["id"], pid.as_str());
    let listed = api
        .ok("GET", "/v1/patients?limit=10", Some(&clinician), None)
        .await;
    assert_eq!(listed["items"].as_array().expect("items").len(), 1);

    // Records.
    let record = api
        .ok(
            "POST",
            &format!("/v1/patients/{pid}/records"),
            Some(&clinician),
            Some(json!({"kind": "note", "data": {"text": "stable"}})),
        )
        .await;
    let rid = record["id"].as_str().expect("id").to_string();
    let records = api
        .ok(
            "GET",
            &format!("/v1/patients/{pid}/records"),
            Some(&clinician),
            None,
        )
        .await;
    assert_eq!(records["items"][0]["data"]["text"], "stable");

    // The nurse sees nothing until assigned.
    assert_eq!(
        api.call("GET", &format!("/v1/patients/{pid}"), Some(&nurse), None)
            .await
            .status(),
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        api.call("GET", &format!("/v1/records/{rid}"), Some(&nurse), None)
            .await
            .status(),
        StatusCode::NOT_FOUND
    );
    let assign = api
        .call(
            "POST",
            &format!("/v1/patients/{pid}/care-team"),
            Some(&admin),
            Some(json!({"user_id": nurse_id})),
        )
        .await;
    assert_eq!(assign.status(), StatusCode::NO_CONTENT);
    api.ok("GET", &format!("/v1/records/{rid}"), Some(&nurse), None)
        .await;
    let prescription = api
        .call(
            "POST",
            &format!("/v1/patients/{pid}/records"),
            Some(&nurse),
            Some(json!({"kind": "prescription", "data": {"drug": "x"}})),
        )
        .await;
    assert_eq!(prescription.status(), StatusCode::FORBIDDEN);

    // Break-glass, then review.
    assert_eq!(
        api.call("GET", &format!("/v1/patients/{pid}"), Some(&er), None)
            .await
            .status(),
        StatusCode::NOT_FOUND
    );
    let grant = api
        .call(
            "POST",
            "/v1/break-glass",
            Some(&er),
            Some(json!({"patient_id": pid, "reason": "unresponsive in the emergency room"})),
        )
        .await;
    assert_eq!(grant.status(), StatusCode::CREATED);
    let glass = api
        .client
        .get(api.server.url(&format!("/v1/patients/{pid}")))
        .bearer_auth(&er)
        .header("x-purpose-of-use", "ETREAT")
        .send()
        .await
        .expect("get");
    assert_eq!(glass.status(), StatusCode::OK);
    let grants = api
        .ok(
            "GET",
            "/v1/break-glass/grants?unreviewed=true",
            Some(&admin),
            None,
        )
        .await;
    let grant_id = grants["items"][0]["grant_id"]
        .as_str()
        .expect("grant")
        .to_string();
    api.ok(
        "POST",
        &format!("/v1/break-glass/grants/{grant_id}/review"),
        Some(&admin),
        None,
    )
    .await;

    // Research and audit.
    let research = api
        .ok("GET", "/v1/research/patients", Some(&researcher), None)
        .await;
    assert!(!research.to_string().contains("Augusta"));
    let events = api
        .ok(
            "GET",
            &format!("/v1/audit/events?patient_id={pid}&limit=100"),
            Some(&auditor),
            None,
        )
        .await;
    let items = events["items"].as_array().expect("events");
    assert!(items.iter().any(|e| e["subtype"] == "break_glass"));
    assert!(
        items
            .iter()
            .any(|e| e["purpose"] == "ETREAT" && e["subtype"] == "patient.read")
    );
    assert!(
        items
            .iter()
            .all(|e| e["request_id"].is_string() && e["client_address"].is_string())
    );
    let verify = api
        .ok("GET", "/v1/audit/verify", Some(&auditor), None)
        .await;
    assert_eq!(verify["ok"], true, "{verify}");
    let export = api
        .call(
            "GET",
            "/v1/audit/export?format=fhir&limit=50",
            Some(&auditor),
            None,
        )
        .await;
    assert_eq!(export.headers()["content-type"], "application/fhir+ndjson");
    let ndjson = export.text().await.expect("ndjson");
    assert!(
        ndjson.lines().all(
            |l| serde_json::from_str::<Value>(l).expect("line")["resourceType"] == "AuditEvent"
        )
    );
    assert_eq!(
        api.call("GET", "/v1/audit/events", Some(&clinician), None)
            .await
            .status(),
        StatusCode::FORBIDDEN
    );

    // Key listing and rotation (admins only); data still reads afterwards.
    let status = api.ok("GET", "/v1/admin/keys", Some(&admin), None).await;
    assert_eq!(status["current_kek_version"], 1);
    let rotated = api
        .ok("POST", "/v1/admin/keys/rotate", Some(&admin), None)
        .await;
    assert_eq!(rotated["kek_version"], 2);
    assert_eq!(rotated["new_version"], true);
    assert_eq!(
        api.call("POST", "/v1/admin/keys/rotate", Some(&clinician), None)
            .await
            .status(),
        StatusCode::FORBIDDEN
    );
    api.ok("GET", &format!("/v1/records/{rid}"), Some(&nurse), None)
        .await;

    // Refresh rotation and logout.
    let session = api.login("c@example.org", PASSWORD).await;
    let refresh = session["refresh_token"].as_str().expect("refresh");
    let rotated = api
        .ok(
            "POST",
            "/v1/auth/refresh",
            None,
            Some(json!({"refresh_token": refresh})),
        )
        .await;
    let reuse = api
        .call(
            "POST",
            "/v1/auth/refresh",
            None,
            Some(json!({"refresh_token": refresh})),
        )
        .await;
    assert_eq!(reuse.status(), StatusCode::UNAUTHORIZED);
    let rotated_token = rotated["access_token"].as_str().expect("token");
    assert_eq!(
        api.call("GET", "/v1/me", Some(rotated_token), None)
            .await
            .status(),
        StatusCode::UNAUTHORIZED,
        "reuse ended the family"
    );
    assert_eq!(
        api.call("POST", "/v1/auth/logout", Some(&clinician), None)
            .await
            .status(),
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        api.call("GET", "/v1/me", Some(&clinician), None)
            .await
            .status(),
        StatusCode::UNAUTHORIZED
    );

    // Erasure.
    assert_eq!(
        api.call("DELETE", &format!("/v1/patients/{pid}"), Some(&admin), None)
            .await
            .status(),
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        api.call("GET", &format!("/v1/records/{rid}"), Some(&nurse), None)
            .await
            .status(),
        StatusCode::NOT_FOUND
    );

    // The break-glass alert's log line names the user and the patient as
    // plain ids, with no Rust debug forms (`Some(…)`) in any line.
    let (_, logs) = api.server.terminate();
    let alert = logs
        .iter()
        .find(|l| l.contains("\"security alert\"") && l.contains("BreakGlass"))
        .expect("a security alert line for the break-glass access");
    let alert: Value = serde_json::from_str(alert).expect("JSON line");
    assert_eq!(alert["patient_id"], json!(pid), "{alert}");
    assert!(
        alert["user_id"].as_str().is_some_and(|id| id.len() == 36),
        "{alert}"
    );
    for line in &logs {
        assert!(
            !line.contains("Some("),
            "a Rust debug form in a log line: {line}"
        );
    }
}

#[tokio::test]
async fn totp_enrolment_over_http() {
    let api = Api::start();
    let admin = api.admin().await;
    let (_, clinician) = api.user(&admin, "mfa@example.org", &["clinician"]).await;
    let enrolment = api
        .ok("POST", "/v1/auth/mfa/enroll", Some(&clinician), None)
        .await;
    let code = support::current_totp(enrolment["secret"].as_str().expect("secret"));
    let user = api
        .ok(
            "POST",
            "/v1/auth/mfa/confirm",
            Some(&clinician),
            Some(json!({"code": code})),
        )
        .await;
    assert_eq!(user["mfa_enabled"], true);
    let without = api
        .call(
            "POST",
            "/v1/auth/login",
            None,
            Some(json!({"email": "mfa@example.org", "password": PASSWORD})),
        )
        .await;
    assert_eq!(without.status(), StatusCode::UNAUTHORIZED);
    let body: Value = without.json().await.expect("json");
    assert_eq!(body["error"]["code"], "mfa_required");
}

// S-IN-1, S-ERR-1: bad input gets a 4xx with a clear message, never a 5xx.
#[tokio::test]
async fn bad_input_is_refused_with_4xx() {
    let api = Api::start();
    let admin = api.admin().await;
    let (_, clinician) = api.user(&admin, "c@example.org", &["clinician"]).await;
    let raw = |method: &str, path: &str, body: Vec<u8>, token: Option<&str>| {
        let method = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
        let mut request = api
            .client
            .request(method, api.server.url(path))
            .header("content-type", "application/json")
            .body(body);
        if let Some(token) = token {
            request = request.bearer_auth(token.to_string());
        }
        request.send()
    };
    let mut deep = String::new();
    for _ in 0..5000 {
        deep.push_str("{\"a\":");
    }
    deep.push('1');
    for _ in 0..5000 {
        deep.push('}');
    }
    let unknown_field = serde_json::to_vec(&json!({
        "mrn": "M", "given_name": "A", "family_name": "B",
        "birth_date": "1980-01-01", "sex": "male", "shoe": 1
    }))
    .expect("json");
    let huge_number = br#"{"mrn":"M","given_name":"A","family_name":"B","birth_date":"1980-01-01","sex":"male","data":{"n":1e999999}}"#.to_vec();
    let cases: Vec<(&str, String, Vec<u8>)> = vec![
        ("POST", "/v1/patients".into(), b"{not json".to_vec()),
        ("POST", "/v1/patients".into(), br#"{"mrn": 5}"#.to_vec()),
        ("POST", "/v1/patients".into(), unknown_field),
        ("POST", "/v1/patients".into(), vec![b'{', 0xff, 0xfe, b'}']),
        ("POST", "/v1/patients".into(), deep.into_bytes()),
        // An oversized body is refused at once with 413, before it is sent:
        // tests/tests/connections.rs checks that on a raw socket (a client
        // library still writing the body sees the early close as a broken
        // pipe instead of the answer).
        ("POST", "/v1/patients".into(), huge_number),
        (
            "POST",
            "/v1/auth/login".into(),
            br#"{"email": ["x"], "password": 1}"#.to_vec(),
        ),
        (
            "GET",
            "/v1/patients?limit=99999999999999999999".into(),
            Vec::new(),
        ),
        ("GET", "/v1/patients?limit=1&limit=2".into(), Vec::new()),
        ("GET", "/v1/patients?mrn=MRN-1".into(), Vec::new()),
        (
            "POST",
            "/v1/patients/search".into(),
            br#"{"mrn":"a","email":"b@c.d"}"#.to_vec(),
        ),
        ("GET", "/v1/patients?drop=table".into(), Vec::new()),
        (
            "GET",
            "/v1/patients/..%2F..%2Fetc%2Fpasswd".into(),
            Vec::new(),
        ),
        (
            "GET",
            "/v1/patients/1;DROP%20TABLE%20patients".into(),
            Vec::new(),
        ),
        (
            "GET",
            "/v1/records/00000000-0000-0000-0000-000000000000".into(),
            Vec::new(),
        ),
        (
            "PUT",
            "/v1/records/00000000-0000-0000-0000-000000000000".into(),
            br#"{"data":{"a":1}}"#.to_vec(),
        ),
        (
            "POST",
            "/v1/break-glass".into(),
            br#"{"patient_id":"not-a-uuid","reason":"x"}"#.to_vec(),
        ),
        ("GET", "/v1/audit/events?from=yesterday".into(), Vec::new()),
    ];
    for (method, path, body) in cases {
        let response = raw(method, &path, body, Some(&clinician))
            .await
            .expect("response");
        let status = response.status();
        let text = response.text().await.expect("body");
        assert!(status.is_client_error(), "{method} {path}: {status} {text}");
        let parsed: Value = serde_json::from_str(&text).expect("error body is JSON");
        assert!(
            parsed["error"]["message"]
                .as_str()
                .is_some_and(|m| !m.is_empty()),
            "{text}"
        );
        assert!(parsed["error"]["request_id"].is_string());
    }
    // A mistake is named by its field path and what is expected there, and
    // the value sent is never repeated (it may be PHI).
    let named = [
        (
            "/v1/users",
            &admin,
            json!({"email": "n@example.org", "password": "a long and unguessable passphrase", "roles": ["clinican"]}),
            "`roles` is invalid: unknown role; roles are admin",
            "clinican",
        ),
        (
            "/v1/patients",
            &clinician,
            json!({"mrn": "M-9", "given_name": "Ada", "family_name": "Byron",
                   "birth_date": "1815-12-10", "sex": "female",
                   "address": {"city": "Marylebone", "postal_code": 7}}),
            "`address.postal_code`",
            "Marylebone",
        ),
    ];
    for (path, token, body, wanted, secret) in named {
        let response = raw(
            "POST",
            path,
            serde_json::to_vec(&body).expect("json"),
            Some(token),
        )
        .await
        .expect("response");
        assert_eq!(response.status(), 400, "{path}");
        let text = response.text().await.expect("body");
        assert!(text.contains(wanted), "{path}: {text}");
        assert!(!text.contains(secret), "{path} echoed a value: {text}");
    }
    // S-IN-2: injection strings are inert data: nothing matches, nothing breaks.
    for probe in [
        "' OR 1=1 --",
        "x'; DROP TABLE patients; --",
        "../../etc/passwd",
    ] {
        let body = serde_json::to_vec(&json!({ "mrn": probe })).expect("json");
        let response = raw("POST", "/v1/patients/search", body, Some(&clinician))
            .await
            .expect("response");
        assert_eq!(response.status(), StatusCode::OK);
        let body: Value = response.json().await.expect("json");
        assert_eq!(body["items"], json!([]), "{probe}");
    }
    for token in [
        "garbage",
        "v4.local.AAAA",
        "v4.public.AAAA",
        "crt_AAAA",
        &"x".repeat(10_000),
    ] {
        let response = raw("GET", "/v1/me", Vec::new(), Some(token))
            .await
            .expect("response");
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED, "{token:.20}");
    }
    assert_eq!(
        raw("GET", "/v1/me", Vec::new(), None)
            .await
            .expect("response")
            .status(),
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        api.call("PATCH", "/v1/patients", Some(&clinician), None)
            .await
            .status(),
        StatusCode::METHOD_NOT_ALLOWED
    );
    let wrong_type = api
        .client
        .post(api.server.url("/v1/patients"))
        .bearer_auth(&clinician)
        .header("content-type", "text/plain")
        .body("x")
        .send()
        .await
        .expect("response");
    assert_eq!(wrong_type.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
}

// S-LOG-1: PHI and secrets sent through the API appear in no log line.
#[tokio::test]
async fn phi_and_secrets_stay_out_of_logs() {
    let api = Api::start();
    let admin = api.admin().await;
    let (_, clinician) = api.user(&admin, "c@example.org", &["clinician"]).await;
    let canary = format!("CANARY{}", uuid::Uuid::new_v4().simple());
    let body = patient_body(&format!("{canary}MRN"), &canary);
    let patient = api
        .ok("POST", "/v1/patients", Some(&clinician), Some(body))
        .await;
    let pid = patient["id"].as_str().expect("id");
    api.ok(
        "POST",
        "/v1/patients/search",
        Some(&clinician),
        Some(json!({ "mrn": format!("{canary}MRN") })),
    )
    .await;
    api.ok(
        "POST",
        &format!("/v1/patients/{pid}/records"),
        Some(&clinician),
        Some(json!({"kind": "note", "data": {"text": canary}})),
    )
    .await;
    let evil = "bad\r\n{\"level\":\"ERROR\",\"message\":\"forged\"}\u{1b}[31m";
    let _ = api
        .call(
            "POST",
            "/v1/auth/login",
            None,
            Some(json!({"email": evil, "password": canary})),
        )
        .await;
    // The metrics carry route templates and counts, never request values.
    let metrics = api
        .client
        .get(api.server.url("/metrics"))
        .send()
        .await
        .expect("metrics");
    assert_eq!(metrics.status(), StatusCode::OK);
    let metrics = metrics.text().await.expect("text");
    assert!(
        metrics.contains("clarity_http_requests_total{"),
        "{metrics}"
    );
    assert!(
        metrics.contains("route=\"/v1/patients/{id}/records\""),
        "{metrics}"
    );
    assert!(
        metrics.contains("clarity_audit_events_written"),
        "{metrics}"
    );
    assert!(
        !metrics.contains(&canary) && !metrics.contains(pid),
        "no request values in metrics"
    );
    let (clean, logs) = api.server.terminate();
    assert!(clean);
    assert!(!logs.is_empty());
    assert!(
        logs.iter()
            .any(|l| l.contains("\"route\":\"/v1/patients\"") && l.contains("\"actor\":\"")),
        "request lines name the actor"
    );
    for line in &logs {
        assert!(!line.contains(&canary), "PHI in a log line: {line}");
        assert!(
            !line.contains(PASSWORD) && !line.contains(ADMIN_PASSWORD),
            "a password in a log line"
        );
        assert!(!line.contains(&clinician), "a token in a log line");
        assert!(!line.contains('\u{1b}'), "an escape sequence in a log line");
        let parsed: Value = serde_json::from_str(line).expect("each line is one JSON object");
        assert!(parsed["message"] != "forged");
    }
}

/// The count of `stage` in the stage latency histograms of `/metrics`.
async fn stage_count(api: &Api, stage: &str) -> u64 {
    let reply = api.call("GET", "/metrics", None, None).await;
    let text = reply.text().await.expect("metrics text");
    let prefix = format!("clarity_stage_duration_seconds_count{{stage=\"{stage}\"}} ");
    text.lines()
        .find_map(|line| line.strip_prefix(&prefix))
        .unwrap_or_else(|| panic!("no count for stage {stage} in {text}"))
        .trim()
        .parse()
        .expect("a count")
}

// The stage histograms account for each stage of one audited read exactly
// once: its token check, its decision, its row, its data key and its wait
// for the audit event; and at least one audit batch was committed for it.
#[tokio::test]
async fn metrics_time_each_stage_of_an_audited_read() {
    let api = Api::start();
    let admin = api.admin().await;
    let (_, clinician) = api.user(&admin, "c@example.org", &["clinician"]).await;
    let patient = api
        .ok(
            "POST",
            "/v1/patients",
            Some(&clinician),
            Some(patient_body("MRN-STAGES", "Ada")),
        )
        .await;
    let path = format!("/v1/patients/{}", patient["id"].as_str().expect("id"));
    let stages = ["authenticate", "authorize", "row_read", "data_key"]
        .into_iter()
        .chain(["audit_wait", "audit_commit"]);
    let mut before = Vec::new();
    for stage in stages.clone() {
        before.push((stage, stage_count(&api, stage).await));
    }
    api.ok("GET", &path, Some(&clinician), None).await;
    for (stage, before) in before {
        let after = stage_count(&api, stage).await;
        if stage == "audit_commit" {
            assert!(after > before, "no audit batch counted for the read");
        } else {
            assert_eq!(after - before, 1, "stage {stage} counted once per read");
        }
    }
}
