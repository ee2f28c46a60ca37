//! Sorting within a memory budget.
//!
//! A file ([`sort_file`]) is read through a read-only map of the page cache:
//! * if it fits the budget (records plus an 8-byte index entry each), it is
//!   sorted in memory ([`crate::memsort::sort_into_file`]);
//! * otherwise it is cut into runs that fit; each run is sorted the same
//!   way into a temporary run file and its mapped pages are dropped, and
//!   the runs are merged by [`crate::merge::merge_files`] (mapped, split by
//!   key range across threads, in passes of at most [`MAX_FAN_IN`] runs).
//!
//! [`RunSorter`] serves records that arrive in pieces: netsort (frames from
//! the network) and a file sorted onto itself. Records accumulate in one run
//! buffer, indexed into key buckets as they arrive ([`BucketIndex`]); when
//! the buffer is full it is sorted and spilled to a run file by a background
//! thread while the next run fills, so receiving overlaps sorting and
//! spilling. If everything fits, nothing touches the disk but the output.
//!
//! Budget split for [`RunSorter`] with a budget of `M` bytes: the writer
//! buffers of the spills and the output (`WRITER_THREADS + 2` of `M/32`,
//! clamped to 16 KiB..8 MiB but at most `M/4` in all, allocated once and
//! lent to every writer); the
//! rest holds two runs of `R` bytes (one filling, one being spilled), each
//! with an index of 16 to 32 bytes per record (bucket vectors grow by
//! doubling), so `R = rest * 100 / 264`. Run buffers are anonymous maps of
//! `R` bytes ([`RunBuf`]). While merging, the rest bounds the run pages
//! kept resident or buffered ([`crate::merge::release_window`]). Temporary
//! runs live in a `.triton-sort-*` directory beside the output and are
//! removed on success and on error.

use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::thread::JoinHandle;

use crate::scratch::ScratchDir;

use crate::error::{Error, IoContext, Result};
use crate::memsort::{sort_into_file, BucketIndex};
use crate::merge::{drop_mapped_pages, merge_in_passes};
use crate::output::SortOutput;
use crate::record::{record_count, RECORD_LEN};
use crate::writer::{positional_buffers, PipelinedWriter};

/// Smallest memory budget accepted: a few buffers and runs must fit.
pub const MIN_MEMORY: u64 = 64 * 1024;
/// Threads writing each output file (positional writes into a pre-sized
/// file; see [`crate::writer`]).
pub const WRITER_THREADS: usize = 2;
/// Most runs merged at once; more runs are merged in several passes, so
/// open files and reader buffers stay bounded.
pub const MAX_FAN_IN: usize = 64;

/// How `triton sort` may use the machine.
#[derive(Clone, Debug)]
pub struct SortOptions {
    /// Memory budget in bytes (roughly the peak the sort may use).
    pub memory: u64,
}

/// What a finished sort did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SortStats {
    /// Records written.
    pub records: u64,
    /// Sorted runs spilled to disk (0 = the sort ran in memory).
    pub runs: usize,
}

/// Writer buffers of a spill or of the output.
const WRITE_BUFFERS: usize = positional_buffers(WRITER_THREADS);

/// A spilled run's emptied buffer, index and writer buffers, handed back
/// for reuse.
type SpareRun = (RunBuf, BucketIndex, Vec<Vec<u8>>);

/// The records of one run: an anonymous map of the run's full size rather
/// than a growing `Vec`. Pages become resident only as records arrive, so a
/// small input costs no more; nothing is copied as it fills (a `Vec`
/// growing by doubling briefly holds old and new copies); and dropping it
/// unmaps it at once, where an allocator may keep freed memory resident
/// for a while (mimalloc: a second), e.g. through the merge that follows.
pub(crate) struct RunBuf {
    map: Option<memmap2::MmapMut>,
    len: usize,
}

impl RunBuf {
    /// An empty buffer that maps nothing until [`Self::reserve`].
    fn empty() -> Self {
        RunBuf { map: None, len: 0 }
    }

