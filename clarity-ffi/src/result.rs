//! `clarity_result`: the status every fallible function returns, mapped from
//! the core's [`ErrorKind`].
//!
//! The discriminants are part of the ABI: they are explicit and append-only.
//! A new kind in the core that this table does not know yet maps to
//! [`clarity_result::Unknown`], never to a panic.

use std::ffi::CStr;

use clarity_core::ErrorKind;

/// The outcome of a call. `CLARITY_RESULT_OK` is zero; every other value
/// names what went wrong, and an optional `clarity_error` carries a message.
///
/// Values are stable and only ever added: treat a value you do not know as
/// `CLARITY_RESULT_UNKNOWN`.
#[allow(non_camel_case_types)]
#[repr(u32)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum clarity_result {
    /// Success.
    Ok = 0,
    /// Bad input from the caller: malformed JSON, a bad id, a broken rule.
    InvalidInput = 1,
    /// The configuration given to `clarity_client_open` is invalid.
    Config = 2,
    /// No such object, or one the caller may not know exists.
    NotFound = 3,
    /// An object with the same identity exists already.
    AlreadyExists = 4,
    /// An update named a version that is no longer current; nothing was written.
    Conflict = 5,
    /// Stored data failed its integrity check.
    Integrity = 6,
    /// Key material is missing, unreadable or not this store's.
    Key = 7,
    /// The token is missing, invalid or its session has ended.
    Unauthenticated = 8,
    /// The caller may not do this.
    PermissionDenied = 9,
    /// A TOTP code is required.
    MfaRequired = 10,
    /// Too many attempts; retry later.
    RateLimited = 11,
    /// The storage backend failed.
    Backend = 12,
    /// A dependency is unavailable right now; retrying later may succeed.
    Unavailable = 13,
    /// A bug inside Clarity.
    Internal = 14,
    /// A required pointer argument was NULL.
    NullParameter = 100,
    /// A panic was caught at the ABI boundary (a bug); the handle is still usable.
    Panic = 101,
    /// An error this version of the ABI has no code for.
    Unknown = 199,
}

impl From<ErrorKind> for clarity_result {
    fn from(kind: ErrorKind) -> Self {
        match kind {
            ErrorKind::InvalidInput => clarity_result::InvalidInput,
            ErrorKind::Config => clarity_result::Config,
            ErrorKind::NotFound => clarity_result::NotFound,
            ErrorKind::AlreadyExists => clarity_result::AlreadyExists,
            ErrorKind::Conflict => clarity_result::Conflict,
            ErrorKind::Integrity => clarity_result::Integrity,
            ErrorKind::Key => clarity_result::Key,
            ErrorKind::Unauthenticated => clarity_result::Unauthenticated,
            ErrorKind::PermissionDenied => clarity_result::PermissionDenied,
            ErrorKind::MfaRequired => clarity_result::MfaRequired,
            ErrorKind::RateLimited => clarity_result::RateLimited,
            ErrorKind::Backend => clarity_result::Backend,
            ErrorKind::Unavailable => clarity_result::Unavailable,
            ErrorKind::Internal => clarity_result::Internal,
            _ => clarity_result::Unknown,
        }
    }
}

impl clarity_result {
    /// A short, stable, machine-readable name (`"not_found"`), the same as
    /// the HTTP API's error codes.
    pub fn name(self) -> &'static CStr {
        match self {
            clarity_result::Ok => c"ok",
            clarity_result::InvalidInput => c"invalid_input",
            clarity_result::Config => c"config",
            clarity_result::NotFound => c"not_found",
            clarity_result::AlreadyExists => c"already_exists",
            clarity_result::Conflict => c"conflict",
            clarity_result::Integrity => c"integrity",
            clarity_result::Key => c"key",
            clarity_result::Unauthenticated => c"unauthenticated",
            clarity_result::PermissionDenied => c"permission_denied",
            clarity_result::MfaRequired => c"mfa_required",
            clarity_result::RateLimited => c"rate_limited",
            clarity_result::Backend => c"backend",
            clarity_result::Unavailable => c"unavailable",
            clarity_result::Internal => c"internal",
            clarity_result::NullParameter => c"null_parameter",
            clarity_result::Panic => c"panic",
            clarity_result::Unknown => c"unknown",
        }
    }
}

/// The result with discriminant `code`, or `Unknown`.
pub(crate) fn from_code(code: u32) -> clarity_result {
    ALL.iter()
        .copied()
        .find(|r| *r as u32 == code)
        .unwrap_or(clarity_result::Unknown)
}

/// Every result, for lookups and tests.
pub(crate) const ALL: [clarity_result; 18] = [
    clarity_result::Ok,
    clarity_result::InvalidInput,
    clarity_result::Config,
    clarity_result::NotFound,
    clarity_result::AlreadyExists,
    clarity_result::Conflict,
    clarity_result::Integrity,
    clarity_result::Key,
    clarity_result::Unauthenticated,
    clarity_result::PermissionDenied,
    clarity_result::MfaRequired,
    clarity_result::RateLimited,
    clarity_result::Backend,
    clarity_result::Unavailable,
    clarity_result::Internal,
    clarity_result::NullParameter,
    clarity_result::Panic,
    clarity_result::Unknown,
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_keep_their_names_across_the_abi() {
        for kind in [
            ErrorKind::InvalidInput,
            ErrorKind::NotFound,
            ErrorKind::Conflict,
            ErrorKind::Unauthenticated,
            ErrorKind::PermissionDenied,
            ErrorKind::RateLimited,
            ErrorKind::Internal,
        ] {
            let result = clarity_result::from(kind);
            assert_eq!(result.name().to_str().expect("ascii"), kind.as_str());
        }
    }

    #[test]
    fn unknown_codes_map_to_the_catch_all() {
        assert_eq!(from_code(0), clarity_result::Ok);
        assert_eq!(from_code(3), clarity_result::NotFound);
        assert_eq!(from_code(77), clarity_result::Unknown);
        assert_eq!(from_code(u32::MAX), clarity_result::Unknown);
    }
}
