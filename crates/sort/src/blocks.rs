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
//! Each top bucket is then radix-sorted in cache
//! ([`BucketBlocks::sorted_bucket`]) by the worker that writes it.
//!
//! Memory: the arena holds `n` entries plus, per thread and bucket, at most
//! one partly filled block (kept under 1/32 of `n` by the block size).

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use crate::memsort::{prefetch_line, IndexBuf, STREAM_AHEAD};
use crate::record::{key_prefix, RECORD_LEN};

/// Key bits that choose a top bucket.
pub const TOP_BITS: u32 = 8;
const TOP_BUCKETS: usize = 1 << TOP_BITS;
/// Records a thread takes from the input at a time.
const SLICE_RECORDS: usize = 1 << 15;
/// Bits of each radix digit of [`BucketBlocks::sorted_bucket`]: 2^11
/// counters per digit fit the L1 cache, and 32 kept key bits (10 M records)
/// take three passes.
const DIGIT_BITS: u32 = 11;
/// Key bits below the top bucket's that [`BucketBlocks::sorted_bucket`]
/// sorts by radix: two digits. Runs equal in those bits (for 10 M random
/// keys, 30 leading bits, nearly all runs of one) are then sorted by
/// comparison; a third radix pass cost more than that (1 GB: 0.42 s
/// against 0.40 s, 11 interleaved rounds).
const RADIX_KEY_BITS: u32 = 2 * DIGIT_BITS;
const DIGIT_MASK: usize = (1 << DIGIT_BITS) - 1;
/// Entries ahead (eight per cache line) that [`BucketBlocks::sorted_bucket`]
/// asks for while it counts a bucket's digits from the arena: the blocks
/// are a few kB each, too short for the hardware prefetcher to get going.
/// 64 took the 1 GB sort's radix sorts from 0.092-0.096 to 0.077-0.087
/// thread-s (32 and 128 were no better).
const COUNT_AHEAD: usize = 64;

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
}

impl BucketBlocks {
    /// Read every record of `data` once and file its entry (see
    /// [`crate::memsort::entry_of`]) under its top `TOP_BITS` key bits.
    pub fn build(data: &[u8], rec_bits: u32) -> BucketBlocks {
        assert_eq!(data.len() % RECORD_LEN, 0, "whole records only");
        assert!(TOP_BITS + rec_bits < 64, "the top bucket bits are key bits");
        let n = data.len() / RECORD_LEN;
        let threads = rayon::current_num_threads().max(1);
        // Partly filled blocks waste at most threads * buckets * block
        // entries: keep that under n / 32.
        let block = (n / (threads * TOP_BUCKETS * 32)).clamp(MIN_BLOCK, MAX_BLOCK);
        let capacity = n + threads * TOP_BUCKETS * block;
        // Small pages: each thread writes to at most 256 blocks at a time,
        // few enough for the TLB, and faulting in huge pages here took
        // 10-160 ms per 80 MB against a steady 35 ms for small ones (the
        // huge pages' zeroing varies on this VM).
        let mut arena = IndexBuf::zeroed(capacity, false);
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
                        prefetch_line(data, start + STREAM_AHEAD);
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
        BucketBlocks { arena, blocks, counts }
    }

    /// Entries in each top bucket.
    pub fn counts(&self) -> &[usize] {
        &self.counts
    }

