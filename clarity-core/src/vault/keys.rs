//! Key bootstrap: opening the key provider a configuration names, binding a
//! store to its keyring, and the root secret wrapped by an external provider
//! (transit, PKCS#11, AWS KMS). The metadata
//! key names a store keeps about its keys live here.

use std::sync::Arc;

use crate::audit::AuditKeys;
use crate::config::{Config, KeyProviderKind};
use crate::crypto::schedule::meta;
use crate::crypto::{Key, KeyProvider, LocalKeyring};
use crate::error::{Error, Result};
use crate::store::Store;

pub(super) fn foreign_keyring(ours: &str, theirs: &str) -> Error {
    Error::key(format!(
        "the keyring (fingerprint {ours}) does not belong to this store (which expects {theirs}); refusing to open"
    ))
}

/// Opens the key provider that `config` names. A local keyring file is
/// created only for a store that holds no data yet.
///
/// # Errors
/// [`Error::Key`] when the keyring is missing for a store with data, or unreadable.
pub async fn open_key_provider(config: &Config, store: &dyn Store) -> Result<Arc<dyn KeyProvider>> {
    match config.keys.provider {
        KeyProviderKind::Local => {
            let path = config.keyring_path();
            if path.exists() {
                return Ok(Arc::new(LocalKeyring::open(&path)?));
            }
            let bound = store.get_meta(meta::KEYRING_FINGERPRINT).await?;
            if bound.is_some() || store.count_data_keys().await? > 0 {
                return Err(Error::key(format!(
                    "keyring file {} not found, but this store holds data encrypted under keyring {}; restore that keyring file (a new one cannot read the data)",
                    path.display(),
                    bound.as_deref().unwrap_or("(unknown)")
                )));
            }
            let keyring = LocalKeyring::create(&path)?;
            tracing::warn!(
                path = %path.display(),
                "created a new local keyring: it is for development or single-node use; back it up, without it the data cannot be read"
            );
            Ok(Arc::new(keyring))
        }
        KeyProviderKind::Transit => {
            let settings = crate::crypto::TransitSettings::from_config(&config.keys)?;
            open_transit(settings, store)
                .await
                .map(|t| t as Arc<dyn KeyProvider>)
        }
        KeyProviderKind::Pkcs11 => {
            let settings = crate::crypto::Pkcs11Settings::from_config(&config.keys)?;
            open_pkcs11(settings, store)
                .await
                .map(|t| t as Arc<dyn KeyProvider>)
        }
        KeyProviderKind::Kms => {
            let settings = crate::crypto::KmsSettings::from_config(&config.keys)?;
            open_kms(settings, store)
                .await
                .map(|t| t as Arc<dyn KeyProvider>)
        }
    }
}

/// Connects to transit and loads the store's root secret (see [`with_stored_root`]).
///
/// # Errors
/// As [`with_stored_root`]; transit errors.
pub async fn open_transit(
    settings: crate::crypto::TransitSettings,
    store: &dyn Store,
) -> Result<Arc<crate::crypto::TransitKeyProvider>> {
    let provider = crate::crypto::TransitKeyProvider::connect(settings).await?;
    with_stored_root(provider, store).await
}

/// Opens the PKCS#11 token and loads the store's root secret (see
/// [`with_stored_root`]).
///
/// # Errors
/// As [`with_stored_root`]; token errors.
pub async fn open_pkcs11(
    settings: crate::crypto::Pkcs11Settings,
    store: &dyn Store,
) -> Result<Arc<crate::crypto::Pkcs11KeyProvider>> {
    let provider = crate::crypto::Pkcs11KeyProvider::connect(settings).await?;
    with_stored_root(provider, store).await
}

/// Sets up the AWS KMS client and loads the store's root secret (see
/// [`with_stored_root`]).
///
/// # Errors
/// As [`with_stored_root`]; KMS errors.
pub async fn open_kms(
    settings: crate::crypto::KmsSettings,
    store: &dyn Store,
) -> Result<Arc<crate::crypto::KmsKeyProvider>> {
    let provider = crate::crypto::KmsKeyProvider::connect(settings).await?;
    with_stored_root(provider, store).await
}

