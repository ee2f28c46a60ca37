//! # A deterministic cluster simulator for the Raft core
//!
//! One seed decides everything: message delays, losses and duplicates,
//! partitions, crashes (including crashes in the middle of a write, which
//! keep only a prefix of what was not yet synced), clients and their
//! timeouts. The cluster runs in one thread on simulated time, so a failing
//! seed replays exactly (`triton sim --seed N --trace`).
//!
//! After every event the [`checker::Checker`] verifies the Raft safety
//! properties (election safety, log matching, leader completeness, state
//! machine safety, durability); [`fuzz::run_seed`] adds liveness once the
//! faults stop and records the client history for the linearizability
//! checker.

pub mod bench;
pub mod checker;
pub mod fuzz;
pub mod lab;
pub mod state_machine;

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap};

use bytes::Bytes;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use triton_raft::{
    Body, ConfChange, ConfChangeError, Config, Entry, EntryKind, HardState, Index, InitialState, Membership, Message,
    NodeId, ProposeError, Raft, ReadState, Role, Snapshot, Term,
};

use crate::checker::{Checker, Violation};
use crate::state_machine::KvStore;

/// Simulated milliseconds.
pub type Millis = u64;

/// Everything that shapes a run besides the seed.
#[derive(Clone, Debug)]
pub struct SimOptions {
    /// Voters of the bootstrap configuration (ids `1..=nodes`).
    pub nodes: usize,
    /// Further nodes (ids after the voters) that start outside the cluster
    /// and can join by membership change.
    pub spare_nodes: usize,
    pub seed: u64,
    pub tick_ms: Millis,
    pub election_tick: u32,
    pub heartbeat_tick: u32,
    pub min_delay_ms: Millis,
    pub max_delay_ms: Millis,
    /// Probability that a message is lost.
    pub loss: f64,
    /// Probability that a message is delivered twice.
    pub duplicate: f64,
    /// Compact the log once this many entries are applied past the last
    /// snapshot (0: never).
    pub snapshot_every: u64,
    /// Probability, per persist step, that the node crashes half-way
    /// through it (only a prefix of the unsynced writes survives).
    pub torn_crash: f64,
    pub pre_vote: bool,
    pub check_quorum: bool,
    /// Leader lease reads (see `triton_raft::Config::lease_read`).
    pub lease_read: bool,
    /// Each node's tick is `tick_ms` plus a fixed offset drawn from
    /// `[-clock_drift_ms, clock_drift_ms]`: clocks that run at different
    /// rates, which lease reads must tolerate up to
    /// `triton_raft::MAX_CLOCK_RATE_DIFFERENCE_PERCENT`.
    pub clock_drift_ms: Millis,
    pub max_msg_bytes: u64,
    pub max_inflight_msgs: usize,
    pub snapshot_chunk_bytes: u64,
    pub trace: bool,
    /// Test-only fault injection, never set by real runs: node `.0` skips
    /// applying the entry at index `.1` (its state machine silently
    /// diverges), to show the end-of-run convergence check catches it.
    #[doc(hidden)]
    pub test_skip_apply: Option<(NodeId, Index)>,
}

impl SimOptions {
    pub fn new(nodes: usize, seed: u64) -> Self {
        SimOptions {
            nodes,
            spare_nodes: 0,
            seed,
            tick_ms: 10,
            // 300-600 ms election timeouts, 100 ms heartbeats: the budgets
            // of the classic Raft lab (at most ten heartbeats a second).
            election_tick: 30,
            heartbeat_tick: 10,
            min_delay_ms: 1,
            max_delay_ms: 5,
            loss: 0.0,
            duplicate: 0.0,
            snapshot_every: 0,
            torn_crash: 0.0,
            pre_vote: true,
            check_quorum: true,
            lease_read: false,
            clock_drift_ms: 0,
            max_msg_bytes: 64 << 10,
            max_inflight_msgs: 64,
            snapshot_chunk_bytes: 1024,
            trace: false,
            test_skip_apply: None,
        }
    }
}

thread_local! {
    /// The simulated time of the last event this thread ran: where a core
    /// that panicked was (the panic unwinds past the `Sim`).
    static LAST_EVENT_MS: std::cell::Cell<Millis> = const { std::cell::Cell::new(0) };
}

