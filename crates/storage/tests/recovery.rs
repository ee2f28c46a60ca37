//! Crash and corruption behaviour of recovery: a torn tail is repaired, any
//! other damage stops recovery with the file and byte offset.

mod common;

use std::fs;
use std::path::{Path, PathBuf};

use common::*;
use proptest::test_runner::{Config, RngAlgorithm, TestRng, TestRunner};
use triton_storage::format::{self, Record, SEGMENT_HEADER_LEN};
use triton_storage::{parse_segment, records_end, HardState, LogEntry, StorageError, Wal, WalOptions};

/// Writes a log with a conflicting suffix and hard states in a few synced
/// batches; returns the directory.
fn write_sample(opts: &WalOptions) -> tempfile::TempDir {
    let dir = fast_tempdir();
    let (mut wal, _) = open(dir.path(), opts);
    wal.append(&entries(1, 6, 1, 20)).unwrap();
    wal.set_hard_state(HardState {
        term: 1,
        vote: 1,
        commit: 3,
    })
    .unwrap();
    wal.sync().unwrap();
    wal.append(&entries(5, 9, 2, 7)).unwrap();
    wal.set_hard_state(HardState {
        term: 2,
        vote: 3,
        commit: 6,
    })
    .unwrap();
    wal.sync().unwrap();
    wal.append(&entries(10, 12, 2, 33)).unwrap();
    wal.sync().unwrap();
    dir
}

/// The (log, hard state) that replaying `records` must produce.
fn model(records: &[(u64, Record)]) -> (Vec<LogEntry>, HardState) {
    let (mut log, mut hs) = (Vec::<LogEntry>::new(), HardState::default());
    for (_, r) in records {
        match r {
            Record::Entry(e) => log.push(e.clone()),
            Record::HardState(h) => hs = *h,
            Record::Truncate { from } => log.retain(|e| e.index < *from),
            Record::Snapshot { .. } => {}
        }
    }
    // Entries of a newer term whose hard state was lost: recovery raises
    // the term to theirs, with no vote.
    if let Some(last) = log.last().filter(|e| e.term > hs.term) {
        hs = HardState {
            term: last.term,
            vote: 0,
            commit: hs.commit,
        };
    }
    (log, hs)
}

fn only_segment(dir: &Path) -> PathBuf {
    let segs = files_with_suffix(dir, ".wal");
    assert_eq!(segs.len(), 1);
    segs[0].clone()
}

fn expect_corrupt(dir: &Path, opts: &WalOptions, path: &Path, offset: u64) {
    match Wal::open(dir, opts.clone()) {
        Err(err @ StorageError::Corrupt { .. }) => {
            let StorageError::Corrupt { path: p, offset: o, .. } = &err else {
                unreachable!()
            };
            assert_eq!((p.as_path(), *o), (path, offset), "{err}");
            let text = err.to_string();
            assert!(text.contains(&path.display().to_string()), "{text}");
            assert!(text.contains(&format!("byte offset {offset}")), "{text}");
        }
        Err(other) => panic!("expected Corrupt at {offset}, got {other}"),
        Ok((_, rec)) => panic!("expected Corrupt at {offset}, recovered {} entries", rec.entries.len()),
    }
}

