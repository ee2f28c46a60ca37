//! §6.4 Linearizable reads with ReadIndex: no log write, a heartbeat round
//! confirms leadership, and the read is served once applied >= read index.

use bytes::Bytes;
use triton_raft::{Index, NodeId};
use triton_sim::checker::Violation;
use triton_sim::lab::Lab;
use triton_sim::{Clients, Sim, SimOptions};

/// Records the reads the simulator reports as servable.
#[derive(Default)]
struct Reads {
    served: Vec<(NodeId, Bytes, Index)>,
}

impl Clients for Reads {
    fn wake(&mut self, _: &mut Sim, _: usize) {}
    fn write_done(&mut self, _: &mut Sim, _: usize, _: u64, _: Index) {}
    fn read_done(&mut self, sim: &mut Sim, node: NodeId, ctx: &Bytes) {
        self.served.push((node, ctx.clone(), sim.node(node).kv.applied));
    }
}

fn run(lab: &mut Lab, reads: &mut Reads, ms: u64) {
    let until = lab.sim.now + ms;
    lab.sim.run_until(until, reads).expect("no safety violation");
}

#[test]
fn a_leader_serves_a_read_after_one_heartbeat_round_without_writing_the_log() {
    let mut lab = Lab::new(3, 50);
    let index = lab.one(b"w1", 3, false);
    let leader = lab.check_one_leader();
    let last = lab.sim.node(leader).raft().last_index();
    let mut reads = Reads::default();
    assert!(lab.sim.read_index(leader, Bytes::from_static(b"r1")));
    run(&mut lab, &mut reads, 50);
    assert_eq!(reads.served.len(), 1, "the read was not served");
    let (node, ctx, applied) = &reads.served[0];
    assert_eq!((*node, &ctx[..]), (leader, &b"r1"[..]));
    assert!(*applied >= index, "served before applying the last write");
    assert_eq!(
        lab.sim.node(leader).raft().last_index(),
        last,
        "a read wrote to the log"
    );
}

#[test]
fn a_follower_read_is_forwarded_and_sees_every_committed_write() {
    let mut lab = Lab::new(3, 51);
    let leader = lab.check_one_leader();
    let follower = leader % 3 + 1;
    let index = lab.one(b"w1", 2, false);
    let mut reads = Reads::default();
    assert!(lab.sim.read_index(follower, Bytes::from_static(b"f1")));
    run(&mut lab, &mut reads, 100);
    assert_eq!(reads.served.len(), 1, "the follower read was not served");
    let (node, _, applied) = &reads.served[0];
    assert_eq!(*node, follower);
    assert!(
        *applied >= index,
        "the follower served a read before applying write {index}"
    );
}

/// A leader cut off from the majority cannot confirm its leadership, so it
/// must never serve a read (which could be stale: a new leader may already
/// have accepted writes).
#[test]
fn an_isolated_leader_never_serves_a_read() {
    let mut lab = Lab::new(3, 52);
    lab.one(b"w1", 3, false);
    let old = lab.check_one_leader();
    lab.disconnect(old);
    let mut reads = Reads::default();
    assert!(lab.sim.read_index(old, Bytes::from_static(b"stale?")));
    run(&mut lab, &mut reads, 2_000);
    // Meanwhile the majority elects a leader and writes.
    lab.one(b"w2", 2, true);
    run(&mut lab, &mut reads, 500);
    assert!(
        reads.served.is_empty(),
        "an isolated leader served a read: {:?}",
        reads.served
    );
}

/// Reads that arrive before a new leader commits its no-op wait for it
/// (until then the leader does not know the true commit index).
#[test]
fn a_new_leader_answers_reads_only_after_committing_its_noop() {
    let mut lab = Lab::new(3, 53);
    lab.one(b"w1", 3, false);
    let old = lab.check_one_leader();
    lab.disconnect(old);
    let mut reads = Reads::default();
    // Poll until a new leader appears, then read immediately.
    let new = loop {
        run(&mut lab, &mut reads, 5);
        if let Some(l) = lab.sim.leader().filter(|&l| l != old) {
            break l;
        }
    };
    assert!(lab.sim.read_index(new, Bytes::from_static(b"early")));
    run(&mut lab, &mut reads, 200);
    assert_eq!(reads.served.len(), 1);
    let raft = lab.sim.node(new).raft();
    let (_, _, applied) = reads.served[0];
    assert_eq!(
        raft.term_at(applied),
        Some(raft.term()),
        "read served before the new term's no-op applied"
    );
}

// ----- leader lease reads (thesis §6.4.1) ------------------------------------

fn lease_lab(seed: u64) -> Lab {
    let mut opts = SimOptions::new(3, seed);
    opts.lease_read = true;
    opts.tick_ms = 20;
    opts.election_tick = 15;
    opts.heartbeat_tick = 5;
    Lab::with(opts)
}

