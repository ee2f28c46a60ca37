//! Errors of the store: undecodable commands and unusable snapshots.
//!
//! Both come from bytes that crossed a network or a disk, so they are values,
//! never panics. `apply` turns a command error into
//! [`WriteResult::Malformed`](crate::WriteResult::Malformed) so every replica
//! reaches the same outcome.

/// Why a command or a snapshot could not be decoded.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum StoreError {
    /// The command bytes are not a valid protobuf `Command`.
    #[error("malformed command: {0}")]
    Decode(#[from] prost::DecodeError),
    /// The command decoded but carries no operation (an empty or unknown `op`).
    #[error("malformed command: no operation (empty or unknown `op`)")]
    MissingOp,
    /// The snapshot is shorter than its fixed header and checksum.
    #[error("snapshot too short: {len} bytes, need at least {min}")]
    SnapshotTooShort {
        /// Bytes given.
        len: usize,
        /// Minimum size of any snapshot.
        min: usize,
    },
    /// The snapshot does not start with the store's magic number.
    #[error("not a Triton store snapshot (bad magic number)")]
    BadMagic,
    /// The snapshot was written by a format this build does not read.
    #[error("unsupported snapshot format version {0}")]
    UnsupportedVersion(u32),
    /// The CRC32C trailer does not match the content: the bytes were damaged.
    #[error("snapshot checksum mismatch: stored {stored:#010x}, computed {computed:#010x}")]
    Checksum {
        /// CRC32C stored in the trailer.
        stored: u32,
        /// CRC32C of the bytes before the trailer.
        computed: u32,
    },
    /// The snapshot ends in the middle of a field.
    #[error("snapshot truncated while reading {0}")]
    Truncated(&'static str),
    /// The snapshot's checksum is right but its content breaks an invariant
    /// (unsorted keys, a version above the applied index, ...).
    #[error("invalid snapshot: {0}")]
    Invalid(String),
    /// The snapshot's store is applied to another index than the one its
    /// Raft metadata names: applying on from it would skip or repeat entries.
    #[error("the snapshot is at index {expected} but its store is applied to {applied}")]
    WrongIndex {
        /// Index the snapshot's metadata names.
        expected: u64,
        /// Index the store inside it is applied to.
        applied: u64,
    },
}
