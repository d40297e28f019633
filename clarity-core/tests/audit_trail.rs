//! The audit trail: tamper evidence on SQLite and PostgreSQL with direct SQL
//! (S-AUD-3), fail-closed writes (S-AUD-2), one event per operation (S-AUD-1),
//! identifiers only (S-AUD-4), query and FHIR export (S-AUD-5), retention (S-AUD-6).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use async_trait::async_trait;
use chrono::{DateTime, Duration, Utc};
use clarity_core::audit::{AuditBatch, AuditStore, StoredBatch};
use clarity_core::audit::{
    AuditEvent, AuditFilter, AuditKeys, AuditWriter, ChainReport, Checkpoint, WriterSettings,
    verify,
};
use clarity_core::clock::{Clock, ManualClock, SystemClock};
use clarity_core::crypto::{Json, Key};
use clarity_core::model::Role;
use clarity_core::model::{PageRequest, PatientLookup, PatientProfile};
use clarity_core::service::{BreakGlassRequest, CareTeamAssignment};
use clarity_core::store::Backends;
use clarity_core::testing::{self, Harness, principal};
use clarity_core::{Config, ErrorKind};
use uuid::Uuid;

fn profile(given: &str) -> PatientProfile {
    PatientProfile {
        mrn: format!("AU-{}", Uuid::new_v4().simple()),
        given_name: given.into(),
        family_name: "Auditee".into(),
        birth_date: "1975-03-04".into(),
        sex: "male".into(),
        email: None,
        phone: None,
        address: None,
        data: None,
    }
}

fn config(checkpoint_every: i64) -> Config {
    let mut config = Config::default();
    config.audit.checkpoint_every = checkpoint_every;
    config
}

async fn keys(h: &Harness) -> AuditKeys {
    AuditKeys::derive(&h.keys.root_key().await.expect("root")).expect("audit keys")
}

/// The purge cutoff when nothing may have been purged yet (six years ago).
fn young() -> DateTime<Utc> {
    Utc::now() - Duration::days(2196)
}

fn report_for(reports: &[ChainReport], chain: Uuid) -> ChainReport {
    reports
        .iter()
        .find(|r| r.chain_id == chain)
        .cloned()
        .expect("the chain is reported")
}

/// The verification report of `chain`.
async fn chain_report(h: &Harness, chain: Uuid) -> ChainReport {
    report_for(
        &verify(h.audit.as_ref(), &keys(h).await, young())
            .await
            .expect("verify"),
        chain,
    )
}

/// A finished chain of at least 30 events with checkpoints every 10.
async fn finished_chain(h: &Harness) -> (Uuid, i64) {
    let clarity = h.clarity_with(config(10), Arc::new(SystemClock)).await;
    let clinician = principal(&clarity, Role::Clinician).await;
    let patient = clarity
        .create_patient(&clinician, profile("Chain"))
        .await
        .expect("patient");
    for _ in 0..27 {
        clarity
            .get_patient(&clinician, patient.id)
            .await
            .expect("read");
    }
    let chain = clarity.audit_chain();
    clarity.shutdown().await;
    let report = chain_report(h, chain).await;
    assert!(report.ok, "untouched chain verifies: {report:?}");
    assert!(
        report.last_seq >= 30 && report.checkpoints >= 3,
        "{report:?}"
    );
    (chain, report.last_seq)
}

fn uuid_lit(dialect: &str, id: Uuid) -> String {
    match dialect {
        "sqlite" => format!("X'{}'", hex::encode(id.as_bytes())),
        _ => format!("'{id}'::uuid"),
    }
}

fn bytes_lit(dialect: &str, bytes: &[u8]) -> String {
    match dialect {
        "sqlite" => format!("X'{}'", hex::encode(bytes)),
        _ => format!("'\\x{}'::bytea", hex::encode(bytes)),
    }
}

const COLUMNS: &str = "event_type, subtype, action, outcome, purpose, actor_id, actor_roles, \
     client_address, patient_id, entity_id, query_hash, reason, request_id";

#[derive(Debug, Clone, Copy)]
enum Tamper {
    EditField,
    DeleteEvent,
    InsertForged,
    Reorder,
    TruncateTail,
    ReplaceChainWithoutKey,
    DeletePrefix,
}

