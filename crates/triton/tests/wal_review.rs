//! `triton wal dump` reads a log as the node does: with the node's record
//! limit (a healthy log with a record over 64 MiB is not "damaged"), and
//! with a bounded amount of work however the damage is crafted.

use std::path::Path;
use std::process::Command;

use triton_storage::format::{self, Record};
use triton_storage::{HardState, LogEntry, Wal, WalOptions, MAX_RECORD_BYTES};

fn dump(args: &[&str], dir: &Path) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_triton"))
        .args(["wal", "dump"])
        .args(args)
        .arg(dir)
        .output()
        .unwrap();
    (
        out.status.code().unwrap(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

#[test]
fn dump_accepts_a_record_over_64_mib_as_the_node_does() {
    let scratch = tempfile::tempdir().unwrap();
    // The node's options (`triton_node::server`): the largest record limit.
    let opts = WalOptions {
        max_record_bytes: MAX_RECORD_BYTES,
        ..WalOptions::default()
    };
    let (mut wal, _) = Wal::open(scratch.path(), opts).unwrap();
    let body = (64 << 20) + 1;
    wal.append(&[LogEntry {
        index: 1,
        term: 1,
        payload: vec![0x5a; body - 16],
    }])
    .unwrap();
    wal.set_hard_state(HardState {
        term: 1,
        vote: 1,
        commit: 1,
    })
    .unwrap();
    wal.sync().unwrap();
    drop(wal);
    let (code, text) = dump(&[], scratch.path());
    assert_eq!(code, 0, "{text}");
    assert!(
        text.contains(&format!("entry index=1 term=1 payload={}B", body - 16)),
        "{text}"
    );
    assert!(text.contains("0 problems"), "{text}");
    let (code, text) = dump(&["--summary"], scratch.path());
    assert_eq!(code, 0, "{text}");
    assert!(!text.contains("entry index=1"), "{text}");
    // A smaller limit, given on purpose, still reports the record.
    let (code, text) = dump(&["--max-record-bytes", "67108864"], scratch.path());
    assert_eq!(code, 2, "{text}");
}

/// The reviewer's generator (`mkdumphang.py`), small: blocks of damaged
/// records claiming long bodies, each block ending in a valid record. The
/// dump gives up once its one checksum budget is spent, and says so.
#[test]
fn dump_of_crafted_damage_gives_up_and_says_so() {
    let scratch = tempfile::tempdir().unwrap();
    let claimed: u32 = (1 << 20) | 0x5555;
    let mut candidate = claimed.to_le_bytes().to_vec();
    candidate.extend_from_slice(&[0, 0, 0, 0, format::REC_ENTRY]);
    let mut good = Vec::new();
    format::encode_record(&mut good, &Record::HardState(HardState::default()));
    let mut seg = format::encode_segment_header(1, 1).to_vec();
    seg.extend_from_slice(&good);
    for _ in 0..200 {
        for _ in 0..60 {
            seg.extend_from_slice(&candidate);
        }
        seg.extend_from_slice(&good);
    }
    seg.extend(std::iter::repeat_n(7u8, claimed as usize + 64));
    std::fs::write(scratch.path().join(format::segment_file_name(1, 1)), &seg).unwrap();
    // A budget per damaged record made this about 200 * 59 MiB of checksums.
    let (code, text) = dump(&["--summary"], scratch.path());
    assert_eq!(code, 2, "{text}");
    assert!(text.contains("gave up scanning for a valid record"), "{text}");
}
