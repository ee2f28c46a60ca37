//! Pass 1 of the in-memory sort of a large input: one read of the records
//! puts each record's `u64` index entry into one of 2^[`TOP_BITS`] top
//! buckets, chosen by its first key bits.
//!
//! Why blocks: placing entries straight into one contiguous index needs every
//! bucket's size first, so the input would be read twice (a counting pass,
//! then a scatter). Here each thread appends to a block of its own per
//! bucket and takes a fresh block from a shared arena when one fills, so the
//! sizes are only needed afterwards. 2^8 buckets keep each thread's 256
//! write positions in its L1 cache; the 2^16-way scatter this replaces
//! missed the cache on nearly every store on Intel machines (measurements in
//! docs/BENCHMARKS.md, sort section, eighth round).
//!
//! Each top bucket is then split by its next key bits in cache
//! ([`BucketBlocks::sub_buckets`]) by the worker that sorts and writes it.
//!
//! Memory: the arena holds `n` entries plus, per thread and bucket, at most
//! one partly filled block (kept under 1/32 of `n` by the block size).

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use crate::memsort::IndexBuf;
use crate::record::{key_prefix, RECORD_LEN};

/// Key bits that choose a top bucket.
pub const TOP_BITS: u32 = 8;
const TOP_BUCKETS: usize = 1 << TOP_BITS;
/// Records a thread takes from the input at a time.
const SLICE_RECORDS: usize = 1 << 15;
/// Fewest and most entries per block.
const MIN_BLOCK: usize = 32;
const MAX_BLOCK: usize = 1024;

/// Index entries of every record, grouped by top bucket in blocks of one
/// arena.
pub struct BucketBlocks {
    arena: IndexBuf,
    /// Per top bucket: its blocks as (first entry in the arena, entries).
    blocks: Vec<Vec<(usize, usize)>>,
    /// Entries per top bucket.
    counts: Vec<usize>,
    /// Key bits that choose a final bucket (top bits, then sub-bucket bits).
    bits: u32,
}

impl BucketBlocks {
    /// Read every record of `data` once and file its entry (see
    /// [`crate::memsort::entry_of`]) under its top `TOP_BITS` key bits.
    /// `bits` (at least `TOP_BITS`) is the total number of bucket bits that
    /// [`Self::sub_buckets`] will split by.
    pub fn build(data: &[u8], rec_bits: u32, bits: u32) -> BucketBlocks {
        assert_eq!(data.len() % RECORD_LEN, 0, "whole records only");
        assert!(
            (TOP_BITS..=64 - rec_bits).contains(&bits),
            "bucket bits fit the kept key bits"
        );
        let n = data.len() / RECORD_LEN;
        let threads = rayon::current_num_threads().max(1);
        // Partly filled blocks waste at most threads * buckets * block
        // entries: keep that under n / 32.
        let block = (n / (threads * TOP_BUCKETS * 32)).clamp(MIN_BLOCK, MAX_BLOCK);
        let capacity = n + threads * TOP_BUCKETS * block;
        let mut arena = IndexBuf::zeroed(capacity);
        let next_slice = AtomicUsize::new(0);
        let next_block = AtomicUsize::new(0);
        let shift = 64 - TOP_BITS;
        let per_thread: Vec<Vec<Vec<(usize, usize)>>> = {
            let arena: &mut [u64] = &mut arena;
            // SAFETY: as in `memsort::bucket_index`: `AtomicU64` has the
            // size, alignment and bit validity of `u64`, and the exclusive
            // borrow is held while this view lives. Each block belongs to the
            // one thread that claimed it, so relaxed stores (plain `mov`s)
            // never race; they are atomics so that no `&mut` aliasing is
            // needed to let threads write disjoint blocks of one slice.
            let slots: &[AtomicU64] = unsafe { &*(arena as *mut [u64] as *const [AtomicU64]) };
            rayon::broadcast(|_| {
                // Per bucket: the thread's blocks, and its write position and
                // end in the newest one (equal when a new block is needed).
                let mut mine: Vec<Vec<(usize, usize)>> = vec![Vec::new(); TOP_BUCKETS];
                let mut pos = [0usize; TOP_BUCKETS];
                let mut end = [0usize; TOP_BUCKETS];
                loop {
                    let lo = next_slice.fetch_add(SLICE_RECORDS, Ordering::Relaxed);
                    if lo >= n {
                        break;
                    }
                    for i in lo..(lo + SLICE_RECORDS).min(n) {
                        let start = i * RECORD_LEN;
                        let prefix = key_prefix(&data[start..start + RECORD_LEN]);
                        let b = (prefix >> shift) as usize;
                        if pos[b] == end[b] {
                            let first = next_block.fetch_add(block, Ordering::Relaxed);
                            // At most one partly filled block per thread and
                            // bucket, so the arena cannot run out.
                            assert!(first + block <= capacity, "block arena overflow");
                            mine[b].push((first, block));
                            pos[b] = first;
                            end[b] = first + block;
                        }
                        slots[pos[b]].store(crate::memsort::entry_of(prefix, i, rec_bits), Ordering::Relaxed);
                        pos[b] += 1;
                    }
                }
                for (b, list) in mine.iter_mut().enumerate() {
                    if let Some(last) = list.last_mut() {
                        last.1 = pos[b] - last.0;
                    }
                }
                mine
            })
        };
        let mut blocks: Vec<Vec<(usize, usize)>> = vec![Vec::new(); TOP_BUCKETS];
        for mine in per_thread {
            for (b, list) in mine.into_iter().enumerate() {
                blocks[b].extend(list.into_iter().filter(|&(_, len)| len > 0));
            }
        }
        let counts: Vec<usize> = blocks
            .iter()
            .map(|list| list.iter().map(|&(_, len)| len).sum())
            .collect();
        assert_eq!(counts.iter().sum::<usize>(), n, "every record filed once");
        BucketBlocks {
            arena,
            blocks,
            counts,
            bits,
        }
    }

