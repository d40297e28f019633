//! Login, refresh, logout and authentication of access tokens.

use std::net::IpAddr;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::auditing::Ev;
use super::users::secs;
use super::{Alert, AlertKind, Clarity, User};
use crate::access::Principal;
use crate::audit::{AuditAction, AuditOutcome};
use crate::auth::{AccessClaims, REFRESH_PREFIX, backoff_delay, hash_secret, new_refresh_token};
use crate::crypto::{IndexField, SecretString};
use crate::error::{Error, Result};
use crate::model::RequestContext;
use crate::model::Role;
use crate::model::{RefreshRow, SessionRow, UserRow};
use crate::timings::Stage;

/// `POST /v1/auth/login`.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoginRequest {
    /// Login email.
    pub email: String,
    /// Password.
    pub password: SecretString,
    /// Current TOTP code, when the account has a second factor.
    #[serde(default)]
    pub totp: Option<String>,
}

/// `POST /v1/auth/refresh` (the token shows as redacted in `Debug`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RefreshRequest {
    /// The refresh token (single use).
    pub refresh_token: SecretString,
}

/// `POST /v1/auth/mfa/confirm` (the code shows as redacted in `Debug`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MfaCode {
    /// The current TOTP code.
    pub code: SecretString,
}

/// What a login or refresh returns.
#[derive(Debug, Clone)]
pub struct Tokens {
    /// PASETO v4 access token.
    pub access_token: SecretString,
    /// Refresh token (single use).
    pub refresh_token: SecretString,
    /// Seconds until the access token expires.
    pub expires_in: i64,
    /// The user.
    pub user: User,
}

impl Serialize for Tokens {
    fn serialize<S: serde::Serializer>(
        &self,
        serializer: S,
    ) -> std::result::Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let mut out = serializer.serialize_struct("Tokens", 5)?;
        out.serialize_field("access_token", self.access_token.expose())?;
        out.serialize_field("refresh_token", self.refresh_token.expose())?;
        out.serialize_field("expires_in", &self.expires_in)?;
        out.serialize_field("token_type", "Bearer")?;
        out.serialize_field("user", &self.user)?;
        out.end()
    }
}

/// Session use is written at most this often (idle timeouts are exact to it).
const TOUCH_EVERY_SECS: i64 = 15;
/// The window of the per-account failure limit.
const FAILURE_WINDOW_HOURS: i64 = 1;

impl Clarity {
    /// Logs in with email and password (and a TOTP code when required).
    ///
    /// Wrong email and wrong password give the same error after the same
    /// work. After `auth.backoff_after_failures` failures, an account and a
    /// client address must wait exponentially longer between attempts; at
    /// `auth.max_failed_logins_per_hour` the account is locked for the rest
    /// of the hour (S-AUTH-2).
    ///
    /// # Errors
    /// [`Error::Unauthenticated`] for bad credentials or a disabled account;
    /// [`Error::MfaRequired`] when a TOTP code is needed;
    /// [`Error::RateLimited`] while throttled.
    pub async fn login(&self, request: LoginRequest, client: Option<IpAddr>) -> Result<Tokens> {
        let index = self
            .phi
            .indexer()
            .index(IndexField::UserEmail, &request.email);
        let email = request.email.clone();
        let result = self
            .with_login_locks(&email, client, async || {
                self.try_login(request, client).await
            })
            .await;
        let context = RequestContext {
            client_address: client,
            ..RequestContext::default()
        };
        let mut ev = Ev::of("login", "auth.login", AuditAction::Execute);
        let (outcome, actor, reason) = match &result {
            Ok(tokens) => (
                AuditOutcome::Success,
                Some(tokens.user.id),
                "password".to_string(),
            ),
            Err(e) => {
                // The attempt is correlated by the email's keyed index, never the email.
                ev.query_hash = Some(format!("user_email_index:{}", hex::encode(index.0)));
                let actor = self
                    .identity
                    .find_user(&index)
                    .await
                    .ok()
                    .flatten()
                    .map(|u| u.id);
                (
                    AuditOutcome::MinorFailure,
                    actor,
                    e.kind().as_str().to_string(),
                )
            }
        };
        ev.entity = actor;
        self.record_with_context(None, actor, ev, outcome, Some(reason), context)
            .await?;
        result
    }

