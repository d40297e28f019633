//! The conformance suite on SQLite with the KEKs in a PKCS#11 token
//! (SoftHSM2), S-KEY-1 and S-KEY-4: everything that holds with the local
//! keyring holds with a token.
clarity_core::conformance_suite!(clarity_core::testing::sqlite_pkcs11());
