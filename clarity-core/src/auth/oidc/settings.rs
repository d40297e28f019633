//! The `[[auth.oidc]]` settings: one entry per OpenID Connect provider
//! whose tokens Clarity accepts (resource-server mode, S-ID-1).

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::Deserialize;

use crate::error::{Error, Result};
use crate::model::Role;

/// The algorithms a provider may sign with when none are configured: every
/// asymmetric one Clarity accepts.
pub const ALLOWED_ALGORITHMS: [&str; 4] = ["RS256", "PS256", "ES256", "EdDSA"];

/// One OpenID Connect provider (`[[auth.oidc]]`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct OidcProviderConfig {
    /// The issuer, exactly as the provider's tokens and discovery document
    /// name it (`https://`, or `http://` on a loopback address only).
    pub issuer: String,
    /// The audience Clarity's tokens must name (`aud`).
    pub audience: String,
    /// The claim holding the user's roles at the provider: a list of strings
    /// (or one string); a dotted path reaches into objects
    /// (`realm_access.roles`). Default `roles`.
    #[serde(default = "default_roles_claim")]
    pub roles_claim: String,
    /// Whether the first valid token of an unknown subject creates its
    /// Clarity user (default false: an admin links subjects to users).
    #[serde(default)]
    pub provision: bool,
    /// Provider role → Clarity role. A value not named here gives no role.
    #[serde(default)]
    pub role_map: BTreeMap<String, String>,
    /// The algorithms accepted, a subset of RS256, PS256, ES256 and EdDSA
    /// (default all four). `none` and HMAC algorithms are never accepted.
    #[serde(default = "default_algorithms")]
    pub algorithms: Vec<String>,
    /// The client id the provider sends back-channel logout tokens to (their
    /// `aud`). Without it, back-channel logout is refused for this provider.
    #[serde(default)]
    pub logout_client_id: Option<String>,
    /// A PEM file of CA certificates to trust for this provider, besides
    /// the built-in web roots.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// An unknown key id fetches the JWKS again at most this often, in
    /// seconds (default 30).
    #[serde(default = "default_min_refresh")]
    pub jwks_min_refresh_secs: u64,
    /// Cached keys are fetched again after this many seconds (default 3600);
    /// when that fails, the cached keys keep working.
    #[serde(default = "default_max_age")]
    pub jwks_max_age_secs: u64,
    /// The longest a discovery or JWKS fetch may take, in seconds (default 5).
    #[serde(default = "default_timeout")]
    pub fetch_timeout_secs: u64,
}

fn default_roles_claim() -> String {
    "roles".into()
}

fn default_algorithms() -> Vec<String> {
    ALLOWED_ALGORITHMS.iter().map(|a| a.to_string()).collect()
}

fn default_min_refresh() -> u64 {
    30
}

fn default_max_age() -> u64 {
    3600
}

fn default_timeout() -> u64 {
    5
}

pub(crate) use crate::tls::acceptable_url;

impl OidcProviderConfig {
    /// The role map with Clarity roles parsed.
    pub(crate) fn roles(&self) -> Result<Vec<(String, Role)>> {
        self.role_map
            .iter()
            .map(|(from, to)| {
                let role = Role::parse(to).map_err(|_| {
                    Error::config(
                        "auth.oidc.role_map",
                        format!(
                            "{from:?} maps to {to:?}, which is not a role \
                             (admin, clinician, nurse, researcher, auditor)"
                        ),
                    )
                })?;
                Ok((from.clone(), role))
            })
            .collect()
    }

    /// Checks one provider's settings; errors name the key.
    ///
    /// # Errors
    /// [`Error::Config`] naming the first offending key.
    pub fn validate(&self) -> Result<()> {
        if !acceptable_url(&self.issuer) {
            return Err(Error::config(
                "auth.oidc.issuer",
                "must be an https:// URL (http:// only for a loopback address)",
            ));
        }
        if self.audience.trim().is_empty() {
            return Err(Error::config("auth.oidc.audience", "must not be empty"));
        }
        if self.roles_claim.is_empty() || self.roles_claim.split('.').any(str::is_empty) {
            return Err(Error::config(
                "auth.oidc.roles_claim",
                "must be a claim name or a dotted path such as realm_access.roles",
            ));
        }
        for (from, role) in self.roles()? {
            if role == Role::Patient {
                return Err(Error::config(
                    "auth.oidc.role_map",
                    format!(
                        "{from:?} maps to patient: a patient's account is linked to their \
                         record by an admin, never granted by a provider"
                    ),
                ));
            }
        }
        if self.algorithms.is_empty() {
            return Err(Error::config(
                "auth.oidc.algorithms",
                "must name at least one",
            ));
        }
        for alg in &self.algorithms {
            if !ALLOWED_ALGORITHMS.contains(&alg.as_str()) {
                return Err(Error::config(
                    "auth.oidc.algorithms",
                    format!("{alg:?} is not accepted; choose from RS256, PS256, ES256, EdDSA"),
                ));
            }
        }
        if self
            .logout_client_id
            .as_deref()
            .is_some_and(|c| c.trim().is_empty())
        {
            return Err(Error::config(
                "auth.oidc.logout_client_id",
                "must not be empty",
            ));
        }
        let bounded = [
            (
                "auth.oidc.jwks_min_refresh_secs",
                self.jwks_min_refresh_secs,
                1,
                3600,
            ),
            (
                "auth.oidc.jwks_max_age_secs",
                self.jwks_max_age_secs,
                60,
                7 * 24 * 3600,
            ),
            (
                "auth.oidc.fetch_timeout_secs",
                self.fetch_timeout_secs,
                1,
                60,
            ),
        ];
        for (key, value, low, high) in bounded {
            if !(low..=high).contains(&value) {
                return Err(Error::config(
                    key,
                    format!("must be between {low} and {high}"),
                ));
            }
        }
        Ok(())
    }
}

/// Checks the list of providers: each valid, no issuer twice.
///
/// # Errors
/// [`Error::Config`] naming the first offending key.
pub fn validate_all(providers: &[OidcProviderConfig]) -> Result<()> {
    for (i, provider) in providers.iter().enumerate() {
        provider.validate()?;
        if providers[..i].iter().any(|p| p.issuer == provider.issuer) {
            return Err(Error::config(
                "auth.oidc.issuer",
                format!("{} is configured twice", provider.issuer),
            ));
        }
    }
    Ok(())
}
