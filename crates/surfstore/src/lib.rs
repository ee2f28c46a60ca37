//! SurfStore, server side: the pieces a Dropbox-like sync service needs
//! beyond the replicated key-value core.
//!
//! - [`hash`]: how blocks are named (SHA-256, lowercase hex), shared with
//!   the sync client so both sides agree on every block's address.
//! - [`ring`]: the consistent-hash ring that decides which block store holds
//!   a block; the client calls it directly and the metadata service answers
//!   `GetBlockStoreMap` with it, so placement is one rule in one place.
#![deny(missing_docs)]

pub mod hash;
pub mod ring;
