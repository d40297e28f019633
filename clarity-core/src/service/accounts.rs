//! Service accounts: accounts for machines (an integration engine, a nightly
//! job). An admin creates one with roles under the same rules as people's
//! (S-AC-8); it has no password, and obtains short-lived access tokens with
//! its client secret through the OAuth 2.0 client-credentials grant
//! (RFC 6749 §4.4). Secrets are 256 bits from the OS CSPRNG, shown once,
//! stored as SHA-256 hashes, compared in constant time, and rotated with an
//! overlap during which the previous one still works (S-ID-2).

use std::net::IpAddr;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::auditing::Ev;
use super::users::{NO_PASSWORD, Profile, USERS, is_service_account, secs};
use super::{Clarity, User};
use crate::access::{Action, Principal};
use crate::audit::{AuditAction, AuditOutcome};
use crate::auth::{hash_secret, new_refresh_token, secrets_equal};
use crate::crypto::{IndexField, SecretString, fill_random};
use crate::error::{Error, Result};
use crate::model::{RequestContext, Role, RoleSet, ServiceSecretRow, SessionRow, UserRow};

/// The domain of service accounts' login names (reserved: RFC 2606).
const NAME_DOMAIN: &str = "service-accounts.invalid";
/// The prefix of client secrets (so a leaked one is recognisable).
const SECRET_PREFIX: &str = "ccs_";
/// The default and the longest overlap of a rotation, in seconds.
const DEFAULT_OVERLAP_SECS: u64 = 24 * 3600;
const MAX_OVERLAP_SECS: u64 = 7 * 24 * 3600;

/// `POST /v1/service-accounts`: a new service account.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewServiceAccount {
    /// Its name: 1-63 of `a-z`, `0-9`, `.`, `_`, `-`, starting with a
    /// letter or digit (unique; also its login name `NAME@service-accounts.invalid`).
    pub name: String,
    /// Its roles (not `patient`; never `admin` with a role that reads PHI).
    pub roles: RoleSet,
    /// A display name for people reading user lists and the audit trail.
    #[serde(default)]
    pub display_name: Option<String>,
}

/// `POST /v1/service-accounts/{id}/secret`: a new client secret.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SecretRotation {
    /// How long the previous secret keeps working, in seconds (default one
    /// day, at most seven; 0 ends it at once).
    #[serde(default)]
    pub overlap_secs: Option<u64>,
}

/// A client secret, shown this once: only its hash is kept.
#[derive(Clone)]
pub struct ClientSecret {
    /// The client id (the service account's user id).
    pub client_id: Uuid,
    /// The client secret.
    pub client_secret: SecretString,
    /// When the previous secret stops working (after a rotation with overlap).
    pub previous_secret_expires_at: Option<DateTime<Utc>>,
    /// The service account.
    pub account: User,
}

impl Serialize for ClientSecret {
    fn serialize<S: serde::Serializer>(
        &self,
        serializer: S,
    ) -> std::result::Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let mut out = serializer.serialize_struct("ClientSecret", 4)?;
        out.serialize_field("client_id", &self.client_id)?;
        out.serialize_field("client_secret", self.client_secret.expose())?;
        out.serialize_field(
            "previous_secret_expires_at",
            &self.previous_secret_expires_at,
        )?;
        out.serialize_field("account", &self.account)?;
        out.end()
    }
}

impl std::fmt::Debug for ClientSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientSecret")
            .field("client_id", &self.client_id)
            .finish_non_exhaustive()
    }
}

/// What the client-credentials grant returns (RFC 6749 §5.1): an access
/// token and no refresh token.
#[derive(Debug, Clone)]
pub struct AccessToken {
    /// PASETO v4 access token, used as `Authorization: Bearer`.
    pub access_token: SecretString,
    /// Seconds until it expires.
    pub expires_in: i64,
}

impl Serialize for AccessToken {
    fn serialize<S: serde::Serializer>(
        &self,
        serializer: S,
    ) -> std::result::Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let mut out = serializer.serialize_struct("AccessToken", 3)?;
        out.serialize_field("access_token", self.access_token.expose())?;
        out.serialize_field("token_type", "Bearer")?;
        out.serialize_field("expires_in", &self.expires_in)?;
        out.end()
    }
}

