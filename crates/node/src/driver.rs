//! The node's heart: one OS thread that owns the Raft core, the WAL and the
//! replicated store, and runs the core's `Ready` loop in the order the core
//! documents (send, persist + fsync, send what waited for it, apply, advance).
//!
//! Why a dedicated thread: fsync blocks, and blocking here is what makes
//! group commit fall out naturally: while one fsync runs, requests and peer
//! messages pile up in the input channel, and the next loop iteration takes
//! them all into one batch, one append and one fsync.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use crossbeam_channel::{Receiver, RecvTimeoutError};
use tokio::sync::oneshot;
use triton_raft::{Entry, EntryKind, Index, Message, NodeId, Raft, Ready, Role, Snapshot, SnapshotMeta, Term};
use triton_storage::{HardState as WalHardState, LogEntry, SnapshotMeta as WalSnapshotMeta, Wal};
use triton_store::{Command, Store, WriteOp, WriteResult};

use crate::codec::{entry_to_payload, membership_to_pb};
use crate::transport::Outbox;

/// Why a request could not be served here.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NodeError {
    #[error("not the leader")]
    NotLeader { leader: Option<NodeId> },
    #[error("node unavailable: {0}")]
    Unavailable(String),
    #[error("request timed out")]
    Timeout,
}

pub type WriteReply = oneshot::Sender<Result<WriteResult, NodeError>>;
/// A read: runs against the store once it is safe to (or with the error
/// that prevented it). The closure sends its own answer.
pub type Query = Box<dyn FnOnce(Result<&Store, NodeError>) + Send>;
/// An inspection of the store and status, answered even while crashed.
pub type Inspection = Box<dyn FnOnce(&Store, &NodeStatus) + Send>;

/// A snapshot of the node's state for status endpoints.
#[derive(Debug, Clone, Default)]
pub struct NodeStatus {
    pub raft_id: NodeId,
    pub role: String,
    pub term: Term,
    pub leader: Option<NodeId>,
    pub commit_index: Index,
    pub applied_index: Index,
    pub last_index: Index,
    pub snapshot_index: Index,
    pub crashed: bool,
    /// Counters for the metrics endpoint and the dashboard.
    pub metrics: crate::metrics::NodeMetrics,
}

/// Fault injection (only reachable when test RPCs are enabled).
#[derive(Debug)]
pub enum ControlOp {
    Crash,
    Restore,
    Unreachable(HashSet<NodeId>),
    DropReplies(u32),
    IsCrashed(oneshot::Sender<bool>),
}

pub enum Input {
    Peer(Message),
    /// A command to propose (leader only); `data` is an encoded `Command`.
    Write {
        data: Vec<u8>,
        reply: WriteReply,
    },
    /// A read of the store: linearizable (ReadIndex) unless `serializable`.
    Query {
        serializable: bool,
        query: Query,
    },
    /// Inspection of this node's state that answers even while crashed
    /// (test hooks such as SurfStore's GetInternalState).
    Inspect(Inspection),
    /// Campaign now, overriding leases (operator "set leader").
    Campaign,
    /// Leader only: send a heartbeat round now.
    Heartbeat,
    /// The log as this node holds it (for inspection endpoints).
    Log(oneshot::Sender<Vec<Entry>>),
    Status(oneshot::Sender<NodeStatus>),
    Control(ControlOp),
    /// If leader, hand leadership to the most caught-up voter (graceful
    /// shutdown: a rolling restart then causes no election-timeout pause).
    Handover,
    Shutdown,
}

struct PendingRead {
    query: Query,
    deadline: Instant,
    /// Set once the core says the read may be served at this index.
    index: Option<Index>,
}

pub struct DriverOptions {
    pub tick: Duration,
    pub snapshot_threshold: u64,
    pub read_timeout: Duration,
}

pub struct Driver {
    raft: Raft,
    wal: Wal,
    store: Store,
    outbox: Outbox,
    opts: DriverOptions,
    /// Pending proposals: their term, when they were made (for the
    /// apply-latency histogram) and where to answer.
    proposals: BTreeMap<Index, (Term, Instant, WriteReply)>,
    reads: HashMap<u64, PendingRead>,
    next_read_id: u64,
    crashed: bool,
    unreachable: HashSet<NodeId>,
    drop_replies: u32,
    shutting_down: bool,
    metrics: crate::metrics::NodeMetrics,
}

pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Storage failures are not recoverable in place: after a failed fsync the
/// kernel may have dropped the dirty pages (the "fsyncgate" lesson), so the
/// only safe move is to stop and recover from what is durable.
fn fatal(what: &str, err: impl std::fmt::Display) -> ! {
    tracing::error!("fatal storage error while {what}: {err}; stopping so that recovery starts from durable state");
    eprintln!("triton: fatal storage error while {what}: {err}");
    std::process::exit(70);
}

