//! The values the Raft node persists, kept free of any dependency on the raft
//! crate: payloads and membership are opaque bytes the node encodes.

use std::path::PathBuf;

/// Raft's hard state: what a node must never forget once it has acted on it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct HardState {
    /// The latest term this node has seen.
    pub term: u64,
    /// Who this node voted for in `term` (0 = nobody).
    pub vote: u64,
    /// The highest index known committed.
    pub commit: u64,
}

/// One log entry: position, term, and the node's encoding of kind and data.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct LogEntry {
    /// Position in the log (the first entry is 1).
    pub index: u64,
    /// Term in which a leader created it.
    pub term: u64,
    /// Opaque bytes (the node encodes the entry kind and data).
    pub payload: Vec<u8>,
}

/// What a snapshot covers.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct SnapshotMeta {
    /// Last log index folded into the snapshot.
    pub index: u64,
    /// Term of that entry.
    pub term: u64,
    /// Opaque cluster membership as of `index`.
    pub membership: Vec<u8>,
}

/// The largest `WalOptions::max_record_bytes`, and the one a Triton node
/// opens its log with: a node that reads with the largest limit never finds
/// a healthy log "corrupt" because a limit was lowered (writes are bounded
/// when they are proposed). `triton wal dump` reads with it by default.
pub const MAX_RECORD_BYTES: u32 = u32::MAX;

/// Tuning knobs of the WAL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WalOptions {
    /// Start a new segment once the current one reaches this size.
    pub segment_bytes: u64,
    /// Largest record body accepted on write and on read (an entry's body is
    /// its payload plus 16 bytes). Lowering it below a record already on disk
    /// makes recovery refuse that record.
    pub max_record_bytes: u32,
    /// Encoded records are handed to the kernel once this many are buffered
    /// (they are durable only after `Wal::sync`).
    pub write_buffer_bytes: usize,
    /// The active segment grows ahead of its records in zero-filled steps of
    /// this many bytes, so that most fsyncs overwrite blocks the file already
    /// has. On ext4 an fdatasync after an append that grows the file must
    /// also commit the journal (the new size); one after an overwrite need
    /// not (measured here: 151 against 106 us alone, 222 against 182 us with
    /// three logs on one disk). 0 appends without preallocating.
    pub preallocate_bytes: u64,
}

impl Default for WalOptions {
    fn default() -> Self {
        WalOptions {
            segment_bytes: 64 << 20,
            max_record_bytes: 64 << 20,
            write_buffer_bytes: 1 << 20,
            preallocate_bytes: 1 << 20,
        }
    }
}

/// Everything recovery found on disk.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Recovered {
    /// The last hard state written (all zeros on a new log). If a crash lost
    /// the hard state written after entries (or a snapshot) of a newer term,
    /// its term is raised to the log's last term, with no vote, and written
    /// again (docs/STORAGE.md, Recovery).
    pub hard_state: HardState,
    /// The newest complete snapshot, if any.
    pub snapshot: Option<SnapshotMeta>,
    /// The log after the snapshot: contiguous, the first is `snapshot.index + 1` (or 1).
    pub entries: Vec<LogEntry>,
    /// A torn tail that was cut off: the file and the offset it now ends at
    /// (offset 0 means a segment whose header was torn was removed).
    pub repaired_tail: Option<(PathBuf, u64)>,
    /// Snapshot files that failed their checks and were passed over, with why.
    pub ignored_snapshots: Vec<(PathBuf, String)>,
    /// Segments fsynced at open: recovery read them through the page cache,
    /// which can hold writes that never reached the disk (all of them).
    pub synced_segments: usize,
}
