//! Replays the checked-in fuzz corpus through the same invariant checker the
//! fuzz target uses, so regressions found by fuzzing stay caught by
//! `cargo test` without needing cargo-fuzz.

use std::path::Path;

#[test]
fn corpus_keeps_passing() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/parse_request");
    let mut count = 0;
    for entry in std::fs::read_dir(&dir).expect("corpus directory exists") {
        let path = entry.unwrap().path();
        let data = std::fs::read(&path).unwrap();
        triton_http::request::check_parse_invariants(&data);
        count += 1;
    }
    assert!(count >= 20, "corpus unexpectedly small: {count} files");
}
