//! S-BAK-1: encrypted backups with a signed manifest; a backup → wipe →
//! restore round trip gives identical logical contents and verifying audit
//! chains, on SQLite, on PostgreSQL and from SQLite to PostgreSQL; tampered
//! and wrong-key archives are refused before anything is swapped in.
//! S-KEY-3: a patient erased after a backup stays unreadable after a restore.
//! S-BAK-2: a backup whose KEK version was retired is refused by verify and
//! restore, naming the version, before anything is written (the target stays
//! as it was, and the same restore works once the keyring is put back);
//! retiring a version a recorded backup needs is refused unless forced.

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

/// Runs `sql` in the test PostgreSQL database; returns what it printed.
fn psql(sql: &str) -> String {
    let url = std::env::var(testing::POSTGRES_URL_VAR).expect("url");
    let out = std::process::Command::new("psql")
        .args([url.as_str(), "-qAtc", sql])
        .output()
        .expect("psql");
    assert!(out.status.success(), "{sql}: {out:?}");
    String::from_utf8(out.stdout).expect("utf-8")
}

fn drop_schema(schema: &str) {
    psql(&format!("DROP SCHEMA IF EXISTS {schema} CASCADE"));
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
            .expect("verify")
            .manifest,
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

/// A SQLite store in a temporary directory with its KEKs in a transit key
/// of its own; `None` (skipped) without OpenBao outside CI.
fn transit_store() -> Option<(
    tempfile::TempDir,
    clarity_core::crypto::TransitSettings,
    Config,
)> {
    let settings = testing::transit_settings()?;
    let dir = tempfile::tempdir().expect("tempdir");
    let config = transit_config(dir.path(), &settings);
    Some((dir, settings, config))
}

/// A SQLite store in `dir` with its KEKs in the transit key of `settings`,
/// logged in with the test run's token from a secret file.
fn transit_config(dir: &Path, settings: &clarity_core::crypto::TransitSettings) -> Config {
    let token_file = dir.join("bao-token");
    let token = std::env::var(testing::OPENBAO_TOKEN_VAR).expect("transit_settings read it");
    testing::write_secret_file(&token_file, &token);
    let mut config = sqlite_config(dir);
    config.keys.provider = KeyProviderKind::Transit;
    config.keys.transit_addr = Some(settings.addr.clone());
    config.keys.transit_token_file = Some(token_file);
    config.keys.transit_key = settings.key.clone();
    config.keys.transit_ca_cert = std::env::var(testing::OPENBAO_CA_CERT_VAR)
        .ok()
        .map(std::path::PathBuf::from);
    config
}

// S-BAK-1, S-KEY-1: with the KEKs in OpenBao transit, the archive carries
// the root secret only wrapped by transit; it restores with the same transit
// key and is refused with another.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn round_trip_with_transit_keys() {
    let Some((dir, settings, config)) = transit_store() else {
        return;
    };
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

/// Everything a restore could change in a SQLite target: every file and
/// directory under its data directory, with the files' bytes.
fn sqlite_state(config: &Config) -> Vec<(PathBuf, Vec<u8>)> {
    fn walk(dir: &Path, out: &mut Vec<(PathBuf, Vec<u8>)>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for entry in entries {
            let path = entry.expect("entry").path();
            if path.is_dir() {
                out.push((path.clone(), Vec::new()));
                walk(&path, out);
            } else {
                let bytes = std::fs::read(&path).expect("read");
                out.push((path, bytes));
            }
        }
    }
    let mut out = Vec::new();
    walk(&config.data_dir, &mut out);
    out.sort();
    out
}

/// Everything a restore could change in a PostgreSQL target: its schema's
/// tables and the rows of those that hold data.
fn postgres_state(schema: &str) -> Vec<(PathBuf, Vec<u8>)> {
    let tables = psql(&format!(
        "SELECT tablename FROM pg_tables WHERE schemaname = '{schema}' ORDER BY tablename"
    ));
    let mut out = vec![(PathBuf::from("tables"), tables.clone().into_bytes())];
    if !tables.is_empty() {
        for table in [
            "meta",
            "data_keys",
            "patients",
            "records",
            "users",
            "audit_events",
        ] {
            let rows = psql(&format!(
                "SELECT md5(coalesce(string_agg(t::text, '|' ORDER BY t::text), '')) FROM {schema}.{table} t"
            ));
            out.push((PathBuf::from(table), rows.into_bytes()));
        }
    }
    out
}

/// A restore target and how to read its state.
struct Target {
    config: Config,
    state: Box<dyn Fn() -> Vec<(PathBuf, Vec<u8>)>>,
}

impl Target {
    fn sqlite(config: Config) -> Target {
        let seen = config.clone();
        Target {
            config,
            state: Box::new(move || sqlite_state(&seen)),
        }
    }

    fn postgres(config: Config, schema: String) -> Target {
        Target {
            config,
            state: Box::new(move || postgres_state(&schema)),
        }
    }

    /// With KEK version 1 retired, verify and restore of `archive` fail
    /// with the same message, which names the version, and the restore
    /// changes nothing. `refusal`: what restore says instead, where that
    /// comes first.
    async fn refuses_untouched(&self, archive: &Path, refusal: Option<&str>) {
        let before = (self.state)();
        let err = backup::verify(&self.config, archive, &|_| {})
            .await
            .expect_err("verify: version 1 is retired");
        assert_eq!(err.kind(), ErrorKind::Key);
        let message = err.to_string();
        assert!(
            message.contains(
                "this backup needs KEK version 1, which the configured keyring no longer holds (retired"
            ) && message.contains("keys.keyring_path"),
            "{message}"
        );
        let err = Clarity::restore(&self.config, archive, &|_| {})
            .await
            .expect_err("restore: version 1 is retired");
        match refusal {
            None => assert_eq!(err.to_string(), message, "the same message as verify"),
            Some(refusal) => assert!(err.to_string().contains(refusal), "{err}"),
        }
        assert!((self.state)() == before, "the target is as it was");
    }
}

/// S-BAK-2 set-up: `source` (filled with data when `patients`), backed up,
/// then its KEK rotated and version 1 retired, which is refused while the
/// backup needs it and done when forced. Returns the archive, what was
/// written and a copy of the keyring from before the rotation.
async fn back_up_then_retire(
    source: &Config,
    dir: &Path,
    patients: bool,
) -> (PathBuf, Option<Written>, PathBuf) {
    let clarity = Clarity::open(source.clone()).await.expect("open");
    let written = if patients {
        Some(fill(&clarity).await)
    } else {
        None
    };
    clarity.shutdown().await;
    let archive = dir.join("before-retirement.cbak");
    let manifest = take_backup(source, &archive).await;
    let recorded = backup::BackupCatalog::in_dir(source.erasure_ledger_dir())
        .load()
        .expect("catalog");
    assert_eq!(recorded.len(), 1);
    assert_eq!(recorded[0].backup_id, manifest.backup_id);
    assert_eq!(recorded[0].kek_versions, vec![1], "data and directory keys");
    let escrow = dir.join("escrow-keyring.json");
    std::fs::copy(source.keyring_path(), &escrow).expect("escrow copy");

    let clarity = Clarity::open(source.clone()).await.expect("open");
    let operator = clarity.operator().await.expect("operator");
    clarity
        .rotate_keys(&operator, &|_| {})
        .await
        .expect("rotate");
    let refused = clarity
        .retire_keys(&operator, false)
        .await
        .expect_err("a recorded backup needs version 1");
    assert!(
        refused.to_string().contains(&manifest.backup_id),
        "{refused}"
    );
    let forced = clarity.retire_keys(&operator, true).await.expect("forced");
    assert_eq!(forced.retired, vec![1]);
    assert_eq!(forced.stranded_backups, recorded);
    clarity.shutdown().await;
    (archive, written, escrow)
}

/// S-BAK-2 on `source` and an empty `target`: with KEK version 1 retired,
/// verify and restore say so and nothing is written (into the empty target
/// nor over the source); with the keyring from before put back, the same
/// restore succeeds.
async fn retired_version_is_refused_until_the_keyring_is_back(
    source: Target,
    target: Target,
    dir: &Path,
    patients: bool,
) {
    let (archive, written, escrow) = back_up_then_retire(&source.config, dir, patients).await;
    std::fs::create_dir_all(&target.config.data_dir).expect("mkdir");
    std::fs::copy(source.config.keyring_path(), target.config.keyring_path())
        .expect("the keyring as it is now");
    target.refuses_untouched(&archive, None).await;
    // Over the original store: data keys are checked from the signed
    // manifest before the target is looked at; the directory key only from
    // the rows, which are not read into a store that is not empty.
    let over_data = (!patients).then_some("the target store is not empty");
    source.refuses_untouched(&archive, over_data).await;
    // A retry with the keyring from before the retirement restores.
    std::fs::copy(&escrow, target.config.keyring_path()).expect("put the keyring back");
    let verified = backup::verify(&target.config, &archive, &|_| {})
        .await
        .expect("verify with the keyring back");
    assert_eq!(verified.kek_versions, vec![1]);
    Clarity::restore(&target.config, &archive, &|_| {})
        .await
        .expect("restore with the keyring back");
    match written {
        Some(written) => assert_readable(&target.config, &written).await,
        None => {
            let clarity = Clarity::open(target.config.clone()).await.expect("open");
            clarity.shutdown().await;
        }
    }
}

/// The S-BAK-2 scenario from one SQLite store into an empty one.
async fn retired_version_on_sqlite(patients: bool) {
    let dir = tempfile::tempdir().expect("tempdir");
    let source = Target::sqlite(sqlite_config(&dir.path().join("source")));
    let target = Target::sqlite(sqlite_config(&dir.path().join("target")));
    retired_version_is_refused_until_the_keyring_is_back(source, target, dir.path(), patients)
        .await;
}

/// The S-BAK-2 scenario from one PostgreSQL schema into another (keyrings
/// in `source` and `target` directories); skipped without PostgreSQL.
async fn retired_version_on_postgres(patients: bool) {
    let dir = tempfile::tempdir().expect("tempdir");
    let Some((source, a)) = postgres_config(&dir.path().join("source")) else {
        return;
    };
    let Some((target, b)) = postgres_config(&dir.path().join("target")) else {
        return;
    };
    let (source, target) = (
        Target::postgres(source, a.clone()),
        Target::postgres(target, b.clone()),
    );
    retired_version_is_refused_until_the_keyring_is_back(source, target, dir.path(), patients)
        .await;
    drop_schema(&a);
    drop_schema(&b);
}

// S-BAK-2: data keys wrapped by a retired version, SQLite.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s_bak_2_retired_data_key_version_refused_before_writing_on_sqlite() {
    retired_version_on_sqlite(true).await;
}

