//! # Running Triton
//!
//! What an operator needs beyond the storage itself:
//!
//! - [`face`]: each node's HTTP port (`http_addr` in the config), serving
//!   `/metrics` (Prometheus text), `/status` (JSON) and `/` (the dashboard);
//! - [`render`]: the pure functions that turn a node's status into those
//!   texts (kept apart so they can be tested without a running node);
//! - [`httpget`]: a minimal HTTP/1.1 client for polling `/status` (used by
//!   `triton up` to wait for a leader, and by tests);
//! - [`up`]: `triton up`, a supervisor that runs a whole local cluster as
//!   child processes of the one binary.

pub mod face;
pub mod httpget;
pub mod render;
pub mod up;

pub use face::MetricsFace;
