//! A seeded random walk over the whole API (appends, conflicting suffixes,
//! hard states, local compactions, installed snapshots, reopens) checked
//! against a plain in-memory model after every reopen. Segments are tiny so
//! rolling and segment deletion happen constantly.

mod common;

use common::*;
use triton_storage::{HardState, LogEntry, SnapshotMeta, WalOptions};

#[derive(Default)]
struct Model {
    snapshot: Option<(SnapshotMeta, Vec<u8>)>,
    log: Vec<LogEntry>,
    hard_state: HardState,
}

impl Model {
    fn snap_index(&self) -> u64 {
        self.snapshot.as_ref().map_or(0, |(m, _)| m.index)
    }
    fn last_index(&self) -> u64 {
        self.log.last().map_or(self.snap_index(), |e| e.index)
    }
    fn term_at(&self, index: u64) -> Option<u64> {
        if let Some((m, _)) = &self.snapshot {
            if m.index == index {
                return Some(m.term);
            }
        }
        self.log.iter().find(|e| e.index == index).map(|e| e.term)
    }
}

fn run(seed: u64, steps: usize) {
    let opts = WalOptions {
        segment_bytes: 512,
        max_record_bytes: 4096,
        write_buffer_bytes: 100,
        preallocate_bytes: 300,
    };
    let dir = fast_tempdir();
    let mut rng = Rng::seeded(seed);
    let mut model = Model::default();
    let mut term = 1u64;
    let (mut wal, _) = open(dir.path(), &opts);
    for step in 0..steps {
        let ctx = format!("seed {seed} step {step}");
        match rng.below(20) {
            0..=7 => {
                let first = model.last_index() + 1;
                let batch: Vec<LogEntry> = (first..first + 1 + rng.below(4))
                    .map(|i| entry(i, term, rng.below(60) as usize))
                    .collect();
                wal.append(&batch).unwrap();
                model.log.extend(batch);
            }
            8..=9 if !model.log.is_empty() => {
                // A new leader replaces a suffix.
                term += 1;
                let start = model.snap_index() + 1 + rng.below(model.log.len() as u64);
                let batch: Vec<LogEntry> = (start..start + 1 + rng.below(3))
                    .map(|i| entry(i, term, rng.below(30) as usize))
                    .collect();
                wal.append(&batch).unwrap();
                model.log.retain(|e| e.index < start);
                model.log.extend(batch);
            }
            10..=11 => {
                let hs = HardState {
                    term,
                    vote: rng.below(3),
                    commit: model.last_index(),
                };
                let hs = if hs.term == model.hard_state.term && model.hard_state.vote != 0 {
                    HardState {
                        vote: model.hard_state.vote,
                        ..hs
                    }
                } else {
                    hs
                };
                wal.set_hard_state(hs).unwrap();
                model.hard_state = hs;
            }
            12 if !model.log.is_empty() => {
                // Local compaction.
                let index = model.snap_index() + 1 + rng.below(model.log.len() as u64);
                let meta = SnapshotMeta {
                    index,
                    term: model.term_at(index).unwrap(),
                    membership: vec![step as u8],
                };
                let data = format!("state at {index}").into_bytes();
                wal.save_snapshot(&meta, &data).unwrap();
                model.log.retain(|e| e.index > index);
                model.snapshot = Some((meta, data));
            }
            13 => {
                // A snapshot from a leader whose log differs (or reaches further).
                term += 1;
                let index = model.snap_index() + 1 + rng.below(model.log.len() as u64 + 3);
                let meta = SnapshotMeta {
                    index,
                    term,
                    membership: vec![],
                };
                wal.save_snapshot(&meta, b"installed").unwrap();
                model.log.clear();
                model.snapshot = Some((meta, b"installed".to_vec()));
            }
            14..=16 => wal.sync().unwrap(),
            _ => {
                wal.sync().unwrap();
                drop(wal);
                // A log whose last term is above its last hard state's is one
                // whose hard state a crash lost: recovery raises the term to
                // the log's, with no vote (docs/STORAGE.md, Recovery).
                let last_term = model.term_at(model.last_index()).unwrap_or(0);
                if last_term > model.hard_state.term {
                    model.hard_state = HardState {
                        term: last_term,
                        vote: 0,
                        commit: model.hard_state.commit,
                    };
                }
                let (w, rec) = open(dir.path(), &opts);
                wal = w;
                assert_eq!(rec.entries, model.log, "{ctx}");
                assert_eq!(rec.hard_state, model.hard_state, "{ctx}");
                assert_eq!(rec.snapshot, model.snapshot.as_ref().map(|(m, _)| m.clone()), "{ctx}");
                assert_eq!(rec.repaired_tail, None, "{ctx}");
                assert_eq!(wal.load_snapshot().unwrap(), model.snapshot.clone(), "{ctx}");
            }
        }
        assert_eq!(wal.last_index(), model.last_index(), "{ctx}");
        assert_eq!(wal.first_index(), model.snap_index() + 1, "{ctx}");
        let probe = model.snap_index() + rng.below(model.log.len() as u64 + 2);
        assert_eq!(wal.term_at(probe), model.term_at(probe), "{ctx} probe {probe}");
    }
    // Once the log moves on past its truncations, a snapshot of the whole log
    // reclaims every older segment: at most the active segment and the one
    // before it remain.
    let first = model.last_index() + 1;
    let tail: Vec<LogEntry> = (first..first + 30).map(|i| entry(i, term, 60)).collect();
    wal.append(&tail).unwrap();
    model.log.extend(tail);
    let index = model.last_index();
    let meta = SnapshotMeta {
        index,
        term,
        membership: vec![],
    };
    wal.save_snapshot(&meta, b"final").unwrap();
    let segments = files_with_suffix(dir.path(), ".wal");
    assert!(
        segments.len() <= 2,
        "seed {seed}: {segments:?} after compacting everything up to {index}"
    );
    assert_eq!(segments, wal.segment_paths());
}

#[test]
fn random_operations_match_the_model_after_every_reopen() {
    // On tmpfs (see `fast_tempdir`) this takes well under a second; on a
    // real disk each step may fsync several times.
    for seed in 1..=24 {
        run(seed, 500);
    }
}