async fn tamper_and_verify(h: Harness, tamper: Tamper) {
    let (chain, last) = finished_chain(&h).await;
    let d = h.raw.dialect();
    let c = uuid_lit(d, chain);
    let expected_bad = match tamper {
        Tamper::EditField => {
            let n = h
                .raw
                .execute_sql(&format!(
                    "UPDATE audit_events SET outcome = '8' WHERE chain_id = {c} AND seq = 5"
                ))
                .await;
            assert_eq!(n, 1);
            5
        }
        Tamper::DeleteEvent => {
            h.raw
                .execute_sql(&format!(
                    "DELETE FROM audit_events WHERE chain_id = {c} AND seq = 7"
                ))
                .await;
            7
        }
        Tamper::InsertForged => {
            // Make room at 10, then put a forged copy of event 9 there, correctly linked.
            h.raw
                .execute_sql(&format!(
                    "UPDATE audit_events SET seq = seq + 1000000 WHERE chain_id = {c} AND seq >= 10"
                ))
                .await;
            h.raw
                .execute_sql(&format!("UPDATE audit_events SET seq = seq - 999999 WHERE chain_id = {c} AND seq >= 1000000"))
                .await;
            let forged = uuid_lit(d, Uuid::now_v7());
            h.raw
                .execute_sql(&format!(
                    "INSERT INTO audit_events (id, chain_id, seq, recorded, {COLUMNS}, prev_mac, mac)
                     SELECT {forged}, chain_id, 10, recorded, {COLUMNS}, mac, mac
                     FROM audit_events WHERE chain_id = {c} AND seq = 9"
                ))
                .await;
            10
        }
        Tamper::Reorder => {
            h.raw
                .execute_sql(&format!(
                    "UPDATE audit_events SET seq = -1 WHERE chain_id = {c} AND seq = 12"
                ))
                .await;
            h.raw
                .execute_sql(&format!(
                    "UPDATE audit_events SET seq = 12 WHERE chain_id = {c} AND seq = 13"
                ))
                .await;
            h.raw
                .execute_sql(&format!(
                    "UPDATE audit_events SET seq = 13 WHERE chain_id = {c} AND seq = -1"
                ))
                .await;
            12
        }
        Tamper::TruncateTail => {
            let cut = last - 3;
            h.raw
                .execute_sql(&format!(
                    "DELETE FROM audit_events WHERE chain_id = {c} AND seq > {cut}"
                ))
                .await;
            cut + 1
        }
        Tamper::DeletePrefix => {
            // Looks like a retention purge up to a checkpoint, but the events are young.
            h.raw
                .execute_sql(&format!(
                    "DELETE FROM audit_events WHERE chain_id = {c} AND seq <= 10"
                ))
                .await;
            1
        }
        Tamper::ReplaceChainWithoutKey => {
            // A database administrator rewrites the whole chain with a key of
            // their own and drops the checkpoints they cannot sign.
            let forger = AuditKeys::derive(&Key::generate().expect("rng")).expect("keys");
            let events = h
                .audit
                .audit_chain_events(chain, 0, 100_000)
                .await
                .expect("events");
            let mut prev = vec![0u8; 32];
            for mut event in events {
                event.reason = Some("rewritten".into());
                event.prev_mac = prev.clone();
                event.mac = forger.mac(&prev, &event);
                h.raw
                    .execute_sql(&format!(
                        "UPDATE audit_events SET reason = 'rewritten', prev_mac = {}, mac = {} WHERE chain_id = {c} AND seq = {}",
                        bytes_lit(d, &event.prev_mac),
                        bytes_lit(d, &event.mac),
                        event.seq
                    ))
                    .await;
                prev = event.mac;
            }
            h.raw
                .execute_sql(&format!(
                    "DELETE FROM audit_checkpoints WHERE chain_id = {c}"
                ))
                .await;
            1
        }
    };
    let report = chain_report(&h, chain).await;
    assert!(!report.ok, "{tamper:?} must be detected: {report:?}");
    assert_eq!(
        report.first_bad_seq,
        Some(expected_bad),
        "{tamper:?} located: {report:?}"
    );
    assert!(report.problem.is_some());
}

macro_rules! tamper_tests {
    ($($name:ident: $tamper:expr,)*) => {
        mod sqlite_tampering {
            use super::*;
            $(
                // S-AUD-3
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    tamper_and_verify(testing::sqlite().await.expect("sqlite"), $tamper).await;
                }
            )*
        }
        mod postgres_tampering {
            use super::*;
            $(
                // S-AUD-3
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let Some(h) = testing::postgres().await else { return };
                    tamper_and_verify(h, $tamper).await;
                }
            )*
        }
    };
}

tamper_tests! {
    editing_a_field_is_detected: Tamper::EditField,
    deleting_an_event_is_detected: Tamper::DeleteEvent,
    inserting_a_forged_event_is_detected: Tamper::InsertForged,
    reordering_events_is_detected: Tamper::Reorder,
    truncating_the_tail_is_caught_by_the_checkpoint: Tamper::TruncateTail,
    replacing_the_chain_without_the_key_is_detected: Tamper::ReplaceChainWithoutKey,
    deleting_young_events_from_the_start_is_detected: Tamper::DeletePrefix,
}

/// A chain longer than one verification page (10,000 events), so that the
/// state carried from page to page (the previous MAC, the sequence number
/// expected next, the MACs seen at checkpoints) is what finds the damage.
async fn long_chain(h: &Harness, events: usize) -> Uuid {
    let writer = AuditWriter::start(
        Arc::clone(&h.audit),
        keys(h).await,
        Arc::new(SystemClock),
        WriterSettings::default(),
    );
    writer
        .append_all((0..events).map(|_| testing::read_event_draft()).collect())
        .await
        .expect("append");
    writer.shutdown().await;
    writer.chain_id()
}

// S-AUD-3
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn damage_past_the_first_verification_page_is_detected_and_located() {
    let h = testing::sqlite().await.expect("sqlite");
    let chain = long_chain(&h, 10_050).await;
    let report = chain_report(&h, chain).await;
    assert!(report.ok, "untouched chain verifies: {report:?}");
    assert_eq!((report.events, report.last_seq), (10_050, 10_050));

    // The first event of the second page no longer links to the last of
    // the first page.
    let c = uuid_lit(h.raw.dialect(), chain);
    let zeros = bytes_lit(h.raw.dialect(), &[0u8; 32]);
    let n = h
        .raw
        .execute_sql(&format!(
            "UPDATE audit_events SET prev_mac = {zeros} WHERE chain_id = {c} AND seq = 10001"
        ))
        .await;
    assert_eq!(n, 1);
    let report = chain_report(&h, chain).await;
    assert_eq!(report.first_bad_seq, Some(10_001), "{report:?}");
    assert!(
        report
            .problem
            .as_deref()
            .is_some_and(|p| p.contains("link")),
        "{report:?}"
    );

    // Without it, the gap is found where it is.
    h.raw
        .execute_sql(&format!(
            "DELETE FROM audit_events WHERE chain_id = {c} AND seq = 10001"
        ))
        .await;
    let report = chain_report(&h, chain).await;
    assert_eq!(report.first_bad_seq, Some(10_001), "{report:?}");
    assert_eq!(report.events, 10_049);
}

/// An audit store that can be made to fail, for fault injection.
#[derive(Debug)]
struct FailingAudit {
    inner: Arc<dyn AuditStore>,
    failing: AtomicBool,
    /// Store the next batch, then report an error (a connection lost
    /// after its commit).
    lose_after_commit: AtomicBool,
    /// Checkpoints the inner store refused.
    refused_checkpoints: AtomicUsize,
}

impl FailingAudit {
    fn new(inner: Arc<dyn AuditStore>) -> FailingAudit {
        FailingAudit {
            inner,
            failing: AtomicBool::new(false),
            lose_after_commit: AtomicBool::new(false),
            refused_checkpoints: AtomicUsize::new(0),
        }
    }
}

