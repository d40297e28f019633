//! Keeping the transit provider logged in (S-KEY-4): the [`Session`] (the
//! token and its lease), logging in by each [`super::TransitAuth`] method,
//! and the keeper task that renews the token before half its lease has
//! passed, logs in again when the token can no longer be renewed (AppRole,
//! Kubernetes, a replaced token file), and retries failures with backoff.
//! Each failure is counted and reported (a metric and an alert), and the
//! token never leaves the process.

use std::sync::Weak;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use reqwest::header::HeaderValue;
use serde::Deserialize;

use super::TransitAuth;
use super::client::TransitClient;
use super::session::Session;
use crate::crypto::{SecretString, read_secret_file, read_token_file};
use crate::error::{Error, Result};

/// The shortest wait before retrying a failed renewal or login.
const MIN_RETRY: Duration = Duration::from_secs(1);
/// The longest wait before retrying a failed renewal or login.
const MAX_RETRY: Duration = Duration::from_secs(30);

/// `auth` in a login or renewal reply.
#[derive(Deserialize)]
struct AuthReply {
    auth: Lease,
}

#[derive(Deserialize)]
struct Lease {
    client_token: SecretString,
    lease_duration: u64,
    renewable: bool,
}

/// `data` of a token lookup.
#[derive(Deserialize)]
struct LookupReply {
    data: Lookup,
}

#[derive(Deserialize)]
struct Lookup {
    ttl: u64,
    renewable: bool,
    /// Absent (null) for a token that never expires.
    expire_time: Option<String>,
}

impl Lookup {
    /// The token's remaining lease: none for a token that never expires,
    /// and at least a second for one that does (the server rounds down).
    fn lease(&self) -> Option<Duration> {
        self.expire_time
            .as_ref()
            .map(|_| Duration::from_secs(self.ttl.max(1)))
    }
}

fn header(token: &SecretString) -> Result<HeaderValue> {
    let mut value = HeaderValue::from_str(token.expose())
        .map_err(|_| Error::key("the transit token is not a valid HTTP header value"))?;
    value.set_sensitive(true);
    Ok(value)
}

fn lease(secs: u64) -> Option<Duration> {
    (secs > 0).then(|| Duration::from_secs(secs))
}

impl TransitClient {
    /// Logs in with the configured method and makes the token current.
    ///
    /// # Errors
    /// [`Error::Key`] when the credentials are refused or unreadable;
    /// [`Error::Unavailable`] when the server does not answer.
    pub(super) async fn log_in(&self) -> Result<()> {
        let outcome = self.log_in_once().await;
        if outcome.is_ok() {
            self.access.logins.fetch_add(1, Ordering::Relaxed);
        }
        outcome
    }

    async fn log_in_once(&self) -> Result<()> {
        let (what, mount, body) = match &self.settings.auth {
            TransitAuth::Token(token) => return self.adopt(token).await,
            TransitAuth::TokenFile(path) => {
                let token = read_token_file("keys.transit_token_file", path)?;
                return self.adopt(&token).await;
            }
            TransitAuth::AppRole {
                mount,
                role_id,
                secret_id_file,
            } => {
                let secret_id =
                    read_token_file("keys.transit_approle_secret_id_file", secret_id_file)?;
                let body = serde_json::json!({
                    "role_id": role_id,
                    "secret_id": secret_id.expose(),
                });
                ("AppRole login", mount, body)
            }
            TransitAuth::Kubernetes {
                mount,
                role,
                jwt_file,
            } => {
                let jwt = read_secret_file("keys.transit_kubernetes_jwt_file", jwt_file)?;
                let jwt = std::str::from_utf8(&jwt)
                    .map_err(|_| Error::key("keys.transit_kubernetes_jwt_file is not a token"))?;
                let body = serde_json::json!({ "role": role, "jwt": jwt.trim() });
                ("Kubernetes login", mount, body)
            }
        };
        let body = zeroize::Zeroizing::new(body.to_string().into_bytes());
        let reply: AuthReply = self
            .call_auth(
                what,
                &format!("auth/{mount}/login"),
                Some(body.to_vec()),
                None,
            )
            .await?;
        let auth = reply.auth;
        self.access.replace(
            header(&auth.client_token)?,
            lease(auth.lease_duration),
            auth.renewable,
        );
        Ok(())
    }

