//! Fuzzes the TritonHTTP request parser: it must never panic, and what it
//! reports as complete must be consistent with the input.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    triton_http::request::check_parse_invariants(data);
});