// S-BAK-2: no data key at all, only the directory key wrapped by the
// retired version: found in the rows, refused before the swap (the staging
// file is removed), SQLite.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s_bak_2_retired_directory_key_version_refused_before_the_swap_on_sqlite() {
    retired_version_on_sqlite(false).await;
}

// S-BAK-2: data keys wrapped by a retired version, PostgreSQL.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s_bak_2_retired_data_key_version_refused_before_writing_on_postgres() {
    retired_version_on_postgres(true).await;
}

// S-BAK-2: only the directory key wrapped by the retired version, refused
// before the swap (the staging schema is dropped), PostgreSQL.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s_bak_2_retired_directory_key_version_refused_before_the_swap_on_postgres() {
    retired_version_on_postgres(false).await;
}

// S-BAK-2: retiring a KEK version a recorded backup needs is refused,
// naming the backup and the version, and retires nothing; forced, it
// retires and the audit event names the stranded backup.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s_bak_2_retire_refuses_versions_recorded_backups_need() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = sqlite_config(dir.path());
    let clarity = Clarity::open(config.clone()).await.expect("open");
    fill(&clarity).await;
    clarity.shutdown().await;
    let archive = dir.path().join("kept.cbak");
    let manifest = take_backup(&config, &archive).await;

    let clarity = Clarity::open(config.clone()).await.expect("open");
    let operator = clarity.operator().await.expect("operator");
    clarity
        .rotate_keys(&operator, &|_| {})
        .await
        .expect("rotate");
    let err = clarity
        .retire_keys(&operator, false)
        .await
        .expect_err("refused");
    assert_eq!(err.kind(), ErrorKind::InvalidInput);
    let message = err.to_string();
    for part in [
        "refused to retire KEK version 1: 1 recorded backup still needs it",
        &format!("backup {} taken", manifest.backup_id),
        "kept.cbak",
        "--force",
    ] {
        assert!(message.contains(part), "{part}: {message}");
    }
    assert_eq!(
        kek_versions_held(&config).await,
        vec![1, 2],
        "nothing retired"
    );

    let forced = clarity.retire_keys(&operator, true).await.expect("forced");
    assert_eq!(forced.retired, vec![1]);
    assert_eq!(forced.stranded_backups.len(), 1);
    assert_eq!(forced.stranded_backups[0].backup_id, manifest.backup_id);
    assert_eq!(kek_versions_held(&config).await, vec![2]);
    let retirements = clarity_core::audit::AuditFilter {
        subtype: Some("keys.retire".into()),
        ..Default::default()
    };
    let events = clarity
        .audit_events(&operator, &retirements, &Default::default())
        .await
        .expect("audit")
        .items;
    let outcomes: Vec<(&str, Option<&str>)> = events
        .iter()
        .map(|e| (&*e.outcome, e.reason.as_deref()))
        .collect();
    assert_eq!(outcomes.len(), 2, "{outcomes:?}");
    assert!(
        outcomes.iter().any(|(outcome, _)| *outcome != "0"),
        "the refusal is audited: {outcomes:?}"
    );
    let forced_reason = format!(
        "forced: retired KEK versions 1 needed by recorded backups {}",
        manifest.backup_id
    );
    assert!(
        outcomes.contains(&("0", Some(forced_reason.as_str()))),
        "{outcomes:?}"
    );
    // Nothing older is left to retire, and nothing is refused.
    let again = clarity.retire_keys(&operator, false).await.expect("again");
    assert!(again.retired.is_empty() && again.stranded_backups.is_empty());
    clarity.shutdown().await;
}

