//! A real cluster of `triton server` processes on 127.0.0.1 for tests:
//! free ports, a generated TOML config, kill -9 / restart / SIGTERM, and a
//! guard that kills every process when the test ends (even on panic).

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;
use triton_config::TlsConfig;
use triton_node::auth::ClientToken;
use triton_node::client::KvClient;
use triton_node::server::holds_node_state;
use triton_proto::control::control_client::ControlClient;

pub struct ClusterOptions {
    pub nodes: usize,
    pub snapshot_threshold: u64,
    pub test_rpcs: bool,
    /// Give every node a `file_addr` (the file-server face) on a free port.
    pub file_ports: bool,
    /// `triton blockstore` processes to start, listed in `block_stores`.
    pub block_stores: usize,
    /// `[timing] election_ticks` (10000 = leaders only by explicit campaign).
    pub election_ticks: u64,
    /// `[timing] lease_reads` (explicit campaigns need it off).
    pub lease_reads: bool,
    /// `admin_token` in the config; the harness's clients send it.
    pub admin_token: Option<String>,
    /// `[tls]` in the config; the harness's clients connect with it.
    pub tls: Option<TlsConfig>,
    /// Nodes may not grow any file past this many bytes (see
    /// [`Cluster::file_size_limit`]).
    pub file_size_limit: Option<u64>,
    /// `max_message_bytes` and `max_value_bytes` in the config (both this).
    pub max_message_bytes: Option<u64>,
}

impl Default for ClusterOptions {
    fn default() -> Self {
        ClusterOptions {
            nodes: 3,
            snapshot_threshold: 10_000,
            test_rpcs: false,
            file_ports: false,
            block_stores: 0,
            election_ticks: 10,
            lease_reads: true,
            admin_token: None,
            tls: None,
            file_size_limit: None,
            max_message_bytes: None,
        }
    }
}

/// A `[tls]` table in TOML.
fn tls_toml(tls: &TlsConfig) -> String {
    let mut t = format!("\n[tls]\ncert = {:?}\nkey = {:?}\n", tls.cert, tls.key);
    if let Some(ca) = &tls.ca {
        t.push_str(&format!("ca = {ca:?}\n"));
    }
    t
}

pub struct Cluster {
    pub dir: tempfile::TempDir,
    pub config: PathBuf,
    pub addrs: Vec<String>,
    /// The nodes' file-server addresses (empty unless `file_ports` or one node).
    pub file_addrs: Vec<String>,
    children: Vec<Option<Child>>,
    /// Addresses of the block stores, as in the config.
    pub block_addrs: Vec<String>,
    block_children: Vec<Option<Child>>,
    /// A node's own config file, when it differs from `config` (only in
    /// `[tls]`, see [`Cluster::set_node_tls`]).
    node_configs: Vec<Option<PathBuf>>,
    /// The config text without `[tls]`, to write per-node variants.
    toml_without_tls: String,
    /// `--join` address for nodes that join the running cluster.
    join: Vec<Option<String>>,
    /// Whether node `i`'s next start founds the cluster (`--new-cluster`):
    /// true for the nodes the cluster started with until their data
    /// directory is seen holding state. Until then the node never voted (a
    /// kill that came before it wrote anything leaves nothing to lose);
    /// after, a start runs on its own data, or must refuse if it lost it.
    founding: Vec<bool>,
    /// `ulimit -f` for nodes started from now on, in bytes: a write past it
    /// fails (EFBIG, with SIGXFSZ ignored) as it would on a full disk. The
    /// log file is under the limit too, as it is on a real full disk.
    pub file_size_limit: Option<u64>,
}

/// A free loopback port (never the same twice in one process).
pub fn free_port() -> u16 {
    triton_verify::local::free_port().expect("a free port")
}

pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_triton")
}

