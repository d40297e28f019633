//! Fuzz target `request_body`: see clarity_core::testing::fuzz::request_body.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| clarity_core::testing::fuzz::request_body(data));
