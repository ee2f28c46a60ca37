//! The one error type of the crate. Corruption errors always carry the file and
//! the byte offset, because an operator who gets "the log is corrupt" without
//! a location cannot decide between repairing a disk and restoring a replica.

use std::io;
use std::path::PathBuf;

/// Everything that can go wrong while reading or writing durable state.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// An operating-system call failed on `path`.
    #[error("I/O error on {}: {source}", path.display())]
    Io {
        /// The file or directory the call was about.
        path: PathBuf,
        /// What the operating system said.
        #[source]
        source: io::Error,
    },
    /// Bytes on disk that cannot be a torn tail: refusing to start is the only
    /// answer that never loses acknowledged data silently.
    #[error("corrupt data in {} at byte offset {offset}: {reason}", path.display())]
    Corrupt {
        /// The damaged file.
        path: PathBuf,
        /// Byte offset of the damaged record (or header) inside `path`.
        offset: u64,
        /// What check failed.
        reason: String,
    },
    /// An entry whose encoded record would exceed `WalOptions::max_record_bytes`.
    #[error("entry {index} needs a {len}-byte record, over max_record_bytes = {max}")]
    RecordTooLarge {
        /// Index of the offending entry.
        index: u64,
        /// Body length its record would have.
        len: u64,
        /// The configured limit.
        max: u32,
    },
    /// An append that would leave a gap (or is not ordered by index).
    #[error("non-contiguous append: expected index {expected}, got {got}")]
    NonContiguous {
        /// The index that would have been accepted.
        expected: u64,
        /// The index that was offered.
        got: u64,
    },
    /// An append that would rewrite entries already folded into a snapshot.
    #[error("cannot write entry {index}: entries up to {snapshot_index} are compacted into a snapshot")]
    Compacted {
        /// The index that was offered.
        index: u64,
        /// Index of the current snapshot.
        snapshot_index: u64,
    },
    /// An index past [`crate::format::MAX_INDEX`], which no real log reaches;
    /// refused so that index arithmetic can never overflow.
    #[error("index {index} is past the supported maximum {}", crate::format::MAX_INDEX)]
    IndexOutOfRange {
        /// The offending index.
        index: u64,
    },
    /// A snapshot that is not newer than the one already saved.
    #[error("snapshot at index {index} is not newer than the saved one at index {current}")]
    StaleSnapshot {
        /// Index of the offered snapshot.
        index: u64,
        /// Index of the snapshot already saved.
        current: u64,
    },
    /// A hard state that breaks Raft's rules (term going back, a second vote in one term).
    #[error("invalid hard state: {reason}")]
    InvalidHardState {
        /// Which rule it breaks.
        reason: String,
    },
    /// Options that cannot work (for example a record limit too small for a hard state).
    #[error("invalid WAL options: {reason}")]
    InvalidOptions {
        /// What is wrong with them.
        reason: String,
    },
    /// A write or fsync failed earlier. After a failed fsync the kernel may have
    /// dropped the dirty pages and cleared the error ("fsyncgate"), so nothing
    /// written since the last good sync can be trusted: the process must stop
    /// and recover from what is on disk.
    #[error("the WAL is unusable after an earlier failure ({reason}); restart the process to recover from disk")]
    Poisoned {
        /// The failure that poisoned it.
        reason: String,
    },
    /// Another process (or another `Wal` in this one) has the directory open.
    #[error("{} is locked by another process using the same WAL directory", path.display())]
    Locked {
        /// The lock file.
        path: PathBuf,
    },
    /// The `WalWriter` thread is gone (shut down, or a completion callback panicked).
    #[error("the WAL writer thread has stopped")]
    WriterStopped,
}

impl StorageError {
    pub(crate) fn io(path: impl Into<PathBuf>, source: io::Error) -> Self {
        StorageError::Io {
            path: path.into(),
            source,
        }
    }

    pub(crate) fn corrupt(path: impl Into<PathBuf>, offset: u64, reason: impl Into<String>) -> Self {
        StorageError::Corrupt {
            path: path.into(),
            offset,
            reason: reason.into(),
        }
    }
}
