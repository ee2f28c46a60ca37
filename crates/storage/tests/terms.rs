//! Terms read back by recovery: a log whose checksums are fine but whose
//! terms no Raft host can have written is `Corrupt` (handed to the Raft core
//! it would panic at every start), while every log a host does write,
//! including one a crash cut anywhere, recovers.

mod common;

use std::fs;
use std::path::{Path, PathBuf};

use common::*;
use triton_storage::format::{self, Record, MAX_INDEX};
use triton_storage::{parse_segment, HardState, LogEntry, SnapshotMeta, StorageError, Wal, WalOptions};

fn hs(term: u64, vote: u64, commit: u64) -> HardState {
    HardState { term, vote, commit }
}

fn encoded(record: &Record) -> Vec<u8> {
    let mut v = Vec::new();
    format::encode_record(&mut v, record);
    v
}

/// Writes segment 1 (from index 1) holding `records`; returns its path and
/// each record's offset.
fn handmade(dir: &Path, records: &[Record]) -> (PathBuf, Vec<u64>) {
    let path = dir.join(format::segment_file_name(1, 1));
    let mut bytes = format::encode_segment_header(1, 1).to_vec();
    let mut offsets = Vec::new();
    for r in records {
        offsets.push(bytes.len() as u64);
        bytes.extend(encoded(r));
    }
    fs::write(&path, bytes).unwrap();
    (path, offsets)
}

fn e(index: u64, term: u64) -> Record {
    Record::Entry(entry(index, term, 5))
}

/// Opens `dir` and expects `Corrupt` naming `path` at `offset`, whose reason contains `why`.
fn expect_corrupt(dir: &Path, path: &Path, offset: u64, why: &str) {
    match Wal::open(dir, WalOptions::default()) {
        Err(err @ StorageError::Corrupt { .. }) => {
            let StorageError::Corrupt {
                path: p,
                offset: o,
                reason,
            } = &err
            else {
                unreachable!()
            };
            assert_eq!((p.as_path(), *o), (path, offset), "{err}");
            assert!(reason.contains(why), "{err}");
        }
        Err(other) => panic!("expected Corrupt at {offset}, got {other}"),
        Ok((_, rec)) => panic!(
            "expected Corrupt at {offset}, recovered {:?} with {} entries",
            rec.hard_state,
            rec.entries.len()
        ),
    }
}

/// Every record in the segments of `dir`, in order.
fn all_records(dir: &Path) -> Vec<Record> {
    files_with_suffix(dir, ".wal")
        .iter()
        .flat_map(|p| {
            let data = fs::read(p).unwrap();
            parse_segment(p, &data, u32::MAX, true).unwrap().records
        })
        .map(|(_, r)| r)
        .collect()
}

#[test]
fn a_term_past_the_supported_maximum_is_corrupt() {
    // The reviewer's case: the core overflowed `term + 1` at every start.
    let dir = fast_tempdir();
    let (path, at) = handmade(dir.path(), &[Record::HardState(hs(u64::MAX, 0, 0))]);
    expect_corrupt(dir.path(), &path, at[0], "past the supported maximum");

    let dir = fast_tempdir();
    let (path, at) = handmade(
        dir.path(),
        &[Record::HardState(hs(1, 0, 0)), e(1, 1), e(2, MAX_INDEX + 1)],
    );
    expect_corrupt(dir.path(), &path, at[2], "entry term");

    let dir = fast_tempdir();
    let (path, at) = handmade(
        dir.path(),
        &[
            Record::HardState(hs(1, 0, 0)),
            Record::Snapshot {
                index: 0,
                term: u64::MAX,
            },
        ],
    );
    expect_corrupt(dir.path(), &path, at[1], "snapshot marker term");

    // A snapshot file whose header (and name) carries such a term is passed
    // over like any other damaged snapshot, though its checksum is right.
    let dir = fast_tempdir();
    let meta = SnapshotMeta {
        index: 5,
        term: u64::MAX,
        membership: vec![],
    };
    let header = format::encode_snapshot_header(&format::SnapshotHeader {
        index: meta.index,
        term: meta.term,
        membership_len: 0,
        data_len: 3,
    });
    let mut bytes = header.to_vec();
    bytes.extend_from_slice(b"abc");
    let crc = crc32c::crc32c(&bytes);
    bytes.extend_from_slice(&crc.to_le_bytes());
    let snap = dir.path().join(format::snapshot_file_name(meta.index, meta.term));
    fs::write(&snap, &bytes).unwrap();
    let (_, rec) = open(dir.path(), &WalOptions::default());
    assert_eq!(rec.snapshot, None);
    assert_eq!(rec.ignored_snapshots.len(), 1, "{:?}", rec.ignored_snapshots);
    assert!(
        rec.ignored_snapshots[0].1.contains("past the supported maximum"),
        "{:?}",
        rec.ignored_snapshots
    );
}

