//! Audit sinks (S-AUD-8): every event reaches the sink, in order within its
//! chain, once per delivery (at least once across failures); a restart
//! resumes from the cursor kept in the store; instances sharing a store
//! deliver each event once between them; an outage delays delivery and
//! never the service, unless the sink is fail-closed; events carry
//! identifiers, never PHI (S-AUD-4). On SQLite and PostgreSQL.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use clarity_core::audit::SinkConfig;
use clarity_core::clock::SystemClock;
use clarity_core::model::{PatientProfile, Role};
use clarity_core::testing::{self, Harness, principal};
use clarity_core::{Clarity, Config, ErrorKind};
use uuid::Uuid;

const GIVEN_NAME: &str = "Sinkwatcher";

fn profile() -> PatientProfile {
    PatientProfile {
        mrn: format!("SK-{}", Uuid::new_v4().simple()),
        given_name: GIVEN_NAME.into(),
        family_name: "Streamed".into(),
        birth_date: "1975-03-04".into(),
        sex: "male".into(),
        email: None,
        phone: None,
        address: None,
        data: None,
    }
}

fn file_sink(name: &str, path: &Path, fail_closed_after: Option<u64>) -> SinkConfig {
    serde_json::from_value(serde_json::json!({
        "name": name,
        "kind": "file",
        "path": path,
        "batch": 7,
        "fail_closed": fail_closed_after.is_some(),
        "fail_closed_after_secs": fail_closed_after.unwrap_or(60),
    }))
    .expect("sink settings")
}

fn config_with(sinks: Vec<SinkConfig>) -> Config {
    let mut config = Config::default();
    config.audit.sinks = sinks;
    config
}

/// Creates a patient and reads it `reads` times.
async fn work(clarity: &Clarity, reads: usize) {
    let clinician = principal(clarity, Role::Clinician).await;
    let patient = clarity
        .create_patient(&clinician, profile())
        .await
        .expect("patient");
    for _ in 0..reads {
        clarity
            .get_patient(&clinician, patient.id)
            .await
            .expect("read");
    }
}

/// The delivered lines, as (chain, seq) in file order, checking that each
/// line is a whole JSON event.
fn delivered(path: &Path) -> Vec<(Uuid, i64)> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    text.lines()
        .map(|line| {
            let v: serde_json::Value = serde_json::from_str(line).expect("a JSON line");
            assert_eq!(v["mac"].as_str().map(str::len), Some(64), "{line}");
            (
                v["chain_id"]
                    .as_str()
                    .expect("chain")
                    .parse()
                    .expect("uuid"),
                v["seq"].as_i64().expect("seq"),
            )
        })
        .collect()
}

/// Asserts that `lines` hold each event of every chain in `h`'s store
/// exactly once, in sequence order within its chain.
async fn assert_complete_once_in_order(h: &Harness, lines: &[(Uuid, i64)]) {
    let mut by_chain: BTreeMap<Uuid, Vec<i64>> = BTreeMap::new();
    for (chain, seq) in lines {
        by_chain.entry(*chain).or_default().push(*seq);
    }
    let chains = h.audit.audit_chains().await.expect("chains");
    assert_eq!(
        chains,
        by_chain.keys().copied().collect::<Vec<_>>(),
        "every chain reached the sink"
    );
    for chain in chains {
        let head = h.audit.audit_head_seq(chain).await.expect("head");
        assert_eq!(
            by_chain[&chain],
            (1..=head).collect::<Vec<_>>(),
            "chain {chain}: every event once, in order"
        );
    }
}