/// The simulated time of the last event run on this thread (see
/// `fuzz::run_plan`, which reports it for a panicking core).
pub fn last_event_ms() -> Millis {
    LAST_EVENT_MS.get()
}

/// What a node has made durable: all that survives a crash.
#[derive(Clone, Debug, Default)]
pub struct Disk {
    pub hard_state: HardState,
    pub snapshot: Option<Snapshot>,
    pub entries: Vec<Entry>,
    /// A commit-only hard state written but not yet synced. The node defers
    /// that fsync to its next one, or its next tick (`node::driver::needs_sync`),
    /// so the simulated host does the same: a crash before then loses it.
    pub unsynced_commit: Option<HardState>,
}

impl Disk {
    /// The index of the last durable entry (or of the snapshot, if the
    /// log after it is empty).
    pub fn last_index(&self) -> Index {
        match (self.entries.last(), &self.snapshot) {
            (Some(e), _) => e.index,
            (None, Some(s)) => s.meta.index,
            (None, None) => 0,
        }
    }

    /// The durable entry at `index`, if the log (not the snapshot) holds it.
    pub fn entry(&self, index: Index) -> Option<&Entry> {
        let first = self.entries.first()?.index;
        self.entries.get(index.checked_sub(first)? as usize)
    }

    fn write_snapshot(&mut self, s: &Snapshot) {
        let keep = self
            .entries
            .iter()
            .any(|e| e.index == s.meta.index && e.term == s.meta.term);
        if keep {
            self.entries.retain(|e| e.index > s.meta.index);
        } else {
            self.entries.clear();
        }
        self.snapshot = Some(s.clone());
    }

    fn write_entry(&mut self, e: &Entry) {
        let first = self.snapshot.as_ref().map_or(1, |s| s.meta.index + 1);
        assert!(e.index >= first, "writing entry {} below the snapshot", e.index);
        let pos = (e.index - first) as usize;
        assert!(pos <= self.entries.len(), "gap in the durable log at {}", e.index);
        self.entries.truncate(pos);
        self.entries.push(e.clone());
    }
}

/// A client request waiting at a node for its outcome.
#[derive(Clone, Debug)]
pub enum Waiter {
    /// A client's write (client, sequence number) proposed in `term`.
    Write { client: usize, seq: u64, term: Term },
    /// A lab-scenario proposal (nobody waits).
    None,
}

pub struct SimNode {
    pub id: NodeId,
    pub raft: Option<Raft>,
    pub disk: Disk,
    pub kv: KvStore,
    /// Every entry this node applied since its last restart, by index.
    pub applied: BTreeMap<Index, (Term, Bytes)>,
    pub restarts: u64,
    /// This node's tick length (its clock rate; see `clock_drift_ms`).
    pub tick_ms: Millis,
    /// Lease reads of its current core already checked.
    lease_reads_seen: u64,
    epoch: u64,
    waiting_writes: BTreeMap<Index, Waiter>,
    waiting_reads: Vec<ReadState>,
    /// Stopped (SIGSTOP, a long GC pause, a VM migration): alive, but it
    /// takes no input and its ticks are owed, not delivered (see [`Sim::pause`]).
    paused: bool,
    ticks_owed: u64,
    /// Messages that reached it while paused, in arrival order (the socket
    /// buffers them).
    inbox: Vec<Message>,
}

impl SimNode {
    pub fn alive(&self) -> bool {
        self.raft.is_some()
    }
    /// Alive and not paused: it takes input now.
    pub fn running(&self) -> bool {
        self.alive() && !self.paused
    }
    pub fn paused(&self) -> bool {
        self.paused
    }
    pub fn raft(&self) -> &Raft {
        self.raft.as_ref().expect("node is alive")
    }
}

#[derive(Debug)]
enum Event {
    Deliver(Message),
    Tick { node: NodeId, epoch: u64 },
    Client(usize),
}

#[derive(Debug)]
struct Scheduled {
    at: Millis,
    seq: u64,
    event: Event,
}

impl PartialEq for Scheduled {
    fn eq(&self, other: &Self) -> bool {
        (self.at, self.seq) == (other.at, other.seq)
    }
}
impl Eq for Scheduled {}
impl PartialOrd for Scheduled {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Scheduled {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (self.at, self.seq).cmp(&(other.at, other.seq))
    }
}