impl Driver {
    pub fn new(raft: Raft, wal: Wal, store: Store, outbox: Outbox, opts: DriverOptions) -> Self {
        assert_eq!(
            store.applied_index(),
            raft.snapshot_index(),
            "store must start at the snapshot"
        );
        Driver {
            raft,
            wal,
            store,
            outbox,
            opts,
            proposals: BTreeMap::new(),
            reads: HashMap::new(),
            next_read_id: 1,
            crashed: false,
            unreachable: HashSet::new(),
            drop_replies: 0,
            shutting_down: false,
            metrics: crate::metrics::NodeMetrics::default(),
        }
    }

    /// Runs until `Shutdown` or until every sender is gone.
    pub fn run(mut self, inputs: Receiver<Input>) {
        let mut next_tick = Instant::now() + self.opts.tick;
        let mut ticks: u64 = 0;
        loop {
            let wait = next_tick.saturating_duration_since(Instant::now());
            match inputs.recv_timeout(wait) {
                Ok(input) => {
                    self.handle(input);
                    // Take everything that queued up meanwhile: one batch.
                    for input in inputs.try_iter().take(4096) {
                        self.handle(input);
                    }
                }
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => self.shutting_down = true,
            }
            if self.shutting_down {
                break;
            }
            let now = Instant::now();
            if now >= next_tick {
                next_tick = now + self.opts.tick;
                ticks += 1;
                if !self.crashed {
                    self.raft.tick();
                    self.expire_reads(now);
                    if ticks.is_multiple_of(10) {
                        self.propose_expirations();
                    }
                }
            }
            if !self.crashed {
                self.process_ready();
            }
        }
        if let Err(e) = self.wal.sync() {
            fatal("syncing at shutdown", e);
        }
        tracing::info!("driver stopped; WAL synced");
    }

    fn handle(&mut self, input: Input) {
        match input {
            Input::Peer(m) => {
                if self.crashed || self.unreachable.contains(&m.from) {
                    return;
                }
                self.raft.step(m);
            }
            Input::Write { data, reply } => {
                self.metrics.writes += 1;
                if self.crashed {
                    let _ = reply.send(Err(NodeError::Unavailable("crashed".into())));
                    return;
                }
                match self.raft.propose(Bytes::from(data)) {
                    Ok((index, term)) => {
                        self.proposals.insert(index, (term, Instant::now(), reply));
                    }
                    Err(triton_raft::ProposeError::NotLeader { leader }) => {
                        let _ = reply.send(Err(NodeError::NotLeader { leader }));
                    }
                    Err(e) => {
                        let _ = reply.send(Err(NodeError::Unavailable(e.to_string())));
                    }
                }
            }
            Input::Query { serializable, query } => {
                self.metrics.reads += 1;
                if self.crashed {
                    query(Err(NodeError::Unavailable("crashed".into())));
                    return;
                }
                if serializable {
                    query(Ok(&self.store));
                    return;
                }
                let id = self.next_read_id;
                self.next_read_id += 1;
                match self.raft.read_index(Bytes::copy_from_slice(&id.to_be_bytes())) {
                    Ok(()) => {
                        let deadline = Instant::now() + self.opts.read_timeout;
                        self.reads.insert(
                            id,
                            PendingRead {
                                query,
                                deadline,
                                index: None,
                            },
                        );
                    }
                    Err(triton_raft::ReadIndexError::NoLeader) => query(Err(NodeError::NotLeader { leader: None })),
                    Err(e) => query(Err(NodeError::Unavailable(e.to_string()))),
                }
            }
            Input::Inspect(f) => {
                let status = self.status();
                f(&self.store, &status);
            }
            Input::Campaign => {
                if !self.crashed {
                    self.raft.force_campaign();
                }
            }
            Input::Heartbeat => {
                if !self.crashed {
                    self.raft.heartbeat_now();
                }
            }
            Input::Log(reply) => {
                let r = &self.raft;
                let _ = reply.send(r.entries(r.snapshot_index() + 1, r.last_index() + 1));
            }
            Input::Status(reply) => {
                let _ = reply.send(self.status());
            }
            Input::Control(op) => self.control(op),
            Input::Handover => {
                if self.raft.is_leader() && !self.crashed {
                    self.begin_handover();
                }
            }
            Input::Shutdown => self.shutting_down = true,
        }
    }

    /// Starts a leadership transfer to the voter with the highest match
    /// index. Returns false if there is nobody to hand over to.
    fn begin_handover(&mut self) -> bool {
        let me = self.raft.id();
        let target = self
            .raft
            .membership()
            .voters
            .iter()
            .copied()
            .filter(|&id| id != me && !self.unreachable.contains(&id))
            .max_by_key(|&id| self.raft.progress_of(id).map_or(0, |(matched, _)| matched));
        match target {
            Some(to) if self.raft.transfer_leader(to).is_ok() => {
                tracing::info!(to, "shutting down: handing leadership over first");
                true
            }
            _ => false,
        }
    }

