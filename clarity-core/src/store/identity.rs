//! [`IdentityStore`]: users, sessions, refresh tokens, care teams and
//! break-glass grants, as stored. Like [`super::Store`] it sees only sealed
//! blobs for personal data (emails, names, TOTP secrets, grant reasons).

use std::fmt;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::crypto::BlindIndex;
use crate::error::Result;
use crate::model::{
    CareTeamRow, ExternalIdentityRow, GrantRow, LoginFailures, RefreshRow, ServiceSecretRow,
    SessionRow, UserRow,
};

/// Persistence of identities and relationships.
#[async_trait]
pub trait IdentityStore: Send + Sync + fmt::Debug {
    /// Number of users (zero means a fresh installation).
    async fn count_users(&self) -> Result<u64>;
    /// Inserts a user. [`crate::error::Error::AlreadyExists`] when the email is taken.
    async fn insert_user(&self, user: &UserRow) -> Result<()>;
    /// Reads a user.
    async fn get_user(&self, id: Uuid) -> Result<Option<UserRow>>;
    /// Finds a user by email index.
    async fn find_user(&self, email_index: &BlindIndex) -> Result<Option<UserRow>>;
    /// Users with ids after `after`, in id order.
    async fn list_users(&self, after: Option<Uuid>, limit: usize) -> Result<Vec<UserRow>>;
    /// Replaces a user row if its version is `expected_version` (`user.version`
    /// is the new one). [`crate::error::Error::Conflict`], [`crate::error::Error::NotFound`].
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
    /// Inserts a service account, its user row and its secrets, in one
    /// transaction. [`crate::error::Error::AlreadyExists`] for a taken name.
    async fn insert_service_account(&self, user: &UserRow, secret: &ServiceSecretRow)
    -> Result<()>;
    /// A service account's secrets; `None` when it has none (not a service
    /// account, or deleted).
    async fn service_secret(&self, user_id: Uuid) -> Result<Option<ServiceSecretRow>>;
    /// Replaces a service account's secrets if they are still those made at
    /// `rotated_at`. [`crate::error::Error::Conflict`] when another rotation
    /// came first; [`crate::error::Error::NotFound`] when there are none.
    async fn replace_service_secret(
        &self,
        secret: &ServiceSecretRow,
        rotated_at: DateTime<Utc>,
    ) -> Result<()>;
    /// Removes a service account's secrets; it can obtain no token after.
    /// Idempotent.
    async fn delete_service_secret(&self, user_id: Uuid) -> Result<()>;
    /// The link of an identity provider's subject, by
    /// [`ExternalIdentityRow::id_for`].
    async fn external_identity(&self, id: Uuid) -> Result<Option<ExternalIdentityRow>>;
    /// Stores a link, and with it `new_user` (provisioning), together.
    /// Fails with [`crate::error::Error::AlreadyExists`] when the subject is
    /// linked already (or the new user's email is taken), and
    /// [`crate::error::Error::NotFound`] for an unknown user.
    async fn link_external_identity(
        &self,
        identity: &ExternalIdentityRow,
        new_user: Option<&UserRow>,
    ) -> Result<()>;
    /// Removes a link. Fails with [`crate::error::Error::NotFound`] when absent.
    async fn unlink_external_identity(&self, id: Uuid) -> Result<()>;
    /// The links of a user.
    async fn external_identities_of(&self, user_id: Uuid) -> Result<Vec<ExternalIdentityRow>>;
    /// Ends the tokens of a linked subject issued at or before `at` (the
    /// later of this and an earlier end counts). Returns whether the
    /// subject is linked.
    async fn end_external_logins(&self, id: Uuid, at: DateTime<Utc>) -> Result<bool>;
    /// Records that a provider session (by
    /// [`ExternalIdentityRow::session_id_for`]) or a subject's logins (by
    /// [`ExternalIdentityRow::id_for`]) ended at `at`; the later of this and
    /// an earlier end is kept.
    async fn end_external_session(&self, id: Uuid, at: DateTime<Utc>) -> Result<()>;
    /// When a provider session ended, if it did.
    async fn external_session_ended(&self, id: Uuid) -> Result<Option<DateTime<Utc>>>;
    /// The assignment of `user_id` to `patient_id`, expired or not.
    async fn care_team_member(
        &self,
        patient_id: Uuid,
        user_id: Uuid,
    ) -> Result<Option<CareTeamRow>>;
    /// Every assignment of a user, expired or not, in patient id order.
    async fn care_team_of_user(&self, user_id: Uuid) -> Result<Vec<CareTeamRow>>;
    /// Grants of a user, newest first.
    async fn grants_of_user(&self, user_id: Uuid) -> Result<Vec<GrantRow>>;
    /// Grants with ids after `after`, in id order; only unreviewed ones when asked.
    async fn list_grants(
        &self,
        unreviewed_only: bool,
        after: Option<Uuid>,
        limit: usize,
    ) -> Result<Vec<GrantRow>>;
    /// Marks a grant reviewed. [`crate::error::Error::NotFound`] when absent.
    async fn review_grant(&self, id: Uuid, by: Uuid, at: DateTime<Utc>) -> Result<()>;
    /// Ids of live patients after `after`, in id order.
    async fn list_patient_ids(&self, after: Option<Uuid>, limit: usize) -> Result<Vec<Uuid>>;
}