/// Asks `node` for `count` reads, one every `every_ms`. Returns the reads
/// it answered and the first violation.
fn keep_reading(lab: &mut Lab, node: NodeId, count: u32, every_ms: u64) -> (usize, Option<Violation>) {
    let mut reads = Reads::default();
    for i in 0..count {
        lab.sim.read_index(node, Bytes::from(format!("r{i}")));
        let until = lab.sim.now + every_ms;
        if let Err(v) = lab.sim.run_until(until, &mut reads) {
            return (reads.served.len(), Some(v));
        }
    }
    (reads.served.len(), None)
}

/// Cuts the leader off and keeps asking it for reads every 5 ms for two
/// seconds. Returns the reads it answered and the first violation.
fn read_from_isolated_leader(lab: &mut Lab, old: NodeId) -> (usize, Option<Violation>) {
    lab.disconnect(old);
    keep_reading(lab, old, 400, 5)
}

/// On a lease a cut-off leader still answers reads for a while, but only
/// until the others could elect someone else: never after.
#[test]
fn a_cut_off_leader_answers_on_its_lease_only_until_a_new_leader_could_be_elected() {
    for seed in 0..20 {
        let mut lab = lease_lab(seed);
        lab.one(b"w1", 3, false);
        let old = lab.check_one_leader();
        let before = lab.sim.node(old).raft().stats().lease_reads;
        let (served, violation) = read_from_isolated_leader(&mut lab, old);
        assert_eq!(violation, None, "seed {seed}");
        assert!(served > 0, "seed {seed}: no read answered on the lease");
        assert!(lab.sim.node(old).raft().stats().lease_reads > before);
        let new = lab.sim.leader().expect("the majority elected a leader");
        assert_ne!(new, old, "seed {seed}");
    }
}

/// Control for the checker: a leader whose clock runs at half speed (far
/// beyond the drift the lease allows for) keeps its lease too long, and
/// the simulator catches it answering after a new leader was elected.
#[test]
fn a_lease_on_a_clock_at_half_speed_is_caught_outliving_the_next_leader() {
    let mut caught = 0;
    for seed in 0..20 {
        let mut lab = lease_lab(seed);
        lab.one(b"w1", 3, false);
        let old = lab.check_one_leader();
        lab.sim.set_tick_ms(old, 40);
        if let (_, Some(v)) = read_from_isolated_leader(&mut lab, old) {
            assert_eq!(v.property, "lease safety", "seed {seed}: {v}");
            caught += 1;
        }
    }
    eprintln!("{caught} of 20 seeds caught the lease outliving the next leader");
    assert!(caught > 0, "no seed caught a lease outliving the next leader");
}

/// Pauses the cut-off leader for two seconds (the others elect a new one
/// meanwhile), wakes it with `wake`, and asks it for reads at once.
/// Returns the reads it answered after waking and the first violation.
fn read_from_leader_woken_from_a_pause(
    lab: &mut Lab,
    old: NodeId,
    wake: fn(&mut Sim, NodeId),
) -> (usize, Option<Violation>) {
    lab.disconnect(old);
    lab.sim.pause(old);
    lab.sim.run_for(2_000).expect("no safety violation while it sleeps");
    let new = lab
        .sim
        .nodes
        .iter()
        .find(|n| n.id != old && n.alive() && n.raft().is_leader());
    assert!(new.is_some(), "the others elected a leader while {old} slept");
    wake(&mut lab.sim, old);
    keep_reading(lab, old, 20, 1)
}

/// A leader that slept (SIGSTOP, a stalled VM) wakes with every tick it
/// missed counted before any input, so its lease is over before it could
/// answer a read: it answers none.
#[test]
fn a_leader_woken_from_a_pause_counts_the_time_it_slept_before_answering_a_read() {
    for seed in 0..20 {
        let mut lab = lease_lab(seed);
        lab.one(b"w1", 3, false);
        let old = lab.check_one_leader();
        let (served, violation) = read_from_leader_woken_from_a_pause(&mut lab, old, Sim::resume);
        assert_eq!(violation, None, "seed {seed}");
        assert_eq!(served, 0, "seed {seed}: the woken leader answered a read");
        assert!(
            !lab.sim.node(old).raft().is_leader(),
            "seed {seed}: still leads after its timeout"
        );
    }
}

/// Control for the checker: a leader that wakes without counting the time
/// it slept still believes in its lease, and the simulator catches it
/// answering after a new leader was elected.
#[test]
fn a_leader_woken_without_counting_the_time_it_slept_is_caught_answering_on_a_dead_lease() {
    for seed in 0..20 {
        let mut lab = lease_lab(seed);
        lab.one(b"w1", 3, false);
        let old = lab.check_one_leader();
        let (_, violation) = read_from_leader_woken_from_a_pause(&mut lab, old, Sim::resume_forgetting_ticks);
        let v = violation.unwrap_or_else(|| panic!("seed {seed}: a read on a dead lease went unnoticed"));
        assert_eq!(v.property, "lease safety", "seed {seed}: {v}");
    }
}