    fn control(&mut self, op: ControlOp) {
        match op {
            ControlOp::Crash => {
                tracing::warn!("test RPC: crash (frozen, memory kept)");
                self.crashed = true;
                self.fail_waiters(NodeError::Unavailable("crashed".into()));
            }
            ControlOp::Restore => {
                tracing::warn!("test RPC: restore");
                self.crashed = false;
            }
            ControlOp::Unreachable(ids) => {
                tracing::warn!("test RPC: unreachable from {ids:?}");
                self.unreachable = ids;
            }
            ControlOp::DropReplies(n) => self.drop_replies = n,
            ControlOp::IsCrashed(reply) => {
                let _ = reply.send(self.crashed);
            }
        }
    }

    pub fn status(&self) -> NodeStatus {
        let r = &self.raft;
        NodeStatus {
            raft_id: r.id(),
            role: match r.role() {
                Role::Leader => "leader",
                Role::Follower => "follower",
                Role::Candidate => "candidate",
                Role::PreCandidate => "pre-candidate",
            }
            .into(),
            term: r.term(),
            leader: r.leader(),
            commit_index: r.commit_index(),
            applied_index: self.store.applied_index(),
            last_index: r.last_index(),
            snapshot_index: r.snapshot_index(),
            crashed: self.crashed,
            metrics: self.metrics_now(),
        }
    }

    /// The counters plus what the core counts itself and, on a leader, each
    /// peer's replication progress.
    fn metrics_now(&self) -> crate::metrics::NodeMetrics {
        let stats = self.raft.stats();
        let mut m = self.metrics.clone();
        m.elections_started = stats.elections_started;
        m.times_leader = stats.times_leader;
        m.messages_sent = stats.messages_sent;
        m.snapshots_sent = stats.snapshots_sent;
        m.snapshots_installed = stats.snapshots_installed;
        let ms = self.raft.membership();
        let members: std::collections::BTreeSet<NodeId> = ms
            .voters
            .iter()
            .chain(&ms.voters_outgoing)
            .chain(&ms.learners)
            .copied()
            .collect();
        m.peers = members
            .iter()
            .filter(|&&id| id != self.raft.id())
            .filter_map(|&id| {
                self.raft
                    .progress_of(id)
                    .map(|(matched, next)| crate::metrics::PeerProgress { id, matched, next })
            })
            .collect();
        m
    }

    fn fail_waiters(&mut self, err: NodeError) {
        for (_, (_, _, reply)) in std::mem::take(&mut self.proposals) {
            let _ = reply.send(Err(err.clone()));
        }
        for (_, read) in self.reads.drain() {
            (read.query)(Err(err.clone()));
        }
    }

    fn expire_reads(&mut self, now: Instant) {
        let expired: Vec<u64> = self
            .reads
            .iter()
            .filter(|(_, r)| r.deadline <= now)
            .map(|(&id, _)| id)
            .collect();
        for id in expired {
            if let Some(r) = self.reads.remove(&id) {
                (r.query)(Err(NodeError::Timeout));
            }
        }
    }

    /// The leader proposes the removal of expired keys, conditional on their
    /// version, so every replica removes them at the same log position.
    fn propose_expirations(&mut self) {
        if !self.raft.is_leader() {
            return;
        }
        let now = now_ms();
        for (key, version) in self.store.expired(now, 64) {
            let cmd = Command {
                session: None,
                now_ms: now,
                op: WriteOp::Expire { key, version },
            };
            if self.raft.propose(Bytes::from(cmd.encode())).is_err() {
                break;
            }
        }
    }

    fn send(&mut self, messages: Vec<Message>) {
        for m in messages {
            if !self.unreachable.contains(&m.to) {
                self.outbox.send(m);
            }
        }
    }

    fn process_ready(&mut self) {
        while self.raft.has_ready() {
            let mut rd: Ready = self.raft.ready();
            if let Some(ss) = rd.soft_state {
                // Proposals accepted as leader stay pending across a role
                // change: a new leader may keep them; they are answered when
                // their index is applied, or by the client's timeout.
                tracing::info!(term = self.raft.term(), role = ?ss.role, leader = ?ss.leader, "role changed");
            }
            self.send(std::mem::take(&mut rd.messages));
            self.persist(&rd);
            self.send(std::mem::take(&mut rd.persisted_messages));
            if let Some(s) = &rd.snapshot {
                self.install(s);
            }
            for e in rd.committed_entries {
                self.apply(e);
            }
            for rs in rd.read_states {
                let id = u64::from_be_bytes(rs.ctx[..].try_into().unwrap_or([0; 8]));
                if let Some(r) = self.reads.get_mut(&id) {
                    r.index = Some(rs.index);
                }
            }
            self.serve_reads();
            self.raft.advance();
            self.maybe_snapshot();
        }
    }

