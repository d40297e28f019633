//! S-KEY-2: KEK rotation re-wraps every data key without touching records;
//! data written before still reads; old versions only unwrap; rotation is
//! resumable after a crash; it is audited and for admins only.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use clarity_core::audit::AuditFilter;
use clarity_core::clock::SystemClock;
use clarity_core::crypto::Json;
use clarity_core::crypto::{Key, KeyProvider, WrappedKey};
use clarity_core::model::Role;
use clarity_core::model::{PageRequest, PatientProfile};
use clarity_core::service::Clarity;
use clarity_core::store::Backends;
use clarity_core::testing::{self, Harness, principal};
use clarity_core::{ErrorKind, service::KekUsage};

fn profile(n: usize) -> PatientProfile {
    PatientProfile {
        mrn: format!("KR-{}-{n}", uuid::Uuid::new_v4().simple()),
        given_name: "Rotating".into(),
        family_name: "Keys".into(),
        birth_date: "1966-06-06".into(),
        sex: "other".into(),
        email: None,
        phone: None,
        address: None,
        data: None,
    }
}

/// How many audit events of `subtype` the harness's store holds.
async fn events_of(h: &Harness, subtype: &str) -> usize {
    let filter = AuditFilter {
        subtype: Some(subtype.into()),
        ..AuditFilter::default()
    };
    h.audit
        .query_audit(&filter, None, 10)
        .await
        .expect("query")
        .len()
}

/// `n` patients with one record each: (patient, record, record body).
async fn patients_with_records(
    clarity: &Clarity,
    clinician: &clarity_core::access::Principal,
    n: usize,
) -> Vec<(uuid::Uuid, uuid::Uuid, Json)> {
    let mut out = Vec::new();
    for n in 0..n {
        let p = clarity
            .create_patient(clinician, profile(n))
            .await
            .expect("patient");
        let r = clarity
            .create_record(clinician, p.id, "note", Json(serde_json::json!({"n": n})))
            .await
            .expect("record");
        out.push((p.id, r.id, r.data.expose().clone()));
    }
    out
}

/// Asserts that every record and profile of `records` reads after a
/// rotation, and users' data (the directory key) too.
async fn all_read(
    clarity: &Clarity,
    clinician: &clarity_core::access::Principal,
    admin: &clarity_core::access::Principal,
    records: &[(uuid::Uuid, uuid::Uuid, Json)],
) {
    for (patient, record, data) in records {
        let read = clarity
            .get_record(clinician, *record)
            .await
            .expect("reads after rotation");
        assert_eq!(read.data.expose(), data);
        clarity
            .get_patient(clinician, *patient)
            .await
            .expect("profile reads");
    }
    clarity
        .list_users(admin, &PageRequest::default())
        .await
        .expect("users read");
}