/// The KEK versions the keyring file of `config` holds.
async fn kek_versions_held(config: &Config) -> Vec<i32> {
    use clarity_core::crypto::KeyProvider;
    clarity_core::crypto::LocalKeyring::open(&config.keyring_path())
        .expect("keyring")
        .kek_versions()
        .await
        .expect("versions")
}

// S-BAK-2, with the KEKs in OpenBao transit: once the transit key's version
// 1 is retired (its minimum decryption version raised), verify and restore
// of a backup whose data keys it wraps fail before anything is written,
// naming the version; with the version usable again, the same restore works.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s_bak_2_retired_transit_version_refused_before_writing() {
    let Some((dir, settings, config)) = transit_store() else {
        return;
    };
    let clarity = Clarity::open(config.clone()).await.expect("open");
    let written = fill(&clarity).await;
    clarity.shutdown().await;
    let archive = dir.path().join("transit.cbak");
    take_backup(&config, &archive).await;

    let clarity = Clarity::open(config.clone()).await.expect("open");
    let operator = clarity.operator().await.expect("operator");
    clarity
        .rotate_keys(&operator, &|_| {})
        .await
        .expect("rotate");
    let report = clarity.retire_keys(&operator, true).await.expect("forced");
    assert_eq!(report.retired, vec![1]);
    clarity.shutdown().await;

    let mut target = config.clone();
    target.data_dir = dir.path().join("target");
    let err = backup::verify(&target, &archive, &|_| {})
        .await
        .expect_err("verify: version 1 is retired");
    assert_eq!(err.kind(), ErrorKind::Key);
    let message = err.to_string();
    assert!(
        message.contains("this backup needs KEK version 1"),
        "{message}"
    );
    let err = Clarity::restore(&target, &archive, &|_| {})
        .await
        .expect_err("restore: version 1 is retired");
    assert_eq!(err.to_string(), message, "the same message as verify");
    assert!(sqlite_state(&target).is_empty(), "nothing written");

    // The operator lowers the key's minimum decryption version again.
    let mut http = reqwest::Client::builder();
    if let Some(pem) = &settings.ca_cert_pem {
        http = http.add_root_certificate(reqwest::Certificate::from_pem(pem).expect("CA"));
    }
    let token = std::env::var(testing::OPENBAO_TOKEN_VAR).expect("token");
    let response = http
        .build()
        .expect("client")
        .post(format!(
            "{}/v1/transit/keys/{}/config",
            settings.addr, settings.key
        ))
        .header("X-Vault-Token", token.trim())
        .json(&serde_json::json!({ "min_decryption_version": 1 }))
        .send()
        .await
        .expect("OpenBao answers");
    assert!(response.status().is_success(), "{}", response.status());
    Clarity::restore(&target, &archive, &|_| {})
        .await
        .expect("restore with version 1 usable");
    assert_readable(&target, &written).await;
}

