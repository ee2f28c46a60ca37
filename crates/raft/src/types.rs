//! The vocabulary of the protocol: identifiers, log entries, persistent state.

use std::collections::BTreeSet;

use bytes::Bytes;

/// A node's identity. `0` is reserved to mean "nobody" on the wire.
pub type NodeId = u64;
/// A Raft term (§5.1): a logical clock that only grows.
pub type Term = u64;
/// A position in the replicated log; the first entry has index 1.
pub type Index = u64;

/// What an entry carries. The core interprets only `Noop` and `Membership`;
/// `Command` bytes are opaque and belong to the host's state machine.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum EntryKind {
    /// A host command, applied to the state machine once committed.
    Command,
    /// Appended by every new leader (§8): it lets the leader commit entries of
    /// earlier terms (Figure 8) and serve ReadIndex reads.
    Noop,
    /// A membership change (encoded `Membership`); reserved for joint consensus.
    Membership,
}

/// One entry of the replicated log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    pub index: Index,
    pub term: Term,
    pub kind: EntryKind,
    pub data: Bytes,
}

impl Entry {
    /// Bytes this entry costs when batching and flow-controlling.
    pub fn size(&self) -> u64 {
        // A fixed overhead per entry keeps empty entries from being free.
        self.data.len() as u64 + 24
    }
}

/// State that must be durable before any message that depends on it leaves
/// (Figure 2, "persistent state on all servers").
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HardState {
    pub term: Term,
    /// The candidate voted for in `term`, if any.
    pub vote: Option<NodeId>,
    /// Persisted only as a hint to speed up restart; losing it is safe.
    pub commit: Index,
}

/// Which nodes vote and which only listen. Part of replicated state (carried
/// in snapshots and `Membership` entries), never a constant.
///
/// `voters_outgoing` is non-empty only during a joint-consensus transition
/// (§6): then decisions need a majority of both `voters` and
/// `voters_outgoing`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct Membership {
    pub voters: BTreeSet<NodeId>,
    pub voters_outgoing: BTreeSet<NodeId>,
    pub learners: BTreeSet<NodeId>,
}

impl Membership {
    /// A plain (non-joint) configuration with the given voters.
    pub fn with_voters(ids: impl IntoIterator<Item = NodeId>) -> Self {
        Membership {
            voters: ids.into_iter().collect(),
            ..Default::default()
        }
    }

    /// Every node that receives replication: voters of both halves and learners.
    pub fn all_nodes(&self) -> BTreeSet<NodeId> {
        let mut all: BTreeSet<NodeId> = self.voters.clone();
        all.extend(self.voters_outgoing.iter().copied());
        all.extend(self.learners.iter().copied());
        all
    }

    /// `id`'s place in this configuration: `voter`, `outgoing` (a voter of
    /// the old half of a joint configuration only), `learner` or `none`.
    pub fn role_of(&self, id: NodeId) -> &'static str {
        if self.voters.contains(&id) {
            "voter"
        } else if self.voters_outgoing.contains(&id) {
            "outgoing"
        } else if self.learners.contains(&id) {
            "learner"
        } else {
            "none"
        }
    }

    /// Why this cannot be a cluster's configuration, if it cannot: no
    /// voters (nothing could ever be decided; a leader of such a
    /// configuration appended forever), a node id 0, or a node that is both
    /// voter and learner. Configurations from the network or the log (a
    /// snapshot's, a membership entry's) are checked with this.
    pub fn check(&self) -> Result<(), &'static str> {
        if self.voters.is_empty() {
            return Err("no voters");
        }
        if self.all_nodes().contains(&0) {
            return Err("node id 0");
        }
        if !self.voters.is_disjoint(&self.learners) || !self.voters_outgoing.is_disjoint(&self.learners) {
            return Err("a node is both voter and learner");
        }
        Ok(())
    }

    /// True if `id` may vote in either half of the configuration.
    pub fn is_voter(&self, id: NodeId) -> bool {
        self.voters.contains(&id) || self.voters_outgoing.contains(&id)
    }
}

/// Identifies a snapshot: it replaces every entry up to `index` (whose term
/// was `term`) and carries the membership in force at that point.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SnapshotMeta {
    pub index: Index,
    pub term: Term,
    pub membership: Membership,
}

/// A state-machine snapshot: the metadata plus the host's opaque bytes.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Snapshot {
    pub meta: SnapshotMeta,
    pub data: Bytes,
}

/// The role a node plays in its current term.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Role {
    Follower,
    /// Pre-vote phase (§9.6 of the Raft thesis): asks whether it could win
    /// before disturbing anyone by raising its term.
    PreCandidate,
    Candidate,
    Leader,
}

/// Volatile facts the host may want to show or act on (e.g. redirect clients).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SoftState {
    pub role: Role,
    pub leader: Option<NodeId>,
}

/// A read that is now linearizable: serve it once `applied >= index`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReadState {
    pub index: Index,
    /// The opaque context the host passed to `read_index`.
    pub ctx: Bytes,
}
