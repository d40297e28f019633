//! Service accounts in memory: a user row and its secrets, written together.

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::MemoryStore;
use super::change::insert_user_row;
use crate::error::{Error, Result};
use crate::model::{ServiceSecretRow, UserRow};

impl MemoryStore {
    pub(super) fn insert_service(&self, user: &UserRow, secret: &ServiceSecretRow) -> Result<()> {
        self.with(|t| {
            insert_user_row(t, user)?;
            t.service_secrets.insert(secret.user_id, secret.clone());
            Ok(())
        })
    }

    pub(super) fn service_secret_row(&self, user_id: Uuid) -> Result<Option<ServiceSecretRow>> {
        self.with(|t| Ok(t.service_secrets.get(&user_id).cloned()))
    }

    pub(super) fn replace_service(
        &self,
        secret: &ServiceSecretRow,
        rotated_at: DateTime<Utc>,
    ) -> Result<()> {
        self.with(|t| match t.service_secrets.get_mut(&secret.user_id) {
            Some(stored) if stored.rotated_at == rotated_at => {
                *stored = secret.clone();
                Ok(())
            }
            Some(stored) => Err(Error::Conflict {
                what: "service account secret",
                expected: rotated_at.timestamp_micros(),
                current: stored.rotated_at.timestamp_micros(),
            }),
            None => Err(Error::NotFound {
                what: "service account",
            }),
        })
    }

    pub(super) fn delete_service(&self, user_id: Uuid) -> Result<()> {
        self.with(|t| {
            t.service_secrets.remove(&user_id);
            Ok(())
        })
    }
}
