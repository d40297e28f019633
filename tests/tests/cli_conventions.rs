//! What an operator expects of the `clarity` command line: a version that
//! names its commit, shell completions and a manual page, the variables
//! behind the flags, configuration files found where they usually live,
//! passwords asked for at the terminal without echo, and logs a person can
//! read on a terminal. Against the real binary; the terminal is a real
//! pseudo-terminal (util-linux `script`).

use std::io::{Read, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use clarity_tests::{run, run_with_input, server_binary};

/// Runs the binary in `cwd` with no `CLARITY_*` settings from the test's
/// own environment; returns (success, stdout, stderr).
fn run_in(cwd: &Path, args: &[&str], env: &[(&str, &str)]) -> (bool, String, String) {
    let mut command = Command::new(server_binary());
    command.current_dir(cwd).args(args).stdin(Stdio::null());
    for (key, _) in std::env::vars() {
        if key.starts_with("CLARITY_") || key == "XDG_CONFIG_HOME" {
            command.env_remove(key);
        }
    }
    command.env("HOME", cwd);
    for (key, value) in env {
        command.env(key, value);
    }
    let out = command.output().expect("run clarity");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn version_names_the_commit() {
    let (ok, stdout, stderr) = run(&["--version"], &[]);
    assert!(ok, "{stderr}");
    let git = Command::new("git")
        .args(["rev-parse", "--short=12", "HEAD"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .ok()
        .filter(|out| out.status.success())
        .map(|out| String::from_utf8_lossy(&out.stdout).trim().to_string())
        .unwrap_or_else(|| "unknown".to_string());
    assert_eq!(
        stdout.trim(),
        format!("clarity {} (commit {git})", env!("CARGO_PKG_VERSION"))
    );
}

#[test]
fn completions_and_manual_page() {
    let (ok, bash, stderr) = run(&["completions", "bash"], &[]);
    assert!(ok, "{stderr}");
    assert!(bash.contains("complete -F _clarity"), "{bash}");
    for command in [
        "service-account",
        "disclosure",
        "rotate-audit",
        "--password-file",
    ] {
        assert!(bash.contains(command), "bash completion lacks {command}");
    }
    let (ok, zsh, _) = run(&["completions", "zsh"], &[]);
    assert!(ok && zsh.starts_with("#compdef clarity"), "{zsh}");
    let (ok, fish, _) = run(&["completions", "fish"], &[]);
    assert!(ok && fish.contains("complete -c clarity"), "{fish}");

    let (ok, _, stderr) = run(&["completions", "tcsh"], &[]);
    assert!(!ok && stderr.contains("possible values"), "{stderr}");

    let (ok, man, stderr) = run(&["man"], &[]);
    assert!(ok, "{stderr}");
    assert!(
        man.starts_with(".ie") || man.contains(".TH clarity"),
        "{man}"
    );
    assert!(man.contains(".TH clarity") && man.contains(".SH SUBCOMMANDS"));

    // Neither touches a store or a configuration file.
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("clarity.toml"), "not = [valid").expect("write");
    let (ok, _, stderr) = run_in(dir.path(), &["completions", "bash"], &[]);
    assert!(ok, "{stderr}");
    assert_eq!(std::fs::read_dir(dir.path()).expect("list").count(), 1);
}

#[test]
fn flags_show_their_variables() {
    let (ok, stdout, _) = run(&["--help"], &[]);
    assert!(ok);
    for var in ["[env: CLARITY_CONFIG", "[env: CLARITY_DATA_DIR"] {
        assert!(stdout.contains(var), "--help lacks {var}: {stdout}");
    }
    let (ok, stdout, _) = run(&["serve", "--help"], &[]);
    assert!(ok && stdout.contains("[env: CLARITY_LISTEN"), "{stdout}");
}

#[test]
fn configuration_is_found_where_it_usually_lives() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path();
    let toml = |data: &str| format!("data_dir = \"{}\"\n", root.join(data).display());

    // $XDG_CONFIG_HOME/clarity/clarity.toml.
    let xdg = root.join("xdg");
    std::fs::create_dir_all(xdg.join("clarity")).expect("mkdir");
    std::fs::write(xdg.join("clarity/clarity.toml"), toml("from-xdg")).expect("write");
    let xdg_env = [("XDG_CONFIG_HOME", xdg.to_str().expect("utf-8"))];
    let (ok, _, stderr) = run_in(root, &["setup"], &xdg_env);
    assert!(ok, "{stderr}");
    assert!(root.join("from-xdg/clarity.db").exists(), "{stderr}");
    assert!(stderr.contains("configuration file"), "{stderr}");

    // ~/.config/clarity/clarity.toml when XDG_CONFIG_HOME is unset.
    let home = root.join(".config/clarity");
    std::fs::create_dir_all(&home).expect("mkdir");
    std::fs::write(home.join("clarity.toml"), toml("from-home")).expect("write");
    let (ok, _, stderr) = run_in(root, &["setup"], &[]);
    assert!(ok, "{stderr}");
    assert!(root.join("from-home/clarity.db").exists(), "{stderr}");

    // ./clarity.toml comes first.
    std::fs::write(root.join("clarity.toml"), toml("from-cwd")).expect("write");
    let (ok, _, stderr) = run_in(root, &["setup"], &xdg_env);
    assert!(ok, "{stderr}");
    assert!(root.join("from-cwd/clarity.db").exists(), "{stderr}");

    // A file named on the command line wins over every one of them.
    let named = root.join("named.toml");
    std::fs::write(&named, toml("from-flag")).expect("write");
    let (ok, _, stderr) = run_in(
        root,
        &["--config", named.to_str().expect("utf-8"), "setup"],
        &xdg_env,
    );
    assert!(ok, "{stderr}");
    assert!(root.join("from-flag/clarity.db").exists(), "{stderr}");
}

/// A command on a pseudo-terminal: `script` runs it and copies what the
/// terminal shows to its standard output; what is written to `script`'s
/// standard input is typed at the terminal.
struct Terminal {
    child: std::process::Child,
    shown: mpsc::Receiver<Vec<u8>>,
    screen: String,
}

impl Terminal {
    fn start(args: &[&str]) -> Terminal {
        let mut line = shell_quote(server_binary().to_str().expect("utf-8"));
        for arg in args {
            line.push(' ');
            line.push_str(&shell_quote(arg));
        }
        let mut child = Command::new("script")
            .args(["-qefc", &line, "/dev/null"])
            .env("CLARITY_LOG_FORMAT", "auto")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("util-linux `script` runs the command on a pseudo-terminal");
        let mut out = child.stdout.take().expect("stdout");
        let (tx, shown) = mpsc::channel();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = out.read(&mut buf) {
                if n == 0 || tx.send(buf[..n].to_vec()).is_err() {
                    break;
                }
            }
        });
        Terminal {
            child,
            shown,
            screen: String::new(),
        }
    }

    /// Waits until the terminal has shown `text` (at most 30 s).
    fn wait_for(&mut self, text: &str) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while !self.screen.contains(text) {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.shown.recv_timeout(left) {
                Ok(bytes) => self.screen.push_str(&String::from_utf8_lossy(&bytes)),
                Err(_) => panic!("the terminal never showed {text:?}:\n{}", self.screen),
            }
        }
    }

    /// Waits until the program on the terminal has turned echo off (it
    /// shows its prompt first, then turns echo off to read): what is typed
    /// before that would be echoed by the terminal itself, whatever the
    /// program does.
    fn wait_for_echo_off(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        let script = self.child.id();
        loop {
            let children =
                std::fs::read_to_string(format!("/proc/{script}/task/{script}/children"))
                    .unwrap_or_default();
            for pid in children.split_whitespace() {
                let Ok(tty) = std::fs::read_link(format!("/proc/{pid}/fd/0")) else {
                    continue;
                };
                let settings = Command::new("stty")
                    .arg("-F")
                    .arg(&tty)
                    .arg("-a")
                    .output()
                    .expect("stty");
                let settings = String::from_utf8_lossy(&settings.stdout).into_owned();
                if settings.split_whitespace().any(|flag| flag == "-echo") {
                    return;
                }
            }
            assert!(
                Instant::now() < deadline,
                "echo never turned off:\n{}",
                self.screen
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn type_line(&mut self, text: &str) {
        let stdin = self.child.stdin.as_mut().expect("stdin");
        stdin
            .write_all(format!("{text}\r").as_bytes())
            .expect("type");
        stdin.flush().expect("flush");
    }

    /// Waits for the command to end; (success, everything the terminal showed).
    fn finish(mut self) -> (bool, String) {
        let status = self.child.wait().expect("wait");
        while let Ok(bytes) = self.shown.recv_timeout(Duration::from_secs(2)) {
            self.screen.push_str(&String::from_utf8_lossy(&bytes));
        }
        (status.success(), self.screen)
    }
}

/// `clarity --data-dir DATA user create --email EMAIL --role ROLE`'s arguments.
fn user_create<'a>(data: &'a str, email: &'a str, role: &'a str) -> Vec<&'a str> {
    vec![
        "--data-dir",
        data,
        "user",
        "create",
        "--email",
        email,
        "--role",
        role,
    ]
}

