//! The operator commands of the `clarity` CLI, against the real binary.

use clarity_tests::{run, run_with_input};

fn args<'a>(data: &'a str, rest: &[&'a str]) -> Vec<&'a str> {
    let mut all = vec!["--data-dir", data];
    all.extend_from_slice(rest);
    all
}

#[test]
fn users_demo_and_audit_from_the_command_line() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let data = data.to_str().expect("utf-8");

    let (ok, stdout, stderr) = run(&args(data, &["setup"]), &[]);
    assert!(ok, "{stderr}");
    assert!(stdout.starts_with("setup code: "), "{stdout}");

    let create = args(
        data,
        &[
            "user",
            "create",
            "--email",
            "ops@example.org",
            "--role",
            "clinician",
        ],
    );
    let (ok, stdout, stderr) = run_with_input(&create, &[], "an operator chose this passphrase\n");
    assert!(ok, "{stderr}");
    let id = stdout.split_whitespace().nth(2).expect("id").to_string();

    let (ok, _, stderr) = run(&args(data, &["setup"]), &[]);
    assert!(!ok && stderr.contains("users exist already"), "{stderr}");

    let (ok, stdout, stderr) = run(&args(data, &["user", "list"]), &[]);
    assert!(ok, "{stderr}");
    let listed: serde_json::Value =
        serde_json::from_str(stdout.lines().next().expect("a user")).expect("json");
    assert_eq!(listed["email"], "ops@example.org");

    let (ok, stdout, stderr) = run(
        &args(
            data,
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
        ),
        &[],
    );
    assert!(ok, "{stderr}");
    assert!(
        stdout.contains("auditor") && stdout.contains("nurse"),
        "{stdout}"
    );
    let (ok, _, stderr) = run(
        &args(data, &["user", "set-roles", "--id", &id, "--role", "root"]),
        &[],
    );
    assert!(!ok && stderr.contains("unknown role"), "{stderr}");
    let (ok, stdout, stderr) = run(&args(data, &["user", "disable", "--id", &id]), &[]);
    assert!(ok && stdout.contains("disabled"), "{stderr}");

    // Demo users share a printed password: never beside real accounts.
    let (ok, _, stderr) = run(&args(data, &["demo", "--patients", "1"]), &[]);
    assert!(!ok && stderr.contains("without users"), "{stderr}");

    // The rest runs on a store filled by the demo.
    let demo_dir = dir.path().join("demo");
    let data = demo_dir.to_str().expect("utf-8");
    let (ok, stdout, stderr) = run(
        &args(
            data,
            &["demo", "--patients", "4", "--records-per-patient", "2"],
        ),
        &[],
    );
    assert!(ok, "{stderr}");
    assert!(
        stdout.contains("4 patients") && stdout.contains("researcher"),
        "{stdout}"
    );

    let (ok, stdout, stderr) = run(&args(data, &["keys", "rotate"]), &[]);
    assert!(ok, "{stderr}");
    assert!(stdout.contains("rotated to KEK version 2"), "{stdout}");
    let (ok, stdout, stderr) = run(&args(data, &["keys", "status"]), &[]);
    assert!(ok, "{stderr}");
    assert!(
        stdout.contains("current KEK version 2") && stdout.contains("KEK version 2: 4 data keys"),
        "{stdout}"
    );

    let (ok, stdout, stderr) = run(&args(data, &["audit", "verify"]), &[]);
    assert!(ok, "{stderr}");
    assert!(
        stdout.contains("chains verified") && !stdout.contains("FAILED"),
        "{stdout}"
    );

    let (ok, stdout, stderr) = run(
        &args(
            data,
            &[
                "audit",
                "query",
                "--action",
                "patient.create",
                "--limit",
                "3",
            ],
        ),
        &[],
    );
    assert!(ok, "{stderr}");
    let lines: Vec<serde_json::Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).expect("json"))
        .collect();
    assert_eq!(lines.len(), 3);
    assert!(
        lines
            .iter()
            .all(|e| e["subtype"] == "patient.create" && e["outcome"] == "0")
    );

    // S-AUD-9: the privacy office's commands. Disclosure details come on
    // standard input, never on the command line.
    let patient = lines[0]["patient_id"]
        .as_str()
        .expect("patient id")
        .to_string();
    let (ok, stdout, stderr) = run(&args(data, &["audit", "access-log", &patient]), &[]);
    assert!(ok, "{stderr}");
    let accesses: Vec<serde_json::Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).expect("json"))
        .collect();
    assert!(
        accesses
            .iter()
            .any(|e| e["action"] == "patient.create" && e["accessor_roles"][0] == "clinician"),
        "{stdout}"
    );
    let disclosure = r#"{"recipient":"Registry of Deeds Canary","purpose":"court order",
        "description":"discharge summary","legal_basis":"subpoena 42"}"#;
    let (ok, stdout, stderr) = run_with_input(
        &args(data, &["disclosure", "record", &patient]),
        &[],
        disclosure,
    );
    assert!(ok, "{stderr}");
    let recorded: serde_json::Value = serde_json::from_str(stdout.trim()).expect("json");
    assert_eq!(recorded["recipient"], "Registry of Deeds Canary");
    let (ok, _, stderr) = run_with_input(
        &args(data, &["disclosure", "record", &patient]),
        &[],
        r#"{"recipient":"x","purpose":"y","description":"z"}"#,
    );
    assert!(!ok && stderr.contains("legal_basis"), "{stderr}");
    let (ok, stdout, stderr) = run(&args(data, &["disclosure", "list", &patient]), &[]);
    assert!(ok && stdout.lines().count() == 1, "{stdout}{stderr}");
    let (ok, stdout, stderr) = run(&args(data, &["disclosure", "accounting", &patient]), &[]);
    assert!(ok, "{stderr}");
    assert!(
        stdout.starts_with("ACCOUNTING OF DISCLOSURES")
            && stdout.contains("Registry of Deeds Canary")
            && stdout.contains("subpoena 42"),
        "{stdout}"
    );
    let (ok, stdout, stderr) = run(
        &args(
            data,
            &["disclosure", "accounting", &patient, "--format", "json"],
        ),
        &[],
    );
    assert!(ok, "{stderr}");
    let accounting: serde_json::Value = serde_json::from_str(stdout.trim()).expect("json");
    assert_eq!(accounting["disclosures"][0]["legal_basis"], "subpoena 42");
    let (ok, _, stderr) = run(
        &args(
            data,
            &[
                "disclosure",
                "accounting",
                &patient,
                "--from",
                "2001-01-01T00:00:00Z",
            ],
        ),
        &[],
    );
    assert!(!ok && stderr.contains("six years"), "{stderr}");

    let export = dir.path().join("audit.ndjson");
    let (ok, _, stderr) = run(
        &args(
            data,
            &[
                "audit",
                "export",
                "--output",
                export.to_str().expect("utf-8"),
            ],
        ),
        &[],
    );
    assert!(ok, "{stderr}");
    let text = std::fs::read_to_string(&export).expect("export");
    assert!(text.lines().count() > 10);
    assert!(
        text.lines()
            .all(|l| l.contains("\"resourceType\":\"AuditEvent\""))
    );
    assert!(!text.contains("Lovelace"), "no PHI in the audit export");
    assert!(
        !text.contains("Canary"),
        "no disclosure details in the audit export"
    );
    let (ok, _, stderr) = run(
        &args(
            data,
            &[
                "audit",
                "export",
                "--output",
                export.to_str().expect("utf-8"),
            ],
        ),
        &[],
    );
    assert!(
        !ok && stderr.contains("cannot create"),
        "never overwrites: {stderr}"
    );
}

