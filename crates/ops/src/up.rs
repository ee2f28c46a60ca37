//! `triton up`: a whole local Triton system in one terminal.
//!
//! The supervisor writes (or reuses) `<dir>/cluster.toml`, starts every node
//! (`triton server`) and block store (`triton blockstore`) as a child
//! process of the same binary, waits for a leader through the nodes' HTTP
//! `/status`, prints where everything listens with commands to paste, and on
//! SIGINT/SIGTERM stops every child (SIGTERM, then SIGKILL after a grace
//! period) and returns.
//!
//! Why child processes and not one process with many nodes: it is exactly
//! how a real deployment runs (one node per process, each with its own WAL
//! and fsync), so killing a node with `kill -9` really kills one node.
//! Children are in their own process group (so the terminal's Ctrl-C reaches
//! only the supervisor, which stops them in order) and get SIGTERM if the
//! supervisor itself dies (Linux `PR_SET_PDEATHSIG`), so none is left behind.

use std::fs::OpenOptions;
use std::io::Write;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use triton_config::{ClusterConfig, NodeConfig};

use crate::httpget;
use crate::render::StatusDoc;

/// Largest `--nodes`: ports are laid out in blocks of 100 per face.
pub const MAX_NODES: usize = 99;

/// What `triton up` was asked for.
#[derive(Debug, Clone)]
pub struct UpOptions {
    /// Nodes in a new cluster (ignored when `<dir>/cluster.toml` exists).
    pub nodes: usize,
    /// Where the config, the data and the logs live.
    pub dir: PathBuf,
    /// gRPC ports are `base..`, file `base+100..`, HTTP `base+200..`, block
    /// stores `base+300..` (ignored when the config exists).
    pub base_port: u16,
    /// The `triton` binary to run children with.
    pub exe: PathBuf,
    /// How long to wait for a leader before giving up.
    pub leader_timeout: Duration,
    /// How long children get to stop after SIGTERM before SIGKILL.
    pub stop_grace: Duration,
}

/// The config of a fresh local cluster; see [`UpOptions::base_port`].
pub fn local_config(nodes: usize, base_port: u16, block_stores: usize) -> anyhow::Result<ClusterConfig> {
    if nodes == 0 || nodes > MAX_NODES {
        bail!("--nodes must be 1 to {MAX_NODES}, got {nodes}");
    }
    let port = |offset: usize| -> anyhow::Result<u16> {
        u16::try_from(usize::from(base_port) + offset)
            .ok()
            .filter(|&p| p != 0)
            .with_context(|| format!("--base-port {base_port} leaves no room for port offset {offset}"))
    };
    let mut config = ClusterConfig::default();
    for i in 0..nodes {
        config.nodes.push(NodeConfig {
            id: i as u64,
            addr: format!("127.0.0.1:{}", port(i)?),
            file_addr: Some(format!("127.0.0.1:{}", port(100 + i)?)),
            http_addr: Some(format!("127.0.0.1:{}", port(200 + i)?)),
        });
    }
    for i in 0..block_stores {
        config.block_stores.push(format!("127.0.0.1:{}", port(300 + i)?));
    }
    // Membership changes need a token; a fresh random one per cluster keeps
    // `triton admin --config <dir>/cluster.toml` working out of the box.
    config.admin_token = Some(random_token()?);
    config.validate()?;
    Ok(config)
}

