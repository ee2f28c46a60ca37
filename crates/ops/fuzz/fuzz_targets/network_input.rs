//! Bytes from the network through the HTTP face's and `/status` parsers.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    triton_ops::check_network_input(data);
});
