//! The audit trail's query indexes on SQLite, in a database of their own
//! beside the store (`<file>-audit-index`), attached to the readers and to
//! one indexing connection as `audit_index`. Kept apart so that filling
//! them never takes the store's write lock, which the audit commit needs:
//! the indexer reads the events and writes only this file.
//!
//! What is here is derived from the events: when the file is missing it is
//! created empty, and the indexer rebuilds it chain by chain; until then
//! queries read the unindexed tails (see [`crate::store::audit_query_sql`]).

use std::path::{Path, PathBuf};

use rusqlite::{Connection, params};
use uuid::Uuid;

use super::{sqlite_error, uuid_blob};
use crate::error::Result;
use crate::store::{Dialect, IndexedEvent, discover_chains_sql, sorted_entries};

/// The index database of the store at `db`.
pub(crate) fn index_path(db: &Path) -> PathBuf {
    let mut path = db.as_os_str().to_owned();
    path.push("-audit-index");
    PathBuf::from(path)
}

/// Attaches the index database at `path` to `conn` as `audit_index`; on a
/// writable connection, also sets its journal and creates its tables.
pub(super) fn attach(conn: &Connection, path: &Path, writable: bool) -> Result<()> {
    let name = path.to_str().ok_or_else(|| {
        crate::error::Error::invalid("the database path must be valid UTF-8 to attach its index")
    })?;
    conn.execute("ATTACH DATABASE ?1 AS audit_index", [name])
        .map_err(sqlite_error)?;
    if writable {
        // Derived data: a crash may lose its last commits, never its
        // consistency, and the marks roll back with the rows.
        conn.execute_batch(
            "PRAGMA audit_index.journal_mode = WAL;
             PRAGMA audit_index.synchronous = NORMAL;
             CREATE TABLE IF NOT EXISTS audit_index.audit_by_patient (
                 patient_id BLOB NOT NULL,
                 id         BLOB NOT NULL,
                 PRIMARY KEY (patient_id, id)
             ) STRICT, WITHOUT ROWID;
             CREATE TABLE IF NOT EXISTS audit_index.audit_by_actor (
                 actor_id BLOB NOT NULL,
                 id       BLOB NOT NULL,
                 PRIMARY KEY (actor_id, id)
             ) STRICT, WITHOUT ROWID;
             CREATE TABLE IF NOT EXISTS audit_index.audit_index_marks (
                 chain_id BLOB PRIMARY KEY,
                 seq      INTEGER NOT NULL
             ) STRICT, WITHOUT ROWID;",
        )
        .map_err(sqlite_error)?;
    }
    Ok(())
}

/// Indexes up to `max` events past the chains' marks in one transaction
/// that writes the index database only, then copies the store's WAL into
/// its file (a passive checkpoint, beside the writer rather than inside
/// its commit). Returns how many events it indexed.
pub(super) fn index_step(conn: &mut Connection, max: usize) -> Result<usize> {
    let tx = conn.transaction().map_err(sqlite_error)?;
    tx.execute(&discover_chains_sql(Dialect::Sqlite), [])
        .map_err(sqlite_error)?;
    let marks = {
        let mut stmt = tx
            .prepare_cached("SELECT chain_id, seq FROM audit_index.audit_index_marks")
            .map_err(sqlite_error)?;
        stmt.query_map([], |r| Ok((r.get::<_, Uuid>(0)?, r.get::<_, i64>(1)?)))
            .map_err(sqlite_error)?
            .collect::<rusqlite::Result<Vec<_>>>()
            .map_err(sqlite_error)?
    };
    let mut events = Vec::new();
    let mut moved = Vec::new();
    {
        let mut pending = tx
            .prepare_cached(
                "SELECT id, seq, patient_id, actor_id FROM audit_events
                 WHERE chain_id = ?1 AND seq > ?2 ORDER BY seq LIMIT ?3",
            )
            .map_err(sqlite_error)?;
        for (chain, mark) in marks {
            let room = max.saturating_sub(events.len());
            if room == 0 {
                break;
            }
            let mut last = mark;
            let rows = pending
                .query_map(
                    params![
                        uuid_blob(&chain),
                        mark,
                        i64::try_from(room).unwrap_or(i64::MAX)
                    ],
                    |r| Ok((r.get(0)?, r.get::<_, i64>(1)?, r.get(2)?, r.get(3)?)),
                )
                .map_err(sqlite_error)?;
            for row in rows {
                let (id, seq, patient, actor) = row.map_err(sqlite_error)?;
                last = seq;
                events.push((id, patient, actor));
            }
            if last > mark {
                moved.push((chain, last));
            }
        }
    }
    let (by_patient, by_actor) = sorted_entries(&events);
    for (sql, entries) in [
        (
            "INSERT INTO audit_index.audit_by_patient (patient_id, id) VALUES (?1, ?2)
             ON CONFLICT DO NOTHING",
            &by_patient,
        ),
        (
            "INSERT INTO audit_index.audit_by_actor (actor_id, id) VALUES (?1, ?2)
             ON CONFLICT DO NOTHING",
            &by_actor,
        ),
    ] {
        let mut insert = tx.prepare_cached(sql).map_err(sqlite_error)?;
        for (key, id) in entries {
            insert
                .execute(params![uuid_blob(key), uuid_blob(id)])
                .map_err(sqlite_error)?;
        }
    }
    {
        let mut mark = tx
            .prepare_cached("UPDATE audit_index.audit_index_marks SET seq = ?2 WHERE chain_id = ?1")
            .map_err(sqlite_error)?;
        for (chain, seq) in &moved {
            mark.execute(params![uuid_blob(chain), seq])
                .map_err(sqlite_error)?;
        }
    }
    tx.commit().map_err(sqlite_error)?;
    conn.query_row("PRAGMA main.wal_checkpoint(PASSIVE)", [], |_| Ok(()))
        .map_err(sqlite_error)?;
    Ok(events.len())
}

/// Removes the index entries of purged events, given as `(id, patient,
/// actor)`. Run after the events are gone: an entry left by a crash in
/// between finds no event and is never returned.
pub(super) fn forget(conn: &mut Connection, gone: &[IndexedEvent]) -> Result<()> {
    let (by_patient, by_actor) = sorted_entries(gone);
    let tx = conn.transaction().map_err(sqlite_error)?;
    for (sql, entries) in [
        (
            "DELETE FROM audit_index.audit_by_patient WHERE patient_id = ?1 AND id = ?2",
            &by_patient,
        ),
        (
            "DELETE FROM audit_index.audit_by_actor WHERE actor_id = ?1 AND id = ?2",
            &by_actor,
        ),
    ] {
        let mut delete = tx.prepare_cached(sql).map_err(sqlite_error)?;
        for (key, id) in entries {
            delete.execute(params![key, id]).map_err(sqlite_error)?;
        }
    }
    tx.commit().map_err(sqlite_error)
}
