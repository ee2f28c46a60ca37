//! Leader failover: how long writes stop when the leader of a 3-node
//! cluster is SIGKILLed under load; and, in the simulator, that default
//! timing holds a leader steady over a slow (20 ms) network.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::bail;
use triton_config::Timing;
use triton_node::client::KvClient;
use triton_sim::{Sim, SimOptions};
use triton_verify::local::{write_test_config, LocalCluster};

/// Settings of one failover run.
#[derive(Clone, Debug)]
pub struct FailoverOptions {
    /// Leader kills.
    pub kills: usize,
    /// Concurrent writers keeping the cluster busy.
    pub load_clients: usize,
    /// How long the cluster runs with all nodes up before each kill.
    pub settle: Duration,
    /// Raft timing of the cluster (default: Triton's defaults).
    pub timing: Timing,
}

impl Default for FailoverOptions {
    fn default() -> Self {
        FailoverOptions {
            kills: 20,
            load_clients: 8,
            settle: Duration::from_secs(2),
            timing: Timing::default(),
        }
    }
}

/// Rewrites the `[timing]` table of a config written by
/// [`write_test_config`] (which uses fast test timing) to `timing`.
pub fn set_timing(config: &Path, timing: &Timing) -> anyhow::Result<()> {
    let text = std::fs::read_to_string(config)?;
    let mut out = String::new();
    let mut replaced = 0;
    for line in text.lines() {
        let key = line.split('=').next().unwrap_or("").trim();
        let new = match key {
            "tick_ms" => Some(format!("tick_ms = {}", timing.tick_ms)),
            "election_ticks" => Some(format!("election_ticks = {}", timing.election_ticks)),
            "heartbeat_ticks" => Some(format!("heartbeat_ticks = {}", timing.heartbeat_ticks)),
            _ => None,
        };
        if let Some(n) = new {
            replaced += 1;
            out.push_str(&n);
        } else {
            out.push_str(line);
        }
        out.push('\n');
    }
    if replaced != 3 {
        bail!(
            "{}: expected tick_ms, election_ticks and heartbeat_ticks once each",
            config.display()
        );
    }
    std::fs::write(config, out)?;
    Ok(())
}

