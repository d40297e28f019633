//! The conformance suite on PostgreSQL (`CLARITY_TEST_POSTGRES_URL`).
clarity_core::conformance_suite!(clarity_core::testing::postgres());