    /// Makes `token` current after asking the server how long it lives.
    async fn adopt(&self, token: &SecretString) -> Result<()> {
        let value = header(token)?;
        let reply: LookupReply = self
            .call_auth("token lookup", "auth/token/lookup-self", None, Some(&value))
            .await?;
        self.access
            .replace(value, reply.data.lease(), reply.data.renewable);
        Ok(())
    }

    /// Renews the current token; logs in again instead when it cannot be
    /// renewed, or when its maximum lifetime is near.
    async fn refresh(&self) -> Result<()> {
        let Some(session) = self.access.session() else {
            return self.log_in().await;
        };
        if session.renewable {
            match self.renew(&session).await {
                Ok(renewed) if !self.settings.auth.can_log_in() || !renewed.is_capped(&session) => {
                    self.access.renewals.fetch_add(1, Ordering::Relaxed);
                    self.access
                        .replace(session.token.clone(), renewed.lease, renewed.renewable);
                    return Ok(());
                }
                Ok(_) => tracing::info!(
                    method = self.access.method,
                    "the transit token nears its maximum lifetime; logging in again"
                ),
                Err(e) if !self.settings.auth.can_log_in() => return Err(e),
                Err(e) => {
                    tracing::warn!(error = %e, "the transit token could not be renewed; logging in again")
                }
            }
        } else if !self.settings.auth.can_log_in() {
            return Err(Error::key(
                "the transit token is not renewable and expires; use a renewable (periodic) token or AppRole",
            ));
        }
        let _one_at_a_time = self.access.login_lock.lock().await;
        self.log_in().await
    }

    async fn renew(&self, session: &Session) -> Result<Renewed> {
        let reply: AuthReply = self
            .call_auth(
                "token renewal",
                "auth/token/renew-self",
                Some(b"{}".to_vec()),
                Some(&session.token),
            )
            .await?;
        Ok(Renewed {
            lease: lease(reply.auth.lease_duration),
            renewable: reply.auth.renewable,
        })
    }
}

/// What a renewal granted.
struct Renewed {
    lease: Option<Duration>,
    renewable: bool,
}

impl Renewed {
    /// Whether the server granted less than half the lease the session had:
    /// the token's maximum lifetime is near, and renewing again would not
    /// keep it alive for long.
    fn is_capped(&self, before: &Session) -> bool {
        match (self.lease, before.lease) {
            (Some(now), Some(was)) => now < was / 2,
            _ => false,
        }
    }
}

/// Runs until the client is dropped: renews (or replaces) the token when
/// half its lease has passed; after a failure, tries again with backoff.
pub(super) async fn keep(client: Weak<TransitClient>) {
    let mut retry = MIN_RETRY;
    let mut failing = false;
    loop {
        let wait = {
            let Some(client) = client.upgrade() else {
                return;
            };
            match (failing, client.access.session()) {
                (true, _) => retry,
                (false, Some(session)) => match session.lease {
                    // Never more often than once a second, however short the lease.
                    Some(lease) => (session.obtained + lease / 2)
                        .saturating_duration_since(Instant::now())
                        .max(MIN_RETRY),
                    // A token that never expires needs no care.
                    None => return,
                },
                (false, None) => MIN_RETRY,
            }
        };
        tokio::time::sleep(wait).await;
        let Some(client) = client.upgrade() else {
            return;
        };
        match client.refresh().await {
            Ok(()) => {
                failing = false;
                retry = MIN_RETRY;
            }
            Err(e) => {
                client.access.failed(&e);
                failing = true;
                // Retry well before the token runs out, but not in a burst.
                let left = client
                    .access
                    .session()
                    .and_then(|s| s.expires())
                    .map(|at| at.saturating_duration_since(Instant::now()));
                retry = (retry * 2).min(MAX_RETRY);
                if let Some(left) = left.filter(|l| !l.is_zero()) {
                    retry = retry.min((left / 4).max(MIN_RETRY));
                }
            }
        }
    }
}
