//! The encrypting layer over the store: [`PhiStore`] turns plaintext
//! patients and records into sealed rows and back, and the key bootstrap
//! binds a store to its key provider. Only the service (and, with the
//! `testing` feature, the tests) reach it: every caller outside the crate
//! goes through the audited `Clarity` operations (S-API-1).

mod keys;
mod phi;

pub use keys::{
    advance_audit_key, audit_key_version, audit_keys, open_key_provider, open_kms, open_pkcs11,
    open_transit, rewrap_root_record,
};
pub use phi::PhiStore;
