//! The in-memory sort: sort an index, not the 100-byte records.
//!
//! For a file sorted in memory each record becomes one `u64` index entry:
//! the top bits of its key above [`record_bits`]`(n)` low bits holding its
//! record number (24 bits for 10 M records, leaving 40 key bits). A plain
//! integer sort then orders by those key bits and position; the rare runs of
//! entries whose kept key bits are equal are re-sorted by the full 80-bit
//! key and position ([`sort_entries`]), so the result is exact, stable and
//! deterministic. Half the size of a `u128` entry means half the memory to
//! fault in and scatter, and a cheaper sort (measured: see
//! docs/BENCHMARKS.md, sort section).
//!
//! [`sort_into_file`] reads the records once, filing each entry under its
//! top 8 key bits ([`crate::blocks`]); then each worker takes one such top
//! bucket at a time, radix-sorts it in cache, and for each 1 MB output
//! piece of it gathers the records into a cache-resident buffer and
//! `pwrite`s it at its offset: the kernel's copy then reads cache-hot bytes. Keys too skewed for that, and [`sort_index`],
//! take two passes over the input instead (count, then scatter into one
//! contiguous index).
//!
//! [`BucketIndex`] is the streaming variant used by the run sorter (runs and
//! netsort): `u128` entries bucketed as records arrive.
//!
//! Memory: 8 bytes of index per 100-byte record, and for [`sort_into_file`]
//! at most about 1.25 more (partly filled blocks, and each worker's two
//! buffers for sorting one top bucket); [`BucketIndex`]: 16 to 32.

use std::io::Write;
use std::os::unix::fs::FileExt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::Instant;

use rayon::prelude::*;

use crate::blocks::BucketBlocks;
use crate::record::{key_of, key_prefix, RECORD_LEN};
use crate::writer::PipelinedWriter;

/// Low bits of a [`BucketIndex`] entry holding the record number.
pub const INDEX_BITS: u32 = 48;
const INDEX_MASK: u128 = (1u128 << INDEX_BITS) - 1;
/// Below this many records a plain sort beats the bucket passes.
const SMALL: usize = 1 << 14;
/// Most record-number bits in a `u64` entry: at least 24 key bits remain,
/// more than the 16 bucket bits.
pub const MAX_RECORD_BITS: u32 = 40;

/// Record number stored in a [`BucketIndex`] entry.
#[inline]
pub fn record_number(entry: u128) -> usize {
    (entry & INDEX_MASK) as usize
}

/// Bits needed to number `n` records (at least 1).
pub fn record_bits(n: usize) -> u32 {
    (usize::BITS - n.saturating_sub(1).leading_zeros()).max(1)
}

/// The `u64` entry of record `i` whose key starts with `prefix`: the
/// prefix's top `64 - rec_bits` bits, then `i`.
#[inline]
pub(crate) fn entry_of(prefix: u64, i: usize, rec_bits: u32) -> u64 {
    debug_assert!((i as u64) >> rec_bits == 0, "record number fits its bits");
    ((prefix >> rec_bits) << rec_bits) | i as u64
}

/// The record number in a `u64` entry.
#[inline]
fn number_of(entry: u64, rec_bits: u32) -> usize {
    (entry & ((1u64 << rec_bits) - 1)) as usize
}

/// The `u64` entry of record `i` of `data`.
#[inline]
fn entry64(data: &[u8], i: usize, rec_bits: u32) -> u64 {
    let start = i * RECORD_LEN;
    entry_of(key_prefix(&data[start..start + RECORD_LEN]), i, rec_bits)
}

/// Sort `entries` (of records in `data`, numbered in the low `rec_bits`
/// bits) into key order, equal keys by record number. One integer sort
/// orders all entries whose kept key bits differ; runs with equal kept bits
/// (for random keys a handful in 10 M) are then ordered by the full key.
pub fn sort_entries(data: &[u8], entries: &mut [u64], rec_bits: u32) {
    entries.sort_unstable();
    order_ties(data, entries, rec_bits);
}

/// Finish the order of `entries`, already ordered by their bits from `low`
/// up (at least `rec_bits`): each run equal in those bits is sorted by the
/// rest of the entry and its ties in the kept key bits by the full key. One
/// pass; for random keys nearly every run has one entry.
pub(crate) fn order_runs(data: &[u8], entries: &mut [u64], low: u32, rec_bits: u32) {
    debug_assert!(low >= rec_bits);
    let n = entries.len();
    let mut start = 0;
    while start + 1 < n {
        let run = entries[start] >> low;
        if entries[start + 1] >> low != run {
            start += 1;
            continue;
        }
        let mut end = start + 2;
        while end < n && entries[end] >> low == run {
            end += 1;
        }
        entries[start..end].sort_unstable();
        order_ties(data, &mut entries[start..end], rec_bits);
        start = end;
    }
}

/// Order each run of `entries` (already ordered by their kept key bits)
/// whose kept key bits are equal by the full key, then record number.
pub(crate) fn order_ties(data: &[u8], entries: &mut [u64], rec_bits: u32) {
    let full_key = |e: u64| {
        let number = number_of(e, rec_bits);
        let start = number * RECORD_LEN;
        (key_of(&data[start..start + RECORD_LEN]), number)
    };
    let mut start = 0;
    while start + 1 < entries.len() {
        let kept = entries[start] >> rec_bits;
        if entries[start + 1] >> rec_bits != kept {
            start += 1;
            continue;
        }
        let mut end = start + 2;
        while end < entries.len() && entries[end] >> rec_bits == kept {
            end += 1;
        }
        entries[start..end].sort_unstable_by_key(|&e| full_key(e));
        start = end;
    }
}

/// A sorted (or bucketed) index of the records of one buffer: `u64`
/// entries, record number in the low [`Index::record_bits`] bits.
pub struct Index {
    entries: IndexBuf,
    rec_bits: u32,
}

impl Index {
    /// Entries indexed.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True if there are no entries.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Low bits of each entry holding the record number.
    pub fn record_bits(&self) -> u32 {
        self.rec_bits
    }

    /// The record numbers in index order.
    pub fn record_numbers(&self) -> impl Iterator<Item = usize> + '_ {
        let rec_bits = self.rec_bits;
        self.entries.iter().map(move |&e| number_of(e, rec_bits))
    }
}