async fn rotation(h: Harness) {
    let clarity = h.clarity().await;
    let clinician = principal(&clarity, Role::Clinician).await;
    let admin = principal(&clarity, Role::Admin).await;
    let records = patients_with_records(&clarity, &clinician, 7).await;
    let bodies_before: Vec<Vec<u8>> = {
        let mut out = Vec::new();
        for (_, r, _) in &records {
            out.push(h.raw.record_body(*r).await);
        }
        out
    };

    assert_eq!(
        clarity
            .rotate_keys(&clinician, &|_| {})
            .await
            .expect_err("admins only")
            .kind(),
        ErrorKind::PermissionDenied
    );
    let seen = std::sync::Mutex::new(Vec::new());
    let report = clarity
        .rotate_keys(&admin, &|n| seen.lock().expect("lock").push(n))
        .await
        .expect("rotate");
    assert_eq!(
        (report.kek_version, report.new_version, report.rewrapped),
        (2, true, 7)
    );
    assert_eq!(
        seen.lock().expect("lock").last().copied(),
        Some(7),
        "progress is reported"
    );

    let status = clarity.key_status(&admin).await.expect("status");
    assert_eq!(status.current_kek_version, 2);
    assert_eq!(status.kek_versions, vec![1, 2]);
    assert_eq!(
        status.usage,
        vec![KekUsage {
            kek_version: 2,
            data_keys: 7
        }]
    );

    // Records were not re-encrypted, and still read.
    for ((_, record, _), before) in records.iter().zip(&bodies_before) {
        assert_eq!(
            &h.raw.record_body(*record).await,
            before,
            "record ciphertext untouched"
        );
    }
    all_read(&clarity, &clinician, &admin, &records).await;

    // A crash after the new version but before re-wrapping: the next run finishes it.
    let version = h.keys.rotate().await.expect("provider rotation alone");
    assert_eq!(version, 3);
    let resumed = clarity.rotate_keys(&admin, &|_| {}).await.expect("resume");
    assert_eq!(
        (resumed.kek_version, resumed.new_version, resumed.rewrapped),
        (3, false, 7)
    );
    let status = clarity.key_status(&admin).await.expect("status");
    assert_eq!(
        status.usage,
        vec![KekUsage {
            kek_version: 3,
            data_keys: 7
        }]
    );
    let fresh = clarity
        .create_patient(&clinician, profile(99))
        .await
        .expect("new patient");
    assert_eq!(
        h.store
            .get_data_key(fresh.id)
            .await
            .expect("key")
            .expect("row")
            .kek_version,
        3
    );

    let filter = AuditFilter {
        actor_id: Some(admin.user_id()),
        subtype: Some("keys.rotate".into()),
        ..AuditFilter::default()
    };
    let events = h.audit.query_audit(&filter, None, 10).await.expect("query");
    assert_eq!(
        events.iter().filter(|e| e.outcome == "0").count(),
        2,
        "rotations are audited"
    );
    let created = AuditFilter {
        subtype: Some("keys.kek_created".into()),
        ..AuditFilter::default()
    };
    let created = h
        .audit
        .query_audit(&created, None, 10)
        .await
        .expect("query");
    assert_eq!(
        created.len(),
        1,
        "the new version is on record before re-wrapping"
    );
    assert_eq!(created[0].reason.as_deref(), Some("kek_version=2"));
}

// S-KEY-2
#[tokio::test]
async fn rotation_on_memory() {
    rotation(testing::memory().await.expect("memory")).await;
}

// S-KEY-2
#[tokio::test]
async fn rotation_on_sqlite() {
    rotation(testing::sqlite().await.expect("sqlite")).await;
}

// S-KEY-2
#[tokio::test]
async fn rotation_on_postgres() {
    let Some(h) = testing::postgres().await else {
        return;
    };
    rotation(h).await;
}

// S-KEY-1, S-KEY-2: the same rotation with the KEKs in OpenBao transit.
#[tokio::test]
async fn rotation_on_transit() {
    let Some(h) = testing::sqlite_transit().await else {
        return;
    };
    rotation(h).await;
}

// S-KEY-2, S-KEY-4: the same rotation with the KEKs in a PKCS#11 token (SoftHSM2).
#[tokio::test]
async fn rotation_on_pkcs11() {
    let Some(h) = testing::sqlite_pkcs11().await else {
        return;
    };
    rotation(h).await;
}

