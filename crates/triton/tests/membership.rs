//! Membership changes on real `triton server` processes, driven by the
//! operator's commands (`triton server --join`, `triton admin ...`): grow
//! 3 -> 5 under load, replace a node killed with SIGKILL, shrink back to 3
//! (removing the leader itself), while `triton verify`, attached to the
//! cluster, records a client history that its checker must find
//! linearizable. Plus the admin RPCs' refusals.

#[path = "support/cluster.rs"]
mod cluster;

use std::collections::BTreeMap;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use cluster::{bin, Cluster, ClusterOptions};

const TOKEN: &str = "membership-test-token";

/// `triton admin` with the cluster's config; (success, stdout + stderr).
fn admin(c: &Cluster, args: &[&str]) -> (bool, String) {
    let out = Command::new(bin())
        .arg("admin")
        .arg("--config")
        .arg(&c.config)
        .args(args)
        .output()
        .expect("run triton admin");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// Runs `triton admin` and fails the test if it fails.
fn admin_ok(c: &Cluster, args: &[&str]) -> String {
    let (ok, text) = admin(c, args);
    assert!(
        ok,
        "triton admin {args:?} failed:\n{text}\nlogs in {}",
        c.dir.path().display()
    );
    text
}

/// Members by id -> role, from `triton admin members` (asked of `node`).
fn members(c: &Cluster, node: usize) -> (Option<u64>, BTreeMap<u64, String>) {
    members_via(c, &c.addrs[node])
}

/// Members by id -> role, from `triton admin --endpoints ENDPOINTS members`.
fn members_via(c: &Cluster, endpoints: &str) -> (Option<u64>, BTreeMap<u64, String>) {
    let text = admin_ok(c, &["--endpoints", endpoints, "members"]);
    let mut roles = BTreeMap::new();
    let mut leader = None;
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("leader ") {
            leader = rest.split(',').next().and_then(|l| l.trim().parse().ok());
            continue;
        }
        let cols: Vec<&str> = line.split_whitespace().collect();
        if cols.len() == 4 {
            if let Ok(id) = cols[0].trim_start_matches('*').parse::<u64>() {
                roles.insert(id, cols[2].to_string());
            }
        }
    }
    (leader, roles)
}

/// Polls `check` every `every` until it returns `Ok`, failing the test with
/// its last `Err` once `timeout` has passed.
fn poll_until(timeout: Duration, every: Duration, mut check: impl FnMut() -> Result<(), String>) {
    let start = Instant::now();
    loop {
        match check() {
            Ok(()) => return,
            Err(why) => assert!(start.elapsed() < timeout, "{why}"),
        }
        std::thread::sleep(every);
    }
}

/// Waits until node `node` sees exactly `expected` (id -> role).
fn wait_members(c: &Cluster, node: usize, expected: &[(u64, &str)]) {
    let want: BTreeMap<u64, String> = expected.iter().map(|(id, r)| (*id, r.to_string())).collect();
    poll_until(Duration::from_secs(30), Duration::from_millis(200), || {
        let (_, got) = members(c, node);
        match got == want {
            true => Ok(()),
            false => Err(format!(
                "members seen by node {node}: {got:?}, wanted {want:?}; logs in {}",
                c.dir.path().display()
            )),
        }
    });
}

