//! Links to identity providers' subjects, and ended provider sessions, on PostgreSQL.

use chrono::{DateTime, Utc};
use tokio_postgres::Row;
use tokio_postgres::error::SqlState;
use uuid::Uuid;

use super::change::insert_user_row;
use super::{PostgresStore, pg_error};
use crate::error::{Error, Result};
use crate::model::{ExternalIdentityRow, UserRow};

const COLUMNS: &str = "id, issuer, subject, user_id, created_at, logged_out_at";

fn identity_row(row: &Row) -> ExternalIdentityRow {
    ExternalIdentityRow {
        id: row.get(0),
        issuer: row.get(1),
        subject: row.get(2),
        user_id: row.get(3),
        created_at: row.get(4),
        logged_out_at: row.get(5),
    }
}

fn link_error(err: tokio_postgres::Error) -> Error {
    match err.code() {
        Some(code) if *code == SqlState::FOREIGN_KEY_VIOLATION => Error::NotFound { what: "user" },
        Some(code) if *code == SqlState::UNIQUE_VIOLATION => Error::AlreadyExists {
            what: "identity link",
        },
        _ => pg_error(err),
    }
}

impl PostgresStore {
    pub(super) async fn external_identity_row(
        &self,
        id: Uuid,
    ) -> Result<Option<ExternalIdentityRow>> {
        let client = self.client().await?;
        let statement = client
            .prepare_cached(&format!(
                "SELECT {COLUMNS} FROM external_identities WHERE id = $1"
            ))
            .await
            .map_err(pg_error)?;
        let row = client
            .query_opt(&statement, &[&id])
            .await
            .map_err(pg_error)?;
        Ok(row.as_ref().map(identity_row))
    }

    pub(super) async fn link_external(
        &self,
        identity: &ExternalIdentityRow,
        new_user: Option<&UserRow>,
    ) -> Result<()> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(pg_error)?;
        if let Some(user) = new_user {
            insert_user_row(&tx, user).await?;
        }
        tx.execute(
            &format!("INSERT INTO external_identities ({COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6)"),
            &[
                &identity.id,
                &identity.issuer,
                &identity.subject,
                &identity.user_id,
                &identity.created_at,
                &identity.logged_out_at,
            ],
        )
        .await
        .map_err(link_error)?;
        tx.commit().await.map_err(pg_error)
    }

    pub(super) async fn unlink_external(&self, id: Uuid) -> Result<()> {
        let client = self.client().await?;
        let removed = client
            .execute("DELETE FROM external_identities WHERE id = $1", &[&id])
            .await
            .map_err(pg_error)?;
        if removed == 0 {
            return Err(Error::NotFound {
                what: "identity link",
            });
        }
        Ok(())
    }

    pub(super) async fn external_identities_of_user(
        &self,
        user_id: Uuid,
    ) -> Result<Vec<ExternalIdentityRow>> {
        let client = self.client().await?;
        let rows = client
            .query(
                &format!(
                    "SELECT {COLUMNS} FROM external_identities WHERE user_id = $1 ORDER BY issuer, subject"
                ),
                &[&user_id],
            )
            .await
            .map_err(pg_error)?;
        Ok(rows.iter().map(identity_row).collect())
    }

    pub(super) async fn end_external(&self, id: Uuid, at: DateTime<Utc>) -> Result<bool> {
        let client = self.client().await?;
        client
            .execute(
                "UPDATE external_identities SET logged_out_at = GREATEST(COALESCE(logged_out_at, $2), $2) \
                 WHERE id = $1",
                &[&id, &at],
            )
            .await
            .map(|n| n == 1)
            .map_err(pg_error)
    }

    pub(super) async fn end_external_session_row(&self, id: Uuid, at: DateTime<Utc>) -> Result<()> {
        let client = self.client().await?;
        client
            .execute(
                "INSERT INTO external_sessions_ended (id, ended_at) VALUES ($1, $2) \
                 ON CONFLICT (id) DO UPDATE SET ended_at = \
                 GREATEST(external_sessions_ended.ended_at, EXCLUDED.ended_at)",
                &[&id, &at],
            )
            .await
            .map(|_| ())
            .map_err(pg_error)
    }

    pub(super) async fn external_session_end(&self, id: Uuid) -> Result<Option<DateTime<Utc>>> {
        let client = self.client().await?;
        let row = client
            .query_opt(
                "SELECT ended_at FROM external_sessions_ended WHERE id = $1",
                &[&id],
            )
            .await
            .map_err(pg_error)?;
        Ok(row.map(|r| r.get(0)))
    }
}