impl FailingAudit {
    fn check(&self) -> clarity_core::Result<()> {
        if self.failing.load(Ordering::SeqCst) {
            Err(clarity_core::Error::Unavailable {
                message: "injected audit failure".into(),
            })
        } else {
            Ok(())
        }
    }
}

#[async_trait]
impl AuditStore for FailingAudit {
    async fn append_audit(
        &self,
        events: &[AuditEvent],
        cp: Option<&Checkpoint>,
    ) -> clarity_core::Result<()> {
        self.check()?;
        let stored = self.inner.append_audit(events, cp).await;
        if stored.is_err() && cp.is_some() {
            self.refused_checkpoints.fetch_add(1, Ordering::SeqCst);
        }
        stored
    }
    async fn append_audit_batch(&self, batch: AuditBatch) -> clarity_core::Result<StoredBatch> {
        self.check()?;
        let stored = self.inner.append_audit_batch(batch).await?;
        if self.lose_after_commit.swap(false, Ordering::SeqCst) {
            return Err(clarity_core::Error::Unavailable {
                message: "injected loss of the connection after the commit".into(),
            });
        }
        Ok(stored)
    }
    async fn audit_chains(&self) -> clarity_core::Result<Vec<Uuid>> {
        self.inner.audit_chains().await
    }
    async fn audit_chain_events(
        &self,
        chain: Uuid,
        after: i64,
        limit: usize,
    ) -> clarity_core::Result<Vec<AuditEvent>> {
        self.inner.audit_chain_events(chain, after, limit).await
    }
    async fn audit_checkpoints(&self, chain: Uuid) -> clarity_core::Result<Vec<Checkpoint>> {
        self.inner.audit_checkpoints(chain).await
    }
    async fn query_audit(
        &self,
        f: &AuditFilter,
        after: Option<Uuid>,
        limit: usize,
    ) -> clarity_core::Result<Vec<AuditEvent>> {
        self.inner.query_audit(f, after, limit).await
    }
    async fn purge_audit_before(&self, before: DateTime<Utc>) -> clarity_core::Result<u64> {
        self.inner.purge_audit_before(before).await
    }
    async fn audit_head_seq(&self, chain: Uuid) -> clarity_core::Result<i64> {
        self.inner.audit_head_seq(chain).await
    }

    async fn sink_cursors(&self, sink: &str) -> clarity_core::Result<Vec<(Uuid, i64)>> {
        self.inner.sink_cursors(sink).await
    }

    async fn advance_sink_cursor(
        &self,
        sink: &str,
        chain: Uuid,
        seq: i64,
        at: DateTime<Utc>,
    ) -> clarity_core::Result<()> {
        self.inner.advance_sink_cursor(sink, chain, seq, at).await
    }

    async fn claim_sink_lease(
        &self,
        sink: &str,
        holder: Uuid,
        now: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> clarity_core::Result<bool> {
        self.inner.claim_sink_lease(sink, holder, now, until).await
    }
}

// S-AUD-2, S-AUD-3: a batch whose commit landed although the store reported
// an error (a connection lost after the commit) releases its callers, and
// the chain goes on from it: its checkpoint counts as stored, so none is
// offered again for the same place.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_stored_despite_an_error_releases_its_callers() {
    let h = testing::sqlite().await.expect("sqlite");
    let store = Arc::new(FailingAudit::new(Arc::clone(&h.audit)));
    // Every batch carries a checkpoint: the lost one, too.
    let settings = WriterSettings {
        checkpoint_every: 1,
        ..WriterSettings::default()
    };
    let writer = AuditWriter::start(
        store.clone(),
        keys(&h).await,
        Arc::new(SystemClock),
        settings,
    );
    writer
        .append(testing::read_event_draft())
        .await
        .expect("stored");
    store.lose_after_commit.store(true, Ordering::SeqCst);
    writer
        .append(testing::read_event_draft())
        .await
        .expect("stored, although the store reported an error");
    assert!(
        !store.lose_after_commit.load(Ordering::SeqCst),
        "the loss was injected"
    );
    writer.shutdown().await;
    assert_eq!(store.refused_checkpoints.load(Ordering::SeqCst), 0);
    let report = chain_report(&h, writer.chain_id()).await;
    assert!(report.ok, "{report:?}");
    assert_eq!((report.events, report.checkpoints), (2, 2));
}

