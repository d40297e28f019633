//! A PostgreSQL of our own (initdb in a temporary directory, on a free
//! port), for tests that stop it or configure it: outages, TLS.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// A PostgreSQL of our own in a temporary directory, on a free port.
pub(crate) struct PrivatePostgres {
    bin: PathBuf,
    dir: tempfile::TempDir,
    port: u16,
}

impl PrivatePostgres {
    /// Initialised and started with trust authentication; `None` when the
    /// server binaries are not installed.
    pub(crate) fn start() -> Option<PrivatePostgres> {
        let pg = PrivatePostgres::init()?;
        pg.start_again();
        Some(pg)
    }

    /// Initialised (trust authentication) but not started.
    pub(crate) fn init() -> Option<PrivatePostgres> {
        let bin = std::fs::read_dir("/usr/lib/postgresql")
            .ok()?
            .filter_map(Result::ok)
            .map(|e| e.path().join("bin"))
            .find(|b| b.join("initdb").exists())?;
        let dir = tempfile::tempdir().expect("tempdir");
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port")
            .port();
        let pg = PrivatePostgres { bin, dir, port };
        // initdb refuses to run as root: use the postgres account then.
        pg.give_to_server_account();
        let initdb = pg.bin.join("initdb");
        let data = pg.data();
        let ok = pg
            .as_owner(&[
                initdb.to_str()?,
                "-D",
                data.to_str()?,
                "-U",
                "postgres",
                "--auth=trust",
                "--no-sync",
                "-E",
                "UTF8",
            ])
            .success();
        assert!(ok, "initdb failed");
        Some(pg)
    }

    /// Adds `settings` to postgresql.conf, writes `files` (name, contents)
    /// into the data directory, and replaces pg_hba.conf with `hba` when
    /// given; everything owned by the server's account.
    pub(crate) fn configure(&self, settings: &str, files: &[(&str, &str)], hba: Option<&str>) {
        use std::io::Write;
        let data = self.data();
        let mut conf = std::fs::OpenOptions::new()
            .append(true)
            .open(data.join("postgresql.conf"))
            .expect("postgresql.conf");
        writeln!(conf, "{settings}").expect("write postgresql.conf");
        for (name, contents) in files {
            let path = data.join(name);
            std::fs::write(&path, contents).expect("write file");
            std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o600))
                .expect("chmod");
        }
        if let Some(hba) = hba {
            std::fs::write(data.join("pg_hba.conf"), hba).expect("pg_hba.conf");
        }
        self.give_to_server_account();
    }

    /// Hands the directory to the `postgres` account, which runs the server
    /// when the tests run as root (a no-op otherwise: chown fails quietly).
    fn give_to_server_account(&self) {
        Command::new("chown")
            .args(["-R", "postgres:postgres"])
            .arg(self.dir.path())
            .status()
            .ok();
    }

    /// The directory of the server's Unix socket.
    pub(crate) fn socket_dir(&self) -> &Path {
        self.dir.path()
    }

    /// The server's port.
    pub(crate) fn port(&self) -> u16 {
        self.port
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("pgdata")
    }

    /// A URL for the superuser over TCP on 127.0.0.1.
    pub(crate) fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    fn as_owner(&self, args: &[&str]) -> std::process::ExitStatus {
        let mut command = if is_root() {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]);
            c.args(args);
            c
        } else {
            let mut c = Command::new(args[0]);
            c.args(&args[1..]);
            c
        };
        command
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .expect("run a PostgreSQL tool")
    }

    fn pg_ctl(&self, args: &[&str]) -> bool {
        let pg_ctl = self.bin.join("pg_ctl");
        let data = self.data();
        let mut all = vec![
            pg_ctl.to_str().expect("path"),
            "-D",
            data.to_str().expect("path"),
        ];
        all.extend_from_slice(args);
        self.as_owner(&all).success()
    }

    /// Starts the (stopped) server.
    pub(crate) fn start_again(&self) {
        let options = format!(
            "-p {} -c listen_addresses=127.0.0.1 -k {} -c fsync=off -c shared_buffers=16MB -c max_connections=40",
            self.port,
            self.dir.path().display()
        );
        let log = self.dir.path().join("pg.log");
        assert!(
            self.pg_ctl(&[
                "-w",
                "-t",
                "30",
                "-l",
                log.to_str().expect("path"),
                "-o",
                &options,
                "start"
            ]),
            "pg_ctl start"
        );
    }

    /// Stops the server at once, as a crash would.
    pub(crate) fn stop_now(&self) {
        assert!(
            self.pg_ctl(&["-w", "-m", "immediate", "stop"]),
            "pg_ctl stop"
        );
    }
}

impl Drop for PrivatePostgres {
    fn drop(&mut self) {
        let _ = self.pg_ctl(&["-w", "-m", "immediate", "stop"]);
    }
}

/// Whether the tests run as root (initdb and postgres refuse to).
pub(crate) fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout.starts_with(b"0\n"))
}
