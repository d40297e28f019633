//! The `[[audit.sinks]]` settings: where the audit trail is streamed.

use std::path::PathBuf;

use serde::Deserialize;

use crate::error::{Error, Result};

/// How a sink receives events.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SinkKind {
    /// RFC 5424 syslog over TCP (RFC 6587 octet counting), with TLS
    /// (RFC 5425) unless the receiver is on this machine and `tls = false`.
    Syslog,
    /// `POST` of NDJSON batches; a 2xx answer acknowledges the batch.
    Http,
    /// JSON lines appended to a file (synced before the cursor moves).
    File,
    /// JSON lines on standard output, for a log shipper reading it.
    Stdout,
}

impl SinkKind {
    /// The kind's name, as configured and in metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            SinkKind::Syslog => "syslog",
            SinkKind::Http => "http",
            SinkKind::File => "file",
            SinkKind::Stdout => "stdout",
        }
    }
}

/// What each delivered event looks like.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SinkFormat {
    /// The event as `GET /v1/audit/events` returns it, with its chain,
    /// sequence number and MAC (hex), so a receiver can check order and
    /// completeness.
    #[default]
    Json,
    /// A FHIR R4 `AuditEvent` resource.
    Fhir,
}

/// One audit sink (`[[audit.sinks]]`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct SinkConfig {
    /// A name of its own (letters, digits, `-`, `_`; at most 64): it keys
    /// the sink's cursor in the store and labels its metrics. Renaming a
    /// sink starts it again from the oldest event kept.
    pub name: String,
    /// `syslog`, `http`, `file` or `stdout`.
    pub kind: SinkKind,
    /// `json` (default) or `fhir`.
    #[serde(default)]
    pub format: SinkFormat,
    /// syslog: the receiver's `host:port`.
    pub address: Option<String>,
    /// syslog: TLS (default true); `false` only for a receiver on a
    /// loopback address.
    #[serde(default = "yes")]
    pub tls: bool,
    /// syslog: the name the receiver's certificate must carry (default:
    /// the host of `address`).
    pub server_name: Option<String>,
    /// syslog and http: a PEM file of the CA certificates to trust for the
    /// receiver (syslog: required with TLS; http: in addition to the
    /// public roots).
    pub ca_cert: Option<PathBuf>,
    /// http: the URL batches are posted to (`https://`, or `http://` on
    /// loopback only).
    pub url: Option<String>,
    /// http: the name of an environment variable holding a bearer token
    /// to send (never the token itself in the file).
    pub token_env: Option<String>,
    /// file: the file events are appended to.
    pub path: Option<PathBuf>,
    /// Events sent together at most (default 500).
    #[serde(default = "default_batch")]
    pub batch: usize,
    /// When true, audited operations are refused (503) while this sink's
    /// oldest undelivered event is older than `fail_closed_after_secs`:
    /// nothing happens that the sink has not been told of soon after
    /// (default false: an outage delays delivery, never the service).
    #[serde(default)]
    pub fail_closed: bool,
    /// Seconds an event may wait for delivery before a fail-closed sink
    /// stops the service (default 60).
    #[serde(default = "default_fail_closed_after")]
    pub fail_closed_after_secs: u64,
}

fn yes() -> bool {
    true
}

fn default_batch() -> usize {
    500
}

fn default_fail_closed_after() -> u64 {
    60
}

