//! The audit trail's SQL, shared by the SQL backends.
//!
//! The events table takes only appends in key order: its primary key
//! (time-ordered ids), the `(chain_id, seq)` key and the time index all
//! grow at their right edge. The indexes by patient and by actor, whose
//! keys land anywhere, are kept in tables of their own
//! (`audit_by_patient`, `audit_by_actor`), filled off the commit path in
//! large sorted batches by [`index_audit`](crate::audit::AuditStore::index_audit).
//! A per-chain mark (`audit_index_marks`) says how far each chain is
//! indexed; a query reads the index up to the marks and the chains' events
//! past them (the unindexed tail), so it is complete whatever the
//! indexer's lag.

use uuid::Uuid;

use crate::audit::AuditFilter;

/// The filter's conditions on the events table, each as ` AND column op
/// placeholder`, columns prefixed by `alias`.
fn conditions(filter: &AuditFilter, dialect: Dialect, alias: &str) -> String {
    let mut sql = String::new();
    for (set, condition, n) in [
        (filter.patient_id.is_some(), "patient_id =", 2),
        (filter.actor_id.is_some(), "actor_id =", 3),
        (filter.subtype.is_some(), "subtype =", 4),
        (filter.outcome.is_some(), "outcome =", 5),
        (filter.from.is_some(), "recorded >=", 6),
        (filter.to.is_some(), "recorded <", 7),
    ] {
        if set {
            sql.push_str(&format!(
                " AND {alias}{condition} {}",
                dialect.placeholder(n)
            ));
        }
    }
    sql
}

/// `columns` (a comma-separated list, or `*`) read from the events table
/// under the alias `e`, with the id taken from `id_from` instead.
fn qualified(columns: &str, id_from: &str) -> String {
    if columns.trim() == "*" {
        return "e.*".into();
    }
    columns
        .split(',')
        .map(str::trim)
        .map(|c| {
            if c == "id" {
                format!("{id_from}.id")
            } else {
                format!("e.{c}")
            }
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// The chains with events, found one at a time through the `(chain_id,
/// seq)` key (a loose index scan): the cost grows with the number of
/// chains, not of events.
const EVENT_CHAINS_CTE: &str = "chains(id) AS (
        SELECT (SELECT chain_id FROM audit_events ORDER BY chain_id LIMIT 1)
        UNION ALL
        SELECT (SELECT chain_id FROM audit_events WHERE chain_id > chains.id ORDER BY chain_id LIMIT 1)
        FROM chains WHERE chains.id IS NOT NULL)";

/// The SQL backend a statement is written for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Dialect {
    /// SQLite: `?n` placeholders, the index tables in the attached
    /// `audit_index` database.
    #[cfg(feature = "sqlite")]
    Sqlite,
    /// PostgreSQL: `$n` placeholders, the index tables beside the events.
    #[cfg(feature = "postgres")]
    Postgres,
}

impl Dialect {
    /// Parameter `n` in this dialect.
    pub(crate) fn placeholder(self, n: usize) -> String {
        match self {
            #[cfg(feature = "sqlite")]
            Dialect::Sqlite => format!("?{n}"),
            #[cfg(feature = "postgres")]
            Dialect::Postgres => format!("${n}"),
        }
    }

    /// The prefix of the index tables' names.
    pub(crate) fn index_schema(self) -> &'static str {
        match self {
            #[cfg(feature = "sqlite")]
            Dialect::Sqlite => "audit_index.",
            #[cfg(feature = "postgres")]
            Dialect::Postgres => "",
        }
    }
}

