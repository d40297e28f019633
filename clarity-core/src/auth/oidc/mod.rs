//! OpenID Connect resource-server mode (S-ID-1): tokens that an
//! organisation's identity provider issued are verified here (signature by
//! the provider's published keys, issuer, audience, times) and their roles
//! mapped to Clarity's. Back-channel logout tokens are verified the same way.
//!
//! Who the verified subject is in Clarity (a linked or provisioned user),
//! and whether a logout ended its tokens, is the service's business.

mod keys;
mod settings;

use std::sync::atomic::{AtomicU64, Ordering};

use base64::Engine as _;
use chrono::{DateTime, Utc};
use jsonwebtoken::Algorithm;
use serde_json::Value;

pub use settings::{ALLOWED_ALGORITHMS, OidcProviderConfig, validate_all};

use crate::error::{Error, Result};
use crate::model::{Role, RoleSet};
use keys::{KeyError, ProviderKeys};

/// The largest token considered, in bytes; longer ones are refused unread.
pub const MAX_TOKEN_BYTES: usize = 16 * 1024;
/// The clock skew allowed on `exp`, `nbf` and `iat`, in seconds.
pub const MAX_SKEW_SECS: i64 = 60;
/// The longest a subject may be, in bytes.
const MAX_SUBJECT_BYTES: usize = 255;
/// The event a back-channel logout token must carry.
const LOGOUT_EVENT: &str = "http://schemas.openid.net/event/backchannel-logout";

/// Why a token was refused: a metric label, never shown to the caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Refusal {
    /// Not a JWT, or too long.
    Malformed,
    /// An issuer that is not configured.
    Issuer,
    /// An algorithm that is not allowed (`none`, HMAC, or not configured).
    Algorithm,
    /// A key id the provider does not publish.
    UnknownKey,
    /// A signature that does not verify.
    Signature,
    /// The wrong audience.
    Audience,
    /// Expired.
    Expired,
    /// `nbf` in the future.
    NotYetValid,
    /// `iat` missing or in the future.
    IssuedAt,
    /// A required claim missing or malformed.
    Claims,
    /// Ended by a back-channel logout (or the caller's own).
    LoggedOut,
    /// The provider's keys could not be fetched and none are cached.
    Unavailable,
}

impl Refusal {
    /// Every reason, in a fixed order.
    pub const ALL: [Refusal; 12] = [
        Refusal::Malformed,
        Refusal::Issuer,
        Refusal::Algorithm,
        Refusal::UnknownKey,
        Refusal::Signature,
        Refusal::Audience,
        Refusal::Expired,
        Refusal::NotYetValid,
        Refusal::IssuedAt,
        Refusal::Claims,
        Refusal::LoggedOut,
        Refusal::Unavailable,
    ];

    /// A short stable name (metric label).
    pub fn as_str(self) -> &'static str {
        match self {
            Refusal::Malformed => "malformed",
            Refusal::Issuer => "issuer",
            Refusal::Algorithm => "algorithm",
            Refusal::UnknownKey => "unknown_key",
            Refusal::Signature => "signature",
            Refusal::Audience => "audience",
            Refusal::Expired => "expired",
            Refusal::NotYetValid => "not_yet_valid",
            Refusal::IssuedAt => "issued_at",
            Refusal::Claims => "claims",
            Refusal::LoggedOut => "logged_out",
            Refusal::Unavailable => "unavailable",
        }
    }

    /// The error the caller sees: 401 with no detail, or 503 while the
    /// provider's keys cannot be had.
    pub(crate) fn error(self) -> Error {
        match self {
            Refusal::Unavailable => Error::Unavailable {
                message: "the identity provider's keys cannot be fetched".into(),
            },
            _ => Error::Unauthenticated,
        }
    }
}

/// A verified access token from a configured provider.
#[derive(Debug, Clone)]
pub struct ExternalToken {
    /// The issuer (as configured).
    pub issuer: String,
    /// The subject at that issuer.
    pub subject: String,
    /// `iat`.
    pub issued_at: DateTime<Utc>,
    /// `exp`.
    pub expires_at: DateTime<Utc>,
    /// The provider's session (`sid`), when the token names one.
    pub session: Option<String>,
    /// The Clarity roles the provider's role claim maps to (possibly none,
    /// possibly a combination that may not be held: the service checks).
    pub roles: RoleSet,
    /// A name to show for a provisioned user (`preferred_username`, `name`
    /// or, for a machine client, `client_id`).
    pub display_name: Option<String>,
    /// Whether the provider lets subjects be provisioned on first use.
    pub provision: bool,
    /// Whether the provider says the user authenticated with a second
    /// factor (`amr` names `mfa`, `otp`, `hwk` or `sc`, RFC 8176).
    pub mfa: bool,
}