/// A hook for client logic: the fuzz driver implements it.
pub trait Clients {
    /// A client's timer fired.
    fn wake(&mut self, sim: &mut Sim, client: usize);
    /// The client's write `seq` was applied with this version.
    fn write_done(&mut self, sim: &mut Sim, client: usize, seq: u64, version: Index);
    /// A read the client asked for is served.
    fn read_done(&mut self, sim: &mut Sim, node: NodeId, ctx: &Bytes);
}

/// Traffic counters (the lab's budgets).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Traffic {
    pub messages: u64,
    pub bytes: u64,
    /// Rejected appends: each is one round trip of log repair.
    pub append_rejects: u64,
    pub snapshot_chunks: u64,
}

pub struct Sim {
    pub opts: SimOptions,
    pub now: Millis,
    pub rng: ChaCha8Rng,
    pub nodes: Vec<SimNode>,
    pub checker: Checker,
    pub traffic: Traffic,
    queue: BinaryHeap<Reverse<Scheduled>>,
    seq: u64,
    /// Directed links that drop everything.
    blocked: BTreeSet<(NodeId, NodeId)>,
    /// Completions to hand to the client driver after the current event.
    completions: Vec<Completion>,
}

#[derive(Debug)]
enum Completion {
    Write { client: usize, seq: u64, version: Index },
    Read { node: NodeId, ctx: Bytes },
}

/// Per-message overhead counted toward the byte budget (headers).
const MESSAGE_OVERHEAD_BYTES: u64 = 64;

impl Sim {
    pub fn new(opts: SimOptions) -> Self {
        assert!(opts.nodes >= 1 && opts.nodes + opts.spare_nodes <= 9, "1..=9 nodes");
        assert!(opts.clock_drift_ms < opts.tick_ms, "a clock must tick");
        let rng = ChaCha8Rng::seed_from_u64(opts.seed);
        let mut sim = Sim {
            now: 0,
            rng,
            nodes: Vec::new(),
            checker: Checker::default(),
            traffic: Traffic::default(),
            queue: BinaryHeap::new(),
            seq: 0,
            blocked: BTreeSet::new(),
            completions: Vec::new(),
            opts,
        };
        for i in 0..sim.opts.nodes + sim.opts.spare_nodes {
            let id = i as NodeId + 1;
            let drift = sim.opts.clock_drift_ms;
            // Drawn only with drift on, so runs without it replay as before.
            let tick_ms = if drift == 0 {
                sim.opts.tick_ms
            } else {
                sim.opts.tick_ms - drift + sim.rng.random_range(0..=2 * drift)
            };
            sim.nodes.push(SimNode {
                id,
                raft: None,
                disk: Disk::default(),
                kv: KvStore::default(),
                applied: BTreeMap::new(),
                restarts: 0,
                tick_ms,
                lease_reads_seen: 0,
                epoch: 0,
                waiting_writes: BTreeMap::new(),
                waiting_reads: Vec::new(),
                paused: false,
                ticks_owed: 0,
                inbox: Vec::new(),
            });
            sim.start_node(id);
        }
        sim
    }

    pub fn ids(&self) -> Vec<NodeId> {
        self.nodes.iter().map(|n| n.id).collect()
    }

    pub fn node(&self, id: NodeId) -> &SimNode {
        &self.nodes[(id - 1) as usize]
    }

    fn node_mut(&mut self, id: NodeId) -> &mut SimNode {
        &mut self.nodes[(id - 1) as usize]
    }

    /// The bootstrap membership a node starts from (before it replays its
    /// log): the first `nodes` vote; a spare node knows no configuration
    /// until the leader's log or snapshot tells it, as `triton server --join`.
    fn bootstrap_membership(&self, id: NodeId) -> Membership {
        if id as usize <= self.opts.nodes {
            Membership::with_voters(1..=self.opts.nodes as NodeId)
        } else {
            Membership::default()
        }
    }

    fn schedule(&mut self, after: Millis, event: Event) {
        self.seq += 1;
        self.queue.push(Reverse(Scheduled {
            at: self.now + after,
            seq: self.seq,
            event,
        }));
    }

