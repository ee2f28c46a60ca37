//! The consistent-hash ring over block stores.
//!
//! A server's position is the SHA-256 hex of `"blockstore" + addr`; a block
//! belongs to the first server whose position is greater than the block's
//! hash (comparing the hex strings), wrapping around to the smallest
//! position. This is the course's rule, so placement agrees with its
//! clients and graders, and adding a store changes the owner of only the
//! blocks between it and its predecessor. Nothing copies those blocks to
//! their new owner: `triton sync` looks for a block on the other stores when
//! its owner does not have it.

use std::collections::BTreeMap;

use crate::hash::block_hash;

/// The ring position of the block store at `addr`.
pub fn ring_position(addr: &str) -> String {
    block_hash(format!("blockstore{addr}").as_bytes())
}

/// Block stores ordered by ring position.
#[derive(Clone, Debug)]
pub struct Ring {
    /// position -> address, so lookups are a range query.
    by_position: BTreeMap<String, String>,
}

impl Ring {
    /// A ring over `addrs` (duplicates collapse: one address, one position).
    ///
    /// # Panics
    /// If `addrs` is empty: a ring with no servers can place nothing, and
    /// every caller has a configured store list to check first.
    pub fn new<S: AsRef<str>>(addrs: impl IntoIterator<Item = S>) -> Ring {
        let by_position: BTreeMap<String, String> = addrs
            .into_iter()
            .map(|a| (ring_position(a.as_ref()), a.as_ref().to_string()))
            .collect();
        assert!(!by_position.is_empty(), "a ring needs at least one block store");
        Ring { by_position }
    }

    /// Like [`Ring::new`], but `None` for an empty list instead of a panic.
    pub fn try_new<S: AsRef<str>>(addrs: impl IntoIterator<Item = S>) -> Option<Ring> {
        let by_position: BTreeMap<String, String> = addrs
            .into_iter()
            .map(|a| (ring_position(a.as_ref()), a.as_ref().to_string()))
            .collect();
        (!by_position.is_empty()).then_some(Ring { by_position })
    }

    /// The block store that holds the block with hash `hash`: the first
    /// server whose position is strictly greater, wrapping around.
    pub fn server_for(&self, hash: &str) -> &str {
        use std::ops::Bound::{Excluded, Unbounded};
        self.by_position
            .range::<str, _>((Excluded(hash), Unbounded))
            .next()
            .or_else(|| self.by_position.iter().next())
            .map(|(_, addr)| addr.as_str())
            .expect("a ring is never empty")
    }

    /// Hashes grouped by the server that holds them, each group in input
    /// order (the shape of `GetBlockStoreMap`).
    pub fn group<S: AsRef<str>>(&self, hashes: impl IntoIterator<Item = S>) -> BTreeMap<String, Vec<String>> {
        let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for h in hashes {
            let h = h.as_ref();
            out.entry(self.server_for(h).to_string())
                .or_default()
                .push(h.to_string());
        }
        out
    }

    /// The servers in ring order.
    pub fn servers(&self) -> impl Iterator<Item = &str> {
        self.by_position.values().map(String::as_str)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The rule written out the slow way, as the course states it.
    fn reference(addrs: &[String], hash: &str) -> String {
        let mut positions: Vec<(String, String)> = addrs.iter().map(|a| (ring_position(a), a.clone())).collect();
        positions.sort();
        positions
            .iter()
            .find(|(p, _)| p.as_str() > hash)
            .unwrap_or(&positions[0])
            .1
            .clone()
    }

    #[test]
    fn position_is_sha256_of_prefixed_addr() {
        assert_eq!(ring_position("localhost:8081"), block_hash(b"blockstorelocalhost:8081"));
    }

    #[test]
    fn wraps_to_the_smallest_position() {
        let addrs = ["127.0.0.1:1", "127.0.0.1:2", "127.0.0.1:3"];
        let ring = Ring::new(addrs);
        let max = addrs.iter().map(|a| ring_position(a)).max().unwrap();
        let min_addr = addrs.iter().min_by_key(|a| ring_position(a)).unwrap();
        assert_eq!(ring.server_for(&max), *min_addr, "equal to the largest position wraps");
        assert_eq!(ring.server_for(&"f".repeat(64)), *min_addr);
        assert_eq!(ring.server_for(&"0".repeat(64)), *min_addr);
    }

    #[test]
    fn a_hash_equal_to_a_position_goes_to_the_next_server() {
        let addrs: Vec<String> = (0..5).map(|i| format!("10.0.0.{i}:5000")).collect();
        let ring = Ring::new(&addrs);
        for a in &addrs {
            let p = ring_position(a);
            assert_ne!(ring.server_for(&p), a);
            assert_eq!(ring.server_for(&p), reference(&addrs, &p));
        }
    }

    #[test]
    fn group_keeps_every_hash_once() {
        let ring = Ring::new(["a:1", "b:2"]);
        let hashes: Vec<String> = (0..100u32).map(|i| block_hash(&i.to_le_bytes())).collect();
        let groups = ring.group(&hashes);
        let total: usize = groups.values().map(Vec::len).sum();
        assert_eq!(total, hashes.len());
        for (server, hs) in &groups {
            for h in hs {
                assert_eq!(ring.server_for(h), server);
            }
        }
        assert!(Ring::try_new(Vec::<String>::new()).is_none());
    }

    proptest! {
        #[test]
        fn matches_the_reference_rule(n in 1usize..8, seeds in proptest::collection::vec(any::<u64>(), 1..50)) {
            let addrs: Vec<String> = (0..n).map(|i| format!("127.0.0.1:{}", 7000 + i)).collect();
            let ring = Ring::new(&addrs);
            for s in seeds {
                let h = block_hash(&s.to_le_bytes());
                prop_assert_eq!(ring.server_for(&h), reference(&addrs, &h));
            }
        }
    }
}
