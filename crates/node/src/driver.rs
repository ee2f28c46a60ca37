//! The node's heart: one OS thread that owns the Raft core, the WAL and the
//! replicated store, and runs the core's `Ready` loop in the order the core
//! documents (send, persist + fsync, send what waited for it, apply, advance).
//!
//! Why a dedicated thread: fsync blocks, and blocking here is what makes
//! group commit fall out naturally: while one fsync runs, requests and peer
//! messages pile up in the input channel, and the next loop iteration takes
//! them all into one batch, one append and one fsync.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::Write;
use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use crossbeam_channel::{Receiver, RecvTimeoutError};
use tokio::sync::oneshot;
use triton_raft::{
    Body, ConfChange, ConfChangeError, Entry, EntryKind, Index, Membership, Message, NodeId, Raft, Ready, Role,
    Snapshot, SnapshotMeta, Term, TransferError,
};
use triton_storage::{HardState as WalHardState, LogEntry, SnapshotMeta as WalSnapshotMeta, Wal};
use triton_store::{Command, Store, WriteOp, WriteResult};

use crate::clock::TickClock;
use crate::codec::{entry_to_payload, membership_to_pb};
use crate::members::AddressBook;
use crate::transport::Outbox;

/// Why a request could not be served here.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NodeError {
    #[error("not the leader")]
    NotLeader { leader: Option<NodeId> },
    #[error("node unavailable: {0}")]
    Unavailable(String),
    /// Not proposed (the node is overloaded or shutting down, or a
    /// leadership transfer is under way): nothing was applied, so the
    /// request may be sent again. `Unavailable` after a write may hide a
    /// write that commits anyway.
    #[error("not done: {0}")]
    Rejected(String),
    #[error("request timed out")]
    Timeout,
    /// The write does not fit one log record and one message between
    /// nodes (see [`crate::service::command_limit`]); nothing was proposed.
    #[error("the request's {bytes} bytes are over the cluster's limit of {limit}")]
    TooLarge { bytes: usize, limit: usize },
}

pub type WriteReply = oneshot::Sender<Result<WriteResult, NodeError>>;

/// Why a membership change or leadership transfer was not done.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AdminError {
    #[error(transparent)]
    Node(#[from] NodeError),
    /// The leader refused it (another change pending, a learner not caught
    /// up, an impossible change): the message says which.
    #[error("{0}")]
    Refused(String),
}

/// The answer to a membership change: the configuration once it is applied.
pub type ConfReply = oneshot::Sender<Result<Membership, AdminError>>;
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
    /// The configuration in force (the latest in this node's log).
    pub membership: Membership,
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
    /// A command to propose (leader only); `data` is an encoded `Command`
    /// stamped with `stamped_ms` (the wall clock when it was made), which
    /// the driver may lower (see `LogClock`).
    Write {
        data: Vec<u8>,
        stamped_ms: u64,
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
    /// Members' addresses learned outside the log (a join's answer): into
    /// the address book, with a sender to each.
    LearnAddresses(Vec<(NodeId, String)>),
    /// A membership change (leader only), answered once its entry is
    /// applied. `addr` is the new member's address for `AddLearner`.
    ConfChange {
        change: ConfChange,
        addr: Option<String>,
        reply: ConfReply,
    },
    /// Hand leadership to `to` (leader only); answered once started.
    TransferLeader {
        to: NodeId,
        reply: oneshot::Sender<Result<(), AdminError>>,
    },
    /// If leader, hand leadership to the most caught-up voter (graceful
    /// shutdown: a rolling restart then causes no election-timeout pause).
    Handover,
    Shutdown,
}

/// A write received in this batch, proposed once the batch's commits are
/// answered.
struct QueuedWrite {
    data: Vec<u8>,
    stamped_ms: u64,
    reply: WriteReply,
    received: Instant,
}

struct PendingRead {
    query: Query,
    deadline: Instant,
    /// Set once the core says the read may be served at this index.
    index: Option<Index>,
}

pub struct DriverOptions {
    /// Where members' addresses live (shared with the services, for
    /// redirects) and the directory that keeps them across restarts.
    pub addresses: Arc<RwLock<AddressBook>>,
    pub data_dir: PathBuf,
    pub tick: Duration,
    pub snapshot_threshold: u64,
    pub read_timeout: Duration,
    /// Where the driver publishes the leader it knows of (0: none); see
    /// `NodeHandle::leader`.
    pub leader: Arc<std::sync::atomic::AtomicU64>,
    /// Told when the configuration in force names a member whose address
    /// this node does not know (`server::learn_missing_addresses` asks the
    /// known members).
    pub addresses_wanted: Arc<tokio::sync::Notify>,
}

pub struct Driver {
    raft: Raft,
    /// Ticks that fell due while crashed (frozen): delivered at restore.
    ticks_owed: u64,
    /// Test-only (`TRITON_UNSAFE_TIMER_TICKS=1`): at most one tick per
    /// wake-up, the timer-driven clock this node had before lease reads,
    /// which under-counts a stall. It exists so a test can show that
    /// `triton verify` catches the stale lease reads it causes.
    unsafe_timer_ticks: bool,
    wal: Wal,
    store: Store,
    outbox: Outbox,
    opts: DriverOptions,
    /// Pending proposals: their term, when they were made (for the
    /// apply-latency histogram) and where to answer.
    proposals: BTreeMap<Index, (Term, Instant, WriteReply)>,
    /// Pending membership changes by index.
    conf_changes: BTreeMap<Index, (Term, ConfReply)>,
    reads: HashMap<u64, PendingRead>,
    next_read_id: u64,
    crashed: bool,
    unreachable: HashSet<NodeId>,
    drop_replies: u32,
    shutting_down: bool,
    metrics: crate::metrics::NodeMetrics,
    /// A commit-only hard state was written but not synced (see
    /// [`needs_sync`]); the next fsync, or the next tick, makes it durable.
    commit_unsynced: bool,
    /// Writes received since the last batch was proposed (see `run`).
    queued_writes: Vec<QueuedWrite>,
    /// The term and vote of the last hard state made durable by an fsync
    /// (see [`needs_sync`]).
    synced_term_vote: (Term, NodeId),
    /// Bytes of log applied since the last snapshot (taken or installed):
    /// with the store's size, decides when the next snapshot is due.
    log_bytes_since_snapshot: u64,
    /// What a leader stamps on commands.
    log_clock: LogClock,
    /// Expire proposals not applied yet.
    pending_expiries: PendingExpiries,
}

/// What one log entry costs beyond its data, in the WAL and in memory
/// (index, term, kind, framing), for the snapshot amortization rule.
const LOG_ENTRY_OVERHEAD_BYTES: u64 = 32;

pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// How many keys one expiry scan (every 10 ticks) proposes to remove.
const EXPIRES_PER_SCAN: usize = 64;

