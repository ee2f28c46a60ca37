//! A closed-loop load generator for the file-server benchmark: N
//! connections, each sending one request and waiting for its reply, a write
//! phase then a read phase over the same files. It speaks this protocol or
//! memcached's (`set`/`get`), so one run can compare the replicated file
//! server with a single unreplicated memcached. Each connection sends one
//! untimed request before a phase's clock starts, so that connecting (and,
//! for writes, following the redirect to the leader) is not measured.

use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::client::FileClient;
use crate::protocol::{Reply, Request};

/// Which server the load goes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// Triton's file protocol (follows redirects to the leader).
    Triton,
    /// memcached's text protocol (`set`/`get`), one server.
    Memcached,
}

/// What to run.
#[derive(Debug, Clone)]
pub struct LoadOptions {
    /// Servers (`host:port`); connection `i` starts at `endpoints[i % len]`.
    pub endpoints: Vec<String>,
    /// The protocol the servers speak.
    pub protocol: Protocol,
    /// Concurrent connections.
    pub connections: usize,
    /// Requests per connection in each phase.
    pub ops_per_connection: usize,
    /// Bytes per file.
    pub size: usize,
    /// Distinct file names (`bench-<i>`).
    pub files: usize,
    /// Seed of the contents.
    pub seed: u64,
}

/// Throughput and latency of one phase.
#[derive(Debug, Clone)]
pub struct PhaseReport {
    /// Requests completed.
    pub ops: usize,
    /// Wall time of the phase.
    pub elapsed: Duration,
    /// Median latency.
    pub p50: Duration,
    /// 99th-percentile latency.
    pub p99: Duration,
}

