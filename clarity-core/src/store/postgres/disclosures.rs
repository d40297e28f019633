//! Disclosures to outside recipients (S-AUD-9) on PostgreSQL.

use chrono::{DateTime, Utc};
use deadpool_postgres::GenericClient;
use tokio_postgres::Row;
use tokio_postgres::types::ToSql;
use uuid::Uuid;

use super::{PostgresStore, pg_error, unique_or};
use crate::error::{Error, Result};
use crate::model::DisclosureRow;

const COLUMNS: &str = "id, patient_id, disclosed_at, details, recorded_by, recorded_at";

fn disclosure_row(row: &Row) -> DisclosureRow {
    DisclosureRow {
        id: row.get(0),
        patient_id: row.get(1),
        disclosed_at: row.get(2),
        details: row.get(3),
        recorded_by: row.get(4),
        recorded_at: row.get(5),
    }
}

/// Stores a disclosure of a live patient, inside the caller's transaction.
/// The patient row is locked first, so an erasure cannot commit in between.
pub(super) async fn insert(tx: &impl GenericClient, d: &DisclosureRow) -> Result<()> {
    let lock: [&(dyn ToSql + Sync); 1] = [&d.patient_id];
    let live = tx
        .query_opt(
            "SELECT 1 FROM patients WHERE id = $1 AND erased_at IS NULL FOR SHARE",
            &lock,
        )
        .await
        .map_err(pg_error)?;
    if live.is_none() {
        return Err(Error::NotFound { what: "patient" });
    }
    tx.execute(
        &format!("INSERT INTO disclosures ({COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6)"),
        &[
            &d.id,
            &d.patient_id,
            &d.disclosed_at,
            &d.details,
            &d.recorded_by,
            &d.recorded_at,
        ],
    )
    .await
    .map_err(unique_or("disclosure"))?;
    Ok(())
}

impl PostgresStore {
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
        let client = self.client().await?;
        let stmt = client
            .prepare_cached(&format!(
                "SELECT {COLUMNS} FROM disclosures
                 WHERE patient_id = $1 AND id > $2 AND ($3::timestamptz IS NULL OR disclosed_at >= $3)
                 ORDER BY id LIMIT $4"
            ))
            .await
            .map_err(pg_error)?;
        let rows = client
            .query(&stmt, &[&patient_id, &after, &since, &limit])
            .await
            .map_err(pg_error)?;
        Ok(rows.iter().map(disclosure_row).collect())
    }
}