    /// Step 2 of the `Ready` contract: snapshot, entries, hard state, fsync.
    fn persist(&mut self, rd: &Ready) {
        if let Some(s) = &rd.snapshot {
            let meta = wal_meta(&s.meta);
            if let Err(e) = self.wal.save_snapshot(&meta, &s.data) {
                fatal("saving a received snapshot", e);
            }
        }
        if !rd.entries.is_empty() {
            let entries: Vec<LogEntry> = rd
                .entries
                .iter()
                .map(|e| LogEntry {
                    index: e.index,
                    term: e.term,
                    payload: entry_to_payload(e),
                })
                .collect();
            if let Err(e) = self.wal.append(&entries) {
                fatal("appending to the WAL", e);
            }
        }
        if let Some(hs) = rd.hard_state {
            let hs = WalHardState {
                term: hs.term,
                vote: hs.vote.unwrap_or(0),
                commit: hs.commit,
            };
            if let Err(e) = self.wal.set_hard_state(hs) {
                fatal("writing the hard state", e);
            }
        }
        if rd.must_sync() {
            if let Err(e) = self.wal.sync() {
                fatal("syncing the WAL", e);
            }
        }
    }

    fn install(&mut self, s: &Snapshot) {
        match Store::restore(&s.data) {
            Ok(store) => {
                tracing::info!(
                    index = s.meta.index,
                    term = s.meta.term,
                    "installed snapshot from leader"
                );
                self.store = store;
                self.proposals.retain(|&i, _| i > s.meta.index);
            }
            Err(e) => fatal("restoring a snapshot received from the leader", e),
        }
    }

    fn apply(&mut self, e: Entry) {
        let result = match e.kind {
            EntryKind::Command => Some(self.store.apply(e.index, &e.data)),
            EntryKind::Noop | EntryKind::Membership => {
                self.store.skip(e.index);
                None
            }
        };
        // Answer the proposal made at this index, if it is this entry;
        // proposals at or below it that lost their slot to another leader's
        // entry are answered as not committed (the client retries).
        while let Some((&index, _)) = self.proposals.first_key_value() {
            if index > e.index {
                break;
            }
            let (_, (term, proposed_at, reply)) = self.proposals.pop_first().expect("checked");
            if index == e.index && term == e.term {
                if let Some(r) = result {
                    self.metrics.writes_applied += 1;
                    self.metrics.apply_latency.observe(proposed_at.elapsed());
                    if self.drop_replies > 0 {
                        self.drop_replies -= 1;
                        tracing::warn!(index, "test RPC: dropping this reply");
                        drop(reply);
                    } else {
                        let _ = reply.send(Ok(r));
                    }
                }
            } else {
                let leader = self.raft.leader();
                let _ = reply.send(Err(NodeError::NotLeader { leader }));
            }
        }
    }

    fn serve_reads(&mut self) {
        let applied = self.store.applied_index();
        let ready: Vec<u64> = self
            .reads
            .iter()
            .filter(|(_, r)| r.index.is_some_and(|i| i <= applied))
            .map(|(&id, _)| id)
            .collect();
        for id in ready {
            let r = self.reads.remove(&id).expect("listed above");
            (r.query)(Ok(&self.store));
        }
    }

    /// Bounds the log: once enough entries are applied past the last
    /// snapshot, snapshot the store, persist it, and compact the core's log.
    fn maybe_snapshot(&mut self) {
        let applied = self.store.applied_index();
        if applied < self.raft.snapshot_index() + self.opts.snapshot_threshold || applied > self.raft.applied_index() {
            return;
        }
        let term = self.raft.term_at(applied).expect("applied entry is in the log");
        let data = self.store.snapshot();
        let meta = SnapshotMeta {
            index: applied,
            term,
            membership: self.raft.membership().clone(),
        };
        if let Err(e) = self.wal.save_snapshot(&wal_meta(&meta), &data) {
            fatal("saving a snapshot", e);
        }
        self.raft
            .compact(applied, Bytes::from(data))
            .expect("compacting an applied index");
        tracing::info!(index = applied, "took a snapshot and compacted the log");
    }
}

pub fn wal_meta(m: &SnapshotMeta) -> WalSnapshotMeta {
    use prost::Message as _;
    WalSnapshotMeta {
        index: m.index,
        term: m.term,
        membership: membership_to_pb(&m.membership).encode_to_vec(),
    }
}