#[test]
fn entry_terms_that_decrease_are_corrupt() {
    let dir = fast_tempdir();
    let (path, at) = handmade(dir.path(), &[Record::HardState(hs(3, 0, 0)), e(1, 2), e(2, 3), e(3, 2)]);
    expect_corrupt(dir.path(), &path, at[3], "terms in a log never decrease");

    // A truncation replaces a suffix: the new entry follows the kept one.
    let dir = fast_tempdir();
    let (path, at) = handmade(
        dir.path(),
        &[
            Record::HardState(hs(3, 0, 0)),
            e(1, 2),
            e(2, 3),
            Record::Truncate { from: 2 },
            e(2, 1),
        ],
    );
    expect_corrupt(dir.path(), &path, at[4], "terms in a log never decrease");

    // Nor below the term of the snapshot the log follows.
    let dir = fast_tempdir();
    let (mut wal, _) = open(dir.path(), &WalOptions::default());
    wal.append(&entries(1, 5, 4, 5)).unwrap();
    wal.set_hard_state(hs(4, 0, 5)).unwrap();
    let meta = SnapshotMeta {
        index: 5,
        term: 4,
        membership: vec![],
    };
    wal.save_snapshot(&meta, b"five").unwrap();
    let path = wal.segment_paths().last().unwrap().clone();
    drop(wal);
    let end = triton_storage::records_end(&path, u32::MAX).unwrap();
    let file = fs::OpenOptions::new().write(true).open(&path).unwrap();
    std::os::unix::fs::FileExt::write_all_at(&file, &encoded(&e(6, 3)), end).unwrap();
    expect_corrupt(dir.path(), &path, end, "below the term 4 of the snapshot");
}

#[test]
fn a_hard_state_below_a_term_already_in_the_log_is_corrupt() {
    // The reviewer's case: the core panicked in `append_own` ("terms in the
    // log never decrease") as soon as it led a term below 9.
    let dir = fast_tempdir();
    let (path, at) = handmade(
        dir.path(),
        &[
            Record::HardState(hs(5, 1, 0)),
            e(1, 5),
            e(2, 9),
            Record::HardState(hs(5, 1, 2)),
        ],
    );
    expect_corrupt(dir.path(), &path, at[3], "below term 9");

    // Nor below the term of a snapshot the log says it saved.
    let dir = fast_tempdir();
    let (mut wal, _) = open(dir.path(), &WalOptions::default());
    wal.append(&entries(1, 3, 2, 5)).unwrap();
    wal.set_hard_state(hs(2, 1, 3)).unwrap();
    let meta = SnapshotMeta {
        index: 8,
        term: 7,
        membership: vec![],
    };
    wal.save_snapshot(&meta, b"eight").unwrap();
    let path = wal.segment_paths().last().unwrap().clone();
    drop(wal);
    let end = triton_storage::records_end(&path, u32::MAX).unwrap();
    let file = fs::OpenOptions::new().write(true).open(&path).unwrap();
    std::os::unix::fs::FileExt::write_all_at(&file, &encoded(&Record::HardState(hs(2, 1, 4))), end).unwrap();
    expect_corrupt(dir.path(), &path, end, "below term 7");

    // A hard state whose term goes back.
    let dir = fast_tempdir();
    let (path, at) = handmade(
        dir.path(),
        &[Record::HardState(hs(9, 2, 0)), Record::HardState(hs(5, 2, 0))],
    );
    expect_corrupt(dir.path(), &path, at[1], "goes back from 9 to 5");
}

