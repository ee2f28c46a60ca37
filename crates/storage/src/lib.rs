//! `triton-storage`: the durable state of a Triton Raft node.
//!
//! The Raft core keeps its whole (snapshot-bounded) log in memory, so this
//! crate is write-mostly: append, group-commit sync, snapshot/compaction, and
//! recovery at startup. It does not depend on the raft crate: payloads and
//! membership are opaque bytes. The disk assumptions and the byte-level format
//! are in `docs/STORAGE.md`.
//!
//! ```
//! use triton_storage::{HardState, LogEntry, Wal, WalOptions};
//!
//! let dir = tempfile::tempdir().unwrap();
//! let (mut wal, recovered) = Wal::open(dir.path(), WalOptions::default()).unwrap();
//! assert!(recovered.entries.is_empty());
//! wal.append(&[LogEntry { index: 1, term: 1, payload: b"put x".to_vec() }]).unwrap();
//! wal.set_hard_state(HardState { term: 1, vote: 2, commit: 0 }).unwrap();
//! wal.sync().unwrap(); // one fdatasync: now both may be acted upon
//! drop(wal);
//! let (wal, recovered) = Wal::open(dir.path(), WalOptions::default()).unwrap();
//! assert_eq!((recovered.entries.len(), recovered.hard_state.vote), (1, 2));
//! assert_eq!(wal.last_index(), 1);
//! ```

mod error;
pub mod format;
pub mod fuzzing;
pub mod inspect;
mod reader;
mod segment;
mod snapshot;
mod types;
mod wal;
mod writer;

pub use error::StorageError;
pub use segment::{parse_segment, records_end, SegmentContents};
pub use types::{HardState, LogEntry, Recovered, SnapshotMeta, WalOptions, MAX_RECORD_BYTES};
pub use wal::{sync_dir, Wal};
pub use writer::{Completion, SyncResult, WalWriter, WriteBatch};
