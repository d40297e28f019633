//! S-AUD-5: the audit trail's indexes by patient and actor, filled off the
//! commit path, stay exact when several instances index one store at once
//! while events keep arriving.

use std::sync::Arc;

use clarity_core::audit::{AuditEvent, AuditFilter, AuditStore};
use clarity_core::testing::conformance::bare_event;
use clarity_core::testing::{self, Harness};
use uuid::Uuid;

const CHAINS: usize = 4;
const EVENTS_PER_CHAIN: i64 = 240;
const BATCH: i64 = 12;
const PATIENTS: usize = 5;
const INDEXERS: usize = 3;

/// An unchained event (the store does not check MACs) about `patient`.
fn event(chain: Uuid, seq: i64, patient: Uuid, actor: Uuid) -> AuditEvent {
    let mut event = bare_event(chain, seq, &Ok(()));
    event.patient_id = Some(patient);
    event.actor_id = Some(actor);
    event
}

/// Every page of `filter`'s events, in order.
async fn all(store: &dyn AuditStore, filter: &AuditFilter) -> Vec<Uuid> {
    let mut seen = Vec::new();
    let mut after = None;
    loop {
        let page = store.query_audit(filter, after, 97).await.expect("query");
        seen.extend(page.iter().map(|e| e.id));
        match page.last() {
            Some(last) if page.len() == 97 => after = Some(last.id),
            _ => return seen,
        }
    }
}

async fn concurrent_indexers_index_each_event_once(h: Harness) {
    let store: Arc<dyn AuditStore> = Arc::clone(&h.audit);
    let patients: Vec<Uuid> = (0..PATIENTS).map(|_| Uuid::now_v7()).collect();
    let actor = Uuid::now_v7();
    let writers = (0..CHAINS).map(|c| {
        let (store, patients) = (Arc::clone(&store), patients.clone());
        tokio::spawn(async move {
            let chain = Uuid::now_v7();
            let mut written = Vec::new();
            for start in (1..=EVENTS_PER_CHAIN).step_by(BATCH as usize) {
                let batch: Vec<AuditEvent> = (start..start + BATCH)
                    .map(|seq| event(chain, seq, patients[(seq as usize + c) % PATIENTS], actor))
                    .collect();
                store.append_audit(&batch, None).await.expect("append");
                written.extend(batch);
                tokio::task::yield_now().await;
            }
            written
        })
    });
    let writers: Vec<_> = writers.collect();
    let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let indexers: Vec<_> = (0..INDEXERS)
        .map(|_| {
            let (store, done) = (Arc::clone(&store), Arc::clone(&done));
            tokio::spawn(async move {
                let mut indexed = 0;
                while !done.load(std::sync::atomic::Ordering::Acquire) {
                    indexed += store.index_audit(50).await.expect("index");
                    tokio::task::yield_now().await;
                }
                indexed
            })
        })
        .collect();
    let mut events = Vec::new();
    for writer in writers {
        events.extend(writer.await.expect("writer"));
    }
    // Queries are exact mid-way, whatever the indexers have reached.
    let midway = all(
        store.as_ref(),
        &AuditFilter {
            patient_id: Some(patients[0]),
            ..AuditFilter::default()
        },
    )
    .await;
    done.store(true, std::sync::atomic::Ordering::Release);
    let mut indexed = 0;
    for indexer in indexers {
        indexed += indexer.await.expect("indexer");
    }
    loop {
        let more = store.index_audit(1000).await.expect("index");
        if more == 0 {
            break;
        }
        indexed += more;
    }
    assert_eq!(
        indexed,
        events.len(),
        "the indexers together indexed each event exactly once"
    );
    for (n, patient) in patients.iter().enumerate() {
        let mut want: Vec<Uuid> = events
            .iter()
            .filter(|e| e.patient_id == Some(*patient))
            .map(|e| e.id)
            .collect();
        want.sort();
        let got = all(
            store.as_ref(),
            &AuditFilter {
                patient_id: Some(*patient),
                ..AuditFilter::default()
            },
        )
        .await;
        assert_eq!(got, want, "patient {n}: every event, once, in order");
        if n == 0 {
            assert_eq!(midway, want, "mid-way, before the indexers caught up");
        }
    }
    let mut want: Vec<Uuid> = events.iter().map(|e| e.id).collect();
    want.sort();
    let by_actor = all(
        store.as_ref(),
        &AuditFilter {
            actor_id: Some(actor),
            ..AuditFilter::default()
        },
    )
    .await;
    assert_eq!(by_actor, want, "the actor's events, once, in order");
}

// S-AUD-5
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_indexers_on_sqlite() {
    concurrent_indexers_index_each_event_once(testing::sqlite().await.expect("sqlite")).await;
}

// S-AUD-5
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_indexers_on_postgres() {
    let Some(h) = testing::postgres().await else {
        return;
    };
    concurrent_indexers_index_each_event_once(h).await;
}