/// Sorted index of the records in `data` (whose length must be a multiple of
/// [`RECORD_LEN`]): its `k`-th record number names the record that goes to
/// position `k`.
pub fn sort_index(data: &[u8]) -> Index {
    let (mut index, bucket_start) = bucket_index(data);
    let rec_bits = index.rec_bits;
    let mut bucket_slices: Vec<&mut [u64]> = Vec::with_capacity(bucket_start.len());
    let mut rest: &mut [u64] = &mut index.entries;
    for w in bucket_start.windows(2) {
        let (head, tail) = rest.split_at_mut(w[1] - w[0]);
        bucket_slices.push(head);
        rest = tail;
    }
    bucket_slices
        .into_par_iter()
        .with_min_len(64)
        .for_each(|bucket| sort_entries(data, bucket, rec_bits));
    index
}

/// Sort `data`'s records into `file` (which must be empty): like
/// [`sort_index`] then [`write_sorted_at`], but each worker sorts the few
/// buckets of one output piece right before gathering and writing it, so
/// the last pass over the index happens while its entries are in cache and
/// sorting overlaps the other workers' writes. The input is read once
/// before that ([`BucketBlocks`]) unless one top bucket holds more than
/// `1 / (16 * workers)` of the records; then, to keep the workers' scratch
/// within the memory budget, it is read twice (count, then scatter) into one
/// contiguous index.
///
/// Writers take turns. ext4 lets one buffered write into a file at a time
/// (the inode lock), and a writer that finds it taken spins while the holder
/// runs: two threads writing 1 GB in 1 MB pieces used 0.30 CPU-s where one
/// thread used 0.17. So a worker that finds the file busy keeps its piece,
/// gathers its next one into a second buffer and writes both in its next
/// turn (then waiting if it must). Each worker keeps its own two buffers:
/// handing buffers between threads (tried) made the gathers 70% slower.
pub fn sort_into_file(data: &[u8], file: &std::fs::File) -> std::io::Result<usize> {
    assert_eq!(data.len() % RECORD_LEN, 0, "whole records only");
    let n = data.len() / RECORD_LEN;
    let rec_bits = record_bits(n);
    assert!(rec_bits <= MAX_RECORD_BITS, "too many records for the index");
    file.set_len(data.len() as u64)?;
    if n >= SMALL {
        let t = Instant::now();
        let blocks = BucketBlocks::build(data, rec_bits);
        crate::external::trace(&format!("blocks: {:.3}s", t.elapsed().as_secs_f64()));
        // Each worker sorts one top bucket at a time in two scratch buffers
        // of its own; keys so skewed that one bucket would need much of the
        // budget go the two-pass way instead, into one shared index.
        if blocks_fit(blocks.counts(), n) {
            return sort_blocks_into_file(data, &blocks, rec_bits, file);
        }
        crate::external::trace("skewed keys: counting pass");
    }
    sort_counted_into_file(data, file)
}

/// The fused phase of [`sort_into_file`] after the two passes of
/// [`bucket_index`] (count, then scatter into one contiguous index): jobs of
/// whole buckets, about one output piece each, taken in order.
fn sort_counted_into_file(data: &[u8], file: &std::fs::File) -> std::io::Result<usize> {
    let (mut index, bucket_start) = bucket_index(data);
    let (n, rec_bits) = (index.len(), index.rec_bits);
    let t = Instant::now();
    let mut jobs = Vec::new();
    let mut rest: &mut [u64] = &mut index.entries;
    let mut b = 0;
    while b + 1 < bucket_start.len() {
        let first = bucket_start[b];
        let mut starts = vec![0];
        while b + 1 < bucket_start.len() && (starts.len() == 1 || bucket_start[b] - first < PIECE_RECORDS) {
            b += 1;
            starts.push(bucket_start[b] - first);
        }
        let (head, tail) = rest.split_at_mut(bucket_start[b] - first);
        jobs.push((head, starts, first));
        rest = tail;
    }
    debug_assert!(rest.is_empty());
    let turns = WriteTurns::new(file);
    let jobs = Mutex::new(jobs.into_iter());
    let times = PhaseTimes::default();
    let results = rayon::broadcast(|_| {
        let mut worker = TurnWorker::new(&turns);
        while let Some((entries, starts, first)) = next_of(&jobs) {
            if turns.failed.load(Ordering::Relaxed) {
                break;
            }
            worker.write_buckets(data, rec_bits, entries, &starts, first, &times)?;
        }
        worker.finish()
    });
    results.into_iter().collect::<std::io::Result<()>>()?;
    times.report("sort+gather+pwrite", t);
    Ok(n)
}

/// True if every top bucket is small enough for [`sort_blocks_into_file`]:
/// each worker's two scratch buffers then hold at most `n / (8 * workers)`
/// entries, one byte per record in all.
fn blocks_fit(counts: &[usize], n: usize) -> bool {
    let workers = rayon::current_num_threads().max(1);
    counts.iter().all(|&c| c <= n / (16 * workers))
}

/// The fused phase of [`sort_into_file`] from [`BucketBlocks`]: workers
/// take the top buckets in order, sort each in scratch buffers of their
/// own, then gather and write it in pieces.
fn sort_blocks_into_file(
    data: &[u8],
    blocks: &BucketBlocks,
    rec_bits: u32,
    file: &std::fs::File,
) -> std::io::Result<usize> {
    let t = Instant::now();
    let mut first = 0;
    let mut jobs = Vec::with_capacity(blocks.counts().len());
    for (b, &count) in blocks.counts().iter().enumerate() {
        if count > 0 {
            jobs.push((b, first));
        }
        first += count;
    }
    let turns = WriteTurns::new(file);
    let jobs = Mutex::new(jobs.into_iter());
    let times = PhaseTimes::default();
    let results = rayon::broadcast(|_| {
        let mut worker = TurnWorker::new(&turns);
        let (mut sorted, mut spare) = (Vec::new(), Vec::new());
        let mut starts = Vec::new();
        while let Some((b, first)) = next_of(&jobs) {
            // Another worker's write failed: its error is the result.
            if turns.failed.load(Ordering::Relaxed) {
                break;
            }
            let t0 = times.now();
            let low = blocks.sorted_bucket(b, rec_bits, &mut sorted, &mut spare);
            order_runs(data, &mut sorted, low, rec_bits);
            times.add(&times.sort, t0);
            starts.clear();
            starts.extend((0..sorted.len()).step_by(PIECE_RECORDS).chain([sorted.len()]));
            worker.write_pieces(data, rec_bits, &sorted, &starts, first, &times)?;
        }
        worker.finish()
    });
    results.into_iter().collect::<std::io::Result<()>>()?;
    times.report("sort+gather+pwrite", t);
    Ok(first)
}