/// The query for the events that match `filter`, with only the conditions
/// it sets: a condition written as `$2 IS NULL OR patient_id = $2` keeps a
/// database from using an index (SQLite always, and PostgreSQL under a
/// generic plan), so a patient's or a user's trail would be found by
/// scanning the whole log.
///
/// A query by patient (or else by actor) reads that index table, joined
/// back to the events, and each chain's unindexed tail, read by its
/// `(chain_id, seq)` key past the chain's mark; every condition is checked
/// on the event itself, so an index entry never stands for more than its
/// event says. Both parts come in id order and merge under the limit.
///
/// The parameter numbers are fixed, whichever conditions are present: 1
/// the id to start after; 2 to 7 the filter's patient, actor, subtype,
/// outcome, `from` and `to`; 8 the limit.
pub(crate) fn audit_query_sql(columns: &str, filter: &AuditFilter, dialect: Dialect) -> String {
    let placeholder = |n| dialect.placeholder(n);
    let (after, limit) = (placeholder(1), placeholder(8));
    let by = if filter.patient_id.is_some() {
        Some(("audit_by_patient", "patient_id", placeholder(2)))
    } else if filter.actor_id.is_some() {
        Some(("audit_by_actor", "actor_id", placeholder(3)))
    } else {
        None
    };
    let Some((table, key, value)) = by else {
        return format!(
            "SELECT {columns} FROM audit_events WHERE id > {after}{} ORDER BY id LIMIT {limit}",
            conditions(filter, dialect, "")
        );
    };
    let schema = dialect.index_schema();
    let checks = conditions(filter, dialect, "e.");
    let (indexed, tail) = (qualified(columns, "x"), qualified(columns, "e"));
    // Each chain's tail by its key: SQLite takes the join order of a
    // CROSS JOIN as written; PostgreSQL is held to it by a LATERAL
    // subquery it may not flatten (OFFSET 0).
    let tail_events = match dialect {
        #[cfg(feature = "sqlite")]
        Dialect::Sqlite => {
            "CROSS JOIN audit_events e
             WHERE e.chain_id = c.id AND e.seq > coalesce(m.seq, 0)"
        }
        #[cfg(feature = "postgres")]
        Dialect::Postgres => {
            "CROSS JOIN LATERAL (
                 SELECT * FROM audit_events t
                 WHERE t.chain_id = c.id AND t.seq > coalesce(m.seq, 0) OFFSET 0) e
             WHERE true"
        }
    };
    format!(
        "WITH RECURSIVE {EVENT_CHAINS_CTE}
         SELECT {indexed} FROM {schema}{table} x JOIN audit_events e ON e.id = x.id
         WHERE x.{key} = {value} AND x.id > {after}{checks}
         UNION ALL
         SELECT {tail} FROM chains c
         LEFT JOIN {schema}audit_index_marks m ON m.chain_id = c.id
         {tail_events} AND c.id IS NOT NULL AND e.id > {after}{checks}
         ORDER BY 1 LIMIT {limit}"
    )
}

/// Adds a mark at 0 for every chain with events that has none yet (a chain
/// started since the last run, or every chain after a restore).
pub(crate) fn discover_chains_sql(dialect: Dialect) -> String {
    let index_schema = dialect.index_schema();
    format!(
        "WITH RECURSIVE {EVENT_CHAINS_CTE}
         INSERT INTO {index_schema}audit_index_marks (chain_id, seq)
         SELECT id, 0 FROM chains WHERE id IS NOT NULL
         ON CONFLICT (chain_id) DO NOTHING"
    )
}

/// The condition, on events `e`, that selects what
/// [`purge_audit_before`](crate::audit::AuditStore::purge_audit_before)
/// deletes: per chain, everything up to its last checkpoint whose event
/// was recorded before the parameter `before`.
pub(crate) fn purge_condition(before: &str) -> String {
    format!(
        "e.seq <= (
             SELECT max(c.seq) FROM audit_checkpoints c
             JOIN audit_events x ON x.chain_id = c.chain_id AND x.seq = c.seq
             WHERE c.chain_id = e.chain_id AND x.recorded < {before})"
    )
}

/// Every chain id with events or checkpoints, in order. Each table is
/// walked by its `(chain_id, seq)` index one chain at a time (a loose
/// index scan), so the cost grows with the number of chains, not events:
/// sinks ask this every few seconds of a trail with millions of events.
pub(crate) const AUDIT_CHAINS_SQL: &str = "WITH RECURSIVE
    e(id) AS (
        SELECT (SELECT chain_id FROM audit_events ORDER BY chain_id LIMIT 1)
        UNION ALL
        SELECT (SELECT chain_id FROM audit_events WHERE chain_id > e.id ORDER BY chain_id LIMIT 1)
        FROM e WHERE e.id IS NOT NULL),
    c(id) AS (
        SELECT (SELECT chain_id FROM audit_checkpoints ORDER BY chain_id LIMIT 1)
        UNION ALL
        SELECT (SELECT chain_id FROM audit_checkpoints WHERE chain_id > c.id ORDER BY chain_id LIMIT 1)
        FROM c WHERE c.id IS NOT NULL)
SELECT id FROM e WHERE id IS NOT NULL
UNION
SELECT id FROM c WHERE id IS NOT NULL
ORDER BY 1";

/// An event as the indexes see it: its id, patient and actor.
pub(crate) type IndexedEvent = (Uuid, Option<Uuid>, Option<Uuid>);

/// Index entries: `(key, event id)`.
pub(crate) type IndexEntries = Vec<(Uuid, Uuid)>;

/// One batch of index entries, by patient and by actor, each sorted by key
/// and then id, so that each index table is filled in its own order.
pub(crate) fn sorted_entries(events: &[IndexedEvent]) -> (IndexEntries, IndexEntries) {
    let mut by_patient: IndexEntries = events
        .iter()
        .filter_map(|(id, patient, _)| patient.map(|p| (p, *id)))
        .collect();
    let mut by_actor: IndexEntries = events
        .iter()
        .filter_map(|(id, _, actor)| actor.map(|a| (a, *id)))
        .collect();
    by_patient.sort_unstable();
    by_actor.sort_unstable();
    (by_patient, by_actor)
}
