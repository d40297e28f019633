//! S-BAK-1: encrypted backups with a signed manifest; a backup → wipe →
//! restore round trip gives identical logical contents and verifying audit
//! chains, on SQLite, on PostgreSQL and from SQLite to PostgreSQL; tampered
//! and wrong-key archives are refused before anything is swapped in.
//! S-KEY-3: a patient erased after a backup stays unreadable after a restore.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use clarity_core::backup::{self, Manifest};
use clarity_core::config::{Backend, KeyProviderKind};
use clarity_core::crypto::{Json, SecretString};
use clarity_core::model::PatientProfile;
use clarity_core::model::Role;
use clarity_core::testing::{self, access_token, user_with_role};
use clarity_core::{Clarity, Config, ErrorKind};
use uuid::Uuid;

fn sqlite_config(dir: &Path) -> Config {
    let mut config = Config::default();
    config.data_dir = dir.to_path_buf();
    config
}

/// A configuration on a schema of its own in the test PostgreSQL server,
/// with the keyring in `dir`; `None` when PostgreSQL is not configured.
fn postgres_config(dir: &Path) -> Option<(Config, String)> {
    let url = testing::service_var(testing::POSTGRES_URL_VAR, "PostgreSQL")?;
    let schema = format!("bk_{}", Uuid::new_v4().simple());
    let mut config = sqlite_config(dir);
    config.store.backend = Backend::Postgres;
    config.store.postgres_url = Some(SecretString::new(url));
    config.store.postgres_schema = Some(schema.clone());
    config.store.pool_size = 4;
    Some((config, schema))
}

fn drop_schema(schema: &str) {
    let url = std::env::var(testing::POSTGRES_URL_VAR).expect("url");
    let status = std::process::Command::new("psql")
        .args([
            url.as_str(),
            "-qAtc",
            &format!("DROP SCHEMA IF EXISTS {schema} CASCADE"),
        ])
        .status()
        .expect("psql");
    assert!(status.success());
}

/// What the test wrote, to read back after the restore.
struct Written {
    clinician_email: String,
    patients: Vec<Uuid>,
    records: Vec<(Uuid, serde_json::Value)>,
}

fn profile(n: usize) -> PatientProfile {
    PatientProfile {
        mrn: format!("BK-{}-{n}", Uuid::new_v4().simple()),
        given_name: "Backed".into(),
        family_name: "Up".into(),
        birth_date: "1971-02-03".into(),
        sex: "female".into(),
        email: Some(format!("bk{n}@example.org")),
        phone: None,
        address: None,
        data: None,
    }
}

async fn fill(clarity: &Clarity) -> Written {
    let (_, clinician_email) = user_with_role(clarity, Role::Clinician).await;
    user_with_role(clarity, Role::Admin).await;
    let token = access_token(clarity, &clinician_email).await;
    let clinician = clarity.authenticate(&token).await.expect("authenticate");
    let mut written = Written {
        clinician_email,
        patients: Vec::new(),
        records: Vec::new(),
    };
    for n in 0..6 {
        let p = clarity
            .create_patient(&clinician, profile(n))
            .await
            .expect("patient");
        for r in 0..3 {
            let body = serde_json::json!({ "n": n, "r": r });
            let rec = clarity
                .create_record(&clinician, p.id, "note", Json(body.clone()))
                .await
                .expect("record");
            written.records.push((rec.id, body));
        }
        written.patients.push(p.id);
    }
    written
}

async fn take_backup(config: &Config, out: &Path) -> Manifest {
    let clarity = Clarity::open(config.clone()).await.expect("open");
    let manifest = clarity
        .backup(&clarity.operator().await.expect("operator"), out, &|_| {})
        .await
        .expect("backup");
    clarity.shutdown().await;
    manifest
}

fn wipe_sqlite(config: &Config) {
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", config.sqlite_path().display()));
    }
}

/// Every table but the audit trail (which gains the backup and restore
/// events) must be identical, row for row; the audit trail keeps every event.
fn assert_same_contents(before: &Manifest, after: &Manifest) {
    for (a, b) in before.tables.iter().zip(&after.tables) {
        assert_eq!(a.name, b.name);
        if a.name.starts_with("audit_") {
            assert!(b.rows >= a.rows, "{}: audit rows kept", a.name);
        } else {
            assert_eq!(a, b, "table {} differs after the restore", a.name);
        }
    }
}

/// Reads everything back as the clinician, and checks the audit chains.
async fn assert_readable(config: &Config, written: &Written) {
    let clarity = Clarity::open(config.clone()).await.expect("open restored");
    let token = access_token(&clarity, &written.clinician_email).await;
    let clinician = clarity.authenticate(&token).await.expect("authenticate");
    for id in &written.patients {
        clarity.get_patient(&clinician, *id).await.expect("patient");
    }
    for (id, body) in &written.records {
        let read = clarity.get_record(&clinician, *id).await.expect("record");
        assert_eq!(&read.data.expose().0, body);
    }
    let reports = clarity
        .verify_audit(&clarity.operator().await.expect("operator"))
        .await
        .expect("verify");
    assert!(reports.iter().all(|r| r.ok), "{reports:?}");
    clarity.shutdown().await;
}

