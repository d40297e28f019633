//! The audit witness (S-AUD-7): deleting whole chains, every event, a tail
//! together with its checkpoints, or the unwitnessed tail of an instance
//! that was killed is reported by verification, naming the chain and the
//! last witnessed sequence number, on SQLite and PostgreSQL; a store with
//! data and no audit trail is never "ok".

use std::sync::Arc;

use clarity_core::audit::ChainReport;
use clarity_core::clock::SystemClock;
use clarity_core::model::{PatientProfile, Role};
use clarity_core::testing::{self, Harness, principal};
use clarity_core::{Clarity, Config};
use uuid::Uuid;

fn profile() -> PatientProfile {
    PatientProfile {
        mrn: format!("WI-{}", Uuid::new_v4().simple()),
        given_name: "Witnessed".into(),
        family_name: "Patient".into(),
        birth_date: "1980-01-02".into(),
        sex: "female".into(),
        email: None,
        phone: None,
        address: None,
        data: None,
    }
}

/// Checkpoints every 10 events; no timed ones during a test.
fn config() -> Config {
    let mut config = Config::default();
    config.audit.checkpoint_every = 10;
    config.audit.checkpoint_secs = 3600;
    config
}

/// An instance that writes a patient and reads it until its chain holds 25
/// events, with checkpoints at 10 and 20. Returns it with its chain.
async fn busy(h: &Harness) -> (Clarity, Uuid) {
    let clarity = h.clarity_with(config(), Arc::new(SystemClock)).await;
    let clinician = principal(&clarity, Role::Clinician).await;
    let patient = clarity
        .create_patient(&clinician, profile())
        .await
        .expect("patient");
    let chain = clarity.audit_chain();
    // Each read's event is stored before the read returns.
    let stored = async || {
        h.audit
            .audit_chain_events(chain, 0, 1000)
            .await
            .expect("events")
            .len()
    };
    while stored().await < 25 {
        clarity
            .get_patient(&clinician, patient.id)
            .await
            .expect("read");
    }
    assert_eq!(stored().await, 25);
    (clarity, chain)
}

/// Verification by a fresh instance, as `clarity audit verify` does.
async fn verify(h: &Harness) -> Vec<ChainReport> {
    let clarity = h.clarity_with(config(), Arc::new(SystemClock)).await;
    let auditor = principal(&clarity, Role::Auditor).await;
    let reports = clarity.verify_audit(&auditor).await.expect("verify");
    clarity.shutdown().await;
    reports
}

fn report(reports: &[ChainReport], chain: Uuid) -> ChainReport {
    reports
        .iter()
        .find(|r| r.chain_id == chain)
        .cloned()
        .unwrap_or_else(|| panic!("chain {chain} is reported: {reports:?}"))
}

fn lit(h: &Harness, id: Uuid) -> String {
    match h.raw.dialect() {
        "sqlite" => format!("X'{}'", hex::encode(id.as_bytes())),
        _ => format!("'{id}'::uuid"),
    }
}

#[derive(Debug, Clone, Copy)]
enum Deletion {
    Everything,
    OneChain,
    TailWithCheckpoints,
    KilledInstanceTail,
}

