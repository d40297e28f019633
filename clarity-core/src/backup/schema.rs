//! The logical form of a store: every table Clarity keeps, its columns with a
//! backend-neutral type, and the binary encoding of a row in an archive. Both
//! SQL backends hold the same tables and columns (their migrations mirror each
//! other), so one description serves SQLite and PostgreSQL, and an archive of
//! one restores into the other.

use std::io::{Read, Write};

use crate::error::{Error, Result};

/// A column's type, independent of the backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ColType {
    /// UUID: a 16-byte blob in SQLite, `uuid` in PostgreSQL.
    Uuid,
    /// Bytes: `BLOB` / `bytea`.
    Bytes,
    /// UTF-8 text.
    Text,
    /// 64-bit integer: `INTEGER` / `bigint`.
    Int,
    /// 32-bit integer: `INTEGER` / `integer`.
    Int32,
    /// A time: microseconds since the epoch in SQLite, `timestamptz` in PostgreSQL.
    Time,
    /// A boolean: 0/1 in SQLite, `boolean` in PostgreSQL.
    Bool,
}

/// One table: its name, columns and the order rows are exported in.
#[derive(Debug)]
pub(crate) struct Table {
    pub(crate) name: &'static str,
    pub(crate) columns: &'static [(&'static str, ColType)],
    /// `ORDER BY` columns: the primary key, so both backends export rows in
    /// the same order and the same content hashes to the same digest.
    pub(crate) order_by: &'static str,
}

use ColType::{Bool, Bytes, Int, Int32, Text, Time, Uuid};

/// Every table, parents before children (foreign keys).
pub(crate) const TABLES: &[Table] = &[
    Table {
        name: "meta",
        columns: &[("key", Text), ("value", Text)],
        order_by: "key",
    },
    Table {
        name: "patients",
        columns: &[
            ("id", Uuid),
            ("profile", Bytes),
            ("mrn_index", Bytes),
            ("email_index", Bytes),
            ("name_dob_index", Bytes),
            ("version", Int),
            ("created_at", Time),
            ("updated_at", Time),
            ("erased_at", Time),
        ],
        order_by: "id",
    },
    Table {
        name: "data_keys",
        columns: &[
            ("patient_id", Uuid),
            ("dek_version", Int32),
            ("kek_version", Int32),
            ("wrapped", Bytes),
            ("created_at", Time),
        ],
        order_by: "patient_id",
    },
    Table {
        name: "records",
        columns: &[
            ("id", Uuid),
            ("patient_id", Uuid),
            ("kind", Text),
            ("body", Bytes),
            ("version", Int),
            ("created_by", Uuid),
            ("created_at", Time),
            ("updated_at", Time),
        ],
        order_by: "id",
    },
    Table {
        name: "disclosures",
        columns: &[
            ("id", Uuid),
            ("patient_id", Uuid),
            ("disclosed_at", Time),
            ("details", Bytes),
            ("recorded_by", Uuid),
            ("recorded_at", Time),
        ],
        order_by: "id",
    },
    Table {
        name: "users",
        columns: &[
            ("id", Uuid),
            ("email_index", Bytes),
            ("profile", Bytes),
            ("password_hash", Text),
            ("roles", Text),
            ("disabled", Bool),
            ("patient_id", Uuid),
            ("mfa_secret", Bytes),
            ("mfa_enabled", Bool),
            ("mfa_last_step", Int),
            ("version", Int),
            ("created_at", Time),
            ("updated_at", Time),
        ],
        order_by: "id",
    },
    Table {
        name: "login_failures",
        columns: &[
            ("user_id", Uuid),
            ("count", Int32),
            ("window_start", Time),
            ("last_at", Time),
        ],
        order_by: "user_id",
    },
    Table {
        name: "sessions",
        columns: &[
            ("id", Uuid),
            ("user_id", Uuid),
            ("created_at", Time),
            ("last_seen_at", Time),
            ("expires_at", Time),
            ("revoked_at", Time),
            ("mfa", Bool),
        ],
        order_by: "id",
    },
    Table {
        name: "refresh_tokens",
        columns: &[
            ("hash", Bytes),
            ("session_id", Uuid),
            ("created_at", Time),
            ("used_at", Time),
        ],
        order_by: "hash",
    },
    Table {
        name: "service_secrets",
        columns: &[
            ("user_id", Uuid),
            ("secret_hash", Bytes),
            ("previous_hash", Bytes),
            ("previous_until", Time),
            ("rotated_at", Time),
        ],
        order_by: "user_id",
    },
    Table {
        name: "external_identities",
        columns: &[
            ("id", Uuid),
            ("issuer", Text),
            ("subject", Text),
            ("user_id", Uuid),
            ("created_at", Time),
            ("logged_out_at", Time),
        ],
        order_by: "id",
    },
    Table {
        name: "external_sessions_ended",
        columns: &[("id", Uuid), ("ended_at", Time)],
        order_by: "id",
    },
    Table {
        name: "care_team",
        columns: &[
            ("patient_id", Uuid),
            ("user_id", Uuid),
            ("relationship", Text),
            ("expires_at", Time),
            ("created_at", Time),
        ],
        order_by: "patient_id, user_id",
    },
    Table {
        name: "access_grants",
        columns: &[
            ("id", Uuid),
            ("user_id", Uuid),
            ("patient_id", Uuid),
            ("reason", Bytes),
            ("created_at", Time),
            ("expires_at", Time),
            ("reviewed_at", Time),
            ("reviewed_by", Uuid),
        ],
        order_by: "id",
    },
    Table {
        name: "audit_events",
        columns: &[
            ("id", Uuid),
            ("chain_id", Uuid),
            ("seq", Int),
            ("recorded", Time),
            ("event_type", Text),
            ("subtype", Text),
            ("action", Text),
            ("outcome", Text),
            ("purpose", Text),
            ("actor_id", Uuid),
            ("actor_roles", Text),
            ("client_address", Text),
            ("patient_id", Uuid),
            ("entity_id", Uuid),
            ("query_hash", Text),
            ("reason", Text),
            ("request_id", Text),
            ("actor_issuer", Text),
            ("actor_subject", Text),
            ("prev_mac", Bytes),
            ("mac", Bytes),
        ],
        order_by: "id",
    },
    Table {
        name: "audit_checkpoints",
        columns: &[
            ("chain_id", Uuid),
            ("seq", Int),
            ("mac", Bytes),
            ("signed_at", Time),
            ("signature", Bytes),
        ],
        order_by: "chain_id, seq",
    },
    Table {
        name: "audit_sink_cursors",
        columns: &[
            ("sink", Text),
            ("chain_id", Uuid),
            ("seq", Int),
            ("updated_at", Time),
        ],
        order_by: "sink, chain_id",
    },
    Table {
        name: "audit_sink_leases",
        columns: &[("sink", Text), ("holder", Uuid), ("expires_at", Time)],
        order_by: "sink",
    },
];

