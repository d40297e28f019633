//! A provider's signing keys: discovery (`{issuer}/.well-known/openid-configuration`)
//! names the JWKS, which is fetched, cached, and fetched again when a token
//! names a key id the cache lacks (at most once per `jwks_min_refresh_secs`)
//! or when the cache is older than `jwks_max_age_secs`. A fetch that fails
//! or is slow never takes the cached keys away, and no request waits longer
//! than `fetch_timeout_secs` for one (S-ID-1).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, JwkSet, KeyAlgorithm};
use jsonwebtoken::{Algorithm, DecodingKey};
use serde::Deserialize;

use super::OidcProviderConfig;
use super::settings::acceptable_url;
use crate::error::{Error, Result};

/// The largest discovery document or JWKS read, in bytes.
const MAX_DOCUMENT_BYTES: usize = 256 * 1024;

/// One verification key from the JWKS.
pub(crate) struct Key {
    kid: Option<String>,
    /// The algorithm the JWK names, if any: then only that one.
    alg: Option<Algorithm>,
    /// The algorithms the key's type can verify.
    fits: &'static [Algorithm],
    key: DecodingKey,
}

/// What the cache holds.
#[derive(Default)]
struct Cached {
    jwks_uri: Option<String>,
    keys: Vec<std::sync::Arc<Key>>,
    fetched: Option<Instant>,
    attempted: Option<Instant>,
    /// Whether the last fetch failed (an unknown key may then be one the
    /// provider published but could not be fetched).
    failed: bool,
}

/// How a key lookup failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum KeyError {
    /// No key with this id (after a refresh, or while refreshes wait out
    /// their interval).
    Unknown,
    /// No such key is cached and the provider's keys could not be fetched.
    Unavailable,
}

/// A provider's keys, fetched over HTTP and cached.
pub(crate) struct ProviderKeys {
    issuer: String,
    http: reqwest::Client,
    min_refresh: Duration,
    max_age: Duration,
    timeout: Duration,
    cached: tokio::sync::RwLock<Cached>,
    /// One fetch at a time; others wait for it (bounded by the timeout).
    fetching: tokio::sync::Mutex<()>,
    pub(crate) refreshes: AtomicU64,
    pub(crate) refresh_failures: AtomicU64,
}

impl std::fmt::Debug for ProviderKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProviderKeys")
            .field("issuer", &self.issuer)
            .finish_non_exhaustive()
    }
}

#[derive(Deserialize)]
struct Discovery {
    issuer: String,
    jwks_uri: String,
}

impl ProviderKeys {
    /// The key cache of one configured provider (nothing is fetched yet).
    pub(crate) fn new(config: &OidcProviderConfig) -> Result<ProviderKeys> {
        let timeout = Duration::from_secs(config.fetch_timeout_secs);
        let mut builder = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout)
            .redirect(reqwest::redirect::Policy::none())
            .https_only(false);
        if let Some(path) = &config.ca_file {
            let pem = std::fs::read(path).map_err(|e| {
                Error::config(
                    "auth.oidc.ca_file",
                    format!("cannot read {}: {e}", path.display()),
                )
            })?;
            let certs = reqwest::Certificate::from_pem_bundle(&pem)
                .map_err(|_| Error::config("auth.oidc.ca_file", "holds no PEM certificate"))?;
            for cert in certs {
                builder = builder.add_root_certificate(cert);
            }
        }
        let http = builder
            .build()
            .map_err(|e| Error::config("auth.oidc", format!("cannot set up HTTP: {e}")))?;
        Ok(ProviderKeys {
            issuer: config.issuer.clone(),
            http,
            min_refresh: Duration::from_secs(config.jwks_min_refresh_secs),
            timeout,
            max_age: Duration::from_secs(config.jwks_max_age_secs),
            cached: tokio::sync::RwLock::new(Cached::default()),
            fetching: tokio::sync::Mutex::new(()),
            refreshes: AtomicU64::new(0),
            refresh_failures: AtomicU64::new(0),
        })
    }

    /// The key for a token signed with `alg` under `kid`: from the cache,
    /// or after fetching the JWKS when the cache is empty, stale, or lacks
    /// the key (rate-limited).
    pub(crate) async fn key(
        &self,
        kid: Option<&str>,
        alg: Algorithm,
    ) -> std::result::Result<std::sync::Arc<Key>, KeyError> {
        let (found, stale, may_refresh) = {
            let cached = self.cached.read().await;
            let found = find(&cached.keys, kid, alg);
            let stale = cached.fetched.is_none_or(|at| at.elapsed() >= self.max_age);
            let may_refresh = cached
                .attempted
                .is_none_or(|at| at.elapsed() >= self.min_refresh);
            (found, stale, may_refresh)
        };
        if let Some(key) = found
            && !(stale && may_refresh)
        {
            return Ok(key);
        }
        if may_refresh {
            self.refresh().await;
        }
        let cached = self.cached.read().await;
        match find(&cached.keys, kid, alg) {
            Some(key) => Ok(key),
            None if cached.fetched.is_none() || cached.failed => Err(KeyError::Unavailable),
            None => Err(KeyError::Unknown),
        }
    }

    /// Fetches discovery (once) and the JWKS, unless another caller just did.
    async fn refresh(&self) {
        let _one = self.fetching.lock().await;
        {
            let cached = self.cached.read().await;
            if cached
                .attempted
                .is_some_and(|at| at.elapsed() < self.min_refresh)
            {
                return; // another caller refreshed while this one waited
            }
        }
        let jwks_uri = self.cached.read().await.jwks_uri.clone();
        // Discovery and the JWKS together within one timeout: no request
        // waits longer than that for keys.
        let result = tokio::time::timeout(self.timeout, self.fetch(jwks_uri))
            .await
            .unwrap_or_else(|_| Err(unavailable("the identity provider did not answer in time")));
        let mut cached = self.cached.write().await;
        cached.attempted = Some(Instant::now());
        match result {
            Ok((uri, keys)) => {
                self.refreshes.fetch_add(1, Ordering::Relaxed);
                cached.jwks_uri = Some(uri);
                cached.keys = keys;
                cached.fetched = Some(Instant::now());
                cached.failed = false;
            }
            Err(e) => {
                cached.failed = true;
                self.refresh_failures.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(issuer = %self.issuer, error = %e, "cannot fetch the provider's keys; cached keys stay in use");
            }
        }
    }

    async fn fetch(&self, jwks_uri: Option<String>) -> Result<(String, Vec<std::sync::Arc<Key>>)> {
        let uri = match jwks_uri {
            Some(uri) => uri,
            None => {
                let url = format!(
                    "{}/.well-known/openid-configuration",
                    self.issuer.trim_end_matches('/')
                );
                let discovery: Discovery = serde_json::from_slice(&self.get(&url).await?)
                    .map_err(|_| unavailable("the discovery document is not valid JSON"))?;
                if discovery.issuer != self.issuer {
                    return Err(unavailable(
                        "the discovery document names another issuer than the one configured",
                    ));
                }
                if !acceptable_url(&discovery.jwks_uri) {
                    return Err(unavailable(
                        "the provider's jwks_uri is not https (http only on loopback)",
                    ));
                }
                discovery.jwks_uri
            }
        };
        let set: JwkSet = serde_json::from_slice(&self.get(&uri).await?)
            .map_err(|_| unavailable("the JWKS is not valid JSON"))?;
        let keys = set
            .keys
            .iter()
            .filter_map(usable)
            .map(std::sync::Arc::new)
            .collect();
        Ok((uri, keys))
    }

    async fn get(&self, url: &str) -> Result<Vec<u8>> {
        let mut response = self
            .http
            .get(url)
            .header(reqwest::header::ACCEPT, "application/json")
            .send()
            .await
            .map_err(|e| {
                unavailable(if e.is_timeout() {
                    "the identity provider did not answer in time"
                } else {
                    "the identity provider cannot be reached"
                })
            })?;
        if !response.status().is_success() {
            return Err(unavailable(format!(
                "the identity provider answered HTTP {}",
                response.status().as_u16()
            )));
        }
        let mut body = Vec::new();
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|_| unavailable("the identity provider's answer broke off"))?
        {
            if body.len() + chunk.len() > MAX_DOCUMENT_BYTES {
                return Err(unavailable("the identity provider's answer is too large"));
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body)
    }
}

