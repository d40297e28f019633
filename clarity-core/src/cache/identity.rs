//! [`CachedIdentity`]: an [`IdentityStore`] whose hot reads (sessions,
//! users, care-team membership, break-glass grants) are served from the
//! cache, and whose writes invalidate what they changed.

use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::{Invalidation, Invalidator};
use crate::crypto::BlindIndex;
use crate::error::Result;
use crate::model::{
    CareTeamRow, ExternalIdentityRow, GrantRow, LoginFailures, RefreshRow, ServiceSecretRow,
    SessionRow, UserRow,
};
use crate::store::IdentityStore;

/// An [`IdentityStore`] with the reads of the authentication and access
/// path cached. Logins, refresh tokens, failures and lists always go to the
/// database.
#[derive(Debug)]
pub struct CachedIdentity {
    inner: Arc<dyn IdentityStore>,
    invalidator: Arc<Invalidator>,
}

impl CachedIdentity {
    /// Caches `inner` through `invalidator`.
    pub fn new(inner: Arc<dyn IdentityStore>, invalidator: Arc<Invalidator>) -> CachedIdentity {
        CachedIdentity { inner, invalidator }
    }
}

// A decorator forwards every method, defaulted ones included.
#[deny(clippy::missing_trait_methods)]
#[async_trait]
impl IdentityStore for CachedIdentity {
    async fn count_users(&self) -> Result<u64> {
        self.inner.count_users().await
    }

    async fn insert_user(&self, user: &UserRow) -> Result<()> {
        self.inner.insert_user(user).await
    }

    async fn insert_service_account(
        &self,
        user: &UserRow,
        secret: &ServiceSecretRow,
    ) -> Result<()> {
        self.inner.insert_service_account(user, secret).await
    }

    async fn service_secret(&self, user_id: Uuid) -> Result<Option<ServiceSecretRow>> {
        self.inner.service_secret(user_id).await
    }

    async fn replace_service_secret(
        &self,
        secret: &ServiceSecretRow,
        rotated_at: DateTime<Utc>,
    ) -> Result<()> {
        self.inner.replace_service_secret(secret, rotated_at).await
    }

    async fn delete_service_secret(&self, user_id: Uuid) -> Result<()> {
        self.inner.delete_service_secret(user_id).await
    }

    async fn external_identity(&self, id: Uuid) -> Result<Option<ExternalIdentityRow>> {
        self.invalidator
            .cached(Invalidation::ExternalIdentity(id), false, || {
                self.inner.external_identity(id)
            })
            .await
    }

    async fn link_external_identity(
        &self,
        identity: &ExternalIdentityRow,
        new_user: Option<&UserRow>,
    ) -> Result<()> {
        let result = self.inner.link_external_identity(identity, new_user).await;
        // A refused link may have raced another instance's: forget either way.
        self.invalidator
            .invalidate(Invalidation::ExternalIdentity(identity.id))
            .await;
        result
    }

    async fn unlink_external_identity(&self, id: Uuid) -> Result<()> {
        let result = self.inner.unlink_external_identity(id).await;
        self.invalidator
            .invalidate(Invalidation::ExternalIdentity(id))
            .await;
        result
    }

    async fn external_identities_of(&self, user_id: Uuid) -> Result<Vec<ExternalIdentityRow>> {
        self.inner.external_identities_of(user_id).await
    }

    async fn end_external_logins(&self, id: Uuid, at: DateTime<Utc>) -> Result<bool> {
        let result = self.inner.end_external_logins(id, at).await;
        self.invalidator
            .invalidate(Invalidation::ExternalIdentity(id))
            .await;
        result
    }

    async fn end_external_session(&self, id: Uuid, at: DateTime<Utc>) -> Result<()> {
        let result = self.inner.end_external_session(id, at).await;
        self.invalidator
            .invalidate(Invalidation::ExternalSession(id))
            .await;
        result
    }

    async fn external_session_ended(&self, id: Uuid) -> Result<Option<DateTime<Utc>>> {
        self.invalidator
            .cached(Invalidation::ExternalSession(id), false, || {
                self.inner.external_session_ended(id)
            })
            .await
    }

    async fn get_user(&self, id: Uuid) -> Result<Option<UserRow>> {
        self.invalidator
            .cached(Invalidation::User(id), false, || self.inner.get_user(id))
            .await
    }