/// The table named `name`.
pub(crate) fn table(name: &str) -> Result<&'static Table> {
    TABLES
        .iter()
        .find(|t| t.name == name)
        .ok_or_else(|| Error::invalid(format!("the archive names an unknown table {name:?}")))
}

/// One value of a column.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Value {
    Null,
    Uuid(uuid::Uuid),
    Bytes(Vec<u8>),
    Text(String),
    Int(i64),
    Time(i64),
    Bool(bool),
}

/// Frame markers in the plaintext stream.
pub(crate) const TABLE_START: u8 = 1;
pub(crate) const ROW: u8 = 2;
pub(crate) const TABLE_END: u8 = 3;

/// Longest text or byte value accepted from an archive (64 MiB, the largest document).
const MAX_VALUE: u32 = 64 * 1024 * 1024;

/// Appends the encoding of one row of `table` to `out`.
pub(crate) fn encode_row(table: &Table, row: &[Value], out: &mut Vec<u8>) -> Result<()> {
    if row.len() != table.columns.len() {
        return Err(Error::internal("row does not match its table"));
    }
    out.push(ROW);
    for ((_, ty), value) in table.columns.iter().zip(row) {
        match (ty, value) {
            (_, Value::Null) => out.push(0),
            (ColType::Uuid, Value::Uuid(u)) => {
                out.push(1);
                out.extend_from_slice(u.as_bytes());
            }
            (ColType::Bytes, Value::Bytes(b)) => put_bytes(out, b)?,
            (ColType::Text, Value::Text(t)) => put_bytes(out, t.as_bytes())?,
            (ColType::Int | ColType::Int32, Value::Int(n)) | (ColType::Time, Value::Time(n)) => {
                out.push(1);
                out.extend_from_slice(&n.to_le_bytes());
            }
            (ColType::Bool, Value::Bool(b)) => {
                out.push(1);
                out.push(u8::from(*b));
            }
            _ => {
                return Err(Error::internal(format!(
                    "a value of {} does not match its column type",
                    table.name
                )));
            }
        }
    }
    Ok(())
}