    /// Map `capacity` bytes if nothing is mapped yet.
    fn reserve(&mut self, capacity: usize) -> Result<()> {
        assert!(capacity > 0);
        if self.map.is_none() {
            let map =
                memmap2::MmapMut::map_anon(capacity).ctx(|| format!("mapping a run buffer of {capacity} bytes"))?;
            self.map = Some(map);
        }
        Ok(())
    }

    fn len(&self) -> usize {
        self.len
    }

    fn is_empty(&self) -> bool {
        self.len == 0
    }

    fn capacity(&self) -> usize {
        self.map.as_ref().map_or(0, |m| m.len())
    }

    fn clear(&mut self) {
        self.len = 0;
    }

    /// The unfilled part; call [`Self::filled`] with what was written.
    fn spare_mut(&mut self) -> &mut [u8] {
        match &mut self.map {
            Some(map) => &mut map[self.len..],
            None => &mut [],
        }
    }

    fn filled(&mut self, n: usize) {
        assert!(self.len + n <= self.capacity(), "filled past the end");
        self.len += n;
    }
}

impl std::ops::Deref for RunBuf {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        match &self.map {
            Some(map) => &map[..self.len],
            None => &[],
        }
    }
}

/// Accumulates records and sorts them within a memory budget.
pub struct RunSorter {
    buf: RunBuf,
    run_bytes: usize,
    write_buffer: usize,
    /// The writer buffers, lent to each spill and to the output in turn
    /// (empty while a spill has them).
    write_buffers: Vec<Vec<u8>>,
    merge_memory: usize,
    temp_parent: PathBuf,
    temp: Option<ScratchDir>,
    runs: Vec<PathBuf>,
    runs_made: usize,
    records: u64,
    /// The run being sorted and written in the background; gives back its
    /// (emptied) buffer for reuse.
    spilling: Option<JoinHandle<Result<SpareRun>>>,
    /// Entries of the records in `buf`, bucketed as they arrive.
    index: BucketIndex,
    /// Bytes at the start of `buf` already in `index`.
    indexed: usize,
}

impl RunSorter {
    /// A sorter using about `memory` bytes, spilling runs into a temporary
    /// directory created (only if needed) inside `temp_parent`.
    pub fn new(memory: u64, temp_parent: &Path) -> Result<Self> {
        if memory < MIN_MEMORY {
            return Err(Error::BadSize {
                input: memory.to_string(),
                reason: "memory budget must be at least 64 KiB",
            });
        }
        let memory = usize::try_from(memory).unwrap_or(usize::MAX);
        // At most a quarter of a tiny budget, so runs still hold many records.
        let write_buffer = (memory / 32).clamp(16 << 10, 8 << 20).min(memory / 4 / WRITE_BUFFERS);
        let rest = memory - WRITE_BUFFERS * write_buffer;
        let run_bytes = ((rest / 264).saturating_mul(100) / RECORD_LEN * RECORD_LEN).max(RECORD_LEN);
        Ok(RunSorter {
            buf: RunBuf::empty(),
            run_bytes,
            write_buffer,
            write_buffers: Vec::new(),
            merge_memory: rest,
            temp_parent: temp_parent.to_path_buf(),
            temp: None,
            runs: Vec::new(),
            runs_made: 0,
            records: 0,
            spilling: None,
            index: BucketIndex::new(0),
            indexed: 0,
        })
    }

    /// Declare that the first `bits` key bits are equal in every record
    /// (netsort's server bits), so buckets use the bits after them.
    pub fn with_known_key_bits(mut self, bits: u32) -> Self {
        assert!(self.index.is_empty(), "set before any record arrives");
        self.index = BucketIndex::new(bits);
        self
    }

    /// Index the whole records appended since the last call.
    fn index_new_records(&mut self) {
        let end = self.buf.len() / RECORD_LEN * RECORD_LEN;
        if end > self.indexed {
            self.index.add(&self.buf[self.indexed..end], self.indexed / RECORD_LEN);
            self.indexed = end;
        }
    }

    /// Bytes of records held in memory before a run is spilled.
    pub fn run_bytes(&self) -> usize {
        self.run_bytes
    }

