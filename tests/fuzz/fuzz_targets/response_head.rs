//! Response heads: parse and rewrite for HTTP/1.1 and HTTP/1.0 clients.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| proxyd::fuzz::response_head(data));