fn leader_of(c: &Cluster, node: usize) -> u64 {
    let start = Instant::now();
    loop {
        if let (Some(l), _) = members(c, node) {
            return l;
        }
        assert!(start.elapsed() < Duration::from_secs(20), "no leader");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// `triton kv --endpoints ENDPOINT ARGS...` with the cluster's config;
/// (success, stdout + stderr).
fn kv(c: &Cluster, endpoint: &str, args: &[&str]) -> (bool, String) {
    let out = Command::new(bin())
        .args(["kv", "--endpoints", endpoint, "--config"])
        .arg(&c.config)
        .args(args)
        .output()
        .expect("run triton kv");
    let text = String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    (out.status.success(), text)
}

/// Waits until node `node` answers a serializable get of `key` from its own
/// state with `value`.
fn wait_local_value(c: &Cluster, node: usize, key: &str, value: &str) {
    poll_until(Duration::from_secs(30), Duration::from_millis(300), || {
        let (ok, text) = kv(c, &c.addrs[node], &["--serializable", "get", key]);
        match ok && text.contains(value) {
            true => Ok(()),
            false => Err(format!(
                "node {node} never caught up ({text}); its log:\n{}",
                c.log(node)
            )),
        }
    });
}

/// `triton verify` attached to the cluster's (present and future) nodes.
fn start_verify(c: &Cluster, seconds: u64) -> Child {
    let out = c.dir.path().join("verify");
    Command::new(bin())
        .args(["verify", "--config"])
        .arg(&c.config)
        .args(["--endpoints", &c.addrs.join(",")])
        .args(["--faults", "none", "--clients", "4", "--keys", "3", "--seed", "7"])
        .args(["--duration", &format!("{seconds}s"), "--out"])
        .arg(&out)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn triton verify")
}

#[test]
fn grow_replace_and_shrink_under_load_stay_linearizable() {
    let mut c = Cluster::start(ClusterOptions {
        admin_token: Some(TOKEN.into()),
        // Small, so newcomers catch up from a snapshot, not only the log.
        snapshot_threshold: 200,
        ..ClusterOptions::default()
    });
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(c.wait_leader());
    let new = c.add_nodes_to_config(3);
    let (n3, n4, n5) = (new[0], new[1], new[2]);
    let verify = start_verify(&c, 40);

    // Grow 3 -> 5: two nodes join as learners, catch up, get promoted.
    std::thread::sleep(Duration::from_secs(2));
    c.spawn_joining(n3, 0);
    c.spawn_joining(n4, 1);
    wait_members(
        &c,
        0,
        &[(0, "voter"), (1, "voter"), (2, "voter"), (3, "learner"), (4, "learner")],
    );
    admin_ok(&c, &["promote", "3"]);
    admin_ok(&c, &["promote", "4"]);
    wait_members(
        &c,
        2,
        &[(0, "voter"), (1, "voter"), (2, "voter"), (3, "voter"), (4, "voter")],
    );

    // Replace a voter killed with SIGKILL: node 5 joins, is promoted, and
    // the dead node is removed.
    let leader = leader_of(&c, 0) as usize;
    let victim = (0..3).find(|&i| i != leader).unwrap();
    c.kill9(victim);
    c.spawn_joining(n5, leader);
    let start = Instant::now();
    while members(&c, leader).1.get(&5).map(String::as_str) != Some("learner") {
        assert!(start.elapsed() < Duration::from_secs(30), "node 5 never joined");
        std::thread::sleep(Duration::from_millis(200));
    }
    admin_ok(&c, &["promote", "5"]);
    admin_ok(&c, &["remove", &victim.to_string()]);

    // Shrink back to 3 voters, removing the leader itself: it must hand
    // over and step down, not keep heartbeating. The two old nodes left go;
    // should an election have moved leadership to a newcomer (five voters
    // on two loaded cores), it is handed back to one of them first.
    let old: Vec<usize> = (0..3).filter(|&i| i != victim).collect();
    let start = Instant::now();
    let leader = loop {
        let leader = leader_of(&c, n3) as usize;
        if old.contains(&leader) {
            break leader;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "leadership stayed on node {leader}"
        );
        // It may fail (an election under way): the loop looks again.
        let _ = admin(&c, &["transfer-leader", &old[0].to_string()]);
        std::thread::sleep(Duration::from_millis(300));
    };
    admin_ok(&c, &["remove", &leader.to_string()]);
    let other = old.iter().copied().find(|&i| i != leader).unwrap();
    admin_ok(&c, &["remove", &other.to_string()]);
    wait_members(&c, n4, &[(3, "voter"), (4, "voter"), (5, "voter")]);
    let new_leader = leader_of(&c, n4);
    assert!([3, 4, 5].contains(&new_leader), "leader {new_leader} is not a member");
    let status = admin_ok(&c, &["--endpoints", &c.addrs[leader], "status"]);
    assert!(
        status.contains(&format!("answered by node {leader}")) && !status.starts_with(&format!("leader {leader},")),
        "the removed leader still leads: {status}"
    );

    // The history the clients saw through all of it is linearizable.
    let out = verify.wait_with_output().expect("verify finished");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "triton verify failed:\n{text}");
    assert!(text.contains("PASS: the history is linearizable"), "{text}");

    // The new members serve reads and writes on their own.
    for i in [leader, other] {
        c.stop(i);
    }
    let (ok, text) = {
        let out = Command::new(bin())
            .args(["kv", "--endpoints", &c.addrs[n5], "--config"])
            .arg(&c.config)
            .args(["put", "after", "shrink"])
            .output()
            .unwrap();
        (out.status.success(), String::from_utf8_lossy(&out.stderr).to_string())
    };
    assert!(ok, "put after shrinking failed: {text}");
}

#[test]
fn admin_changes_need_the_token_and_refuse_impossible_requests() {
    let c = Cluster::start(ClusterOptions {
        admin_token: Some(TOKEN.into()),
        ..ClusterOptions::default()
    });
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(c.wait_leader());
    // Listing needs no token; changes do.
    let endpoints = c.addrs.join(",");
    let no_token = Command::new(bin())
        .args(["admin", "--endpoints", &endpoints, "members"])
        .output()
        .unwrap();
    assert!(no_token.status.success());
    let refused = Command::new(bin())
        .args(["admin", "--endpoints", &endpoints, "remove", "2"])
        .output()
        .unwrap();
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("admin token"));
    let wrong = Command::new(bin())
        .args(["admin", "--endpoints", &endpoints, "--token", "wrong", "remove", "2"])
        .output()
        .unwrap();
    assert!(!wrong.status.success());
    assert!(String::from_utf8_lossy(&wrong.stderr).contains("wrong admin token"));

    // Ids in the answer are the ones users type (the config's, from 0).
    let (ok, text) = admin(&c, &["promote", "1"]);
    assert!(!ok && text.contains("node 1 is already a voter"), "{text}");
    let (ok, text) = admin(&c, &["add-learner", "7", "not an address"]);
    assert!(!ok && text.contains("not host:port"), "{text}");
    let (ok, text) = admin(&c, &["add-learner", "7", "127.0.0.1:70000"]);
    assert!(!ok && text.contains("not host:port"), "{text}");
    // A refused add must not move a member: a voter's id at another
    // address, and a new id at a voter's address.
    let (ok, text) = admin(&c, &["add-learner", "1", "127.0.0.1:1"]);
    assert!(!ok && text.contains("already a member"), "{text}");
    let (ok, text) = admin(&c, &["add-learner", "7", &c.addrs[1]]);
    assert!(!ok && text.contains("belongs to member node 1"), "{text}");
    // Nothing changed, and the leader still knows node 1 where it is.
    wait_members(&c, 0, &[(0, "voter"), (1, "voter"), (2, "voter")]);
    let leader = leader_of(&c, 0) as usize;
    let listing = admin_ok(&c, &["--endpoints", &c.addrs[leader], "members"]);
    assert!(
        listing.contains(&c.addrs[1]) && !listing.contains("127.0.0.1:1 "),
        "{listing}"
    );

    // Transfer leadership to a chosen voter.
    let leader = leader_of(&c, 0);
    let target = (leader + 1) % 3;
    admin_ok(&c, &["transfer-leader", &target.to_string()]);
    let start = Instant::now();
    while leader_of(&c, 0) != target {
        assert!(start.elapsed() < Duration::from_secs(10), "leadership did not move");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn admin_changes_are_disabled_without_a_token_in_the_config() {
    let c = Cluster::start(ClusterOptions::default());
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(c.wait_leader());
    let (ok, text) = admin(&c, &["--token", "anything", "remove", "2"]);
    assert!(!ok && text.contains("disabled"), "{text}");
}

/// Starts `triton verify` attached to the cluster with one kind of fault,
/// waits until its log says that fault is in place, stops it with Ctrl-C
/// (SIGINT), and returns what it printed: it must say it healed the fault.
fn interrupt_verify_during(c: &Cluster, fault: &str, in_place: &str) -> String {
    use std::io::BufRead;
    let mut verify = Command::new(bin())
        .args(["verify", "--config"])
        .arg(&c.config)
        .args(["--endpoints", &c.addrs.join(",")])
        .args(["--faults", fault, "--clients", "2", "--keys", "2", "--seed", "3"])
        .args(["--duration", "120s", "--out"])
        .arg(c.dir.path().join(format!("verify-{fault}")))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn triton verify");
    let (tx, rx) = std::sync::mpsc::channel();
    let stderr = verify.stderr.take().expect("piped");
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let mut text = String::new();
    let start = Instant::now();
    loop {
        let line = rx
            .recv_timeout(Duration::from_secs(60).saturating_sub(start.elapsed()))
            .unwrap_or_else(|_| panic!("verify never logged {in_place:?}:\n{text}"));
        text.push_str(&line);
        text.push('\n');
        if line.contains(in_place) {
            break;
        }
    }
    // Inside the fault's hold (at least 0.8 s), and past a removal's commit.
    std::thread::sleep(Duration::from_millis(300));
    // SAFETY: plain kill(2) on our own child's pid.
    unsafe { libc::kill(verify.id() as i32, libc::SIGINT) };
    let status = verify.wait().expect("verify exits");
    while let Ok(line) = rx.recv_timeout(Duration::from_secs(5)) {
        text.push_str(&line);
        text.push('\n');
    }
    assert!(!status.success(), "a stopped run must not pass:\n{text}");
    assert!(text.contains("every fault it injected is healed"), "{text}");
    text
}

/// A user who stops `triton verify` (Ctrl-C) while it has a live cluster
/// partitioned, or a voter removed, gets the cluster back whole.
#[test]
fn a_stopped_verify_heals_the_faults_it_put_on_an_attached_cluster() {
    let c = Cluster::start(ClusterOptions {
        admin_token: Some(TOKEN.into()),
        test_rpcs: true,
        ..ClusterOptions::default()
    });
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(c.wait_leader());

    // Partitioned at the stop: afterwards every node applies a new write.
    interrupt_verify_during(&c, "partition", "partition: [");
    rt.block_on(async {
        let mut client = c.client();
        client.put(b"after-verify", b"whole").await.expect("put");
        let leader = c.addrs[c.wait_leader().await].clone();
        let commit = client.status_of(&leader).await.expect("status").commit_index;
        c.wait_applied(commit).await;
    });

    // A voter removed at the stop: it is a voter again.
    interrupt_verify_during(&c, "membership", "membership: remove node");
    wait_members(&c, 0, &[(0, "voter"), (1, "voter"), (2, "voter")]);
}

/// A removed node never hears of the changes after its removal, so its
/// own view of the members can stay stale (in joint consensus) for good:
/// `triton admin members`, given it first among the endpoints, reports
/// the view of a node that knows the leader instead.
/// Also: the remaining members forget the removed node's address.
#[test]
fn members_are_not_taken_from_a_removed_node_that_lost_the_leader() {
    let c = Cluster::start(ClusterOptions {
        admin_token: Some(TOKEN.into()),
        ..ClusterOptions::default()
    });
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(c.wait_leader());
    let leader = leader_of(&c, 0);
    let removed = (0..3u64).find(|&i| i != leader).expect("a follower");
    admin_ok(&c, &["--endpoints", &c.addrs.join(","), "remove", &removed.to_string()]);
    let rest: Vec<(u64, &str)> = (0..3u64).filter(|&i| i != removed).map(|i| (i, "voter")).collect();
    wait_members(&c, leader as usize, &rest);
    // The members forget the removed node's address (and stop dialling it).
    for &(id, _) in &rest {
        let start = Instant::now();
        loop {
            let book = address_book(&c, id as usize);
            if !book.contains(&c.addrs[removed as usize]) {
                break;
            }
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "node {id} still has the removed node's address: {book}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    // The removed node stops hearing from the leader and forgets it.
    let start = Instant::now();
    while members(&c, removed as usize).0.is_some() {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "node {removed} still follows a leader"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let (_, stale) = members(&c, removed as usize);
    let want: BTreeMap<u64, String> = rest.iter().map(|(id, r)| (*id, r.to_string())).collect();
    assert_ne!(stale, want, "the removed node's own view is expected to be stale");

    let mut endpoints = vec![c.addrs[removed as usize].clone()];
    endpoints.extend((0..3).filter(|&i| i != removed as usize).map(|i| c.addrs[i].clone()));
    let (_, roles) = members_via(&c, &endpoints.join(","));
    assert_eq!(roles, want, "members as reported with {endpoints:?}");
}

/// A node joins with a config written before the current leader joined: its
/// transport takes streams only from members it knows, so it learns the
/// members' addresses from the answer to its join (without that, it refused
/// the leader's stream and never caught up).
#[test]
fn a_node_joins_through_a_leader_its_config_does_not_name() {
    let mut c = Cluster::start(ClusterOptions {
        admin_token: Some(TOKEN.into()),
        ..ClusterOptions::default()
    });
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(c.wait_leader());
    let new = c.add_nodes_to_config(2);
    let (n3, n4) = (new[0], new[1]);
    c.spawn_joining(n3, 0);
    let start = Instant::now();
    while members(&c, 0).1.get(&3).map(String::as_str) != Some("learner") {
        assert!(start.elapsed() < Duration::from_secs(30), "node 3 never joined");
        std::thread::sleep(Duration::from_millis(200));
    }
    admin_ok(&c, &["promote", "3"]);
    let start = Instant::now();
    while leader_of(&c, 0) != 3 {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "leadership never moved to node 3"
        );
        // It may fail (node 3 still catching up, an election under way).
        let _ = admin(&c, &["transfer-leader", "3"]);
        std::thread::sleep(Duration::from_millis(300));
    }
    c.set_node_config_without(n4, n3);
    c.spawn_joining(n4, n3);
    // Node 4 catches up from node 3: it answers a read of a write made
    // after it joined, from its own state.
    let start = Instant::now();
    while members(&c, n3).1.get(&4).map(String::as_str) != Some("learner") {
        assert!(start.elapsed() < Duration::from_secs(30), "node 4 never joined");
        std::thread::sleep(Duration::from_millis(200));
    }
    let (ok, _) = kv(&c, &c.addrs[n3], &["put", "after-join", "seen"]);
    assert!(ok, "put through node 3 failed");
    wait_local_value(&c, n4, "after-join", "seen");
}

/// Node `node`'s saved address book (`<data_dir>/members`).
fn address_book(c: &Cluster, node: usize) -> String {
    std::fs::read_to_string(c.data_dir(node).join("members")).unwrap_or_default()
}

/// A 3-node cluster with a small snapshot threshold. Node 2 stops; node 3
/// joins (node 2's config does not name it) and is promoted to voter;
/// leadership moves to node 3 if `newcomer_leads`; then enough writes that
/// the leader's log is compacted past node 2's. Node 2 then restarts, and
/// this returns once it has caught up, with node 3's index.
fn a_node_joins_while_node_2_is_down(newcomer_leads: bool) -> (Cluster, usize) {
    let mut cluster = small_snapshot_cluster(3);
    let c = &mut cluster;
    c.stop(2);
    let n3 = c.add_nodes_to_config(1)[0];
    c.set_node_config_without(2, n3);
    c.spawn_joining(n3, 0);
    let start = Instant::now();
    while members(c, 0).1.get(&3).map(String::as_str) != Some("learner") {
        assert!(start.elapsed() < Duration::from_secs(30), "node 3 never joined");
        std::thread::sleep(Duration::from_millis(200));
    }
    let up = [c.addrs[0].clone(), c.addrs[1].clone(), c.addrs[n3].clone()].join(",");
    admin_ok(c, &["--endpoints", &up, "promote", "3"]);
    let start = Instant::now();
    while newcomer_leads && leader_of(c, 0) != 3 {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "leadership never moved to node 3"
        );
        // It may fail (node 3 still catching up, an election under way).
        let _ = admin(c, &["--endpoints", &up, "transfer-leader", "3"]);
        std::thread::sleep(Duration::from_millis(300));
    }
    write_past_the_snapshot_threshold(c, &up);
    assert_eq!(leader_of(c, 0) == 3, newcomer_leads, "the leader moved meanwhile");
    rejoin(c, 2);
    (cluster, n3)
}

/// A cluster of `nodes` with the admin token that snapshots every 8 entries,
/// once it has a leader.
fn small_snapshot_cluster(nodes: usize) -> Cluster {
    let c = Cluster::start(ClusterOptions {
        nodes,
        admin_token: Some(TOKEN.into()),
        snapshot_threshold: 8,
        ..ClusterOptions::default()
    });
    tokio::runtime::Runtime::new().unwrap().block_on(c.wait_leader());
    c
}

/// More entries through `endpoints` than a snapshot threshold of 8: the
/// leader compacts its log past everything a node that is down has.
fn write_past_the_snapshot_threshold(c: &Cluster, endpoints: &str) {
    for i in 0..24 {
        let (ok, text) = kv(c, endpoints, &["put", &format!("while-away-{i}"), "written"]);
        assert!(ok, "put {i} failed: {text}");
    }
}

/// Restarts `node` and waits until it has what
/// [`write_past_the_snapshot_threshold`] wrote while it was down.
fn rejoin(c: &mut Cluster, node: usize) {
    c.spawn(node);
    wait_local_value(c, node, "while-away-23", "written");
}

/// A member that was down while a node joined, and that node then became
/// leader: the restarted member's config and log do not name the newcomer,
/// so its transport refuses the newcomer's stream. It then asks the members
/// it knows, learns the newcomer's address, takes its stream and catches up.
/// (Before: it refused the leader's stream for good and never caught up.)
#[test]
fn a_member_back_from_downtime_takes_the_stream_of_a_leader_that_joined_meanwhile() {
    let (c, n3) = a_node_joins_while_node_2_is_down(true);
    let book = address_book(&c, 2);
    assert!(book.contains(&c.addrs[n3]), "node 2's address book: {book}");
}

/// A member that was down while a node joined catches up from a snapshot
/// (the leader compacted the entries that carried the newcomer's address):
/// it asks the members it knows for the addresses the snapshot's
/// membership names but its book lacks. (Before: it knew node 3 by id only,
/// and could neither reach it as a candidate or leader nor take its stream.)
#[test]
fn a_member_that_catches_up_from_a_snapshot_learns_the_addresses_it_missed() {
    let (c, n3) = a_node_joins_while_node_2_is_down(false);
    assert!(
        c.log(2).contains("installed snapshot from leader"),
        "node 2 was expected to catch up from a snapshot; its log:\n{}",
        c.log(2)
    );
    let start = Instant::now();
    loop {
        let book = address_book(&c, 2);
        if book.contains(&c.addrs[n3]) {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "node 2 never learned node 3's address; its book: {book}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Waits until node `node`'s saved address book no longer holds `addr`.
fn wait_forgotten(c: &Cluster, node: usize, addr: &str) {
    poll_until(Duration::from_secs(20), Duration::from_millis(200), || {
        let book = address_book(c, node);
        match book.contains(addr) {
            false => Ok(()),
            true => Err(format!(
                "node {node} still has the removed node's address {addr}: {book}; logs in {}",
                c.dir.path().display()
            )),
        }
    });
}

/// A founding member (node 3) is removed while node 1 is down, and the
/// log is compacted past the removal. Node 1 catches up from a snapshot,
/// so it never applies the removal: the install itself makes it forget
/// node 3's address. And node 0, restarted on a log compacted past the
/// removal, does not take node 3's address back from the config file.
/// (Before: both kept dialling node 3, and taking its streams, for good.)
#[test]
fn a_removed_founding_member_stays_forgotten_after_a_snapshot_and_a_restart() {
    let mut cluster = small_snapshot_cluster(4);
    let c = &mut cluster;
    c.stop(1);
    let up = [c.addrs[0].clone(), c.addrs[2].clone(), c.addrs[3].clone()].join(",");
    admin_ok(c, &["--endpoints", &up, "remove", "3"]);
    wait_members(c, 0, &[(0, "voter"), (1, "voter"), (2, "voter")]);
    c.stop(3);
    let up = [c.addrs[0].clone(), c.addrs[2].clone()].join(",");
    // The log is compacted past the removal, and past everything node 1 has.
    write_past_the_snapshot_threshold(c, &up);
    rejoin(c, 1);
    assert!(
        c.log(1).contains("installed snapshot from leader"),
        "node 1 was expected to catch up from a snapshot; its log:\n{}",
        c.log(1)
    );
    wait_forgotten(c, 1, &c.addrs[3]);

    wait_forgotten(c, 0, &c.addrs[3]);
    c.stop(0);
    c.spawn(0);
    let (ok, text) = kv(c, &c.addrs[..3].join(","), &["put", "after-restart", "written"]);
    assert!(ok, "put after the restart failed: {text}");
    wait_local_value(c, 0, "after-restart", "written");
    let book = address_book(c, 0);
    assert!(
        !book.contains(&c.addrs[3]),
        "node 0 took the removed node's address back from the config at its restart: {book}"
    );
}
