//! `triton wal dump` on real WAL directories: a clean log lists its records and
//! exits 0; a log with a flipped byte mid-log reports the damaged offset and
//! exits 2; it never modifies the directory. It reads a log as the node does:
//! with the node's record limit (a healthy log with a record over 64 MiB is
//! not "damaged"), and with a bounded amount of work however the damage is
//! crafted.

use std::path::PathBuf;
use std::process::Command;

use triton_storage::format;
use triton_storage::{HardState, LogEntry, Wal, WalOptions, MAX_RECORD_BYTES};

/// A scratch directory removed on drop, even when the test panics.
struct Scratch(PathBuf);

impl Scratch {
    fn new(name: &str) -> Scratch {
        let dir = std::env::temp_dir().join(format!("triton-wal-dump-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        Scratch(dir)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn write_log(dir: &std::path::Path) -> PathBuf {
    let (mut wal, _) = Wal::open(dir, WalOptions::default()).unwrap();
    let entries: Vec<LogEntry> = (1..=5)
        .map(|index| LogEntry {
            index,
            term: 2,
            payload: vec![index as u8; 20],
        })
        .collect();
    wal.append(&entries).unwrap();
    wal.set_hard_state(HardState {
        term: 2,
        vote: 1,
        commit: 4,
    })
    .unwrap();
    wal.sync().unwrap();
    wal.segment_paths()[0].clone()
}

fn dump(dir: &std::path::Path) -> (i32, String) {
    dump_with(&[], dir)
}

fn dump_with(args: &[&str], dir: &std::path::Path) -> (i32, String) {
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
fn dump_lists_a_clean_log() {
    let scratch = Scratch::new("clean");
    write_log(&scratch.0);
    let (code, text) = dump(&scratch.0);
    assert_eq!(code, 0, "{text}");
    assert!(text.contains("entry index=5 term=2 payload=20B"), "{text}");
    assert!(text.contains("hard-state term=2 vote=1 commit=4"), "{text}");
    assert!(text.contains("0 problems"), "{text}");
}

#[test]
fn dump_reports_a_flipped_byte_with_its_offset_and_changes_nothing() {
    let scratch = Scratch::new("flipped");
    let seg = write_log(&scratch.0);
    let mut bytes = std::fs::read(&seg).unwrap();
    // Segment header (32) + hard-state record (33) = 65: the first entry record.
    bytes[80] ^= 0x04;
    std::fs::write(&seg, &bytes).unwrap();
    let (code, text) = dump(&scratch.0);
    assert_eq!(code, 2, "{text}");
    assert!(text.contains("@65: DAMAGED: checksum mismatch"), "{text}");
    assert!(text.contains("1 problems"), "{text}");
    assert_eq!(std::fs::read(&seg).unwrap(), bytes, "dump must not modify the log");
    // And the node's recovery refuses it, naming the file and offset.
    let err = Wal::open(&scratch.0, WalOptions::default()).unwrap_err().to_string();
    assert!(
        err.contains(&seg.display().to_string()) && err.contains("byte offset 65"),
        "{err}"
    );
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
    let (code, text) = dump(scratch.path());
    assert_eq!(code, 0, "{text}");
    assert!(
        text.contains(&format!("entry index=1 term=1 payload={}B", body - 16)),
        "{text}"
    );
    assert!(text.contains("0 problems"), "{text}");
    let (code, text) = dump_with(&["--summary"], scratch.path());
    assert_eq!(code, 0, "{text}");
    assert!(!text.contains("entry index=1"), "{text}");
    // A smaller limit, given on purpose, still reports the record.
    let (code, text) = dump_with(&["--max-record-bytes", "67108864"], scratch.path());
    assert_eq!(code, 2, "{text}");
}

/// The reviewer's generator (`mkdumphang.py`), small: blocks of damaged
/// records claiming long bodies, each block ending in a valid record. The
/// dump gives up once its one checksum budget is spent, and says so.
#[test]
fn dump_of_crafted_damage_gives_up_and_says_so() {
    let scratch = tempfile::tempdir().unwrap();
    let seg = triton_storage::fuzzing::crafted_damage_segment((1 << 20) | 0x5555);
    std::fs::write(scratch.path().join(format::segment_file_name(1, 1)), &seg).unwrap();
    // A budget per damaged record made this about 200 * 59 MiB of checksums.
    let (code, text) = dump_with(&["--summary"], scratch.path());
    assert_eq!(code, 2, "{text}");
    assert!(text.contains("gave up scanning for a valid record"), "{text}");
}