/// backup → wipe → restore on `target` (`None`: the same store).
async fn round_trip(
    source: Config,
    target: Option<Config>,
    dir: &Path,
    wipe: impl FnOnce(&Config),
) {
    let clarity = Clarity::open(source.clone()).await.expect("open");
    let written = fill(&clarity).await;
    clarity.shutdown().await;
    let archive = dir.join("round-trip.cbak");
    let before = take_backup(&source, &archive).await;
    assert_eq!(before.tables.len(), 18);
    assert!(
        before
            .tables
            .iter()
            .any(|t| t.name == "records" && t.rows == 18)
    );
    assert_eq!(
        backup::verify(&source, &archive, &|_| {})
            .await
            .expect("verify"),
        before
    );

    wipe(&source);
    let target = target.unwrap_or(source);
    let report = Clarity::restore(&target, &archive, &|_| {})
        .await
        .expect("restore");
    assert_eq!(report.erased_patients_skipped, 0);
    assert!(report.audit_chains_verified >= 1);
    let after = take_backup(&target, &dir.join("after.cbak")).await;
    assert_same_contents(&before, &after);
    assert_readable(&target, &written).await;
    // The restore is in the restored store's audit trail, by the operator.
    let clarity = Clarity::open(target.clone()).await.expect("open");
    let operator = clarity.operator().await.expect("operator");
    let restores = clarity_core::audit::AuditFilter {
        subtype: Some("backup.restore".into()),
        ..Default::default()
    };
    let events = clarity
        .audit_events(&operator, &restores, &Default::default())
        .await
        .expect("audit")
        .items;
    assert_eq!(events.len(), 1, "one restore event");
    assert_eq!(events[0].actor_id, Some(clarity_core::service::OPERATOR_ID));
    clarity.shutdown().await;
}

// S-BAK-1
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn round_trip_on_sqlite() {
    let dir = tempfile::tempdir().expect("tempdir");
    round_trip(sqlite_config(dir.path()), None, dir.path(), wipe_sqlite).await;
}

// S-BAK-1
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn round_trip_on_postgres() {
    let dir = tempfile::tempdir().expect("tempdir");
    let Some((config, schema)) = postgres_config(dir.path()) else {
        return;
    };
    let wipe_schema = schema.clone();
    round_trip(config, None, dir.path(), move |_| drop_schema(&wipe_schema)).await;
    drop_schema(&schema);
}

// S-BAK-1: from one machine (SQLite) to several (PostgreSQL).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn round_trip_from_sqlite_to_postgres() {
    let dir = tempfile::tempdir().expect("tempdir");
    let Some((target, schema)) = postgres_config(dir.path()) else {
        return;
    };
    round_trip(
        sqlite_config(dir.path()),
        Some(target),
        dir.path(),
        wipe_sqlite,
    )
    .await;
    drop_schema(&schema);
}

fn altered_copy(archive: &Path, name: &str, change: impl FnOnce(&mut Vec<u8>)) -> PathBuf {
    let mut bytes = std::fs::read(archive).expect("read");
    change(&mut bytes);
    let path = archive.with_file_name(name);
    std::fs::write(&path, bytes).expect("write");
    path
}

// S-BAK-1: tampered, truncated and wrong-key archives are refused with
// clear errors, and nothing is swapped in.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tampered_and_wrong_key_archives_are_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let source = sqlite_config(&dir.path().join("source"));
    let clarity = Clarity::open(source.clone()).await.expect("open");
    fill(&clarity).await;
    clarity.shutdown().await;
    let archive = dir.path().join("good.cbak");
    take_backup(&source, &archive).await;
    let len = std::fs::metadata(&archive).expect("meta").len() as usize;

    // The same keyring, an empty target.
    let target_dir = dir.path().join("target");
    std::fs::create_dir_all(&target_dir).expect("mkdir");
    std::fs::copy(source.keyring_path(), target_dir.join("keyring.json")).expect("copy keyring");
    let target = sqlite_config(&target_dir);

    let cases = [
        (
            "chunk.cbak",
            altered_copy(&archive, "chunk.cbak", |b| b[len / 2] ^= 1),
            "failed authentication",
        ),
        (
            "manifest.cbak",
            altered_copy(&archive, "manifest.cbak", |b| b[len - 60] ^= 1),
            "manifest signature",
        ),
        (
            "truncated.cbak",
            altered_copy(&archive, "truncated.cbak", |b| b.truncate(len - 100)),
            "refused",
        ),
        (
            "header.cbak",
            altered_copy(&archive, "header.cbak", |b| b[20] ^= 1),
            "refused",
        ),
    ];
    for (name, path, expected) in cases {
        let err = backup::verify(&target, &path, &|_| {})
            .await
            .expect_err(name);
        assert!(err.to_string().contains(expected), "{name}: {err}");
        let err = Clarity::restore(&target, &path, &|_| {})
            .await
            .expect_err(name);
        assert!(
            err.to_string().contains("refused") || err.to_string().contains("wrong key"),
            "{name}: {err}"
        );
        assert!(!target.sqlite_path().exists(), "{name}: nothing swapped in");
    }
    // A different keyring: a wrong key, said so.
    let stranger_dir = dir.path().join("stranger");
    let stranger = sqlite_config(&stranger_dir);
    let other = Clarity::open(stranger.clone())
        .await
        .expect("a store with its own keyring");
    other.shutdown().await;
    wipe_sqlite(&stranger);
    let err = Clarity::restore(&stranger, &archive, &|_| {})
        .await
        .expect_err("wrong key");
    assert_eq!(err.kind(), ErrorKind::Key);
    assert!(err.to_string().contains("wrong key"), "{err}");
    assert!(!stranger.sqlite_path().exists(), "nothing swapped in");
    // The untouched archive restores.
    Clarity::restore(&target, &archive, &|_| {})
        .await
        .expect("restore");
    // And not twice: the target now holds data.
    let err = Clarity::restore(&target, &archive, &|_| {})
        .await
        .expect_err("not empty");
    assert!(err.to_string().contains("not empty"), "{err}");
}