/// The next job of a shared queue (a poisoned lock only means another
/// worker panicked; its panic is reported by rayon).
fn next_of<T>(jobs: &Mutex<impl Iterator<Item = T>>) -> Option<T> {
    jobs.lock().unwrap_or_else(|e| e.into_inner()).next()
}

/// Bucket bits for `n` records: about 64 records per bucket for random
/// keys, at most 2^16 buckets.
fn bucket_bits(n: usize) -> u32 {
    ((n / 64).max(2).ilog2()).min(16)
}

/// The output file and whose turn it is to write to it.
struct WriteTurns<'a> {
    file: &'a std::fs::File,
    turn: Mutex<()>,
    /// A worker's write failed: the others stop.
    failed: AtomicBool,
}

/// A worker's two buffers: the one being gathered into and at most one
/// gathered piece waiting for the worker's next turn.
struct TurnWorker<'a> {
    turns: &'a WriteTurns<'a>,
    buffers: [Vec<u8>; 2],
    current: usize,
    /// Offset of the piece in the other buffer, if it waits to be written.
    waiting: Option<u64>,
}

impl<'a> WriteTurns<'a> {
    fn new(file: &'a std::fs::File) -> Self {
        WriteTurns {
            file,
            turn: Mutex::new(()),
            failed: AtomicBool::new(false),
        }
    }
}

impl<'a> TurnWorker<'a> {
    fn new(turns: &'a WriteTurns<'a>) -> Self {
        let buffer = || Vec::with_capacity(2 * PIECE_RECORDS * RECORD_LEN);
        TurnWorker {
            turns,
            buffers: [buffer(), buffer()],
            current: 0,
            waiting: None,
        }
    }

    /// Sort, gather and write the buckets of `entries` (bucket `k` is
    /// `entries[starts[k]..starts[k + 1]]`; the first record goes to output
    /// record `first`) in pieces of whole buckets, each of about
    /// [`PIECE_RECORDS`] records, each piece sorted right before it is
    /// gathered.
    fn write_buckets(
        &mut self,
        data: &[u8],
        rec_bits: u32,
        entries: &mut [u64],
        starts: &[usize],
        first: usize,
        times: &PhaseTimes,
    ) -> std::io::Result<()> {
        debug_assert_eq!(starts.first().copied().unwrap_or(0), 0);
        debug_assert_eq!(starts.last().copied().unwrap_or(0), entries.len());
        let mut k = 0;
        while k + 1 < starts.len() {
            // Whole buckets from k up to j, at least one.
            let mut j = k + 1;
            while j + 1 < starts.len() && starts[j] - starts[k] < PIECE_RECORDS {
                j += 1;
            }
            let t0 = times.now();
            for w in starts[k..=j].windows(2) {
                sort_entries(data, &mut entries[w[0]..w[1]], rec_bits);
            }
            times.add(&times.sort, t0);
            self.write_pieces(data, rec_bits, entries, &[starts[k], starts[j]], first, times)?;
            k = j;
        }
        Ok(())
    }

    /// Gather and write sorted `entries` in the pieces `entries[starts[k]..
    /// starts[k + 1]]`, the first record going to output record `first`.
    /// Stops early, without error, once another worker's write has failed.
    fn write_pieces(
        &mut self,
        data: &[u8],
        rec_bits: u32,
        entries: &[u64],
        starts: &[usize],
        first: usize,
        times: &PhaseTimes,
    ) -> std::io::Result<()> {
        for w in starts.windows(2) {
            let (lo, hi) = (w[0], w[1]);
            if self.turns.failed.load(Ordering::Relaxed) {
                return Ok(());
            }
            if lo == hi {
                continue;
            }
            let t0 = times.now();
            let buf = self.buffer();
            gather_into(data, &entries[lo..hi], rec_bits, buf);
            let t1 = times.add(&times.gather, t0);
            let written = self.write(((first + lo) * RECORD_LEN) as u64);
            times.add(&times.write, t1);
            written.inspect_err(|_| self.turns.failed.store(true, Ordering::Relaxed))?;
        }
        Ok(())
    }

    /// The empty buffer to gather the next piece into.
    fn buffer(&mut self) -> &mut Vec<u8> {
        let buf = &mut self.buffers[self.current];
        buf.clear();
        buf
    }

    /// Write the piece just gathered at `offset`, with the waiting one, if
    /// the file is free or a piece already waits; else let it wait.
    fn write(&mut self, offset: u64) -> std::io::Result<()> {
        let turn = match self.turns.turn.try_lock() {
            Ok(turn) => turn,
            Err(std::sync::TryLockError::WouldBlock) if self.waiting.is_none() => {
                self.waiting = Some(offset);
                self.current = 1 - self.current;
                return Ok(());
            }
            Err(_) => self.turns.turn.lock().unwrap_or_else(|e| e.into_inner()),
        };
        self.write_waiting()?;
        let written = self.turns.file.write_all_at(&self.buffers[self.current], offset);
        drop(turn);
        written
    }

    /// Write the piece that waits, if any (the caller holds the turn).
    fn write_waiting(&mut self) -> std::io::Result<()> {
        match self.waiting.take() {
            Some(offset) => self.turns.file.write_all_at(&self.buffers[1 - self.current], offset),
            None => Ok(()),
        }
    }

    /// Write the piece that still waits once there is nothing left to gather.
    fn finish(mut self) -> std::io::Result<()> {
        if self.waiting.is_none() {
            return Ok(());
        }
        let _turn = self.turns.turn.lock().unwrap_or_else(|e| e.into_inner());
        self.write_waiting()
    }
}

/// Thread-time per phase of the parallel sort-gather-write loop, summed
/// over threads; only measured when `TRITON_SORT_TRACE` is set.
#[derive(Default)]
struct PhaseTimes {
    on: OnceLock<bool>,
    sort: AtomicU64,
    gather: AtomicU64,
    write: AtomicU64,
}

impl PhaseTimes {
    fn enabled(&self) -> bool {
        *self.on.get_or_init(crate::external::tracing)
    }

