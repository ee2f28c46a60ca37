//! Runs the checked-in corpus of the `restore` fuzz target through the same
//! function the fuzzer calls, so it keeps running under `cargo test`.

use std::path::Path;

use triton_store::fuzzing::restore_and_check;

#[test]
fn restore_corpus_never_panics() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/restore");
    let mut files: Vec<_> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().path()).collect();
    files.sort();
    assert!(
        files.len() >= 10,
        "corpus at {} has {} files",
        dir.display(),
        files.len()
    );
    let (mut ok, mut refused) = (0, 0);
    for f in &files {
        match restore_and_check(&std::fs::read(f).unwrap()) {
            Ok(_) => ok += 1,
            Err(_) => refused += 1,
        }
    }
    // The corpus holds both kinds, so both paths stay exercised.
    assert!(ok > 0 && refused > 0, "{ok} restored, {refused} refused");
}

#[test]
fn fuzz_entry_point_seals_odd_inputs_and_refuses_damage() {
    let snapshot = triton_store::Store::default().snapshot();
    let content = &snapshot[..snapshot.len() - 4];
    let with_mode = |mode: u8, body: &[u8]| [&[mode][..], body].concat();
    assert!(restore_and_check(&with_mode(0, &snapshot)).is_ok());
    assert!(
        restore_and_check(&with_mode(1, content)).is_ok(),
        "odd mode appends the checksum"
    );
    assert!(restore_and_check(&with_mode(0, content)).is_err(), "even mode does not");
    assert!(
        restore_and_check(&with_mode(1, &snapshot)).is_err(),
        "a sealed snapshot has trailing bytes"
    );
    assert!(restore_and_check(&[]).is_err());
}