/// A new client secret (256 bits) and its hash.
fn new_secret() -> Result<(SecretString, Vec<u8>)> {
    let mut bytes = zeroize::Zeroizing::new([0u8; 32]);
    fill_random(bytes.as_mut_slice())?;
    let text = format!("{SECRET_PREFIX}{}", hex::encode(bytes.as_slice()));
    let hash = hash_secret(&text).to_vec();
    Ok((SecretString::new(text), hash))
}

fn check_name(name: &str) -> Result<()> {
    let ok = (1..=63).contains(&name.len())
        && name
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '.' | '_' | '-'));
    if ok {
        Ok(())
    } else {
        Err(Error::invalid(
            "name: 1-63 of a-z, 0-9, '.', '_' and '-', starting with a letter or digit",
        ))
    }
}

impl Clarity {
    /// Creates a service account (admins): returns its client id and secret,
    /// shown this once.
    ///
    /// # Errors
    /// [`Error::PermissionDenied`]; [`Error::InvalidInput`] for a bad name
    /// or roles (none, `patient`, or admin with a PHI role);
    /// [`Error::AlreadyExists`] for a taken name.
    pub async fn create_service_account(
        &self,
        principal: &Principal,
        account: NewServiceAccount,
    ) -> Result<ClientSecret> {
        let result = async {
            let reason = self
                .authorize(principal, &Action::ManageUsers, None)
                .await?;
            Ok((self.insert_service_account(account).await?, reason))
        }
        .await;
        let mut ev = Ev::of("admin", "service_account.create", AuditAction::Create);
        ev.entity = result.as_ref().ok().map(|(s, _)| s.client_id);
        self.audited(principal, ev, result).await
    }

    async fn insert_service_account(&self, account: NewServiceAccount) -> Result<ClientSecret> {
        check_name(&account.name)?;
        super::users::check_display_name(&account.display_name)?;
        account.roles.check_assignable()?;
        if account.roles.contains(Role::Patient) {
            return Err(Error::invalid(
                "roles: a service account cannot hold the patient role",
            ));
        }
        // A client secret is no second factor: where admins must use one,
        // no machine is an admin.
        if account.roles.contains(Role::Admin) && self.config.auth.require_mfa_for_admin {
            return Err(Error::invalid(
                "roles: a service account cannot be an admin while auth.require_mfa_for_admin is on",
            ));
        }
        let id = Uuid::now_v7();
        let now = self.clock.now();
        let profile = Profile {
            email: format!("{}@{NAME_DOMAIN}", account.name),
            display_name: account.display_name,
        };
        let row = UserRow {
            id,
            email_index: self
                .phi
                .indexer()
                .index(IndexField::UserEmail, &profile.email),
            profile: self.directory.seal(USERS, id, 1, &profile)?,
            password_hash: NO_PASSWORD.into(),
            roles: account.roles,
            disabled: false,
            patient_id: None,
            mfa_secret: None,
            mfa_enabled: false,
            version: 1,
            created_at: now,
            updated_at: now,
        };
        let (client_secret, secret_hash) = new_secret()?;
        let secret = ServiceSecretRow {
            user_id: id,
            secret_hash,
            previous_hash: None,
            previous_until: None,
            rotated_at: now,
        };
        self.identity.insert_service_account(&row, &secret).await?;
        Ok(ClientSecret {
            client_id: id,
            client_secret,
            previous_secret_expires_at: None,
            account: self.user_view(&row)?,
        })
    }

    /// Gives a service account a new client secret (admins); the previous
    /// one keeps working for the overlap asked for (default one day).
    ///
    /// # Errors
    /// [`Error::PermissionDenied`]; [`Error::NotFound`] for anything but a
    /// live service account; [`Error::InvalidInput`] for an overlap over
    /// seven days; [`Error::Conflict`] when another rotation came first.
    pub async fn rotate_service_secret(
        &self,
        principal: &Principal,
        id: Uuid,
        rotation: SecretRotation,
    ) -> Result<ClientSecret> {
        let result = async {
            let reason = self
                .authorize(principal, &Action::ManageUsers, None)
                .await?;
            Ok((self.replace_secret(id, rotation).await?, reason))
        }
        .await;
        let ev = Ev::of("admin", "service_account.rotate", AuditAction::Update).entity(id);
        self.audited(principal, ev, result).await
    }

