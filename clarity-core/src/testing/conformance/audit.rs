//! Conformance case for changes committed with their audit events (S-AUD-2),
//! batched or not.

use std::sync::Arc;

use uuid::Uuid;

use super::{body, kind_of, new_patient};
use crate::error::{Error, ErrorKind};
use crate::testing::Harness;

/// An unchained event for slot `seq` of `chain` (the store does not check
/// MACs; the writer makes them), with outcome success when `outcome` is
/// `Ok` and about no one.
pub fn bare_event(
    chain: Uuid,
    seq: i64,
    outcome: &crate::error::Result<()>,
) -> crate::audit::AuditEvent {
    crate::audit::AuditEvent {
        id: Uuid::now_v7(),
        chain_id: chain,
        seq,
        recorded: chrono::Utc::now(),
        event_type: "rest".into(),
        subtype: "record.update".into(),
        action: "U".into(),
        outcome: if outcome.is_ok() { "0" } else { "4" }.into(),
        purpose: None,
        actor_id: None,
        actor_roles: None,
        client_address: None,
        patient_id: None,
        entity_id: None,
        query_hash: None,
        reason: None,
        request_id: None,
        actor_issuer: None,
        actor_subject: None,
        prev_mac: vec![0; 32],
        mac: vec![1; 32],
    }
}

