//! `clarity --format json`: every command that prints a result prints it as
//! exactly one JSON document on standard output, and an error as one
//! `{"error": {"code", "message"}}` object on standard error, with the exit
//! codes of the text format. The command tree is read from the binary's own
//! help, so a command added without a JSON form (or without a case here)
//! fails this test.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;

use clarity_tests::{Ran, Server, run_command, server_binary};
use serde_json::{Value, json};

mod support;

/// Commands whose output is not a result: `serve` runs until stopped (and
/// is what `clarity` alone runs), `completions` and `man` print a script
/// and a manual page in their own formats.
const EXEMPT: &[&str] = &["", "serve", "completions", "man"];

/// Runs the binary with no `CLARITY_*` settings from the test's own
/// environment, `input` on standard input.
fn clarity(args: &[&str], env: &[(&str, &str)], input: &str) -> Ran {
    let mut command = Command::new(server_binary());
    command.args(args);
    for (key, _) in std::env::vars() {
        if key.starts_with("CLARITY_") && key != "CLARITY_BIN" {
            command.env_remove(key);
        }
    }
    command.env("CLARITY_LOG_FORMAT", "json");
    for (key, value) in env {
        command.env(key, value);
    }
    run_command(command, input)
}

/// The command paths below `path` that can be run (`user list`, `backup`,
/// `backup verify`), read from `clarity PATH --help`.
fn runnable(path: &[String], found: &mut BTreeSet<String>) {
    let mut args: Vec<&str> = path.iter().map(String::as_str).collect();
    args.push("--help");
    let ran = clarity(&args, &[], "");
    assert_eq!(ran.code, Some(0), "clarity {args:?}: {}", ran.stderr);
    let help = ran.stdout;
    let usage: Vec<&str> = help
        .lines()
        .skip_while(|l| !l.starts_with("Usage: "))
        .take_while(|l| !l.trim().is_empty())
        .collect();
    assert!(
        !usage.is_empty(),
        "no usage in the help of {path:?}: {help}"
    );
    let children: Vec<String> = help
        .lines()
        .skip_while(|l| *l != "Commands:")
        .skip(1)
        .take_while(|l| !l.trim().is_empty())
        // A name is indented by two spaces; its description's next lines by more.
        .filter(|l| l.starts_with("  ") && !l.starts_with("   "))
        .filter_map(|l| l.split_whitespace().next())
        .filter(|name| *name != "help")
        .map(str::to_string)
        .collect();
    // Runnable: no subcommands, or a usage line that needs none.
    if children.is_empty() || usage.iter().any(|l| !l.contains("<COMMAND>")) {
        found.insert(path.join(" "));
    }
    for child in children {
        let mut below = path.to_vec();
        below.push(child);
        runnable(&below, found);
    }
}

/// The one JSON document `clarity --format json ARGS` printed, after
/// checking it succeeded and printed nothing else on standard output.
fn json_of(data: &str, args: &[&str], input: &str) -> Value {
    let mut all = vec!["--data-dir", data, "--format", "json"];
    all.extend_from_slice(args);
    let ran = clarity(&all, &[], input);
    assert_eq!(ran.code, Some(0), "clarity {all:?}: {}", ran.stderr);
    assert!(
        ran.stdout.ends_with('\n') && ran.stdout.trim_end().lines().count() == 1,
        "clarity {all:?} printed more than one line of JSON: {}",
        ran.stdout
    );
    serde_json::from_str(&ran.stdout).unwrap_or_else(|e| {
        panic!(
            "clarity {all:?}: not one JSON document ({e}): {}",
            ran.stdout
        )
    })
}

/// The error object on the last line of standard error.
fn error_of(ran: &Ran) -> Value {
    let last = ran.stderr.lines().last().unwrap_or_default();
    let error: Value = serde_json::from_str(last)
        .unwrap_or_else(|e| panic!("not a JSON error ({e}): {}", ran.stderr));
    assert!(
        error["error"]["code"].is_string() && error["error"]["message"].is_string(),
        "{error}"
    );
    error
}

fn str_of<'a>(value: &'a Value, field: &str) -> &'a str {
    value[field]
        .as_str()
        .unwrap_or_else(|| panic!("no string {field} in {value}"))
}