/// A host writes a new term's entries, then the hard state carrying that
/// term, in one batch: a crash that keeps the entries but loses the hard
/// state leaves a log whose last term is above its hard state's. That log
/// recovers, with the term raised to the log's and no vote (none in that
/// term was durable, so none was sent), written back so the log says it.
#[test]
fn a_hard_state_lost_after_entries_of_a_new_term_is_recovered_with_that_term() {
    let dir = fast_tempdir();
    let (path, _) = handmade(dir.path(), &[Record::HardState(hs(5, 2, 1)), e(1, 5), e(2, 9)]);
    let (wal, rec) = open(dir.path(), &WalOptions::default());
    assert_eq!(rec.hard_state, hs(9, 0, 1));
    assert_eq!(wal.hard_state(), hs(9, 0, 1));
    assert_eq!(rec.entries.len(), 2);
    drop(wal);
    assert_eq!(all_records(dir.path()).last(), Some(&Record::HardState(hs(9, 0, 1))));
    let len = fs::metadata(&path).unwrap().len();
    let (_, again) = open(dir.path(), &WalOptions::default());
    assert_eq!(again.hard_state, hs(9, 0, 1));
    assert_eq!(fs::metadata(&path).unwrap().len(), len, "nothing more to write");

    // The batch rolled into a new segment part way: the new segment starts
    // with a copy of the old hard state, after entries of the new term.
    let dir = fast_tempdir();
    let opts = WalOptions {
        segment_bytes: 200,
        preallocate_bytes: 0,
        write_buffer_bytes: 0,
        ..WalOptions::default()
    };
    let (mut wal, _) = open(dir.path(), &opts);
    wal.append(&entries(1, 2, 5, 20)).unwrap();
    wal.set_hard_state(hs(5, 2, 2)).unwrap();
    wal.sync().unwrap();
    let before = wal.segment_paths().len();
    wal.append(&entries(3, 12, 9, 20)).unwrap();
    assert!(wal.segment_paths().len() > before, "the batch did not roll");
    // Killed here: the entries reached the kernel, their hard state did not.
    drop(wal);
    let (_, rec) = open(dir.path(), &opts);
    assert_eq!(rec.hard_state, hs(9, 0, 2));
    assert_eq!(rec.entries.len(), 12);

    // A snapshot installed from a leader of a newer term is saved before
    // the hard state that carries the term.
    let dir = fast_tempdir();
    let (mut wal, _) = open(dir.path(), &WalOptions::default());
    wal.append(&entries(1, 3, 2, 5)).unwrap();
    wal.set_hard_state(hs(2, 1, 3)).unwrap();
    wal.sync().unwrap();
    let meta = SnapshotMeta {
        index: 8,
        term: 7,
        membership: vec![],
    };
    wal.save_snapshot(&meta, b"eight").unwrap();
    drop(wal);
    let (_, rec) = open(dir.path(), &WalOptions::default());
    assert_eq!(rec.snapshot, Some(meta));
    assert_eq!(rec.hard_state, hs(7, 0, 3));
}