    /// Largest input sorted in memory from a map of the file: the records
    /// plus their 8-byte index entries and at most 1.25 bytes of block and
    /// split scratch per record ([`crate::memsort::sort_into_file`]) fit the
    /// budget (also the run size of an external sort of a mapped file).
    pub fn in_memory_limit(&self) -> usize {
        (self.merge_memory / 110 * 100 / RECORD_LEN * RECORD_LEN).max(RECORD_LEN)
    }

    /// Runs spilled so far.
    pub fn runs_spilled(&self) -> usize {
        self.runs_made
    }

    /// Make room for at least one more byte, spilling a full run first.
    fn make_room(&mut self) -> Result<()> {
        if self.buf.len() >= self.run_bytes {
            self.spill()?;
        }
        self.buf.reserve(self.run_bytes)?;
        debug_assert_eq!(self.buf.capacity(), self.run_bytes, "run buffers hold one run");
        Ok(())
    }

    /// Add whole records.
    pub fn push(&mut self, mut records: &[u8]) -> Result<()> {
        assert_eq!(records.len() % RECORD_LEN, 0, "push whole records only");
        while !records.is_empty() {
            self.make_room()?;
            let n = self.buf.spare_mut().len().min(records.len());
            self.buf.spare_mut()[..n].copy_from_slice(&records[..n]);
            self.buf.filled(n);
            records = &records[n..];
            self.index_new_records();
        }
        Ok(())
    }

    /// Read `input` (named `path` in errors) to its end into the sorter.
    pub fn fill_from<R: Read>(&mut self, input: &mut R, path: &Path) -> Result<()> {
        let mut total: u64 = 0;
        loop {
            self.make_room()?;
            let n = loop {
                match input.read(self.buf.spare_mut()) {
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                    other => break other.ctx(|| format!("reading {}", path.display()))?,
                }
            };
            total += n as u64;
            if n == 0 {
                break;
            }
            self.buf.filled(n);
            self.index_new_records();
        }
        if !self.buf.len().is_multiple_of(RECORD_LEN) {
            return Err(Error::NotWholeRecords {
                path: path.to_path_buf(),
                size: total,
            });
        }
        Ok(())
    }

    fn temp_dir(&mut self) -> Result<&Path> {
        if self.temp.is_none() {
            let dir = ScratchDir::new_in(&self.temp_parent, ".triton-sort-")
                .ctx(|| format!("creating a temporary directory in {}", self.temp_parent.display()))?;
            self.temp = Some(dir);
        }
        Ok(self.temp.as_ref().expect("just created").path())
    }

    fn new_run_path(&mut self) -> Result<PathBuf> {
        let n = self.runs_made;
        self.runs_made += 1;
        Ok(self.temp_dir()?.join(format!("run-{n:06}")))
    }

    /// Wait for the background spill, if any; returns its emptied buffer
    /// and index.
    fn wait_for_spill(&mut self) -> Result<Option<SpareRun>> {
        match self.spilling.take().map(JoinHandle::join) {
            None => Ok(None),
            Some(Ok(result)) => result.map(Some),
            Some(Err(_)) => Err(Error::Io {
                context: "spilling a sorted run".into(),
                source: std::io::Error::other("spill thread panicked"),
            }),
        }
    }

    /// Hand the full buffer to a background thread that sorts it and writes
    /// it as a run file; continue in the previous run's buffer.
    fn spill(&mut self) -> Result<()> {
        debug_assert_eq!(self.buf.len() % RECORD_LEN, 0);
        self.index_new_records();
        debug_assert_eq!(self.index.len() * RECORD_LEN, self.buf.len());
        let spare = self.wait_for_spill()?;
        self.records += (self.buf.len() / RECORD_LEN) as u64;
        let path = self.new_run_path()?;
        let (spare_buf, spare_index, spare_writes) = match spare {
            Some(spare) => spare,
            None => (
                RunBuf::empty(),
                BucketIndex::new(0),
                std::mem::take(&mut self.write_buffers),
            ),
        };
        let mut run = std::mem::replace(&mut self.buf, spare_buf);
        // The spare index must use the same known bits as the current one.
        let mut index = std::mem::replace(&mut self.index, spare_index);
        if self.index.skip_bits() != index.skip_bits() {
            self.index = BucketIndex::new(index.skip_bits());
        }
        self.indexed = 0;
        let write_buffer = self.write_buffer;
        let run_path = path.clone();
        debug_assert!(spare_writes.len() <= WRITE_BUFFERS);
        let handle = std::thread::Builder::new()
            .name("sort-spill".into())
            .spawn(move || -> Result<SpareRun> {
                index.sort();
                let file = File::create(&run_path).ctx(|| format!("creating run {}", run_path.display()))?;
                let mut out = PipelinedWriter::positional(file, write_buffer, run.len() as u64, WRITER_THREADS)
                    .ctx(|| format!("sizing run {}", run_path.display()))?
                    .with_buffers(spare_writes);
                index
                    .write(&run, &mut out)
                    .ctx(|| format!("writing run {}", run_path.display()))?;
                let writes = out
                    .finish_into_buffers()
                    .ctx(|| format!("writing run {}", run_path.display()))?;
                run.clear();
                index.clear();
                Ok((run, index, writes))
            })
            .ctx(|| "starting a spill thread".to_string())?;
        self.spilling = Some(handle);
        self.runs.push(path);
        Ok(())
    }