    /// (Re)starts a node from its disk.
    fn start_node(&mut self, id: NodeId) {
        let membership = self.bootstrap_membership(id);
        let o = &self.opts;
        let node = &self.nodes[(id - 1) as usize];
        let mut cfg = Config::new(id);
        cfg.election_tick = o.election_tick;
        cfg.heartbeat_tick = o.heartbeat_tick;
        cfg.pre_vote = o.pre_vote;
        cfg.check_quorum = o.check_quorum;
        cfg.lease_read = o.lease_read;
        cfg.max_msg_bytes = o.max_msg_bytes;
        cfg.max_inflight_msgs = o.max_inflight_msgs;
        cfg.snapshot_chunk_bytes = o.snapshot_chunk_bytes;
        cfg.seed = o.seed ^ (id << 48) ^ (node.restarts << 32);
        let init = InitialState {
            hard_state: node.disk.hard_state,
            snapshot: node.disk.snapshot.clone(),
            entries: node.disk.entries.clone(),
            membership,
        };
        let raft = Raft::new(cfg, init).expect("simulated disk state is valid");
        let kv = match &node.disk.snapshot {
            Some(s) => KvStore::decode(&s.data).expect("snapshot data decodes"),
            None => KvStore::default(),
        };
        if let Err(v) = self.checker.on_restart(id, &raft) {
            self.checker.fail(v);
        }
        let phase = self.rng.random_range(0..self.node(id).tick_ms);
        let node = self.node_mut(id);
        node.epoch += 1;
        node.kv = kv;
        node.applied.clear();
        node.waiting_writes.clear();
        node.waiting_reads.clear();
        node.lease_reads_seen = 0;
        node.raft = Some(raft);
        let epoch = node.epoch;
        self.schedule(phase + 1, Event::Tick { node: id, epoch });
        self.trace(format_args!("node {id} starts"));
    }

    // ----- faults ------------------------------------------------------------

    /// Stops a node: it loses everything but its disk.
    pub fn crash(&mut self, id: NodeId) {
        let node = self.node_mut(id);
        if node.raft.take().is_some() {
            // Never synced: lost with the page cache (the crash models power loss).
            node.disk.unsynced_commit = None;
            node.paused = false;
            node.ticks_owed = 0;
            node.inbox.clear();
            node.epoch += 1;
            node.restarts += 1;
            self.trace(format_args!("node {id} crashes"));
        }
    }

    pub fn restart(&mut self, id: NodeId) {
        if !self.node(id).alive() {
            self.start_node(id);
            self.process_ready(id);
        }
    }

    /// Cuts `id` off from every other node, both ways.
    pub fn disconnect(&mut self, id: NodeId) {
        for other in self.ids() {
            if other != id {
                self.blocked.insert((id, other));
                self.blocked.insert((other, id));
            }
        }
        self.trace(format_args!("node {id} disconnected"));
    }

    /// Restores every link of `id` (except to nodes that are themselves
    /// disconnected by a separate call).
    pub fn connect(&mut self, id: NodeId) {
        self.blocked.retain(|&(a, b)| a != id && b != id);
        self.trace(format_args!("node {id} connected"));
    }

    pub fn block(&mut self, from: NodeId, to: NodeId) {
        self.blocked.insert((from, to));
    }

    /// Splits the cluster into groups that cannot talk to each other.
    pub fn partition(&mut self, groups: &[Vec<NodeId>]) {
        self.heal();
        for (gi, g) in groups.iter().enumerate() {
            for (hi, h) in groups.iter().enumerate() {
                if gi != hi {
                    for &a in g {
                        for &b in h {
                            self.blocked.insert((a, b));
                        }
                    }
                }
            }
        }
        self.trace(format_args!("partition {groups:?}"));
    }

    /// Stops node `id` where it is: it keeps its state but takes no input
    /// (messages wait in its inbox, client requests are refused) and its
    /// ticks are owed until [`Sim::resume`].
    pub fn pause(&mut self, id: NodeId) {
        if self.node(id).running() {
            self.node_mut(id).paused = true;
            self.trace(format_args!("node {id} paused"));
        }
    }

