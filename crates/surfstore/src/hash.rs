//! Block naming: a block is addressed by the SHA-256 of its bytes, written
//! as 64 lowercase hex characters (the course's wire format).

use sha2::{Digest, Sha256};

/// Length of a block hash in hex characters.
pub const HASH_HEX_LEN: usize = 64;

/// The address of a block: SHA-256 of `bytes`, lowercase hex.
pub fn block_hash(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// Whether `s` looks like a block hash (exactly 64 lowercase hex chars).
///
/// Hashes arriving from the network become file names in a block store,
/// so anything else is refused before it gets near a path.
pub fn is_block_hash(s: &str) -> bool {
    s.len() == HASH_HEX_LEN && s.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// The hash list of an empty file (the course's wire convention; surfsync's
/// `chunk` module writes the same).
pub const EMPTY_FILE_HASH: &str = "-1";
/// The hash list of a deleted file, a tombstone (the same convention).
pub const TOMBSTONE_HASH: &str = "0";

/// Why a file's hash list cannot be stored, if it cannot: it is one of the
/// two one-element markers, or a non-empty list of block hashes. Anything
/// else would hand every other client a list it cannot download.
pub fn hash_list_problem(hashes: &[String]) -> Option<String> {
    match hashes {
        [] => Some("the hash list is empty (an empty file is [\"-1\"])".into()),
        [only] if only == EMPTY_FILE_HASH || only == TOMBSTONE_HASH => None,
        _ => hashes
            .iter()
            .position(|h| !is_block_hash(h))
            .map(|i| format!("hash {i} of the list is not a block hash: {:?}", hashes[i])),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_vectors() {
        assert_eq!(
            block_hash(b""),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        assert_eq!(
            block_hash(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn validation_accepts_hashes_and_refuses_the_rest() {
        assert!(is_block_hash(&block_hash(b"x")));
        for bad in [
            "",
            "0",
            "-1",
            "../../etc/passwd",
            &"A".repeat(64),
            &"g".repeat(64),
            &"a".repeat(63),
            &"a".repeat(65),
            &format!("{}/", "a".repeat(63)),
        ] {
            assert!(!is_block_hash(bad), "{bad:?} accepted");
        }
    }

    #[test]
    fn hash_lists() {
        let h = block_hash(b"x");
        for ok in [
            vec![h.clone()],
            vec![h.clone(), h.clone()],
            vec!["0".into()],
            vec!["-1".into()],
        ] {
            assert_eq!(hash_list_problem(&ok), None, "{ok:?}");
        }
        for bad in [
            vec![],
            vec![String::new()],
            vec!["0".into(), h.clone()],
            vec![h.clone(), "-1".into()],
            vec![h.to_uppercase()],
            vec!["../x".into()],
        ] {
            assert!(hash_list_problem(&bad).is_some(), "{bad:?} accepted");
        }
    }
}