/// Loads the store's root secret into an external provider (transit,
/// PKCS#11, KMS), generating it (wrapped, never in plaintext: S-KEY-1) for a
/// store that has none yet.
///
/// # Errors
/// [`Error::Key`] when the store already holds data under a local keyring;
/// [`Error::Integrity`] when the provider cannot unwrap the stored root;
/// the provider's errors.
async fn with_stored_root<P: crate::crypto::HoldsRoot>(
    provider: P,
    store: &dyn Store,
) -> Result<Arc<P>> {
    use crate::crypto::RootRecord;
    let record = match store.get_meta(meta::TRANSIT_ROOT_KEY).await? {
        Some(json) => json,
        None => {
            if store.get_meta(meta::KEYRING_FINGERPRINT).await?.is_some()
                || store.count_data_keys().await? > 0
            {
                return Err(Error::key(format!(
                    "this store holds data encrypted under a local keyring; it cannot switch to the {} provider by configuration alone",
                    provider.name()
                )));
            }
            let fresh = RootRecord::generate(&provider).await?.to_json()?;
            // Of two instances starting together, the first one's root wins.
            store
                .set_meta_if_absent(meta::TRANSIT_ROOT_KEY, &fresh)
                .await?
        }
    };
    Ok(Arc::new(
        crate::crypto::with_root(provider, &RootRecord::parse(&record)?).await?,
    ))
}

/// Re-wraps the root record of an external provider (transit, PKCS#11)
/// under the current KEK version (rotation); a no-op for the local keyring
/// and up-to-date records.
pub async fn rewrap_root_record(store: &dyn Store, keys: &dyn KeyProvider) -> Result<()> {
    let Some(json) = store.get_meta(meta::TRANSIT_ROOT_KEY).await? else {
        return Ok(());
    };
    let record = crate::crypto::RootRecord::parse(&json)?;
    if record.kek_version >= keys.current_kek_version().await? {
        return Ok(());
    }
    let fresh = keys
        .rewrap(&record.to_wrapped(), crate::crypto::ROOT_CONTEXT)
        .await?;
    let fresh = crate::crypto::RootRecord::from_wrapped(&fresh)?;
    store
        .put_meta(meta::TRANSIT_ROOT_KEY, &fresh.to_json()?)
        .await
}

/// The audit keys in effect for `store`: the version its last audit-key
/// rotation recorded (1 when none), with every older version for verifying
/// older chains.
///
/// # Errors
/// Backend errors; [`Error::Integrity`] for an unreadable version.
pub async fn audit_keys(root: &Key, store: &dyn Store) -> Result<AuditKeys> {
    AuditKeys::derive_up_to(root, audit_key_version(store).await?)
}

/// The audit-key version chains started from now on use in `store` (1
/// until a rotation).
///
/// # Errors
/// [`Error::Integrity`] when the stored version is malformed; backend errors.
pub async fn audit_key_version(store: &dyn Store) -> Result<u32> {
    match store.get_meta(meta::AUDIT_KEY_VERSION).await? {
        Some(text) => text.parse::<u32>().map_err(|_| Error::Integrity),
        None => Ok(1),
    }
}

/// Makes the version after `keys`' the one new chains use in `store` (it
/// takes effect for chains started afterwards); returns it.
///
/// # Errors
/// Backend errors.
pub async fn advance_audit_key(keys: &AuditKeys, store: &dyn Store) -> Result<u32> {
    // The store's version, not this instance's: a second rotation before a
    // restart (or one made by another instance) moves on from it.
    let next = audit_key_version(store).await?.max(keys.version()) + 1;
    store
        .put_meta(meta::AUDIT_KEY_VERSION, &next.to_string())
        .await?;
    Ok(next)
}
