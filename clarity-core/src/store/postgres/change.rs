//! [`Change`]s on PostgreSQL: applied inside a transaction the caller holds
//! (their own, or the audit writer's batch).

use deadpool_postgres::GenericClient;
use tokio_postgres::error::SqlState;
use tokio_postgres::types::ToSql;

use super::{conflict_or_missing, pg_error, unique_or};
use crate::error::{Error, Result};
use crate::model::{CareTeamRow, Change, UserRow};

/// Applies `change` on `tx`, which is a transaction.
pub(super) async fn apply_change(tx: &impl GenericClient, change: &Change) -> Result<()> {
    match change {
        Change::InsertPatient {
            key,
            patient,
            creator,
        } => {
            tx.execute(
                "INSERT INTO patients (id, profile, mrn_index, email_index, name_dob_index, version, created_at, updated_at)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
                &[
                    &patient.id,
                    &patient.profile,
                    &patient.mrn_index.0.as_slice(),
                    &patient.email_index.as_ref().map(|i| i.0.as_slice()),
                    &patient.name_dob_index.0.as_slice(),
                    &patient.version,
                    &patient.created_at,
                    &patient.updated_at,
                ],
            )
            .await
            .map_err(unique_or("patient"))?;
            tx.execute(
                "INSERT INTO data_keys (patient_id, dek_version, kek_version, wrapped, created_at)
                 VALUES ($1, $2, $3, $4, $5)",
                &[
                    &key.patient_id,
                    &key.dek_version,
                    &key.kek_version,
                    &key.wrapped,
                    &patient.created_at,
                ],
            )
            .await
            .map_err(unique_or("data key"))?;
            match creator {
                Some(member) => upsert_care_team(tx, member).await,
                None => Ok(()),
            }
        }
        Change::UpdatePatient {
            patient,
            expected_version,
        } => {
            let changed = tx
                .execute(
                    "UPDATE patients SET profile = $1, mrn_index = $2, email_index = $3, name_dob_index = $4,
                            version = $5, updated_at = $6
                     WHERE id = $7 AND version = $8 AND erased_at IS NULL",
                    &[
                        &patient.profile,
                        &patient.mrn_index.0.as_slice(),
                        &patient.email_index.as_ref().map(|i| i.0.as_slice()),
                        &patient.name_dob_index.0.as_slice(),
                        &patient.version,
                        &patient.updated_at,
                        &patient.id,
                        expected_version,
                    ],
                )
                .await
                .map_err(unique_or("patient with this MRN"))?;
            if changed == 0 {
                return conflict_or_missing(
                    tx,
                    "SELECT version FROM patients WHERE id = $1 AND erased_at IS NULL",
                    patient.id,
                    "patient",
                    *expected_version,
                )
                .await;
            }
            Ok(())
        }
        Change::InsertRecord(record) => {
            let stmt = tx
                .prepare_cached(
                    "INSERT INTO records (id, patient_id, kind, body, version, created_by, created_at, updated_at)
                     SELECT $1, $2, $3, $4, $5, $6, $7, $8
                     WHERE EXISTS (SELECT 1 FROM patients WHERE id = $2 AND erased_at IS NULL)",
                )
                .await
                .map_err(pg_error)?;
            let params: [&(dyn ToSql + Sync); 8] = [
                &record.id,
                &record.patient_id,
                &record.kind,
                &record.body,
                &record.version,
                &record.created_by,
                &record.created_at,
                &record.updated_at,
            ];
            // Lock the live patient row first, so an erasure cannot commit
            // in between and leave this record behind (erasure takes FOR
            // UPDATE); both statements go out in one round trip.
            let lock: [&(dyn ToSql + Sync); 1] = [&record.patient_id];
            let (_, inserted) = tokio::try_join!(
                tx.query_opt(
                    "SELECT 1 FROM patients WHERE id = $1 AND erased_at IS NULL FOR SHARE",
                    &lock,
                ),
                tx.execute_raw(&stmt, params),
            )
            .map_err(unique_or("record"))?;
            if inserted == 0 {
                return Err(Error::NotFound { what: "patient" });
            }
            Ok(())
        }
        Change::InsertDisclosure(d) => super::disclosures::insert(tx, d).await,
        Change::UpdateRecord {
            record,
            expected_version,
        } => {
            let stmt = tx
                .prepare_cached(
                    "UPDATE records SET body = $1, version = $2, updated_at = $3 WHERE id = $4 AND version = $5",
                )
                .await
                .map_err(pg_error)?;
            let changed = tx
                .execute(
                    &stmt,
                    &[
                        &record.body,
                        &record.version,
                        &record.updated_at,
                        &record.id,
                        expected_version,
                    ],
                )
                .await
                .map_err(pg_error)?;
            if changed == 0 {
                return conflict_or_missing(
                    tx,
                    "SELECT version FROM records WHERE id = $1",
                    record.id,
                    "record",
                    *expected_version,
                )
                .await;
            }
            Ok(())
        }
        Change::DeleteRecord(id) => {
            let deleted = tx
                .execute("DELETE FROM records WHERE id = $1", &[id])
                .await
                .map_err(pg_error)?;
            if deleted == 0 {
                return Err(Error::NotFound { what: "record" });
            }
            Ok(())
        }
        Change::ErasePatient { id, at } => {
            let exists = tx
                .query_opt("SELECT 1 FROM patients WHERE id = $1 FOR UPDATE", &[id])
                .await
                .map_err(pg_error)?;
            if exists.is_none() {
                return Err(Error::NotFound { what: "patient" });
            }
            for sql in [
                "DELETE FROM data_keys WHERE patient_id = $1",
                "DELETE FROM records WHERE patient_id = $1",
                "DELETE FROM care_team WHERE patient_id = $1",
            ] {
                tx.execute(sql, &[id]).await.map_err(pg_error)?;
            }
            tx.execute(
                "UPDATE patients SET profile = NULL, mrn_index = NULL, email_index = NULL,
                        name_dob_index = NULL, erased_at = coalesce(erased_at, $2), updated_at = $2
                 WHERE id = $1",
                &[id, at],
            )
            .await
            .map_err(pg_error)?;
            Ok(())
        }
        Change::AddCareTeamMember(member) => upsert_care_team(tx, member).await,
        Change::RemoveCareTeamMember {
            patient_id,
            user_id,
        } => {
            let n = tx
                .execute(
                    "DELETE FROM care_team WHERE patient_id = $1 AND user_id = $2",
                    &[patient_id, user_id],
                )
                .await
                .map_err(pg_error)?;
            if n == 0 {
                return Err(Error::NotFound {
                    what: "care-team assignment",
                });
            }
            Ok(())
        }
        Change::InsertUser(user) => insert_user_row(tx, user).await,
        Change::UpdateUser {
            user,
            expected_version,
        } => update_user_row(tx, user, *expected_version).await,
        Change::InsertGrant(g) => tx
            .execute(
                &format!(
                    "INSERT INTO access_grants ({GRANT_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)"
                ),
                &[
                    &g.id,
                    &g.user_id,
                    &g.patient_id,
                    &g.reason,
                    &g.created_at,
                    &g.expires_at,
                    &g.reviewed_at,
                    &g.reviewed_by,
                ],
            )
            .await
            .map(|_| ())
            .map_err(missing_or("patient")),
    }
}

