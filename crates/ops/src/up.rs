//! `triton up`: a whole local Triton system in one terminal.
//!
//! The supervisor writes (or reuses) `<dir>/cluster.toml`, starts every node
//! (`triton server`) and block store (`triton blockstore`) as a child
//! process of the same binary, waits for a leader through the nodes' HTTP
//! `/status`, prints where everything listens with commands to paste, and on
//! SIGINT/SIGTERM stops every child (SIGTERM, then SIGKILL after a grace
//! period) and returns. The config names `<dir>` as its `data_dir` and is
//! readable by its owner only (it holds the admin token), so a node
//! restarted by hand with `triton server --config <dir>/cluster.toml --id N`
//! runs on the same data as under `triton up`.
//!
//! Why child processes and not one process with many nodes: it is exactly
//! how a real deployment runs (one node per process, each with its own WAL
//! and fsync), so killing a node with `kill -9` really kills one node.
//! Children are in their own process group (so the terminal's Ctrl-C reaches
//! only the supervisor, which stops them in order) and get SIGTERM if the
//! supervisor itself dies (Linux `PR_SET_PDEATHSIG`), so none is left behind.
//! One supervisor per directory: it holds an exclusive lock on
//! `<dir>/up.lock` ([`lock_dir`]) for as long as it runs.

use std::fs::OpenOptions;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use triton_config::{ClusterConfig, NodeConfig};
use triton_node::server::holds_node_state;

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

/// The config of a fresh local cluster (see [`UpOptions::base_port`]) whose
/// nodes keep their data in `<data_dir>/node-<id>`.
///
/// `data_dir` must be absolute and goes into the config, so that
/// `triton server --config <file> --id N`, run from any directory, restarts
/// node N on the same data `triton up` gives it: on an empty directory it
/// would refuse to start (it would be a member with no log and no record of
/// its votes).
pub fn local_config(
    nodes: usize,
    base_port: u16,
    block_stores: usize,
    data_dir: &Path,
) -> anyhow::Result<ClusterConfig> {
    if nodes == 0 || nodes > MAX_NODES {
        bail!("--nodes must be 1 to {MAX_NODES}, got {nodes}");
    }
    if !data_dir.is_absolute() {
        bail!("the data directory {} must be an absolute path", data_dir.display());
    }
    let port = |offset: usize| -> anyhow::Result<u16> {
        u16::try_from(usize::from(base_port) + offset)
            .ok()
            .filter(|&p| p != 0)
            .with_context(|| format!("--base-port {base_port} leaves no room for port offset {offset}"))
    };
    let mut config = ClusterConfig {
        data_dir: Some(data_dir.to_path_buf()),
        ..ClusterConfig::default()
    };
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

/// Writes `config` to `path`, readable by its owner only since it holds the
/// admin token: a temporary file created with mode 0600 (an existing file
/// would keep its mode), synced, then renamed over `path`, so that no reader
/// ever sees half a config.
fn write_config(path: &Path, config: &ClusterConfig) -> anyhow::Result<()> {
    let tmp = path.with_extension("toml.tmp");
    // A leftover of an interrupted write; `create_new` needs it gone.
    let _ = std::fs::remove_file(&tmp);
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)
        .with_context(|| format!("creating {}", tmp.display()))?;
    file.write_all(config.to_toml().as_bytes())
        .and_then(|()| file.sync_all())
        .with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("renaming {} to {}", tmp.display(), path.display()))
}

/// Makes a reused config that holds the admin token readable by its owner
/// only (`triton up` before 0600 wrote it with default permissions).
fn make_private(path: &Path, config: &ClusterConfig, out: &mut impl Write) -> anyhow::Result<()> {
    let mode = std::fs::metadata(path)
        .with_context(|| format!("reading {}", path.display()))?
        .permissions()
        .mode();
    if config.admin_token.is_some() && mode & 0o077 != 0 {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode & 0o700))
            .with_context(|| format!("making {} private", path.display()))?;
        writeln!(
            out,
            "triton up: made {} readable by its owner only (it holds the admin token)",
            path.display()
        )?;
    }
    Ok(())
}

