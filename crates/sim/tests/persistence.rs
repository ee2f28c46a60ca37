//! Durability (Figure 2's persistent state): crashes and restarts of any
//! node, or of all of them, never lose or roll back a committed entry.
//! Ports of the lab's 2C persistence and churn scenarios.

use std::collections::BTreeMap;

use bytes::Bytes;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use triton_raft::Index;
use triton_sim::lab::Lab;

#[test]
fn state_survives_restarts_of_every_node() {
    let mut lab = Lab::new(3, 30);
    lab.one(b"11", 3, true);
    // Crash and restart all.
    for id in 1..=3 {
        lab.restart(id);
    }
    lab.one(b"12", 3, true);
    let leader1 = lab.check_one_leader();
    lab.restart(leader1);
    lab.one(b"13", 3, true);
    let leader2 = lab.check_one_leader();
    lab.crash(leader2);
    let index = lab.one(b"14", 2, true);
    lab.restart(leader2);
    lab.wait(index, 3, None);
    let leader3 = lab.check_one_leader();
    let i3 = leader3 % 3 + 1;
    lab.crash(i3);
    lab.one(b"15", 2, true);
    lab.restart(i3);
    lab.one(b"16", 3, true);
}

#[test]
fn all_nodes_crashing_repeatedly_never_roll_back_the_commit_index() {
    let mut lab = Lab::new(5, 31);
    let mut committed: BTreeMap<Index, Bytes> = BTreeMap::new();
    let mut high = 0;
    for round in 0..20 {
        let cmd = format!("round{round}");
        let index = lab.one(cmd.as_bytes(), 5, true);
        assert!(index > high, "round {round}: index {index} is not past {high}");
        high = index;
        committed.insert(index, Bytes::from(cmd));
        for id in 1..=5 {
            lab.crash(id);
        }
        for id in 1..=5 {
            lab.restart(id);
        }
        let leader = lab.check_one_leader();
        lab.one(format!("after{round}").as_bytes(), 5, true);
        let commit = lab.sim.node(leader).raft().commit_index();
        assert!(commit >= high, "commit index rolled back from {high} to {commit}");
        for (&i, want) in &committed {
            let (n, got) = lab.n_committed(i);
            assert_eq!(n, 5, "entry {i} not re-applied on every node");
            assert_eq!(got.as_ref(), Some(want), "entry {i} changed after a full restart");
        }
    }
}

#[test]
fn churn_reliable() {
    churn(Lab::new(5, 32), 32, false);
}

#[test]
fn churn_unreliable() {
    churn(Lab::unreliable(5, 33), 33, true);
}

/// Random crashes, restarts, disconnects and reconnects while commands are
/// proposed everywhere; every command seen committed must survive.
fn churn(mut lab: Lab, seed: u64, unreliable: bool) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut seen: BTreeMap<Index, Bytes> = BTreeMap::new();
    let mut proposed = Vec::new();
    for iter in 0..80 {
        for _ in 0..5 {
            let id = rng.random_range(1..=5);
            let cmd = format!("{iter}-{}", rng.random::<u32>());
            if let Some((index, _)) = lab.start(id, cmd.as_bytes()) {
                proposed.push((index, cmd));
            }
        }
        if rng.random_range(0..1000) < 200 {
            lab.disconnect(rng.random_range(1..=5));
        }
        if rng.random_range(0..1000) < 500 {
            let id = rng.random_range(1..=5);
            if !lab.alive(id) {
                lab.restart(id);
            }
            lab.connect(id);
        }
        if rng.random_range(0..1000) < 200 {
            let id = rng.random_range(1..=5);
            if lab.alive(id) {
                lab.crash(id);
            }
        }
        // Churn at a rate of ten changes per election timeout, as the lab does.
        lab.run(if unreliable { 100 } else { 70 });
        for (index, _) in &proposed {
            if let (n, Some(d)) = lab.n_committed(*index) {
                if n > 0 {
                    seen.insert(*index, d);
                }
            }
        }
    }
    lab.sim.set_network(0.0, 0.0);
    for id in 1..=5 {
        if !lab.alive(id) {
            lab.restart(id);
        }
        lab.connect(id);
    }
    lab.one(b"final", 5, true);
    assert!(seen.len() >= 10, "only {} commands committed under churn", seen.len());
    for (index, data) in &seen {
        let (n, got) = lab.n_committed(*index);
        assert_eq!(n, 5, "{index} not on every node after churn");
        assert_eq!(got.as_ref(), Some(data), "{index} changed under churn");
    }
}

/// A commit-only hard state waits for the node's next fsync or tick, as in
/// `node::driver::needs_sync`: a crash before then loses it. The restarted
/// node starts from the older durable commit index and learns the rest from
/// the leader; nothing committed is lost.
#[test]
fn a_commit_index_left_unsynced_is_lost_in_a_crash_and_learned_again() {
    let mut lab = Lab::new(3, 32);
    let mut lost = 0;
    for round in 0..30 {
        let index = lab.one(format!("w{round}").as_bytes(), 3, true);
        // Step 1 ms at a time until some node holds an unsynced commit.
        for _ in 0..200 {
            let unsynced = lab
                .sim
                .nodes
                .iter()
                .find(|n| n.alive() && n.disk.unsynced_commit.is_some());
            if let Some(n) = unsynced {
                let (id, before) = (n.id, n.raft().commit_index());
                let durable = n.disk.hard_state.commit;
                assert!(
                    durable < before,
                    "round {round}: the unsynced commit is ahead of the durable one"
                );
                lab.crash(id);
                assert_eq!(
                    lab.sim.node(id).disk.hard_state.commit,
                    durable,
                    "the crash kept an unsynced write"
                );
                lab.sim.restart(id);
                assert_eq!(
                    lab.sim.node(id).raft().commit_index(),
                    durable,
                    "round {round}: restarted from the disk"
                );
                lost += 1;
                break;
            }
            lab.run(1);
        }
        lab.wait(index, 3, None);
    }
    assert!(lost > 0, "no round caught a node holding an unsynced commit index");
    lab.one(b"after", 3, true);
}
