//! The HTTP side of the transit provider: requests to the transit engine with
//! the token of the current [`Session`], TLS, a timeout per request and
//! retries with backoff on server errors and timeouts only; a refused token
//! is replaced by logging in again (see `auth`) and the request sent once
//! more. Error messages name the operation and the HTTP status, never the
//! token, the request body or the server's reply text.

use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;
use serde::de::DeserializeOwned;
use zeroize::Zeroizing;

use super::TransitSettings;
use super::session::{Access, Session};
use crate::error::{Error, Result};

/// Attempts per idempotent request (the first try plus retries).
const ATTEMPTS: u32 = 3;
/// Delay before the first retry; doubles after each.
const FIRST_BACKOFF: Duration = Duration::from_millis(100);

/// A transit engine at one address, for one key, and the session with it.
pub(super) struct TransitClient {
    http: reqwest::Client,
    pub(super) settings: Arc<TransitSettings>,
    /// The session's token, its lease and how it is kept.
    pub(super) access: Arc<Access>,
}

/// What the server says about the key.
#[derive(Debug, Deserialize)]
pub(super) struct KeyInfo {
    pub(super) latest_version: i32,
    pub(super) min_decryption_version: i32,
    pub(super) keys: std::collections::BTreeMap<String, serde_json::Value>,
}

#[derive(Deserialize)]
struct Envelope<T> {
    data: T,
}

#[derive(Deserialize)]
struct Ciphertext {
    ciphertext: String,
}

#[derive(Deserialize)]
struct Plaintext {
    plaintext: crate::crypto::SecretString,
}

/// Whether a failed request may be retried.
enum Failure {
    Retry(Error),
    Fail(Error),
    /// The token was refused (HTTP 401 or 403).
    Refused(Error),
}

impl TransitClient {
    /// A client that has not logged in yet (see [`TransitClient::log_in`]).
    pub(super) fn new(settings: TransitSettings) -> Result<TransitClient> {
        let mut builder = reqwest::Client::builder()
            .timeout(settings.timeout)
            .connect_timeout(settings.timeout)
            .use_rustls_tls()
            .https_only(!settings.addr.starts_with("http://"))
            .redirect(reqwest::redirect::Policy::none());
        if let Some(pem) = &settings.ca_cert_pem {
            for cert in reqwest::Certificate::from_pem_bundle(pem)
                .map_err(|_| Error::key("keys.transit_ca_cert holds no PEM certificate"))?
            {
                builder = builder.add_root_certificate(cert);
            }
        }
        let http = builder
            .build()
            .map_err(|_| Error::key("cannot set up the transit HTTP client"))?;
        Ok(TransitClient {
            http,
            access: Arc::new(Access::new(settings.auth.method())),
            settings: Arc::new(settings),
        })
    }

    pub(super) fn key_name(&self) -> &str {
        &self.settings.key
    }

    fn url(&self, path: &str) -> String {
        format!("{}/v1/{}/{path}", self.settings.addr, self.settings.mount)
    }

    /// Sends a request to an API path outside the transit mount (`auth/...`)
    /// with `token`, or none; not retried. For logging in and renewing.
    pub(super) async fn call_auth<T: DeserializeOwned>(
        &self,
        what: &'static str,
        path: &str,
        body: Option<Vec<u8>>,
        token: Option<&reqwest::header::HeaderValue>,
    ) -> Result<T> {
        let url = format!("{}/v1/{path}", self.settings.addr);
        let bytes = Zeroizing::new(
            self.send_once(what, url, body, token)
                .await
                .map_err(|(Failure::Retry(e) | Failure::Fail(e) | Failure::Refused(e))| e)?,
        );
        serde_json::from_slice(&bytes)
            .map_err(|_| Error::key(format!("transit {what}: unexpected reply from the server")))
    }

