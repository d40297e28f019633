//! Getting a batch of events to a sink, so that `deliver` returning `Ok`
//! means the receiver has them: a file synced to disk, a 2xx answer to an
//! HTTP `POST`, or a syslog receiver that has read the whole TLS stream up
//! to its end (each batch is one connection, closed by Clarity and then by
//! the receiver, so the receiver's close acknowledges everything before it).

use std::io::Write;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::format;
use super::settings::{SinkConfig, SinkFormat, SinkKind};
use crate::audit::AuditEvent;
use crate::crypto::SecretString;
use crate::error::{Error, Result};

/// How long one delivery may take.
const DELIVERY_TIMEOUT: Duration = Duration::from_secs(10);

/// A configured sink's way to its receiver.
pub(crate) struct Transport {
    way: Way,
    /// `audit.server_address`, for FHIR records.
    server_address: Option<String>,
}

enum Way {
    Syslog {
        address: String,
        host: String,
        tls: Option<(
            tokio_rustls::TlsConnector,
            rustls_pki_types::ServerName<'static>,
        )>,
    },
    Http {
        client: reqwest::Client,
        url: String,
        token: Option<SecretString>,
    },
    File(std::path::PathBuf),
    Stdout,
}

impl std::fmt::Debug for Transport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self.way {
            Way::Syslog { .. } => "Transport::Syslog",
            Way::Http { .. } => "Transport::Http",
            Way::File(_) => "Transport::File",
            Way::Stdout => "Transport::Stdout",
        })
    }
}