    /// Sort everything pushed so far into `out`; returns what was done.
    pub fn finish(mut self, out: File) -> Result<SortStats> {
        if self.runs.is_empty() {
            self.index_new_records();
            let records = (self.buf.len() / RECORD_LEN) as u64;
            assert_eq!(self.index.len() as u64, records, "every record indexed");
            let t = std::time::Instant::now();
            self.index.sort();
            trace(&format!("bucket sort {:?}", t.elapsed()));
            let mut out = PipelinedWriter::positional(out, self.write_buffer, self.buf.len() as u64, WRITER_THREADS)
                .ctx(|| "sizing the output".to_string())?
                .with_buffers(std::mem::take(&mut self.write_buffers));
            self.index
                .write(&self.buf, &mut out)
                .and_then(|()| out.finish())
                .ctx(|| "writing the sorted output".to_string())?;
            trace(&format!("sort_index+write {:?}", t.elapsed()));
            return Ok(SortStats { records, runs: 0 });
        }
        if !self.buf.is_empty() {
            self.spill()?;
        }
        // Free the run buffers (unmapped at once), indexes and writer
        // buffers before merging.
        drop(self.wait_for_spill()?);
        self.buf = RunBuf::empty();
        self.index = BucketIndex::new(0);
        self.write_buffers = Vec::new();
        let runs = std::mem::take(&mut self.runs);
        let memory = self.merge_memory;
        let (merged, _passes) = merge_in_passes(runs, MAX_FAN_IN, memory, &out, || self.new_run_path())?;
        trace(&format!("runs written: {}", self.runs_made));
        assert_eq!(merged, self.records, "merge lost or duplicated records");
        Ok(SortStats {
            records: merged,
            runs: self.runs_made,
        })
    }
}

impl Drop for RunSorter {
    fn drop(&mut self) {
        // Let a background spill finish before its directory is removed.
        let _ = self.wait_for_spill();
    }
}

/// Sort the records of `input` into `output` within `options.memory`.
/// The result is written beside `output` and renamed over it on success
/// ([`SortOutput`]), so a failure leaves `output` as it was. A file sorted
/// onto itself is read in full before it is replaced.
pub fn sort_file(input: &Path, output: &Path, options: &SortOptions) -> Result<SortStats> {
    let mut file = File::open(input).ctx(|| format!("opening input {}", input.display()))?;
    let size = file
        .metadata()
        .ctx(|| format!("reading the size of {}", input.display()))?
        .len();
    record_count(input, size)?;
    let t = std::time::Instant::now();
    let parent = crate::output::scratch_parent(output);
    let mut sorter = RunSorter::new(options.memory, &parent)?;
    if size > 0 && !same_file(input, output) {
        if size <= sorter.in_memory_limit() as u64 {
            return sort_mapped(&file, input, output);
        }
        // A tenth below the in-memory limit: the mapped merge windows and
        // the bucket tables also count against the budget.
        let run_records = (sorter.in_memory_limit() / RECORD_LEN / 10 * 9).max(1);
        return sort_mapped_runs(&file, input, output, &parent, run_records, MAX_FAN_IN);
    }
    sorter.fill_from(&mut file, input)?;
    drop(file);
    trace(&format!("read {:?}", t.elapsed()));
    // Only now is the output replaced (on success): a file sorted onto
    // itself survives a failed write.
    let out = SortOutput::create(output)?;
    let file = out
        .file()
        .try_clone()
        .ctx(|| format!("opening output {}", output.display()))?;
    let stats = sorter.finish(file)?;
    out.commit()?;
    Ok(stats)
}

