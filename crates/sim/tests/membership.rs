//! §6 of the paper, cluster membership changes: stories of a cluster that
//! grows, shrinks and replaces a dead node through learners and joint
//! consensus, plus a batch of random seeds that interleave changes with
//! crashes, partitions and message loss under the simulator's invariants.

use std::collections::BTreeSet;

use triton_raft::{ConfChange, ConfChangeError, NodeId, Role};
use triton_sim::fuzz::{run_plan, FaultMix, Plan};
use triton_sim::lab::Lab;
use triton_sim::SimOptions;

fn lab(voters: usize, spare: usize, seed: u64) -> Lab {
    let mut o = SimOptions::new(voters, seed);
    o.spare_nodes = spare;
    Lab::with(o)
}

fn set(ids: &[NodeId]) -> BTreeSet<NodeId> {
    ids.iter().copied().collect()
}

#[test]
fn grow_from_three_to_five_through_learners() {
    let mut lab = lab(3, 2, 1);
    lab.one(b"before", 3, true);
    let m = lab.reconfigure(ConfChange::AddLearner(4));
    assert_eq!((m.voters, m.learners), (set(&[1, 2, 3]), set(&[4])));
    lab.reconfigure(ConfChange::AddLearner(5));
    // Learners receive the log but do not count toward commitment.
    let index = lab.one(b"to learners", 5, true);
    lab.reconfigure(ConfChange::Promote(4));
    let m = lab.reconfigure(ConfChange::Promote(5));
    assert_eq!(m.voters, set(&[1, 2, 3, 4, 5]));
    assert!(m.learners.is_empty());
    // Every node, including the newcomers, learned the configuration from
    // the log and holds everything.
    lab.one(b"after", 5, true);
    for id in 1..=5 {
        assert_eq!(lab.sim.node(id).raft().membership().voters, set(&[1, 2, 3, 4, 5]));
        assert!(lab.sim.node(id).applied.contains_key(&index));
    }
    // Five voters tolerate two failures.
    let leader = lab.check_one_leader();
    let others: Vec<NodeId> = (1..=5).filter(|&i| i != leader).take(2).collect();
    for id in others {
        lab.crash(id);
    }
    lab.one(b"two down", 3, true);
}

#[test]
fn a_learner_never_campaigns_nor_counts_for_a_quorum() {
    let mut lab = lab(3, 1, 2);
    lab.reconfigure(ConfChange::AddLearner(4));
    lab.one(b"x", 4, true);
    // Two of three voters down: the learner and the last voter must not
    // form a majority, and the learner must not even try.
    let leader = lab.check_one_leader();
    let down: Vec<NodeId> = (1..=3).filter(|&i| i != leader).collect();
    for id in &down {
        lab.crash(*id);
    }
    lab.run(5_000);
    lab.check_no_leader();
    let learner = lab.sim.node(4).raft();
    assert_eq!(learner.stats().elections_started + learner.stats().pre_votes_started, 0);
    assert!(lab.start(leader, b"no quorum").is_none_or(|(i, _)| {
        lab.run(2_000);
        lab.n_committed(i).0 == 0
    }));
}

#[test]
fn promotion_waits_until_the_learner_caught_up() {
    let mut lab = lab(3, 1, 3);
    lab.disconnect(4);
    lab.reconfigure(ConfChange::AddLearner(4));
    for i in 0..30 {
        lab.one(format!("w{i}").as_bytes(), 3, true);
    }
    let leader = lab.check_one_leader();
    match lab.sim.propose_conf_change(leader, ConfChange::Promote(4)) {
        Err(ConfChangeError::NotCaughtUp { id: 4, .. }) => {}
        other => panic!("promoting a lagging learner: {other:?}"),
    }
    lab.connect(4);
    let m = lab.reconfigure(ConfChange::Promote(4));
    assert_eq!(m.voters, set(&[1, 2, 3, 4]));
}

