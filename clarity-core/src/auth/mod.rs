//! Authentication: password hashing and policy, PASETO access tokens,
//! tokens of OpenID Connect providers ([`oidc`]),
//! refresh and setup secrets, TOTP, and login throttling.
//!
//! The flows that use these (login, refresh, logout, authenticate) live in
//! the service (`Clarity`), where sessions are stored and checked.

pub mod oidc;
mod password;
mod secrets;
mod settings;
mod throttle;
mod token;
mod totp;

pub use password::{MAX_CHARS, MIN_CHARS, PasswordHasher, check_password_policy};
pub use secrets::{REFRESH_PREFIX, hash_secret, new_refresh_token, new_setup_code, secrets_equal};
pub use settings::{AuthConfig, TokenPurpose};
pub use throttle::{KeyedGuard, KeyedLocks, Throttle, backoff_delay};
pub use token::{AccessClaims, TokenKeys};
pub use totp::{Totp, new_totp_secret};