/// Every runnable command, run with `--format json` against fresh stores,
/// in an order that gives each what it needs.
#[tokio::test]
async fn every_printing_command_prints_one_json_document() {
    let mut commands = BTreeSet::new();
    runnable(&[], &mut commands);
    for command in ["user list", "backup", "backup verify", "disclosure record"] {
        assert!(
            commands.contains(command),
            "{command} missing from {commands:?}"
        );
    }
    let mut tested = BTreeSet::new();
    let mut ran = |command: &str| {
        tested.insert(command.to_string());
    };

    let dir = tempfile::tempdir().expect("tempdir");
    let path_of = |name: &str| {
        let path = dir.path().join(name);
        path.to_str().expect("utf-8").to_string()
    };

    // A store of users and service accounts, set up from nothing.
    let ops = path_of("ops");
    let setup = json_of(&ops, &["setup"], "");
    assert!(str_of(&setup, "setup_code").len() > 16, "{setup}");
    assert!(setup["valid_for_secs"].as_u64().is_some(), "{setup}");
    ran("setup");
    let migrated = json_of(&ops, &["migrate"], "");
    assert_eq!(migrated["backend"], "sqlite");
    assert!(migrated["schema_version"].as_i64() > Some(0), "{migrated}");
    ran("migrate");
    let created = json_of(
        &ops,
        &[
            "user",
            "create",
            "--email",
            "ops@example.org",
            "--role",
            "clinician",
        ],
        &format!("{}\n", support::PASSWORD),
    );
    assert_eq!(created["email"], "ops@example.org");
    let id = str_of(&created, "id").to_string();
    ran("user create");
    // A second factor for `user reset-mfa` to remove: enrolled over HTTP.
    let server = Server::start(Path::new(&ops), &[]);
    let api = support::Api::new(&server);
    let token = api.login("ops@example.org").await;
    let enrolment = api
        .ok("POST", "/v1/auth/mfa/enroll", Some(&token), None)
        .await;
    let code = support::current_totp(str_of(&enrolment, "secret"));
    let body = json!({ "code": code });
    let enrolled = api
        .ok("POST", "/v1/auth/mfa/confirm", Some(&token), Some(&body))
        .await;
    assert_eq!(enrolled["mfa_enabled"], true);
    let (stopped, logs) = server.terminate();
    assert!(stopped, "{logs:?}");
    let users = json_of(&ops, &["user", "list"], "");
    assert_eq!(users.as_array().map(Vec::len), Some(1), "{users}");
    assert_eq!(users[0]["id"], id.as_str());
    assert_eq!(users[0]["mfa_enabled"], true);
    ran("user list");
    let roles = json_of(
        &ops,
        &[
            "user",
            "set-roles",
            "--id",
            &id,
            "--role",
            "nurse",
            "--role",
            "auditor",
        ],
        "",
    );
    assert_eq!(roles["id"], id.as_str());
    assert!(roles["roles"].to_string().contains("nurse"), "{roles}");
    ran("user set-roles");
    let reset = json_of(&ops, &["user", "reset-password", "--id", &id], "");
    assert_eq!(reset["user_id"], id.as_str());
    assert!(!str_of(&reset, "reset_code").is_empty(), "{reset}");
    assert!(reset["expires_at"].is_string(), "{reset}");
    ran("user reset-password");
    let mfa = json_of(&ops, &["user", "reset-mfa", "--id", &id], "");
    assert_eq!(
        (&mfa["id"], &mfa["mfa_enabled"]),
        (&Value::from(id.as_str()), &Value::Bool(false))
    );
    ran("user reset-mfa");
    let disabled = json_of(&ops, &["user", "disable", "--id", &id], "");
    assert_eq!(disabled["disabled"], true, "{disabled}");
    ran("user disable");
    let account = json_of(
        &ops,
        &[
            "service-account",
            "create",
            "--name",
            "nightly-export",
            "--role",
            "auditor",
        ],
        "",
    );
    let client = str_of(&account, "client_id").to_string();
    assert!(!str_of(&account, "client_secret").is_empty(), "{account}");
    assert_eq!(account["account"]["service_account"], true, "{account}");
    ran("service-account create");
    let rotated = json_of(
        &ops,
        &[
            "service-account",
            "rotate",
            "--id",
            &client,
            "--overlap-secs",
            "60",
        ],
        "",
    );
    assert_eq!(rotated["client_id"], client.as_str());
    assert_ne!(rotated["client_secret"], account["client_secret"]);
    assert!(
        rotated["previous_secret_expires_at"].is_string(),
        "{rotated}"
    );
    ran("service-account rotate");
    let deleted = json_of(&ops, &["service-account", "delete", "--id", &client], "");
    assert_eq!(
        (&deleted["id"], &deleted["deleted"]),
        (&Value::from(client.as_str()), &Value::Bool(true))
    );
    ran("service-account delete");

    // A store filled by the demo: the audit, disclosure, key and backup commands.
    let demo = path_of("demo");
    let filled = json_of(
        &demo,
        &["demo", "--patients", "2", "--records-per-patient", "1"],
        "",
    );
    assert_eq!(filled["patients"], 2);
    assert_eq!(
        filled["users"].as_array().map(Vec::len),
        Some(6),
        "{filled}"
    );
    ran("demo");
    let events = json_of(
        &demo,
        &[
            "audit",
            "query",
            "--action",
            "patient.create",
            "--limit",
            "2",
        ],
        "",
    );
    let events = events.as_array().expect("an array of events");
    assert_eq!(events.len(), 2);
    assert!(events.iter().all(|e| e["subtype"] == "patient.create"));
    let patient = str_of(&events[0], "patient_id").to_string();
    ran("audit query");
    let accesses = json_of(&demo, &["audit", "access-log", &patient], "");
    assert!(
        accesses
            .as_array()
            .is_some_and(|a| a.iter().any(|e| e["action"] == "patient.create")),
        "{accesses}"
    );
    ran("audit access-log");
    let disclosure = r#"{"recipient":"Registry of Deeds Canary","purpose":"court order",
        "description":"discharge summary","legal_basis":"subpoena 42"}"#;
    let recorded = json_of(&demo, &["disclosure", "record", &patient], disclosure);
    assert_eq!(recorded["legal_basis"], "subpoena 42");
    ran("disclosure record");
    let listed = json_of(&demo, &["disclosure", "list", &patient], "");
    assert_eq!(listed.as_array().map(Vec::len), Some(1), "{listed}");
    assert_eq!(listed[0]["id"], recorded["id"]);
    ran("disclosure list");
    let accounting = json_of(&demo, &["disclosure", "accounting", &patient], "");
    assert_eq!(accounting["patient_id"], patient.as_str());
    assert_eq!(accounting["disclosures"][0]["id"], recorded["id"]);
    ran("disclosure accounting");
    let exported = json_of(&demo, &["audit", "export", "--limit", "3"], "");
    let exported = exported.as_array().expect("an array of AuditEvents");
    assert_eq!(exported.len(), 3);
    assert!(exported.iter().all(|e| e["resourceType"] == "AuditEvent"));
    let file = path_of("audit.ndjson");
    let written = json_of(&demo, &["audit", "export", "--limit", "3", "-o", &file], "");
    assert_eq!(
        (&written["events"], &written["output"]),
        (&Value::from(3), &Value::from(file.as_str()))
    );
    ran("audit export");
    let verified = json_of(&demo, &["audit", "verify"], "");
    assert_eq!(verified["ok"], true);
    assert!(
        verified["chains"]
            .as_array()
            .is_some_and(|c| !c.is_empty() && c.iter().all(|c| c["ok"] == true)),
        "{verified}"
    );
    ran("audit verify");
    let status = json_of(&demo, &["keys", "status"], "");
    assert_eq!(status["current_kek_version"], 1);
    assert_eq!(status["usage"][0]["data_keys"], 2, "{status}");
    ran("keys status");
    let rotation = json_of(&demo, &["keys", "rotate"], "");
    assert_eq!(
        (&rotation["kek_version"], &rotation["rewrapped"]),
        (&Value::from(2), &Value::from(2))
    );
    ran("keys rotate");
    let retired = json_of(&demo, &["keys", "retire"], "");
    assert_eq!(retired["retired"], json!([1]), "{retired}");
    ran("keys retire");
    let token = json_of(&demo, &["keys", "rotate-token"], "");
    assert_eq!(token["version"], 2, "{token}");
    assert!(token["previous_accepted_until"].is_string(), "{token}");
    ran("keys rotate-token");
    let audit_key = json_of(&demo, &["keys", "rotate-audit"], "");
    assert_eq!(audit_key["audit_key_version"], 2, "{audit_key}");
    ran("keys rotate-audit");
    let archive = path_of("nightly.cbak");
    let backup = json_of(&demo, &["backup", "-o", &archive], "");
    assert_eq!(backup["archive"], archive.as_str());
    assert!(backup["rows"].as_u64() > Some(0), "{backup}");
    let backup_id = str_of(&backup["manifest"], "backup_id").to_string();
    ran("backup");
    let intact = json_of(&demo, &["backup", "verify", &archive], "");
    assert_eq!(intact["manifest"]["backup_id"], backup_id.as_str());
    assert_eq!(intact["kek_versions"], json!([2]), "{intact}");
    ran("backup verify");
    let target = dir.path().join("target");
    std::fs::create_dir_all(&target).expect("mkdir");
    std::fs::copy(
        Path::new(&demo).join("keyring.json"),
        target.join("keyring.json"),
    )
    .expect("copy keyring");
    let restored = json_of(&path_of("target"), &["restore", &archive], "");
    assert_eq!(restored["backup_id"], backup_id.as_str());
    assert!(
        restored["audit_chains_verified"].as_u64() > Some(0),
        "{restored}"
    );
    assert_eq!(restored["erased_patients_skipped"], 0);
    ran("restore");

    let exempt: BTreeSet<String> = EXEMPT.iter().map(|c| c.to_string()).collect();
    let untested: Vec<&String> = commands
        .difference(&tested)
        .filter(|c| !exempt.contains(*c))
        .collect();
    assert!(
        untested.is_empty(),
        "commands without a --format json case here: {untested:?} (give each an Output, then a case)"
    );
    let gone: Vec<&String> = tested.difference(&commands).collect();
    assert!(
        gone.is_empty(),
        "cases for commands the binary lacks: {gone:?}"
    );
}

