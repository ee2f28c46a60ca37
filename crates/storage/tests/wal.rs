//! Behaviour of the WAL through its public API: appends, hard state,
//! snapshots, compaction and reopening.

mod common;

use common::*;
use triton_storage::{HardState, SnapshotMeta, StorageError, Wal, WalOptions};

#[test]
fn roundtrip_survives_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let opts = WalOptions::default();
    let written = entries(1, 100, 1, 40);
    let hs = HardState {
        term: 1,
        vote: 2,
        commit: 90,
    };
    {
        let (mut wal, rec) = open(dir.path(), &opts);
        assert_eq!(rec.entries, vec![]);
        assert_eq!(rec.hard_state, HardState::default());
        assert_eq!((wal.first_index(), wal.last_index()), (1, 0));
        wal.append(&written[..50]).unwrap();
        wal.append(&written[50..]).unwrap();
        wal.set_hard_state(hs).unwrap();
        wal.sync().unwrap();
        assert_eq!((wal.first_index(), wal.last_index()), (1, 100));
    }
    let (wal, rec) = open(dir.path(), &opts);
    assert_eq!(rec.entries, written);
    assert_eq!(rec.hard_state, hs);
    assert_eq!(rec.snapshot, None);
    assert_eq!(rec.repaired_tail, None);
    assert_eq!((wal.first_index(), wal.last_index()), (1, 100));
    assert_eq!(wal.term_at(100), Some(1));
    assert_eq!(wal.term_at(101), None);
}

#[test]
fn conflicting_suffix_is_replaced_and_survives_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let opts = small_opts();
    {
        let (mut wal, _) = open(dir.path(), &opts);
        wal.append(&entries(1, 10, 1, 100)).unwrap();
        wal.append(&entries(6, 8, 2, 10)).unwrap();
        assert_eq!(wal.last_index(), 8);
        assert_eq!(wal.term_at(6), Some(2));
        wal.append(&entries(9, 9, 2, 10)).unwrap();
        wal.append(&entries(9, 12, 3, 10)).unwrap();
        wal.sync().unwrap();
    }
    let (mut wal, rec) = open(dir.path(), &opts);
    let mut expected = entries(1, 5, 1, 100);
    expected.extend(entries(6, 8, 2, 10));
    expected.extend(entries(9, 12, 3, 10));
    assert_eq!(rec.entries, expected);
    // And it keeps working after recovery.
    wal.append(&entries(13, 13, 3, 1)).unwrap();
    wal.append(&entries(2, 2, 4, 1)).unwrap();
    wal.sync().unwrap();
    drop(wal);
    let (_, rec) = open(dir.path(), &opts);
    assert_eq!(rec.entries.len(), 2);
    assert_eq!(rec.entries[1], entry(2, 4, 1));
}

#[test]
fn hard_state_last_one_wins_across_segments() {
    let dir = tempfile::tempdir().unwrap();
    let opts = small_opts();
    let last = HardState {
        term: 9,
        vote: 3,
        commit: 40,
    };
    {
        let (mut wal, _) = open(dir.path(), &opts);
        for t in 1..=9 {
            wal.set_hard_state(HardState {
                term: t,
                vote: 0,
                commit: 0,
            })
            .unwrap();
            wal.append(&entries(wal.last_index() + 1, wal.last_index() + 5, t, 50))
                .unwrap();
        }
        wal.set_hard_state(last).unwrap();
        wal.sync().unwrap();
        assert!(wal.segment_paths().len() > 2, "expected several segments");
        // Compact everything: the older segments (and their hard states) go.
        wal.save_snapshot(
            &SnapshotMeta {
                index: 45,
                term: 9,
                membership: vec![1],
            },
            b"state",
        )
        .unwrap();
        assert_eq!(wal.segment_paths().len(), 1);
    }
    let (_, rec) = open(dir.path(), &opts);
    assert_eq!(rec.hard_state, last);
    assert_eq!(rec.entries, vec![]);
}

