#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    triton_surfstore::fuzzing::network_input(data);
});