impl PhaseReport {
    /// Requests per second.
    pub fn throughput(&self) -> f64 {
        self.ops as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

/// The write phase and the read phase.
#[derive(Debug, Clone)]
pub struct LoadReport {
    /// Every connection writing.
    pub write: PhaseReport,
    /// Every connection reading what was written.
    pub read: PhaseReport,
}

/// splitmix64: deterministic contents from the seed.
fn splitmix(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// `size` printable bytes from `seed` (memcached and this protocol both
/// take any bytes; printable keeps captures readable).
pub fn contents(seed: u64, size: usize) -> Vec<u8> {
    let mut s = seed;
    (0..size).map(|_| b'a' + (splitmix(&mut s) % 26) as u8).collect()
}

/// A memcached text-protocol connection (just `set` and `get`).
struct Memcached {
    stream: TcpStream,
    buf: Vec<u8>,
}

impl Memcached {
    async fn read_line(&mut self) -> anyhow::Result<Vec<u8>> {
        loop {
            if let Some(p) = self.buf.windows(2).position(|w| w == b"\r\n") {
                let line = self.buf[..p].to_vec();
                self.buf.drain(..p + 2);
                return Ok(line);
            }
            if self.buf.len() > 4096 {
                bail!("memcached reply line too long");
            }
            self.fill().await?;
        }
    }

    async fn fill(&mut self) -> anyhow::Result<()> {
        self.buf.reserve(16 * 1024);
        if self.stream.read_buf(&mut self.buf).await? == 0 {
            bail!("memcached closed the connection");
        }
        Ok(())
    }

    async fn set(&mut self, key: &str, value: &[u8]) -> anyhow::Result<()> {
        let mut wire = format!("set {key} 0 0 {}\r\n", value.len()).into_bytes();
        wire.extend_from_slice(value);
        wire.extend_from_slice(b"\r\n");
        self.stream.write_all(&wire).await?;
        let line = self.read_line().await?;
        if line != b"STORED" {
            bail!("memcached set: {}", String::from_utf8_lossy(&line));
        }
        Ok(())
    }

    async fn get(&mut self, key: &str) -> anyhow::Result<usize> {
        self.stream.write_all(format!("get {key}\r\n").as_bytes()).await?;
        let line = self.read_line().await?;
        if line == b"END" {
            bail!("memcached get {key}: missing");
        }
        let n: usize = std::str::from_utf8(&line)
            .ok()
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|n| n.parse().ok())
            .filter(|&n| n <= 64 << 20)
            .with_context(|| format!("memcached get: {}", String::from_utf8_lossy(&line)))?;
        while self.buf.len() < n + 2 {
            self.fill().await?;
        }
        self.buf.drain(..n + 2);
        let end = self.read_line().await?;
        if end != b"END" {
            bail!("memcached get: expected END, got {}", String::from_utf8_lossy(&end));
        }
        Ok(n)
    }
}

enum Conn {
    Triton(Box<FileClient>),
    Memcached(Memcached),
}

impl Conn {
    async fn open(opts: &LoadOptions, i: usize) -> anyhow::Result<Conn> {
        Ok(match opts.protocol {
            Protocol::Triton => Conn::Triton(Box::new(FileClient::new(opts.endpoints.clone())?.start_at(i))),
            Protocol::Memcached => {
                let addr = &opts.endpoints[i % opts.endpoints.len()];
                let stream = TcpStream::connect(addr)
                    .await
                    .with_context(|| format!("connecting to {addr}"))?;
                stream.set_nodelay(true)?;
                Conn::Memcached(Memcached {
                    stream,
                    buf: Vec::new(),
                })
            }
        })
    }

    async fn write(&mut self, name: &str, value: &[u8]) -> anyhow::Result<()> {
        match self {
            Conn::Triton(c) => match c
                .call(&Request::Write {
                    name: name.as_bytes().to_vec(),
                    content: value.to_vec(),
                    exptime_s: 0,
                })
                .await?
            {
                Reply::Ok { .. } => Ok(()),
                r => bail!("write {name}: {r:?}"),
            },
            Conn::Memcached(m) => m.set(name, value).await,
        }
    }

    async fn read(&mut self, name: &str) -> anyhow::Result<usize> {
        match self {
            Conn::Triton(c) => match c
                .call(&Request::Read {
                    name: name.as_bytes().to_vec(),
                })
                .await?
            {
                Reply::Contents { content, .. } => Ok(content.len()),
                r => bail!("read {name}: {r:?}"),
            },
            Conn::Memcached(m) => m.get(name).await,
        }
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

/// The `k`th request of connection `i`: its file's name and number.
fn file_of(opts: &LoadOptions, i: usize, k: usize) -> (String, usize) {
    let file = (i * opts.ops_per_connection + k) % opts.files.max(1);
    (format!("bench-{file}"), file)
}

impl Conn {
    /// The `k`th request of connection `i` in a phase.
    async fn request(&mut self, opts: &LoadOptions, i: usize, k: usize, writing: bool) -> anyhow::Result<()> {
        let (name, file) = file_of(opts, i, k);
        if writing {
            let value = contents(opts.seed ^ file as u64, opts.size);
            self.write(&name, &value).await
        } else {
            self.read(&name).await.map(drop)
        }
    }
}

async fn phase(opts: &LoadOptions, writing: bool) -> anyhow::Result<PhaseReport> {
    let mut conns = Vec::with_capacity(opts.connections);
    for i in 0..opts.connections {
        let mut conn = Conn::open(opts, i).await?;
        // Untimed, so that latencies hold no setup: a file client connects
        // on its first request and a write follows a redirect to the leader
        // (memcached's connection is already open). The request is the
        // connection's first of the phase, sent once more: the same file
        // and contents, so the phase's outcome is unchanged.
        conn.request(opts, i, 0, writing)
            .await
            .with_context(|| format!("warming up connection {i}"))?;
        conns.push(conn);
    }
    let start = Instant::now();
    let mut tasks = Vec::new();
    for (i, mut conn) in conns.into_iter().enumerate() {
        let opts = opts.clone();
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::with_capacity(opts.ops_per_connection);
            for k in 0..opts.ops_per_connection {
                let t = Instant::now();
                conn.request(&opts, i, k, writing).await?;
                lat.push(t.elapsed());
            }
            anyhow::Ok(lat)
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.context("a load connection panicked")??);
    }
    let elapsed = start.elapsed();
    all.sort_unstable();
    Ok(PhaseReport {
        ops: all.len(),
        elapsed,
        p50: percentile(&all, 0.50),
        p99: percentile(&all, 0.99),
    })
}

/// Runs the write phase, then the read phase (every file is written before
/// any is read, so reads find their file).
pub async fn run(opts: &LoadOptions) -> anyhow::Result<LoadReport> {
    if opts.endpoints.is_empty() || opts.connections == 0 {
        bail!("need at least one endpoint and one connection");
    }
    if opts.files > opts.connections * opts.ops_per_connection {
        bail!("more files than writes: some reads would find nothing");
    }
    let write = phase(opts, true).await?;
    let read = phase(opts, false).await?;
    Ok(LoadReport { write, read })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn contents_are_seeded() {
        assert_eq!(contents(7, 64), contents(7, 64));
        assert_ne!(contents(7, 64), contents(8, 64));
        assert_eq!(contents(1, 1024).len(), 1024);
    }

    /// A fake file server: a follower (`leader` given) answers every
    /// request with a redirect after `delay`; a leader answers at once.
    async fn fake_node(listener: tokio::net::TcpListener, leader: Option<String>, delay: Duration) {
        use crate::protocol::{parse_request, Limits, Parsed};
        while let Ok((mut stream, _)) = listener.accept().await {
            let leader = leader.clone();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                loop {
                    while let Parsed::Request(req, n) = parse_request(&buf, &Limits::default()) {
                        buf.drain(..n);
                        tokio::time::sleep(delay).await;
                        let reply = match (&leader, req) {
                            (Some(l), _) => Reply::Redirect(Some(l.clone())),
                            (None, Request::Read { .. }) => Reply::Contents {
                                version: 1,
                                exptime_s: 0,
                                content: vec![b'x'; 16],
                            },
                            (None, _) => Reply::Ok { version: 1 },
                        };
                        let mut out = Vec::new();
                        reply.encode(&mut out);
                        if stream.write_all(&out).await.is_err() {
                            return;
                        }
                    }
                    if stream.read_buf(&mut buf).await.unwrap_or(0) == 0 {
                        return;
                    }
                }
            });
        }
    }

    /// Every connection starts at a follower that is slow to redirect: the
    /// connection and the redirect happen before the clock starts, so no
    /// timed request pays for them.
    #[tokio::test]
    async fn connecting_and_the_redirect_to_the_leader_are_not_timed() {
        let bind = || tokio::net::TcpListener::bind("127.0.0.1:0");
        let (leader, follower) = (bind().await.unwrap(), bind().await.unwrap());
        let leader_addr = leader.local_addr().unwrap().to_string();
        let follower_addr = follower.local_addr().unwrap().to_string();
        tokio::spawn(fake_node(leader, None, Duration::ZERO));
        let slow = Duration::from_millis(300);
        tokio::spawn(fake_node(follower, Some(leader_addr), slow));
        let opts = LoadOptions {
            endpoints: vec![follower_addr],
            protocol: Protocol::Triton,
            connections: 2,
            ops_per_connection: 5,
            size: 16,
            files: 10,
            seed: 1,
        };
        let report = run(&opts).await.unwrap();
        for (what, phase) in [("write", &report.write), ("read", &report.read)] {
            assert_eq!(phase.ops, 10, "{what}");
            // The slowest timed request (p99 of 10 is the maximum).
            assert!(phase.p99 < slow / 2, "{what}: p99 {:?}", phase.p99);
        }
    }

    #[test]
    fn percentiles() {
        let v: Vec<Duration> = (1..=100).map(Duration::from_millis).collect();
        assert_eq!(percentile(&v, 0.5), Duration::from_millis(51));
        assert_eq!(percentile(&v, 0.99), Duration::from_millis(99));
        assert_eq!(percentile(&[], 0.5), Duration::ZERO);
    }
}