impl Cluster {
    pub fn start(opts: ClusterOptions) -> Cluster {
        let dir = tempfile::tempdir().expect("tempdir");
        let addrs: Vec<String> = (0..opts.nodes).map(|_| format!("127.0.0.1:{}", free_port())).collect();
        let block_addrs: Vec<String> = (0..opts.block_stores)
            .map(|_| format!("127.0.0.1:{}", free_port()))
            .collect();
        let token = opts
            .admin_token
            .as_ref()
            .map_or(String::new(), |t| format!("admin_token = {t:?}\n"));
        let limits = opts.max_message_bytes.map_or(String::new(), |n| {
            format!("max_message_bytes = {n}\nmax_value_bytes = {n}\n")
        });
        let mut toml = format!(
            "snapshot_threshold = {}\nenable_test_rpcs = {}\nblock_stores = {:?}\n{token}{limits}\n[timing]\ntick_ms = 20\nelection_ticks = {}\nheartbeat_ticks = 2\nlease_reads = {}\n",
            opts.snapshot_threshold, opts.test_rpcs, block_addrs, opts.election_ticks, opts.lease_reads
        );
        // A one-node cluster without a `file_addr` serves files on the fixed
        // default port, which two tests running at once would both want.
        let file_addrs: Vec<String> = if opts.file_ports || opts.nodes == 1 {
            (0..opts.nodes).map(|_| format!("127.0.0.1:{}", free_port())).collect()
        } else {
            Vec::new()
        };
        for (i, a) in addrs.iter().enumerate() {
            toml.push_str(&format!("\n[[nodes]]\nid = {i}\naddr = \"{a}\"\n"));
            if let Some(f) = file_addrs.get(i) {
                toml.push_str(&format!("file_addr = \"{f}\"\n"));
            }
        }
        let config = dir.path().join("cluster.toml");
        let toml_without_tls = toml.clone();
        if let Some(tls) = &opts.tls {
            toml.push_str(&tls_toml(tls));
        }
        std::fs::write(&config, toml).expect("write config");
        let mut c = Cluster {
            node_configs: (0..opts.nodes).map(|_| None).collect(),
            join: vec![None; opts.nodes],
            founding: vec![true; opts.nodes],
            toml_without_tls,
            dir,
            config,
            addrs,
            file_addrs,
            children: (0..opts.nodes).map(|_| None).collect(),
            block_children: (0..opts.block_stores).map(|_| None).collect(),
            block_addrs,
            file_size_limit: opts.file_size_limit,
        };
        for i in 0..opts.block_stores {
            c.spawn_block_store(i);
        }
        for i in 0..opts.nodes {
            c.spawn(i);
        }
        c
    }

    pub fn data_dir(&self, i: usize) -> PathBuf {
        self.dir.path().join(format!("node-{i}"))
    }

    pub fn log_path(&self, i: usize) -> PathBuf {
        self.dir.path().join(format!("node-{i}.log"))
    }