fn shell_quote(arg: &str) -> String {
    format!("'{}'", arg.replace('\'', r"'\''"))
}

#[test]
fn passwords_are_asked_for_twice_without_echo() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let data = data.to_str().expect("utf-8");
    let password = "a passphrase typed at the terminal";

    let create = |email: &'static str| Terminal::start(&user_create(data, email, "clinician"));
    let mut term = create("ward7@example.org");
    term.wait_for("New password for ward7@example.org: ");
    term.wait_for_echo_off();
    term.type_line(password);
    term.wait_for("Type it again: ");
    term.wait_for_echo_off();
    term.type_line(password);
    let (ok, screen) = term.finish();
    assert!(ok, "{screen}");
    assert!(screen.contains("created user"), "{screen}");
    assert!(
        !screen.contains("passphrase typed"),
        "the password was echoed:\n{screen}"
    );
    // Logs on a terminal are lines a person reads, not JSON.
    assert!(screen.contains("applied migration"), "{screen}");
    assert!(!screen.contains("{\"timestamp\""), "{screen}");

    // Two different entries: nothing is created.
    let mut term = create("ward8@example.org");
    term.wait_for("New password for ward8@example.org: ");
    term.wait_for_echo_off();
    term.type_line(password);
    term.wait_for("Type it again: ");
    term.wait_for_echo_off();
    term.type_line("something else entirely, by mistake");
    let (ok, screen) = term.finish();
    assert!(
        !ok && screen.contains("the two passwords differ"),
        "{screen}"
    );

    let (ok, users, stderr) = run(&["--data-dir", data, "user", "list"], &[]);
    assert!(ok, "{stderr}");
    assert!(users.contains("ward7@example.org"), "{users}");
    assert!(!users.contains("ward8@example.org"), "{users}");
    // Piped, the log lines are JSON.
    assert!(
        stderr.lines().all(|l| l.starts_with('{')),
        "JSON logs when standard error is not a terminal: {stderr}"
    );

    // The typed password is the account's password.
    let server = clarity_tests::Server::start(Path::new(data), &[]);
    let login = std::process::Command::new("curl")
        .args([
            "-sS",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "-H",
            "content-type: application/json",
            "--data-binary",
            &format!(r#"{{"email":"ward7@example.org","password":"{password}"}}"#),
            &server.url("/v1/auth/login"),
        ])
        .output()
        .expect("curl");
    assert_eq!(String::from_utf8_lossy(&login.stdout), "200");
}

