//! `triton wal dump` on real WAL directories: a clean log lists its records and
//! exits 0; a log with a flipped byte mid-log reports the damaged offset and
//! exits 2; it never modifies the directory.

use std::path::PathBuf;
use std::process::Command;

use triton_storage::{HardState, LogEntry, Wal, WalOptions};

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
    let out = Command::new(env!("CARGO_BIN_EXE_triton"))
        .arg("wal")
        .arg("dump")
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