// S-BAK-1, S-KEY-4: with the KEKs in a PKCS#11 token, the archive carries
// the root secret only wrapped by the token; it restores with the same
// token, and is refused with a token that holds other keys.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn round_trip_with_pkcs11_keys() {
    let dir = tempfile::tempdir().expect("tempdir");
    let Some(settings) = testing::pkcs11_settings(dir.path()) else {
        return;
    };
    let mut config = sqlite_config(dir.path());
    config.keys.provider = KeyProviderKind::Pkcs11;
    config.keys.pkcs11_module = Some(settings.module.clone());
    config.keys.pkcs11_token_label = Some(settings.token_label.clone());
    config.keys.pkcs11_pin_file = Some(settings.pin_file.clone());
    round_trip(config.clone(), None, dir.path(), wipe_sqlite).await;
    assert!(
        !config.keyring_path().exists(),
        "no local keyring with PKCS#11"
    );

    let other_dir = dir.path().join("other");
    std::fs::create_dir_all(&other_dir).expect("mkdir");
    let other_token = testing::pkcs11_settings(&other_dir).expect("a second token");
    let mut other = config.clone();
    other.data_dir = other_dir;
    other.keys.pkcs11_token_label = Some(other_token.token_label);
    other.keys.pkcs11_pin_file = Some(other_token.pin_file);
    let err = Clarity::restore(&other, &dir.path().join("round-trip.cbak"), &|_| {})
        .await
        .expect_err("another token");
    assert_eq!(err.kind(), ErrorKind::Key);
    assert!(
        err.to_string()
            .contains("wrong key: the configured pkcs11 key cannot unwrap"),
        "{err}"
    );
}