/// Sort a file that fits the budget straight from a read-only map of the
/// page cache: no copy into our own memory, and the index (8 bytes per
/// record) is the only large allocation.
fn sort_mapped(file: &File, input: &Path, output: &Path) -> Result<SortStats> {
    // SAFETY: the map is read-only and lives only during this call. Like any
    // sort, it requires that nobody else modifies or truncates the input
    // while it runs; `sort_file` never maps when the output is the input.
    let t = std::time::Instant::now();
    let map =
        unsafe { memmap2::MmapOptions::new().populate().map(file) }.ctx(|| format!("mapping {}", input.display()))?;
    trace(&format!("map {:?}", t.elapsed()));
    // The size may have changed since it was checked: check the map.
    record_count(input, map.len() as u64)?;
    let t = std::time::Instant::now();
    let out = SortOutput::create(output)?;
    let records = sort_into_file(&map, out.file()).ctx(|| format!("writing {}", output.display()))?;
    out.commit()?;
    trace(&format!("sort+write {:?}", t.elapsed()));
    Ok(SortStats {
        records: records as u64,
        runs: 0,
    })
}

/// External sort of a file larger than the budget, from a read-only map of
/// it: each run of `run_records` records is sorted like a file that fits
/// ([`sort_into_file`]: index, then cache-hot pieces `pwrite`n at their
/// offsets) into a run file, and its pages are then dropped from the
/// mapping so the resident size stays within the budget; the runs are then
/// merged by [`crate::merge::merge_files`] (mapped, split by key range across threads),
/// in passes of at most `fan_in` runs. Measured against the previous
/// read-into-buffers path in docs/BENCHMARKS.md (sort section).
fn sort_mapped_runs(
    file: &File,
    input: &Path,
    output: &Path,
    temp_parent: &Path,
    run_records: usize,
    fan_in: usize,
) -> Result<SortStats> {
    assert!(run_records > 0 && fan_in >= 2);
    let memory = run_records * RECORD_LEN;
    // SAFETY: as in `sort_mapped`: read-only, only during this call, and
    // the caller never maps when the output is the input.
    let map = unsafe { memmap2::Mmap::map(file) }.ctx(|| format!("mapping {}", input.display()))?;
    let records = record_count(input, map.len() as u64)? as usize;
    let temp = ScratchDir::new_in(temp_parent, ".triton-sort-")
        .ctx(|| format!("creating a temporary directory in {}", temp_parent.display()))?;
    let mut runs = Vec::new();
    let t = std::time::Instant::now();
    for (k, first) in (0..records).step_by(run_records).enumerate() {
        let (lo, hi) = (first * RECORD_LEN, (first + run_records).min(records) * RECORD_LEN);
        // Only advice: fault the run in up front (fewer, larger faults).
        let _ = map.advise_range(memmap2::Advice::PopulateRead, lo, hi - lo);
        let path = temp.path().join(format!("run-{k:06}"));
        let run = File::create(&path).ctx(|| format!("creating run {}", path.display()))?;
        sort_into_file(&map[lo..hi], &run).ctx(|| format!("writing run {}", path.display()))?;
        drop_mapped_pages(&map, lo, hi);
        runs.push(path);
    }
    let runs_made = runs.len();
    trace(&format!("runs: {runs_made} in {:.3}s", t.elapsed().as_secs_f64()));
    drop(map);
    let t = std::time::Instant::now();
    let out = SortOutput::create(output)?;
    let mut made = 0;
    let (merged, passes) = merge_in_passes(runs, fan_in, memory, out.file(), || {
        made += 1;
        Ok(temp.path().join(format!("merged-{made:06}")))
    })?;
    trace(&format!(
        "merge ({passes} extra passes): {:.3}s",
        t.elapsed().as_secs_f64()
    ));
    if merged as usize != records {
        return Err(Error::Io {
            context: "merging runs".into(),
            source: std::io::Error::other("runs changed size while being merged"),
        });
    }
    out.commit()?;
    Ok(SortStats {
        records: merged,
        runs: runs_made,
    })
}