impl SinkConfig {
    /// Checks the sink's settings; errors name the key.
    ///
    /// # Errors
    /// [`Error::Config`] naming the first offending key as
    /// `audit.sinks.<name>.<key>`.
    pub fn validate(&self) -> Result<()> {
        let name_ok = !self.name.is_empty()
            && self.name.len() <= 64
            && self
                .name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
        if !name_ok {
            return Err(Error::config(
                "audit.sinks.name",
                "must be 1 to 64 letters, digits, '-' or '_'",
            ));
        }
        let key = |k: &str| format!("audit.sinks.{}.{k}", self.name);
        let needs = |present: bool, k: &str| {
            if present {
                Ok(())
            } else {
                Err(Error::config(
                    key(k),
                    format!("is required for a {} sink", self.kind.as_str()),
                ))
            }
        };
        let stray = |present: bool, k: &str| {
            if present {
                Err(Error::config(
                    key(k),
                    format!("does not apply to a {} sink", self.kind.as_str()),
                ))
            } else {
                Ok(())
            }
        };
        match self.kind {
            SinkKind::Syslog => {
                needs(self.address.is_some(), "address")?;
                stray(self.url.is_some(), "url")?;
                stray(self.path.is_some(), "path")?;
                stray(self.token_env.is_some(), "token_env")?;
                let host = self.syslog_host()?;
                if self.tls {
                    needs(self.ca_cert.is_some(), "ca_cert")?;
                } else if !crate::tls::is_loopback_host(&host) {
                    return Err(Error::config(
                        key("tls"),
                        "may be false only for a receiver on a loopback address: audit events \
                         leave the machine over TLS only",
                    ));
                }
            }
            SinkKind::Http => {
                needs(self.url.is_some(), "url")?;
                stray(self.address.is_some(), "address")?;
                stray(self.path.is_some(), "path")?;
                stray(self.server_name.is_some(), "server_name")?;
                if !self.url.as_deref().is_some_and(crate::tls::acceptable_url) {
                    return Err(Error::config(
                        key("url"),
                        "must be an https:// URL (http:// only on a loopback address)",
                    ));
                }
            }
            SinkKind::File => {
                needs(self.path.is_some(), "path")?;
                stray(self.address.is_some(), "address")?;
                stray(self.url.is_some(), "url")?;
                stray(self.ca_cert.is_some(), "ca_cert")?;
                stray(self.token_env.is_some(), "token_env")?;
                stray(self.server_name.is_some(), "server_name")?;
            }
            SinkKind::Stdout => {
                stray(self.address.is_some(), "address")?;
                stray(self.url.is_some(), "url")?;
                stray(self.path.is_some(), "path")?;
                stray(self.ca_cert.is_some(), "ca_cert")?;
                stray(self.token_env.is_some(), "token_env")?;
                stray(self.server_name.is_some(), "server_name")?;
            }
        }
        if !(1..=10_000).contains(&self.batch) {
            return Err(Error::config(key("batch"), "must be between 1 and 10000"));
        }
        if !(1..=86_400).contains(&self.fail_closed_after_secs) {
            return Err(Error::config(
                key("fail_closed_after_secs"),
                "must be between 1 and 86400",
            ));
        }
        Ok(())
    }

    /// The host part of a syslog sink's `address`.
    pub(crate) fn syslog_host(&self) -> Result<String> {
        let address = self.address.as_deref().unwrap_or_default();
        match address.rsplit_once(':') {
            Some((host, port)) if !host.is_empty() && port.parse::<u16>().is_ok() => Ok(host
                .trim_start_matches('[')
                .trim_end_matches(']')
                .to_string()),
            _ => Err(Error::config(
                format!("audit.sinks.{}.address", self.name),
                "must be host:port",
            )),
        }
    }
}

/// Checks a list of sinks: each one's settings, and that names are unique.
///
/// # Errors
/// [`Error::Config`] naming the offending key.
pub(crate) fn validate_all(sinks: &[SinkConfig]) -> Result<()> {
    for (i, sink) in sinks.iter().enumerate() {
        sink.validate()?;
        if sinks[..i].iter().any(|s| s.name == sink.name) {
            return Err(Error::config(
                "audit.sinks.name",
                format!("{} names two sinks", sink.name),
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use figment::providers::Format;

    fn sink(toml_text: &str) -> SinkConfig {
        figment::Figment::from(figment::providers::Toml::string(toml_text))
            .extract()
            .expect("parses")
    }

    // S-AUD-8: a sink's settings are checked at start, errors naming the key.
    #[test]
    fn s_aud_8_sink_settings_name_the_offending_key() {
        let syslog =
            sink("name = \"siem\"\nkind = \"syslog\"\naddress = \"siem.example.org:6514\"");
        let err = syslog.validate().expect_err("no CA").to_string();
        assert!(err.contains("audit.sinks.siem.ca_cert"), "{err}");
        let plain = sink(
            "name = \"siem\"\nkind = \"syslog\"\naddress = \"siem.example.org:514\"\ntls = false",
        );
        let err = plain.validate().expect_err("plain off-host").to_string();
        assert!(err.contains("audit.sinks.siem.tls"), "{err}");
        let local =
            sink("name = \"relay\"\nkind = \"syslog\"\naddress = \"127.0.0.1:514\"\ntls = false");
        local.validate().expect("plain loopback relay");
        let http = sink("name = \"h\"\nkind = \"http\"\nurl = \"http://siem.example.org/in\"");
        let err = http.validate().expect_err("clear http").to_string();
        assert!(err.contains("audit.sinks.h.url"), "{err}");
        let file = sink("name = \"f\"\nkind = \"file\"\nurl = \"https://x.example\"");
        let err = file.validate().expect_err("no path").to_string();
        assert!(err.contains("audit.sinks.f.path"), "{err}");
        let bad_name = sink("name = \"a b\"\nkind = \"stdout\"");
        assert!(bad_name.validate().is_err());
        let two = [
            sink("name = \"s\"\nkind = \"stdout\""),
            sink("name = \"s\"\nkind = \"stdout\""),
        ];
        let err = validate_all(&two).expect_err("duplicate").to_string();
        assert!(err.contains("names two sinks"), "{err}");
        let unknown: std::result::Result<SinkConfig, _> = figment::Figment::from(
            figment::providers::Toml::string("name = \"s\"\nkind = \"stdout\"\nurll = \"x\""),
        )
        .extract();
        assert!(unknown.is_err(), "unknown keys are refused");
    }
}
