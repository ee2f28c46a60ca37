//! The write-ahead log: segment files of checksummed records, one fsync per
//! group of appends, atomic snapshots, and recovery that repairs a torn tail
//! but refuses any other damage.
//!
//! Invariants kept here (docs/STORAGE.md explains why each is needed):
//! - only the last segment is ever appended to; a segment is fsynced in full
//!   before the next one is created, so a torn write can only be in the last;
//! - every segment starts with a hard-state record, so deleting older
//!   segments never loses the hard state;
//! - segments are deleted only as a prefix: all those before the newest
//!   segment that was created when the log ended inside a durable snapshot;
//!   recovery replays from that same segment (and deletes any older ones a
//!   crash left behind), never from an older one;
//! - after any failed write or fsync the `Wal` is poisoned and refuses all
//!   further work: the process must restart and recover from disk;
//! - only the active segment has a zero-filled preallocated tail: a segment
//!   is cut to the end of its records before the next one is created.

use std::collections::VecDeque;
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use crate::error::StorageError;
use crate::format::{self, Record, ENTRY_BODY_FIXED, MAX_INDEX, RECORD_HEADER_LEN, SEGMENT_HEADER_LEN};
use crate::segment::{self, parse_segment};
use crate::snapshot;
use crate::types::{HardState, LogEntry, Recovered, SnapshotMeta, WalOptions};

/// fsyncs a directory, making file creations, renames and deletions in it durable.
pub fn sync_dir(dir: &Path) -> Result<(), StorageError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| StorageError::io(dir, e))
}

/// One segment file as the live log tracks it.
#[derive(Debug, Clone)]
struct SegmentInfo {
    path: PathBuf,
    seq: u64,
    /// The log's last index + 1 when the segment was created. Once a durable
    /// snapshot reaches `first_index - 1`, the log as it stood when this
    /// segment began is wholly inside the snapshot, so every older segment
    /// can be deleted: replay starting here reaches the same state.
    first_index: u64,
}

/// The durable log of one Raft node. Not thread-safe by itself; see
/// [`crate::WalWriter`] for a thread that owns it and does group commit.
#[derive(Debug)]
pub struct Wal {
    dir: PathBuf,
    opts: WalOptions,
    /// Sorted by seq; the last one is the file being appended to.
    segments: Vec<SegmentInfo>,
    file: File,
    /// Bytes of the active segment's records already handed to the kernel:
    /// where the next write goes.
    records_end: u64,
    /// The active segment's length on disk: `records_end` plus the zero-filled
    /// part preallocated ahead of it.
    allocated: u64,
    /// Encoded records not yet handed to the kernel.
    buf: Vec<u8>,
    snapshot: Option<(SnapshotMeta, PathBuf)>,
    /// Term of every entry from `first_index()` to `last_index()`.
    terms: VecDeque<u64>,
    hard_state: HardState,
    /// Whether something was written since the last fsync.
    unsynced: bool,
    poisoned: Option<String>,
    /// Group commits done (fdatasync calls made by `sync`), for metrics and tests.
    syncs: u64,
    /// Holds an exclusive `flock` on `LOCK` for as long as the `Wal` lives,
    /// so two processes never append to the same log.
    _lock: File,
}

/// Name of the lock file inside the WAL directory.
pub const LOCK_FILE: &str = "LOCK";

/// Takes an exclusive, non-blocking advisory lock on `dir/LOCK` (released
/// when the returned file is closed, including when the process dies).
fn lock_dir(dir: &Path) -> Result<File, StorageError> {
    let path = dir.join(LOCK_FILE);
    let file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(|e| StorageError::io(&path, e))?;
    // std's `flock` (LOCK_EX | LOCK_NB on Linux), as the block store and the
    // sync client lock their directories.
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => Err(StorageError::Locked { path }),
        Err(std::fs::TryLockError::Error(e)) => Err(StorageError::io(path, e)),
    }
}

/// What a directory listing found.
#[derive(Default)]
struct Listing {
    segments: Vec<(u64, u64, PathBuf)>,
    snapshots: Vec<(u64, u64, PathBuf)>,
    temporaries: Vec<PathBuf>,
}

fn list_dir(dir: &Path) -> Result<Listing, StorageError> {
    let mut listing = Listing::default();
    for item in fs::read_dir(dir).map_err(|e| StorageError::io(dir, e))? {
        let item = item.map_err(|e| StorageError::io(dir, e))?;
        let name = item.file_name();
        let Some(name) = name.to_str() else { continue };
        let path = item.path();
        if let Some((seq, first)) = format::parse_segment_file_name(name) {
            listing.segments.push((seq, first, path));
        } else if let Some((index, term)) = format::parse_snapshot_file_name(name) {
            listing.snapshots.push((index, term, path));
        } else if name.starts_with("snap-") && name.ends_with(".snap.tmp") {
            listing.temporaries.push(path);
        }
    }
    listing.segments.sort();
    listing.snapshots.sort();
    Ok(listing)
}

/// Replays records over a snapshot, checking that the log stays contiguous
/// and that its terms are ones a Raft host can have written. (`triton wal
/// dump` runs it too, read-only: [`crate::inspect`].)
pub(crate) struct Replay {
    /// Index and term of the loaded snapshot (0, 0 without one).
    floor: u64,
    floor_term: u64,
    entries: Vec<LogEntry>,
    hard_state: HardState,
    /// A snapshot marker for the loaded snapshot was replayed.
    floor_marked: bool,
    /// Where `entries[0]` was read, to name it if its term is below the snapshot's.
    first_at: Option<(PathBuf, u64)>,
    /// The highest term of a snapshot marker replayed so far.
    marker_term: u64,
}

