//! S-AC-1: the authorisation matrix through HTTP — every role × operation ×
//! relationship — against the same specification the Rust API is held to
//! (`clarity_core::testing::matrix::expected`), so both give identical answers.

use std::time::Duration;

use clarity_core::model::Role;
use clarity_core::testing::matrix::{Operation, Outcome, Relationship, expected};
use clarity_tests::Server;
use reqwest::{Client, StatusCode};
use serde_json::{Value, json};

const PASSWORD: &str = "matrix cells are checked one by one";

struct Http {
    server: Server,
    client: Client,
}

struct Reply {
    status: StatusCode,
    body: Value,
}

impl Http {
    async fn call(
        &self,
        method: &str,
        path: &str,
        token: &str,
        body: Option<Value>,
        if_match: Option<i64>,
    ) -> Reply {
        let method = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
        let mut request = self
            .client
            .request(method, self.server.url(path))
            .bearer_auth(token);
        if let Some(version) = if_match {
            request = request.header("if-match", format!("\"{version}\""));
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.expect("request");
        let status = response.status();
        let text = response.text().await.expect("body");
        let body = serde_json::from_str(&text).unwrap_or(Value::Null);
        Reply { status, body }
    }

    async fn ok(&self, method: &str, path: &str, token: &str, body: Option<Value>) -> Value {
        let reply = self.call(method, path, token, body, None).await;
        assert!(
            reply.status.is_success(),
            "{method} {path}: {} {}",
            reply.status,
            reply.body
        );
        reply.body
    }

    async fn login(&self, email: &str, password: &str) -> String {
        let response = self
            .client
            .post(self.server.url("/v1/auth/login"))
            .json(&json!({"email": email, "password": password}))
            .send()
            .await
            .expect("login");
        assert!(response.status().is_success(), "login {email}");
        let body: Value = response.json().await.expect("json");
        body["access_token"].as_str().expect("token").to_string()
    }

    async fn user(&self, admin: &str, role: Role) -> (String, String) {
        let email = format!("{role}-{}@matrix.example", uuid::Uuid::new_v4().simple());
        let user = self
            .ok(
                "POST",
                "/v1/users",
                admin,
                Some(json!({"email": email, "password": PASSWORD, "roles": [role.as_str()]})),
            )
            .await;
        let token = self.login(&email, PASSWORD).await;
        (user["id"].as_str().expect("id").to_string(), token)
    }
}

fn profile() -> Value {
    json!({
        "mrn": format!("MX-{}", uuid::Uuid::new_v4().simple()),
        "given_name": "Matrix", "family_name": "Cell",
        "birth_date": "1970-01-01", "sex": "unknown"
    })
}

fn outcome(reply: &Reply) -> Result<Outcome, String> {
    match reply.status {
        s if s.is_success() => Ok(Outcome::Allowed),
        StatusCode::NOT_FOUND => Ok(Outcome::Hidden),
        StatusCode::FORBIDDEN => Ok(Outcome::Denied),
        StatusCode::BAD_REQUEST => Ok(Outcome::Refused),
        other => Err(format!("{other} {}", reply.body)),
    }
}

fn listing(reply: &Reply, patient: &str) -> Result<Outcome, String> {
    match reply.status {
        s if s.is_success() => {
            let listed = reply.body["items"]
                .as_array()
                .is_some_and(|items| items.iter().any(|p| p["id"] == patient));
            Ok(if listed {
                Outcome::Listed
            } else {
                Outcome::NotListed
            })
        }
        StatusCode::FORBIDDEN => Ok(Outcome::Denied),
        other => Err(format!("{other} {}", reply.body)),
    }
}

struct Cell {
    patient: String,
    mrn: String,
    record: String,
}

#[allow(clippy::too_many_arguments)]
async fn perform(
    h: &Http,
    token: &str,
    owner: &str,
    owner_id: &str,
    op: Operation,
    cell: &Cell,
) -> Result<Outcome, String> {
    use Operation as O;
    let (p, r) = (&cell.patient, &cell.record);
    let note = json!({"kind": "note", "data": {"text": "seen today"}});
    match op {
        O::CreatePatient => outcome(
            &h.call("POST", "/v1/patients", token, Some(profile()), None)
                .await,
        ),
        O::ReadPatient => outcome(
            &h.call("GET", &format!("/v1/patients/{p}"), token, None, None)
                .await,
        ),
        O::ListPatients => listing(
            &h.call("GET", "/v1/patients?limit=1000", token, None, None)
                .await,
            p,
        ),
        O::LookupPatient => {
            let body = json!({ "mrn": cell.mrn });
            listing(
                &h.call("POST", "/v1/patients/search", token, Some(body), None)
                    .await,
                p,
            )
        }
        O::UpdatePatient => {
            let current = h.ok("GET", &format!("/v1/patients/{p}"), owner, None).await;
            let version = current["version"].as_i64().expect("version");
            let mut body = profile();
            body["mrn"] = json!(cell.mrn);
            outcome(
                &h.call(
                    "PUT",
                    &format!("/v1/patients/{p}"),
                    token,
                    Some(body),
                    Some(version),
                )
                .await,
            )
        }
        O::ReadRecord => outcome(
            &h.call("GET", &format!("/v1/records/{r}"), token, None, None)
                .await,
        ),
        O::ListRecords => outcome(
            &h.call(
                "GET",
                &format!("/v1/patients/{p}/records"),
                token,
                None,
                None,
            )
            .await,
        ),
        O::CreateNote => outcome(
            &h.call(
                "POST",
                &format!("/v1/patients/{p}/records"),
                token,
                Some(note),
                None,
            )
            .await,
        ),
        O::CreatePrescription => {
            let body = json!({"kind": "prescription", "data": {"drug": "x"}});
            outcome(
                &h.call(
                    "POST",
                    &format!("/v1/patients/{p}/records"),
                    token,
                    Some(body),
                    None,
                )
                .await,
            )
        }
        O::UpdateRecord => {
            let current = h.ok("GET", &format!("/v1/records/{r}"), owner, None).await;
            let version = current["version"].as_i64().expect("version");
            let body = json!({"data": {"text": "updated"}});
            outcome(
                &h.call(
                    "PUT",
                    &format!("/v1/records/{r}"),
                    token,
                    Some(body),
                    Some(version),
                )
                .await,
            )
        }
        O::DeleteRecord => {
            let spare = h
                .ok(
                    "POST",
                    &format!("/v1/patients/{p}/records"),
                    owner,
                    Some(note),
                )
                .await;
            let spare = spare["id"].as_str().expect("id");
            outcome(
                &h.call("DELETE", &format!("/v1/records/{spare}"), token, None, None)
                    .await,
            )
        }
        O::ManageCareTeam => {
            let body = json!({"user_id": owner_id, "relationship": "attending"});
            outcome(
                &h.call(
                    "POST",
                    &format!("/v1/patients/{p}/care-team"),
                    token,
                    Some(body),
                    None,
                )
                .await,
            )
        }
        O::ManageUsers => outcome(&h.call("GET", "/v1/users", token, None, None).await),
        O::ReviewGrants => outcome(
            &h.call("GET", "/v1/break-glass/grants", token, None, None)
                .await,
        ),
        O::ResearchView => outcome(
            &h.call("GET", "/v1/research/patients?limit=10", token, None, None)
                .await,
        ),
        O::BreakGlass => {
            let body = json!({"patient_id": p, "reason": "matrix: emergency access check"});
            outcome(
                &h.call("POST", "/v1/break-glass", token, Some(body), None)
                    .await,
            )
        }
        O::ChangeOwnRoles => {
            let me = h.call("GET", "/v1/me", token, None, None).await;
            let own = me.body["user"]["id"].as_str().expect("own id").to_string();
            let body = json!({"roles": ["auditor"]});
            outcome(
                &h.call(
                    "PATCH",
                    &format!("/v1/users/{own}"),
                    token,
                    Some(body),
                    None,
                )
                .await,
            )
        }
        O::AdminWithPhiRole => {
            let email = format!("mixed-{}@test.example", uuid::Uuid::new_v4().simple());
            let body =
                json!({"email": email, "password": PASSWORD, "roles": ["admin", "clinician"]});
            outcome(&h.call("POST", "/v1/users", token, Some(body), None).await)
        }
        O::ReadAccessLog => outcome(
            &h.call(
                "GET",
                &format!("/v1/patients/{p}/access-log"),
                token,
                None,
                None,
            )
            .await,
        ),
        O::ListDisclosures => outcome(
            &h.call(
                "GET",
                &format!("/v1/patients/{p}/disclosures"),
                token,
                None,
                None,
            )
            .await,
        ),
        O::RecordDisclosure => {
            let body =
                json!({"recipient": "R", "purpose": "P", "description": "D", "legal_basis": "L"});
            outcome(
                &h.call(
                    "POST",
                    &format!("/v1/patients/{p}/disclosures"),
                    token,
                    Some(body),
                    None,
                )
                .await,
            )
        }
        O::ErasePatient => outcome(
            &h.call("DELETE", &format!("/v1/patients/{p}"), token, None, None)
                .await,
        ),
    }
}

// S-AC-1 S-AC-3
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_matrix_over_http_matches_the_specification() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(&dir.path().join("data"), &[]);
    let code = server
        .stdout_lines
        .iter()
        .find_map(|l| l.strip_prefix("setup code: "))
        .expect("setup code")
        .to_string();
    let h = Http {
        server,
        client: Client::new(),
    };
    let admin_email = "matrix-admin@example.org";
    let setup = json!({"setup_code": code, "email": admin_email, "password": PASSWORD});
    let response = h
        .client
        .post(h.server.url("/v1/setup"))
        .json(&setup)
        .send()
        .await
        .expect("setup");
    assert_eq!(response.status(), StatusCode::CREATED);
    let admin = h.login(admin_email, PASSWORD).await;
    let (owner_id, owner) = h.user(&admin, Role::Clinician).await;
    let mut callers = Vec::new();
    for role in Role::ALL {
        let (id, token) = h.user(&admin, role).await;
        callers.push((role, id, token));
    }