    pub fn spawn(&mut self, i: usize) {
        assert!(self.children[i].is_none(), "node {i} is already running");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path(i))
            .expect("log file");
        let mut command = match self.file_size_limit {
            None => Command::new(bin()),
            Some(bytes) => {
                // `ulimit -f` counts 512-byte blocks; an ignored signal stays
                // ignored across exec.
                let mut sh = Command::new("sh");
                sh.arg("-c")
                    .arg(format!("trap '' XFSZ; ulimit -f {}; exec \"$0\" \"$@\"", bytes / 512))
                    .arg(bin());
                sh
            }
        };
        let child = command
            .args(["server", "--config"])
            .arg(self.node_configs[i].as_ref().unwrap_or(&self.config))
            .args(["--id", &i.to_string(), "--data-dir"])
            .arg(self.data_dir(i))
            .args(self.join[i].iter().flat_map(|seed| ["--join", seed.as_str()]))
            .args((self.founding[i] && !holds_node_state(&self.data_dir(i))).then_some("--new-cluster"))
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn triton server");
        self.children[i] = Some(child);
    }

    /// Lists `n` more nodes in the config file (ports chosen now) without
    /// starting them: nodes that will join the running cluster with
    /// [`Cluster::spawn_joining`]. Running nodes keep the voters they
    /// bootstrapped with (they saved them at their first start). Returns
    /// the new nodes' indexes. (Not for clusters with `[tls]`.)
    pub fn add_nodes_to_config(&mut self, n: usize) -> Vec<usize> {
        // A node fixes its bootstrap voters when it first starts, from the
        // config it reads then: wait until every running node did, or one
        // still starting would read the longer list and bootstrap with it.
        let start = Instant::now();
        for i in 0..self.addrs.len() {
            while self.children[i].is_some() && !self.data_dir(i).join("bootstrap").exists() {
                assert!(
                    start.elapsed() < Duration::from_secs(20),
                    "node {i} never saved its bootstrap voters"
                );
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        let first = self.addrs.len();
        for i in first..first + n {
            let addr = format!("127.0.0.1:{}", free_port());
            self.toml_without_tls
                .push_str(&format!("\n[[nodes]]\nid = {i}\naddr = \"{addr}\"\n"));
            self.addrs.push(addr);
            self.children.push(None);
            self.node_configs.push(None);
            self.join.push(None);
            self.founding.push(false);
        }
        std::fs::write(&self.config, &self.toml_without_tls).expect("rewrite config");
        (first..first + n).collect()
    }

    /// Starts node `i` with `--join` through node `seed`: it asks the
    /// cluster to add it as a learner.
    pub fn spawn_joining(&mut self, i: usize, seed: usize) {
        self.join[i] = Some(self.addrs[seed].clone());
        self.spawn(i);
    }

    pub fn block_dir(&self, i: usize) -> PathBuf {
        self.dir.path().join(format!("blocks-{i}"))
    }

    /// Starts `triton blockstore` number `i` (log in `blocks-<i>.log`).
    pub fn spawn_block_store(&mut self, i: usize) {
        assert!(self.block_children[i].is_none(), "block store {i} is already running");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join(format!("blocks-{i}.log")))
            .expect("log file");
        let child = Command::new(bin())
            .args(["blockstore", "--listen", &self.block_addrs[i], "--dir"])
            .arg(self.block_dir(i))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn triton blockstore");
        self.block_children[i] = Some(child);
    }

    /// SIGKILL a block store.
    pub fn kill9_block_store(&mut self, i: usize) {
        if let Some(mut c) = self.block_children[i].take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGKILL: no chance to flush anything.
    pub fn kill9(&mut self, i: usize) {
        if let Some(mut c) = self.children[i].take() {
            let _ = c.kill();
            let _ = c.wait();
            self.note_state(i);
        }
    }

    /// A node stopped with state in its directory has founded the cluster:
    /// none of its later starts may pass `--new-cluster`.
    fn note_state(&mut self, i: usize) {
        if holds_node_state(&self.data_dir(i)) {
            self.founding[i] = false;
        }
    }

    /// Node `i`'s process id.
    pub fn pid(&self, i: usize) -> u32 {
        self.children[i].as_ref().expect("running").id()
    }

    /// CPU time node `i` has used so far (user + system), from /proc.
    pub fn cpu_time(&self, i: usize) -> Duration {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.pid(i))).expect("/proc stat");
        // Fields after the parenthesised command name; utime and stime are
        // the 14th and 15th fields, in clock ticks (100 per second on Linux).
        let rest = &stat[stat.rfind(')').expect("comm") + 2..];
        let f: Vec<u64> = rest.split(' ').skip(11).take(2).map(|x| x.parse().unwrap()).collect();
        Duration::from_millis((f[0] + f[1]) * 10)
    }

    /// Sends `signal` to node `i` (e.g. 19 = SIGSTOP, 18 = SIGCONT).
    pub fn signal(&self, i: usize, signal: i32) {
        let c = self.children[i].as_ref().expect("running");
        unsafe_kill(c.id(), signal);
    }

    /// SIGTERM, then wait for a clean exit.
    pub fn stop(&mut self, i: usize) -> std::process::ExitStatus {
        let mut c = self.children[i].take().expect("running");
        unsafe_kill(c.id(), 15);
        let status = wait_timeout(&mut c, Duration::from_secs(10)).expect("node stops within 10 s after SIGTERM");
        self.note_state(i);
        status
    }

    pub fn restart(&mut self, i: usize) {
        self.kill9(i);
        self.spawn(i);
    }

    /// Waits for node `i` to exit on its own (e.g. refusing to start).
    pub fn wait_exit(&mut self, i: usize, timeout: Duration) -> Option<std::process::ExitStatus> {
        let c = self.children[i].as_mut()?;
        let status = wait_timeout(c, timeout);
        if status.is_some() {
            self.children[i] = None;
            self.note_state(i);
        }
        status
    }

    pub fn endpoints(&self) -> Vec<String> {
        self.addrs.clone()
    }

    /// Gives node `i` its own config file with `tls` as its `[tls]` (the
    /// rest as in `config`); takes effect at its next start.
    pub fn set_node_tls(&mut self, i: usize, tls: &TlsConfig) {
        let path = self.dir.path().join(format!("node-{i}.toml"));
        std::fs::write(&path, format!("{}{}", self.toml_without_tls, tls_toml(tls))).expect("write node config");
        self.node_configs[i] = Some(path);
    }

    /// Gives node `i` its own config file: the cluster's, without the
    /// `[[nodes]]` entry of node `missing` (as if written before `missing`
    /// joined); takes effect at its next start.
    pub fn set_node_config_without(&mut self, i: usize, missing: usize) {
        let entry = format!("\n[[nodes]]\nid = {missing}\naddr = \"{}\"\n", self.addrs[missing]);
        assert!(
            self.toml_without_tls.contains(&entry),
            "node {missing} is in the config"
        );
        let path = self.dir.path().join(format!("node-{i}.toml"));
        std::fs::write(&path, self.toml_without_tls.replace(&entry, "\n")).expect("write node config");
        self.node_configs[i] = Some(path);
    }

    /// The cluster's config as its clients read it.
    pub fn cluster_config(&self) -> triton_config::ClusterConfig {
        triton_config::load(&self.config).expect("the harness's config loads")
    }

    /// A KV client connecting as the config says (TLS if it has `[tls]`).
    pub fn client(&self) -> KvClient {
        KvClient::with_config(self.endpoints(), &self.cluster_config()).expect("endpoints")
    }

    /// A client of node `i`'s fault-control service that connects as the
    /// config says and sends its admin token.
    pub async fn control(&self, i: usize) -> ControlClient<InterceptedService<Channel, ClientToken>> {
        let config = self.cluster_config();
        let channel = triton_node::tls::endpoint(&self.addrs[i], &config)
            .expect("endpoint")
            .connect()
            .await
            .expect("connect control");
        ControlClient::with_interceptor(channel, ClientToken::from_config(&config))
    }

    /// Waits until some node reports itself leader and a majority agrees on
    /// the term; returns its index.
    pub async fn wait_leader(&self) -> usize {
        let start = Instant::now();
        let mut probe = self.client();
        probe.attempt_timeout = Duration::from_millis(500);
        while start.elapsed() < Duration::from_secs(20) {
            for (i, a) in self.addrs.iter().enumerate() {
                if self.children[i].is_none() {
                    continue;
                }
                if let Ok(s) = probe.status_of(a).await {
                    if s.role == "leader" {
                        return i;
                    }
                }
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("no leader within 20 s; logs in {}", self.dir.path().display());
    }

    /// Waits until every running node has applied at least `index`.
    pub async fn wait_applied(&self, index: u64) {
        let start = Instant::now();
        let mut probe = self.client();
        probe.attempt_timeout = Duration::from_millis(500);
        'outer: while start.elapsed() < Duration::from_secs(30) {
            for (i, a) in self.addrs.iter().enumerate() {
                if self.children[i].is_none() {
                    continue;
                }
                match probe.status_of(a).await {
                    Ok(s) if s.applied_index >= index => {}
                    _ => {
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue 'outer;
                    }
                }
            }
            return;
        }
        panic!(
            "nodes did not apply {index} within 30 s; logs in {}",
            self.dir.path().display()
        );
    }

    pub fn log(&self, i: usize) -> String {
        std::fs::read_to_string(self.log_path(i)).unwrap_or_default()
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for i in 0..self.children.len() {
            self.kill9(i);
        }
        for i in 0..self.block_children.len() {
            self.kill9_block_store(i);
        }
        if std::thread::panicking() {
            for i in 0..self.children.len() {
                eprintln!("---- node {i} log ----\n{}", self.log(i));
            }
        }
    }
}

pub fn unsafe_kill(pid: u32, signal: i32) {
    // `kill` from the OS: std only offers SIGKILL.
    let _ = Command::new("kill")
        .arg(format!("-{signal}"))
        .arg(pid.to_string())
        .status();
}

/// Checks at least once, so a zero timeout asks "has it exited?".
fn wait_timeout(c: &mut Child, timeout: Duration) -> Option<std::process::ExitStatus> {
    let start = Instant::now();
    loop {
        if let Ok(Some(s)) = c.try_wait() {
            return Some(s);
        }
        if start.elapsed() >= timeout {
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The WAL segment files of a node, in order.
pub fn segments(data_dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(data_dir.join("wal"))
        .map(|rd| rd.filter_map(|e| e.ok()).map(|e| e.path()).collect())
        .unwrap_or_default();
    v.retain(|p| p.extension().is_some_and(|e| e == "wal"));
    v.sort();
    v
}
