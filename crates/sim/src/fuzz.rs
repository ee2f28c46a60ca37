//! Randomized runs: one seed picks the cluster size, the fault mix, the
//! fault schedule and the client workload. A run has a fault phase and a
//! calm phase; safety is checked throughout, liveness in the calm phase,
//! and every acknowledged write must survive.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use triton_raft::{ConfChange, Index, NodeId, ProposeError, Term};

use crate::checker::Violation;
use crate::state_machine::KvCommand;
use crate::{Clients, Millis, Sim, SimOptions};

/// Which faults a run injects.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FaultMix {
    /// Crashes and restarts (one node, the leader, or all at once), and
    /// pauses (a stopped process that wakes with its ticks owed).
    pub crashes: bool,
    /// Crashes in the middle of persisting (torn, unsynced writes lost).
    pub torn_writes: bool,
    pub partitions: bool,
    /// Message loss, duplication and long delays (reordering).
    pub lossy: bool,
    /// Aggressive log compaction, so snapshots are sent in many chunks.
    pub snapshots: bool,
    /// Membership changes (add learner, promote, remove, even the leader)
    /// and leadership transfers,
    /// with two spare nodes that can join.
    pub membership: bool,
}

impl FaultMix {
    pub fn all() -> Self {
        FaultMix {
            crashes: true,
            torn_writes: true,
            partitions: true,
            lossy: true,
            snapshots: true,
            membership: true,
        }
    }

    /// `crashes,torn,partitions,lossy,snapshots` (or `all`, `none`).
    pub fn parse(s: &str) -> Result<Self, String> {
        let mut mix = FaultMix::default();
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            match part {
                "all" => mix = FaultMix::all(),
                "none" => {}
                "crashes" => mix.crashes = true,
                "torn" => mix.torn_writes = true,
                "partitions" => mix.partitions = true,
                "lossy" => mix.lossy = true,
                "snapshots" => mix.snapshots = true,
                "membership" => mix.membership = true,
                other => {
                    return Err(format!(
                        "unknown fault '{other}' (crashes, torn, partitions, lossy, snapshots, membership, all, none)"
                    ))
                }
            }
        }
        Ok(mix)
    }
}

impl std::fmt::Display for FaultMix {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<&str> = [
            (self.crashes, "crashes"),
            (self.torn_writes, "torn"),
            (self.partitions, "partitions"),
            (self.lossy, "lossy"),
            (self.snapshots, "snapshots"),
            (self.membership, "membership"),
        ]
        .iter()
        .filter(|(on, _)| *on)
        .map(|(_, n)| *n)
        .collect();
        if names.is_empty() {
            write!(f, "none")
        } else {
            write!(f, "{}", names.join(","))
        }
    }
}

/// The shape of one randomized run.
#[derive(Clone, Debug)]
pub struct Plan {
    pub seed: u64,
    pub nodes: usize,
    pub mix: FaultMix,
    pub clients: usize,
    pub keys: usize,
    /// Faults are injected during `[0, fault_ms)`.
    pub fault_ms: Millis,
    /// After the faults stop, everything must settle within this time.
    pub liveness_ms: Millis,
    /// Client request timeout before retrying elsewhere.
    pub request_timeout_ms: Millis,
    /// Leaders answer reads on their lease; ticks are 20 ms then (so that
    /// one millisecond of drift is 5%) with the same timeouts in time.
    pub lease_read: bool,
    /// See `SimOptions::clock_drift_ms`.
    pub clock_drift_ms: Millis,
}

/// Test-only faults that break a property the end-of-run checks of
/// [`run_plan`] must catch (the per-event safety checks have unit tests of
/// their own). Only [`run_sabotaged_plan`] takes one: no seed, plan or
/// command line reaches them.
#[doc(hidden)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Sabotage {
    #[default]
    None,
    /// The calm phase leaves every node crashed: liveness.
    NoRecovery,
    /// After the calm phase, every node's durable log loses the last
    /// acknowledged write and everything after it: durability.
    LoseLastAckedWrite,
    /// Node `node` skips applying the entry at `index` (its state machine
    /// silently diverges): convergence. Pick an entry whose effect later
    /// writes do not mask (a session registration on a follower): the check
    /// compares final states only.
    SkipApply { node: NodeId, index: Index },
    /// The first read that finds a value answers a value never written:
    /// linearizability.
    CorruptRead,
    /// The nemesis panics at its first wake-up from `at_ms` on (standing in
    /// for a core assertion): the failure must say when.
    Panic { at_ms: Millis },
}

