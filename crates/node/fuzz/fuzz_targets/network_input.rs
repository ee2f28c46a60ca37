//! Fuzz target: a peer's message batch or a membership entry's payload
//! (first byte picks, see `triton_node::fuzzing`). Decoding must refuse or
//! accept, never panic, and accepted input must round-trip.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = triton_node::fuzzing::network_input(data);
});
