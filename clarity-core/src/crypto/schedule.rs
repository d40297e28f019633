//! The key schedule: every key Clarity derives from the key provider's root
//! secret, with the HKDF-SHA-256 salt and info label that define it, and the
//! name of every metadata entry a store keeps about its keys. One file, so a
//! security review reads one place.
//!
//! The labels are part of what stored data means: a different label derives
//! a different key, and everything sealed, indexed, signed or chained under
//! the old one stops verifying. The known-answer test below holds each of
//! them to the value it has always produced.

use hkdf::Hkdf;
use sha2::Sha256;
use zeroize::Zeroizing;

use hmac::{Hmac, Mac};

use super::{IndexField, Key};
use crate::error::{Error, Result};

/// Names of the metadata entries a store keeps about its keys.
pub(crate) mod meta {
    /// The fingerprint of the keyring a store is bound to.
    pub(crate) const KEYRING_FINGERPRINT: &str = "keyring_fingerprint";
    /// The root secret, wrapped by an external provider (transit, PKCS#11);
    /// the name is historical.
    pub(crate) const TRANSIT_ROOT_KEY: &str = "transit_root_key";
    /// The audit-key version new chains use.
    pub(crate) const AUDIT_KEY_VERSION: &str = "audit_key_version";
    /// The access-token key versions in effect.
    pub(crate) const TOKEN_KEY: &str = "token_key";
    /// The directory key (random, wrapped by a KEK) that seals user profiles.
    pub(crate) const DIRECTORY_KEY: &str = "directory_key";
    /// The one-time setup code's hash and expiry (no users yet).
    pub(crate) const SETUP_CODE: &str = "setup_code";
}

/// A key derived from the root secret.
#[derive(Debug, Clone, Copy)]
pub(crate) enum SubKey<'a> {
    /// A blind-index field's key.
    BlindIndex(IndexField),
    /// The symmetric access-token key (PASETO v4.local) of a version.
    TokenLocal(u32),
    /// The seed of the access-token signing pair (PASETO v4.public) of a version.
    TokenPublicSeed(u32),
    /// The audit chain MAC key of a version.
    AuditChainMac(u32),
    /// The seed of the audit checkpoint signing pair of a version.
    AuditSigningSeed(u32),
    /// The key that seals values in a shared cache.
    SharedCache,
    /// The key of the research view's pseudonymous ids.
    ResearchPseudonyms,
    /// The key of the look-up hashes recorded in the audit trail.
    AuditQueryHashes,
    /// A backup archive's encryption key; the backup id binds it.
    BackupEncryption(&'a [u8; 16]),
    /// A backup manifest's MAC key; the backup id binds it.
    BackupManifestMac(&'a [u8; 16]),
}

impl SubKey<'_> {
    /// The HKDF salt (one per family of keys) and the info label.
    fn label(self) -> (&'static [u8], Vec<u8>) {
        match self {
            SubKey::BlindIndex(field) => {
                let label: &[u8] = match field {
                    IndexField::PatientMrn => b"patients.mrn",
                    IndexField::PatientEmail => b"patients.email",
                    IndexField::PatientNameBirthDate => b"patients.family_name+birth_date",
                    IndexField::UserEmail => b"users.email",
                };
                (b"clarity/v1 blind-index", label.to_vec())
            }
            SubKey::TokenLocal(v) => (b"clarity/v1 tokens", format!("v4.local key {v}").into()),
            SubKey::TokenPublicSeed(v) => {
                (b"clarity/v1 tokens", format!("v4.public seed {v}").into())
            }
            SubKey::AuditChainMac(v) => (b"clarity/v1 audit", format!("chain mac {v}").into()),
            SubKey::AuditSigningSeed(v) => (
                b"clarity/v1 audit",
                format!("checkpoint signing {v}").into(),
            ),
            SubKey::SharedCache => (b"clarity/v1 service", b"shared cache values".to_vec()),
            SubKey::ResearchPseudonyms => (b"clarity/v1 service", b"research pseudonyms".to_vec()),
            SubKey::AuditQueryHashes => (b"clarity/v1 service", b"audit query hashes".to_vec()),
            SubKey::BackupEncryption(id) => (
                b"clarity/v1 backup",
                [b"archive encryption ".as_slice(), id].concat(),
            ),
            SubKey::BackupManifestMac(id) => (
                b"clarity/v1 backup",
                [b"manifest signature ".as_slice(), id].concat(),
            ),
        }
    }
}

