//! SurfStore's metadata service on real `triton server` processes: ports of
//! the course's Raft scenarios, driven through the `RaftSurfstore` hooks.
//!
//! These clusters use `election_ticks = 10000` (200 s), so, as in the
//! course, leaders change only when a test calls `SetLeader`; the scenarios
//! can then assert exact roles and agreement on terms without races against
//! automatic elections.

#[path = "support/cluster.rs"]
mod cluster;

use std::time::{Duration, Instant};

use cluster::{Cluster, ClusterOptions};
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;
use tonic::Code;
use triton_node::auth::ClientToken;
use triton_proto::surfstore::raft_surfstore_client::RaftSurfstoreClient;
use triton_proto::surfstore::{FileMetaData, RaftInternalState, ServerStatus, UnreachableFromServers, UpdateOperation};

/// Sends the config's admin token (if any) with every hook call.
type Client = RaftSurfstoreClient<InterceptedService<Channel, ClientToken>>;

/// Starts the cluster and waits until every node answers.
async fn start(nodes: usize) -> (Cluster, Vec<Client>) {
    let c = Cluster::start(ClusterOptions {
        nodes,
        test_rpcs: true,
        election_ticks: 10_000,
        // Leaders only by SetLeader, which leases would refuse.
        lease_reads: false,
        ..Default::default()
    });
    let config = c.cluster_config();
    let clients = c
        .addrs
        .iter()
        .map(|a| {
            let ch = triton_node::tls::endpoint(a, &config)
                .expect("endpoint")
                .timeout(Duration::from_secs(15))
                .connect_lazy();
            RaftSurfstoreClient::with_interceptor(ch, ClientToken::from_config(&config))
        })
        .collect::<Vec<_>>();
    states(&clients).await;
    (c, clients)
}

fn meta(name: &str, version: i32, hashes: &[&str]) -> FileMetaData {
    FileMetaData {
        filename: name.into(),
        version,
        block_hash_list: hashes.iter().map(|h| h.to_string()).collect(),
    }
}

