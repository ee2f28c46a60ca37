//! SurfStore's client: `triton sync` and `triton surf mapping`.
//!
//! A directory is synced with the cloud: files are cut into blocks (fixed
//! size, or content-defined with FastCDC), blocks live on block stores by
//! SHA-256, and each file's version and hash list live in the Raft-replicated
//! metadata service. The local `index.db` records what was last synced so
//! that local creations, edits and deletions can be told apart from remote
//! ones. See [`sync::sync`] for the algorithm.

#![warn(missing_docs)]

pub mod chunk;
pub mod fake;
pub mod index;
pub mod progress;
pub mod rpc;
pub mod sync;

pub use chunk::{Chunker, Chunking};
pub use progress::ProgressMode;
pub use sync::{mapping, sync, MappingLine, Summary, SyncError, SyncOptions};