    /// Entries in each top bucket.
    pub fn counts(&self) -> &[usize] {
        &self.counts
    }

    /// The entries of top bucket `b` in `scratch`, ordered by their next
    /// `bits - TOP_BITS` key bits (a counting scatter, in cache for buckets
    /// of a few hundred kB); `starts` receives where each of those
    /// sub-buckets starts, then the total.
    pub fn sub_buckets(&self, b: usize, scratch: &mut Vec<u64>, starts: &mut Vec<usize>) {
        let sub_bits = self.bits - TOP_BITS;
        let shift = 64 - self.bits;
        let mask = (1u64 << sub_bits) - 1;
        let sub = |e: u64| ((e >> shift) & mask) as usize;
        starts.clear();
        starts.resize((1 << sub_bits) + 1, 0);
        let entries = || {
            self.blocks[b]
                .iter()
                .flat_map(|&(first, len)| &self.arena[first..first + len])
        };
        for &e in entries() {
            starts[sub(e) + 1] += 1;
        }
        for k in 1..starts.len() {
            starts[k] += starts[k - 1];
        }
        let total = self.counts[b];
        assert_eq!(starts[starts.len() - 1], total);
        scratch.clear();
        // Exact: a doubled capacity would double the scratch the memory
        // budget allows for (see `memsort::sort_into_file`).
        scratch.reserve_exact(total);
        scratch.resize(total, 0);
        // Each sub-bucket's next free slot: its start, moving up.
        let mut next: Vec<usize> = starts[..starts.len() - 1].to_vec();
        for &e in entries() {
            let s = sub(e);
            scratch[next[s]] = e;
            next[s] += 1;
        }
        debug_assert!(next.iter().zip(&starts[1..]).all(|(a, b)| a == b));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::memsort::{entry_of, record_bits};
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(48))]
        /// Every record's entry is filed exactly once, under its top bucket,
        /// and each top bucket splits into sub-buckets by the next key bits.
        #[test]
        fn every_entry_is_filed_once_under_its_key_bits(
            prefixes in proptest::collection::vec(any::<u64>(), 0..3000),
            skew in 0u32..3,
            bits in TOP_BITS..=16,
        ) {
            // skew 1: most keys share top bits; skew 2: all equal.
            let prefixes: Vec<u64> = prefixes
                .into_iter()
                .enumerate()
                .map(|(i, p)| match skew {
                    1 if i % 4 != 0 => p >> 12,
                    2 => 42,
                    _ => p,
                })
                .collect();
            let mut data = vec![0u8; prefixes.len() * RECORD_LEN];
            for (record, p) in data.chunks_exact_mut(RECORD_LEN).zip(&prefixes) {
                record[..8].copy_from_slice(&p.to_be_bytes());
            }
            let rec_bits = record_bits(prefixes.len());
            let blocks = BucketBlocks::build(&data, rec_bits, bits);
            prop_assert_eq!(blocks.counts().len(), TOP_BUCKETS);
            let mut filed = Vec::new();
            let (mut scratch, mut starts) = (Vec::new(), Vec::new());
            for b in 0..TOP_BUCKETS {
                blocks.sub_buckets(b, &mut scratch, &mut starts);
                prop_assert_eq!(scratch.len(), blocks.counts()[b]);
                prop_assert_eq!(starts.len(), (1 << (bits - TOP_BITS)) + 1);
                for (sub, w) in starts.windows(2).enumerate() {
                    for &e in &scratch[w[0]..w[1]] {
                        prop_assert_eq!((e >> (64 - TOP_BITS)) as usize, b);
                        prop_assert_eq!(((e >> (64 - bits)) as usize) & ((1 << (bits - TOP_BITS)) - 1), sub);
                    }
                }
                filed.extend_from_slice(&scratch);
            }
            let mut expected: Vec<u64> = prefixes.iter().enumerate().map(|(i, &p)| entry_of(p, i, rec_bits)).collect();
            filed.sort_unstable();
            expected.sort_unstable();
            prop_assert_eq!(filed, expected);
        }
    }
}