// S-KEY-4, S-BAK-2: a backup of a store whose keys are in AWS KMS (moto)
// holds the root secret only wrapped by KMS; it restores with the same key,
// and is refused with another key, before anything is written.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn round_trip_with_kms_keys() {
    let Some(settings) = testing::kms_settings().await else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = sqlite_config(dir.path());
    config.keys.provider = KeyProviderKind::Kms;
    config.keys.kms_key_id = Some(settings.key_id.clone());
    config.keys.kms_region = settings.region.clone();
    config.keys.kms_endpoint = settings.endpoint.clone();
    round_trip(config.clone(), None, dir.path(), wipe_sqlite).await;
    assert!(!config.keyring_path().exists(), "no local keyring with KMS");

    let other_key = testing::kms_settings().await.expect("a second key");
    let other_dir = dir.path().join("other");
    std::fs::create_dir_all(&other_dir).expect("mkdir");
    let mut other = config.clone();
    other.data_dir = other_dir;
    other.keys.kms_key_id = Some(other_key.key_id);
    let err = Clarity::restore(&other, &dir.path().join("round-trip.cbak"), &|_| {})
        .await
        .expect_err("another key");
    // KMS answers IncorrectKeyException ("wrong key"); moto AccessDenied.
    assert_eq!(err.kind(), ErrorKind::Key, "{err}");
}
