//! K-way merge of sorted run files, read through memory maps and split by
//! key range so every core merges and writes at once.
//!
//! Why this shape (measured on this project's 2-core VM, see the sort
//! section of docs/BENCHMARKS.md): the previous merge read runs with
//! `read(2)` into buffers, merged one record at a time on one thread and
//! handed 8 MiB buffers to two writer threads; 58 % of a 4 GB sort's CPU
//! went into the kernel copying those cache-cold buffers into the page
//! cache, and 13 % into the two writers spinning on the file's inode lock.
//! Here:
//! * runs are mapped, so reading a record is a load from the page cache
//!   (no copy into our memory), and consumed ranges are punched out of the
//!   run files as the merge passes them ([`release`]), so the resident size
//!   stays small and the output reuses the freed page-cache pages. Run files
//!   are therefore consumed by the merge: only temporary runs may be merged.
//!   With a small budget (a release window below [`MAPPED_FROM`]) runs are
//!   read with `pread` into one window's buffer each instead, since a map
//!   keeps whole large folios resident;
//! * the key space is cut at splitter keys sampled from the runs into
//!   [`PARTS_PER_THREAD`] partitions per thread; each partition is merged by
//!   one rayon task into pieces of [`PIECE_RECORDS`] records `pwrite`n at their final
//!   offset while still in the core's cache (the same treatment as the
//!   in-memory sort's output, [`crate::memsort::sort_into_file`]).
//!
//! Order: records are merged by (key, run number), and a partition holds
//! every record of its key range from every run, so equal keys come out in
//! run order: the merge is stable when runs are numbered in input order.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;

use rayon::prelude::*;

use crate::error::{Error, IoContext, Result};
use crate::memsort::PIECE_RECORDS;
use crate::record::{key_of, KEY_LEN, RECORD_LEN};

/// Key-range partitions per worker thread (more than one, so a thread that
/// finishes early takes another and the threads end together).
pub const PARTS_PER_THREAD: usize = 4;
/// Keys sampled from each run per partition to choose the splitters.
const SAMPLES_PER_PART: usize = 32;
/// Most bytes a run cursor advances before the pages behind it are dropped
/// from the mapping (they stay in the page cache; only our resident size
/// drops). See [`release_window`].
pub const RELEASE_MAX: usize = 8 << 20;
/// Most runs one merge may take: run numbers live in the low 16 bits of a
/// heap entry.
pub const MAX_RUNS: usize = 1 << 16;
/// Release windows below this read runs with `pread` into buffers of one
/// window rather than through the maps: a fault maps a whole page-cache
/// folio (up to 2 MiB where the file system uses large folios, as ext4 on
/// Linux 6.18 does), so a map keeps that much of every run resident
/// whatever the window: with a small budget, most of every run merged.
pub const MAPPED_FROM: usize = 2 << 20;

/// One mapped run file (open for writing too, to punch out merged parts).
struct Run {
    map: memmap2::Mmap,
    file: File,
}

impl Run {
    fn records(&self) -> usize {
        self.map.len() / RECORD_LEN
    }

    /// The key of `record`, read with `pread` rather than through the map:
    /// partitioning touches keys all over every run, and each one read
    /// through the map would map its page (or its whole large folio), so
    /// whole runs would stay resident, whatever the budget.
    fn read_key(&self, record: usize) -> std::io::Result<u128> {
        let mut key = [0u8; KEY_LEN];
        self.file.read_exact_at(&mut key, (record * RECORD_LEN) as u64)?;
        Ok(key_of(&key))
    }

