//! TOTP second factor (RFC 6238: HMAC-SHA-1, 6 digits, 30-second steps),
//! with replay protection: a code's time step must be later than the last
//! step accepted for the user (S-AUTH-5).

use chrono::{DateTime, Utc};
use subtle::ConstantTimeEq;
use totp_rs::{Algorithm, TOTP};
use zeroize::Zeroizing;

use crate::error::{Error, Result};

const STEP_SECS: u64 = 30;
const DIGITS: usize = 6;

/// A fresh 160-bit TOTP secret from the OS CSPRNG.
///
/// # Errors
/// [`Error::Internal`] if the random source fails.
pub fn new_totp_secret() -> Result<Zeroizing<Vec<u8>>> {
    let mut secret = Zeroizing::new(vec![0u8; 20]);
    crate::crypto::fill_random(&mut secret)?;
    Ok(secret)
}

/// A user's TOTP generator.
pub struct Totp(TOTP);

impl std::fmt::Debug for Totp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Totp([REDACTED])")
    }
}

impl Totp {
    /// A generator for `secret`, labelled `account` at `issuer` in authenticator apps.
    ///
    /// # Errors
    /// [`Error::Internal`] for a secret shorter than 128 bits.
    pub fn new(secret: &[u8], issuer: &str, account: &str) -> Result<Self> {
        TOTP::new(
            Algorithm::SHA1,
            DIGITS,
            1,
            STEP_SECS,
            secret.to_vec(),
            Some(issuer.to_string()),
            account.to_string(),
        )
        .map(Totp)
        .map_err(|_| Error::internal("invalid TOTP secret"))
    }

    /// The `otpauth://` URL for enrolment (shown once; it contains the secret).
    pub fn url(&self) -> Zeroizing<String> {
        Zeroizing::new(self.0.get_url())
    }

    /// The base32 secret for manual entry (shown once).
    pub fn secret_base32(&self) -> Zeroizing<String> {
        Zeroizing::new(self.0.get_secret_base32())
    }

    /// The code for `at` (for tests and enrolment checks).
    pub fn code_at(&self, at: DateTime<Utc>) -> String {
        self.0.generate(u64::try_from(at.timestamp()).unwrap_or(0))
    }

    /// The time step at which `code` is valid, looking one step either side
    /// of `now` for clock drift; `None` when it matches none. Comparison is
    /// constant-time.
    pub fn matching_step(&self, code: &str, now: DateTime<Utc>) -> Option<i64> {
        let code = code.trim();
        if code.len() != DIGITS || !code.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let current = now.timestamp().div_euclid(STEP_SECS as i64);
        let mut found = None;
        for step in [current - 1, current, current + 1] {
            let at = u64::try_from(step).ok()? * STEP_SECS;
            let expected = self.0.generate(at);
            if bool::from(expected.as_bytes().ct_eq(code.as_bytes())) {
                found = Some(step);
            }
        }
        found
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // S-AUTH-5: RFC 6238 appendix B test vector (SHA-1, 8 digits there; 6 here are its last six).
    #[test]
    fn matches_the_rfc_6238_vector() {
        let totp = Totp::new(b"12345678901234567890", "Clarity", "a@example.org").expect("totp");
        let at = DateTime::from_timestamp(59, 0).expect("time");
        assert_eq!(totp.code_at(at), "287082");
        let at = DateTime::from_timestamp(1_111_111_109, 0).expect("time");
        assert_eq!(totp.code_at(at), "081804");
    }

    #[test]
    fn accepts_one_step_of_drift_only() {
        let secret = new_totp_secret().expect("rng");
        let totp = Totp::new(&secret, "Clarity", "a@example.org").expect("totp");
        let now = DateTime::from_timestamp(1_800_000_000, 0).expect("time");
        let code = totp.code_at(now);
        let step = now.timestamp() / 30;
        assert_eq!(totp.matching_step(&code, now), Some(step));
        assert_eq!(
            totp.matching_step(&code, now + chrono::Duration::seconds(30)),
            Some(step)
        );
        assert_eq!(
            totp.matching_step(&code, now + chrono::Duration::seconds(90)),
            None
        );
        assert_eq!(totp.matching_step("12345", now), None);
        assert_eq!(totp.matching_step("abcdef", now), None);
        assert!(totp.url().starts_with("otpauth://totp/"));
    }
}