/// The 32 bytes of `sub` under `root` (a seed or key material, wiped on drop).
///
/// # Errors
/// [`Error::Internal`] only if HKDF refuses the length (it cannot for 32 bytes).
pub(crate) fn derive_bytes(root: &Key, sub: SubKey<'_>) -> Result<Zeroizing<[u8; 32]>> {
    let (salt, info) = sub.label();
    let mut out = Zeroizing::new([0u8; 32]);
    Hkdf::<Sha256>::new(Some(salt), root.expose())
        .expand(&info, out.as_mut_slice())
        .map_err(|_| Error::internal("key derivation failed"))?;
    Ok(out)
}

/// A public, non-secret identifier of a root key (HMAC-SHA-256 of a fixed
/// label, 128 bits in hex), recorded in the store at its first use so that
/// a store is never opened with another keyring.
pub fn fingerprint(root: &Key) -> String {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(root.expose())
        .expect("HMAC-SHA-256 accepts a 32-byte key");
    mac.update(b"clarity/v1 keyring fingerprint");
    hex::encode(&mac.finalize().into_bytes()[..16])
}

/// `sub` under `root`, as a key.
///
/// # Errors
/// As [`derive_bytes`].
pub(crate) fn derive(root: &Key, sub: SubKey<'_>) -> Result<Key> {
    Key::from_slice(derive_bytes(root, sub)?.as_slice())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every label derives what it derived when data was first stored under
    /// it (values from an independent HKDF-SHA-256 over the root 00 01 .. 1f).
    #[test]
    fn every_label_derives_its_known_answer() {
        let root = Key::from_slice(&(0u8..32).collect::<Vec<_>>()).expect("root");
        let id = [7u8; 16];
        let cases: [(SubKey<'_>, &str); 13] = [
            (
                SubKey::BlindIndex(IndexField::PatientMrn),
                "630d76d5c13ef2d05f72b2d1128e691adc6b9bb5104f8e0245ebe70d30f76a79",
            ),
            (
                SubKey::BlindIndex(IndexField::PatientEmail),
                "d78db1fde9a4c3c1ec5b162f602d6549e4e1b81b1b6870c9cce15707c1046f28",
            ),
            (
                SubKey::BlindIndex(IndexField::PatientNameBirthDate),
                "52fa76170ffdb9d1d94068d2ca40e5167b5247719ac37c7c4852d86b8ea737f2",
            ),
            (
                SubKey::BlindIndex(IndexField::UserEmail),
                "622292f0226e77ad917d416967fbb517a272c1ed776b167d89034ecd0879622b",
            ),
            (
                SubKey::TokenLocal(1),
                "894c44d548e96f3b3d0287e1a07c0cfd0811677e27fb5ce1302f946c6edf6563",
            ),
            (
                SubKey::TokenPublicSeed(2),
                "76a355c05e14ec69c57ff63b58c4925c1497cdf2a09e1ce050ba863be4e21cbb",
            ),
            (
                SubKey::AuditChainMac(1),
                "fd61e8c8441808055eba610cd16c545d1e9de1081c19d987f03a79b5fc6748ae",
            ),
            (
                SubKey::AuditSigningSeed(3),
                "54db7b691cc48b2259c629f7080d654a89a4bb65063564b409d008ff3b10e4a4",
            ),
            (
                SubKey::SharedCache,
                "ec3b8064abba38d6bea2e7fb71c69caaabb9f67ba2863f5a4ca1e60a6ce20477",
            ),
            (
                SubKey::ResearchPseudonyms,
                "fc1df1833674dec7b0d8453db4c151959b4d5cfaf96eb3897aa6b1f23bf61ef4",
            ),
            (
                SubKey::AuditQueryHashes,
                "c2641a546a8f651cc590322c00e174a102e50c5966338bbca1b3f184fed3929b",
            ),
            (
                SubKey::BackupEncryption(&id),
                "9a6568b8f957868820709a65b591fb0cae75fdbfc6b8b47cc03af39feb5ce1b0",
            ),
            (
                SubKey::BackupManifestMac(&id),
                "ab1a5ad5803c991cf10a92061f715a57818f956b881b17f29ab46953d416a994",
            ),
        ];
        for (sub, want) in cases {
            let got = derive_bytes(&root, sub).expect("derive");
            assert_eq!(hex::encode(got.as_slice()), want, "{sub:?}");
        }
        assert_eq!(fingerprint(&root), "48647d5c010e45f67f122021e3eb2832");
    }
}
