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
}