/// Finds the node index (into the cluster's node list) that leads, by
/// asking each running node for its status.
pub async fn find_leader(cluster: &LocalCluster, within: Duration) -> anyhow::Result<usize> {
    let addrs = cluster.addrs();
    let mut c = KvClient::new(addrs.clone())?;
    c.attempt_timeout = Duration::from_millis(300);
    let start = Instant::now();
    while start.elapsed() < within {
        for (i, a) in addrs.iter().enumerate() {
            if !cluster.running(i) {
                continue;
            }
            if let Ok(s) = c.status_of(a).await {
                if s.role.eq_ignore_ascii_case("leader") {
                    return Ok(i);
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    bail!("no leader within {within:?}")
}

/// A client ready to time an outage: its session registered and its
/// connections open before the kill, so the outage it measures holds only
/// the election and the write, not one more Raft commit (the session's
/// registration) and connection setup.
pub struct Probe {
    c: KvClient,
    n: u64,
}

impl Probe {
    /// A probe for outage `n`: one write registers its session (retried
    /// for up to `within`) and connects it to every node that answers.
    pub async fn ready(addrs: &[String], n: u64, within: Duration) -> anyhow::Result<Probe> {
        let mut c = KvClient::new(addrs.to_vec())?;
        c.attempt_timeout = Duration::from_millis(150);
        c.deadline = Duration::from_millis(300);
        for a in addrs {
            // Only to open the connection: a node still starting is fine.
            let _ = c.status_of(a).await;
        }
        let mut p = Probe { c, n };
        p.first_write(&format!("probe-{n}-ready"), within).await?;
        Ok(p)
    }

    /// Whether the probe's session is registered (it is once `ready`).
    pub fn registered(&self) -> bool {
        self.c.client_id().is_some()
    }

    /// Runs `kill` and returns how long after it a write succeeded.
    pub async fn time_after(mut self, kill: impl FnOnce(), within: Duration) -> anyhow::Result<Duration> {
        let t0 = Instant::now();
        kill();
        let t1 = self.first_write(&format!("probe-{}", self.n), within).await?;
        Ok(t1 - t0)
    }

    /// Writes `key` until a write succeeds; returns when it did.
    async fn first_write(&mut self, key: &str, within: Duration) -> anyhow::Result<Instant> {
        let start = Instant::now();
        while start.elapsed() < within {
            if self.c.put(key.as_bytes(), b"x").await.is_ok() {
                return Ok(Instant::now());
            }
        }
        bail!("no write succeeded within {within:?}")
    }
}

/// Kills the leader `opts.kills` times under load; returns, per kill, the
/// time from the SIGKILL until a write issued after it succeeded.
pub async fn run_failover(
    binary: &Path,
    dir: &Path,
    opts: &FailoverOptions,
    mut progress: impl FnMut(usize, Duration),
) -> anyhow::Result<Vec<Duration>> {
    let config = write_test_config(dir, 3)?;
    set_timing(&config, &opts.timing)?;
    let mut cluster = LocalCluster::start(binary, &config, dir)?;
    let addrs = cluster.addrs();
    if let Err(e) = Probe::ready(&addrs, 0, Duration::from_secs(30)).await {
        bail!("the cluster never accepted a write: {e:#}\n{}", cluster.diagnosis());
    }

    // Steady background load.
    let stop = Arc::new(AtomicBool::new(false));
    let mut load = Vec::new();
    for w in 0..opts.load_clients {
        let stop = stop.clone();
        let mut c = KvClient::new(addrs.clone())?;
        c.deadline = Duration::from_secs(5);
        load.push(tokio::spawn(async move {
            let value = vec![b'v'; 256];
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let _ = c.put(format!("load-{w}-{n}").as_bytes(), &value).await;
                n += 1;
            }
        }));
    }

    let mut outages = Vec::with_capacity(opts.kills);
    let mut result = Ok(());
    for k in 0..opts.kills {
        tokio::time::sleep(opts.settle).await;
        let probe = match Probe::ready(&addrs, k as u64 + 1, Duration::from_secs(30)).await {
            Ok(p) => p,
            Err(e) => {
                result = Err(e);
                break;
            }
        };
        let leader = match find_leader(&cluster, Duration::from_secs(30)).await {
            Ok(l) => l,
            Err(e) => {
                result = Err(e);
                break;
            }
        };
        match probe
            .time_after(|| cluster.kill9(leader), Duration::from_secs(30))
            .await
        {
            Ok(d) => {
                outages.push(d);
                progress(k, d);
            }
            Err(e) => {
                result = Err(e);
                break;
            }
        }
        if let Err(e) = cluster.spawn(leader) {
            result = Err(e);
            break;
        }
    }
    stop.store(true, Ordering::Relaxed);
    for l in load {
        let _ = l.await;
    }
    result.map_err(|e| anyhow::anyhow!("{e:#}\n{}", cluster.diagnosis()))?;
    Ok(outages)
}

/// The simulator half: runs `nodes` nodes with Triton's `timing` and a
/// network delay of `delay_ms` for `ms` simulated milliseconds, and counts
/// how often the leader's term changed after the first leader was elected
/// (0 means no spurious elections). Errors if no leader is ever elected or
/// safety is violated.
pub fn spurious_term_changes(timing: &Timing, nodes: usize, delay_ms: u64, ms: u64, seed: u64) -> anyhow::Result<u64> {
    let mut o = SimOptions::new(nodes, seed);
    o.tick_ms = timing.tick_ms;
    o.election_tick = timing.election_ticks;
    o.heartbeat_tick = timing.heartbeat_ticks;
    o.lease_read = timing.lease_reads;
    o.min_delay_ms = delay_ms;
    o.max_delay_ms = delay_ms;
    let mut sim = Sim::new(o);
    let step = timing.tick_ms.max(1);
    let mut term = None;
    let mut changes = 0;
    let mut elapsed = 0;
    while elapsed < ms {
        sim.run_for(step)
            .map_err(|v| anyhow::anyhow!("safety violation: {v}"))?;
        elapsed += step;
        let t = sim.leader().map(|l| sim.node(l).raft().term());
        match (term, t) {
            (None, Some(t)) => term = Some(t),
            (Some(old), Some(t)) if t != old => {
                changes += 1;
                term = Some(t);
            }
            _ => {}
        }
    }
    if term.is_none() {
        bail!("no leader was elected in {ms} ms");
    }
    Ok(changes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_timing_holds_its_leader_under_a_20ms_delay() {
        for seed in 0..3 {
            let changes = spurious_term_changes(&Timing::default(), 3, 20, 60_000, seed).unwrap();
            assert_eq!(changes, 0, "seed {seed}: the leader's term changed {changes} times");
        }
    }

    #[test]
    fn too_short_a_timeout_for_the_delay_shows_term_changes() {
        // 30-60 ms election timeouts against 20 ms one-way delays: a
        // round trip takes most of a timeout, so leaders keep changing.
        let bad = Timing {
            tick_ms: 10,
            election_ticks: 3,
            heartbeat_ticks: 2,
            lease_reads: true,
        };
        let changes = spurious_term_changes(&bad, 3, 20, 10_000, 1).unwrap();
        assert!(changes > 0, "expected spurious elections, saw none");
    }

    #[test]
    fn set_timing_rewrites_the_test_config() {
        let dir = tempfile::tempdir().unwrap();
        let p = write_test_config(dir.path(), 3).unwrap();
        set_timing(&p, &Timing::default()).unwrap();
        let c = triton_config::load(&p).unwrap();
        assert_eq!(c.timing.tick_ms, Timing::default().tick_ms);
        assert_eq!(c.nodes.len(), 3);
        std::fs::write(&p, "[timing]\ntick_ms = 5\n").unwrap();
        assert!(set_timing(&p, &Timing::default()).is_err());
    }
}
