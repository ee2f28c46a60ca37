//! # Triton's replicated state machine
//!
//! Raft (`triton-raft`) agrees on a log; this crate gives the log a meaning.
//! Every committed entry's payload is passed to [`Store::apply`] on every
//! replica, in log order, and every replica must reach the same state. One
//! store serves three faces of Triton:
//!
//! - a key-value API (put, append, delete, compare-and-set);
//! - a memcached-like server with versions, CAS and expiry;
//! - SurfStore's file-metadata map ([`WriteOp::SurfUpdate`],
//!   [`Store::file_info_map`]).
//!
//! ## Determinism
//!
//! Nothing inside [`Store::apply`] reads a clock, a random source, a hash
//! map's iteration order or floating point. Time comes from the command: the
//! leader stamps its wall clock into [`Command::now_ms`] when it proposes.
//! The version of every write is its log index, so versions come from one
//! cluster-wide counter that only grows and is never reused, even after a
//! key is deleted and re-created. [`Store::snapshot`] bytes are identical on
//! replicas that applied the same log prefix.
//!
//! ## Exactly-once
//!
//! A client first registers a session ([`WriteOp::RegisterSession`]); its
//! client id is that command's log index, so ids are never reused and a
//! registration applied twice (a retried request) only opens a session that
//! nobody uses. Each write then carries a [`Session`] (client id, seq). The
//! store remembers each session's last seq and its result: a retry of that
//! seq gets the cached result without changing state, an older seq gets
//! [`WriteResult::StaleSession`]. At most [`StoreOptions::max_sessions`]
//! sessions are remembered; when full, the one whose last write (or
//! registration) is oldest in the log (ties: lowest client id) is forgotten.
//! A write from a session the store does not know, never registered or
//! forgotten, gets [`WriteResult::SessionExpired`] and changes nothing
//! (Raft thesis §6.3): it may be the retry of a write that was applied
//! before the session was forgotten, and applying it again would break
//! exactly-once. The client registers a new session and, unless an earlier
//! attempt of that write may have been applied, sends it again there.
//!
//! These rules are part of the replicated state machine: replicas that
//! apply one log under different rules diverge, and clients of the old rules
//! (a session chosen by the client) are refused by the new ones. A cluster
//! therefore moves to a binary with new session rules all at once (stop
//! every node, start them on the new binary), clients included, not node by
//! node. Registered sessions are such a change (2026-11-22).
//!
//! ## One key space, two faces
//!
//! The key-value face and the file server share the versioned key space.
//! File `NAME` is key [`FILE_KEY_PREFIX`]`NAME`; the key-value face refuses
//! keys under that prefix, so neither face can read or change the other's
//! entries.
//!
//! ## Expiry
//!
//! Expiry times are absolute. A read never returns a key expired at the
//! reader's `now_ms`, and writes treat an expired key as missing. Removal
//! is itself replicated: the leader asks [`Store::expired`] and proposes
//! [`WriteOp::Expire`] for each key, which removes it only if it still has
//! the version the leader saw and is expired at the command's time.
//!
//! Time in the log is the latest stamp applied ([`Store::clock_ms`]); it
//! never goes back, and reads never judge expiry at an earlier time. So a
//! stamp ahead of real time would expire keys early on every replica and
//! freeze time for reads until real time caught up: the node stamps
//! commands so that this clock advances no faster than real time, whatever
//! one leader's wall clock says (`LogClock` in `triton-node`'s driver).
//! The store itself trusts the stamps it is given.
//!
//! ## Example
//!
//! ```
//! use triton_store::{Command, Session, Store, StoreOptions, WriteOp, WriteResult};
//!
//! let mut store = Store::new(StoreOptions::default());
//! let register = Command { session: None, now_ms: 1_000, op: WriteOp::RegisterSession };
//! assert_eq!(store.apply(1, &register.encode()), WriteResult::Registered { client_id: 1 });
//! let put = Command {
//!     session: Some(Session { client_id: 1, seq: 1 }),
//!     now_ms: 1_000,
//!     op: WriteOp::Put { key: b"k".to_vec(), value: b"v".to_vec(), expires_at_ms: 5_000 },
//! };
//! assert_eq!(store.apply(2, &put.encode()), WriteResult::Put { version: 2 });
//! // A retry of the same request returns the first result; nothing is applied twice.
//! assert_eq!(store.apply(3, &put.encode()), WriteResult::Put { version: 2 });
//! assert_eq!(store.get(b"k", 4_999).map(|e| e.value), Some(&b"v"[..]));
//! assert!(store.get(b"k", 5_000).is_none());
//! assert_eq!(store.expired(5_000, 10), vec![(b"k".to_vec(), 2)]);
//! let copy = Store::restore(&store.snapshot()).unwrap();
//! assert_eq!(copy.snapshot(), store.snapshot());
//! ```

#![deny(missing_docs)]

mod command;
mod error;
pub mod fuzzing;
#[cfg(test)]
mod proto_schema;
pub mod snapshot;
mod store;

pub use command::{Command, Session, WriteOp};
pub use error::StoreError;
pub use store::{Entry, FileMeta, Store, StoreOptions, WriteResult};

/// The prefix of the file server's keys; the key-value face refuses keys
/// that start with it.
pub const FILE_KEY_PREFIX: &[u8] = b"f/";