#[test]
fn hard_state_that_breaks_raft_rules_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (mut wal, _) = open(dir.path(), &WalOptions::default());
    wal.set_hard_state(HardState {
        term: 5,
        vote: 1,
        commit: 0,
    })
    .unwrap();
    let err = wal
        .set_hard_state(HardState {
            term: 4,
            vote: 1,
            commit: 0,
        })
        .unwrap_err();
    assert!(matches!(err, StorageError::InvalidHardState { .. }), "{err}");
    let err = wal
        .set_hard_state(HardState {
            term: 5,
            vote: 2,
            commit: 0,
        })
        .unwrap_err();
    assert!(err.to_string().contains("vote changes from 1 to 2"), "{err}");
    wal.set_hard_state(HardState {
        term: 6,
        vote: 2,
        commit: 3,
    })
    .unwrap();
}

#[test]
fn bad_appends_are_refused_and_write_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let opts = WalOptions {
        max_record_bytes: 1000,
        ..WalOptions::default()
    };
    let (mut wal, _) = open(dir.path(), &opts);
    let err = wal.append(&entries(2, 3, 1, 1)).unwrap_err();
    assert!(
        matches!(err, StorageError::NonContiguous { expected: 1, got: 2 }),
        "{err}"
    );
    let mut gap = entries(1, 2, 1, 1);
    gap.push(entry(4, 1, 1));
    assert!(matches!(
        wal.append(&gap).unwrap_err(),
        StorageError::NonContiguous { expected: 3, got: 4 }
    ));
    let err = wal.append(&[entry(1, 1, 985)]).unwrap_err();
    assert!(
        matches!(
            err,
            StorageError::RecordTooLarge {
                index: 1,
                len: 1001,
                max: 1000
            }
        ),
        "{err}"
    );
    wal.append(&[entry(1, 1, 984)]).unwrap();
    wal.append(&entries(2, 5, 1, 1)).unwrap();
    wal.save_snapshot(
        &SnapshotMeta {
            index: 3,
            term: 1,
            membership: vec![],
        },
        b"",
    )
    .unwrap();
    let err = wal.append(&entries(3, 4, 2, 1)).unwrap_err();
    assert!(
        matches!(
            err,
            StorageError::Compacted {
                index: 3,
                snapshot_index: 3
            }
        ),
        "{err}"
    );
    let err = wal
        .save_snapshot(
            &SnapshotMeta {
                index: 3,
                term: 1,
                membership: vec![],
            },
            b"",
        )
        .unwrap_err();
    assert!(matches!(err, StorageError::StaleSnapshot { .. }), "{err}");
    wal.sync().unwrap();
    drop(wal);
    let (_, rec) = open(dir.path(), &opts);
    assert_eq!(rec.entries, entries(4, 5, 1, 1));
}

#[test]
fn segments_roll_and_are_deleted_once_a_snapshot_covers_them() {
    let dir = tempfile::tempdir().unwrap();
    let opts = small_opts();
    let (mut wal, _) = open(dir.path(), &opts);
    wal.append(&entries(1, 200, 1, 64)).unwrap();
    wal.sync().unwrap();
    let before = files_with_suffix(dir.path(), ".wal");
    assert!(before.len() >= 10, "{} segments", before.len());
    let meta = SnapshotMeta {
        index: 150,
        term: 1,
        membership: b"m".to_vec(),
    };
    wal.save_snapshot(&meta, b"snapshot data").unwrap();
    let after = files_with_suffix(dir.path(), ".wal");
    assert!(after.len() < before.len() / 2, "{} -> {}", before.len(), after.len());
    assert_eq!(after, wal.segment_paths());
    assert_eq!((wal.first_index(), wal.last_index()), (151, 200));
    assert_eq!(wal.term_at(150), Some(1));
    assert_eq!(wal.term_at(149), None);
    wal.append(&entries(201, 210, 2, 64)).unwrap();
    wal.sync().unwrap();
    drop(wal);
    let (wal, rec) = open(dir.path(), &opts);
    assert_eq!(rec.snapshot, Some(meta.clone()));
    let mut expected = entries(151, 200, 1, 64);
    expected.extend(entries(201, 210, 2, 64));
    assert_eq!(rec.entries, expected);
    assert_eq!(wal.load_snapshot().unwrap(), Some((meta, b"snapshot data".to_vec())));
    assert_eq!(files_with_suffix(dir.path(), ".snap").len(), 1);
}

