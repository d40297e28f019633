//! S-KEY-4: the PKCS#11 provider against SoftHSM2 (`CLARITY_TEST_SOFTHSM2_MODULE`,
//! see `clarity_core::testing::pkcs11_settings`): the PIN file follows the
//! secret-file rule, a wrong PIN or token is a clear error that never shows
//! the PIN, wrapped keys are bound to their context, and a retired KEK
//! version can no longer unwrap.

use std::os::unix::fs::PermissionsExt;

use clarity_core::ErrorKind;
use clarity_core::crypto::{Key, KeyProvider, Pkcs11KeyProvider};
use clarity_core::testing::{self, TEST_PKCS11_PIN};

// S-KEY-4: a PIN file other users can read is refused, naming the setting.
#[tokio::test]
async fn s_key_4_a_pin_file_readable_by_others_is_refused() {
    let dir = tempfile::tempdir().expect("dir");
    let Some(settings) = testing::pkcs11_settings(dir.path()) else {
        return;
    };
    std::fs::set_permissions(&settings.pin_file, std::fs::Permissions::from_mode(0o644))
        .expect("chmod");
    let err = Pkcs11KeyProvider::connect(settings)
        .await
        .expect_err("a world-readable PIN file");
    assert_eq!(err.kind(), ErrorKind::Key);
    let message = err.to_string();
    assert!(message.contains("keys.pkcs11_pin_file"), "{message}");
    assert!(message.contains("644"), "{message}");
}

// S-KEY-4: a wrong PIN is refused with a message naming the setting, and
// never the PIN (neither the wrong one nor the right one).
#[tokio::test]
async fn s_key_4_a_wrong_pin_is_a_clear_error_without_the_pin() {
    let dir = tempfile::tempdir().expect("dir");
    let Some(settings) = testing::pkcs11_settings(dir.path()) else {
        return;
    };
    let wrong = "wrong-pin-987654";
    testing::write_secret_file(&settings.pin_file, wrong);
    let err = Pkcs11KeyProvider::connect(settings)
        .await
        .expect_err("a wrong PIN");
    assert_eq!(err.kind(), ErrorKind::Key);
    let message = err.to_string();
    assert!(message.contains("keys.pkcs11_pin_file"), "{message}");
    assert!(message.contains("refused the PIN"), "{message}");
    assert!(!message.contains(wrong), "{message}");
    assert!(!message.contains(TEST_PKCS11_PIN), "{message}");
    assert!(!format!("{err:?}").contains(wrong));
}

// S-KEY-4: a missing module or token is a key error naming the setting.
#[tokio::test]
async fn s_key_4_a_wrong_module_or_token_names_the_setting() {
    let dir = tempfile::tempdir().expect("dir");
    let Some(settings) = testing::pkcs11_settings(dir.path()) else {
        return;
    };
    let mut no_module = settings.clone();
    no_module.module = dir.path().join("missing.so");
    let err = Pkcs11KeyProvider::connect(no_module)
        .await
        .expect_err("no module");
    assert_eq!(err.kind(), ErrorKind::Key);
    assert!(err.to_string().contains("keys.pkcs11_module"), "{err}");

    let mut no_token = settings;
    no_token.token_label = "no-such-token".into();
    let err = Pkcs11KeyProvider::connect(no_token)
        .await
        .expect_err("no token");
    assert_eq!(err.kind(), ErrorKind::Key);
    assert!(err.to_string().contains("keys.pkcs11_token_label"), "{err}");
}

// S-KEY-4: a wrapping moved to another context, or altered, fails with
// Error::Integrity; the wrapping holds neither the key nor the context.
#[tokio::test]
async fn s_key_4_a_wrapping_moved_to_another_context_fails_integrity() {
    let dir = tempfile::tempdir().expect("dir");
    let Some(settings) = testing::pkcs11_settings(dir.path()) else {
        return;
    };
    let keys = Pkcs11KeyProvider::connect(settings).await.expect("connect");
    let key = Key::generate().expect("key");
    let wrapped = keys.wrap(&key, b"patient-a").await.expect("wrap");
    assert_eq!(wrapped.kek_version, 1);
    let text = String::from_utf8(wrapped.ciphertext.clone()).expect("text");
    assert!(text.starts_with("pkcs11:v1:"), "{text}");
    let back = keys.unwrap(&wrapped, b"patient-a").await.expect("unwrap");
    assert_eq!(back.expose(), key.expose());
    // A fresh IV each time: the same key wraps differently.
    let again = keys.wrap(&key, b"patient-a").await.expect("wrap");
    assert_ne!(again.ciphertext, wrapped.ciphertext);

    testing::assert_wrapping_is_bound(&keys, &wrapped, b"patient-a", b"patient-b").await;
}

// S-KEY-2, S-KEY-4: rotation makes a new KEK object in the token; retiring
// destroys the old one, which can no longer unwrap; concurrent wraps share
// the session pool.
#[tokio::test]
async fn s_key_4_rotation_and_retirement_in_the_token() {
    let dir = tempfile::tempdir().expect("dir");
    let Some(settings) = testing::pkcs11_settings(dir.path()) else {
        return;
    };
    let keys = std::sync::Arc::new(Pkcs11KeyProvider::connect(settings).await.expect("connect"));
    keys.check().await.expect("check");
    assert_eq!(keys.name(), "pkcs11");
    assert_eq!(keys.kek_versions().await.expect("versions"), vec![1]);
    let key = Key::generate().expect("key");
    let old = keys.wrap(&key, b"ctx").await.expect("wrap");

    assert_eq!(keys.rotate().await.expect("rotate"), 2);
    assert_eq!(keys.current_kek_version().await.expect("current"), 2);
    assert_eq!(keys.kek_versions().await.expect("versions"), vec![1, 2]);
    let fresh = keys.rewrap(&old, b"ctx").await.expect("rewrap");
    assert_eq!(fresh.kek_version, 2);
    let back = keys.unwrap(&old, b"ctx").await.expect("old still unwraps");
    assert_eq!(back.expose(), key.expose());

    let err = keys.retire_below(3).await.expect_err("the current version");
    assert_eq!(err.kind(), ErrorKind::InvalidInput);
    keys.retire_below(2).await.expect("retire");
    assert_eq!(keys.kek_versions().await.expect("versions"), vec![2]);
    let gone = keys.unwrap(&old, b"ctx").await.expect_err("retired");
    assert_eq!(gone.kind(), ErrorKind::Key);
    let back = keys.unwrap(&fresh, b"ctx").await.expect("unwrap");
    assert_eq!(back.expose(), key.expose());

    let mut tasks = Vec::new();
    for n in 0..16u8 {
        let keys = std::sync::Arc::clone(&keys);
        tasks.push(tokio::spawn(async move {
            let key = Key::generate().expect("key");
            let wrapped = keys.wrap(&key, &[n]).await.expect("wrap");
            let back = keys.unwrap(&wrapped, &[n]).await.expect("unwrap");
            assert_eq!(back.expose(), key.expose());
        }));
    }
    for task in tasks {
        task.await.expect("task");
    }
}
