//! Users: first-admin setup, and administration (create, read, list,
//! update); the lookups of user rows the other operations share.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;
use zeroize::Zeroize;

use super::Clarity;
use super::auditing::Ev;
use crate::access::{Action, Principal, Reason};
use crate::audit::{AuditAction, AuditOutcome};
use crate::auth::{check_password_policy, hash_secret, new_setup_code, secrets_equal};
use crate::crypto::schedule::meta;
use crate::crypto::{IndexField, SecretString};
use crate::error::{Error, Result};
use crate::model::Change;
use crate::model::{Page, PageRequest, UserRow};
use crate::model::{Role, RoleSet};

pub(super) const USERS: &str = "users";
/// The password hash of a service account: not a PHC string, so no password
/// ever matches it.
pub(super) const NO_PASSWORD: &str = "!service-account";

/// Whether `row` is a service account.
pub(super) fn is_service_account(row: &UserRow) -> bool {
    row.password_hash == NO_PASSWORD
}

/// The password hash of a user provisioned by an identity provider: not a
/// PHC string, so no password ever matches it.
pub(super) const NO_PASSWORD_EXTERNAL: &str = "!identity-provider";

/// `row`'s password hash; `None` for a service account or a user
/// provisioned by an identity provider, who have none.
pub(super) fn password_hash(row: &UserRow) -> Option<&str> {
    (!row.password_hash.starts_with('!')).then_some(row.password_hash.as_str())
}

/// A user as returned by the API.
#[derive(Clone, PartialEq, Eq, Serialize)]
pub struct User {
    /// User id.
    pub id: Uuid,
    /// Login email.
    pub email: String,
    /// Roles.
    pub roles: RoleSet,
    /// Display name.
    pub display_name: Option<String>,
    /// Disabled users cannot log in.
    pub disabled: bool,
    /// Whether TOTP is required at login.
    pub mfa_enabled: bool,
    /// For `patient` users: their patient record.
    pub patient_id: Option<Uuid>,
    /// Current version (for updates).
    pub version: i64,
    /// Creation time.
    pub created_at: DateTime<Utc>,
    /// A service account (a machine that obtains tokens with its client
    /// secret), not a person who logs in with a password.
    pub service_account: bool,
}

/// A new user (`POST /v1/users`).
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewUser {
    /// Login email.
    pub email: String,
    /// Initial password (policy-checked).
    pub password: SecretString,
    /// Roles (names).
    pub roles: RoleSet,
    /// Display name.
    #[serde(default)]
    pub display_name: Option<String>,
    /// For `patient` users: their patient record.
    #[serde(default)]
    pub patient_id: Option<Uuid>,
}

/// A change to a user (`PATCH /v1/users/{id}`); absent fields stay.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserUpdate {
    /// New roles; ends the user's sessions.
    #[serde(default)]
    pub roles: Option<RoleSet>,
    /// Disable (ends the user's sessions) or enable.
    #[serde(default)]
    pub disabled: Option<bool>,
    /// New display name.
    #[serde(default)]
    pub display_name: Option<String>,
    /// New patient link.
    #[serde(default)]
    pub patient_id: Option<Uuid>,
}

/// The first admin, with the one-time setup code (`POST /v1/setup`).
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SetupRequest {
    /// The code printed at first start.
    pub setup_code: SecretString,
    /// The admin's email.
    pub email: String,
    /// The admin's password.
    pub password: SecretString,
}

/// The sealed part of a user row.
#[derive(Serialize, Deserialize, Zeroize)]
pub(super) struct Profile {
    pub(super) email: String,
    pub(super) display_name: Option<String>,
}

#[derive(Serialize, Deserialize)]
struct SetupCode {
    hash: String,
    expires_at: DateTime<Utc>,
}

fn check_email(email: &str) -> Result<()> {
    let (local, domain) = email
        .split_once('@')
        .ok_or_else(|| Error::invalid("email must be an email address"))?;
    if local.is_empty()
        || domain.is_empty()
        || domain.contains('@')
        || email.len() > 254
        || email.chars().any(|c| c.is_whitespace() || c.is_control())
    {
        return Err(Error::invalid("email must be an email address"));
    }
    Ok(())
}

