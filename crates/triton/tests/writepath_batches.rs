//! The write path under batching and crashes: many concurrent writers make
//! the driver fold many proposals into one `Ready`, one WAL append and one
//! fsync; these tests check that every proposal of such a batch gets its own
//! reply, in log order, and that acknowledged writes survive kill -9 of the
//! leader or of every node at seeded moments (a crash lands at a different
//! point of the driver's loop each time: before or after the append, the
//! fsync, the replies), with exactly-once sessions across the retries.
//!
//! They also cover the driver's choice not to fsync a hard state that only
//! moves the commit index: the last writes before a kill of every node are
//! acknowledged while their commit record may not be durable yet, and must
//! still be there after the restart.

#[path = "support/cluster.rs"]
mod cluster;

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use cluster::{Cluster, ClusterOptions};
use triton_node::client::KvClient;

/// One writer's record: the versions (log indexes) its appends got, in the
/// order it issued them.
type Versions = Vec<u64>;

/// Appends "n," to the writer's own key until told to stop; every append
/// must eventually succeed (the client retries with the same session
/// across crashes).
async fn writer(w: usize, endpoints: Vec<String>, stop: Arc<AtomicBool>) -> Versions {
    let mut client = KvClient::new(endpoints).unwrap();
    client.deadline = Duration::from_secs(30);
    let mut versions = Vec::new();
    let key = format!("w{w}");
    while !stop.load(Ordering::Relaxed) {
        let part = format!("{},", versions.len());
        let v = client
            .append(key.as_bytes(), part.as_bytes())
            .await
            .unwrap_or_else(|e| panic!("writer {w}: append {part} failed: {e}"));
        versions.push(v);
    }
    versions
}

/// SplitMix64: a few seeded numbers without a dependency.
fn next_random(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// What each writer's key must hold after `n` acknowledged appends.
fn expected(n: usize) -> String {
    (0..n).map(|i| format!("{i},")).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batched_writes_get_one_reply_each_in_order_and_survive_kill9_at_seeded_moments() {
    const WRITERS: usize = 24;
    let seed: u64 = 0x5eed_0010;
    let mut rng = seed;
    let mut c = Cluster::start(ClusterOptions::default());
    c.wait_leader().await;
    let stop = Arc::new(AtomicBool::new(false));
    let writers: Vec<_> = (0..WRITERS)
        .map(|w| tokio::spawn(writer(w, c.endpoints(), stop.clone())))
        .collect();

    // Crash rounds: every node, the leader only, every node again, each at
    // a seeded moment while the writers keep the driver batching.
    for round in 0..3 {
        let delay = Duration::from_millis(150 + next_random(&mut rng) % 450);
        tokio::time::sleep(delay).await;
        if round == 1 {
            let leader = c.wait_leader().await;
            c.kill9(leader);
            tokio::time::sleep(Duration::from_millis(300)).await;
            c.spawn(leader);
        } else {
            for i in 0..c.addrs.len() {
                c.kill9(i);
            }
            for i in 0..c.addrs.len() {
                c.spawn(i);
            }
        }
        c.wait_leader().await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, Ordering::Relaxed);
    let mut all: Vec<Versions> = Vec::new();
    for w in writers {
        all.push(w.await.expect("writer task"));
    }

    // One reply per proposal, each at its own log index, in issue order.
    let mut seen = BTreeSet::new();
    for (w, versions) in all.iter().enumerate() {
        assert!(!versions.is_empty(), "writer {w} got no append through (seed {seed})");
        assert!(
            versions.windows(2).all(|p| p[0] < p[1]),
            "writer {w}: versions not increasing: {versions:?} (seed {seed})"
        );
        for &v in versions {
            assert!(
                seen.insert(v),
                "two acknowledged writes share log index {v} (seed {seed})"
            );
        }
    }
    let total: usize = all.iter().map(Vec::len).sum();
    assert!(
        total > WRITERS * 3,
        "only {total} appends were acknowledged (seed {seed})"
    );

    // The last acknowledgements came just now: kill every node before any
    // later write could make their commit record durable, then check
    // every acknowledged append is there exactly once, in order.
    for i in 0..c.addrs.len() {
        c.kill9(i);
    }
    for i in 0..c.addrs.len() {
        c.spawn(i);
    }
    c.wait_leader().await;
    let mut client = c.client();
    client.deadline = Duration::from_secs(30);
    for (w, versions) in all.iter().enumerate() {
        let got = client.get(format!("w{w}").as_bytes()).await.unwrap();
        let value = got.map(|g| String::from_utf8(g.value).unwrap()).unwrap_or_default();
        assert_eq!(
            value,
            expected(versions.len()),
            "writer {w}: acknowledged appends lost, duplicated or reordered (seed {seed})"
        );
    }
}

#[test]
fn the_expected_value_checker_rejects_a_duplicate_or_a_gap() {
    // The check above compares against this; make sure it can fail.
    assert_eq!(expected(3), "0,1,2,");
    assert_ne!(expected(3), "0,1,1,2,");
    assert_ne!(expected(3), "0,2,");
    assert_eq!(expected(0), "");
}
