//! [`IdentityStore`] on SQLite.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use rusqlite::{OptionalExtension, Row, TransactionBehavior, params};
use uuid::Uuid;

use super::change::{GRANT_COLUMNS, USER_COLUMNS, insert_user_row, update_user_row};
use super::{SqliteStore, from_micros, micros, sqlite_error};
use crate::crypto::BlindIndex;
use crate::error::{Error, Result};
use crate::model::RoleSet;
use crate::model::{
    CareTeamRow, ExternalIdentityRow, GrantRow, LoginFailures, RefreshRow, ServiceSecretRow,
    SessionRow, UserRow,
};
use crate::store::identity::IdentityStore;

fn conversion(msg: &'static str) -> rusqlite::Error {
    rusqlite::Error::FromSqlConversionFailure(0, rusqlite::types::Type::Blob, msg.into())
}

fn user_row(row: &Row<'_>) -> rusqlite::Result<UserRow> {
    let index: Vec<u8> = row.get(1)?;
    let roles: String = row.get(4)?;
    Ok(UserRow {
        id: row.get(0)?,
        email_index: BlindIndex::from_slice(&index).map_err(|_| conversion("bad index"))?,
        profile: row.get(2)?,
        password_hash: row.get(3)?,
        roles: RoleSet::from_csv(&roles).map_err(|_| conversion("bad roles"))?,
        disabled: row.get(5)?,
        patient_id: row.get(6)?,
        mfa_secret: row.get(7)?,
        mfa_enabled: row.get(8)?,
        version: row.get(9)?,
        created_at: from_micros(row.get(10)?)?,
        updated_at: from_micros(row.get(11)?)?,
    })
}

const SESSION_COLUMNS: &str = "id, user_id, created_at, last_seen_at, expires_at, revoked_at, mfa";

fn session_row(row: &Row<'_>) -> rusqlite::Result<SessionRow> {
    Ok(SessionRow {
        id: row.get(0)?,
        user_id: row.get(1)?,
        created_at: from_micros(row.get(2)?)?,
        last_seen_at: from_micros(row.get(3)?)?,
        expires_at: from_micros(row.get(4)?)?,
        revoked_at: row.get::<_, Option<i64>>(5)?.map(from_micros).transpose()?,
        mfa: row.get(6)?,
    })
}

fn care_team_row(row: &Row<'_>) -> rusqlite::Result<CareTeamRow> {
    Ok(CareTeamRow {
        patient_id: row.get(0)?,
        user_id: row.get(1)?,
        relationship: row.get(2)?,
        expires_at: row.get::<_, Option<i64>>(3)?.map(from_micros).transpose()?,
        created_at: from_micros(row.get(4)?)?,
    })
}

fn grant_row(row: &Row<'_>) -> rusqlite::Result<GrantRow> {
    Ok(GrantRow {
        id: row.get(0)?,
        user_id: row.get(1)?,
        patient_id: row.get(2)?,
        reason: row.get(3)?,
        created_at: from_micros(row.get(4)?)?,
        expires_at: from_micros(row.get(5)?)?,
        reviewed_at: row.get::<_, Option<i64>>(6)?.map(from_micros).transpose()?,
        reviewed_by: row.get(7)?,
    })
}

fn failures_row(row: &Row<'_>) -> rusqlite::Result<LoginFailures> {
    Ok(LoginFailures {
        count: row.get(0)?,
        window_start: from_micros(row.get(1)?)?,
        last_at: from_micros(row.get(2)?)?,
    })
}

impl SqliteStore {
    pub(super) async fn read<T: Send + 'static>(
        &self,
        work: impl FnOnce(&rusqlite::Connection) -> rusqlite::Result<T> + Send + 'static,
    ) -> Result<T> {
        self.readers
            .run(move |conn| work(conn).map_err(sqlite_error))
            .await
    }

    /// A point read by key on the calling thread (see `Pool::run_point`).
    async fn read_point<T>(
        &self,
        work: impl FnOnce(&rusqlite::Connection) -> rusqlite::Result<T>,
    ) -> Result<T> {
        self.readers
            .run_point(move |conn| work(conn).map_err(sqlite_error))
            .await
    }
}

#[async_trait]
impl IdentityStore for SqliteStore {
    async fn count_users(&self) -> Result<u64> {
        let n: i64 = self
            .read(|c| c.query_row("SELECT count(*) FROM users", [], |r| r.get(0)))
            .await?;
        u64::try_from(n).map_err(|_| Error::internal("negative count"))
    }

    async fn insert_user(&self, user: &UserRow) -> Result<()> {
        let user = user.clone();
        self.writer
            .run(move |conn| insert_user_row(conn, &user))
            .await
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
        self.read_point(move |c| {
            c.prepare_cached(&format!("SELECT {USER_COLUMNS} FROM users WHERE id = ?1"))?
                .query_row([id], user_row)
                .optional()
        })
        .await
    }

    async fn find_user(&self, email_index: &BlindIndex) -> Result<Option<UserRow>> {
        let index = email_index.0;
        self.read(move |c| {
            c.prepare_cached(&format!(
                "SELECT {USER_COLUMNS} FROM users WHERE email_index = ?1"
            ))?
            .query_row([index.as_slice()], user_row)
            .optional()
        })
        .await
    }

