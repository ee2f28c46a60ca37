//! A real 3-node cluster of `triton server` processes on 127.0.0.1: the key-
//! value face, kill -9 at any moment, torn and corrupted WALs, snapshot
//! catch-up, exactly-once retries, and the fault RPCs' switch.

#[path = "support/cluster.rs"]
mod cluster;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cluster::{segments, Cluster, ClusterOptions};
use triton_node::client::KvClient;
use triton_proto::control::control_client::ControlClient;
use triton_proto::control::{ControlEmpty, DropReplies, NodeIds};
use triton_proto::kv::GetRequest;
use triton_proto::surfstore::raft_surfstore_client::RaftSurfstoreClient;

async fn control(addr: &str) -> ControlClient<tonic::transport::Channel> {
    ControlClient::connect(format!("http://{addr}"))
        .await
        .expect("connect control")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn put_then_linearizable_get_through_a_follower() {
    let c = Cluster::start(ClusterOptions::default());
    let leader = c.wait_leader().await;
    let follower = (leader + 1) % 3;
    // A client that only knows the follower: the write is redirected to the
    // leader, the read is served by the follower after a ReadIndex round.
    let mut client = KvClient::new(vec![c.addrs[follower].clone()]).unwrap();
    let version = client.put(b"greeting", b"hello").await.unwrap();
    assert!(version > 0);
    let mut at_follower = KvClient::new(vec![c.addrs[follower].clone()]).unwrap();
    let got = at_follower.get(b"greeting").await.unwrap().expect("the key exists");
    assert_eq!((got.value.as_slice(), got.version), (&b"hello"[..], version));
    // The follower named the leader, where later reads go (it answers on its
    // lease, without asking anyone).
    assert_eq!(at_follower.leader_hint(), Some(c.addrs[leader].as_str()));
    assert!(at_follower.get(b"missing").await.unwrap().is_none());
    // Append and delete.
    let v2 = client.append(b"greeting", b", world").await.unwrap();
    assert!(v2 > version);
    assert_eq!(client.get(b"greeting").await.unwrap().unwrap().value, b"hello, world");
    assert!(client.delete(b"greeting").await.unwrap());
    assert!(!client.delete(b"greeting").await.unwrap());
    assert!(client.get(b"greeting").await.unwrap().is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_too_large_for_the_log_is_refused_and_the_node_stays_up() {
    // Values may be as large as messages here, which the config allows. A
    // request just under the message limit holds a command (the value plus
    // the leader's clock and the framing) just over the WAL's record limit:
    // it used to reach the WAL, and the leader stopped on the storage error.
    let c = Cluster::start(ClusterOptions {
        nodes: 1,
        max_message_bytes: Some(64 << 10),
        ..ClusterOptions::default()
    });
    c.wait_leader().await;
    let mut client = KvClient::new(c.endpoints()).unwrap();
    client.attempt_timeout = Duration::from_secs(2);
    client.deadline = Duration::from_secs(4);
    let mut refused_by_the_node = 0;
    for len in ((64 << 10) - 80)..=(64 << 10) {
        let started = Instant::now();
        let err = client.put(b"big", &vec![b'v'; len]).await.unwrap_err();
        let msg = format!("{err:#}");
        if msg.contains("over the cluster's limit") {
            refused_by_the_node += 1;
        } else {
            // The request itself over the gRPC limit: refused, not retried.
            assert!(msg.contains("too large"), "a {len}-byte value: {msg}");
            // Retried, it would take the whole 4 s deadline.
            assert!(
                started.elapsed() < Duration::from_millis(3500),
                "a {len}-byte value was retried"
            );
        }
    }
    assert!(refused_by_the_node > 0);
    assert!(client.put(b"small", b"v").await.unwrap() > 0);
    assert!(client.get(b"big").await.unwrap().is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_the_leader_under_load_loses_no_acknowledged_write() {
    let mut c = Cluster::start(ClusterOptions::default());
    c.wait_leader().await;
    let acked: Arc<Mutex<BTreeMap<String, String>>> = Arc::default();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut writers = Vec::new();
    for w in 0..4 {
        let (acked, stop, endpoints) = (acked.clone(), stop.clone(), c.endpoints());
        writers.push(tokio::spawn(async move {
            let mut client = KvClient::new(endpoints).unwrap();
            client.deadline = Duration::from_secs(10);
            let mut n = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let (k, v) = (format!("w{w}-{n}"), format!("value {w}/{n}"));
                if client.put(k.as_bytes(), v.as_bytes()).await.is_ok() {
                    acked.lock().unwrap().insert(k, v);
                }
                n += 1;
            }
        }));
    }
    // Load before the kill, during the election, and after the restart,
    // each phase until enough writes were acknowledged (not for fixed
    // times, which a loaded machine may fill with nothing).
    let acked_at_least = |n: usize| {
        let acked = acked.clone();
        async move {
            let start = Instant::now();
            while acked.lock().unwrap().len() < n {
                assert!(start.elapsed() < Duration::from_secs(30), "writes stalled below {n}");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    };
    acked_at_least(20).await;
    let leader = c.wait_leader().await;
    c.kill9(leader);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    c.spawn(leader);
    let so_far = acked.lock().unwrap().len();
    acked_at_least(so_far + 20).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for w in writers {
        w.await.unwrap();
    }
    let acked = acked.lock().unwrap().clone();
    assert!(acked.len() > 20, "only {} writes were acknowledged", acked.len());
    let mut client = c.client();
    for (k, v) in &acked {
        let got = client.get(k.as_bytes()).await.unwrap();
        assert_eq!(
            got.map(|g| g.value),
            Some(v.clone().into_bytes()),
            "acknowledged write {k} lost"
        );
    }
    // Every node, the restarted one included, converges to the same state.
    let leader = c.wait_leader().await;
    let commit = client.status_of(&c.addrs[leader]).await.unwrap().commit_index;
    c.wait_applied(commit).await;
    for addr in &c.addrs {
        let mut local = KvClient::new(vec![addr.clone()]).unwrap();
        for (k, v) in acked.iter().take(50) {
            let got = local.get_with(k.as_bytes(), true).await.unwrap();
            assert_eq!(
                got.map(|g| g.value),
                Some(v.clone().into_bytes()),
                "{addr} diverged on {k}"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_every_node_keeps_all_state() {
    let mut c = Cluster::start(ClusterOptions::default());
    c.wait_leader().await;
    let mut client = c.client();
    for i in 0..50 {
        client
            .put(format!("k{i}").as_bytes(), format!("v{i}").as_bytes())
            .await
            .unwrap();
    }
    for i in 0..3 {
        c.kill9(i);
    }
    for i in 0..3 {
        c.spawn(i);
    }
    c.wait_leader().await;
    let mut client = c.client();
    for i in 0..50 {
        let got = client.get(format!("k{i}").as_bytes()).await.unwrap();
        assert_eq!(got.map(|g| g.value), Some(format!("v{i}").into_bytes()));
    }
}

/// A member whose data directory was wiped must not come back as a founding
/// voter with no log and no record of its votes (it could vote twice in a
/// term it already voted in: two leaders, lost writes). Started again
/// without --new-cluster, it refuses, says why and what to do, and writes
/// nothing; the others keep serving.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_whose_data_was_wiped_refuses_to_start() {
    let mut c = Cluster::start(ClusterOptions::default());
    let leader = c.wait_leader().await;
    let mut client = c.client();
    client.put(b"kept", b"acknowledged").await.unwrap();
    let wiped = (leader + 1) % 3;
    assert!(c.stop(wiped).success());
    std::fs::remove_dir_all(c.data_dir(wiped)).unwrap();
    c.spawn(wiped);
    let status = c
        .wait_exit(wiped, Duration::from_secs(20))
        .unwrap_or_else(|| panic!("node {wiped} runs on a wiped data directory:\n{}", c.log(wiped)));
    assert!(!status.success(), "{status}");
    let log = c.log(wiped);
    for part in [
        "holds no state",
        "--new-cluster",
        "triton up",
        "restore",
        "remove",
        "--join",
    ] {
        assert!(log.contains(part), "{part:?} missing from the error:\n{log}");
    }
    assert!(
        !triton_node::server::holds_node_state(&c.data_dir(wiped)),
        "the refused node wrote state"
    );
    let got = client.get(b"kept").await.unwrap().expect("the key survives");
    assert_eq!(got.value, b"acknowledged");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_torn_tail_is_repaired_and_a_corrupt_record_stops_the_node() {
    let mut c = Cluster::start(ClusterOptions::default());
    let leader = c.wait_leader().await;
    let mut client = c.client();
    for i in 0..30 {
        client.put(format!("k{i}").as_bytes(), b"some value").await.unwrap();
    }
    let torn = (leader + 1) % 3;
    let corrupt = (leader + 2) % 3;
    c.kill9(torn);
    c.kill9(corrupt);

    // Cut the last record of the torn node's last segment in half (where
    // the records end, not the file: the rest is preallocated zeros).
    let seg = segments(&c.data_dir(torn)).pop().expect("a segment");
    let end = triton_storage::records_end(&seg, u32::MAX).unwrap();
    assert!(std::fs::metadata(&seg).unwrap().len() > end, "no preallocated tail");
    let f = std::fs::OpenOptions::new().write(true).open(&seg).unwrap();
    f.set_len(end - 7).unwrap();
    drop(f);
    c.spawn(torn);

    // Flip a byte in the middle of the corrupt node's log.
    let seg = segments(&c.data_dir(corrupt)).remove(0);
    let mut bytes = std::fs::read(&seg).unwrap();
    let mid = triton_storage::records_end(&seg, u32::MAX).unwrap() as usize / 2;
    bytes[mid] ^= 0x5A;
    std::fs::write(&seg, &bytes).unwrap();
    c.spawn(corrupt);

    // The torn node starts and catches up (the leader still has a majority
    // with it), and it logged the repair.
    let mut at_torn = KvClient::new(vec![c.addrs[torn].clone()]).unwrap();
    for i in 0..30 {
        let got = at_torn.get(format!("k{i}").as_bytes()).await.unwrap();
        assert!(got.is_some(), "k{i} missing after the torn-tail repair");
    }
    assert!(
        c.log(torn).contains("torn"),
        "the repair was not logged:\n{}",
        c.log(torn)
    );

    // The corrupt node refuses to start, naming the file and the offset.
    let status = c
        .wait_exit(corrupt, Duration::from_secs(10))
        .expect("the corrupt node exits");
    assert!(!status.success());
    let log = c.log(corrupt);
    let name = seg.file_name().unwrap().to_string_lossy().to_string();
    assert!(log.contains(&name), "error does not name {name}:\n{log}");
    assert!(log.contains("offset"), "error does not name the offset:\n{log}");
}

/// A full disk. The node may not grow any file past 2 MiB (`ulimit -f`, so
/// writes fail as on a full disk), and its log file is already full. It must
/// stop with the storage error's exit code: not acknowledge what it could
/// not make durable, and not linger with its sockets open and its driver
/// dead (as it once did: printing the error to the full disk panicked).
/// Restarted with room, it has every write it acknowledged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_whose_disk_fills_stops_and_keeps_every_acknowledged_write() {
    const LIMIT: u64 = 2 << 20;
    let mut c = Cluster::start(ClusterOptions {
        nodes: 1,
        file_size_limit: Some(LIMIT),
        ..ClusterOptions::default()
    });
    c.wait_leader().await;
    c.kill9(0);
    std::fs::OpenOptions::new()
        .write(true)
        .open(c.log_path(0))
        .unwrap()
        .set_len(LIMIT)
        .unwrap();
    c.spawn(0);
    c.wait_leader().await;
    let mut client = c.client();
    client.deadline = Duration::from_secs(3);
    let value = vec![b'v'; 4096];
    let mut acked = Vec::new();
    let mut exited = None;
    // 2,000 x 4 KiB is four times the limit. A failed put on a node still
    // running (a slow fsync on a loaded machine) is not the end.
    for i in 0..2000 {
        match client.put(format!("k{i}").as_bytes(), &value).await {
            Ok(_) => acked.push(i),
            Err(_) => {
                exited = c.wait_exit(0, Duration::ZERO);
                if exited.is_some() {
                    break;
                }
            }
        }
    }
    assert!(
        acked.len() > 100 && acked.len() < 2000,
        "{} writes acknowledged",
        acked.len()
    );
    let status = exited
        .or_else(|| c.wait_exit(0, Duration::from_secs(20)))
        .expect("the node is still running on a full disk");
    assert_eq!(status.code(), Some(70), "{status}");

    c.file_size_limit = None;
    c.spawn(0);
    c.wait_leader().await;
    let mut client = c.client();
    for i in acked {
        let got = client.get(format!("k{i}").as_bytes()).await.unwrap();
        assert_eq!(
            got.map(|g| g.value),
            Some(value.clone()),
            "k{i} was acknowledged but lost"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_down_throughout_catches_up_by_snapshot() {
    let mut c = Cluster::start(ClusterOptions {
        snapshot_threshold: 40,
        ..Default::default()
    });
    c.kill9(2);
    c.wait_leader().await;
    let mut client = c.client();
    for i in 0..300 {
        client
            .put(format!("k{i}").as_bytes(), format!("v{i}").as_bytes())
            .await
            .unwrap();
    }
    let leader = c.wait_leader().await;
    let s = client.status_of(&c.addrs[leader]).await.unwrap();
    assert!(
        s.snapshot_index > 200,
        "the leader took no snapshot (snapshot index {})",
        s.snapshot_index
    );
    c.spawn(2);
    c.wait_applied(s.commit_index).await;
    let s2 = client.status_of(&c.addrs[2]).await.unwrap();
    assert!(s2.snapshot_index > 0, "node 2 caught up without a snapshot");
    let mut local = KvClient::new(vec![c.addrs[2].clone()]).unwrap();
    for i in [0, 150, 299] {
        let got = local.get_with(format!("k{i}").as_bytes(), true).await.unwrap();
        assert_eq!(got.map(|g| g.value), Some(format!("v{i}").into_bytes()));
    }
    // Its log on disk is bounded too: old segments are gone after restart.
    c.restart(2);
    c.wait_leader().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retried_appends_whose_replies_were_dropped_apply_once() {
    let c = Cluster::start(ClusterOptions {
        test_rpcs: true,
        ..Default::default()
    });
    let leader = c.wait_leader().await;
    let mut ctl = control(&c.addrs[leader]).await;
    let mut client = c.client();
    client.put(b"log", b"").await.unwrap();
    ctl.drop_next_replies(DropReplies { count: 3 }).await.unwrap();
    for part in ["a", "b", "c", "d"] {
        client.append(b"log", part.as_bytes()).await.unwrap();
    }
    let got = client.get(b"log").await.unwrap().unwrap();
    assert_eq!(
        String::from_utf8(got.value).unwrap(),
        "abcd",
        "a retried append was applied twice"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fault_rpcs_are_refused_unless_enabled_and_crash_freezes_a_node() {
    let c = Cluster::start(ClusterOptions::default());
    let leader = c.wait_leader().await;
    let err = control(&c.addrs[leader])
        .await
        .crash(ControlEmpty {})
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::PermissionDenied);
    drop(c);

    let c = Cluster::start(ClusterOptions {
        test_rpcs: true,
        ..Default::default()
    });
    let leader = c.wait_leader().await;
    let mut ctl = control(&c.addrs[leader]).await;
    ctl.crash(ControlEmpty {}).await.unwrap();
    assert!(ctl.is_crashed(ControlEmpty {}).await.unwrap().into_inner().crashed);
    // Frozen means idle: the driver sleeps a tick at a time (it once spun,
    // with ticks owed and none delivered).
    let before = c.cpu_time(leader);
    tokio::time::sleep(Duration::from_secs(1)).await;
    let used = c.cpu_time(leader) - before;
    assert!(
        used < Duration::from_millis(500),
        "a crashed node used {used:?} of CPU in 1 s"
    );
    // The others elect a new leader and keep serving.
    let start = Instant::now();
    let mut client = c.client();
    client.put(b"k", b"v").await.unwrap();
    assert!(start.elapsed() < Duration::from_secs(20));
    ctl.restore(ControlEmpty {}).await.unwrap();
    assert_eq!(client.get(b"k").await.unwrap().unwrap().value, b"v");

    // SetLeader's forced election would override leader leases: refused
    // while they are on, with the setting to change in the message.
    let follower = (c.wait_leader().await + 1) % 3;
    let mut surf = RaftSurfstoreClient::connect(format!("http://{}", c.addrs[follower]))
        .await
        .unwrap();
    let e = surf.set_leader(()).await.unwrap_err();
    assert_eq!(e.code(), tonic::Code::FailedPrecondition, "{e:?}");
    assert!(e.message().contains("lease_reads = false"), "{}", e.message());
}

#[test]
fn bad_configs_and_ids_are_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, "[[nodes]]\nid = 0\naddr = \"127.0.0.1:notaport\"\n").unwrap();
    let out = std::process::Command::new(cluster::bin())
        .args(["server", "--config"])
        .arg(&bad)
        .args(["--id", "0"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("port"), "unclear error: {err}");

    let good = dir.path().join("good.json");
    std::fs::write(
        &good,
        r#"{"RaftAddrs": ["127.0.0.1:1", "127.0.0.1:2"], "BlockAddrs": []}"#,
    )
    .unwrap();
    let out = std::process::Command::new(cluster::bin())
        .args(["server", "--config"])
        .arg(&good)
        .args(["--id", "7"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains('7'), "unclear error for an unknown id: {err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_on_the_leader_hands_over_leadership_and_exits_cleanly() {
    // Election timeouts of 200 s: no leader can appear by timeout within
    // this test, so a new leader after SIGTERM can only come from the
    // handover (a timing-free check that nobody waited for a timeout).
    let mut c = Cluster::start(ClusterOptions {
        election_ticks: 10_000,
        test_rpcs: true,
        lease_reads: false,
        ..ClusterOptions::default()
    });
    let start = Instant::now();
    loop {
        // The node may not be listening yet.
        if let Ok(mut surf) = RaftSurfstoreClient::connect(format!("http://{}", c.addrs[0])).await {
            if surf.set_leader(()).await.is_ok() {
                break;
            }
        }
        assert!(start.elapsed() < Duration::from_secs(20), "node 0 never took SetLeader");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let leader = c.wait_leader().await;
    assert_eq!(leader, 0);
    let mut client = c.client();
    client.put(b"before", b"1").await.unwrap();
    let status = c.stop(leader);
    assert!(status.success(), "SIGTERM did not exit cleanly: {status:?}");
    assert!(
        c.log(leader).contains("handing leadership over"),
        "the leader did not hand over:\n{}",
        c.log(leader)
    );
    // Leadership moved by the handover (timeouts are 200 s), and no
    // acknowledged write is lost.
    let new = c.wait_leader().await;
    assert_ne!(new, leader);
    assert_eq!(client.get(b"before").await.unwrap().unwrap().value, b"1");
    c.spawn(leader);
    client.put(b"after", b"2").await.unwrap();
}

/// Leader lease reads and a frozen leader (the danger of leases): the
/// leader is cut off and frozen with SIGSTOP while its lease is fresh; the
/// others elect a new leader and overwrite the key; then the old leader is
/// resumed and asked at once, before anything tells it about the new term.
/// Its tick count must catch up with the time it was frozen, so its lease
/// is over: it may refuse or time out, but any value it answers is stale.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_frozen_past_its_lease_answers_no_read_when_it_resumes() {
    const SIGCONT: i32 = 18;
    const SIGSTOP: i32 = 19;
    let c = Cluster::start(ClusterOptions {
        test_rpcs: true,
        ..Default::default()
    });
    let old = c.wait_leader().await;
    let others: Vec<usize> = (0..3).filter(|&i| i != old).collect();
    let mut client = c.client();
    client.put(b"k", b"v1").await.unwrap();
    let mut direct = triton_proto::kv::kv_client::KvClient::connect(format!("http://{}", c.addrs[old]))
        .await
        .unwrap();
    let get = || GetRequest {
        key: b"k".to_vec(),
        serializable: false,
    };
    let first = direct.get(get()).await.expect("the leader answers").into_inner();
    assert_eq!(first.value, b"v1");

    let ids = |v: &[usize]| NodeIds {
        ids: v.iter().map(|&i| i as u64).collect(),
    };
    c.control(old).await.make_unreachable_from(ids(&others)).await.unwrap();
    c.signal(old, SIGSTOP);
    for &i in &others {
        c.control(i).await.make_unreachable_from(ids(&[old])).await.unwrap();
    }
    let mut rest = KvClient::new(others.iter().map(|&i| c.addrs[i].clone()).collect()).unwrap();
    rest.put(b"k", b"v2")
        .await
        .expect("the majority elects a leader and writes");

    c.signal(old, SIGCONT);
    let answer = tokio::time::timeout(Duration::from_secs(3), direct.get(get())).await;
    if let Ok(Ok(r)) = answer {
        panic!(
            "the resumed old leader answered {:?}: a stale read (the others hold v2)",
            String::from_utf8_lossy(&r.into_inner().value)
        );
    }
    assert_eq!(rest.get(b"k").await.unwrap().unwrap().value, b"v2");
}
