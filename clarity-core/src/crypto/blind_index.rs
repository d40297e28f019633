//! Blind indexes: equality lookups over encrypted fields.
//!
//! Each indexed field has its own key, derived with HKDF-SHA-256 from the
//! provider's root secret, so an index value of one field says nothing about
//! another. The index is HMAC-SHA-256 over the normalised value, truncated to
//! 128 bits. Only equality can be looked up.

use std::fmt;

use hmac::{Hmac, Mac};
use sha2::Sha256;
use unicode_normalization::UnicodeNormalization;

use super::Key;
use crate::crypto::schedule::{self, SubKey};
use crate::error::{Error, Result};

type HmacSha256 = Hmac<Sha256>;

/// A field that carries a blind index.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum IndexField {
    /// A patient's medical record number.
    PatientMrn,
    /// A patient's email address.
    PatientEmail,
    /// A patient's family name together with the birth date.
    PatientNameBirthDate,
    /// A user's email address (the login name).
    UserEmail,
}

impl IndexField {
    const ALL: [IndexField; 4] = [
        IndexField::PatientMrn,
        IndexField::PatientEmail,
        IndexField::PatientNameBirthDate,
        IndexField::UserEmail,
    ];

    fn slot(self) -> usize {
        match self {
            IndexField::PatientMrn => 0,
            IndexField::PatientEmail => 1,
            IndexField::PatientNameBirthDate => 2,
            IndexField::UserEmail => 3,
        }
    }
}

/// A 128-bit blind index value.
#[derive(Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct BlindIndex(pub [u8; 16]);

impl fmt::Debug for BlindIndex {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "BlindIndex({})", hex::encode(self.0))
    }
}

impl BlindIndex {
    /// Builds an index value from stored bytes.
    ///
    /// # Errors
    /// [`Error::Integrity`] when the stored value is not 16 bytes.
    pub fn from_slice(bytes: &[u8]) -> Result<Self> {
        bytes
            .try_into()
            .map(BlindIndex)
            .map_err(|_| Error::Integrity)
    }
}

/// Computes blind indexes with per-field keys.
#[derive(Clone)]
pub struct BlindIndexer {
    keys: [Key; 4],
}

impl fmt::Debug for BlindIndexer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("BlindIndexer([REDACTED])")
    }
}

impl BlindIndexer {
    /// Derives every field key from `root`.
    ///
    /// # Errors
    /// [`Error::Internal`] only if HKDF rejects the output length (it cannot for 32 bytes).
    pub fn new(root: &Key) -> Result<Self> {
        let derive = |field: IndexField| schedule::derive(root, SubKey::BlindIndex(field));
        let [a, b, c, d] = IndexField::ALL;
        Ok(BlindIndexer {
            keys: [derive(a)?, derive(b)?, derive(c)?, derive(d)?],
        })
    }

    /// The index of an already normalised value.
    fn index_normalized(&self, field: IndexField, normalized: &str) -> BlindIndex {
        let key = &self.keys[field.slot()];
        // HMAC accepts keys of any length; 32 bytes cannot fail.
        let mut mac = <HmacSha256 as Mac>::new_from_slice(key.expose())
            .expect("HMAC-SHA-256 accepts a 32-byte key");
        mac.update(normalized.as_bytes());
        let full = mac.finalize().into_bytes();
        let mut out = [0u8; 16];
        out.copy_from_slice(&full[..16]);
        BlindIndex(out)
    }

    /// The index of `value` for `field`, after normalisation (Unicode NFKC,
    /// lower case, trimmed, inner whitespace collapsed).
    pub fn index(&self, field: IndexField, value: &str) -> BlindIndex {
        let normalized = zeroize::Zeroizing::new(normalize(value));
        self.index_normalized(field, &normalized)
    }

    /// The index of a family name and birth date (`YYYY-MM-DD`) together.
    pub fn name_birth_date(&self, family_name: &str, birth_date: &str) -> BlindIndex {
        // Length-prefixed so that no name can forge the separator.
        let family = zeroize::Zeroizing::new(normalize(family_name));
        let joined = zeroize::Zeroizing::new(format!(
            "{}:{}|{}",
            family.len(),
            family.as_str(),
            normalize(birth_date)
        ));
        self.index_normalized(IndexField::PatientNameBirthDate, &joined)
    }
}

/// NFKC, lower case, trimmed, runs of whitespace collapsed to one space.
fn normalize(value: &str) -> String {
    let folded: String = value.nfkc().flat_map(char::to_lowercase).collect();
    folded.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn indexer() -> BlindIndexer {
        BlindIndexer::new(&Key::from_slice(&[1u8; 32]).expect("key")).expect("indexer")
    }

    #[test]
    fn normalisation_makes_equal_values_equal() {
        let ix = indexer();
        assert_eq!(
            ix.index(IndexField::PatientEmail, "  Jane.Doe@Example.ORG "),
            ix.index(IndexField::PatientEmail, "jane.doe@example.org")
        );
        // NFKC: the full-width form is the same letters.
        assert_eq!(
            ix.index(IndexField::PatientMrn, "ＭＲＮ１"),
            ix.index(IndexField::PatientMrn, "mrn1")
        );
        assert_eq!(
            ix.name_birth_date("van  der Berg", "1980-01-02"),
            ix.name_birth_date("Van der Berg", "1980-01-02")
        );
    }

    #[test]
    fn fields_and_roots_are_separated() {
        let ix = indexer();
        assert_ne!(
            ix.index(IndexField::PatientEmail, "a@b.c"),
            ix.index(IndexField::UserEmail, "a@b.c")
        );
        let other = BlindIndexer::new(&Key::from_slice(&[2u8; 32]).expect("key")).expect("ix");
        assert_ne!(
            ix.index(IndexField::PatientMrn, "1"),
            other.index(IndexField::PatientMrn, "1")
        );
        assert_ne!(
            ix.name_birth_date("a", "b|c"),
            ix.name_birth_date("a|b", "c"),
            "the separator cannot be forged from a name alone"
        );
    }
}