#[test]
fn snapshot_from_a_leader_that_conflicts_drops_the_log_after_it() {
    let dir = tempfile::tempdir().unwrap();
    let opts = small_opts();
    let (mut wal, _) = open(dir.path(), &opts);
    wal.append(&entries(1, 20, 1, 8)).unwrap();
    // Our entry 15 has term 1; the leader's has term 2: entries 15.. are dropped.
    let meta = SnapshotMeta {
        index: 15,
        term: 2,
        membership: vec![],
    };
    wal.save_snapshot(&meta, b"a").unwrap();
    assert_eq!((wal.first_index(), wal.last_index()), (16, 15));
    drop(wal);
    let (mut wal, rec) = open(dir.path(), &opts);
    assert_eq!(rec.entries, vec![]);
    assert_eq!(rec.snapshot, Some(meta));
    // A snapshot past our whole log: the log restarts after it.
    let far = SnapshotMeta {
        index: 50,
        term: 3,
        membership: vec![],
    };
    wal.save_snapshot(&far, b"b").unwrap();
    wal.append(&entries(51, 52, 3, 8)).unwrap();
    wal.sync().unwrap();
    drop(wal);
    let (wal, rec) = open(dir.path(), &opts);
    assert_eq!(rec.entries, entries(51, 52, 3, 8));
    assert_eq!(wal.load_snapshot().unwrap().unwrap().1, b"b".to_vec());
}

#[test]
fn local_compaction_keeps_the_entries_after_the_snapshot() {
    let dir = tempfile::tempdir().unwrap();
    let opts = WalOptions::default();
    let (mut wal, _) = open(dir.path(), &opts);
    wal.append(&entries(1, 20, 1, 8)).unwrap();
    wal.save_snapshot(
        &SnapshotMeta {
            index: 15,
            term: 1,
            membership: vec![],
        },
        b"a",
    )
    .unwrap();
    assert_eq!((wal.first_index(), wal.last_index()), (16, 20));
    drop(wal);
    let (_, rec) = open(dir.path(), &opts);
    assert_eq!(rec.entries, entries(16, 20, 1, 8));
}

#[test]
fn leftover_temporary_snapshot_is_ignored_and_removed() {
    let dir = tempfile::tempdir().unwrap();
    let opts = WalOptions::default();
    {
        let (mut wal, _) = open(dir.path(), &opts);
        wal.append(&entries(1, 5, 1, 8)).unwrap();
        wal.save_snapshot(
            &SnapshotMeta {
                index: 3,
                term: 1,
                membership: vec![],
            },
            b"three",
        )
        .unwrap();
    }
    let tmp = dir
        .path()
        .join("snap-00000000000000000005-00000000000000000001.snap.tmp");
    std::fs::write(&tmp, b"half a snapshot").unwrap();
    let (wal, rec) = open(dir.path(), &opts);
    assert!(!tmp.exists());
    assert_eq!(rec.snapshot.unwrap().index, 3);
    assert_eq!(wal.load_snapshot().unwrap().unwrap().1, b"three".to_vec());
}

