//! SurfStore, server side: the pieces a Dropbox-like sync service needs
//! beyond the replicated key-value core.
//!
//! - [`hash`]: how blocks are named (SHA-256, lowercase hex), shared with
//!   the sync client so both sides agree on every block's address.
//! - [`ring`]: the consistent-hash ring that decides which block store holds
//!   a block; the client calls it directly and the metadata service answers
//!   `GetBlockStoreMap` with it, so placement is one rule in one place.
//! - [`blockstore`]: the durable, content-addressed block store server
//!   (`triton blockstore`), over [`pack`]: append-only pack files with
//!   group commit (one `fdatasync` for many concurrent puts).
//! - [`meta`]: the metadata face of `triton server` (`MetaStore` and the
//!   `RaftSurfstore` test hooks) over the Raft-replicated store.
#![deny(missing_docs)]

pub mod blockstore;
#[doc(hidden)]
pub mod fuzzing;
pub mod hash;
pub mod meta;
pub mod pack;
pub mod ring;