/// The time a leader stamps on commands ([`Command::now_ms`]): the log's
/// clock, by which every replica judges expiry when it applies them
/// (`Store::clock_ms` is the latest stamp applied, and never goes back).
///
/// A leader's wall clock may be wrong. One running a minute fast would, if
/// trusted, move the log's clock a minute ahead for good: every file with
/// less than a minute to live would expire cluster-wide at once, and reads
/// (which judge by `max(local clock, store clock)`) would see time stand
/// still until real time caught up. So a stamp advances at most as fast as
/// real time from what other leaders stamped:
///
/// `stamp = max(store clock, min(wall clock, reference + elapsed + SLACK_MS))`
///
/// where `reference` is a stamp applied on this node (one that moved the
/// store's clock, so the driver knows it), `elapsed` the time
/// since on this node's monotonic clock, and `SLACK_MS` absorbs the delay
/// between the other leader stamping and this node applying, and small
/// differences between clocks. Of all such references, the one that puts
/// the cluster's time highest now is kept. What counts as a reference:
/// - only commands proposed in a term this node did not lead since it
///   started: its own (possibly clamped) stamps would let it run ahead by
///   `SLACK_MS` per command;
/// - only entries this process appended (received or proposed), not ones
///   replayed from the WAL at startup, whose apply time says nothing of
///   when they were stamped;
/// - not a stamp more than [`LogClock::MAX_LAG_MS`] behind this node's wall
///   clock when applied (a lagging follower catching up on old entries):
///   it says little about real time, and would hold a correct leader's
///   stamps far behind. So a wall clock more than that far ahead is not
///   caught either.
///
/// With no reference (a single node, or a leader that has applied nothing
/// another leader stamped since it started), the wall clock is used.
/// Leaders whose clocks are all fast can still each add `SLACK_MS` to the
/// previous one's stamps, once per change of leader (not per command).
/// Apply stays deterministic: the stamp is in the command.
///
/// Deadlines (a file's `exptime`) are computed by the file server from the
/// wall clock and are not moved: a leader whose clock is off by X writes
/// deadlines off by X, as any node whose clock is off by X judges reads X
/// early or late. Nodes' clocks are assumed to agree to within the
/// precision users need for expiry.
#[derive(Debug)]
pub(crate) struct LogClock {
    /// Entries from this index on were appended by this process.
    live_from: Index,
    /// A stamp applied on this node and when (see above).
    reference: Option<(u64, Instant)>,
    /// Terms this node led since it started (the latest few).
    led: Vec<Term>,
    /// When the last "clock ahead" warning was logged.
    warned: Option<Instant>,
}

impl LogClock {
    /// How far a stamp may run ahead of the reference plus elapsed time.
    pub(crate) const SLACK_MS: u64 = 1_000;
    /// A stamp this far behind this node's wall clock when applied is not
    /// a reference (see [`LogClock`]).
    pub(crate) const MAX_LAG_MS: u64 = 5 * 60_000;
    /// How many of the terms it led a node remembers.
    const LED_TERMS: usize = 8;

    pub(crate) fn new(live_from: Index) -> Self {
        LogClock {
            live_from,
            reference: None,
            led: Vec::new(),
            warned: None,
        }
    }

    /// This node leads in `term`: its stamps of that term are its own.
    pub(crate) fn leading(&mut self, term: Term) {
        if !self.led.contains(&term) {
            if self.led.len() == Self::LED_TERMS {
                self.led.remove(0);
            }
            self.led.push(term);
        }
    }

    /// A command at `index` of `term`, stamped `stamp_ms`, was applied at
    /// `at`, when this node's wall clock read `wall_ms`.
    pub(crate) fn applied(&mut self, index: Index, term: Term, stamp_ms: u64, wall_ms: u64, at: Instant) {
        if index < self.live_from || self.led.contains(&term) || stamp_ms.saturating_add(Self::MAX_LAG_MS) < wall_ms {
            return;
        }
        let higher = match self.reference {
            None => true,
            Some((stamp, then)) => stamp_ms > stamp.saturating_add(elapsed_ms(then, at)),
        };
        if higher {
            self.reference = Some((stamp_ms, at));
        }
    }

    /// The stamp for a command made at wall time `wall_ms`, proposed at
    /// `at` with the store's clock at `clock_ms`.
    pub(crate) fn stamp(&self, wall_ms: u64, clock_ms: u64, at: Instant) -> u64 {
        let wall = match self.reference {
            Some((stamp, then)) => wall_ms.min(
                stamp
                    .saturating_add(elapsed_ms(then, at))
                    .saturating_add(Self::SLACK_MS),
            ),
            None => wall_ms,
        };
        clock_ms.max(wall)
    }

    /// Whether to log that the wall clock is ahead (once a minute).
    fn should_warn(&mut self, now: Instant) -> bool {
        if self
            .warned
            .is_some_and(|t| now.duration_since(t) < Duration::from_secs(60))
        {
            return false;
        }
        self.warned = Some(now);
        true
    }
}

/// Milliseconds from `then` to `now` (0 if `now` is earlier).
fn elapsed_ms(then: Instant, now: Instant) -> u64 {
    u64::try_from(now.saturating_duration_since(then).as_millis()).unwrap_or(u64::MAX)
}

/// Most `Expire` proposals a leader keeps in flight.
const MAX_PENDING_EXPIRIES: usize = 1024;

/// The leader's `Expire` proposals not applied yet, so that a scan does not
/// propose a removal again while the first proposal is still on its way
/// (a commit slower than the scan interval, or more keys expired than one
/// scan takes, used to propose the same keys every scan). Cleared when the
/// role changes: a new leader's scan starts afresh, and an old leader's
/// proposals may never apply.
#[derive(Debug, Default)]
pub(crate) struct PendingExpiries {
    by_index: BTreeMap<Index, (Vec<u8>, u64)>,
    keys: HashSet<(Vec<u8>, u64)>,
}

impl PendingExpiries {
    /// Up to `limit` keys expired at `now_ms` (with their versions) whose
    /// removal is not pending, earliest deadlines first as
    /// [`Store::expired`] picks them; none while
    /// [`MAX_PENDING_EXPIRIES`] are in flight.
    pub(crate) fn to_propose(&self, store: &Store, now_ms: u64, limit: usize) -> Vec<(Vec<u8>, u64)> {
        let room = MAX_PENDING_EXPIRIES.saturating_sub(self.keys.len()).min(limit);
        if room == 0 {
            return Vec::new();
        }
        store
            .expired(now_ms, room + self.keys.len())
            .into_iter()
            .filter(|kv| !self.keys.contains(kv))
            .take(room)
            .collect()
    }

    /// The removal of `key` at `version` was proposed at `index`.
    pub(crate) fn proposed(&mut self, index: Index, key: Vec<u8>, version: u64) {
        self.keys.insert((key.clone(), version));
        let previous = self.by_index.insert(index, (key, version));
        debug_assert!(previous.is_none(), "two proposals at index {index}");
    }

    /// Entries up to `index` are applied (or installed by a snapshot):
    /// whatever was proposed there is no longer in flight.
    pub(crate) fn applied_through(&mut self, index: Index) {
        while let Some(entry) = self.by_index.first_entry() {
            if *entry.key() > index {
                break;
            }
            let removed = self.keys.remove(&entry.remove());
            debug_assert!(removed, "pending expiry missing from its key set");
        }
    }

    pub(crate) fn clear(&mut self) {
        self.by_index.clear();
        self.keys.clear();
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        debug_assert_eq!(self.by_index.len(), self.keys.len());
        self.by_index.len()
    }
}

/// Storage failures are not recoverable in place: after a failed fsync the
/// kernel may have dropped the dirty pages (the "fsyncgate" lesson), so the
/// only safe move is to stop and recover from what is durable.
fn fatal(what: &str, err: impl std::fmt::Display) -> ! {
    tracing::error!("fatal storage error while {what}: {err}; stopping so that recovery starts from durable state");
    // Not `eprintln!`: it panics when stderr cannot be written, and on a
    // full disk the log file cannot (a panic here once left a node running
    // without its driver).
    let _ = writeln!(std::io::stderr(), "triton: fatal storage error while {what}: {err}");
    std::process::exit(70);
}