/// A verified back-channel logout token.
#[derive(Debug, Clone)]
pub struct LogoutToken {
    /// The issuer.
    pub issuer: String,
    /// The subject whose sessions end, when named.
    pub subject: Option<String>,
    /// The provider session that ends, when named.
    pub session: Option<String>,
    /// `iat`: tokens issued until then end.
    pub issued_at: DateTime<Utc>,
}

/// Counts for metrics.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct OidcStats {
    /// Tokens verified.
    pub verified: u64,
    /// Tokens refused, per reason (each reason listed).
    pub refused: Vec<(Refusal, u64)>,
    /// JWKS fetched.
    pub jwks_refreshes: u64,
    /// JWKS fetches that failed.
    pub jwks_refresh_failures: u64,
}

struct Provider {
    config: OidcProviderConfig,
    roles: Vec<(String, Role)>,
    algorithms: Vec<Algorithm>,
    keys: ProviderKeys,
}

/// The configured providers, their key caches and counters.
pub struct OidcVerifier {
    providers: Vec<Provider>,
    verified: AtomicU64,
    refused: [AtomicU64; Refusal::ALL.len()],
}

impl std::fmt::Debug for OidcVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OidcVerifier")
            .field(
                "issuers",
                &self
                    .providers
                    .iter()
                    .map(|p| &p.config.issuer)
                    .collect::<Vec<_>>(),
            )
            .finish_non_exhaustive()
    }
}

fn algorithm(name: &str) -> Option<Algorithm> {
    match name {
        "RS256" => Some(Algorithm::RS256),
        "PS256" => Some(Algorithm::PS256),
        "ES256" => Some(Algorithm::ES256),
        "EdDSA" => Some(Algorithm::EdDSA),
        _ => None,
    }
}

