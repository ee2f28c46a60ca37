//! Arbitrary bytes as a server-sent file name (first line) and as file
//! content: accepted names never leave BASEDIR, chunking covers the content.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    triton_surfsync::check_invariants(data);
});
