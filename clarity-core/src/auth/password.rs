//! Passwords: the NIST SP 800-63B policy and argon2id hashing on the
//! blocking pool behind a concurrency limit (S-AUTH-1).

use std::sync::Arc;

use argon2::password_hash::{PasswordHash, PasswordHasher as _, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use tokio::sync::Semaphore;
use zeroize::Zeroizing;

use super::AuthConfig;
use crate::error::{Error, Result};

/// Shortest accepted password, in characters.
pub const MIN_CHARS: usize = 12;
/// Longest accepted password, in characters; longer ones are refused, never truncated.
pub const MAX_CHARS: usize = 128;
/// Lowest acceptable zxcvbn score (0–4): 3 is "safely unguessable".
const MIN_SCORE: zxcvbn::Score = zxcvbn::Score::Three;

/// Checks a new password against the policy: 12–128 characters, no
/// composition rules, and not common, breached-list or guessable from the
/// user's own details (`context`, e.g. the email address).
///
/// # Errors
/// [`Error::InvalidInput`] saying what is wrong, never echoing the password.
pub fn check_password_policy(password: &str, context: &[&str]) -> Result<()> {
    let chars = password.chars().count();
    if chars < MIN_CHARS {
        return Err(Error::invalid(format!(
            "password must be at least {MIN_CHARS} characters"
        )));
    }
    if chars > MAX_CHARS {
        return Err(Error::invalid(format!(
            "password must be at most {MAX_CHARS} characters"
        )));
    }
    let letters = |t: &str| -> String {
        t.chars()
            .filter(|c| c.is_alphanumeric())
            .flat_map(char::to_lowercase)
            .collect()
    };
    let bare = Zeroizing::new(letters(password));
    for detail in context {
        let name = letters(detail.split('@').next().unwrap_or(detail));
        if name.chars().count() >= 4 && bare.contains(&name) {
            return Err(Error::invalid(
                "password must not contain your email address or name",
            ));
        }
    }
    // The user's details count whole and in parts: "jane.doe@example.org"
    // makes "jane", "doe" and "example" guessable too.
    let mut words: Vec<&str> = context.to_vec();
    words.extend(
        context
            .iter()
            .flat_map(|c| c.split(|ch: char| !ch.is_alphanumeric()))
            .filter(|w| w.len() >= 3),
    );
    if zxcvbn::zxcvbn(password, &words).score() < MIN_SCORE {
        return Err(Error::invalid(
            "password is too common or too easy to guess; a few unrelated words make a strong one",
        ));
    }
    Ok(())
}

/// Hashes and verifies passwords with argon2id on the blocking pool, at most
/// `hash_concurrency` at a time, so logins never stall the async runtime.
#[derive(Clone)]
pub struct PasswordHasher {
    params: Params,
    permits: Arc<Semaphore>,
    /// A hash of a random password: verified against when the account does
    /// not exist, so that a miss costs the same time as a hit (S-AUTH-2).
    decoy: Arc<String>,
    verifications: Arc<std::sync::atomic::AtomicU64>,
}

impl std::fmt::Debug for PasswordHasher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PasswordHasher")
            .field("params", &self.params)
            .finish_non_exhaustive()
    }
}

impl PasswordHasher {
    /// A hasher with the configured argon2id parameters.
    ///
    /// # Errors
    /// [`Error::Config`] for parameters argon2 refuses.
    pub fn new(config: &AuthConfig) -> Result<Self> {
        let params = Params::new(
            config.argon2_memory_kib,
            config.argon2_iterations,
            config.argon2_parallelism,
            None,
        )
        .map_err(|_| Error::config("auth.argon2_memory_kib", "argon2 refuses these parameters"))?;
        let mut random = Zeroizing::new([0u8; 32]);
        crate::crypto::fill_random(random.as_mut_slice())?;
        let decoy = hash_with(&params, &hex::encode(random.as_slice()))?;
        Ok(PasswordHasher {
            params,
            permits: Arc::new(Semaphore::new(config.hash_concurrency.max(1))),
            decoy: Arc::new(decoy),
            verifications: Arc::default(),
        })
    }