    fn now(&self) -> Option<Instant> {
        self.enabled().then(Instant::now)
    }

    /// Add the time since `since` to `phase`; returns now.
    fn add(&self, phase: &AtomicU64, since: Option<Instant>) -> Option<Instant> {
        let since = since?;
        let now = Instant::now();
        phase.fetch_add((now - since).as_nanos() as u64, Ordering::Relaxed);
        Some(now)
    }

    fn report(&self, what: &str, wall: Instant) {
        if self.enabled() {
            let secs = |a: &AtomicU64| a.load(Ordering::Relaxed) as f64 / 1e9;
            crate::external::trace(&format!(
                "{what}: wall {:.3}s; thread-time sort {:.3}s, gather {:.3}s, pwrite {:.3}s",
                wall.elapsed().as_secs_f64(),
                secs(&self.sort),
                secs(&self.gather),
                secs(&self.write)
            ));
        }
    }
}

/// Passes 1 and 2 of the sort: index entries scattered into buckets by
/// their top key bits (each bucket unsorted). Returns the index and where
/// each bucket starts (one more entry than buckets, the last being `n`).
fn bucket_index(data: &[u8]) -> (Index, Vec<usize>) {
    assert_eq!(data.len() % RECORD_LEN, 0, "whole records only");
    let n = data.len() / RECORD_LEN;
    let rec_bits = record_bits(n);
    assert!(rec_bits <= MAX_RECORD_BITS, "too many records for the index");
    if n < SMALL {
        let entries = IndexBuf::Small((0..n).map(|i| entry64(data, i, rec_bits)).collect());
        return (Index { entries, rec_bits }, vec![0, n]);
    }
    let t = Instant::now();
    let bits = bucket_bits(n);
    let buckets = 1usize << bits;
    let shift = 64 - bits;
    let prefix_of = |i: usize| {
        let start = i * RECORD_LEN;
        prefetch_line(data, start + STREAM_AHEAD);
        key_prefix(&data[start..start + RECORD_LEN])
    };
    // A few slices per thread for the counting and scatter passes.
    let slice_count = (rayon::current_num_threads() * 4).clamp(1, n / SMALL);
    let slice_len = n.div_ceil(slice_count);
    let slices: Vec<(usize, usize)> = (0..n).step_by(slice_len).map(|s| (s, (s + slice_len).min(n))).collect();
    // Pass 1: per-slice histograms. (Tried: writing each slice's entries to
    // a staging copy here and scattering from it, so the records are read
    // once instead of twice; no faster on this machine, and 8 more bytes
    // per record: see docs/BENCHMARKS.md.)
    let counts: Vec<Vec<usize>> = slices
        .par_iter()
        .map(|&(lo, hi)| {
            let mut c = vec![0usize; buckets];
            for i in lo..hi {
                c[(prefix_of(i) >> shift) as usize] += 1;
            }
            c
        })
        .collect();
    // Where each slice's share of each bucket starts.
    let mut bucket_start = vec![0usize; buckets + 1];
    let mut slice_offsets = vec![vec![0usize; buckets]; slices.len()];
    let mut pos = 0;
    for b in 0..buckets {
        bucket_start[b] = pos;
        for (s, c) in counts.iter().enumerate() {
            slice_offsets[s][b] = pos;
            pos += c[b];
        }
    }
    bucket_start[buckets] = pos;
    assert_eq!(pos, n);
    drop(counts);
    crate::external::trace(&format!("count: {:.3}s", t.elapsed().as_secs_f64()));
    let t = Instant::now();
    // Pass 2: scatter. Every slice writes to disjoint ranges of the index,
    // found above; each slice carries one write position per bucket. (This
    // once split the index into one `&mut` slice per (bucket, slice) pair:
    // 1.5 MB of slice headers and fill counts against 512 kB of positions,
    // which no longer fit the L2 cache beside the bucket heads being
    // written; the scatter took 55-64 ms instead of 43-46 ms.)
    let mut entries = IndexBuf::zeroed(n, true);
    {
        let index: &mut [u64] = &mut entries;
        // SAFETY: `AtomicU64` has the same size, alignment and bit validity
        // as `u64`, and the exclusive borrow of `index` is held for as long
        // as the shared view lives. Relaxed stores compile to plain stores;
        // they are atomics only so that, should the input change between the
        // passes and two slices' writes overlap, the result is a wrong order
        // caught below rather than a data race.
        let slots: &[AtomicU64] = unsafe { &*(index as *mut [u64] as *const [AtomicU64]) };
        let ends: Vec<Vec<usize>> = slice_offsets
            .clone()
            .into_par_iter()
            .zip(slices.par_iter())
            .map(|(mut pos, &(lo, hi))| {
                for i in lo..hi {
                    let prefix = prefix_of(i);
                    let b = (prefix >> shift) as usize;
                    slots[pos[b]].store(entry_of(prefix, i, rec_bits), Ordering::Relaxed);
                    pos[b] += 1;
                }
                pos
            })
            .collect();
        // Each slice's share of a bucket ends where the next slice's begins.
        for (s, end) in ends.iter().enumerate() {
            for b in 0..buckets {
                let expected = slice_offsets.get(s + 1).map_or(bucket_start[b + 1], |next| next[b]);
                assert_eq!(end[b], expected, "the input changed while it was being sorted");
            }
        }
    }
    crate::external::trace(&format!("scatter: {:.3}s", t.elapsed().as_secs_f64()));
    (Index { entries, rec_bits }, bucket_start)
}

/// Storage of an index. A large one is an anonymous mapping, advised to use
/// transparent huge pages where its writes spread over many pages at once:
/// the two-pass scatter writes to up to 2^16 buckets at once, and with
/// 4 KiB pages nearly every one of those writes missed the TLB (a 1 GB
/// sort's index is 80 MB: 40 huge pages, 20,000 small ones).
pub enum IndexBuf {
    /// Few entries: a plain vector.
    Small(Vec<u64>),
    /// Many entries: `len` entries at the start of a zero-filled mapping.
    Mapped {
        /// The mapping (page-aligned, so aligned for `u64`).
        map: memmap2::MmapMut,
        /// Entries.
        len: usize,
    },
}

