//! Service accounts on SQLite: a user row and its secrets, written together.

use chrono::{DateTime, Utc};
use rusqlite::{OptionalExtension, TransactionBehavior, params};
use uuid::Uuid;

use super::change::insert_user_row;
use super::{SqliteStore, from_micros, micros, sqlite_error};
use crate::error::{Error, Result};
use crate::model::{ServiceSecretRow, UserRow};

impl SqliteStore {
    pub(super) async fn insert_service(
        &self,
        user: &UserRow,
        secret: &ServiceSecretRow,
    ) -> Result<()> {
        let (user, secret) = (user.clone(), secret.clone());
        self.writer
            .run(move |conn| {
                let tx = conn
                    .transaction_with_behavior(TransactionBehavior::Immediate)
                    .map_err(sqlite_error)?;
                insert_user_row(&tx, &user)?;
                tx.execute(
                    "INSERT INTO service_secrets (user_id, secret_hash, previous_hash, previous_until, rotated_at) \
                     VALUES (?1, ?2, ?3, ?4, ?5)",
                    params![
                        secret.user_id,
                        secret.secret_hash,
                        secret.previous_hash,
                        secret.previous_until.map(micros),
                        micros(secret.rotated_at),
                    ],
                )
                .map_err(sqlite_error)?;
                tx.commit().map_err(sqlite_error)
            })
            .await
    }

    pub(super) async fn service_secret_row(
        &self,
        user_id: Uuid,
    ) -> Result<Option<ServiceSecretRow>> {
        self.read(move |c| {
            c.query_row(
                "SELECT user_id, secret_hash, previous_hash, previous_until, rotated_at \
                 FROM service_secrets WHERE user_id = ?1",
                params![user_id],
                |row| {
                    Ok(ServiceSecretRow {
                        user_id: row.get(0)?,
                        secret_hash: row.get(1)?,
                        previous_hash: row.get(2)?,
                        previous_until: row
                            .get::<_, Option<i64>>(3)?
                            .map(from_micros)
                            .transpose()?,
                        rotated_at: from_micros(row.get(4)?)?,
                    })
                },
            )
            .optional()
        })
        .await
    }

    pub(super) async fn replace_service(
        &self,
        secret: &ServiceSecretRow,
        rotated_at: DateTime<Utc>,
    ) -> Result<()> {
        let secret = secret.clone();
        self.writer
            .run(move |conn| {
                let changed = conn
                    .execute(
                        "UPDATE service_secrets SET secret_hash = ?1, previous_hash = ?2, previous_until = ?3, \
                         rotated_at = ?4 WHERE user_id = ?5 AND rotated_at = ?6",
                        params![
                            secret.secret_hash,
                            secret.previous_hash,
                            secret.previous_until.map(micros),
                            micros(secret.rotated_at),
                            secret.user_id,
                            micros(rotated_at),
                        ],
                    )
                    .map_err(sqlite_error)?;
                if changed == 1 {
                    return Ok(());
                }
                let current = conn
                    .query_row(
                        "SELECT rotated_at FROM service_secrets WHERE user_id = ?1",
                        params![secret.user_id],
                        |row| row.get::<_, i64>(0),
                    )
                    .optional()
                    .map_err(sqlite_error)?;
                Err(match current {
                    Some(current) => Error::Conflict {
                        what: "service account secret",
                        expected: micros(rotated_at),
                        current,
                    },
                    None => Error::NotFound {
                        what: "service account",
                    },
                })
            })
            .await
    }

    pub(super) async fn delete_service(&self, user_id: Uuid) -> Result<()> {
        self.writer
            .run(move |conn| {
                conn.execute(
                    "DELETE FROM service_secrets WHERE user_id = ?1",
                    params![user_id],
                )
                .map(|_| ())
                .map_err(sqlite_error)
            })
            .await
    }
}
