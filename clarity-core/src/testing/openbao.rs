//! The OpenBao dev server of the test run, driven as an operator would
//! drive it: the documented policy, tokens with short lifetimes, auth
//! methods. For the tests of the transit provider's login and renewal.

use std::path::PathBuf;

use serde_json::{Value, json};

use crate::crypto::{TransitAuth, TransitSettings};

/// The test run's OpenBao, reached with its root token to set things up
/// (policies, tokens, auth methods) as an operator would.
#[derive(Debug)]
pub struct OpenBao {
    http: reqwest::Client,
    /// The server's address.
    pub addr: String,
    /// The root token: redacted when printed.
    root: crate::crypto::SecretString,
    /// The PEM file of the CA its certificate is signed by.
    pub ca: Option<PathBuf>,
}

impl OpenBao {
    /// The server the test run names; `None` (after a SKIPPED line)
    /// outside CI when unset.
    ///
    /// # Panics
    /// In CI when unset; when the CA file is unreadable.
    pub fn from_env() -> Option<OpenBao> {
        let addr = super::service_var(super::OPENBAO_ADDR_VAR, "OpenBao transit")?;
        let root = super::service_var(super::OPENBAO_TOKEN_VAR, "OpenBao transit")?;
        let ca = std::env::var(super::OPENBAO_CA_CERT_VAR)
            .ok()
            .map(PathBuf::from);
        let mut builder = reqwest::Client::builder();
        if let Some(ca) = &ca {
            let pem = std::fs::read(ca).expect("CA file");
            builder =
                builder.add_root_certificate(reqwest::Certificate::from_pem(&pem).expect("CA PEM"));
        }
        Some(OpenBao {
            http: builder.build().expect("client"),
            addr,
            root: crate::crypto::SecretString::new(root.trim()),
            ca,
        })
    }

    /// Calls the API as root; returns the status and the JSON reply.
    ///
    /// # Panics
    /// When the server does not answer.
    pub async fn call(&self, method: reqwest::Method, path: &str, body: Value) -> (u16, Value) {
        let response = self
            .http
            .request(method, format!("{}/v1/{path}", self.addr))
            .header("X-Vault-Token", self.root.expose())
            .json(&body)
            .send()
            .await
            .expect("OpenBao answers");
        let status = response.status().as_u16();
        let text = response.text().await.expect("reply");
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    /// POSTs `body` to `path` as root; the reply.
    ///
    /// # Panics
    /// When the server refuses it.
    pub async fn post(&self, path: &str, body: Value) -> Value {
        let (status, reply) = self.call(reqwest::Method::POST, path, body).await;
        assert!(status < 300, "POST {path}: HTTP {status}: {reply}");
        reply
    }

    /// The policy of docs/keys-openbao.md for the transit key `key`
    /// (the page's is for the key `clarity`); returns its name.
    ///
    /// # Panics
    /// When the page shows no policy or the server refuses it.
    pub async fn documented_policy(&self, key: &str) -> String {
        let page = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../docs/keys-openbao.md"
        ))
        .expect("docs/keys-openbao.md");
        let policy = page
            .split("```hcl\n")
            .nth(1)
            .and_then(|rest| rest.split("```").next())
            .expect("the page shows the policy");
        assert!(policy.contains("transit/encrypt/clarity\""), "{policy}");
        let policy = policy
            .replace("/clarity\"", &format!("/{key}\""))
            .replace("/clarity/", &format!("/{key}/"));
        let name = format!("policy-{key}");
        self.post(
            &format!("sys/policies/acl/{name}"),
            json!({ "policy": policy }),
        )
        .await;
        name
    }

    /// A renewable token with `ttl` seconds to live and the documented
    /// policy for the transit key `key`.
    ///
    /// # Panics
    /// When the server refuses it.
    pub async fn token(&self, key: &str, ttl: u64) -> String {
        let policy = self.documented_policy(key).await;
        let reply = self
            .post(
                "auth/token/create",
                json!({ "policies": [policy], "ttl": format!("{ttl}s"), "renewable": true, "no_parent": true }),
            )
            .await;
        reply["auth"]["client_token"]
            .as_str()
            .expect("token")
            .to_string()
    }

    /// Settings for the transit key `key`, logging in with `auth`.
    ///
    /// # Panics
    /// When the CA file is unreadable.
    pub fn settings(&self, key: &str, auth: TransitAuth) -> TransitSettings {
        let mut settings = TransitSettings::with_auth(self.addr.clone(), auth).with_key(key);
        settings.ca_cert_pem = self.ca.as_ref().map(|ca| std::fs::read(ca).expect("CA"));
        settings
    }

    /// A transit key name of its own for a test.
    pub fn fresh_key() -> String {
        format!("clarity-test-{}", uuid::Uuid::new_v4().simple())
    }
}