impl IndexBuf {
    /// `len` zero entries, in huge pages when `huge` and the kernel allows
    /// them.
    pub fn zeroed(len: usize, huge: bool) -> IndexBuf {
        let bytes = len.checked_mul(8).expect("index size overflows");
        match memmap2::MmapOptions::new().len(bytes.max(8)).map_anon() {
            Ok(map) => {
                #[cfg(target_os = "linux")]
                if huge {
                    // Only advice: without huge pages the index still works.
                    let _ = map.advise(memmap2::Advice::HugePage);
                }
                IndexBuf::Mapped { map, len }
            }
            Err(_) => IndexBuf::Small(vec![0; len]),
        }
    }
}

impl std::ops::Deref for IndexBuf {
    type Target = [u64];
    fn deref(&self) -> &[u64] {
        match self {
            IndexBuf::Small(v) => v,
            IndexBuf::Mapped { map, len } => {
                debug_assert!(map.len() >= len * 8 && (map.as_ptr() as usize).is_multiple_of(8));
                // SAFETY: the mapping is page-aligned (so aligned for u64),
                // holds at least `len * 8` bytes, is zero-initialised by the
                // kernel (a valid u64 for every bit pattern) and lives as long
                // as `self`, which the returned borrow cannot outlive.
                unsafe { std::slice::from_raw_parts(map.as_ptr().cast::<u64>(), *len) }
            }
        }
    }
}

impl std::ops::DerefMut for IndexBuf {
    fn deref_mut(&mut self) -> &mut [u64] {
        match self {
            IndexBuf::Small(v) => v,
            IndexBuf::Mapped { map, len } => {
                // SAFETY: as in `deref`; `&mut self` makes the borrow unique.
                unsafe { std::slice::from_raw_parts_mut(map.as_mut_ptr().cast::<u64>(), *len) }
            }
        }
    }
}

/// How many records ahead the gather loop asks for (prefetches) its input.
/// With the prefetch into L2 ([`prefetch_record`]) 32 gathered a 1 GB sort
/// in 0.27-0.29 thread-s against 0.33-0.35 for 16 into L1, and 64 was no
/// better (docs/BENCHMARKS.md, sort, eighth round).
const PREFETCH_AHEAD: usize = 32;

/// Copy the records named by `entries` (whose record numbers `number`
/// extracts) into `dest`, in order. The reads are random over the whole
/// input, so each one would stall on a cache and TLB miss; asking for
/// records a few entries ahead overlaps those misses.
#[inline]
fn gather<E: Copy>(data: &[u8], entries: &[E], number: impl Fn(E) -> usize, dest: &mut [u8]) {
    debug_assert_eq!(dest.len(), entries.len() * RECORD_LEN);
    for (k, (slot, &e)) in dest.chunks_exact_mut(RECORD_LEN).zip(entries).enumerate() {
        if let Some(&ahead) = entries.get(k + PREFETCH_AHEAD) {
            prefetch_record(data, number(ahead) * RECORD_LEN);
        }
        let start = number(e) * RECORD_LEN;
        slot.copy_from_slice(&data[start..start + RECORD_LEN]);
    }
}

/// Hint the CPU to load the record at byte `start` of `data` (all the cache
/// lines it touches: two or three) into its L2 cache. Only a hint: it never
/// faults and changes no data. Into L2, not L1: the profile of the gather
/// put most of its time on the prefetch instructions themselves (waiting
/// for a free L1 miss buffer), and prefetching into L2 was faster.
#[inline(always)]
fn prefetch_record(data: &[u8], start: usize) {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T1};
        let base = data[start..start + RECORD_LEN].as_ptr();
        // SAFETY: SSE is part of the x86_64 baseline, and a prefetch of any
        // address is allowed (it cannot fault); all addresses are inside
        // the record, which the bounds-checked slice above proves exists.
        unsafe {
            _mm_prefetch::<_MM_HINT_T1>(base as *const i8);
            _mm_prefetch::<_MM_HINT_T1>(base.wrapping_add(64) as *const i8);
            _mm_prefetch::<_MM_HINT_T1>(base.wrapping_add(RECORD_LEN - 1) as *const i8);
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = (data, start);
}

/// Bytes ahead that a sequential read of the input asks for
/// ([`prefetch_line`]) in the passes that read every key
/// ([`BucketBlocks::build`], [`bucket_index`]). The hardware prefetcher
/// alone left those passes waiting on memory: the 1 GB sort's blocks pass
/// took 0.093-0.099 s, and 0.065-0.067 s asking 8 kB ahead (1 kB: 0.08 s;
/// 2-16 kB all within a few ms; docs/BENCHMARKS.md, sort, ninth round).
pub(crate) const STREAM_AHEAD: usize = 8192;

/// Hint the CPU to load the cache line of `items[at]` into L1; nothing
/// when `at` is past the end. Only a hint: it never faults or changes data.
#[inline(always)]
pub(crate) fn prefetch_line<T>(items: &[T], at: usize) {
    #[cfg(target_arch = "x86_64")]
    if at < items.len() {
        use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
        // SAFETY: SSE is part of the x86_64 baseline, a prefetch cannot
        // fault, and the address is inside `items` (checked above).
        unsafe { _mm_prefetch::<_MM_HINT_T0>(items.as_ptr().wrapping_add(at).cast::<i8>()) };
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = (items, at);
}

/// Records per gathered piece inside one output buffer (parallel unit).
const GATHER_RECORDS: usize = 2048;

/// Write the records of `data` in the order of `index` to `out`, gathering in
/// parallel into the writer's buffers.
pub fn write_in_order<W: Write + Send + 'static>(
    data: &[u8],
    index: &Index,
    out: &mut PipelinedWriter<W>,
) -> std::io::Result<()> {
    let per_buffer = (out.buffer_size() / RECORD_LEN).max(1);
    for group in index.entries.chunks(per_buffer) {
        let mut buf = out.take_buffer()?;
        buf.resize(group.len() * RECORD_LEN, 0);
        let rec_bits = index.rec_bits;
        buf.par_chunks_mut(GATHER_RECORDS * RECORD_LEN)
            .zip(group.par_chunks(GATHER_RECORDS))
            .for_each(|(dest, entries)| gather(data, entries, |e| number_of(e, rec_bits), dest));
        out.send_buffer(buf)?;
    }
    Ok(())
}

