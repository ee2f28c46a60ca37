//! `triton-sort`: sorting files of fixed 100-byte records (a 10-byte key
//! compared as an unsigned big-endian integer, then a 90-byte value).
//!
//! The crate holds everything behind the `triton gensort | showsort | valsort
//! | sort | netsort` subcommands so the binary stays a thin shell:
//!
//! * [`record`]: the record format and its key.
//! * [`size`]: human sizes (`1000`, `1mb`, `2 GB`, `1GiB`) for the CLI.
//! * [`gen`]: deterministic random records (gensort) and their display (showsort).
//! * [`valsort`]: order check plus an order-independent checksum.
//! * [`memsort`]: the in-memory sort (bucket by top key bits, sort buckets in parallel).
//! * [`blocks`]: its first pass for large inputs: one read files every entry under its top key bits.
//! * [`external`]: runs that fit the memory budget, spilled and k-way merged.
//! * [`merge`]: the k-way merge of run files, mapped and split by key range.
//! * [`writer`]: a writer thread so producing and writing output overlap.
//! * [`output`]: the output written beside the destination, renamed over it on success.
//! * [`net`]: netsort, the same sort partitioned across servers over TCP.
//!
//! What the sort assumes of its input: nobody changes it while it runs. The
//! input is mapped, not read (a copy of the whole file would cost about as
//! much as the sort), so a file that another process truncates meanwhile
//! ends the process with SIGBUS, and one rewritten in place may give an
//! output that `valsort` rejects (the scatter pass notices some such changes
//! and stops with "the input changed while it was being sorted"). GNU sort
//! reads with read(2) and has neither failure; it also has no such speed.

#![warn(missing_docs)]

pub mod blocks;
pub mod error;
pub mod external;
// Fuzz-target entry points, public only for `fuzz/` and `tests/fuzz_corpus.rs`.
#[doc(hidden)]
pub mod fuzzing;
pub mod gen;
pub mod memsort;
pub mod merge;
pub mod net;
pub mod output;
pub mod record;
pub mod scratch;
pub mod size;
pub mod valsort;
pub mod writer;

pub use error::{Error, Result};
pub use external::{sort_file, RunSorter, SortOptions};
pub use record::{KEY_LEN, RECORD_LEN, VALUE_LEN};

/// Use `threads` worker threads for the parallel parts (sorting, gathering,
/// generating). Must be called before any of them runs.
pub fn use_threads(threads: usize) -> Result<()> {
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build_global()
        .map_err(|e| Error::Config(format!("cannot set up {threads} threads: {e}")))
}

/// Default memory budget: half the machine's physical memory (from
/// `/proc/meminfo`), or 1 GiB where that cannot be read. Half leaves room
/// for the page cache that the input and output files live in.
pub fn default_memory() -> u64 {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|text| {
            let line = text.lines().find(|l| l.starts_with("MemTotal:"))?;
            let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
            Some(kib * 1024 / 2)
        })
        .unwrap_or(1 << 30)
}
