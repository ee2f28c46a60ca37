//! Property tests: quorum arithmetic against brute force.

use std::collections::{BTreeMap, BTreeSet};

use proptest::prelude::*;
use triton_raft::quorum::{JointConfig, MajorityConfig, VoteResult};

fn brute_committed(voters: &BTreeSet<u64>, matched: &BTreeMap<u64, u64>) -> u64 {
    if voters.is_empty() {
        return u64::MAX;
    }
    // The largest index that more than half of the voters have reached.
    let mut best = 0;
    for &candidate in matched.values().chain(std::iter::once(&0)) {
        let have = voters
            .iter()
            .filter(|v| matched.get(v).copied().unwrap_or(0) >= candidate)
            .count();
        if have * 2 > voters.len() {
            best = best.max(candidate);
        }
    }
    best
}

proptest! {
    #[test]
    fn majority_commit_index_is_what_a_majority_holds(
        voters in proptest::collection::btree_set(1u64..10, 1..8),
        matched in proptest::collection::btree_map(1u64..10, 0u64..100, 0..10),
    ) {
        let c = MajorityConfig::new(voters.clone());
        prop_assert_eq!(c.committed_index(|id| matched.get(&id).copied()), brute_committed(&voters, &matched));
    }

    #[test]
    fn joint_commit_index_is_the_smaller_of_both_halves(
        a in proptest::collection::btree_set(1u64..10, 1..6),
        b in proptest::collection::btree_set(1u64..10, 0..6),
        matched in proptest::collection::btree_map(1u64..10, 0u64..100, 0..10),
    ) {
        let j = JointConfig { incoming: MajorityConfig::new(a.clone()), outgoing: MajorityConfig::new(b.clone()) };
        let want = brute_committed(&a, &matched).min(brute_committed(&b, &matched));
        prop_assert_eq!(j.committed_index(|id| matched.get(&id).copied()), want);
    }

    #[test]
    fn vote_result_matches_counting(
        voters in proptest::collection::btree_set(1u64..10, 1..8),
        votes in proptest::collection::btree_map(1u64..10, any::<bool>(), 0..10),
    ) {
        let c = MajorityConfig::new(voters.clone());
        let yes = voters.iter().filter(|v| votes.get(v) == Some(&true)).count();
        let no = voters.iter().filter(|v| votes.get(v) == Some(&false)).count();
        let q = voters.len() / 2 + 1;
        let want = if yes >= q { VoteResult::Won } else if voters.len() - no < q { VoteResult::Lost } else { VoteResult::Pending };
        prop_assert_eq!(c.vote_result(|id| votes.get(&id).copied()), want);
    }

    /// Two majorities of the same voters always intersect: the root of
    /// election safety.
    #[test]
    fn any_two_quorums_intersect(
        voters in proptest::collection::btree_set(1u64..10, 1..8),
        x in proptest::collection::btree_set(1u64..10, 0..10),
        y in proptest::collection::btree_set(1u64..10, 0..10),
    ) {
        let c = MajorityConfig::new(voters.clone());
        if c.has_quorum(|id| x.contains(&id)) && c.has_quorum(|id| y.contains(&id)) {
            prop_assert!(voters.iter().any(|v| x.contains(v) && y.contains(v)));
        }
    }
}