    /// The entries of top bucket `b` in `out`, ordered by their key bits
    /// from the returned bit up: a radix sort of the [`RADIX_KEY_BITS`] key
    /// bits below the top bucket's (or of all the kept ones, if fewer), one
    /// pass over the blocks for all the digits' counts, then one scatter per
    /// digit between `out` and `spare`, in cache for buckets of a few hundred
    /// kB. A digit that is the same for every entry is skipped. Runs equal
    /// in the sorted bits are left for [`crate::memsort::order_runs`].
    ///
    /// (First version: split by the next 8 key bits, then `sort_unstable`
    /// of each small sub-bucket; see docs/BENCHMARKS.md, sort, eighth round.)
    pub fn sorted_bucket(&self, b: usize, rec_bits: u32, out: &mut Vec<u64>, spare: &mut Vec<u64>) -> u32 {
        // The radix digits cover the RADIX_KEY_BITS key bits below the top
        // bucket's (or all the kept ones, if fewer), from bit `low` up.
        let low = (64 - TOP_BITS - RADIX_KEY_BITS).max(rec_bits);
        let passes = (64 - TOP_BITS - low).div_ceil(DIGIT_BITS) as usize;
        let digit = |e: u64, pass: usize| ((e >> (low + pass as u32 * DIGIT_BITS)) as usize) & DIGIT_MASK;
        let total = self.counts[b];
        let entries = || {
            self.blocks[b]
                .iter()
                .flat_map(|&(first, len)| &self.arena[first..first + len])
        };
        let mut counts = vec![[0usize; 1 << DIGIT_BITS]; passes];
        let list = &self.blocks[b];
        for (k, &(first, len)) in list.iter().enumerate() {
            // The next block's first lines while this one is counted, then
            // each line of this one COUNT_AHEAD entries ahead.
            if let Some(&(next, next_len)) = list.get(k + 1) {
                for j in (0..next_len.min(COUNT_AHEAD)).step_by(8) {
                    prefetch_line(&self.arena, next + j);
                }
            }
            for (j, &e) in self.arena[first..first + len].iter().enumerate() {
                if j % 8 == 0 && j + COUNT_AHEAD < len {
                    prefetch_line(&self.arena, first + j + COUNT_AHEAD);
                }
                for (pass, c) in counts.iter_mut().enumerate() {
                    c[digit(e, pass)] += 1;
                }
            }
        }
        // Exact capacities: a doubled one would double the scratch the
        // memory budget allows for (see `memsort::sort_into_file`).
        for v in [&mut *out, &mut *spare] {
            v.clear();
            v.reserve_exact(total);
            v.resize(total, 0);
        }
        let mut from_blocks = true;
        for (pass, c) in counts.iter_mut().enumerate() {
            if c.contains(&total) {
                continue;
            }
            // Counts to starts.
            let mut sum = 0;
            for slot in c.iter_mut() {
                (*slot, sum) = (sum, sum + *slot);
            }
            assert_eq!(sum, total);
            if from_blocks {
                for &e in entries() {
                    let d = digit(e, pass);
                    out[c[d]] = e;
                    c[d] += 1;
                }
                from_blocks = false;
            } else {
                for &e in out.iter() {
                    let d = digit(e, pass);
                    spare[c[d]] = e;
                    c[d] += 1;
                }
                std::mem::swap(out, spare);
            }
        }
        if from_blocks {
            // Every digit the same: the entries in any order.
            for (slot, &e) in out.iter_mut().zip(entries()) {
                *slot = e;
            }
        }
        debug_assert!(out.windows(2).all(|w| w[0] >> low <= w[1] >> low));
        low
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
        /// and each top bucket comes out ordered by its radix bits.
        #[test]
        fn every_entry_is_filed_once_and_sorted_by_its_key_bits(
            prefixes in proptest::collection::vec(any::<u64>(), 0..3000),
            skew in 0u32..5,
        ) {
            // skew 1: most keys share their top bits; 2: all keys equal;
            // 3: keys that differ only in one digit's bits; 4: only below
            // the radix digits' bits.
            let prefixes: Vec<u64> = prefixes
                .into_iter()
                .enumerate()
                .map(|(i, p)| match skew {
                    1 if i % 4 != 0 => p >> 12,
                    2 => 42,
                    3 => (p & 0x7ff) << 40,
                    4 => p & 0xffff_ffff,
                    _ => p,
                })
                .collect();
            let mut data = vec![0u8; prefixes.len() * RECORD_LEN];
            for (record, p) in data.chunks_exact_mut(RECORD_LEN).zip(&prefixes) {
                record[..8].copy_from_slice(&p.to_be_bytes());
            }
            let rec_bits = record_bits(prefixes.len());
            let blocks = BucketBlocks::build(&data, rec_bits);
            prop_assert_eq!(blocks.counts().len(), TOP_BUCKETS);
            let mut filed = Vec::new();
            let (mut sorted, mut spare) = (Vec::new(), Vec::new());
            for b in 0..TOP_BUCKETS {
                let low = blocks.sorted_bucket(b, rec_bits, &mut sorted, &mut spare);
                prop_assert!(low >= rec_bits);
                prop_assert_eq!(sorted.len(), blocks.counts()[b]);
                for &e in &sorted {
                    prop_assert_eq!((e >> (64 - TOP_BITS)) as usize, b);
                }
                for w in sorted.windows(2) {
                    prop_assert!(w[0] >> low <= w[1] >> low, "the radix bits in order");
                }
                filed.extend_from_slice(&sorted);
            }
            let mut expected: Vec<u64> = prefixes.iter().enumerate().map(|(i, &p)| entry_of(p, i, rec_bits)).collect();
            filed.sort_unstable();
            expected.sort_unstable();
            prop_assert_eq!(filed, expected);
        }
    }
}