    /// Runs `f` holding the login locks of `client` and of the account
    /// `email` names: one attempt at a time per address and per account (in
    /// this order, always), so concurrent guesses cannot all pass the
    /// throttle first.
    pub(super) async fn with_login_locks<T>(
        &self,
        email: &str,
        client: Option<IpAddr>,
        f: impl AsyncFnOnce() -> Result<T>,
    ) -> Result<T> {
        let index = self.phi.indexer().index(IndexField::UserEmail, email);
        let _address = match client {
            Some(addr) => Some(self.address_locks.lock(addr).await),
            None => None,
        };
        let _account = self.account_locks.lock(index.0).await;
        f().await
    }

    async fn try_login(&self, request: LoginRequest, client: Option<IpAddr>) -> Result<Tokens> {
        let row = self.check_credentials(&request, client).await?;
        // After an admin's reset the password is the reset code, which only
        // sets a new password (POST /v1/auth/password-reset).
        if self.password_reset_pending(row.id).await? {
            return Err(Error::invalid(
                "a password reset is pending for this account: set a new password with the reset code (POST /v1/auth/password-reset, or reset_password in the bindings)",
            ));
        }
        let now = self.clock.now();
        let needs_mfa = row.mfa_enabled
            || (self.config.auth.require_mfa_for_admin && row.roles.contains(Role::Admin));
        let session = SessionRow {
            id: Uuid::now_v7(),
            user_id: row.id,
            created_at: now,
            last_seen_at: now,
            expires_at: now
                + chrono::Duration::seconds(secs(self.config.auth.session_absolute_secs)),
            revoked_at: None,
            mfa: needs_mfa,
        };
        let refresh = new_refresh_token()?;
        let refresh_row = RefreshRow {
            hash: hash_secret(refresh.expose()),
            session_id: session.id,
            created_at: now,
            used_at: None,
        };
        self.identity.insert_session(&session, &refresh_row).await?;
        tracing::info!(user_id = %row.id, session_id = %session.id, "login");
        self.tokens_for(&row, session.id, refresh)
    }

    /// Checks an account's email, secret (password, or a reset code) and
    /// TOTP code, with the login throttles; the account's row when they
    /// hold. Failures count against the account and the address.
    pub(super) async fn check_credentials(
        &self,
        request: &LoginRequest,
        client: Option<IpAddr>,
    ) -> Result<UserRow> {
        let now = self.clock.now();
        if let Some(wait) = client.and_then(|addr| self.addresses.wait(addr, now)) {
            return Err(Error::RateLimited {
                retry_after_secs: wait.as_secs().max(1),
            });
        }
        let index = self
            .phi
            .indexer()
            .index(IndexField::UserEmail, &request.email);
        // A service account has no password: it answers like an unknown
        // account (the same decoy work), and guesses cannot lock it out.
        let user = self
            .identity
            .find_user(&index)
            .await?
            .filter(|u| super::users::password_hash(u).is_some());
        // Throttled accounts, known or not, answer alike.
        match &user {
            Some(row) => self.check_account_throttle(row).await?,
            None => {
                if let Some(wait) = self.unknown_accounts.wait(index.0, now) {
                    return Err(Error::RateLimited {
                        retry_after_secs: wait.as_secs().max(1),
                    });
                }
            }
        }
        let hash = user.as_ref().map(|u| u.password_hash.as_str());
        let password_ok = self.hasher.verify(request.password.expose(), hash).await?;
        let row = match user {
            Some(row) if password_ok && !row.disabled => row,
            other => {
                self.login_failed(other.as_ref(), index.0, client).await?;
                return Err(Error::Unauthenticated);
            }
        };
        let needs_mfa = row.mfa_enabled
            || (self.config.auth.require_mfa_for_admin && row.roles.contains(Role::Admin));
        if needs_mfa {
            let Some(code) = request.totp.as_deref() else {
                return Err(Error::MfaRequired);
            };
            if let Err(e) = self.check_totp(&row, code).await {
                self.login_failed(Some(&row), index.0, client).await?;
                return Err(e);
            }
        }
        // The address keeps its failures: one good login must not wipe out
        // the record of guesses against other accounts.
        self.identity.clear_login_failures(row.id).await?;
        Ok(row)
    }