    /// Resumes a paused node the way `node::clock` does: every tick it
    /// missed first, then the messages that waited. A leader that slept past
    /// its lease must find out before it answers anything.
    pub fn resume(&mut self, id: NodeId) {
        if !self.node(id).paused {
            return;
        }
        let node = self.node_mut(id);
        node.paused = false;
        let owed = std::mem::take(&mut node.ticks_owed);
        let inbox = std::mem::take(&mut node.inbox);
        self.trace(format_args!(
            "node {id} resumes: {owed} ticks owed, {} messages waiting",
            inbox.len()
        ));
        if owed > 0 {
            self.sync_unsynced_commit(id);
            let raft = self.node_mut(id).raft.as_mut().expect("a paused node is alive");
            for _ in 0..owed {
                raft.tick();
            }
            self.process_ready(id);
        }
        for m in inbox {
            if !self.node(id).running() {
                return; // crashed mid-resume (a torn write)
            }
            self.node_mut(id).raft.as_mut().expect("running").step(m);
            self.process_ready(id);
        }
    }

    /// Test-only: resumes a paused node as if no time had passed while it
    /// slept (a host that restarts its clock on waking), for the control
    /// test that the lease check catches the stale reads that follow.
    #[doc(hidden)]
    pub fn resume_forgetting_ticks(&mut self, id: NodeId) {
        self.node_mut(id).ticks_owed = 0;
        self.resume(id);
    }

    /// The node's tick-time fsync: an unsynced commit becomes durable.
    fn sync_unsynced_commit(&mut self, id: NodeId) {
        let node = &mut self.nodes[(id - 1) as usize];
        if let Some(hs) = node.disk.unsynced_commit.take() {
            node.disk.hard_state = hs;
            // From now on a restart must come back with at least this commit index.
            let raft = node.raft.as_ref().expect("only a live node syncs");
            if let Err(v) = self.checker.on_persist(id, raft, &[], hs.commit) {
                self.checker.fail(v);
            }
        }
    }

    pub fn heal(&mut self) {
        self.blocked.clear();
    }

    pub fn is_blocked(&self, from: NodeId, to: NodeId) -> bool {
        self.blocked.contains(&(from, to))
    }

    pub fn set_network(&mut self, loss: f64, duplicate: f64) {
        self.opts.loss = loss;
        self.opts.duplicate = duplicate;
    }

    // ----- running -------------------------------------------------------------

    /// Runs until simulated time `until`, or a safety violation.
    pub fn run_until(&mut self, until: Millis, clients: &mut dyn Clients) -> Result<(), Violation> {
        while let Some(Reverse(next)) = self.queue.peek() {
            if next.at > until {
                break;
            }
            let Reverse(ev) = self.queue.pop().expect("peeked");
            self.now = ev.at;
            LAST_EVENT_MS.set(self.now);
            match ev.event {
                Event::Tick { node, epoch } => {
                    if self.node(node).epoch != epoch || !self.node(node).alive() {
                        continue;
                    }
                    let tick = self.node(node).tick_ms;
                    if self.node(node).paused {
                        self.node_mut(node).ticks_owed += 1;
                        self.schedule(tick, Event::Tick { node, epoch });
                        continue;
                    }
                    // The node syncs an unsynced commit at its next tick.
                    self.sync_unsynced_commit(node);
                    self.node_mut(node).raft.as_mut().expect("alive").tick();
                    self.schedule(tick, Event::Tick { node, epoch });
                    self.process_ready(node);
                }
                Event::Deliver(m) => {
                    let to = m.to;
                    if self.is_blocked(m.from, to) || !self.node(to).alive() {
                        continue;
                    }
                    if self.node(to).paused {
                        self.node_mut(to).inbox.push(m);
                        continue;
                    }
                    self.trace(format_args!(
                        "deliver {} {}->{} t{}",
                        m.body.name(),
                        m.from,
                        m.to,
                        m.term
                    ));
                    self.node_mut(to).raft.as_mut().expect("alive").step(m);
                    self.process_ready(to);
                }
                Event::Client(c) => clients.wake(self, c),
            }
            self.flush_completions(clients);
            if let Some(v) = self.checker.violation.take() {
                return Err(v);
            }
        }
        self.now = self.now.max(until);
        Ok(())
    }

    /// Runs for `ms` more simulated milliseconds, without clients.
    pub fn run_for(&mut self, ms: Millis) -> Result<(), Violation> {
        let until = self.now + ms;
        self.run_until(until, &mut NoClients)
    }