    /// First record whose key is not less than `key` (runs are sorted).
    fn lower_bound(&self, key: u128) -> std::io::Result<usize> {
        let (mut lo, mut hi) = (0, self.records());
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            if self.read_key(mid)? < key {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        Ok(lo)
    }
}

/// How far a run cursor may advance before the mapped pages behind it are
/// dropped, so that a merge of `runs` runs keeps about `memory` bytes of
/// mapped runs resident: every thread works on one partition at a time,
/// holding up to one window of every run.
pub fn release_window(memory: usize, runs: usize) -> usize {
    (memory / (rayon::current_num_threads() * runs.max(1))).clamp(64 << 10, RELEASE_MAX)
}

/// Merge `runs` (in input order) into `out`, first in passes of at most
/// `fan_in` runs when there are more: groups are consecutive and keep their
/// order, so equal keys stay in input order (stable). Intermediate runs go
/// to paths from `new_run`; merged inputs are removed. `memory` bounds the
/// mapped run pages kept resident ([`release_window`]). Returns the records
/// written to `out` and the extra passes made.
pub fn merge_in_passes(
    mut runs: Vec<PathBuf>,
    fan_in: usize,
    memory: usize,
    out: &File,
    mut new_run: impl FnMut() -> Result<PathBuf>,
) -> Result<(u64, usize)> {
    assert!((2..=MAX_RUNS).contains(&fan_in), "fan-in between 2 and MAX_RUNS");
    let mut passes = 0;
    while runs.len() > fan_in {
        let mut next = Vec::with_capacity(runs.len().div_ceil(fan_in));
        for group in runs.chunks(fan_in) {
            if let [single] = group {
                next.push(single.clone());
                continue;
            }
            let path = new_run()?;
            let merged = File::create(&path).ctx(|| format!("creating run {}", path.display()))?;
            merge_files(group, &merged, release_window(memory, group.len()))?;
            for p in group {
                std::fs::remove_file(p).ctx(|| format!("removing run {}", p.display()))?;
            }
            next.push(path);
        }
        runs = next;
        passes += 1;
    }
    let merged = merge_files(&runs, out, release_window(memory, runs.len()))?;
    Ok((merged, passes))
}

/// Merge the sorted run files `runs` (in input order) into `out`, which is
/// sized to their total length; returns the records written. Consumed
/// mapped pages are dropped every `window` bytes of a run
/// ([`release_window`]). Fails with a clear error if a run is not a whole
/// number of records; a run that is not sorted gives unsorted output (runs
/// are this crate's own files).
pub fn merge_files(runs: &[PathBuf], out: &File, window: usize) -> Result<u64> {
    assert!(runs.len() <= MAX_RUNS, "too many runs for one merge");
    let mut mapped = Vec::with_capacity(runs.len());
    let mut total: u64 = 0;
    for path in runs {
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(path)
            .ctx(|| format!("opening run {}", path.display()))?;
        let len = file
            .metadata()
            .ctx(|| format!("reading the size of run {}", path.display()))?
            .len();
        crate::record::record_count(path, len)?;
        // SAFETY: run files are private to this sort (in its temporary
        // directory) and are neither written nor truncated while mapped.
        let map = unsafe { memmap2::Mmap::map(&file) }.ctx(|| format!("mapping run {}", path.display()))?;
        if map.len() as u64 != len {
            return Err(Error::Io {
                context: format!("mapping run {}", path.display()),
                source: std::io::Error::other("run changed size while being mapped"),
            });
        }
        // Only advice: the merge reads each run front to back.
        let _ = map.advise(memmap2::Advice::Sequential);
        total += len;
        mapped.push(Run { map, file });
    }
    out.set_len(total).ctx(|| "sizing the merged output".to_string())?;
    let parts = partition(&mapped, rayon::current_num_threads() * PARTS_PER_THREAD)
        .ctx(|| "reading keys of the runs to merge".to_string())?;
    // Output offset of each partition: the records of all partitions before.
    let mut offset = 0u64;
    let jobs: Vec<(u64, Vec<(usize, usize)>)> = parts
        .into_iter()
        .map(|ranges| {
            let start = offset;
            offset += ranges.iter().map(|&(lo, hi)| (hi - lo) as u64).sum::<u64>() * RECORD_LEN as u64;
            (start, ranges)
        })
        .collect();
    assert_eq!(offset, total, "partitions cover every record once");
    // One set of buffers per thread, reused by its next partition: buffers
    // allocated per partition and freed stayed resident in the allocator
    // (mimalloc purges after a second), about doubling the budget.
    let spare: std::sync::Mutex<Vec<MergeBuffers>> = std::sync::Mutex::default();
    let sets = std::sync::atomic::AtomicUsize::new(0);
    let written: u64 = jobs
        .into_par_iter()
        .map(|(start, ranges)| {
            let taken = spare.lock().unwrap_or_else(|e| e.into_inner()).pop();
            let mut buffers = match taken {
                Some(b) => b,
                None => {
                    sets.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    MergeBuffers::new(mapped.len(), window)?
                }
            };
            let merged = merge_partition(&mapped, &ranges, out, start, window, &mut buffers)?;
            spare.lock().unwrap_or_else(|e| e.into_inner()).push(buffers);
            Ok(merged)
        })
        .try_reduce(|| 0, |a, b| Ok(a + b))?;
    debug_assert!(
        sets.into_inner() <= rayon::current_num_threads(),
        "a buffer set per thread"
    );
    Ok(written)
}

/// A merging thread's buffers: the output piece and, when runs are read
/// with `pread` (windows below [`MAPPED_FROM`]), one window per run in an
/// anonymous map (returned to the system as soon as the merge ends).
struct MergeBuffers {
    piece: Vec<u8>,
    windows: Option<memmap2::MmapMut>,
}

impl MergeBuffers {
    fn new(runs: usize, window: usize) -> Result<Self> {
        let windows = if window < MAPPED_FROM && runs > 0 {
            let bytes = runs * window_records(window) * RECORD_LEN;
            Some(memmap2::MmapMut::map_anon(bytes).ctx(|| format!("mapping {bytes} bytes of merge buffers"))?)
        } else {
            None
        };
        Ok(MergeBuffers {
            piece: Vec::with_capacity(PIECE_RECORDS * RECORD_LEN),
            windows,
        })
    }
}

/// Records read at once from each run when merging through buffers.
fn window_records(window: usize) -> usize {
    (window / RECORD_LEN).max(1)
}

/// Cut the records of `runs` into at most `parts` key ranges of about equal
/// size: for each partition, the record range `[lo, hi)` of every run.
/// Splitters are quantiles of keys sampled evenly from every run; every
/// record with a key in `[splitter[p-1], splitter[p])` lands in partition
/// `p`, so equal keys never straddle two partitions.
fn partition(runs: &[Run], parts: usize) -> std::io::Result<Vec<Vec<(usize, usize)>>> {
    let parts = parts.max(1);
    let mut sample: Vec<u128> = Vec::new();
    for run in runs {
        let n = run.records();
        let take = (parts * SAMPLES_PER_PART).min(n);
        for k in 0..take {
            sample.push(run.read_key(k * n / take)?);
        }
    }
    sample.sort_unstable();
    let mut splitters: Vec<u128> = if sample.is_empty() {
        Vec::new()
    } else {
        (1..parts).map(|p| sample[p * sample.len() / parts]).collect()
    };
    splitters.dedup();
    // bounds[r][p] = first record of run r in partition p (p = 0..=len).
    let bounds: Vec<Vec<usize>> = runs
        .iter()
        .map(|run| {
            let mut b = vec![0];
            for &s in &splitters {
                b.push(run.lower_bound(s)?);
            }
            b.push(run.records());
            Ok(b)
        })
        .collect::<std::io::Result<_>>()?;
    Ok((0..=splitters.len())
        .map(|p| bounds.iter().map(|b| (b[p], b[p + 1])).collect())
        .collect())
}

/// Merge record ranges `ranges[r]` of every run `r` into `out` from byte
/// `start`, through the thread's reusable `buffers`; returns records
/// written.
fn merge_partition(
    runs: &[Run],
    ranges: &[(usize, usize)],
    out: &File,
    start: u64,
    window: usize,
    buffers: &mut MergeBuffers,
) -> Result<u64> {
    debug_assert_eq!(runs.len(), ranges.len());
    let MergeBuffers { piece, windows } = buffers;
    let mut cursor: Vec<usize> = ranges.iter().map(|&(lo, _)| lo).collect();
    // Byte offset in each run below which the mapping was released.
    let mut released: Vec<usize> = ranges.iter().map(|&(lo, _)| lo * RECORD_LEN).collect();
    let chunk = window_records(window);
    // Small windows: each run's window of `chunk` records, read with pread
    // ([`Window`]); empty when the merge reads the maps.
    let mut buffers: Vec<Window> = match windows {
        Some(map) => {
            assert_eq!(map.len(), runs.len() * chunk * RECORD_LEN, "a window per run");
            ranges
                .iter()
                .zip(map.chunks_exact_mut(chunk * RECORD_LEN))
                .map(|(&(lo, _), bytes)| Window {
                    first: lo,
                    records: 0,
                    bytes,
                })
                .collect()
        }
        None => Vec::new(),
    };
    // Make `record` of run `r` readable: refill its window once past it.
    let fill = |buffers: &mut Vec<Window>, r: usize, record: usize| -> Result<()> {
        let Some(w) = buffers.get_mut(r) else {
            return Ok(());
        };
        if record < w.first + w.records {
            return Ok(());
        }
        let records = chunk.min(ranges[r].1 - record);
        runs[r]
            .file
            .read_exact_at(&mut w.bytes[..records * RECORD_LEN], (record * RECORD_LEN) as u64)
            .ctx(|| "reading a run to merge".to_string())?;
        (w.first, w.records) = (record, records);
        Ok(())
    };
    let mut heap: BinaryHeap<Reverse<u128>> = BinaryHeap::with_capacity(runs.len());
    let entry = |record: &[u8], r: usize| Reverse((key_of(record) << 16) | r as u128);
    for (r, &(lo, hi)) in ranges.iter().enumerate() {
        if lo < hi {
            fill(&mut buffers, r, lo)?;
            heap.push(entry(record_bytes(&runs[r], buffers.get(r), lo), r));
        }
    }
    let mut offset = start;
    let mut written = 0u64;
    piece.clear();
    let flush = |piece: &mut Vec<u8>, offset: &mut u64| -> Result<()> {
        out.write_all_at(piece, *offset)
            .ctx(|| "writing the merged output".to_string())?;
        *offset += piece.len() as u64;
        piece.clear();
        Ok(())
    };
    while let Some(mut top) = heap.peek_mut() {
        let r = (top.0 & 0xffff) as usize;
        piece.extend_from_slice(record_bytes(&runs[r], buffers.get(r), cursor[r]));
        written += 1;
        cursor[r] += 1;
        if cursor[r] < ranges[r].1 {
            fill(&mut buffers, r, cursor[r])?;
            // One sift-down instead of pop + push.
            *top = entry(record_bytes(&runs[r], buffers.get(r), cursor[r]), r);
        } else {
            std::collections::binary_heap::PeekMut::pop(top);
        }
        let consumed = cursor[r] * RECORD_LEN;
        if consumed - released[r] >= window {
            release(&runs[r], released[r], consumed);
            released[r] = consumed;
        }
        if piece.len() >= PIECE_RECORDS * RECORD_LEN {
            flush(piece, &mut offset)?;
        }
    }
    if !piece.is_empty() {
        flush(piece, &mut offset)?;
    }
    // Release what is left of each range too (up to a window per run): it
    // is consumed, and its page-cache pages are better reused now than when
    // the run is removed.
    for (r, &(_, hi)) in ranges.iter().enumerate() {
        release(&runs[r], released[r], hi * RECORD_LEN);
    }
    debug_assert_eq!(written, ranges.iter().map(|&(lo, hi)| (hi - lo) as u64).sum::<u64>());
    Ok(written)
}

/// Records `first..first + records` of a run, read into `bytes`.
struct Window<'a> {
    first: usize,
    records: usize,
    bytes: &'a mut [u8],
}

