//! Disclosures to outside recipients (S-AUD-9) on SQLite.

use chrono::{DateTime, Utc};
use rusqlite::{Connection, Row, params};
use uuid::Uuid;

use super::{SqliteStore, from_micros, micros, sqlite_error, unique_or};
use crate::error::{Error, Result};
use crate::model::DisclosureRow;

const COLUMNS: &str = "id, patient_id, disclosed_at, details, recorded_by, recorded_at";

fn disclosure_row(row: &Row<'_>) -> rusqlite::Result<DisclosureRow> {
    Ok(DisclosureRow {
        id: row.get(0)?,
        patient_id: row.get(1)?,
        disclosed_at: from_micros(row.get(2)?)?,
        details: row.get(3)?,
        recorded_by: row.get(4)?,
        recorded_at: from_micros(row.get(5)?)?,
    })
}

/// Stores a disclosure of a live patient, inside the caller's transaction.
pub(super) fn insert(conn: &Connection, d: &DisclosureRow) -> Result<()> {
    let inserted = conn
        .prepare_cached(&format!(
            "INSERT INTO disclosures ({COLUMNS})
             SELECT ?1, ?2, ?3, ?4, ?5, ?6
             WHERE EXISTS (SELECT 1 FROM patients WHERE id = ?2 AND erased_at IS NULL)"
        ))
        .and_then(|mut stmt| {
            stmt.execute(params![
                d.id,
                d.patient_id,
                micros(d.disclosed_at),
                d.details,
                d.recorded_by,
                micros(d.recorded_at),
            ])
        })
        .map_err(unique_or("disclosure"))?;
    if inserted == 0 {
        return Err(Error::NotFound { what: "patient" });
    }
    Ok(())
}

impl SqliteStore {
    /// See [`crate::store::Store::list_disclosures`].
    pub(super) async fn disclosures_of(
        &self,
        patient_id: Uuid,
        since: Option<DateTime<Utc>>,
        after: Option<Uuid>,
        limit: usize,
    ) -> Result<Vec<DisclosureRow>> {
        let after = after.unwrap_or(Uuid::nil());
        let limit = i64::try_from(limit).map_err(|_| Error::invalid("limit is too large"))?;
        let since = since.map(micros);
        self.readers
            .run(move |conn| {
                let mut stmt = conn
                    .prepare_cached(&format!(
                        "SELECT {COLUMNS} FROM disclosures
                         WHERE patient_id = ?1 AND id > ?2 AND (?3 IS NULL OR disclosed_at >= ?3)
                         ORDER BY id LIMIT ?4"
                    ))
                    .map_err(sqlite_error)?;
                stmt.query_map(params![patient_id, after, since, limit], disclosure_row)
                    .map_err(sqlite_error)?
                    .collect::<rusqlite::Result<Vec<_>>>()
                    .map_err(sqlite_error)
            })
            .await
    }
}