// S-AUD-2: if the audit write fails, the operation fails and returns no PHI.
#[tokio::test]
async fn a_failed_audit_write_fails_the_operation() {
    let h = testing::memory().await.expect("memory");
    let failing = Arc::new(FailingAudit::new(Arc::clone(&h.audit)));
    let backends = Backends {
        rows: Arc::clone(&h.store),
        identity: Arc::clone(&h.identity),
        audit: failing.clone(),
    };
    let clarity = testing::with_parts(
        h.config(),
        backends,
        Arc::clone(&h.keys),
        Arc::new(SystemClock),
    )
    .await
    .expect("clarity");
    let clinician = principal(&clarity, Role::Clinician).await;
    let admin = principal(&clarity, Role::Admin).await;
    let colleague = principal(&clarity, Role::Clinician).await;
    let patient = clarity
        .create_patient(&clinician, profile("Faulty"))
        .await
        .expect("patient");
    let record = clarity
        .create_record(
            &clinician,
            patient.id,
            "note",
            Json(serde_json::json!({"text": "private"})),
        )
        .await
        .expect("record");

    failing.failing.store(true, Ordering::SeqCst);
    let read = clarity.get_patient(&clinician, patient.id).await;
    assert_eq!(
        read.expect_err("no PHI without a durable event").kind(),
        ErrorKind::Unavailable
    );
    let record_read = clarity.get_record(&clinician, record.id).await;
    assert_eq!(
        record_read.expect_err("no PHI").kind(),
        ErrorKind::Unavailable
    );
    assert!(
        clarity
            .list_records(&clinician, patient.id, &PageRequest::default())
            .await
            .is_err()
    );

    // Writes: the change commits with its event or not at all.
    let refused = clarity
        .update_record(
            &clinician,
            record.id,
            1,
            Json(serde_json::json!({"text": "changed"})),
        )
        .await;
    assert_eq!(
        refused.expect_err("no event").kind(),
        ErrorKind::Unavailable
    );
    let refused = clarity
        .create_record(
            &clinician,
            patient.id,
            "note",
            Json(serde_json::json!({"text": "new"})),
        )
        .await;
    assert_eq!(
        refused.expect_err("no event").kind(),
        ErrorKind::Unavailable
    );
    let refused = clarity.delete_record(&clinician, record.id).await;
    assert_eq!(
        refused.expect_err("no event").kind(),
        ErrorKind::Unavailable
    );
    let current = patient.profile.expose().clone();
    let refused = clarity
        .update_patient(&clinician, patient.id, 1, current)
        .await;
    assert_eq!(
        refused.expect_err("no event").kind(),
        ErrorKind::Unavailable
    );
    let refused = clarity
        .create_patient(&clinician, profile("Unrecorded"))
        .await;
    assert_eq!(
        refused.expect_err("no event").kind(),
        ErrorKind::Unavailable
    );
    let refused = clarity.erase_patient(&admin, patient.id).await;
    assert_eq!(
        refused.expect_err("no event").kind(),
        ErrorKind::Unavailable
    );
    // Access changes too: a membership, its removal, a break-glass grant.
    let assignment = CareTeamAssignment {
        user_id: colleague.user_id(),
        relationship: None,
        expires_at: None,
    };
    let refused = clarity
        .add_care_team_member(&admin, patient.id, assignment)
        .await;
    assert_eq!(
        refused.expect_err("no event").kind(),
        ErrorKind::Unavailable
    );
    let refused = clarity
        .remove_care_team_member(&admin, patient.id, clinician.user_id())
        .await;
    assert_eq!(
        refused.expect_err("no event").kind(),
        ErrorKind::Unavailable
    );
    let emergency = BreakGlassRequest {
        patient_id: patient.id,
        reason: "unconscious patient in the emergency room".into(),
        totp: None,
    };
    let refused = clarity.break_glass(&colleague, emergency).await;
    assert_eq!(
        refused.expect_err("no event").kind(),
        ErrorKind::Unavailable
    );
    // Accounts too: a new account and a change of roles (S-AC-8).
    let unrecorded = clarity_core::service::NewUser {
        email: "unrecorded@example.org".into(),
        password: clarity_core::crypto::SecretString::new(testing::TEST_PASSWORD),
        roles: clarity_core::model::RoleSet::from_roles([Role::Nurse]),
        display_name: None,
        patient_id: None,
    };
    let refused = clarity.create_user(&admin, unrecorded).await;
    assert_eq!(
        refused.expect_err("no event").kind(),
        ErrorKind::Unavailable
    );
    let demote = clarity_core::service::UserUpdate {
        roles: Some(clarity_core::model::RoleSet::from_roles([Role::Auditor])),
        ..Default::default()
    };
    let refused = clarity
        .update_user(&admin, colleague.user_id(), demote)
        .await;
    assert_eq!(
        refused.expect_err("no event").kind(),
        ErrorKind::Unavailable
    );

    failing.failing.store(false, Ordering::SeqCst);
    let users = clarity
        .list_users(&admin, &PageRequest::first(1000))
        .await
        .expect("users");
    assert!(
        users
            .items
            .iter()
            .all(|u| u.email != "unrecorded@example.org"),
        "the refused account was not stored"
    );
    assert_eq!(
        clarity
            .get_user(&admin, colleague.user_id())
            .await
            .expect("colleague")
            .roles,
        clarity_core::model::RoleSet::from_roles([Role::Clinician]),
        "the refused role change was not stored"
    );
    let read = clarity
        .get_patient(&clinician, patient.id)
        .await
        .expect("recovers by itself");
    assert_eq!(
        read.version, 1,
        "the refused patient update and erasure were not stored"
    );
    let kept = clarity
        .get_record(&clinician, record.id)
        .await
        .expect("the refused delete and care-team removal were not stored");
    let outside = clarity.get_patient(&colleague, patient.id).await;
    assert_eq!(
        outside
            .expect_err("neither the refused membership nor the grant was stored")
            .kind(),
        ErrorKind::NotFound
    );
    assert_eq!(kept.version, 1, "the refused record update was not stored");
    assert_eq!(kept.data.expose().0, serde_json::json!({"text": "private"}));
    let records = clarity
        .list_records(&clinician, patient.id, &PageRequest::default())
        .await
        .expect("list");
    assert_eq!(records.items.len(), 1, "the refused record was not stored");
    let patients = clarity
        .list_patients(&clinician, &PageRequest::default())
        .await
        .expect("list patients");
    assert_eq!(
        patients.items.len(),
        1,
        "the refused patient was not stored"
    );
}