#[test]
fn cutting_the_log_at_any_byte_recovers_a_prefix_of_what_was_written() {
    let opts = WalOptions::default();
    let sample = write_sample(&opts);
    let seg = only_segment(sample.path());
    let full = fs::read(&seg).unwrap();
    let all = parse_segment(&seg, &full, opts.max_record_bytes, true).unwrap();
    assert_eq!(all.torn_tail, None);
    let records_end = all.records_end as usize;
    assert!(full.len() > records_end, "no preallocated tail");
    let last_starts: Vec<u64> = all.records.iter().rev().take(3).map(|(o, _)| *o).collect();
    let dense_from = *last_starts.last().unwrap() as usize;
    let scratch = fast_tempdir();
    let mut tried = 0;
    for cut in 0..=full.len() {
        // Every byte of the last three records; every other byte before them;
        // a few cuts in the preallocated zeros after them.
        if (cut < dense_from && cut % 2 != 0) || (cut > records_end + 64 && cut % 65_537 != 0 && cut != full.len()) {
            continue;
        }
        tried += 1;
        let dir = scratch.path().join(format!("cut{cut}"));
        fs::create_dir(&dir).unwrap();
        let path = dir.join(seg.file_name().unwrap());
        fs::write(&path, &full[..cut]).unwrap();
        let (_, rec) = Wal::open(&dir, opts.clone()).unwrap_or_else(|e| panic!("cut {cut}: {e}"));
        let complete: Vec<_> = all
            .records
            .iter()
            .filter(|(o, r)| {
                let mut enc = Vec::new();
                format::encode_record(&mut enc, r);
                *o as usize + enc.len() <= cut
            })
            .cloned()
            .collect();
        let (log, hs) = model(&complete);
        assert_eq!(rec.entries, log, "cut {cut}");
        assert_eq!(rec.hard_state, hs, "cut {cut}");
        let boundary = complete.last().map_or(SEGMENT_HEADER_LEN as u64, |(o, r)| {
            let mut enc = Vec::new();
            format::encode_record(&mut enc, r);
            o + enc.len() as u64
        });
        // Shorter than its creation (header and hard state, written and
        // fsynced before anything else): a torn creation, removed whole.
        let creation_len = all.records[0].0 as usize + {
            let mut enc = Vec::new();
            format::encode_record(&mut enc, &all.records[0].1);
            enc.len()
        };
        assert!(matches!(all.records[0].1, Record::HardState(_)));
        if cut < creation_len {
            assert_eq!(rec.repaired_tail, Some((path.clone(), 0)), "cut {cut}");
        } else if cut as u64 == boundary || cut >= records_end {
            // At a record boundary, or inside the unused zeros: nothing torn.
            assert_eq!(rec.repaired_tail, None, "cut {cut}");
        } else {
            assert_eq!(rec.repaired_tail, Some((path.clone(), boundary)), "cut {cut}");
        }
        // The repaired log takes appends and survives another reopen.
        let (mut wal, _) = Wal::open(&dir, opts.clone()).unwrap();
        wal.append(&[entry(wal.last_index() + 1, 9, 3)]).unwrap();
        wal.sync().unwrap();
        drop(wal);
        let (_, again) = Wal::open(&dir, opts.clone()).unwrap();
        assert_eq!(again.entries.len(), log.len() + 1, "cut {cut}");
        fs::remove_dir_all(&dir).unwrap();
    }
    assert!(tried > 100);
}

#[test]
fn flipping_a_byte_before_the_last_record_is_corrupt_with_file_and_offset() {
    let opts = WalOptions::default();
    let sample = write_sample(&opts);
    let seg = only_segment(sample.path());
    let full = fs::read(&seg).unwrap();
    let all = parse_segment(&seg, &full, opts.max_record_bytes, true).unwrap();
    let last_start = all.records.last().unwrap().0 as usize;
    let records_end = all.records_end as usize;
    let scratch = fast_tempdir();
    // Every byte of the records, and some of the preallocated zeros.
    for pos in (0..records_end).chain((records_end..full.len()).step_by(4093)) {
        let dir = scratch.path().join(format!("flip{pos}"));
        fs::create_dir(&dir).unwrap();
        let path = dir.join(seg.file_name().unwrap());
        let mut bad = full.clone();
        bad[pos] ^= 0x01;
        fs::write(&path, &bad).unwrap();
        if pos < last_start {
            let owner = if pos < SEGMENT_HEADER_LEN {
                0
            } else {
                all.records.iter().rev().find(|(o, _)| *o as usize <= pos).unwrap().0
            };
            expect_corrupt(&dir, &opts, &path, owner);
        } else if pos < records_end {
            // Damage confined to the very last record is what a torn write
            // looks like: it is cut off, everything before it survives.
            let (_, rec) = Wal::open(&dir, opts.clone()).unwrap_or_else(|e| panic!("flip {pos}: {e}"));
            assert_eq!(rec.repaired_tail, Some((path.clone(), last_start as u64)), "flip {pos}");
            let (log, _) = model(&all.records[..all.records.len() - 1]);
            assert_eq!(rec.entries, log);
        } else {
            // A stray byte in the unused zeros looks like the start of a torn
            // next record: cut off from there, every record survives.
            let (_, rec) = Wal::open(&dir, opts.clone()).unwrap_or_else(|e| panic!("flip {pos}: {e}"));
            assert_eq!(
                rec.repaired_tail,
                Some((path.clone(), records_end as u64)),
                "flip {pos}"
            );
            assert_eq!(rec.entries, model(&all.records).0);
        }
        fs::remove_dir_all(&dir).unwrap();
    }
}