#[test]
fn help_reads_well() {
    let (ok, stdout, _) = run(&["--help"], &[]);
    assert!(ok);
    for command in ["serve", "migrate", "user", "audit", "setup", "demo"] {
        assert!(
            stdout.contains(command),
            "{command} missing from --help: {stdout}"
        );
    }
    let (ok, stdout, _) = run(&["audit", "export", "--help"], &[]);
    assert!(
        ok && stdout.contains("--patient") && stdout.contains("--output"),
        "{stdout}"
    );
}

/// A store in `data` filled by `clarity demo` with `patients` patients of
/// two records each; returns `data` as the CLI takes it.
fn demo_store(data: &std::path::Path, patients: &str) -> String {
    let data = data.to_str().expect("utf-8").to_string();
    let demo = ["demo", "--patients", patients, "--records-per-patient", "2"];
    let (ok, _, stderr) = run(&args(&data, &demo), &[]);
    assert!(ok, "{stderr}");
    data
}

// S-BAK-1, S-KEY-2 from the command line: key rotation and retirement,
// token and audit key rotation, backup, verify and restore (whose chain
// check meets chains under both audit key versions).
#[test]
fn keys_and_backups_from_the_command_line() {
    let dir = tempfile::tempdir().expect("tempdir");
    let source = demo_store(&dir.path().join("source"), "5");
    let source = source.as_str();
    let (ok, stdout, stderr) = run(&args(source, &["keys", "rotate"]), &[]);
    assert!(ok && stdout.contains("KEK version 2"), "{stdout}{stderr}");
    let (ok, stdout, stderr) = run(&args(source, &["keys", "retire"]), &[]);
    assert!(
        ok && stdout.contains("retired KEK versions [1]"),
        "{stdout}{stderr}"
    );
    let (ok, stdout, stderr) = run(&args(source, &["keys", "rotate-token"]), &[]);
    assert!(
        ok && stdout.contains("token key version 2"),
        "{stdout}{stderr}"
    );
    // Later commands (the backup's own chain) write under audit key version 2.
    let (ok, stdout, stderr) = run(&args(source, &["keys", "rotate-audit"]), &[]);
    assert!(
        ok && stdout.contains("audit key version 2"),
        "{stdout}{stderr}"
    );
    let (ok, stdout, stderr) = run(&args(source, &["keys", "status"]), &[]);
    assert!(
        ok && stdout.contains("token key version 2 (version 1 accepted until")
            && stdout.contains("audit key version 2 (for chains started from now on)"),
        "{stdout}{stderr}"
    );

    let archive = dir.path().join("nightly.cbak");
    let archive = archive.to_str().expect("utf-8");
    let (ok, stdout, stderr) = run(&args(source, &["backup", "-o", archive]), &[]);
    assert!(ok && stdout.contains("written to"), "{stdout}{stderr}");
    let (ok, stdout, stderr) = run(&args(source, &["backup", "verify", archive]), &[]);
    assert!(ok && stdout.contains("is intact"), "{stdout}{stderr}");

    // Another keyring: refused, and said so.
    let stranger = dir.path().join("stranger");
    let stranger = stranger.to_str().expect("utf-8");
    let (ok, _, stderr) = run(&args(stranger, &["setup"]), &[]);
    assert!(ok, "{stderr}");
    let (ok, _, stderr) = run(&args(stranger, &["backup", "verify", archive]), &[]);
    assert!(!ok && stderr.contains("wrong key"), "{stderr}");

    // The same keyring, an empty store: restored, chains verified.
    let target = dir.path().join("target");
    std::fs::create_dir_all(&target).expect("mkdir");
    std::fs::copy(
        dir.path().join("source/keyring.json"),
        target.join("keyring.json"),
    )
    .expect("copy keyring");
    let target = target.to_str().expect("utf-8");
    let (ok, stdout, stderr) = run(&args(target, &["restore", archive]), &[]);
    assert!(ok, "{stderr}");
    assert!(stdout.contains("audit chains verified"), "{stdout}");
    assert!(stdout.contains("erased patients skipped: 0"), "{stdout}");
    let (ok, stdout, stderr) = run(&args(target, &["audit", "verify"]), &[]);
    assert!(ok && stdout.contains("chains verified"), "{stdout}{stderr}");
    let (ok, _, stderr) = run(&args(target, &["restore", archive]), &[]);
    assert!(!ok && stderr.contains("not empty"), "{stderr}");
}

