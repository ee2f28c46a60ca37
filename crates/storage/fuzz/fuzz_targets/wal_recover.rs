//! Fuzz target: the input is written as the only segment file of a fresh WAL
//! directory, which is then opened. Recovery must return Ok or an error, never
//! panic, and a repaired log must reopen unchanged.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = triton_storage::fuzzing::recover_segment_bytes(data);
});
