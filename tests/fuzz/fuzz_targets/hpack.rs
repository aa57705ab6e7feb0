//! HPACK decoding of arbitrary blocks on one connection, and what decodes round-tripped.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| proxyd::fuzz::hpack(data));
