//! Audit sinks against the real server (S-AUD-8): rsyslog (Debian's
//! package, TLS listener, its own configuration) and an HTTP receiver get
//! every event of the run, in order within each chain, across a receiver
//! outage and a server killed with SIGKILL; re-sends (at least once) are
//! allowed, gaps and reordering are not.

mod support;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use clarity_tests::Server;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use support::{Api, skip_or_fail};

/// A receiver that can be stopped and started again on the same port.
trait Receiver {
    /// Starts (again) on its port.
    fn start(&mut self);
    /// Stops, dropping its connections.
    fn stop(&mut self);
    /// Every event received so far, in arrival order.
    fn events(&self) -> Vec<Value>;
}

/// An HTTP endpoint taking NDJSON batches, answering 200.
struct HttpReceiver {
    port: u16,
    lines: Arc<Mutex<Vec<String>>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl HttpReceiver {
    fn new() -> HttpReceiver {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        HttpReceiver {
            port,
            lines: Arc::default(),
            task: None,
        }
    }
}

/// Serves one connection: each request's body lines are kept, then 200.
async fn serve_connection(mut conn: tokio::net::TcpStream, lines: Arc<Mutex<Vec<String>>>) {
    let mut buf = Vec::new();
    loop {
        let head_end = loop {
            if let Some(at) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break at + 4;
            }
            let mut chunk = [0u8; 8192];
            match conn.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        };
        let head = String::from_utf8_lossy(&buf[..head_end]).to_ascii_lowercase();
        assert!(head.starts_with("post "), "{head}");
        assert!(
            head.contains("content-type: application/x-ndjson"),
            "{head}"
        );
        let length: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length:"))
            .and_then(|v| v.trim().parse().ok())
            .expect("content-length");
        while buf.len() < head_end + length {
            let mut chunk = [0u8; 8192];
            match conn.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
        let body = String::from_utf8(buf[head_end..head_end + length].to_vec()).expect("utf-8");
        buf.drain(..head_end + length);
        lines
            .lock()
            .expect("lines")
            .extend(body.lines().map(str::to_string));
        if conn
            .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n")
            .await
            .is_err()
        {
            return;
        }
    }
}

impl Receiver for HttpReceiver {
    fn start(&mut self) {
        let socket = tokio::net::TcpSocket::new_v4().expect("socket");
        socket.set_reuseaddr(true).expect("reuseaddr");
        socket
            .bind(([127, 0, 0, 1], self.port).into())
            .expect("bind the receiver's port");
        let listener = socket.listen(64).expect("listen");
        let lines = Arc::clone(&self.lines);
        self.task = Some(tokio::spawn(async move {
            // Dropped with this task: stopping the receiver cuts every
            // connection, mid-stream or not.
            let mut connections = tokio::task::JoinSet::new();
            while let Ok((conn, _)) = listener.accept().await {
                connections.spawn(serve_connection(conn, Arc::clone(&lines)));
            }
        }));
    }

    fn stop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }

    fn events(&self) -> Vec<Value> {
        self.lines
            .lock()
            .expect("lines")
            .iter()
            .map(|l| serde_json::from_str(l).expect("an NDJSON line"))
            .collect()
    }
}

/// rsyslogd with a TLS listener on a loopback port, writing what it
/// receives to a file with the RFC 5424 header fields it parsed.
struct Rsyslog {
    binary: PathBuf,
    dir: tempfile::TempDir,
    port: u16,
    child: Option<Child>,
}