/// Record `record` of `run`: from its window if the merge reads with
/// pread, else from the map.
#[inline]
fn record_bytes<'a>(run: &'a Run, window: Option<&'a Window>, record: usize) -> &'a [u8] {
    match window {
        Some(w) => {
            debug_assert!(
                record >= w.first && record < w.first + w.records,
                "record in its window"
            );
            &w.bytes[(record - w.first) * RECORD_LEN..][..RECORD_LEN]
        }
        None => &run.map[record * RECORD_LEN..(record + 1) * RECORD_LEN],
    }
}

/// The merge has passed bytes `[from, to)` of `run`, which lie inside the
/// run's range of one partition: punch the whole pages among them out of
/// the run file. That frees their page-cache pages at once, so the output
/// written next reuses them: on this VM, writing into pages the guest
/// freed long ago (and the host reclaimed) cost 2-3x more than into
/// recently freed ones. Pages shared with a neighbouring partition (at most
/// one at each end) are left alone. Where punching is not supported, the
/// pages are only dropped from our mapping.
fn release(run: &Run, from: usize, to: usize) {
    let Some((first, last)) = whole_pages(from, to) else {
        return;
    };
    #[cfg(target_os = "linux")]
    {
        use std::os::fd::AsRawFd;
        // SAFETY: fallocate on an open descriptor with a valid range; it
        // only discards bytes the merge has consumed (no later reader of
        // this run touches them: partitions own their ranges, boundary
        // pages are excluded above).
        let punched = unsafe {
            libc::fallocate(
                run.file.as_raw_fd(),
                libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE,
                first as libc::off_t,
                (last - first) as libc::off_t,
            )
        } == 0;
        if punched {
            return;
        }
    }
    drop_mapped_pages(&run.map, from, to);
}