    /// Reads the key's versions; `None` when the key does not exist.
    pub(super) async fn key_info(&self) -> Result<Option<KeyInfo>> {
        let path = format!("keys/{}", self.settings.key);
        match self
            .call::<Envelope<KeyInfo>>("read key", &path, None, true)
            .await
        {
            Ok(info) => Ok(Some(info.data)),
            Err(Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Creates the key (AES-256-GCM, not exportable).
    pub(super) async fn create_key(&self) -> Result<()> {
        let path = format!("keys/{}", self.settings.key);
        let body = serde_json::json!({ "type": "aes256-gcm96", "exportable": false });
        self.call_empty(
            "create key",
            &path,
            Some(body.to_string().into_bytes()),
            false,
        )
        .await
    }

    /// Makes a new key version current.
    pub(super) async fn rotate(&self) -> Result<()> {
        let path = format!("keys/{}/rotate", self.settings.key);
        // Not retried: a retry after a lost reply would rotate twice.
        self.call_empty("rotate key", &path, Some(b"{}".to_vec()), false)
            .await
    }

    /// Makes versions below `version` unusable for decryption.
    pub(super) async fn set_min_decryption_version(&self, version: i32) -> Result<()> {
        let path = format!("keys/{}/config", self.settings.key);
        let body = serde_json::json!({ "min_decryption_version": version });
        self.call_empty(
            "retire key versions",
            &path,
            Some(body.to_string().into_bytes()),
            true,
        )
        .await
    }

    /// Encrypts base64 `plaintext_b64` with the current version.
    pub(super) async fn encrypt(&self, plaintext_b64: &Zeroizing<String>) -> Result<String> {
        let path = format!("encrypt/{}", self.settings.key);
        let body = Zeroizing::new(
            serde_json::to_vec(&serde_json::json!({ "plaintext": plaintext_b64.as_str() }))
                .map_err(|_| Error::internal("encoding"))?,
        );
        let out: Envelope<Ciphertext> = self.call("wrap", &path, Some(body.to_vec()), true).await?;
        Ok(out.data.ciphertext)
    }

    /// Decrypts a ciphertext into its base64 plaintext.
    pub(super) async fn decrypt(&self, ciphertext: &str) -> Result<crate::crypto::SecretString> {
        let path = format!("decrypt/{}", self.settings.key);
        let body = serde_json::json!({ "ciphertext": ciphertext });
        let out: Envelope<Plaintext> = self
            .call("unwrap", &path, Some(body.to_string().into_bytes()), true)
            .await?;
        Ok(out.data.plaintext)
    }

    /// Re-encrypts a ciphertext under the current version, inside the server.
    pub(super) async fn rewrap(&self, ciphertext: &str) -> Result<String> {
        let path = format!("rewrap/{}", self.settings.key);
        let body = serde_json::json!({ "ciphertext": ciphertext });
        let out: Envelope<Ciphertext> = self
            .call("rewrap", &path, Some(body.to_string().into_bytes()), true)
            .await?;
        Ok(out.data.ciphertext)
    }

    async fn call_empty(
        &self,
        what: &'static str,
        path: &str,
        body: Option<Vec<u8>>,
        retry: bool,
    ) -> Result<()> {
        self.send(what, path, body, retry).await.map(drop)
    }

    async fn call<T: DeserializeOwned>(
        &self,
        what: &'static str,
        path: &str,
        body: Option<Vec<u8>>,
        retry: bool,
    ) -> Result<T> {
        let bytes = Zeroizing::new(self.send(what, path, body, retry).await?);
        serde_json::from_slice(&bytes)
            .map_err(|_| Error::key(format!("transit {what}: unexpected reply from the server")))
    }

    /// Sends one request with the session's token, retrying server errors
    /// and timeouts when `retry`; a refused token is replaced once by
    /// logging in again, when the method can.
    async fn send(
        &self,
        what: &'static str,
        path: &str,
        body: Option<Vec<u8>>,
        retry: bool,
    ) -> Result<Vec<u8>> {
        let attempts = if retry { ATTEMPTS } else { 1 };
        let mut backoff = FIRST_BACKOFF;
        let mut attempt = 1;
        let mut logged_in_again = false;
        loop {
            let session = self.access.session();
            let token = session.as_ref().map(|s| &s.token);
            match self
                .send_once(what, self.url(path), body.clone(), token)
                .await
            {
                Ok(bytes) => return Ok(bytes),
                Err(Failure::Retry(e)) if attempt < attempts => {
                    tracing::warn!(operation = what, attempt, error = %e, "transit request failed; retrying");
                    tokio::time::sleep(backoff).await;
                    backoff *= 2;
                    attempt += 1;
                }
                Err(Failure::Refused(e)) if !logged_in_again && self.settings.auth.can_log_in() => {
                    logged_in_again = true;
                    tracing::warn!(
                        operation = what,
                        "the transit token was refused; logging in again"
                    );
                    if self.log_in_again(session.as_deref()).await.is_err() {
                        return Err(e);
                    }
                }
                Err(Failure::Retry(e) | Failure::Fail(e) | Failure::Refused(e)) => return Err(e),
            }
        }
    }

    /// Logs in again unless another request already replaced `seen`.
    async fn log_in_again(&self, seen: Option<&Session>) -> Result<()> {
        let _one_at_a_time = self.access.login_lock.lock().await;
        let current = self.access.session();
        if current.as_deref().map(Session::generation) != seen.map(Session::generation) {
            return Ok(());
        }
        self.log_in().await.map(drop)
    }

    async fn send_once(
        &self,
        what: &'static str,
        url: String,
        body: Option<Vec<u8>>,
        token: Option<&reqwest::header::HeaderValue>,
    ) -> std::result::Result<Vec<u8>, Failure> {
        let request = match body {
            Some(body) => self
                .http
                .post(url)
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(body),
            None => self.http.get(url),
        };
        let request = match token {
            Some(token) => request.header("X-Vault-Token", token.clone()),
            None => request,
        };
        let response = request
            .send()
            .await
            .map_err(|e| {
                let kind = if e.is_timeout() {
                    "timed out"
                } else if e.is_connect() {
                    "cannot connect"
                } else {
                    "request failed"
                };
                // The cause (refused, a certificate that does not verify)
                // is in the source chain; the URL holds no secret.
                tracing::warn!(operation = what, error = %crate::error::causes(&e), "transit request failed");
                Failure::Retry(Error::Unavailable {
                    message: format!("transit {what}: {kind} ({})", self.settings.addr),
                })
            })?;
        let status = response.status();
        let bytes = response.bytes().await.map_err(|_| {
            Failure::Retry(Error::Unavailable {
                message: format!("transit {what}: the reply was cut short"),
            })
        })?;
        if status.is_success() {
            return Ok(bytes.to_vec());
        }
        let code = status.as_u16();
        Err(match code {
            500..=599 => Failure::Retry(Error::Unavailable {
                message: format!("transit {what}: server error (HTTP {code})"),
            }),
            // An altered or foreign ciphertext: the uniform integrity error.
            400 if matches!(what, "unwrap" | "rewrap") => Failure::Fail(Error::Integrity),
            401 | 403 => Failure::Refused(Error::key(format!(
                "transit {what}: refused (HTTP {code}); check the credentials of keys.transit_auth \"{}\" and the policy",
                self.settings.auth.method()
            ))),
            404 => Failure::Fail(Error::NotFound {
                what: "transit key",
            }),
            _ => Failure::Fail(Error::key(format!(
                "transit {what}: refused by the server (HTTP {code})"
            ))),
        })
    }
}
