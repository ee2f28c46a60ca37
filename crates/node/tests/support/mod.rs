//! Real nodes (`server::serve`, every part but the faces) in the test's own
//! process, on loopback ports, with their data in a scratch directory.
//!
//! A node that hits `driver::fatal` ends the whole test process with code
//! 70: the test then fails, which is what such a test wants.

#![allow(dead_code)] // each test file uses its own part of it

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tonic::transport::Channel;
use triton_config::{ClusterConfig, NodeConfig};
use triton_node::server::{serve, ServerOptions};
use triton_proto::kv::kv_client::KvClient as PbKv;
use triton_proto::kv::{GetRequest, RegisterSessionRequest, StatusRequest, StatusResponse};

/// A scratch directory, removed when dropped.
pub struct Scratch(pub PathBuf);

impl Scratch {
    pub fn new(name: &str) -> Scratch {
        let dir = std::env::temp_dir().join(format!("triton-node-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("scratch directory");
        Scratch(dir)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A loopback port nobody holds, outside the kernel's ephemeral range (so
/// no outgoing connection takes it before its node binds it), counted from
/// an offset of this process's own.
pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    const LOW: u32 = 20_000;
    const SPAN: u32 = 10_000;
    let start = std::process::id().wrapping_mul(7919) % SPAN;
    for _ in 0..SPAN {
        let port = LOW + (start + NEXT.fetch_add(1, Ordering::Relaxed)) % SPAN;
        let port = u16::try_from(port).expect("below 65536");
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free port in 127.0.0.1:{LOW}..{}", LOW + SPAN);
}

/// A config for `n` nodes on free loopback ports.
pub fn config(n: u64) -> ClusterConfig {
    ClusterConfig {
        nodes: (0..n)
            .map(|id| NodeConfig {
                id,
                addr: format!("127.0.0.1:{}", free_port()),
                file_addr: None,
                http_addr: None,
            })
            .collect(),
        ..ClusterConfig::default()
    }
}

/// A node on a runtime of its own: `serve` returning leaves its peers'
/// connections open (the process exits after it), so stopping a node also
/// shuts its runtime down, as the end of its process would.
struct Running {
    runtime: tokio::runtime::Runtime,
    stop: oneshot::Sender<()>,
    task: JoinHandle<anyhow::Result<()>>,
}

impl Running {
    async fn end(self) -> anyhow::Result<()> {
        let result = self.task.await.expect("serve panicked");
        self.runtime.shutdown_background();
        result
    }
}

impl Drop for Cluster {
    /// Nodes still running end as if killed (a runtime may not be dropped
    /// inside the test's own).
    fn drop(&mut self) {
        for running in self.nodes.iter_mut().filter_map(Option::take) {
            running.runtime.shutdown_background();
        }
    }
}

/// The nodes of `config`, each with its data in `<dir>/node-<id>`.
pub struct Cluster {
    pub config: ClusterConfig,
    pub dir: PathBuf,
    nodes: Vec<Option<Running>>,
    /// Whether node `i` was started before: only its first start founds the
    /// cluster (`new_cluster`); later ones run on its own data.
    started: Vec<bool>,
}

impl Cluster {
    /// The cluster with no node running yet.
    pub fn new(config: ClusterConfig, dir: &Path) -> Cluster {
        let n = config.nodes.len();
        Cluster {
            config,
            dir: dir.to_path_buf(),
            nodes: (0..n).map(|_| None).collect(),
            started: vec![false; n],
        }
    }

    /// Starts every node.
    pub fn start(config: ClusterConfig, dir: &Path) -> Cluster {
        let mut c = Cluster::new(config, dir);
        for i in 0..c.nodes.len() {
            c.start_node(i);
        }
        c
    }

    pub fn data_dir(&self, i: usize) -> PathBuf {
        self.dir.join(format!("node-{i}"))
    }

    pub fn addr(&self, i: usize) -> String {
        self.config.nodes[i].addr.clone()
    }

    /// Starts node `i` with the cluster's config.
    pub fn start_node(&mut self, i: usize) {
        let config = self.config.clone();
        self.start_node_with(i, config);
    }

    /// Starts node `i` with `config` (say, the cluster's with a limit changed).
    pub fn start_node_with(&mut self, i: usize, config: ClusterConfig) {
        assert!(self.nodes[i].is_none(), "node {i} is running");
        let (stop, stopped) = oneshot::channel::<()>();
        let opts = ServerOptions {
            id: config.nodes[i].id,
            config,
            data_dir: self.data_dir(i),
            join: None,
            new_cluster: !self.started[i],
        };
        self.started[i] = true;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("a runtime");
        let task = runtime.spawn(serve(opts, Vec::new(), async {
            let _ = stopped.await;
        }));
        self.nodes[i] = Some(Running { runtime, stop, task });
    }

    /// Stops node `i` as SIGTERM would (it syncs its log), and returns how
    /// its `serve` ended.
    pub async fn stop_node(&mut self, i: usize) -> anyhow::Result<()> {
        let Running { runtime, stop, task } = self.nodes[i].take().expect("node is running");
        let _ = stop.send(());
        Running {
            runtime,
            stop: oneshot::channel().0,
            task,
        }
        .end()
        .await
    }

    /// How node `i`'s `serve` ended, if it did (it failed to start).
    pub async fn ended(&mut self, i: usize, within: Duration) -> Option<anyhow::Result<()>> {
        let start = Instant::now();
        while start.elapsed() < within {
            if self.nodes[i].as_ref().is_some_and(|r| r.task.is_finished()) {
                let running = self.nodes[i].take().expect("checked");
                return Some(running.end().await);
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        None
    }

    /// A raw KV client of node `i`, without message limits of its own.
    pub async fn kv(&self, i: usize) -> PbKv<Channel> {
        let start = Instant::now();
        loop {
            match PbKv::connect(format!("http://{}", self.addr(i))).await {
                Ok(c) => {
                    return c
                        .max_decoding_message_size(usize::MAX)
                        .max_encoding_message_size(usize::MAX)
                }
                Err(e) => assert!(
                    start.elapsed() < Duration::from_secs(20),
                    "node {i} does not answer: {e}"
                ),
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub async fn status(&self, i: usize) -> Option<StatusResponse> {
        let mut kv = PbKv::connect(format!("http://{}", self.addr(i))).await.ok()?;
        let status = kv.status(StatusRequest {}).await.ok()?;
        Some(status.into_inner())
    }

    /// The node that is leader, waiting for one.
    pub async fn wait_leader(&self) -> usize {
        let start = Instant::now();
        loop {
            for i in 0..self.nodes.len() {
                if self.nodes[i].is_some() && self.status(i).await.is_some_and(|s| s.role == "leader") {
                    return i;
                }
            }
            assert!(start.elapsed() < Duration::from_secs(30), "no leader within 30 s");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Node `i`'s value for `key`, read on its own state (serializable).
    pub async fn local_get(&self, i: usize, key: &[u8]) -> Option<Vec<u8>> {
        let reply = self
            .kv(i)
            .await
            .get(GetRequest {
                key: key.to_vec(),
                serializable: true,
            })
            .await
            .expect("get")
            .into_inner();
        reply.found.then_some(reply.value)
    }
}

/// A new client session on `kv`: its id, for the `Session` of writes.
pub async fn register(kv: &mut PbKv<Channel>) -> u64 {
    kv.register_session(RegisterSessionRequest {})
        .await
        .expect("register a session")
        .into_inner()
        .client_id
}