    fn flush_completions(&mut self, clients: &mut dyn Clients) {
        while !self.completions.is_empty() {
            for c in std::mem::take(&mut self.completions) {
                match c {
                    Completion::Write { client, seq, version } => clients.write_done(self, client, seq, version),
                    Completion::Read { node, ctx } => clients.read_done(self, node, &ctx),
                }
            }
        }
    }

    pub fn wake_client_after(&mut self, after: Millis, client: usize) {
        self.schedule(after, Event::Client(client));
    }

    fn send(&mut self, m: Message) {
        if self.is_blocked(m.from, m.to) || self.rng.random_bool(self.opts.loss) {
            return;
        }
        self.traffic.messages += 1;
        self.traffic.bytes += MESSAGE_OVERHEAD_BYTES + m.payload_bytes();
        match m.body {
            Body::AppendResponse { reject: true, .. } => self.traffic.append_rejects += 1,
            Body::Snapshot { .. } => self.traffic.snapshot_chunks += 1,
            _ => {}
        }
        let copies = if self.rng.random_bool(self.opts.duplicate) {
            2
        } else {
            1
        };
        for _ in 0..copies {
            let delay = self.rng.random_range(self.opts.min_delay_ms..=self.opts.max_delay_ms);
            self.schedule(delay, Event::Deliver(m.clone()));
        }
    }

    /// Plays the host's part for node `id`: drains its `Ready`s in the
    /// documented order, modelling fsync and torn writes.
    pub fn process_ready(&mut self, id: NodeId) {
        loop {
            let Some(raft) = self.nodes[(id - 1) as usize].raft.as_mut() else {
                return;
            };
            if raft.is_leader() {
                self.checker.on_leader_commit(raft.term(), raft.commit_index());
            }
            if !raft.has_ready() {
                return;
            }
            let rd = raft.ready();
            let lease_reads = raft.stats().lease_reads;
            if lease_reads > self.node(id).lease_reads_seen {
                self.node_mut(id).lease_reads_seen = lease_reads;
                let term = self.node(id).raft().term();
                if let Err(v) = self.checker.on_lease_read(id, term) {
                    self.checker.fail(v);
                }
            }
            if let Some(ss) = rd.soft_state {
                if ss.role == Role::Leader {
                    self.trace(format_args!("node {id} leads term {}", self.node(id).raft().term()));
                    let raft = self.nodes[(id - 1) as usize].raft.as_ref().expect("alive");
                    let result = self.checker.on_leader(id, raft);
                    if let Err(v) = result {
                        self.checker.fail(v);
                    }
                }
            }
            for m in rd.messages {
                if let Err(v) = self
                    .checker
                    .on_send_before_persist(id, &self.nodes[(id - 1) as usize].disk, &m)
                {
                    self.checker.fail(v);
                }
                self.send(m);
            }

            // Persist: snapshot, entries, hard state. A torn crash keeps a prefix.
            // A commit-only hard state is written and left unsynced, like the node does.
            let disk = &self.nodes[(id - 1) as usize].disk;
            let commit_only = rd.snapshot.is_none()
                && rd.entries.is_empty()
                && rd
                    .hard_state
                    .is_some_and(|hs| (hs.term, hs.vote) == (disk.hard_state.term, disk.hard_state.vote));
            if commit_only {
                let hs = rd.hard_state.expect("commit-only Ready has a hard state");
                debug_assert!(hs.commit >= disk.hard_state.commit, "the commit index never goes back");
                self.nodes[(id - 1) as usize].disk.unsynced_commit = Some(hs);
            }
            let hard_state = if commit_only { None } else { rd.hard_state };
            let writes = rd.snapshot.is_some() as usize + rd.entries.len() + hard_state.is_some() as usize;
            let torn = writes > 0 && self.rng.random_bool(self.opts.torn_crash);
            let survive = if torn { self.rng.random_range(0..writes) } else { writes };
            // The fsync of these writes also makes an earlier unsynced commit
            // durable (the writes below supersede it).
            if writes > 0 && survive == writes {
                self.sync_unsynced_commit(id);
            }
            let mut written = 0;
            let node = &mut self.nodes[(id - 1) as usize];
            if let Some(s) = &rd.snapshot {
                if written < survive {
                    node.disk.write_snapshot(s);
                    written += 1;
                }
            }
            for e in &rd.entries {
                if written < survive {
                    node.disk.write_entry(e);
                    written += 1;
                }
            }
            if let Some(hs) = hard_state {
                if written < survive {
                    node.disk.hard_state = hs;
                }
            }
            if torn {
                self.trace(format_args!(
                    "node {id} crashes mid-write keeping {survive} of {writes} writes"
                ));
                // Abandon the Ready: the core is gone with the process.
                self.node_mut(id).raft = None;
                self.node_mut(id).disk.unsynced_commit = None;
                self.node_mut(id).epoch += 1;
                self.node_mut(id).restarts += 1;
                return;
            }
            let durable_commit = self.node(id).disk.hard_state.commit;
            let raft = self.nodes[(id - 1) as usize].raft.as_ref().expect("alive");
            let result = self.checker.on_persist(id, raft, &rd.entries, durable_commit);
            if let Err(v) = result {
                self.checker.fail(v);
            }
            for m in rd.persisted_messages {
                if let Err(v) = self
                    .checker
                    .on_send_after_persist(id, &self.nodes[(id - 1) as usize].disk, &m)
                {
                    self.checker.fail(v);
                }
                self.send(m);
            }

            // Apply.
            if let Some(s) = &rd.snapshot {
                let node = self.node_mut(id);
                node.kv = KvStore::decode(&s.data).expect("snapshot data decodes");
                node.waiting_writes.retain(|&i, _| i > s.meta.index);
                if let Err(v) = self.checker.on_snapshot_installed(id, &s.meta) {
                    self.checker.fail(v);
                }
            }
            for e in &rd.committed_entries {
                self.apply(id, e);
            }
            let node = self.node_mut(id);
            node.waiting_reads.extend(rd.read_states);
            let applied = node.kv.applied;
            let (ready_reads, later): (Vec<ReadState>, Vec<ReadState>) =
                node.waiting_reads.drain(..).partition(|r| r.index <= applied);
            node.waiting_reads = later;
            for r in ready_reads {
                self.completions.push(Completion::Read { node: id, ctx: r.ctx });
            }
            let raft = self.node_mut(id).raft.as_mut().expect("alive");
            raft.advance();
            self.maybe_compact(id);
        }
    }

