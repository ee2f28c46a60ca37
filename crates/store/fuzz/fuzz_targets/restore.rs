//! Fuzz target: restores a snapshot built from the input (the first byte
//! chooses whether a valid checksum is appended, see
//! `triton_store::fuzzing`). Restore must return Ok or an error, never panic,
//! and an accepted snapshot must be canonical and keep the invariants.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = triton_store::fuzzing::restore_and_check(data);
});
