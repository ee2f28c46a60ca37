//! Arbitrary bytes as a history file: parsing must refuse bad input with an
//! error, and checking must finish within its budget without panicking (and
//! never call its own minimal failing sub-history linearizable).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = triton_lincheck::check_jsonl_quick(data);
});
