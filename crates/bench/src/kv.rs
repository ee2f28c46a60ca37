//! The KV load generator: `clients` closed-loop clients (one tokio task and
//! one connection each) doing puts of 8-byte keys and 256-byte values, or
//! linearizable gets, against Triton or etcd. The same code drives both, so
//! the comparison differs only in the server.

use std::fmt;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::Context;
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
                c.deadline = Duration::from_secs(10);
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
                    Duration::from_secs(10),
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
                    Duration::from_secs(10),
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
    let end = start + duration;
    let mut tasks = Vec::with_capacity(clients);
    for i in 0..clients {
        let mut c = AnyClient::new(target, endpoints, i)?;
        let value = vec![b'v'; payload];
        tasks.push(tokio::spawn(async move {
            let mut h = new_histogram();
            let mut errors = 0u64;
            let mut n: u64 = 0;
            loop {
                let t0 = Instant::now();
                if t0 >= end {
                    break;
                }
                let r = match op {
                    Op::Put => c.put(&key(((i as u64) << 32) | n), &value).await,
                    Op::Get => c.get(&key((i as u64 * 7919 + n) % READ_KEYS)).await.map(|_| ()),
                };
                n += 1;
                let t1 = Instant::now();
                if t0 >= start && t1 <= end {
                    match r {
                        Ok(()) => record(&mut h, t1 - t0),
                        Err(_) => errors += 1,
                    }
                }
            }
            (h, errors)
        }));
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

/// One CSV row for `p`.
pub fn csv_row(p: &Point) -> String {
    let s = &p.summary;
    format!(
        "{},{},{},{},{},{:.3},{:.1},{},{},{},{}",
        p.target,
        p.op,
        p.clients,
        s.ops,
        s.errors,
        s.elapsed.as_secs_f64(),
        s.throughput(),
        s.p50_us,
        s.p90_us,
        s.p99_us,
        s.p999_us
    )
}

/// One table row for `p` (latencies in milliseconds).
pub fn table_row(p: &Point) -> String {
    let s = &p.summary;
    let ms = |us: u64| us as f64 / 1000.0;
    format!(
        "{:<7} {:<4} {:>7} {:>11.0} {:>8.2} {:>8.2} {:>8.2} {:>8.2} {:>7}",
        p.target.to_string(),
        p.op.to_string(),
        p.clients,
        s.throughput(),
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
