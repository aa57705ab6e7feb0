//! HTTP/2 frame decoding, whole and in pieces, and frames written back.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| proxyd::fuzz::h2_frames(data));
