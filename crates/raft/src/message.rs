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

/// The largest term, index or byte offset a message may carry: 2^62, the
/// WAL's bound on indexes too. No real cluster comes near it (a million
/// entries a second for 146,000 years), so a larger number can only come
/// from a forged or corrupted message; refusing it keeps every `+ 1` in the
/// core from overflowing, and such a term from becoming durable.
pub const MAX_WIRE_NUMBER: u64 = 1 << 62;

/// The largest term increase one message may make a node adopt. A real
/// cluster raises its term by one per election, so even a node that slept
/// through years of elections is far below this. A forged or corrupted term
/// near [`MAX_WIRE_NUMBER`] would otherwise be adopted, made durable, and
/// leave no room for the next election (whose term peers refuse as out of
/// range): one such message would stop the cluster electing for good.
pub const MAX_TERM_JUMP: u64 = 1 << 32;

impl Message {
    /// Whether every term, index and offset in the message is at most
    /// [`MAX_WIRE_NUMBER`]. [`crate::Raft::step`] ignores a message for which
    /// this is false.
    pub fn numbers_in_range(&self) -> bool {
        let ok = |n: u64| n <= MAX_WIRE_NUMBER;
        ok(self.term)
            && match &self.body {
                Body::Vote {
                    last_index, last_term, ..
                } => ok(*last_index) && ok(*last_term),
                Body::VoteResponse { .. } | Body::TimeoutNow | Body::ReadIndex { .. } => true,
                Body::Append {
                    prev_index,
                    prev_term,
                    entries,
                    commit,
                } => {
                    ok(*prev_index)
                        && ok(*prev_term)
                        && ok(*commit)
                        && entries.iter().all(|e| ok(e.index) && ok(e.term))
                }
                Body::AppendResponse {
                    index,
                    hint_index,
                    hint_term,
                    ..
                } => ok(*index) && ok(*hint_index) && ok(*hint_term),
                Body::Heartbeat { commit, .. } => ok(*commit),
                Body::HeartbeatResponse { .. } => true,
                Body::Snapshot {
                    meta, offset, total, ..
                } => ok(meta.index) && ok(meta.term) && ok(*offset) && ok(*total),
                Body::SnapshotResponse { index, next_offset, .. } => ok(*index) && ok(*next_offset),
                Body::ReadIndexResponse { index, .. } => index.is_none_or(ok),
            }
    }

    /// Whether the message could have come from a correct peer, as far as
    /// the message alone shows: [`Message::numbers_in_range`], and no term
    /// inside past the sender's own (a leader of term t holds no entry, and
    /// no snapshot, of a later term; a candidate's last entry is older than
    /// its campaign), and an append's entries contiguous after `prev_index`
    /// with terms that never decrease. [`crate::Raft::step`] ignores a
    /// message for which this is false: obeying one let a later term into
    /// the log below a leader's own (found by fuzzing).
    pub fn well_formed(&self) -> bool {
        self.numbers_in_range()
            && match &self.body {
                Body::Vote { last_term, .. } => *last_term <= self.term,
                Body::Append {
                    prev_index,
                    prev_term,
                    entries,
                    ..
                } => {
                    let mut term = *prev_term;
                    *prev_term <= self.term
                        && entries.iter().enumerate().all(|(i, e)| {
                            let fits = e.index == prev_index + 1 + i as u64 && e.term >= term && e.term <= self.term;
                            term = e.term;
                            fits
                        })
                }
                Body::Snapshot { meta, .. } => meta.term <= self.term,
                _ => true,
            }
    }

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