    async fn list_users(&self, after: Option<Uuid>, limit: usize) -> Result<Vec<UserRow>> {
        let after = after.unwrap_or(Uuid::nil());
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.read(move |c| {
            c.prepare_cached(&format!(
                "SELECT {USER_COLUMNS} FROM users WHERE id > ?1 ORDER BY id LIMIT ?2"
            ))?
            .query_map(params![after, limit], user_row)?
            .collect()
        })
        .await
    }

    async fn update_user(&self, user: &UserRow, expected_version: i64) -> Result<()> {
        let user = user.clone();
        self.writer
            .run(move |conn| update_user_row(conn, &user, expected_version))
            .await
    }

    async fn advance_mfa_step(&self, user_id: Uuid, step: i64) -> Result<bool> {
        self.writer
            .run(move |conn| {
                conn.execute(
                    "UPDATE users SET mfa_last_step = ?1
                     WHERE id = ?2 AND (mfa_last_step IS NULL OR mfa_last_step < ?1)",
                    params![step, user_id],
                )
                .map(|n| n == 1)
                .map_err(sqlite_error)
            })
            .await
    }

    async fn login_failures(&self, user_id: Uuid) -> Result<Option<LoginFailures>> {
        self.read(move |c| {
            c.query_row(
                "SELECT count, window_start, last_at FROM login_failures WHERE user_id = ?1",
                [user_id],
                failures_row,
            )
            .optional()
        })
        .await
    }

    async fn record_login_failure(
        &self,
        user_id: Uuid,
        at: DateTime<Utc>,
        window: chrono::Duration,
    ) -> Result<LoginFailures> {
        let window_floor = micros(at - window);
        self.writer
            .run(move |conn| {
                conn.query_row(
                    "INSERT INTO login_failures (user_id, count, window_start, last_at) VALUES (?1, 1, ?2, ?2)
                     ON CONFLICT (user_id) DO UPDATE SET
                         count = CASE WHEN window_start < ?3 THEN 1 ELSE count + 1 END,
                         window_start = CASE WHEN window_start < ?3 THEN ?2 ELSE window_start END,
                         last_at = ?2
                     RETURNING count, window_start, last_at",
                    params![user_id, micros(at), window_floor],
                    failures_row,
                )
                .map_err(sqlite_error)
            })
            .await
    }

    async fn clear_login_failures(&self, user_id: Uuid) -> Result<()> {
        self.writer
            .run(move |conn| {
                conn.execute("DELETE FROM login_failures WHERE user_id = ?1", [user_id])
                    .map(|_| ())
                    .map_err(sqlite_error)
            })
            .await
    }

    async fn insert_session(&self, session: &SessionRow, refresh: &RefreshRow) -> Result<()> {
        let (s, r) = (session.clone(), refresh.clone());
        self.writer
            .run(move |conn| {
                let tx = conn
                    .transaction_with_behavior(TransactionBehavior::Immediate)
                    .map_err(sqlite_error)?;
                tx.execute(
                    &format!("INSERT INTO sessions ({SESSION_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)"),
                    params![
                        s.id,
                        s.user_id,
                        micros(s.created_at),
                        micros(s.last_seen_at),
                        micros(s.expires_at),
                        s.revoked_at.map(micros),
                        s.mfa
                    ],
                )
                .map_err(sqlite_error)?;
                tx.execute(
                    "INSERT INTO refresh_tokens (hash, session_id, created_at, used_at) VALUES (?1, ?2, ?3, ?4)",
                    params![r.hash.as_slice(), r.session_id, micros(r.created_at), r.used_at.map(micros)],
                )
                .map_err(sqlite_error)?;
                tx.commit().map_err(sqlite_error)
            })
            .await
    }

    async fn get_session(&self, id: Uuid) -> Result<Option<SessionRow>> {
        self.read_point(move |c| {
            c.prepare_cached(&format!(
                "SELECT {SESSION_COLUMNS} FROM sessions WHERE id = ?1"
            ))?
            .query_row([id], session_row)
            .optional()
        })
        .await
    }

    async fn touch_session(&self, id: Uuid, at: DateTime<Utc>) -> Result<()> {
        self.writer
            .run(move |conn| {
                conn.prepare_cached(
                    "UPDATE sessions SET last_seen_at = ?1 WHERE id = ?2 AND last_seen_at < ?1",
                )
                .and_then(|mut s| s.execute(params![micros(at), id]))
                .map(|_| ())
                .map_err(sqlite_error)
            })
            .await
    }

    async fn revoke_session(&self, id: Uuid, at: DateTime<Utc>) -> Result<()> {
        self.writer
            .run(move |conn| {
                conn.execute(
                    "UPDATE sessions SET revoked_at = ?1 WHERE id = ?2 AND revoked_at IS NULL",
                    params![micros(at), id],
                )
                .map(|_| ())
                .map_err(sqlite_error)
            })
            .await
    }