/// Refuses a term no real log reaches, so that no term arithmetic can overflow.
fn check_term(path: &Path, offset: u64, what: &str, term: u64) -> Result<(), StorageError> {
    if term > MAX_INDEX {
        return Err(StorageError::corrupt(
            path,
            offset,
            format!("{what} term {term} is past the supported maximum {MAX_INDEX}"),
        ));
    }
    Ok(())
}

impl Replay {
    /// A replay over a snapshot at `floor` (index, term; (0, 0) without one).
    pub(crate) fn over(floor: u64, floor_term: u64) -> Replay {
        Replay {
            floor,
            floor_term,
            entries: Vec::new(),
            hard_state: HardState::default(),
            floor_marked: false,
            first_at: None,
            marker_term: 0,
        }
    }

    fn next_index(&self) -> u64 {
        self.floor + 1 + self.entries.len() as u64
    }

    pub(crate) fn apply(&mut self, path: &Path, offset: u64, record: Record) -> Result<(), StorageError> {
        match record {
            Record::HardState(hs) => {
                check_term(path, offset, "hard state", hs.term)?;
                if hs.term < self.hard_state.term {
                    return Err(StorageError::corrupt(
                        path,
                        offset,
                        format!("hard state term goes back from {} to {}", self.hard_state.term, hs.term),
                    ));
                }
                // The writer's term is never below a term it has put in the
                // log (an entry it holds, a snapshot it saved), and every hard
                // state it writes carries that term. Except a segment's
                // leading record: a copy of the last hard state made when a
                // batch rolled into a new segment, before the batch's own.
                if offset != SEGMENT_HEADER_LEN as u64 {
                    let logged = self.entries.last().map_or(0, |e| e.term).max(self.marker_term);
                    if hs.term < logged {
                        return Err(StorageError::corrupt(
                            path,
                            offset,
                            format!(
                                "hard state term {} is below term {logged}, already in the log before it",
                                hs.term
                            ),
                        ));
                    }
                }
                self.hard_state = hs;
            }
            Record::Entry(e) => {
                check_term(path, offset, "entry", e.term)?;
                let next = self.next_index();
                if e.index <= self.floor {
                    // Covered by the snapshot: already folded into it.
                } else if e.index == next {
                    match self.entries.last() {
                        Some(prev) if e.term < prev.term => {
                            return Err(StorageError::corrupt(
                                path,
                                offset,
                                format!(
                                    "entry {} has term {} after term {}: terms in a log never decrease",
                                    e.index, e.term, prev.term
                                ),
                            ));
                        }
                        Some(_) => {}
                        None => self.first_at = Some((path.to_path_buf(), offset)),
                    }
                    self.entries.push(e);
                } else {
                    return Err(StorageError::corrupt(
                        path,
                        offset,
                        format!(
                            "entry index {} where the log expects {next} (a gap or an overlap)",
                            e.index
                        ),
                    ));
                }
            }
            Record::Truncate { from } => {
                let next = self.next_index();
                if from >= next {
                    return Err(StorageError::corrupt(
                        path,
                        offset,
                        format!(
                            "truncation from index {from}, beyond the end of the log at {}",
                            next - 1
                        ),
                    ));
                }
                let keep = from.saturating_sub(self.floor + 1) as usize;
                self.entries.truncate(keep);
            }
            Record::Snapshot { index, term } => {
                check_term(path, offset, "snapshot marker", term)?;
                self.floor_marked |= (index, term) == (self.floor, self.floor_term);
                if index > self.floor || (index == self.floor && term != self.floor_term) {
                    return Err(StorageError::corrupt(
                        path,
                        offset,
                        format!(
                            "the log depends on a snapshot at index {index} term {term}, but the newest usable snapshot is at index {} term {} (a snapshot file is missing or damaged)",
                            self.floor, self.floor_term
                        ),
                    ));
                }
                self.marker_term = self.marker_term.max(term);
            }
        }
        Ok(())
    }

    /// The checks only the whole log allows, and the hard state to recover.
    ///
    /// The first entry after the snapshot must not have a lower term than it
    /// (entries replayed before the snapshot's marker may still be replaced
    /// by a truncation, so this waits for the end).
    ///
    /// A host writes entries (and saves a snapshot) of a new term before the
    /// hard state that carries the term, in one batch; a crash can keep the
    /// entries and lose that hard state (a torn tail, or a kill after the
    /// write buffer was handed to the kernel). Then the log's last term is
    /// above the last hard state's. The `apply` checks leave every entry of
    /// such a term after the last hard state the host wrote (any written
    /// later would carry the term), so the lost one came next, and its term
    /// was at least the log's last term. That is the term recovered, with no
    /// vote: no hard state of that term is durable (terms never go back), so
    /// no vote in it was ever sent. Returns whether the term was raised.
    fn finish(&mut self) -> Result<bool, StorageError> {
        if let (Some(first), Some((path, offset))) = (self.entries.first(), &self.first_at) {
            if first.term < self.floor_term {
                return Err(StorageError::corrupt(
                    path,
                    *offset,
                    format!(
                        "entry {} has term {}, below the term {} of the snapshot before it",
                        first.index, first.term, self.floor_term
                    ),
                ));
            }
        }
        let last_term = self.entries.last().map_or(self.floor_term, |e| e.term);
        if last_term <= self.hard_state.term {
            return Ok(false);
        }
        self.hard_state = HardState {
            term: last_term,
            vote: 0,
            commit: self.hard_state.commit,
        };
        Ok(true)
    }
}