    fn apply(&mut self, id: NodeId, e: &Entry) {
        if let Err(v) = self.checker.on_apply(id, e) {
            self.checker.fail(v);
        }
        let sabotaged = self.opts.test_skip_apply == Some((id, e.index));
        let node = self.node_mut(id);
        node.applied.insert(e.index, (e.term, e.data.clone()));
        let version = match e.kind {
            EntryKind::Command if !sabotaged => node.kv.apply(e.index, &e.data),
            _ => {
                node.kv.skip(e.index);
                None
            }
        };
        if let Some(Waiter::Write { client, seq, term }) = node.waiting_writes.remove(&e.index) {
            // A sabotaged apply answers nobody (it produced no version).
            if term == e.term && !sabotaged {
                let version = version.expect("client writes are KV commands");
                self.completions.push(Completion::Write { client, seq, version });
            }
        }
    }

    fn maybe_compact(&mut self, id: NodeId) {
        let every = self.opts.snapshot_every;
        let node = self.node_mut(id);
        let raft = node.raft.as_mut().expect("alive");
        if every == 0 || node.kv.applied < raft.snapshot_index() + every {
            return;
        }
        let index = node.kv.applied;
        let data = node.kv.encode();
        // The host persists its snapshot before telling the core to compact.
        let term = raft.term_at(index).expect("applied entry is in the log");
        let membership = raft.membership_at(index);
        raft.compact(index, data.clone()).expect("compacting an applied index");
        let snapshot = Snapshot {
            meta: triton_raft::SnapshotMeta {
                index,
                term,
                membership,
            },
            data,
        };
        node.disk.write_snapshot(&snapshot);
    }

    // ----- client-facing helpers -----------------------------------------------

