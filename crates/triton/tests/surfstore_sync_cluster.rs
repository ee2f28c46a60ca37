//! `triton sync` against a real cluster: three `triton server` metadata
//! nodes (Raft) and `triton blockstore` processes, all started by the
//! shared harness and killed when the test ends.

#[path = "support/cluster.rs"]
mod cluster;

use std::path::Path;
use std::process::Output;
use std::time::Duration;

use cluster::{Cluster, ClusterOptions};
use triton_surfsync::chunk::block_hash;

async fn triton(args: &[&str]) -> Output {
    let child = tokio::process::Command::new(env!("CARGO_BIN_EXE_triton"))
        .args(args)
        .kill_on_drop(true)
        .stdin(std::process::Stdio::null())
        .output();
    tokio::time::timeout(Duration::from_secs(90), child)
        .await
        .expect("triton finished within 90 s")
        .expect("triton ran")
}

async fn sync(cluster: &Cluster, dir: &Path, block_size: &str) -> Output {
    triton(&[
        "sync",
        "--config",
        cluster.config.to_str().unwrap(),
        dir.to_str().unwrap(),
        block_size,
    ])
    .await
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn data(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    (0..len)
        .map(|_| {
            x ^= x >> 12;
            x ^= x << 25;
            x ^= x >> 27;
            (x.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 56) as u8
        })
        .collect()
}

fn assert_same_files(a: &Path, b: &Path) {
    let list = |d: &Path| {
        let mut v: Vec<(String, Vec<u8>)> = std::fs::read_dir(d)
            .unwrap()
            .map(|e| e.unwrap())
            .filter(|e| e.file_name() != "index.db" && e.file_name() != "index.db-lock")
            .map(|e| (e.file_name().into_string().unwrap(), std::fs::read(e.path()).unwrap()))
            .collect();
        v.sort();
        v
    };
    let (la, lb) = (list(a), list(b));
    assert_eq!(
        la.iter().map(|f| &f.0).collect::<Vec<_>>(),
        lb.iter().map(|f| &f.0).collect::<Vec<_>>()
    );
    assert!(la == lb, "file contents differ");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_share_files_across_block_stores_and_mapping_follows_the_ring() {
    let cluster = Cluster::start(ClusterOptions {
        block_stores: 3,
        ..Default::default()
    });
    cluster.wait_leader().await;
    let dirs: Vec<_> = (0..3).map(|i| cluster.dir.path().join(format!("client{i}"))).collect();
    for d in &dirs {
        std::fs::create_dir(d).unwrap();
    }
    let big = data(300_000, 1);
    std::fs::write(dirs[0].join("big.bin"), &big).unwrap();
    std::fs::write(dirs[0].join("empty"), b"").unwrap();
    std::fs::write(dirs[1].join("big.bin"), b"client 1's own version, loses").unwrap();
    let out = sync(&cluster, &dirs[0], "4096").await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    let out = sync(&cluster, &dirs[1], "4096").await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(
        std::fs::read(dirs[1].join("big.bin")).unwrap(),
        big,
        "the second client gets the server's version"
    );

    // The 74 blocks are spread over the stores, each where the ring says.
    let out = triton(&[
        "surf",
        "mapping",
        "--config",
        cluster.config.to_str().unwrap(),
        dirs[0].to_str().unwrap(),
        "4096",
    ])
    .await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    let mut ring: Vec<(String, String)> = cluster
        .block_addrs
        .iter()
        .map(|s| (block_hash(format!("blockstore{s}").as_bytes()), s.clone()))
        .collect();
    ring.sort();
    let stdout = text(&out.stdout);
    let mut used = std::collections::HashSet::new();
    for line in stdout.lines() {
        let f: Vec<&str> = line.split('\t').collect();
        assert_eq!(f.len(), 4, "{line}");
        let owner = &ring.iter().find(|(p, _)| p.as_str() > f[2]).unwrap_or(&ring[0]).1;
        assert_eq!(f[3], owner, "{line}");
        used.insert(f[3].to_string());
    }
    assert_eq!(stdout.lines().count(), 300_000usize.div_ceil(4096));
    assert!(used.len() >= 2, "a 74-block file spans several stores");

    // Modify on 1, delete on 2 after it syncs, re-create on 0.
    std::fs::write(dirs[1].join("big.bin"), data(10_000, 2)).unwrap();
    assert!(sync(&cluster, &dirs[1], "4096").await.status.success());
    assert!(sync(&cluster, &dirs[2], "4096").await.status.success());
    assert_eq!(std::fs::read(dirs[2].join("big.bin")).unwrap(), data(10_000, 2));
    std::fs::remove_file(dirs[2].join("big.bin")).unwrap();
    assert!(sync(&cluster, &dirs[2], "4096").await.status.success());
    assert!(sync(&cluster, &dirs[0], "4096").await.status.success());
    assert!(!dirs[0].join("big.bin").exists(), "the tombstone deleted it");
    std::fs::write(dirs[0].join("big.bin"), b"back again").unwrap();
    for i in [0, 1, 2, 0] {
        let out = sync(&cluster, &dirs[i], "4096").await;
        assert!(out.status.success(), "{}", text(&out.stderr));
    }
    assert_same_files(&dirs[0], &dirs[1]);
    assert_same_files(&dirs[0], &dirs[2]);
    assert_eq!(std::fs::read(dirs[2].join("big.bin")).unwrap(), b"back again");
    assert_eq!(std::fs::read(dirs[2].join("empty")).unwrap(), b"");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leader_failure_mid_sync_then_no_majority_exits_1() {
    let mut cluster = Cluster::start(ClusterOptions {
        block_stores: 2,
        ..Default::default()
    });
    let leader = cluster.wait_leader().await;
    let (a, b) = (cluster.dir.path().join("a"), cluster.dir.path().join("b"));
    std::fs::create_dir(&a).unwrap();
    std::fs::create_dir(&b).unwrap();
    for i in 0..200 {
        std::fs::write(a.join(format!("f{i:03}")), data(2000, i)).unwrap();
    }
    // Kill the leader while client a syncs; the sync follows the new leader.
    let config = cluster.config.to_str().unwrap().to_string();
    let a_str = a.to_str().unwrap().to_string();
    let running = tokio::spawn(async move { triton(&["sync", "--config", &config, &a_str, "1024"]).await });
    tokio::time::sleep(Duration::from_millis(150)).await;
    cluster.kill9(leader);
    let out = running.await.unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    cluster.wait_leader().await;
    // Whatever a's sync could not finish, a second run does.
    let out = sync(&cluster, &a, "1024").await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    let out = sync(&cluster, &b, "1024").await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_same_files(&a, &b);

    // Two of three metadata nodes down: no majority, exit 1.
    let other = (0..3).find(|&i| i != leader).unwrap();
    cluster.kill9(other);
    std::fs::write(b.join("new"), b"cannot be synced").unwrap();
    let out = triton(&[
        "sync",
        "--config",
        cluster.config.to_str().unwrap(),
        "--deadline",
        "2",
        b.to_str().unwrap(),
        "1024",
    ])
    .await;
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("no majority"), "{}", text(&out.stderr));
}
