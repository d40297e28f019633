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
