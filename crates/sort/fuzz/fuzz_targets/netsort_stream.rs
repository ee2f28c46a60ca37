//! Feeds arbitrary bytes to a netsort receiver (hello check, then the frame
//! decoder), as a peer connection would: it must never panic, allocate past
//! its frame size, or hand on a record that is not its own, and what it
//! accepts must be exactly what the frames carried.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = triton_sort::fuzzing::check_netsort_stream(data);
});
