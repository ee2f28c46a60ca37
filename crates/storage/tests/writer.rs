//! The group-commit writer thread.

mod common;

use std::sync::mpsc;

use common::*;
use triton_storage::{HardState, SnapshotMeta, StorageError, WalOptions, WalWriter, WriteBatch};

#[test]
fn queued_batches_complete_in_order_and_are_durable() {
    let dir = tempfile::tempdir().unwrap();
    let opts = small_opts();
    let (wal, _) = open(dir.path(), &opts);
    let writer = WalWriter::spawn(wal).unwrap();
    let (tx, rx) = mpsc::channel();
    for i in 1..=200u64 {
        let tx = tx.clone();
        let batch = WriteBatch {
            entries: vec![entry(i, 1, 30)],
            hard_state: Some(HardState {
                term: 1,
                vote: 1,
                commit: i - 1,
            }),
        };
        writer.submit(batch, move |r| tx.send((i, r)).unwrap()).unwrap();
    }
    drop(tx);
    let done: Vec<_> = rx.iter().collect();
    assert_eq!(done.len(), 200);
    for (n, (i, r)) in done.iter().enumerate() {
        assert_eq!(*i, n as u64 + 1, "completions out of order");
        assert!(r.is_ok(), "{r:?}");
    }
    let wal = writer.shutdown().unwrap();
    assert_eq!(wal.last_index(), 200);
    drop(wal);
    let (_, rec) = open(dir.path(), &opts);
    assert_eq!(rec.entries, entries(1, 200, 1, 30));
    assert_eq!(rec.hard_state.commit, 199);
}

#[test]
fn a_refused_batch_fails_alone_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let opts = WalOptions::default();
    let (wal, _) = open(dir.path(), &opts);
    let writer = WalWriter::spawn(wal).unwrap();
    writer
        .write(WriteBatch {
            entries: entries(1, 3, 2, 4),
            hard_state: Some(HardState {
                term: 2,
                vote: 0,
                commit: 0,
            }),
        })
        .unwrap();
    // Entries are fine but the hard state goes back a term: nothing is written.
    let err = writer
        .write(WriteBatch {
            entries: entries(4, 4, 2, 4),
            hard_state: Some(HardState {
                term: 1,
                vote: 0,
                commit: 0,
            }),
        })
        .unwrap_err();
    assert!(matches!(*err, StorageError::InvalidHardState { .. }), "{err}");
    let err = writer
        .write(WriteBatch {
            entries: entries(9, 9, 2, 4),
            hard_state: None,
        })
        .unwrap_err();
    assert!(
        matches!(*err, StorageError::NonContiguous { expected: 4, got: 9 }),
        "{err}"
    );
    writer
        .write(WriteBatch {
            entries: entries(4, 5, 2, 4),
            hard_state: None,
        })
        .unwrap();
    let (tx, rx) = mpsc::channel();
    writer
        .save_snapshot(
            SnapshotMeta {
                index: 2,
                term: 2,
                membership: vec![],
            },
            b"s".to_vec(),
            move |r| tx.send(r).unwrap(),
        )
        .unwrap();
    rx.recv().unwrap().unwrap();
    drop(writer);
    let (wal, rec) = open(dir.path(), &opts);
    assert_eq!(rec.entries, entries(3, 5, 2, 4));
    assert_eq!(rec.hard_state.term, 2);
    assert_eq!(wal.load_snapshot().unwrap().unwrap().1, b"s".to_vec());
}

#[test]
fn batches_queued_during_a_sync_share_the_next_one() {
    let dir = tempfile::tempdir().unwrap();
    let (wal, _) = open(dir.path(), &WalOptions::default());
    let writer = WalWriter::spawn(wal).unwrap();
    // The first batch's completion holds the writer thread until 100 more
    // batches are queued, so they go out in at most one more group commit.
    let (release_tx, release_rx) = mpsc::channel::<()>();
    let (done_tx, done_rx) = mpsc::channel();
    let first_done = done_tx.clone();
    writer
        .submit(
            WriteBatch {
                entries: vec![entry(1, 1, 8)],
                hard_state: None,
            },
            move |r| {
                release_rx.recv().unwrap();
                first_done.send(r).unwrap();
            },
        )
        .unwrap();
    for i in 2..=101 {
        let tx = done_tx.clone();
        writer
            .submit(
                WriteBatch {
                    entries: vec![entry(i, 1, 8)],
                    hard_state: None,
                },
                move |r| tx.send(r).unwrap(),
            )
            .unwrap();
    }
    release_tx.send(()).unwrap();
    drop(done_tx);
    assert!(done_rx.iter().take(101).all(|r| r.is_ok()));
    let wal = writer.shutdown().unwrap();
    assert_eq!(wal.last_index(), 101);
    // The first group may already hold some (or all) of the later batches if
    // they were queued before the thread woke up; either way at most two syncs.
    let syncs = wal.sync_count();
    assert!((1..=2).contains(&syncs), "{syncs} syncs for 101 batches");
}
