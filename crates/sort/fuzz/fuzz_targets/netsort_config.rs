//! Feeds arbitrary bytes to the netsort config parser: it must never panic,
//! and any config it accepts must be valid and read the same written back.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = triton_sort::fuzzing::check_netsort_config(data);
});
