//! Links to identity providers' subjects, and ended provider sessions, on SQLite.

use chrono::{DateTime, Utc};
use rusqlite::{OptionalExtension, Row, TransactionBehavior, params};
use uuid::Uuid;

use super::change::insert_user_row;
use super::{SqliteStore, from_micros, micros, sqlite_error};
use crate::error::{Error, Result};
use crate::model::{ExternalIdentityRow, UserRow};

const COLUMNS: &str = "id, issuer, subject, user_id, created_at, logged_out_at";

fn identity_row(row: &Row<'_>) -> rusqlite::Result<ExternalIdentityRow> {
    Ok(ExternalIdentityRow {
        id: row.get(0)?,
        issuer: row.get(1)?,
        subject: row.get(2)?,
        user_id: row.get(3)?,
        created_at: from_micros(row.get(4)?)?,
        logged_out_at: row.get::<_, Option<i64>>(5)?.map(from_micros).transpose()?,
    })
}

fn link_error(err: rusqlite::Error) -> Error {
    match err.sqlite_error_code() {
        Some(rusqlite::ErrorCode::ConstraintViolation)
            if err.to_string().contains("FOREIGN KEY") =>
        {
            Error::NotFound { what: "user" }
        }
        Some(rusqlite::ErrorCode::ConstraintViolation) => Error::AlreadyExists {
            what: "identity link",
        },
        _ => sqlite_error(err),
    }
}

impl SqliteStore {
    pub(super) async fn external_identity_row(
        &self,
        id: Uuid,
    ) -> Result<Option<ExternalIdentityRow>> {
        self.read(move |c| {
            c.prepare_cached(&format!(
                "SELECT {COLUMNS} FROM external_identities WHERE id = ?1"
            ))?
            .query_row([id], identity_row)
            .optional()
        })
        .await
    }

    pub(super) async fn link_external(
        &self,
        identity: &ExternalIdentityRow,
        new_user: Option<&UserRow>,
    ) -> Result<()> {
        let (identity, new_user) = (identity.clone(), new_user.cloned());
        self.writer
            .run(move |conn| {
                let tx = conn
                    .transaction_with_behavior(TransactionBehavior::Immediate)
                    .map_err(sqlite_error)?;
                if let Some(user) = &new_user {
                    insert_user_row(&tx, user)?;
                }
                tx.execute(
                    &format!("INSERT INTO external_identities ({COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6)"),
                    params![
                        identity.id,
                        identity.issuer,
                        identity.subject,
                        identity.user_id,
                        micros(identity.created_at),
                        identity.logged_out_at.map(micros),
                    ],
                )
                .map_err(link_error)?;
                tx.commit().map_err(sqlite_error)
            })
            .await
    }

    pub(super) async fn unlink_external(&self, id: Uuid) -> Result<()> {
        self.writer
            .run(move |conn| {
                let removed = conn
                    .execute("DELETE FROM external_identities WHERE id = ?1", params![id])
                    .map_err(sqlite_error)?;
                if removed == 0 {
                    return Err(Error::NotFound {
                        what: "identity link",
                    });
                }
                Ok(())
            })
            .await
    }

    pub(super) async fn external_identities_of_user(
        &self,
        user_id: Uuid,
    ) -> Result<Vec<ExternalIdentityRow>> {
        self.read(move |c| {
            c.prepare_cached(&format!(
                "SELECT {COLUMNS} FROM external_identities WHERE user_id = ?1 ORDER BY issuer, subject"
            ))?
            .query_map([user_id], identity_row)?
            .collect()
        })
        .await
    }

    pub(super) async fn end_external(&self, id: Uuid, at: DateTime<Utc>) -> Result<bool> {
        self.writer
            .run(move |conn| {
                conn.execute(
                    "UPDATE external_identities SET logged_out_at = MAX(COALESCE(logged_out_at, ?2), ?2) \
                     WHERE id = ?1",
                    params![id, micros(at)],
                )
                .map(|n| n == 1)
                .map_err(sqlite_error)
            })
            .await
    }

    pub(super) async fn end_external_session_row(&self, id: Uuid, at: DateTime<Utc>) -> Result<()> {
        self.writer
            .run(move |conn| {
                conn.execute(
                    "INSERT INTO external_sessions_ended (id, ended_at) VALUES (?1, ?2) \
                     ON CONFLICT (id) DO UPDATE SET ended_at = MAX(ended_at, excluded.ended_at)",
                    params![id, micros(at)],
                )
                .map(|_| ())
                .map_err(sqlite_error)
            })
            .await
    }

    pub(super) async fn external_session_end(&self, id: Uuid) -> Result<Option<DateTime<Utc>>> {
        self.read(move |c| {
            c.prepare_cached("SELECT ended_at FROM external_sessions_ended WHERE id = ?1")?
                .query_row([id], |row| from_micros(row.get(0)?))
                .optional()
        })
        .await
    }
}
