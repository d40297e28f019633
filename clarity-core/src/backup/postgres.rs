//! PostgreSQL side of backups: a consistent export in one `REPEATABLE READ`
//! read-only transaction; and a staging schema filled from an archive, whose
//! tables move into the target schema in one transaction once everything
//! verified.

use chrono::{DateTime, Utc};
use tokio_postgres::Client;
use tokio_postgres::types::ToSql;

use super::archive::{ArchiveReader, ArchiveWriter, Item};
use super::schema::{ColType, TABLES, Table, Value};
use super::{Importer, ProgressFn};
use crate::error::{Error, Result};

/// Rows per multi-row `INSERT`.
const INSERT_BATCH: usize = 500;

fn db_error(e: tokio_postgres::Error) -> Error {
    Error::backend("postgres", "backup or restore failed", e)
}

/// The schema the store's tables live in.
pub(super) async fn target_schema(client: &Client, configured: Option<&str>) -> Result<String> {
    if let Some(schema) = configured {
        return Ok(schema.to_string());
    }
    let row = client
        .query_one("SELECT current_schema()::text", &[])
        .await
        .map_err(db_error)?;
    let schema: Option<String> = row.get(0);
    let schema =
        schema.ok_or_else(|| Error::invalid("the PostgreSQL search path names no schema"))?;
    crate::store::validate_identifier(&schema)
        .map_err(|m| Error::config("store.postgres_schema", m))?;
    Ok(schema)
}

/// Writes every table as of one snapshot.
pub(super) async fn export(
    client: &mut Client,
    writer: &mut ArchiveWriter,
    progress: &ProgressFn<'_>,
) -> Result<()> {
    let tx = client
        .build_transaction()
        .isolation_level(tokio_postgres::IsolationLevel::RepeatableRead)
        .read_only(true)
        .start()
        .await
        .map_err(db_error)?;
    let mut done = 0u64;
    for table in TABLES {
        writer.begin_table(table)?;
        // Text keys sort bytewise ("C"), as in SQLite, so both backends
        // export the same rows in the same order.
        let order = if table.name == "meta" {
            "key COLLATE \"C\"".to_string()
        } else {
            table.order_by.to_string()
        };
        let sql = format!(
            "SELECT {} FROM {} ORDER BY {order}",
            super::column_list(table),
            table.name
        );
        let stmt = tx.prepare(&sql).await.map_err(db_error)?;
        let portal = tx.bind(&stmt, &[]).await.map_err(db_error)?;
        loop {
            let rows = tx.query_portal(&portal, 5000).await.map_err(db_error)?;
            if rows.is_empty() {
                break;
            }
            for row in &rows {
                let mut values = Vec::with_capacity(table.columns.len());
                for (i, (_, ty)) in table.columns.iter().enumerate() {
                    values.push(read_value(row, i, *ty)?);
                }
                writer.row(table, &values)?;
                done += 1;
            }
            progress(&super::Progress::rows(table.name, done));
        }
        writer.end_table()?;
    }
    tx.commit().await.map_err(db_error)?;
    Ok(())
}

fn read_value(row: &tokio_postgres::Row, i: usize, ty: ColType) -> Result<Value> {
    let get = |e: tokio_postgres::Error| db_error(e);
    Ok(match ty {
        ColType::Uuid => row
            .try_get::<_, Option<uuid::Uuid>>(i)
            .map_err(get)?
            .map_or(Value::Null, Value::Uuid),
        ColType::Bytes => row
            .try_get::<_, Option<Vec<u8>>>(i)
            .map_err(get)?
            .map_or(Value::Null, Value::Bytes),
        ColType::Text => row
            .try_get::<_, Option<String>>(i)
            .map_err(get)?
            .map_or(Value::Null, Value::Text),
        ColType::Int => row
            .try_get::<_, Option<i64>>(i)
            .map_err(get)?
            .map_or(Value::Null, Value::Int),
        ColType::Int32 => row
            .try_get::<_, Option<i32>>(i)
            .map_err(get)?
            .map_or(Value::Null, |n| Value::Int(i64::from(n))),
        ColType::Time => row
            .try_get::<_, Option<DateTime<Utc>>>(i)
            .map_err(get)?
            .map_or(Value::Null, |t| Value::Time(t.timestamp_micros())),
        ColType::Bool => row
            .try_get::<_, Option<bool>>(i)
            .map_err(get)?
            .map_or(Value::Null, Value::Bool),
    })
}

