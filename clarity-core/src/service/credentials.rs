//! The caller's own credentials: changing the password, and TOTP enrolment
//! and the check of TOTP codes (for login and break-glass too).

use serde::Serialize;

use super::Clarity;
use super::auditing::Ev;
use super::users::{Profile, USERS, User};
use crate::access::{Principal, Reason};
use crate::audit::AuditAction;
use crate::auth::{Totp, check_password_policy, new_totp_secret};
use crate::crypto::SecretString;
use crate::error::{Error, Result};
use crate::model::UserRow;

const MFA: &str = "users.mfa";

/// What a user needs to add Clarity to an authenticator app. Shown once.
#[derive(Debug, Clone)]
pub struct MfaEnrollment {
    /// The secret in base32, for manual entry.
    pub secret: SecretString,
    /// The `otpauth://` URL (usually shown as a QR code).
    pub otpauth_url: SecretString,
}

impl Serialize for MfaEnrollment {
    fn serialize<S: serde::Serializer>(
        &self,
        serializer: S,
    ) -> std::result::Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let mut out = serializer.serialize_struct("MfaEnrollment", 2)?;
        out.serialize_field("secret", self.secret.expose())?;
        out.serialize_field("otpauth_url", self.otpauth_url.expose())?;
        out.end()
    }
}

impl Clarity {
    /// Changes the caller's own password; the current one is required.
    /// Every session of the user ends, the caller's too: log in again.
    ///
    /// # Errors
    /// [`Error::Unauthenticated`] for a wrong current password;
    /// [`Error::InvalidInput`] when the new one breaks the policy.
    pub async fn change_password(
        &self,
        principal: &Principal,
        current: &SecretString,
        new: &SecretString,
    ) -> Result<()> {
        let result = self.replace_password(principal, current, new).await;
        let ev = Ev::of("security", "user.password", AuditAction::Update).entity(principal.user_id);
        self.audited(principal, ev, result).await
    }

    async fn replace_password(
        &self,
        principal: &Principal,
        current: &SecretString,
        new: &SecretString,
    ) -> Result<((), Reason)> {
        let mut row = self.user_row(principal.user_id).await?;
        // Guessing the current password here counts like failed logins.
        self.check_account_throttle(&row).await?;
        // A service account has no password to change (nor to guess).
        let hash = super::users::password_hash(&row);
        if hash.is_none() || !self.hasher.verify(current.expose(), hash).await? {
            self.record_account_failure(&row, principal.context.client_address)
                .await?;
            return Err(Error::Unauthenticated);
        }
        let profile: Profile =
            self.directory
                .open_sealed(USERS, row.id, row.version, &row.profile)?;
        check_password_policy(new.expose(), &[&profile.email])?;
        let expected = row.version;
        row.password_hash = self.hasher.hash(new.expose()).await?;
        row.version = expected + 1;
        row.updated_at = self.clock.now();
        row.profile = self.directory.seal(USERS, row.id, row.version, &profile)?;
        self.identity.update_user(&row, expected).await?;
        // Sessions may belong to whoever knew the old password.
        let now = self.clock.now();
        let sessions_to_end = self.identity.revoke_user_sessions(row.id, now).await?;
        tracing::info!(user_id = %row.id, sessions_to_end, "password changed");
        Ok(((), Reason::Role))
    }

    /// Starts TOTP enrolment for the caller: a new secret, not yet required
    /// at login until [`Clarity::mfa_confirm`] succeeds.
    ///
    /// # Errors
    /// Backend errors.
    pub async fn mfa_enroll(&self, principal: &Principal) -> Result<MfaEnrollment> {
        let result = self.start_mfa(principal).await.map(|e| (e, Reason::Role));
        let ev = Ev::of("security", "mfa.enroll", AuditAction::Update).entity(principal.user_id);
        self.audited(principal, ev, result).await
    }

    async fn start_mfa(&self, principal: &Principal) -> Result<MfaEnrollment> {
        let mut row = self.user_row(principal.user_id).await?;
        if row.mfa_enabled {
            return Err(Error::invalid("a second factor is already enrolled"));
        }
        let profile: Profile =
            self.directory
                .open_sealed(USERS, row.id, row.version, &row.profile)?;
        let secret = new_totp_secret()?;
        let totp = Totp::new(&secret, &self.config.auth.issuer, &profile.email)?;
        let expected = row.version;
        let secret_hex = zeroize::Zeroizing::new(hex::encode(&*secret));
        row.mfa_secret = Some(self.directory.seal(MFA, row.id, 0, &*secret_hex)?);
        row.version = expected + 1;
        row.updated_at = self.clock.now();
        row.profile = self.directory.seal(USERS, row.id, row.version, &profile)?;
        self.identity.update_user(&row, expected).await?;
        Ok(MfaEnrollment {
            secret: SecretString::new(totp.secret_base32().as_str()),
            otpauth_url: SecretString::new(totp.url().as_str()),
        })
    }

    /// Confirms enrolment with a current code; from then on logins need TOTP.
    ///
    /// # Errors
    /// [`Error::Unauthenticated`] for a wrong or replayed code;
    /// [`Error::InvalidInput`] when no enrolment was started.
    pub async fn mfa_confirm(&self, principal: &Principal, code: &str) -> Result<User> {
        let result = self
            .finish_mfa(principal, code)
            .await
            .map(|u| (u, Reason::Role));
        let ev = Ev::of("security", "mfa.confirm", AuditAction::Update).entity(principal.user_id);
        self.audited(principal, ev, result).await
    }

    async fn finish_mfa(&self, principal: &Principal, code: &str) -> Result<User> {
        let mut row = self.user_row(principal.user_id).await?;
        if row.mfa_secret.is_none() {
            return Err(Error::invalid("start TOTP enrolment first"));
        }
        self.check_totp(&row, code).await?;
        let expected = row.version;
        let profile: Profile = self
            .directory
            .open_sealed(USERS, row.id, expected, &row.profile)?;
        row.mfa_enabled = true;
        row.version = expected + 1;
        row.updated_at = self.clock.now();
        row.profile = self.directory.seal(USERS, row.id, row.version, &profile)?;
        self.identity.update_user(&row, expected).await?;
        self.user_view(&row)
    }

    /// Checks a TOTP code for `row`, refusing replays (S-AUTH-5).
    pub(super) async fn check_totp(&self, row: &UserRow, code: &str) -> Result<()> {
        let sealed = row.mfa_secret.as_ref().ok_or(Error::MfaRequired)?;
        let secret_hex: zeroize::Zeroizing<String> =
            zeroize::Zeroizing::new(self.directory.open_sealed(MFA, row.id, 0, sealed)?);
        let secret = zeroize::Zeroizing::new(
            hex::decode(secret_hex.as_str()).map_err(|_| Error::Integrity)?,
        );
        let totp = Totp::new(&secret, &self.config.auth.issuer, "user")?;
        let step = totp
            .matching_step(code, self.clock.now())
            .ok_or(Error::Unauthenticated)?;
        if !self.identity.advance_mfa_step(row.id, step).await? {
            tracing::warn!(user_id = %row.id, "replayed TOTP code refused");
            return Err(Error::Unauthenticated);
        }
        Ok(())
    }
}
