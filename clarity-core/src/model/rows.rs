//! Rows as the backends store them: sealed envelopes, blind indexes and
//! wrapped keys, never plaintext PHI. Shared by the store, the cache and the
//! audit writer (which applies [`super::Change`]s in its batches).

use std::fmt;

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::RoleSet;
use crate::crypto::BlindIndex;

/// A patient row as stored: the profile is a sealed envelope.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PatientRow {
    /// Patient id (UUIDv7).
    pub id: Uuid,
    /// The sealed profile document.
    #[serde(with = "serde_bytes")]
    pub profile: Vec<u8>,
    /// Blind index of the MRN (unique).
    pub mrn_index: BlindIndex,
    /// Blind index of the email, when there is one.
    pub email_index: Option<BlindIndex>,
    /// Blind index of family name + birth date.
    pub name_dob_index: BlindIndex,
    /// Version for optimistic concurrency; starts at 1.
    pub version: i64,
    /// Creation time.
    pub created_at: DateTime<Utc>,
    /// Time of the last update.
    pub updated_at: DateTime<Utc>,
}

/// A clinical record row as stored: the body is a sealed envelope.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct RecordRow {
    /// Record id (UUIDv7, so ids sort by creation time).
    pub id: Uuid,
    /// The patient the record belongs to.
    pub patient_id: Uuid,
    /// The record's kind (a category, not PHI), e.g. `observation`.
    pub kind: String,
    /// The sealed JSON body.
    #[serde(with = "serde_bytes")]
    pub body: Vec<u8>,
    /// Version for optimistic concurrency; starts at 1.
    pub version: i64,
    /// The user who created it.
    pub created_by: Uuid,
    /// Creation time.
    pub created_at: DateTime<Utc>,
    /// Time of the last update.
    pub updated_at: DateTime<Utc>,
}

/// A patient's data key, wrapped by a KEK.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct DataKeyRow {
    /// The patient the key belongs to.
    pub patient_id: Uuid,
    /// The DEK's own version (named in every envelope's associated data).
    pub dek_version: i32,
    /// The KEK version that wrapped it.
    pub kek_version: i32,
    /// The wrapped key.
    #[serde(with = "serde_bytes")]
    pub wrapped: Vec<u8>,
}

/// A user row. `profile` is the sealed `{email, display_name}` document.
#[derive(Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct UserRow {
    /// User id (UUIDv7), never reused.
    pub id: Uuid,
    /// Blind index of the login email (unique).
    pub email_index: BlindIndex,
    /// Sealed profile.
    #[serde(with = "serde_bytes")]
    pub profile: Vec<u8>,
    /// argon2id PHC string.
    pub password_hash: String,
    /// Roles.
    pub roles: RoleSet,
    /// A disabled user cannot log in and has no sessions.
    pub disabled: bool,
    /// For a `patient` user: the patient record that is theirs.
    pub patient_id: Option<Uuid>,
    /// Sealed TOTP secret, once enrolment started.
    #[serde(with = "serde_bytes")]
    pub mfa_secret: Option<Vec<u8>>,
    /// Whether TOTP is confirmed and required at login.
    pub mfa_enabled: bool,
    /// Version for optimistic concurrency.
    pub version: i64,
    /// Creation time.
    pub created_at: DateTime<Utc>,
    /// Last change.
    pub updated_at: DateTime<Utc>,
}

/// A login session. Access tokens name it; it decides whether they still count.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SessionRow {
    /// Session id.
    pub id: Uuid,
    /// Its user.
    pub user_id: Uuid,
    /// Login time.
    pub created_at: DateTime<Utc>,
    /// Last use (idle timeout counts from here).
    pub last_seen_at: DateTime<Utc>,
    /// Absolute end.
    pub expires_at: DateTime<Utc>,
    /// When it was ended (logout, revocation, refresh reuse).
    pub revoked_at: Option<DateTime<Utc>>,
    /// Whether a second factor was presented at login.
    pub mfa: bool,
}

/// A refresh token, stored as its SHA-256. All of a session's refresh tokens
/// form one family: reuse of a used one ends the session.
#[derive(Clone, PartialEq, Eq)]
pub struct RefreshRow {
    /// SHA-256 of the token.
    pub hash: [u8; 32],
    /// The session (family) it belongs to.
    pub session_id: Uuid,
    /// Issue time.
    pub created_at: DateTime<Utc>,
    /// When it was exchanged; a used token presented again is reuse.
    pub used_at: Option<DateTime<Utc>>,
}

impl fmt::Debug for RefreshRow {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RefreshRow")
            .field("session_id", &self.session_id)
            .field("used_at", &self.used_at)
            .finish_non_exhaustive()
    }
}

/// A care-team assignment.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct CareTeamRow {
    /// The patient.
    pub patient_id: Uuid,
    /// The team member.
    pub user_id: Uuid,
    /// e.g. `attending`, `primary-nurse`.
    pub relationship: String,
    /// When the assignment ends by itself.
    pub expires_at: Option<DateTime<Utc>>,
    /// When it was made.
    pub created_at: DateTime<Utc>,
}

