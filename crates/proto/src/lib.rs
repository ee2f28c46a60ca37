//! Triton's wire interfaces. The `.proto` files under `proto/` are the
//! contract (clients in any language can be generated from them); this crate
//! includes the Rust code generated from them at build time, and the few
//! limits both sides of a contract must agree on.

#![allow(clippy::all, missing_docs)]

pub mod raft {
    tonic::include_proto!("triton.raft");
}

pub mod kv {
    tonic::include_proto!("triton.kv");
}

pub mod control {
    tonic::include_proto!("triton.control");
}

/// Operator RPCs: membership changes, leadership transfer.
pub mod admin {
    tonic::include_proto!("triton.admin");
}

/// SurfStore's course-compatible interface (package `surfstore`).
pub mod surfstore {
    tonic::include_proto!("surfstore");

    /// Most blocks a Triton block store accepts on one `PutBlockStream`
    /// (it bounds the reply and the bookkeeping of one stream); clients
    /// start a new stream before it.
    pub const MAX_BLOCKS_PER_STREAM: usize = 1 << 16;
}
