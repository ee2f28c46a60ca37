//! One client's latency, request kind by request kind: what each step of a
//! request adds (docs/PERFORMANCE.md, "One client"). Sequential requests to
//! a local 3-node cluster; each [`Kind`] adds one step to the one before.

use std::time::{Duration, Instant};

use anyhow::Context;
use triton_node::client::KvClient;

use crate::stats::quantile;

/// The request kinds, in the order they are measured: each adds one step
/// to the one before.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// Client round trip + one hop to the leader's driver thread.
    Status,
    /// + a store lookup.
    SerializableGet,
    /// + a ReadIndex heartbeat round to a follower.
    LinearizableGet,
    /// + an append round trip, the follower's fsync, apply.
    Put,
}

impl Kind {
    /// Every kind, in measuring order.
    pub const ALL: [Kind; 4] = [Kind::Status, Kind::SerializableGet, Kind::LinearizableGet, Kind::Put];

    /// The name in the table.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Status => "status",
            Kind::SerializableGet => "serializable get",
            Kind::LinearizableGet => "linearizable get",
            Kind::Put => "put",
        }
    }
}

/// Latency quantiles of one request kind, in microseconds.
#[derive(Clone, Debug)]
pub struct KindLatency {
    /// What was measured.
    pub kind: Kind,
    /// Requests measured.
    pub requests: usize,
    /// 10th percentile.
    pub p10_us: f64,
    /// Median.
    pub p50_us: f64,
    /// 90th percentile.
    pub p90_us: f64,
    /// 99th percentile.
    pub p99_us: f64,
}

fn summarize(kind: Kind, mut us: Vec<f64>) -> KindLatency {
    us.sort_by(f64::total_cmp);
    let q = |p| quantile(&us, p).unwrap_or(f64::NAN);
    KindLatency {
        kind,
        requests: us.len(),
        p10_us: q(0.1),
        p50_us: q(0.5),
        p90_us: q(0.9),
        p99_us: q(0.99),
    }
}

/// Runs `requests` sequential requests of each kind against the cluster at
/// `addrs`, whose leader is at `leader` (the address `Status` goes to; the
/// first write creates the key the gets read).
pub async fn measure(addrs: &[String], leader: &str, requests: usize) -> anyhow::Result<Vec<KindLatency>> {
    anyhow::ensure!(requests > 0, "need at least one request per kind");
    let mut c = KvClient::new(addrs.to_vec())?;
    let value = vec![b'v'; crate::kv::VALUE_BYTES];
    c.put(b"latency-key", &value).await.context("the first write")?;
    let mut out = Vec::with_capacity(Kind::ALL.len());
    for kind in Kind::ALL {
        let mut us = Vec::with_capacity(requests);
        for n in 0..requests {
            let t = Instant::now();
            match kind {
                Kind::Status => drop(c.status_of(leader).await?),
                Kind::SerializableGet => drop(c.get_with(b"latency-key", true).await?),
                Kind::LinearizableGet => drop(c.get(b"latency-key").await?),
                Kind::Put => drop(c.put(&crate::kv::key(n as u64), &value).await?),
            }
            us.push(t.elapsed().as_secs_f64() * 1e6);
        }
        out.push(summarize(kind, us));
    }
    Ok(out)
}

/// A table row for [`KindLatency`].
pub fn table_row(k: &KindLatency) -> String {
    format!(
        "{:<18} {:>8} {:>8.0} {:>8.0} {:>8.0} {:>8.0}",
        k.kind.name(),
        k.requests,
        k.p10_us,
        k.p50_us,
        k.p90_us,
        k.p99_us
    )
}

/// The header of [`table_row`].
pub const TABLE_HEADER: &str = "request            requests  p10(us)  p50(us)  p90(us)  p99(us)";

/// Settles a cluster before measuring: a few requests not counted.
pub async fn warm_up(addrs: &[String]) -> anyhow::Result<()> {
    let mut c = KvClient::new(addrs.to_vec())?;
    c.deadline = Duration::from_secs(30);
    for n in 0..50u64 {
        c.put(&crate::kv::key(n), b"warm-up").await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_come_from_the_sorted_samples() {
        let k = summarize(Kind::Put, (1..=100).rev().map(f64::from).collect());
        assert_eq!(k.requests, 100);
        assert!(k.p10_us < k.p50_us && k.p50_us < k.p90_us && k.p90_us <= k.p99_us);
        assert!((k.p50_us - 50.0).abs() <= 1.0, "p50 {}", k.p50_us);
    }

    #[tokio::test]
    async fn zero_requests_are_refused() {
        assert!(measure(&["127.0.0.1:1".to_string()], "127.0.0.1:1", 0).await.is_err());
    }
}
