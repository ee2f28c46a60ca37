use bytes::Bytes;

use super::Inflights;
use crate::types::{Index, SnapshotMeta};

/// How the leader currently replicates to one follower (as in etcd's
/// `tracker/progress`):
/// - `Probe`: one append at a time until we learn where the logs match;
/// - `Replicate`: optimistic pipelining within the inflight window;
/// - `Snapshot`: the follower needs entries we compacted; we stream it a
///   snapshot in chunks and wait.
#[derive(Debug, Clone)]
pub enum ProgressState {
    Probe,
    Replicate,
    Snapshot(SnapshotTransfer),
}

/// A snapshot being streamed to a follower. The data is a cheap clone of the
/// leader's snapshot, so compacting again meanwhile does not disturb it.
#[derive(Debug, Clone)]
pub struct SnapshotTransfer {
    pub meta: SnapshotMeta,
    pub data: Bytes,
    /// Bytes the follower confirmed holding.
    pub acked: u64,
    /// Bytes sent so far (a window of chunks may be in flight).
    pub sent: u64,
    /// Ticks since the follower last confirmed progress (resend on stall).
    pub idle_ticks: u32,
}

#[derive(Debug, Clone)]
pub struct Progress {
    pub matched: Index,
    pub next: Index,
    pub state: ProgressState,
    /// In `Probe`, an append is outstanding: wait for its answer (or the
    /// next heartbeat response) before sending another.
    pub probe_sent: bool,
    pub inflights: Inflights,
    /// Heard from since the last check-quorum round.
    pub recent_active: bool,
    /// Highest ReadIndex heartbeat round this follower acknowledged.
    pub read_seq_acked: u64,
    /// Highest commit index sent to this follower (in an append, or capped
    /// in a heartbeat). Sent, not known to have arrived.
    pub commit_sent: Index,
    /// When (the leader's tick count) this follower last refused a snapshot
    /// as too large for it: no new transfer starts for a while after (see
    /// `Raft::send_append`), or every heartbeat would send it again.
    pub snapshot_refused_at: Option<u64>,
}

impl Progress {
    pub fn new(next: Index, inflights: Inflights) -> Self {
        Progress {
            matched: 0,
            next,
            state: ProgressState::Probe,
            probe_sent: false,
            inflights,
            recent_active: false,
            read_seq_acked: 0,
            commit_sent: 0,
            snapshot_refused_at: None,
        }
    }

    /// A new leader's view of a peer: nothing known to match, probing from
    /// `next` (its own last index + 1, §5.3). `become_probe` would move
    /// `next` back to `matched + 1` = 1, and every election would start by
    /// sending each follower the log from its start (or a snapshot).
    pub fn reset(&mut self, next: Index) {
        self.matched = 0;
        self.become_probe();
        self.next = next;
        debug_assert!(matches!(self.state, ProgressState::Probe) && self.inflights.count() == 0);
        self.recent_active = false;
        self.read_seq_acked = 0;
        self.commit_sent = 0;
    }

    pub fn become_probe(&mut self) {
        if let ProgressState::Snapshot(t) = &self.state {
            // Resume after what the snapshot covered.
            self.next = self.next.max(t.meta.index + 1);
        } else {
            self.next = self.matched + 1;
        }
        self.state = ProgressState::Probe;
        self.probe_sent = false;
        self.inflights.clear();
    }

    pub fn become_replicate(&mut self) {
        self.state = ProgressState::Replicate;
        self.next = self.matched + 1;
        self.probe_sent = false;
        self.inflights.clear();
    }

    pub fn become_snapshot(&mut self, meta: SnapshotMeta, data: Bytes) {
        self.state = ProgressState::Snapshot(SnapshotTransfer {
            meta,
            data,
            acked: 0,
            sent: 0,
            idle_ticks: 0,
        });
        self.probe_sent = false;
        self.inflights.clear();
    }

    /// May the leader send this follower another append right now?
    pub fn can_send(&self) -> bool {
        match self.state {
            ProgressState::Probe => !self.probe_sent,
            ProgressState::Replicate => !self.inflights.full(),
            ProgressState::Snapshot(_) => false,
        }
    }

    /// A successful append acknowledged `index`. Returns false if stale.
    pub fn maybe_update(&mut self, index: Index) -> bool {
        let updated = index > self.matched;
        if updated {
            self.matched = index;
            self.probe_sent = false;
        }
        self.next = self.next.max(index + 1);
        updated
    }

    /// An append at `rejected` (its prev index) was refused; `hint` is the
    /// last index that might match. Returns false if the rejection is stale.
    pub fn maybe_decrease_to(&mut self, rejected: Index, hint: Index) -> bool {
        if let ProgressState::Replicate = self.state {
            if rejected <= self.matched {
                return false; // an old, reordered rejection
            }
            self.next = self.matched + 1;
            return true;
        }
        if self.next.saturating_sub(1) != rejected {
            return false; // not an answer to the probe we have outstanding
        }
        self.next = (rejected.min(hint + 1)).max(self.matched + 1);
        self.probe_sent = false;
        true
    }
}