// S-AUD-1: N operations of each kind give exactly N matching events.
#[tokio::test]
async fn every_operation_writes_exactly_one_event() {
    const N: usize = 3;
    let h = testing::memory().await.expect("memory");
    let clarity = h.clarity().await;
    let clinician = principal(&clarity, Role::Clinician).await;
    let outsider = principal(&clarity, Role::Nurse).await;
    let mut patients = Vec::new();
    let mut records = Vec::new();
    for n in 0..N {
        let p = clarity
            .create_patient(&clinician, profile(&format!("Count{n}")))
            .await
            .expect("patient");
        let r = clarity
            .create_record(&clinician, p.id, "note", Json(serde_json::json!({"n": n})))
            .await
            .expect("record");
        patients.push(p);
        records.push(r);
    }
    for (p, r) in patients.iter().zip(&records) {
        let current = clarity.get_patient(&clinician, p.id).await.expect("read");
        clarity
            .update_patient(
                &clinician,
                p.id,
                current.version,
                current.profile.expose().clone(),
            )
            .await
            .expect("update");
        clarity
            .get_record(&clinician, r.id)
            .await
            .expect("read record");
        clarity
            .update_record(
                &clinician,
                r.id,
                1,
                Json(serde_json::json!({"updated": true})),
            )
            .await
            .expect("update record");
        clarity
            .list_records(&clinician, p.id, &PageRequest::default())
            .await
            .expect("list");
        clarity
            .find_patients(
                &clinician,
                &PatientLookup::Mrn(p.profile.expose().mrn.clone()),
            )
            .await
            .expect("lookup");
        clarity
            .list_patients(&clinician, &PageRequest::default())
            .await
            .expect("list patients");
        clarity
            .delete_record(&clinician, r.id)
            .await
            .expect("delete");
        let denied = clarity.get_patient(&outsider, p.id).await;
        assert_eq!(denied.expect_err("denied").kind(), ErrorKind::NotFound);
    }
    let count = |subtype: &str, actor: Uuid, outcome: &str| {
        let filter = AuditFilter {
            actor_id: Some(actor),
            subtype: Some(subtype.into()),
            outcome: Some(outcome.into()),
            ..AuditFilter::default()
        };
        let audit = Arc::clone(&h.audit);
        async move {
            audit
                .query_audit(&filter, None, 10_000)
                .await
                .expect("query")
                .len()
        }
    };
    for subtype in [
        "patient.create",
        "patient.update",
        "record.create",
        "record.read",
        "record.update",
        "record.list",
        "patient.lookup",
        "record.delete",
    ] {
        assert_eq!(
            count(subtype, clinician.user_id(), "0").await,
            N,
            "{subtype}"
        );
    }
    // Each of the N list calls returned all N patients: one event per patient
    // listed, so each patient's accounting of disclosures finds every list.
    assert_eq!(count("patient.list", clinician.user_id(), "0").await, N * N);
    for p in &patients {
        let filter = AuditFilter {
            patient_id: Some(p.id),
            subtype: Some("patient.list".into()),
            ..AuditFilter::default()
        };
        assert_eq!(
            h.audit
                .query_audit(&filter, None, 100)
                .await
                .expect("query")
                .len(),
            N
        );
    }
    // Each update read the patient first: N reads from the loop.
    assert_eq!(count("patient.read", clinician.user_id(), "0").await, N);
    assert_eq!(
        count("patient.read", outsider.user_id(), "4").await,
        N,
        "denials are audited too"
    );
    assert_eq!(count("auth.login", clinician.user_id(), "0").await, 1);
}

// S-AUD-4: events carry identifiers only; S-AUD-5: query and FHIR export.
#[tokio::test]
async fn events_hold_identifiers_only_and_export_as_fhir() {
    let h = testing::sqlite().await.expect("sqlite");
    let clarity = h.clarity().await;
    let clinician = principal(&clarity, Role::Clinician).await;
    let auditor = principal(&clarity, Role::Auditor).await;
    let canary = format!("CANARY{}", Uuid::new_v4().simple());
    let mut p = profile(&canary);
    p.mrn = format!("{canary}-MRN");
    let patient = clarity
        .create_patient(&clinician, p)
        .await
        .expect("patient");
    clarity
        .find_patients(&clinician, &PatientLookup::Mrn(format!("{canary}-MRN")))
        .await
        .expect("lookup");
    clarity
        .get_patient(&clinician, patient.id)
        .await
        .expect("read");

    let by_patient = AuditFilter {
        patient_id: Some(patient.id),
        ..AuditFilter::default()
    };
    let events = clarity
        .audit_events(&auditor, &by_patient, &PageRequest::default())
        .await
        .expect("query");
    assert_eq!(events.items.len(), 2, "create and read name the patient");
    assert!(
        events
            .items
            .iter()
            .all(|e| e.actor_id == Some(clinician.user_id()))
    );
    assert_eq!(
        clarity
            .audit_events(&clinician, &by_patient, &PageRequest::default())
            .await
            .expect_err("clinicians do not read the audit log")
            .kind(),
        ErrorKind::PermissionDenied
    );

    let ndjson = clarity
        .export_audit_fhir(&auditor, &AuditFilter::default(), 10_000)
        .await
        .expect("export");
    let everything = serde_json::to_string(
        &clarity
            .audit_events(&auditor, &AuditFilter::default(), &PageRequest::first(1000))
            .await
            .expect("all events")
            .items,
    )
    .expect("json");
    for text in [&ndjson, &everything] {
        assert!(!text.contains(&canary), "PHI found in the audit trail");
        assert!(!text.contains(testing::TEST_PASSWORD));
    }
    let lines: Vec<serde_json::Value> = ndjson
        .lines()
        .map(|l| serde_json::from_str(l).expect("each line is JSON"))
        .collect();
    assert!(lines.len() >= 5);
    assert!(
        lines
            .iter()
            .all(|r| r["resourceType"] == "AuditEvent" && r["agent"][0]["requestor"] == true)
    );
    let lookup = lines
        .iter()
        .find(|r| r["meta"]["tag"][0]["code"] == "patient.lookup")
        .expect("lookup event");
    let query = lookup["entity"]
        .as_array()
        .expect("entities")
        .iter()
        .find_map(|e| e["query"].as_str())
        .expect("the lookup's query entity");
    let query = String::from_utf8(
        base64::Engine::decode(&base64::engine::general_purpose::STANDARD, query).expect("base64"),
    )
    .expect("text");
    assert!(
        query.starts_with("patient.lookup?mrn:") && !query.contains(&canary),
        "the lookup's field and keyed hash only: {query}"
    );

    // Validated by an independent FHIR implementation when one is configured.
    validate_fhir(&h, &ndjson, false);
}