/// Writes a log over several small segments; returns the directory.
fn write_multi_segment(opts: &WalOptions) -> tempfile::TempDir {
    let dir = fast_tempdir();
    let (mut wal, _) = open(dir.path(), opts);
    for batch in 0..6 {
        let first = wal.last_index() + 1;
        wal.append(&entries(first, first + 4, 1, 60)).unwrap();
        wal.set_hard_state(HardState {
            term: 1,
            vote: 1,
            commit: batch * 5,
        })
        .unwrap();
        wal.sync().unwrap();
    }
    assert!(wal.segment_paths().len() >= 3);
    dir
}

#[test]
fn random_flips_anywhere_but_the_tail_are_corrupt_property() {
    let opts = small_opts();
    let sample = write_multi_segment(&opts);
    let segs = files_with_suffix(sample.path(), ".wal");
    let contents: Vec<(Vec<u8>, Vec<u64>, usize)> = segs
        .iter()
        .map(|p| {
            let data = fs::read(p).unwrap();
            let parsed = parse_segment(p, &data, opts.max_record_bytes, true).unwrap();
            let offsets = parsed.records.iter().map(|(o, _)| *o).collect();
            (data, offsets, parsed.records_end as usize)
        })
        .collect();
    // Only the active segment keeps a preallocated tail, never past `segment_bytes`.
    for (i, (data, _, end)) in contents.iter().enumerate() {
        assert_eq!(*end == data.len(), i + 1 < contents.len(), "segment {i}");
        assert!(data.len() as u64 <= opts.segment_bytes.max(*end as u64), "segment {i}");
    }
    let scratch = fast_tempdir();
    let config = Config {
        cases: 200,
        failure_persistence: None,
        ..Config::default()
    };
    let seed = [7u8; 32];
    let mut runner = TestRunner::new_with_rng(config, TestRng::from_seed(RngAlgorithm::ChaCha, &seed));
    let strategy = (0..segs.len(), 0usize..100_000, 1u8..=255);
    let counter = std::cell::Cell::new(0);
    runner
        .run(&strategy, |(which, pos, mask)| {
            let (data, offsets, records_end) = &contents[which];
            let pos = pos % data.len();
            counter.set(counter.get() + 1);
            let dir = scratch.path().join(format!("case{}", counter.get()));
            copy_dir(sample.path(), &dir);
            let path = dir.join(segs[which].file_name().unwrap());
            let mut bad = data.clone();
            bad[pos] ^= mask;
            fs::write(&path, &bad).unwrap();
            let is_last_segment = which + 1 == segs.len();
            let last_start = *offsets.last().unwrap() as usize;
            let stray_length = matches!(
                format::check_record(&bad[*records_end..], opts.max_record_bytes),
                Err(format::RecordProblem::TooLarge { .. })
            );
            if is_last_segment && pos >= *records_end && stray_length {
                // A length no record of ours has: not a torn write.
                expect_corrupt(&dir, &opts, &path, *records_end as u64);
            } else if is_last_segment && pos >= *records_end {
                let (_, rec) = Wal::open(&dir, opts.clone()).unwrap();
                assert_eq!(rec.repaired_tail, Some((path.clone(), *records_end as u64)));
            } else if is_last_segment && pos >= last_start {
                let (_, rec) = Wal::open(&dir, opts.clone()).unwrap();
                assert_eq!(rec.repaired_tail, Some((path.clone(), last_start as u64)));
            } else {
                let owner = if pos < SEGMENT_HEADER_LEN {
                    0
                } else {
                    *offsets.iter().rev().find(|o| **o as usize <= pos).unwrap()
                };
                expect_corrupt(&dir, &opts, &path, owner);
            }
            fs::remove_dir_all(&dir).unwrap();
            Ok(())
        })
        .unwrap();
}

#[test]
fn torn_record_in_a_segment_that_is_not_the_last_is_corrupt() {
    let opts = small_opts();
    let sample = write_multi_segment(&opts);
    let first = files_with_suffix(sample.path(), ".wal")[0].clone();
    let data = fs::read(&first).unwrap();
    let last = parse_segment(&first, &data, opts.max_record_bytes, true)
        .unwrap()
        .records
        .last()
        .unwrap()
        .0;
    fs::write(&first, &data[..data.len() - 3]).unwrap();
    expect_corrupt(sample.path(), &opts, &first, last);
}