/// Records per piece of [`write_sorted_at`] and [`sort_into_file`]:
/// 1,024,000 bytes. Small enough that a gathered piece is still in the
/// core's L2 cache (1 MiB per core here) when the kernel copies it into the
/// page cache, large enough that the kernel fills it with large folios:
/// on this machine one thread's `pwrite` of 1 GB took 0.17-0.19 s in 1 MB
/// pieces and 0.22-0.24 s in 256 kB pieces, and the whole sort 0.37-0.39 s
/// against 0.40-0.42 s. 2 MB pieces were much slower (0.74 s, most of it
/// in the kernel's copy). The likely cause, from a probe (docs/BENCHMARKS.md,
/// sort, ninth round): on this VM, writes aligned to large folios take
/// high-order free pages, which the balloon's free page reporting has handed
/// back to the host, so each first touch faults in the host. Pieces at
/// record (100-byte) offsets rarely start aligned.
pub const PIECE_RECORDS: usize = 10240;

/// Write the records of `data` in the order of `index` into `file` (which
/// must be empty), from the rayon threads at once: each gathers a piece of
/// [`PIECE_RECORDS`] records into its own small buffer and writes it at its
/// final offset. Compared with gathering into large buffers handed to writer
/// threads, the kernel's copy reads cache-hot bytes, nothing is zeroed
/// first, and no extra threads or buffers exist. The file is first sized to
/// its final length (writes into a pre-sized file measured faster on ext4
/// than extending writes, see [`crate::writer`]).
pub fn write_sorted_at(data: &[u8], index: &Index, file: &std::fs::File) -> std::io::Result<()> {
    let total = index.len() as u64 * RECORD_LEN as u64;
    file.set_len(total)?;
    index.entries.par_chunks(PIECE_RECORDS).enumerate().try_for_each_init(
        || Vec::with_capacity(PIECE_RECORDS * RECORD_LEN),
        |buf: &mut Vec<u8>, (k, entries)| {
            buf.clear();
            gather_into(data, entries, index.rec_bits, buf);
            file.write_all_at(buf, (k * PIECE_RECORDS * RECORD_LEN) as u64)
        },
    )
}

/// Append the records named by `entries` (`u64` entries, record number in
/// the low `rec_bits` bits) to `buf`, in order, prefetching ahead as
/// [`gather`] does.
#[inline]
fn gather_into(data: &[u8], entries: &[u64], rec_bits: u32, buf: &mut Vec<u8>) {
    for (k, &e) in entries.iter().enumerate() {
        if let Some(&ahead) = entries.get(k + PREFETCH_AHEAD) {
            prefetch_record(data, number_of(ahead, rec_bits) * RECORD_LEN);
        }
        let start = number_of(e, rec_bits) * RECORD_LEN;
        buf.extend_from_slice(&data[start..start + RECORD_LEN]);
    }
}

/// An index built while records arrive, for sorting as data streams in:
/// each record's entry goes straight into one of `2^BITS` buckets chosen by
/// the key bits after the first `known_bits` (bits that are the same for
/// every record, such as netsort's server bits). When the data is complete
/// only small, cache-resident buckets remain to be sorted (in parallel), so
/// little sorting work is left after the last record arrives.
///
/// Memory: 16 bytes per record, up to twice that while bucket vectors grow.
#[derive(Debug)]
pub struct BucketIndex {
    skip: u32,
    buckets: Vec<Vec<u128>>,
    len: usize,
}

impl BucketIndex {
    /// Key bits that choose the bucket.
    pub const BITS: u32 = 12;

    /// An empty index for keys whose first `known_bits` bits are all equal.
    pub fn new(known_bits: u32) -> Self {
        assert!(
            known_bits + Self::BITS <= 64,
            "known bits leave room for the bucket bits"
        );
        BucketIndex {
            skip: known_bits,
            buckets: (0..1usize << Self::BITS).map(|_| Vec::new()).collect(),
            len: 0,
        }
    }

    /// Index whole records `data`, numbered from `first` in their buffer.
    pub fn add(&mut self, data: &[u8], first: usize) {
        debug_assert_eq!(data.len() % RECORD_LEN, 0);
        for (k, record) in data.chunks_exact(RECORD_LEN).enumerate() {
            let number = first + k;
            debug_assert!((number as u128) <= INDEX_MASK);
            let prefix = u64::from_be_bytes(record[..8].try_into().expect("8 bytes"));
            let bucket = ((prefix << self.skip) >> (64 - Self::BITS)) as usize;
            self.buckets[bucket].push((key_of(record) << INDEX_BITS) | number as u128);
        }
        self.len += data.len() / RECORD_LEN;
    }

    /// Leading key bits known to be equal (not used for bucketing).
    pub fn skip_bits(&self) -> u32 {
        self.skip
    }

    /// Records indexed.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True if nothing is indexed.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Sort every bucket (in parallel); the buckets in order then list the
    /// records in key order, equal keys in arrival order.
    pub fn sort(&mut self) {
        self.buckets
            .par_iter_mut()
            .with_min_len(16)
            .for_each(|b| b.sort_unstable());
    }

    /// Forget all entries, keeping the bucket capacity for the next run.
    pub fn clear(&mut self) {
        for b in &mut self.buckets {
            b.clear();
        }
        self.len = 0;
    }

    /// Write the records of `data` in index order (after [`Self::sort`]),
    /// gathering in parallel into the writer's buffers.
    pub fn write<W: Write + Send + 'static>(&self, data: &[u8], out: &mut PipelinedWriter<W>) -> std::io::Result<()> {
        let per_buffer = (out.buffer_size() / RECORD_LEN).max(1);
        let mut pieces: Vec<&[u128]> = Vec::new();
        let mut count = 0;
        for bucket in &self.buckets {
            let mut rest = &bucket[..];
            while !rest.is_empty() {
                let take = rest.len().min(per_buffer - count);
                pieces.push(&rest[..take]);
                rest = &rest[take..];
                count += take;
                if count == per_buffer {
                    gather_pieces(data, &pieces, count, out)?;
                    pieces.clear();
                    count = 0;
                }
            }
        }
        if count > 0 {
            gather_pieces(data, &pieces, count, out)?;
        }
        Ok(())
    }
}