#[test]
fn passwords_from_standard_input_or_a_private_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let data = data.to_str().expect("utf-8");
    let create = |email: &str, extra: &[&str], input: &str| {
        let mut args = user_create(data, email, "nurse");
        args.extend_from_slice(extra);
        run_with_input(&args, &[], input)
    };

    let (ok, _, stderr) = create(
        "staff.alpha@example.org",
        &[],
        "a piped passphrase of some length\n",
    );
    assert!(ok, "{stderr}");
    let (ok, _, stderr) = create("staff.bravo@example.org", &[], "");
    assert!(!ok && stderr.contains("no password given"), "{stderr}");

    let file = dir.path().join("password");
    std::fs::write(&file, "a passphrase kept in a file\n").expect("write");
    let file = file.to_str().expect("utf-8");
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(file, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    let (ok, _, stderr) = create("staff.charlie@example.org", &["--password-file", file], "");
    assert!(!ok && stderr.contains("--password-file"), "{stderr}");
    assert!(!stderr.contains("kept in a file"), "{stderr}");
    std::fs::set_permissions(file, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    let (ok, _, stderr) = create("staff.charlie@example.org", &["--password-file", file], "");
    assert!(ok, "{stderr}");

    // A bad role is refused before any password is read.
    let (ok, _, stderr) = create("staff.delta@example.org", &["--role", "root"], "");
    assert!(!ok && stderr.contains("unknown role"), "{stderr}");
}
