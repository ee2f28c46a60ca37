//! The Raft state machine itself.
//!
//! Everything here is a pure function of the calls made on it and the seed:
//! no clock (time is `tick`), no I/O (see [`Ready`]), no threads. Section
//! numbers (§) refer to the Raft paper (Ongaro & Ousterhout, 2014) unless
//! they say "thesis" (Ongaro's dissertation).

use std::collections::VecDeque;

use bytes::Bytes;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::confchange::{self, ConfChange, ConfChangeError};
use crate::config::{Config, ConfigError};
use crate::log::RaftLog;
use crate::message::{Body, Message, MAX_TERM_JUMP};
use crate::quorum::VoteResult;
use crate::ready::{Ready, ReadyMarks};
use crate::tracker::{ProgressState, ProgressTracker};
use crate::types::{
    Entry, EntryKind, HardState, Index, Membership, NodeId, ReadState, Role, Snapshot, SnapshotMeta, SoftState, Term,
};

/// What a core starts from: its durable state as the host recovered it.
#[derive(Clone, Debug, Default)]
pub struct InitialState {
    pub hard_state: HardState,
    /// The latest durable snapshot, if any. Its membership wins over
    /// `membership`.
    pub snapshot: Option<Snapshot>,
    /// Durable entries after the snapshot (or from index 1), contiguous.
    pub entries: Vec<Entry>,
    /// The cluster's membership when there is no snapshot yet (bootstrap).
    pub membership: Membership,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProposeError {
    #[error("not the leader (leader: {leader:?})")]
    NotLeader { leader: Option<NodeId> },
    #[error("leadership transfer in progress")]
    TransferInProgress,
    #[error("too many uncommitted bytes; retry later")]
    Backpressure,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReadIndexError {
    #[error("no leader known")]
    NoLeader,
    #[error("too many reads pending")]
    Backpressure,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TransferError {
    #[error("not the leader (leader: {leader:?})")]
    NotLeader { leader: Option<NodeId> },
    #[error("node {0} is not a voter")]
    NotVoter(NodeId),
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ForceCampaignError {
    #[error("a forced election overrides leader leases; it is refused while lease reads are on")]
    LeaseReads,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CompactError {
    #[error("cannot compact to {index}: only {applied} is applied")]
    NotApplied { index: Index, applied: Index },
}

/// Counters for metrics and tests.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stats {
    pub elections_started: u64,
    pub pre_votes_started: u64,
    pub times_leader: u64,
    pub messages_sent: u64,
    pub snapshots_sent: u64,
    pub snapshots_installed: u64,
    pub stale_messages: u64,
    /// Messages no correct peer sends, ignored: a term, index or offset past
    /// [`crate::message::MAX_WIRE_NUMBER`], an acknowledgement past the
    /// leader's own log, or a second leader of the term we know a leader of
    /// (forged or corrupted; the simulator checks election safety itself).
    pub invalid_messages: u64,
    /// Snapshots from a leader that `Config::snapshot_check` refused.
    pub refused_snapshots: u64,
    /// Membership changes applied (each entry of a joint change counts).
    pub membership_changes: u64,
    /// Membership entries that could not be decoded (and were ignored).
    pub bad_membership_entries: u64,
    /// Reads a leader answered on its lease, without a heartbeat round.
    pub lease_reads: u64,
}

/// Where a ReadIndex request came from: our host, or a follower's.
#[derive(Debug, Clone)]
enum ReadOrigin {
    Local(Bytes),
    Remote { from: NodeId, request: u64 },
}

#[derive(Debug, Clone)]
struct PendingRead {
    /// Heartbeat round that must be acknowledged by a majority.
    seq: u64,
    index: Index,
    origin: ReadOrigin,
}

/// A snapshot being received in chunks.
#[derive(Debug, Clone)]
struct SnapshotReceiver {
    meta: SnapshotMeta,
    total: u64,
    buf: Vec<u8>,
}

/// Bound on queued ReadIndex requests (host requests and forwarded ones).
const MAX_PENDING_READS: usize = 1 << 16;
/// Bound on remembered heartbeat rounds (the lease looks one up by number;
/// forgetting old ones only ends a lease sooner).
const MAX_ROUNDS: usize = 4096;
/// Snapshot chunks that may be unacknowledged at once.
const SNAPSHOT_WINDOW_CHUNKS: u64 = 4;
/// Election timeouts a leader waits after a follower refused a snapshot
/// before it sends one again (the follower may have been restarted with a
/// larger limit meanwhile).
const SNAPSHOT_REFUSED_BACKOFF_ELECTIONS: u64 = 20;

pub struct Raft {
    cfg: Config,
    id: NodeId,
    term: Term,
    vote: Option<NodeId>,
    role: Role,
    leader: Option<NodeId>,
    log: RaftLog,
    /// The configuration in force: the latest one in the log, committed or
    /// not (§6; see [`crate::confchange`]).
    membership: Membership,
    /// The configurations in the log after the snapshot, oldest first,
    /// starting with the snapshot's own (index, term, configuration): what
    /// a truncation falls back to and what `compact` records.
    membership_history: Vec<(Index, Term, Membership)>,
    tracker: ProgressTracker,
    rng: ChaCha8Rng,

    /// Ticks since this core started: the leader's clock for its lease,
    /// and a restarted node's reminder that it forgot whom it heard from.
    now: u64,
    election_elapsed: u32,
    heartbeat_elapsed: u32,
    randomized_election_timeout: u32,

    /// Leadership transfer target and ticks spent on it.
    transfer: Option<(NodeId, u32)>,

    /// The latest snapshot we hold (taken, installed or restored): what we
    /// send to followers behind our compacted log.
    snapshot: Option<Snapshot>,
    incoming_snapshot: Option<SnapshotReceiver>,
    /// An installed snapshot the host has yet to persist and restore.
    snapshot_to_install: Option<Snapshot>,

    // ReadIndex (§6.4). Every heartbeat broadcast is a numbered round.
    read_seq: u64,
    /// This term's heartbeat rounds as (number, `now` when sent), oldest
    /// first: the lease starts when the round a quorum acknowledged was sent.
    /// Kept only with lease reads on.
    rounds: VecDeque<(u64, u64)>,
    /// A leadership transfer began this term: voters may grant the target
    /// despite our lease, so it no longer holds.
    lease_revoked: bool,
    reads: VecDeque<PendingRead>,
    /// Reads that arrived before this leader committed an entry of its term.
    reads_awaiting_commit: Vec<ReadOrigin>,
    /// A follower's reads forwarded to the leader, by request number.
    forwarded_reads: VecDeque<(u64, Bytes)>,
    next_forward_id: u64,
    read_states: Vec<ReadState>,

    uncommitted_bytes: u64,
    /// Appends to flush to followers at the next `ready` (batching).
    broadcast_pending: bool,
    /// The commit index advanced and followers have not been told yet.
    /// etcd-raft broadcasts a new commit index at once; here it rides on the
    /// next append (a proposal's) or heartbeat, goes out at the next tick, or
    /// goes just before the answer to a follower's read (see
    /// `Progress::commit_sent`). Followers apply up to a tick later, and
    /// one write at a time costs a commit-only append and its
    /// acknowledgement less per follower (12-29 % less server CPU per write,
    /// `docs/PERFORMANCE.md`).
    commit_unsent: bool,
    heartbeat_pending: bool,

    messages: Vec<Message>,
    persisted_messages: Vec<Message>,
    prev_hard_state: HardState,
    prev_soft_state: SoftState,
    awaiting_advance: Option<ReadyMarks>,
    stats: Stats,
}

impl Raft {
    pub fn new(cfg: Config, init: InitialState) -> Result<Self, ConfigError> {
        cfg.validate()?;
        let (snap_index, snap_term, membership) = match &init.snapshot {
            Some(s) => (s.meta.index, s.meta.term, s.meta.membership.clone()),
            None => (0, 0, init.membership.clone()),
        };
        if let Some(first) = init.entries.first() {
            if first.index != snap_index + 1 {
                return Err(ConfigError(format!(
                    "log starts at {} but the snapshot ends at {snap_index}",
                    first.index
                )));
            }
        }
        // Configurations in the log are in force at once (§6), committed or not.
        let conf_entries: Vec<Entry> = init
            .entries
            .iter()
            .filter(|e| e.kind == EntryKind::Membership)
            .cloned()
            .collect();
        let log = RaftLog::restore(snap_index, snap_term, init.entries, init.hard_state.commit);
        let tracker = ProgressTracker::new(&membership, cfg.max_inflight_msgs, cfg.max_inflight_bytes);
        let rng = ChaCha8Rng::seed_from_u64(cfg.seed);
        let mut raft = Raft {
            id: cfg.id,
            term: init.hard_state.term,
            vote: init.hard_state.vote,
            role: Role::Follower,
            leader: None,
            log,
            membership_history: vec![(snap_index, snap_term, membership.clone())],
            membership,
            tracker,
            rng,
            now: 0,
            election_elapsed: 0,
            heartbeat_elapsed: 0,
            randomized_election_timeout: cfg.election_tick,
            transfer: None,
            snapshot: init.snapshot,
            incoming_snapshot: None,
            snapshot_to_install: None,
            read_seq: 0,
            rounds: VecDeque::new(),
            lease_revoked: false,
            reads: VecDeque::new(),
            reads_awaiting_commit: Vec::new(),
            forwarded_reads: VecDeque::new(),
            // Random, not 1: a restarted follower (same term) must not take
            // a late answer to its previous incarnation's request for one of
            // its own; 63 random bits make a reuse negligible.
            next_forward_id: 0,
            read_states: Vec::new(),
            uncommitted_bytes: 0,
            broadcast_pending: false,
            commit_unsent: false,
            heartbeat_pending: false,
            messages: Vec::new(),
            persisted_messages: Vec::new(),
            prev_hard_state: init.hard_state,
            prev_soft_state: SoftState {
                role: Role::Follower,
                leader: None,
            },
            awaiting_advance: None,
            stats: Stats::default(),
            cfg,
        };
        raft.note_membership_entries(&conf_entries);
        raft.reset_election_timer();
        raft.next_forward_id = raft.rng.random::<u64>() >> 1;
        Ok(raft)
    }

    // ----- accessors -------------------------------------------------------

    pub fn id(&self) -> NodeId {
        self.id
    }
    pub fn term(&self) -> Term {
        self.term
    }
    pub fn vote(&self) -> Option<NodeId> {
        self.vote
    }
    pub fn role(&self) -> Role {
        self.role
    }
    pub fn leader(&self) -> Option<NodeId> {
        self.leader
    }
    pub fn is_leader(&self) -> bool {
        self.role == Role::Leader
    }
    pub fn commit_index(&self) -> Index {
        self.log.committed()
    }
    pub fn applied_index(&self) -> Index {
        self.log.applied()
    }
    pub fn persisted_index(&self) -> Index {
        self.log.persisted()
    }
    pub fn last_index(&self) -> Index {
        self.log.last_index()
    }
    pub fn last_term(&self) -> Term {
        self.log.last_term()
    }
    pub fn snapshot_index(&self) -> Index {
        self.log.snapshot_index()
    }
    /// The configuration in force: the latest one in the log.
    pub fn membership(&self) -> &Membership {
        &self.membership
    }

    /// The configuration as of log position `index` (at or after the
    /// snapshot): what a snapshot taken at `index` must record, which can
    /// be older than [`Raft::membership`] when a later change is in the log.
    pub fn membership_at(&self, index: Index) -> Membership {
        debug_assert!(index >= self.membership_history[0].0, "{index} is before the snapshot");
        let at = self
            .membership_history
            .iter()
            .rposition(|(i, _, _)| *i <= index)
            .unwrap_or(0);
        self.membership_history[at].2.clone()
    }
    pub fn stats(&self) -> &Stats {
        &self.stats
    }
    pub fn config(&self) -> &Config {
        &self.cfg
    }
    pub fn hard_state(&self) -> HardState {
        HardState {
            term: self.term,
            vote: self.vote,
            commit: self.log.committed(),
        }
    }
    /// The term of the entry at `index`, if still in the log.
    pub fn term_at(&self, index: Index) -> Option<Term> {
        self.log.term(index)
    }
    /// Entries in `[lo, hi)` still in the log (for tests and inspection).
    pub fn entries(&self, lo: Index, hi: Index) -> Vec<Entry> {
        self.log
            .slice(lo.max(self.log.first_index()), hi, u64::MAX)
            .unwrap_or_default()
    }
    /// Reads this node forwarded to the leader and has no answer for yet.
    pub fn pending_forwarded_reads(&self) -> usize {
        self.forwarded_reads.len()
    }

    /// Replication progress of a follower as the leader sees it: (match, next).
    pub fn progress_of(&self, id: NodeId) -> Option<(Index, Index)> {
        if !self.is_leader() {
            return None;
        }
        self.tracker.progress.get(&id).map(|p| (p.matched, p.next))
    }

    /// May this node campaign? A voter may; so may a node that the latest
    /// configuration removed, while that configuration is not known to be
    /// committed: the remaining voters may still be in the joint phase and
    /// need its vote, and its log may be the only complete one, so it must
    /// be able to lead long enough to commit its own removal (§6: a leader
    /// may manage a cluster it is not part of). The simulator found the
    /// deadlock this prevents: a removed leader stepped down on
    /// check-quorum before committing `C_new`, and no one could win.
    fn promotable(&self) -> bool {
        if self.membership.is_voter(self.id) {
            return true;
        }
        let n = self.membership_history.len();
        n >= 2
            && self.membership_history[n - 1].0 > self.log.committed()
            && self.membership_history[n - 2].2.is_voter(self.id)
    }

    // ----- inputs ----------------------------------------------------------

    /// Advances logical time by one tick.
    pub fn tick(&mut self) {
        self.assert_not_awaiting_advance();
        self.now += 1;
        match self.role {
            Role::Leader => self.tick_leader(),
            _ => self.tick_election(),
        }
    }

    fn tick_election(&mut self) {
        self.election_elapsed += 1;
        if self.promotable() && self.election_elapsed >= self.randomized_election_timeout {
            self.election_elapsed = 0;
            self.campaign();
        }
    }

    fn tick_leader(&mut self) {
        self.heartbeat_elapsed += 1;
        self.election_elapsed += 1;
        if self.election_elapsed >= self.cfg.election_tick {
            self.election_elapsed = 0;
            if self.cfg.check_quorum {
                if !self.tracker.quorum_active() {
                    // We may be on the minority side of a partition: stop
                    // acting as leader so clients go elsewhere.
                    let term = self.term;
                    self.become_follower(term, None);
                    return;
                }
                let me = self.id;
                for (&id, pr) in self.tracker.progress.iter_mut() {
                    pr.recent_active = id == me;
                }
            }
            if self.transfer.is_some() {
                // The target did not take over within an election timeout.
                self.transfer = None;
                if !self.promotable() {
                    // Removed (and the removal committed) and no successor
                    // caught up: stop leading; the voters elect one among
                    // themselves. While `C_new` is uncommitted we keep
                    // leading to commit it (see `promotable`); `after_commit`
                    // hands over then.
                    self.step_down_removed();
                    return;
                }
            }
        }
        if let Some((_, ticks)) = self.transfer.as_mut() {
            *ticks += 1;
        }
        if self.heartbeat_elapsed >= self.cfg.heartbeat_tick {
            self.heartbeat_elapsed = 0;
            // Sent at the next `ready`: a host catching up many ticks after
            // a stall sends one round, not one per tick.
            self.heartbeat_pending = true;
            self.resend_stalled_snapshots();
        }
        // A heartbeat carries the commit index too (capped at each
        // follower's match): no append for it in a heartbeat's tick.
        if self.commit_unsent && !self.heartbeat_pending {
            self.broadcast_pending = true;
        }
    }

    /// Starts an election, with a pre-vote round first if configured.
    pub fn campaign(&mut self) {
        self.assert_not_awaiting_advance();
        if self.role == Role::Leader || !self.promotable() {
            return;
        }
        if self.cfg.pre_vote {
            self.start_pre_vote();
        } else {
            self.start_election(false);
        }
    }

    /// Starts an election now, skipping pre-vote and overriding followers'
    /// leader lease, as if a leader had handed over (operator "set leader").
    /// Refused with lease reads on: the old leader, if merely cut off, would
    /// keep answering reads on a lease the voters no longer honour.
    pub fn force_campaign(&mut self) -> Result<(), ForceCampaignError> {
        self.assert_not_awaiting_advance();
        if self.cfg.lease_read {
            return Err(ForceCampaignError::LeaseReads);
        }
        if self.role == Role::Leader || !self.promotable() {
            return Ok(());
        }
        self.start_election(true);
        Ok(())
    }

    /// Appends a command to the log (leader only). Returns where it will be
    /// committed if it ever is: the host learns its fate when an entry at
    /// that index is applied (same term: ours; other term: lost).
    pub fn propose(&mut self, data: Bytes) -> Result<(Index, Term), ProposeError> {
        self.assert_not_awaiting_advance();
        if self.role != Role::Leader {
            return Err(ProposeError::NotLeader { leader: self.leader });
        }
        if self.transfer.is_some() {
            return Err(ProposeError::TransferInProgress);
        }
        let entry = Entry {
            index: self.log.last_index() + 1,
            term: self.term,
            kind: EntryKind::Command,
            data,
        };
        let size = entry.size();
        if self.uncommitted_bytes > 0 && self.uncommitted_bytes + size > self.cfg.max_uncommitted_bytes {
            return Err(ProposeError::Backpressure);
        }
        self.uncommitted_bytes += size;
        let at = (entry.index, entry.term);
        self.log.append_own(entry);
        self.broadcast_pending = true;
        Ok(at)
    }

    /// Proposes a membership change (leader only); see [`crate::confchange`]
    /// for the rule. `context` rides along opaquely in the entry (the node
    /// puts the new member's address there). A voter change appends the
    /// joint configuration; the leader appends the final one by itself once
    /// the joint one is applied.
    pub fn propose_conf_change(
        &mut self,
        change: ConfChange,
        context: Bytes,
    ) -> Result<(Index, Term), ConfChangeError> {
        self.assert_not_awaiting_advance();
        if self.role != Role::Leader {
            return Err(ConfChangeError::NotLeader { leader: self.leader });
        }
        if self.transfer.is_some() {
            return Err(ConfChangeError::TransferInProgress);
        }
        let latest = self.latest_conf_index();
        if latest > self.log.committed() {
            return Err(ConfChangeError::Pending { index: latest });
        }
        let next = confchange::target(&self.membership, change)?;
        if let ConfChange::Promote(id) = change {
            // A voter that must first download the log would stall commits
            // (it counts toward the quorum at once): promote only learners
            // that hold what is committed.
            let matched = self.tracker.progress.get(&id).map_or(0, |p| p.matched);
            if matched < self.log.committed() {
                return Err(ConfChangeError::NotCaughtUp {
                    id,
                    matched,
                    last: self.log.last_index(),
                });
            }
        }
        let at = self.append_membership(&next, &context);
        Ok(at)
    }

    /// Appends a membership entry as leader; it is in force at once.
    fn append_membership(&mut self, next: &Membership, context: &[u8]) -> (Index, Term) {
        debug_assert_eq!(self.role, Role::Leader);
        let entry = Entry {
            index: self.log.last_index() + 1,
            term: self.term,
            kind: EntryKind::Membership,
            data: confchange::encode_entry(next, context),
        };
        self.uncommitted_bytes += entry.size();
        let at = (entry.index, entry.term);
        self.log.append_own(entry.clone());
        self.note_membership_entries(std::slice::from_ref(&entry));
        self.broadcast_pending = true;
        at
    }

    /// Index of the latest configuration entry in the log (or the
    /// snapshot's index if there is none after it).
    fn latest_conf_index(&self) -> Index {
        self.membership_history.last().map_or(0, |(i, _, _)| *i)
    }

    /// Brings the configuration in line with the log after it changed:
    /// drops configurations whose entries a truncation removed, then adds
    /// those among `appended` (entries now in the log).
    fn note_membership_entries(&mut self, appended: &[Entry]) {
        let before = self.membership_history.len();
        let log = &self.log;
        let base = self.membership_history[0].0;
        let mut kept = 1;
        for (i, (index, term, _)) in self.membership_history.iter().enumerate().skip(1) {
            if *index > base && log.term(*index) == Some(*term) {
                kept = i + 1;
            } else {
                break;
            }
        }
        self.membership_history.truncate(kept);
        let mut changed = kept != before;
        for e in appended.iter().filter(|e| e.kind == EntryKind::Membership) {
            let last = self.latest_conf_index();
            if e.index <= last || self.log.term(e.index) != Some(e.term) {
                continue;
            }
            match confchange::decode_entry(&e.data) {
                Ok((m, _)) => {
                    self.membership_history.push((e.index, e.term, m));
                    changed = true;
                }
                // Only a core writes these: a bad one is a bug, skipped
                // identically by every node rather than trusted.
                Err(_) => self.stats.bad_membership_entries += 1,
            }
        }
        if changed {
            let m = self.membership_history.last().expect("never empty").2.clone();
            if m != self.membership {
                self.stats.membership_changes += 1;
                self.membership = m;
                self.tracker.set_membership(&self.membership, self.log.last_index() + 1);
                if self.role == Role::Leader {
                    // Pending read rounds count acknowledgements over the
                    // new configuration; a smaller one may confirm them now,
                    // and no heartbeat answer may come to do it (one voter).
                    self.release_confirmed_reads();
                }
            }
        }
        debug_assert!(self.membership_history.windows(2).all(|w| w[0].0 < w[1].0));
    }

    /// Leader: what a commit may unlock in a membership change. A committed
    /// joint configuration is followed by the final one (auto-leave); a
    /// committed configuration that removed us ends our leadership (§6:
    /// "the leader steps down once C_new is committed"), handing over to a
    /// caught-up voter when there is one so nobody waits for a timeout.
    fn after_commit(&mut self) {
        if self.role != Role::Leader || self.latest_conf_index() > self.log.committed() {
            return;
        }
        if !self.membership.voters_outgoing.is_empty() {
            let next = confchange::leave_joint(&self.membership);
            self.append_membership(&next, &[]);
            return;
        }
        if self.membership.is_voter(self.id) || self.transfer.is_some() {
            return;
        }
        let last = self.log.last_index();
        let best = self
            .tracker
            .progress
            .iter()
            .filter(|(id, _)| self.membership.is_voter(**id))
            .max_by_key(|(id, p)| (p.matched, std::cmp::Reverse(**id)))
            .map(|(id, p)| (*id, p.matched));
        match best {
            Some((to, matched)) if matched == last => {
                self.send(to, Body::TimeoutNow);
                self.step_down_removed();
            }
            // Bring the best one up to date first (a leadership transfer);
            // if that times out, `tick_leader` steps down anyway.
            Some((to, _)) => {
                self.transfer = Some((to, 0));
                self.send_append(to, true);
            }
            None => self.step_down_removed(),
        }
    }

    fn step_down_removed(&mut self) {
        // Tell everyone the commit index first: the remaining voters then
        // know the configuration that removed us is final.
        self.broadcast_append();
        let term = self.term;
        self.become_follower(term, None);
        assert!(!self.promotable(), "a removed node must not campaign");
    }

    /// Asks for a linearizable read point (§6.4). The answer comes back as a
    /// `ReadState` carrying `ctx` in a later `Ready`, or never (leader lost):
    /// the host should time out and retry.
    pub fn read_index(&mut self, ctx: Bytes) -> Result<(), ReadIndexError> {
        self.assert_not_awaiting_advance();
        match self.role {
            Role::Leader => self.leader_read(ReadOrigin::Local(ctx), true),
            _ => {
                let leader = self.leader.ok_or(ReadIndexError::NoLeader)?;
                // A forwarded read whose answer was lost (a full transport
                // queue drops messages) would stay here for good, and a full
                // queue would refuse every read until a restart: the oldest
                // goes instead; its host has long timed it out.
                if self.forwarded_reads.len() >= MAX_PENDING_READS {
                    self.forwarded_reads.pop_front();
                }
                let request = self.next_forward_id;
                self.next_forward_id = self.next_forward_id.wrapping_add(1);
                self.forwarded_reads.push_back((request, ctx));
                self.send(leader, Body::ReadIndex { request });
                Ok(())
            }
        }
    }

    /// Hands leadership to `to` (thesis §3.10): stop taking proposals, bring
    /// `to` up to date, then tell it to campaign at once.
    pub fn transfer_leader(&mut self, to: NodeId) -> Result<(), TransferError> {
        self.assert_not_awaiting_advance();
        if self.role != Role::Leader {
            return Err(TransferError::NotLeader { leader: self.leader });
        }
        if !self.tracker.is_voter(to) {
            return Err(TransferError::NotVoter(to));
        }
        if to == self.id {
            return Ok(());
        }
        self.transfer = Some((to, 0));
        self.lease_revoked = true;
        self.election_elapsed = 0;
        let caught_up = self
            .tracker
            .progress
            .get(&to)
            .is_some_and(|p| p.matched == self.log.last_index());
        if caught_up {
            self.send(to, Body::TimeoutNow);
        } else {
            self.send_append(to, true);
        }
        Ok(())
    }

    /// The host took a snapshot of its state machine at `index` (which it has
    /// applied) and persisted it: drop the log up to there.
    pub fn compact(&mut self, index: Index, data: Bytes) -> Result<(), CompactError> {
        self.assert_not_awaiting_advance();
        if index > self.log.applied() {
            return Err(CompactError::NotApplied {
                index,
                applied: self.log.applied(),
            });
        }
        if index <= self.log.snapshot_index() {
            return Ok(());
        }
        let term = self.log.term(index).expect("applied entries are in the log");
        self.log.compact(index);
        // The configuration as of `index`, which may be older than the one
        // in force if a change was applied after it.
        let at = self
            .membership_history
            .iter()
            .rposition(|(i, _, _)| *i <= index)
            .unwrap_or(0);
        let membership = self.membership_history[at].2.clone();
        self.membership_history.drain(..at);
        self.membership_history[0].0 = index;
        self.membership_history[0].1 = term;
        debug_assert!(self.membership_history.windows(2).all(|w| w[0].0 < w[1].0));
        self.snapshot = Some(Snapshot {
            meta: SnapshotMeta {
                index,
                term,
                membership,
            },
            data,
        });
        Ok(())
    }

    /// Leader only: sends a heartbeat round now instead of at the next
    /// heartbeat tick (operators and tests use it to hurry replication).
    pub fn heartbeat_now(&mut self) {
        self.assert_not_awaiting_advance();
        if self.role == Role::Leader {
            self.broadcast_heartbeat();
            self.broadcast_pending = true;
        }
    }

    /// The host could not reach `id`: stop optimistic pipelining to it.
    pub fn report_unreachable(&mut self, id: NodeId) {
        if self.role != Role::Leader || id == self.id {
            return;
        }
        if let Some(pr) = self.tracker.progress.get_mut(&id) {
            if let ProgressState::Replicate = pr.state {
                pr.become_probe();
            }
        }
    }

    /// Feeds a message from another core.
    pub fn step(&mut self, m: Message) {
        self.assert_not_awaiting_advance();
        if m.to != self.id || m.from == self.id || m.from == 0 {
            self.stats.stale_messages += 1;
            return;
        }
        if !m.well_formed() {
            // Forged or corrupted: adopting a term past the bound would
            // overflow at the next election and, once durable, at every
            // restart; a snapshot of a later term than its sender's would
            // put that term below the next leader's own entries.
            self.stats.invalid_messages += 1;
            return;
        }
        if m.term > self.term.saturating_add(MAX_TERM_JUMP) {
            // See `MAX_TERM_JUMP`: no real election history explains it.
            self.stats.invalid_messages += 1;
            return;
        }
        if m.term > self.term {
            if let Body::Vote { transfer, .. } = m.body {
                let heard_leader = self.leader.is_some() && self.election_elapsed < self.cfg.election_tick;
                // Lease reads: having just (re)started, we may have
                // acknowledged a leader's heartbeat before and forgotten;
                // keep the promise that acknowledgement made.
                let just_started = self.cfg.lease_read && self.now < u64::from(self.cfg.election_tick);
                let in_lease = self.cfg.check_quorum && (heard_leader || just_started);
                if in_lease && !transfer {
                    // Leader lease (thesis §4.2.3): we heard from a leader
                    // within the minimum election timeout; a disruptive
                    // candidate must not depose it (and a leader's lease
                    // reads rely on it).
                    self.stats.stale_messages += 1;
                    return;
                }
            }
            match m.body {
                // A pre-vote does not change our term; a granted pre-vote
                // reply carries the term the candidate will campaign in.
                Body::Vote { pre_vote: true, .. } => {}
                Body::VoteResponse {
                    pre_vote: true,
                    granted: true,
                } => {}
                Body::Append { .. } | Body::Heartbeat { .. } | Body::Snapshot { .. } => {
                    self.become_follower(m.term, Some(m.from));
                }
                _ => self.become_follower(m.term, None),
            }
        } else if m.term < self.term {
            match m.body {
                Body::Append { .. } | Body::Heartbeat { .. } if self.cfg.check_quorum || self.cfg.pre_vote => {
                    // A stale leader (e.g. back from a partition whose
                    // followers' pre-votes never raise our term for it)
                    // learns our term from this and steps down.
                    self.send(
                        m.from,
                        Body::AppendResponse {
                            reject: true,
                            index: 0,
                            hint_index: 0,
                            hint_term: 0,
                        },
                    );
                }
                Body::Vote { pre_vote: true, .. } => {
                    self.send(
                        m.from,
                        Body::VoteResponse {
                            pre_vote: true,
                            granted: false,
                        },
                    );
                }
                _ => {}
            }
            self.stats.stale_messages += 1;
            return;
        }

        let from = m.from;
        match m.body {
            Body::Vote {
                pre_vote,
                last_index,
                last_term,
                ..
            } => self.handle_vote(from, m.term, pre_vote, last_index, last_term),
            Body::VoteResponse { pre_vote, granted } => self.handle_vote_response(from, pre_vote, granted),
            Body::Append {
                prev_index,
                prev_term,
                entries,
                commit,
            } => {
                if !self.follow(from) {
                    return;
                }
                self.handle_append(from, prev_index, prev_term, entries, commit);
            }
            Body::Heartbeat { commit, read_seq } => {
                if !self.follow(from) {
                    return;
                }
                let commit = commit.min(self.log.last_index());
                self.log.commit_to(commit);
                self.send(from, Body::HeartbeatResponse { read_seq });
            }
            Body::Snapshot {
                meta,
                offset,
                total,
                data,
                done,
            } => {
                if !self.follow(from) {
                    return;
                }
                self.handle_snapshot_chunk(from, meta, offset, total, data, done);
            }
            Body::TimeoutNow => {
                if self.role != Role::Leader && self.promotable() {
                    self.start_election(true);
                }
            }
            Body::ReadIndex { request } => {
                if self.role == Role::Leader {
                    // Only answer reads for voters/learners we know.
                    if self.tracker.progress.contains_key(&from) {
                        if let Err(_e) = self.leader_read(ReadOrigin::Remote { from, request }, true) {
                            self.send(from, Body::ReadIndexResponse { request, index: None });
                        }
                    }
                } else {
                    self.send(from, Body::ReadIndexResponse { request, index: None });
                }
            }
            Body::ReadIndexResponse { request, index } => self.handle_read_index_response(request, index),
            Body::AppendResponse {
                reject,
                index,
                hint_index,
                hint_term,
            } => self.handle_append_response(from, reject, index, hint_index, hint_term),
            Body::HeartbeatResponse { read_seq } => self.handle_heartbeat_response(from, read_seq),
            Body::SnapshotResponse {
                index,
                next_offset,
                reject,
            } => self.handle_snapshot_response(from, index, next_offset, reject),
        }
    }

    // ----- outputs ---------------------------------------------------------

    /// Is there anything for the host to do?
    pub fn has_ready(&self) -> bool {
        if self.awaiting_advance.is_some() {
            return false;
        }
        !self.messages.is_empty()
            || !self.persisted_messages.is_empty()
            || !self.read_states.is_empty()
            || self.snapshot_to_install.is_some()
            || self.log.persisted() < self.log.last_index()
            || self.log.applied() < self.log.committed()
            || self.hard_state() != self.prev_hard_state
            || self.soft_state() != self.prev_soft_state
            || (self.role == Role::Leader && (self.broadcast_pending || self.heartbeat_pending))
    }

    fn soft_state(&self) -> SoftState {
        SoftState {
            role: self.role,
            leader: self.leader,
        }
    }

    /// Collects the work for the host. See [`Ready`] for the order in which
    /// it must be done; call [`Raft::advance`] when it is.
    pub fn ready(&mut self) -> Ready {
        self.assert_not_awaiting_advance();
        if self.role == Role::Leader {
            if self.broadcast_pending {
                self.broadcast_pending = false;
                self.commit_unsent = false;
                self.broadcast_append();
            }
            if self.heartbeat_pending {
                self.commit_unsent = false;
                self.broadcast_heartbeat();
            }
        }
        let hs = self.hard_state();
        let ss = self.soft_state();
        let snapshot = self.snapshot_to_install.take();
        let entries = self.log.unpersisted();
        let committed_entries = self.log.next_to_apply(self.cfg.max_apply_bytes);
        if let Some(s) = &snapshot {
            assert!(
                entries.first().is_none_or(|e| e.index > s.meta.index),
                "entries to persist must follow the snapshot"
            );
        }
        self.awaiting_advance = Some(ReadyMarks {
            last_entry: entries.last().map(|e| (e.index, e.term)),
            applied_to: committed_entries.last().map(|e| e.index),
            hard_state: hs,
        });
        let ready = Ready {
            soft_state: (ss != self.prev_soft_state).then_some(ss),
            hard_state: (hs != self.prev_hard_state).then_some(hs),
            entries,
            snapshot,
            messages: std::mem::take(&mut self.messages),
            persisted_messages: std::mem::take(&mut self.persisted_messages),
            committed_entries,
            read_states: std::mem::take(&mut self.read_states),
        };
        self.prev_soft_state = ss;
        ready
    }

    /// The host finished the last `Ready`: its writes are durable and its
    /// committed entries applied.
    pub fn advance(&mut self) {
        let marks = self.awaiting_advance.take().expect("advance() without a ready()");
        self.prev_hard_state = marks.hard_state;
        if let Some((index, term)) = marks.last_entry {
            self.log.persisted_to(index, term);
        }
        if let Some(index) = marks.applied_to {
            self.log.applied_to(index);
        }
        if self.role == Role::Leader {
            // Our own copy counts toward commit only once durable.
            let persisted = self.log.persisted();
            let me = self.id;
            if let Some(pr) = self.tracker.progress.get_mut(&me) {
                pr.maybe_update(persisted);
            }
            if self.maybe_commit() {
                self.after_commit();
            }
        }
        debug_assert!(self.log.applied() <= self.log.committed());
    }

    fn assert_not_awaiting_advance(&self) {
        assert!(
            self.awaiting_advance.is_none(),
            "the host must call advance() after ready() before feeding the core again"
        );
    }

    // ----- roles -----------------------------------------------------------

    fn reset_election_timer(&mut self) {
        self.election_elapsed = 0;
        // One tick above the lease window (`election_tick`, see `step`):
        // nodes' ticks are not in phase, so a peer that heard the same last
        // heartbeat may have counted one tick fewer when our pre-vote
        // arrives. Starting at `election_tick` itself, that peer would still
        // be "in lease" and refuse, and the whole cluster would wait out a
        // second timeout (seen as the tail of `triton bench failover`).
        let lo = self.cfg.election_tick + 1;
        let hi = (2 * self.cfg.election_tick).max(lo + 1);
        self.randomized_election_timeout = self.rng.random_range(lo..hi);
        debug_assert!(self.randomized_election_timeout > self.cfg.election_tick);
    }

    /// Common to every role change: a new term forgets the vote.
    fn reset(&mut self, term: Term) {
        if term != self.term {
            assert!(term > self.term, "terms only grow");
            self.term = term;
            self.vote = None;
            // A half-received snapshot of an older term's leader: the next
            // leader starts its own transfer; do not hold the buffer till then.
            self.incoming_snapshot = None;
        }
        self.leader = None;
        self.reset_election_timer();
        self.heartbeat_elapsed = 0;
        self.transfer = None;
        self.tracker.votes.clear();
        self.reads.clear();
        self.reads_awaiting_commit.clear();
        // The leader they went to drops them at its own reset: no answer
        // will come (the host times them out).
        self.forwarded_reads.clear();
        self.rounds.clear();
        self.lease_revoked = false;
        self.broadcast_pending = false;
        self.commit_unsent = false;
        self.heartbeat_pending = false;
    }

    fn become_follower(&mut self, term: Term, leader: Option<NodeId>) {
        self.reset(term);
        self.role = Role::Follower;
        self.leader = leader;
    }

    /// Called on any message from the current term's leader. Returns false,
    /// and the message must be ignored, if `leader` cannot lead this term:
    /// we lead it, or follow another leader of it. Election safety (§5.2)
    /// makes both impossible among correct peers, so the message is forged
    /// or corrupted; obeying it could overwrite committed entries.
    fn follow(&mut self, leader: NodeId) -> bool {
        let other_leader = self.role == Role::Leader || self.leader.is_some_and(|known| known != leader);
        if other_leader {
            self.stats.invalid_messages += 1;
            return false;
        }
        if self.role != Role::Follower || self.leader != Some(leader) {
            let term = self.term;
            self.become_follower(term, Some(leader));
        }
        self.election_elapsed = 0;
        true
    }

    fn start_pre_vote(&mut self) {
        let term = self.term;
        self.reset(term);
        self.role = Role::PreCandidate;
        self.stats.pre_votes_started += 1;
        self.request_votes(true, false);
    }

    fn start_election(&mut self, transfer: bool) {
        let term = self.term + 1;
        self.reset(term);
        self.role = Role::Candidate;
        self.vote = Some(self.id);
        self.stats.elections_started += 1;
        self.request_votes(false, transfer);
    }

    fn request_votes(&mut self, pre_vote: bool, transfer: bool) {
        let me = self.id;
        self.tracker.record_vote(me, true);
        if self.tracker.vote_result() == VoteResult::Won {
            // A single-voter cluster wins at once.
            if pre_vote {
                self.start_election(transfer);
            } else {
                self.become_leader();
            }
            return;
        }
        let term = if pre_vote { self.term + 1 } else { self.term };
        let (last_index, last_term) = (self.log.last_index(), self.log.last_term());
        for id in self.tracker.config.voters() {
            if id == me {
                continue;
            }
            // A vote request depends on our new term and self-vote being
            // durable, so it always waits for the persist step.
            self.persisted_messages.push(Message {
                from: me,
                to: id,
                term,
                body: Body::Vote {
                    pre_vote,
                    last_index,
                    last_term,
                    transfer,
                },
            });
            self.stats.messages_sent += 1;
        }
    }

    fn become_leader(&mut self) {
        assert_eq!(self.role, Role::Candidate, "only a candidate becomes leader");
        let term = self.term;
        self.reset(term);
        self.role = Role::Leader;
        self.leader = Some(self.id);
        self.stats.times_leader += 1;
        self.uncommitted_bytes = 0;
        let (next, persisted) = (self.log.last_index() + 1, self.log.persisted());
        self.tracker.reset(next, self.id, persisted);
        // §8: a no-op of our term lets us commit (and so learn) everything
        // committed before us, and makes ReadIndex safe.
        let noop = Entry {
            index: next,
            term,
            kind: EntryKind::Noop,
            data: Bytes::new(),
        };
        self.log.append_own(noop);
        self.broadcast_pending = true;
    }

    // ----- elections -------------------------------------------------------

    fn handle_vote(&mut self, from: NodeId, msg_term: Term, pre_vote: bool, last_index: Index, last_term: Term) {
        // §5.2/§5.4: grant if we have not voted for someone else this term
        // and the candidate's log is at least as up to date as ours. A
        // pre-vote for a future term is granted on the log check alone
        // (plus the lease check above, in `step`).
        let can_vote = self.vote == Some(from)
            || (self.vote.is_none() && self.leader.is_none())
            || (pre_vote && msg_term > self.term);
        let granted = can_vote && self.log.is_up_to_date(last_index, last_term);
        let reply_term = if granted && pre_vote { msg_term } else { self.term };
        if granted && !pre_vote {
            self.vote = Some(from);
            self.election_elapsed = 0;
        }
        self.persisted_messages.push(Message {
            from: self.id,
            to: from,
            term: reply_term,
            body: Body::VoteResponse { pre_vote, granted },
        });
        self.stats.messages_sent += 1;
    }

    fn handle_vote_response(&mut self, from: NodeId, pre_vote: bool, granted: bool) {
        let expected = if pre_vote { Role::PreCandidate } else { Role::Candidate };
        if self.role != expected {
            return;
        }
        self.tracker.record_vote(from, granted);
        match self.tracker.vote_result() {
            VoteResult::Won if pre_vote => self.start_election(false),
            VoteResult::Won => self.become_leader(),
            VoteResult::Lost => {
                let term = self.term;
                self.become_follower(term, None);
            }
            VoteResult::Pending => {}
        }
    }

    // ----- replication: follower side -------------------------------------

    fn handle_append(&mut self, from: NodeId, prev_index: Index, prev_term: Term, entries: Vec<Entry>, commit: Index) {
        let committed = self.log.committed();
        let (mut prev_index, mut prev_term, mut entries) = (prev_index, prev_term, entries);
        if prev_index < committed {
            // Everything up to our commit index matches any leader's log
            // (Leader Completeness), so skip what we already hold.
            let skip = (committed - prev_index) as usize;
            if entries.len() <= skip {
                self.send_append_response(from, false, committed, 0, 0);
                return;
            }
            entries.drain(..skip);
            prev_index = committed;
            prev_term = self
                .log
                .term(committed)
                .expect("the commit index is in the log or the snapshot");
        }
        match self.log.maybe_append(prev_index, prev_term, commit, &entries) {
            Ok(last_new) => {
                self.note_membership_entries(&entries);
                self.send_append_response(from, false, last_new, 0, 0)
            }
            Err(hint) => self.send_append_response(from, true, prev_index, hint.hint_index, hint.hint_term),
        }
    }

    fn send_append_response(&mut self, to: NodeId, reject: bool, index: Index, hint_index: Index, hint_term: Term) {
        self.send(
            to,
            Body::AppendResponse {
                reject,
                index,
                hint_index,
                hint_term,
            },
        );
    }

    fn handle_snapshot_chunk(
        &mut self,
        from: NodeId,
        meta: SnapshotMeta,
        offset: u64,
        total: u64,
        data: Bytes,
        done: bool,
    ) {
        let index = meta.index;
        if meta.membership.check().is_err() {
            // No leader sends a configuration that cannot decide anything.
            self.stats.invalid_messages += 1;
            return;
        }
        if index <= self.log.committed() {
            // We already have everything it covers.
            self.send(
                from,
                Body::SnapshotResponse {
                    index,
                    next_offset: total,
                    reject: false,
                },
            );
            return;
        }
        if total > self.cfg.max_snapshot_bytes {
            self.send(
                from,
                Body::SnapshotResponse {
                    index,
                    next_offset: 0,
                    reject: true,
                },
            );
            return;
        }
        let same = self
            .incoming_snapshot
            .as_ref()
            .is_some_and(|r| r.meta == meta && r.total == total);
        if !same {
            if offset != 0 {
                // We have nothing of this snapshot: ask for it from the start.
                self.send(
                    from,
                    Body::SnapshotResponse {
                        index,
                        next_offset: 0,
                        reject: false,
                    },
                );
                return;
            }
            self.incoming_snapshot = Some(SnapshotReceiver {
                meta: meta.clone(),
                total,
                buf: Vec::new(),
            });
        }
        let receiver = self.incoming_snapshot.as_mut().expect("set above");
        let held = receiver.buf.len() as u64;
        if offset != held || held + data.len() as u64 > total || (done && held + data.len() as u64 != total) {
            // Out of order, duplicated or malformed: tell the leader where we are.
            self.send(
                from,
                Body::SnapshotResponse {
                    index,
                    next_offset: held,
                    reject: false,
                },
            );
            return;
        }
        receiver.buf.extend_from_slice(&data);
        if !done {
            let next_offset = receiver.buf.len() as u64;
            self.send(
                from,
                Body::SnapshotResponse {
                    index,
                    next_offset,
                    reject: false,
                },
            );
            return;
        }
        if !(self.cfg.snapshot_check)(&receiver.meta, &receiver.buf) {
            // As if the last chunk never came: the leader sends it again.
            receiver.buf.truncate(held as usize);
            self.stats.refused_snapshots += 1;
            return;
        }
        let receiver = self.incoming_snapshot.take().expect("set above");
        let snapshot = Snapshot {
            meta: receiver.meta,
            data: Bytes::from(receiver.buf),
        };
        self.install_snapshot(snapshot);
        self.send(
            from,
            Body::SnapshotResponse {
                index,
                next_offset: total,
                reject: false,
            },
        );
    }

    fn install_snapshot(&mut self, snapshot: Snapshot) {
        let meta = &snapshot.meta;
        self.log.install_snapshot(meta.index, meta.term);
        // The log after the snapshot survives when it agrees with it, and a
        // configuration entry there stays in force (§6: a server uses the
        // latest configuration in its log, committed or not).
        let log = &self.log;
        let kept_after: Vec<(Index, Term, Membership)> = std::mem::take(&mut self.membership_history)
            .into_iter()
            .filter(|(index, term, _)| *index > meta.index && log.term(*index) == Some(*term))
            .collect();
        self.membership_history = vec![(meta.index, meta.term, meta.membership.clone())];
        self.membership_history.extend(kept_after);
        self.membership = self.membership_history.last().expect("never empty").2.clone();
        debug_assert!(self.membership_history.windows(2).all(|w| w[0].0 < w[1].0));
        self.tracker.set_membership(&self.membership, self.log.last_index() + 1);
        self.stats.snapshots_installed += 1;
        self.snapshot = Some(snapshot.clone());
        self.snapshot_to_install = Some(snapshot);
    }

    fn handle_read_index_response(&mut self, request: u64, index: Option<Index>) {
        let Some(pos) = self.forwarded_reads.iter().position(|(r, _)| *r == request) else {
            return;
        };
        let (_, ctx) = self.forwarded_reads.remove(pos).expect("position is valid");
        if let Some(index) = index {
            self.read_states.push(ReadState { index, ctx });
        }
    }

    // ----- replication: leader side ---------------------------------------

    fn handle_append_response(&mut self, from: NodeId, reject: bool, index: Index, hint_index: Index, hint_term: Term) {
        if self.role != Role::Leader {
            return;
        }
        let last = self.log.last_index();
        if !reject && index > last {
            // A follower can only have matched entries this leader sent, in
            // this term: an acknowledgement past our log is forged or
            // corrupted, and counting it could commit what no quorum holds.
            self.stats.invalid_messages += 1;
            return;
        }
        let next_probe = self.log.find_conflict_by_term(hint_index, hint_term);
        let Some(pr) = self.tracker.progress.get_mut(&from) else {
            return;
        };
        pr.recent_active = true;
        if reject {
            if pr.maybe_decrease_to(index, next_probe) {
                if let ProgressState::Replicate = pr.state {
                    pr.become_probe();
                }
                self.send_append(from, true);
            }
            return;
        }
        if pr.maybe_update(index) {
            match pr.state {
                ProgressState::Probe => pr.become_replicate(),
                ProgressState::Replicate => pr.inflights.free_to(index),
                ProgressState::Snapshot(_) => {}
            }
            let matched = pr.matched;
            if self.maybe_commit() {
                self.after_commit();
            }
            if self.transfer.is_some_and(|(to, _)| to == from) && matched == last {
                self.send(from, Body::TimeoutNow);
            }
        } else if let ProgressState::Replicate = pr.state {
            pr.inflights.free_to(index);
        }
        while self.send_append(from, false) {}
    }

    fn handle_heartbeat_response(&mut self, from: NodeId, read_seq: u64) {
        if self.role != Role::Leader {
            return;
        }
        let last = self.log.last_index();
        let Some(pr) = self.tracker.progress.get_mut(&from) else {
            return;
        };
        if read_seq > self.read_seq {
            // A round we never sent: forged or corrupted. Counting it would
            // confirm every later round for this follower in advance.
            self.stats.invalid_messages += 1;
            return;
        }
        pr.recent_active = true;
        pr.read_seq_acked = pr.read_seq_acked.max(read_seq);
        let behind = pr.matched < last;
        match pr.state {
            ProgressState::Probe => {
                pr.probe_sent = false;
                if behind {
                    self.send_append(from, true);
                }
            }
            ProgressState::Replicate if behind => {
                // Appends may have been lost: probe at our `next` with an
                // empty append outside the window. The follower either
                // confirms (freeing the window) or rejects (back to probe).
                self.send_probe_in_replicate(from);
            }
            _ => {}
        }
        self.release_confirmed_reads();
    }

    fn handle_snapshot_response(&mut self, from: NodeId, index: Index, next_offset: u64, reject: bool) {
        if self.role != Role::Leader {
            return;
        }
        let now = self.now;
        let Some(pr) = self.tracker.progress.get_mut(&from) else {
            return;
        };
        pr.recent_active = true;
        let ProgressState::Snapshot(t) = &mut pr.state else {
            return;
        };
        if t.meta.index != index {
            return;
        }
        let total = t.data.len() as u64;
        if reject {
            // The follower refuses this snapshot (too large for it): give up
            // and probe; an operator must look at it. The next transfer
            // waits (`SNAPSHOT_REFUSED_BACKOFF_ELECTIONS`), or the probe's
            // rejection would start one at every heartbeat.
            pr.become_probe();
            pr.snapshot_refused_at = Some(now);
            return;
        }
        t.idle_ticks = 0;
        if next_offset >= total {
            // Installed: the follower holds everything up to `index`.
            pr.matched = pr.matched.max(index);
            pr.next = pr.next.max(index + 1);
            pr.become_probe();
            self.send_append(from, true);
            return;
        }
        if next_offset < t.acked {
            // The follower lost what it had (e.g. it restarted): start over
            // from where it is.
            t.acked = next_offset;
            t.sent = next_offset;
        } else if next_offset == t.acked {
            // No progress: a chunk was lost or overtaken; resend from there.
            t.sent = t.acked;
        } else {
            t.acked = next_offset;
            t.sent = t.sent.max(next_offset);
        }
        debug_assert!(t.acked <= t.sent && t.sent <= total);
        self.send_snapshot_chunks(from);
    }

    /// Sends the next append to `to` if flow control allows. With
    /// `allow_empty` an append without entries is sent too (a probe, or to
    /// carry the commit index). Returns true if entries were sent.
    fn send_append(&mut self, to: NodeId, allow_empty: bool) -> bool {
        if to == self.id {
            return false;
        }
        let last = self.log.last_index();
        let committed = self.log.committed();
        let Some(pr) = self.tracker.progress.get(&to) else {
            return false;
        };
        if !pr.can_send() {
            return false;
        }
        let prev_index = pr.next - 1;
        let Some(prev_term) = self.log.term(prev_index) else {
            let backoff = u64::from(self.cfg.election_tick) * SNAPSHOT_REFUSED_BACKOFF_ELECTIONS;
            if pr.snapshot_refused_at.is_none_or(|at| self.now >= at + backoff) {
                self.start_snapshot_transfer(to);
            }
            return false;
        };
        let entries = if pr.next <= last {
            self.log
                .slice(pr.next, last + 1, self.cfg.max_msg_bytes)
                .expect("next is past the snapshot")
        } else {
            Vec::new()
        };
        if entries.is_empty() && !allow_empty {
            return false;
        }
        let pr = self.tracker.progress.get_mut(&to).expect("checked above");
        let sent_entries = !entries.is_empty();
        match pr.state {
            ProgressState::Replicate => {
                if let Some(e) = entries.last() {
                    let bytes = entries.iter().map(Entry::size).sum();
                    pr.inflights.add(e.index, bytes);
                    pr.next = e.index + 1;
                }
            }
            ProgressState::Probe => pr.probe_sent = true,
            ProgressState::Snapshot(_) => unreachable!("can_send is false while sending a snapshot"),
        }
        self.send(
            to,
            Body::Append {
                prev_index,
                prev_term,
                entries,
                commit: committed,
            },
        );
        sent_entries
    }

    fn send_probe_in_replicate(&mut self, to: NodeId) {
        let Some(pr) = self.tracker.progress.get(&to) else {
            return;
        };
        let prev_index = pr.next - 1;
        let Some(prev_term) = self.log.term(prev_index) else {
            // What the follower needs next is compacted: probing will
            // discover that and switch to sending a snapshot.
            let pr = self.tracker.progress.get_mut(&to).expect("checked above");
            pr.become_probe();
            self.send_append(to, true);
            return;
        };
        let commit = self.log.committed();
        self.send(
            to,
            Body::Append {
                prev_index,
                prev_term,
                entries: Vec::new(),
                commit,
            },
        );
    }

    fn start_snapshot_transfer(&mut self, to: NodeId) {
        let snapshot = self
            .snapshot
            .clone()
            .expect("a compacted log implies we hold a snapshot");
        let pr = self.tracker.progress.get_mut(&to).expect("caller checked");
        pr.become_snapshot(snapshot.meta, snapshot.data);
        self.stats.snapshots_sent += 1;
        self.send_snapshot_chunks(to);
    }

    fn send_snapshot_chunks(&mut self, to: NodeId) {
        let chunk = self.cfg.snapshot_chunk_bytes;
        let me = self.id;
        let term = self.term;
        let Some(pr) = self.tracker.progress.get_mut(&to) else {
            return;
        };
        let ProgressState::Snapshot(t) = &mut pr.state else {
            return;
        };
        let total = t.data.len() as u64;
        let mut out = Vec::new();
        loop {
            let in_window = t.sent.saturating_sub(t.acked) < SNAPSHOT_WINDOW_CHUNKS * chunk;
            let more = t.sent < total || (total == 0 && t.sent == 0 && t.acked == 0 && out.is_empty());
            if !in_window || !more {
                break;
            }
            let end = (t.sent + chunk).min(total);
            let data = t.data.slice(t.sent as usize..end as usize);
            out.push(Message {
                from: me,
                to,
                term,
                body: Body::Snapshot {
                    meta: t.meta.clone(),
                    offset: t.sent,
                    total,
                    data,
                    done: end == total,
                },
            });
            t.sent = end;
            if total == 0 {
                break;
            }
        }
        self.stats.messages_sent += out.len() as u64;
        self.messages.extend(out);
    }

    fn resend_stalled_snapshots(&mut self) {
        let stall = self.cfg.election_tick.max(2) / 2;
        let mut resend = Vec::new();
        for (&id, pr) in self.tracker.progress.iter_mut() {
            if let ProgressState::Snapshot(t) = &mut pr.state {
                t.idle_ticks += self.cfg.heartbeat_tick;
                if t.idle_ticks >= stall {
                    t.idle_ticks = 0;
                    t.sent = t.acked;
                    resend.push(id);
                }
            }
        }
        for id in resend {
            self.send_snapshot_chunks(id);
        }
    }

    fn broadcast_append(&mut self) {
        let ids: Vec<NodeId> = self.tracker.progress.keys().copied().collect();
        let (last, committed) = (self.log.last_index(), self.log.committed());
        for id in ids {
            if id == self.id {
                continue;
            }
            let sent = self.send_append(id, false);
            while self.send_append(id, false) {}
            // Followers that already hold everything still need to learn the
            // new commit index (this runs at most once a tick for a commit
            // alone: see `commit_unsent`).
            let caught_up = self.tracker.progress.get(&id).is_some_and(|p| p.next > last);
            if !sent && caught_up && committed > 0 {
                self.send_append(id, true);
            }
        }
    }

    /// Sends heartbeat round `read_seq + 1` to everyone.
    fn broadcast_heartbeat(&mut self) {
        debug_assert_eq!(self.role, Role::Leader, "only a leader sends heartbeats");
        self.heartbeat_pending = false;
        self.read_seq += 1;
        let read_seq = self.read_seq;
        let me = self.id;
        if let Some(pr) = self.tracker.progress.get_mut(&me) {
            pr.read_seq_acked = read_seq;
        }
        if self.cfg.lease_read {
            if self.rounds.len() == MAX_ROUNDS {
                self.rounds.pop_front();
            }
            self.rounds.push_back((read_seq, self.now));
        }
        debug_assert!(self
            .rounds
            .iter()
            .zip(self.rounds.iter().skip(1))
            .all(|(a, b)| a.0 < b.0 && a.1 <= b.1));
        let ids: Vec<(NodeId, Index)> = self.tracker.progress.iter().map(|(&id, p)| (id, p.matched)).collect();
        let committed = self.log.committed();
        for (id, matched) in ids {
            if id == self.id {
                continue;
            }
            let commit = matched.min(committed);
            self.send(id, Body::Heartbeat { commit, read_seq });
        }
    }

    /// §5.3/§5.4.2: advance the commit index to what a quorum holds, but only
    /// by counting replicas of an entry of the current term (Figure 8).
    fn maybe_commit(&mut self) -> bool {
        let candidate = self.tracker.committed_index();
        let old = self.log.committed();
        if candidate <= old || self.log.term(candidate) != Some(self.term) {
            return false;
        }
        let newly = self.log.bytes_between(old + 1, candidate);
        self.uncommitted_bytes = self.uncommitted_bytes.saturating_sub(newly);
        self.log.commit_to(candidate);
        self.commit_unsent = true;
        // Reads that waited for our first commit can now go ahead.
        if old < candidate && self.log.term(old).is_none_or(|t| t != self.term) {
            // Not on the lease: this can run inside `advance`, after a
            // long fsync for which the host could not catch up ticks.
            for origin in std::mem::take(&mut self.reads_awaiting_commit) {
                let refused = match &origin {
                    ReadOrigin::Remote { from, request } => Some((*from, *request)),
                    ReadOrigin::Local(_) => None, // the host times it out
                };
                if self.leader_read(origin, false).is_err() {
                    // Too many reads pending: say so, so the follower's
                    // client retries now instead of at its timeout.
                    if let Some((from, request)) = refused {
                        self.send(from, Body::ReadIndexResponse { request, index: None });
                    }
                }
            }
        }
        true
    }

    // ----- ReadIndex (§6.4) -------------------------------------------------

    fn committed_in_current_term(&self) -> bool {
        self.log.term(self.log.committed()) == Some(self.term)
    }

    /// Is our lease in force (see [`Config::lease_read`])? A quorum of the
    /// configuration in force acknowledged a heartbeat round we sent less
    /// than `lease_ticks` ago, so each of them refuses votes for a while
    /// yet, and no other leader can be elected before the lease ends.
    fn lease_valid(&self) -> bool {
        if !self.cfg.lease_read || self.role != Role::Leader || self.transfer.is_some() || self.lease_revoked {
            return false;
        }
        let acked = self.tracker.quorum_read_seq();
        match self.rounds.binary_search_by_key(&acked, |&(seq, _)| seq) {
            Ok(i) => {
                let sent = self.rounds[i].1;
                debug_assert!(sent <= self.now, "a round sent in the future");
                self.now < sent + u64::from(self.cfg.lease_ticks())
            }
            Err(_) => false,
        }
    }

    /// Serves a read as leader: at once on the lease ([`Raft::lease_valid`])
    /// when `may_lease` allows it (it does not where the host may not have
    /// caught up its ticks), else after the next heartbeat round (ReadIndex).
    fn leader_read(&mut self, origin: ReadOrigin, may_lease: bool) -> Result<(), ReadIndexError> {
        if self.reads.len() + self.reads_awaiting_commit.len() >= MAX_PENDING_READS {
            return Err(ReadIndexError::Backpressure);
        }
        if !self.committed_in_current_term() {
            // Until our no-op commits we do not know the true commit index.
            self.reads_awaiting_commit.push(origin);
            return Ok(());
        }
        let index = self.log.committed();
        if self.tracker.config.voters().len() == 1 && self.tracker.is_voter(self.id) {
            self.answer_read(origin, index);
            return Ok(());
        }
        if may_lease && self.lease_valid() {
            self.stats.lease_reads += 1;
            self.answer_read(origin, index);
            return Ok(());
        }
        // The next heartbeat round (queued unless it already is) confirms
        // this read and every other read queued before it goes out.
        self.heartbeat_pending = true;
        let seq = self.read_seq + 1;
        self.reads.push_back(PendingRead { seq, index, origin });
        Ok(())
    }

    fn release_confirmed_reads(&mut self) {
        while let Some(front) = self.reads.front() {
            if !self.tracker.read_confirmed(front.seq) {
                break;
            }
            let read = self.reads.pop_front().expect("front exists");
            self.answer_read(read.origin, read.index);
        }
    }

    fn answer_read(&mut self, origin: ReadOrigin, index: Index) {
        match origin {
            ReadOrigin::Local(ctx) => self.read_states.push(ReadState { index, ctx }),
            ReadOrigin::Remote { from, request } => {
                // The follower applies up to `index` before it reads: tell
                // it the commit index first (same stream, so in order).
                if self.tracker.progress.get(&from).is_some_and(|p| p.commit_sent < index) {
                    self.send_append(from, true);
                }
                self.send(
                    from,
                    Body::ReadIndexResponse {
                        request,
                        index: Some(index),
                    },
                )
            }
        }
    }

    // ----- sending -----------------------------------------------------------

    /// Queues a message of the current term. A leader's messages depend on
    /// nothing unpersisted and go out at once; every other message waits
    /// until the host has persisted the state of this `Ready`.
    fn send(&mut self, to: NodeId, body: Body) {
        if let Body::Append { commit, .. } | Body::Heartbeat { commit, .. } = &body {
            if let Some(pr) = self.tracker.progress.get_mut(&to) {
                pr.commit_sent = pr.commit_sent.max(*commit);
            }
        }
        let m = Message {
            from: self.id,
            to,
            term: self.term,
            body,
        };
        self.stats.messages_sent += 1;
        // A leader's appends may leave before its own log is durable (§10.2.1)
        // but not before its term is: a single voter becomes leader in the
        // step that raised its term, and a peer that took its entries could
        // keep them against a different entry of the same term that the
        // leader writes after losing the undurable term in a crash.
        let term_durable = self.prev_hard_state.term == self.term;
        let immediate = self.role == Role::Leader
            && term_durable
            && matches!(
                m.body,
                Body::Append { .. } | Body::Heartbeat { .. } | Body::Snapshot { .. } | Body::TimeoutNow
            );
        if immediate {
            self.messages.push(m);
        } else {
            self.persisted_messages.push(m);
        }
    }
}

impl std::fmt::Debug for Raft {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Raft")
            .field("id", &self.id)
            .field("term", &self.term)
            .field("vote", &self.vote)
            .field("role", &self.role)
            .field("leader", &self.leader)
            .field("last_index", &self.log.last_index())
            .field("committed", &self.log.committed())
            .field("applied", &self.log.applied())
            .field("persisted", &self.log.persisted())
            .finish()
    }
}
