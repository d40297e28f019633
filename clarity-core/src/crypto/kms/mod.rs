//! [`KmsKeyProvider`]: KEKs held by AWS KMS. Data keys are sent to KMS to be
//! encrypted and decrypted; the KMS keys never leave it (S-KEY-4).
//! Unwrapped data keys are cached by the encrypting layer, whatever the
//! provider (see `PhiStore`), not here.
//!
//! KEK versions come from the configuration: version i (from 1) is the
//! i-th of `keys.kms_previous_key_ids`, the current version the one after,
//! `keys.kms_key_id`. Moving to a new key (the old id moved into
//! `kms_previous_key_ids`) makes a new current version, and `keys rotate`
//! re-wraps every data key under it with KMS `ReEncrypt`, so the data key
//! is not exposed, not even to Clarity. KMS rotates a key's material by
//! itself (automatic or on-demand rotation), invisibly to the ciphertexts,
//! so [`KeyProvider::rotate`] makes no version: it explains this instead.
//!
//! Each wrapped key binds its context (e.g. the patient id) and its KEK
//! version through the KMS encryption context (`clarity:context`, the
//! context in hex; `clarity:kek_version`): a wrapped key moved to another
//! patient or relabelled fails like a damaged one ([`Error::Integrity`]).
//! The stored form is text, `kms:v<N>:<base64 of the KMS ciphertext blob>`,
//! so the root secret's record (see [`super::RootRecord`]) holds it as
//! transit's does.

mod client;
mod settings;

use std::collections::HashMap;

use async_trait::async_trait;
use aws_sdk_kms::primitives::Blob;
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use zeroize::Zeroizing;

pub use settings::KmsSettings;
pub(crate) use settings::RETIRED;

use super::{HoldsRoot, Key, KeyProvider, WrappedKey, split_versioned};
use crate::error::{Error, Result};

/// The prefix of the text form of a wrapped key.
const PREFIX: &str = "kms";
/// The encryption-context entry holding the context, in hex.
const CONTEXT_KEY: &str = "clarity:context";
/// The encryption-context entry holding the KEK version.
const VERSION_KEY: &str = "clarity:kek_version";

/// KEKs in AWS KMS (see the module documentation).
pub struct KmsKeyProvider {
    client: aws_sdk_kms::Client,
    settings: KmsSettings,
    root: Option<Key>,
}

impl std::fmt::Debug for KmsKeyProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KmsKeyProvider")
            .field("key_id", &self.settings.key_id)
            .field("kek_version", &self.settings.current_version())
            .field("region", &self.settings.region)
            .field("endpoint", &self.settings.endpoint)
            .field("root_loaded", &self.root.is_some())
            .finish_non_exhaustive()
    }
}

/// The encryption context of a data key wrapped for `context` by KEK `version`.
fn encryption_context(context: &[u8], version: i32) -> Option<HashMap<String, String>> {
    Some(HashMap::from([
        (CONTEXT_KEY.to_string(), hex::encode(context)),
        (VERSION_KEY.to_string(), version.to_string()),
    ]))
}

impl KmsKeyProvider {
    /// Sets up the KMS client: the standard AWS credential chain, the
    /// configured region and endpoint. Nothing is sent to KMS yet (the
    /// root secret's unwrap at start is the first request). The provider
    /// has no root secret until [`super::with_root`].
    ///
    /// # Errors
    /// [`Error::Config`] when no region is configured anywhere.
    pub async fn connect(settings: KmsSettings) -> Result<KmsKeyProvider> {
        let client = client::connect(&settings).await?;
        Ok(KmsKeyProvider {
            client,
            settings,
            root: None,
        })
    }

    /// The key of KEK `version`.
    fn key_of(&self, version: i32) -> Result<&str> {
        self.settings.key_of(version).ok_or_else(|| {
            Error::key(format!(
                "KEK version {version} has no KMS key configured (keys.kms_previous_key_ids lists {} entries; retired?)",
                self.settings.previous_key_ids.len()
            ))
        })
    }

    /// The version and KMS ciphertext of a wrapped key.
    fn parse(wrapped: &WrappedKey) -> Result<(i32, Vec<u8>)> {
        let text = std::str::from_utf8(&wrapped.ciphertext).map_err(|_| Error::Integrity)?;
        let (version, body) = split_versioned(PREFIX, text)?;
        if version != wrapped.kek_version {
            return Err(Error::Integrity);
        }
        Ok((version, B64.decode(body).map_err(|_| Error::Integrity)?))
    }

    /// The wrapped key of a KMS ciphertext made by KEK `version`.
    fn wrapped(version: i32, blob: Option<Blob>) -> Result<WrappedKey> {
        let blob = blob.ok_or_else(|| Error::key("KMS returned no ciphertext"))?;
        Ok(WrappedKey {
            kek_version: version,
            ciphertext: format!("{PREFIX}:v{version}:{}", B64.encode(blob.as_ref())).into_bytes(),
        })
    }
}

impl HoldsRoot for KmsKeyProvider {
    fn set_root(&mut self, root: Key) {
        self.root = Some(root);
    }
}

