//! Request heads: parse (any limits), route path, and rewrite for the upstream.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| proxyd::fuzz::request_head(data));
