//! The conformance suite on SQLite with the KEKs in OpenBao transit (S-KEY-1):
//! everything that holds with the local keyring holds with transit.
clarity_core::conformance_suite!(clarity_core::testing::sqlite_transit());
