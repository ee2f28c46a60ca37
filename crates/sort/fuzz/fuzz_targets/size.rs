//! Feeds arbitrary bytes to the size parser (`1000`, `1mb`, `2 GB`): it must
//! never panic, and any size it accepts must be its number times its unit.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = triton_sort::fuzzing::check_size(data);
});