#[test]
fn torn_snapshot_file_falls_back_to_the_previous_complete_one() {
    let dir = tempfile::tempdir().unwrap();
    let opts = WalOptions::default();
    {
        let (mut wal, _) = open(dir.path(), &opts);
        wal.append(&entries(1, 8, 1, 8)).unwrap();
        wal.save_snapshot(
            &SnapshotMeta {
                index: 3,
                term: 1,
                membership: vec![],
            },
            b"three",
        )
        .unwrap();
    }
    // A newer snapshot file that is cut short, and that no log record depends on
    // (as if the machine died before the snapshot's data reached the disk).
    let good = files_with_suffix(dir.path(), ".snap")[0].clone();
    let mut bytes = std::fs::read(&good).unwrap();
    bytes[12] = 6; // index 6 in the header
    bytes.truncate(bytes.len() - 3);
    let torn = dir.path().join("snap-00000000000000000006-00000000000000000001.snap");
    std::fs::write(&torn, &bytes).unwrap();
    let (wal, rec) = open(dir.path(), &opts);
    assert_eq!(rec.snapshot.as_ref().unwrap().index, 3);
    assert_eq!(rec.entries, entries(4, 8, 1, 8));
    assert_eq!(rec.ignored_snapshots.len(), 1);
    assert_eq!(rec.ignored_snapshots[0].0, torn);
    assert_eq!(wal.load_snapshot().unwrap().unwrap().1, b"three".to_vec());
}

#[test]
fn damaged_snapshot_that_the_log_depends_on_stops_recovery() {
    let dir = tempfile::tempdir().unwrap();
    let opts = WalOptions::default();
    {
        let (mut wal, _) = open(dir.path(), &opts);
        wal.append(&entries(1, 8, 1, 8)).unwrap();
        wal.save_snapshot(
            &SnapshotMeta {
                index: 5,
                term: 1,
                membership: vec![],
            },
            b"five",
        )
        .unwrap();
    }
    let snap = files_with_suffix(dir.path(), ".snap")[0].clone();
    let mut bytes = std::fs::read(&snap).unwrap();
    let last = bytes.len() - 5;
    bytes[last] ^= 0xff;
    std::fs::write(&snap, &bytes).unwrap();
    let err = Wal::open(dir.path(), opts).unwrap_err();
    match &err {
        StorageError::Corrupt { reason, .. } => {
            assert!(reason.contains("snapshot at index 5"), "{err}")
        }
        other => panic!("expected Corrupt, got {other}"),
    }
}

#[test]
fn a_second_open_of_the_same_directory_is_refused_while_the_first_lives() {
    let dir = tempfile::tempdir().unwrap();
    let (wal, _) = open(dir.path(), &WalOptions::default());
    let err = Wal::open(dir.path(), WalOptions::default()).unwrap_err();
    assert!(matches!(err, StorageError::Locked { .. }), "{err}");
    assert!(err.to_string().contains("LOCK"), "{err}");
    drop(wal);
    Wal::open(dir.path(), WalOptions::default()).unwrap();
}

#[test]
fn recovery_makes_what_it_read_durable_before_the_log_is_used() {
    // A process killed before its fsync leaves records in the page cache
    // only. Recovery reads them, and the node may acknowledge them again
    // without rewriting them, so open must fsync every segment it read.
    let dir = tempfile::tempdir().unwrap();
    let opts = small_opts();
    {
        let (mut wal, rec) = open(dir.path(), &opts);
        assert_eq!(rec.synced_segments, 0, "a new log has nothing to recover");
        wal.append(&entries(1, 40, 1, 100)).unwrap();
        // Dropped without `sync`, as by kill -9.
    }
    let files = files_with_suffix(dir.path(), ".wal").len();
    assert!(files > 1, "the entries span several segments");
    let (wal, rec) = open(dir.path(), &opts);
    // What the write buffer still held is gone; what reached the kernel is
    // recovered, and is now on the disk.
    assert!(rec.entries.len() > 30, "{}", rec.entries.len());
    assert_eq!(rec.synced_segments, files);
    assert_eq!(wal.last_index(), rec.entries.len() as u64);
}