/// Cluster sizes the seeds rotate through.
const SIZES: [usize; 6] = [3, 5, 7, 1, 2, 4];

/// Seeds per block of every size and fault mix; every other block reads on
/// leases (see `Plan::for_seed`).
pub const LEASE_BLOCK: u64 = 64 * SIZES.len() as u64;

impl Plan {
    /// The plan a seed implies: cluster size and fault mix rotate with it,
    /// so a batch of consecutive seeds covers every combination.
    pub fn for_seed(seed: u64) -> Plan {
        // One and two voters too: a single voter wins its election in the
        // step that raises its term (with learners from the membership mix,
        // it has someone to send to before that term is durable).
        let nodes = SIZES[(seed % SIZES.len() as u64) as usize];
        let bits = (seed / SIZES.len() as u64) % 64;
        let mix = FaultMix {
            crashes: bits & 1 != 0,
            torn_writes: bits & 2 != 0,
            partitions: bits & 4 != 0,
            lossy: bits & 8 != 0,
            snapshots: bits & 16 != 0,
            membership: bits & 32 != 0,
        };
        // Every other block of seeds covering all sizes and mixes reads on
        // leases, with clocks 5% apart at most each way.
        let lease_read = (seed / LEASE_BLOCK) % 2 == 1;
        Plan {
            seed,
            nodes,
            mix,
            clients: 3,
            keys: 2,
            fault_ms: 3_000,
            liveness_ms: 10_000,
            request_timeout_ms: 400,
            lease_read,
            clock_drift_ms: if lease_read { 1 } else { 0 },
        }
    }

    pub fn replay_command(&self) -> String {
        format!(
            "triton sim --seed {} --nodes {} --faults {} --trace   (or: TRITON_SIM_SEED={} TRITON_SIM_NODES={} TRITON_SIM_FAULTS={} cargo test --release -p triton-sim --test fuzz replay -- --nocapture)",
            self.seed, self.nodes, self.mix, self.seed, self.nodes, self.mix
        )
    }
}

/// Kinds of client operations.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OpKind {
    Get,
    Put,
    Append,
}

/// One client operation as the client saw it (for linearizability).
#[derive(Clone, Debug)]
pub struct HistoryOp {
    pub client: usize,
    pub key: String,
    pub kind: OpKind,
    /// The value written (empty for gets).
    pub value: String,
    /// The outcome: for a get the value read and its version, for a write
    /// the version it produced. `None`: unknown (never acknowledged).
    pub result: Option<(Option<String>, Index)>,
    pub call: Millis,
    pub ret: Option<Millis>,
}

/// What a passing run reports.
#[derive(Clone, Debug)]
pub struct Report {
    pub plan: Plan,
    pub history: Vec<HistoryOp>,
    pub completed: usize,
    pub unknown: usize,
    pub committed_entries: usize,
    pub leaders: usize,
    pub messages: u64,
    pub simulated_ms: Millis,
    /// Membership changes accepted by a leader during the run.
    pub membership_changes: u64,
    /// Ready batches with reads answered on a lease.
    pub lease_reads: u64,
}

/// A failing run: the violation and the line that replays it.
#[derive(Clone, Debug)]
pub struct Failure {
    pub plan: Plan,
    pub violation: Violation,
    pub at_ms: Millis,
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "seed {} ({} nodes, faults {}): {} at {} ms\n  replay: {}",
            self.plan.seed,
            self.plan.nodes,
            self.plan.mix,
            self.violation,
            self.at_ms,
            self.plan.replay_command()
        )
    }
}

/// The client id the nemesis (fault injector) uses for its timer.
const NEMESIS: usize = usize::MAX;

struct InFlight {
    /// The history entry.
    op: usize,
    /// The client registers its session first (before its first write).
    register: bool,
    seq: u64,
    nonce: u64,
    node: NodeId,
    deadline: Millis,
}

struct Client {
    /// The registered session; a client registers before its first write.
    session: Option<u64>,
    seq: u64,
    nonce: u64,
    current: Option<InFlight>,
    leader_hint: Option<NodeId>,
    /// When the client's latest wake-up is due; earlier ones are stale (a
    /// request's timeout after it was answered). A stale wake that found the
    /// client idle would start a second chain of requests, and where a
    /// request completes at once (one voter) the chains doubled.
    wake_due: Millis,
}