    async fn replace_secret(&self, id: Uuid, rotation: SecretRotation) -> Result<ClientSecret> {
        let overlap = rotation.overlap_secs.unwrap_or(DEFAULT_OVERLAP_SECS);
        if overlap > MAX_OVERLAP_SECS {
            return Err(Error::invalid("overlap_secs: at most 604800 (seven days)"));
        }
        let row = self.user_row(id).await?;
        let old = match self.identity.service_secret(id).await? {
            Some(old) if is_service_account(&row) => old,
            _ => {
                return Err(Error::NotFound {
                    what: "service account",
                });
            }
        };
        let now = self.clock.now();
        // A new version even within the stored one's microsecond.
        let rotated_at = now.max(old.rotated_at + chrono::Duration::microseconds(1));
        let (client_secret, secret_hash) = new_secret()?;
        let previous_until = (overlap > 0).then(|| now + chrono::Duration::seconds(secs(overlap)));
        let secret = ServiceSecretRow {
            user_id: id,
            secret_hash,
            previous_hash: previous_until.map(|_| old.secret_hash.clone()),
            previous_until,
            rotated_at,
        };
        self.identity
            .replace_service_secret(&secret, old.rotated_at)
            .await?;
        Ok(ClientSecret {
            client_id: id,
            client_secret,
            previous_secret_expires_at: previous_until,
            account: self.user_view(&row)?,
        })
    }

    /// Deletes a service account (admins): its secrets are destroyed, its
    /// sessions end at once, and it stays as a disabled account so the
    /// audit trail keeps naming it (ids are never reused).
    ///
    /// # Errors
    /// [`Error::PermissionDenied`]; [`Error::NotFound`] for anything but a
    /// service account.
    pub async fn delete_service_account(&self, principal: &Principal, id: Uuid) -> Result<()> {
        let result = async {
            let reason = self
                .authorize(principal, &Action::ManageUsers, None)
                .await?;
            let mut row = self.user_row(id).await?;
            if !is_service_account(&row) {
                return Err(Error::NotFound {
                    what: "service account",
                });
            }
            let now = self.clock.now();
            // Disabled first, so that a grant in flight cannot leave a live
            // session behind; then the secrets go and the sessions end.
            if !row.disabled {
                let expected = row.version;
                row.disabled = true;
                row.version = expected + 1;
                row.updated_at = now;
                let profile: Profile =
                    self.directory
                        .open_sealed(USERS, id, expected, &row.profile)?;
                row.profile = self.directory.seal(USERS, id, row.version, &profile)?;
                self.identity.update_user(&row, expected).await?;
            }
            self.identity.delete_service_secret(id).await?;
            self.identity.revoke_user_sessions(id, now).await?;
            Ok(((), reason))
        }
        .await;
        let ev = Ev::of("admin", "service_account.delete", AuditAction::Delete).entity(id);
        self.audited(principal, ev, result).await
    }

    /// The client-credentials grant (RFC 6749 §4.4): a service account's
    /// client id and secret for a short-lived access token, whose session
    /// ends with it. Failures are throttled per client address, alike for
    /// every client id; every attempt is audited as `auth.client_credentials`.
    ///
    /// # Errors
    /// [`Error::Unauthenticated`] for an unknown client, a wrong or retired
    /// secret, or a disabled or deleted account (alike);
    /// [`Error::RateLimited`] while throttled.
    pub async fn client_credentials(
        &self,
        client_id: &str,
        client_secret: &SecretString,
        client: Option<IpAddr>,
    ) -> Result<AccessToken> {
        let id = Uuid::try_parse(client_id).ok();
        let result = self.grant(id, client_secret, client).await;
        let context = RequestContext {
            client_address: client,
            ..RequestContext::default()
        };
        let mut ev = Ev::of("login", "auth.client_credentials", AuditAction::Execute);
        ev.entity = id;
        let (outcome, reason) = match &result {
            Ok(_) => (AuditOutcome::Success, "client_secret".to_string()),
            Err(e) => (AuditOutcome::MinorFailure, e.kind().as_str().to_string()),
        };
        let actor = if result.is_ok() { id } else { None };
        self.record_with_context(None, actor, ev, outcome, Some(reason), context)
            .await?;
        result
    }