/// S-AUD-2: a change commits in its audit event's transaction. In a batch,
/// a change that fails (stale version, unknown patient) is undone alone and
/// its outcome reaches its event, the others commit; when the batch cannot
/// be stored, none of its changes is.
pub async fn changes_commit_with_their_audit_events(h: &Harness) {
    use crate::audit::AuditBatch;
    use crate::model::Change;

    let patient = new_patient(h).await;
    let author = Uuid::now_v7();
    let existing = h
        .phi
        .create_record(patient.id, "observation", body(60), author)
        .await
        .expect("record");
    let (insert, inserted) = h
        .phi
        .prepare_record(patient.id, "observation", body(61), author)
        .await
        .expect("prepare");
    let (mut stale, _) = h
        .phi
        .prepare_record_update(existing.id, 1, body(62))
        .await
        .expect("prepare update");
    if let Change::UpdateRecord {
        expected_version, ..
    } = &mut stale
    {
        *expected_version = 5;
    }
    let (orphan, _) = h
        .phi
        .prepare_record(patient.id, "observation", body(63), author)
        .await
        .expect("prepare");
    let Change::InsertRecord(mut orphan) = orphan else {
        panic!("an insert")
    };
    orphan.patient_id = Uuid::now_v7();
    // Inserts on either side of the orphan: a run of inserts, which a
    // backend may send together, still gets one outcome per insert.
    let (before, before_row) = h
        .phi
        .prepare_record(patient.id, "observation", body(66), author)
        .await
        .expect("prepare");
    let (after, after_row) = h
        .phi
        .prepare_record(patient.id, "observation", body(67), author)
        .await
        .expect("prepare");

    let chain = Uuid::now_v7();
    let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
    let seen_in_seal = Arc::clone(&seen);
    let stored = h
        .audit
        .append_audit_batch(AuditBatch {
            changes: vec![
                Some(insert),
                Some(stale),
                None,
                Some(before),
                Some(Change::InsertRecord(orphan.clone())),
                Some(after),
            ],
            seal: Box::new(move |outcomes| {
                seen_in_seal
                    .lock()
                    .expect("lock")
                    .extend(outcomes.iter().map(|o| o.as_ref().err().map(Error::kind)));
                let events = (1..)
                    .zip(outcomes)
                    .map(|(seq, o)| bare_event(chain, seq, o))
                    .collect();
                (events, None)
            }),
        })
        .await
        .expect("the batch commits");
    let kinds: Vec<Option<ErrorKind>> = stored
        .outcomes
        .iter()
        .map(|o| o.as_ref().err().map(Error::kind))
        .collect();
    let expected = vec![
        None,
        Some(ErrorKind::Conflict),
        None,
        None,
        Some(ErrorKind::NotFound),
        None,
    ];
    assert_eq!(kinds, expected, "each change's own outcome");
    assert_eq!(
        *seen.lock().expect("lock"),
        expected,
        "the events are sealed with those outcomes"
    );
    let events = h
        .audit
        .audit_chain_events(chain, 0, 100)
        .await
        .expect("events");
    let outcomes: Vec<&str> = events.iter().map(|e| &*e.outcome).collect();
    assert_eq!(outcomes, ["0", "4", "0", "0", "4", "0"]);
    for (id, n) in [(inserted.id, 61), (before_row.id, 66), (after_row.id, 67)] {
        let read = h.phi.get_record(id).await.expect("inserted");
        assert_eq!(read.data.expose(), &body(n));
    }
    let kept = h.phi.get_record(existing.id).await.expect("kept");
    assert_eq!((kept.version, kept.data.expose()), (1, &body(60)));
    assert_eq!(
        kind_of(h.phi.get_record(orphan.id).await),
        ErrorKind::NotFound
    );

    // A batch that cannot be stored (its events clash with stored ones)
    // leaves no change behind.
    let (insert, lost) = h
        .phi
        .prepare_record(patient.id, "observation", body(64), author)
        .await
        .expect("prepare");
    let (update, _) = h
        .phi
        .prepare_record_update(existing.id, 1, body(65))
        .await
        .expect("prepare update");
    let spared = new_patient(h).await;
    let spared_record = h
        .phi
        .create_record(spared.id, "observation", body(66), author)
        .await
        .expect("record");
    let erase = Change::ErasePatient {
        id: spared.id,
        at: chrono::Utc::now(),
    };
    let failed = h
        .audit
        .append_audit_batch(AuditBatch {
            changes: vec![Some(insert), Some(update), Some(erase)],
            seal: Box::new(move |outcomes| {
                assert!(outcomes.iter().all(Result::is_ok), "the changes apply");
                let events = (1..)
                    .zip(outcomes)
                    .map(|(seq, o)| bare_event(chain, seq, o))
                    .collect();
                (events, None)
            }),
        })
        .await;
    assert!(failed.is_err(), "events with taken sequence numbers");
    assert_eq!(
        kind_of(h.phi.get_record(lost.id).await),
        ErrorKind::NotFound
    );
    h.phi
        .get_patient(spared.id)
        .await
        .expect("the erasure of a failed batch is undone");
    h.phi
        .get_record(spared_record.id)
        .await
        .expect("with the patient's records and data key");
    let kept = h.phi.get_record(existing.id).await.expect("kept");
    assert_eq!((kept.version, kept.data.expose()), (1, &body(60)));
    assert_eq!(
        h.audit
            .audit_chain_events(chain, 0, 100)
            .await
            .expect("events")
            .len(),
        6
    );
}

