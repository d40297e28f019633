//! The one error type of the crate, and the flat [`ErrorKind`] that the HTTP
//! server and the C ABI map to status codes and result codes.
//!
//! Error text is written for the operator and the caller: it names what was
//! wrong (a configuration key, an id, a version) but never carries plaintext
//! PHI, key material, tokens or SQL.

use std::fmt;

/// A `Result` whose error defaults to [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in `clarity-core`.
///
/// Match on [`Error::kind`] rather than on the variants: new variants may be
/// added, the kinds are stable.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The input was rejected before anything was stored.
    #[error("invalid input: {message}")]
    InvalidInput {
        /// What was wrong, without echoing PHI.
        message: String,
    },

    /// The configuration is invalid; `key` names the offending setting.
    #[error("invalid configuration `{key}`: {message}")]
    Config {
        /// The dotted configuration key, e.g. `store.postgres_url`.
        key: String,
        /// What was wrong with it.
        message: String,
    },

    /// The object does not exist (or the caller may not know that it exists).
    #[error("{what} not found")]
    NotFound {
        /// What was looked for, e.g. `patient`.
        what: &'static str,
    },

    /// An object with the same identity already exists.
    #[error("{what} already exists")]
    AlreadyExists {
        /// What collided, e.g. `patient`.
        what: &'static str,
    },

    /// An update named a version that is no longer current; nothing was written.
    #[error(
        "{what} was modified concurrently: expected version {expected}, current version {current}"
    )]
    Conflict {
        /// What was being updated.
        what: &'static str,
        /// The version the caller based its update on.
        expected: i64,
        /// The version now stored.
        current: i64,
    },

    /// A ciphertext failed to authenticate or decrypt. Deliberately uniform:
    /// a flipped byte, a ciphertext moved to another row and a wrong key all
    /// look the same to the caller.
    #[error("stored data failed its integrity check")]
    Integrity,

    /// Key material is missing, unreadable or does not belong to this store.
    #[error("key error: {message}")]
    Key {
        /// What is wrong with the keys, never the keys themselves.
        message: String,
    },

    /// The caller is not authenticated.
    #[error("authentication required")]
    Unauthenticated,

    /// The caller is authenticated but not allowed to do this.
    #[error("permission denied")]
    PermissionDenied,

    /// An identity provider's token verified, but its subject is not linked
    /// to a Clarity user and the provider does not provision users.
    #[error(
        "authentication required: this identity is not linked to a Clarity user; \
         an administrator can link it (POST /v1/users/{{id}}/identities)"
    )]
    NotLinked,

    /// An identity provider's token verified, but the roles it maps to
    /// cannot be used (none, or admin with a role that reads PHI).
    #[error("permission denied: {message}")]
    IdentityRoles {
        /// Why, in words safe to show.
        message: &'static str,
    },

    /// The password was right but a second factor (TOTP code) is needed.
    #[error("a TOTP code is required")]
    MfaRequired,

    /// Too many attempts; the caller must wait before trying again.
    #[error("too many attempts; retry in {retry_after_secs} seconds")]
    RateLimited {
        /// Seconds to wait.
        retry_after_secs: u64,
    },

    /// A storage backend failed.
    #[error("{backend} backend error: {message}")]
    Backend {
        /// Which backend (`sqlite`, `postgres`, ...).
        backend: &'static str,
        /// A description safe to show: no SQL, no parameters.
        message: String,
        /// The underlying error, for logs kept by the operator.
        #[source]
        source: Option<Box<dyn std::error::Error + Send + Sync + 'static>>,
    },

    /// A service the operation depends on is unavailable right now; retrying later may succeed.
    #[error("service unavailable: {message}")]
    Unavailable {
        /// What is unavailable.
        message: String,
    },

    /// A broken invariant inside Clarity: a bug.
    #[error("internal error: {message}")]
    Internal {
        /// What broke.
        message: String,
    },
}

