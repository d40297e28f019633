//! The `[auth]` settings: tokens, sessions, password hashing and lockout.

use serde::Deserialize;

use super::oidc::{OidcProviderConfig, validate_all};
use crate::error::{Error, Result};

/// Which PASETO v4 purpose access tokens use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum TokenPurpose {
    /// `v4.local`: encrypted and authenticated with a symmetric key (default).
    #[default]
    Local,
    /// `v4.public`: signed with Ed25519, so other services can verify tokens.
    Public,
}

/// Authentication settings (`[auth]`).
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct AuthConfig {
    /// Token issuer (`iss`), default `clarity`.
    pub issuer: String,
    /// Token audience (`aud`), default `clarity`.
    pub audience: String,
    /// `local` (default) or `public`.
    pub token_purpose: TokenPurpose,
    /// Access-token lifetime in seconds (default 900).
    pub access_token_secs: u64,
    /// A session ends after this many seconds without use (default 900).
    pub session_idle_secs: u64,
    /// A session ends this many seconds after login, used or not (default 43200).
    pub session_absolute_secs: u64,
    /// argon2id memory in KiB (default 19456, the minimum).
    pub argon2_memory_kib: u32,
    /// argon2id iterations (default 2, the minimum).
    pub argon2_iterations: u32,
    /// argon2id lanes (default 1).
    pub argon2_parallelism: u32,
    /// Password hashes computed at once (default 2); more callers wait.
    pub hash_concurrency: usize,
    /// Failed logins allowed per account per hour before it locks (default and maximum 100).
    pub max_failed_logins_per_hour: u32,
    /// Failed logins after which each further attempt must wait exponentially longer (default 5).
    pub backoff_after_failures: u32,
    /// Require TOTP at login for users with the admin role (default false).
    pub require_mfa_for_admin: bool,
    /// Lifetime of the one-time setup code in seconds (default 3600).
    pub setup_code_secs: u64,
    /// OpenID Connect providers whose access tokens are accepted
    /// (`[[auth.oidc]]`, docs/authentication.md); none by default.
    pub oidc: Vec<OidcProviderConfig>,
}

impl Default for AuthConfig {
    fn default() -> Self {
        AuthConfig {
            issuer: "clarity".into(),
            audience: "clarity".into(),
            token_purpose: TokenPurpose::Local,
            access_token_secs: 900,
            session_idle_secs: 900,
            session_absolute_secs: 12 * 3600,
            argon2_memory_kib: 19 * 1024,
            argon2_iterations: 2,
            argon2_parallelism: 1,
            hash_concurrency: 2,
            max_failed_logins_per_hour: 100,
            backoff_after_failures: 5,
            require_mfa_for_admin: false,
            setup_code_secs: 3600,
            oidc: Vec::new(),
        }
    }
}

impl AuthConfig {
    /// Checks the `[auth]` settings; errors name the key.
    ///
    /// # Errors
    /// [`Error::Config`] naming the first offending key.
    pub fn validate(&self) -> Result<()> {
        let positive = [
            ("auth.access_token_secs", self.access_token_secs),
            ("auth.session_idle_secs", self.session_idle_secs),
            ("auth.session_absolute_secs", self.session_absolute_secs),
            ("auth.setup_code_secs", self.setup_code_secs),
        ];
        for (key, value) in positive {
            if !(1..=365 * 24 * 3600).contains(&value) {
                return Err(Error::config(key, "must be between 1 second and one year"));
            }
        }
        if self.issuer.trim().is_empty() {
            return Err(Error::config("auth.issuer", "must not be empty"));
        }
        if self.audience.trim().is_empty() {
            return Err(Error::config("auth.audience", "must not be empty"));
        }
        if self.argon2_memory_kib < 19 * 1024 {
            return Err(Error::config(
                "auth.argon2_memory_kib",
                "must be at least 19456 (19 MiB)",
            ));
        }
        if self.argon2_iterations < 2 {
            return Err(Error::config(
                "auth.argon2_iterations",
                "must be at least 2",
            ));
        }
        if !(1..=16).contains(&self.argon2_parallelism) {
            return Err(Error::config(
                "auth.argon2_parallelism",
                "must be between 1 and 16",
            ));
        }
        if !(1..=64).contains(&self.hash_concurrency) {
            return Err(Error::config(
                "auth.hash_concurrency",
                "must be between 1 and 64",
            ));
        }
        if !(1..=100).contains(&self.max_failed_logins_per_hour) {
            return Err(Error::config(
                "auth.max_failed_logins_per_hour",
                "must be between 1 and 100",
            ));
        }
        if self.backoff_after_failures >= self.max_failed_logins_per_hour {
            return Err(Error::config(
                "auth.backoff_after_failures",
                "must be below auth.max_failed_logins_per_hour",
            ));
        }
        validate_all(&self.oidc)
    }
}
