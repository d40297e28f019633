//! The conformance suite on the in-memory reference backend, and on the
//! same backend seen through the cache decorators an instance puts on it.
clarity_core::conformance_suite!(clarity_core::testing::memory());

mod cached {
    clarity_core::conformance_suite!(clarity_core::testing::memory_cached());
}