/// Every node's internal state (retrying while processes start).
async fn states(clients: &[Client]) -> Vec<RaftInternalState> {
    let start = Instant::now();
    let mut out = Vec::new();
    for c in clients {
        loop {
            match c.clone().get_internal_state(()).await {
                Ok(s) => {
                    out.push(s.into_inner());
                    break;
                }
                Err(_) if start.elapsed() < Duration::from_secs(20) => {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Err(e) => panic!("GetInternalState: {e}"),
            }
        }
    }
    out
}

/// Polls until `pred` holds over every node's state; returns those states.
async fn wait_states(
    clients: &[Client],
    what: &str,
    pred: impl Fn(&[RaftInternalState]) -> bool,
) -> Vec<RaftInternalState> {
    let start = Instant::now();
    loop {
        let s = states(clients).await;
        if pred(&s) {
            return s;
        }
        if start.elapsed() > Duration::from_secs(20) {
            panic!("timed out waiting for: {what}; states: {s:#?}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn status(s: &RaftInternalState) -> ServerStatus {
    ServerStatus::try_from(s.status).expect("known status")
}

fn files(s: &RaftInternalState) -> Vec<(String, i32)> {
    let mut v: Vec<(String, i32)> = s
        .meta_map
        .as_ref()
        .map(|m| {
            m.file_info_map
                .values()
                .map(|f| (f.filename.clone(), f.version))
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

fn log_names(log: &[UpdateOperation]) -> Vec<String> {
    log.iter()
        .map(|u| u.file_meta_data.as_ref().expect("metadata").filename.clone())
        .collect()
}

/// Makes node `leader` the leader and waits until every running node agrees
/// on its term (others report FOLLOWER).
async fn set_leader(clients: &[Client], leader: usize, running: &[usize]) -> i64 {
    let ok = clients[leader]
        .clone()
        .set_leader(())
        .await
        .expect("SetLeader")
        .into_inner();
    assert!(ok.flag, "node {leader} did not become leader");
    clients[leader].clone().send_heartbeat(()).await.expect("SendHeartbeat");
    let s = wait_states(clients, "one leader, terms and logs agree", |s| {
        let term = s[leader].term;
        status(&s[leader]) == ServerStatus::Leader
            && running
                .iter()
                .all(|&i| s[i].term == term && (i == leader || status(&s[i]) == ServerStatus::Follower))
            && consistent(s, running)
    })
    .await;
    s[leader].term
}

/// All running nodes hold the same log, map and commit index.
fn consistent(s: &[RaftInternalState], running: &[usize]) -> bool {
    let first = &s[running[0]];
    running
        .iter()
        .all(|&i| s[i].log == first.log && s[i].meta_map == first.meta_map && s[i].commit_index == first.commit_index)
}

/// Replicates now and waits until the running nodes agree, so a later
/// partition starts from equal logs (as the course's tests assume).
async fn settle(clients: &[Client], leader: usize, running: &[usize]) {
    clients[leader].clone().send_heartbeat(()).await.expect("SendHeartbeat");
    wait_states(clients, "logs agree before the next step", |s| consistent(s, running)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn set_leader_and_heartbeat_terms() {
    let (_c, clients) = start(3).await;
    let all = [0, 1, 2];
    let t1 = set_leader(&clients, 0, &all).await;
    let s = states(&clients).await;
    assert_eq!(status(&s[0]), ServerStatus::Leader);
    assert_eq!(status(&s[1]), ServerStatus::Follower);
    assert_eq!(status(&s[2]), ServerStatus::Follower);

    // A heartbeat from the leader does not change anyone's term.
    let hb = clients[0].clone().send_heartbeat(()).await.unwrap().into_inner();
    assert!(hb.flag, "a majority answered the heartbeat round");
    let s = states(&clients).await;
    assert!(s.iter().all(|x| x.term == t1), "{s:#?}");

    // A follower refuses SendHeartbeat and names the leader.
    let err = clients[1].clone().send_heartbeat(()).await.unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition);

    // A new SetLeader moves leadership to a higher term, agreed by all.
    let t2 = set_leader(&clients, 2, &all).await;
    assert!(t2 > t1, "term {t2} after {t1}");
    let s = states(&clients).await;
    assert_eq!(status(&s[0]), ServerStatus::Follower);
    assert_eq!(status(&s[2]), ServerStatus::Leader);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn followers_get_updates() {
    let (_c, clients) = start(3).await;
    let all = [0, 1, 2];
    let term = set_leader(&clients, 0, &all).await;
    let h = "a".repeat(64);
    let v = clients[0]
        .clone()
        .update_file(meta("f1.txt", 1, &[&h]))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(v.version, 1);
    clients[0].clone().send_heartbeat(()).await.unwrap();
    let s = wait_states(&clients, "every node has the update", |s| {
        consistent(s, &all) && files(&s[0]) == vec![("f1.txt".to_string(), 1)]
    })
    .await;
    for x in &s {
        assert_eq!(x.log.len(), 1);
        assert_eq!(x.log[0].term, term);
        assert_eq!(x.log[0].file_meta_data, Some(meta("f1.txt", 1, &[&h])));
    }
    // A follower's read is linearizable (ReadIndex via the leader).
    let m = clients[2].clone().get_file_info_map(()).await.unwrap().into_inner();
    assert_eq!(m.file_info_map["f1.txt"].block_hash_list, vec![h]);
    // A follower refuses writes and names the leader.
    let err = clients[1]
        .clone()
        .update_file(meta("f1.txt", 2, &["0"]))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition);
    // A hash list no client could download is refused before the log.
    for bad in [&[][..], &[""], &["0", "0"], &["not-a-hash"]] {
        let err = clients[0]
            .clone()
            .update_file(meta("f2.txt", 1, bad))
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument, "{bad:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uncommitted_entry_of_a_crashed_leader_is_overwritten() {
    let (_c, clients) = start(3).await;
    let all = [0, 1, 2];
    set_leader(&clients, 0, &all).await;
    assert_eq!(
        clients[0]
            .clone()
            .update_file(meta("a", 1, &["-1"]))
            .await
            .unwrap()
            .into_inner()
            .version,
        1
    );
    settle(&clients, 0, &all).await;
    // Nodes 1 and 2 stop hearing from 0: its next entry stays on 0 alone.
    for i in [1, 2] {
        clients[i]
            .clone()
            .make_server_unreachable_from(UnreachableFromServers { server_ids: vec![0] })
            .await
            .unwrap();
    }
    let mut lone = clients[0].clone();
    let pending = tokio::spawn(async move { lone.update_file(meta("lost", 1, &["-1"])).await });
    wait_states(&clients, "the leader appended 'lost'", |s| {
        log_names(&s[0].log).contains(&"lost".to_string())
    })
    .await;
    clients[0].clone().crash(()).await.unwrap();
    assert!(clients[0].clone().is_crashed(()).await.unwrap().into_inner().flag);
    let r = pending.await.unwrap();
    assert!(r.is_err(), "an entry a minority holds was acknowledged: {r:?}");
    for i in [1, 2] {
        clients[i]
            .clone()
            .make_server_unreachable_from(UnreachableFromServers { server_ids: vec![] })
            .await
            .unwrap();
    }
    // The crashed node still answers GetInternalState, as CRASHED.
    let s = states(&clients).await;
    assert_eq!(status(&s[0]), ServerStatus::Crashed);

    set_leader(&clients, 1, &[1, 2]).await;
    assert_eq!(
        clients[1]
            .clone()
            .update_file(meta("b", 1, &["-1"]))
            .await
            .unwrap()
            .into_inner()
            .version,
        1
    );
    clients[0].clone().restore(()).await.unwrap();
    assert!(!clients[0].clone().is_crashed(()).await.unwrap().into_inner().flag);
    clients[1].clone().send_heartbeat(()).await.unwrap();
    let s = wait_states(&clients, "logs consistent after restore", |s| {
        consistent(s, &all) && status(&s[0]) == ServerStatus::Follower
    })
    .await;
    for x in &s {
        assert_eq!(log_names(&x.log), vec!["a", "b"], "'lost' was overwritten everywhere");
        assert_eq!(files(x), vec![("a".to_string(), 1), ("b".to_string(), 1)]);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn old_term_entry_commits_only_with_a_current_term_majority() {
    let (_c, clients) = start(5).await;
    let all = [0, 1, 2, 3, 4];
    let t0 = set_leader(&clients, 0, &all).await;
    assert_eq!(
        clients[0]
            .clone()
            .update_file(meta("base", 1, &["-1"]))
            .await
            .unwrap()
            .into_inner()
            .version,
        1
    );
    settle(&clients, 0, &all).await;
    // Only node 1 hears from the leader: the next entry reaches 2 of 5.
    for i in [2, 3, 4] {
        clients[i]
            .clone()
            .make_server_unreachable_from(UnreachableFromServers { server_ids: vec![0] })
            .await
            .unwrap();
    }
    let mut lone = clients[0].clone();
    let pending = tokio::spawn(async move { lone.update_file(meta("old", 1, &["-1"])).await });
    wait_states(&clients, "node 1 holds 'old'", |s| {
        log_names(&s[1].log).contains(&"old".to_string())
    })
    .await;
    clients[0].clone().crash(()).await.unwrap();
    assert!(pending.await.unwrap().is_err(), "a minority entry was acknowledged");
    for i in [3, 4] {
        clients[i].clone().crash(()).await.unwrap();
    }
    for i in [2, 3, 4] {
        clients[i]
            .clone()
            .make_server_unreachable_from(UnreachableFromServers { server_ids: vec![] })
            .await
            .unwrap();
    }
    // Nodes 1 and 2 alone are no majority: no leader, nothing committed.
    let ok = clients[1].clone().set_leader(()).await.unwrap().into_inner();
    assert!(!ok.flag, "node 1 became leader with 2 of 5 votes");
    let s = states(&clients).await;
    for x in &s {
        assert!(
            !files(x).iter().any(|(n, _)| n == "old"),
            "'old' applied without a majority: {x:#?}"
        );
    }
    // With node 3 back, node 1 wins a later term; its no-op of that term
    // reaches a majority and commits 'old' (term t0) along with it.
    clients[3].clone().restore(()).await.unwrap();
    let t1 = set_leader(&clients, 1, &[1, 2, 3]).await;
    assert!(t1 > t0);
    let s = wait_states(&clients, "'old' committed on the new majority", |s| {
        [1, 2, 3]
            .iter()
            .all(|&i| files(&s[i]).contains(&("old".to_string(), 1)))
    })
    .await;
    let old = s[1]
        .log
        .iter()
        .find(|u| u.file_meta_data.as_ref().unwrap().filename == "old")
        .unwrap();
    assert_eq!(old.term, t0, "the entry keeps its original term");
    // Everyone catches up once restored.
    for i in [0, 4] {
        clients[i].clone().restore(()).await.unwrap();
    }
    clients[1].clone().send_heartbeat(()).await.unwrap();
    let s = wait_states(&clients, "all five consistent", |s| consistent(s, &all)).await;
    assert_eq!(log_names(&s[0].log), vec!["base", "old"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn minority_leader_blocks_updates_until_healed() {
    let (_c, clients) = start(5).await;
    let all = [0, 1, 2, 3, 4];
    set_leader(&clients, 0, &all).await;
    assert_eq!(
        clients[0]
            .clone()
            .update_file(meta("f1", 1, &["-1"]))
            .await
            .unwrap()
            .into_inner()
            .version,
        1
    );
    settle(&clients, 0, &all).await;
    // Partition {0, 1} | {2, 3, 4}.
    for (node, from) in [
        (0, vec![2, 3, 4]),
        (1, vec![2, 3, 4]),
        (2, vec![0, 1]),
        (3, vec![0, 1]),
        (4, vec![0, 1]),
    ] {
        clients[node]
            .clone()
            .make_server_unreachable_from(UnreachableFromServers { server_ids: from })
            .await
            .unwrap();
    }
    // The minority leader neither commits nor serves reads.
    let mut req = tonic::Request::new(meta("f2", 1, &["-1"]));
    req.set_timeout(Duration::from_millis(1500));
    let r = clients[0].clone().update_file(req).await;
    assert!(r.is_err(), "update on a minority leader succeeded: {r:?}");
    let mut req = tonic::Request::new(());
    req.set_timeout(Duration::from_millis(1500));
    let r = clients[0].clone().get_file_info_map(req).await;
    assert!(r.is_err(), "a minority leader answered a read: {r:?}");

    // The majority side elects its own leader and makes progress.
    set_leader(&clients, 2, &[2, 3, 4]).await;
    assert_eq!(
        clients[2]
            .clone()
            .update_file(meta("f3", 1, &["-1"]))
            .await
            .unwrap()
            .into_inner()
            .version,
        1
    );
    for i in all {
        clients[i]
            .clone()
            .make_server_unreachable_from(UnreachableFromServers { server_ids: vec![] })
            .await
            .unwrap();
    }
    clients[2].clone().send_heartbeat(()).await.unwrap();
    let s = wait_states(&clients, "healed cluster consistent", |s| {
        consistent(s, &all) && status(&s[0]) == ServerStatus::Follower
    })
    .await;
    for x in &s {
        assert_eq!(
            log_names(&x.log),
            vec!["f1", "f3"],
            "the minority's entry was overwritten"
        );
        assert_eq!(files(x), vec![("f1".to_string(), 1), ("f3".to_string(), 1)]);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_hooks_validate_server_ids() {
    let (_c, clients) = start(3).await;
    for bad in [vec![-1], vec![3], vec![0, 99]] {
        let err = clients[0]
            .clone()
            .make_server_unreachable_from(UnreachableFromServers {
                server_ids: bad.clone(),
            })
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument, "{bad:?}");
    }
}