impl OidcVerifier {
    /// A verifier for `providers` (validated; nothing is fetched yet).
    ///
    /// # Errors
    /// [`Error::Config`] for invalid settings or an unreadable CA file.
    pub fn new(providers: &[OidcProviderConfig]) -> Result<OidcVerifier> {
        validate_all(providers)?;
        let providers = providers
            .iter()
            .map(|config| {
                Ok(Provider {
                    roles: config.roles()?,
                    algorithms: config
                        .algorithms
                        .iter()
                        .filter_map(|a| algorithm(a))
                        .collect(),
                    keys: ProviderKeys::new(config)?,
                    config: config.clone(),
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(OidcVerifier {
            providers,
            verified: AtomicU64::new(0),
            refused: Default::default(),
        })
    }

    /// Whether any provider is configured.
    pub fn is_enabled(&self) -> bool {
        !self.providers.is_empty()
    }

    /// Whether `token` has the shape of a JWT (three dot-separated parts, the
    /// first a JSON header), as opposed to Clarity's own PASETO tokens.
    pub fn looks_like_jwt(token: &str) -> bool {
        !token.starts_with("v4.") && token.split('.').count() == 3
    }

    /// Counts for metrics.
    pub fn stats(&self) -> OidcStats {
        OidcStats {
            verified: self.verified.load(Ordering::Relaxed),
            refused: Refusal::ALL
                .iter()
                .zip(&self.refused)
                .map(|(r, n)| (*r, n.load(Ordering::Relaxed)))
                .collect(),
            jwks_refreshes: self
                .providers
                .iter()
                .map(|p| p.keys.refreshes.load(Ordering::Relaxed))
                .sum(),
            jwks_refresh_failures: self
                .providers
                .iter()
                .map(|p| p.keys.refresh_failures.load(Ordering::Relaxed))
                .sum(),
        }
    }

    /// Counts a refusal that the service decided (a logged-out token).
    pub(crate) fn count_refusal(&self, refusal: Refusal) {
        if let Some(i) = Refusal::ALL.iter().position(|r| *r == refusal) {
            self.refused[i].fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Verifies an access token at `now`.
    ///
    /// # Errors
    /// The [`Refusal`]; the caller sees [`Refusal::error`].
    pub async fn verify(
        &self,
        token: &str,
        now: DateTime<Utc>,
    ) -> std::result::Result<ExternalToken, Refusal> {
        let result = self.verify_access(token, now).await;
        match &result {
            Ok(_) => {
                self.verified.fetch_add(1, Ordering::Relaxed);
            }
            Err(refusal) => self.count_refusal(*refusal),
        }
        result
    }

    async fn verify_access(
        &self,
        token: &str,
        now: DateTime<Utc>,
    ) -> std::result::Result<ExternalToken, Refusal> {
        let (provider, claims) = self.signed_claims(token).await?;
        let config = &provider.config;
        // An ID token (`nonce`) or a logout token (`events`) is no access
        // token, even where its audience matches.
        if claims.contains_key("nonce") || claims.contains_key("events") {
            return Err(Refusal::Claims);
        }
        if !audience_names(&claims, &config.audience) {
            return Err(Refusal::Audience);
        }
        let expires_at = time_claim(&claims, "exp")?.ok_or(Refusal::Claims)?;
        if now.timestamp() >= expires_at.timestamp() + MAX_SKEW_SECS {
            return Err(Refusal::Expired);
        }
        let issued_at = check_times(&claims, now)?;
        let subject = string_claim(&claims, "sub")
            .filter(|s| !s.is_empty() && s.len() <= MAX_SUBJECT_BYTES)
            .ok_or(Refusal::Claims)?;
        let session = string_claim(&claims, "sid");
        let roles =
            RoleSet::from_roles(role_values(&claims, &config.roles_claim).iter().filter_map(
                |value| {
                    provider
                        .roles
                        .iter()
                        .find(|(from, _)| from == value)
                        .map(|(_, role)| *role)
                },
            ));
        let display_name = ["preferred_username", "name", "client_id"]
            .iter()
            .find_map(|c| string_claim(&claims, c))
            .filter(|n| (1..=200).contains(&n.chars().count()));
        let mfa = claims
            .get("amr")
            .and_then(Value::as_array)
            .is_some_and(|amr| {
                amr.iter()
                    .filter_map(Value::as_str)
                    .any(|m| matches!(m, "mfa" | "otp" | "hwk" | "sc"))
            });
        Ok(ExternalToken {
            mfa,
            issuer: config.issuer.clone(),
            subject,
            issued_at,
            expires_at,
            session,
            roles,
            display_name,
            provision: config.provision,
        })
    }

    /// Verifies a back-channel logout token (OpenID Connect Back-Channel
    /// Logout 1.0, §2.6) at `now`: signed by a configured provider, for
    /// that provider's `logout_client_id`, with the logout event, `iat`,
    /// `jti`, no `nonce`, and a `sub` or a `sid`.
    ///
    /// # Errors
    /// The [`Refusal`].
    pub async fn verify_logout(
        &self,
        token: &str,
        now: DateTime<Utc>,
    ) -> std::result::Result<LogoutToken, Refusal> {
        let result = async {
            let (provider, claims) = self.signed_claims(token).await?;
            let client = provider
                .config
                .logout_client_id
                .as_deref()
                .ok_or(Refusal::Audience)?;
            if !audience_names(&claims, client) {
                return Err(Refusal::Audience);
            }
            if let Some(expires_at) = time_claim(&claims, "exp")?
                && now.timestamp() >= expires_at.timestamp() + MAX_SKEW_SECS
            {
                return Err(Refusal::Expired);
            }
            let issued_at = check_times(&claims, now)?;
            let event = claims
                .get("events")
                .and_then(Value::as_object)
                .and_then(|events| events.get(LOGOUT_EVENT));
            if !event.is_some_and(Value::is_object)
                || claims.get("nonce").is_some()
                || string_claim(&claims, "jti").is_none_or(|j| j.is_empty())
            {
                return Err(Refusal::Claims);
            }
            let subject = string_claim(&claims, "sub").filter(|s| !s.is_empty());
            let session = string_claim(&claims, "sid").filter(|s| !s.is_empty());
            if subject.is_none() && session.is_none() {
                return Err(Refusal::Claims);
            }
            Ok(LogoutToken {
                issuer: provider.config.issuer.clone(),
                subject,
                session,
                issued_at,
            })
        }
        .await;
        if let Err(refusal) = &result {
            self.count_refusal(*refusal);
        }
        result
    }

    /// The provider that signed `token` and its claims, once the signature
    /// verified with that provider's key and an allowed algorithm.
    async fn signed_claims(
        &self,
        token: &str,
    ) -> std::result::Result<(&Provider, serde_json::Map<String, Value>), Refusal> {
        if token.len() > MAX_TOKEN_BYTES || !Self::looks_like_jwt(token) {
            return Err(Refusal::Malformed);
        }
        let header_alg = unverified_part(token, 0)
            .and_then(|h| h.get("alg").and_then(Value::as_str).map(str::to_owned))
            .ok_or(Refusal::Malformed)?;
        // `none`, HMAC and anything else outside the allow-list end here,
        // before any key is looked at.
        let alg = algorithm(&header_alg).ok_or(Refusal::Algorithm)?;
        let header = jsonwebtoken::decode_header(token).map_err(|_| Refusal::Malformed)?;
        if header.alg != alg {
            return Err(Refusal::Malformed);
        }
        let issuer = unverified_part(token, 1)
            .and_then(|p| p.get("iss").and_then(Value::as_str).map(str::to_owned))
            .ok_or(Refusal::Claims)?;
        let provider = self
            .providers
            .iter()
            .find(|p| p.config.issuer == issuer)
            .ok_or(Refusal::Issuer)?;
        if !provider.algorithms.contains(&alg) {
            return Err(Refusal::Algorithm);
        }
        let key = provider
            .keys
            .key(header.kid.as_deref(), alg)
            .await
            .map_err(|e| match e {
                KeyError::Unknown => Refusal::UnknownKey,
                KeyError::Unavailable => Refusal::Unavailable,
            })?;
        let mut validation = jsonwebtoken::Validation::new(alg);
        // Times, issuer and audience are checked below against Clarity's
        // clock and settings; the library checks the signature.
        validation.validate_exp = false;
        validation.validate_nbf = false;
        validation.validate_aud = false;
        validation.required_spec_claims.clear();
        let data = jsonwebtoken::decode::<serde_json::Map<String, Value>>(
            token,
            key.decoding(),
            &validation,
        )
        .map_err(|e| match e.kind() {
            jsonwebtoken::errors::ErrorKind::InvalidSignature
            | jsonwebtoken::errors::ErrorKind::InvalidAlgorithm => Refusal::Signature,
            _ => Refusal::Malformed,
        })?;
        if data.claims.get("iss").and_then(Value::as_str) != Some(provider.config.issuer.as_str()) {
            return Err(Refusal::Issuer);
        }
        Ok((provider, data.claims))
    }
}

/// A part of a JWT decoded without verification, to pick the provider and
/// refuse bad algorithms early. Nothing from it is trusted.
fn unverified_part(token: &str, index: usize) -> Option<serde_json::Map<String, Value>> {
    let part = token.split('.').nth(index)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(part)
        .ok()?;
    serde_json::from_slice(&bytes).ok()
}

fn string_claim(claims: &serde_json::Map<String, Value>, name: &str) -> Option<String> {
    claims.get(name).and_then(Value::as_str).map(str::to_owned)
}

/// A NumericDate claim: absent is `None`, anything but a number refuses.
fn time_claim(
    claims: &serde_json::Map<String, Value>,
    name: &str,
) -> std::result::Result<Option<DateTime<Utc>>, Refusal> {
    match claims.get(name) {
        None => Ok(None),
        Some(value) => value
            .as_f64()
            .filter(|v| v.is_finite())
            .and_then(|v| DateTime::from_timestamp(v as i64, 0))
            .map(Some)
            .ok_or(Refusal::Claims),
    }
}

/// `nbf` (if present) and `iat` (required) not in the future, beyond the
/// allowed skew; returns `iat`.
fn check_times(
    claims: &serde_json::Map<String, Value>,
    now: DateTime<Utc>,
) -> std::result::Result<DateTime<Utc>, Refusal> {
    if let Some(not_before) = time_claim(claims, "nbf")?
        && not_before.timestamp() > now.timestamp() + MAX_SKEW_SECS
    {
        return Err(Refusal::NotYetValid);
    }
    let issued_at = time_claim(claims, "iat")?.ok_or(Refusal::IssuedAt)?;
    if issued_at.timestamp() > now.timestamp() + MAX_SKEW_SECS {
        return Err(Refusal::IssuedAt);
    }
    Ok(issued_at)
}

/// Whether `aud` (a string or a list) names `audience`.
fn audience_names(claims: &serde_json::Map<String, Value>, audience: &str) -> bool {
    match claims.get("aud") {
        Some(Value::String(aud)) => aud == audience,
        Some(Value::Array(list)) => list.iter().any(|a| a.as_str() == Some(audience)),
        _ => false,
    }
}

/// The strings at the dotted `path` of the claims: a list of strings, or one.
fn role_values(claims: &serde_json::Map<String, Value>, path: &str) -> Vec<String> {
    let mut parts = path.split('.');
    let Some(first) = parts.next() else {
        return Vec::new();
    };
    let mut value = claims.get(first);
    for part in parts {
        value = value.and_then(|v| v.get(part));
    }
    match value {
        Some(Value::String(one)) => vec![one.clone()],
        Some(Value::Array(list)) => list
            .iter()
            .filter_map(Value::as_str)
            .map(str::to_owned)
            .collect(),
        _ => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims(json: &str) -> serde_json::Map<String, Value> {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn roles_come_from_dotted_paths_strings_or_lists() {
        let c = claims(r#"{"roles":["a","b",3],"realm_access":{"roles":["x"]},"one":"y"}"#);
        assert_eq!(role_values(&c, "roles"), ["a", "b"]);
        assert_eq!(role_values(&c, "realm_access.roles"), ["x"]);
        assert_eq!(role_values(&c, "one"), ["y"]);
        assert!(role_values(&c, "missing.path").is_empty());
    }

    #[test]
    fn audience_may_be_a_string_or_a_list() {
        assert!(audience_names(&claims(r#"{"aud":"clarity"}"#), "clarity"));
        assert!(audience_names(
            &claims(r#"{"aud":["x","clarity"]}"#),
            "clarity"
        ));
        assert!(!audience_names(
            &claims(r#"{"aud":"clarity-x"}"#),
            "clarity"
        ));
        assert!(!audience_names(&claims(r#"{}"#), "clarity"));
    }

    #[test]
    fn s_id_1_times_allow_sixty_seconds_of_skew_and_no_more() {
        let now = DateTime::from_timestamp(1_000_000, 0).unwrap();
        let at = |iat: i64| claims(&format!(r#"{{"iat":{iat}}}"#));
        assert!(check_times(&at(1_000_060), now).is_ok());
        assert_eq!(check_times(&at(1_000_061), now), Err(Refusal::IssuedAt));
        assert_eq!(check_times(&claims("{}"), now), Err(Refusal::IssuedAt));
        let nbf = claims(r#"{"iat":1000000,"nbf":1000061}"#);
        assert_eq!(check_times(&nbf, now), Err(Refusal::NotYetValid));
        assert_eq!(
            check_times(&claims(r#"{"iat":"soon"}"#), now),
            Err(Refusal::Claims)
        );
    }

    #[test]
    fn s_id_1_only_https_or_loopback_http_issuers() {
        use settings::acceptable_url;
        assert!(acceptable_url("https://login.example.org/realms/clinic"));
        assert!(acceptable_url("http://127.0.0.1:8080"));
        assert!(acceptable_url("http://[::1]:8080"));
        assert!(acceptable_url("http://localhost:8080"));
        assert!(!acceptable_url("http://login.example.org"));
        assert!(!acceptable_url("http://10.0.0.1"));
        assert!(!acceptable_url("ftp://127.0.0.1"));
        assert!(!acceptable_url("not a url"));
    }

    #[test]
    fn jwt_shape_is_told_from_paseto() {
        assert!(OidcVerifier::looks_like_jwt("a.b.c"));
        assert!(!OidcVerifier::looks_like_jwt("v4.local.abc"));
        assert!(!OidcVerifier::looks_like_jwt("v4.public.abc.def"));
        assert!(!OidcVerifier::looks_like_jwt("abc"));
    }
}