/// S-AUD-2, S-AUD-3: a batch of events with no changes (reads), which a
/// backend may store without a transaction of its own, stores its events
/// and its checkpoint together or not at all; a place in the chain, for an
/// event or a checkpoint, is taken once.
pub async fn events_alone_are_stored_whole(h: &Harness) {
    use crate::audit::{AuditBatch, Checkpoint};

    fn checkpoint(chain: Uuid, seq: i64) -> Checkpoint {
        Checkpoint {
            chain_id: chain,
            seq,
            mac: vec![1; 32],
            signed_at: chrono::Utc::now(),
            signature: vec![2; 64],
        }
    }
    let chain = Uuid::now_v7();
    let batch = |seqs: Vec<i64>, checkpoint_at: i64| AuditBatch {
        changes: seqs.iter().map(|_| None).collect(),
        seal: Box::new(move |outcomes| {
            let events = seqs
                .iter()
                .zip(outcomes)
                .map(|(seq, o)| bare_event(chain, *seq, o))
                .collect();
            (events, Some(checkpoint(chain, checkpoint_at)))
        }),
    };
    let stored = h
        .audit
        .append_audit_batch(batch(vec![1, 2, 3], 3))
        .await
        .expect("stored");
    assert_eq!(stored.events.len(), 3);
    assert!(stored.outcomes.iter().all(Result::is_ok));
    // Event 3 is taken: neither event 4 nor the checkpoint at 4 is stored.
    let refused = h.audit.append_audit_batch(batch(vec![4, 3], 4)).await;
    assert!(refused.is_err(), "a taken sequence number");
    // The checkpoint at 3 is taken: events 4 and 5 are not stored either.
    let refused = h.audit.append_audit_batch(batch(vec![4, 5], 3)).await;
    assert!(refused.is_err(), "a taken checkpoint");
    let events = h
        .audit
        .audit_chain_events(chain, 0, 100)
        .await
        .expect("events");
    assert_eq!(events.iter().map(|e| e.seq).collect::<Vec<_>>(), [1, 2, 3]);
    let checkpoints = h.audit.audit_checkpoints(chain).await.expect("checkpoints");
    assert_eq!(checkpoints.iter().map(|c| c.seq).collect::<Vec<_>>(), [3]);
    // A checkpoint alone, as the writer stores one when its chain idles.
    h.audit
        .append_audit(&[], Some(&checkpoint(chain, 2)))
        .await
        .expect("a checkpoint alone");
    let checkpoints = h.audit.audit_checkpoints(chain).await.expect("checkpoints");
    assert_eq!(
        checkpoints.iter().map(|c| c.seq).collect::<Vec<_>>(),
        [2, 3]
    );
}

/// Audit sinks' state (S-AUD-8): a chain's head, cursors that never move
/// back and are kept per sink, and a delivery lease that one holder has at
/// a time until it expires.
pub async fn sink_cursors_and_leases(h: &Harness) {
    let store = &h.audit;
    let chain = Uuid::now_v7();
    assert_eq!(store.audit_head_seq(chain).await.expect("head"), 0);
    let events: Vec<_> = (1..=3).map(|seq| bare_event(chain, seq, &Ok(()))).collect();
    store.append_audit(&events, None).await.expect("append");
    assert_eq!(store.audit_head_seq(chain).await.expect("head"), 3);

    let now = chrono::Utc::now();
    assert!(
        store
            .sink_cursors("siem")
            .await
            .expect("cursors")
            .is_empty()
    );
    store
        .advance_sink_cursor("siem", chain, 2, now)
        .await
        .expect("advance");
    store
        .advance_sink_cursor("siem", chain, 1, now)
        .await
        .expect("a stale advance is ignored");
    assert_eq!(
        store.sink_cursors("siem").await.expect("cursors"),
        vec![(chain, 2)]
    );
    assert!(
        store
            .sink_cursors("other")
            .await
            .expect("cursors")
            .is_empty()
    );

    let (a, b) = (Uuid::now_v7(), Uuid::now_v7());
    let later = now + chrono::Duration::seconds(15);
    assert!(
        store
            .claim_sink_lease("siem", a, now, later)
            .await
            .expect("claim")
    );
    assert!(
        !store
            .claim_sink_lease("siem", b, now, later)
            .await
            .expect("claim"),
        "a live lease is its holder's"
    );
    assert!(
        store
            .claim_sink_lease("siem", a, now, later)
            .await
            .expect("renew")
    );
    assert!(
        store
            .claim_sink_lease("other", b, now, later)
            .await
            .expect("claim"),
        "leases are per sink"
    );
    let expired = later + chrono::Duration::seconds(1);
    assert!(
        store
            .claim_sink_lease("siem", b, expired, expired + chrono::Duration::seconds(15))
            .await
            .expect("take over"),
        "an expired lease passes to another holder"
    );
    assert!(
        !store
            .claim_sink_lease("siem", a, expired, later)
            .await
            .expect("claim")
    );
    // A holder that stops hands the lease back at once.
    store
        .claim_sink_lease("siem", b, expired, expired - chrono::Duration::seconds(1))
        .await
        .expect("release");
    assert!(
        store
            .claim_sink_lease("siem", a, expired, expired + chrono::Duration::seconds(15))
            .await
            .expect("claim"),
        "a released lease is free"
    );
}

