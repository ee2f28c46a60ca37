use std::collections::BTreeSet;

use super::{MajorityConfig, VoteResult};
use crate::types::{Index, Membership, NodeId};

/// Two majority configurations that must both agree (§6, joint consensus).
/// Outside a membership change `outgoing` is empty and `incoming` decides
/// alone.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct JointConfig {
    pub incoming: MajorityConfig,
    pub outgoing: MajorityConfig,
}

impl JointConfig {
    pub fn from_membership(m: &Membership) -> Self {
        JointConfig {
            incoming: MajorityConfig::new(m.voters.clone()),
            outgoing: MajorityConfig::new(m.voters_outgoing.clone()),
        }
    }

    pub fn voters(&self) -> BTreeSet<NodeId> {
        self.incoming.voters.union(&self.outgoing.voters).copied().collect()
    }

    pub fn committed_index(&self, acked: impl Fn(NodeId) -> Option<Index>) -> Index {
        let a = self.incoming.committed_index(&acked);
        let b = self.outgoing.committed_index(&acked);
        a.min(b)
    }

    pub fn vote_result(&self, vote: impl Fn(NodeId) -> Option<bool>) -> VoteResult {
        let a = self.incoming.vote_result(&vote);
        let b = self.outgoing.vote_result(&vote);
        match (a, b) {
            (VoteResult::Won, VoteResult::Won) => VoteResult::Won,
            (VoteResult::Lost, _) | (_, VoteResult::Lost) => VoteResult::Lost,
            _ => VoteResult::Pending,
        }
    }

    pub fn has_quorum(&self, active: impl Fn(NodeId) -> bool) -> bool {
        self.incoming.has_quorum(&active) && self.outgoing.has_quorum(&active)
    }
}
