//! Service accounts on PostgreSQL: a user row and its secrets, written together.

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::change::insert_user_row;
use super::{PostgresStore, pg_error};
use crate::error::{Error, Result};
use crate::model::{ServiceSecretRow, UserRow};

impl PostgresStore {
    pub(super) async fn insert_service(
        &self,
        user: &UserRow,
        secret: &ServiceSecretRow,
    ) -> Result<()> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(pg_error)?;
        insert_user_row(&tx, user).await?;
        tx.execute(
            "INSERT INTO service_secrets (user_id, secret_hash, previous_hash, previous_until, rotated_at) \
             VALUES ($1, $2, $3, $4, $5)",
            &[
                &secret.user_id,
                &secret.secret_hash,
                &secret.previous_hash,
                &secret.previous_until,
                &secret.rotated_at,
            ],
        )
        .await
        .map_err(pg_error)?;
        tx.commit().await.map_err(pg_error)
    }

    pub(super) async fn service_secret_row(
        &self,
        user_id: Uuid,
    ) -> Result<Option<ServiceSecretRow>> {
        let client = self.client().await?;
        let row = client
            .query_opt(
                "SELECT user_id, secret_hash, previous_hash, previous_until, rotated_at \
                 FROM service_secrets WHERE user_id = $1",
                &[&user_id],
            )
            .await
            .map_err(pg_error)?;
        Ok(row.map(|r| ServiceSecretRow {
            user_id: r.get(0),
            secret_hash: r.get(1),
            previous_hash: r.get(2),
            previous_until: r.get(3),
            rotated_at: r.get(4),
        }))
    }

    pub(super) async fn replace_service(
        &self,
        secret: &ServiceSecretRow,
        rotated_at: DateTime<Utc>,
    ) -> Result<()> {
        let client = self.client().await?;
        let changed = client
            .execute(
                "UPDATE service_secrets SET secret_hash = $1, previous_hash = $2, previous_until = $3, \
                 rotated_at = $4 WHERE user_id = $5 AND rotated_at = $6",
                &[
                    &secret.secret_hash,
                    &secret.previous_hash,
                    &secret.previous_until,
                    &secret.rotated_at,
                    &secret.user_id,
                    &rotated_at,
                ],
            )
            .await
            .map_err(pg_error)?;
        if changed == 1 {
            return Ok(());
        }
        let current = client
            .query_opt(
                "SELECT rotated_at FROM service_secrets WHERE user_id = $1",
                &[&secret.user_id],
            )
            .await
            .map_err(pg_error)?;
        Err(match current {
            Some(row) => Error::Conflict {
                what: "service account secret",
                expected: rotated_at.timestamp_micros(),
                current: row.get::<_, DateTime<Utc>>(0).timestamp_micros(),
            },
            None => Error::NotFound {
                what: "service account",
            },
        })
    }

    pub(super) async fn delete_service(&self, user_id: Uuid) -> Result<()> {
        let client = self.client().await?;
        client
            .execute(
                "DELETE FROM service_secrets WHERE user_id = $1",
                &[&user_id],
            )
            .await
            .map(|_| ())
            .map_err(pg_error)
    }
}
