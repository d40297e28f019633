//! S-INT-2 under load: many clients race `PUT` with `If-Match` on the same
//! patient and the same record. For every version exactly one writer wins;
//! the losers get 412 and nothing of theirs is written; the final version is
//! the number of wins plus one and the content is the last winner's.

mod support;

use std::collections::HashMap;

use clarity_tests::Server;
use reqwest::StatusCode;
use serde_json::{Value, json};
use support::{Api, LOAD_ENV, patient_body};

const CLIENTS: u64 = 16;
const ROUNDS: u64 = 12;

/// Each client reads the current version, then tries to write on top of it;
/// repeated `ROUNDS` times. Returns (version → winning body, 412 count).
async fn race(
    api: &Api,
    token: &str,
    path: &str,
    body_of: fn(u64, u64) -> Value,
) -> (HashMap<i64, Value>, u64) {
    let mut tasks = Vec::new();
    for client in 0..CLIENTS {
        let api = api.clone();
        let token = token.to_string();
        let path = path.to_string();
        tasks.push(tokio::spawn(async move {
            let mut wins = Vec::new();
            let mut lost = 0;
            for round in 0..ROUNDS {
                let current = api.call("GET", &path, Some(&token), None, None).await;
                assert_eq!(current.status, StatusCode::OK, "{}", current.body);
                let version = current.body["version"].as_i64().expect("version");
                let body = body_of(client, round);
                let reply = api
                    .call("PUT", &path, Some(&token), Some(version), Some(&body))
                    .await;
                match reply.status {
                    StatusCode::OK => {
                        assert_eq!(
                            reply.body["version"],
                            version + 1,
                            "a win writes the next version"
                        );
                        wins.push((version + 1, body));
                    }
                    StatusCode::PRECONDITION_FAILED => lost += 1,
                    other => panic!("PUT {path}: unexpected {other}: {}", reply.body),
                }
            }
            (wins, lost)
        }));
    }
    let mut winners: HashMap<i64, Value> = HashMap::new();
    let mut lost = 0;
    for task in tasks {
        let (wins, l) = task.await.expect("client");
        lost += l;
        for (version, body) in wins {
            assert!(
                winners.insert(version, body).is_none(),
                "two writers won version {version}: lost update"
            );
        }
    }
    (winners, lost)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn if_match_races_have_exactly_one_winner_per_version() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(&dir.path().join("data"), LOAD_ENV);
    let api = Api::new(&server);
    let (token, patient) = api
        .clinician_with_patient(&server, "racer@reliability.example", "RACE-1")
        .await;
    let patient_path = format!("/v1/patients/{patient}");
    let record = api
        .ok(
            "POST",
            &format!("{patient_path}/records"),
            Some(&token),
            Some(&json!({"kind": "note", "data": {"n": 0}})),
        )
        .await;
    let record_path = format!("/v1/records/{}", record["id"].as_str().expect("id"));

    for (path, body_of) in [
        (
            patient_path,
            (|c, r| patient_body("RACE-1", c * 1000 + r)) as fn(u64, u64) -> Value,
        ),
        (record_path, |c, r| json!({"data": {"n": c * 1000 + r}})),
    ] {
        let (winners, lost) = race(&api, &token, &path, body_of).await;
        let wins = winners.len() as i64;
        // Versions 2..=wins+1, each won once, none skipped.
        for version in 2..=wins + 1 {
            assert!(
                winners.contains_key(&version),
                "{path}: version {version} has no winner"
            );
        }
        let last = api.call("GET", &path, Some(&token), None, None).await;
        assert_eq!(
            last.body["version"],
            wins + 1,
            "{path}: final version = wins + 1"
        );
        for (key, value) in winners[&(wins + 1)].as_object().expect("object") {
            assert_eq!(
                &last.body[key], value,
                "{path}: the content is the last winner's"
            );
        }
        assert_eq!(
            wins as u64 + lost,
            CLIENTS * ROUNDS,
            "every PUT either won or got 412"
        );
        println!(
            "S-INT-2 {path}: {} attempts, {wins} wins, {lost} × 412, no lost update",
            CLIENTS * ROUNDS
        );
    }
    let (clean, logs) = server.terminate();
    assert!(clean, "clean shutdown");
    assert!(!logs.iter().any(|l| l.contains("panicked")), "no panic");
}
