//! `triton bench failover`'s probe on a real cluster: its session is
//! registered before the leader is killed, so the outage it reports does not
//! include that registration's Raft commit or connection setup.

use std::time::Duration;

use triton_bench::failover::{find_leader, Probe};
use triton_verify::local::{write_test_config, LocalCluster};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_probe_is_registered_before_the_kill_and_times_the_outage() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_test_config(dir.path(), 3).unwrap();
    // Spawned from the test's own thread, which outlives the cluster (the
    // nodes' parent-death signal follows it).
    let mut cluster =
        LocalCluster::start(std::path::Path::new(env!("CARGO_BIN_EXE_triton")), &config, dir.path()).unwrap();
    let addrs = cluster.addrs();
    let probe = Probe::ready(&addrs, 1, Duration::from_secs(30))
        .await
        .unwrap_or_else(|e| panic!("{e:#}\n{}", cluster.diagnosis()));
    assert!(
        probe.registered(),
        "the probe must register its session before the kill"
    );
    let leader = find_leader(&cluster, Duration::from_secs(30)).await.unwrap();
    let mut killed = false;
    let outage = probe
        .time_after(
            || {
                cluster.kill9(leader);
                killed = true;
            },
            Duration::from_secs(30),
        )
        .await
        .unwrap();
    assert!(killed);
    assert!(!cluster.running(leader));
    assert!(
        outage > Duration::ZERO && outage < Duration::from_secs(30),
        "{outage:?}"
    );
}