/// The workload and the nemesis.
struct Driver {
    plan: Plan,
    rng: ChaCha8Rng,
    clients: Vec<Client>,
    history: Vec<HistoryOp>,
    stopping: bool,
    /// Membership changes the leader accepted.
    membership_changes: u64,
    /// Every acknowledged write, as the log held it when acknowledged.
    acked: Vec<AckedWrite>,
    sabotage: Sabotage,
}

/// A write a client got an answer for: the history entry, and the index and
/// term of the entry that took effect (for a retried duplicate, the
/// original's: its version).
struct AckedWrite {
    op: usize,
    index: Index,
    /// `None` if no node had applied anything at `index` (a broken answer).
    term: Option<Term>,
}

impl Driver {
    fn pick_node(&mut self, sim: &Sim, client: usize) -> NodeId {
        match self.clients[client].leader_hint.take() {
            Some(id) if self.rng.random_bool(0.8) => id,
            _ => self.rng.random_range(1..=sim.nodes.len() as NodeId),
        }
    }

    fn start_op(&mut self, sim: &mut Sim, c: usize) {
        let kind = match self.rng.random_range(0..10) {
            0..=3 => OpKind::Get,
            4..=6 => OpKind::Put,
            _ => OpKind::Append,
        };
        let key = format!("k{}", self.rng.random_range(0..self.plan.keys));
        let client = &mut self.clients[c];
        // Session numbers count writes only (reads are not in the log): the
        // store calls a first write with seq > 1 a forgotten session's.
        if kind != OpKind::Get {
            client.seq += 1;
        }
        let value = match kind {
            OpKind::Get => String::new(),
            _ => format!("c{c}.{};", client.seq),
        };
        self.history.push(HistoryOp {
            client: c,
            key,
            kind,
            value,
            result: None,
            call: sim.now,
            ret: None,
        });
        let op = self.history.len() - 1;
        let seq = client.seq;
        client.current = Some(InFlight {
            op,
            register: client.session.is_none() && kind != OpKind::Get,
            seq,
            nonce: 0,
            node: 0,
            deadline: 0,
        });
        self.attempt(sim, c);
    }

    /// Sends (or resends) the client's current op to some node.
    fn attempt(&mut self, sim: &mut Sim, c: usize) {
        let node = self.pick_node(sim, c);
        let timeout = self.plan.request_timeout_ms;
        let client = &mut self.clients[c];
        client.nonce += 1;
        let nonce = client.nonce;
        let inflight = client.current.as_mut().expect("an op is in flight");
        inflight.node = node;
        inflight.nonce = nonce;
        inflight.deadline = sim.now + timeout;
        let (seq, register, op) = (inflight.seq, inflight.register, inflight.op);
        let accepted = if register {
            // Seq 0 marks a registration's answer (writes count from 1).
            self.propose_for(sim, c, node, KvCommand::register(), 0)
        } else {
            let op = &self.history[op];
            match op.kind {
                OpKind::Get => {
                    let mut ctx = BytesMut::new();
                    ctx.put_u64(c as u64);
                    ctx.put_u64(nonce);
                    sim.read_index(node, ctx.freeze())
                }
                OpKind::Put | OpKind::Append => {
                    let cmd = KvCommand {
                        session: self.clients[c].session.expect("registered before its first op"),
                        seq,
                        key: op.key.clone(),
                        append: op.kind == OpKind::Append,
                        value: op.value.clone(),
                    };
                    self.propose_for(sim, c, node, cmd.encode(), seq)
                }
            }
        };
        if accepted {
            self.wake_after(sim, c, timeout);
        } else {
            // Try again soon, elsewhere.
            let inflight = self.clients[c].current.as_mut().expect("in flight");
            inflight.deadline = sim.now + 20;
            self.wake_after(sim, c, 20);
        }
    }

    /// Proposes client `c`'s command at `node`; whether the node took it.
    fn propose_for(&mut self, sim: &mut Sim, c: usize, node: NodeId, data: Bytes, seq: u64) -> bool {
        match sim.propose(node, data, Some((c, seq))) {
            Ok(_) => true,
            Err(ProposeError::NotLeader { leader }) => {
                self.clients[c].leader_hint = leader;
                false
            }
            Err(_) => false,
        }
    }