/// Runs scripts/validate_fhir_auditevents.py (fhir.resources and the BALP
/// FHIRPath rules) on `ndjson`, after its self-test when `self_test`; skipped
/// outside CI when CLARITY_TEST_FHIR_PYTHON is not set, a failure in CI.
fn validate_fhir(h: &Harness, ndjson: &str, self_test: bool) -> Option<String> {
    let python = testing::service_var(
        "CLARITY_TEST_FHIR_PYTHON",
        "FHIR validator (fhir.resources, fhirpathpy)",
    )?;
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../scripts/validate_fhir_auditevents.py"
    );
    let run = |arg: &std::ffi::OsStr| {
        let output = std::process::Command::new(&python)
            .arg(script)
            .arg(arg)
            .output()
            .expect("run validator");
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        assert!(output.status.success(), "FHIR validation failed: {text}");
        eprintln!("{text}");
        text
    };
    if self_test {
        run(std::ffi::OsStr::new("--self-test"));
    }
    let file = h.dir.path().join("audit.ndjson");
    std::fs::write(&file, ndjson).expect("write export");
    Some(run(file.as_os_str()))
}

const BALP: &str = "https://profiles.ihe.net/ITI/BALP/StructureDefinition/IHE.BasicAudit.";

// S-AUD-5: the FHIR export declares the IHE BALP profile of each event that
// carries what the profile requires (requests with a client address, a
// configured server address, success), covering every profile Clarity
// declares; logins, logouts and failures declare none. Each line is checked
// by fhir.resources (R4) and the BALP FHIRPath rules, after the rules'
// self-test shows each one catches a resource broken on purpose.
#[tokio::test]
async fn fhir_export_declares_balp_profiles() {
    use clarity_core::audit::RequestContext;
    use clarity_core::crypto::SecretString;
    use clarity_core::model::RoleSet;
    use clarity_core::service::{LoginRequest, NewServiceAccount, NewUser, UserUpdate};

    let h = testing::sqlite().await.expect("sqlite");
    let mut config = config(1000);
    config.audit.server_address = Some("https://clarity.test".into());
    let clarity = h.clarity_with(config, Arc::new(SystemClock)).await;
    let client: std::net::IpAddr = [192, 0, 2, 7].into();
    let context = RequestContext {
        purpose: Some("TREAT".into()),
        client_address: Some(client),
        request_id: Some(Uuid::new_v4().to_string()),
    };
    // Callers as the HTTP server makes them: logged in and authenticated
    // with the request's client address.
    let caller = |role: Role| {
        let clarity = &clarity;
        let context = context.clone();
        async move {
            let (_, email) = testing::user_with_role(clarity, role).await;
            let tokens = clarity
                .login(
                    LoginRequest {
                        email,
                        password: SecretString::new(testing::TEST_PASSWORD),
                        totp: None,
                    },
                    Some(client),
                )
                .await
                .expect("login");
            clarity
                .authenticate_with(tokens.access_token.expose(), context)
                .await
                .expect("authenticate")
        }
    };
    let clinician = caller(Role::Clinician).await;
    let admin = caller(Role::Admin).await;
    let auditor = caller(Role::Auditor).await;

    // PatientCreate, PatientRead, PatientUpdate (patients and records).
    let patient = clarity
        .create_patient(&clinician, profile("Balp"))
        .await
        .expect("patient");
    clarity
        .get_patient(&clinician, patient.id)
        .await
        .expect("read");
    let patient = clarity
        .update_patient(&clinician, patient.id, patient.version, profile("Balp"))
        .await
        .expect("update");
    let record = clarity
        .create_record(
            &clinician,
            patient.id,
            "note",
            Json(serde_json::json!({ "text": "x" })),
        )
        .await
        .expect("record");
    clarity
        .get_record(&clinician, record.id)
        .await
        .expect("read record");
    clarity
        .update_record(
            &clinician,
            record.id,
            record.version,
            Json(serde_json::json!({ "text": "y" })),
        )
        .await
        .expect("update record");
    // PatientQuery (a patient's records, a list naming a patient), Query (a
    // lookup by a hashed field).
    clarity
        .list_records(&clinician, patient.id, &PageRequest::default())
        .await
        .expect("records");
    clarity
        .list_patients(&clinician, &PageRequest::default())
        .await
        .expect("patients");
    clarity
        .find_patients(&clinician, &PatientLookup::Mrn("nobody".into()))
        .await
        .expect("lookup");
    // PatientDelete: a record deleted, a patient erased.
    clarity
        .delete_record(&clinician, record.id)
        .await
        .expect("delete record");
    // Create, Read, Update, Delete: administration of accounts.
    let user = clarity
        .create_user(
            &admin,
            NewUser {
                email: format!("balp-{}@test.example", Uuid::new_v4().simple()),
                password: SecretString::new(testing::TEST_PASSWORD),
                roles: RoleSet::from_roles([Role::Nurse]),
                display_name: None,
                patient_id: None,
            },
        )
        .await
        .expect("user");
    clarity.get_user(&admin, user.id).await.expect("read user");
    clarity
        .update_user(
            &admin,
            user.id,
            UserUpdate {
                display_name: Some("Nurse".into()),
                ..UserUpdate::default()
            },
        )
        .await
        .expect("update user");
    let account = clarity
        .create_service_account(
            &admin,
            NewServiceAccount {
                name: format!("balp-{}", Uuid::new_v4().simple()),
                roles: RoleSet::from_roles([Role::Researcher]),
                display_name: None,
            },
        )
        .await
        .expect("service account");
    clarity
        .delete_service_account(&admin, account.client_id)
        .await
        .expect("delete service account");
    clarity
        .erase_patient(&admin, patient.id)
        .await
        .expect("erase");
    // No profile: a denied read, a failed login, a logout.
    let outsider = caller(Role::Clinician).await;
    clarity
        .get_patient(&outsider, patient.id)
        .await
        .expect_err("not on the care team");
    let failed = clarity
        .login(
            LoginRequest {
                email: "nobody@test.example".into(),
                password: SecretString::new("wrong password for nobody"),
                totp: None,
            },
            Some(client),
        )
        .await;
    assert!(failed.is_err());
    clarity.logout(&outsider).await.expect("logout");

    let ndjson = clarity
        .export_audit_fhir(&auditor, &AuditFilter::default(), 10_000)
        .await
        .expect("export");
    let lines: Vec<serde_json::Value> = ndjson
        .lines()
        .map(|l| serde_json::from_str(l).expect("each line is JSON"))
        .collect();
    let profile_of = |r: &serde_json::Value| -> Option<String> {
        let profiles = r["meta"]["profile"].as_array()?;
        assert_eq!(profiles.len(), 1, "one profile: {r}");
        Some(
            profiles[0]
                .as_str()
                .expect("uri")
                .strip_prefix(BALP)
                .expect("a BALP profile")
                .to_string(),
        )
    };
    let subtype_of =
        |r: &serde_json::Value| r["meta"]["tag"][0]["code"].as_str().map(str::to_string);
    let mut declared =
        std::collections::BTreeMap::<String, std::collections::BTreeSet<String>>::new();
    for r in &lines {
        let subtype = subtype_of(r).expect("Clarity's subtype in meta.tag");
        match profile_of(r) {
            Some(p) => {
                assert_eq!(r["outcome"], "0", "successes only: {r}");
                declared.entry(p).or_default().insert(subtype);
            }
            None => {
                // Without a profile: what BALP has none for, failures, and
                // what this test did not make through a client.
                let nodes = r["agent"]
                    .as_array()
                    .expect("agents")
                    .iter()
                    .filter(|a| a.get("network").is_some() && a["requestor"] == false)
                    .count();
                let why = r["type"]["code"] != "rest" || r["outcome"] != "0" || nodes < 2;
                assert!(why, "{subtype} should declare a profile: {r}");
            }
        }
    }
    let expect = [
        ("PatientCreate", &["patient.create", "record.create"][..]),
        ("PatientRead", &["patient.read", "record.read"]),
        ("PatientUpdate", &["patient.update", "record.update"]),
        ("PatientDelete", &["record.delete", "patient.erase"]),
        ("PatientQuery", &["record.list", "patient.list"]),
        ("Query", &["patient.lookup"]),
        ("Create", &["user.create", "service_account.create"]),
        ("Read", &["user.read"]),
        ("Update", &["user.update"]),
        ("Delete", &["service_account.delete"]),
    ];
    for (profile, subtypes) in expect {
        let got = declared.get(profile).cloned().unwrap_or_default();
        for subtype in subtypes {
            assert!(
                got.contains(*subtype),
                "{subtype} declares {profile}: {declared:?}"
            );
        }
    }
    for r in &lines {
        if matches!(r["type"]["code"].as_str(), Some("110114" | "110113")) {
            assert!(profile_of(r).is_none(), "BALP has no profile for {r}");
        }
    }
    for subtype in ["auth.login", "auth.logout"] {
        assert!(
            lines
                .iter()
                .any(|r| subtype_of(r).as_deref() == Some(subtype)),
            "the export holds {subtype}"
        );
    }

    if let Some(report) = validate_fhir(&h, &ndjson, true) {
        for (profile, _) in expect {
            assert!(
                report.contains(&format!("\n  {profile}: ")),
                "the validator checked {profile}: {report}"
            );
        }
    }
}

