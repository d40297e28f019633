//! PASETO v4 access tokens (S-AUTH-3).
//!
//! `v4.local` by default (XChaCha20 + BLAKE2b under a symmetric key), or
//! `v4.public` (Ed25519) so other services can verify tokens with the public
//! key alone. Keys are derived with HKDF from the key provider's root secret.
//! The footer names the key (`{"kid":"k4.lid...."}` / `k4.pid`) and must
//! match exactly. Claims: `iss`, `aud`, `sub`, `sid`, `roles`, `iat`, `exp`,
//! `jti`; unknown claims are refused. Expiry is checked against Clarity's
//! clock, so tests can move time. Every failure is the same `Unauthenticated`.

use chrono::{DateTime, Utc};
use pasetors::keys::{AsymmetricPublicKey, AsymmetricSecretKey, SymmetricKey};
use pasetors::paserk::{FormatAsPaserk, Id};
use pasetors::token::UntrustedToken;
use pasetors::version4::{LocalToken, PublicToken, V4};
use pasetors::{Local, Public};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::{AuthConfig, TokenPurpose};
use crate::crypto::Key;
use crate::crypto::schedule::{self, SubKey};
use crate::error::{Error, Result};
use crate::model::RoleSet;

/// Longest token accepted for parsing.
const MAX_TOKEN_LEN: usize = 4096;
/// Clock skew tolerated on `iat`.
const SKEW_SECS: i64 = 60;

/// The claims of an access token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccessClaims {
    /// Issuer.
    pub iss: String,
    /// Audience.
    pub aud: String,
    /// The user id.
    pub sub: Uuid,
    /// The session id; the session row decides whether the token still counts.
    pub sid: Uuid,
    /// The user's roles when the token was issued.
    pub roles: RoleSet,
    /// Issued at (RFC 3339).
    pub iat: String,
    /// Expires at (RFC 3339).
    pub exp: String,
    /// Unique token id.
    pub jti: String,
}

enum Keys {
    Local(SymmetricKey<V4>),
    Public {
        secret: AsymmetricSecretKey<V4>,
        public: AsymmetricPublicKey<V4>,
    },
}

/// One version of the token key and the footer naming it.
struct KeySet {
    version: u32,
    keys: Keys,
    footer: String,
}

/// The versions in use: the current one issues and verifies; the previous
/// one still verifies until its last tokens have expired (the overlap).
struct Versions {
    current: KeySet,
    previous: Option<(KeySet, DateTime<Utc>)>,
}

/// Issues and verifies access tokens.
///
/// The key is versioned: [`TokenKeys::rotate`] makes a new version current
/// and keeps accepting the previous one for one token lifetime, so live
/// sessions keep working. A token under the version after the current one
/// (another instance rotated) is accepted and that version adopted.
pub struct TokenKeys {
    root: Key,
    purpose: TokenPurpose,
    versions: std::sync::RwLock<std::sync::Arc<Versions>>,
    issuer: String,
    audience: String,
    lifetime: chrono::Duration,
}

impl std::fmt::Debug for TokenKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenKeys")
            .field("version", &self.version())
            .field("issuer", &self.issuer)
            .field("audience", &self.audience)
            .finish_non_exhaustive()
    }
}

fn unauthenticated<E>(_: E) -> Error {
    Error::Unauthenticated
}

fn internal<E>(_: E) -> Error {
    Error::internal("token key derivation or use failed")
}