    /// Wakes client `c` after `after` ms, superseding its earlier wake-ups.
    fn wake_after(&mut self, sim: &mut Sim, c: usize, after: Millis) {
        self.clients[c].wake_due = sim.now + after;
        sim.wake_client_after(after, c);
    }

    fn complete(&mut self, sim: &mut Sim, c: usize, result: (Option<String>, Index)) {
        let inflight = self.clients[c].current.take().expect("in flight");
        let op = &mut self.history[inflight.op];
        op.result = Some(result);
        op.ret = Some(sim.now);
        self.clients[c].leader_hint = Some(inflight.node);
        // At least 1 ms: a stale wake-up due now must find the next one later.
        let think = self.rng.random_range(1..30);
        self.wake_after(sim, c, think);
    }

    /// Half the time, every client's next request goes to `id` (a leader
    /// just cut off or woken from a pause): the requests a stale leader must
    /// not answer from its own state.
    fn maybe_point_clients_at(&mut self, id: NodeId) {
        if self.rng.random_bool(0.5) {
            for client in &mut self.clients {
                client.leader_hint = Some(id);
            }
        }
    }

    fn nemesis(&mut self, sim: &mut Sim) {
        if let Sabotage::Panic { at_ms } = self.sabotage {
            assert!(sim.now < at_ms, "sabotage: a panic at {} ms", sim.now);
        }
        if sim.now >= self.plan.fault_ms {
            return;
        }
        let mix = self.plan.mix;
        let n = sim.nodes.len() as NodeId;
        let mut choices: Vec<u8> = Vec::new();
        if mix.crashes {
            choices.extend([0, 0, 1, 9]);
        }
        if mix.partitions {
            choices.extend([2, 3, 4, 5, 6]);
        }
        if mix.lossy {
            choices.push(7);
        }
        if mix.membership {
            choices.extend([8, 8, 8, 10]);
        }
        if !choices.is_empty() {
            let choice = choices[self.rng.random_range(0..choices.len())];
            match choice {
                0 => {
                    let crashed: Vec<NodeId> = sim.nodes.iter().filter(|x| !x.alive()).map(|x| x.id).collect();
                    if !crashed.is_empty() && self.rng.random_bool(0.6) {
                        let id = crashed[self.rng.random_range(0..crashed.len())];
                        sim.restart(id);
                    } else if self.rng.random_bool(0.2) {
                        // Power loss: every node at once, so no survivor
                        // remembers what the rest forgot; they come back
                        // one at a time.
                        sim.trace(format_args!("power loss"));
                        for id in sim.ids() {
                            sim.crash(id);
                        }
                    } else {
                        let id = self.rng.random_range(1..=n);
                        sim.crash(id);
                    }
                }
                1 => {
                    if let Some(l) = sim.leader() {
                        sim.crash(l);
                    }
                }
                // A pause (SIGSTOP, a GC or VM stall), most often of the
                // leader: it wakes with its lease long gone and clients
                // still pointed at it.
                9 => {
                    let paused: Vec<NodeId> = sim.nodes.iter().filter(|x| x.paused()).map(|x| x.id).collect();
                    if !paused.is_empty() && self.rng.random_bool(0.6) {
                        let id = paused[self.rng.random_range(0..paused.len())];
                        sim.resume(id);
                        self.maybe_point_clients_at(id);
                    } else {
                        let target = match sim.leader() {
                            Some(l) if self.rng.random_bool(0.7) => l,
                            _ => self.rng.random_range(1..=n),
                        };
                        sim.pause(target);
                    }
                }
                // Symmetric split into a minority and a majority (one node
                // has nothing to split from).
                2 if n >= 2 => {
                    let mut ids: Vec<NodeId> = (1..=n).collect();
                    shuffle(&mut self.rng, &mut ids);
                    let k = self.rng.random_range(1..=(n as usize) / 2);
                    let (a, b) = ids.split_at(k);
                    sim.partition(&[a.to_vec(), b.to_vec()]);
                }
                3 => {
                    // One-way link failures.
                    for _ in 0..self.rng.random_range(1..=n) {
                        let a = self.rng.random_range(1..=n);
                        let b = self.rng.random_range(1..=n);
                        if a != b {
                            sim.block(a, b);
                        }
                    }
                }
                4 => {
                    // Isolate the leader.
                    if let Some(l) = sim.leader() {
                        sim.disconnect(l);
                        self.maybe_point_clients_at(l);
                    }
                }
                5 => {
                    // A bridge: two halves that only one node connects.
                    let mut ids: Vec<NodeId> = (1..=n).collect();
                    shuffle(&mut self.rng, &mut ids);
                    let bridge = ids[0];
                    let half = ids.len() / 2;
                    let (a, b) = (ids[1..=half].to_vec(), ids[half + 1..].to_vec());
                    sim.heal();
                    for &x in &a {
                        for &y in &b {
                            sim.block(x, y);
                            sim.block(y, x);
                        }
                    }
                    sim.trace(format_args!("bridge {bridge} between {a:?} and {b:?}"));
                }
                8 => self.change_membership(sim),
                // An operator's leadership transfer, to any node (a learner
                // or an outsider is refused), also while a removal of the
                // leader is pending.
                10 => {
                    let to = self.rng.random_range(1..=n);
                    if let Some(l) = sim.leader() {
                        sim.transfer_leader(l, to);
                    }
                }
                _ => {
                    if mix.lossy {
                        let loss = self.rng.random_range(0.0..0.25);
                        let dup = self.rng.random_range(0.0..0.1);
                        sim.set_network(loss, dup);
                        sim.opts.max_delay_ms = self.rng.random_range(5..60);
                    }
                    if mix.partitions && self.rng.random_bool(0.5) {
                        sim.heal();
                    }
                }
            }
        }
        let next = self.rng.random_range(100..500);
        sim.wake_client_after(next, NEMESIS);
    }
}