fn put_bytes(out: &mut Vec<u8>, bytes: &[u8]) -> Result<()> {
    let len = u32::try_from(bytes.len())
        .ok()
        .filter(|n| *n <= MAX_VALUE)
        .ok_or_else(|| Error::invalid("a value is too large for an archive"))?;
    out.push(1);
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(bytes);
    Ok(())
}

/// Reads the columns of one row of `table` (after its [`ROW`] marker).
pub(crate) fn decode_row(table: &Table, input: &mut impl Read) -> Result<Vec<Value>> {
    let mut row = Vec::with_capacity(table.columns.len());
    for (_, ty) in table.columns {
        if read_u8(input)? == 0 {
            row.push(Value::Null);
            continue;
        }
        row.push(match ty {
            ColType::Uuid => {
                let mut b = [0u8; 16];
                read_exact(input, &mut b)?;
                Value::Uuid(uuid::Uuid::from_bytes(b))
            }
            ColType::Bytes => Value::Bytes(read_bytes(input)?),
            ColType::Text => {
                Value::Text(String::from_utf8(read_bytes(input)?).map_err(|_| malformed())?)
            }
            ColType::Int | ColType::Int32 => Value::Int(read_i64(input)?),
            ColType::Time => Value::Time(read_i64(input)?),
            ColType::Bool => Value::Bool(read_u8(input)? != 0),
        });
    }
    Ok(row)
}

/// Error for a stream that decrypted but does not parse: made by another
/// program or version, since it authenticated.
pub(crate) fn malformed() -> Error {
    Error::invalid("the archive's contents are malformed")
}

pub(crate) fn read_u8(input: &mut impl Read) -> Result<u8> {
    let mut b = [0u8; 1];
    read_exact(input, &mut b)?;
    Ok(b[0])
}

fn read_i64(input: &mut impl Read) -> Result<i64> {
    let mut b = [0u8; 8];
    read_exact(input, &mut b)?;
    Ok(i64::from_le_bytes(b))
}

pub(crate) fn read_bytes(input: &mut impl Read) -> Result<Vec<u8>> {
    let mut b = [0u8; 4];
    read_exact(input, &mut b)?;
    let len = u32::from_le_bytes(b);
    if len > MAX_VALUE {
        return Err(malformed());
    }
    let mut out = vec![0u8; len as usize];
    read_exact(input, &mut out)?;
    Ok(out)
}

fn read_exact(input: &mut impl Read, buf: &mut [u8]) -> Result<()> {
    input.read_exact(buf).map_err(|e| match e.kind() {
        std::io::ErrorKind::UnexpectedEof => malformed(),
        _ => unwrap_io(e),
    })
}

/// Writes a table-start frame.
pub(crate) fn encode_table_start(table: &Table, out: &mut impl Write) -> std::io::Result<()> {
    out.write_all(&[TABLE_START])?;
    let name = table.name.as_bytes();
    out.write_all(&(name.len() as u32).to_le_bytes())?;
    out.write_all(name)
}

pub(crate) fn io_error(e: std::io::Error) -> Error {
    Error::backend("backup", "cannot read or write the archive file", e)
}

/// Turns an I/O error from [`ArchiveReader`]'s `Read` back into ours.
pub(crate) fn unwrap_io(e: std::io::Error) -> Error {
    match e.into_inner().map(|inner| inner.downcast::<Error>()) {
        Some(Ok(ours)) => *ours,
        Some(Err(other)) => io_error(std::io::Error::other(other)),
        None => malformed(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_round_trip() {
        let t = table("users").expect("users");
        let row = vec![
            Value::Uuid(uuid::Uuid::now_v7()),
            Value::Bytes(vec![1, 2, 3]),
            Value::Bytes(vec![]),
            Value::Text("hash".into()),
            Value::Text("admin".into()),
            Value::Bool(true),
            Value::Null,
            Value::Null,
            Value::Bool(false),
            Value::Int(-5),
            Value::Int(1),
            Value::Time(1_700_000_000_000_000),
            Value::Time(-1),
        ];
        let mut out = Vec::new();
        encode_row(t, &row, &mut out).expect("encode");
        assert_eq!(out[0], ROW);
        let back = decode_row(t, &mut &out[1..]).expect("decode");
        assert_eq!(back, row);
        assert!(decode_row(t, &mut &out[1..10]).is_err(), "truncated");
        assert!(table("nope").is_err());
    }
}