    async fn find_user(&self, email_index: &BlindIndex) -> Result<Option<UserRow>> {
        self.inner.find_user(email_index).await
    }

    async fn list_users(&self, after: Option<Uuid>, limit: usize) -> Result<Vec<UserRow>> {
        self.inner.list_users(after, limit).await
    }

    async fn update_user(&self, user: &UserRow, expected_version: i64) -> Result<()> {
        let result = self.inner.update_user(user, expected_version).await;
        self.invalidator
            .invalidate(Invalidation::User(user.id))
            .await;
        result
    }

    async fn advance_mfa_step(&self, user_id: Uuid, step: i64) -> Result<bool> {
        self.inner.advance_mfa_step(user_id, step).await
    }

    async fn login_failures(&self, user_id: Uuid) -> Result<Option<LoginFailures>> {
        self.inner.login_failures(user_id).await
    }

    async fn record_login_failure(
        &self,
        user_id: Uuid,
        at: DateTime<Utc>,
        window: chrono::Duration,
    ) -> Result<LoginFailures> {
        self.inner.record_login_failure(user_id, at, window).await
    }

    async fn clear_login_failures(&self, user_id: Uuid) -> Result<()> {
        self.inner.clear_login_failures(user_id).await
    }

    async fn insert_session(&self, session: &SessionRow, refresh: &RefreshRow) -> Result<()> {
        self.inner.insert_session(session, refresh).await
    }

    async fn get_session(&self, id: Uuid) -> Result<Option<SessionRow>> {
        self.invalidator
            .cached(Invalidation::Session(id), false, || {
                self.inner.get_session(id)
            })
            .await
    }

    async fn touch_session(&self, id: Uuid, at: DateTime<Utc>) -> Result<()> {
        let result = self.inner.touch_session(id, at).await;
        // Only this instance's copy holds the old time; others touch their own.
        self.invalidator.forget(Invalidation::Session(id)).await;
        result
    }

    async fn revoke_session(&self, id: Uuid, at: DateTime<Utc>) -> Result<()> {
        let result = self.inner.revoke_session(id, at).await;
        self.invalidator.invalidate(Invalidation::Session(id)).await;
        result
    }

    async fn revoke_user_sessions(&self, user_id: Uuid, at: DateTime<Utc>) -> Result<u64> {
        let result = self.inner.revoke_user_sessions(user_id, at).await;
        self.invalidator
            .invalidate(Invalidation::UserSessions(user_id))
            .await;
        result
    }

    async fn get_refresh(&self, hash: &[u8; 32]) -> Result<Option<RefreshRow>> {
        self.inner.get_refresh(hash).await
    }

    async fn rotate_refresh(
        &self,
        used: &[u8; 32],
        at: DateTime<Utc>,
        next: &RefreshRow,
    ) -> Result<bool> {
        self.inner.rotate_refresh(used, at, next).await
    }

    async fn care_team_member(
        &self,
        patient_id: Uuid,
        user_id: Uuid,
    ) -> Result<Option<CareTeamRow>> {
        self.invalidator
            .cached(
                Invalidation::CareTeam {
                    patient: patient_id,
                    user: user_id,
                },
                true,
                || self.inner.care_team_member(patient_id, user_id),
            )
            .await
    }

    async fn care_team_of_user(&self, user_id: Uuid) -> Result<Vec<CareTeamRow>> {
        self.inner.care_team_of_user(user_id).await
    }

    async fn grants_of_user(&self, user_id: Uuid) -> Result<Vec<GrantRow>> {
        let grants = self
            .invalidator
            .cached(Invalidation::Grants(user_id), false, || async {
                self.inner.grants_of_user(user_id).await.map(Some)
            })
            .await?;
        Ok(grants.unwrap_or_default())
    }

    async fn list_grants(
        &self,
        unreviewed_only: bool,
        after: Option<Uuid>,
        limit: usize,
    ) -> Result<Vec<GrantRow>> {
        self.inner.list_grants(unreviewed_only, after, limit).await
    }

    async fn review_grant(&self, id: Uuid, by: Uuid, at: DateTime<Utc>) -> Result<()> {
        // A review changes no access; cached grants of the user stay valid.
        self.inner.review_grant(id, by, at).await
    }

    async fn list_patient_ids(&self, after: Option<Uuid>, limit: usize) -> Result<Vec<Uuid>> {
        self.inner.list_patient_ids(after, limit).await
    }
}
