//! §5.3 Log replication and §5.4 safety (the Figure 8 rule). Ports of the
//! classic lab's 2B and 2C agreement scenarios.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use triton_sim::lab::Lab;

#[test]
fn basic_agreement() {
    let mut lab = Lab::new(3, 10);
    let mut last = 0;
    for i in 0..3 {
        let cmd = format!("cmd{i}");
        let index = lab.one(cmd.as_bytes(), 3, false);
        assert!(index > last, "index {index} did not advance past {last}");
        last = index;
    }
}

#[test]
fn ten_large_commands_cost_at_most_three_times_their_bytes() {
    let mut lab = Lab::new(3, 11);
    lab.one(b"99", 3, false);
    let before = lab.bytes();
    let mut sent = 0;
    for i in 0..10u8 {
        let cmd = vec![b'a' + i; 5000];
        sent += cmd.len() as u64;
        lab.one(&cmd, 3, false);
    }
    let got = lab.bytes() - before;
    let budget = 3 * sent + 50_000;
    assert!(
        got <= budget,
        "{got} bytes of traffic for {sent} bytes of commands (budget {budget})"
    );
}

#[test]
fn agreement_despite_follower_failure() {
    let mut lab = Lab::new(3, 12);
    lab.one(b"101", 3, false);
    let leader1 = lab.check_one_leader();
    lab.disconnect(leader1 % 3 + 1);
    // The leader and the remaining follower still agree.
    lab.one(b"102", 2, false);
    lab.run(600);
    lab.one(b"103", 2, false);
    // Disconnect the remaining follower too: nothing can commit.
    let leader2 = lab.check_one_leader();
    lab.disconnect(leader2 % 3 + 1);
    lab.disconnect((leader2 + 1) % 3 + 1);
    let (index, _) = lab.start(leader2, b"104").expect("the leader accepts proposals");
    lab.run(1_200);
    assert_eq!(lab.n_committed(index).0, 0, "{index} committed without a majority");
}

#[test]
fn agreement_despite_leader_failure() {
    let mut lab = Lab::new(3, 13);
    lab.one(b"101", 3, false);
    let leader1 = lab.check_one_leader();
    lab.disconnect(leader1);
    lab.one(b"102", 2, false);
    lab.run(600);
    lab.one(b"103", 2, false);
    let leader2 = lab.check_one_leader();
    lab.disconnect(leader2);
    let mut proposed = Vec::new();
    for id in 1..=3 {
        if let Some((i, _)) = lab.start(id, b"104") {
            proposed.push(i);
        }
    }
    lab.run(1_200);
    for i in proposed {
        assert_eq!(lab.n_committed(i).0, 0, "{i} committed with a single connected node");
    }
}

#[test]
fn a_reconnected_follower_catches_up() {
    let mut lab = Lab::new(3, 14);
    lab.one(b"101", 3, false);
    let leader = lab.check_one_leader();
    let f = leader % 3 + 1;
    lab.disconnect(f);
    for c in [b"102", b"103", b"104", b"105"] {
        lab.one(c, 2, false);
    }
    lab.connect(f);
    lab.one(b"106", 3, true);
    lab.run(1_000);
    lab.one(b"107", 3, true);
}

#[test]
fn no_commit_without_a_majority() {
    let mut lab = Lab::new(5, 15);
    lab.one(b"10", 5, false);
    let leader = lab.check_one_leader();
    for k in 1..=3 {
        lab.disconnect((leader + k - 1) % 5 + 1);
    }
    let (index, _) = lab.start(leader, b"20").expect("the leader accepts proposals");
    lab.run(1_200);
    assert_eq!(lab.n_committed(index).0, 0, "{index} committed without a majority");
    for k in 1..=3 {
        lab.connect((leader + k - 1) % 5 + 1);
    }
    // The old uncommitted entry may be lost or kept; agreement resumes.
    let leader2 = lab.check_one_leader();
    assert!(lab.start(leader2, b"30").is_some());
    lab.one(b"1000", 5, true);
}

#[test]
fn concurrent_proposals_all_commit_in_one_term() {
    let mut lab = Lab::new(3, 16);
    lab.one(b"1", 3, false);
    let leader = lab.check_one_leader();
    let mut indexes = Vec::new();
    let mut term = None;
    for i in 0..5 {
        let (index, t) = lab.start(leader, format!("c{i}").as_bytes()).expect("leader accepts");
        assert!(term.is_none_or(|x| x == t), "proposals landed in different terms");
        term = Some(t);
        indexes.push(index);
    }
    for (i, index) in indexes.into_iter().enumerate() {
        let data = lab.wait(index, 3, term).expect("term did not change");
        assert_eq!(&data[..], format!("c{i}").as_bytes());
    }
}

#[test]
fn a_partitioned_old_leader_rejoins_and_yields() {
    let mut lab = Lab::new(3, 17);
    lab.one(b"101", 3, true);
    let leader1 = lab.check_one_leader();
    lab.disconnect(leader1);
    // The old leader accepts proposals that can never commit.
    for c in [b"102", b"103", b"104"] {
        lab.start(leader1, c);
    }
    lab.one(b"103", 2, true);
    let leader2 = lab.check_one_leader();
    lab.disconnect(leader2);
    lab.connect(leader1);
    lab.one(b"104", 2, true);
    lab.connect(leader2);
    lab.one(b"105", 3, true);
}