    /// Refuses while the account is backing off or locked (logins, and the
    /// other places a secret of the account is checked).
    pub(super) async fn check_account_throttle(&self, row: &UserRow) -> Result<()> {
        let Some(failures) = self.identity.login_failures(row.id).await? else {
            return Ok(());
        };
        let now = self.clock.now();
        let window_end = failures.window_start + chrono::Duration::hours(FAILURE_WINDOW_HOURS);
        if now >= window_end {
            return Ok(());
        }
        if failures.count >= self.config.auth.max_failed_logins_per_hour {
            let wait = (window_end - now).num_seconds().max(1);
            return Err(Error::RateLimited {
                retry_after_secs: u64::try_from(wait).unwrap_or(1),
            });
        }
        let delay = backoff_delay(failures.count, self.config.auth.backoff_after_failures);
        let ready = failures.last_at + chrono::Duration::from_std(delay).unwrap_or_default();
        if ready > now {
            let wait = (ready - now).num_seconds().max(1);
            return Err(Error::RateLimited {
                retry_after_secs: u64::try_from(wait).unwrap_or(1),
            });
        }
        Ok(())
    }

    pub(super) async fn login_failed(
        &self,
        user: Option<&UserRow>,
        unknown_key: [u8; 16],
        client: Option<IpAddr>,
    ) -> Result<()> {
        let now = self.clock.now();
        if let Some(addr) = client {
            self.addresses.failed(addr, now);
        }
        match user {
            Some(row) => self.record_account_failure(row, client).await?,
            None => self.unknown_accounts.failed(unknown_key, now),
        }
        Ok(())
    }

    /// Counts a failed check of one of the account's secrets (password,
    /// TOTP code); raises the lockout alert when it reaches the limit.
    pub(super) async fn record_account_failure(
        &self,
        row: &UserRow,
        client: Option<IpAddr>,
    ) -> Result<()> {
        let now = self.clock.now();
        {
            {
                let failures = self
                    .identity
                    .record_login_failure(
                        row.id,
                        now,
                        chrono::Duration::hours(FAILURE_WINDOW_HOURS),
                    )
                    .await?;
                if failures.count == self.config.auth.max_failed_logins_per_hour {
                    self.raise(&Alert {
                        kind: AlertKind::AccountLocked,
                        user_id: Some(row.id),
                        patient_id: None,
                    });
                    let context = RequestContext {
                        client_address: client,
                        ..RequestContext::default()
                    };
                    let ev =
                        Ev::of("security", "auth.lockout", AuditAction::Execute).entity(row.id);
                    self.record_with_context(
                        None,
                        Some(row.id),
                        ev,
                        AuditOutcome::MinorFailure,
                        Some("too_many_failures".into()),
                        context,
                    )
                    .await?;
                }
            }
        }
        Ok(())
    }