impl Transport {
    /// The transport `config` describes (already validated).
    ///
    /// # Errors
    /// [`Error::Config`] when its CA file or token cannot be used.
    pub(crate) fn new(config: &SinkConfig, server_address: Option<String>) -> Result<Transport> {
        let key = |k: &str| format!("audit.sinks.{}.{k}", config.name);
        let way = match config.kind {
            SinkKind::Syslog => {
                let host = config.syslog_host()?;
                let tls = match (&config.ca_cert, config.tls) {
                    (Some(ca), true) => {
                        let roots = crate::tls::roots_from_pem(ca, &key("ca_cert"))?;
                        let client = crate::tls::client_config(roots)?;
                        let name = config.server_name.clone().unwrap_or_else(|| host.clone());
                        let name = rustls_pki_types::ServerName::try_from(name).map_err(|_| {
                            Error::config(key("server_name"), "is not a valid TLS server name")
                        })?;
                        Some((tokio_rustls::TlsConnector::from(Arc::new(client)), name))
                    }
                    _ => None,
                };
                Way::Syslog {
                    address: config.address.clone().unwrap_or_default(),
                    host: crate::host::name(),
                    tls,
                }
            }
            SinkKind::Http => {
                let mut builder = reqwest::Client::builder()
                    .timeout(DELIVERY_TIMEOUT)
                    .redirect(reqwest::redirect::Policy::none());
                if let Some(ca) = &config.ca_cert {
                    let pem = std::fs::read(ca).map_err(|e| {
                        Error::config(key("ca_cert"), format!("{}: {e}", ca.display()))
                    })?;
                    for cert in reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| {
                        Error::config(key("ca_cert"), format!("{}: {e}", ca.display()))
                    })? {
                        builder = builder.add_root_certificate(cert);
                    }
                }
                let token = match &config.token_env {
                    Some(var) => Some(SecretString::new(std::env::var(var).map_err(|_| {
                        Error::config(key("token_env"), format!("names the environment variable {var}, which is not set (or not text)"))
                    })?)),
                    None => None,
                };
                Way::Http {
                    client: builder
                        .build()
                        .map_err(|e| Error::internal(format!("HTTP client: {e}")))?,
                    url: config.url.clone().unwrap_or_default(),
                    token,
                }
            }
            SinkKind::File => Way::File(config.path.clone().unwrap_or_default()),
            SinkKind::Stdout => Way::Stdout,
        };
        Ok(Transport {
            way,
            server_address,
        })
    }

    /// Delivers `events` in order; `Ok` once the receiver has them all.
    ///
    /// # Errors
    /// [`Error::Unavailable`] saying what failed (never an event's content).
    pub(crate) async fn deliver(&self, events: &[AuditEvent], format: SinkFormat) -> Result<()> {
        match tokio::time::timeout(DELIVERY_TIMEOUT, self.deliver_untimed(events, format)).await {
            Ok(result) => result,
            Err(_) => Err(unavailable(format!(
                "no acknowledgement within {} s",
                DELIVERY_TIMEOUT.as_secs()
            ))),
        }
    }

    fn lines(&self, events: &[AuditEvent], format: SinkFormat) -> String {
        let mut text = String::new();
        for event in events {
            text.push_str(&format::line(event, format, self.server_address.as_deref()));
            text.push('\n');
        }
        text
    }

    async fn deliver_untimed(&self, events: &[AuditEvent], format: SinkFormat) -> Result<()> {
        match &self.way {
            Way::Syslog { address, host, tls } => {
                let mut frames = Vec::new();
                for event in events {
                    frames.extend(format::syslog_frame(
                        event,
                        host,
                        &format::line(event, format, self.server_address.as_deref()),
                    ));
                }
                let tcp = tokio::net::TcpStream::connect(address.as_str())
                    .await
                    .map_err(|e| unavailable(format!("cannot connect: {e}")))?;
                match tls {
                    Some((connector, name)) => {
                        let stream = connector
                            .connect(name.clone(), tcp)
                            .await
                            .map_err(|e| unavailable(format!("TLS: {e}")))?;
                        send_and_await_close(stream, &frames).await
                    }
                    None => send_and_await_close(tcp, &frames).await,
                }
            }
            Way::Http { client, url, token } => {
                let mut body = String::new();
                for event in events {
                    body.push_str(&format::line(event, format, self.server_address.as_deref()));
                    body.push('\n');
                }
                let mut request = client
                    .post(url.as_str())
                    .header(reqwest::header::CONTENT_TYPE, "application/x-ndjson")
                    .body(body);
                if let Some(token) = token {
                    request = request.bearer_auth(token.expose());
                }
                let response = request
                    .send()
                    .await
                    .map_err(|e| unavailable(format!("cannot post: {}", e.without_url())))?;
                if response.status().is_success() {
                    Ok(())
                } else {
                    Err(unavailable(format!(
                        "the receiver answered {}",
                        response.status()
                    )))
                }
            }
            Way::File(path) => {
                let lines = self.lines(events, format);
                let path = path.clone();
                tokio::task::spawn_blocking(move || {
                    let mut file = std::fs::OpenOptions::new()
                        .create(true)
                        .append(true)
                        .open(&path)?;
                    file.write_all(lines.as_bytes())?;
                    file.sync_data()
                })
                .await
                .map_err(|e| unavailable(format!("file writer: {e}")))?
                .map_err(|e| unavailable(format!("cannot append to the file: {e}")))
            }
            Way::Stdout => {
                let lines = self.lines(events, format);
                tokio::task::spawn_blocking(move || {
                    let mut out = std::io::stdout().lock();
                    out.write_all(lines.as_bytes())?;
                    out.flush()
                })
                .await
                .map_err(|e| unavailable(format!("stdout writer: {e}")))?
                .map_err(|e| unavailable(format!("cannot write to stdout: {e}")))
            }
        }
    }
}

/// Writes `frames`, ends the stream (TLS close_notify, then TCP FIN), and
/// waits for the receiver to close its side: a receiver closes only after
/// reading to the end, so its close acknowledges every frame.
async fn send_and_await_close<S>(mut stream: S, frames: &[u8]) -> Result<()>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    stream
        .write_all(frames)
        .await
        .map_err(|e| unavailable(format!("write: {e}")))?;
    stream
        .shutdown()
        .await
        .map_err(|e| unavailable(format!("close: {e}")))?;
    let mut rest = [0u8; 512];
    loop {
        match stream.read(&mut rest).await {
            Ok(0) => return Ok(()),
            Ok(_) => continue,
            // A receiver that closes TCP without a TLS close_notify has
            // still read everything before its close.
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(()),
            Err(e) => return Err(unavailable(format!("awaiting the receiver's close: {e}"))),
        }
    }
}

fn unavailable(why: String) -> Error {
    Error::Unavailable { message: why }
}
