//! Sealing of personal data that belongs to no patient: users' emails and
//! names, TOTP secrets, break-glass reasons. One "directory" data key, made
//! at first use and stored in the store's metadata wrapped by the KEK.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use serde::{Deserialize, Serialize};
use uuid::Uuid;
use zeroize::Zeroizing;

use crate::crypto::envelope::{RowBinding, open_row, seal_row};
use crate::crypto::schedule::meta;
use crate::crypto::{Key, KeyProvider, WrappedKey};
use crate::error::{Error, Result};
use crate::store::Store;

const CONTEXT: &[u8] = b"clarity/v1 directory";

#[derive(Serialize, Deserialize)]
struct StoredKey {
    kek_version: i32,
    wrapped: String,
}

/// Seals and opens directory data.
pub(super) struct Directory {
    key: Key,
}

impl Directory {
    /// Loads the directory key, creating it on first use.
    pub(super) async fn open(store: &dyn Store, keys: &dyn KeyProvider) -> Result<Directory> {
        if store.get_meta(meta::DIRECTORY_KEY).await?.is_none() {
            let fresh = Key::generate()?;
            let wrapped = keys.wrap(&fresh, CONTEXT).await?;
            let stored = StoredKey {
                kek_version: wrapped.kek_version,
                wrapped: B64.encode(&wrapped.ciphertext),
            };
            let json = serde_json::to_string(&stored).map_err(|_| Error::internal("encoding"))?;
            // Of two instances starting together, the first one's key wins.
            store.set_meta_if_absent(meta::DIRECTORY_KEY, &json).await?;
        }
        let json = store
            .get_meta(meta::DIRECTORY_KEY)
            .await?
            .ok_or_else(|| Error::internal("directory key vanished"))?;
        let stored: StoredKey = serde_json::from_str(&json).map_err(|_| Error::Integrity)?;
        let wrapped = WrappedKey {
            kek_version: stored.kek_version,
            ciphertext: B64.decode(stored.wrapped).map_err(|_| Error::Integrity)?,
        };
        Ok(Directory {
            key: keys.unwrap(&wrapped, CONTEXT).await?,
        })
    }

    /// Seals `value` for the row `(table, id, version)`.
    pub(super) fn seal<T: Serialize>(
        &self,
        table: &str,
        id: Uuid,
        version: i64,
        value: &T,
    ) -> Result<Vec<u8>> {
        let plain =
            Zeroizing::new(serde_json::to_vec(value).map_err(|_| Error::internal("encoding"))?);
        seal_row(&self.key, &binding(table, id, version), &plain)
    }

    /// Opens what [`Directory::seal`] sealed for the same row.
    pub(super) fn open_sealed<T: serde::de::DeserializeOwned>(
        &self,
        table: &str,
        id: Uuid,
        version: i64,
        sealed: &[u8],
    ) -> Result<T> {
        let plain = open_row(&self.key, &binding(table, id, version), sealed)?;
        serde_json::from_slice(&plain).map_err(|_| Error::Integrity)
    }
}

impl Directory {
    /// The KEK version the stored directory key is wrapped with.
    pub(super) async fn kek_version(&self, store: &dyn Store) -> Result<i32> {
        let json = store
            .get_meta(meta::DIRECTORY_KEY)
            .await?
            .ok_or_else(|| Error::internal("directory key vanished"))?;
        let stored: StoredKey = serde_json::from_str(&json).map_err(|_| Error::Integrity)?;
        Ok(stored.kek_version)
    }

    /// Re-wraps the stored directory key with the current KEK (rotation).
    pub(super) async fn rewrap(&self, store: &dyn Store, keys: &dyn KeyProvider) -> Result<()> {
        if self.kek_version(store).await? >= keys.current_kek_version().await? {
            return Ok(());
        }
        let wrapped = keys.wrap(&self.key, CONTEXT).await?;
        let stored = StoredKey {
            kek_version: wrapped.kek_version,
            wrapped: B64.encode(&wrapped.ciphertext),
        };
        let json = serde_json::to_string(&stored).map_err(|_| Error::internal("encoding"))?;
        store.put_meta(meta::DIRECTORY_KEY, &json).await
    }

    /// An opaque pagination cursor for `id`, for callers who may not see ids.
    pub(super) fn seal_cursor(&self, id: Uuid) -> Result<String> {
        let sealed = seal_row(&self.key, &binding("cursor", Uuid::nil(), 0), id.as_bytes())?;
        Ok(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(sealed))
    }

    /// The id inside a cursor made by [`Directory::seal_cursor`].
    pub(super) fn open_cursor(&self, cursor: &str) -> Result<Uuid> {
        let invalid = || Error::invalid("cursor is not valid");
        let sealed = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(cursor)
            .map_err(|_| invalid())?;
        let plain = open_row(&self.key, &binding("cursor", Uuid::nil(), 0), &sealed)
            .map_err(|_| invalid())?;
        Uuid::from_slice(&plain).map_err(|_| invalid())
    }
}

fn binding(table: &str, id: Uuid, version: i64) -> RowBinding<'_> {
    RowBinding {
        table,
        row_id: id,
        patient_id: Uuid::nil(),
        version,
        dek_version: 1,
    }
}