#[test]
fn torn_header_of_a_new_segment_is_removed() {
    let opts = small_opts();
    let sample = write_multi_segment(&opts);
    let segs = files_with_suffix(sample.path(), ".wal");
    let (_, before) = open(sample.path(), &opts);
    // Append enough to start one more segment, then tear its header.
    let (mut wal, _) = open(sample.path(), &opts);
    while wal.segment_paths().len() == segs.len() {
        wal.append(&[entry(wal.last_index() + 1, 1, 200)]).unwrap();
    }
    wal.sync().unwrap();
    let newest = wal.segment_paths().last().unwrap().clone();
    let kept = wal.last_index() - 1; // the entry that rolled went into the new segment
    drop(wal);
    fs::write(&newest, &fs::read(&newest).unwrap()[..20]).unwrap();
    let (mut wal, rec) = open(sample.path(), &opts);
    assert_eq!(rec.repaired_tail, Some((newest.clone(), 0)));
    assert!(!newest.exists());
    assert_eq!(rec.entries.len() as u64, kept);
    assert_eq!(rec.hard_state, before.hard_state);
    wal.append(&[entry(kept + 1, 2, 5)]).unwrap();
    wal.sync().unwrap();
    drop(wal);
    let (_, rec) = open(sample.path(), &opts);
    assert_eq!(rec.entries.last().unwrap(), &entry(kept + 1, 2, 5));
}

/// Zeros after the last record are the unused, preallocated part of the
/// active segment: kept as they are, and the next append overwrites them.
/// Zeros with a record after them are not unused space but lost writes.
#[test]
fn a_zero_filled_tail_is_unused_space_and_zeros_before_a_record_are_corrupt() {
    let opts = WalOptions {
        preallocate_bytes: 0,
        ..WalOptions::default()
    };
    let sample = write_sample(&opts);
    let seg = only_segment(sample.path());
    let mut data = fs::read(&seg).unwrap();
    let good = data.len() as u64;
    data.extend_from_slice(&[0u8; 4096]);
    fs::write(&seg, &data).unwrap();
    let (mut wal, rec) = open(sample.path(), &opts);
    assert_eq!(rec.repaired_tail, None);
    assert_eq!(rec.entries.len(), 12);
    assert_eq!(fs::metadata(&seg).unwrap().len(), good + 4096);
    wal.append(&[entry(13, 2, 5)]).unwrap();
    wal.sync().unwrap();
    drop(wal);
    let (_, rec) = open(sample.path(), &opts);
    assert_eq!(rec.entries.len(), 13);
    let record = encoded(&Record::Entry(entry(13, 2, 5)));
    assert_eq!(
        records_end(&seg, opts.max_record_bytes).unwrap(),
        good + record.len() as u64
    );

    // Zeros where records were lost, with a record after them: corrupt.
    let mut data = fs::read(&seg).unwrap();
    data.truncate(good as usize);
    data.extend_from_slice(&[0u8; 64]);
    data.extend_from_slice(&record);
    fs::write(&seg, &data).unwrap();
    expect_corrupt(sample.path(), &opts, &seg, good);
}

/// A crash in the middle of writing the last record over preallocated space:
/// its second half still reads as zeros, the file is as long as before.
#[test]
fn a_torn_record_followed_by_preallocated_zeros_is_cut_off() {
    let opts = WalOptions::default();
    let sample = write_sample(&opts);
    let seg = only_segment(sample.path());
    let mut data = fs::read(&seg).unwrap();
    let all = parse_segment(&seg, &data, opts.max_record_bytes, true).unwrap();
    let last_start = all.records.last().unwrap().0;
    let end = all.records_end as usize;
    assert!(data.len() > end, "no preallocated tail");
    let mid = (last_start as usize + end) / 2;
    data[mid..end].fill(0);
    fs::write(&seg, &data).unwrap();
    let (_, rec) = open(sample.path(), &opts);
    assert_eq!(rec.repaired_tail, Some((seg.clone(), last_start)));
    assert_eq!(rec.entries, model(&all.records[..all.records.len() - 1]).0);
}

/// A segment file built by hand from records.
fn handmade(dir: &Path, records: &[Vec<u8>]) -> PathBuf {
    let path = dir.join(format::segment_file_name(1, 1));
    let mut bytes = format::encode_segment_header(1, 1).to_vec();
    for r in records {
        bytes.extend_from_slice(r);
    }
    fs::write(&path, bytes).unwrap();
    path
}

fn encoded(record: &Record) -> Vec<u8> {
    let mut v = Vec::new();
    format::encode_record(&mut v, record);
    v
}