    /// Exchanges a refresh token for a new access token and a new refresh
    /// token. A refresh token works once: presenting a used one again ends
    /// its whole session (family), and raises an alert (S-AUTH-4).
    ///
    /// # Errors
    /// [`Error::Unauthenticated`] for an unknown, used, or ended-session token.
    pub async fn refresh(&self, refresh_token: &SecretString) -> Result<Tokens> {
        let token = refresh_token.expose();
        if !token.starts_with(REFRESH_PREFIX) || token.len() > 128 {
            return Err(Error::Unauthenticated);
        }
        let now = self.clock.now();
        let hash = hash_secret(token);
        let row = self
            .identity
            .get_refresh(&hash)
            .await?
            .ok_or(Error::Unauthenticated)?;
        let session = self.live_session(row.session_id).await?;
        let next = new_refresh_token()?;
        let next_row = RefreshRow {
            hash: hash_secret(next.expose()),
            session_id: session.id,
            created_at: now,
            used_at: None,
        };
        if row.used_at.is_some() || !self.identity.rotate_refresh(&hash, now, &next_row).await? {
            self.identity.revoke_session(session.id, now).await?;
            let ev =
                Ev::of("security", "auth.refresh_reuse", AuditAction::Execute).entity(session.id);
            self.record(
                None,
                Some(session.user_id),
                ev,
                AuditOutcome::SeriousFailure,
                Some("refresh_token_reuse".into()),
            )
            .await?;
            tracing::warn!(session_id = %session.id, "refresh token reused; session ended");
            self.raise(&Alert {
                kind: AlertKind::RefreshTokenReuse,
                user_id: Some(session.user_id),
                patient_id: None,
            });
            return Err(Error::Unauthenticated);
        }
        let user = self.user_row(session.user_id).await?;
        if user.disabled {
            return Err(Error::Unauthenticated);
        }
        self.identity.touch_session(session.id, now).await?;
        let ev = Ev::of("login", "auth.refresh", AuditAction::Execute).entity(session.id);
        self.record(None, Some(user.id), ev, AuditOutcome::Success, None)
            .await?;
        self.tokens_for(&user, session.id, next)
    }

    /// Ends the caller's session now: its access and refresh tokens stop working.
    ///
    /// # Errors
    /// Backend errors.
    pub async fn logout(&self, principal: &Principal) -> Result<()> {
        if let Some(identity) = principal.identity.clone() {
            return self.logout_external(principal, &identity).await;
        }
        let result = self
            .identity
            .revoke_session(principal.session_id, self.clock.now())
            .await
            .map(|()| ((), crate::access::Reason::Role));
        let ev = Ev::of("logout", "auth.logout", AuditAction::Execute).entity(principal.session_id);
        self.audited(principal, ev, result).await
    }

    /// Checks an access token and its session, and returns who is calling.
    ///
    /// The token must verify (purpose, key, issuer, audience, expiry), and
    /// its session must be live: not logged out or revoked, used within the
    /// idle limit, younger than the absolute limit (S-AC-5). An access token
    /// of a provider configured under `[[auth.oidc]]` is verified against
    /// that provider instead, and its subject found among the linked users
    /// (S-ID-1, docs/authentication.md).
    ///
    /// # Errors
    /// [`Error::Unauthenticated`] for a token that does not verify or is no
    /// longer live. For a provider's token also [`Error::NotLinked`],
    /// [`Error::IdentityRoles`], [`Error::MfaRequired`] and
    /// [`Error::Unavailable`] (its keys cannot be fetched).
    pub async fn authenticate(&self, access_token: &str) -> Result<Principal> {
        self.authenticate_with(access_token, RequestContext::default())
            .await
    }

    /// [`Clarity::authenticate`] for a request whose context (client
    /// address, purpose of use, request id) is known: the principal carries
    /// it, and a refused token is audited with it.
    ///
    /// # Errors
    /// [`Error::Unauthenticated`] for any failure.
    pub async fn authenticate_with(
        &self,
        access_token: &str,
        context: RequestContext,
    ) -> Result<Principal> {
        let result = self
            .times
            .time(Stage::Authenticate, self.check_token(access_token))
            .await;
        match result {
            Ok(mut principal) => {
                principal.context = context;
                Ok(principal)
            }
            Err(e) => {
                // Refused tokens are audited (who presented them is unknown);
                // accepted ones are covered by the operation's own event.
                let ev = Ev::of("login", "auth.token", AuditAction::Execute);
                let reason = Some(e.kind().as_str().to_string());
                self.record_with_context(
                    None,
                    None,
                    ev,
                    AuditOutcome::MinorFailure,
                    reason,
                    context,
                )
                .await?;
                Err(e)
            }
        }
    }

