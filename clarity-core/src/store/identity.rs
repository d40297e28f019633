//! [`IdentityStore`]: users, sessions, refresh tokens, care teams and
//! break-glass grants, as stored. Like [`super::Store`] it sees only sealed
//! blobs for personal data (emails, names, TOTP secrets, grant reasons).

use std::fmt;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::access::RoleSet;
use crate::crypto::BlindIndex;
use crate::error::Result;

/// A user row. `profile` is the sealed `{email, display_name}` document.
#[derive(Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct UserRow {
    /// User id (UUIDv7), never reused.
    pub id: Uuid,
    /// Blind index of the login email (unique).
    pub email_index: BlindIndex,
    /// Sealed profile.
    #[serde(with = "serde_bytes")]
    pub profile: Vec<u8>,
    /// argon2id PHC string.
    pub password_hash: String,
    /// Roles.
    pub roles: RoleSet,
    /// A disabled user cannot log in and has no sessions.
    pub disabled: bool,
    /// For a `patient` user: the patient record that is theirs.
    pub patient_id: Option<Uuid>,
    /// Sealed TOTP secret, once enrolment started.
    #[serde(with = "serde_bytes")]
    pub mfa_secret: Option<Vec<u8>>,
    /// Whether TOTP is confirmed and required at login.
    pub mfa_enabled: bool,
    /// Version for optimistic concurrency.
    pub version: i64,
    /// Creation time.
    pub created_at: DateTime<Utc>,
    /// Last change.
    pub updated_at: DateTime<Utc>,
}

/// A login session. Access tokens name it; it decides whether they still count.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SessionRow {
    /// Session id.
    pub id: Uuid,
    /// Its user.
    pub user_id: Uuid,
    /// Login time.
    pub created_at: DateTime<Utc>,
    /// Last use (idle timeout counts from here).
    pub last_seen_at: DateTime<Utc>,
    /// Absolute end.
    pub expires_at: DateTime<Utc>,
    /// When it was ended (logout, revocation, refresh reuse).
    pub revoked_at: Option<DateTime<Utc>>,
    /// Whether a second factor was presented at login.
    pub mfa: bool,
}

/// A refresh token, stored as its SHA-256. All of a session's refresh tokens
/// form one family: reuse of a used one ends the session.
#[derive(Clone, PartialEq, Eq)]
pub struct RefreshRow {
    /// SHA-256 of the token.
    pub hash: [u8; 32],
    /// The session (family) it belongs to.
    pub session_id: Uuid,
    /// Issue time.
    pub created_at: DateTime<Utc>,
    /// When it was exchanged; a used token presented again is reuse.
    pub used_at: Option<DateTime<Utc>>,
}

impl fmt::Debug for RefreshRow {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RefreshRow")
            .field("session_id", &self.session_id)
            .field("used_at", &self.used_at)
            .finish_non_exhaustive()
    }
}

/// A care-team assignment.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct CareTeamRow {
    /// The patient.
    pub patient_id: Uuid,
    /// The team member.
    pub user_id: Uuid,
    /// e.g. `attending`, `primary-nurse`.
    pub relationship: String,
    /// When the assignment ends by itself.
    pub expires_at: Option<DateTime<Utc>>,
    /// When it was made.
    pub created_at: DateTime<Utc>,
}

/// A break-glass grant.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct GrantRow {
    /// Grant id.
    pub id: Uuid,
    /// Who asked.
    pub user_id: Uuid,
    /// For which patient.
    pub patient_id: Uuid,
    /// The sealed reason.
    #[serde(with = "serde_bytes")]
    pub reason: Vec<u8>,
    /// When.
    pub created_at: DateTime<Utc>,
    /// When it ends by itself.
    pub expires_at: DateTime<Utc>,
    /// When an admin reviewed it.
    pub reviewed_at: Option<DateTime<Utc>>,
    /// Which admin.
    pub reviewed_by: Option<Uuid>,
}

/// Failed logins of an account in the current window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LoginFailures {
    /// Failures since `window_start`.
    pub count: u32,
    /// Start of the counting window.
    pub window_start: DateTime<Utc>,
    /// The last failure.
    pub last_at: DateTime<Utc>,
}

