//! The patient's side of the audit trail over HTTP, against the real
//! binary (S-AUD-9): a patient lists who accessed its record, a clinician
//! records a disclosure, and the accounting comes as JSON and as text.

mod support;

use clarity_tests::Server;
use reqwest::StatusCode;
use serde_json::json;
use support::Api;

/// `GET path` with a purpose of use; (status, content type, body text).
async fn get_with_purpose(
    api: &Api,
    path: &str,
    token: &str,
    purpose: &str,
) -> (StatusCode, String, String) {
    let response = api
        .client
        .get(format!("{}{path}", api.base))
        .bearer_auth(token)
        .header("x-purpose-of-use", purpose)
        .send()
        .await
        .expect("answer");
    let status = response.status();
    let kind = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    (status, kind, response.text().await.expect("body"))
}

// S-AUD-9
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_patient_sees_its_access_log_and_the_accounting_of_disclosures() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(&dir.path().join("data"), &[]);
    let api = Api::new(&server);
    let admin = api.bootstrap(&server).await;
    let body = json!({"email": "grey@clinic.example", "password": support::PASSWORD,
        "roles": ["clinician"], "display_name": "Dr Meredith Grey"});
    let grey_user = api.ok("POST", "/v1/users", Some(&admin), Some(&body)).await;
    let grey = api.login("grey@clinic.example").await;
    let patient = api
        .ok(
            "POST",
            "/v1/patients",
            Some(&grey),
            Some(&support::patient_body("PV-1", 0)),
        )
        .await;
    let patient_id = patient["id"].as_str().expect("id").to_string();
    let other = api
        .ok(
            "POST",
            "/v1/patients",
            Some(&grey),
            Some(&support::patient_body("PV-2", 0)),
        )
        .await;
    let other_id = other["id"].as_str().expect("id").to_string();
    let body = json!({"email": "ada@home.example", "password": support::PASSWORD,
        "roles": ["patient"], "patient_id": patient_id});
    api.ok("POST", "/v1/users", Some(&admin), Some(&body)).await;
    let ada = api.login("ada@home.example").await;
    let (_, auditor) = api
        .user(&admin, "privacy@clinic.example", &["auditor"])
        .await;

    // The clinician reads the record for treatment.
    let (status, _, _) =
        get_with_purpose(&api, &format!("/v1/patients/{patient_id}"), &grey, "TREAT").await;
    assert_eq!(status, StatusCode::OK);

    let log_path = format!("/v1/patients/{patient_id}/access-log");
    let (status, kind, text) = get_with_purpose(&api, &log_path, &ada, "PATRQT").await;
    assert_eq!(status, StatusCode::OK, "{text}");
    assert!(kind.starts_with("application/json"), "{kind}");
    let log: serde_json::Value = serde_json::from_str(&text).expect("json");
    let read = log["items"]
        .as_array()
        .expect("items")
        .iter()
        .find(|e| e["action"] == "patient.read")
        .expect("the clinician's read is listed");
    assert_eq!(read["accessor_id"], grey_user["id"]);
    assert_eq!(read["accessor_name"], "Dr Meredith Grey");
    assert_eq!(read["accessor_roles"], json!(["clinician"]));
    assert_eq!(read["purpose"], "TREAT");
    assert_eq!(read["break_glass"], false);
    // Another patient's log looks like no patient; a clinician may not read logs.
    let reply = api
        .call(
            "GET",
            &format!("/v1/patients/{other_id}/access-log"),
            Some(&ada),
            None,
            None,
        )
        .await;
    assert_eq!(reply.status, StatusCode::NOT_FOUND);
    let reply = api.call("GET", &log_path, Some(&grey), None, None).await;
    assert_eq!(reply.status, StatusCode::FORBIDDEN);
    let reply = api
        .call(
            "GET",
            &format!("{log_path}?from=yesterday"),
            Some(&ada),
            None,
            None,
        )
        .await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);

    // A disclosure, recorded by the clinician.
    let disclosures = format!("/v1/patients/{patient_id}/disclosures");
    let disclosure = json!({
        "recipient": "County Health Department",
        "recipient_address": "1 Public Health Way",
        "purpose": "notifiable disease report",
        "description": "laboratory result",
        "legal_basis": "state reporting statute",
    });
    let reply = api
        .call("POST", &disclosures, Some(&grey), None, Some(&disclosure))
        .await;
    assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.body);
    assert_eq!(reply.body["recorded_by"], grey_user["id"]);
    let reply = api
        .call("POST", &disclosures, Some(&ada), None, Some(&disclosure))
        .await;
    assert_eq!(
        reply.status,
        StatusCode::FORBIDDEN,
        "patients do not record disclosures"
    );
    let reply = api
        .call(
            "POST",
            &disclosures,
            Some(&grey),
            None,
            Some(&json!({"recipient": "x", "purpose": "y", "description": "z"})),
        )
        .await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    assert!(
        reply.body.to_string().contains("legal_basis"),
        "{}",
        reply.body
    );

    let listed = api.ok("GET", &disclosures, Some(&ada), None).await;
    assert_eq!(listed["items"].as_array().expect("items").len(), 1);

    // The accounting: JSON by default, text to print on request.
    let accounting = format!("{disclosures}/accounting");
    let json_reply = api.ok("GET", &accounting, Some(&ada), None).await;
    assert_eq!(
        json_reply["disclosures"][0]["recipient"],
        "County Health Department"
    );
    assert_eq!(json_reply["patient_id"], patient_id.as_str());
    let (status, kind, text) = get_with_purpose(
        &api,
        &format!("{accounting}?format=text"),
        &auditor,
        "HOPERAT",
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert!(kind.starts_with("text/plain"), "{kind}");
    assert!(text.starts_with("ACCOUNTING OF DISCLOSURES"), "{text}");
    assert!(text.contains("County Health Department") && text.contains("state reporting statute"));
    let reply = api
        .call(
            "GET",
            &format!("{accounting}?from=2001-01-01T00:00:00Z"),
            Some(&ada),
            None,
            None,
        )
        .await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST, "six years at most");
    let reply = api
        .call(
            "GET",
            &format!("{accounting}?format=pdf"),
            Some(&ada),
            None,
            None,
        )
        .await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);

    // Recording the disclosure is in the patient's access log, without its details.
    let (_, _, text) = get_with_purpose(&api, &log_path, &ada, "PATRQT").await;
    assert!(text.contains("disclosure.create"), "{text}");
    assert!(!text.contains("County Health"), "{text}");
    let events = api
        .ok(
            "GET",
            &format!("/v1/audit/events?patient_id={patient_id}&limit=1000"),
            Some(&auditor),
            None,
        )
        .await;
    assert!(!events.to_string().contains("County Health"));
    let (ok, logs) = server.terminate();
    assert!(ok);
    assert!(
        !logs.iter().any(|l| l.contains("County Health")),
        "no disclosure details in logs"
    );
}
