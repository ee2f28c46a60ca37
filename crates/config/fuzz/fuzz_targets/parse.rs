//! Feeds arbitrary bytes to the config parser: it must never panic, and any
//! config it accepts must validate and survive a TOML round trip.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    triton_config::check_invariants(data);
});