// S-KEY-2, S-KEY-4: with AWS KMS a new KEK version is a change of key id
// (A moved into keys.kms_previous_key_ids, B current): `keys rotate`
// re-wraps every data key, the directory key and the root secret under B
// inside KMS, and records stay readable; rotating again asks for a new key
// id instead of making a version.
#[tokio::test]
async fn rotation_on_kms() {
    let Some(first) = testing::kms_settings().await else {
        return;
    };
    let Some(mut second) = testing::kms_settings().await else {
        return;
    };
    let h = testing::sqlite_kms_with(first.clone()).await;
    let clarity = h.clarity().await;
    let clinician = principal(&clarity, Role::Clinician).await;
    let admin = principal(&clarity, Role::Admin).await;
    let records = patients_with_records(&clarity, &clinician, 5).await;
    drop(clarity);

    second.previous_key_ids = vec![first.key_id.clone()];
    let keys = clarity_core::vault::open_kms(second, h.store.as_ref())
        .await
        .expect("open with the new key id");
    let mut config = clarity_core::config::Config::default();
    config.keys.erasure_ledger_dir = Some(h.dir.path().join("erasures"));
    config.audit.witness_dir = Some(h.dir.path().join("audit-witness"));
    let backends = Backends {
        rows: Arc::clone(&h.store),
        identity: Arc::clone(&h.identity),
        audit: Arc::clone(&h.audit),
    };
    let clarity = testing::with_parts(config, backends, keys, Arc::new(SystemClock))
        .await
        .expect("open");
    let report = clarity.rotate_keys(&admin, &|_| {}).await.expect("rotate");
    assert_eq!(
        (
            report.kek_version,
            report.new_version,
            report.rewrapped,
            report.failed
        ),
        (2, false, 5, 0)
    );
    let status = clarity.key_status(&admin).await.expect("status");
    assert_eq!(status.kek_versions, vec![1, 2]);
    assert_eq!(
        status.usage,
        vec![KekUsage {
            kek_version: 2,
            data_keys: 5
        }]
    );
    all_read(&clarity, &clinician, &admin, &records).await;
    let again = clarity
        .rotate_keys(&admin, &|_| {})
        .await
        .expect_err("a new version needs a new key id");
    assert_eq!(again.kind(), ErrorKind::Key);
}

/// A key provider that stops working after a number of re-wraps, like a
/// process killed in the middle of a rotation.
#[derive(Debug)]
struct CrashingProvider {
    inner: Arc<dyn KeyProvider>,
    rewraps_left: AtomicI64,
    /// Data keys unwrapped through it.
    unwraps: AtomicI64,
}

#[async_trait::async_trait]
impl KeyProvider for CrashingProvider {
    fn name(&self) -> &'static str {
        self.inner.name()
    }
    async fn current_kek_version(&self) -> clarity_core::Result<i32> {
        self.inner.current_kek_version().await
    }
    async fn kek_versions(&self) -> clarity_core::Result<Vec<i32>> {
        self.inner.kek_versions().await
    }
    async fn rotate(&self) -> clarity_core::Result<i32> {
        self.inner.rotate().await
    }
    async fn wrap(&self, key: &Key, context: &[u8]) -> clarity_core::Result<WrappedKey> {
        self.inner.wrap(key, context).await
    }
    async fn unwrap(&self, wrapped: &WrappedKey, context: &[u8]) -> clarity_core::Result<Key> {
        self.unwraps.fetch_add(1, Ordering::SeqCst);
        self.inner.unwrap(wrapped, context).await
    }
    async fn rewrap(
        &self,
        wrapped: &WrappedKey,
        context: &[u8],
    ) -> clarity_core::Result<WrappedKey> {
        if self.rewraps_left.fetch_sub(1, Ordering::SeqCst) <= 0 {
            return Err(clarity_core::Error::Unavailable {
                message: "crashed".into(),
            });
        }
        self.inner.rewrap(wrapped, context).await
    }
    async fn retire_below(&self, version: i32) -> clarity_core::Result<()> {
        self.inner.retire_below(version).await
    }
    async fn root_key(&self) -> clarity_core::Result<Key> {
        self.inner.root_key().await
    }
    async fn check(&self) -> clarity_core::Result<()> {
        self.inner.check().await
    }
}