/// A Raft host's writes, in the node's order (`driver::persist`: snapshot,
/// entries, hard state, then one sync), with kills (the `Wal` dropped
/// without a sync, as by kill -9: what reached the kernel stays) between
/// any two calls: as a leader, as a follower taking a new leader's entries
/// (often a conflicting suffix) with a new term and vote, commit-only hard
/// states, local compactions and snapshots installed from newer leaders.
/// Tiny segments and write buffer put kills and rolls in every position.
/// Every log it leaves recovers, and recovery never hands back a term below
/// one in the log, nor loses a synced term or vote.
#[test]
fn every_log_a_raft_host_leaves_behind_a_kill_recovers() {
    let opts = WalOptions {
        segment_bytes: 600,
        max_record_bytes: 4096,
        write_buffer_bytes: 40,
        preallocate_bytes: 256,
    };
    for seed in 1..=12u64 {
        let dir = fast_tempdir();
        let mut rng = Rng::seeded(seed);
        let (mut wal, rec) = open(dir.path(), &opts);
        let mut state = rec.hard_state;
        let mut synced = state;
        let mut kills = 0;
        for step in 0..400 {
            let ctx = format!("seed {seed} step {step}");
            let kill_now = |rng: &mut Rng| rng.below(6) == 0;
            let mut killed = match rng.below(10) {
                0..=2 => {
                    // Leader of `state.term`: its own entries, then the trailer hard state.
                    let first = wal.last_index() + 1;
                    let n = 1 + rng.below(4);
                    let batch: Vec<LogEntry> = (first..first + n)
                        .map(|i| entry(i, state.term.max(1), rng.below(40) as usize))
                        .collect();
                    state.term = state.term.max(1);
                    wal.append(&batch).unwrap();
                    let killed = kill_now(&mut rng);
                    if !killed {
                        wal.set_hard_state(state).unwrap();
                    }
                    killed
                }
                3..=5 => {
                    // Follower of a new leader: its entries (from somewhere in
                    // our log, or right after it) and the new term in one Ready.
                    state = HardState {
                        term: state.term + 1 + rng.below(2),
                        vote: rng.below(4),
                        commit: state.commit,
                    };
                    let from = wal.first_index() + rng.below(wal.last_index() + 2 - wal.first_index());
                    let n = 1 + rng.below(5);
                    let batch: Vec<LogEntry> = (from..from + n)
                        .map(|i| entry(i, state.term, rng.below(60) as usize))
                        .collect();
                    wal.append(&batch).unwrap();
                    let killed = kill_now(&mut rng);
                    if !killed {
                        wal.set_hard_state(state).unwrap();
                    }
                    killed
                }
                6 => {
                    // Commit-only: written, not synced.
                    state.commit = wal.last_index();
                    wal.set_hard_state(state).unwrap();
                    if !kill_now(&mut rng) {
                        continue;
                    }
                    true
                }
                7 if wal.last_index() >= wal.first_index() => {
                    // Local compaction.
                    let index = wal.first_index() + rng.below(wal.last_index() + 1 - wal.first_index());
                    let meta = SnapshotMeta {
                        index,
                        term: wal.term_at(index).unwrap(),
                        membership: vec![1],
                    };
                    wal.save_snapshot(&meta, b"local").unwrap();
                    kill_now(&mut rng)
                }
                8 => {
                    // A snapshot from a newer leader, then the term it brings.
                    state = HardState {
                        term: state.term + 1,
                        vote: 0,
                        commit: state.commit,
                    };
                    let index = wal.first_index() + rng.below(wal.last_index() + 3 - wal.first_index());
                    let meta = SnapshotMeta {
                        index,
                        term: state.term,
                        membership: vec![],
                    };
                    wal.save_snapshot(&meta, b"installed").unwrap();
                    let killed = kill_now(&mut rng);
                    if !killed {
                        wal.set_hard_state(state).unwrap();
                    }
                    killed
                }
                _ => true,
            };
            if !killed {
                wal.sync().unwrap();
                synced = wal.hard_state();
                killed = kill_now(&mut rng);
            }
            if !killed {
                continue;
            }
            kills += 1;
            drop(wal);
            let (w, rec) = Wal::open(dir.path(), opts.clone()).unwrap_or_else(|e| panic!("{ctx}: {e}"));
            wal = w;
            let floor = rec.snapshot.as_ref().map_or((0, 0), |m| (m.index, m.term));
            let mut last_term = floor.1;
            for (i, en) in rec.entries.iter().enumerate() {
                assert_eq!(en.index, floor.0 + 1 + i as u64, "{ctx}");
                assert!(en.term >= last_term, "{ctx}: terms decrease at {}", en.index);
                last_term = en.term;
            }
            let hs = rec.hard_state;
            assert!(hs.term >= last_term, "{ctx}: {hs:?} below the log's term {last_term}");
            assert!(hs.term >= synced.term, "{ctx}: {hs:?} lost the synced {synced:?}");
            if hs.term == synced.term {
                assert_eq!(hs.vote, synced.vote, "{ctx}: a synced vote was lost");
            }
            state = hs;
            synced = hs;
        }
        assert!(kills > 20, "seed {seed}: only {kills} kills");
        // And a clean stop reopens exactly as it was.
        wal.sync().unwrap();
        let before = (wal.hard_state(), wal.first_index(), wal.last_index());
        drop(wal);
        let (wal, rec) = open(dir.path(), &opts);
        assert_eq!(
            (rec.hard_state, wal.first_index(), wal.last_index()),
            before,
            "seed {seed}"
        );
    }
}
