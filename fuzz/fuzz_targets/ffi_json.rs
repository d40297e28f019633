//! Fuzz target `ffi_json`: see clarity_core::testing::fuzz::ffi_json.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| clarity_core::testing::fuzz::ffi_json(data));