pub(super) fn check_display_name(name: &Option<String>) -> Result<()> {
    let bad = |n: &String| {
        n.trim().is_empty() || n.chars().count() > 200 || n.chars().any(char::is_control)
    };
    if name.as_ref().is_some_and(bad) {
        return Err(Error::invalid(
            "display_name must be 1-200 characters without control characters",
        ));
    }
    Ok(())
}

impl Clarity {
    /// On a store with no users, makes a new one-time setup code (valid for
    /// `auth.setup_code_secs`) and returns it for printing once; `None` when
    /// users exist. Each call replaces the previous code.
    ///
    /// # Errors
    /// Backend errors.
    pub async fn issue_setup_code(&self) -> Result<Option<SecretString>> {
        if self.identity.count_users().await? > 0 {
            return Ok(None);
        }
        let code = new_setup_code()?;
        let stored = SetupCode {
            hash: hex::encode(hash_secret(code.expose())),
            expires_at: self.clock.now()
                + chrono::Duration::seconds(secs(self.config.auth.setup_code_secs)),
        };
        let json = serde_json::to_string(&stored).map_err(|_| Error::internal("encoding"))?;
        self.phi.store().put_meta(meta::SETUP_CODE, &json).await?;
        Ok(Some(code))
    }

    /// Creates the first admin with the one-time setup code. The code works
    /// once, and only while no user exists.
    ///
    /// # Errors
    /// [`Error::Unauthenticated`] for a wrong, expired or used code;
    /// [`Error::InvalidInput`] for a bad email or password.
    pub async fn setup(&self, request: SetupRequest) -> Result<User> {
        check_email(&request.email)?;
        check_password_policy(request.password.expose(), &[&request.email])?;
        let Some(json) = self.phi.store().take_meta(meta::SETUP_CODE).await? else {
            return Err(Error::Unauthenticated);
        };
        let stored: SetupCode = serde_json::from_str(&json).map_err(|_| Error::Integrity)?;
        let presented = hex::encode(hash_secret(request.setup_code.expose()));
        let valid = secrets_equal(presented.as_bytes(), stored.hash.as_bytes())
            && self.clock.now() < stored.expires_at;
        if !valid || self.identity.count_users().await? > 0 {
            if self.clock.now() < stored.expires_at && self.identity.count_users().await? == 0 {
                // A wrong guess must not burn the code for its owner.
                self.phi.store().put_meta(meta::SETUP_CODE, &json).await?;
            }
            return Err(Error::Unauthenticated);
        }
        let user = NewUser {
            email: request.email,
            password: request.password,
            roles: RoleSet::from_roles([Role::Admin]),
            display_name: None,
            patient_id: None,
        };
        let (row, created) = self.prepare_user(user).await?;
        self.identity.insert_user(&row).await?;
        let ev = Ev::of("admin", "user.setup", AuditAction::Create).entity(created.id);
        self.record(
            None,
            Some(created.id),
            ev,
            AuditOutcome::Success,
            Some("setup_code".into()),
        )
        .await?;
        Ok(created)
    }

    /// Creates a user as the local operator (the `clarity user create`
    /// command, and embedders bootstrapping their first accounts): the same
    /// checks and audit event as [`Clarity::create_user`], under the
    /// operator's principal ([`Clarity::operator`]).
    ///
    /// # Errors
    /// As [`Clarity::create_user`].
    pub async fn create_user_as_operator(&self, user: NewUser) -> Result<User> {
        let operator = self.operator().await?;
        self.create_user(&operator, user).await
    }

    /// Creates a user (admin only).
    ///
    /// # Errors
    /// [`Error::PermissionDenied`]; [`Error::InvalidInput`] (email, password
    /// policy, empty roles); [`Error::AlreadyExists`] for a taken email.
    pub async fn create_user(&self, principal: &Principal, user: NewUser) -> Result<User> {
        let prepared = async {
            let reason = self
                .authorize(principal, &Action::ManageUsers, None)
                .await?;
            let (row, view) = self.prepare_user(user).await?;
            Ok((Change::InsertUser(row), view, reason))
        }
        .await;
        let mut ev = Ev::of("admin", "user.create", AuditAction::Create);
        ev.entity = prepared.as_ref().ok().map(|(_, u, _)| u.id);
        // The account and its event commit together (S-AUD-2).
        self.audited_change(principal, ev, prepared).await
    }

