//! Messages exchanged between cores. The host moves them over a network
//! (and may lose, delay, duplicate or reorder them: the core tolerates all).

use bytes::Bytes;

use crate::types::{Entry, Index, NodeId, SnapshotMeta, Term};

/// An envelope: every message carries the sender's term (§5.1: a node that
/// sees a higher term adopts it; a lower term marks a stale message).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Message {
    pub from: NodeId,
    pub to: NodeId,
    pub term: Term,
    pub body: Body,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Body {
    /// RequestVote (§5.2), or its pre-vote probe (thesis §9.6) when `pre_vote`.
    /// A pre-vote carries the term the sender *would* campaign in.
    Vote {
        pre_vote: bool,
        last_index: Index,
        last_term: Term,
        /// Set when a leader asked the sender to take over (§3.10): voters
        /// then ignore their leader lease.
        transfer: bool,
    },
    VoteResponse {
        pre_vote: bool,
        granted: bool,
    },
    /// AppendEntries (§5.3). `commit` is the leader's commit index.
    Append {
        prev_index: Index,
        prev_term: Term,
        entries: Vec<Entry>,
        commit: Index,
    },
    /// Reply to `Append`. On success `index` is the follower's new match
    /// index. On rejection `index` echoes the rejected `prev_index` and
    /// (`hint_index`, `hint_term`) name the last entry of the follower's log
    /// that might still match: the leader skips a whole term per round trip.
    AppendResponse {
        reject: bool,
        index: Index,
        hint_index: Index,
        hint_term: Term,
    },
    /// Leader liveness. `commit` is capped by the follower's known match so a
    /// follower never commits past what it is known to hold; `read_seq` lets
    /// one heartbeat round confirm every ReadIndex request up to that number.
    Heartbeat {
        commit: Index,
        read_seq: u64,
    },
    HeartbeatResponse {
        read_seq: u64,
    },
    /// One chunk of a snapshot. Chunks go in order; `offset` is where `data`
    /// starts and `total` the full size; `done` marks the last chunk.
    Snapshot {
        meta: SnapshotMeta,
        offset: u64,
        total: u64,
        data: Bytes,
        done: bool,
    },
    /// `next_offset` is how many bytes of the snapshot at `index` the
    /// follower holds (equal to the total once installed); `reject` asks the
    /// leader to start over (e.g. the follower lost its partial buffer).
    SnapshotResponse {
        index: Index,
        next_offset: u64,
        reject: bool,
    },
    /// Leadership transfer (§3.10): campaign now, skipping pre-vote.
    TimeoutNow,
    /// A follower forwards a ReadIndex request to its leader.
    ReadIndex {
        request: u64,
    },
    /// The leader's answer: the read index, or `None` if it could not serve it.
    ReadIndexResponse {
        request: u64,
        index: Option<Index>,
    },
}

impl Body {
    /// A short name, for logs and metrics.
    pub fn name(&self) -> &'static str {
        match self {
            Body::Vote { pre_vote: true, .. } => "PreVote",
            Body::Vote { .. } => "Vote",
            Body::VoteResponse { pre_vote: true, .. } => "PreVoteResponse",
            Body::VoteResponse { .. } => "VoteResponse",
            Body::Append { .. } => "Append",
            Body::AppendResponse { .. } => "AppendResponse",
            Body::Heartbeat { .. } => "Heartbeat",
            Body::HeartbeatResponse { .. } => "HeartbeatResponse",
            Body::Snapshot { .. } => "Snapshot",
            Body::SnapshotResponse { .. } => "SnapshotResponse",
            Body::TimeoutNow => "TimeoutNow",
            Body::ReadIndex { .. } => "ReadIndex",
            Body::ReadIndexResponse { .. } => "ReadIndexResponse",
        }
    }
}

impl Message {
    /// Bytes of payload this message carries (entries or snapshot data), for
    /// traffic accounting.
    pub fn payload_bytes(&self) -> u64 {
        match &self.body {
            Body::Append { entries, .. } => entries.iter().map(|e| e.data.len() as u64).sum(),
            Body::Snapshot { data, .. } => data.len() as u64,
            _ => 0,
        }
    }
}