#[test]
fn huge_length_prefix_is_refused_without_allocating() {
    let opts = WalOptions::default();
    let good = encoded(&Record::Entry(entry(1, 1, 10)));
    let mut huge = vec![0xf0, 0xff, 0xff, 0xff];
    huge.extend_from_slice(&[0; 20]);
    // In the middle of the log.
    let dir = fast_tempdir();
    let path = handmade(dir.path(), &[good.clone(), huge.clone(), good.clone()]);
    let at = (SEGMENT_HEADER_LEN + good.len()) as u64;
    expect_corrupt(dir.path(), &opts, &path, at);
    // At the tail: a length over the limit is never a torn write of ours.
    let dir = fast_tempdir();
    let path = handmade(dir.path(), &[good.clone(), huge]);
    expect_corrupt(dir.path(), &opts, &path, at);
    // A length under the limit but past the end of the file is a torn tail:
    // cut off, and nothing near its size is allocated.
    let mut long = (60u32 << 20).to_le_bytes().to_vec();
    long.extend_from_slice(&[1; 30]);
    let dir = fast_tempdir();
    let path = handmade(dir.path(), &[good.clone(), long]);
    let (_, rec) = open(dir.path(), &opts);
    assert_eq!(rec.repaired_tail, Some((path, at)));
    assert_eq!(rec.entries, vec![entry(1, 1, 10)]);
}

#[test]
fn gap_in_indices_is_corrupt() {
    let opts = WalOptions::default();
    let recs: Vec<Vec<u8>> = [1, 2, 4, 5]
        .iter()
        .map(|&i| encoded(&Record::Entry(entry(i, 1, 3))))
        .collect();
    let dir = fast_tempdir();
    let path = handmade(dir.path(), &recs);
    let at = (SEGMENT_HEADER_LEN + recs[0].len() + recs[1].len()) as u64;
    expect_corrupt(dir.path(), &opts, &path, at);
}

#[test]
fn truncation_past_the_end_of_the_log_is_corrupt() {
    let opts = WalOptions::default();
    let recs = vec![
        encoded(&Record::Entry(entry(1, 1, 3))),
        encoded(&Record::Truncate { from: 5 }),
    ];
    let dir = fast_tempdir();
    let path = handmade(dir.path(), &recs);
    expect_corrupt(dir.path(), &opts, &path, (SEGMENT_HEADER_LEN + recs[0].len()) as u64);
}

#[test]
fn unsynced_appends_may_be_lost_but_never_invented() {
    let opts = WalOptions {
        write_buffer_bytes: 64,
        ..WalOptions::default()
    };
    let dir = fast_tempdir();
    {
        let (mut wal, _) = open(dir.path(), &opts);
        wal.append(&entries(1, 3, 1, 10)).unwrap();
        wal.sync().unwrap();
        // Handed to the kernel (the buffer is small) but never synced.
        wal.append(&entries(4, 9, 1, 10)).unwrap();
    }
    let (_, rec) = open(dir.path(), &opts);
    assert!(rec.entries.len() >= 3);
    assert_eq!(rec.entries, entries(1, rec.entries.len() as u64, 1, 10));
}

#[test]
fn a_missing_segment_in_the_middle_is_corrupt() {
    let opts = small_opts();
    let sample = write_multi_segment(&opts);
    let segs = files_with_suffix(sample.path(), ".wal");
    fs::remove_file(&segs[1]).unwrap();
    expect_corrupt(sample.path(), &opts, &segs[2], 0);
}

#[test]
fn absurd_numbers_in_file_names_are_refused_not_overflowed() {
    let opts = WalOptions::default();
    let dir = fast_tempdir();
    let seq = u64::MAX;
    let path = dir.path().join(format::segment_file_name(seq, 1));
    let mut bytes = format::encode_segment_header(seq, 1).to_vec();
    bytes.extend(encoded(&Record::Entry(entry(1, 1, 3))));
    fs::write(&path, bytes).unwrap();
    expect_corrupt(dir.path(), &opts, &path, 0);

    // A snapshot claiming an index near u64::MAX is passed over.
    let dir = fast_tempdir();
    let snap = dir.path().join(format::snapshot_file_name(u64::MAX, 1));
    fs::write(&snap, b"whatever").unwrap();
    let (mut wal, rec) = open(dir.path(), &opts);
    assert_eq!(rec.snapshot, None);
    assert_eq!(rec.ignored_snapshots.len(), 1);
    let meta = triton_storage::SnapshotMeta {
        index: u64::MAX,
        term: 1,
        membership: vec![],
    };
    let err = wal.save_snapshot(&meta, b"").unwrap_err();
    assert!(matches!(err, StorageError::IndexOutOfRange { .. }), "{err}");
}