    /// Proposes `data` at node `id`, on behalf of a client's write
    /// (client, sequence number) if given.
    pub fn propose(
        &mut self,
        id: NodeId,
        data: Bytes,
        client: Option<(usize, u64)>,
    ) -> Result<(Index, Term), ProposeError> {
        if !self.node(id).running() {
            return Err(ProposeError::NotLeader { leader: None });
        }
        let raft = self.node_mut(id).raft.as_mut().expect("running");
        let (index, term) = raft.propose(data)?;
        let waiter = match client {
            Some((client, seq)) => Waiter::Write { client, seq, term },
            None => Waiter::None,
        };
        self.node_mut(id).waiting_writes.insert(index, waiter);
        self.process_ready(id);
        Ok((index, term))
    }

    /// Asks node `id` (which must lead) to hand leadership to `to`;
    /// whether it took the request.
    pub fn transfer_leader(&mut self, id: NodeId, to: NodeId) -> bool {
        if !self.node(id).running() {
            return false;
        }
        let raft = self.node_mut(id).raft.as_mut().expect("running");
        if raft.transfer_leader(to).is_err() {
            return false;
        }
        self.trace(format_args!("node {id} hands leadership to {to}"));
        self.process_ready(id);
        true
    }

    /// Proposes a membership change at node `id` (which must lead).
    pub fn propose_conf_change(&mut self, id: NodeId, change: ConfChange) -> Result<(Index, Term), ConfChangeError> {
        if !self.node(id).running() {
            return Err(ConfChangeError::NotLeader { leader: None });
        }
        let raft = self.node_mut(id).raft.as_mut().expect("running");
        let at = raft.propose_conf_change(change, Bytes::new())?;
        self.trace(format_args!("node {id} proposes {change:?} at {}", at.0));
        self.node_mut(id).waiting_writes.insert(at.0, Waiter::None);
        self.process_ready(id);
        Ok(at)
    }

    /// The configuration the current leader has in force (or the bootstrap
    /// one when there is no leader).
    pub fn leader_membership(&self) -> Membership {
        match self.leader() {
            Some(l) => self.node(l).raft().membership().clone(),
            None => self.bootstrap_membership(1),
        }
    }

    /// Changes how long node `id`'s ticks are from its next one on: its
    /// clock runs at a different rate (tests of what leases assume).
    pub fn set_tick_ms(&mut self, id: NodeId, tick_ms: Millis) {
        assert!(tick_ms > 0, "a clock must tick");
        self.node_mut(id).tick_ms = tick_ms;
    }

    /// Asks node `id` for a linearizable read point; `ctx` comes back in
    /// `Clients::read_done` once the node may serve the read.
    pub fn read_index(&mut self, id: NodeId, ctx: Bytes) -> bool {
        if !self.node(id).running() {
            return false;
        }
        let raft = self.node_mut(id).raft.as_mut().expect("running");
        if raft.read_index(ctx).is_err() {
            return false;
        }
        self.process_ready(id);
        true
    }

    /// The live node that believes it leads the highest term, if any.
    pub fn leader(&self) -> Option<NodeId> {
        self.nodes
            .iter()
            .filter(|n| n.alive() && n.raft().is_leader())
            .max_by_key(|n| n.raft().term())
            .map(|n| n.id)
    }

    /// How many nodes applied an entry at `index`, and its data (asserting
    /// they agree, as the lab's `nCommitted` does).
    pub fn n_committed(&self, index: Index) -> (usize, Option<Bytes>) {
        let mut count = 0;
        let mut data: Option<Bytes> = None;
        for n in &self.nodes {
            if let Some((_, d)) = n.applied.get(&index) {
                if let Some(prev) = &data {
                    assert_eq!(prev, d, "nodes applied different commands at {index}");
                }
                data = Some(d.clone());
                count += 1;
            }
        }
        (count, data)
    }

    pub fn trace(&self, args: std::fmt::Arguments<'_>) {
        if self.opts.trace {
            eprintln!("[{:>7} ms] {args}", self.now);
        }
    }
}

/// A client driver that does nothing (scenarios that propose directly).
pub struct NoClients;

impl Clients for NoClients {
    fn wake(&mut self, _: &mut Sim, _: usize) {}
    fn write_done(&mut self, _: &mut Sim, _: usize, _: Index, _: Index) {}
    fn read_done(&mut self, _: &mut Sim, _: NodeId, _: &Bytes) {}
}
