//! The audit query's SQL, shared by the SQL backends.

use crate::audit::AuditFilter;

/// The query for the events that match `filter`, with only the conditions
/// it sets: a condition written as `$2 IS NULL OR patient_id = $2` keeps a
/// database from using the patient or actor index (SQLite always, and
/// PostgreSQL under a generic plan), so a patient's or a user's trail
/// would be found by scanning the whole log.
///
/// `placeholder(n)` writes parameter `n` in the backend's syntax. The
/// numbers are fixed, whichever conditions are present: 1 the id to start
/// after; 2 to 7 the filter's patient, actor, subtype, outcome, `from` and
/// `to`; 8 the limit.
pub(crate) fn audit_query_sql(
    columns: &str,
    filter: &AuditFilter,
    placeholder: fn(usize) -> String,
) -> String {
    let mut sql = format!(
        "SELECT {columns} FROM audit_events WHERE id > {}",
        placeholder(1)
    );
    for (set, condition, n) in [
        (filter.patient_id.is_some(), "patient_id =", 2),
        (filter.actor_id.is_some(), "actor_id =", 3),
        (filter.subtype.is_some(), "subtype =", 4),
        (filter.outcome.is_some(), "outcome =", 5),
        (filter.from.is_some(), "recorded >=", 6),
        (filter.to.is_some(), "recorded <", 7),
    ] {
        if set {
            sql.push_str(&format!(" AND {condition} {}", placeholder(n)));
        }
    }
    sql.push_str(&format!(" ORDER BY id LIMIT {}", placeholder(8)));
    sql
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
