//! Fuzz target `envelope`: see clarity_core::testing::fuzz::envelope.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| clarity_core::testing::fuzz::envelope(data));