    async fn check_token(&self, access_token: &str) -> Result<Principal> {
        if self.is_external_token(access_token) {
            return self.check_external(access_token).await;
        }
        let now = self.clock.now();
        let verified = self.verified_claims(access_token, now)?;
        let claims = &verified.0;
        let session = self.live_session(claims.sid).await?;
        if session.user_id != claims.sub {
            return Err(Error::Unauthenticated);
        }
        let user = self.user_row(claims.sub).await.map_err(|e| match e {
            Error::NotFound { .. } => Error::Unauthenticated,
            other => other,
        })?;
        if user.disabled || user.roles != claims.roles {
            return Err(Error::Unauthenticated);
        }
        if now - session.last_seen_at >= chrono::Duration::seconds(TOUCH_EVERY_SECS) {
            self.identity.touch_session(session.id, now).await?;
        }
        Ok(Principal {
            user_id: user.id,
            session_id: session.id,
            roles: user.roles,
            patient_id: user.patient_id,
            mfa: session.mfa,
            context: Default::default(),
            identity: None,
        })
    }

    /// The claims of a verified token, from the cache when this exact token
    /// was verified before and has not expired since.
    fn verified_claims(
        &self,
        token: &str,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Result<Arc<(AccessClaims, chrono::DateTime<chrono::Utc>)>> {
        let key = hash_secret(token);
        if let Some(hit) = self.verified.get(&key) {
            if hit.1 > now {
                self.counters
                    .token_cache_hits
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                return Ok(hit);
            }
            self.verified.remove(&key);
        }
        self.counters
            .token_cache_misses
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let claims = self.tokens.verify(token, now)?;
        let expires = crate::auth::TokenKeys::expiry(&claims)?;
        let entry = Arc::new((claims, expires));
        self.verified.insert(key, Arc::clone(&entry));
        Ok(entry)
    }

    /// A session that is neither revoked, idle too long, nor too old.
    async fn live_session(&self, id: Uuid) -> Result<SessionRow> {
        let now = self.clock.now();
        let session = self
            .identity
            .get_session(id)
            .await?
            .ok_or(Error::Unauthenticated)?;
        let idle = chrono::Duration::seconds(secs(self.config.auth.session_idle_secs));
        if session.revoked_at.is_some() || now >= session.expires_at {
            return Err(Error::Unauthenticated);
        }
        if now - session.last_seen_at > idle {
            // A cached copy may predate uses seen by other instances: ask
            // the database before ending the session.
            self.caching
                .invalidator
                .forget(crate::cache::Invalidation::Session(id))
                .await;
            let fresh = self
                .identity
                .get_session(id)
                .await?
                .ok_or(Error::Unauthenticated)?;
            if fresh.revoked_at.is_some() || now - fresh.last_seen_at > idle {
                self.identity.revoke_session(id, now).await?;
                return Err(Error::Unauthenticated);
            }
            return Ok(fresh);
        }
        Ok(session)
    }

    pub(super) fn tokens_for(
        &self,
        user: &UserRow,
        session: Uuid,
        refresh: SecretString,
    ) -> Result<Tokens> {
        let access = self
            .tokens
            .issue(user.id, session, user.roles, self.clock.now())?;
        Ok(Tokens {
            access_token: SecretString::new(access),
            refresh_token: refresh,
            expires_in: self.tokens.lifetime().num_seconds(),
            user: self.user_view(user)?,
        })
    }
}

impl std::fmt::Debug for LoginRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Personal data and secrets stay out of Debug output.
        f.debug_struct("LoginRequest").finish_non_exhaustive()
    }
}
