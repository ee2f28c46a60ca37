//! Tunables of one core. Times are in ticks: the host decides how long a
//! tick is (the node uses 50 ms; the simulator uses 10 ms of simulated time).

use crate::types::{NodeId, SnapshotMeta};

/// Largest `election_tick`: timeouts are drawn from up to twice it, in a
/// `u32` (a billion ticks is already decades at a millisecond per tick).
pub const MAX_ELECTION_TICK: u32 = 1 << 30;

/// Lease reads assume that no node's clock runs this many percent faster
/// than a leader's; [`Config::lease_ticks`] gives this much up.
pub const MAX_CLOCK_RATE_DIFFERENCE_PERCENT: u32 = 10;

#[derive(Clone, Debug)]
pub struct Config {
    pub id: NodeId,
    /// A follower that hears nothing from a leader for a random time in
    /// `[election_tick + 1, 2 * election_tick)` campaigns (§5.2); for
    /// `election_tick` after hearing one, it refuses votes (the lease).
    /// The one tick between the two absorbs nodes' unaligned tick phases.
    pub election_tick: u32,
    /// A leader sends heartbeats every `heartbeat_tick` ticks. Must be well
    /// below `election_tick`.
    pub heartbeat_tick: u32,
    /// Soft cap on the entry bytes of one append (batching).
    pub max_msg_bytes: u64,
    /// Pipelining window: appends in flight to one follower.
    pub max_inflight_msgs: usize,
    /// ... and the bytes they may carry.
    pub max_inflight_bytes: u64,
    /// Proposals are refused (back-pressure) once this many bytes are
    /// appended but not committed.
    pub max_uncommitted_bytes: u64,
    /// Soft cap on the bytes of committed entries handed out per `Ready`.
    pub max_apply_bytes: u64,
    /// Snapshot transfer chunk size.
    pub snapshot_chunk_bytes: u64,
    /// A snapshot announced as larger than this is refused by followers.
    pub max_snapshot_bytes: u64,
    /// Whether the host can restore a snapshot received from a leader (its
    /// state machine's format), asked when the last chunk arrives, before
    /// anything is installed. A snapshot that fails is not installed, its
    /// last chunk not acknowledged: the follower stays behind and the leader
    /// sends that chunk again. A pure function, so the core stays free of
    /// I/O. Default: every snapshot restores.
    pub snapshot_check: fn(&SnapshotMeta, &[u8]) -> bool,
    /// Pre-vote (thesis §9.6): a node asks before raising its term, so a
    /// rejoining partitioned node cannot depose a healthy leader.
    pub pre_vote: bool,
    /// A leader that did not hear from a majority within an election timeout
    /// steps down; followers that heard from a leader recently ignore vote
    /// requests (leader lease).
    pub check_quorum: bool,
    /// Leader lease reads (thesis §6.4.1): a leader answers a read at once,
    /// without a heartbeat round, while a quorum acknowledged a heartbeat it
    /// sent less than [`Config::lease_ticks`] ago. Safe only if every node
    /// counts ticks in step with real time (the host delivers a tick for
    /// every tick length elapsed, catching up after stalls, before it feeds
    /// the core anything else), clock rates differ by less than
    /// [`MAX_CLOCK_RATE_DIFFERENCE_PERCENT`], and every node of the cluster
    /// runs with it on (a node that just started refuses votes for
    /// `election_tick`, since it forgot whom it heard from). Needs
    /// `check_quorum`.
    pub lease_read: bool,
    /// Seeds the core's randomness: election timeouts, and the first number
    /// of this start's forwarded reads. Give every start of a node a fresh
    /// seed (the node draws one; the simulator mixes in the restart count),
    /// so a restarted follower never numbers its reads as its previous
    /// start did and takes a late answer to one of those for its own.
    pub seed: u64,
}

impl Config {
    pub fn new(id: NodeId) -> Self {
        Config {
            id,
            election_tick: 10,
            heartbeat_tick: 1,
            max_msg_bytes: 1 << 20,
            max_inflight_msgs: 256,
            max_inflight_bytes: 64 << 20,
            max_uncommitted_bytes: 256 << 20,
            max_apply_bytes: 64 << 20,
            snapshot_chunk_bytes: 1 << 20,
            max_snapshot_bytes: 4 << 30,
            snapshot_check: |_, _| true,
            pre_vote: true,
            check_quorum: true,
            lease_read: false,
            seed: id,
        }
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.id == 0 {
            return Err(ConfigError("id 0 is reserved for \"nobody\"".into()));
        }
        if self.heartbeat_tick == 0 {
            return Err(ConfigError("heartbeat_tick must be at least 1".into()));
        }
        if self.election_tick > MAX_ELECTION_TICK {
            return Err(ConfigError(format!(
                "election_tick ({}) is above {MAX_ELECTION_TICK}: its timeout range would not fit",
                self.election_tick
            )));
        }
        if self.election_tick <= self.heartbeat_tick {
            return Err(ConfigError(format!(
                "election_tick ({}) must be greater than heartbeat_tick ({})",
                self.election_tick, self.heartbeat_tick
            )));
        }
        if self.lease_read && !self.check_quorum {
            return Err(ConfigError(
                "lease_read needs check_quorum: the lease is followers refusing votes".into(),
            ));
        }
        if self.lease_read && self.lease_ticks() == 0 {
            return Err(ConfigError(format!(
                "election_tick ({}) is too small for lease reads (at least 3)",
                self.election_tick
            )));
        }
        if self.max_inflight_msgs == 0 || self.max_inflight_bytes == 0 {
            return Err(ConfigError("the inflight window must be non-empty".into()));
        }
        if self.snapshot_chunk_bytes == 0 || self.max_msg_bytes == 0 {
            return Err(ConfigError("message and chunk sizes must be positive".into()));
        }
        Ok(())
    }
}

impl Config {
    /// How long, in the leader's ticks from sending a heartbeat round, a
    /// quorum's acknowledgement of that round lets the leader answer reads
    /// alone.
    ///
    /// A follower that receives a heartbeat refuses votes until it has
    /// counted `election_tick` ticks; with the host's catch-up rule every
    /// one of them falls due after the receipt, so the last falls due at
    /// least `election_tick - 1` tick lengths after the leader sent it. The
    /// leader's tick count may lag real time by up to one tick, so a lease
    /// of `election_tick - 1` ticks ends no later than that, on clocks of
    /// equal rate; it gives up [`MAX_CLOCK_RATE_DIFFERENCE_PERCENT`] more.
    pub fn lease_ticks(&self) -> u32 {
        let window = self.election_tick.saturating_sub(1);
        window - window.div_ceil(100 / MAX_CLOCK_RATE_DIFFERENCE_PERCENT)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid raft config: {0}")]
pub struct ConfigError(pub String);