/// Gather the records named by `pieces` (`count` in all) into one buffer.
fn gather_pieces<W: Write + Send + 'static>(
    data: &[u8],
    pieces: &[&[u128]],
    count: usize,
    out: &mut PipelinedWriter<W>,
) -> std::io::Result<()> {
    let mut buf = out.take_buffer()?;
    buf.resize(count * RECORD_LEN, 0);
    let mut jobs: Vec<(&mut [u8], &[u128])> = Vec::with_capacity(pieces.len());
    let mut rest: &mut [u8] = &mut buf;
    for piece in pieces {
        let (dest, tail) = rest.split_at_mut(piece.len() * RECORD_LEN);
        jobs.push((dest, piece));
        rest = tail;
    }
    jobs.into_par_iter()
        .with_min_len(4)
        .for_each(|(dest, entries)| gather(data, entries, record_number, dest));
    out.send_buffer(buf)
}

/// Sort the records of `data` in place (for tests and small inputs).
pub fn sort_records(data: &mut [u8]) {
    let index = sort_index(data);
    let mut sorted = Vec::with_capacity(data.len());
    for number in index.record_numbers() {
        let start = number * RECORD_LEN;
        sorted.extend_from_slice(&data[start..start + RECORD_LEN]);
    }
    data.copy_from_slice(&sorted);
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn records_from_keys(keys: &[[u8; 10]]) -> Vec<u8> {
        let mut data = Vec::new();
        for (i, k) in keys.iter().enumerate() {
            data.extend_from_slice(k);
            let mut value = [0u8; 90];
            value[..8].copy_from_slice(&(i as u64).to_be_bytes());
            data.extend_from_slice(&value);
        }
        data
    }

    fn is_sorted(data: &[u8]) -> bool {
        data.chunks_exact(RECORD_LEN)
            .zip(data.chunks_exact(RECORD_LEN).skip(1))
            .all(|(a, b)| key_of(a) <= key_of(b))
    }

    fn multiset(data: &[u8]) -> Vec<&[u8]> {
        let mut v: Vec<&[u8]> = data.chunks_exact(RECORD_LEN).collect();
        v.sort();
        v
    }

    proptest! {
        #[test]
        fn sorting_gives_a_sorted_permutation(keys in proptest::collection::vec(any::<[u8; 10]>(), 0..300)) {
            let data = records_from_keys(&keys);
            let mut sorted = data.clone();
            sort_records(&mut sorted);
            prop_assert!(is_sorted(&sorted));
            prop_assert_eq!(multiset(&data), multiset(&sorted));
        }

        #[test]
        fn few_distinct_keys_sort_too(keys in proptest::collection::vec(0u8..3, 0..300)) {
            let keys: Vec<[u8; 10]> = keys.iter().map(|&k| [k; 10]).collect();
            let data = records_from_keys(&keys);
            let mut sorted = data.clone();
            sort_records(&mut sorted);
            prop_assert!(is_sorted(&sorted));
            prop_assert_eq!(multiset(&data), multiset(&sorted));
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(16))]
        /// Keys that agree on their first 8 bytes and differ only in the
        /// last two, so the `u64` entries tie and the full-key pass decides,
        /// in both the small path and the bucketed one (n > SMALL).
        #[test]
        fn keys_equal_in_the_kept_bits_sort_by_the_full_key(
            groups in proptest::collection::vec((0u8..4, any::<u16>()), 1..64),
            copies in 1usize..400,
        ) {
            let keys: Vec<[u8; 10]> = (0..copies)
                .flat_map(|c| groups.iter().map(move |&(g, low)| {
                    let mut k = [0u8; 10];
                    k[0] = g;
                    k[8..].copy_from_slice(&low.wrapping_add(c as u16 % 3).to_be_bytes());
                    k
                }))
                .collect();
            let data = records_from_keys(&keys);
            let index = sort_index(&data);
            let mut expected: Vec<usize> = (0..keys.len()).collect();
            expected.sort_by_key(|&i| (key_of(&data[i * RECORD_LEN..]), i));
            let got: Vec<usize> = index.record_numbers().collect();
            prop_assert!(got == expected, "index differs from a stable full-key sort");
        }
    }

    #[test]
    fn record_bits_cover_every_record_number() {
        assert_eq!(record_bits(0), 1);
        assert_eq!(record_bits(1), 1);
        assert_eq!(record_bits(2), 1);
        assert_eq!(record_bits(3), 2);
        assert_eq!(record_bits(1 << 20), 20);
        assert_eq!(record_bits((1 << 20) + 1), 21);
        assert_eq!(record_bits(10_000_000), 24);
    }

    proptest! {
        #[test]
        fn bucket_index_matches_sort_index(
            keys in proptest::collection::vec(any::<[u8; 10]>(), 0..400),
            known_bits in 0u32..4,
            split in 0usize..400,
        ) {
            // Force the known bits to one value, as netsort guarantees.
            let keys: Vec<[u8; 10]> = keys
                .into_iter()
                .map(|mut k| {
                    if known_bits > 0 {
                        k[0] = (k[0] >> known_bits) | (0xff << (8 - known_bits));
                    }
                    k
                })
                .collect();
            let data = records_from_keys(&keys);
            let mut index = BucketIndex::new(known_bits);
            let split = split.min(keys.len()) * RECORD_LEN;
            index.add(&data[..split], 0);
            index.add(&data[split..], split / RECORD_LEN);
            prop_assert_eq!(index.len(), keys.len());
            index.sort();
            let mut out = PipelinedWriter::new(Vec::new(), 7 * RECORD_LEN);
            index.write(&data, &mut out).unwrap();
            let via_buckets = out.finish_into_inner().unwrap();
            let mut sorted = data.clone();
            sort_records(&mut sorted);
            prop_assert!(via_buckets == sorted);
        }
    }

    #[test]
    fn a_worker_that_finds_the_file_busy_writes_its_piece_in_its_next_turn() {
        let dir = tempfile::tempdir().unwrap();
        let file = std::fs::File::create_new(dir.path().join("out")).unwrap();
        let turns = WriteTurns {
            file: &file,
            turn: Mutex::new(()),
            failed: AtomicBool::new(false),
        };
        let read = || std::fs::read(dir.path().join("out")).unwrap();
        let mut worker = TurnWorker::new(&turns);
        // Another worker holds the turn: the first piece waits, unwritten.
        let held = turns.turn.lock().unwrap();
        worker.buffer().extend_from_slice(b"first");
        worker.write(0).unwrap();
        assert_eq!(worker.waiting, Some(0));
        assert!(read().is_empty(), "a waiting piece is not written");
        drop(held);
        // Next turn: both pieces go out, each at its own offset.
        worker.buffer().extend_from_slice(b"second");
        worker.write(5).unwrap();
        assert_eq!(worker.waiting, None);
        assert_eq!(read(), b"firstsecond");
        // A piece still waiting when the work runs out is written by finish.
        let held = turns.turn.lock().unwrap();
        worker.buffer().extend_from_slice(b"third");
        worker.write(11).unwrap();
        assert_eq!(read(), b"firstsecond");
        drop(held);
        worker.finish().unwrap();
        assert_eq!(read(), b"firstsecondthird");
    }

    #[test]
    fn many_pieces_sorted_by_all_workers_at_once_give_the_sorted_file() {
        // About 30 pieces, so workers often find the file busy.
        let n = PIECE_RECORDS * 30 + 7;
        let dir = tempfile::tempdir().unwrap();
        let input = dir.path().join("in");
        crate::gen::generate(std::fs::File::create_new(&input).unwrap(), n as u64, 7).unwrap();
        let data = std::fs::read(&input).unwrap();
        let mut expected = data.clone();
        sort_records(&mut expected);
        let path = dir.path().join("out");
        let file = std::fs::File::create_new(&path).unwrap();
        assert_eq!(sort_into_file(&data, &file).unwrap(), n);
        drop(file);
        assert!(
            std::fs::read(&path).unwrap() == expected,
            "the pieces make the sorted file"
        );
    }

    #[test]
    fn both_fused_paths_sort_uniform_and_skewed_keys() {
        // Both paths on both kinds of input, whichever `sort_into_file`
        // would choose: uniform keys (the one-read path's case) and keys
        // nearly all in one top bucket (the counting path's case), with
        // duplicates in both.
        let n = SMALL * 4 + 33;
        let dir = tempfile::tempdir().unwrap();
        let input = dir.path().join("in");
        crate::gen::generate(std::fs::File::create_new(&input).unwrap(), n as u64, 11).unwrap();
        let uniform = std::fs::read(&input).unwrap();
        let mut skewed = uniform.clone();
        for (i, record) in skewed.chunks_exact_mut(RECORD_LEN).enumerate() {
            if i % 8 != 0 {
                record[0] = 0x80;
                record[1] = (i % 3) as u8;
            }
        }
        // Keys spread over the top buckets but equal in the radix bits
        // below them: long runs left to `order_runs`.
        let mut runs = uniform.clone();
        for (i, record) in runs.chunks_exact_mut(RECORD_LEN).enumerate() {
            record[0] = (i % 256) as u8;
            record[1..4].fill(0);
        }
        for (name, data) in [("uniform", &uniform), ("skewed", &skewed), ("runs", &runs)] {
            let mut expected = data.clone();
            sort_records(&mut expected);
            let rec_bits = record_bits(n);
            let blocks = BucketBlocks::build(data, rec_bits);
            let fits = blocks_fit(blocks.counts(), n);
            assert_eq!(fits, name != "skewed", "{name}: which path sort_into_file takes");
            for path in ["blocks", "counted", "chosen"] {
                let out = dir.path().join(format!("{name}.{path}"));
                let file = std::fs::File::create_new(&out).unwrap();
                file.set_len(data.len() as u64).unwrap();
                let sorted = match path {
                    "blocks" => sort_blocks_into_file(data, &blocks, rec_bits, &file),
                    "counted" => sort_counted_into_file(data, &file),
                    _ => sort_into_file(data, &file),
                };
                assert_eq!(sorted.unwrap(), n);
                drop(file);
                assert!(
                    std::fs::read(&out).unwrap() == expected,
                    "{name} via {path} differs from sort_records"
                );
            }
        }
    }

    #[test]
    fn bucketed_path_matches_plain_sort_and_is_stable() {
        // Enough records for the bucket passes, with many duplicate keys and
        // a skewed distribution (half the keys in one bucket).
        let n = SMALL * 3 + 17;
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        let keys: Vec<[u8; 10]> = (0..n)
            .map(|i| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                let mut k = [0u8; 10];
                if i % 2 == 0 {
                    k[9] = (state % 5) as u8; // all in bucket 0, duplicates
                } else {
                    k[..8].copy_from_slice(&state.to_be_bytes());
                }
                k
            })
            .collect();
        let data = records_from_keys(&keys);
        let index = sort_index(&data);
        // Expected: ordered by full key, then position.
        let mut expected: Vec<usize> = (0..n).collect();
        expected.sort_by_key(|&i| (key_of(&data[i * RECORD_LEN..]), i));
        let got: Vec<usize> = index.record_numbers().collect();
        assert!(got == expected, "bucketed index differs from a plain sort");
        let mut out = PipelinedWriter::new(Vec::new(), 4096 + 50);
        write_in_order(&data, &index, &mut out).unwrap();
        let sorted = out.finish_into_inner().unwrap();
        assert!(is_sorted(&sorted));
        assert_eq!(multiset(&data), multiset(&sorted));
        // Equal keys keep input order: the value holds the input position.
        for (a, b) in sorted.chunks_exact(100).zip(sorted.chunks_exact(100).skip(1)) {
            if key_of(a) == key_of(b) {
                assert!(a[10..18] < b[10..18]);
            }
        }
        // The fused sort-and-write path and the piecewise writer give the
        // same bytes (skewed buckets span several pieces; tiny inputs take
        // the one-bucket path; empty input writes nothing).
        let dir = tempfile::tempdir().unwrap();
        for (name, input) in [
            ("big", &data[..]),
            ("small", &data[..100 * RECORD_LEN]),
            ("empty", &data[..0]),
        ] {
            let mut expected = input.to_vec();
            sort_records(&mut expected);
            let fused = std::fs::File::create_new(dir.path().join(format!("{name}.fused"))).unwrap();
            assert_eq!(sort_into_file(input, &fused).unwrap(), input.len() / RECORD_LEN);
            let pieces = std::fs::File::create_new(dir.path().join(format!("{name}.pieces"))).unwrap();
            write_sorted_at(input, &sort_index(input), &pieces).unwrap();
            drop((fused, pieces));
            for kind in ["fused", "pieces"] {
                let got = std::fs::read(dir.path().join(format!("{name}.{kind}"))).unwrap();
                assert!(got == expected, "{name} via {kind} differs from sort_records");
            }
        }
    }
}
