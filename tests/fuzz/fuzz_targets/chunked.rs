//! The chunked framer, raw and decoding, fed in pieces.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| proxyd::fuzz::chunked(data));