async fn delete_and_verify(h: Harness, deletion: Deletion) {
    let (clarity, chain) = busy(&h).await;
    let c = lit(&h, chain);
    match deletion {
        Deletion::KilledInstanceTail => {
            // A kill: no final checkpoint, no clean end. Its last events
            // after the checkpoint at 20 are unwitnessed until an instance
            // starts and records the head it finds.
            std::mem::forget(clarity);
        }
        _ => clarity.shutdown().await,
    }
    let before = verify(&h).await;
    let untouched = report(&before, chain);
    assert!(before.iter().all(|r| r.ok), "untouched: {before:?}");
    let head = untouched.last_seq;
    assert_eq!(head, 25, "{untouched:?}");
    assert_eq!(
        untouched.checkpoints,
        if matches!(deletion, Deletion::KilledInstanceTail) {
            2
        } else {
            3
        }
    );
    assert_eq!(
        untouched.witnessed_seq,
        Some(head),
        "the whole chain is witnessed: {untouched:?}"
    );

    let (sql, first_bad): (Vec<String>, i64) = match deletion {
        Deletion::Everything => (
            vec![
                "DELETE FROM audit_events".into(),
                "DELETE FROM audit_checkpoints".into(),
            ],
            1,
        ),
        Deletion::OneChain => (
            vec![
                format!("DELETE FROM audit_events WHERE chain_id = {c}"),
                format!("DELETE FROM audit_checkpoints WHERE chain_id = {c}"),
            ],
            1,
        ),
        Deletion::TailWithCheckpoints => (
            vec![
                format!("DELETE FROM audit_events WHERE chain_id = {c} AND seq > 15"),
                format!("DELETE FROM audit_checkpoints WHERE chain_id = {c} AND seq > 15"),
            ],
            16,
        ),
        Deletion::KilledInstanceTail => (
            vec![format!(
                "DELETE FROM audit_events WHERE chain_id = {c} AND seq > 20"
            )],
            21,
        ),
    };
    for statement in &sql {
        h.raw.execute_sql(statement).await;
    }
    let after = verify(&h).await;
    let broken = report(&after, chain);
    assert!(!broken.ok, "{deletion:?} must be reported: {broken:?}");
    assert_eq!(broken.witnessed_seq, Some(head), "{deletion:?}: {broken:?}");
    let problem = broken.problem.clone().unwrap_or_default();
    match deletion {
        Deletion::Everything | Deletion::OneChain => {
            assert_eq!(broken.first_bad_seq, Some(1), "{broken:?}");
            assert!(problem.contains("missing from the store"), "{problem}");
        }
        Deletion::TailWithCheckpoints => {
            // The store ends at 15 with its checkpoint at 10; the witness
            // holds the checkpoints at 20 and 25 (the clean end).
            assert_eq!(broken.first_bad_seq, Some(first_bad), "{broken:?}");
            assert!(
                problem.contains(&format!("witness saw the chain reach {head}")),
                "{problem}"
            );
        }
        Deletion::KilledInstanceTail => {
            assert_eq!(broken.first_bad_seq, Some(first_bad), "{broken:?}");
            assert!(
                problem.contains(&format!("witness saw the chain reach {head}")),
                "{problem}"
            );
        }
    }
}

macro_rules! deletion_tests {
    ($($name:ident: $deletion:expr,)*) => {
        mod sqlite {
            use super::*;
            $(
                // S-AUD-7
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    delete_and_verify(testing::sqlite().await.expect("sqlite"), $deletion).await;
                }
            )*
        }
        mod postgres {
            use super::*;
            $(
                // S-AUD-7
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let Some(h) = testing::postgres().await else { return };
                    delete_and_verify(h, $deletion).await;
                }
            )*
        }
    };
}

deletion_tests! {
    deleting_every_event_and_checkpoint_is_reported: Deletion::Everything,
    deleting_one_whole_chain_is_reported: Deletion::OneChain,
    deleting_a_tail_with_its_checkpoints_is_reported: Deletion::TailWithCheckpoints,
    deleting_the_unwitnessed_tail_of_a_killed_instance_is_reported: Deletion::KilledInstanceTail,
}

// S-AUD-7: with the witness gone too, a store holding accounts and patients
// but no audit trail is not "ok".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_with_data_and_no_audit_trail_is_never_ok() {
    let h = testing::sqlite().await.expect("sqlite");
    let (clarity, _) = busy(&h).await;
    clarity.shutdown().await;
    h.raw.execute_sql("DELETE FROM audit_events").await;
    h.raw.execute_sql("DELETE FROM audit_checkpoints").await;
    std::fs::remove_dir_all(h.dir.path().join("audit-witness")).expect("remove the witness");
    let reports = verify(&h).await;
    let store = reports
        .iter()
        .find(|r| r.chain_id.is_nil())
        .unwrap_or_else(|| panic!("the store as a whole is reported: {reports:?}"));
    assert!(!store.ok);
    assert!(
        store
            .problem
            .as_deref()
            .unwrap_or("")
            .contains("no audit trail from before"),
        "{store:?}"
    );
}

// S-AUD-7: a line in the witness that the audit key did not sign is
// reported, not believed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forged_witness_line_is_reported() {
    let h = testing::sqlite().await.expect("sqlite");
    let (clarity, chain) = busy(&h).await;
    clarity.shutdown().await;
    let dir = h.dir.path().join("audit-witness");
    let file = std::fs::read_dir(&dir)
        .expect("witness directory")
        .map(|e| e.expect("entry").path())
        .find(|p| p.extension().is_some_and(|e| e == "log"))
        .expect("a witness file");
    let text = std::fs::read_to_string(&file).expect("read");
    let line = text.lines().next().expect("a line");
    let forged = line.replacen(&chain.to_string(), &Uuid::now_v7().to_string(), 1);
    assert_ne!(forged, line, "the first line names the chain");
    std::fs::write(&file, format!("{text}{forged}\n")).expect("write");
    let reports = verify(&h).await;
    let store = reports
        .iter()
        .find(|r| r.chain_id.is_nil())
        .unwrap_or_else(|| panic!("the damaged witness is reported: {reports:?}"));
    assert!(!store.ok);
    assert!(
        store.problem.as_deref().unwrap_or("").contains("signature"),
        "{store:?}"
    );
    assert!(report(&reports, chain).ok, "the chain itself is whole");
}

