//! Replays the checked-in fuzz corpora through the same checks the fuzz
//! targets run, so inputs once found interesting keep being tested by
//! `cargo test`.

use std::path::Path;

/// Runs every file of `target`'s corpus through `check` (which returns
/// whether the parser accepted it); a corpus that never reaches both
/// outcomes would leave half the checks untested.
fn replay(target: &str, check: fn(&[u8]) -> bool) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus").join(target);
    let (mut count, mut accepted) = (0, 0);
    for entry in std::fs::read_dir(&dir).expect("corpus directory exists") {
        let path = entry.expect("readable corpus entry").path();
        let bytes = std::fs::read(&path).expect("readable corpus file");
        // Shown only if a check panics: which file broke it.
        eprintln!("{}", path.display());
        accepted += usize::from(check(&bytes));
        count += 1;
    }
    assert!(count >= 20, "{target} corpus unexpectedly small: {count} files");
    assert!(
        accepted > 0 && accepted < count,
        "{target} corpus: {accepted} of {count} inputs accepted"
    );
}

#[test]
fn netsort_stream_corpus_keeps_passing() {
    replay("netsort_stream", triton_sort::fuzzing::check_netsort_stream);
}

#[test]
fn netsort_config_corpus_keeps_passing() {
    replay("netsort_config", triton_sort::fuzzing::check_netsort_config);
}

#[test]
fn size_corpus_keeps_passing() {
    replay("size", triton_sort::fuzzing::check_size);
}