    let mut mismatches = Vec::new();
    for rel in Relationship::ALL {
        let mut cells = Vec::new();
        for (role, user_id, token) in &callers {
            let patient = h.ok("POST", "/v1/patients", &owner, Some(profile())).await;
            let record = h
                .ok(
                    "POST",
                    &format!(
                        "/v1/patients/{}/records",
                        patient["id"].as_str().expect("id")
                    ),
                    &owner,
                    Some(json!({"kind": "note", "data": {"text": "x"}})),
                )
                .await;
            let cell = Cell {
                patient: patient["id"].as_str().expect("id").to_string(),
                mrn: patient["mrn"].as_str().expect("mrn").to_string(),
                record: record["id"].as_str().expect("id").to_string(),
            };
            let p = &cell.patient;
            match rel {
                Relationship::Own if *role == Role::Patient => {
                    h.ok(
                        "PATCH",
                        &format!("/v1/users/{user_id}"),
                        &admin,
                        Some(json!({"patient_id": p})),
                    )
                    .await;
                }
                Relationship::Assigned => {
                    h.ok(
                        "POST",
                        &format!("/v1/patients/{p}/care-team"),
                        &admin,
                        Some(json!({"user_id": user_id})),
                    )
                    .await;
                }
                Relationship::ExpiredAssignment => {
                    let soon = (chrono::Utc::now() + chrono::Duration::seconds(2)).to_rfc3339();
                    h.ok(
                        "POST",
                        &format!("/v1/patients/{p}/care-team"),
                        &admin,
                        Some(json!({"user_id": user_id, "expires_at": soon})),
                    )
                    .await;
                }
                Relationship::BreakGlass if *role == Role::Clinician => {
                    let body =
                        json!({"patient_id": p, "reason": "unconscious in the emergency room"});
                    h.ok("POST", "/v1/break-glass", token, Some(body)).await;
                }
                _ => {}
            }
            cells.push(cell);
        }
        if rel == Relationship::ExpiredAssignment {
            tokio::time::sleep(Duration::from_millis(2500)).await;
        }
        for ((role, _, token), cell) in callers.iter().zip(&cells) {
            for op in Operation::ALL {
                let want = expected(*role, op, rel);
                match perform(&h, token, &owner, &owner_id, op, cell).await {
                    Ok(got) if got == want => {}
                    got => mismatches.push(format!(
                        "{role} {op:?} with {rel:?}: expected {want:?}, got {got:?}"
                    )),
                }
            }
        }
    }
    assert!(
        mismatches.is_empty(),
        "{} cells differ:\n{}",
        mismatches.len(),
        mismatches.join("\n")
    );
}