    /// A checked, sealed user row for `user`, and what the caller sees of it.
    async fn prepare_user(&self, user: NewUser) -> Result<(UserRow, User)> {
        check_email(&user.email)?;
        check_display_name(&user.display_name)?;
        user.roles.check_assignable()?;
        if user.patient_id.is_some() && !user.roles.contains(Role::Patient) {
            return Err(Error::invalid(
                "patient_id is only for users with the patient role",
            ));
        }
        check_password_policy(user.password.expose(), &[&user.email])?;
        let password_hash = self.hasher.hash(user.password.expose()).await?;
        let id = Uuid::now_v7();
        let now = self.clock.now();
        let profile = Profile {
            email: user.email.trim().to_string(),
            display_name: user.display_name,
        };
        let row = UserRow {
            id,
            email_index: self
                .phi
                .indexer()
                .index(IndexField::UserEmail, &profile.email),
            profile: self.directory.seal(USERS, id, 1, &profile)?,
            password_hash,
            roles: user.roles,
            disabled: false,
            patient_id: user.patient_id,
            mfa_secret: None,
            mfa_enabled: false,
            version: 1,
            created_at: now,
            updated_at: now,
        };
        let view = self.user_view(&row)?;
        Ok((row, view))
    }

    /// Reads a user: admins read anyone, others only themselves.
    ///
    /// # Errors
    /// [`Error::NotFound`] (also for another user when not an admin).
    pub async fn get_user(&self, principal: &Principal, id: Uuid) -> Result<User> {
        let result = self.read_user(principal, id).await;
        let ev = Ev::of("admin", "user.read", AuditAction::Read).entity(id);
        self.audited(principal, ev, result).await
    }

    async fn read_user(&self, principal: &Principal, id: Uuid) -> Result<(User, Reason)> {
        if id != principal.user_id
            && self
                .authorize(principal, &Action::ManageUsers, None)
                .await
                .is_err()
        {
            return Err(Error::NotFound { what: "user" });
        }
        let row = self.user_row(id).await?;
        Ok((self.user_view(&row)?, Reason::Role))
    }

    /// Lists users (admin only), in creation order.
    ///
    /// # Errors
    /// [`Error::PermissionDenied`]; [`Error::InvalidInput`] for a bad page.
    pub async fn list_users(
        &self,
        principal: &Principal,
        page: &PageRequest,
    ) -> Result<Page<User>> {
        let result = self.users_page(principal, page).await;
        let ev = Ev::of("admin", "user.list", AuditAction::Read);
        self.audited(principal, ev, result).await
    }

    async fn users_page(
        &self,
        principal: &Principal,
        page: &PageRequest,
    ) -> Result<(Page<User>, Reason)> {
        let reason = self
            .authorize(principal, &Action::ManageUsers, None)
            .await?;
        let limit = page.limit()?;
        let mut rows = self.identity.list_users(page.after()?, limit + 1).await?;
        let more = rows.len() > limit;
        rows.truncate(limit);
        let items = rows
            .iter()
            .map(|r| self.user_view(r))
            .collect::<Result<Vec<_>>>()?;
        let next_cursor = more
            .then(|| items.last().map(|u| u.id.to_string()))
            .flatten();
        Ok((Page { items, next_cursor }, reason))
    }

    /// Changes a user (admin only). Changing roles or disabling ends every
    /// session of the user at once (S-AC-5).
    ///
    /// # Errors
    /// [`Error::PermissionDenied`]; [`Error::NotFound`]; [`Error::InvalidInput`];
    /// [`Error::Conflict`] when the user changed concurrently.
    pub async fn update_user(
        &self,
        principal: &Principal,
        id: Uuid,
        update: UserUpdate,
    ) -> Result<User> {
        // A change of roles is an event of its own kind, so the audit trail
        // can be searched for every role change (S-AC-8).
        let subtype = if update.roles.is_some() {
            "user.roles"
        } else {
            "user.update"
        };
        let prepared = self.change_user(principal, id, update).await;
        let ev = Ev::of("admin", subtype, AuditAction::Update).entity(id);
        // The change and its event commit together: no role change without
        // its event (S-AC-8, S-AUD-2).
        self.audited_change(principal, ev, prepared).await
    }