/// The whole 4 KiB pages inside bytes `[from, to)`, if any.
fn whole_pages(from: usize, to: usize) -> Option<(usize, usize)> {
    const PAGE: usize = 4096;
    let first = from.div_ceil(PAGE) * PAGE;
    let last = to / PAGE * PAGE;
    (last > first).then_some((first, last))
}

/// Drop the whole pages of `map` within bytes `[from, to)` from our address
/// space (they stay in the page cache): bytes that will not be read again
/// then stop counting against the memory budget.
pub(crate) fn drop_mapped_pages(map: &memmap2::Mmap, from: usize, to: usize) {
    if let Some((first, last)) = whole_pages(from, to) {
        // SAFETY: a read-only map of a file nobody modifies while we run:
        // MADV_DONTNEED only drops page-table entries, and reading those
        // bytes again faults the same contents back in. Only advice: an
        // error is ignored.
        let _ = unsafe { map.unchecked_advise_range(memmap2::UncheckedAdvice::DontNeed, first, last - first) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::memsort::sort_records;

    fn records(keys: &[u16], tag: u8) -> Vec<u8> {
        let mut data = Vec::new();
        for (i, &k) in keys.iter().enumerate() {
            let mut r = [0u8; RECORD_LEN];
            r[..2].copy_from_slice(&k.to_be_bytes());
            r[10] = tag;
            r[11..19].copy_from_slice(&(i as u64).to_be_bytes());
            data.extend_from_slice(&r);
        }
        data
    }

    /// Write `runs` (each sorted first) as files, merge them through buffers
    /// and through maps, check both agree, return the output.
    fn merge(runs: &[Vec<u8>]) -> Result<Vec<u8>> {
        let buffered = merge_with_window(runs, 64 << 10)?;
        let mapped = merge_with_window(runs, RELEASE_MAX)?;
        assert!(buffered == mapped, "buffered and mapped merges differ");
        Ok(mapped)
    }

    fn merge_with_window(runs: &[Vec<u8>], window: usize) -> Result<Vec<u8>> {
        let dir = tempfile::tempdir().unwrap();
        let mut paths = Vec::new();
        for (i, run) in runs.iter().enumerate() {
            let mut sorted = run.clone();
            sort_records(&mut sorted);
            let path = dir.path().join(format!("run-{i}"));
            std::fs::write(&path, &sorted).unwrap();
            paths.push(path);
        }
        let out_path = dir.path().join("out");
        let out = File::create(&out_path).unwrap();
        let n = merge_files(&paths, &out, window)?;
        drop(out);
        let bytes = std::fs::read(&out_path).unwrap();
        assert_eq!(n * RECORD_LEN as u64, bytes.len() as u64);
        Ok(bytes)
    }

    #[test]
    fn merge_equals_sorting_the_concatenation_stably() {
        // Few distinct keys (many ties across runs and partitions), runs of
        // different lengths, one empty run, and runs large enough that the
        // consumed-page release runs (more than the 64 KiB window).
        let sizes = [0usize, 1, 37, 5000, 90_000];
        let runs: Vec<Vec<u8>> = sizes
            .iter()
            .enumerate()
            .map(|(t, &n)| {
                let keys: Vec<u16> = (0..n as u32)
                    .map(|i| (i.wrapping_mul(2654435761) >> 7) as u16 % 97)
                    .collect();
                records(&keys, t as u8)
            })
            .collect();
        let mut expected: Vec<u8> = runs
            .iter()
            .flat_map(|r| {
                let mut s = r.clone();
                sort_records(&mut s);
                s
            })
            .collect();
        // Sorting the concatenation of the sorted runs stably gives equal
        // keys in run order, as the merge must.
        sort_records(&mut expected);
        let got = merge(&runs).unwrap();
        assert!(got == expected, "merge differs from a stable sort");
    }

    #[test]
    fn all_equal_keys_and_empty_inputs() {
        let runs = vec![records(&[7; 300], 1), records(&[7; 200], 2)];
        let got = merge(&runs).unwrap();
        let tags: Vec<u8> = got.chunks_exact(RECORD_LEN).map(|r| r[10]).collect();
        assert_eq!(tags, [vec![1u8; 300], vec![2u8; 200]].concat());
        assert!(merge(&[]).unwrap().is_empty());
        assert!(merge(&[Vec::new(), Vec::new()]).unwrap().is_empty());
    }

    #[test]
    fn partial_record_run_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bad");
        std::fs::write(&path, [0u8; 150]).unwrap();
        let out = File::create(dir.path().join("out")).unwrap();
        let err = merge_files(&[path], &out, RELEASE_MAX).unwrap_err().to_string();
        assert!(err.contains("not a multiple of the 100-byte"), "{err}");
    }

    #[test]
    fn partitions_cover_each_run_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let mut runs = Vec::new();
        for (i, n) in [1000usize, 0, 333].into_iter().enumerate() {
            let keys: Vec<u16> = (0..n as u16).map(|k| k.wrapping_mul(3) % 50).collect();
            let mut data = records(&keys, 0);
            sort_records(&mut data);
            let path = dir.path().join(format!("r{i}"));
            std::fs::write(&path, &data).unwrap();
            let file = File::open(&path).unwrap();
            let map = unsafe { memmap2::Mmap::map(&file) }.unwrap();
            runs.push(Run { map, file });
        }
        for parts in [1, 2, 7, 64] {
            let p = partition(&runs, parts).unwrap();
            assert!(p.len() <= parts);
            for (r, run) in runs.iter().enumerate() {
                let mut next = 0;
                for ranges in &p {
                    assert_eq!(ranges[r].0, next, "ranges are contiguous");
                    next = ranges[r].1;
                }
                assert_eq!(next, run.records());
            }
        }
    }
}