impl Wal {
    /// Opens (creating if needed) the log in `dir` and recovers its contents.
    ///
    /// A torn record at the very end of the last segment is cut off (and
    /// reported in `Recovered::repaired_tail`); any other damage, including
    /// terms no Raft host writes, is a [`StorageError::Corrupt`] naming the
    /// file and byte offset. A hard state lost after entries of a newer term
    /// is recovered with that term (`Recovered::hard_state`).
    pub fn open(dir: &Path, opts: WalOptions) -> Result<(Wal, Recovered), StorageError> {
        if opts.max_record_bytes < 24 {
            return Err(StorageError::InvalidOptions {
                reason: format!(
                    "max_record_bytes = {} cannot hold a hard state (24 bytes)",
                    opts.max_record_bytes
                ),
            });
        }
        if opts.segment_bytes == 0 {
            return Err(StorageError::InvalidOptions {
                reason: "segment_bytes must be positive".into(),
            });
        }
        if !dir.is_dir() {
            fs::create_dir_all(dir).map_err(|e| StorageError::io(dir, e))?;
            if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
                sync_dir(parent)?;
            }
        }
        let lock = lock_dir(dir)?;
        let listing = list_dir(dir)?;
        let mut dir_changed = false;
        for tmp in &listing.temporaries {
            fs::remove_file(tmp).map_err(|e| StorageError::io(tmp, e))?;
            dir_changed = true;
        }

        for (seq, first, path) in &listing.segments {
            if *seq > MAX_INDEX || *first > MAX_INDEX {
                return Err(StorageError::corrupt(
                    path,
                    0,
                    format!("segment number {seq} or first index {first} is past the supported maximum {MAX_INDEX}"),
                ));
            }
        }
        let mut recovered = Recovered::default();
        let mut snapshot = None;
        for (index, term, path) in listing.snapshots.iter().rev() {
            if *index > MAX_INDEX {
                let why = format!("index {index} is past the supported maximum {MAX_INDEX}");
                recovered.ignored_snapshots.push((path.clone(), why));
                continue;
            }
            match snapshot::verify_snapshot_file(path) {
                Ok(meta) if meta.index == *index && meta.term == *term => {
                    snapshot = Some((meta, path.clone()));
                    break;
                }
                Ok(meta) => recovered.ignored_snapshots.push((
                    path.clone(),
                    format!(
                        "header says index {} term {}, the file name disagrees",
                        meta.index, meta.term
                    ),
                )),
                Err(StorageError::Corrupt { offset, reason, .. }) => recovered
                    .ignored_snapshots
                    .push((path.clone(), format!("at byte offset {offset}: {reason}"))),
                Err(other) => return Err(other),
            }
        }
        let (floor, floor_term) = snapshot.as_ref().map_or((0, 0), |(m, _)| (m.index, m.term));
        let mut replay = Replay::over(floor, floor_term);

        for pair in listing.segments.windows(2) {
            let ((prev, _, _), (seq, _, path)) = (&pair[0], &pair[1]);
            if *seq != prev + 1 {
                // Only a prefix of segments is ever deleted: a hole means a
                // file went missing, with whatever hard state it held.
                return Err(StorageError::corrupt(
                    path,
                    0,
                    format!("segment {seq} follows segment {prev}: the segment(s) in between are missing"),
                ));
            }
        }
        let max_len = max_segment_len(&opts);
        let mut listed = listing.segments.as_slice();
        if let Some((_, _, path)) = listed.last() {
            if torn_at_creation(path, opts.max_record_bytes)? {
                // A segment whose creation crashed: it never held anything.
                // Removed before replay picks its first segment, so it is
                // never picked over the segments that hold the log.
                fs::remove_file(path).map_err(|e| StorageError::io(path, e))?;
                dir_changed = true;
                recovered.repaired_tail = Some((path.clone(), 0));
                listed = &listed[..listed.len() - 1];
            }
        }
        // Replay starts where compaction cuts (`save_snapshot`): at the newest
        // segment created when the log ended inside the snapshot. Older ones
        // remain only after a crash in the middle of a compaction. They are
        // not needed (that segment starts with the hard state, and the log
        // it began with is inside the snapshot), and not replayable either:
        // after a conflicting suffix that crossed a segment boundary, one of
        // them can start past the snapshot, beyond where the log now ends.
        let start = listed
            .iter()
            .rposition(|(_, first, _)| *first <= floor + 1)
            .unwrap_or(0);
        let (skipped, listed) = listed.split_at(start);