impl Rsyslog {
    /// `None` when `scripts/test` found no rsyslogd with its TLS driver
    /// (`CLARITY_TEST_RSYSLOGD` unset).
    fn new() -> Option<Rsyslog> {
        let binary = std::env::var_os("CLARITY_TEST_RSYSLOGD").map(PathBuf::from)?;
        let dir = tempfile::tempdir().expect("dir");
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        // A CA and a server certificate for localhost.
        let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
        ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let ca = rcgen::CertifiedIssuer::self_signed(
            ca_params,
            rcgen::KeyPair::generate().expect("key"),
        )
        .expect("CA");
        let key = rcgen::KeyPair::generate().expect("key");
        let params = rcgen::CertificateParams::new(vec!["localhost".to_string()]).expect("params");
        let cert = params.signed_by(&key, &ca).expect("certificate");
        let path = |name: &str| dir.path().join(name);
        std::fs::write(path("ca.pem"), ca.pem()).expect("write");
        std::fs::write(path("cert.pem"), cert.pem()).expect("write");
        std::fs::write(path("key.pem"), key.serialize_pem()).expect("write");
        let conf = format!(
            r#"global(workDirectory="{dir}"
       defaultNetstreamDriver="gtls"
       defaultNetstreamDriverCAFile="{dir}/ca.pem"
       defaultNetstreamDriverCertFile="{dir}/cert.pem"
       defaultNetstreamDriverKeyFile="{dir}/key.pem")
module(load="imtcp" streamDriver.name="gtls" streamDriver.mode="1" streamDriver.authMode="anon")
input(type="imtcp" address="127.0.0.1" port="{port}")
template(name="fields" type="string"
         string="%syslogfacility% %syslogseverity% %timereported:::date-rfc3339% %hostname% %app-name% %procid% %msgid% %msg%\n")
action(type="omfile" file="{dir}/received.log" template="fields")
"#,
            dir = dir.path().display()
        );
        std::fs::write(path("rsyslog.conf"), conf).expect("write");
        Some(Rsyslog {
            binary,
            dir,
            port,
            child: None,
        })
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
}

impl Receiver for Rsyslog {
    fn start(&mut self) {
        let child = Command::new(&self.binary)
            .arg("-n")
            .arg("-f")
            .arg(self.path("rsyslog.conf"))
            .arg("-i")
            .arg(self.path("rsyslogd.pid"))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("start rsyslogd");
        self.child = Some(child);
        let started = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(
                started.elapsed() < Duration::from_secs(15),
                "rsyslogd does not listen on {}",
                self.port
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("kill")
                .args(["-TERM", &child.id().to_string()])
                .status();
            let _ = child.wait();
        }
    }

    fn events(&self) -> Vec<Value> {
        let text = std::fs::read_to_string(self.path("received.log")).unwrap_or_default();
        text.lines()
            .map(|line| {
                let fields: Vec<&str> = line.splitn(8, ' ').collect();
                assert_eq!(fields.len(), 8, "{line}");
                let event: Value =
                    serde_json::from_str(fields[7].trim_start()).expect("a JSON message");
                // The header rsyslog parsed is the one Clarity meant.
                assert_eq!(fields[0], "13", "facility log audit: {line}");
                let severity = match event["outcome"].as_str() {
                    Some("0") => "5",
                    Some("4") => "4",
                    _ => "3",
                };
                assert_eq!(fields[1], severity, "{line}");
                assert_eq!(
                    chrono::DateTime::parse_from_rfc3339(fields[2])
                        .expect("timestamp")
                        .timestamp_micros(),
                    chrono::DateTime::parse_from_rfc3339(
                        event["recorded"].as_str().expect("recorded")
                    )
                    .expect("recorded")
                    .timestamp_micros(),
                    "{line}"
                );
                assert_eq!(fields[4], "clarity", "{line}");
                assert_eq!(
                    fields[6],
                    event["subtype"].as_str().expect("subtype"),
                    "{line}"
                );
                event
            })
            .collect()
    }
}

impl Drop for Rsyslog {
    fn drop(&mut self) {
        self.stop();
    }
}