/// A failed command: exit 1, nothing on standard output, the error as one
/// JSON object on standard error (by flag or by `CLARITY_FORMAT`); the text
/// format keeps its line.
#[test]
fn errors_are_one_json_object_on_standard_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let missing = dir.path().join("nothing-here");
    let missing = missing.to_str().expect("utf-8");
    for (args, env) in [
        (
            vec!["--data-dir", missing, "--format", "json", "audit", "verify"],
            vec![],
        ),
        (
            vec!["--data-dir", missing, "audit", "verify"],
            vec![("CLARITY_FORMAT", "json")],
        ),
    ] {
        let ran = clarity(&args, &env, "");
        assert_eq!(ran.code, Some(1), "{}", ran.stderr);
        assert!(ran.stdout.is_empty(), "{}", ran.stdout);
        let error = error_of(&ran);
        assert_eq!(error["error"]["code"], "config");
        assert!(
            str_of(&error["error"], "message").contains("no Clarity store"),
            "{error}"
        );
        assert!(!Path::new(missing).exists(), "created nothing");
    }
    let ran = clarity(&["--data-dir", missing, "audit", "verify"], &[], "");
    assert_eq!(ran.code, Some(1));
    assert!(
        ran.stderr
            .lines()
            .last()
            .is_some_and(|l| l.starts_with("clarity: error: ") && l.contains("no Clarity store")),
        "{}",
        ran.stderr
    );

    // A refusal from the core: its kind is the code.
    let store = dir.path().join("store");
    let store = store.to_str().expect("utf-8");
    let ran = clarity(
        &[
            "--data-dir",
            store,
            "--format",
            "json",
            "demo",
            "--patients",
            "1",
        ],
        &[],
        "",
    );
    assert_eq!(ran.code, Some(0), "{}", ran.stderr);
    let ran = clarity(&["--data-dir", store, "--format", "json", "setup"], &[], "");
    assert_eq!(ran.code, Some(1), "{}", ran.stderr);
    assert!(ran.stdout.is_empty(), "{}", ran.stdout);
    assert_eq!(error_of(&ran)["error"]["code"], "invalid_input");
}

