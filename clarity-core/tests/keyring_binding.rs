//! A store opened with a missing or wrong keyring gives a clear error and
//! touches no data (S-KEY-1); a keyring readable by others is refused.

use std::os::unix::fs::PermissionsExt;

use clarity_core::config::Config;
use clarity_core::model::PatientProfile;
use clarity_core::vault::PhiStore;
use clarity_core::{Error, ErrorKind};

fn config(dir: &std::path::Path) -> Config {
    let mut config = Config::from_toml("").expect("defaults");
    config.data_dir = dir.to_path_buf();
    config
}

fn profile() -> PatientProfile {
    PatientProfile::from_json(
        r#"{"mrn":"K-1","given_name":"Grace","family_name":"Hopper","birth_date":"1906-12-09","sex":"female"}"#,
    )
    .expect("profile")
}

#[tokio::test]
async fn first_open_creates_a_private_keyring_and_later_opens_reuse_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = config(dir.path());
    let phi = PhiStore::open(&config).await.expect("first open");
    let id = phi.create_patient(profile()).await.expect("create").id;
    drop(phi);
    let mode = std::fs::metadata(config.keyring_path())
        .expect("keyring")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    let db_mode = std::fs::metadata(config.sqlite_path())
        .expect("db")
        .permissions()
        .mode();
    assert_eq!(db_mode & 0o077, 0, "database readable by its owner only");
    let phi = PhiStore::open(&config).await.expect("second open");
    phi.get_patient(id)
        .await
        .expect("data reads with the same keyring");
}

// S-KEY-1
#[tokio::test]
async fn missing_keyring_for_a_store_with_data_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = config(dir.path());
    let phi = PhiStore::open(&config).await.expect("open");
    let id = phi.create_patient(profile()).await.expect("create").id;
    drop(phi);
    let saved = dir.path().join("saved-keyring.json");
    std::fs::rename(config.keyring_path(), &saved).expect("move keyring away");

    let err = PhiStore::open(&config).await.expect_err("refused");
    assert_eq!(err.kind(), ErrorKind::Key);
    let message = err.to_string();
    assert!(
        message.contains("not found") && message.contains("keyring.json"),
        "{message}"
    );
    assert!(
        !config.keyring_path().exists(),
        "no new keyring was generated"
    );

    std::fs::rename(&saved, config.keyring_path()).expect("restore keyring");
    let phi = PhiStore::open(&config)
        .await
        .expect("open with the right keyring");
    phi.get_patient(id).await.expect("data untouched");
}

// S-KEY-1
#[tokio::test]
async fn another_stores_keyring_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let other = tempfile::tempdir().expect("tempdir");
    let config = config(dir.path());
    let phi = PhiStore::open(&config).await.expect("open");
    let id = phi.create_patient(profile()).await.expect("create").id;
    drop(phi);
    PhiStore::open(&self::config(other.path()))
        .await
        .expect("another store");
    std::fs::copy(config.keyring_path(), dir.path().join("mine.json")).expect("save");
    std::fs::copy(other.path().join("keyring.json"), config.keyring_path()).expect("swap in");

    let err = PhiStore::open(&config).await.expect_err("refused");
    assert!(matches!(err, Error::Key { .. }), "{err}");
    assert!(err.to_string().contains("does not belong"), "{err}");

    std::fs::copy(dir.path().join("mine.json"), config.keyring_path()).expect("restore");
    let phi = PhiStore::open(&config).await.expect("open");
    phi.get_patient(id).await.expect("data untouched");
}

// S-KEY-1
#[tokio::test]
async fn keyring_readable_by_others_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = config(dir.path());
    PhiStore::open(&config).await.expect("open");
    std::fs::set_permissions(
        config.keyring_path(),
        std::fs::Permissions::from_mode(0o640),
    )
    .expect("chmod");
    let err = PhiStore::open(&config).await.expect_err("refused");
    assert_eq!(err.kind(), ErrorKind::Key);
    assert!(err.to_string().contains("chmod 600"), "{err}");
}

#[tokio::test]
async fn corrupt_keyring_is_refused_without_echoing_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = config(dir.path());
    PhiStore::open(&config).await.expect("open");
    std::fs::write(
        config.keyring_path(),
        b"{\"format\": 1, \"root\": \"c2VjcmV0\"",
    )
    .expect("corrupt");
    let err = PhiStore::open(&config)
        .await
        .expect_err("refused")
        .to_string();
    assert!(err.contains("not a valid keyring"), "{err}");
    assert!(!err.contains("c2VjcmV0"), "{err}");
}