impl Driver {
    /// One random membership change at the leader: add an outsider as a
    /// learner, promote a learner, or remove a voter (the leader too).
    /// Refusals (a change pending, a learner not caught up) are expected.
    fn change_membership(&mut self, sim: &mut Sim) {
        let Some(leader) = sim.leader() else {
            return;
        };
        let m = sim.node(leader).raft().membership().clone();
        let members = m.all_nodes();
        let outsiders: Vec<NodeId> = sim.ids().into_iter().filter(|id| !members.contains(id)).collect();
        let learners: Vec<NodeId> = m.learners.iter().copied().collect();
        let voters: Vec<NodeId> = m.voters.iter().copied().collect();
        let change = match self.rng.random_range(0..3) {
            0 if !outsiders.is_empty() => ConfChange::AddLearner(outsiders[self.rng.random_range(0..outsiders.len())]),
            1 if !learners.is_empty() => ConfChange::Promote(learners[self.rng.random_range(0..learners.len())]),
            _ if voters.len() > 1 => ConfChange::Remove(voters[self.rng.random_range(0..voters.len())]),
            _ => return,
        };
        if sim.propose_conf_change(leader, change).is_ok() {
            self.membership_changes += 1;
        }
    }
}

impl Clients for Driver {
    fn wake(&mut self, sim: &mut Sim, c: usize) {
        if c == NEMESIS {
            self.nemesis(sim);
            return;
        }
        if sim.now != self.clients[c].wake_due {
            return; // superseded
        }
        match &self.clients[c].current {
            Some(inflight) if sim.now >= inflight.deadline => self.attempt(sim, c),
            Some(_) => {}
            None if !self.stopping => self.start_op(sim, c),
            None => {}
        }
    }

    fn write_done(&mut self, sim: &mut Sim, c: usize, seq: u64, version: Index) {
        // A registration's answer: `version` is the session's id; the op
        // goes out at once. A late answer to an earlier attempt opened a
        // session nobody uses.
        if seq == 0 {
            if let Some(f) = self.clients[c].current.as_mut().filter(|f| f.register) {
                f.register = false;
                self.clients[c].session = Some(version);
                self.attempt(sim, c);
            }
            return;
        }
        // A read in flight carries the seq of the client's last write (seqs
        // count writes only): a late answer to that write is not its answer.
        let matches = self.clients[c]
            .current
            .as_ref()
            .is_some_and(|f| !f.register && f.seq == seq && self.history[f.op].kind != OpKind::Get);
        if matches {
            let op = self.clients[c].current.as_ref().expect("matched").op;
            // The term the log held at `version` now, so that the end of
            // the run can check the final cluster still holds that entry.
            let term = sim.checker.committed.get(&version).map(|(t, _)| *t);
            self.acked.push(AckedWrite {
                op,
                index: version,
                term,
            });
            self.complete(sim, c, (None, version));
        }
    }