/// The core's `Config::snapshot_check`: whether a snapshot received from a
/// leader restores (decodes, and holds a store applied to the snapshot's
/// index). One that does not is refused by the core, so this node stays
/// behind with the error in its log; it used to stop the node (exit 70),
/// and anyone able to send a peer message could stop any follower that way.
/// Each refusal of the same snapshot is logged once.
pub(crate) fn snapshot_restores(meta: &SnapshotMeta, data: &[u8]) -> bool {
    static LAST_REFUSED: std::sync::Mutex<Option<(Index, Term)>> = std::sync::Mutex::new(None);
    let e = match Store::restore_at(data, meta.index) {
        Ok(store) => {
            CHECKED_SNAPSHOT.set(Some((meta.index, meta.term, store)));
            return true;
        }
        Err(e) => e,
    };
    let mut last = LAST_REFUSED.lock().unwrap_or_else(|e| e.into_inner());
    if *last != Some((meta.index, meta.term)) {
        *last = Some((meta.index, meta.term));
        tracing::error!(
            index = meta.index,
            term = meta.term,
            "refusing a snapshot from the leader that does not restore ({e}); this node stays behind \
             until its leader sends one that does (further refusals of this one are not logged)"
        );
    }
    false
}

thread_local! {
    /// The store [`snapshot_restores`] built while the core checked a
    /// snapshot, by (index, term): the core installs that snapshot in the
    /// same `Ready`, and restoring a large store twice doubled the time a
    /// follower took to catch up. Thread-local: each node's core and driver
    /// run on the node's own driver thread, so nodes sharing a process never
    /// see each other's.
    static CHECKED_SNAPSHOT: std::cell::RefCell<Option<(Index, Term, Store)>> =
        const { std::cell::RefCell::new(None) };
}

/// The store in a snapshot the core installs: the one built when it passed
/// [`snapshot_restores`] on this thread, or else restored again, which
/// cannot fail but for a broken store, which stops the node.
fn restore_snapshot(s: &Snapshot) -> Store {
    if let Some((index, term, store)) = CHECKED_SNAPSHOT.take() {
        if (index, term) == (s.meta.index, s.meta.term) {
            debug_assert_eq!(store.applied_index(), s.meta.index);
            return store;
        }
    }
    match Store::restore_at(&s.data, s.meta.index) {
        Ok(store) => store,
        Err(e) => fatal("restoring a snapshot received from the leader", e),
    }
}

/// The id users see (the config's, from 0) for Raft id `id` (from 1).
pub(crate) fn user_id(id: NodeId) -> u64 {
    debug_assert!(id > 0, "Raft id 0 is nobody");
    id.saturating_sub(1)
}

impl Driver {
    pub fn new(raft: Raft, wal: Wal, store: Store, outbox: Outbox, opts: DriverOptions) -> Self {
        assert_eq!(
            store.applied_index(),
            raft.snapshot_index(),
            "store must start at the snapshot"
        );
        // Recovery read this from disk: it is durable.
        let durable = wal.hard_state();
        Driver {
            ticks_owed: 0,
            unsafe_timer_ticks: {
                let on = std::env::var_os("TRITON_UNSAFE_TIMER_TICKS").is_some_and(|v| v == "1");
                if on {
                    tracing::warn!("TRITON_UNSAFE_TIMER_TICKS=1: ticks under-count stalls; lease reads are unsafe");
                }
                on
            },
            wal,
            store,
            outbox,
            opts,
            proposals: BTreeMap::new(),
            conf_changes: BTreeMap::new(),
            reads: HashMap::new(),
            next_read_id: 1,
            crashed: false,
            unreachable: HashSet::new(),
            drop_replies: 0,
            shutting_down: false,
            metrics: crate::metrics::NodeMetrics::default(),
            log_bytes_since_snapshot: 0,
            synced_term_vote: (durable.term, durable.vote),
            queued_writes: Vec::new(),
            commit_unsynced: false,
            // Entries after the recovered log are appended by this process.
            log_clock: LogClock::new(raft.last_index() + 1),
            pending_expiries: PendingExpiries::default(),
            raft,
        }
    }

    /// Runs until `Shutdown` or until every sender is gone.
    pub fn run(mut self, inputs: Receiver<Input>) {
        let mut clock = TickClock::start(self.opts.tick);
        loop {
            match inputs.recv_timeout(clock.until_next()) {
                Ok(input) => {
                    // Every due tick before each input (see `clock`).
                    self.deliver_due_ticks(&mut clock);
                    self.handle(input);
                    // Take everything that queued up meanwhile: one batch.
                    for input in inputs.try_iter().take(4096) {
                        self.deliver_due_ticks(&mut clock);
                        self.handle(input);
                    }
                }
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => self.shutting_down = true,
            }
            if self.shutting_down {
                break;
            }
            self.deliver_due_ticks(&mut clock);
            if !self.crashed {
                // First what the peers' acknowledgements allow: commit, apply
                // and answer. A `Ready` without new entries needs no fsync
                // (see `needs_sync`), so these replies do not wait for the
                // disk. Then propose every write that queued up, as one
                // batch: one append to each follower, one WAL append, one
                // fsync. Proposing first would put the new entries into the
                // same `Ready` as the commits, and every reply would wait
                // for the next batch's fsync before it could be applied.
                self.process_ready();
                self.propose_queued();
                self.process_ready();
            }
        }
        if let Err(e) = self.wal.sync() {
            fatal("syncing at shutdown", e);
        }
        tracing::info!("driver stopped; WAL synced");
    }

    /// Feeds the core every tick due by now. A crashed (frozen) node gets
    /// none; at restore it gets what it missed at once, as a process back
    /// from SIGSTOP would (a non-leader's share capped, see below).
    fn deliver_due_ticks(&mut self, clock: &mut TickClock) {
        let before = clock.delivered();
        let mut due = clock.take_due() + std::mem::take(&mut self.ticks_owed);
        if self.crashed {
            // Counted (so the loop still sleeps a tick at a time), owed.
            self.ticks_owed = due;
            return;
        }
        if due == 0 {
            return;
        }
        if self.commit_unsynced {
            // Bounds how far the durable commit index lags, to a tick, when
            // no write comes to carry it along.
            self.sync_wal();
            // The fsync took time: count it too, so the core decides nothing
            // on a count that lags.
            due += clock.take_due();
        }
        if self.unsafe_timer_ticks {
            due = due.min(1);
        }
        // After a long stall a non-leader needs enough ticks to time out
        // once, not one election per timeout it slept through. Counting
        // fewer only makes it refuse votes longer (safe for leases); a
        // leader's count is never cut, since its lease runs on it.
        let follower_cap = 2 * u64::from(self.raft.config().election_tick) + 1;
        let mut as_follower = 0;
        for _ in 0..due {
            if !self.raft.is_leader() {
                as_follower += 1;
                if as_follower > follower_cap {
                    break;
                }
            }
            self.raft.tick();
        }
        self.expire_reads(Instant::now());
        if before / 10 != clock.delivered() / 10 {
            self.propose_expirations();
        }
    }