/// 128 random bits in hex, from the OS.
fn random_token() -> anyhow::Result<String> {
    use std::io::Read as _;
    let mut bytes = [0u8; 16];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .context("reading /dev/urandom for the admin token")?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// One supervised process.
struct Proc {
    name: String,
    args: Vec<String>,
    log: PathBuf,
    child: Option<Child>,
}

/// Every child; kills what is still running when dropped (on error paths).
struct Children(Vec<Proc>);

impl Drop for Children {
    fn drop(&mut self) {
        for p in &mut self.0 {
            if let Some(c) = p.child.as_mut() {
                let _ = c.kill();
                let _ = c.wait();
            }
        }
    }
}

fn spawn(exe: &Path, p: &mut Proc) -> anyhow::Result<()> {
    let mut log = OpenOptions::new()
        .create(true)
        .append(true)
        .open(&p.log)
        .with_context(|| format!("opening {}", p.log.display()))?;
    writeln!(log, "=== triton up: starting {} ({})", p.name, p.args.join(" "))?;
    let mut cmd = Command::new(exe);
    cmd.args(&p.args)
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .process_group(0);
    // SAFETY: prctl is async-signal-safe; nothing else runs between fork and exec.
    unsafe {
        cmd.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let child = cmd.spawn().with_context(|| format!("starting {}", p.name))?;
    p.child = Some(child);
    Ok(())
}

fn port_free(addr: &str) -> bool {
    std::net::TcpListener::bind(addr).is_ok()
}

fn has_subcommand(exe: &Path, name: &str) -> bool {
    Command::new(exe)
        .args([name, "--help"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Polls every node's `/status` until one says it leads.
fn leader_of(config: &ClusterConfig) -> Option<StatusDoc> {
    config
        .nodes
        .iter()
        .filter_map(|n| n.http_addr.as_deref())
        .filter_map(|a| httpget::get(a, "/status", Duration::from_millis(500)).ok())
        .filter(|r| r.status == 200)
        .filter_map(|r| serde_json::from_str::<StatusDoc>(&r.body).ok())
        .filter(|d| d.role == "leader")
        .max_by_key(|d| d.term)
}

fn describe(status: ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(c), _) => format!("exit code {c}"),
        (None, Some(s)) => format!("signal {s}"),
        _ => status.to_string(),
    }
}

/// Reports children that exited on their own since the last call.
fn reap(children: &mut Children, out: &mut impl Write) {
    for p in &mut children.0 {
        if let Some(c) = p.child.as_mut() {
            if let Ok(Some(status)) = c.try_wait() {
                let _ = writeln!(
                    out,
                    "triton up: {} (pid {}) exited unexpectedly ({}); its log: {}",
                    p.name,
                    c.id(),
                    describe(status),
                    p.log.display()
                );
                p.child = None;
            }
        }
    }
}

/// SIGTERM to every child, wait up to `grace`, then SIGKILL the rest.
fn stop_all(children: &mut Children, grace: Duration, out: &mut impl Write) {
    for p in &children.0 {
        if let Some(c) = &p.child {
            if let Ok(pid) = i32::try_from(c.id()) {
                // SAFETY: kill(2) on our own child's pid.
                unsafe {
                    libc::kill(pid, libc::SIGTERM);
                }
            }
        }
    }
    let deadline = Instant::now() + grace;
    loop {
        let mut running = 0;
        for p in &mut children.0 {
            if let Some(c) = p.child.as_mut() {
                match c.try_wait() {
                    Ok(Some(_)) | Err(_) => p.child = None,
                    Ok(None) => running += 1,
                }
            }
        }
        if running == 0 {
            return;
        }
        if Instant::now() >= deadline {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    for p in &mut children.0 {
        if let Some(mut c) = p.child.take() {
            let _ = writeln!(out, "triton up: {} did not stop within {grace:?}; killing it", p.name);
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Runs the local system until `stop` resolves (the caller passes Ctrl-C /
/// SIGTERM). Progress and the banner go to `out`.
pub async fn run(
    opts: UpOptions,
    out: &mut (impl Write + Send),
    stop: impl std::future::Future<Output = ()>,
) -> anyhow::Result<()> {
    std::fs::create_dir_all(opts.dir.join("logs")).with_context(|| format!("creating {}", opts.dir.display()))?;
    let dir = opts
        .dir
        .canonicalize()
        .with_context(|| format!("resolving {}", opts.dir.display()))?;
    let config_path = dir.join("cluster.toml");
    let blockstore_cmd = has_subcommand(&opts.exe, "blockstore");
    let config = if config_path.exists() {
        let config = triton_config::load(&config_path)?;
        writeln!(
            out,
            "triton up: reusing {} ({} nodes; --nodes and --base-port apply only to a new directory)",
            config_path.display(),
            config.nodes.len()
        )?;
        config
    } else {
        let config = local_config(opts.nodes, opts.base_port, 2)?;
        std::fs::write(&config_path, config.to_toml()).with_context(|| format!("writing {}", config_path.display()))?;
        writeln!(out, "triton up: wrote {}", config_path.display())?;
        config
    };
    if !blockstore_cmd && !config.block_stores.is_empty() {
        writeln!(
            out,
            "triton up: warning: this binary has no `blockstore` subcommand; not starting block stores"
        )?;
    }
    let block_stores: Vec<String> = if blockstore_cmd {
        config.block_stores.clone()
    } else {
        Vec::new()
    };
    let mut busy = Vec::new();
    for n in &config.nodes {
        for a in [Some(&n.addr), n.file_addr.as_ref(), n.http_addr.as_ref()]
            .into_iter()
            .flatten()
        {
            if !port_free(a) {
                busy.push(a.clone());
            }
        }
    }
    busy.extend(block_stores.iter().filter(|a| !port_free(a)).cloned());
    if !busy.is_empty() {
        bail!(
            "these addresses are in use: {} (is another `triton up` running? try --base-port or another --dir)",
            busy.join(", ")
        );
    }

    let config_arg = config_path.display().to_string();
    let mut procs = Vec::new();
    for (i, addr) in block_stores.iter().enumerate() {
        procs.push(Proc {
            name: format!("block store {i}"),
            args: vec![
                "blockstore".into(),
                "--listen".into(),
                addr.clone(),
                "--dir".into(),
                dir.join(format!("blocks-{i}")).display().to_string(),
            ],
            log: dir.join("logs").join(format!("blockstore-{i}.log")),
            child: None,
        });
    }
    for n in &config.nodes {
        procs.push(Proc {
            name: format!("node {}", n.id),
            args: vec![
                "server".into(),
                "--config".into(),
                config_arg.clone(),
                "--id".into(),
                n.id.to_string(),
                "--data-dir".into(),
                dir.join(format!("node-{}", n.id)).display().to_string(),
            ],
            log: dir.join("logs").join(format!("node-{}.log", n.id)),
            child: None,
        });
    }
    let mut children = Children(procs);
    for p in &mut children.0 {
        spawn(&opts.exe, p)?;
    }
    writeln!(
        out,
        "triton up: started {} nodes and {} block stores; waiting for a leader…",
        config.nodes.len(),
        block_stores.len()
    )?;

    tokio::pin!(stop);
    let deadline = Instant::now() + opts.leader_timeout;
    let leader = loop {
        let cfg = config.clone();
        if let Some(l) = tokio::task::spawn_blocking(move || leader_of(&cfg)).await? {
            break l;
        }
        reap(&mut children, out);
        if children.0.iter().all(|p| p.child.is_none()) {
            bail!("every process exited; see the logs in {}", dir.join("logs").display());
        }
        if Instant::now() >= deadline {
            stop_all(&mut children, opts.stop_grace, out);
            bail!(
                "no leader within {:?}; see the logs in {}",
                opts.leader_timeout,
                dir.join("logs").display()
            );
        }
        tokio::select! {
            _ = &mut stop => {
                writeln!(out, "triton up: interrupted; stopping")?;
                stop_all(&mut children, opts.stop_grace, out);
                return Ok(());
            }
            _ = tokio::time::sleep(Duration::from_millis(200)) => {}
        }
    };

    banner(out, &config, &config_path, &block_stores, &children, &leader)?;

    loop {
        tokio::select! {
            _ = &mut stop => break,
            _ = tokio::time::sleep(Duration::from_millis(200)) => reap(&mut children, out),
        }
    }
    writeln!(out, "triton up: stopping…")?;
    stop_all(&mut children, opts.stop_grace, out);
    writeln!(out, "triton up: stopped (data kept in {})", dir.display())?;
    Ok(())
}

fn banner(
    out: &mut impl Write,
    config: &ClusterConfig,
    config_path: &Path,
    block_stores: &[String],
    children: &Children,
    leader: &StatusDoc,
) -> anyhow::Result<()> {
    let pid = |name: &str| {
        children
            .0
            .iter()
            .find(|p| p.name == name)
            .and_then(|p| p.child.as_ref())
            .map_or_else(|| "-".to_string(), |c| c.id().to_string())
    };
    writeln!(out)?;
    for n in &config.nodes {
        let name = format!("node {}", n.id);
        writeln!(
            out,
            "  {name}: grpc {}  files {}  http {}  pid {}",
            n.addr,
            n.file_addr.as_deref().unwrap_or("-"),
            n.http_addr.as_deref().unwrap_or("-"),
            pid(&name)
        )?;
    }
    for (i, a) in block_stores.iter().enumerate() {
        let name = format!("block store {i}");
        writeln!(out, "  {name}: {a}  pid {}", pid(&name))?;
    }
    writeln!(out, "  leader: node {} (term {})", leader.id, leader.term)?;
    if let Some(h) = config.nodes.iter().find_map(|n| n.http_addr.as_deref()) {
        writeln!(out, "  dashboard: http://{h}/   metrics: http://{h}/metrics")?;
    }
    let endpoints: Vec<&str> = config.nodes.iter().map(|n| n.addr.as_str()).collect();
    let endpoints = endpoints.join(",");
    let files: Vec<&str> = config.nodes.iter().filter_map(|n| n.file_addr.as_deref()).collect();
    writeln!(out, "\nTry:")?;
    writeln!(out, "  triton kv --endpoints {endpoints} put hello world")?;
    writeln!(out, "  triton kv --endpoints {endpoints} get hello")?;
    if !files.is_empty() {
        writeln!(
            out,
            "  echo hi > /tmp/hi.txt && triton files --endpoints {} write hi.txt /tmp/hi.txt",
            files.join(",")
        )?;
        writeln!(out, "  triton files --endpoints {} read hi.txt", files.join(","))?;
    }
    if !block_stores.is_empty() {
        writeln!(
            out,
            "  mkdir -p /tmp/mysync && triton sync --config {} /tmp/mysync 4096",
            config_path.display()
        )?;
    }
    writeln!(out, "  triton admin --config {} members", config_path.display())?;
    writeln!(out, "  logs: {}", config_path.with_file_name("logs").display())?;
    writeln!(
        out,
        "\ntriton up: ready (Ctrl-C stops everything; running it again reuses the data)"
    )?;
    out.flush()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn port_layout() {
        let c = local_config(3, 7000, 2).unwrap();
        assert_eq!(c.nodes[2].addr, "127.0.0.1:7002");
        assert_eq!(c.nodes[1].file_addr.as_deref(), Some("127.0.0.1:7101"));
        assert_eq!(c.nodes[0].http_addr.as_deref(), Some("127.0.0.1:7200"));
        assert_eq!(c.block_stores, vec!["127.0.0.1:7300", "127.0.0.1:7301"]);
        let again = triton_config::parse(&c.to_toml()).unwrap();
        assert_eq!(again, c);
    }

    #[test]
    fn rejects_bad_layouts() {
        assert!(local_config(0, 7000, 2).is_err());
        assert!(local_config(MAX_NODES + 1, 7000, 2).is_err());
        assert!(local_config(3, 65_300, 2).is_err());
    }
}