/// S-AUD-5: a query by patient or by actor finds every matching event,
/// once, in id order, whether the events are indexed, waiting to be, or
/// half of each (the indexer stopped mid-chain); paging crosses from the
/// index to the unindexed tail; purged events are gone from both.
pub async fn audit_queries_read_the_index_and_the_tail(h: &Harness) {
    use crate::audit::{AuditFilter, Checkpoint};

    let store = &h.audit;
    let (patient, other, actor) = (Uuid::now_v7(), Uuid::now_v7(), Uuid::now_v7());
    let (one, two) = (Uuid::now_v7(), Uuid::now_v7());
    let old = chrono::Utc::now() - chrono::Duration::days(30);
    let mut expected = Vec::new();
    let append = async |chain: Uuid, seqs: std::ops::RangeInclusive<i64>, at| {
        let mut events = Vec::new();
        for seq in seqs {
            let mut event = bare_event(chain, seq, &Ok(()));
            event.recorded = at;
            event.patient_id = Some(if seq % 3 == 0 { other } else { patient });
            event.actor_id = Some(actor);
            events.push(event);
        }
        store.append_audit(&events, None).await.expect("append");
        events
    };
    let by_patient = AuditFilter {
        patient_id: Some(patient),
        ..AuditFilter::default()
    };
    let by_actor = AuditFilter {
        actor_id: Some(actor),
        subtype: Some("record.update".into()),
        ..AuditFilter::default()
    };
    let ids = async |filter: &AuditFilter, page: usize| {
        let mut seen = Vec::new();
        let mut after = None;
        loop {
            let events = store.query_audit(filter, after, page).await.expect("query");
            seen.extend(events.iter().map(|e| e.id));
            match events.last() {
                Some(last) if events.len() == page => after = Some(last.id),
                _ => return seen,
            }
        }
    };

    // Old events on chain one, checkpointed at 6, then more on both chains.
    expected.extend(append(one, 1..=6, old).await);
    store
        .append_audit(
            &[],
            Some(&Checkpoint {
                chain_id: one,
                seq: 6,
                mac: vec![1; 32],
                signed_at: old,
                signature: vec![0; 64],
            }),
        )
        .await
        .expect("checkpoint");
    expected.extend(append(two, 1..=5, chrono::Utc::now()).await);
    let indexed = store.index_audit(4).await.expect("index");
    assert!(
        indexed <= 4,
        "the indexer took {indexed} events, past its limit"
    );
    expected.extend(append(one, 7..=12, chrono::Utc::now()).await);
    let want = |expected: &[crate::audit::AuditEvent],
                key: fn(&crate::audit::AuditEvent) -> bool| {
        let mut ids: Vec<Uuid> = expected.iter().filter(|e| key(e)).map(|e| e.id).collect();
        ids.sort();
        ids
    };
    let patient_ids = |e: &crate::audit::AuditEvent| e.seq % 3 != 0;
    for round in 0..3 {
        assert_eq!(
            ids(&by_patient, 2).await,
            want(&expected, patient_ids),
            "round {round}: the patient's events, each once"
        );
        assert_eq!(
            ids(&by_actor, 3).await,
            want(&expected, |_| true),
            "round {round}: the actor's events, each once"
        );
        // Partly indexed, then all of it.
        store.index_audit(5).await.expect("index");
        if round == 1 {
            while store.index_audit(1000).await.expect("index") > 0 {}
        }
    }

    // Purging chain one up to its checkpoint takes its first six events
    // out of every query.
    assert_eq!(
        store
            .purge_audit_before(old + chrono::Duration::seconds(1))
            .await
            .expect("purge"),
        6
    );
    expected.retain(|e| !(e.chain_id == one && e.seq <= 6));
    assert_eq!(ids(&by_patient, 2).await, want(&expected, patient_ids));
    assert_eq!(ids(&by_actor, 100).await, want(&expected, |_| true));
}