/// A rotation that dies after 5 of 12 re-wraps leaves both versions in use;
/// the next run finishes it without a new version; every record reads; the
/// unused old version is then retired.
async fn crash_in_the_middle_of_rewrapping(h: Harness) {
    let clarity = h.clarity().await;
    let clinician = principal(&clarity, Role::Clinician).await;
    let admin = principal(&clarity, Role::Admin).await;
    let records: Vec<uuid::Uuid> = patients_with_records(&clarity, &clinician, 12)
        .await
        .into_iter()
        .map(|(_, record, _)| record)
        .collect();
    let crashing = Arc::new(CrashingProvider {
        inner: Arc::clone(&h.keys),
        rewraps_left: AtomicI64::new(5),
        unwraps: AtomicI64::new(0),
    });
    let backends = Backends {
        rows: Arc::clone(&h.store),
        identity: Arc::clone(&h.identity),
        audit: Arc::clone(&h.audit),
    };
    let doomed = testing::with_parts(h.config(), backends, crashing, Arc::new(SystemClock))
        .await
        .expect("open");
    let err = doomed
        .rotate_keys(&admin, &|_| {})
        .await
        .expect_err("the provider dies mid-rotation");
    assert_eq!(err.kind(), ErrorKind::Unavailable);
    doomed.shutdown().await;
    let status = clarity.key_status(&admin).await.expect("status");
    assert_eq!(
        status.usage,
        vec![
            KekUsage {
                kek_version: 1,
                data_keys: 7
            },
            KekUsage {
                kek_version: 2,
                data_keys: 5
            }
        ],
        "half-way: both versions wrap data keys, and both unwrap"
    );
    for id in &records {
        clarity
            .get_record(&clinician, *id)
            .await
            .expect("reads mid-rotation");
    }
    let resumed = clarity.rotate_keys(&admin, &|_| {}).await.expect("resume");
    assert_eq!(
        (resumed.kek_version, resumed.new_version, resumed.rewrapped),
        (2, false, 7)
    );
    let retired = clarity.retire_keys(&admin, false).await.expect("retire");
    assert_eq!(retired.retired, vec![1]);
    assert_eq!(retired.kek_versions, vec![2]);
    for id in &records {
        clarity
            .get_record(&clinician, *id)
            .await
            .expect("reads after rotation and retirement");
    }
    assert_eq!(
        events_of(&h, "keys.retire").await,
        1,
        "retirement is audited"
    );
}

// S-KEY-2: resumable after a crash, local keyring.
#[tokio::test]
async fn crash_mid_rewrap_resumes_on_sqlite() {
    crash_in_the_middle_of_rewrapping(testing::sqlite().await.expect("sqlite")).await;
}

// S-KEY-2: resumable after a crash, OpenBao transit.
#[tokio::test]
async fn crash_mid_rewrap_resumes_on_transit() {
    let Some(h) = testing::sqlite_transit().await else {
        return;
    };
    crash_in_the_middle_of_rewrapping(h).await;
}

// S-KEY-2, S-KEY-4: resumable after a crash, and the old version retired,
// with the KEKs in a PKCS#11 token.
#[tokio::test]
async fn crash_mid_rewrap_resumes_on_pkcs11() {
    let Some(h) = testing::sqlite_pkcs11().await else {
        return;
    };
    crash_in_the_middle_of_rewrapping(h).await;
}

// S-KEY-2, S-INT-1: one damaged data key does not stop the rotation of the others.
#[tokio::test]
async fn a_damaged_data_key_is_reported_and_the_rest_rotate() {
    let h = testing::sqlite().await.expect("sqlite");
    let clarity = h.clarity().await;
    let clinician = principal(&clarity, Role::Clinician).await;
    let admin = principal(&clarity, Role::Admin).await;
    let mut patients = Vec::new();
    for n in 0..4 {
        patients.push(
            clarity
                .create_patient(&clinician, profile(n))
                .await
                .expect("patient")
                .id,
        );
    }
    let victim = h
        .store
        .get_data_key(patients[1])
        .await
        .expect("read")
        .expect("key");
    let mut damaged = victim.clone();
    damaged.wrapped[5] ^= 0xff;
    assert!(
        h.store
            .rewrap_data_key(&damaged, victim.kek_version)
            .await
            .expect("tamper")
    );

    let report = clarity
        .rotate_keys(&admin, &|_| {})
        .await
        .expect("rotation completes");
    assert_eq!((report.rewrapped, report.failed), (3, 1));
    for (i, id) in patients.iter().enumerate() {
        let read = clarity.get_patient(&clinician, *id).await;
        assert_eq!(read.is_ok(), i != 1, "patient {i}");
    }
    let status = clarity.key_status(&admin).await.expect("status");
    assert_eq!(
        status.usage,
        vec![
            KekUsage {
                kek_version: 1,
                data_keys: 1
            },
            KekUsage {
                kek_version: 2,
                data_keys: 3
            }
        ]
    );
}

