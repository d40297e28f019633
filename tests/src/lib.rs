//! Helpers for the cross-crate integration tests: finding and running the
//! real `clarity` binary as a child process.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// The `clarity` binary: `$CLARITY_BIN`, or `clarity` next to the test's
/// `deps/` directory (where `cargo build -p clarity-server` puts it).
///
/// # Panics
/// When no binary is found: build it first (`scripts/test` does).
pub fn server_binary() -> PathBuf {
    if let Some(path) = std::env::var_os("CLARITY_BIN") {
        return PathBuf::from(path);
    }
    let exe = std::env::current_exe().expect("test executable path");
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("test executable lives in <target>/<profile>/deps");
    let candidate = profile_dir.join("clarity");
    assert!(
        candidate.exists(),
        "{} not found: build it first with `cargo build -p clarity-server` or set CLARITY_BIN",
        candidate.display()
    );
    candidate
}

/// A running `clarity serve`, stopped (SIGKILL) when dropped unless stopped before.
#[derive(Debug)]
pub struct Server {
    child: Child,
    /// The address it listens on.
    pub addr: SocketAddr,
    /// Every line it printed on standard output until it was ready.
    pub stdout_lines: Vec<String>,
    stderr: mpsc::Receiver<String>,
}

impl Server {
    /// Starts `clarity --data-dir DIR serve --listen 127.0.0.1:0` with extra
    /// environment, and waits (at most 30 s) for its "Listening on" line.
    ///
    /// # Panics
    /// When it exits or does not announce itself in time.
    pub fn start(data_dir: &Path, env: &[(&str, &str)]) -> Server {
        let mut command = Command::new(server_binary());
        command
            .args(["--data-dir"])
            .arg(data_dir)
            .args(["serve", "--listen", "127.0.0.1:0"])
            .env("CLARITY_LOG_FORMAT", "json")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (key, value) in env {
            command.env(key, value);
        }
        let mut child = command.spawn().expect("start clarity");
        let stdout = child.stdout.take().expect("stdout");
        let stderr = child.stderr.take().expect("stderr");
        let (err_tx, err_rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if err_tx.send(line).is_err() {
                    break;
                }
            }
        });
        let (out_tx, out_rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if out_tx.send(line).is_err() {
                    break;
                }
            }
        });
        // Owned by `Server` from here on, so every path kills and reaps it.
        let mut server = Server {
            child,
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            stdout_lines: Vec::new(),
            stderr: err_rx,
        };
        loop {
            let Ok(line) = out_rx.recv_timeout(Duration::from_secs(30)) else {
                let errors: Vec<String> = server.stderr.try_iter().collect();
                panic!(
                    "clarity did not start; stdout: {:?}; stderr: {errors:?}",
                    server.stdout_lines
                );
            };
            let addr = line
                .strip_prefix("Listening on http://")
                .or_else(|| line.strip_prefix("Listening on https://"))
                .and_then(|a| a.trim().parse().ok());
            server.stdout_lines.push(line);
            if let Some(addr) = addr {
                server.addr = addr;
                // Keep draining stdout so the child never blocks on a full pipe.
                std::thread::spawn(move || while out_rx.recv().is_ok() {});
                return server;
            }
        }
    }

    /// The process id (to sample its memory and file descriptors).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// `http://ADDR` + `path`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// The server's `/metrics` text.
    ///
    /// # Panics
    /// When the server does not answer.
    pub async fn metrics(&self) -> String {
        reqwest::get(self.url("/metrics"))
            .await
            .expect("metrics")
            .text()
            .await
            .expect("metrics text")
    }

    /// Log lines written so far (drained: each line is returned once).
    pub fn logs(&self) -> Vec<String> {
        self.stderr.try_iter().collect()
    }

    /// Sends SIGTERM and waits (at most 15 s) for the exit; returns whether it
    /// exited successfully, and everything it logged.
    pub fn terminate(mut self) -> (bool, Vec<String>) {
        let pid = self.child.id().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        let deadline = std::time::Instant::now() + Duration::from_secs(15);
        let status = loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                break Some(status);
            }
            if std::time::Instant::now() > deadline {
                break None;
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        std::thread::sleep(Duration::from_millis(100));
        let logs = self.stderr.try_iter().collect();
        (status.is_some_and(|s| s.success()), logs)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs the binary to completion with `args`; returns (success, stdout, stderr).
pub fn run(args: &[&str], env: &[(&str, &str)]) -> (bool, String, String) {
    run_with_input(args, env, "")
}

/// Like [`run`], writing `input` to its standard input.
pub fn run_with_input(args: &[&str], env: &[(&str, &str)], input: &str) -> (bool, String, String) {
    let mut command = Command::new(server_binary());
    command.args(args);
    for (key, value) in env {
        command.env(key, value);
    }
    let ran = run_command(command, input);
    (ran.code == Some(0), ran.stdout, ran.stderr)
}

/// What one run of a command gave.
#[derive(Debug)]
pub struct Ran {
    /// The exit code (`None` when a signal ended it).
    pub code: Option<i32>,
    /// Standard output.
    pub stdout: String,
    /// Standard error.
    pub stderr: String,
}

/// Runs `command` to completion with `input` on its standard input and its
/// output captured.
///
/// # Panics
/// When the command cannot be started or waited for.
pub fn run_command(mut command: Command, input: &str) -> Ran {
    use std::io::Write;
    command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = command.spawn().expect("run clarity");
    if let Some(mut stdin) = child.stdin.take() {
        let _ = stdin.write_all(input.as_bytes());
    }
    let out = child.wait_with_output().expect("wait for clarity");
    Ran {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}