// S-AUD-7: an instance whose witness cannot be written does not start.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unwritable_witness_stops_the_instance_from_opening() {
    let h = testing::sqlite().await.expect("sqlite");
    let blocker = h.dir.path().join("not-a-directory");
    std::fs::write(&blocker, b"a file").expect("write");
    let mut config = config();
    config.audit.witness_dir = Some(blocker.join("witness"));
    let backends = clarity_core::store::Backends {
        rows: Arc::clone(&h.store),
        identity: Arc::clone(&h.identity),
        audit: Arc::clone(&h.audit),
    };
    let err = testing::with_parts(config, backends, Arc::clone(&h.keys), Arc::new(SystemClock))
        .await
        .expect_err("no witness, no instance");
    assert!(err.to_string().contains("audit.witness_dir"), "{err}");
}

/// Scheduled verification: the first run is full, the next ones read each
/// chain only from where the last run left it, and still fail on an altered
/// head; an edit below the head is found by the next full run (S-AUD-7).
async fn incremental_scheduled_verification(h: Harness) {
    use clarity_core::audit::FULL_VERIFY_EVERY;
    let (clarity, chain) = busy(&h).await;
    let c = lit(&h, chain);
    let clinician = principal(&clarity, Role::Clinician).await;
    let patient = clarity
        .create_patient(&clinician, profile())
        .await
        .expect("patient");
    let full = clarity.verify_audit_scheduled().await.expect("first run");
    let first = report(&full, chain);
    assert!(full.iter().all(|r| r.ok), "{full:?}");
    assert!(first.events >= 27, "the first run is full: {first:?}");
    for _ in 0..3 {
        clarity
            .get_patient(&clinician, patient.id)
            .await
            .expect("read");
    }
    let next = clarity.verify_audit_scheduled().await.expect("second run");
    let second = report(&next, chain);
    assert!(next.iter().all(|r| r.ok), "{next:?}");
    assert!(second.last_seq > first.last_seq);
    assert_eq!(
        second.events as i64,
        second.last_seq - first.last_seq + 1,
        "reads only the new events and the head again: {second:?}"
    );

    // The head of the last run, altered: the incremental run fails there.
    let head = second.last_seq;
    h.raw
        .execute_sql(&format!(
            "UPDATE audit_events SET reason = 'forged' WHERE chain_id = {c} AND seq = {head}"
        ))
        .await;
    let third = clarity.verify_audit_scheduled().await.expect("third run");
    let altered = report(&third, chain);
    assert!(!altered.ok, "{altered:?}");
    assert_eq!(altered.first_bad_seq, Some(head));
    h.raw
        .execute_sql(&format!(
            "UPDATE audit_events SET reason = 'care_team' WHERE chain_id = {c} AND seq = {head}"
        ))
        .await;
    let mended = clarity.verify_audit_scheduled().await.expect("fourth run");
    assert!(report(&mended, chain).ok, "{mended:?}");

    // Below the head: not read by an incremental run, found by the next full one.
    h.raw
        .execute_sql(&format!(
            "UPDATE audit_events SET reason = 'forged' WHERE chain_id = {c} AND seq = 5"
        ))
        .await;
    let mut runs = 4;
    let mut found = None;
    while runs < FULL_VERIFY_EVERY {
        let reports = clarity.verify_audit_scheduled().await.expect("run");
        runs += 1;
        assert!(
            report(&reports, chain).ok,
            "an incremental run reads past the head only"
        );
    }
    let reports = clarity.verify_audit_scheduled().await.expect("full run");
    if let Some(r) = reports.iter().find(|r| r.chain_id == chain && !r.ok) {
        found = r.first_bad_seq;
    }
    assert_eq!(found, Some(5), "the full run finds it: {reports:?}");
    clarity.shutdown().await;
}

// S-AUD-7
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_incremental_scheduled_verification() {
    incremental_scheduled_verification(testing::sqlite().await.expect("sqlite")).await;
}

// S-AUD-7
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_incremental_scheduled_verification() {
    let Some(h) = testing::postgres().await else {
        return;
    };
    incremental_scheduled_verification(h).await;
}
