//! # Triton's Raft core
//!
//! A pure, deterministic implementation of Raft consensus in the style of
//! etcd-io/raft and tikv/raft-rs: the core never touches a socket, a file, a
//! clock, a thread or the OS's randomness. The host drives it:
//!
//! - inputs: [`Raft::tick`], [`Raft::step`] (a message from a peer),
//!   [`Raft::propose`], [`Raft::read_index`], [`Raft::campaign`],
//!   [`Raft::transfer_leader`], [`Raft::compact`];
//! - outputs: [`Raft::ready`] returns a [`Ready`]: messages, entries and hard
//!   state to persist, a snapshot to install, committed entries to apply and
//!   reads that are now linearizable. [`Ready`]'s documentation states the
//!   order the host must follow (what must be durable before which message
//!   leaves). The host then calls [`Raft::advance`].
//!
//! Randomness (election timeouts) comes from a ChaCha8 generator seeded by
//! [`Config::seed`], so a whole cluster replays exactly from one seed.
//!
//! Features: randomized elections with pre-vote and check-quorum (with a
//! leader lease on votes), log replication with conflict hints (one round
//! trip per conflicting term), a no-op per new leader and the Figure 8
//! commit rule, batching and pipelining with a bounded inflight window,
//! chunked snapshot transfer, ReadIndex reads (also forwarded from
//! followers) and leader lease reads ([`Config::lease_read`]: the host's
//! ticks must keep pace with real time), leadership transfer, and membership as replicated state
//! (with joint quorums in [`quorum`]).
//!
//! Invariants are asserted where they are cheap to check (terms only grow,
//! committed entries are never truncated, one leader per term as seen by any
//! node): a violated invariant stops the process rather than corrupting data.

pub mod confchange;
pub mod config;
pub mod log;
pub mod message;
pub mod quorum;
mod raft;
pub mod ready;
pub mod tracker;
pub mod types;

pub use confchange::{ConfChange, ConfChangeError};
pub use config::{Config, ConfigError, MAX_CLOCK_RATE_DIFFERENCE_PERCENT};
pub use message::{Body, Message, MAX_TERM_JUMP};
pub use raft::{
    CompactError, ForceCampaignError, InitialState, ProposeError, Raft, ReadIndexError, Stats, TransferError,
};
pub use ready::Ready;
pub use types::{
    Entry, EntryKind, HardState, Index, Membership, NodeId, ReadState, Role, Snapshot, SnapshotMeta, SoftState, Term,
};
