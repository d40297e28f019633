//! SQLite side of backups: a consistent snapshot through SQLite's online
//! backup API, read into the logical form; and a staging database filled
//! from an archive, swapped in by a rename once everything verified.

use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use rusqlite::backup::Backup;
use rusqlite::types::Value as SqlValue;
use rusqlite::{Connection, OpenFlags};

use super::archive::{ArchiveReader, ArchiveWriter};
use super::schema::{ColType, TABLES, Table, Value};
use super::{Importer, ProgressFn};
use crate::error::{Error, Result};

fn db_error(e: rusqlite::Error) -> Error {
    Error::backend("sqlite", "backup or restore failed", e)
}

/// A path beside `path` with a random suffix.
pub(super) fn sibling(path: &Path, what: &str) -> Result<PathBuf> {
    let mut suffix = [0u8; 8];
    crate::crypto::fill_random(&mut suffix)?;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "clarity.db".into());
    Ok(path.with_file_name(format!(".{name}.{what}-{}", hex::encode(suffix))))
}

/// Removes a database file, its WAL and shared-memory files, and its audit
/// index database (derived from the events, rebuilt when missing).
pub(super) fn remove_db(path: &Path) {
    for db in [path.to_path_buf(), crate::store::audit_index_path(path)] {
        for suffix in ["", "-wal", "-shm", "-journal"] {
            let mut p = db.as_os_str().to_owned();
            p.push(suffix);
            let _ = std::fs::remove_file(PathBuf::from(p));
        }
    }
}

/// Snapshots the live database with the online backup API (a consistent
/// copy while writers go on), then writes every table of the copy.
pub(super) fn export(
    db: &Path,
    writer: &mut ArchiveWriter,
    progress: &ProgressFn<'_>,
) -> Result<()> {
    let snapshot = sibling(db, "backup")?;
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&snapshot)
        .map_err(super::schema::io_error)?;
    let result = (|| {
        let source =
            Connection::open_with_flags(db, OpenFlags::SQLITE_OPEN_READ_ONLY).map_err(db_error)?;
        source
            .busy_timeout(std::time::Duration::from_secs(5))
            .map_err(db_error)?;
        let mut copy = Connection::open(&snapshot).map_err(db_error)?;
        {
            let backup = Backup::new(&source, &mut copy).map_err(db_error)?;
            backup
                .run_to_completion(4096, std::time::Duration::ZERO, None)
                .map_err(db_error)?;
        }
        drop(source);
        export_rows(&copy, writer, progress)
    })();
    remove_db(&snapshot);
    result
}

fn export_rows(
    conn: &Connection,
    writer: &mut ArchiveWriter,
    progress: &ProgressFn<'_>,
) -> Result<()> {
    let mut done = 0u64;
    for table in TABLES {
        writer.begin_table(table)?;
        let sql = format!(
            "SELECT {} FROM {} ORDER BY {}",
            super::column_list(table),
            table.name,
            table.order_by
        );
        let mut stmt = conn.prepare(&sql).map_err(db_error)?;
        let mut rows = stmt.query([]).map_err(db_error)?;
        while let Some(row) = rows.next().map_err(db_error)? {
            let mut values = Vec::with_capacity(table.columns.len());
            for (i, (_, ty)) in table.columns.iter().enumerate() {
                values.push(read_value(row, i, *ty)?);
            }
            writer.row(table, &values)?;
            done += 1;
            if done.is_multiple_of(10_000) {
                progress(&super::Progress::rows(table.name, done));
            }
        }
        writer.end_table()?;
    }
    progress(&super::Progress::rows("done", done));
    Ok(())
}

fn read_value(row: &rusqlite::Row<'_>, i: usize, ty: ColType) -> Result<Value> {
    let value: SqlValue = row.get(i).map_err(db_error)?;
    let bad = || Error::internal("a stored value does not have its column's type");
    Ok(match (ty, value) {
        (_, SqlValue::Null) => Value::Null,
        (ColType::Uuid, SqlValue::Blob(b)) => {
            Value::Uuid(uuid::Uuid::from_slice(&b).map_err(|_| bad())?)
        }
        (ColType::Bytes, SqlValue::Blob(b)) => Value::Bytes(b),
        (ColType::Text, SqlValue::Text(t)) => Value::Text(t),
        (ColType::Int | ColType::Int32, SqlValue::Integer(n)) => Value::Int(n),
        (ColType::Time, SqlValue::Integer(n)) => Value::Time(n),
        (ColType::Bool, SqlValue::Integer(n)) => Value::Bool(n != 0),
        _ => return Err(bad()),
    })
}

fn to_sql(value: Value) -> SqlValue {
    match value {
        Value::Null => SqlValue::Null,
        Value::Uuid(u) => SqlValue::Blob(u.as_bytes().to_vec()),
        Value::Bytes(b) => SqlValue::Blob(b),
        Value::Text(t) => SqlValue::Text(t),
        Value::Int(n) | Value::Time(n) => SqlValue::Integer(n),
        Value::Bool(b) => SqlValue::Integer(i64::from(b)),
    }
}

/// Fills the (migrated, empty) staging database from the archive, in one transaction.
pub(super) fn import(
    staging: &Path,
    reader: &mut ArchiveReader,
    importer: &mut Importer,
    progress: &ProgressFn<'_>,
) -> Result<()> {
    let mut conn = Connection::open(staging).map_err(db_error)?;
    conn.execute_batch("PRAGMA foreign_keys = OFF; PRAGMA synchronous = OFF;")
        .map_err(db_error)?;
    let tx = conn.transaction().map_err(db_error)?;
    let mut current: Option<(&'static Table, rusqlite::Statement<'_>)> = None;
    loop {
        let item = super::archive::next_item(reader, current.as_ref().map(|(t, _)| *t))?;
        match item {
            None => break,
            Some(super::archive::Item::Table(table)) => {
                importer.begin(table)?;
                let sql = super::insert_sql(table, |i| format!("?{i}"));
                current = Some((table, tx.prepare(&sql).map_err(db_error)?));
            }
            Some(super::archive::Item::Row(row)) => {
                let (table, stmt) = current.as_mut().ok_or_else(super::schema::malformed)?;
                if importer.accept(table, &row)? {
                    stmt.execute(rusqlite::params_from_iter(row.into_iter().map(to_sql)))
                        .map_err(db_error)?;
                }
                importer.report(reader, progress);
            }
            Some(super::archive::Item::TableEnd) => {
                importer.end()?;
                current = None;
            }
        }
    }
    drop(current);
    tx.commit().map_err(db_error)?;
    Ok(())
}

/// Makes the staging file self-contained (no WAL beside it).
pub(super) fn seal(staging: &Path) -> Result<()> {
    let conn = Connection::open(staging).map_err(db_error)?;
    conn.execute_batch("PRAGMA wal_checkpoint(TRUNCATE);")
        .map_err(db_error)?;
    drop(conn);
    Ok(())
}

/// Moves the staging database over the target.
pub(super) fn swap(staging: &Path, target: &Path) -> Result<()> {
    remove_db(target);
    std::fs::rename(staging, target).map_err(super::schema::io_error)?;
    // What is left under the staging name: its WAL and shared-memory
    // files and its audit index (the target's is rebuilt from the events).
    remove_db(staging);
    if let Some(dir) = target.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(super::schema::io_error)?;
    }
    Ok(())
}
