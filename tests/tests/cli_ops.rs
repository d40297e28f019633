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