/// A break-glass grant.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct GrantRow {
    /// Grant id.
    pub id: Uuid,
    /// Who asked.
    pub user_id: Uuid,
    /// For which patient.
    pub patient_id: Uuid,
    /// The sealed reason.
    #[serde(with = "serde_bytes")]
    pub reason: Vec<u8>,
    /// When.
    pub created_at: DateTime<Utc>,
    /// When it ends by itself.
    pub expires_at: DateTime<Utc>,
    /// When an admin reviewed it.
    pub reviewed_at: Option<DateTime<Utc>>,
    /// Which admin.
    pub reviewed_by: Option<Uuid>,
}

/// A disclosure to an outside recipient, as stored: what was disclosed, to
/// whom and why is a sealed envelope under the patient's data key.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct DisclosureRow {
    /// Disclosure id (UUIDv7).
    pub id: Uuid,
    /// The patient whose information was disclosed.
    pub patient_id: Uuid,
    /// When the information was disclosed (may be before it was recorded).
    pub disclosed_at: DateTime<Utc>,
    /// The sealed details (recipient, purpose, description, legal basis).
    #[serde(with = "serde_bytes")]
    pub details: Vec<u8>,
    /// The user who recorded it.
    pub recorded_by: Uuid,
    /// When it was recorded.
    pub recorded_at: DateTime<Utc>,
}

/// Failed logins of an account in the current window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LoginFailures {
    /// Failures since `window_start`.
    pub count: u32,
    /// Start of the counting window.
    pub window_start: DateTime<Utc>,
    /// The last failure.
    pub last_at: DateTime<Utc>,
}

impl std::fmt::Debug for UserRow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Personal data and secrets stay out of Debug output.
        f.debug_struct("UserRow")
            .field("id", &self.id)
            .field("roles", &self.roles)
            .field("disabled", &self.disabled)
            .field("patient_id", &self.patient_id)
            .field("mfa_enabled", &self.mfa_enabled)
            .field("version", &self.version)
            .finish_non_exhaustive()
    }
}

/// A service account's client secrets, as SHA-256 hashes: the current one
/// and, while a rotation's overlap lasts (until `previous_until`), the one
/// before it.
#[derive(Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ServiceSecretRow {
    /// The service account (a user row).
    pub user_id: Uuid,
    /// SHA-256 of the current secret.
    #[serde(with = "serde_bytes")]
    pub secret_hash: Vec<u8>,
    /// SHA-256 of the previous secret, during an overlap.
    #[serde(with = "serde_bytes")]
    pub previous_hash: Option<Vec<u8>>,
    /// When the previous secret stops working.
    pub previous_until: Option<DateTime<Utc>>,
    /// When the current secret was made (the version a rotation names).
    pub rotated_at: DateTime<Utc>,
}

impl fmt::Debug for ServiceSecretRow {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Hashes of secrets stay out of Debug output.
        f.debug_struct("ServiceSecretRow")
            .field("user_id", &self.user_id)
            .field("previous_until", &self.previous_until)
            .field("rotated_at", &self.rotated_at)
            .finish_non_exhaustive()
    }
}

/// A subject at an OpenID Connect provider, linked to a Clarity user (by an
/// admin, or on first use where the provider provisions users).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ExternalIdentityRow {
    /// Derived from issuer and subject ([`ExternalIdentityRow::id_for`]).
    pub id: Uuid,
    /// The provider's issuer.
    pub issuer: String,
    /// The subject at that provider.
    pub subject: String,
    /// The Clarity user.
    pub user_id: Uuid,
    /// When it was linked.
    pub created_at: DateTime<Utc>,
    /// Tokens issued at or before this time no longer count (a
    /// back-channel logout naming the subject, or the user's own logout).
    pub logged_out_at: Option<DateTime<Utc>>,
}

impl ExternalIdentityRow {
    /// The id of the link of `subject` at `issuer`: a name-based UUID (v8,
    /// SHA-256), so it is found without a second index.
    pub fn id_for(issuer: &str, subject: &str) -> Uuid {
        name_uuid(b"clarity/v1 external identity", issuer, subject)
    }

    /// The id under which the end of provider session `sid` at `issuer` is kept.
    pub fn session_id_for(issuer: &str, sid: &str) -> Uuid {
        name_uuid(b"clarity/v1 external session", issuer, sid)
    }
}

fn name_uuid(domain: &[u8], issuer: &str, name: &str) -> Uuid {
    use sha2::Digest;
    let mut hash = sha2::Sha256::new();
    hash.update(domain);
    for part in [issuer, name] {
        hash.update((part.len() as u64).to_be_bytes());
        hash.update(part.as_bytes());
    }
    let digest = hash.finalize();
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&digest[..16]);
    uuid::Builder::from_custom_bytes(bytes).into_uuid()
}