// S-KEY-2, S-AUTH-3: the token key rotates with overlap: live tokens keep
// working (also after a restart), new tokens use the new key, audited.
#[tokio::test]
async fn token_key_rotation_keeps_live_sessions() {
    let h = testing::sqlite().await.expect("sqlite");
    let clarity = h.clarity().await;
    let (_, email) = testing::user_with_role(&clarity, Role::Clinician).await;
    let before = testing::access_token(&clarity, &email).await;
    let admin = principal(&clarity, Role::Admin).await;
    let clinician = principal(&clarity, Role::Clinician).await;
    assert_eq!(
        clarity
            .rotate_token_key(&clinician)
            .await
            .expect_err("admins only")
            .kind(),
        ErrorKind::PermissionDenied
    );
    let report = clarity.rotate_token_key(&admin).await.expect("rotate");
    assert_eq!(report.version, 2);
    clarity
        .authenticate(&before)
        .await
        .expect("a live token survives the rotation");
    let after = testing::access_token(&clarity, &email).await;
    let kid = |t: &str| t.rsplit('.').next().map(str::to_string);
    assert_ne!(kid(&before), kid(&after), "new tokens name the new key");
    clarity.authenticate(&after).await.expect("new token");
    clarity.shutdown().await;

    let restarted = h.clarity().await;
    restarted
        .authenticate(&before)
        .await
        .expect("the overlap is kept in the store");
    restarted.authenticate(&after).await.expect("new token");
    let fresh = testing::access_token(&restarted, &email).await;
    assert_eq!(kid(&fresh), kid(&after), "a restart issues under version 2");
    assert_eq!(
        events_of(&h, "keys.token_rotate").await,
        2,
        "the refused and the done rotation are audited"
    );
}

// S-KEY-2: `keys status` names the token and audit key versions, and each
// rotation moves on from the version the store holds, also when one
// instance rotates twice without a restart or another instance rotated.
#[tokio::test]
async fn key_status_reports_token_and_audit_key_versions() {
    let h = testing::sqlite().await.expect("sqlite");
    let a = h.clarity().await;
    let b = h.clarity().await;
    let admin = principal(&a, Role::Admin).await;
    let fresh = a.key_status(&admin).await.expect("status");
    assert_eq!(
        (
            fresh.token_key_version,
            fresh.token_previous_accepted_until,
            fresh.audit_key_version
        ),
        (1, None, 1)
    );
    assert_eq!(a.rotate_token_key(&admin).await.expect("rotate").version, 2);
    assert_eq!(a.rotate_token_key(&admin).await.expect("again").version, 3);
    // B started at version 1; the store says 3.
    let by_b = b.rotate_token_key(&admin).await.expect("from b");
    assert_eq!(by_b.version, 4);
    assert_eq!(a.rotate_audit_key(&admin).await.expect("audit"), 2);
    assert_eq!(a.rotate_audit_key(&admin).await.expect("audit again"), 3);
    assert_eq!(b.rotate_audit_key(&admin).await.expect("audit from b"), 4);
    let status = a.key_status(&admin).await.expect("status");
    assert_eq!(status.token_key_version, 4);
    assert_eq!(
        status.token_previous_accepted_until,
        Some(by_b.previous_accepted_until)
    );
    assert_eq!(status.audit_key_version, 4);
    a.shutdown().await;
    b.shutdown().await;
}