/// Derives version `version` of the token key from `root`.
fn derive(root: &Key, purpose: TokenPurpose, version: u32) -> Result<KeySet> {
    let (keys, id) = match purpose {
        TokenPurpose::Local => {
            let seed = schedule::derive_bytes(root, SubKey::TokenLocal(version))?;
            let key = SymmetricKey::<V4>::from(seed.as_slice()).map_err(internal)?;
            let id = Id::from(&key);
            (Keys::Local(key), id)
        }
        TokenPurpose::Public => {
            let seed = schedule::derive_bytes(root, SubKey::TokenPublicSeed(version))?;
            let pair = ed25519_compact::KeyPair::from_seed(ed25519_compact::Seed::new(*seed));
            let secret = AsymmetricSecretKey::<V4>::from(pair.sk.as_ref()).map_err(internal)?;
            let public = AsymmetricPublicKey::<V4>::from(pair.pk.as_ref()).map_err(internal)?;
            let id = Id::from(&public);
            (Keys::Public { secret, public }, id)
        }
    };
    let mut kid = String::new();
    id.fmt(&mut kid).map_err(internal)?;
    Ok(KeySet {
        version,
        keys,
        footer: serde_json::json!({ "kid": kid }).to_string(),
    })
}

impl TokenKeys {
    /// Derives the token key (version 1) from `root` and applies the settings.
    ///
    /// # Errors
    /// [`Error::Internal`] if key derivation fails.
    pub fn new(root: &Key, config: &AuthConfig) -> Result<Self> {
        Self::with_version(root, config, 1, None)
    }

    /// Derives version `version` of the token key; with `previous_until`,
    /// version `version - 1` is still accepted until then (after a rotation).
    ///
    /// # Errors
    /// [`Error::Internal`] if key derivation fails.
    pub fn with_version(
        root: &Key,
        config: &AuthConfig,
        version: u32,
        previous_until: Option<DateTime<Utc>>,
    ) -> Result<Self> {
        let purpose = config.token_purpose;
        let version = version.max(1);
        let previous = match previous_until {
            Some(until) if version > 1 => Some((derive(root, purpose, version - 1)?, until)),
            _ => None,
        };
        Ok(TokenKeys {
            root: root.clone(),
            purpose,
            versions: std::sync::RwLock::new(std::sync::Arc::new(Versions {
                current: derive(root, purpose, version)?,
                previous,
            })),
            issuer: config.issuer.clone(),
            audience: config.audience.clone(),
            lifetime: chrono::Duration::seconds(
                i64::try_from(config.access_token_secs).unwrap_or(i64::MAX / 2),
            ),
        })
    }

    fn versions(&self) -> std::sync::Arc<Versions> {
        std::sync::Arc::clone(&self.versions.read().unwrap_or_else(|p| p.into_inner()))
    }

    /// The version new tokens are issued under.
    pub fn version(&self) -> u32 {
        self.versions().current.version
    }

    /// Makes the version after both the current one and `recorded` (the
    /// version the store holds, which another instance may have moved on)
    /// current from `now`; the version before it stays accepted for one
    /// token lifetime. Returns the new version and the end of the overlap.
    ///
    /// # Errors
    /// [`Error::Internal`] if key derivation fails.
    pub fn rotate(&self, recorded: u32, now: DateTime<Utc>) -> Result<(u32, DateTime<Utc>)> {
        let mut guard = self.versions.write().unwrap_or_else(|p| p.into_inner());
        let from = guard.current.version.max(recorded);
        let next = derive(&self.root, self.purpose, from + 1)?;
        let until = now + self.lifetime;
        let version = next.version;
        let old = derive(&self.root, self.purpose, from)?;
        *guard = std::sync::Arc::new(Versions {
            current: next,
            previous: Some((old, until)),
        });
        Ok((version, until))
    }

    /// The public key as PASERK (`k4.public....`), for services that verify
    /// `v4.public` tokens; `None` for `v4.local`.
    pub fn public_key(&self) -> Option<String> {
        match &self.versions().current.keys {
            Keys::Public { public, .. } => {
                let mut out = String::new();
                public.fmt(&mut out).ok()?;
                Some(out)
            }
            Keys::Local(_) => None,
        }
    }

    /// Token lifetime.
    pub fn lifetime(&self) -> chrono::Duration {
        self.lifetime
    }

