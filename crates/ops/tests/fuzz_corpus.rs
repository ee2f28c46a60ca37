//! Replays the checked-in fuzz corpus through the same check the fuzz
//! target runs, so the corpus keeps running under `cargo test`.

use std::path::Path;

#[test]
fn corpus_keeps_passing() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/network_input");
    let mut count = 0;
    for entry in std::fs::read_dir(&dir).expect("corpus directory exists") {
        let bytes = std::fs::read(entry.expect("corpus entry").path()).expect("corpus file");
        triton_ops::check_network_input(&bytes);
        count += 1;
    }
    assert!(count >= 10, "corpus unexpectedly small: {count} files");
}