// S-KEY-2, S-AUD-3: the audit key rotates: chains started afterwards use the
// new version, older chains keep theirs, and every chain keeps verifying.
#[tokio::test]
async fn audit_key_rotation_keeps_every_chain_verifying() {
    let h = testing::sqlite().await.expect("sqlite");
    let clarity = h.clarity().await;
    let admin = principal(&clarity, Role::Admin).await;
    let clinician = principal(&clarity, Role::Clinician).await;
    patients_with_records(&clarity, &clinician, 2).await;
    assert_eq!(clarity.rotate_audit_key(&admin).await.expect("rotate"), 2);
    let first_chain = clarity.audit_chain();
    clarity.shutdown().await;

    let restarted = h.clarity().await;
    let clinician = principal(&restarted, Role::Clinician).await;
    patients_with_records(&restarted, &clinician, 2).await;
    let second_chain = restarted.audit_chain();
    let reports = restarted
        .verify_audit(&restarted.operator().await.expect("operator"))
        .await
        .expect("verify");
    assert!(
        reports.len() >= 2 && reports.iter().all(|r| r.ok),
        "{reports:?}"
    );
    restarted.shutdown().await;

    // The new chain is not under version 1: the old key alone refuses it.
    let root = h.keys.root_key().await.expect("root");
    let v1 = clarity_core::audit::AuditKeys::derive(&root).expect("v1");
    let cutoff = chrono::Utc::now() - chrono::Duration::days(3000);
    let by_v1 = clarity_core::audit::verify(h.audit.as_ref(), &v1, cutoff)
        .await
        .expect("verify");
    let ok = |chain| by_v1.iter().find(|r| r.chain_id == chain).map(|r| r.ok);
    assert_eq!(ok(first_chain), Some(true));
    assert_eq!(ok(second_chain), Some(false));
    assert_eq!(events_of(&h, "keys.audit_rotate").await, 1, "audited");
}

/// A data key is unwrapped once per wrapping, not once per read: reads
/// after the first reuse it; a rotation's new wrapping is unwrapped anew
/// (the old one is never used again); an erased patient's key is not
/// found whatever was unwrapped before.
async fn data_keys_are_unwrapped_once_per_wrapping(h: Harness) {
    let counting = Arc::new(CrashingProvider {
        inner: Arc::clone(&h.keys),
        rewraps_left: AtomicI64::new(i64::MAX),
        unwraps: AtomicI64::new(0),
    });
    let backends = Backends {
        rows: Arc::clone(&h.store),
        identity: Arc::clone(&h.identity),
        audit: Arc::clone(&h.audit),
    };
    let clarity = testing::with_parts(
        h.config(),
        backends,
        Arc::clone(&counting) as Arc<dyn KeyProvider>,
        Arc::new(SystemClock),
    )
    .await
    .expect("open");
    let clinician = principal(&clarity, Role::Clinician).await;
    let admin = principal(&clarity, Role::Admin).await;
    let (patient, record, _) = patients_with_records(&clarity, &clinician, 1)
        .await
        .remove(0);
    let before = counting.unwraps.load(Ordering::SeqCst);
    for _ in 0..5 {
        clarity
            .get_patient(&clinician, patient)
            .await
            .expect("patient");
        clarity
            .get_record(&clinician, record)
            .await
            .expect("record");
    }
    let read = counting.unwraps.load(Ordering::SeqCst) - before;
    assert!(read <= 1, "ten reads unwrapped the data key {read} times");

    clarity.rotate_keys(&admin, &|_| {}).await.expect("rotate");
    let before = counting.unwraps.load(Ordering::SeqCst);
    for _ in 0..3 {
        clarity
            .get_record(&clinician, record)
            .await
            .expect("record");
    }
    assert_eq!(
        counting.unwraps.load(Ordering::SeqCst) - before,
        1,
        "the new wrapping is unwrapped once"
    );

    clarity.erase_patient(&admin, patient).await.expect("erase");
    let err = clarity
        .get_record(&clinician, record)
        .await
        .expect_err("an erased patient's record");
    assert_eq!(err.kind(), ErrorKind::NotFound);
    clarity.shutdown().await;
}

// S-KEY-2, S-KEY-3
#[tokio::test]
async fn data_keys_are_unwrapped_once_per_wrapping_on_sqlite() {
    data_keys_are_unwrapped_once_per_wrapping(testing::sqlite().await.expect("sqlite")).await;
}

// S-KEY-2, S-KEY-3
#[tokio::test]
async fn data_keys_are_unwrapped_once_per_wrapping_on_postgres() {
    let Some(h) = testing::postgres().await else {
        return;
    };
    data_keys_are_unwrapped_once_per_wrapping(h).await;
}