/// Waits until `check` holds, for at most 20 s.
async fn eventually(what: &str, check: impl Fn() -> bool) {
    for _ in 0..200 {
        if check() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("timed out waiting until {what}");
}

async fn delivers_in_order_and_resumes_from_the_cursor(h: Harness) {
    let dir = tempfile::tempdir().expect("dir");
    let path = dir.path().join("audit.jsonl");
    let sinks = vec![file_sink("archive", &path, None)];

    let first = h
        .clarity_with(config_with(sinks.clone()), Arc::new(SystemClock))
        .await;
    work(&first, 20).await;
    let chain = first.audit_chain();
    eventually("the first instance's events are delivered", || {
        delivered(&path).iter().filter(|(c, _)| *c == chain).count() >= 20
    })
    .await;
    first.shutdown().await;
    let after_first = delivered(&path);
    assert_complete_once_in_order(&h, &after_first).await;
    let status = &first.audit_sinks()[0];
    assert_eq!(status.name, "archive");
    assert_eq!(status.kind, "file");
    assert_eq!(status.delivered, after_first.len() as u64);
    assert_eq!((status.pending, status.failures), (0, 0));

    // A second instance resumes at the cursor: nothing is sent twice.
    let second = h
        .clarity_with(config_with(sinks), Arc::new(SystemClock))
        .await;
    work(&second, 5).await;
    second.shutdown().await;
    let all = delivered(&path);
    assert_eq!(&all[..after_first.len()], &after_first[..]);
    assert_complete_once_in_order(&h, &all).await;

    // S-AUD-4: identifiers only.
    let text = std::fs::read_to_string(&path).expect("read");
    assert!(!text.contains(GIVEN_NAME), "no PHI in the stream");
}

async fn events_written_without_the_sink_are_delivered_later(h: Harness) {
    let dir = tempfile::tempdir().expect("dir");
    let path = dir.path().join("audit.jsonl");
    // An instance that ran before the sink was configured (or was killed
    // before it delivered): its chain is found and sent by the next.
    let before = h
        .clarity_with(Config::default(), Arc::new(SystemClock))
        .await;
    work(&before, 10).await;
    before.shutdown().await;
    assert!(delivered(&path).is_empty());
    let next = h
        .clarity_with(
            config_with(vec![file_sink("archive", &path, None)]),
            Arc::new(SystemClock),
        )
        .await;
    let earlier = before.audit_chain();
    eventually("the earlier chain is delivered", || {
        delivered(&path).iter().any(|(c, _)| *c == earlier)
    })
    .await;
    next.shutdown().await;
    assert_complete_once_in_order(&h, &delivered(&path)).await;
}

async fn instances_sharing_a_store_deliver_each_event_once(h: Harness) {
    let dir = tempfile::tempdir().expect("dir");
    let path = dir.path().join("audit.jsonl");
    let sinks = vec![file_sink("archive", &path, None)];
    let a = h
        .clarity_with(config_with(sinks.clone()), Arc::new(SystemClock))
        .await;
    let b = h
        .clarity_with(config_with(sinks), Arc::new(SystemClock))
        .await;
    tokio::join!(work(&a, 15), work(&b, 15));
    eventually("one instance holds the lease", || {
        a.audit_sinks()[0].delivering != b.audit_sinks()[0].delivering
    })
    .await;
    let (holder, other) = if a.audit_sinks()[0].delivering {
        (&a, &b)
    } else {
        (&b, &a)
    };
    let chain = other.audit_chain();
    eventually("the holder delivers the other instance's chain", || {
        delivered(&path).iter().any(|(c, _)| *c == chain)
    })
    .await;
    other.shutdown().await;
    holder.shutdown().await;
    assert_eq!(other.audit_sinks()[0].delivered, 0, "only the holder sends");
    assert_complete_once_in_order(&h, &delivered(&path)).await;
}

async fn an_outage_delays_delivery_never_the_service(h: Harness) {
    let dir = tempfile::tempdir().expect("dir");
    // The file's directory is missing: every delivery fails until it exists.
    let missing: PathBuf = dir.path().join("not-yet");
    let path = missing.join("audit.jsonl");
    let clarity = h
        .clarity_with(
            config_with(vec![file_sink("archive", &path, None)]),
            Arc::new(SystemClock),
        )
        .await;
    work(&clarity, 10).await;
    eventually("failures are counted", || {
        clarity.audit_sinks()[0].failures > 0 && clarity.audit_sinks()[0].pending > 0
    })
    .await;
    // The service goes on while the sink is down.
    work(&clarity, 3).await;
    assert!(!clarity.audit_sinks()[0].blocking);
    std::fs::create_dir(&missing).expect("create");
    eventually("the backlog is delivered", || {
        clarity.audit_sinks()[0].pending == 0 && !delivered(&path).is_empty()
    })
    .await;
    clarity.shutdown().await;
    assert_complete_once_in_order(&h, &delivered(&path)).await;
}

async fn a_fail_closed_sink_holds_the_service_until_it_catches_up(h: Harness) {
    let dir = tempfile::tempdir().expect("dir");
    let missing = dir.path().join("not-yet");
    let path = missing.join("audit.jsonl");
    let clarity = h
        .clarity_with(
            config_with(vec![file_sink("siem", &path, Some(1))]),
            Arc::new(SystemClock),
        )
        .await;
    let clinician = principal(&clarity, Role::Clinician).await;
    let patient = clarity
        .create_patient(&clinician, profile())
        .await
        .expect("written before the sink falls behind");
    eventually("the sink blocks", || clarity.audit_sinks()[0].blocking).await;
    let refused = clarity
        .get_patient(&clinician, patient.id)
        .await
        .expect_err("refused while the sink is behind");
    assert_eq!(refused.kind(), ErrorKind::Unavailable);
    assert!(refused.to_string().contains("siem"), "{refused}");
    std::fs::create_dir(&missing).expect("create");
    eventually("the sink catches up", || !clarity.audit_sinks()[0].blocking).await;
    clarity
        .get_patient(&clinician, patient.id)
        .await
        .expect("served again");
    clarity.shutdown().await;
    assert_complete_once_in_order(&h, &delivered(&path)).await;
}

macro_rules! sink_tests {
    ($($name:ident,)*) => {
        mod sqlite {
            use super::*;
            $(
                // S-AUD-8
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name(testing::sqlite().await.expect("sqlite")).await;
                }
            )*
        }
        mod postgres {
            use super::*;
            $(
                // S-AUD-8
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let Some(h) = testing::postgres().await else { return };
                    super::$name(h).await;
                }
            )*
        }
    };
}

sink_tests! {
    delivers_in_order_and_resumes_from_the_cursor,
    events_written_without_the_sink_are_delivered_later,
    instances_sharing_a_store_deliver_each_event_once,
    an_outage_delays_delivery_never_the_service,
    a_fail_closed_sink_holds_the_service_until_it_catches_up,
}
