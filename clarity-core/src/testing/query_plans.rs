//! The query plans PostgreSQL makes for the audit trail's queries: a
//! patient's or a user's trail must be found through its index (S-AUD-5).

#[cfg(test)]
mod tests {
    use uuid::Uuid;

    use crate::audit::AuditFilter;
    use crate::store::audit_query_sql;

    /// The plan PostgreSQL makes for the audit query of `filter` when it
    /// plans for any parameter values (a generic plan, as it may for a
    /// statement run often), with sequential scans priced out so that the
    /// plan shows whether an index can serve the query at all.
    async fn generic_plan(client: &tokio_postgres::Client, filter: &AuditFilter) -> String {
        let sql = audit_query_sql("*", filter, crate::store::Dialect::Postgres);
        client
            .batch_execute(&format!(
                "DEALLOCATE ALL; SET enable_seqscan = off; SET plan_cache_mode = force_generic_plan;
                 PREPARE q(uuid, uuid, uuid, text, text, timestamptz, timestamptz, bigint) AS {sql}"
            ))
            .await
            .expect("prepare");
        let nil = Uuid::nil();
        let rows = client
            .query(
                &format!(
                    "EXPLAIN EXECUTE q('{nil}', '{nil}', '{nil}', 'patient.read', '0', NULL, NULL, 10)"
                ),
                &[],
            )
            .await
            .expect("explain");
        rows.iter()
            .map(|r| r.get::<_, String>(0))
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// A patient's or a user's audit trail is found through its index
    /// under any plan, not by reading the whole log.
    // S-AUD-5
    #[tokio::test]
    async fn audit_queries_by_patient_or_actor_use_their_index() {
        let Some(harness) = super::super::postgres().await else {
            return;
        };
        let url = std::env::var(super::super::POSTGRES_URL_VAR).expect("url");
        let client = super::super::raw::pg_connect(&url, harness.schema()).await;
        let by_patient = AuditFilter {
            patient_id: Some(Uuid::nil()),
            ..AuditFilter::default()
        };
        let plan = generic_plan(&client, &by_patient).await;
        // The index entries by their key and each chain's unindexed tail
        // by its (chain_id, seq) key.
        let tail = "Index Cond: ((chain_id = c.id) AND (seq > COALESCE(m.seq, '0'::bigint)))";
        assert!(plan.contains("audit_by_patient_pkey"), "{plan}");
        assert!(plan.contains(tail), "{plan}");
        let by_actor = AuditFilter {
            actor_id: Some(Uuid::nil()),
            subtype: Some("patient.read".into()),
            ..AuditFilter::default()
        };
        let plan = generic_plan(&client, &by_actor).await;
        assert!(plan.contains("audit_by_actor_pkey"), "{plan}");
        assert!(plan.contains(tail), "{plan}");
    }
}
