//! The entry point shared by the cargo-fuzz target and the corpus test:
//! every check this crate applies to strings from the network, with the
//! invariants they promise asserted (a panic is a finding).

use std::path::{Component, Path};

use crate::blockstore::block_path;
use crate::hash::{is_block_hash, HASH_HEX_LEN};
use crate::meta::filename_problem;
use crate::ring::Ring;

/// Runs `data` (as a lossy UTF-8 string) through the hash check, the block
/// path mapping, the ring and the file-name check.
pub fn network_input(data: &[u8]) {
    let s = String::from_utf8_lossy(data);
    let s = s.as_ref();
    let root = Path::new("/blocks");
    match block_path(root, s) {
        Some(p) => {
            assert!(is_block_hash(s));
            let rest: Vec<Component> = p.strip_prefix(root).expect("under root").components().collect();
            assert_eq!(rest.len(), 2, "{p:?}");
            assert!(rest.iter().all(|c| matches!(c, Component::Normal(_))), "{p:?}");
            assert_eq!(p.file_name().and_then(|n| n.to_str()).map(str::len), Some(HASH_HEX_LEN));
        }
        None => assert!(!is_block_hash(s)),
    }
    // Placement is total: any string maps to one of the servers.
    let ring = Ring::new(["127.0.0.1:1", "127.0.0.1:2", "127.0.0.1:3"]);
    let server = ring.server_for(s);
    assert!(ring.servers().any(|a| a == server));
    // An accepted file name is a single normal path component.
    if filename_problem(s).is_none() {
        let comps: Vec<Component> = Path::new(s).components().collect();
        assert_eq!(comps.len(), 1, "{s:?}");
        assert!(matches!(comps[0], Component::Normal(_)), "{s:?}");
    }
}

#[cfg(test)]
mod tests {
    /// Every checked-in corpus file still passes (the corpus runs in
    /// `cargo test`, not only under cargo-fuzz).
    #[test]
    fn corpus() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/network_input");
        let mut n = 0;
        for f in std::fs::read_dir(&dir).expect("corpus dir") {
            let data = std::fs::read(f.unwrap().path()).unwrap();
            super::network_input(&data);
            n += 1;
        }
        assert!(n >= 10, "corpus has only {n} files");
    }
}
