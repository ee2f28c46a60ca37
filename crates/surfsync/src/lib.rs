//! SurfStore's client: `triton sync` and `triton surf mapping`.
//!
//! A directory is synced with the cloud: files are cut into blocks (fixed
//! size, or content-defined with FastCDC), blocks live on block stores by
//! SHA-256, and each file's version and hash list live in the Raft-replicated
//! metadata service. The local `index.db` records what was last synced so
//! that local creations, edits and deletions can be told apart from remote
//! ones; `index.db-lock` keeps two syncs of one directory from running at
//! once. Neither is synced. See [`sync::sync`] for the algorithm.

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

/// Checks, on arbitrary bytes, the properties the fuzz target
/// (`fuzz/fuzz_targets/check_invariants.rs`) and its corpus test rely on:
/// a file name that [`sync::refuse_name`] accepts (the first line of the
/// input) always names a file directly inside BASEDIR, and both chunking
/// schemes cut the whole input into in-order, in-bounds blocks that hash to
/// their bytes. Panics when a property fails.
pub fn check_invariants(bytes: &[u8]) {
    let first_line = bytes.split(|&b| b == b'\n').next().unwrap_or_default();
    let name = String::from_utf8_lossy(first_line);
    if sync::refuse_name(&name).is_none() {
        let base = std::path::Path::new("/base");
        let joined = base.join(&*name);
        assert_eq!(joined.parent(), Some(base), "{name:?} escapes BASEDIR");
        assert_eq!(
            joined.file_name().and_then(|n| n.to_str()),
            Some(&*name),
            "{name:?} is not a plain file name"
        );
    }
    for (mode, size) in [(Chunking::Fixed, 64), (Chunking::Cdc, 256)] {
        let chunker = Chunker::new(mode, size).expect("valid sizes");
        let blocks = chunker.blocks_of(bytes);
        let mut next = 0u64;
        for b in &blocks {
            assert_eq!(b.offset, next, "blocks are contiguous");
            assert!(b.len > 0 && b.len as usize <= chunker.max_block_len());
            let start = b.offset as usize;
            assert_eq!(b.hash, chunk::block_hash(&bytes[start..start + b.len as usize]));
            next += b.len as u64;
        }
        assert_eq!(next, bytes.len() as u64, "blocks cover the input");
    }
}
