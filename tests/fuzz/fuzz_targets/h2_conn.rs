//! An HTTP/2 server connection fed arbitrary frames, answering what it passes up.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| proxyd::fuzz::h2_conn(data));