// S-AUD-6: retention; purge refuses younger events and leaves chains verifiable.
#[tokio::test]
async fn purge_respects_retention_and_keeps_chains_verifiable() {
    let h = testing::memory().await.expect("memory");
    let clock = Arc::new(ManualClock::new(
        DateTime::from_timestamp(1_700_000_000, 0).expect("time"),
    ));
    let clarity = h.clarity_with(config(5), clock.clone()).await;
    let clinician = principal(&clarity, Role::Clinician).await;
    let patient = clarity
        .create_patient(&clinician, profile("Old"))
        .await
        .expect("patient");
    for _ in 0..12 {
        clarity
            .get_patient(&clinician, patient.id)
            .await
            .expect("read");
    }
    let admin = principal(&clarity, Role::Admin).await;
    let refused = clarity.purge_audit(&admin, clock.now()).await;
    assert_eq!(
        refused.expect_err("too young").kind(),
        ErrorKind::InvalidInput
    );

    clock.advance(Duration::days(6 * 366 + 1));
    let cutoff = clock.now() - Duration::days(6 * 366);
    let clinician_now = clinician.clone();
    let purged = clarity.purge_audit(&admin, cutoff).await.expect("purge");
    assert!(
        purged >= 10,
        "old events purged up to a checkpoint: {purged}"
    );
    assert_eq!(
        clarity
            .purge_audit(&clinician_now, cutoff)
            .await
            .expect_err("admins only")
            .kind(),
        ErrorKind::PermissionDenied
    );
    clarity.shutdown().await;
    let reports = verify(h.audit.as_ref(), &keys(&h).await, cutoff)
        .await
        .expect("verify");
    assert!(
        reports.iter().all(|r| r.ok),
        "chains still verify after a purge: {reports:?}"
    );
}

// Group commit: many concurrent operations, each released only once durable.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_events_are_all_durable_and_chained() {
    let h = testing::sqlite().await.expect("sqlite");
    let clarity = Arc::new(h.clarity().await);
    let clinician = principal(&clarity, Role::Clinician).await;
    let patient = clarity
        .create_patient(&clinician, profile("Busy"))
        .await
        .expect("patient");
    let tasks: Vec<_> = (0..200)
        .map(|_| {
            let clarity = Arc::clone(&clarity);
            let clinician = clinician.clone();
            tokio::spawn(async move {
                clarity
                    .get_patient(&clinician, patient.id)
                    .await
                    .map(|_| ())
            })
        })
        .collect();
    for task in tasks {
        task.await.expect("task").expect("read");
    }
    let filter = AuditFilter {
        patient_id: Some(patient.id),
        subtype: Some("patient.read".into()),
        ..AuditFilter::default()
    };
    assert_eq!(
        h.audit
            .query_audit(&filter, None, 10_000)
            .await
            .expect("query")
            .len(),
        200
    );
    clarity.shutdown().await;
    let report = chain_report(&h, clarity.audit_chain()).await;
    assert!(report.ok, "{report:?}");
    assert_eq!(report.checkpoints, 1, "the final checkpoint on shutdown");
}

