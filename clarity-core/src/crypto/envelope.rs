//! AES-256-GCM envelopes for PHI at rest.
//!
//! An envelope is `0x01 | nonce (12 bytes) | ciphertext | tag (16 bytes)`.
//! The nonce is random; a data key encrypts few messages (one patient's rows),
//! far below the 2^32 random-nonce limit. The associated data binds the
//! ciphertext to its row: `clarity/v1|<table>|<row id>|<patient id>|<row version>|<DEK version>`,
//! so a ciphertext copied to another row, another version or another patient
//! fails to open. Every failure to open is the same [`Error::Integrity`].

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use uuid::Uuid;
use zeroize::Zeroizing;

use super::{Key, fill_random};
use crate::error::{Error, Result};

/// Format byte of the current envelope layout.
const FORMAT_V1: u8 = 1;
const NONCE_LEN: usize = 12;
const TAG_LEN: usize = 16;

/// Bytes an envelope adds to its plaintext.
pub const OVERHEAD: usize = 1 + NONCE_LEN + TAG_LEN;

/// What a ciphertext is bound to: the associated data of its envelope.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RowBinding<'a> {
    /// Table the row lives in, e.g. `records`.
    pub table: &'a str,
    /// The row's id.
    pub row_id: Uuid,
    /// The patient the row belongs to.
    pub patient_id: Uuid,
    /// The row's version (optimistic concurrency counter).
    pub version: i64,
    /// The version of the patient's data key that encrypted it.
    pub dek_version: i32,
}

impl RowBinding<'_> {
    /// The associated-data bytes.
    pub fn to_aad(&self) -> Vec<u8> {
        use std::fmt::Write as _;
        // Sized once for the longest binding (two hyphenated UUIDs, an i64
        // and an i32), so writing it never reallocates.
        let mut aad = String::with_capacity(11 + self.table.len() + 2 * 37 + 21 + 12);
        // Writing into a String cannot fail.
        let _ = write!(
            aad,
            "clarity/v1|{}|{}|{}|{}|{}",
            self.table, self.row_id, self.patient_id, self.version, self.dek_version
        );
        aad.into_bytes()
    }
}

/// Encrypts `plaintext` under `key`, bound to `binding`.
///
/// # Errors
/// [`Error::Internal`] if the OS random source fails.
pub fn seal_row(key: &Key, binding: &RowBinding<'_>, plaintext: &[u8]) -> Result<Vec<u8>> {
    seal(key, &binding.to_aad(), plaintext)
}

/// Decrypts an envelope sealed by [`seal_row`] with the same key and binding.
///
/// # Errors
/// [`Error::Integrity`] for any failure: wrong key, wrong binding, a changed byte, bad layout.
pub fn open_row(
    key: &Key,
    binding: &RowBinding<'_>,
    envelope: &[u8],
) -> Result<Zeroizing<Vec<u8>>> {
    open(key, &binding.to_aad(), envelope)
}

/// Encrypts `plaintext` under `key` with arbitrary associated data.
///
/// # Errors
/// [`Error::Internal`] if the OS random source fails.
pub fn seal(key: &Key, aad: &[u8], plaintext: &[u8]) -> Result<Vec<u8>> {
    let mut nonce = [0u8; NONCE_LEN];
    fill_random(&mut nonce)?;
    let cipher = Aes256Gcm::new(key.expose().into());
    let ciphertext = cipher
        .encrypt(
            Nonce::from_slice(&nonce),
            Payload {
                msg: plaintext,
                aad,
            },
        )
        .map_err(|_| Error::internal("encryption failed"))?;
    let mut out = Vec::with_capacity(OVERHEAD + plaintext.len());
    out.push(FORMAT_V1);
    out.extend_from_slice(&nonce);
    out.extend_from_slice(&ciphertext);
    Ok(out)
}

/// Decrypts an envelope sealed by [`seal`].
///
/// # Errors
/// [`Error::Integrity`] for any failure.
pub fn open(key: &Key, aad: &[u8], envelope: &[u8]) -> Result<Zeroizing<Vec<u8>>> {
    if envelope.len() < OVERHEAD || envelope[0] != FORMAT_V1 {
        return Err(Error::Integrity);
    }
    let (nonce, ciphertext) = envelope[1..].split_at(NONCE_LEN);
    let cipher = Aes256Gcm::new(key.expose().into());
    cipher
        .decrypt(
            Nonce::from_slice(nonce),
            Payload {
                msg: ciphertext,
                aad,
            },
        )
        .map(Zeroizing::new)
        .map_err(|_| Error::Integrity)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn binding(version: i64) -> RowBinding<'static> {
        RowBinding {
            table: "records",
            row_id: Uuid::from_u128(1),
            patient_id: Uuid::from_u128(2),
            version,
            dek_version: 1,
        }
    }

    /// Rows already stored were sealed with exactly these bytes: a change
    /// to the binding's form would make every one of them unreadable.
    #[test]
    fn the_binding_bytes_are_those_rows_were_sealed_with() {
        let widest = RowBinding {
            table: "records",
            row_id: Uuid::from_u128(u128::MAX),
            patient_id: Uuid::from_u128(2),
            version: i64::MIN,
            dek_version: i32::MIN,
        };
        let aad = widest.to_aad();
        assert_eq!(
            String::from_utf8(aad.clone()).expect("text"),
            "clarity/v1|records|ffffffff-ffff-ffff-ffff-ffffffffffff|\
             00000000-0000-0000-0000-000000000002|-9223372036854775808|-2147483648"
        );
        assert_eq!(
            binding(7).to_aad(),
            b"clarity/v1|records|00000000-0000-0000-0000-000000000001|\
              00000000-0000-0000-0000-000000000002|7|1"
                .to_vec()
        );
    }

    #[test]
    fn round_trip() {
        let key = Key::generate().expect("rng");
        let sealed = seal_row(&key, &binding(1), b"hello").expect("seal");
        assert_eq!(sealed.len(), OVERHEAD + 5);
        assert_eq!(
            &open_row(&key, &binding(1), &sealed).expect("open")[..],
            b"hello"
        );
    }

    // S-INT-1: any change yields the same integrity error.
    #[test]
    fn every_tampering_is_the_same_integrity_error() {
        let key = Key::generate().expect("rng");
        let sealed = seal_row(&key, &binding(1), b"hello").expect("seal");
        let other_key = Key::generate().expect("rng");
        let mut other_row = binding(1);
        other_row.row_id = Uuid::from_u128(9);
        let mut other_patient = binding(1);
        other_patient.patient_id = Uuid::from_u128(9);
        let mut other_dek = binding(1);
        other_dek.dek_version = 2;

        let mut failures = vec![
            open_row(&other_key, &binding(1), &sealed),
            open_row(&key, &binding(2), &sealed),
            open_row(&key, &other_row, &sealed),
            open_row(&key, &other_patient, &sealed),
            open_row(&key, &other_dek, &sealed),
            open_row(&key, &binding(1), &sealed[..sealed.len() - 1]),
            open_row(&key, &binding(1), &[]),
        ];
        for i in 0..sealed.len() {
            let mut flipped = sealed.clone();
            flipped[i] ^= 0x01;
            failures.push(open_row(&key, &binding(1), &flipped));
        }
        for failure in failures {
            assert!(matches!(failure, Err(Error::Integrity)));
        }
    }

    #[test]
    fn nonces_differ() {
        let key = Key::generate().expect("rng");
        let a = seal(&key, b"", b"same").expect("seal");
        let b = seal(&key, b"", b"same").expect("seal");
        assert_ne!(a, b);
    }
}