    fn read_done(&mut self, sim: &mut Sim, node: NodeId, ctx: &Bytes) {
        let mut b = &ctx[..];
        if b.len() != 16 {
            return;
        }
        let (c, nonce) = (b.get_u64() as usize, b.get_u64());
        let Some(inflight) = self.clients.get(c).and_then(|x| x.current.as_ref()) else {
            return;
        };
        if inflight.nonce != nonce || inflight.register || self.history[inflight.op].kind != OpKind::Get {
            return;
        }
        let key = self.history[inflight.op].key.clone();
        let (mut value, version) = sim.node(node).kv.get(&key);
        if self.sabotage == Sabotage::CorruptRead && value.is_some() {
            self.sabotage = Sabotage::None; // once
            value = Some("never written;".into());
        }
        self.complete(sim, c, (value, version));
    }
}

fn shuffle<T>(rng: &mut ChaCha8Rng, v: &mut [T]) {
    for i in (1..v.len()).rev() {
        let j = rng.random_range(0..=i);
        v.swap(i, j);
    }
}

/// Runs one seed with the plan it implies.
pub fn run_seed(seed: u64, trace: bool) -> Result<Report, Failure> {
    run_plan(Plan::for_seed(seed), trace)
}

/// Runs a plan; a panic inside the core (a violated assertion) is reported
/// as a failure with the replay line too.
pub fn run_plan(plan: Plan, trace: bool) -> Result<Report, Failure> {
    run_sabotaged_plan(plan, trace, Sabotage::None)
}

/// Test-only: [`run_plan`] with `sabotage` injected, so that a test can show
/// each end-of-run check fails a run that breaks its property.
#[doc(hidden)]
pub fn run_sabotaged_plan(plan: Plan, trace: bool, sabotage: Sabotage) -> Result<Report, Failure> {
    let p = plan.clone();
    crate::LAST_EVENT_MS.set(0);
    let outcome = std::panic::catch_unwind(move || run_plan_inner(p, trace, sabotage));
    match outcome {
        Ok(r) => r,
        Err(panic) => {
            let msg = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_else(|| "panic".into());
            Err(Failure {
                plan,
                violation: Violation {
                    property: "core assertion",
                    detail: msg,
                },
                at_ms: crate::last_event_ms(),
            })
        }
    }
}

