use std::collections::BTreeSet;

use super::VoteResult;
use crate::types::{Index, NodeId};

/// A set of voters deciding by simple majority.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MajorityConfig {
    pub voters: BTreeSet<NodeId>,
}

impl MajorityConfig {
    pub fn new(voters: BTreeSet<NodeId>) -> Self {
        MajorityConfig { voters }
    }

    pub fn quorum(&self) -> usize {
        self.voters.len() / 2 + 1
    }

    /// The largest index that a majority has acknowledged (`acked` gives each
    /// voter's match index; unknown voters count as 0). An empty
    /// configuration commits everything, so that a joint configuration with
    /// an empty half behaves like its other half.
    pub fn committed_index(&self, acked: impl Fn(NodeId) -> Option<Index>) -> Index {
        if self.voters.is_empty() {
            return Index::MAX;
        }
        let mut matched: Vec<Index> = self.voters.iter().map(|&id| acked(id).unwrap_or(0)).collect();
        matched.sort_unstable_by(|a, b| b.cmp(a));
        let committed = matched[self.quorum() - 1];
        debug_assert!(matched.iter().filter(|&&m| m >= committed).count() >= self.quorum());
        committed
    }

    /// Tallies votes: `vote(id)` is `Some(granted)` for voters that answered.
    pub fn vote_result(&self, vote: impl Fn(NodeId) -> Option<bool>) -> VoteResult {
        if self.voters.is_empty() {
            return VoteResult::Won;
        }
        let (mut granted, mut missing) = (0, 0);
        for &id in &self.voters {
            match vote(id) {
                Some(true) => granted += 1,
                Some(false) => {}
                None => missing += 1,
            }
        }
        let q = self.quorum();
        if granted >= q {
            VoteResult::Won
        } else if granted + missing >= q {
            VoteResult::Pending
        } else {
            VoteResult::Lost
        }
    }

    /// True if the voters for which `active(id)` holds form a majority.
    pub fn has_quorum(&self, active: impl Fn(NodeId) -> bool) -> bool {
        self.voters.is_empty() || self.voters.iter().filter(|&&id| active(id)).count() >= self.quorum()
    }
}
