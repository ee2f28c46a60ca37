//! `triton-storage`: the durable state of a Triton Raft node.
//!
//! The Raft core keeps its whole (snapshot-bounded) log in memory, so this
//! crate is write-mostly: append, group-commit sync, snapshot/compaction, and
//! recovery at startup. It does not depend on the raft crate: payloads and
//! membership are opaque bytes. The disk assumptions and the byte-level format
//! are in `docs/STORAGE.md`.

mod error;
pub mod format;
pub mod fuzzing;
pub mod inspect;
mod segment;
mod snapshot;
mod types;
mod wal;
mod writer;

pub use error::StorageError;
pub use segment::{parse_segment, SegmentContents};
pub use types::{HardState, LogEntry, Recovered, SnapshotMeta, WalOptions};
pub use wal::Wal;
pub use writer::{Completion, SyncResult, WalWriter, WriteBatch};