/// Adds or replaces a care-team membership of a live patient, inside `tx`.
pub(super) async fn upsert_care_team(tx: &impl GenericClient, m: &CareTeamRow) -> Result<()> {
    // FOR SHARE: an erasure (FOR UPDATE) cannot commit in between.
    let live = tx
        .query_opt(
            "SELECT 1 FROM patients WHERE id = $1 AND erased_at IS NULL FOR SHARE",
            &[&m.patient_id],
        )
        .await
        .map_err(pg_error)?;
    if live.is_none() {
        return Err(Error::NotFound { what: "patient" });
    }
    tx.execute(
        "INSERT INTO care_team (patient_id, user_id, relationship, expires_at, created_at)
             VALUES ($1, $2, $3, $4, $5)
             ON CONFLICT (patient_id, user_id) DO UPDATE SET
                 relationship = excluded.relationship, expires_at = excluded.expires_at",
        &[
            &m.patient_id,
            &m.user_id,
            &m.relationship,
            &m.expires_at,
            &m.created_at,
        ],
    )
    .await
    .map_err(missing_or("user"))?;
    Ok(())
}

/// Applies a batch's changes in order, one outcome per slot (`Ok` for a
/// slot without a change). Consecutive record inserts go out together, in
/// one round trip: each is a single pipelined exchange whose failure
/// (other than a missing patient, which is an outcome and not an error)
/// aborts the transaction, as it would one at a time.
pub(super) async fn apply_all_in_batch(
    tx: &impl GenericClient,
    changes: &[Option<Change>],
) -> Vec<Result<()>> {
    let mut outcomes = Vec::with_capacity(changes.len());
    let mut rest = changes;
    while let Some(first) = rest.first() {
        let inserts = rest
            .iter()
            .take_while(|c| matches!(c, Some(Change::InsertRecord(_))))
            .count();
        if inserts > 0 {
            let run = rest[..inserts].iter().flatten();
            outcomes.extend(futures_util::future::join_all(run.map(|c| apply_change(tx, c))).await);
        } else {
            outcomes.push(match first {
                Some(change) => apply_in_batch(tx, change).await,
                None => Ok(()),
            });
        }
        rest = &rest[inserts.max(1)..];
    }
    outcomes
}