/// True if `b` exists and is the same file as `a` (sorting onto itself).
pub(crate) fn same_file(a: &Path, b: &Path) -> bool {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        match (std::fs::metadata(a), std::fs::metadata(b)) {
            (Ok(x), Ok(y)) => x.dev() == y.dev() && x.ino() == y.ino(),
            _ => false,
        }
    }
    #[cfg(not(unix))]
    {
        match (std::fs::canonicalize(a), std::fs::canonicalize(b)) {
            (Ok(x), Ok(y)) => x == y,
            _ => false,
        }
    }
}

/// True when `TRITON_SORT_TRACE` is set.
pub(crate) fn tracing() -> bool {
    std::env::var_os("TRITON_SORT_TRACE").is_some()
}

/// Phase timings on stderr when `TRITON_SORT_TRACE` is set (for benchmarks).
pub(crate) fn trace(msg: &str) {
    if tracing() {
        eprintln!("trace: {msg}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::memsort::sort_records;
    use proptest::prelude::*;

    fn records(keys: &[u16]) -> Vec<u8> {
        let mut data = Vec::new();
        for (i, &k) in keys.iter().enumerate() {
            let mut r = [0u8; RECORD_LEN];
            r[..2].copy_from_slice(&k.to_be_bytes());
            r[10..18].copy_from_slice(&(i as u64).to_be_bytes());
            data.extend_from_slice(&r);
        }
        data
    }

    fn sort_with_budget(data: &[u8], memory: u64, chunk: usize) -> (Vec<u8>, SortStats) {
        let dir = tempfile::tempdir().unwrap();
        let mut sorter = RunSorter::new(memory, dir.path()).unwrap();
        for piece in data.chunks(chunk * RECORD_LEN) {
            sorter.push(piece).unwrap();
        }
        let out_path = dir.path().join("out");
        let stats = sorter.finish(File::create(&out_path).unwrap());
        let bytes = std::fs::read(&out_path).unwrap();
        // Only the output is left: run files are removed.
        let leftovers: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(leftovers.len(), 1, "temporary runs left behind");
        (bytes, stats.unwrap())
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(24))]
        #[test]
        fn external_equals_in_memory(keys in proptest::collection::vec(any::<u16>(), 0..3000), chunk in 1usize..50) {
            let data = records(&keys);
            let mut expected = data.clone();
            sort_records(&mut expected);
            // 64 KiB budget: runs of ~250 records, so most cases spill.
            let (external, stats) = sort_with_budget(&data, MIN_MEMORY, chunk);
            prop_assert!(external == expected, "external sort differs");
            prop_assert_eq!(stats.records, keys.len() as u64);
            let (in_memory, stats) = sort_with_budget(&data, 64 << 20, chunk);
            prop_assert!(in_memory == expected, "in-memory sort differs");
            prop_assert_eq!(stats.runs, 0);
        }
    }

    #[test]
    fn more_runs_than_fan_in_merge_in_passes() {
        // ~250 records per run at the minimum budget; 400+ runs > MAX_FAN_IN.
        let keys: Vec<u16> = (0..110_000u32).map(|i| (i.wrapping_mul(40503) % 7919) as u16).collect();
        let data = records(&keys);
        let mut expected = data.clone();
        sort_records(&mut expected);
        let (bytes, stats) = sort_with_budget(&data, MIN_MEMORY, 1000);
        assert!(stats.runs > MAX_FAN_IN, "only {} runs", stats.runs);
        assert!(bytes == expected, "multi-pass merge differs from the in-memory sort");
    }

    #[test]
    fn sort_file_mapped_external_and_onto_itself_agree() {
        let dir = tempfile::tempdir().unwrap();
        let keys: Vec<u16> = (0..5000u32).map(|i| (i.wrapping_mul(7919) % 1013) as u16).collect();
        let data = records(&keys);
        let mut expected = data.clone();
        sort_records(&mut expected);
        let input = dir.path().join("in");
        std::fs::write(&input, &data).unwrap();
        for (memory, runs) in [(64u64 << 20, false), (MIN_MEMORY, true)] {
            let out = dir.path().join(format!("out-{memory}"));
            let stats = sort_file(&input, &out, &SortOptions { memory }).unwrap();
            assert_eq!(stats.runs > 0, runs);
            assert!(std::fs::read(&out).unwrap() == expected);
        }
        // Onto itself: read fully before the output is created, in memory
        // and (larger than the budget) through spilled runs.
        sort_file(&input, &input, &SortOptions { memory: 64 << 20 }).unwrap();
        assert!(std::fs::read(&input).unwrap() == expected);
        std::fs::write(&input, &data).unwrap();
        let stats = sort_file(&input, &input, &SortOptions { memory: MIN_MEMORY }).unwrap();
        assert!(stats.runs > 0);
        assert!(std::fs::read(&input).unwrap() == expected);
        let empty = dir.path().join("empty");
        std::fs::write(&empty, []).unwrap();
        let stats = sort_file(
            &empty,
            &dir.path().join("empty-out"),
            &SortOptions { memory: MIN_MEMORY },
        )
        .unwrap();
        assert_eq!(stats, SortStats::default());
    }

    #[test]
    fn mapped_runs_match_the_in_memory_sort() {
        let dir = tempfile::tempdir().unwrap();
        let keys: Vec<u16> = (0..2000u32).map(|i| (i.wrapping_mul(40503) % 601) as u16).collect();
        let input = dir.path().join("in");
        // (records, records per run, fan-in): none; one record; runs that do not
        // divide the input; one run; one record per run with fan-in 2 (many
        // merge passes); more runs than the fan-in with a partial last group.
        for (n, run_records, fan_in) in [
            (0, 7, 2),
            (1, 7, 2),
            (100, 7, 64),
            (100, 100, 2),
            (100, 1000, 64),
            (37, 1, 2),
            (2000, 64, 4),
        ] {
            let data = records(&keys[..n]);
            let mut expected = data.clone();
            sort_records(&mut expected);
            std::fs::write(&input, &data).unwrap();
            let output = dir.path().join("out");
            let file = File::open(&input).unwrap();
            let stats = sort_mapped_runs(&file, &input, &output, dir.path(), run_records, fan_in).unwrap();
            assert_eq!(stats.records, n as u64);
            assert_eq!(stats.runs, n.div_ceil(run_records));
            assert!(
                std::fs::read(&output).unwrap() == expected,
                "n={n} run={run_records} fan-in={fan_in}"
            );
            // Only the input and the output are left: runs are removed.
            assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 2);
        }
        // A file that is not whole records is refused before any run.
        std::fs::write(&input, [1u8; 250]).unwrap();
        let file = File::open(&input).unwrap();
        let err = sort_mapped_runs(&file, &input, &dir.path().join("out2"), dir.path(), 1, 2)
            .unwrap_err()
            .to_string();
        assert!(err.contains("not a multiple"), "{err}");
    }

    #[test]
    fn rejects_tiny_budget_and_partial_records() {
        let dir = tempfile::tempdir().unwrap();
        assert!(RunSorter::new(1000, dir.path()).is_err());
        let bad = dir.path().join("bad");
        std::fs::write(&bad, [7u8; 150]).unwrap();
        let opts = SortOptions { memory: 1 << 20 };
        let err = sort_file(&bad, &dir.path().join("out"), &opts).unwrap_err().to_string();
        assert!(err.contains("not a multiple of the 100-byte"), "{err}");
        let err = sort_file(&dir.path().join("missing"), &dir.path().join("out"), &opts)
            .unwrap_err()
            .to_string();
        assert!(err.contains("opening input"), "{err}");
        let mut sorter = RunSorter::new(MIN_MEMORY, dir.path()).unwrap();
        let err = sorter.fill_from(&mut &[1u8; 250][..], &bad).unwrap_err().to_string();
        assert!(err.contains("not a multiple"), "{err}");
    }
}
