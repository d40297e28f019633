//! Fuzz target `token`: see clarity_core::testing::fuzz::token.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| clarity_core::testing::fuzz::token(data));