    fn handle(&mut self, input: Input) {
        match input {
            Input::Peer(m) => {
                if self.crashed || self.unreachable.contains(&m.from) {
                    return;
                }
                if let Body::Vote {
                    pre_vote,
                    last_index,
                    last_term,
                    transfer,
                } = m.body
                {
                    // Elections are rare and operators ask why one took long.
                    tracing::info!(
                        from = m.from,
                        term = m.term,
                        pre_vote,
                        transfer,
                        last_index,
                        last_term,
                        our_term = self.raft.term(),
                        our_last_index = self.raft.last_index(),
                        our_last_term = self.raft.last_term(),
                        our_leader = ?self.raft.leader(),
                        "vote request"
                    );
                }
                self.raft.step(m);
            }
            Input::Write {
                data,
                stamped_ms,
                reply,
            } => {
                self.metrics.writes += 1;
                if self.crashed {
                    let _ = reply.send(Err(NodeError::Unavailable("crashed".into())));
                    return;
                }
                // Proposed after this batch's commits are answered (see `run`).
                self.queued_writes.push(QueuedWrite {
                    data,
                    stamped_ms,
                    reply,
                    received: Instant::now(),
                });
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
                    if let Err(e) = self.raft.force_campaign() {
                        tracing::warn!("campaign request refused: {e}");
                    }
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
            Input::LearnAddresses(addrs) => self.learn_addresses(&addrs),
            Input::ConfChange { change, addr, reply } => self.conf_change(change, addr, reply),
            Input::TransferLeader { to, reply } => {
                let result = if self.crashed {
                    Err(NodeError::Unavailable("crashed".into()).into())
                } else {
                    self.raft.transfer_leader(to).map_err(|e| match e {
                        TransferError::NotLeader { leader } => NodeError::NotLeader { leader }.into(),
                        TransferError::NotVoter(id) => {
                            AdminError::Refused(format!("node {} is not a voter", user_id(id)))
                        }
                    })
                };
                let _ = reply.send(result);
            }
            Input::Handover => {
                if self.raft.is_leader() && !self.crashed {
                    self.begin_handover();
                }
            }
            Input::Shutdown => self.shutting_down = true,
        }
    }

    fn conf_change(&mut self, change: ConfChange, addr: Option<String>, reply: ConfReply) {
        if self.crashed {
            let _ = reply.send(Err(NodeError::Unavailable("crashed".into()).into()));
            return;
        }
        if !self.raft.is_leader() {
            let leader = self.raft.leader();
            let _ = reply.send(Err(NodeError::NotLeader { leader }.into()));
            return;
        }
        // The entry carries the address book with the newcomer's address.
        // The book itself changes only once the proposal is accepted: a
        // refused change (say, an id that is already a voter) must not
        // redirect a member's traffic, nor spread with the next entry.
        let mut book = self.opts.addresses.read().expect("address book lock").clone();
        let newcomer = match (change, addr) {
            (ConfChange::AddLearner(id), Some(addr)) => {
                let checked = self.check_newcomer(&book, id, &addr);
                if let Err(why) = checked.and_then(|()| book.insert(id, &addr).map_err(|e| e.to_string())) {
                    let _ = reply.send(Err(AdminError::Refused(why)));
                    return;
                }
                Some((id, addr))
            }
            _ => None,
        };
        match self.raft.propose_conf_change(change, Bytes::from(book.encode())) {
            Ok((index, term)) => {
                tracing::info!(?change, index, "proposed a membership change");
                // The leader must know where a newcomer is before the entry
                // is in force (that is, as soon as it is appended).
                if let Some(newcomer) = newcomer {
                    self.learn_addresses(&[newcomer]);
                }
                self.conf_changes.insert(index, (term, reply));
            }
            Err(ConfChangeError::NotLeader { leader }) => {
                let _ = reply.send(Err(NodeError::NotLeader { leader }.into()));
            }
            Err(e) => {
                let _ = reply.send(Err(AdminError::Refused(e.describe(|id| user_id(id).to_string()))));
            }
        }
    }

    /// Why node `id` at `addr` cannot be added as a learner: it is already a
    /// member at another address (a new node reusing a member's id would be
    /// taken for it, with none of its log or vote), or another member has
    /// that address. A member re-added at its own address is left to the
    /// core, which refuses it as already a member.
    fn check_newcomer(&self, book: &AddressBook, id: NodeId, addr: &str) -> Result<(), String> {
        let members = self.raft.membership().all_nodes();
        // Spelled alike before comparing: `LOCALHOST:7001` is `localhost:7001`.
        let same = triton_config::same_host_port;
        if members.contains(&id) && book.get(id).is_some_and(|known| !same(known, addr)) {
            return Err(format!(
                "node {} is already a member, at {}; remove it before adding a node with its id elsewhere",
                user_id(id),
                book.get(id).unwrap_or_default()
            ));
        }
        if let Some((other, _)) = book
            .iter()
            .find(|&(other, a)| other != id && members.contains(&other) && same(a, addr))
        {
            return Err(format!("address {addr} belongs to member node {}", user_id(other)));
        }
        Ok(())
    }

    /// Records addresses (from an admin request or a membership entry),
    /// saves the book if it changed, and makes sure there is a sender to
    /// every member we know an address for.
    fn learn_addresses(&mut self, addrs: &[(NodeId, String)]) {
        let mut book = self.opts.addresses.write().expect("address book lock");
        let mut changed = false;
        for (id, addr) in addrs {
            match book.insert(*id, addr) {
                Ok(new) => changed |= new,
                // Callers check; the file must never hold what `load` refuses.
                Err(e) => tracing::warn!("ignoring a member address: {e}"),
            }
        }
        if !changed {
            return;
        }
        if let Err(e) = book.save(&self.opts.data_dir) {
            fatal("saving the member addresses", e);
        }
        let me = self.raft.id();
        for (id, addr) in book.iter().filter(|(id, _)| *id != me) {
            self.outbox.add_peer(id, addr);
        }
    }

    /// Once a configuration is committed (`committed`: one a membership
    /// change applied made, or an installed snapshot's): forgets the
    /// addresses of, and stops the senders to, nodes that are members
    /// neither of it nor of the one in force (a later one, not yet
    /// committed, which a new leader may still replace). So a removed node's
    /// streams are refused and nobody keeps dialling it; if it is added
    /// again, its membership entry carries its address again.
    fn forget_removed_members(&mut self, committed: &Membership) {
        let mut keep = committed.all_nodes();
        keep.extend(self.raft.membership().all_nodes());
        let me = self.raft.id();
        let mut book = self.opts.addresses.write().expect("address book lock");
        let gone: Vec<NodeId> = book
            .iter()
            .map(|(id, _)| id)
            .filter(|id| *id != me && !keep.contains(id))
            .collect();
        if gone.is_empty() {
            return;
        }
        for &id in &gone {
            book.remove(id);
            self.outbox.remove_peer(id);
        }
        if let Err(e) = book.save(&self.opts.data_dir) {
            fatal("saving the member addresses", e);
        }
        tracing::info!(
            "forgot the addresses of nodes removed from the cluster: {:?}",
            gone.iter().map(|&id| user_id(id)).collect::<Vec<_>>()
        );
    }

    /// Addresses carried by membership entries this node just wrote.
    fn learn_from_entries(&mut self, entries: &[Entry]) {
        let carried = AddressBook::from_entries(entries);
        if !carried.is_empty() {
            let learned: Vec<(NodeId, String)> = carried.iter().map(|(id, a)| (id, a.to_string())).collect();
            self.learn_addresses(&learned);
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
            membership: r.membership().clone(),
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
        m.lease_reads = stats.lease_reads;
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

    /// Proposes the writes queued since the last batch, in arrival order.
    fn propose_queued(&mut self) {
        let leading = self.raft.is_leader();
        for QueuedWrite {
            data,
            stamped_ms,
            reply,
            received,
        } in std::mem::take(&mut self.queued_writes)
        {
            let data = if leading { self.restamp(data, stamped_ms) } else { data };
            match self.raft.propose(Bytes::from(data)) {
                Ok((index, term)) => {
                    self.proposals.insert(index, (term, received, reply));
                }
                Err(triton_raft::ProposeError::NotLeader { leader }) => {
                    let _ = reply.send(Err(NodeError::NotLeader { leader }));
                }
                // Refused by the core (a transfer under way, backpressure):
                // never in the log.
                Err(e) => {
                    let _ = reply.send(Err(NodeError::Rejected(e.to_string())));
                }
            }
        }
    }

    fn fail_waiters(&mut self, err: NodeError) {
        for w in std::mem::take(&mut self.queued_writes) {
            let _ = w.reply.send(Err(err.clone()));
        }
        for (_, (_, _, reply)) in std::mem::take(&mut self.proposals) {
            let _ = reply.send(Err(err.clone()));
        }
        for (_, (_, reply)) in std::mem::take(&mut self.conf_changes) {
            let _ = reply.send(Err(err.clone().into()));
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

    /// The time to stamp on a command proposed now, made at wall time
    /// `wall_ms` (see [`LogClock`]); warns, at most once a minute, when it
    /// is held below the wall clock.
    fn stamp(&mut self, wall_ms: u64) -> u64 {
        let now = Instant::now();
        let stamp = self.log_clock.stamp(wall_ms, self.store.clock_ms(), now);
        if wall_ms > stamp.saturating_add(LogClock::SLACK_MS) && self.log_clock.should_warn(now) {
            tracing::warn!(
                ahead_ms = wall_ms - stamp,
                "this node's wall clock is ahead of the cluster's (the time other leaders stamped, plus the time \
                 elapsed since): commands are stamped with the cluster's; check the nodes' clocks (NTP)"
            );
        }
        stamp
    }

    /// A client's command with its stamp lowered to [`Driver::stamp`], if
    /// that is below it (decoded and encoded again only then).
    fn restamp(&mut self, data: Vec<u8>, stamped_ms: u64) -> Vec<u8> {
        let stamp = self.stamp(stamped_ms);
        if stamp >= stamped_ms {
            return data;
        }
        match Command::decode(&data) {
            Ok(mut cmd) => {
                debug_assert_eq!(cmd.now_ms, stamped_ms, "Input::Write's stamp is its command's");
                cmd.now_ms = stamp;
                cmd.encode()
            }
            // Applied as Malformed on every replica, as it would have been.
            Err(_) => data,
        }
    }

    /// The leader proposes the removal of expired keys, conditional on their
    /// version, so every replica removes them at the same log position;
    /// never twice while the first proposal is pending (see
    /// [`PendingExpiries`]).
    fn propose_expirations(&mut self) {
        if !self.raft.is_leader() {
            return;
        }
        let now = self.stamp(now_ms());
        for (key, version) in self.pending_expiries.to_propose(&self.store, now, EXPIRES_PER_SCAN) {
            let cmd = Command {
                session: None,
                now_ms: now,
                op: WriteOp::Expire {
                    key: key.clone(),
                    version,
                },
            };
            match self.raft.propose(Bytes::from(cmd.encode())) {
                Ok((index, _)) => self.pending_expiries.proposed(index, key, version),
                Err(_) => break,
            }
        }
    }

    fn send(&mut self, messages: Vec<Message>) {
        for m in messages {
            if let Body::VoteResponse { pre_vote, granted } = m.body {
                tracing::info!(to = m.to, term = m.term, pre_vote, granted, "vote answer");
            }
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
                // A new leader scans afresh; an old one's proposals may
                // never apply.
                self.pending_expiries.clear();
                if ss.role == Role::Leader {
                    self.log_clock.leading(self.raft.term());
                }
                self.opts
                    .leader
                    .store(ss.leader.unwrap_or(0), std::sync::atomic::Ordering::Relaxed);
            }
            self.send(std::mem::take(&mut rd.messages));
            // Restored before it is persisted, so the WAL never holds a
            // snapshot the store lacks (the core installed it only after
            // `snapshot_restores` said it restores).
            let restored = rd.snapshot.as_ref().map(restore_snapshot);
            self.persist(&rd);
            self.learn_from_entries(&rd.entries);
            self.send(std::mem::take(&mut rd.persisted_messages));
            if let (Some(s), Some(store)) = (&rd.snapshot, restored) {
                self.install(s, store);
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
        // Every batch of entries ends with a hard-state record, even an
        // unchanged one (a few bytes per fsync): the log's last record is
        // then never an acknowledged entry, so a repair that drops a torn
        // final record (what the torn-tail process test simulates) only
        // drops a redundant hard state. Without it, a leader that has
        // already answered the entry would not re-send it until the next
        // write (its progress says the follower has it).
        let trailer = (rd.hard_state.is_none() && !rd.entries.is_empty()).then(|| self.raft.hard_state());
        if let Some(hs) = rd.hard_state.or(trailer) {
            let hs = WalHardState {
                term: hs.term,
                vote: hs.vote.unwrap_or(0),
                commit: hs.commit,
            };
            if let Err(e) = self.wal.set_hard_state(hs) {
                fatal("writing the hard state", e);
            }
        }
        let written = self.wal.hard_state();
        // A commit-only hard state waits for the next fsync (a tick at the
        // latest). On a leader it would sit on the path of every reply. On a
        // follower it would be a second fsync per write, on a disk that the
        // next write's fsyncs queue behind (three nodes on one disk made it
        // 5 fsyncs per write instead of 3). Raft needs no durable commit
        // index: a restarted node learns it again from the leader.
        if needs_sync(rd, (written.term, written.vote), self.synced_term_vote) {
            if rd.must_sync() || self.commit_unsynced {
                self.sync_wal();
            }
            self.metrics.entries_synced += rd.entries.len() as u64;
        } else if rd.must_sync() {
            self.commit_unsynced = true;
            self.metrics.commit_only_syncs_skipped += 1;
        }
    }

    /// One fsync of everything written so far.
    fn sync_wal(&mut self) {
        if let Err(e) = self.wal.sync() {
            fatal("syncing the WAL", e);
        }
        let hs = self.wal.hard_state();
        self.synced_term_vote = (hs.term, hs.vote);
        self.commit_unsynced = false;
        self.metrics.wal_syncs += 1;
    }

    fn install(&mut self, s: &Snapshot, store: Store) {
        debug_assert_eq!(store.applied_index(), s.meta.index);
        tracing::info!(
            index = s.meta.index,
            term = s.meta.term,
            "installed snapshot from leader"
        );
        self.store = store;
        self.proposals.retain(|&i, _| i > s.meta.index);
        // Changes the snapshot covers may have been this node's entries or
        // another leader's: their outcome is unknown, as for the writes just
        // dropped (`NodeHandle::wait`). Answered later, they read as "not
        // the leader", and a client proposed again a change that was done.
        let covered = self.conf_changes.split_off(&(s.meta.index + 1));
        for (_, (_, reply)) in std::mem::replace(&mut self.conf_changes, covered) {
            let _ = reply.send(Err(NodeError::Timeout.into()));
        }
        self.pending_expiries.applied_through(s.meta.index);
        self.log_bytes_since_snapshot = 0;
        // The snapshot may cover a removal this node never applied.
        self.forget_removed_members(&s.meta.membership);
        // The snapshot replaces the membership entries that carried the
        // members' addresses: one that joined while this node was away is
        // known by id only, and this node could neither reach it nor take
        // its stream.
        let missing = {
            let book = self.opts.addresses.read().expect("address book lock");
            book.missing(self.raft.membership().all_nodes(), self.raft.id())
        };
        if !missing.is_empty() {
            tracing::info!(
                "the snapshot names members whose addresses this node lacks ({:?}); asking the members it knows",
                missing.iter().map(|&id| user_id(id)).collect::<Vec<_>>()
            );
            self.opts.addresses_wanted.notify_one();
        }
    }

    fn apply(&mut self, e: Entry) {
        self.log_bytes_since_snapshot += e.data.len() as u64 + LOG_ENTRY_OVERHEAD_BYTES;
        let result = match e.kind {
            EntryKind::Command => {
                let clock = self.store.clock_ms();
                let r = self.store.apply(e.index, &e.data);
                // Only a stamp that moved the store's clock is known here:
                // it is the clock.
                if self.store.clock_ms() > clock {
                    self.log_clock
                        .applied(e.index, e.term, self.store.clock_ms(), now_ms(), Instant::now());
                }
                Some(r)
            }
            EntryKind::Noop => {
                self.store.skip(e.index);
                None
            }
            EntryKind::Membership => {
                self.store.skip(e.index);
                let committed = self.raft.membership_at(e.index);
                self.forget_removed_members(&committed);
                None
            }
        };
        self.pending_expiries.applied_through(e.index);
        while let Some((&index, _)) = self.conf_changes.first_key_value() {
            if index > e.index {
                break;
            }
            let (_, (term, reply)) = self.conf_changes.pop_first().expect("checked");
            let outcome = if index == e.index && term == e.term {
                Ok(self.raft.membership().clone())
            } else {
                Err(NodeError::NotLeader {
                    leader: self.raft.leader(),
                }
                .into())
            };
            let _ = reply.send(outcome);
        }
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
                    // A session's registration is bookkeeping, not a write a
                    // user made: the dashboard's writes/s would count every
                    // one-shot CLI client as a write.
                    if !matches!(r, WriteResult::Registered { .. }) {
                        self.metrics.writes_applied += 1;
                    }
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
    ///
    /// "Enough" is two conditions: at least `snapshot_threshold` entries,
    /// and, once the store is past [`CHEAP_SNAPSHOT_BYTES`], at least as
    /// many log bytes as the store holds (see [`snapshot_due`]). A snapshot costs time proportional to the whole
    /// store, and it runs on this thread, stalling every write behind it;
    /// taken every fixed number of entries, its cost per write grows with
    /// the store (the profile in docs/PERFORMANCE.md: with ~50k keys the
    /// driver spent most of its time serializing and writing snapshots).
    /// Waiting until the log is as big as the store keeps the cost per
    /// logged byte constant, and the log (in memory and on disk) at most
    /// about the size of the store beyond the threshold.
    fn maybe_snapshot(&mut self) {
        let applied = self.store.applied_index();
        if applied > self.raft.applied_index()
            || !snapshot_due(
                applied - self.raft.snapshot_index().min(applied),
                self.opts.snapshot_threshold,
                self.log_bytes_since_snapshot,
                self.store.approximate_bytes(),
            )
        {
            return;
        }
        let term = self.raft.term_at(applied).expect("applied entry is in the log");
        let data = self.store.snapshot();
        let meta = SnapshotMeta {
            index: applied,
            term,
            membership: self.raft.membership_at(applied),
        };
        if let Err(e) = self.wal.save_snapshot(&wal_meta(&meta), &data) {
            fatal("saving a snapshot", e);
        }
        self.raft
            .compact(applied, Bytes::from(data))
            .expect("compacting an applied index");
        self.log_bytes_since_snapshot = 0;
        self.metrics.snapshots_taken += 1;
        tracing::info!(index = applied, "took a snapshot and compacted the log");
    }
}

/// Whether step 2 of a `Ready` needs an fsync: for a snapshot, for entries,
/// and for a hard state whose term or vote differs from the last durable
/// one (`written` is the term and vote just written, `synced` the last
/// synced). A hard state that only moves the commit index is written but
/// not synced: it rides along with the next fsync (the driver syncs a
/// deferred one at the next tick at the latest).
///
/// Why that is safe: the commit index is not part of Raft's persistent
/// state (a restarted node learns it again from the leader); nothing a
/// `persisted_messages` message promises depends on it; and the WAL is
/// append-only, so a commit record that survives a crash follows the
/// (durable) entries it covers. The durable commit index may lag what was
/// applied before a crash; recovery then applies less at first and catches
/// up from the leader. What it saves: on a leader, a commit advance used to
/// cost a second fsync on the path of every reply (append + fsync, then
/// commit + fsync, then apply), and on a follower a second fsync per write;
/// etcd's `MustSync` makes the same choice.
pub fn needs_sync(rd: &Ready, written: (Term, NodeId), synced: (Term, NodeId)) -> bool {
    rd.snapshot.is_some() || !rd.entries.is_empty() || (rd.hard_state.is_some() && written != synced)
}

/// A store this small snapshots in about a millisecond: no need to wait for
/// the log to grow as big as it before taking one.
pub const CHEAP_SNAPSHOT_BYTES: u64 = 1 << 20;

/// Whether a local snapshot is due: `entries` and `log_bytes` applied since
/// the last one, against the entry threshold and the store's size (the
/// amortization rule of [`Driver::maybe_snapshot`]).
pub fn snapshot_due(entries: u64, threshold: u64, log_bytes: u64, store_bytes: u64) -> bool {
    entries >= threshold && (store_bytes <= CHEAP_SNAPSHOT_BYTES || log_bytes >= store_bytes)
}

pub fn wal_meta(m: &SnapshotMeta) -> WalSnapshotMeta {
    use prost::Message as _;
    WalSnapshotMeta {
        index: m.index,
        term: m.term,
        membership: membership_to_pb(&m.membership).encode_to_vec(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use triton_raft::HardState;

    /// A fresh directory for one test's WAL.
    fn scratch_dir(name: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("triton-driver-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        dir
    }

    fn current_thread_runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
    }

    /// Node `me` of `voters` on a WAL in `dir`, with no log yet and the
    /// addresses in `book` (no sender starts before the book changes).
    fn driver(
        dir: &std::path::Path,
        rt: &tokio::runtime::Runtime,
        me: NodeId,
        voters: Vec<NodeId>,
        book: AddressBook,
    ) -> Driver {
        let (wal, _) = Wal::open(&dir.join("wal"), triton_storage::WalOptions::default()).unwrap();
        let mut cfg = triton_raft::Config::new(me);
        cfg.snapshot_check = snapshot_restores;
        let raft = Raft::new(
            cfg,
            triton_raft::InitialState {
                hard_state: HardState::default(),
                snapshot: None,
                entries: Vec::new(),
                membership: Membership::with_voters(voters),
            },
        )
        .unwrap();
        let outbox = Outbox::start(
            rt.handle(),
            HashMap::new(),
            1 << 20,
            crate::tls::Dialer::plaintext(),
            "test",
            crate::auth::ClientToken::default(),
        );
        let opts = DriverOptions {
            addresses: Arc::new(RwLock::new(book)),
            data_dir: dir.to_path_buf(),
            tick: Duration::from_millis(50),
            snapshot_threshold: 1_000_000,
            read_timeout: Duration::from_secs(5),
            leader: Arc::new(std::sync::atomic::AtomicU64::new(0)),
            addresses_wanted: Arc::new(tokio::sync::Notify::new()),
        };
        Driver::new(raft, wal, Store::default(), outbox, opts)
    }

    /// A single-node driver on a WAL in `dir` (no peers), made leader.
    fn leader_driver(dir: &std::path::Path, rt: &tokio::runtime::Runtime) -> Driver {
        let mut d = driver(dir, rt, 1, vec![1], AddressBook::default());
        d.raft.force_campaign().unwrap();
        d.process_ready();
        assert!(d.raft.is_leader());
        d
    }

    /// A follower that catches up from a snapshot taken after node 3 was
    /// removed: it never applies the removal, so the install forgets node
    /// 3's address (it kept dialling it and taking its streams). And a
    /// membership change it proposed while it led, at an index the snapshot
    /// covers, is answered "outcome unknown", not "not the leader" (which
    /// had the client propose again a change that was done).
    #[test]
    fn a_snapshot_install_forgets_removed_members_and_answers_covered_changes() {
        let (dir, rt) = (scratch_dir("install"), current_thread_runtime());
        // Node 2 of voters 1, 2 and 3, whose addresses it knows.
        let mut book = AddressBook::default();
        for id in 1..=3 {
            book.insert(id, &format!("127.0.0.1:{}", 7000 + id)).unwrap();
        }
        let mut d = driver(&dir, &rt, 2, vec![1, 2, 3], book);
        let (covered, mut covered_answer) = oneshot::channel();
        let (later, mut later_answer) = oneshot::channel();
        d.conf_changes.insert(4, (1, covered));
        d.conf_changes.insert(9, (1, later));
        let mut store = Store::default();
        for i in 1..=5 {
            store.skip(i);
        }
        let data = Bytes::from(store.snapshot());
        let snapshot = Message {
            from: 1,
            to: 2,
            term: 2,
            body: Body::Snapshot {
                meta: SnapshotMeta {
                    index: 5,
                    term: 2,
                    membership: Membership::with_voters(vec![1, 2]),
                },
                offset: 0,
                total: data.len() as u64,
                data,
                done: true,
            },
        };
        d.raft.step(snapshot);
        d.process_ready();
        assert_eq!(d.store.applied_index(), 5, "the snapshot was not installed");
        let book = d.opts.addresses.read().unwrap().clone();
        assert_eq!(book.iter().map(|(id, _)| id).collect::<Vec<_>>(), [1, 2]);
        assert_eq!(AddressBook::load(&dir).unwrap(), book, "the saved book");
        assert!(matches!(
            covered_answer.try_recv(),
            Ok(Err(AdminError::Node(NodeError::Timeout)))
        ));
        assert!(
            matches!(later_answer.try_recv(), Err(oneshot::error::TryRecvError::Empty)),
            "a change past the snapshot is still pending"
        );
        drop(d);
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// Proposes `op` stamped `now_ms` and applies it (a single node
    /// commits what it persists).
    fn write(d: &mut Driver, now_ms: u64, op: WriteOp) {
        let cmd = Command {
            session: None,
            now_ms,
            op,
        };
        d.raft.propose(Bytes::from(cmd.encode())).unwrap();
        d.process_ready();
        assert_eq!(d.store.applied_index(), d.raft.last_index());
    }

    /// The leader's expiry scan runs every 500 ms; an `Expire` not applied
    /// by the next scan (a slow commit) was proposed again, and when more
    /// keys were expired than one scan takes, the same ones every time.
    #[test]
    fn a_leader_proposes_each_expiry_once_while_it_is_pending() {
        let (dir, rt) = (scratch_dir("expiry"), current_thread_runtime());
        let mut d = leader_driver(&dir, &rt);
        let keys = EXPIRES_PER_SCAN as u64 + 6;
        for i in 0..keys {
            let put = WriteOp::Put {
                key: format!("k{i:03}").into_bytes(),
                value: b"v".to_vec(),
                expires_at_ms: 1_000,
            };
            write(&mut d, 1, put);
        }
        assert_eq!(d.store.expired(now_ms(), usize::MAX).len() as u64, keys);
        let last = d.raft.last_index();
        // Two scans before anything commits: the second proposes only the
        // keys the first did not take.
        d.propose_expirations();
        assert_eq!(d.raft.last_index() - last, EXPIRES_PER_SCAN as u64);
        d.propose_expirations();
        assert_eq!(d.raft.last_index() - last, keys, "an expiry was proposed twice");
        assert_eq!(d.pending_expiries.len() as u64, keys);
        d.propose_expirations();
        assert_eq!(d.raft.last_index() - last, keys);
        // Applied: nothing pending, nothing left to expire.
        d.process_ready();
        assert_eq!(d.pending_expiries.len(), 0);
        assert!(d.store.is_empty());
        d.propose_expirations();
        assert_eq!(d.raft.last_index() - last, keys);
        drop(d);
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// A leader whose wall clock is a minute ahead of what another leader
    /// stamped: its clients' writes go into the log with the cluster's
    /// time, and files due within that minute do not expire with them.
    #[test]
    fn a_write_stamped_by_a_fast_clock_goes_into_the_log_at_the_clusters_time() {
        let (dir, rt) = (scratch_dir("stamp"), current_thread_runtime());
        let mut d = leader_driver(&dir, &rt);
        let real = now_ms();
        let soon = WriteOp::Put {
            key: b"f/soon".to_vec(),
            value: b"x".to_vec(),
            expires_at_ms: real + 30_000,
        };
        write(&mut d, real, soon);
        // As if that had come from a leader of another term.
        d.log_clock
            .applied(d.store.applied_index(), 99, real, real, Instant::now());
        let fast = real + 60_000;
        let cmd = Command {
            session: None,
            now_ms: fast,
            op: WriteOp::Put {
                key: b"f/other".to_vec(),
                value: b"y".to_vec(),
                expires_at_ms: 0,
            },
        };
        let (reply, mut answer) = oneshot::channel();
        d.queued_writes.push(QueuedWrite {
            data: cmd.encode(),
            stamped_ms: fast,
            reply,
            received: Instant::now(),
        });
        d.propose_queued();
        d.process_ready();
        assert!(matches!(answer.try_recv(), Ok(Ok(WriteResult::Put { .. }))));
        let clock = d.store.clock_ms();
        assert!(clock < real + 10_000, "the log's clock jumped {} ms", clock - real);
        assert!(d.store.get(b"f/soon", 0).is_some(), "a file due in 30 s expired");
        drop(d);
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// The dashboard's writes/s is `writes_applied`: a session's
    /// registration (one per one-shot CLI client) is not a user's write.
    #[test]
    fn a_session_registration_is_not_counted_as_an_applied_write() {
        let (dir, rt) = (scratch_dir("registration"), current_thread_runtime());
        let mut d = leader_driver(&dir, &rt);
        let submit = |d: &mut Driver, op: WriteOp| {
            let now = now_ms();
            let cmd = Command {
                session: None,
                now_ms: now,
                op,
            };
            let (reply, mut answer) = oneshot::channel();
            d.queued_writes.push(QueuedWrite {
                data: cmd.encode(),
                stamped_ms: now,
                reply,
                received: Instant::now(),
            });
            d.propose_queued();
            d.process_ready();
            answer.try_recv().expect("answered").expect("applied")
        };
        let before = d.metrics.writes_applied;
        let registered = submit(&mut d, WriteOp::RegisterSession);
        assert!(matches!(registered, WriteResult::Registered { .. }), "{registered:?}");
        assert_eq!(d.metrics.writes_applied, before);
        let put = WriteOp::Put {
            key: b"k".to_vec(),
            value: b"v".to_vec(),
            expires_at_ms: 0,
        };
        assert!(matches!(submit(&mut d, put), WriteResult::Put { .. }));
        assert_eq!(d.metrics.writes_applied, before + 1);
        drop(d);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn pending_expiries_clear_on_apply_and_on_a_role_change() {
        let mut store = Store::default();
        for i in 1..=3u64 {
            let put = WriteOp::Put {
                key: vec![b'a' + i as u8],
                value: Vec::new(),
                expires_at_ms: 10,
            };
            store.apply_command(
                i,
                Command {
                    session: None,
                    now_ms: 1,
                    op: put,
                },
            );
        }
        let mut pending = PendingExpiries::default();
        let batch = pending.to_propose(&store, 20, 64);
        assert_eq!(batch.len(), 3);
        for (i, (key, version)) in batch.into_iter().enumerate() {
            pending.proposed(10 + i as u64, key, version);
        }
        assert!(pending.to_propose(&store, 20, 64).is_empty());
        // Index 11 applied (whatever entry took it): the first two are no
        // longer in flight; were they still in the store, they would be
        // proposed again.
        pending.applied_through(11);
        assert_eq!(pending.len(), 1);
        assert_eq!(
            pending.to_propose(&store, 20, 64),
            vec![(b"b".to_vec(), 1), (b"c".to_vec(), 2)]
        );
        pending.clear();
        assert_eq!(pending.to_propose(&store, 20, 64).len(), 3);
        // A cap on what is in flight.
        for i in 0..MAX_PENDING_EXPIRIES as u64 {
            pending.proposed(100 + i, i.to_be_bytes().to_vec(), 1);
        }
        assert!(pending.to_propose(&store, 20, 64).is_empty());
    }

    const T: u64 = 1_700_000_000_000;

    /// A node whose wall clock is a minute fast leads after another leader
    /// stamped commands: its stamps follow the other's plus the time since
    /// (and a second of slack), not its own clock, however many commands it
    /// stamps itself.
    #[test]
    fn a_fast_wall_clock_does_not_move_the_log_clock_ahead() {
        let fast = 60_000;
        let t0 = Instant::now();
        let mut clock = LogClock::new(5);
        // Another leader's command, applied here 10 ms after it was stamped.
        clock.applied(7, 1, T, T + 10 + fast, t0);
        clock.leading(2);
        let at = t0 + Duration::from_secs(2);
        let stamp = clock.stamp(T + 2_010 + fast, T, at);
        assert_eq!(stamp, T + 2_000 + LogClock::SLACK_MS);
        // Its own stamps, applied, are no reference: no creeping ahead.
        for i in 0..1000 {
            clock.applied(8 + i, 2, stamp, T + 2_010 + fast, at);
        }
        assert_eq!(clock.stamp(T + 2_010 + fast, stamp, at), stamp);
        // The log's clock never goes back: a store clock ahead wins.
        assert_eq!(clock.stamp(T + 2_010 + fast, T + 9_000, at), T + 9_000);
    }

    #[test]
    fn a_correct_wall_clock_stamps_itself() {
        let t0 = Instant::now();
        let mut clock = LogClock::new(5);
        // No reference yet: the wall clock.
        assert_eq!(clock.stamp(T + 60_000, T, t0), T + 60_000);
        // Entries replayed from the WAL (below index 5) are no reference.
        clock.applied(4, 1, T, T + 60_000, t0);
        assert_eq!(clock.stamp(T + 60_000, T, t0), T + 60_000);
        // Nor is a stamp far behind this node's clock (a follower catching
        // up on old entries): it would hold a correct leader back.
        clock.applied(6, 1, T, T + LogClock::MAX_LAG_MS + 1, t0);
        assert_eq!(clock.stamp(T + 60_000, T, t0), T + 60_000);
        // A fresh one is; a clock within the slack of it is used as is.
        clock.applied(7, 1, T, T + 300, t0);
        let at = t0 + Duration::from_millis(1500);
        assert_eq!(clock.stamp(T + 1_800, T, at), T + 1_800);
        // The latest reference wins when it puts the cluster's time higher.
        clock.applied(8, 1, T + 5_000, T + 5_000, at);
        assert_eq!(clock.stamp(T + 5_900, T + 5_000, at), T + 5_900);
    }

    /// The config refuses values the store would refuse when applying them.
    #[test]
    fn the_configs_value_cap_is_the_stores() {
        assert_eq!(
            triton_config::MAX_VALUE_BYTES,
            triton_store::StoreOptions::default().max_value_bytes
        );
    }

    fn entry(index: Index) -> Entry {
        Entry {
            index,
            term: 1,
            kind: EntryKind::Command,
            data: Bytes::from_static(b"x"),
        }
    }

    #[test]
    fn commit_only_hard_states_are_not_synced_but_everything_else_is() {
        let hs = |term, vote: Option<NodeId>, commit| HardState { term, vote, commit };
        let synced = (3, 2);
        // Nothing written: nothing to sync.
        assert!(!needs_sync(&Ready::default(), synced, synced));
        // Only the commit index moved.
        let commit_only = Ready {
            hard_state: Some(hs(3, Some(2), 10)),
            ..Ready::default()
        };
        assert!(!needs_sync(&commit_only, (3, 2), synced));
        // A new term, or a vote cast, must be durable before any reply.
        assert!(needs_sync(&commit_only, (4, 0), synced));
        assert!(needs_sync(&commit_only, (3, 1), (3, 0)));
        // Entries always; a snapshot always.
        let with_entries = Ready {
            entries: vec![entry(11)],
            hard_state: Some(hs(3, Some(2), 10)),
            ..Ready::default()
        };
        assert!(needs_sync(&with_entries, synced, synced));
        let with_snapshot = Ready {
            snapshot: Some(Snapshot {
                meta: SnapshotMeta {
                    index: 5,
                    term: 1,
                    membership: triton_raft::Membership::with_voters(vec![1]),
                },
                data: Bytes::new(),
            }),
            ..Ready::default()
        };
        assert!(needs_sync(&with_snapshot, synced, synced));
    }

    #[test]
    fn a_snapshot_checked_on_this_thread_is_installed_without_restoring_it_again() {
        // Two different stores at the same index: what the install returns
        // tells which one it is.
        let at = |max_sessions: u64| {
            let mut store = Store::new(triton_store::StoreOptions {
                max_sessions,
                ..triton_store::StoreOptions::default()
            });
            for i in 1..=5 {
                store.skip(i);
            }
            store.snapshot()
        };
        let (checked, other) = (at(7), at(9));
        let meta = SnapshotMeta {
            index: 5,
            term: 2,
            membership: Default::default(),
        };
        assert!(snapshot_restores(&meta, &checked));
        let install = |data: &[u8], meta: &SnapshotMeta| {
            restore_snapshot(&Snapshot {
                meta: meta.clone(),
                data: Bytes::copy_from_slice(data),
            })
            .snapshot()
        };
        assert_eq!(install(&other, &meta), checked, "the checked store is installed");
        // Taken once: the next install restores its own bytes.
        assert_eq!(install(&other, &meta), other);
        // Another snapshot than the one checked is restored from its bytes.
        assert!(snapshot_restores(&meta, &checked));
        let later = SnapshotMeta {
            term: 3,
            ..meta.clone()
        };
        assert_eq!(install(&other, &later), other);
        // The check's store stays with the thread that checked.
        assert!(snapshot_restores(&meta, &checked));
        let elsewhere = std::thread::spawn(move || install(&other, &meta)).join().unwrap();
        assert_eq!(elsewhere, at(9));
    }

    #[test]
    fn snapshots_wait_for_the_threshold_and_for_the_log_to_outgrow_a_big_store() {
        // Below the entry threshold: never, however small the store.
        assert!(!snapshot_due(99, 100, u64::MAX, 0));
        // A cheap store: at the threshold, as configured.
        assert!(snapshot_due(100, 100, 10, CHEAP_SNAPSHOT_BYTES));
        // A big store: only once the log holds as many bytes as the store.
        let big = 64 * CHEAP_SNAPSHOT_BYTES;
        assert!(!snapshot_due(100_000, 100, big - 1, big));
        assert!(snapshot_due(100_000, 100, big, big));
    }
}