        let mut segments = Vec::new();
        let mut active_has_hard_state = false;
        let mut active_records_end = 0;
        let count = listing.segments.len();
        for (i, (seq, first, path)) in listed.iter().enumerate() {
            // Only the last file on disk may be torn; not the one before a
            // removed torn segment, which was complete before its successor
            // was created.
            let is_last = start + i + 1 == count;
            let contents = segment::read_segment(path, max_len, opts.max_record_bytes, is_last)?;
            debug_assert!(
                !matches!(contents.torn_tail, Some((0, _))),
                "a torn header is only allowed in the last segment, which was checked above"
            );
            if (contents.seq, contents.first_index) != (*seq, *first) {
                return Err(StorageError::corrupt(
                    path,
                    0,
                    format!(
                        "header says segment {} starting at index {}, the file name disagrees",
                        contents.seq, contents.first_index
                    ),
                ));
            }
            let info = SegmentInfo {
                path: path.clone(),
                seq: *seq,
                first_index: *first,
            };
            active_has_hard_state = false;
            for (offset, record) in contents.records {
                if let Record::HardState(_) = record {
                    active_has_hard_state = true;
                }
                replay.apply(path, offset, record)?;
            }
            active_records_end = contents.records_end;
            if let Some((offset, _)) = contents.torn_tail {
                let f = OpenOptions::new()
                    .write(true)
                    .open(path)
                    .map_err(|e| StorageError::io(path, e))?;
                f.set_len(offset)
                    .and_then(|_| f.sync_all())
                    .map_err(|e| StorageError::io(path, e))?;
                recovered.repaired_tail = Some((path.clone(), offset));
            }
            segments.push(info);
        }
        // What was just read came from the page cache, which may hold writes
        // of a process killed before its fsync: records it never
        // acknowledged. They are in the log from now on (the node may
        // acknowledge them again without writing them), so they must be on
        // the disk before anything is answered from them.
        for seg in &segments {
            File::open(&seg.path)
                .and_then(|f| f.sync_all())
                .map_err(|e| StorageError::io(&seg.path, e))?;
        }
        recovered.synced_segments = segments.len();
        if dir_changed || !segments.is_empty() {
            sync_dir(dir)?;
        }
        let raised = replay.finish()?;
        let hard_state = replay.hard_state;
        let terms: VecDeque<u64> = replay.entries.iter().map(|e| e.term).collect();
        let next_index = floor + 1 + terms.len() as u64;
        let (file, records_end, allocated) = match segments.last() {
            Some(last) => {
                // Written at explicit offsets (not O_APPEND): the next record
                // goes where the records end, over the preallocated zeros.
                let file = OpenOptions::new()
                    .read(true)
                    .write(true)
                    .open(&last.path)
                    .map_err(|e| StorageError::io(&last.path, e))?;
                let len = file.metadata().map_err(|e| StorageError::io(&last.path, e))?.len();
                debug_assert!(active_records_end <= len);
                (file, active_records_end, len)
            }
            None => {
                let seq = listing.segments.last().map_or(0, |s| s.0) + 1;
                let (file, path, len) = create_segment_file(dir, seq, next_index, hard_state)?;
                segments.push(SegmentInfo {
                    path,
                    seq,
                    first_index: next_index,
                });
                active_has_hard_state = true;
                (file, len, len)
            }
        };
        let mut wal = Wal {
            dir: dir.to_path_buf(),
            opts,
            segments,
            file,
            records_end,
            allocated,
            buf: Vec::new(),
            snapshot,
            terms,
            hard_state,
            unsynced: false,
            poisoned: None,
            syncs: 0,
            _lock: lock,
        };
        if !active_has_hard_state || raised {
            // The active segment lost its leading hard-state record to a torn
            // write: put one back so deleting older segments stays safe. Or
            // the hard state carrying the log's last term was lost: the log
            // says it again before anything is acted upon in that term.
            wal.write_record(&Record::HardState(hard_state))?;
            wal.sync()?;
        }
        // Finish the compaction the crash interrupted, as `save_snapshot`
        // does it: first the snapshot's marker, if the crash came before it
        // was written (the log must say it depends on this snapshot before
        // the segments or snapshot files that could replace it go, so a
        // snapshot file lost later is `Corrupt`, never a silent fall back);
        // then the removals, oldest first, each durable before the next, so
        // a crash here also leaves a suffix and never a hole; and only now
        // that the segments replayed (and the snapshot's name, by the
        // directory fsync above) are durable.
        if floor > 0 && !replay.floor_marked {
            wal.write_record(&Record::Snapshot {
                index: replay.floor,
                term: replay.floor_term,
            })?;
            wal.sync()?;
        }
        for (_, _, path) in skipped {
            fs::remove_file(path).map_err(|e| StorageError::io(path, e))?;
            sync_dir(dir)?;
        }
        // Snapshots the loaded one supersedes (a crash before `save_snapshot`
        // deleted them). Damaged newer ones stay for the operator: they are
        // reported in `ignored_snapshots`.
        let mut superseded = false;
        for (index, term, path) in &listing.snapshots {
            if (*index, *term) < (floor, floor_term) {
                fs::remove_file(path).map_err(|e| StorageError::io(path, e))?;
                superseded = true;
            }
        }
        if superseded {
            sync_dir(dir)?;
        }
        recovered.hard_state = hard_state;
        recovered.snapshot = wal.snapshot.as_ref().map(|(m, _)| m.clone());
        recovered.entries = replay.entries;
        Ok((wal, recovered))
    }

    /// Index of the first entry held in the log (after the snapshot).
    pub fn first_index(&self) -> u64 {
        self.snapshot_index() + 1
    }

    /// Index of the last entry, or of the snapshot when the log after it is empty.
    pub fn last_index(&self) -> u64 {
        self.snapshot_index() + self.terms.len() as u64
    }

    /// Term of the entry at `index`, if the log or the snapshot knows it.
    pub fn term_at(&self, index: u64) -> Option<u64> {
        match &self.snapshot {
            Some((m, _)) if m.index == index => return Some(m.term),
            _ => {}
        }
        if index < self.first_index() || index > self.last_index() {
            return None;
        }
        self.terms.get((index - self.first_index()) as usize).copied()
    }

    /// The last hard state written (durable only after `sync`).
    pub fn hard_state(&self) -> HardState {
        self.hard_state
    }

    /// Metadata of the saved snapshot, if any.
    pub fn snapshot_meta(&self) -> Option<&SnapshotMeta> {
        self.snapshot.as_ref().map(|(m, _)| m)
    }

    /// How many group commits (`fdatasync` calls by [`Wal::sync`]) this `Wal`
    /// has done: a `sync` with nothing new to flush does none.
    pub fn sync_count(&self) -> u64 {
        self.syncs
    }

    /// The directory holding the log.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The segment files currently in use, oldest first.
    pub fn segment_paths(&self) -> Vec<PathBuf> {
        self.segments.iter().map(|s| s.path.clone()).collect()
    }

    fn snapshot_index(&self) -> u64 {
        self.snapshot.as_ref().map_or(0, |(m, _)| m.index)
    }

    fn check_poisoned(&self) -> Result<(), StorageError> {
        match &self.poisoned {
            Some(reason) => Err(StorageError::Poisoned { reason: reason.clone() }),
            None => Ok(()),
        }
    }

    /// Records an I/O failure: from now on every call fails.
    fn poison(&mut self, err: StorageError) -> StorageError {
        if self.poisoned.is_none() {
            self.poisoned = Some(err.to_string());
        }
        err
    }

    fn active_path(&self) -> PathBuf {
        self.segments
            .last()
            .expect("an open Wal always has an active segment")
            .path
            .clone()
    }

    /// Checks an append without writing anything.
    pub fn check_append(&self, entries: &[LogEntry]) -> Result<(), StorageError> {
        let Some(first) = entries.first() else {
            return Ok(());
        };
        let snapshot_index = self.snapshot_index();
        if first.index <= snapshot_index {
            return Err(StorageError::Compacted {
                index: first.index,
                snapshot_index,
            });
        }
        let last = self.last_index();
        if first.index > last + 1 {
            return Err(StorageError::NonContiguous {
                expected: last + 1,
                got: first.index,
            });
        }
        for pair in entries.windows(2) {
            if pair[1].index != pair[0].index + 1 {
                return Err(StorageError::NonContiguous {
                    expected: pair[0].index + 1,
                    got: pair[1].index,
                });
            }
        }
        for e in entries {
            let len = (ENTRY_BODY_FIXED + e.payload.len()) as u64;
            if len > u64::from(self.opts.max_record_bytes) {
                return Err(StorageError::RecordTooLarge {
                    index: e.index,
                    len,
                    max: self.opts.max_record_bytes,
                });
            }
        }
        Ok(())
    }

    /// Appends entries (buffered: durable only after [`Wal::sync`]). They must
    /// follow the last index, or start at or before it, in which case the
    /// entries from that index on are replaced (a conflicting suffix from a
    /// new leader); a truncation record makes recovery replay that.
    pub fn append(&mut self, entries: &[LogEntry]) -> Result<(), StorageError> {
        self.check_poisoned()?;
        self.check_append(entries)?;
        let Some(first) = entries.first() else {
            return Ok(());
        };
        if first.index <= self.last_index() {
            self.write_record(&Record::Truncate { from: first.index })?;
            self.terms.truncate((first.index - self.first_index()) as usize);
        }
        for e in entries {
            self.maybe_roll()?;
            format::encode_entry(&mut self.buf, e);
            self.terms.push_back(e.term);
            self.after_encode()?;
        }
        debug_assert_eq!(self.last_index(), entries[entries.len() - 1].index);
        Ok(())
    }

    /// Checks a hard state against Raft's rules without writing it: the term
    /// never goes back, and a node votes at most once per term.
    pub fn check_hard_state(&self, hs: &HardState) -> Result<(), StorageError> {
        let old = self.hard_state;
        if hs.term < old.term {
            return Err(StorageError::InvalidHardState {
                reason: format!("term goes back from {} to {}", old.term, hs.term),
            });
        }
        if hs.term == old.term && old.vote != 0 && hs.vote != old.vote {
            return Err(StorageError::InvalidHardState {
                reason: format!("vote changes from {} to {} within term {}", old.vote, hs.vote, hs.term),
            });
        }
        Ok(())
    }

    /// Records a new hard state in the same log as the entries, so that one
    /// [`Wal::sync`] makes both durable. The last one written wins.
    pub fn set_hard_state(&mut self, hs: HardState) -> Result<(), StorageError> {
        self.check_poisoned()?;
        self.check_hard_state(&hs)?;
        self.write_record(&Record::HardState(hs))?;
        self.hard_state = hs;
        Ok(())
    }

    /// Group commit: hands everything buffered to the kernel and makes it
    /// durable with one fdatasync. After an error the `Wal` is poisoned.
    pub fn sync(&mut self) -> Result<(), StorageError> {
        self.check_poisoned()?;
        self.flush_buf()?;
        if self.unsynced {
            let path = self.active_path();
            if let Err(e) = self.file.sync_data() {
                return Err(self.poison(StorageError::io(path, e)));
            }
            self.syncs += 1;
            self.unsynced = false;
        }
        Ok(())
    }

    /// Saves a snapshot covering the log up to `meta.index`, then drops the
    /// entries it covers and deletes the segments wholly covered by it.
    ///
    /// Entries after `meta.index` stay when our log has `meta.term` at
    /// `meta.index` (a local compaction). Otherwise (a snapshot installed from
    /// a leader whose log differs from ours there, or that reaches past our
    /// last index) every entry after it is dropped too: ours conflict with it.
    /// Also makes everything appended so far durable.
    pub fn save_snapshot(&mut self, meta: &SnapshotMeta, data: &[u8]) -> Result<(), StorageError> {
        self.check_poisoned()?;
        let current = self.snapshot_index();
        if self.snapshot.is_some() && meta.index <= current {
            return Err(StorageError::StaleSnapshot {
                index: meta.index,
                current,
            });
        }
        if meta.index == 0 {
            return Err(StorageError::StaleSnapshot { index: 0, current });
        }
        if meta.index > MAX_INDEX {
            return Err(StorageError::IndexOutOfRange { index: meta.index });
        }
        if meta.membership.len() > format::MAX_MEMBERSHIP_BYTES as usize {
            // Refused before anything is written: recovery would refuse the file.
            return Err(snapshot::membership_too_large(meta.membership.len()));
        }
        let conflict = self.term_at(meta.index) != Some(meta.term);
        if conflict && meta.index <= self.last_index() {
            // Our entries from meta.index on disagree with the leader: none of
            // them can be committed, so drop them durably before the snapshot
            // exists (a crash in between leaves a shorter, consistent log).
            self.write_record(&Record::Truncate { from: meta.index })?;
            self.terms.truncate((meta.index - self.first_index()) as usize);
        }
        self.sync()?;
        let path = match snapshot::write_snapshot_file(&self.dir, meta, data) {
            Ok(p) => p,
            Err(e) => return Err(self.poison(e)),
        };
        // From here on the log depends on this snapshot: say so in the log, so
        // recovery refuses to fall back to an older snapshot silently.
        self.write_record(&Record::Snapshot {
            index: meta.index,
            term: meta.term,
        })?;
        self.sync()?;

        let compacted = if conflict {
            self.terms.len()
        } else {
            (meta.index - current) as usize
        };
        self.terms.drain(..compacted.min(self.terms.len()));
        self.snapshot = Some((meta.clone(), path.clone()));
        debug_assert_eq!(self.first_index(), meta.index + 1);

        let mut changed = false;
        // The newest segment that began inside the snapshot: everything
        // before it is no longer needed (never the active segment itself).
        // Recovery starts its replay by the same rule (`Wal::open`), so a
        // crash part way through the deletions below is finished there.
        let keep_from = self
            .segments
            .iter()
            .rposition(|s| s.first_index <= meta.index + 1)
            .unwrap_or(0);
        // Oldest first, each removal durable before the next: recovery
        // refuses a hole in the segment numbers, and a crash must not keep
        // an older segment whose successor's removal reached the disk (not
        // every file system orders unlinks; snapshots are rare, so the few
        // extra directory fsyncs are cheap).
        for seg in self.segments.drain(..keep_from).collect::<Vec<_>>() {
            if let Err(e) = fs::remove_file(&seg.path) {
                return Err(self.poison(StorageError::io(&seg.path, e)));
            }
            if let Err(e) = sync_dir(&self.dir) {
                return Err(self.poison(e));
            }
            changed = true;
        }
        let listing = list_dir(&self.dir)?;
        for (_, _, p) in listing.snapshots {
            if p != path {
                if let Err(e) = fs::remove_file(&p) {
                    return Err(self.poison(StorageError::io(&p, e)));
                }
                changed = true;
            }
        }
        if changed {
            if let Err(e) = sync_dir(&self.dir) {
                return Err(self.poison(e));
            }
        }
        Ok(())
    }

    /// The saved snapshot with its data, checked against its checksum.
    pub fn load_snapshot(&self) -> Result<Option<(SnapshotMeta, Vec<u8>)>, StorageError> {
        match &self.snapshot {
            None => Ok(None),
            Some((_, path)) => snapshot::read_snapshot_file(path).map(Some),
        }
    }

    fn write_record(&mut self, record: &Record) -> Result<(), StorageError> {
        self.check_poisoned()?;
        self.maybe_roll()?;
        format::encode_record(&mut self.buf, record);
        self.after_encode()
    }

    fn after_encode(&mut self) -> Result<(), StorageError> {
        self.unsynced = true;
        if self.buf.len() >= self.opts.write_buffer_bytes {
            self.flush_buf()?;
        }
        Ok(())
    }

    /// Hands the buffer to the kernel (no fsync).
    fn flush_buf(&mut self) -> Result<(), StorageError> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let end = self.records_end + self.buf.len() as u64;
        if let Err(e) = self.file.write_all_at(&self.buf, self.records_end) {
            let path = self.active_path();
            return Err(self.poison(StorageError::io(path, e)));
        }
        self.records_end = end;
        debug_assert!(
            end <= max_segment_len(&self.opts),
            "recovery would refuse a segment of {end} bytes"
        );
        self.buf.clear();
        self.unsynced = true;
        if end > self.allocated {
            self.allocated = end;
            self.preallocate();
        }
        debug_assert!(self.records_end <= self.allocated);
        Ok(())
    }

    /// Grows the active segment with zeros up to the next multiple of
    /// `preallocate_bytes` past its records, never past `segment_bytes` (a
    /// full segment is cut to its records at the roll). The next sync makes
    /// them durable and is then the one fsync in a step that commits the
    /// journal. Optional: a failed zero write (a full disk) only leaves the
    /// file shorter; the records already written are untouched, and the next
    /// append grows the file as a plain append would.
    fn preallocate(&mut self) {
        static ZEROS: [u8; 64 << 10] = [0; 64 << 10];
        let step = self.opts.preallocate_bytes;
        if step == 0 || self.allocated >= self.opts.segment_bytes {
            return;
        }
        let target = ((self.allocated / step + 1) * step).min(self.opts.segment_bytes);
        while self.allocated < target {
            let n = (target - self.allocated).min(ZEROS.len() as u64) as usize;
            if self.file.write_all_at(&ZEROS[..n], self.allocated).is_err() {
                // Part of it may have landed: take the file's length as it is.
                if let Ok(m) = self.file.metadata() {
                    self.allocated = m.len().max(self.records_end);
                }
                return;
            }
            self.allocated += n as u64;
        }
        debug_assert!(self.allocated <= self.opts.segment_bytes.max(self.records_end));
    }

    fn maybe_roll(&mut self) -> Result<(), StorageError> {
        if self.records_end + self.buf.len() as u64 >= self.opts.segment_bytes {
            // The old segment is made durable in full before the new one
            // exists, so a torn write can only ever be in the last segment;
            // and cut to its records, so only the last has a zero tail.
            self.sync()?;
            if self.allocated > self.records_end {
                if let Err(e) = self.file.set_len(self.records_end).and_then(|_| self.file.sync_all()) {
                    let path = self.active_path();
                    return Err(self.poison(StorageError::io(path, e)));
                }
                self.allocated = self.records_end;
            }
            let seq = self.segments.last().map_or(0, |s| s.seq) + 1;
            self.create_segment(seq)?;
        }
        Ok(())
    }

    /// Creates segment `seq`, starting with the current hard state, and makes
    /// it (and its directory entry) durable.
    fn create_segment(&mut self, seq: u64) -> Result<(), StorageError> {
        let first_index = self.last_index() + 1;
        match create_segment_file(&self.dir, seq, first_index, self.hard_state) {
            Ok((file, path, len)) => {
                self.file = file;
                self.records_end = len;
                self.allocated = len;
                self.segments.push(SegmentInfo { path, seq, first_index });
                Ok(())
            }
            Err(e) => Err(self.poison(e)),
        }
    }
}

