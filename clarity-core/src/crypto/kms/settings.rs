//! [`KmsSettings`]: what the AWS KMS provider needs, read from `[keys]`.

use crate::crypto::KeysConfig;
use crate::error::{Error, Result};

/// The entry of `keys.kms_previous_key_ids` that stands for a retired KEK
/// version: it keeps the place (versions are positions) but unwraps nothing.
pub(crate) const RETIRED: &str = "retired";

/// Which KMS keys the provider uses, and where KMS is.
#[derive(Debug, Clone)]
pub struct KmsSettings {
    /// The key that wraps data keys now: a key id, a key ARN or `alias/...`.
    pub key_id: String,
    /// Older keys, still used to unwrap: KEK version i (from 1) is the i-th;
    /// the current key is the version after the last. An entry
    /// `"retired"` keeps its version's place but unwraps nothing.
    pub previous_key_ids: Vec<String>,
    /// The AWS region; `None`: from the standard AWS configuration chain.
    pub region: Option<String>,
    /// The KMS endpoint URL; `None`: the region's.
    pub endpoint: Option<String>,
}

impl KmsSettings {
    /// Settings for one key, with the region and endpoint from the standard
    /// AWS configuration chain.
    pub fn new(key_id: impl Into<String>) -> Self {
        KmsSettings {
            key_id: key_id.into(),
            previous_key_ids: Vec::new(),
            region: None,
            endpoint: None,
        }
    }

    /// Reads the settings of a validated `[keys]` section.
    ///
    /// # Errors
    /// [`Error::Config`] naming the key that is missing.
    pub fn from_config(keys: &KeysConfig) -> Result<KmsSettings> {
        Ok(KmsSettings {
            key_id: keys
                .kms_key_id
                .clone()
                .ok_or_else(|| Error::config("keys.kms_key_id", "required for the kms provider"))?,
            previous_key_ids: keys.kms_previous_key_ids.clone(),
            region: keys.kms_region.clone(),
            endpoint: keys
                .kms_endpoint
                .as_ref()
                .map(|url| url.trim_end_matches('/').to_string()),
        })
    }

    /// The current KEK version: the one after the previous keys'.
    pub(super) fn current_version(&self) -> i32 {
        i32::try_from(self.previous_key_ids.len()).map_or(i32::MAX, |n| n.saturating_add(1))
    }

    /// The key of KEK `version`, when it is configured.
    pub(super) fn key_of(&self, version: i32) -> Option<&str> {
        if version == self.current_version() {
            return Some(&self.key_id);
        }
        let index = usize::try_from(version).ok()?.checked_sub(1)?;
        self.previous_key_ids
            .get(index)
            .map(String::as_str)
            .filter(|id| *id != RETIRED)
    }

    /// The KEK versions that can unwrap: every configured one but the
    /// retired.
    pub(super) fn versions(&self) -> Vec<i32> {
        (1..=self.current_version())
            .filter(|v| self.key_of(*v).is_some())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_follow_the_configured_keys() {
        let mut settings = KmsSettings::new("key-c");
        assert_eq!(settings.current_version(), 1);
        assert_eq!(settings.key_of(1), Some("key-c"));
        settings.previous_key_ids = vec!["key-a".into(), "key-b".into()];
        assert_eq!(settings.current_version(), 3);
        assert_eq!(settings.key_of(1), Some("key-a"));
        assert_eq!(settings.key_of(2), Some("key-b"));
        assert_eq!(settings.key_of(3), Some("key-c"));
        for unknown in [0, -1, 4, i32::MAX] {
            assert_eq!(settings.key_of(unknown), None, "{unknown}");
        }
        assert_eq!(settings.versions(), vec![1, 2, 3]);
        settings.previous_key_ids[0] = RETIRED.into();
        assert_eq!(settings.key_of(1), None);
        assert_eq!(settings.key_of(3), Some("key-c"));
        assert_eq!(settings.versions(), vec![2, 3]);
    }
}