async fn wait_until(what: &str, mut check: impl AsyncFnMut() -> bool) {
    let started = Instant::now();
    while !check().await {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "timed out waiting until {what}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Each chain's last sequence number in the SQLite store.
fn heads(data: &Path) -> BTreeMap<String, i64> {
    let output = Command::new("sqlite3")
        .arg(data.join("clarity.db"))
        .arg("SELECT lower(hex(chain_id)), max(seq) FROM audit_events GROUP BY chain_id")
        .output()
        .expect("sqlite3 (Debian: sqlite3)");
    assert!(output.status.success());
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(|l| {
            let (chain, seq) = l.split_once('|').expect("chain|seq");
            (chain.to_string(), seq.parse().expect("seq"))
        })
        .collect()
}

/// Every event of every chain arrived, in order within its chain, with
/// re-sends allowed (at least once) but no gap and no reordering; returns
/// how many were re-sends.
fn assert_every_event_in_order(events: &[Value], heads: &BTreeMap<String, i64>) -> usize {
    let mut next: BTreeMap<String, i64> = BTreeMap::new();
    let mut resent = 0;
    for event in events {
        let chain = event["chain_id"].as_str().expect("chain").replace('-', "");
        let seq = event["seq"].as_i64().expect("seq");
        let expected = next.entry(chain.clone()).or_insert(1);
        assert!(
            seq <= *expected,
            "chain {chain}: seq {seq} arrived before {expected}"
        );
        if seq == *expected {
            *expected += 1;
        } else {
            resent += 1;
        }
    }
    for (chain, head) in heads {
        assert_eq!(
            next.get(chain).map(|n| n - 1),
            Some(*head),
            "chain {chain}: every event up to {head} arrived"
        );
    }
    assert_eq!(next.len(), heads.len(), "no events of unknown chains");
    resent
}

/// A run with the sink `sink_toml`: events before, during and after a
/// receiver outage, a SIGKILL of the server during the outage, and a new
/// server that resumes; then every event must have arrived.
async fn outage_and_kill(receiver: &mut dyn Receiver, sink_toml: &str) {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let config = dir.path().join("clarity.toml");
    std::fs::write(&config, sink_toml).expect("write config");
    let config = config.to_str().expect("utf-8").to_string();
    let env = [
        ("CLARITY_CONFIG", config.as_str()),
        ("CLARITY_RATE_LIMIT_ENABLED", "false"),
    ];
    receiver.start();
    let first = Server::start(&data, &env);
    let api = Api::new(&first);
    let (clinician, patient) = api
        .clinician_with_patient(&first, "sinks@example.org", "SNK-1")
        .await;
    let read = async |api: &Api| {
        api.ok(
            "GET",
            &format!("/v1/patients/{patient}"),
            Some(&clinician),
            None,
        )
        .await;
    };
    for _ in 0..5 {
        read(&api).await;
    }
    wait_until("the first events are delivered", async || {
        !receiver.events().is_empty()
            && api
                .metric("clarity_audit_sink_pending_events{sink=\"siem\"}")
                .await
                == Some(0.0)
    })
    .await;

    // The receiver goes away; the service goes on and counts the failures.
    receiver.stop();
    for _ in 0..10 {
        read(&api).await;
    }
    wait_until("failed deliveries are counted", async || {
        api.metric("clarity_audit_sink_failures{sink=\"siem\"}")
            .await
            .is_some_and(|f| f > 0.0)
            && api
                .metric("clarity_audit_sink_pending_events{sink=\"siem\"}")
                .await
                .is_some_and(|p| p > 0.0)
    })
    .await;
    // Killed while events wait: the next server sends them.
    drop(first);
    receiver.start();
    let second = Server::start(&data, &env);
    let api = Api::new(&second);
    for _ in 0..5 {
        read(&api).await;
    }
    wait_until("the backlog and new events are delivered", async || {
        api.metric("clarity_audit_sink_pending_events{sink=\"siem\"}")
            .await
            == Some(0.0)
    })
    .await;
    let (stopped, _) = second.terminate();
    assert!(stopped, "the server stops cleanly");
    let events = receiver.events();
    let resent = assert_every_event_in_order(&events, &heads(&data));
    // At least once: re-sends stay within what was in flight at a failure.
    assert!(resent <= 500, "{resent} re-sends");
    // S-AUD-4: identifiers only in the stream.
    let text = events
        .iter()
        .map(Value::to_string)
        .collect::<Vec<_>>()
        .join("\n");
    assert!(!text.contains("SNK-1"), "no MRN in the stream");
    receiver.stop();
}

// S-AUD-8
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s_aud_8_an_http_receiver_gets_every_event_across_an_outage_and_a_kill() {
    let mut receiver = HttpReceiver::new();
    let toml = format!(
        "[[audit.sinks]]\nname = \"siem\"\nkind = \"http\"\nurl = \"http://127.0.0.1:{}/ingest\"\n",
        receiver.port
    );
    outage_and_kill(&mut receiver, &toml).await;
}

// S-AUD-8
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s_aud_8_rsyslog_over_tls_gets_every_event_across_an_outage_and_a_kill() {
    let Some(mut rsyslog) = Rsyslog::new() else {
        skip_or_fail("rsyslogd is not installed (Debian: apt-get install rsyslog rsyslog-gnutls)");
        return;
    };
    let toml = format!(
        "[[audit.sinks]]\nname = \"siem\"\nkind = \"syslog\"\naddress = \"127.0.0.1:{}\"\n\
         server_name = \"localhost\"\nca_cert = \"{}\"\n",
        rsyslog.port,
        rsyslog.path("ca.pem").display()
    );
    outage_and_kill(&mut rsyslog, &toml).await;
}
