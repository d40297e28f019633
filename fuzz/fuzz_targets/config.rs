//! Fuzz target `config`: see clarity_core::testing::fuzz::config.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| clarity_core::testing::fuzz::config(data));