#[test]
fn a_removed_leader_hands_over_and_steps_down() {
    let mut lab = lab(3, 0, 4);
    lab.one(b"x", 3, true);
    let old = lab.check_one_leader();
    let elections_before: u64 = (1..=3).map(|i| lab.sim.node(i).raft().stats().elections_started).sum();
    let m = lab.reconfigure(ConfChange::Remove(old));
    assert!(!m.voters.contains(&old));
    let new = lab.check_one_leader();
    assert_ne!(new, old);
    assert_ne!(lab.sim.node(old).raft().role(), Role::Leader);
    // The successor took over by TimeoutNow: exactly one election, no
    // timeout-driven contest.
    let elections_after: u64 = (1..=3).map(|i| lab.sim.node(i).raft().stats().elections_started).sum();
    assert_eq!(elections_after - elections_before, 1, "a handover is one election");
    // The removed node stays quiet: no campaigns, no disruption.
    let term = lab.sim.node(new).raft().term();
    let campaigns = lab.sim.node(old).raft().stats().pre_votes_started;
    lab.run(5_000);
    lab.one(b"y", 2, true);
    assert_eq!(
        lab.sim.node(new).raft().term(),
        term,
        "the removed leader disrupted the cluster"
    );
    assert_eq!(lab.sim.node(old).raft().stats().pre_votes_started, campaigns);
}

#[test]
fn shrink_to_one_voter_but_never_to_none() {
    let mut lab = lab(3, 0, 5);
    lab.one(b"x", 3, true);
    let leader = lab.check_one_leader();
    let followers: Vec<NodeId> = (1..=3).filter(|&i| i != leader).collect();
    lab.reconfigure(ConfChange::Remove(followers[0]));
    // Removing the last-but-one voter.
    let m = lab.reconfigure(ConfChange::Remove(followers[1]));
    assert_eq!(m.voters, set(&[leader]));
    lab.one(b"alone", 1, true);
    match lab.sim.propose_conf_change(leader, ConfChange::Remove(leader)) {
        Err(ConfChangeError::Refused {
            why: triton_raft::confchange::Refusal::LastVoter,
            ..
        }) => {}
        other => panic!("removing the last voter: {other:?}"),
    }
}

#[test]
fn replace_a_dead_node_which_catches_up_by_snapshot() {
    let mut o = SimOptions::new(3, 6);
    o.spare_nodes = 1;
    o.snapshot_every = 10;
    let mut lab = Lab::with(o);
    for i in 0..40 {
        lab.one(format!("w{i}").as_bytes(), 3, true);
    }
    let leader = lab.check_one_leader();
    let dead = (1..=3).find(|&i| i != leader).unwrap();
    lab.crash(dead);
    lab.reconfigure(ConfChange::AddLearner(4));
    lab.reconfigure(ConfChange::Promote(4));
    let m = lab.reconfigure(ConfChange::Remove(dead));
    let expected: BTreeSet<NodeId> = (1..=4).filter(|&i| i != dead).collect();
    assert_eq!(m.voters, expected);
    assert!(
        lab.sim.node(4).raft().stats().snapshots_installed >= 1,
        "the newcomer needed a snapshot"
    );
    // The replacement carries the quorum: lose another original node.
    let leader = lab.check_one_leader();
    let other = expected.iter().copied().find(|&i| i != leader && i != 4).unwrap();
    lab.crash(other);
    lab.one(b"after replace", 2, true);
}

/// Random seeds with membership changes always on, mixed with every other
/// fault: the same invariants as the main batch (one leader per term even
/// across configurations, a leader is a voter, log matching, leader
/// completeness, durability, convergence of members, linearizability).
#[test]
fn random_membership_changes_under_faults_stay_safe() {
    let count: u64 = std::env::var("TRITON_SIM_MEMBERSHIP_SEEDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(300);
    let mut failures = Vec::new();
    let mut changes = 0;
    for seed in 0..count {
        let mut plan = Plan::for_seed(seed);
        plan.mix.membership = true;
        plan.nodes = [3, 5][(seed % 2) as usize];
        if seed % 4 == 3 {
            plan.mix = FaultMix::all();
        }
        match run_plan(plan, false) {
            Ok(r) => changes += r.membership_changes,
            Err(f) => {
                eprintln!("FAIL {f}");
                failures.push(f);
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {count} seeds failed; first: {}",
        failures.len(),
        failures[0]
    );
    assert!(
        changes > count,
        "too few membership changes happened ({changes}) to mean anything"
    );
}