    async fn grant(
        &self,
        id: Option<Uuid>,
        presented: &SecretString,
        client: Option<IpAddr>,
    ) -> Result<AccessToken> {
        // Throttled per client address only, one attempt at a time per
        // address, and alike for every client id, known or not: a 256-bit
        // secret cannot be guessed, and a per-account limit would let anyone
        // who knows a client id (ids are not secret) lock the account out,
        // or tell which ids exist.
        let _address = match client {
            Some(addr) => Some(self.address_locks.lock(addr).await),
            None => None,
        };
        let now = self.clock.now();
        if let Some(wait) = client.and_then(|addr| self.addresses.wait(addr, now)) {
            return Err(Error::RateLimited {
                retry_after_secs: wait.as_secs().max(1),
            });
        }
        let row = match id {
            Some(id) => self.identity.get_user(id).await?.filter(is_service_account),
            None => None,
        };
        let secret = match &row {
            Some(row) => self.identity.service_secret(row.id).await?,
            None => None,
        };
        let hash = hash_secret(presented.expose());
        let matches = secret.as_ref().is_some_and(|s| {
            let current = secrets_equal(&hash, &s.secret_hash);
            let previous = s.previous_hash.as_deref().is_some_and(|p| {
                s.previous_until.is_some_and(|until| until > now) && secrets_equal(&hash, p)
            });
            current | previous
        });
        let row = match row {
            Some(row) if matches && !row.disabled => row,
            _ => {
                if let Some(addr) = client {
                    self.addresses.failed(addr, now);
                }
                return Err(Error::Unauthenticated);
            }
        };
        // The session lives as long as the access token: a new grant, not a
        // refresh, gives the next one. The refresh token the session table
        // needs is made and never handed out.
        let lifetime = chrono::Duration::seconds(secs(self.config.auth.access_token_secs));
        let session = SessionRow {
            id: Uuid::now_v7(),
            user_id: row.id,
            created_at: now,
            last_seen_at: now,
            expires_at: now + lifetime,
            revoked_at: None,
            mfa: false,
        };
        let unused = new_refresh_token()?;
        let refresh = crate::model::RefreshRow {
            hash: hash_secret(unused.expose()),
            session_id: session.id,
            created_at: now,
            used_at: Some(now),
        };
        self.identity.insert_session(&session, &refresh).await?;
        tracing::info!(user_id = %row.id, session_id = %session.id, "client credentials grant");
        let tokens = self.tokens_for(&row, session.id, unused)?;
        Ok(AccessToken {
            access_token: tokens.access_token,
            expires_in: tokens.expires_in,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_plain_identifiers() {
        for good in ["nightly-export", "hl7.engine_2", "a", "9lives"] {
            assert!(check_name(good).is_ok(), "{good}");
        }
        for bad in ["", "-x", "Upper", "spa ce", "a@b", &"x".repeat(64)] {
            assert!(check_name(bad).is_err(), "{bad}");
        }
    }

    // S-ID-2: 256 bits from the CSPRNG, stored only as a hash.
    #[test]
    fn secrets_are_256_bits_and_stored_hashed() {
        let (a, hash_a) = new_secret().expect("secret");
        let (b, _) = new_secret().expect("secret");
        assert_ne!(a.expose(), b.expose());
        let hex_part = a.expose().strip_prefix(SECRET_PREFIX).expect("prefix");
        assert_eq!(hex::decode(hex_part).expect("hex").len(), 32);
        assert_eq!(hash_a, hash_secret(a.expose()).to_vec());
        assert!(
            !hash_a
                .windows(8)
                .any(|w| a.expose().as_bytes().windows(8).any(|v| v == w))
        );
    }
}
