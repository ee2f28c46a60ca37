//! The KV load generator: `clients` closed-loop clients (one tokio task and
//! one connection each) doing puts of 8-byte keys and 256-byte values, or
//! linearizable gets, against Triton or etcd. The same code drives both, so
//! the comparison differs only in the server.

use std::fmt;
use std::future::Future;
use std::path::Path;
use std::time::Duration;

use anyhow::Context;
use hdrhistogram::Histogram;
use tokio::time::Instant;
use tonic::transport::{Channel, Endpoint};
use triton_node::client::KvClient;
use triton_verify::local::{write_test_config, LocalCluster};

use crate::etcdpb::kv_client::KvClient as EtcdKv;
use crate::etcdpb::{PutRequest, RangeRequest};
use crate::stats::{new_histogram, record, Summary};

/// Key size of etcd's published benchmark.
pub const KEY_BYTES: usize = 8;
/// Value size of etcd's published benchmark.
pub const VALUE_BYTES: usize = 256;
/// Distinct keys the get workload reads (written once before it starts).
pub const READ_KEYS: u64 = 1000;
/// How long each client gives one operation before calling it failed.
pub const OP_TIMEOUT: Duration = Duration::from_secs(10);
/// The load loop's own bound on one operation, above [`OP_TIMEOUT`]: a
/// Triton write may take one deadline to register its session and another
/// to write; this only stops a point from waiting forever.
const OP_BACKSTOP: Duration = Duration::from_secs(30);

/// Which system is measured.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Target {
    /// Triton (`triton server` processes).
    Triton,
    /// etcd through its v3 gRPC KV API.
    Etcd,
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Target::Triton => "triton",
            Target::Etcd => "etcd",
        })
    }
}

/// The operation each client repeats.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    /// A put (a replicated, fsynced write).
    Put,
    /// A linearizable get (ReadIndex in Triton; etcd's default Range).
    Get,
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Op::Put => "put",
            Op::Get => "get",
        })
    }
}

/// One measured point.
#[derive(Clone, Debug)]
pub struct Point {
    /// The system.
    pub target: Target,
    /// The operation.
    pub op: Op,
    /// Concurrent clients.
    pub clients: usize,
    /// What was measured.
    pub summary: Summary,
}

/// The 8-byte key of number `n`.
pub fn key(n: u64) -> [u8; KEY_BYTES] {
    n.to_be_bytes()
}

/// A client of either system.
enum AnyClient {
    Triton(Box<KvClient>),
    Etcd(EtcdKv<Channel>),
}

impl AnyClient {
    fn new(target: Target, endpoints: &[String], i: usize) -> anyhow::Result<AnyClient> {
        Ok(match target {
            Target::Triton => {
                let mut c = KvClient::new(endpoints.to_vec())?;
                c.deadline = OP_TIMEOUT;
                AnyClient::Triton(Box::new(c))
            }
            Target::Etcd => {
                // Spread clients over members as etcd's benchmark tool does;
                // etcd forwards writes to its leader.
                let ep = &endpoints[i % endpoints.len()];
                let ch = Endpoint::from_shared(format!("http://{ep}"))?
                    .tcp_nodelay(true)
                    .connect_timeout(Duration::from_secs(1))
                    .connect_lazy();
                AnyClient::Etcd(EtcdKv::new(ch))
            }
        })
    }

    async fn put(&mut self, k: &[u8], v: &[u8]) -> anyhow::Result<()> {
        match self {
            AnyClient::Triton(c) => {
                c.put(k, v).await?;
            }
            AnyClient::Etcd(c) => {
                tokio::time::timeout(
                    OP_TIMEOUT,
                    c.put(PutRequest {
                        key: k.to_vec(),
                        value: v.to_vec(),
                    }),
                )
                .await??;
            }
        }
        Ok(())
    }

    async fn get(&mut self, k: &[u8]) -> anyhow::Result<bool> {
        Ok(match self {
            AnyClient::Triton(c) => c.get(k).await?.is_some(),
            AnyClient::Etcd(c) => {
                let r = tokio::time::timeout(
                    OP_TIMEOUT,
                    c.range(RangeRequest {
                        key: k.to_vec(),
                        serializable: false,
                    }),
                )
                .await??;
                !r.into_inner().kvs.is_empty()
            }
        })
    }
}

/// Writes the keys the get workload reads.
pub async fn preload(target: Target, endpoints: &[String]) -> anyhow::Result<()> {
    let value = vec![b'v'; VALUE_BYTES];
    let mut c = AnyClient::new(target, endpoints, 0)?;
    for n in 0..READ_KEYS {
        c.put(&key(n), &value)
            .await
            .with_context(|| format!("preloading {target}"))?;
    }
    Ok(())
}

/// One request of a closed-loop client: its `n`th.
trait Request: Send {
    fn send(&mut self, n: u64) -> impl Future<Output = anyhow::Result<()>> + Send;
}

/// Client `i` of a point: `op` with its own keys.
struct Worker {
    c: AnyClient,
    op: Op,
    i: u64,
    value: Vec<u8>,
}

