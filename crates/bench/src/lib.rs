//! Triton's performance benchmarks (issue 10). They measure; they never
//! assert speed. Three families:
//!
//! - [`kv`]: one load generator drives either a local Triton cluster or a
//!   local etcd cluster with the same workload (8-byte keys, 256-byte values,
//!   linearizable gets), so the two are compared in one run.
//! - [`failover`]: SIGKILL the leader of a 3-node cluster under load, again
//!   and again, and measure how long writes stop; plus [`failover::spurious_term_changes`]
//!   in the simulator, to show default timing holds under a 20 ms network delay.
//! - [`study`]: a parameter grid in the deterministic simulator and on a real
//!   cluster, written as CSV and plotted ([`plot`]).
#![warn(missing_docs)]

pub mod etcd;
pub mod failover;
pub mod kv;
pub mod latency;
pub mod plot;
pub mod stats;
pub mod study;

/// Generated client for etcd's `etcdserverpb.KV` service (Put and Range only).
#[allow(missing_docs, clippy::all)]
pub mod etcdpb {
    tonic::include_proto!("etcdserverpb");
}
