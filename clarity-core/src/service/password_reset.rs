//! Accounts an admin can help: a password reset with a one-time code (the
//! user must set a new password with it before logging in again), and the
//! removal of a lost second factor.

use std::net::IpAddr;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::Clarity;
use super::auditing::Ev;
use super::users::{Profile, USERS, User, is_service_account};
use crate::access::{Action, Principal, Reason};
use crate::audit::{AuditAction, AuditOutcome};
use crate::auth::{check_password_policy, new_setup_code};
use crate::crypto::SecretString;
use crate::error::{Error, Result};
use crate::model::RequestContext;
use crate::model::{Change, UserRow};

/// How long a reset code can be used.
pub const PASSWORD_RESET_SECS: i64 = 24 * 60 * 60;

/// What an admin hands to the user after a reset, once.
#[derive(Debug, Clone)]
pub struct PasswordReset {
    /// The user whose password was reset.
    pub user_id: Uuid,
    /// The one-time code: the user sets a new password with it.
    pub reset_code: SecretString,
    /// When the code stops working.
    pub expires_at: DateTime<Utc>,
}

impl Serialize for PasswordReset {
    fn serialize<S: serde::Serializer>(
        &self,
        serializer: S,
    ) -> std::result::Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let mut out = serializer.serialize_struct("PasswordReset", 3)?;
        out.serialize_field("user_id", &self.user_id)?;
        out.serialize_field("reset_code", self.reset_code.expose())?;
        out.serialize_field("expires_at", &self.expires_at)?;
        out.end()
    }
}

/// `POST /v1/auth/password-reset`: a new password, set with the reset code.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PasswordResetRequest {
    /// Login email.
    pub email: String,
    /// The one-time code from the admin's reset.
    pub reset_code: SecretString,
    /// The new password (policy-checked).
    pub new_password: SecretString,
    /// Current TOTP code, when the account has a second factor.
    #[serde(default)]
    pub totp: Option<String>,
}

/// `POST /v1/me/password`: the caller's own password, changed.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PasswordChange {
    /// The current password.
    pub current_password: SecretString,
    /// The new password (policy-checked).
    pub new_password: SecretString,
}

/// A pending reset, in the store's metadata under [`pending_key`].
#[derive(Debug, Serialize, Deserialize)]
struct Pending {
    expires_at: DateTime<Utc>,
}

fn pending_key(user: Uuid) -> String {
    format!("password_reset:{user}")
}

impl Clarity {
    /// The row of user `id`, for an admin acting on another user's account.
    async fn other_users_row(&self, principal: &Principal, id: Uuid) -> Result<(Reason, UserRow)> {
        let reason = self
            .authorize(principal, &Action::ManageUsers, None)
            .await?;
        if id == principal.user_id {
            return Err(Error::PermissionDenied);
        }
        Ok((reason, self.user_row(id).await?))
    }

    /// The next version of `row`, sealed again, with every session of the
    /// user ended (they may belong to whoever knew the old credential); the
    /// change to commit and the user as it will read.
    async fn next_version_ending_sessions(&self, mut row: UserRow) -> Result<(Change, User)> {
        let expected = row.version;
        let profile: Profile = self
            .directory
            .open_sealed(USERS, row.id, expected, &row.profile)?;
        row.version = expected + 1;
        row.updated_at = self.clock.now();
        row.profile = self.directory.seal(USERS, row.id, row.version, &profile)?;
        self.identity
            .revoke_user_sessions(row.id, self.clock.now())
            .await?;
        let view = self.user_view(&row)?;
        let change = Change::UpdateUser {
            user: row,
            expected_version: expected,
        };
        Ok((change, view))
    }

    /// Resets a user's password (admin only): the old password stops working
    /// at once, every session ends, and the returned one-time code lets the
    /// user set a new password ([`Clarity::complete_password_reset`]) within
    /// [`PASSWORD_RESET_SECS`]. The code itself never logs in.
    ///
    /// # Errors
    /// [`Error::PermissionDenied`] (admins only, and not for their own
    /// account: they change it themselves); [`Error::NotFound`];
    /// [`Error::InvalidInput`] for a service account (no password).
    pub async fn reset_password(&self, principal: &Principal, id: Uuid) -> Result<PasswordReset> {
        let prepared = self.prepare_reset(principal, id).await;
        let ev = Ev::of("admin", "user.password.reset", AuditAction::Update).entity(id);
        self.audited_change(principal, ev, prepared).await
    }

