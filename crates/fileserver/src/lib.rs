//! # Triton's file server
//!
//! A second face of the replicated store: a memcached-like text protocol
//! over TCP (`read`, `write`, `cas`, `delete`; versions, compare-and-swap,
//! expiry), served by every node, so that clients see one file server while
//! a Raft cluster stands behind it.
//!
//! - [`protocol`]: the pure, incremental parser and encoder (fuzzed);
//! - [`server`]: the [`server::FileServerFace`] a node runs;
//! - [`client`]: a client that follows redirects to the leader;
//! - [`loadgen`]: the benchmark's load generator (this protocol or memcached's);
//! - [`fuzzing`]: the fuzz target's checks, shared with `cargo test`.

#![deny(missing_docs)]

pub mod client;
pub mod fuzzing;
pub mod loadgen;
pub mod protocol;
pub mod server;

pub use client::{FileClient, OutcomeUnknown};
pub use protocol::{parse_request, Limits, Parsed, Reply, Request};
pub use server::FileServerFace;
