//! Counters the driver keeps for the metrics endpoint and the dashboard.
//!
//! Why plain fields and not atomics: the driver thread is the only writer,
//! and readers get a copy inside [`crate::driver::NodeStatus`], so there is
//! nothing to share and nothing to synchronise.

use std::time::Duration;

use triton_raft::{Index, NodeId};

/// Upper bounds (milliseconds) of the apply-latency histogram's buckets; a
/// last, implicit bucket holds everything slower (Prometheus' `+Inf`).
pub const APPLY_LATENCY_BOUNDS_MS: [f64; 12] = [
    0.5, 1.0, 2.0, 5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 500.0, 1000.0, 2500.0,
];

/// A fixed-bucket latency histogram: proposal accepted to applied, measured
/// on the node that proposed (the leader).
#[derive(Debug, Clone, PartialEq)]
pub struct LatencyHistogram {
    /// Per-bucket counts (not cumulative); one more than the bounds (`+Inf`).
    pub buckets: Vec<u64>,
    /// Sum of all observations, in seconds.
    pub sum_seconds: f64,
    /// Number of observations.
    pub count: u64,
}

impl Default for LatencyHistogram {
    fn default() -> Self {
        LatencyHistogram {
            buckets: vec![0; APPLY_LATENCY_BOUNDS_MS.len() + 1],
            sum_seconds: 0.0,
            count: 0,
        }
    }
}

impl LatencyHistogram {
    /// Records one observation.
    pub fn observe(&mut self, d: Duration) {
        let ms = d.as_secs_f64() * 1000.0;
        let i = APPLY_LATENCY_BOUNDS_MS
            .iter()
            .position(|&b| ms <= b)
            .unwrap_or(APPLY_LATENCY_BOUNDS_MS.len());
        self.buckets[i] += 1;
        self.sum_seconds += d.as_secs_f64();
        self.count += 1;
        debug_assert_eq!(self.buckets.iter().sum::<u64>(), self.count);
    }
}

/// How far a peer's log is known (by the leader) to match its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeerProgress {
    /// The peer's Raft id.
    pub id: NodeId,
    /// Highest index known to be replicated on the peer.
    pub matched: Index,
    /// Next index the leader will send it.
    pub next: Index,
}

/// What the driver counts; reported in every [`crate::driver::NodeStatus`].
#[derive(Debug, Clone, Default, PartialEq)]
pub struct NodeMetrics {
    /// Writes submitted to this node (accepted or refused).
    pub writes: u64,
    /// Writes this node answered as committed and applied (client session
    /// registrations are not counted).
    pub writes_applied: u64,
    /// Reads submitted to this node (linearizable and serializable).
    pub reads: u64,
    /// Linearizable reads this node answered as leader on its lease, with
    /// no heartbeat round (from the core's stats).
    pub lease_reads: u64,
    /// Elections this node started (from the core's stats).
    pub elections_started: u64,
    /// Times this node became leader.
    pub times_leader: u64,
    /// Raft messages this node sent.
    pub messages_sent: u64,
    /// Snapshots this node sent to lagging peers.
    pub snapshots_sent: u64,
    /// Snapshots this node installed from a leader.
    pub snapshots_installed: u64,
    /// WAL fsyncs (group commits) made by the driver.
    pub wal_syncs: u64,
    /// Log entries made durable by those fsyncs (entries per group commit =
    /// `entries_synced / wal_syncs`).
    pub entries_synced: u64,
    /// Hard-state writes that only moved the commit index and so were not
    /// fsynced on their own (they become durable with the next fsync).
    pub commit_only_syncs_skipped: u64,
    /// Snapshots this node took of its own store (log compactions).
    pub snapshots_taken: u64,
    /// Proposal-to-apply latency of this node's own proposals.
    pub apply_latency: LatencyHistogram,
    /// Replication progress of each peer; empty unless this node leads.
    pub peers: Vec<PeerProgress>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_buckets_by_upper_bound() {
        let mut h = LatencyHistogram::default();
        h.observe(Duration::from_micros(300)); // <= 0.5 ms
        h.observe(Duration::from_millis(1)); // <= 1 ms (bounds are inclusive)
        h.observe(Duration::from_secs(10)); // +Inf
        assert_eq!(h.buckets[0], 1);
        assert_eq!(h.buckets[1], 1);
        assert_eq!(h.buckets[APPLY_LATENCY_BOUNDS_MS.len()], 1);
        assert_eq!(h.count, 3);
        assert!((h.sum_seconds - 10.0013).abs() < 1e-9);
    }
}
