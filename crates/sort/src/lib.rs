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
//! * [`external`]: runs that fit the memory budget, spilled and k-way merged.
//! * [`writer`]: a writer thread so producing and writing output overlap.
//! * [`net`]: netsort, the same sort partitioned across servers over TCP.

pub mod error;
pub mod external;
pub mod gen;
pub mod memsort;
pub mod net;
pub mod record;
pub mod size;
pub mod valsort;
pub mod writer;

pub use error::{Error, Result};
pub use external::{sort_file, RunSorter, SortOptions};
pub use record::{KEY_LEN, RECORD_LEN, VALUE_LEN};