/// The flat, stable classification of an [`Error`], mapped by the HTTP server
/// to status codes and by the C ABI to result codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// Bad input from the caller (HTTP 400).
    InvalidInput,
    /// Bad configuration (refuses to start).
    Config,
    /// No such object, or not visible to the caller (HTTP 404).
    NotFound,
    /// Duplicate (HTTP 409).
    AlreadyExists,
    /// Stale version on update (HTTP 412).
    Conflict,
    /// Ciphertext failed authentication (HTTP 500, audited as a security event).
    Integrity,
    /// Key material problem (HTTP 503 / refuses to start).
    Key,
    /// Not authenticated (HTTP 401).
    Unauthenticated,
    /// Not allowed (HTTP 403).
    PermissionDenied,
    /// Second factor needed (HTTP 401).
    MfaRequired,
    /// Too many attempts (HTTP 429).
    RateLimited,
    /// Storage failure (HTTP 503).
    Backend,
    /// Dependency unavailable (HTTP 503).
    Unavailable,
    /// A bug (HTTP 500).
    Internal,
}

impl ErrorKind {
    /// A short, stable, machine-readable name, e.g. `not_found`.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::InvalidInput => "invalid_input",
            ErrorKind::Config => "config",
            ErrorKind::NotFound => "not_found",
            ErrorKind::AlreadyExists => "already_exists",
            ErrorKind::Conflict => "conflict",
            ErrorKind::Integrity => "integrity",
            ErrorKind::Key => "key",
            ErrorKind::Unauthenticated => "unauthenticated",
            ErrorKind::PermissionDenied => "permission_denied",
            ErrorKind::MfaRequired => "mfa_required",
            ErrorKind::RateLimited => "rate_limited",
            ErrorKind::Backend => "backend",
            ErrorKind::Unavailable => "unavailable",
            ErrorKind::Internal => "internal",
        }
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `error` and its causes, outermost first, joined by ": ", for logs: a
/// pool's or driver's own message often names only the outer step ("error
/// performing TLS handshake") and leaves the reason to its source.
pub(crate) fn causes(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut next = error.source();
    while let Some(cause) = next {
        let cause_text = cause.to_string();
        // Some errors repeat their source's message in their own.
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        next = cause.source();
    }
    text
}

impl Error {
    /// The flat classification of this error.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::InvalidInput { .. } => ErrorKind::InvalidInput,
            Error::Config { .. } => ErrorKind::Config,
            Error::NotFound { .. } => ErrorKind::NotFound,
            Error::AlreadyExists { .. } => ErrorKind::AlreadyExists,
            Error::Conflict { .. } => ErrorKind::Conflict,
            Error::Integrity => ErrorKind::Integrity,
            Error::Key { .. } => ErrorKind::Key,
            Error::Unauthenticated | Error::NotLinked => ErrorKind::Unauthenticated,
            Error::PermissionDenied | Error::IdentityRoles { .. } => ErrorKind::PermissionDenied,
            Error::MfaRequired => ErrorKind::MfaRequired,
            Error::RateLimited { .. } => ErrorKind::RateLimited,
            Error::Backend { .. } => ErrorKind::Backend,
            Error::Unavailable { .. } => ErrorKind::Unavailable,
            Error::Internal { .. } => ErrorKind::Internal,
        }
    }

    /// Shorthand for [`Error::InvalidInput`].
    pub fn invalid(message: impl Into<String>) -> Self {
        Error::InvalidInput {
            message: message.into(),
        }
    }

    /// Shorthand for [`Error::Config`].
    pub fn config(key: impl Into<String>, message: impl Into<String>) -> Self {
        Error::Config {
            key: key.into(),
            message: message.into(),
        }
    }

    /// Shorthand for [`Error::Key`].
    pub fn key(message: impl Into<String>) -> Self {
        Error::Key {
            message: message.into(),
        }
    }

    /// Shorthand for [`Error::Internal`].
    pub fn internal(message: impl Into<String>) -> Self {
        Error::Internal {
            message: message.into(),
        }
    }

    /// A backend error that keeps its source for the operator's logs.
    pub fn backend(
        backend: &'static str,
        message: impl Into<String>,
        source: impl std::error::Error + Send + Sync + 'static,
    ) -> Self {
        Error::Backend {
            backend,
            message: message.into(),
            source: Some(Box::new(source)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_have_stable_names() {
        let err = Error::Conflict {
            what: "record",
            expected: 1,
            current: 2,
        };
        assert_eq!(err.kind(), ErrorKind::Conflict);
        assert_eq!(err.kind().as_str(), "conflict");
        assert_eq!(
            err.to_string(),
            "record was modified concurrently: expected version 1, current version 2"
        );
        assert_eq!(Error::Integrity.kind().to_string(), "integrity");
    }
}