    /// The PHC string of `password` (argon2id, random salt).
    ///
    /// # Errors
    /// [`Error::Internal`] if hashing fails.
    pub async fn hash(&self, password: &str) -> Result<String> {
        let password = Zeroizing::new(password.to_string());
        let params = self.params.clone();
        self.blocking(move || hash_with(&params, &password)).await
    }

    /// Whether `password` matches `phc`. With `phc = None` (no such account)
    /// the decoy hash is checked, so the answer takes as long and is `false`.
    ///
    /// # Errors
    /// [`Error::Internal`] if the blocking pool fails.
    pub async fn verify(&self, password: &str, phc: Option<&str>) -> Result<bool> {
        let password = Zeroizing::new(password.to_string());
        let known = phc.is_some();
        let phc = phc.map_or_else(|| self.decoy.as_str().to_string(), str::to_string);
        self.verifications
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let matched = self
            .blocking(move || {
                let parsed = PasswordHash::new(&phc).map_err(|_| Error::Integrity)?;
                Ok(Argon2::default()
                    .verify_password(password.as_bytes(), &parsed)
                    .is_ok())
            })
            .await?;
        Ok(known && matched)
    }

    /// Password verifications run so far (a metric; also lets tests check
    /// that a login for an unknown account does the same work as any other).
    pub fn verifications(&self) -> u64 {
        self.verifications
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    async fn blocking<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let _permit = self
            .permits
            .acquire()
            .await
            .map_err(|_| Error::internal("password hasher closed"))?;
        tokio::task::spawn_blocking(work)
            .await
            .map_err(|_| Error::internal("password hashing task failed"))?
    }
}

fn hash_with(params: &Params, password: &str) -> Result<String> {
    let mut salt = [0u8; 16];
    crate::crypto::fill_random(&mut salt)?;
    let salt = SaltString::encode_b64(&salt).map_err(|_| Error::internal("salt encoding"))?;
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params.clone())
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|_| Error::internal("password hashing failed"))
}

#[cfg(test)]
mod tests {
    use super::*;

    // S-AUTH-1
    #[test]
    fn policy_follows_sp_800_63b() {
        assert!(check_password_policy("short", &[]).is_err());
        assert!(
            check_password_policy("password1234", &[]).is_err(),
            "common"
        );
        assert!(
            check_password_policy("aaaaaaaaaaaaaaaa", &[]).is_err(),
            "repetitive"
        );
        assert!(
            check_password_policy("jane.doe.example", &["jane.doe@example.org"]).is_err(),
            "built from the user's own details"
        );
        // No composition rules: lower-case words alone are fine when unguessable.
        check_password_policy("correct horse battery staple", &[]).expect("passphrase");
        let long = "a fine long passphrase ".repeat(6);
        check_password_policy(&long[..MAX_CHARS], &[]).expect("128 characters");
        let too_long = format!("{long}{long}");
        let err = check_password_policy(&too_long, &[])
            .unwrap_err()
            .to_string();
        assert!(err.contains("at most 128"), "{err}");
        assert!(!err.contains("passphrase"), "never echoes the password");
    }

    // S-AUTH-1
    #[tokio::test]
    async fn hashes_are_argon2id_with_the_configured_cost() {
        let hasher = PasswordHasher::new(&AuthConfig::default()).expect("hasher");
        let phc = hasher
            .hash("correct horse battery staple")
            .await
            .expect("hash");
        assert!(phc.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{phc}");
        assert!(
            hasher
                .verify("correct horse battery staple", Some(&phc))
                .await
                .expect("verify")
        );
        assert!(
            !hasher
                .verify("correct horse battery stapl", Some(&phc))
                .await
                .expect("verify")
        );
        // A password longer than any truncation limit still counts to the last character.
        let long = "x".repeat(100) + "correct horse";
        let phc = hasher.hash(&long).await.expect("hash");
        assert!(
            !hasher
                .verify(&("x".repeat(100) + "correct horsf"), Some(&phc))
                .await
                .expect("verify")
        );
        assert!(
            !hasher.verify("anything", None).await.expect("decoy"),
            "no account, no match"
        );
    }
}