/// Segment number and first index of a segment file, from its name.
fn seg_name(path: &Path) -> (u64, u64) {
    format::parse_segment_file_name(path.file_name().unwrap().to_str().unwrap()).unwrap()
}

/// A crash in the middle of compaction, after a conflicting suffix crossed a
/// segment boundary: a newer segment starts at a lower index than an older
/// one ends at. Compaction deletes the segments before the newest one that
/// began inside the snapshot, oldest first; a crash after any number of those
/// deletions leaves older segments that replay must not start from (one of
/// them starts past the snapshot, at an index the log no longer reaches).
/// Recovery applies compaction's rule: it starts at that same segment and
/// finishes the deletion.
#[test]
fn a_crash_in_the_middle_of_compaction_recovers_and_finishes_it() {
    let opts = WalOptions {
        segment_bytes: 1000,
        max_record_bytes: 64 << 10,
        write_buffer_bytes: 256,
        preallocate_bytes: 400,
    };
    let dir = fast_tempdir();
    // Hard links keep every segment compaction deletes, exactly as it was
    // when it was unlinked.
    let kept = fast_tempdir();
    let (mut wal, _) = open(dir.path(), &opts);
    wal.append(&entries(1, 20, 1, 100)).unwrap();
    wal.sync().unwrap();
    // A new leader replaces 3.. with its own entries, which fill a segment
    // that starts below where the previous one did.
    wal.append(&entries(3, 14, 2, 100)).unwrap();
    let hs = HardState {
        term: 2,
        vote: 2,
        commit: 12,
    };
    wal.set_hard_state(hs).unwrap();
    wal.sync().unwrap();
    let before = wal.segment_paths();
    for p in &before {
        fs::hard_link(p, kept.path().join(p.file_name().unwrap())).unwrap();
    }
    let meta = triton_storage::SnapshotMeta {
        index: 12,
        term: 2,
        membership: b"m".to_vec(),
    };
    wal.save_snapshot(&meta, b"state at 12").unwrap();
    let after = wal.segment_paths();
    drop(wal);
    let deleted: Vec<PathBuf> = before.iter().filter(|p| !after.contains(p)).cloned().collect();
    assert!(deleted.len() >= 2, "{before:?} -> {after:?}");
    assert_eq!(&before[..deleted.len()], deleted.as_slice(), "a prefix is deleted");
    // The shape this test is about: a segment compaction deletes starts past
    // the snapshot, and a newer one (where replay must start) starts lower.
    assert!(
        deleted.iter().any(|p| seg_name(p).1 > meta.index + 1),
        "no deleted segment starts past the snapshot: {deleted:?}"
    );
    let start = seg_name(&after[0]);
    assert!(start.1 <= meta.index + 1, "{after:?}");

    let expected = entries(13, 14, 2, 100);
    // Crash after `done` of the deletions (all of them: the finished case).
    for done in (0..=deleted.len()).rev() {
        let crashed = fast_tempdir();
        copy_dir(dir.path(), crashed.path());
        for p in &deleted[done..] {
            let name = p.file_name().unwrap();
            fs::copy(kept.path().join(name), crashed.path().join(name)).unwrap();
        }
        let (mut wal, rec) =
            Wal::open(crashed.path(), opts.clone()).unwrap_or_else(|e| panic!("crash after {done} deletions: {e}"));
        assert_eq!(rec.snapshot, Some(meta.clone()), "crash after {done} deletions");
        assert_eq!(rec.entries, expected, "crash after {done} deletions");
        assert_eq!(rec.hard_state, hs, "crash after {done} deletions");
        assert_eq!(rec.repaired_tail, None);
        assert_eq!(wal.load_snapshot().unwrap().unwrap().1, b"state at 12".to_vec());
        // Recovery finished the compaction: the same segments as after it.
        let names = |v: &[PathBuf]| v.iter().map(|p| p.file_name().unwrap().to_owned()).collect::<Vec<_>>();
        assert_eq!(names(&files_with_suffix(crashed.path(), ".wal")), names(&after));
        assert_eq!(files_with_suffix(crashed.path(), ".wal"), wal.segment_paths());
        assert_eq!(seg_name(&wal.segment_paths()[0]), start);
        // And the log goes on from there.
        wal.append(&entries(15, 16, 3, 100)).unwrap();
        wal.sync().unwrap();
        drop(wal);
        let (_, rec) = open(crashed.path(), &opts);
        let mut longer = expected.clone();
        longer.extend(entries(15, 16, 3, 100));
        assert_eq!(rec.entries, longer, "crash after {done} deletions, reopened");
    }
}

