//! The conformance suite on the in-memory reference backend.
clarity_core::conformance_suite!(clarity_core::testing::memory());