impl Request for Worker {
    async fn send(&mut self, n: u64) -> anyhow::Result<()> {
        match self.op {
            Op::Put => self.c.put(&key((self.i << 32) | n), &self.value).await,
            Op::Get => self.c.get(&key((self.i * 7919 + n) % READ_KEYS)).await.map(|_| ()),
        }
    }
}

/// The measuring window of a point: operations that start in
/// `[start, end)` are measured.
#[derive(Clone, Copy, Debug)]
struct Window {
    start: Instant,
    end: Instant,
}

/// Runs one closed-loop client until `window.end`; returns the latencies
/// of its successful operations and the number that failed. Every
/// operation that starts in the window counts, however long it takes (up
/// to `backstop`, then it is an error): leaving out the ones that end after
/// the window would leave out the slowest, and all of them if the cluster
/// stalls for the whole point. So the client waits for its last operation
/// before it returns.
async fn closed_loop(req: &mut impl Request, window: Window, backstop: Duration) -> (Histogram<u64>, u64) {
    let mut h = new_histogram();
    let mut errors = 0u64;
    let mut n: u64 = 0;
    loop {
        let t0 = Instant::now();
        if t0 >= window.end {
            break;
        }
        let r = tokio::time::timeout(backstop, req.send(n)).await;
        n += 1;
        let t1 = Instant::now();
        if t0 >= window.start {
            match r {
                Ok(Ok(())) => record(&mut h, t1 - t0),
                Ok(Err(_)) | Err(_) => errors += 1,
            }
        }
    }
    (h, errors)
}

/// Runs `clients` closed-loop clients doing `op` for `duration` (after a
/// short warm-up that is not counted) and summarizes what they saw.
pub async fn run_point(
    target: Target,
    endpoints: &[String],
    op: Op,
    clients: usize,
    duration: Duration,
    payload: usize,
) -> anyhow::Result<Point> {
    anyhow::ensure!(clients > 0, "need at least one client");
    anyhow::ensure!(!endpoints.is_empty(), "no endpoints");
    let warmup = (duration / 5).min(Duration::from_secs(1));
    let start = Instant::now() + warmup;
    let window = Window {
        start,
        end: start + duration,
    };
    let mut tasks = Vec::with_capacity(clients);
    for i in 0..clients {
        let mut w = Worker {
            c: AnyClient::new(target, endpoints, i)?,
            op,
            i: i as u64,
            value: vec![b'v'; payload],
        };
        tasks.push(tokio::spawn(
            async move { closed_loop(&mut w, window, OP_BACKSTOP).await },
        ));
    }
    let mut h = new_histogram();
    let mut errors = 0;
    for t in tasks {
        let (th, te) = t.await?;
        h.add(&th).expect("same bounds");
        errors += te;
    }
    Ok(Point {
        target,
        op,
        clients,
        summary: Summary::from_histogram(&h, errors, duration),
    })
}

/// Starts a local Triton cluster of `nodes` nodes (real WAL, fsync on) with
/// data under `dir`, and waits until it accepts a write.
pub async fn start_triton(binary: &Path, dir: &Path, nodes: usize) -> anyhow::Result<LocalCluster> {
    let config = write_test_config(dir, nodes)?;
    let cluster = LocalCluster::start(binary, &config, dir)?;
    let mut c = KvClient::new(cluster.addrs())?;
    c.deadline = Duration::from_secs(30);
    c.put(b"triton-bench-ready", b"1")
        .await
        .context("the Triton cluster did not accept a write")?;
    Ok(cluster)
}

/// The header of [`csv_row`].
pub const CSV_HEADER: &str = "target,op,clients,ops,errors,seconds,ops_per_sec,p50_us,p90_us,p99_us,p999_us";

/// One CSV row for `p`. What was not measured (latencies when no operation
/// succeeded, throughput when none started) is an empty field, not 0.
pub fn csv_row(p: &Point) -> String {
    let s = &p.summary;
    let us = |v: Option<u64>| v.map_or_else(String::new, |v| v.to_string());
    format!(
        "{},{},{},{},{},{:.3},{},{},{},{},{}",
        p.target,
        p.op,
        p.clients,
        s.ops,
        s.errors,
        s.elapsed.as_secs_f64(),
        s.throughput().map_or_else(String::new, |t| format!("{t:.1}")),
        us(s.p50_us),
        us(s.p90_us),
        us(s.p99_us),
        us(s.p999_us)
    )
}

/// One table row for `p` (latencies in milliseconds; `-` where nothing was
/// measured).
pub fn table_row(p: &Point) -> String {
    let s = &p.summary;
    let ms = |us: Option<u64>| us.map_or_else(|| "-".to_string(), |us| format!("{:.2}", us as f64 / 1000.0));
    format!(
        "{:<7} {:<4} {:>7} {:>11} {:>8} {:>8} {:>8} {:>8} {:>7}",
        p.target.to_string(),
        p.op.to_string(),
        p.clients,
        s.throughput().map_or_else(|| "-".to_string(), |t| format!("{t:.0}")),
        ms(s.p50_us),
        ms(s.p90_us),
        ms(s.p99_us),
        ms(s.p999_us),
        s.errors
    )
}

