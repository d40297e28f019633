//! [`IdentityStore`] on the in-memory tables: users, sessions, refresh
//! tokens, care teams and grants.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::{MemoryStore, after_id, change};
use crate::crypto::BlindIndex;
use crate::error::{Error, Result};
use crate::model::{
    CareTeamRow, ExternalIdentityRow, GrantRow, LoginFailures, RefreshRow, ServiceSecretRow,
    SessionRow, UserRow,
};
use crate::store::identity::IdentityStore;

#[async_trait]
impl IdentityStore for MemoryStore {
    async fn count_users(&self) -> Result<u64> {
        self.with(|t| Ok(t.users.len() as u64))
    }

    async fn insert_user(&self, user: &UserRow) -> Result<()> {
        self.with(|t| change::insert_user_row(t, user))
    }

    async fn insert_service_account(
        &self,
        user: &UserRow,
        secret: &ServiceSecretRow,
    ) -> Result<()> {
        self.insert_service(user, secret)
    }

    async fn service_secret(&self, user_id: Uuid) -> Result<Option<ServiceSecretRow>> {
        self.service_secret_row(user_id)
    }

    async fn replace_service_secret(
        &self,
        secret: &ServiceSecretRow,
        rotated_at: DateTime<Utc>,
    ) -> Result<()> {
        self.replace_service(secret, rotated_at)
    }

    async fn external_identity(&self, id: Uuid) -> Result<Option<ExternalIdentityRow>> {
        self.external_identity_row(id)
    }

    async fn link_external_identity(
        &self,
        identity: &ExternalIdentityRow,
        new_user: Option<&UserRow>,
    ) -> Result<()> {
        self.link_external(identity, new_user)
    }

    async fn unlink_external_identity(&self, id: Uuid) -> Result<()> {
        self.unlink_external(id)
    }

    async fn external_identities_of(&self, user_id: Uuid) -> Result<Vec<ExternalIdentityRow>> {
        self.external_identities_of_user(user_id)
    }

    async fn end_external_logins(&self, id: Uuid, at: DateTime<Utc>) -> Result<bool> {
        self.end_external(id, at)
    }

    async fn end_external_session(&self, id: Uuid, at: DateTime<Utc>) -> Result<()> {
        self.end_external_session_row(id, at)
    }

    async fn external_session_ended(&self, id: Uuid) -> Result<Option<DateTime<Utc>>> {
        self.external_session_end(id)
    }

    async fn delete_service_secret(&self, user_id: Uuid) -> Result<()> {
        self.delete_service(user_id)
    }

    async fn get_user(&self, id: Uuid) -> Result<Option<UserRow>> {
        self.with(|t| Ok(t.users.get(&id).cloned()))
    }

    async fn find_user(&self, email_index: &BlindIndex) -> Result<Option<UserRow>> {
        self.with(|t| {
            Ok(t.users
                .values()
                .find(|u| u.email_index == *email_index)
                .cloned())
        })
    }

    async fn list_users(&self, after: Option<Uuid>, limit: usize) -> Result<Vec<UserRow>> {
        self.with(|t| Ok(after_id(&t.users, after).take(limit).cloned().collect()))
    }

    async fn update_user(&self, user: &UserRow, expected_version: i64) -> Result<()> {
        self.with(|t| change::update_user_row(t, user, expected_version))
    }

    async fn advance_mfa_step(&self, user_id: Uuid, step: i64) -> Result<bool> {
        self.with(|t| {
            let last = t.mfa_steps.entry(user_id).or_insert(i64::MIN);
            if step > *last {
                *last = step;
                Ok(true)
            } else {
                Ok(false)
            }
        })
    }

    async fn login_failures(&self, user_id: Uuid) -> Result<Option<LoginFailures>> {
        self.with(|t| Ok(t.login_failures.get(&user_id).copied()))
    }

    async fn record_login_failure(
        &self,
        user_id: Uuid,
        at: DateTime<Utc>,
        window: chrono::Duration,
    ) -> Result<LoginFailures> {
        self.with(|t| {
            let entry = t.login_failures.entry(user_id).or_insert(LoginFailures {
                count: 0,
                window_start: at,
                last_at: at,
            });
            if at - entry.window_start > window {
                entry.count = 0;
                entry.window_start = at;
            }
            entry.count = entry.count.saturating_add(1);
            entry.last_at = at;
            Ok(*entry)
        })
    }

