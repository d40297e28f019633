//! [`Change`]s on SQLite: applied on a connection inside a transaction the
//! caller holds (their own, or the audit writer's batch).

use rusqlite::{Connection, OptionalExtension, params};

use super::{conflict_or_missing, micros, sqlite_error, unique_or, uuid_blob};
use crate::error::{Error, Result};
use crate::model::{CareTeamRow, Change, UserRow};

/// Applies `change` on `conn`, which is inside a transaction.
pub(super) fn apply_change(conn: &Connection, change: &Change) -> Result<()> {
    match change {
        Change::InsertPatient {
            key,
            patient,
            creator,
        } => {
            conn.prepare_cached(
                "INSERT INTO patients (id, profile, mrn_index, email_index, name_dob_index, version, created_at, updated_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            )
            .and_then(|mut stmt| {
                stmt.execute(params![
                    uuid_blob(&patient.id),
                    patient.profile,
                    patient.mrn_index.0,
                    patient.email_index.map(|i| i.0),
                    patient.name_dob_index.0,
                    patient.version,
                    micros(patient.created_at),
                    micros(patient.updated_at),
                ])
            })
            .map_err(unique_or("patient"))?;
            conn.prepare_cached(
                "INSERT INTO data_keys (patient_id, dek_version, kek_version, wrapped, created_at)
                 VALUES (?1, ?2, ?3, ?4, ?5)",
            )
            .and_then(|mut stmt| {
                stmt.execute(params![
                    uuid_blob(&key.patient_id),
                    key.dek_version,
                    key.kek_version,
                    key.wrapped,
                    micros(patient.created_at)
                ])
            })
            .map_err(unique_or("data key"))?;
            match creator {
                Some(member) => upsert_care_team(conn, member),
                None => Ok(()),
            }
        }
        Change::UpdatePatient {
            patient,
            expected_version,
        } => {
            let changed = conn
                .prepare_cached(
                    "UPDATE patients SET profile = ?1, mrn_index = ?2, email_index = ?3, name_dob_index = ?4,
                            version = ?5, updated_at = ?6
                     WHERE id = ?7 AND version = ?8 AND erased_at IS NULL",
                )
                .and_then(|mut stmt| {
                    stmt.execute(params![
                        patient.profile,
                        patient.mrn_index.0,
                        patient.email_index.map(|i| i.0),
                        patient.name_dob_index.0,
                        patient.version,
                        micros(patient.updated_at),
                        uuid_blob(&patient.id),
                        expected_version,
                    ])
                })
                .map_err(unique_or("patient with this MRN"))?;
            if changed == 0 {
                return conflict_or_missing(
                    conn,
                    "SELECT version FROM patients WHERE id = ?1 AND erased_at IS NULL",
                    patient.id,
                    "patient",
                    *expected_version,
                );
            }
            Ok(())
        }
        Change::InsertRecord(record) => {
            let inserted = conn
                .prepare_cached(
                    "INSERT INTO records (id, patient_id, kind, body, version, created_by, created_at, updated_at)
                     SELECT ?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8
                     WHERE EXISTS (SELECT 1 FROM patients WHERE id = ?2 AND erased_at IS NULL)",
                )
                .and_then(|mut stmt| {
                    stmt.execute(params![
                        uuid_blob(&record.id),
                        uuid_blob(&record.patient_id),
                        record.kind,
                        record.body,
                        record.version,
                        uuid_blob(&record.created_by),
                        micros(record.created_at),
                        micros(record.updated_at),
                    ])
                })
                .map_err(unique_or("record"))?;
            if inserted == 0 {
                return Err(Error::NotFound { what: "patient" });
            }
            Ok(())
        }
        Change::InsertDisclosure(d) => super::disclosures::insert(conn, d),
        Change::UpdateRecord {
            record,
            expected_version,
        } => {
            let changed = conn
                .prepare_cached(
                    "UPDATE records SET body = ?1, version = ?2, updated_at = ?3 WHERE id = ?4 AND version = ?5",
                )
                .and_then(|mut stmt| {
                    stmt.execute(params![
                        record.body,
                        record.version,
                        micros(record.updated_at),
                        uuid_blob(&record.id),
                        expected_version
                    ])
                })
                .map_err(sqlite_error)?;
            if changed == 0 {
                return conflict_or_missing(
                    conn,
                    "SELECT version FROM records WHERE id = ?1",
                    record.id,
                    "record",
                    *expected_version,
                );
            }
            Ok(())
        }
        Change::DeleteRecord(id) => {
            let deleted = conn
                .prepare_cached("DELETE FROM records WHERE id = ?1")
                .and_then(|mut stmt| stmt.execute([id]))
                .map_err(sqlite_error)?;
            if deleted == 0 {
                return Err(Error::NotFound { what: "record" });
            }
            Ok(())
        }
        Change::ErasePatient { id, at } => {
            let exists = conn
                .query_row("SELECT 1 FROM patients WHERE id = ?1", [id], |_| Ok(()))
                .optional()
                .map_err(sqlite_error)?;
            if exists.is_none() {
                return Err(Error::NotFound { what: "patient" });
            }
            for sql in [
                "DELETE FROM data_keys WHERE patient_id = ?1",
                "DELETE FROM records WHERE patient_id = ?1",
                "DELETE FROM care_team WHERE patient_id = ?1",
            ] {
                conn.execute(sql, [id]).map_err(sqlite_error)?;
            }
            conn.execute(
                "UPDATE patients SET profile = NULL, mrn_index = NULL, email_index = NULL,
                        name_dob_index = NULL, erased_at = coalesce(erased_at, ?2), updated_at = ?2
                 WHERE id = ?1",
                params![id, micros(*at)],
            )
            .map_err(sqlite_error)?;
            Ok(())
        }
        Change::AddCareTeamMember(member) => upsert_care_team(conn, member),
        Change::RemoveCareTeamMember {
            patient_id,
            user_id,
        } => {
            let n = conn
                .execute(
                    "DELETE FROM care_team WHERE patient_id = ?1 AND user_id = ?2",
                    params![patient_id, user_id],
                )
                .map_err(sqlite_error)?;
            if n == 0 {
                return Err(Error::NotFound {
                    what: "care-team assignment",
                });
            }
            Ok(())
        }
        Change::InsertUser(user) => insert_user_row(conn, user),
        Change::UpdateUser {
            user,
            expected_version,
        } => update_user_row(conn, user, *expected_version),
        Change::InsertGrant(g) => conn
            .execute(
                &format!(
                    "INSERT INTO access_grants ({GRANT_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)"
                ),
                params![
                    g.id,
                    g.user_id,
                    g.patient_id,
                    g.reason,
                    micros(g.created_at),
                    micros(g.expires_at),
                    g.reviewed_at.map(micros),
                    g.reviewed_by
                ],
            )
            .map(|_| ())
            .map_err(missing_or("patient")),
    }
}

/// Adds or replaces a care-team membership of a live patient.
pub(super) fn upsert_care_team(conn: &Connection, m: &CareTeamRow) -> Result<()> {
    let live: Option<i64> = conn
        .query_row(
            "SELECT 1 FROM patients WHERE id = ?1 AND erased_at IS NULL",
            [m.patient_id],
            |r| r.get(0),
        )
        .optional()
        .map_err(sqlite_error)?;
    if live.is_none() {
        return Err(Error::NotFound { what: "patient" });
    }
    conn.execute(
        "INSERT INTO care_team (patient_id, user_id, relationship, expires_at, created_at)
         VALUES (?1, ?2, ?3, ?4, ?5)
         ON CONFLICT (patient_id, user_id) DO UPDATE SET
             relationship = excluded.relationship, expires_at = excluded.expires_at",
        params![
            m.patient_id,
            m.user_id,
            m.relationship,
            m.expires_at.map(micros),
            micros(m.created_at)
        ],
    )
    .map(|_| ())
    .map_err(missing_or("user"))
}

/// Applies `change` inside a savepoint of `conn`'s transaction: a failed
/// change leaves nothing behind, and the transaction goes on.
pub(super) fn apply_in_savepoint(conn: &Connection, change: &Change) -> Result<()> {
    conn.execute_batch("SAVEPOINT change")
        .map_err(sqlite_error)?;
    let outcome = apply_change(conn, change);
    let end = if outcome.is_ok() {
        "RELEASE change"
    } else {
        "ROLLBACK TO change; RELEASE change"
    };
    conn.execute_batch(end).map_err(sqlite_error)?;
    outcome
}

pub(super) const GRANT_COLUMNS: &str =
    "id, user_id, patient_id, reason, created_at, expires_at, reviewed_at, reviewed_by";

/// Maps a foreign-key failure on insert to `NotFound { what }`.
pub(super) fn missing_or(what: &'static str) -> impl FnOnce(rusqlite::Error) -> Error {
    move |err| match err.sqlite_error_code() {
        Some(rusqlite::ErrorCode::ConstraintViolation)
            if err.to_string().contains("FOREIGN KEY") =>
        {
            Error::NotFound { what }
        }
        Some(rusqlite::ErrorCode::ConstraintViolation) => Error::AlreadyExists { what: "user" },
        _ => sqlite_error(err),
    }
}

/// The columns of a user row, in the order the statements here use.
pub(super) const USER_COLUMNS: &str = "id, email_index, profile, password_hash, roles, disabled, \
     patient_id, mfa_secret, mfa_enabled, version, created_at, updated_at";

/// Inserts a user row (in the caller's transaction).
pub(super) fn insert_user_row(conn: &Connection, user: &UserRow) -> Result<()> {
    conn.execute(
        &format!(
            "INSERT INTO users ({USER_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)"
        ),
        params![
            user.id,
            user.email_index.0.as_slice(),
            user.profile,
            user.password_hash,
            user.roles.to_csv(),
            user.disabled,
            user.patient_id,
            user.mfa_secret,
            user.mfa_enabled,
            user.version,
            micros(user.created_at),
            micros(user.updated_at),
        ],
    )
    .map(|_| ())
    .map_err(missing_or("patient"))
}

/// Replaces a user row if it is still at `expected_version`.
pub(super) fn update_user_row(
    conn: &Connection,
    user: &UserRow,
    expected_version: i64,
) -> Result<()> {
    let changed = conn
        .execute(
            "UPDATE users SET email_index = ?1, profile = ?2, password_hash = ?3, roles = ?4,
                    disabled = ?5, patient_id = ?6, mfa_secret = ?7, mfa_enabled = ?8,
                    version = ?9, updated_at = ?10
             WHERE id = ?11 AND version = ?12",
            params![
                user.email_index.0.as_slice(),
                user.profile,
                user.password_hash,
                user.roles.to_csv(),
                user.disabled,
                user.patient_id,
                user.mfa_secret,
                user.mfa_enabled,
                user.version,
                micros(user.updated_at),
                user.id,
                expected_version
            ],
        )
        .map_err(missing_or("patient"))?;
    if changed == 0 {
        return conflict_or_missing(
            conn,
            "SELECT version FROM users WHERE id = ?1",
            user.id,
            "user",
            expected_version,
        );
    }
    Ok(())
}
