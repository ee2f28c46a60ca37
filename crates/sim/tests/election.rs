//! §5.2 Leader election, with pre-vote and check-quorum (thesis §9.6, §6.2).
//! Ports of the classic lab's 2A scenarios, with its time and message budgets.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use triton_sim::lab::Lab;
use triton_sim::SimOptions;

#[test]
fn initial_election_happens_and_terms_stay_stable() {
    let mut lab = Lab::new(3, 1);
    lab.check_one_leader();
    lab.run(50);
    let term1 = lab.check_terms();
    assert!(term1 >= 1, "term is {term1}, but an election should have happened");
    // With no faults, nothing should change over two election timeouts.
    lab.run(1_000);
    let term2 = lab.check_terms();
    assert_eq!(term1, term2, "term changed even though there were no failures");
    lab.check_one_leader();
}

#[test]
fn reelection_after_leader_loss() {
    let mut lab = Lab::new(3, 2);
    let leader1 = lab.check_one_leader();
    // If the leader disconnects, a new one should be elected.
    lab.disconnect(leader1);
    lab.check_one_leader();
    // The old leader rejoining must not disturb the new one.
    lab.connect(leader1);
    let leader2 = lab.check_one_leader();
    // Without a quorum, no leader may be elected.
    let other = leader2 % 3 + 1;
    lab.disconnect(leader2);
    lab.disconnect(other);
    lab.run(1_200);
    lab.check_no_leader();
    // A quorum returns: a leader again.
    lab.connect(other);
    lab.check_one_leader();
    lab.connect(leader2);
    lab.check_one_leader();
}

#[test]
fn many_elections_with_three_of_seven_disconnected() {
    let mut lab = Lab::new(7, 3);
    let mut rng = ChaCha8Rng::seed_from_u64(3);
    lab.check_one_leader();
    for _ in 0..10 {
        let picks: Vec<u64> = (0..3).map(|_| rng.random_range(1..=7)).collect();
        for &p in &picks {
            lab.disconnect(p);
        }
        // Four (or more) remain connected: a leader must emerge among them.
        lab.check_one_leader();
        for &p in &picks {
            lab.connect(p);
        }
    }
    lab.check_one_leader();
}

#[test]
fn an_election_costs_at_most_thirty_messages() {
    let mut lab = Lab::new(3, 4);
    while lab.sim.leader().is_none() {
        lab.run(10);
    }
    lab.run(20); // let the no-op commit
    let cost = lab.messages();
    assert!(
        (1..=30).contains(&cost),
        "an election in a 3-node cluster cost {cost} messages"
    );
}

#[test]
fn an_idle_second_costs_at_most_sixty_messages() {
    let mut lab = Lab::new(3, 5);
    lab.check_one_leader();
    lab.one(b"x", 3, false);
    let before = lab.messages();
    lab.run(1_000);
    let idle = lab.messages() - before;
    assert!(idle <= 60, "{idle} messages in one idle second");
    assert!(idle >= 20, "{idle} messages: heartbeats are missing");
}

/// Thesis §9.6: a node that was partitioned away keeps timing out but, with
/// pre-vote, never raises its term, so on return it does not depose anyone.
#[test]
fn prevote_keeps_a_rejoining_node_from_disrupting_the_leader() {
    let (leader, term, after) = rejoin(SimOptions::new(3, 6));
    assert_eq!(after.0, leader, "the leader changed after a partitioned node rejoined");
    assert_eq!(after.1, term, "the term rose after a partitioned node rejoined");

    // Control: without pre-vote and check-quorum the rejoining node does
    // disrupt, so the assertions above can fail.
    let mut o = SimOptions::new(3, 6);
    o.pre_vote = false;
    o.check_quorum = false;
    let (_, term, after) = rejoin(o);
    assert!(
        after.1 > term,
        "without pre-vote the rejoining node should have forced a new term"
    );
}

fn rejoin(opts: SimOptions) -> (u64, u64, (u64, u64)) {
    let mut lab = Lab::with(opts);
    let leader = lab.check_one_leader();
    let term = lab.check_terms();
    let follower = leader % 3 + 1;
    lab.disconnect(follower);
    lab.run(3_000);
    lab.connect(follower);
    lab.run(1_000);
    let now = lab.check_one_leader();
    (leader, term, (now, lab.check_terms()))
}

/// Check-quorum: a leader cut off from the majority steps down within about
/// an election timeout instead of lingering as a stale leader.
#[test]
fn check_quorum_makes_an_isolated_leader_step_down() {
    let mut lab = Lab::new(3, 7);
    let leader = lab.check_one_leader();
    lab.disconnect(leader);
    lab.run(1_500);
    assert!(
        !lab.sim.node(leader).raft().is_leader(),
        "isolated leader {leader} still thinks it leads"
    );

    // Control: without check-quorum it would keep believing it leads.
    let mut o = SimOptions::new(3, 7);
    o.check_quorum = false;
    let mut lab = Lab::with(o);
    let leader = lab.check_one_leader();
    lab.disconnect(leader);
    lab.run(1_500);
    assert!(lab.sim.node(leader).raft().is_leader());
}