// S-INT-1: an altered ciphertext gives the uniform error, a serious-failure
// audit event and an integrity alert.
#[tokio::test]
async fn an_altered_ciphertext_is_a_security_event() {
    #[derive(Debug, Default)]
    struct Alerts(std::sync::Mutex<Vec<clarity_core::service::Alert>>);
    impl clarity_core::service::AlertHook for Alerts {
        fn alert(&self, alert: &clarity_core::service::Alert) {
            self.0.lock().expect("lock").push(alert.clone());
        }
    }
    let h = testing::sqlite().await.expect("sqlite");
    let alerts = Arc::new(Alerts::default());
    let clarity = h.clarity().await.with_alert_hook(alerts.clone());
    let clinician = principal(&clarity, Role::Clinician).await;
    let patient = clarity
        .create_patient(&clinician, profile("Altered"))
        .await
        .expect("patient");
    let record = clarity
        .create_record(
            &clinician,
            patient.id,
            "note",
            Json(serde_json::json!({"text": "x"})),
        )
        .await
        .expect("record");
    let mut body = h.raw.record_body(record.id).await;
    let last = body.len() - 1;
    body[last] ^= 1;
    h.raw.set_record_body(record.id, body).await;
    let err = clarity
        .get_record(&clinician, record.id)
        .await
        .expect_err("integrity");
    assert_eq!(err.kind(), ErrorKind::Integrity);
    let filter = AuditFilter {
        patient_id: Some(patient.id),
        subtype: Some("record.read".into()),
        outcome: Some("8".into()),
        ..AuditFilter::default()
    };
    let events = h.audit.query_audit(&filter, None, 10).await.expect("query");
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].reason.as_deref(), Some("integrity"));
    let raised = alerts.0.lock().expect("lock").clone();
    assert!(raised.iter().any(
        |a| a.kind == clarity_core::service::AlertKind::IntegrityFailure
            && a.patient_id == Some(patient.id)
    ));
}

/// Three events that differ in patient, actor, subtype, outcome and time,
/// then every filter of an audit query, alone and together, on `h`'s
/// backend: each must return exactly the events it names, oldest first.
async fn filters_narrow_the_query(h: Harness) {
    use clarity_core::audit::AuditOutcome;
    let start = clarity_core::clock::truncate(Utc::now());
    let clock = Arc::new(ManualClock::new(start));
    let writer = AuditWriter::start(
        Arc::clone(&h.audit),
        keys(&h).await,
        Arc::clone(&clock) as Arc<dyn Clock>,
        WriterSettings::default(),
    );
    let (a, b, x, y) = (
        Uuid::now_v7(),
        Uuid::now_v7(),
        Uuid::now_v7(),
        Uuid::now_v7(),
    );
    for (patient, actor, subtype, outcome) in [
        (a, x, "patient.read", AuditOutcome::Success),
        (b, x, "record.read", AuditOutcome::Success),
        (a, y, "patient.read", AuditOutcome::MinorFailure),
    ] {
        let mut draft = testing::read_event_draft();
        (draft.patient_id, draft.actor_id) = (Some(patient), Some(actor));
        (draft.subtype, draft.outcome) = (subtype, outcome);
        writer.append(draft).await.expect("append");
        clock.advance(Duration::hours(1));
    }
    writer.shutdown().await;
    let all = h
        .audit
        .query_audit(&AuditFilter::default(), None, 100)
        .await
        .expect("query");
    assert_eq!(all.len(), 3);
    let ids = |picked: &[usize]| picked.iter().map(|i| all[*i].id).collect::<Vec<_>>();
    let hour = |n: i64| Some(start + Duration::hours(n));
    let cases = [
        (
            AuditFilter {
                patient_id: Some(a),
                ..Default::default()
            },
            vec![0, 2],
        ),
        (
            AuditFilter {
                actor_id: Some(x),
                ..Default::default()
            },
            vec![0, 1],
        ),
        (
            AuditFilter {
                subtype: Some("record.read".into()),
                ..Default::default()
            },
            vec![1],
        ),
        (
            AuditFilter {
                outcome: Some("4".into()),
                ..Default::default()
            },
            vec![2],
        ),
        (
            AuditFilter {
                from: hour(1),
                ..Default::default()
            },
            vec![1, 2],
        ),
        (
            AuditFilter {
                to: hour(1),
                ..Default::default()
            },
            vec![0],
        ),
        (
            AuditFilter {
                patient_id: Some(a),
                from: hour(1),
                ..Default::default()
            },
            vec![2],
        ),
        (
            AuditFilter {
                patient_id: Some(a),
                actor_id: Some(y),
                subtype: Some("patient.read".into()),
                outcome: Some("4".into()),
                from: hour(2),
                to: hour(3),
            },
            vec![2],
        ),
        (
            AuditFilter {
                patient_id: Some(b),
                actor_id: Some(y),
                ..Default::default()
            },
            vec![],
        ),
    ];
    for (filter, expected) in cases {
        let found: Vec<Uuid> = h
            .audit
            .query_audit(&filter, None, 100)
            .await
            .expect("query")
            .iter()
            .map(|e| e.id)
            .collect();
        assert_eq!(found, ids(&expected), "{filter:?}");
    }
    // Paging: after the first of patient a's events comes only the second.
    let by_a = AuditFilter {
        patient_id: Some(a),
        ..Default::default()
    };
    let next = h
        .audit
        .query_audit(&by_a, Some(all[0].id), 100)
        .await
        .expect("query");
    assert_eq!(next.iter().map(|e| e.id).collect::<Vec<_>>(), ids(&[2]));
}

// S-AUD-5
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_audit_filter_narrows_the_query_on_sqlite() {
    filters_narrow_the_query(testing::sqlite().await.expect("sqlite")).await;
}

// S-AUD-5
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_audit_filter_narrows_the_query_on_postgres() {
    let Some(h) = testing::postgres().await else {
        return;
    };
    filters_narrow_the_query(h).await;
}

// S-AUD-5
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_audit_filter_narrows_the_query_in_memory() {
    filters_narrow_the_query(testing::memory().await.expect("memory")).await;
}
