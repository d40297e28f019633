//! Links to identity providers' subjects, and ended provider sessions, in memory.

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::MemoryStore;
use super::change::insert_user_row;
use crate::error::{Error, Result};
use crate::model::{ExternalIdentityRow, UserRow};

impl MemoryStore {
    pub(super) fn external_identity_row(&self, id: Uuid) -> Result<Option<ExternalIdentityRow>> {
        self.with(|t| Ok(t.external_identities.get(&id).cloned()))
    }

    pub(super) fn link_external(
        &self,
        identity: &ExternalIdentityRow,
        new_user: Option<&UserRow>,
    ) -> Result<()> {
        self.with(|t| {
            if t.external_identities.contains_key(&identity.id) {
                return Err(Error::AlreadyExists {
                    what: "identity link",
                });
            }
            if let Some(user) = new_user {
                insert_user_row(t, user)?;
            } else if !t.users.contains_key(&identity.user_id) {
                return Err(Error::NotFound { what: "user" });
            }
            t.external_identities.insert(identity.id, identity.clone());
            Ok(())
        })
    }

    pub(super) fn unlink_external(&self, id: Uuid) -> Result<()> {
        self.with(|t| {
            t.external_identities
                .remove(&id)
                .map(|_| ())
                .ok_or(Error::NotFound {
                    what: "identity link",
                })
        })
    }

    pub(super) fn external_identities_of_user(
        &self,
        user_id: Uuid,
    ) -> Result<Vec<ExternalIdentityRow>> {
        self.with(|t| {
            let mut rows: Vec<_> = t
                .external_identities
                .values()
                .filter(|r| r.user_id == user_id)
                .cloned()
                .collect();
            rows.sort_by(|a, b| (&a.issuer, &a.subject).cmp(&(&b.issuer, &b.subject)));
            Ok(rows)
        })
    }

    pub(super) fn end_external(&self, id: Uuid, at: DateTime<Utc>) -> Result<bool> {
        self.with(|t| {
            Ok(match t.external_identities.get_mut(&id) {
                Some(row) => {
                    row.logged_out_at = Some(row.logged_out_at.map_or(at, |old| old.max(at)));
                    true
                }
                None => false,
            })
        })
    }

    pub(super) fn end_external_session_row(&self, id: Uuid, at: DateTime<Utc>) -> Result<()> {
        self.with(|t| {
            t.external_sessions_ended
                .entry(id)
                .and_modify(|ended| *ended = (*ended).max(at))
                .or_insert(at);
            Ok(())
        })
    }

    pub(super) fn external_session_end(&self, id: Uuid) -> Result<Option<DateTime<Utc>>> {
        self.with(|t| Ok(t.external_sessions_ended.get(&id).copied()))
    }
}
