//! Fuzz target: parses the input as a connection's byte stream of requests
//! (see `triton_fileserver::fuzzing`). The parser must never panic, must
//! always make progress within the bytes it was given, and every request it
//! accepts must re-encode and parse back to itself.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    triton_fileserver::fuzzing::parse_stream(data);
});
