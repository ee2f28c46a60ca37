//! Runs the checked-in corpus of the `wal_recover` fuzz target through the
//! same function the fuzzer calls, so it keeps running under `cargo test`.

use std::path::Path;

use triton_storage::fuzzing::recover_segment_bytes;

#[test]
fn wal_recover_corpus_never_panics() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/wal_recover");
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
        let data = std::fs::read(f).unwrap();
        match recover_segment_bytes(&data) {
            Ok(_) => ok += 1,
            Err(_) => refused += 1,
        }
    }
    // The corpus holds both kinds, so both paths stay exercised.
    assert!(ok > 0 && refused > 0, "{ok} recovered, {refused} refused");
    // Terms no Raft host writes are refused; a hard state lost after entries
    // of a new term is recovered with that term.
    for name in ["term-past-max", "term-decreasing", "hard-state-below-log-term"] {
        let data = std::fs::read(dir.join(name)).unwrap();
        assert!(recover_segment_bytes(&data).is_err(), "{name}");
    }
    let data = std::fs::read(dir.join("lost-hard-state")).unwrap();
    assert_eq!(recover_segment_bytes(&data).unwrap().hard_state.term, 9);
}

#[test]
fn fuzz_entry_point_recovers_a_torn_segment_and_refuses_a_corrupt_one() {
    use triton_storage::format::{encode_record, encode_segment_header, Record};
    use triton_storage::LogEntry;
    let mut seg = encode_segment_header(1, 1).to_vec();
    for i in 1..=3 {
        encode_record(
            &mut seg,
            &Record::Entry(LogEntry {
                index: i,
                term: 1,
                payload: vec![i as u8; 5],
            }),
        );
    }
    let rec = recover_segment_bytes(&seg[..seg.len() - 2]).unwrap();
    assert_eq!(rec.entries.len(), 2);
    assert!(rec.repaired_tail.is_some());
    let mut bad = seg.clone();
    bad[40] ^= 0x80;
    assert!(recover_segment_bytes(&bad).is_err());
}