    async fn prepare_reset(
        &self,
        principal: &Principal,
        id: Uuid,
    ) -> Result<(Change, PasswordReset, Reason)> {
        let (reason, mut row) = self.other_users_row(principal, id).await?;
        if is_service_account(&row) {
            return Err(Error::invalid(
                "a service account has no password: rotate its secret instead",
            ));
        }
        let code = new_setup_code()?;
        let expires_at = self.clock.now() + chrono::Duration::seconds(PASSWORD_RESET_SECS);
        let pending = serde_json::to_string(&Pending { expires_at })
            .map_err(|_| Error::internal("encoding"))?;
        // The code takes the password's place, so only its holder can set
        // the next one; the pending mark keeps it from logging in.
        row.password_hash = self.hasher.hash(code.expose()).await?;
        self.phi
            .store()
            .put_meta(&pending_key(id), &pending)
            .await?;
        let (change, _) = self.next_version_ending_sessions(row).await?;
        let reset = PasswordReset {
            user_id: id,
            reset_code: code,
            expires_at,
        };
        Ok((change, reset, reason))
    }

    /// Sets a new password with the one-time code of an admin's reset. The
    /// code is checked like a password at login (same throttling and
    /// lockout, a TOTP code too when the account has a second factor), and
    /// works once.
    ///
    /// # Errors
    /// [`Error::Unauthenticated`] for a wrong email, code or TOTP code, or
    /// an expired code (alike); [`Error::RateLimited`] while throttled;
    /// [`Error::MfaRequired`]; [`Error::InvalidInput`] when the new password
    /// breaks the policy.
    pub async fn complete_password_reset(
        &self,
        request: PasswordResetRequest,
        client: Option<IpAddr>,
    ) -> Result<()> {
        let login = super::LoginRequest {
            email: request.email.clone(),
            password: request.reset_code.clone(),
            totp: request.totp.clone(),
        };
        let result = self
            .with_login_locks(&request.email, client, async || {
                let row = self.check_credentials(&login, client).await?;
                let key = pending_key(row.id);
                let pending: Option<Pending> = match self.phi.store().get_meta(&key).await? {
                    Some(json) => serde_json::from_str(&json).ok(),
                    None => None,
                };
                match pending {
                    Some(p) if p.expires_at > self.clock.now() => {}
                    // No reset pending: the secret was the password itself.
                    None => {
                        return Err(Error::invalid(
                            "no password reset is pending for this account: change the password with the current one",
                        ));
                    }
                    Some(_) => return Err(Error::Unauthenticated),
                }
                let profile: Profile = self
                    .directory
                    .open_sealed(USERS, row.id, row.version, &row.profile)?;
                check_password_policy(request.new_password.expose(), &[&profile.email])?;
                let mut row = row;
                row.password_hash = self.hasher.hash(request.new_password.expose()).await?;
                let id = row.id;
                let (change, _) = self.next_version_ending_sessions(row).await?;
                if let Change::UpdateUser {
                    user,
                    expected_version,
                } = &change
                {
                    self.identity.update_user(user, *expected_version).await?;
                }
                // Used once: the mark goes with the code.
                self.phi.store().take_meta(&key).await?;
                Ok(id)
            })
            .await;
        let context = RequestContext {
            client_address: client,
            ..RequestContext::default()
        };
        let actor = result.as_ref().ok().copied();
        let mut ev = Ev::of(
            "security",
            "user.password.reset_complete",
            AuditAction::Update,
        );
        ev.entity = actor;
        let (outcome, reason) = match &result {
            Ok(_) => (AuditOutcome::Success, "reset_code".to_string()),
            Err(e) => (AuditOutcome::MinorFailure, e.kind().as_str().to_string()),
        };
        self.record_with_context(None, actor, ev, outcome, Some(reason), context)
            .await?;
        result.map(|_| ())
    }

    /// Whether a reset is pending for the account (its password is a reset
    /// code, which must not log in).
    pub(super) async fn password_reset_pending(&self, user: Uuid) -> Result<bool> {
        Ok(self
            .phi
            .store()
            .get_meta(&pending_key(user))
            .await?
            .is_some())
    }

    /// Removes a user's second factor (admin only), for a lost
    /// authenticator: every session ends, and the user logs in with the
    /// password alone until enrolling again (or, where admins must have
    /// one, enrols at once).
    ///
    /// # Errors
    /// [`Error::PermissionDenied`] (admins only, not their own);
    /// [`Error::NotFound`]; [`Error::InvalidInput`] when no second factor
    /// is enrolled.
    pub async fn reset_mfa(&self, principal: &Principal, id: Uuid) -> Result<User> {
        let prepared = self.prepare_mfa_reset(principal, id).await;
        let ev = Ev::of("admin", "user.mfa.reset", AuditAction::Update).entity(id);
        self.audited_change(principal, ev, prepared).await
    }

    async fn prepare_mfa_reset(
        &self,
        principal: &Principal,
        id: Uuid,
    ) -> Result<(Change, User, Reason)> {
        let (reason, mut row) = self.other_users_row(principal, id).await?;
        if row.mfa_secret.is_none() && !row.mfa_enabled {
            return Err(Error::invalid("the user has no second factor"));
        }
        row.mfa_enabled = false;
        row.mfa_secret = None;
        let (change, view) = self.next_version_ending_sessions(row).await?;
        Ok((change, view, reason))
    }
}