/// Applies `change` inside the batch transaction `tx`, so that a change
/// failing for its own reasons leaves nothing behind and the transaction
/// goes on.
///
/// Record changes and erasures report their failures by the rows they
/// matched (an erased or unknown patient, a moved version), never by a
/// statement error, so they need no savepoint; a statement error there is the database failing, which aborts
/// the whole batch (nothing of it is stored). Patient changes can break the
/// MRN's uniqueness, and memberships and grants can name a user or patient
/// that is not there (a foreign key): statement errors, so they run in a
/// savepoint.
async fn apply_in_batch(tx: &impl GenericClient, change: &Change) -> Result<()> {
    match change {
        Change::InsertPatient { .. }
        | Change::UpdatePatient { .. }
        | Change::AddCareTeamMember(_)
        | Change::InsertGrant(_)
        | Change::InsertDisclosure(_)
        | Change::InsertUser(_)
        | Change::UpdateUser { .. } => apply_in_savepoint(tx, change).await,
        Change::InsertRecord(_)
        | Change::UpdateRecord { .. }
        | Change::DeleteRecord(_)
        | Change::ErasePatient { .. }
        | Change::RemoveCareTeamMember { .. } => apply_change(tx, change).await,
    }
}

/// Applies `change` inside a savepoint of the transaction `tx`: a failed
/// change leaves nothing behind, and the transaction goes on.
async fn apply_in_savepoint(tx: &impl GenericClient, change: &Change) -> Result<()> {
    tx.batch_execute("SAVEPOINT change")
        .await
        .map_err(pg_error)?;
    let outcome = apply_change(tx, change).await;
    let end = if outcome.is_ok() {
        "RELEASE SAVEPOINT change"
    } else {
        "ROLLBACK TO SAVEPOINT change; RELEASE SAVEPOINT change"
    };
    tx.batch_execute(end).await.map_err(pg_error)?;
    outcome
}

pub(super) const GRANT_COLUMNS: &str =
    "id, user_id, patient_id, reason, created_at, expires_at, reviewed_at, reviewed_by";

/// Foreign-key failures are `NotFound { what }`, unique ones `AlreadyExists`.
pub(super) fn missing_or(what: &'static str) -> impl FnOnce(tokio_postgres::Error) -> Error {
    move |err| match err.code() {
        Some(code) if *code == SqlState::FOREIGN_KEY_VIOLATION => Error::NotFound { what },
        Some(code) if *code == SqlState::UNIQUE_VIOLATION => Error::AlreadyExists { what: "user" },
        _ => pg_error(err),
    }
}

/// The columns of a user row, in the order the statements here use.
pub(super) const USER_COLUMNS: &str = "id, email_index, profile, password_hash, roles, disabled, \
     patient_id, mfa_secret, mfa_enabled, version, created_at, updated_at";

/// Inserts a user row (in the caller's transaction, when it has one).
pub(super) async fn insert_user_row(client: &impl GenericClient, user: &UserRow) -> Result<()> {
    client
        .execute(
            &format!(
                "INSERT INTO users ({USER_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)"
            ),
            &[
                &user.id,
                &user.email_index.0.as_slice(),
                &user.profile,
                &user.password_hash,
                &user.roles.to_csv(),
                &user.disabled,
                &user.patient_id,
                &user.mfa_secret,
                &user.mfa_enabled,
                &user.version,
                &user.created_at,
                &user.updated_at,
            ],
        )
        .await
        .map(|_| ())
        .map_err(missing_or("patient"))
}

/// Replaces a user row if it is still at `expected_version`.
pub(super) async fn update_user_row(
    client: &impl GenericClient,
    user: &UserRow,
    expected_version: i64,
) -> Result<()> {
    let changed = client
        .execute(
            "UPDATE users SET email_index = $1, profile = $2, password_hash = $3, roles = $4,
                    disabled = $5, patient_id = $6, mfa_secret = $7, mfa_enabled = $8,
                    version = $9, updated_at = $10
             WHERE id = $11 AND version = $12",
            &[
                &user.email_index.0.as_slice(),
                &user.profile,
                &user.password_hash,
                &user.roles.to_csv(),
                &user.disabled,
                &user.patient_id,
                &user.mfa_secret,
                &user.mfa_enabled,
                &user.version,
                &user.updated_at,
                &user.id,
                &expected_version,
            ],
        )
        .await
        .map_err(missing_or("patient"))?;
    if changed == 0 {
        return conflict_or_missing(
            client,
            "SELECT version FROM users WHERE id = $1",
            user.id,
            "user",
            expected_version,
        )
        .await;
    }
    Ok(())
}
