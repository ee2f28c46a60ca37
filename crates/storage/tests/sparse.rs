//! Files whose length costs nothing: a sparse file (or a torn write that
//! extended a file) can be gigabytes long without the bytes. Recovery and
//! the dump must not allocate for such a length: the memory they use is
//! what the log really holds. One test in its own binary, so the process's
//! peak resident size (`VmHWM`) measures this test alone.

mod common;

use std::fs;

use common::*;
use triton_storage::format::{self, Record};
use triton_storage::{HardState, WalOptions, MAX_RECORD_BYTES};

/// Peak resident set size of this process so far, in bytes.
fn peak_rss() -> u64 {
    let status = fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("VmHWM:")).unwrap();
    let kb: u64 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
    kb << 10
}

/// What a few small files may add to the peak: far below the gigabytes a
/// read of the whole length would take.
const ALLOWED: u64 = 256 << 20;

#[test]
fn sparse_files_are_never_read_into_memory_whole() {
    let start = peak_rss();
    // The node's options: records up to 4 GiB - 1, so a segment may be
    // about 4.06 GiB long.
    let opts = WalOptions {
        max_record_bytes: MAX_RECORD_BYTES,
        ..WalOptions::default()
    };
    let longest = opts.segment_bytes.max(65) + 9 + u64::from(opts.max_record_bytes) + opts.preallocate_bytes;

    // A last segment of that length holding a header and one hard state:
    // the rest reads as zeros, the preallocated tail of a log. Accepted, as
    // such a tail is, without reading the zeros into memory.
    let dir = fast_tempdir();
    let path = dir.path().join(format::segment_file_name(1, 1));
    let mut bytes = format::encode_segment_header(1, 1).to_vec();
    let hs = HardState {
        term: 3,
        vote: 1,
        commit: 0,
    };
    format::encode_record(&mut bytes, &Record::HardState(hs));
    fs::write(&path, &bytes).unwrap();
    fs::OpenOptions::new()
        .write(true)
        .open(&path)
        .unwrap()
        .set_len(longest)
        .unwrap();
    let (wal, rec) = open(dir.path(), &opts);
    assert_eq!(
        (rec.hard_state, rec.entries.len(), rec.repaired_tail.clone()),
        (hs, 0, None)
    );
    drop(wal);
    let after_recovery = peak_rss();
    assert!(
        after_recovery < start + ALLOWED,
        "recovering a sparse {longest}-byte segment raised the peak RSS from {start} to {after_recovery}"
    );
    // The dump reads it the same way.
    let mut out = Vec::new();
    let summary = triton_storage::inspect::dump(dir.path(), &opts, true, &mut out).unwrap();
    assert_eq!(
        (summary.records, summary.problems),
        (1, 0),
        "{}",
        String::from_utf8_lossy(&out)
    );
    let after_dump = peak_rss();
    assert!(
        after_dump < start + ALLOWED,
        "dumping a sparse {longest}-byte segment raised the peak RSS from {start} to {after_dump}"
    );
    drop(dir);

    // A snapshot whose header announces a 4 GiB membership blob, in a
    // sparse file exactly as long as the header says: refused by its header
    // (a membership is a few bytes a member), not read before its checksum.
    let dir = fast_tempdir();
    let header = format::encode_snapshot_header(&format::SnapshotHeader {
        index: 5,
        term: 2,
        membership_len: u32::MAX,
        data_len: 0,
    });
    let snap = dir.path().join(format::snapshot_file_name(5, 2));
    fs::write(&snap, header).unwrap();
    fs::OpenOptions::new()
        .write(true)
        .open(&snap)
        .unwrap()
        .set_len(44 + u64::from(u32::MAX))
        .unwrap();
    let (_, rec) = open(dir.path(), &opts);
    assert_eq!(rec.snapshot, None);
    assert_eq!(rec.ignored_snapshots.len(), 1);
    assert!(
        rec.ignored_snapshots[0].1.contains("over the limit"),
        "{:?}",
        rec.ignored_snapshots
    );
    let after_snapshot = peak_rss();
    assert!(
        after_snapshot < start + ALLOWED,
        "checking a sparse snapshot raised the peak RSS from {start} to {after_snapshot}"
    );
}
