//! # A Triton node
//!
//! The host that turns the pure Raft core into a running server:
//!
//! - [`driver`]: one thread owning the core, the WAL and the replicated
//!   store; runs the `Ready` loop (persist before acknowledging, group
//!   commit, apply, serve ReadIndex reads, snapshot to bound the log);
//! - [`transport`]: peer messages over long-lived gRPC streams;
//! - [`service`]: the client-facing key-value service and the test/fault
//!   control service (off unless enabled);
//! - [`client`]: a client that follows the leader and retries exactly-once;
//! - [`server`]: recovery and startup (and joining a running cluster);
//! - [`members`]: the address book of members, which travels in
//!   membership entries;
//! - [`admin`]: membership changes and leadership transfer for operators;
//! - [`auth`]: the admin token on admin and fault RPCs;
//! - [`tls`]: TLS (and mutual TLS) on the gRPC port, and [`tls::Dialer`],
//!   the one place clients and peers build their connections.

pub mod admin;
pub mod auth;
pub mod client;
pub mod clock;
pub mod codec;
pub mod driver;
pub mod fuzzing;
pub mod members;
pub mod metrics;
pub mod server;
pub mod service;
pub mod tls;
pub mod transport;