fn to_sql(ty: ColType, value: Value) -> Result<Box<dyn ToSql + Sync + Send>> {
    let bad = super::schema::malformed;
    Ok(match (ty, value) {
        (ColType::Uuid, Value::Null) => Box::new(None::<uuid::Uuid>),
        (ColType::Uuid, Value::Uuid(u)) => Box::new(Some(u)),
        (ColType::Bytes, Value::Null) => Box::new(None::<Vec<u8>>),
        (ColType::Bytes, Value::Bytes(b)) => Box::new(Some(b)),
        (ColType::Text, Value::Null) => Box::new(None::<String>),
        (ColType::Text, Value::Text(t)) => Box::new(Some(t)),
        (ColType::Int, Value::Null) => Box::new(None::<i64>),
        (ColType::Int, Value::Int(n)) => Box::new(Some(n)),
        (ColType::Int32, Value::Null) => Box::new(None::<i32>),
        (ColType::Int32, Value::Int(n)) => Box::new(Some(i32::try_from(n).map_err(|_| bad())?)),
        (ColType::Time, Value::Null) => Box::new(None::<DateTime<Utc>>),
        (ColType::Time, Value::Time(us)) => Box::new(Some(
            DateTime::<Utc>::from_timestamp_micros(us).ok_or_else(bad)?,
        )),
        (ColType::Bool, Value::Null) => Box::new(None::<bool>),
        (ColType::Bool, Value::Bool(b)) => Box::new(Some(b)),
        _ => return Err(bad()),
    })
}

/// Fills the (migrated, empty) staging schema from the archive, in one transaction.
pub(super) async fn import(
    client: &mut Client,
    reader: &mut ArchiveReader,
    importer: &mut Importer,
    progress: &ProgressFn<'_>,
) -> Result<()> {
    let tx = client.transaction().await.map_err(db_error)?;
    let mut current: Option<&'static Table> = None;
    let mut batch: Vec<Box<dyn ToSql + Sync + Send>> = Vec::new();
    let mut rows_in_batch = 0usize;
    loop {
        let item = super::archive::next_item(reader, current)?;
        match item {
            None => break,
            Some(Item::Table(table)) => {
                importer.begin(table)?;
                current = Some(table);
            }
            Some(Item::Row(row)) => {
                let table = current.ok_or_else(super::schema::malformed)?;
                if importer.accept(table, &row)? {
                    for ((_, ty), value) in table.columns.iter().zip(row) {
                        batch.push(to_sql(*ty, value)?);
                    }
                    rows_in_batch += 1;
                    if rows_in_batch == INSERT_BATCH {
                        insert(&tx, table, &batch, rows_in_batch).await?;
                        batch.clear();
                        rows_in_batch = 0;
                    }
                }
                importer.report(reader, progress);
            }
            Some(Item::TableEnd) => {
                let table = current.take().ok_or_else(super::schema::malformed)?;
                if rows_in_batch > 0 {
                    insert(&tx, table, &batch, rows_in_batch).await?;
                    batch.clear();
                    rows_in_batch = 0;
                }
                importer.end()?;
            }
        }
    }
    tx.commit().await.map_err(db_error)
}

async fn insert(
    tx: &tokio_postgres::Transaction<'_>,
    table: &Table,
    params: &[Box<dyn ToSql + Sync + Send>],
    rows: usize,
) -> Result<()> {
    let width = table.columns.len();
    let mut sql = format!(
        "INSERT INTO {} ({}) VALUES ",
        table.name,
        super::column_list(table)
    );
    for r in 0..rows {
        if r > 0 {
            sql.push(',');
        }
        sql.push('(');
        for c in 0..width {
            if c > 0 {
                sql.push(',');
            }
            sql.push_str(&format!("${}", r * width + c + 1));
        }
        sql.push(')');
    }
    let refs: Vec<&(dyn ToSql + Sync)> = params
        .iter()
        .map(|p| p.as_ref() as &(dyn ToSql + Sync))
        .collect();
    tx.execute(sql.as_str(), &refs).await.map_err(db_error)?;
    Ok(())
}

/// Moves every table from `staging` into `target` (replacing what is there)
/// and drops `staging`, in one transaction.
pub(super) async fn swap(client: &mut Client, staging: &str, target: &str) -> Result<()> {
    for schema in [staging, target] {
        crate::store::validate_identifier(schema)
            .map_err(|m| Error::config("store.postgres_schema", m))?;
    }
    let tx = client.transaction().await.map_err(db_error)?;
    // Identifiers were validated above; they cannot be parameters.
    let names = TABLES.iter().map(|t| t.name).chain(["schema_migrations"]);
    let mut sql = format!("CREATE SCHEMA IF NOT EXISTS {target};");
    for name in names.clone() {
        sql.push_str(&format!("DROP TABLE IF EXISTS {target}.{name} CASCADE;"));
    }
    for name in names {
        sql.push_str(&format!(
            "ALTER TABLE {staging}.{name} SET SCHEMA {target};"
        ));
    }
    sql.push_str(&format!("DROP SCHEMA {staging} CASCADE;"));
    tx.batch_execute(&sql).await.map_err(db_error)?;
    tx.commit().await.map_err(db_error)
}

/// Drops a staging schema (after a refused restore).
pub(super) async fn drop_schema(client: &Client, schema: &str) {
    if crate::store::validate_identifier(schema).is_ok() {
        let _ = client
            .batch_execute(&format!("DROP SCHEMA IF EXISTS {schema} CASCADE"))
            .await;
    }
}