    /// Issues a token for `user` in `session` with `roles`, valid from `now`.
    ///
    /// # Errors
    /// [`Error::Internal`] if encryption or signing fails.
    pub fn issue(
        &self,
        user: Uuid,
        session: Uuid,
        roles: RoleSet,
        now: DateTime<Utc>,
    ) -> Result<String> {
        let claims = AccessClaims {
            iss: self.issuer.clone(),
            aud: self.audience.clone(),
            sub: user,
            sid: session,
            roles,
            iat: now.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            exp: (now + self.lifetime).to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            jti: Uuid::new_v4().to_string(),
        };
        let payload =
            serde_json::to_vec(&claims).map_err(|_| Error::internal("claims encoding"))?;
        let versions = self.versions();
        let footer = Some(versions.current.footer.as_bytes());
        match &versions.current.keys {
            Keys::Local(key) => LocalToken::encrypt(key, &payload, footer, None).map_err(internal),
            Keys::Public { secret, .. } => {
                PublicToken::sign(secret, &payload, footer, None).map_err(internal)
            }
        }
    }

    /// When a token's claims stop being valid.
    ///
    /// # Errors
    /// [`Error::Unauthenticated`] for a malformed `exp`.
    pub fn expiry(claims: &AccessClaims) -> Result<DateTime<Utc>> {
        DateTime::parse_from_rfc3339(&claims.exp)
            .map(|t| t.with_timezone(&Utc))
            .map_err(unauthenticated)
    }

    /// Verifies `token` at `now`: purpose, version, key id, authenticity,
    /// issuer, audience, expiry.
    ///
    /// # Errors
    /// [`Error::Unauthenticated`] for any failure, whichever it was.
    pub fn verify(&self, token: &str, now: DateTime<Utc>) -> Result<AccessClaims> {
        if token.len() > MAX_TOKEN_LEN {
            return Err(Error::Unauthenticated);
        }
        let versions = self.versions();
        let footer = untrusted_footer(token)?;
        let mut adopt = None;
        let set = if footer == versions.current.footer.as_bytes() {
            &versions.current
        } else if let Some((previous, until)) = &versions.previous
            && footer == previous.footer.as_bytes()
            && now < *until
        {
            previous
        } else {
            // Another instance may have rotated: the next version is ours too.
            let next = derive(&self.root, self.purpose, versions.current.version + 1)?;
            if footer != next.footer.as_bytes() {
                return Err(Error::Unauthenticated);
            }
            adopt.insert(next)
        };
        let footer = Some(set.footer.as_bytes());
        let trusted = match &set.keys {
            Keys::Local(key) => {
                let untrusted =
                    UntrustedToken::<Local, V4>::try_from(token).map_err(unauthenticated)?;
                LocalToken::decrypt(key, &untrusted, footer, None).map_err(unauthenticated)?
            }
            Keys::Public { public, .. } => {
                let untrusted =
                    UntrustedToken::<Public, V4>::try_from(token).map_err(unauthenticated)?;
                PublicToken::verify(public, &untrusted, footer, None).map_err(unauthenticated)?
            }
        };
        if adopt.is_some() {
            // Authentic under the next version: issue under it from now on.
            let mut guard = self.versions.write().unwrap_or_else(|p| p.into_inner());
            if guard.current.version == versions.current.version {
                let until = now + self.lifetime;
                let old = derive(&self.root, self.purpose, versions.current.version)?;
                let next = derive(&self.root, self.purpose, versions.current.version + 1)?;
                *guard = std::sync::Arc::new(Versions {
                    current: next,
                    previous: Some((old, until)),
                });
            }
        }
        let claims: AccessClaims =
            serde_json::from_str(trusted.payload()).map_err(unauthenticated)?;
        let time = |t: &str| {
            DateTime::parse_from_rfc3339(t)
                .map(|t| t.with_timezone(&Utc))
                .map_err(unauthenticated)
        };
        let (iat, exp) = (time(&claims.iat)?, time(&claims.exp)?);
        let fresh = exp > now && iat <= now + chrono::Duration::seconds(SKEW_SECS);
        if claims.iss != self.issuer || claims.aud != self.audience || !fresh {
            return Err(Error::Unauthenticated);
        }
        Ok(claims)
    }
}