/// The header of [`table_row`].
pub const TABLE_HEADER: &str = "target  op   clients       ops/s  p50(ms)  p90(ms)  p99(ms) p99.9(ms)  errors";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_eight_bytes_and_distinct_per_client() {
        assert_eq!(key(1).len(), KEY_BYTES);
        assert_ne!(key((1u64 << 32) | 5), key((2u64 << 32) | 5));
    }

    #[test]
    fn csv_row_has_one_field_per_header_column() {
        let p = Point {
            target: Target::Etcd,
            op: Op::Get,
            clients: 16,
            summary: Summary::from_histogram(&new_histogram(), 0, Duration::from_secs(1)),
        };
        assert_eq!(csv_row(&p).split(',').count(), CSV_HEADER.split(',').count());
        assert!(csv_row(&p).starts_with("etcd,get,16,"));
    }

    /// A client whose operations take the scripted times and succeed or
    /// fail as scripted.
    struct Scripted(std::collections::VecDeque<(u64, bool)>);

    impl Request for Scripted {
        async fn send(&mut self, _n: u64) -> anyhow::Result<()> {
            let (ms, ok) = self.0.pop_front().expect("the script ran out");
            tokio::time::sleep(Duration::from_millis(ms)).await;
            anyhow::ensure!(ok, "scripted failure");
            Ok(())
        }
    }

    fn window_from_now(warmup_ms: u64, ms: u64) -> Window {
        let start = Instant::now() + Duration::from_millis(warmup_ms);
        Window {
            start,
            end: start + Duration::from_millis(ms),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn every_operation_that_starts_in_the_window_counts() {
        // Window [100, 1100) ms. Starts at 0 (warm-up), 150, 450, 650, 1050.
        let mut c = Scripted([(150, true), (300, true), (200, false), (400, true), (500, true)].into());
        let (h, errors) = closed_loop(&mut c, window_from_now(100, 1000), OP_BACKSTOP).await;
        // The warm-up op is not measured; the one that starts at 1050 and
        // ends at 1550, after the window, is: it is the slowest.
        assert_eq!((h.len(), errors), (3, 1));
        assert!((499_000..=501_000).contains(&h.max()), "{}", h.max());
        assert!(c.0.is_empty(), "the client stopped before the window ended");
    }

    #[tokio::test(start_paused = true)]
    async fn a_stall_over_the_whole_window_is_measured_not_lost() {
        // The cluster answers nothing for 5 s, then fails; then answers late.
        let mut c = Scripted([(5_000, false)].into());
        let (h, errors) = closed_loop(&mut c, window_from_now(0, 1000), OP_BACKSTOP).await;
        assert_eq!((h.len(), errors), (0, 1));
        let mut c = Scripted([(5_000, true)].into());
        let (h, errors) = closed_loop(&mut c, window_from_now(0, 1000), OP_BACKSTOP).await;
        assert_eq!((h.len(), errors), (1, 0));
        assert!(h.max() >= 4_990_000, "{}", h.max());
        // An operation that never ends is an error once the backstop passes.
        let mut c = Scripted([(86_400_000, true)].into());
        let (h, errors) = closed_loop(&mut c, window_from_now(0, 1000), Duration::from_secs(3)).await;
        assert_eq!((h.len(), errors), (0, 1));
    }

    #[test]
    fn a_point_with_no_successful_operation_shows_no_latencies() {
        let p = Point {
            target: Target::Triton,
            op: Op::Put,
            clients: 4,
            summary: Summary::from_histogram(&new_histogram(), 7, Duration::from_secs(1)),
        };
        let row = table_row(&p);
        let fields: Vec<&str> = row.split_whitespace().collect();
        assert_eq!(fields, ["triton", "put", "4", "0", "-", "-", "-", "-", "7"], "{row}");
        assert_eq!(csv_row(&p), "triton,put,4,0,7,1.000,0.0,,,,");
        // Nothing started in the window: not even a throughput.
        let p = Point {
            summary: Summary::from_histogram(&new_histogram(), 0, Duration::from_secs(1)),
            ..p
        };
        assert_eq!(table_row(&p).split_whitespace().nth(3), Some("-"));
        assert_eq!(csv_row(&p), "triton,put,4,0,0,1.000,,,,,");
        // A measured point still prints numbers.
        let mut h = new_histogram();
        record(&mut h, Duration::from_millis(2));
        let p = Point {
            summary: Summary::from_histogram(&h, 0, Duration::from_secs(1)),
            ..p
        };
        assert!(table_row(&p).contains(" 2.00 "), "{}", table_row(&p));
        assert!(
            csv_row(&p).starts_with("triton,put,4,1,0,1.000,1.0,2"),
            "{}",
            csv_row(&p)
        );
    }

    #[tokio::test]
    async fn run_point_refuses_zero_clients() {
        let r = run_point(
            Target::Etcd,
            &["127.0.0.1:1".into()],
            Op::Put,
            0,
            Duration::from_millis(1),
            1,
        )
        .await;
        assert!(r.is_err());
    }
}
