//! The conformance suite on SQLite with the KEKs in AWS KMS (moto, see
//! `clarity_core::testing::kms_settings`), S-KEY-1 and S-KEY-4: everything
//! that holds with the local keyring holds with KMS.
clarity_core::conformance_suite!(clarity_core::testing::sqlite_kms());
