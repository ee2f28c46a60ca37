//! Runs the checked-in corpus of the `check_jsonl` fuzz target through the
//! same function the target calls, so the corpus keeps running in `cargo test`.

use std::path::Path;

#[test]
fn check_jsonl_corpus_never_panics() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/check_jsonl");
    let mut files = 0;
    let (mut parsed, mut refused) = (0, 0);
    for entry in std::fs::read_dir(&dir).expect("corpus directory") {
        let path = entry.expect("corpus entry").path();
        let data = std::fs::read(&path).expect("corpus file");
        match triton_lincheck::check_jsonl_quick(&data) {
            Ok(_) => parsed += 1,
            Err(_) => refused += 1,
        }
        files += 1;
    }
    assert!(files >= 10, "corpus at {} has {files} files", dir.display());
    // The corpus holds both kinds, so both paths stay exercised.
    assert!(parsed > 0 && refused > 0, "parsed {parsed}, refused {refused}");
}
