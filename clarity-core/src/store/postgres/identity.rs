//! [`IdentityStore`] on PostgreSQL.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use deadpool_postgres::GenericClient;
use tokio_postgres::Row;
use uuid::Uuid;

use super::change::{GRANT_COLUMNS, USER_COLUMNS, insert_user_row, update_user_row};
use super::{PostgresStore, pg_error};
use crate::crypto::BlindIndex;
use crate::error::{Error, Result};
use crate::model::RoleSet;
use crate::model::{
    CareTeamRow, ExternalIdentityRow, GrantRow, LoginFailures, RefreshRow, ServiceSecretRow,
    SessionRow, UserRow,
};
use crate::store::identity::IdentityStore;

fn user_row(row: &Row) -> Result<UserRow> {
    Ok(UserRow {
        id: row.get(0),
        email_index: BlindIndex::from_slice(row.get::<_, &[u8]>(1))?,
        profile: row.get(2),
        password_hash: row.get(3),
        roles: RoleSet::from_csv(row.get(4)).map_err(|_| Error::Integrity)?,
        disabled: row.get(5),
        patient_id: row.get(6),
        mfa_secret: row.get(7),
        mfa_enabled: row.get(8),
        version: row.get(9),
        created_at: row.get(10),
        updated_at: row.get(11),
    })
}

const SESSION_COLUMNS: &str = "id, user_id, created_at, last_seen_at, expires_at, revoked_at, mfa";

fn session_row(row: &Row) -> SessionRow {
    SessionRow {
        id: row.get(0),
        user_id: row.get(1),
        created_at: row.get(2),
        last_seen_at: row.get(3),
        expires_at: row.get(4),
        revoked_at: row.get(5),
        mfa: row.get(6),
    }
}

const CARE_TEAM_COLUMNS: &str = "patient_id, user_id, relationship, expires_at, created_at";

fn care_team_row(row: &Row) -> CareTeamRow {
    CareTeamRow {
        patient_id: row.get(0),
        user_id: row.get(1),
        relationship: row.get(2),
        expires_at: row.get(3),
        created_at: row.get(4),
    }
}

fn grant_row(row: &Row) -> GrantRow {
    GrantRow {
        id: row.get(0),
        user_id: row.get(1),
        patient_id: row.get(2),
        reason: row.get(3),
        created_at: row.get(4),
        expires_at: row.get(5),
        reviewed_at: row.get(6),
        reviewed_by: row.get(7),
    }
}

fn failures_row(row: &Row) -> Result<LoginFailures> {
    Ok(LoginFailures {
        count: u32::try_from(row.get::<_, i32>(0)).map_err(|_| Error::Integrity)?,
        window_start: row.get(1),
        last_at: row.get(2),
    })
}

