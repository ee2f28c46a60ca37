//! §7 Log compaction: a follower behind the leader's compacted log
//! receives the snapshot in chunks and resumes replication from it.

use triton_sim::lab::Lab;
use triton_sim::SimOptions;

fn lab(seed: u64, unreliable: bool) -> Lab {
    let mut o = SimOptions::new(3, seed);
    o.snapshot_every = 10;
    o.snapshot_chunk_bytes = 64; // many chunks per snapshot
    if unreliable {
        o.loss = 0.1;
        o.max_delay_ms = 20;
    }
    Lab::with(o)
}

fn install(mut lab: Lab, crash: bool) {
    lab.one(b"start", 3, true);
    for round in 0..15 {
        let leader = lab.check_one_leader();
        let victim = leader % 3 + 1;
        if crash {
            lab.crash(victim);
        } else {
            lab.disconnect(victim);
        }
        // Enough to push the leader's snapshot past the victim's log.
        for i in 0..12 {
            lab.start(leader, format!("r{round}-{i}").as_bytes());
        }
        lab.one(format!("r{round}-end").as_bytes(), 2, true);
        if crash {
            lab.restart(victim);
        } else {
            lab.connect(victim);
        }
        // The victim catches up: everyone applies the next command.
        lab.one(format!("r{round}-joined").as_bytes(), 3, true);
    }
    let installed: u64 = lab
        .sim
        .nodes
        .iter()
        .filter_map(|n| n.raft.as_ref())
        .map(|r| r.stats().snapshots_installed)
        .sum();
    let restarted_from_snapshot = lab.sim.nodes.iter().any(|n| n.disk.snapshot.is_some());
    assert!(
        installed > 0 || (crash && restarted_from_snapshot),
        "no snapshot was ever installed"
    );
    assert!(lab.sim.traffic.snapshot_chunks > 1, "snapshots were not sent in chunks");
}

#[test]
fn snapshot_install_after_disconnect() {
    install(lab(40, false), false);
}

#[test]
fn snapshot_install_after_disconnect_unreliable() {
    install(lab(41, true), false);
}

#[test]
fn snapshot_install_after_crash() {
    install(lab(42, false), true);
}

#[test]
fn snapshot_install_after_crash_unreliable() {
    install(lab(43, true), true);
}