/// A crash after a snapshot file was made durable but before its marker
/// went into the log: recovery finishes the compaction, and writes the
/// marker first, as `save_snapshot` would have, so the log says it depends
/// on that snapshot before the segments that could replace it are gone.
#[test]
fn a_compaction_finished_by_recovery_writes_the_snapshot_marker_first() {
    let opts = WalOptions {
        segment_bytes: 1000,
        max_record_bytes: 64 << 10,
        write_buffer_bytes: 256,
        preallocate_bytes: 0,
    };
    let dir = fast_tempdir();
    let (mut wal, _) = open(dir.path(), &opts);
    wal.append(&entries(1, 20, 1, 100)).unwrap();
    wal.sync().unwrap();
    drop(wal);
    // The state at the crash: the log as it was, plus the snapshot file.
    let crashed = fast_tempdir();
    copy_dir(dir.path(), crashed.path());
    let (mut wal, _) = open(dir.path(), &opts);
    let meta = triton_storage::SnapshotMeta {
        index: 15,
        term: 1,
        membership: vec![],
    };
    wal.save_snapshot(&meta, b"state at 15").unwrap();
    drop(wal);
    for snap in files_with_suffix(dir.path(), ".snap") {
        fs::copy(&snap, crashed.path().join(snap.file_name().unwrap())).unwrap();
    }
    let before = files_with_suffix(crashed.path(), ".wal");

    let (wal, rec) = open(crashed.path(), &opts);
    assert_eq!(rec.snapshot, Some(meta.clone()));
    assert_eq!(rec.entries, entries(16, 20, 1, 100));
    let after = wal.segment_paths();
    drop(wal);
    assert!(after.len() < before.len(), "nothing to finish: {before:?}");
    let markers: Vec<Record> = after
        .iter()
        .flat_map(|p| {
            let data = fs::read(p).unwrap();
            parse_segment(p, &data, opts.max_record_bytes, true).unwrap().records
        })
        .map(|(_, r)| r)
        .filter(|r| matches!(r, Record::Snapshot { .. }))
        .collect();
    assert_eq!(markers, vec![Record::Snapshot { index: 15, term: 1 }]);
    // And it opens again the same.
    let (_, again) = open(crashed.path(), &opts);
    assert_eq!(again.entries, entries(16, 20, 1, 100));
}

/// A new segment whose creation was torn is removed before recovery picks
/// where replay starts: here it began right at the snapshot (so the rule
/// would pick it), but it holds nothing; the segment before it holds the
/// hard state and must be replayed and kept. Torn anywhere in its creation:
/// inside the header, right after it, inside the hard-state record, or with
/// the hard state left as zeros.
#[test]
fn a_torn_new_segment_that_began_at_the_snapshot_does_not_replace_the_log() {
    let opts = WalOptions {
        preallocate_bytes: 0,
        ..small_opts()
    };
    type Tear = fn(Vec<u8>) -> Vec<u8>;
    let tears: [(&str, Tear); 5] = [
        ("cut at 20", |b| b[..20].to_vec()),
        ("cut at 32", |b| b[..32].to_vec()),
        ("cut at 40", |b| b[..40].to_vec()),
        ("cut at 64", |b| b[..64].to_vec()),
        ("zeros after 32", |mut b| {
            b[32..].fill(0);
            b
        }),
    ];
    for (how, tear) in tears {
        let dir = fast_tempdir();
        let (mut wal, _) = open(dir.path(), &opts);
        let hs = HardState {
            term: 1,
            vote: 1,
            commit: 0,
        };
        wal.set_hard_state(hs).unwrap();
        wal.sync().unwrap();
        // Snapshot every entry until a snapshot marker fills the active
        // segment: the next record rolls, and the new segment starts at the
        // snapshot index + 1. Each entry is sized to end just below the limit
        // when it can.
        let meta = loop {
            let i = wal.last_index() + 1;
            assert!(i < 100, "the active segment never filled up");
            let active = wal.segment_paths().last().unwrap().clone();
            let room = opts.segment_bytes as i64 - 1 - fs::metadata(&active).unwrap().len() as i64 - 25;
            wal.append(&[entry(i, 1, room.clamp(0, 50) as usize)]).unwrap();
            let meta = triton_storage::SnapshotMeta {
                index: i,
                term: 1,
                membership: vec![],
            };
            wal.save_snapshot(&meta, b"s").unwrap();
            let active = wal.segment_paths().last().unwrap().clone();
            if fs::metadata(&active).unwrap().len() >= opts.segment_bytes {
                break meta;
            }
        };
        let segs = wal.segment_paths().len();
        wal.set_hard_state(HardState { commit: 1, ..hs }).unwrap();
        wal.sync().unwrap();
        let newest = wal.segment_paths().last().unwrap().clone();
        assert_eq!(wal.segment_paths().len(), segs + 1);
        assert_eq!(seg_name(&newest).1, meta.index + 1);
        drop(wal);
        // The creation's header and hard state only (the hard state with
        // commit 1 went into the record after them, lost with the tear).
        let created = fs::read(&newest).unwrap()[..65].to_vec();
        fs::write(&newest, tear(created)).unwrap();
        let (wal, rec) = open(dir.path(), &opts);
        assert_eq!(rec.repaired_tail, Some((newest.clone(), 0)), "{how}");
        assert_eq!(rec.snapshot, Some(meta), "{how}");
        assert_eq!(rec.entries, vec![], "{how}");
        assert_eq!(rec.hard_state, hs, "{how}");
        assert_eq!(wal.segment_paths().len(), segs, "{how}");
        assert_eq!(files_with_suffix(dir.path(), ".wal"), wal.segment_paths(), "{how}");
    }
}