fn limit(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

#[async_trait]
impl IdentityStore for PostgresStore {
    async fn count_users(&self) -> Result<u64> {
        let client = self.client().await?;
        let row = client
            .query_one("SELECT count(*) FROM users", &[])
            .await
            .map_err(pg_error)?;
        u64::try_from(row.get::<_, i64>(0)).map_err(|_| Error::internal("negative count"))
    }

    async fn insert_user(&self, user: &UserRow) -> Result<()> {
        insert_user_row(&self.client().await?, user).await
    }

    async fn insert_service_account(
        &self,
        user: &UserRow,
        secret: &ServiceSecretRow,
    ) -> Result<()> {
        self.insert_service(user, secret).await
    }

    async fn service_secret(&self, user_id: Uuid) -> Result<Option<ServiceSecretRow>> {
        self.service_secret_row(user_id).await
    }

    async fn replace_service_secret(
        &self,
        secret: &ServiceSecretRow,
        rotated_at: DateTime<Utc>,
    ) -> Result<()> {
        self.replace_service(secret, rotated_at).await
    }

    async fn external_identity(&self, id: Uuid) -> Result<Option<ExternalIdentityRow>> {
        self.external_identity_row(id).await
    }

    async fn link_external_identity(
        &self,
        identity: &ExternalIdentityRow,
        new_user: Option<&UserRow>,
    ) -> Result<()> {
        self.link_external(identity, new_user).await
    }

    async fn unlink_external_identity(&self, id: Uuid) -> Result<()> {
        self.unlink_external(id).await
    }

    async fn external_identities_of(&self, user_id: Uuid) -> Result<Vec<ExternalIdentityRow>> {
        self.external_identities_of_user(user_id).await
    }

    async fn end_external_logins(&self, id: Uuid, at: DateTime<Utc>) -> Result<bool> {
        self.end_external(id, at).await
    }

    async fn end_external_session(&self, id: Uuid, at: DateTime<Utc>) -> Result<()> {
        self.end_external_session_row(id, at).await
    }

    async fn external_session_ended(&self, id: Uuid) -> Result<Option<DateTime<Utc>>> {
        self.external_session_end(id).await
    }

    async fn delete_service_secret(&self, user_id: Uuid) -> Result<()> {
        self.delete_service(user_id).await
    }

    async fn get_user(&self, id: Uuid) -> Result<Option<UserRow>> {
        let client = self.client().await?;
        let stmt = client
            .prepare_cached(&format!("SELECT {USER_COLUMNS} FROM users WHERE id = $1"))
            .await
            .map_err(pg_error)?;
        let row = client.query_opt(&stmt, &[&id]).await.map_err(pg_error)?;
        row.as_ref().map(user_row).transpose()
    }

    async fn find_user(&self, email_index: &BlindIndex) -> Result<Option<UserRow>> {
        let client = self.client().await?;
        let row = client
            .query_opt(
                &format!("SELECT {USER_COLUMNS} FROM users WHERE email_index = $1"),
                &[&email_index.0.as_slice()],
            )
            .await
            .map_err(pg_error)?;
        row.as_ref().map(user_row).transpose()
    }

    async fn list_users(&self, after: Option<Uuid>, n: usize) -> Result<Vec<UserRow>> {
        let client = self.client().await?;
        let rows = client
            .query(
                &format!("SELECT {USER_COLUMNS} FROM users WHERE id > $1 ORDER BY id LIMIT $2"),
                &[&after.unwrap_or(Uuid::nil()), &limit(n)],
            )
            .await
            .map_err(pg_error)?;
        rows.iter().map(user_row).collect()
    }

    async fn update_user(&self, user: &UserRow, expected_version: i64) -> Result<()> {
        update_user_row(&self.client().await?, user, expected_version).await
    }

    async fn advance_mfa_step(&self, user_id: Uuid, step: i64) -> Result<bool> {
        let client = self.client().await?;
        let n = client
            .execute(
                "UPDATE users SET mfa_last_step = $1
                 WHERE id = $2 AND (mfa_last_step IS NULL OR mfa_last_step < $1)",
                &[&step, &user_id],
            )
            .await
            .map_err(pg_error)?;
        Ok(n == 1)
    }

    async fn login_failures(&self, user_id: Uuid) -> Result<Option<LoginFailures>> {
        let client = self.client().await?;
        let row = client
            .query_opt(
                "SELECT count, window_start, last_at FROM login_failures WHERE user_id = $1",
                &[&user_id],
            )
            .await
            .map_err(pg_error)?;
        row.as_ref().map(failures_row).transpose()
    }

    async fn record_login_failure(
        &self,
        user_id: Uuid,
        at: DateTime<Utc>,
        window: chrono::Duration,
    ) -> Result<LoginFailures> {
        let client = self.client().await?;
        let floor = at - window;
        let row = client
            .query_one(
                "INSERT INTO login_failures (user_id, count, window_start, last_at) VALUES ($1, 1, $2, $2)
                 ON CONFLICT (user_id) DO UPDATE SET
                     count = CASE WHEN login_failures.window_start < $3 THEN 1 ELSE login_failures.count + 1 END,
                     window_start = CASE WHEN login_failures.window_start < $3 THEN $2 ELSE login_failures.window_start END,
                     last_at = $2
                 RETURNING count, window_start, last_at",
                &[&user_id, &at, &floor],
            )
            .await
            .map_err(pg_error)?;
        failures_row(&row)
    }

    async fn clear_login_failures(&self, user_id: Uuid) -> Result<()> {
        let client = self.client().await?;
        client
            .execute("DELETE FROM login_failures WHERE user_id = $1", &[&user_id])
            .await
            .map(|_| ())
            .map_err(pg_error)
    }

    async fn insert_session(&self, s: &SessionRow, r: &RefreshRow) -> Result<()> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(pg_error)?;
        tx.execute(
            &format!(
                "INSERT INTO sessions ({SESSION_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7)"
            ),
            &[
                &s.id,
                &s.user_id,
                &s.created_at,
                &s.last_seen_at,
                &s.expires_at,
                &s.revoked_at,
                &s.mfa,
            ],
        )
        .await
        .map_err(pg_error)?;
        tx.execute(
            "INSERT INTO refresh_tokens (hash, session_id, created_at, used_at) VALUES ($1, $2, $3, $4)",
            &[&r.hash.as_slice(), &r.session_id, &r.created_at, &r.used_at],
        )
        .await
        .map_err(pg_error)?;
        tx.commit().await.map_err(pg_error)
    }

    async fn get_session(&self, id: Uuid) -> Result<Option<SessionRow>> {
        let client = self.client().await?;
        let stmt = client
            .prepare_cached(&format!(
                "SELECT {SESSION_COLUMNS} FROM sessions WHERE id = $1"
            ))
            .await
            .map_err(pg_error)?;
        let row = client.query_opt(&stmt, &[&id]).await.map_err(pg_error)?;
        Ok(row.as_ref().map(session_row))
    }

    async fn touch_session(&self, id: Uuid, at: DateTime<Utc>) -> Result<()> {
        let client = self.client().await?;
        let stmt = client
            .prepare_cached(
                "UPDATE sessions SET last_seen_at = $1 WHERE id = $2 AND last_seen_at < $1",
            )
            .await
            .map_err(pg_error)?;
        client
            .execute(&stmt, &[&at, &id])
            .await
            .map(|_| ())
            .map_err(pg_error)
    }

    async fn revoke_session(&self, id: Uuid, at: DateTime<Utc>) -> Result<()> {
        let client = self.client().await?;
        client
            .execute(
                "UPDATE sessions SET revoked_at = $1 WHERE id = $2 AND revoked_at IS NULL",
                &[&at, &id],
            )
            .await
            .map(|_| ())
            .map_err(pg_error)
    }

    async fn revoke_user_sessions(&self, user_id: Uuid, at: DateTime<Utc>) -> Result<u64> {
        let client = self.client().await?;
        client
            .execute(
                "UPDATE sessions SET revoked_at = $1 WHERE user_id = $2 AND revoked_at IS NULL",
                &[&at, &user_id],
            )
            .await
            .map_err(pg_error)
    }

    async fn get_refresh(&self, hash: &[u8; 32]) -> Result<Option<RefreshRow>> {
        let client = self.client().await?;
        let row = client
            .query_opt(
                "SELECT hash, session_id, created_at, used_at FROM refresh_tokens WHERE hash = $1",
                &[&hash.as_slice()],
            )
            .await
            .map_err(pg_error)?;
        row.map(|row| {
            Ok(RefreshRow {
                hash: row
                    .get::<_, &[u8]>(0)
                    .try_into()
                    .map_err(|_| Error::Integrity)?,
                session_id: row.get(1),
                created_at: row.get(2),
                used_at: row.get(3),
            })
        })
        .transpose()
    }

    async fn rotate_refresh(
        &self,
        used: &[u8; 32],
        at: DateTime<Utc>,
        next: &RefreshRow,
    ) -> Result<bool> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(pg_error)?;
        let marked = tx
            .execute(
                "UPDATE refresh_tokens SET used_at = $1 WHERE hash = $2 AND used_at IS NULL",
                &[&at, &used.as_slice()],
            )
            .await
            .map_err(pg_error)?;
        if marked != 1 {
            return Ok(false);
        }
        tx.execute(
            "INSERT INTO refresh_tokens (hash, session_id, created_at, used_at) VALUES ($1, $2, $3, NULL)",
            &[&next.hash.as_slice(), &next.session_id, &next.created_at],
        )
        .await
        .map_err(pg_error)?;
        tx.commit().await.map_err(pg_error)?;
        Ok(true)
    }

    async fn care_team_member(
        &self,
        patient_id: Uuid,
        user_id: Uuid,
    ) -> Result<Option<CareTeamRow>> {
        let client = self.client().await?;
        let stmt = client
            .prepare_cached(&format!(
                "SELECT {CARE_TEAM_COLUMNS} FROM care_team WHERE patient_id = $1 AND user_id = $2"
            ))
            .await
            .map_err(pg_error)?;
        let row = client
            .query_opt(&stmt, &[&patient_id, &user_id])
            .await
            .map_err(pg_error)?;
        Ok(row.as_ref().map(care_team_row))
    }

    async fn care_team_of_user(&self, user_id: Uuid) -> Result<Vec<CareTeamRow>> {
        let client = self.client().await?;
        let rows = client
            .query(
                &format!(
                    "SELECT {CARE_TEAM_COLUMNS} FROM care_team WHERE user_id = $1 ORDER BY patient_id"
                ),
                &[&user_id],
            )
            .await
            .map_err(pg_error)?;
        Ok(rows.iter().map(care_team_row).collect())
    }

    async fn grants_of_user(&self, user_id: Uuid) -> Result<Vec<GrantRow>> {
        let client = self.client().await?;
        let rows = client
            .query(
                &format!(
                    "SELECT {GRANT_COLUMNS} FROM access_grants WHERE user_id = $1 ORDER BY id DESC LIMIT 1000"
                ),
                &[&user_id],
            )
            .await
            .map_err(pg_error)?;
        Ok(rows.iter().map(grant_row).collect())
    }

    async fn list_grants(
        &self,
        unreviewed_only: bool,
        after: Option<Uuid>,
        n: usize,
    ) -> Result<Vec<GrantRow>> {
        let client = self.client().await?;
        let rows = client
            .query(
                &format!(
                    "SELECT {GRANT_COLUMNS} FROM access_grants
                     WHERE id > $1 AND (NOT $2 OR reviewed_at IS NULL) ORDER BY id LIMIT $3"
                ),
                &[&after.unwrap_or(Uuid::nil()), &unreviewed_only, &limit(n)],
            )
            .await
            .map_err(pg_error)?;
        Ok(rows.iter().map(grant_row).collect())
    }

    async fn review_grant(&self, id: Uuid, by: Uuid, at: DateTime<Utc>) -> Result<()> {
        let client = self.client().await?;
        let n = client
            .execute(
                "UPDATE access_grants SET reviewed_at = $1, reviewed_by = $2 WHERE id = $3",
                &[&at, &by, &id],
            )
            .await
            .map_err(pg_error)?;
        if n == 0 {
            return Err(Error::NotFound { what: "grant" });
        }
        Ok(())
    }

    async fn list_patient_ids(&self, after: Option<Uuid>, n: usize) -> Result<Vec<Uuid>> {
        let client = self.client().await?;
        let rows = client
            .query(
                "SELECT id FROM patients WHERE id > $1 AND erased_at IS NULL ORDER BY id LIMIT $2",
                &[&after.unwrap_or(Uuid::nil()), &limit(n)],
            )
            .await
            .map_err(pg_error)?;
        Ok(rows.iter().map(|r| r.get(0)).collect())
    }
}