/// Every file under `dir` with its bytes, in name order.
fn files_under(dir: &std::path::Path) -> Vec<(std::path::PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).expect("read dir") {
        let path = entry.expect("entry").path();
        if path.is_dir() {
            out.push((path.clone(), Vec::new()));
            out.extend(files_under(&path));
        } else {
            let bytes = std::fs::read(&path).expect("read");
            out.push((path, bytes));
        }
    }
    out.sort();
    out
}

// S-BAK-2 from the command line: `keys retire` refuses a KEK version a
// recorded backup needs, naming both, unless `--force`; then `backup
// verify` and `restore` fail (non-zero) naming the version, the restore
// target stays as it was, and with the keyring from before the retirement
// put back the same restore succeeds.
#[test]
fn s_bak_2_retired_versions_from_the_command_line() {
    let dir = tempfile::tempdir().expect("tempdir");
    let source = demo_store(&dir.path().join("source"), "3");
    let source = source.as_str();
    let archive = dir.path().join("kept.cbak");
    let archive = archive.to_str().expect("utf-8");
    let (ok, stdout, stderr) = run(&args(source, &["backup", "-o", archive]), &[]);
    assert!(ok, "{stderr}");
    let backup_id = stdout
        .split_whitespace()
        .nth(1)
        .expect("backup <id> written")
        .to_string();
    let escrow = dir.path().join("escrow-keyring.json");
    std::fs::copy(dir.path().join("source/keyring.json"), &escrow).expect("escrow copy");
    let (ok, _, stderr) = run(&args(source, &["keys", "rotate"]), &[]);
    assert!(ok, "{stderr}");

    let (ok, _, stderr) = run(&args(source, &["keys", "retire"]), &[]);
    assert!(!ok, "refused");
    assert!(
        stderr.contains("refused to retire KEK version 1")
            && stderr.contains(&backup_id)
            && stderr.contains("kept.cbak")
            && stderr.contains("--force"),
        "{stderr}"
    );
    let (ok, stdout, stderr) = run(&args(source, &["keys", "status"]), &[]);
    assert!(
        ok && stdout.contains("versions held: [1, 2]"),
        "{stdout}{stderr}"
    );
    let (ok, stdout, stderr) = run(&args(source, &["keys", "retire", "--force"]), &[]);
    assert!(
        ok && stdout.contains("retired KEK versions [1]")
            && stdout.contains(&format!("warning: backup {backup_id}")),
        "{stdout}{stderr}"
    );

    let retired =
        "this backup needs KEK version 1, which the configured keyring no longer holds (retired";
    let (ok, _, stderr) = run(&args(source, &["backup", "verify", archive]), &[]);
    assert!(!ok && stderr.contains(retired), "{stderr}");
    let target = dir.path().join("target");
    std::fs::create_dir_all(&target).expect("mkdir");
    std::fs::copy(
        dir.path().join("source/keyring.json"),
        target.join("keyring.json"),
    )
    .expect("the keyring as it is now");
    let before = files_under(&target);
    let target_dir = target.to_str().expect("utf-8");
    let (ok, _, stderr) = run(&args(target_dir, &["restore", archive]), &[]);
    assert!(!ok && stderr.contains(retired), "{stderr}");
    assert!(files_under(&target) == before, "the target is as it was");

    std::fs::copy(&escrow, target.join("keyring.json")).expect("put the keyring back");
    let (ok, stdout, stderr) = run(&args(target_dir, &["backup", "verify", archive]), &[]);
    assert!(
        ok && stdout.contains("the configured keys can restore it"),
        "{stdout}{stderr}"
    );
    let (ok, stdout, stderr) = run(&args(target_dir, &["restore", archive]), &[]);
    assert!(ok && stdout.contains("restored backup"), "{stdout}{stderr}");
}

// A mistyped data directory is an error naming where no store was found,
// and read-only and maintenance commands create nothing there.
#[test]
fn maintenance_commands_never_create_a_store() {
    let dir = tempfile::tempdir().expect("tempdir");
    let missing = dir.path().join("typo");
    let data = missing.to_str().expect("utf-8");
    for command in [
        &["audit", "verify"][..],
        &["audit", "query"],
        &["keys", "status"],
        &["keys", "rotate"],
        &["user", "list"],
        &["backup", "-o", "/nonexistent/never.cbak"],
    ] {
        let (ok, _, stderr) = run(&args(data, command), &[]);
        assert!(!ok, "{command:?} must fail");
        assert!(
            stderr.contains("no Clarity store at") && stderr.contains("typo"),
            "{command:?}: {stderr}"
        );
        assert!(
            !missing.exists(),
            "{command:?} created {}",
            missing.display()
        );
    }
}