/// Lab "backup": 50 conflicting entries on each side of a partition; the
/// loser's log is repaired quickly once the partition heals.
#[test]
fn backup_repairs_fifty_conflicting_entries_quickly() {
    let mut lab = Lab::new(5, 18);
    let mut rng = ChaCha8Rng::seed_from_u64(18);
    let mut cmd = || format!("{}", rng.random::<u32>()).into_bytes();
    lab.one(&cmd(), 5, true);
    let l1 = lab.check_one_leader();
    let at = |k: u64| (l1 + k - 1) % 5 + 1;
    // Put the leader and one follower in a partition.
    for k in 2..=4 {
        lab.disconnect(at(k));
    }
    for _ in 0..50 {
        lab.start(l1, &cmd());
    }
    lab.run(150);
    lab.disconnect(l1);
    lab.disconnect(at(1));
    // Let the other partition elect a leader and commit 50 entries.
    for k in 2..=4 {
        lab.connect(at(k));
    }
    for _ in 0..50 {
        lab.one(&cmd(), 3, true);
    }
    let l2 = lab.check_one_leader();
    let other = (2..=4).map(at).find(|&x| x != l2).expect("three nodes");
    lab.disconnect(other);
    for _ in 0..50 {
        lab.start(l2, &cmd());
    }
    lab.run(150);
    // Bring back the original leader's partition plus `other`.
    for id in 1..=5 {
        lab.disconnect(id);
    }
    lab.connect(l1);
    lab.connect(at(1));
    lab.connect(other);
    let rejects_before = lab.sim.traffic.append_rejects;
    for _ in 0..50 {
        lab.one(&cmd(), 3, true);
    }
    for id in 1..=5 {
        lab.connect(id);
    }
    lab.one(&cmd(), 5, true);
    // Conflict hints skip a whole term per round trip: far fewer rejections
    // than conflicting entries.
    let rejects = lab.sim.traffic.append_rejects - rejects_before;
    assert!(
        rejects < 20,
        "{rejects} rejected appends to repair logs with ~100 conflicting entries"
    );
}

/// Conflict hints: a follower diverging by 200 entries of one term is
/// repaired in a handful of round trips, not 200.
#[test]
fn conflict_hints_repair_in_round_trips_per_term_not_per_entry() {
    let mut lab = Lab::new(5, 19);
    lab.one(b"base", 5, true);
    let l1 = lab.check_one_leader();
    lab.disconnect(l1);
    for i in 0..200 {
        lab.start(l1, format!("lost{i}").as_bytes());
    }
    lab.run(50);
    for i in 0..200 {
        lab.one(format!("kept{i}").as_bytes(), 4, true);
    }
    let before = lab.sim.traffic.append_rejects;
    lab.connect(l1);
    lab.one(b"after", 5, true);
    let rejects = lab.sim.traffic.append_rejects - before;
    assert!(
        rejects <= 4,
        "{rejects} rejections to repair 200 conflicting entries of one term"
    );
}

/// Figure 8: a leader may not commit an entry of an earlier term by
/// counting replicas; crashing leaders at random must never lose a
/// committed entry (checked after every event by the simulator).
#[test]
fn figure8_reliable() {
    figure8(Lab::new(5, 20), 20, false);
}

#[test]
fn figure8_unreliable() {
    figure8(Lab::unreliable(5, 21), 21, true);
}

fn figure8(mut lab: Lab, seed: u64, unreliable: bool) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    lab.one(b"start", 1, true);
    let mut up = 5;
    for iter in 0..1000 {
        if unreliable && iter == 200 {
            lab.sim.opts.max_delay_ms = 300; // long reordering
        }
        let mut leader = None;
        for id in 1..=5u64 {
            let usable = if unreliable {
                lab.is_connected(id)
            } else {
                lab.alive(id)
            };
            if usable && lab.start(id, format!("{}", rng.random::<u32>()).as_bytes()).is_some() {
                leader = Some(id);
            }
        }
        let ms = if rng.random_range(0..1000) < 100 {
            rng.random_range(0..150)
        } else {
            rng.random_range(0..13)
        };
        lab.run(ms);
        if let Some(l) = leader {
            if !unreliable || rng.random_bool(0.5) {
                if unreliable {
                    lab.disconnect(l);
                } else {
                    lab.crash(l);
                }
                up -= 1;
            }
        }
        if up < 3 {
            let s = rng.random_range(1..=5u64);
            let down = if unreliable {
                !lab.is_connected(s)
            } else {
                !lab.alive(s)
            };
            if down {
                if unreliable {
                    lab.connect(s);
                } else {
                    lab.restart(s);
                }
                up += 1;
            }
        }
    }
    for id in 1..=5 {
        if unreliable {
            lab.connect(id);
        } else if !lab.alive(id) {
            lab.restart(id);
        }
    }
    lab.sim.opts.max_delay_ms = 5;
    lab.sim.set_network(0.0, 0.0);
    lab.one(b"end", 5, true);
    let terms_led = lab.sim.checker.leaders_by_term().len();
    assert!(
        terms_led >= 5,
        "only {terms_led} leaders: the scenario did not exercise leader changes"
    );
}