/// Checks that a reused config keeps its nodes' data where `triton up`
/// does, in `<dir>/node-<id>`, so that a node restarted by hand with the
/// config alone finds its own data. A config that `triton up` wrote before
/// it recorded `data_dir` gets it added; any other mismatch is an error.
fn reconcile_data_dir(
    path: &Path,
    mut config: ClusterConfig,
    dir: &Path,
    out: &mut impl Write,
) -> anyhow::Result<ClusterConfig> {
    match &config.data_dir {
        Some(d) if d.is_absolute() && d.canonicalize().is_ok_and(|d| d == dir) => Ok(config),
        None if std::fs::read_to_string(path).is_ok_and(|t| t.starts_with(triton_config::TOML_HEADER)) => {
            config.data_dir = Some(dir.to_path_buf());
            write_config(path, &config)?;
            writeln!(
                out,
                "triton up: added data_dir = {:?} to {}, so that `triton server --config` finds the nodes' data",
                dir.display().to_string(),
                path.display()
            )?;
            Ok(config)
        }
        other => bail!(
            "{} has data_dir = {}, but triton up keeps this cluster's data in {}/node-<id>; \
             set data_dir = {:?} in it, so that `triton server --config` and triton up use the same data",
            path.display(),
            other
                .as_ref()
                .map_or_else(|| "(none)".to_string(), |d| format!("{:?}", d.display().to_string())),
            dir.display(),
            dir.display().to_string()
        ),
    }
}

/// The file in `--dir` whose lock the running supervisor holds.
pub const LOCK_FILE: &str = "up.lock";

/// Takes the exclusive lock on `<dir>/up.lock` (flock, so the kernel drops
/// it when the supervisor dies however it dies) and records our pid in the
/// file; the lock lasts as long as the returned file is open. Two `triton
/// up` on one directory would both write configs and start nodes on the
/// same data, so the second is refused, naming the first.
pub fn lock_dir(dir: &Path) -> anyhow::Result<std::fs::File> {
    use std::io::{Read, Seek};
    let path = dir.join(LOCK_FILE);
    // Not truncated on open: the pid in it belongs to whoever holds it.
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(&path)
        .with_context(|| format!("opening {}", path.display()))?;
    match file.try_lock() {
        Ok(()) => {}
        Err(std::fs::TryLockError::WouldBlock) => {
            // A holder that has just locked may not have written its pid
            // yet (two started at the same moment): give it a moment.
            let mut pid = None;
            for _ in 0..25 {
                let mut text = String::new();
                if file.rewind().is_ok() && file.read_to_string(&mut text).is_ok() {
                    pid = text.trim().parse::<u32>().ok();
                }
                if pid.is_some() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let holder = match pid {
                Some(pid) => format!("another `triton up` (pid {pid})"),
                None => "another `triton up`".to_string(),
            };
            bail!(
                "{holder} is already running on {} (it holds {}); stop it first, or use another --dir",
                dir.display(),
                path.display()
            );
        }
        Err(std::fs::TryLockError::Error(e)) => {
            return Err(e).with_context(|| format!("locking {}", path.display()));
        }
    }
    file.set_len(0)
        .and_then(|()| file.rewind())
        .and_then(|()| writeln!(file, "{}", std::process::id()))
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(file)
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
    /// A Raft node (not a block store): a leader needs a majority of them.
    is_node: bool,
    args: Vec<String>,
    log: PathBuf,
    child: Option<Child>,
}

/// Every child; stops what is still running when dropped (on error paths)
/// as `stop_all` does: SIGTERM first, so nodes sync their logs and hand over
/// leadership, SIGKILL only after the grace.
struct Children(Vec<Proc>);

/// How long a child stopped by `Children::drop` has before SIGKILL.
const DROP_GRACE: Duration = Duration::from_secs(5);

impl Drop for Children {
    fn drop(&mut self) {
        stop_all(self, DROP_GRACE, &mut std::io::sink());
    }
}

impl Children {
    /// Nodes (not block stores) still running.
    fn nodes_running(&self) -> usize {
        self.0.iter().filter(|p| p.is_node && p.child.is_some()).count()
    }
}

/// Output that never fails: `triton up`'s messages are for a person, and a
/// closed terminal or pipe (`triton up | tee log`, where Ctrl-C also stops
/// `tee`) must not cut short the supervision or the graceful stop.
struct Lenient<'a, W: Write>(&'a mut W);

