//! The ground floor: plain types that the access policy, the audit trail,
//! the stores and the service all speak, importing nothing above them.
//!
//! - documents: patient profiles, records, pages and look-ups as callers
//!   see them ([`PatientProfile`], [`Record`], [`Page`], [`PageRequest`]);
//! - disclosures: disclosures to outside recipients, their accounting and a
//!   patient's access log (S-AUD-9);
//! - roles: [`Role`] and [`RoleSet`], with the separation-of-duties rule;
//! - context: the [`RequestContext`] an audit event records;
//! - rows and [`Change`]: ciphertext rows as stored, and a write of them as
//!   a value (visible outside the crate only with the `testing` feature).

mod change;
mod context;
mod disclosures;
mod documents;
mod invalidation;
mod json_input;
mod roles;
mod rows;

pub use context::{ExternalIdentity, RequestContext};
pub(crate) use disclosures::accounting_period;
pub use disclosures::{
    ACCOUNTING_YEARS, AccessLogEntry, Accounting, Disclosure, DisclosureDetails, NewDisclosure,
};
pub(crate) use documents::check_document;
pub use documents::{
    Address, DEFAULT_PAGE, MAX_PAGE, Page, PageRequest, Patient, PatientLookup, PatientProfile,
    PatientSearch, Record, RecordKind,
};
pub use invalidation::Invalidation;
pub use json_input::parse_json;
pub use roles::{Role, RoleSet};

#[cfg(feature = "testing")]
pub use change::Change;
#[cfg(not(feature = "testing"))]
pub(crate) use change::Change;
#[cfg(feature = "testing")]
pub use rows::{
    CareTeamRow, DataKeyRow, DisclosureRow, ExternalIdentityRow, GrantRow, LoginFailures,
    PatientRow, RecordRow, RefreshRow, ServiceSecretRow, SessionRow, UserRow,
};
#[cfg(not(feature = "testing"))]
pub(crate) use rows::{
    CareTeamRow, DataKeyRow, DisclosureRow, ExternalIdentityRow, GrantRow, LoginFailures,
    PatientRow, RecordRow, RefreshRow, ServiceSecretRow, SessionRow, UserRow,
};
