//! What a leader knows about each follower (replication progress) and what
//! a candidate knows about the votes it received.

mod inflights;
mod progress;

use std::collections::{BTreeMap, BTreeSet};

pub use inflights::Inflights;
pub use progress::{Progress, ProgressState, SnapshotTransfer};

use crate::quorum::{JointConfig, VoteResult};
use crate::types::{Index, Membership, NodeId};

#[derive(Debug, Clone)]
pub struct ProgressTracker {
    pub config: JointConfig,
    pub learners: BTreeSet<NodeId>,
    pub progress: BTreeMap<NodeId, Progress>,
    pub votes: BTreeMap<NodeId, bool>,
    max_inflight_msgs: usize,
    max_inflight_bytes: u64,
}

impl ProgressTracker {
    pub fn new(membership: &Membership, max_inflight_msgs: usize, max_inflight_bytes: u64) -> Self {
        let mut t = ProgressTracker {
            config: JointConfig::default(),
            learners: BTreeSet::new(),
            progress: BTreeMap::new(),
            votes: BTreeMap::new(),
            max_inflight_msgs,
            max_inflight_bytes,
        };
        t.set_membership(membership, 1);
        t
    }

    /// Switches to a new membership, keeping the progress of nodes that stay
    /// and starting new ones at `next_index`.
    pub fn set_membership(&mut self, membership: &Membership, next_index: Index) {
        self.config = JointConfig::from_membership(membership);
        self.learners = membership.learners.clone();
        let all = membership.all_nodes();
        self.progress.retain(|id, _| all.contains(id));
        for id in all {
            let (msgs, bytes) = (self.max_inflight_msgs, self.max_inflight_bytes);
            self.progress.entry(id).or_insert_with(|| {
                // A newcomer counts as active until the next check-quorum
                // round, or adding one could depose a healthy leader.
                let mut p = Progress::new(next_index, Inflights::new(msgs, bytes));
                p.recent_active = true;
                p
            });
        }
    }

    /// Resets everyone to probing from `next_index` (a new term of leadership).
    pub fn reset(&mut self, next_index: Index, self_id: NodeId, self_match: Index) {
        for (&id, pr) in self.progress.iter_mut() {
            pr.reset(next_index);
            if id == self_id {
                pr.matched = self_match;
                pr.recent_active = true;
            }
        }
    }

    pub fn committed_index(&self) -> Index {
        self.config
            .committed_index(|id| self.progress.get(&id).map(|p| p.matched))
    }

    pub fn record_vote(&mut self, id: NodeId, granted: bool) {
        self.votes.entry(id).or_insert(granted);
    }

    pub fn vote_result(&self) -> VoteResult {
        self.config.vote_result(|id| self.votes.get(&id).copied())
    }

    /// Check-quorum: did a majority talk to us since the last check?
    pub fn quorum_active(&self) -> bool {
        self.config
            .has_quorum(|id| self.progress.get(&id).is_some_and(|p| p.recent_active))
    }

    /// Has a majority acknowledged heartbeat round `seq` (or a later one)?
    pub fn read_confirmed(&self, seq: u64) -> bool {
        self.config
            .has_quorum(|id| self.progress.get(&id).is_some_and(|p| p.read_seq_acked >= seq))
    }

    /// The latest heartbeat round a quorum has acknowledged.
    pub fn quorum_read_seq(&self) -> u64 {
        self.config
            .committed_index(|id| self.progress.get(&id).map(|p| p.read_seq_acked))
    }

    pub fn is_voter(&self, id: NodeId) -> bool {
        self.config.incoming.voters.contains(&id) || self.config.outgoing.voters.contains(&id)
    }
}