impl<W: Write> Write for Lenient<'_, W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let _ = self.0.write_all(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        let _ = self.0.flush();
        Ok(())
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
    let parent = std::process::id();
    // SAFETY: prctl, getppid and _exit are async-signal-safe; nothing else
    // runs between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            // A parent that died before the prctl sent no signal: the child
            // has been re-parented, and must not run unsupervised.
            if libc::getppid() as u32 != parent {
                libc::_exit(1);
            }
            Ok(())
        });
    }
    let child = cmd.spawn().with_context(|| format!("starting {}", p.name))?;
    p.child = Some(child);
    Ok(())
}

/// Checks that every address can be listened on. A busy port gets a hint
/// that fits how the ports were chosen: `--base-port` only applies to a new
/// directory (`reused` false); other errors (say, permission denied for a
/// port below 1024) are reported as the OS gives them.
fn check_ports<'a>(addrs: impl IntoIterator<Item = &'a str>, reused: bool) -> anyhow::Result<()> {
    let mut busy = Vec::new();
    let mut failed = Vec::new();
    for addr in addrs {
        match std::net::TcpListener::bind(addr) {
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => busy.push(addr),
            Err(e) => failed.push(format!("{addr} ({e})")),
        }
    }
    let mut problems = Vec::new();
    if !busy.is_empty() {
        let hint = if reused {
            "is another `triton up` running on this directory, or a node of it started by hand with \
             `triton server`? stop it or use another --dir; this directory's cluster.toml fixes the ports, \
             so --base-port does not change them"
        } else {
            "is another `triton up` running? try --base-port or another --dir"
        };
        problems.push(format!("these addresses are in use: {} ({hint})", busy.join(", ")));
    }
    if !failed.is_empty() {
        problems.push(format!("cannot listen on {}", failed.join(", ")));
    }
    if !problems.is_empty() {
        bail!("{}", problems.join("; "));
    }
    Ok(())
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

/// The error a child printed last (`triton: error: ...`) since `triton up`
/// last started it, if any: why a node refused to start, said where the
/// user looks, not only in its log.
fn last_error(log: &Path) -> Option<String> {
    use std::io::{Read, Seek, SeekFrom};
    const MAX: u64 = 64 * 1024;
    let mut f = std::fs::File::open(log).ok()?;
    let len = f.metadata().ok()?.len();
    f.seek(SeekFrom::Start(len.saturating_sub(MAX))).ok()?;
    let mut bytes = Vec::new();
    f.take(MAX).read_to_end(&mut bytes).ok()?;
    let text = String::from_utf8_lossy(&bytes);
    let run = text.rsplit("=== triton up: starting").next()?;
    run.lines()
        .rev()
        .find(|l| l.starts_with("triton: error:"))
        .map(str::to_string)
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
                if let Some(error) = last_error(&p.log) {
                    let _ = writeln!(out, "  {error}");
                }
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
    // A grace too long for the clock to represent means no deadline.
    let deadline = Instant::now().checked_add(grace);
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
        if deadline.is_some_and(|d| Instant::now() >= d) {
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
    let out = &mut Lenient(out);
    std::fs::create_dir_all(opts.dir.join("logs")).with_context(|| format!("creating {}", opts.dir.display()))?;
    let dir = opts
        .dir
        .canonicalize()
        .with_context(|| format!("resolving {}", opts.dir.display()))?;
    // Before anything in `dir` is looked at or written, and held until we
    // return (the file is opened close-on-exec, so children never hold it).
    let _lock = lock_dir(&dir)?;
    let config_path = dir.join("cluster.toml");
    let blockstore_cmd = has_subcommand(&opts.exe, "blockstore");
    let reused = config_path.exists();
    let config = if reused {
        let config = triton_config::load(&config_path)?;
        writeln!(
            out,
            "triton up: reusing {} ({} nodes; --nodes and --base-port apply only to a new directory)",
            config_path.display(),
            config.nodes.len()
        )?;
        make_private(&config_path, &config, out)?;
        reconcile_data_dir(&config_path, config, &dir, out)?
    } else {
        let config = local_config(opts.nodes, opts.base_port, 2, &dir)?;
        // Before the config is written: once it exists it fixes the ports,
        // and the advice to try another --base-port would no longer work.
        check_ports(addresses(&config, &config.block_stores), false)?;
        write_config(&config_path, &config)?;
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
    check_ports(addresses(&config, &block_stores), reused)?;

    let config_arg = config_path.display().to_string();
    // A brand-new cluster only if no node has state yet. Otherwise a node
    // with an empty data directory lost its data: it must not found the
    // cluster again (it could vote twice in a term), so it refuses to start
    // and `reap` shows why.
    let new_cluster = config
        .nodes
        .iter()
        .all(|n| !holds_node_state(&config.node_data_dir(n.id)));
    let mut procs = Vec::new();
    for (i, addr) in block_stores.iter().enumerate() {
        procs.push(Proc {
            name: format!("block store {i}"),
            is_node: false,
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
        let mut args: Vec<String> = vec![
            "server".into(),
            "--config".into(),
            config_arg.clone(),
            "--id".into(),
            n.id.to_string(),
            // The config's own answer (checked above to be under `dir`),
            // so a node restarted with the config alone finds this data.
            "--data-dir".into(),
            config.node_data_dir(n.id).display().to_string(),
        ];
        if new_cluster {
            args.push("--new-cluster".into());
        }
        procs.push(Proc {
            name: format!("node {}", n.id),
            is_node: true,
            args,
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
    // A timeout too long for the clock to represent (`--leader-timeout`
    // near u64::MAX seconds) means no deadline: wait until interrupted.
    let deadline = Instant::now().checked_add(opts.leader_timeout);
    let majority = config.nodes.len() / 2 + 1;
    let leader = loop {
        let cfg = config.clone();
        if let Some(l) = tokio::task::spawn_blocking(move || leader_of(&cfg)).await? {
            break l;
        }
        reap(&mut children, out);
        let running = children.nodes_running();
        if running < majority {
            stop_all(&mut children, opts.stop_grace, out);
            bail!(
                "only {running} of {} nodes are running, fewer than the {majority} a leader needs; see the logs in {}",
                config.nodes.len(),
                dir.join("logs").display()
            );
        }
        if deadline.is_some_and(|d| Instant::now() >= d) {
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
        if children.nodes_running() == 0 {
            stop_all(&mut children, opts.stop_grace, out);
            bail!(
                "every node has exited, so the cluster is gone; see the logs in {}",
                dir.join("logs").display()
            );
        }
    }
    writeln!(out, "triton up: stopping…")?;
    stop_all(&mut children, opts.stop_grace, out);
    // A node restarted by hand (as the banner suggests) is not ours to stop.
    let mut still = Vec::new();
    for addr in config.nodes.iter().map(|n| n.addr.as_str()) {
        if std::net::TcpListener::bind(addr).is_err_and(|e| e.kind() == std::io::ErrorKind::AddrInUse) {
            still.push(addr);
        }
    }
    if !still.is_empty() {
        writeln!(
            out,
            "triton up: warning: something still listens on {} (a node started by hand with `triton server`? \
             triton up did not start it, so it did not stop it)",
            still.join(", ")
        )?;
    }
    writeln!(out, "triton up: stopped (data kept in {})", dir.display())?;
    Ok(())
}

/// Every address the local system listens on: each node's faces, then the
/// block stores.
fn addresses<'a>(config: &'a ClusterConfig, block_stores: &'a [String]) -> impl Iterator<Item = &'a str> {
    config
        .nodes
        .iter()
        .flat_map(|n| [Some(&n.addr), n.file_addr.as_ref(), n.http_addr.as_ref()])
        .flatten()
        .chain(block_stores)
        .map(String::as_str)
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
    writeln!(
        out,
        "  restart node N alone (on its own data): triton server --config {} --id N",
        config_path.display()
    )?;
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
        let c = local_config(3, 7000, 2, Path::new("/var/lib/triton")).unwrap();
        assert_eq!(c.nodes[2].addr, "127.0.0.1:7002");
        assert_eq!(c.nodes[1].file_addr.as_deref(), Some("127.0.0.1:7101"));
        assert_eq!(c.nodes[0].http_addr.as_deref(), Some("127.0.0.1:7200"));
        assert_eq!(c.block_stores, vec!["127.0.0.1:7300", "127.0.0.1:7301"]);
        let again = triton_config::parse(&c.to_toml()).unwrap();
        assert_eq!(again, c);
    }

    #[test]
    fn rejects_bad_layouts() {
        let dir = Path::new("/var/lib/triton");
        assert!(local_config(0, 7000, 2, dir).is_err());
        assert!(local_config(MAX_NODES + 1, 7000, 2, dir).is_err());
        assert!(local_config(3, 65_300, 2, dir).is_err());
        assert!(local_config(3, 7000, 2, Path::new("triton-data")).is_err());
    }

    /// A fresh directory under the system's temporary one, removed on drop.
    struct Scratch(PathBuf);

    impl Scratch {
        fn new(name: &str) -> Scratch {
            let nanos = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos());
            let dir = std::env::temp_dir().join(format!("triton-up-{name}-{}-{nanos}", std::process::id()));
            std::fs::create_dir_all(&dir).unwrap();
            Scratch(dir.canonicalize().unwrap())
        }
    }

    impl Drop for Scratch {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    /// A base port whose layout for 3 nodes and 2 block stores is free now,
    /// below 32,000: out of the kernel's ephemeral range, where an outgoing
    /// connection could take a port before `triton up` binds it.
    fn free_base() -> u16 {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| u64::from(d.subsec_nanos()));
        let seed = u64::from(std::process::id()) ^ nanos;
        (0..500u64)
            .map(|a| 10_000 + ((seed.wrapping_mul(2_654_435_761).wrapping_add(a * 7_919)) % 22_000) as u16)
            .find(|&base| {
                (0..3)
                    .flat_map(|i| [base + i, base + 100 + i, base + 200 + i])
                    .chain([base + 300, base + 301])
                    .all(|p| std::net::TcpListener::bind(("127.0.0.1", p)).is_ok())
            })
            .expect("a free port range")
    }

    /// `triton up` on `dir` with children that exit at once (`/bin/false`
    /// has no `server` subcommand): it writes the config, starts the nodes,
    /// sees them all gone and returns that error; the output is returned too.
    fn up_with_failing_children(dir: &Path, leader_timeout: Duration) -> (anyhow::Result<()>, String) {
        let opts = UpOptions {
            nodes: 3,
            dir: dir.to_path_buf(),
            base_port: free_base(),
            exe: PathBuf::from("/bin/false"),
            leader_timeout,
            stop_grace: Duration::from_secs(1),
        };
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let mut out = Vec::new();
        let result = rt.block_on(run(opts, &mut out, std::future::pending()));
        (result, String::from_utf8(out).unwrap())
    }

    /// The `--data-dir` that `triton up` gave node `id`, from its log.
    fn data_dir_given(dir: &Path, id: u64) -> PathBuf {
        let log = std::fs::read_to_string(dir.join(format!("logs/node-{id}.log"))).unwrap();
        let args = log.lines().find(|l| l.starts_with("=== triton up: starting")).unwrap();
        let given = args
            .split_whitespace()
            .skip_while(|w| *w != "--data-dir")
            .nth(1)
            .unwrap();
        PathBuf::from(given.trim_end_matches(')'))
    }

    #[test]
    fn a_leader_timeout_beyond_the_clock_means_no_deadline() {
        let scratch = Scratch::new("timeout");
        let (result, out) = up_with_failing_children(&scratch.0, Duration::MAX);
        let err = result.expect_err("every child exits");
        // As soon as two have exited: the third may still be running.
        assert!(
            err.to_string()
                .contains("of 3 nodes are running, fewer than the 2 a leader needs"),
            "{err:#}\n{out}"
        );
    }

    #[test]
    fn nodes_that_cannot_start_end_the_wait_for_a_leader_at_once() {
        // Block stores that keep running do not matter: with the nodes gone
        // no leader can come, so the 60 s timeout is not waited out.
        let scratch = Scratch::new("nonodes");
        let exe = scratch.0.join("fake-triton");
        std::fs::write(
            &exe,
            "#!/bin/sh\nif [ \"$1\" = blockstore ]; then [ \"$2\" = --help ] && exit 0; exec sleep 60; fi\nexit 1\n",
        )
        .unwrap();
        std::fs::set_permissions(&exe, std::fs::Permissions::from_mode(0o755)).unwrap();
        let opts = UpOptions {
            nodes: 3,
            dir: scratch.0.join("data"),
            base_port: free_base(),
            exe,
            leader_timeout: Duration::from_secs(60),
            stop_grace: Duration::from_secs(5),
        };
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let started = Instant::now();
        let mut out = Vec::new();
        let err = rt.block_on(run(opts, &mut out, std::future::pending())).unwrap_err();
        let out = String::from_utf8_lossy(&out);
        assert!(
            err.to_string().contains("fewer than the 2 a leader needs"),
            "{err:#}\n{out}"
        );
        assert!(started.elapsed() < Duration::from_secs(30), "{:?}", started.elapsed());
    }

    #[test]
    fn a_busy_port_in_a_new_directory_leaves_no_config_behind() {
        let scratch = Scratch::new("busyport");
        let base = free_base();
        let held = std::net::TcpListener::bind(("127.0.0.1", base + 101)).unwrap();
        let opts = UpOptions {
            nodes: 3,
            dir: scratch.0.clone(),
            base_port: base,
            exe: PathBuf::from("/bin/false"),
            leader_timeout: Duration::from_secs(60),
            stop_grace: Duration::from_secs(1),
        };
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let err = rt
            .block_on(run(opts, &mut Vec::new(), std::future::pending()))
            .unwrap_err()
            .to_string();
        assert!(err.contains("in use") && err.contains("try --base-port"), "{err}");
        // So the advice works: the next run may pick other ports.
        assert!(!scratch.0.join("cluster.toml").exists());
        drop(held);
    }

    /// A node's reason to exit is the error of its latest start, not one
    /// an earlier start logged.
    #[test]
    fn the_error_shown_for_an_exit_is_the_latest_starts() {
        let scratch = Scratch::new("lasterror");
        let log = scratch.0.join("node-2.log");
        std::fs::write(&log, "=== triton up: starting node 2 (server)\ntriton: error: old\n").unwrap();
        assert_eq!(last_error(&log).as_deref(), Some("triton: error: old"));
        let mut f = OpenOptions::new().append(true).open(&log).unwrap();
        writeln!(
            f,
            "=== triton up: starting node 2 (server)\nINFO starting\ntriton: error: refused"
        )
        .unwrap();
        assert_eq!(last_error(&log).as_deref(), Some("triton: error: refused"));
        writeln!(f, "=== triton up: starting node 2 (server)\nINFO killed by a signal").unwrap();
        assert_eq!(last_error(&log), None);
        assert_eq!(last_error(&scratch.0.join("missing.log")), None);
    }

    #[test]
    fn output_that_fails_does_not_stop_the_supervisor() {
        struct Closed;
        impl Write for Closed {
            fn write(&mut self, _: &[u8]) -> std::io::Result<usize> {
                Err(std::io::ErrorKind::BrokenPipe.into())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Err(std::io::ErrorKind::BrokenPipe.into())
            }
        }
        let mut closed = Closed;
        let mut out = Lenient(&mut closed);
        assert!(writeln!(out, "triton up: stopping…").is_ok());
        assert!(out.flush().is_ok());
    }

    #[test]
    fn the_written_config_restarts_each_node_on_its_own_data() {
        let scratch = Scratch::new("datadir");
        let (result, out) = up_with_failing_children(&scratch.0, Duration::from_secs(60));
        assert!(result.is_err(), "{out}");
        // What `triton server --config <this file> --id N` (the file's own
        // header) would use, from whatever directory it is started in.
        let config = triton_config::load(&scratch.0.join("cluster.toml")).unwrap();
        for id in 0..3 {
            let restart = config.node_data_dir(id);
            assert!(restart.is_absolute(), "{}", restart.display());
            assert_eq!(restart, data_dir_given(&scratch.0, id));
            assert_eq!(restart, scratch.0.join(format!("node-{id}")));
        }
    }

    #[test]
    fn the_written_config_is_private() {
        let scratch = Scratch::new("private");
        let _ = up_with_failing_children(&scratch.0, Duration::from_secs(60));
        let path = scratch.0.join("cluster.toml");
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "{mode:o}");
        assert!(triton_config::load(&path).unwrap().admin_token.is_some());
    }

    #[test]
    fn a_config_from_before_data_dir_is_completed_and_made_private() {
        let scratch = Scratch::new("upgrade");
        let path = scratch.0.join("cluster.toml");
        let mut old = local_config(3, free_base(), 2, &scratch.0).unwrap();
        old.data_dir = None;
        std::fs::write(&path, old.to_toml()).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let (_, out) = up_with_failing_children(&scratch.0, Duration::from_secs(60));
        assert!(out.contains("added data_dir"), "{out}");
        let config = triton_config::load(&path).unwrap();
        assert_eq!(config.data_dir.as_deref(), Some(scratch.0.as_path()));
        assert_eq!(config.node_data_dir(1), data_dir_given(&scratch.0, 1));
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "{mode:o}");
    }

    #[test]
    fn a_config_whose_data_dir_is_elsewhere_is_refused() {
        let scratch = Scratch::new("elsewhere");
        let path = scratch.0.join("cluster.toml");
        let config = local_config(3, free_base(), 2, Path::new("/somewhere/else")).unwrap();
        std::fs::write(&path, config.to_toml()).unwrap();
        let (result, out) = up_with_failing_children(&scratch.0, Duration::from_secs(60));
        let err = format!("{:#}", result.expect_err("refused"));
        assert!(
            err.contains("data_dir") && err.contains("/somewhere/else"),
            "{err}\n{out}"
        );
        assert!(!scratch.0.join("logs/node-0.log").exists(), "no node was started");
    }

    #[test]
    fn a_second_supervisor_on_the_same_directory_is_refused() {
        let scratch = Scratch::new("lock");
        let held = lock_dir(&scratch.0).unwrap();
        let (result, out) = up_with_failing_children(&scratch.0, Duration::from_secs(60));
        let err = format!("{:#}", result.expect_err("the directory is locked"));
        assert!(
            err.contains(&format!(
                "another `triton up` (pid {}) is already running on",
                std::process::id()
            )) && err.contains(LOCK_FILE),
            "{err}\n{out}"
        );
        // It touched nothing: no config, no node started.
        assert!(!scratch.0.join("cluster.toml").exists());
        assert!(!scratch.0.join("logs/node-0.log").exists());
        // A second lock in this process conflicts as one in another would
        // (flock locks belong to the open file, not the process).
        assert!(lock_dir(&scratch.0).is_err());
        drop(held);
        drop(lock_soon(&scratch.0));
        // A supervisor that ran and returned leaves the lock free.
        let _ = up_with_failing_children(&scratch.0, Duration::from_secs(60));
        drop(lock_soon(&scratch.0));
    }

    /// [`lock_dir`], retried for a moment: a child another test forks has
    /// a copy of every open file (and so of a lock) until it execs.
    fn lock_soon(dir: &Path) -> std::fs::File {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            match lock_dir(dir) {
                Ok(f) => return f,
                Err(e) if Instant::now() >= deadline => panic!("{e:#}"),
                Err(_) => std::thread::sleep(Duration::from_millis(10)),
            }
        }
    }

    #[test]
    fn port_errors_say_what_is_wrong() {
        let held = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let busy = held.local_addr().unwrap().to_string();
        let new = check_ports([busy.as_str()], false).unwrap_err().to_string();
        assert!(
            new.contains(&busy) && new.contains("in use") && new.contains("--base-port"),
            "{new}"
        );
        // An existing cluster.toml fixes the ports: --base-port would not help.
        let reused = check_ports([busy.as_str()], true).unwrap_err().to_string();
        assert!(
            reused.contains(&busy) && reused.contains("does not change them"),
            "{reused}"
        );
        assert!(!reused.contains("try --base-port"), "{reused}");
        // Not every failure to listen is a port in use (192.0.2.1 is a
        // documentation address no interface here has; a port below 1024
        // without privileges gives "permission denied" the same way).
        let other = check_ports(["192.0.2.1:7000"], false).unwrap_err().to_string();
        assert!(other.contains("cannot listen on 192.0.2.1:7000"), "{other}");
        assert!(!other.contains("in use"), "{other}");
        assert!(check_ports(["127.0.0.1:0"], false).is_ok());
    }
}