#[async_trait]
impl KeyProvider for KmsKeyProvider {
    fn name(&self) -> &'static str {
        "kms"
    }

    async fn current_kek_version(&self) -> Result<i32> {
        Ok(self.settings.current_version())
    }

    async fn kek_versions(&self) -> Result<Vec<i32>> {
        Ok(self.settings.versions())
    }

    async fn rotate(&self) -> Result<i32> {
        Err(Error::key(
            "KMS rotates the material of a key by itself (enable automatic rotation, or `aws kms rotate-key-on-demand`); \
             ciphertexts need no re-wrapping for that. For a new KEK version, create a KMS key, set keys.kms_key_id to it, \
             move the old id to the end of keys.kms_previous_key_ids, restart, and run keys rotate again (docs/keys-kms.md)",
        ))
    }

    async fn wrap(&self, key: &Key, context: &[u8]) -> Result<WrappedKey> {
        let version = self.settings.current_version();
        let key_id = &self.settings.key_id;
        let out = self
            .client
            .encrypt()
            .key_id(key_id)
            .plaintext(Blob::new(key.expose().to_vec()))
            .set_encryption_context(encryption_context(context, version))
            .send()
            .await
            .map_err(|e| client::error("wrap", key_id, e))?;
        Self::wrapped(version, out.ciphertext_blob)
    }

    async fn unwrap(&self, wrapped: &WrappedKey, context: &[u8]) -> Result<Key> {
        let (version, blob) = Self::parse(wrapped)?;
        let key_id = self.key_of(version)?;
        let out = self
            .client
            .decrypt()
            .key_id(key_id)
            .ciphertext_blob(Blob::new(blob))
            .set_encryption_context(encryption_context(context, version))
            .send()
            .await
            .map_err(|e| client::error("unwrap", key_id, e))?;
        let plain = Zeroizing::new(out.plaintext.map(Blob::into_inner).unwrap_or_default());
        if plain.len() != Key::LEN {
            return Err(Error::Integrity);
        }
        Key::from_slice(&plain)
    }

    async fn rewrap(&self, wrapped: &WrappedKey, context: &[u8]) -> Result<WrappedKey> {
        // Inside KMS: the data key is never exposed, not even to us.
        let (version, blob) = Self::parse(wrapped)?;
        let source = self.key_of(version)?;
        let current = self.settings.current_version();
        let out = self
            .client
            .re_encrypt()
            .source_key_id(source)
            .set_source_encryption_context(encryption_context(context, version))
            .destination_key_id(&self.settings.key_id)
            .set_destination_encryption_context(encryption_context(context, current))
            .ciphertext_blob(Blob::new(blob))
            .send()
            .await
            .map_err(|e| client::error("rewrap", source, e))?;
        Self::wrapped(current, out.ciphertext_blob)
    }

    async fn retire_below(&self, version: i32) -> Result<()> {
        if version > self.settings.current_version() {
            return Err(Error::invalid("cannot retire the current KEK version"));
        }
        let versions = self.settings.versions();
        if versions.iter().all(|v| *v >= version) {
            return Ok(());
        }
        Err(Error::invalid(format!(
            "KMS KEK versions come from the configuration: to retire the versions below {version}, replace the first {} id(s) of keys.kms_previous_key_ids with \"{}\" (each keeps its version's place) and restart; then disable those keys in KMS (or schedule their deletion) once no backup needs them (docs/keys-kms.md)",
            version - 1,
            settings::RETIRED
        )))
    }

    async fn root_key(&self) -> Result<Key> {
        self.root
            .clone()
            .ok_or_else(|| Error::key("the kms provider has no root secret loaded"))
    }

    async fn check(&self) -> Result<()> {
        let key_id = &self.settings.key_id;
        let out = self
            .client
            .describe_key()
            .key_id(key_id)
            .send()
            .await
            .map_err(|e| client::error("describe key", key_id, e))?;
        match out.key_metadata {
            Some(meta) if meta.enabled() => Ok(()),
            Some(meta) => Err(Error::key(format!(
                "the KMS key {key_id} is not enabled (state {}); enable it, or configure another key",
                meta.key_state().map_or("unknown", |s| s.as_str())
            ))),
            None => Err(Error::key(format!(
                "KMS describe key: no metadata for the key {key_id}"
            ))),
        }
    }
}

/// Creates a symmetric KMS key for tests (each gets its own) with the
/// client `settings` describe, returning its id.
///
/// # Errors
/// As the provider's requests.
#[cfg(feature = "testing")]
pub async fn create_key(settings: &KmsSettings) -> Result<String> {
    let client = client::connect(settings).await?;
    let out = client
        .create_key()
        .description("clarity test key")
        .send()
        .await
        .map_err(|e| client::error("create key", "(new)", e))?;
    out.key_metadata
        .map(|m| m.key_id)
        .ok_or_else(|| Error::key("KMS create key: no key id in the reply"))
}

/// Disables the KMS key `key_id` (tests of a disabled key).
///
/// # Errors
/// As the provider's requests.
#[cfg(feature = "testing")]
pub async fn disable_key(settings: &KmsSettings, key_id: &str) -> Result<()> {
    let client = client::connect(settings).await?;
    client
        .disable_key()
        .key_id(key_id)
        .send()
        .await
        .map(drop)
        .map_err(|e| client::error("disable key", key_id, e))
}
