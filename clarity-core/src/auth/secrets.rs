//! Random secrets handed to clients (refresh tokens, setup codes) and how
//! they are stored: only their SHA-256, compared in constant time (S-AUTH-6).

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

use crate::crypto::{SecretString, fill_random};
use crate::error::Result;

/// Prefix of refresh tokens, so that one is never mistaken for an access token.
pub const REFRESH_PREFIX: &str = "crt_";

/// A new refresh token: 256 bits from the OS CSPRNG.
///
/// # Errors
/// [`crate::error::Error::Internal`] if the random source fails.
pub fn new_refresh_token() -> Result<SecretString> {
    let mut bytes = Zeroizing::new([0u8; 32]);
    fill_random(bytes.as_mut_slice())?;
    Ok(SecretString::new(format!(
        "{REFRESH_PREFIX}{}",
        URL_SAFE_NO_PAD.encode(bytes.as_slice())
    )))
}

/// A new one-time setup code: 128 bits, written as eight groups of four hex digits.
///
/// # Errors
/// [`crate::error::Error::Internal`] if the random source fails.
pub fn new_setup_code() -> Result<SecretString> {
    let mut bytes = Zeroizing::new([0u8; 16]);
    fill_random(bytes.as_mut_slice())?;
    let hex = Zeroizing::new(hex::encode(bytes.as_slice()));
    let groups: Vec<&str> = (0..8).map(|i| &hex[i * 4..i * 4 + 4]).collect();
    Ok(SecretString::new(groups.join("-")))
}

/// The stored form of a secret: its SHA-256.
pub fn hash_secret(secret: &str) -> [u8; 32] {
    Sha256::digest(secret.trim().as_bytes()).into()
}

/// Constant-time equality of two stored secret hashes.
pub fn secrets_equal(a: &[u8], b: &[u8]) -> bool {
    a.ct_eq(b).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    // S-AUTH-6
    #[test]
    fn secrets_are_long_random_and_distinct() {
        let a = new_refresh_token().expect("rng");
        let b = new_refresh_token().expect("rng");
        assert_ne!(a.expose(), b.expose());
        assert!(a.expose().starts_with(REFRESH_PREFIX));
        assert_eq!(a.expose().len(), REFRESH_PREFIX.len() + 43, "256 bits");
        let code = new_setup_code().expect("rng");
        assert_eq!(code.expose().len(), 39, "128 bits in groups");
        assert!(secrets_equal(
            &hash_secret(code.expose()),
            &hash_secret(code.expose())
        ));
        assert!(!secrets_equal(&hash_secret("a"), &hash_secret("b")));
    }
}
