//! Runs the checked-in corpus of the `parse_request` fuzz target through the
//! same checks as the fuzzer, so it keeps running under `cargo test`.

use std::path::Path;

use triton_fileserver::fuzzing::parse_stream;

#[test]
fn parse_request_corpus_never_panics() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/parse_request");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()))
        .map(|e| e.expect("dir entry").path())
        .collect();
    files.sort();
    assert!(
        files.len() >= 20,
        "corpus at {} has {} files",
        dir.display(),
        files.len()
    );
    for f in files {
        let input = std::fs::read(&f).unwrap();
        parse_stream(&input);
    }
}

/// The checks have teeth: a parser answer that breaks a promise is caught.
#[test]
#[should_panic(expected = "re-encoded")]
fn parse_stream_catches_a_non_round_tripping_request() {
    // A name with a space cannot be sent; encoding it yields a 3-field read
    // line, which the check must flag when fed such a request.
    triton_fileserver::fuzzing::check_round_trip(&triton_fileserver::Request::Read {
        name: b"two words".to_vec(),
    });
}