/// A command line that does not parse: clap's exit code (2), the error as
/// one JSON object with code `usage`; `--help` still prints help.
#[test]
fn usage_errors_are_json_too() {
    for args in [
        vec!["--format", "json", "user", "frob"],
        vec!["user", "disable", "--id", "not-a-uuid", "--format=json"],
        vec!["user", "set-roles", "--format", "json", "--id"],
    ] {
        let ran = clarity(&args, &[], "");
        assert_eq!(ran.code, Some(2), "{args:?}: {}", ran.stderr);
        assert!(ran.stdout.is_empty(), "{}", ran.stdout);
        let error = error_of(&ran);
        assert_eq!(error["error"]["code"], "usage", "{error}");
        assert_eq!(ran.stderr.lines().count(), 1, "{}", ran.stderr);
    }
    let ran = clarity(&["user", "frob"], &[], "");
    assert_eq!(ran.code, Some(2));
    assert!(
        ran.stderr.starts_with("error: unrecognized subcommand"),
        "{}",
        ran.stderr
    );
    let ran = clarity(&["--format", "json", "user", "--help"], &[], "");
    assert_eq!(ran.code, Some(0), "{}", ran.stderr);
    assert!(ran.stdout.contains("Usage: clarity user"), "{}", ran.stdout);
    let ran = clarity(&["user", "frob"], &[("CLARITY_FORMAT", "json")], "");
    assert_eq!(ran.code, Some(2));
    assert_eq!(error_of(&ran)["error"]["code"], "usage");
    // A format clap refuses is a usage error in text.
    let ran = clarity(&["--format", "yaml", "migrate"], &[], "");
    assert_eq!(ran.code, Some(2), "{}", ran.stderr);
    assert!(
        ran.stderr.contains("possible values: text, json"),
        "{}",
        ran.stderr
    );
}
