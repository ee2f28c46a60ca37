//! Property tests: the in-memory log against a plain vector model.

use bytes::Bytes;
use proptest::prelude::*;
use triton_raft::log::RaftLog;
use triton_raft::{Entry, EntryKind};

fn entry(index: u64, term: u64) -> Entry {
    Entry {
        index,
        term,
        kind: EntryKind::Command,
        data: Bytes::from(format!("{index}/{term}")),
    }
}

/// A leader's log: non-decreasing even terms.
fn leader_log() -> impl Strategy<Value = Vec<u64>> {
    proptest::collection::vec(1u64..4, 0..40).prop_map(|steps| {
        let mut term = 2;
        steps
            .into_iter()
            .map(|s| {
                term += 2 * (s / 3);
                term
            })
            .collect()
    })
}

/// A follower log that Raft can produce next to `leader`: a prefix of it,
/// then entries of odd terms the leader never had (log matching holds).
fn follower_of(leader: &[u64], keep: usize, extra: &[u64]) -> Vec<u64> {
    let keep = keep.min(leader.len());
    let mut out = leader[..keep].to_vec();
    let mut term = out.last().copied().unwrap_or(1);
    for &s in extra {
        term = (term + s) | 1;
        out.push(term);
    }
    out
}

proptest! {
    /// Feeding a follower any suffix window of a leader's log, in any order
    /// of (possibly stale) appends, never breaks contiguity, and a final
    /// full append makes it equal to the leader's log.
    #[test]
    fn appends_converge_to_the_leaders_log(
        leader_terms in leader_log(),
        keep in 0usize..40,
        extra in proptest::collection::vec(0u64..3, 0..30),
        windows in proptest::collection::vec((0usize..40, 0usize..10), 0..20),
    ) {
        let follower_terms = follower_of(&leader_terms, keep, &extra);
        let mut log = RaftLog::restore(0, 0, follower_terms.iter().enumerate().map(|(i, &t)| entry(i as u64 + 1, t)).collect(), 0);
        let leader: Vec<Entry> = leader_terms.iter().enumerate().map(|(i, &t)| entry(i as u64 + 1, t)).collect();
        let term_of = |i: u64| if i == 0 { 0 } else { leader[(i - 1) as usize].term };
        for (start, len) in windows {
            let prev = (start as u64).min(leader.len() as u64);
            let end = (prev as usize + len).min(leader.len());
            let _ = log.maybe_append(prev, term_of(prev), 0, &leader[prev as usize..end]);
            // Contiguity and non-decreasing terms hold throughout.
            let all = log.slice(1, log.last_index() + 1, u64::MAX).unwrap();
            for (i, e) in all.iter().enumerate() {
                prop_assert_eq!(e.index, i as u64 + 1);
                if i > 0 { prop_assert!(e.term >= all[i - 1].term, "terms decreased at {}", e.index); }
            }
        }
        // Repair the way a leader does: walk back using the conflict hints.
        let mut next = leader.len() as u64 + 1;
        for _round in 0..100 {
            let prev = next - 1;
            match log.maybe_append(prev, term_of(prev), 0, &leader[prev as usize..]) {
                Ok(_) => break,
                Err(hint) => {
                    // Leader side of the hint, computed on the leader's log.
                    let mut i = hint.hint_index.min(leader.len() as u64);
                    while i > 0 && term_of(i) > hint.hint_term { i -= 1; }
                    prop_assert!(i < next, "repair must move backwards");
                    next = i + 1;
                }
            }
        }
        let got: Vec<(u64, u64)> = log.slice(1, log.last_index() + 1, u64::MAX).unwrap().iter().map(|e| (e.index, e.term)).collect();
        let want: Vec<(u64, u64)> = leader.iter().map(|e| (e.index, e.term)).collect();
        // The follower holds the leader's log as a prefix... and nothing that conflicts.
        prop_assert!(got.len() >= want.len());
        prop_assert_eq!(&got[..want.len()], &want[..]);
    }

    #[test]
    fn compaction_keeps_terms_and_suffix(terms in leader_log(), cut in 0usize..40) {
        let n = terms.len();
        let mut log = RaftLog::restore(0, 0, terms.iter().enumerate().map(|(i, &t)| entry(i as u64 + 1, t)).collect(), n as u64);
        log.applied_to(n as u64);
        let cut = cut.min(n) as u64;
        log.compact(cut);
        prop_assert_eq!(log.snapshot_index(), cut);
        prop_assert_eq!(log.last_index(), n as u64);
        for i in cut..=n as u64 {
            let want = if i == 0 { 0 } else { terms[(i - 1) as usize] };
            prop_assert_eq!(log.term(i), Some(want));
        }
        if cut > 1 { prop_assert_eq!(log.term(cut - 1), None); }
    }
}