    async fn revoke_user_sessions(&self, user_id: Uuid, at: DateTime<Utc>) -> Result<u64> {
        self.writer
            .run(move |conn| {
                conn.execute(
                    "UPDATE sessions SET revoked_at = ?1 WHERE user_id = ?2 AND revoked_at IS NULL",
                    params![micros(at), user_id],
                )
                .map(|n| n as u64)
                .map_err(sqlite_error)
            })
            .await
    }

    async fn get_refresh(&self, hash: &[u8; 32]) -> Result<Option<RefreshRow>> {
        let hash = *hash;
        self.read(move |c| {
            c.query_row(
                "SELECT hash, session_id, created_at, used_at FROM refresh_tokens WHERE hash = ?1",
                [hash.as_slice()],
                |row| {
                    let stored: Vec<u8> = row.get(0)?;
                    Ok(RefreshRow {
                        hash: stored.try_into().map_err(|_| conversion("bad hash"))?,
                        session_id: row.get(1)?,
                        created_at: from_micros(row.get(2)?)?,
                        used_at: row.get::<_, Option<i64>>(3)?.map(from_micros).transpose()?,
                    })
                },
            )
            .optional()
        })
        .await
    }

    async fn rotate_refresh(
        &self,
        used: &[u8; 32],
        at: DateTime<Utc>,
        next: &RefreshRow,
    ) -> Result<bool> {
        let (used, next) = (*used, next.clone());
        self.writer
            .run(move |conn| {
                let tx = conn
                    .transaction_with_behavior(TransactionBehavior::Immediate)
                    .map_err(sqlite_error)?;
                let marked = tx
                    .execute(
                        "UPDATE refresh_tokens SET used_at = ?1 WHERE hash = ?2 AND used_at IS NULL",
                        params![micros(at), used.as_slice()],
                    )
                    .map_err(sqlite_error)?;
                if marked != 1 {
                    return Ok(false);
                }
                tx.execute(
                    "INSERT INTO refresh_tokens (hash, session_id, created_at, used_at) VALUES (?1, ?2, ?3, NULL)",
                    params![next.hash.as_slice(), next.session_id, micros(next.created_at)],
                )
                .map_err(sqlite_error)?;
                tx.commit().map_err(sqlite_error)?;
                Ok(true)
            })
            .await
    }

    async fn care_team_member(
        &self,
        patient_id: Uuid,
        user_id: Uuid,
    ) -> Result<Option<CareTeamRow>> {
        self.read_point(move |c| {
            c.prepare_cached(
                "SELECT patient_id, user_id, relationship, expires_at, created_at
                 FROM care_team WHERE patient_id = ?1 AND user_id = ?2",
            )?
            .query_row(params![patient_id, user_id], care_team_row)
            .optional()
        })
        .await
    }

    async fn care_team_of_user(&self, user_id: Uuid) -> Result<Vec<CareTeamRow>> {
        self.read(move |c| {
            c.prepare_cached(
                "SELECT patient_id, user_id, relationship, expires_at, created_at
                 FROM care_team WHERE user_id = ?1 ORDER BY patient_id",
            )?
            .query_map([user_id], care_team_row)?
            .collect()
        })
        .await
    }

    async fn grants_of_user(&self, user_id: Uuid) -> Result<Vec<GrantRow>> {
        self.read(move |c| {
            c.prepare_cached(&format!(
                "SELECT {GRANT_COLUMNS} FROM access_grants WHERE user_id = ?1 ORDER BY id DESC LIMIT 1000"
            ))?
            .query_map([user_id], grant_row)?
            .collect()
        })
        .await
    }

    async fn list_grants(
        &self,
        unreviewed_only: bool,
        after: Option<Uuid>,
        limit: usize,
    ) -> Result<Vec<GrantRow>> {
        let after = after.unwrap_or(Uuid::nil());
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.read(move |c| {
            c.prepare_cached(&format!(
                "SELECT {GRANT_COLUMNS} FROM access_grants
                 WHERE id > ?1 AND (?2 = 0 OR reviewed_at IS NULL) ORDER BY id LIMIT ?3"
            ))?
            .query_map(params![after, unreviewed_only, limit], grant_row)?
            .collect()
        })
        .await
    }

    async fn review_grant(&self, id: Uuid, by: Uuid, at: DateTime<Utc>) -> Result<()> {
        self.writer
            .run(move |conn| {
                let n = conn
                    .execute(
                        "UPDATE access_grants SET reviewed_at = ?1, reviewed_by = ?2 WHERE id = ?3",
                        params![micros(at), by, id],
                    )
                    .map_err(sqlite_error)?;
                if n == 0 {
                    return Err(Error::NotFound { what: "grant" });
                }
                Ok(())
            })
            .await
    }

    async fn list_patient_ids(&self, after: Option<Uuid>, limit: usize) -> Result<Vec<Uuid>> {
        let after = after.unwrap_or(Uuid::nil());
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.read(move |c| {
            c.prepare_cached(
                "SELECT id FROM patients WHERE id > ?1 AND erased_at IS NULL ORDER BY id LIMIT ?2",
            )?
            .query_map(params![after, limit], |r| r.get(0))?
            .collect()
        })
        .await
    }
}
