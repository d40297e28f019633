//! The conformance suite on SQLite.
clarity_core::conformance_suite!(clarity_core::testing::sqlite());