fn run_plan_inner(plan: Plan, trace: bool, sabotage: Sabotage) -> Result<Report, Failure> {
    let mut rng = ChaCha8Rng::seed_from_u64(plan.seed ^ 0x5EED_F00D);
    let mut opts = SimOptions::new(plan.nodes, plan.seed);
    opts.trace = trace;
    if plan.mix.membership {
        opts.spare_nodes = 2.min(9 - plan.nodes.min(9));
    }
    if plan.mix.snapshots {
        opts.snapshot_every = rng.random_range(5..40);
        opts.snapshot_chunk_bytes = rng.random_range(16..256);
    }
    if plan.mix.torn_writes {
        opts.torn_crash = 0.002;
    }
    if plan.lease_read {
        opts.lease_read = true;
        opts.tick_ms = 20;
        opts.election_tick = 15;
        opts.heartbeat_tick = 5;
    }
    opts.clock_drift_ms = plan.clock_drift_ms;
    if let Sabotage::SkipApply { node, index } = sabotage {
        opts.test_skip_apply = Some((node, index));
    }
    let mut sim = Sim::new(opts);
    let mut driver = Driver {
        plan: plan.clone(),
        rng,
        clients: (0..plan.clients)
            .map(|_| Client {
                session: None,
                seq: 0,
                nonce: 0,
                current: None,
                leader_hint: None,
                wake_due: 0,
            })
            .collect(),
        history: Vec::new(),
        stopping: false,
        membership_changes: 0,
        acked: Vec::new(),
        sabotage,
    };
    let fail = |sim: &Sim, violation: Violation| Failure {
        plan: plan.clone(),
        violation,
        at_ms: sim.now,
    };
    for c in 0..plan.clients {
        driver.wake_after(&mut sim, c, 1 + c as u64);
    }
    sim.wake_client_after(50, NEMESIS);

    // Fault phase.
    sim.run_until(plan.fault_ms, &mut driver).map_err(|v| fail(&sim, v))?;

    // Calm phase: heal everything, restart everyone, stop new client ops.
    sim.heal();
    sim.set_network(0.0, 0.0);
    sim.opts.max_delay_ms = 5;
    sim.opts.torn_crash = 0.0;
    for id in sim.ids() {
        if sabotage == Sabotage::NoRecovery {
            sim.crash(id);
        } else {
            sim.resume(id);
            sim.restart(id);
        }
    }
    driver.stopping = true;
    let deadline = plan.fault_ms + plan.liveness_ms;
    loop {
        let step = sim.now + 100;
        sim.run_until(step, &mut driver).map_err(|v| fail(&sim, v))?;
        if settled(&sim, &driver) {
            break;
        }
        if sim.now >= deadline {
            let pending: Vec<usize> = (0..plan.clients)
                .filter(|&c| driver.clients[c].current.is_some())
                .collect();
            let applied: Vec<Index> = sim.nodes.iter().map(|n| n.kv.applied).collect();
            if trace {
                for n in sim.nodes.iter().filter(|n| n.alive()) {
                    let r = n.raft();
                    eprintln!(
                        "node {}: {:?} term {} last {} commit {} applied {} membership {:?}",
                        n.id,
                        r.role(),
                        r.term(),
                        r.last_index(),
                        r.commit_index(),
                        r.applied_index(),
                        r.membership()
                    );
                }
            }
            return Err(fail(
                &sim,
                Violation {
                    property: "liveness",
                    detail: format!(
                        "{} ms after the faults stopped: leader {:?}, clients with pending ops {pending:?}, applied per node {applied:?}",
                        plan.liveness_ms,
                        sim.leader()
                    ),
                },
            ));
        }
    }

    // A seed whose clients got no answer at all checked nothing.
    if !driver.history.iter().any(|op| op.result.is_some()) {
        return Err(fail(
            &sim,
            Violation {
                property: "progress",
                detail: "no client operation completed in the whole run".into(),
            },
        ));
    }

    if sabotage == Sabotage::LoseLastAckedWrite {
        if let Some(last) = driver.acked.iter().map(|w| w.index).max() {
            for n in &mut sim.nodes {
                n.disk.entries.retain(|e| e.index < last);
            }
        }
    }
    // Durability: the final cluster still holds every acknowledged write.
    check_acknowledged_writes(&sim, &driver).map_err(|v| fail(&sim, v))?;
    // Removed nodes stop hearing from the cluster: only members converge.
    let members = sim.leader_membership().all_nodes();
    let first_member = *members.first().expect("a settled cluster has members");
    let first = sim.node(first_member).kv.encode();
    for &id in &members {
        if sim.node(id).kv.encode() != first {
            return Err(fail(
                &sim,
                Violation {
                    property: "convergence",
                    detail: format!(
                        "node {id} holds a different state than node {first_member} at the same applied index"
                    ),
                },
            ));
        }
    }

    // Linearizability of what the clients saw (reads served by ReadIndex).
    let ops = to_lincheck(&driver.history);
    let opts = triton_lincheck::CheckOptions {
        parallel: false,
        ..Default::default()
    };
    let report = triton_lincheck::check(&ops, &opts);
    match report.verdict {
        triton_lincheck::Verdict::Linearizable => {}
        verdict => {
            let detail = report
                .violations()
                .chain(report.unknown_keys())
                .next()
                .map(|k| {
                    let minimal = k.violation.as_ref().map(|v| v.minimal.clone()).unwrap_or_default();
                    format!("key {} ({verdict:?}); minimal failing history: {minimal:?}", k.key)
                })
                .unwrap_or_default();
            return Err(fail(
                &sim,
                Violation {
                    property: "linearizability",
                    detail,
                },
            ));
        }
    }

    let completed = driver.history.iter().filter(|o| o.result.is_some()).count();
    Ok(Report {
        unknown: driver.history.len() - completed,
        completed,
        committed_entries: sim.checker.committed.len(),
        leaders: sim.checker.leaders_by_term().len(),
        messages: sim.traffic.messages,
        simulated_ms: sim.now,
        membership_changes: driver.membership_changes,
        lease_reads: sim.checker.lease_reads,
        history: driver.history,
        plan,
    })
}

