//! The request an operation serves, as the audit trail records it.

use std::net::IpAddr;

use serde::Serialize;

/// Per-request facts the server knows and the core records.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct RequestContext {
    /// Purpose of use (`TREAT` by default; `ETREAT` under break-glass; ...).
    pub purpose: Option<String>,
    /// The client's network address.
    pub client_address: Option<IpAddr>,
    /// The request id given to the client.
    pub request_id: Option<String>,
}

/// Who an authenticated caller is at an identity provider, for callers who
/// came with an OpenID Connect provider's token: audit events name both.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ExternalIdentity {
    /// The provider's issuer.
    pub issuer: String,
    /// The subject at that provider.
    pub subject: String,
}
