//! Replays the checked-in fuzz corpus through the same invariant check the
//! fuzz target runs, so inputs once found interesting keep being tested by
//! `cargo test`.

use std::path::Path;

#[test]
fn corpus_keeps_passing() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/parse");
    let mut count = 0;
    for entry in std::fs::read_dir(&dir).expect("corpus directory exists") {
        let path = entry.expect("readable corpus entry").path();
        let bytes = std::fs::read(&path).expect("readable corpus file");
        triton_config::check_invariants(&bytes);
        count += 1;
    }
    assert!(count >= 20, "corpus unexpectedly small: {count} files");
}