    async fn clear_login_failures(&self, user_id: Uuid) -> Result<()> {
        self.with(|t| {
            t.login_failures.remove(&user_id);
            Ok(())
        })
    }

    async fn insert_session(&self, session: &SessionRow, refresh: &RefreshRow) -> Result<()> {
        self.with(|t| {
            t.sessions.insert(session.id, session.clone());
            t.refresh.insert(refresh.hash, refresh.clone());
            Ok(())
        })
    }

    async fn get_session(&self, id: Uuid) -> Result<Option<SessionRow>> {
        self.with(|t| Ok(t.sessions.get(&id).cloned()))
    }

    async fn touch_session(&self, id: Uuid, at: DateTime<Utc>) -> Result<()> {
        self.with(|t| {
            if let Some(s) = t.sessions.get_mut(&id) {
                s.last_seen_at = s.last_seen_at.max(at);
            }
            Ok(())
        })
    }

    async fn revoke_session(&self, id: Uuid, at: DateTime<Utc>) -> Result<()> {
        self.with(|t| {
            if let Some(s) = t.sessions.get_mut(&id) {
                s.revoked_at.get_or_insert(at);
            }
            Ok(())
        })
    }

    async fn revoke_user_sessions(&self, user_id: Uuid, at: DateTime<Utc>) -> Result<u64> {
        self.with(|t| {
            let mut count = 0;
            for s in t.sessions.values_mut() {
                if s.user_id == user_id && s.revoked_at.is_none() {
                    s.revoked_at = Some(at);
                    count += 1;
                }
            }
            Ok(count)
        })
    }

    async fn get_refresh(&self, hash: &[u8; 32]) -> Result<Option<RefreshRow>> {
        self.with(|t| Ok(t.refresh.get(hash).cloned()))
    }

    async fn rotate_refresh(
        &self,
        used: &[u8; 32],
        at: DateTime<Utc>,
        next: &RefreshRow,
    ) -> Result<bool> {
        self.with(|t| {
            match t.refresh.get_mut(used) {
                Some(row) if row.used_at.is_none() => row.used_at = Some(at),
                _ => return Ok(false),
            }
            t.refresh.insert(next.hash, next.clone());
            Ok(true)
        })
    }

    async fn care_team_member(
        &self,
        patient_id: Uuid,
        user_id: Uuid,
    ) -> Result<Option<CareTeamRow>> {
        self.with(|t| Ok(t.care_team.get(&(patient_id, user_id)).cloned()))
    }

    async fn care_team_of_user(&self, user_id: Uuid) -> Result<Vec<CareTeamRow>> {
        self.with(|t| {
            Ok(t.care_team
                .values()
                .filter(|m| m.user_id == user_id)
                .cloned()
                .collect())
        })
    }

    async fn grants_of_user(&self, user_id: Uuid) -> Result<Vec<GrantRow>> {
        self.with(|t| {
            Ok(t.grants
                .values()
                .rev()
                .filter(|g| g.user_id == user_id)
                .cloned()
                .collect())
        })
    }

    async fn list_grants(
        &self,
        unreviewed_only: bool,
        after: Option<Uuid>,
        limit: usize,
    ) -> Result<Vec<GrantRow>> {
        self.with(|t| {
            Ok(after_id(&t.grants, after)
                .filter(|g| !unreviewed_only || g.reviewed_at.is_none())
                .take(limit)
                .cloned()
                .collect())
        })
    }

    async fn review_grant(&self, id: Uuid, by: Uuid, at: DateTime<Utc>) -> Result<()> {
        self.with(|t| {
            let grant = t
                .grants
                .get_mut(&id)
                .ok_or(Error::NotFound { what: "grant" })?;
            grant.reviewed_at = Some(at);
            grant.reviewed_by = Some(by);
            Ok(())
        })
    }

    async fn list_patient_ids(&self, after: Option<Uuid>, limit: usize) -> Result<Vec<Uuid>> {
        self.with(|t| {
            Ok(after_id(&t.patients, after)
                .take(limit)
                .map(|p| p.id)
                .collect())
        })
    }
}