/// A last segment longer than its creation wrote went past a completed
/// creation (fsynced before anything else is written): a bad header there
/// is damage, refused as `Corrupt`, not a torn creation to remove (with
/// its hard state and entries).
#[test]
fn a_damaged_header_on_a_written_last_segment_is_corrupt_not_removed() {
    let opts = WalOptions {
        preallocate_bytes: 0,
        ..small_opts()
    };
    let dir = fast_tempdir();
    let (mut wal, _) = open(dir.path(), &opts);
    wal.set_hard_state(HardState {
        term: 7,
        vote: 3,
        commit: 2,
    })
    .unwrap();
    wal.append(&[entry(1, 7, 10), entry(2, 7, 10)]).unwrap();
    wal.sync().unwrap();
    let last = wal.segment_paths().last().unwrap().clone();
    drop(wal);
    let mut bytes = fs::read(&last).unwrap();
    assert!(bytes.len() > 65);
    // All zeros: no valid record left anywhere to tell it from a torn creation
    // but its length.
    bytes.fill(0);
    fs::write(&last, &bytes).unwrap();
    match Wal::open(dir.path(), opts) {
        Err(StorageError::Corrupt { .. }) => {}
        other => panic!("expected Corrupt, got {other:?}"),
    }
    assert!(last.exists(), "the damaged segment must be left for the operator");
}

/// A segment longer than any the options in use can write is refused as
/// `Corrupt` before it is read into memory, wherever it is; one of exactly
/// that length is read.
#[test]
fn a_segment_longer_than_the_options_allow_is_refused_before_it_is_read() {
    let opts = small_opts();
    // Records start below segment_bytes (or after a new segment's header and
    // hard state), are at most max_record_bytes plus their header; plus the
    // preallocated zeros an earlier build could leave past segment_bytes.
    let limit = opts.segment_bytes.max(65) + 9 + u64::from(opts.max_record_bytes) + opts.preallocate_bytes;
    let sample = write_multi_segment(&opts);
    let segs = files_with_suffix(sample.path(), ".wal");
    assert!(segs.len() >= 3);
    let last = segs.last().unwrap();
    // Zeros after the records of the last segment are unused space: up to
    // the limit they are accepted.
    let scratch = fast_tempdir();
    copy_dir(sample.path(), scratch.path());
    let in_scratch = scratch.path().join(last.file_name().unwrap());
    fs::OpenOptions::new()
        .write(true)
        .open(&in_scratch)
        .unwrap()
        .set_len(limit)
        .unwrap();
    let (_, rec) = open(scratch.path(), &opts);
    assert_eq!(rec.repaired_tail, None);
    drop(scratch);
    for seg in [&segs[1], last] {
        let scratch = fast_tempdir();
        copy_dir(sample.path(), scratch.path());
        let in_scratch = scratch.path().join(seg.file_name().unwrap());
        fs::OpenOptions::new()
            .write(true)
            .open(&in_scratch)
            .unwrap()
            .set_len(limit + 1)
            .unwrap();
        expect_corrupt(scratch.path(), &opts, &in_scratch, limit);
    }
}