    async fn change_user(
        &self,
        principal: &Principal,
        id: Uuid,
        update: UserUpdate,
    ) -> Result<(Change, User, Reason)> {
        let reason = self
            .authorize(principal, &Action::ManageUsers, None)
            .await?;
        check_display_name(&update.display_name)?;
        let mut row = self.user_row(id).await?;
        let expected = row.version;
        let revoke = update.roles.is_some_and(|r| r != row.roles) || update.disabled == Some(true);
        if let Some(roles) = update.roles {
            // S-AC-8: nobody changes their own roles (an admin adding
            // clinician to itself would read PHI), and no account holds
            // admin together with a role that reads PHI.
            if id == principal.user_id {
                return Err(Error::PermissionDenied);
            }
            roles.check_assignable()?;
            if is_service_account(&row) && roles.contains(Role::Patient) {
                return Err(Error::invalid(
                    "roles: a service account cannot hold the patient role",
                ));
            }
            row.roles = roles;
        }
        if let Some(disabled) = update.disabled {
            // A deleted service account (no secrets left) stays disabled.
            if !disabled
                && is_service_account(&row)
                && self.identity.service_secret(id).await?.is_none()
            {
                return Err(Error::invalid(
                    "disabled: a deleted service account cannot be enabled again",
                ));
            }
            row.disabled = disabled;
        }
        if let Some(patient) = update.patient_id {
            row.patient_id = Some(patient);
        }
        if row.patient_id.is_some() && !row.roles.contains(Role::Patient) {
            return Err(Error::invalid(
                "patient_id is only for users with the patient role",
            ));
        }
        let mut profile: Profile = self
            .directory
            .open_sealed(USERS, id, expected, &row.profile)?;
        if update.display_name.is_some() {
            profile.display_name = update.display_name;
        }
        row.version = expected + 1;
        row.updated_at = self.clock.now();
        row.profile = self.directory.seal(USERS, id, row.version, &profile)?;
        // Sessions end before the change is visible, so no request runs with
        // the old roles after this returns.
        if revoke {
            self.identity
                .revoke_user_sessions(id, self.clock.now())
                .await?;
        }
        let view = self.user_view(&row)?;
        let change = Change::UpdateUser {
            user: row,
            expected_version: expected,
        };
        Ok((change, view, reason))
    }

    pub(super) async fn user_row(&self, id: Uuid) -> Result<UserRow> {
        self.identity
            .get_user(id)
            .await?
            .ok_or(Error::NotFound { what: "user" })
    }

    pub(super) fn user_view(&self, row: &UserRow) -> Result<User> {
        let profile: Profile =
            self.directory
                .open_sealed(USERS, row.id, row.version, &row.profile)?;
        Ok(User {
            id: row.id,
            email: profile.email.clone(),
            roles: row.roles,
            display_name: profile.display_name.clone(),
            disabled: row.disabled,
            mfa_enabled: row.mfa_enabled,
            patient_id: row.patient_id,
            version: row.version,
            created_at: row.created_at,
            service_account: is_service_account(row),
        })
    }
}

/// Seconds as a chrono duration (configuration is validated to fit).
pub(super) fn secs(seconds: u64) -> i64 {
    i64::try_from(seconds).unwrap_or(i64::MAX / 1000)
}

impl std::fmt::Debug for NewUser {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Personal data and secrets stay out of Debug output.
        f.debug_struct("NewUser")
            .field("roles", &self.roles)
            .field("patient_id", &self.patient_id)
            .finish_non_exhaustive()
    }
}

impl std::fmt::Debug for SetupRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Personal data and secrets stay out of Debug output.
        f.debug_struct("SetupRequest").finish_non_exhaustive()
    }
}

impl std::fmt::Debug for User {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Personal data and secrets stay out of Debug output.
        f.debug_struct("User")
            .field("id", &self.id)
            .field("roles", &self.roles)
            .field("disabled", &self.disabled)
            .field("mfa_enabled", &self.mfa_enabled)
            .finish_non_exhaustive()
    }
}