fn unavailable(message: impl Into<String>) -> Error {
    Error::Unavailable {
        message: message.into(),
    }
}

/// A JWK as a verification key, if it is one Clarity can use: a signing
/// key (`use` absent or `sig`) of type RSA, EC P-256 or OKP Ed25519.
fn usable(jwk: &Jwk) -> Option<Key> {
    if jwk
        .common
        .public_key_use
        .as_ref()
        .is_some_and(|u| *u != jsonwebtoken::jwk::PublicKeyUse::Signature)
    {
        return None;
    }
    let fits: &'static [Algorithm] = match &jwk.algorithm {
        AlgorithmParameters::RSA(_) => &[Algorithm::RS256, Algorithm::PS256],
        AlgorithmParameters::EllipticCurve(ec) if ec.curve == EllipticCurve::P256 => {
            &[Algorithm::ES256]
        }
        AlgorithmParameters::OctetKeyPair(okp) if okp.curve == EllipticCurve::Ed25519 => {
            &[Algorithm::EdDSA]
        }
        _ => return None,
    };
    let alg = match jwk.common.key_algorithm {
        None => None,
        Some(KeyAlgorithm::RS256) => Some(Algorithm::RS256),
        Some(KeyAlgorithm::PS256) => Some(Algorithm::PS256),
        Some(KeyAlgorithm::ES256) => Some(Algorithm::ES256),
        Some(KeyAlgorithm::EdDSA) => Some(Algorithm::EdDSA),
        Some(_) => return None,
    };
    if alg.is_some_and(|a| !fits.contains(&a)) {
        return None;
    }
    let key = DecodingKey::from_jwk(jwk).ok()?;
    Some(Key {
        kid: jwk.common.key_id.clone(),
        alg,
        fits,
        key,
    })
}

/// The key for `alg` and `kid`: the one with this id, or without an id in
/// the token, the only key that fits the algorithm.
fn find(
    keys: &[std::sync::Arc<Key>],
    kid: Option<&str>,
    alg: Algorithm,
) -> Option<std::sync::Arc<Key>> {
    let fits = |k: &&std::sync::Arc<Key>| k.fits.contains(&alg) && k.alg.is_none_or(|a| a == alg);
    match kid {
        Some(kid) => keys
            .iter()
            .filter(fits)
            .find(|k| k.kid.as_deref() == Some(kid))
            .cloned(),
        None => {
            let mut candidates = keys.iter().filter(fits);
            let only = candidates.next()?;
            candidates.next().is_none().then(|| only.clone())
        }
    }
}

impl Key {
    /// The decoding key.
    pub(crate) fn decoding(&self) -> &DecodingKey {
        &self.key
    }
}