// S-KEY-3: a patient erased after a backup stays unreadable after restoring
// that backup; the restore reports the skipped patient.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn erasure_survives_a_restore_of_an_older_backup() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = sqlite_config(dir.path());
    // The ledger directory several instances would share.
    config.keys.erasure_ledger_dir = Some(dir.path().join("shared-ledger"));
    let clarity = Clarity::open(config.clone()).await.expect("open");
    let written = fill(&clarity).await;
    clarity.shutdown().await;
    let archive = dir.path().join("before-erasure.cbak");
    take_backup(&config, &archive).await;

    // Another instance erases: it writes its own file in the shared ledger.
    let clarity = Clarity::open(config.clone())
        .await
        .expect("open")
        .with_erasure_ledger(backup::ErasureLedger::for_host(
            config.erasure_ledger_dir(),
            "another-instance",
        ));
    let admin = testing::principal(&clarity, Role::Admin).await;
    let erased = written.patients[2];
    clarity.erase_patient(&admin, erased).await.expect("erase");
    clarity.shutdown().await;
    assert!(
        config
            .erasure_ledger_dir()
            .join("erasure-ledger-another-instance.log")
            .is_file()
    );

    wipe_sqlite(&config);
    let report = Clarity::restore(&config, &archive, &|_| {})
        .await
        .expect("restore");
    assert_eq!(report.erased_patients_skipped, 1);
    let data_keys = report
        .tables
        .iter()
        .find(|t| t.name == "data_keys")
        .expect("data_keys");
    assert_eq!(
        data_keys.rows, 5,
        "the erased patient's data key was left out"
    );

    let clarity = Clarity::open(config.clone()).await.expect("open restored");
    let token = access_token(&clarity, &written.clinician_email).await;
    let clinician = clarity.authenticate(&token).await.expect("authenticate");
    let err = clarity
        .get_patient(&clinician, erased)
        .await
        .expect_err("erased");
    assert_eq!(err.kind(), ErrorKind::NotFound);
    assert!(
        !testing::has_data_key(&clarity, erased).await.expect("read"),
        "its data key is gone"
    );
    clarity
        .get_patient(&clinician, written.patients[3])
        .await
        .expect("the others read");
    let reports = clarity
        .verify_audit(&clarity.operator().await.expect("operator"))
        .await
        .expect("verify");
    assert!(reports.iter().all(|r| r.ok));
    clarity.shutdown().await;
}

// S-BAK-1, S-KEY-1: with the KEKs in OpenBao transit, the archive carries
// the root secret only wrapped by transit; it restores with the same transit
// key and is refused with another.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn round_trip_with_transit_keys() {
    let Some(settings) = testing::transit_settings() else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let token_file = dir.path().join("bao-token");
    let mut out = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&token_file)
        .expect("token file");
    let token = std::env::var(testing::OPENBAO_TOKEN_VAR).expect("transit_settings read it");
    out.write_all(token.as_bytes()).expect("write token");
    let mut config = sqlite_config(dir.path());
    config.keys.provider = KeyProviderKind::Transit;
    config.keys.transit_addr = Some(settings.addr.clone());
    config.keys.transit_token_file = Some(token_file);
    config.keys.transit_key = settings.key.clone();
    config.keys.transit_ca_cert = std::env::var(testing::OPENBAO_CA_CERT_VAR)
        .ok()
        .map(std::path::PathBuf::from);
    round_trip(config.clone(), None, dir.path(), wipe_sqlite).await;
    assert!(
        !config.keyring_path().exists(),
        "no local keyring with transit"
    );

    let mut other = config.clone();
    other.data_dir = dir.path().join("other");
    other.keys.transit_key = format!("{}-other", settings.key);
    let err = Clarity::restore(&other, &dir.path().join("round-trip.cbak"), &|_| {})
        .await
        .expect_err("another transit key");
    assert_eq!(err.kind(), ErrorKind::Key);
    assert!(err.to_string().contains("wrong key"), "{err}");
}