/// The longest a segment written with `opts` can be. A record is started only
/// below `segment_bytes`, or right after the header and hard state of a new
/// segment, and is at most `max_record_bytes` plus its header; the
/// preallocated zeros stop at `segment_bytes` (an earlier build let them run
/// up to `preallocate_bytes` past the records: that much is allowed too).
/// Recovery refuses a longer file as damage (it reads any file through a
/// bounded window, so this is a check, not what bounds its memory).
pub(crate) fn max_segment_len(opts: &WalOptions) -> u64 {
    opts.segment_bytes
        .max(CREATION_LEN as u64)
        .saturating_add((RECORD_HEADER_LEN as u64) + u64::from(opts.max_record_bytes))
        .saturating_add(opts.preallocate_bytes)
}

/// Bytes a segment's creation writes (in one write, then fsync): the
/// header and the leading hard-state record.
const CREATION_LEN: usize = SEGMENT_HEADER_LEN + RECORD_HEADER_LEN + 24;

/// Whether the last segment `path` is one whose creation was torn. Its
/// creation writes [`CREATION_LEN`] bytes, header and hard state, and
/// fsyncs them before anything else is written to it. So a file no longer
/// than that which does not hold a valid header and a complete hard-state
/// record never held anything: the hard state it was to begin with is the
/// one already in the segment before it (a roll happens before a new hard
/// state is written). A longer file went past a completed creation: its
/// damage is for `parse_segment` to judge, and a bad header there is
/// `Corrupt`, never silently removed.
fn torn_at_creation(path: &Path, max_record_bytes: u32) -> Result<bool, StorageError> {
    let len = fs::metadata(path).map_err(|e| StorageError::io(path, e))?.len();
    if len > CREATION_LEN as u64 {
        let header = segment::read_prefix(path, SEGMENT_HEADER_LEN as u64)?;
        return match format::check_segment_header(&header) {
            Ok(_) => Ok(false),
            Err(reason) => Err(StorageError::corrupt(
                path,
                0,
                format!("{reason}, in a segment of {len} bytes, longer than a torn creation can leave"),
            )),
        };
    }
    let data = segment::read_prefix(path, CREATION_LEN as u64)?;
    let complete = parse_segment(path, &data, max_record_bytes, true)
        .is_ok_and(|c| c.torn_tail.is_none() && matches!(c.records.first(), Some((_, Record::HardState(_)))));
    Ok(!complete)
}

