//! Thesis §3.10 Leadership transfer: the target is brought up to date and
//! told to campaign at once, so there is no election-timeout pause.

use triton_sim::lab::Lab;

#[test]
fn leadership_moves_to_the_target_faster_than_an_election_timeout() {
    let mut lab = Lab::new(5, 60);
    lab.one(b"w", 5, false);
    let leader = lab.check_one_leader();
    let target = leader % 5 + 1;
    let term = lab.check_terms();
    let raft = lab.sim.nodes[(leader - 1) as usize].raft.as_mut().expect("alive");
    raft.transfer_leader(target).expect("leader accepts the transfer");
    lab.sim.process_ready(leader);
    // Well below the minimum election timeout (300 ms).
    lab.run(60);
    assert_eq!(lab.sim.leader(), Some(target), "leadership did not move to {target}");
    assert_eq!(lab.check_terms(), term + 1);
    lab.one(b"after", 5, false);
}

#[test]
fn a_lagging_target_is_caught_up_before_it_campaigns() {
    let mut lab = Lab::new(3, 61);
    lab.one(b"w0", 3, false);
    let leader = lab.check_one_leader();
    let target = leader % 3 + 1;
    lab.disconnect(target);
    for i in 0..20 {
        lab.one(format!("w{i}").as_bytes(), 2, false);
    }
    lab.connect(target);
    let raft = lab.sim.nodes[(leader - 1) as usize].raft.as_mut().expect("alive");
    raft.transfer_leader(target).expect("leader accepts the transfer");
    // No proposals while the transfer is in progress.
    assert!(raft.propose(bytes::Bytes::from_static(b"x")).is_err());
    lab.sim.process_ready(leader);
    lab.run(200);
    assert_eq!(lab.sim.leader(), Some(target));
    let new = lab.sim.node(target).raft();
    let old = lab.sim.node(leader).raft();
    assert!(
        new.last_index() >= old.commit_index(),
        "the new leader lacks committed entries"
    );
}

#[test]
fn transfer_to_a_non_voter_or_from_a_follower_is_refused() {
    let mut lab = Lab::new(3, 62);
    let leader = lab.check_one_leader();
    let follower = leader % 3 + 1;
    let raft = lab.sim.nodes[(leader - 1) as usize].raft.as_mut().expect("alive");
    assert!(raft.transfer_leader(99).is_err());
    let raft = lab.sim.nodes[(follower - 1) as usize].raft.as_mut().expect("alive");
    assert!(raft.transfer_leader(leader).is_err());
}