/// Every acknowledged write is in the settled cluster: the leader and a
/// majority of the voters hold its entry durably (in the log at its index
/// with the term it had when acknowledged and the client's value, or
/// covered by a snapshot that reaches it), and have committed it.
fn check_acknowledged_writes(sim: &Sim, driver: &Driver) -> Result<(), Violation> {
    let leader = sim.leader().expect("a settled cluster has a leader");
    let voters = &sim.node(leader).raft().membership().voters;
    for w in &driver.acked {
        let op = &driver.history[w.op];
        let lost = |detail: String| {
            Err(Violation {
                property: "durability",
                detail: format!(
                    "acknowledged write {:?} of client {} at index {} (term {:?}): {detail}",
                    op.value, op.client, w.index, w.term
                ),
            })
        };
        let Some(term) = w.term else {
            return lost("no node had applied an entry there when it was acknowledged".into());
        };
        let missing = |id: NodeId| -> Option<String> {
            let n = sim.node(id);
            if !n.alive() {
                return Some(format!("node {id} is down"));
            }
            let commit = n.raft().commit_index();
            if commit < w.index {
                return Some(format!("node {id} has commit index {commit}"));
            }
            match (n.disk.entry(w.index), &n.disk.snapshot) {
                (Some(e), _) => {
                    let value = KvCommand::decode(&e.data).map(|c| c.value);
                    // Values name their client and seq ("c3.7;"): unique.
                    (e.term != term || value.as_ref() != Some(&op.value))
                        .then(|| format!("node {id} holds term {} value {value:?} there", e.term))
                }
                (None, Some(s)) if s.meta.index > w.index || (s.meta.index, s.meta.term) == (w.index, term) => None,
                (None, _) => Some(format!(
                    "node {id}'s durable log ends at {} and its snapshot at {:?}",
                    n.disk.last_index(),
                    n.disk.snapshot.as_ref().map(|s| (s.meta.index, s.meta.term))
                )),
            }
        };
        if let Some(why) = missing(leader) {
            return lost(format!("leader {why}"));
        }
        let lacking: Vec<String> = voters.iter().filter_map(|&id| missing(id)).collect();
        if lacking.len() * 2 >= voters.len() {
            return lost(format!(
                "no majority of voters {voters:?} holds it: {}",
                lacking.join("; ")
            ));
        }
    }
    Ok(())
}

/// Calm and done: a leader, no client op pending, every node applied all
/// that is committed.
fn settled(sim: &Sim, driver: &Driver) -> bool {
    if sim.leader().is_none() || driver.clients.iter().any(|c| c.current.is_some()) {
        return false;
    }
    let leader = sim.node(sim.leader().expect("checked"));
    let commit = leader.raft().commit_index();
    // Until its own no-op commits, a new leader's commit index may be below
    // what was committed before (every node may have lost an unsynced
    // commit index in a power loss): not settled yet.
    if leader.raft().term_at(commit) != Some(leader.raft().term()) {
        return false;
    }
    let membership = leader.raft().membership();
    // A joint configuration must have been left (auto-leave is liveness).
    membership.voters_outgoing.is_empty()
        && membership.all_nodes().iter().all(|&id| {
            let n = sim.node(id);
            n.alive() && n.kv.applied == commit
        })
}

/// The client history in the linearizability checker's terms (simulated
/// milliseconds become nanoseconds; an unacknowledged op has an unknown
/// outcome).
pub fn to_lincheck(history: &[HistoryOp]) -> Vec<triton_lincheck::Operation> {
    use triton_lincheck::{Input, Operation, Output};
    history
        .iter()
        .filter(|op| !(op.kind == OpKind::Get && op.result.is_none()))
        .map(|op| {
            let input = match op.kind {
                OpKind::Get => Input::Get,
                OpKind::Put => Input::Put {
                    value: op.value.clone(),
                },
                OpKind::Append => Input::Append {
                    value: op.value.clone(),
                },
            };
            let output = op.result.as_ref().map(|(value, version)| match op.kind {
                OpKind::Get => Output::Get {
                    value: value.clone(),
                    version: *version,
                },
                OpKind::Put => Output::Put { version: *version },
                OpKind::Append => Output::Append { version: *version },
            });
            Operation {
                client: op.client as u64,
                key: op.key.clone(),
                input,
                output,
                call: op.call * 1_000_000,
                ret: op.ret.map(|r| r * 1_000_000),
            }
        })
        .collect()
}