/// Persistence of identities and relationships.
#[async_trait]
pub trait IdentityStore: Send + Sync + fmt::Debug {
    /// Number of users (zero means a fresh installation).
    async fn count_users(&self) -> Result<u64>;
    /// Inserts a user. [`crate::Error::AlreadyExists`] when the email is taken.
    async fn insert_user(&self, user: &UserRow) -> Result<()>;
    /// Reads a user.
    async fn get_user(&self, id: Uuid) -> Result<Option<UserRow>>;
    /// Finds a user by email index.
    async fn find_user(&self, email_index: &BlindIndex) -> Result<Option<UserRow>>;
    /// Users with ids after `after`, in id order.
    async fn list_users(&self, after: Option<Uuid>, limit: usize) -> Result<Vec<UserRow>>;
    /// Replaces a user row if its version is `expected_version` (`user.version`
    /// is the new one). [`crate::Error::Conflict`], [`crate::Error::NotFound`].
    async fn update_user(&self, user: &UserRow, expected_version: i64) -> Result<()>;
    /// Records `step` as the last TOTP step used, if it is later than the
    /// recorded one; `false` means replay.
    async fn advance_mfa_step(&self, user_id: Uuid, step: i64) -> Result<bool>;
    /// The account's failed logins, if any are recorded.
    async fn login_failures(&self, user_id: Uuid) -> Result<Option<LoginFailures>>;
    /// Counts one failure at `at`, starting a new window when the current one
    /// is older than `window`; returns the new state.
    async fn record_login_failure(
        &self,
        user_id: Uuid,
        at: DateTime<Utc>,
        window: chrono::Duration,
    ) -> Result<LoginFailures>;
    /// Forgets the account's failures (after a successful login).
    async fn clear_login_failures(&self, user_id: Uuid) -> Result<()>;
    /// Inserts a session with its first refresh token.
    async fn insert_session(&self, session: &SessionRow, refresh: &RefreshRow) -> Result<()>;
    /// Reads a session.
    async fn get_session(&self, id: Uuid) -> Result<Option<SessionRow>>;
    /// Records use of a session.
    async fn touch_session(&self, id: Uuid, at: DateTime<Utc>) -> Result<()>;
    /// Ends a session (idempotent).
    async fn revoke_session(&self, id: Uuid, at: DateTime<Utc>) -> Result<()>;
    /// Ends every live session of a user; returns how many.
    async fn revoke_user_sessions(&self, user_id: Uuid, at: DateTime<Utc>) -> Result<u64>;
    /// Reads a refresh token by hash.
    async fn get_refresh(&self, hash: &[u8; 32]) -> Result<Option<RefreshRow>>;
    /// Marks `used` as used at `at` and inserts `next`, atomically, only if
    /// `used` was unused; `false` when it was already used (reuse).
    async fn rotate_refresh(
        &self,
        used: &[u8; 32],
        at: DateTime<Utc>,
        next: &RefreshRow,
    ) -> Result<bool>;
    /// Adds or replaces a care-team assignment. [`crate::Error::NotFound`]
    /// when the patient or user does not exist.
    async fn upsert_care_team(&self, member: &CareTeamRow) -> Result<()>;
    /// Removes an assignment. [`crate::Error::NotFound`] when there is none.
    async fn remove_care_team(&self, patient_id: Uuid, user_id: Uuid) -> Result<()>;
    /// The assignment of `user_id` to `patient_id`, expired or not.
    async fn care_team_member(
        &self,
        patient_id: Uuid,
        user_id: Uuid,
    ) -> Result<Option<CareTeamRow>>;
    /// Every assignment of a user, expired or not, in patient id order.
    async fn care_team_of_user(&self, user_id: Uuid) -> Result<Vec<CareTeamRow>>;
    /// Inserts a break-glass grant.
    async fn insert_grant(&self, grant: &GrantRow) -> Result<()>;
    /// Grants of a user, newest first.
    async fn grants_of_user(&self, user_id: Uuid) -> Result<Vec<GrantRow>>;
    /// Grants with ids after `after`, in id order; only unreviewed ones when asked.
    async fn list_grants(
        &self,
        unreviewed_only: bool,
        after: Option<Uuid>,
        limit: usize,
    ) -> Result<Vec<GrantRow>>;
    /// Marks a grant reviewed. [`crate::Error::NotFound`] when absent.
    async fn review_grant(&self, id: Uuid, by: Uuid, at: DateTime<Utc>) -> Result<()>;
    /// Ids of live patients after `after`, in id order.
    async fn list_patient_ids(&self, after: Option<Uuid>, limit: usize) -> Result<Vec<Uuid>>;
}

impl std::fmt::Debug for UserRow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Personal data and secrets stay out of Debug output.
        f.debug_struct("UserRow")
            .field("id", &self.id)
            .field("roles", &self.roles)
            .field("disabled", &self.disabled)
            .field("patient_id", &self.patient_id)
            .field("mfa_enabled", &self.mfa_enabled)
            .field("version", &self.version)
            .finish_non_exhaustive()
    }
}