/// Writes a new segment file holding its header and `hs`, fsyncs it and the
/// directory. Returns the file (open for writing), its path and length.
fn create_segment_file(
    dir: &Path,
    seq: u64,
    first_index: u64,
    hs: HardState,
) -> Result<(File, PathBuf, u64), StorageError> {
    let path = dir.join(format::segment_file_name(seq, first_index));
    let mut bytes = format::encode_segment_header(seq, first_index).to_vec();
    format::encode_record(&mut bytes, &Record::HardState(hs));
    debug_assert_eq!(bytes.len(), CREATION_LEN, "torn_at_creation relies on this length");
    let create = || -> std::io::Result<File> {
        let mut f = OpenOptions::new().read(true).write(true).create_new(true).open(&path)?;
        f.write_all(&bytes)?;
        f.sync_all()?;
        Ok(f)
    };
    let file = create().map_err(|e| StorageError::io(&path, e))?;
    sync_dir(dir)?;
    Ok((file, path, bytes.len() as u64))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(index: u64) -> LogEntry {
        LogEntry {
            index,
            term: 1,
            payload: vec![1; 8],
        }
    }

    /// The writer never makes a segment longer than recovery accepts: a
    /// largest record started one byte below `segment_bytes`, or right after
    /// a new segment's header and hard state when `segment_bytes` is tiny,
    /// reaches the bound and is read back.
    #[test]
    fn the_longest_segments_written_are_still_read() {
        for segment_bytes in [1, 1000] {
            let opts = WalOptions {
                segment_bytes,
                max_record_bytes: 500,
                write_buffer_bytes: 0,
                preallocate_bytes: 0,
            };
            let dir = tempfile::tempdir().unwrap();
            let (mut wal, _) = Wal::open(dir.path(), opts.clone()).unwrap();
            let overhead = RECORD_HEADER_LEN + ENTRY_BODY_FIXED;
            let biggest = opts.max_record_bytes as usize - ENTRY_BODY_FIXED;
            for index in 1..=20 {
                // Fill up to one byte below segment_bytes, then the largest.
                let room = (segment_bytes - 1).saturating_sub(wal.records_end) as usize;
                let len = if room >= overhead {
                    (room - overhead).min(biggest)
                } else {
                    biggest
                };
                wal.append(&[LogEntry {
                    index,
                    term: 1,
                    payload: vec![7; len],
                }])
                .unwrap();
                wal.sync().unwrap();
            }
            let longest = wal
                .segment_paths()
                .iter()
                .map(|p| fs::metadata(p).unwrap().len())
                .max()
                .unwrap();
            // Within a byte of the bound: it is not loose either.
            let max = max_segment_len(&opts);
            assert!(
                longest <= max && longest + 1 >= max,
                "segment_bytes {segment_bytes}: {longest} against {max}"
            );
            drop(wal);
            let (_, rec) = Wal::open(dir.path(), opts).unwrap();
            assert_eq!(rec.entries.len(), 20);
        }
    }

    /// A crash after a snapshot file was renamed into place but before its
    /// marker reached the log (and before the older snapshot was deleted):
    /// recovery writes the marker, whether or not it has segments to delete,
    /// and deletes the snapshot the new one supersedes.
    #[test]
    fn recovery_marks_a_snapshot_renamed_before_the_crash_and_deletes_the_older_one() {
        let dir = tempfile::tempdir().unwrap();
        let opts = WalOptions::default();
        let (mut wal, _) = Wal::open(dir.path(), opts.clone()).unwrap();
        wal.append(&(1..=10).map(entry).collect::<Vec<_>>()).unwrap();
        wal.set_hard_state(HardState {
            term: 1,
            vote: 1,
            commit: 10,
        })
        .unwrap();
        let older = SnapshotMeta {
            index: 4,
            term: 1,
            membership: vec![],
        };
        wal.save_snapshot(&older, b"four").unwrap();
        let segments = wal.segment_paths();
        drop(wal);
        // The crash state: `save_snapshot` got as far as the rename (and
        // the directory fsync), no further.
        let newer = SnapshotMeta {
            index: 8,
            term: 1,
            membership: vec![7],
        };
        let newer_path = snapshot::write_snapshot_file(dir.path(), &newer, b"eight").unwrap();
        let older_path = dir.path().join(format::snapshot_file_name(4, 1));
        assert!(older_path.exists());

        let (wal, rec) = Wal::open(dir.path(), opts.clone()).unwrap();
        assert_eq!(rec.snapshot, Some(newer.clone()));
        assert_eq!(rec.entries, (9..=10).map(entry).collect::<Vec<_>>());
        assert_eq!(wal.segment_paths(), segments, "no segment was due for deletion");
        drop(wal);
        let markers: Vec<Record> = segments
            .iter()
            .flat_map(|p| {
                segment::read_segment(p, u64::MAX, opts.max_record_bytes, true)
                    .unwrap()
                    .records
            })
            .map(|(_, r)| r)
            .filter(|r| matches!(r, Record::Snapshot { .. }))
            .collect();
        assert_eq!(
            markers,
            vec![
                Record::Snapshot { index: 4, term: 1 },
                Record::Snapshot { index: 8, term: 1 }
            ]
        );
        assert!(!older_path.exists(), "the superseded snapshot is still there");
        assert!(newer_path.exists());
        // The log now depends on the new snapshot: losing it is Corrupt, not
        // a silent fall back to a log that no longer goes back that far.
        fs::remove_file(&newer_path).unwrap();
        let err = Wal::open(dir.path(), opts).unwrap_err();
        assert!(err.to_string().contains("the log depends on a snapshot"), "{err}");
    }

    /// A failed write poisons the log: every later call is refused, including
    /// a retried sync (after a failed fsync the kernel may have dropped the
    /// data while a retry reports success).
    #[test]
    fn a_failed_write_poisons_the_wal() {
        let dir = tempfile::tempdir().unwrap();
        let (mut wal, _) = Wal::open(dir.path(), WalOptions::default()).unwrap();
        wal.append(&[entry(1)]).unwrap();
        wal.sync().unwrap();
        // Swap in a read-only handle so the next write fails as a full or
        // broken disk would.
        wal.file = File::open(wal.active_path()).unwrap();
        wal.append(&[entry(2)]).unwrap();
        let err = wal.sync().unwrap_err();
        assert!(matches!(err, StorageError::Io { .. }), "{err}");
        for err in [
            wal.sync().unwrap_err(),
            wal.append(&[entry(3)]).unwrap_err(),
            wal.set_hard_state(HardState {
                term: 2,
                vote: 0,
                commit: 0,
            })
            .unwrap_err(),
            wal.save_snapshot(
                &SnapshotMeta {
                    index: 1,
                    term: 1,
                    membership: vec![],
                },
                b"",
            )
            .unwrap_err(),
        ] {
            assert!(matches!(err, StorageError::Poisoned { .. }), "{err}");
        }
        drop(wal);
        // What was synced before the failure is still there.
        let (_, rec) = Wal::open(dir.path(), WalOptions::default()).unwrap();
        assert_eq!(rec.entries, vec![entry(1)]);
    }
}