/// The footer of a PASETO token of either purpose, not yet authenticated.
fn untrusted_footer(token: &str) -> Result<Vec<u8>> {
    if token.starts_with("v4.local.") {
        let untrusted = UntrustedToken::<Local, V4>::try_from(token).map_err(unauthenticated)?;
        Ok(untrusted.untrusted_footer().to_vec())
    } else {
        let untrusted = UntrustedToken::<Public, V4>::try_from(token).map_err(unauthenticated)?;
        Ok(untrusted.untrusted_footer().to_vec())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Role;
    use base64::Engine;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;

    fn config(purpose: TokenPurpose) -> AuthConfig {
        AuthConfig {
            token_purpose: purpose,
            ..AuthConfig::default()
        }
    }

    fn now() -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000, 0).expect("time")
    }

    fn keys(purpose: TokenPurpose, root: u8) -> TokenKeys {
        TokenKeys::new(
            &Key::from_slice(&[root; 32]).expect("key"),
            &config(purpose),
        )
        .expect("keys")
    }

    fn roles() -> RoleSet {
        RoleSet::from_roles([Role::Clinician])
    }

    // S-AUTH-3
    #[test]
    fn valid_tokens_verify_for_both_purposes() {
        for purpose in [TokenPurpose::Local, TokenPurpose::Public] {
            let keys = keys(purpose, 1);
            let (user, session) = (Uuid::now_v7(), Uuid::now_v7());
            let token = keys.issue(user, session, roles(), now()).expect("issue");
            let prefix = if purpose == TokenPurpose::Local {
                "v4.local."
            } else {
                "v4.public."
            };
            assert!(token.starts_with(prefix));
            let claims = keys.verify(&token, now()).expect("verify");
            assert_eq!(
                (claims.sub, claims.sid, claims.roles),
                (user, session, roles())
            );
        }
        assert!(
            keys(TokenPurpose::Public, 1)
                .public_key()
                .expect("pk")
                .starts_with("k4.public.")
        );
    }

    // S-AUTH-3
    #[test]
    fn expired_tampered_foreign_and_wrong_purpose_tokens_are_rejected() {
        let keys = keys(TokenPurpose::Local, 1);
        let token = keys
            .issue(Uuid::now_v7(), Uuid::now_v7(), roles(), now())
            .expect("issue");
        let reject = |t: &str, at: DateTime<Utc>| {
            assert!(
                matches!(keys.verify(t, at), Err(Error::Unauthenticated)),
                "{t}"
            );
        };
        // Expired: 15 minutes by default.
        reject(&token, now() + chrono::Duration::minutes(15));
        keys.verify(&token, now() + chrono::Duration::minutes(14))
            .expect("still valid");
        // Issued in the future.
        reject(&token, now() - chrono::Duration::minutes(5));
        // Tampered: every position of the body.
        let body_start = "v4.local.".len();
        for i in [
            body_start,
            body_start + 10,
            token.rfind('.').expect("footer") - 1,
        ] {
            let mut bytes = token.clone().into_bytes();
            bytes[i] = if bytes[i] == b'A' { b'B' } else { b'A' };
            reject(&String::from_utf8(bytes).expect("ascii"), now());
        }
        // Another key (another installation).
        let other = keys_for(2);
        reject(
            &other
                .issue(Uuid::nil(), Uuid::nil(), roles(), now())
                .expect("issue"),
            now(),
        );
        // Wrong purpose and wrong version.
        let public = self::keys(TokenPurpose::Public, 1);
        reject(
            &public
                .issue(Uuid::nil(), Uuid::nil(), roles(), now())
                .expect("issue"),
            now(),
        );
        reject(&token.replacen("v4.", "v3.", 1), now());
        reject(&token.replacen("v4.", "v2.", 1), now());
        // A different footer (key id) or none.
        let without_footer = &token[..token.rfind('.').expect("footer")];
        reject(without_footer, now());
        let forged_kid = format!(
            "{without_footer}.{}",
            URL_SAFE_NO_PAD
                .encode(br#"{"kid":"k4.lid.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"}"#)
        );
        reject(&forged_kid, now());
        // A refresh token, garbage, and an oversized token.
        reject("crt_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", now());
        reject("", now());
        reject(&"v4.local.".repeat(1000), now());
    }

    fn keys_for(root: u8) -> TokenKeys {
        keys(TokenPurpose::Local, root)
    }

    // S-AUTH-3
    #[test]
    fn issuer_and_audience_must_match() {
        let root = Key::from_slice(&[1u8; 32]).expect("key");
        let ours = TokenKeys::new(&root, &AuthConfig::default()).expect("keys");
        let other_aud = TokenKeys::new(
            &root,
            &AuthConfig {
                audience: "billing".into(),
                ..AuthConfig::default()
            },
        )
        .expect("keys");
        let token = other_aud
            .issue(Uuid::nil(), Uuid::nil(), roles(), now())
            .expect("issue");
        assert!(matches!(
            ours.verify(&token, now()),
            Err(Error::Unauthenticated)
        ));
        let other_iss = TokenKeys::new(
            &root,
            &AuthConfig {
                issuer: "elsewhere".into(),
                ..AuthConfig::default()
            },
        )
        .expect("keys");
        let token = other_iss
            .issue(Uuid::nil(), Uuid::nil(), roles(), now())
            .expect("issue");
        assert!(matches!(
            ours.verify(&token, now()),
            Err(Error::Unauthenticated)
        ));
    }

    // S-AUTH-3, S-KEY-2: token key rotation with overlap.
    #[test]
    fn rotation_keeps_live_tokens_for_one_lifetime() {
        for purpose in [TokenPurpose::Local, TokenPurpose::Public] {
            let root = Key::from_slice(&[7u8; 32]).expect("key");
            let keys = TokenKeys::new(&root, &config(purpose)).expect("keys");
            let old = keys
                .issue(Uuid::nil(), Uuid::nil(), roles(), now())
                .expect("issue");
            let (version, until) = keys.rotate(1, now()).expect("rotate");
            assert_eq!((version, keys.version()), (2, 2));
            assert_eq!(until, now() + chrono::Duration::minutes(15));
            let new = keys
                .issue(Uuid::nil(), Uuid::nil(), roles(), now())
                .expect("issue");
            assert_ne!(old.rsplit('.').next(), new.rsplit('.').next(), "new key id");
            keys.verify(&old, now() + chrono::Duration::minutes(14))
                .expect("the previous key is accepted during the overlap");
            keys.verify(&new, now()).expect("the new key verifies");
            // Restarted after the rotation: the state comes from the store.
            let restarted =
                TokenKeys::with_version(&root, &config(purpose), 2, Some(until)).expect("keys");
            restarted
                .verify(&old, now())
                .expect("overlap survives a restart");
            let late = TokenKeys::with_version(&root, &config(purpose), 2, None).expect("keys");
            assert!(matches!(
                late.verify(&old, now()),
                Err(Error::Unauthenticated)
            ));
            // Another instance, still on version 1, meets a version 2 token:
            // it verifies it and issues under version 2 from then on.
            let lagging = TokenKeys::new(&root, &config(purpose)).expect("keys");
            lagging
                .verify(&new, now())
                .expect("the next version is accepted");
            assert_eq!(lagging.version(), 2);
            // Version 3 of another root is refused.
            let foreign = TokenKeys::with_version(
                &Key::from_slice(&[8u8; 32]).expect("key"),
                &config(purpose),
                3,
                None,
            )
            .expect("keys");
            let token = foreign
                .issue(Uuid::nil(), Uuid::nil(), roles(), now())
                .expect("issue");
            assert!(matches!(
                keys.verify(&token, now()),
                Err(Error::Unauthenticated)
            ));
        }
    }
}
