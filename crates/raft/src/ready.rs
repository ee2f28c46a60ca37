//! What the core hands back to its host.

use crate::message::Message;
use crate::types::{Entry, HardState, Index, ReadState, Snapshot, SoftState, Term};

/// A batch of work for the host. Process it in this order, then call
/// `Raft::advance`, and do not call anything else on the core in between:
///
/// 1. Send `messages` at once: they are the leader's appends, heartbeats,
///    snapshot chunks and a transfer's `TimeoutNow`, which depend on nothing
///    unpersisted. (This is what lets
///    a leader write its own log in parallel with replicating it; the core
///    counts the leader's own copy toward commit only after `advance`.)
/// 2. Persist `snapshot` (if any), then `entries`, then `hard_state`, in
///    that order. An entry whose index is already in the log replaces it and
///    everything after it. Writes must be durable (fsync) before step 3. A
///    crash in the middle may keep any prefix of these writes: the order
///    guarantees a durable commit index never points past durable entries.
///    (A durable entry whose term is ahead of the durable hard state is
///    harmless: nothing was promised about it, since step 3 never ran.)
/// 3. Only now send `persisted_messages`: votes, append and heartbeat
///    acknowledgements, snapshot acknowledgements, and a candidate's vote
///    requests. Each promises something about durable state (a vote cast,
///    entries held, a term adopted); sent earlier, a crash could break it.
/// 4. If `snapshot` is set, restore the state machine from it; then apply
///    `committed_entries` in order (skipping non-`Command` kinds).
/// 5. Serve each of `read_states` once the state machine has applied its index.
#[derive(Debug, Default)]
pub struct Ready {
    pub soft_state: Option<SoftState>,
    pub hard_state: Option<HardState>,
    pub entries: Vec<Entry>,
    pub snapshot: Option<Snapshot>,
    pub messages: Vec<Message>,
    pub persisted_messages: Vec<Message>,
    pub committed_entries: Vec<Entry>,
    pub read_states: Vec<ReadState>,
}

impl Ready {
    /// True if step 2 has anything to make durable (the host may skip fsync
    /// otherwise).
    pub fn must_sync(&self) -> bool {
        self.snapshot.is_some() || self.hard_state.is_some() || !self.entries.is_empty()
    }

    pub fn is_empty(&self) -> bool {
        self.soft_state.is_none()
            && !self.must_sync()
            && self.messages.is_empty()
            && self.persisted_messages.is_empty()
            && self.committed_entries.is_empty()
            && self.read_states.is_empty()
    }
}

/// What `advance` must remember of the last `Ready`.
#[derive(Debug, Default, Clone)]
pub(crate) struct ReadyMarks {
    pub last_entry: Option<(Index, Term)>,
    pub applied_to: Option<Index>,
    pub hard_state: HardState,
}
