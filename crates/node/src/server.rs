//! Starting a node: recover from the WAL, start the driver thread and the
//! peer senders, serve gRPC until shutdown.

use std::collections::{BTreeSet, HashMap};
use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tonic::service::Routes;
use triton_config::ClusterConfig;
use triton_proto::admin::admin_server::AdminServer;
use triton_proto::admin::Member;
use triton_proto::control::control_server::ControlServer;
use triton_proto::kv::kv_server::KvServer;
use triton_proto::raft::raft_transport_server::RaftTransportServer;
use triton_raft::{Config as RaftConfig, Entry, HardState, InitialState, Membership, NodeId, Raft, Snapshot};
use triton_storage::{Wal, WalOptions};
use triton_store::{Store, StoreOptions};

use crate::admin::{AdminCall, AdminClient, AdminService};
use crate::auth::AdminAuth;
use crate::codec::{entry_from_payload, membership_from_pb};
use crate::driver::{Driver, DriverOptions, Input};
use crate::members::AddressBook;
use crate::service::{ControlService, KvService, NodeHandle};
use crate::tls::{server_tls, Dialer};
use crate::transport::{Outbox, TransportService};

/// A face of the replicated store served by a node besides the key-value
/// one: extra gRPC services on the node's port and/or tasks of its own
/// (e.g. a listener on another port). Faces talk to the node through the
/// [`NodeHandle`].
pub trait Face: Send {
    /// Adds this face's gRPC services to the node's port.
    fn add_routes(&mut self, _node: &NodeHandle, routes: Routes) -> Routes {
        routes
    }
    /// Starts this face's own tasks; they must end when `shutdown` flips to
    /// true. An error (its port cannot be bound) stops the node at startup:
    /// a node running without a face it was configured with would go
    /// unnoticed until someone needed it.
    fn spawn(
        &mut self,
        _node: NodeHandle,
        _shutdown: watch::Receiver<bool>,
    ) -> anyhow::Result<Vec<JoinHandle<anyhow::Result<()>>>> {
        Ok(Vec::new())
    }
}

pub struct ServerOptions {
    pub config: ClusterConfig,
    /// The user-facing id (as in the config).
    pub id: u64,
    pub data_dir: PathBuf,
    /// Join a running cluster through this member's address instead of
    /// bootstrapping with the config's nodes: start with no configuration
    /// and ask the cluster to add this node as a learner.
    pub join: Option<String>,
    /// The first start of a brand-new cluster: bootstrap this node as a
    /// founding voter from the config's node list. Needed only when the data
    /// directory is empty and the config lists more than one node (the node
    /// refuses to start otherwise: `check_first_start`); ignored when the
    /// directory already holds the node's state.
    pub new_cluster: bool,
}

/// What recovery found, for the first log line.
struct Recovery {
    raft: Raft,
    wal: Wal,
    store: Store,
    /// Addresses carried by the membership entries in the WAL.
    addresses: AddressBook,
}

/// The WAL's limit on a record it reads back: the largest record any
/// accepted config can write. A command is at most `max_message_bytes` less
/// 256 bytes (`service::command_limit`), its record adds 17, and
/// `max_message_bytes` is at most [`triton_config::MAX_GRPC_MESSAGE_BYTES`]
/// (this). Fixed rather than taken from the config, as it was: lowering
/// `max_message_bytes` then made a healthy log "corrupt". Writes are bounded
/// by the config in force when they are proposed (`NodeHandle::write`).
pub const WAL_MAX_RECORD_BYTES: u32 = triton_storage::MAX_RECORD_BYTES;

/// Largest snapshot chunk: what the core sends by default. Bigger chunks
/// only hold a follower's stream longer.
const MAX_SNAPSHOT_CHUNK_BYTES: u64 = 1 << 20;

/// Room a snapshot chunk leaves in `max_message_bytes` for the message
/// around it: ids, term, offsets and the snapshot's membership (about 10
/// bytes a member), and the batch and gRPC frames. Enough for hundreds of
/// members.
pub const SNAPSHOT_CHUNK_ENVELOPE_BYTES: u64 = 4096;

/// The snapshot chunk size for a cluster's `max_message_bytes`: a chunk and
/// its envelope must fit one message, or the chunk fails to encode, takes
/// the peer's stream down, and is sent again, forever (a follower that
/// needed a snapshot never caught up with `max_message_bytes` at 1 MiB).
pub fn snapshot_chunk_bytes(max_message_bytes: u64) -> u64 {
    max_message_bytes
        .saturating_sub(SNAPSHOT_CHUNK_ENVELOPE_BYTES)
        .clamp(1, MAX_SNAPSHOT_CHUNK_BYTES)
}

fn recover(opts: &ServerOptions, raft_id: NodeId, voters: Vec<NodeId>) -> anyhow::Result<Recovery> {
    let wal_dir = opts.data_dir.join("wal");
    let wal_opts = WalOptions {
        max_record_bytes: WAL_MAX_RECORD_BYTES,
        ..WalOptions::default()
    };
    let (wal, recovered) =
        Wal::open(&wal_dir, wal_opts).with_context(|| format!("recovering the WAL in {}", wal_dir.display()))?;
    if let Some((path, offset)) = &recovered.repaired_tail {
        tracing::warn!(
            "repaired a torn write at the end of {} (cut at byte {offset})",
            path.display()
        );
    }
    for (path, why) in &recovered.ignored_snapshots {
        tracing::warn!("ignored snapshot {}: {why}", path.display());
    }
    let snapshot = wal.load_snapshot().context("loading the snapshot")?;
    let (snapshot, store) = match snapshot {
        Some((meta, data)) => {
            use prost::Message as _;
            let pb = triton_proto::raft::Membership::decode(&meta.membership[..])
                .context("decoding the snapshot's membership")?;
            let store =
                triton_store::Store::restore_at(&data, meta.index).context("restoring the store from the snapshot")?;
            let snapshot = Snapshot {
                meta: triton_raft::SnapshotMeta {
                    index: meta.index,
                    term: meta.term,
                    membership: membership_from_pb(&pb),
                },
                data: data.into(),
            };
            (Some(snapshot), store)
        }
        None => (None, Store::new(StoreOptions::default())),
    };
    let entries = recovered
        .entries
        .iter()
        .map(|e| entry_from_payload(e.index, e.term, &e.payload))
        .collect::<Result<Vec<Entry>, _>>()
        .context("decoding WAL entries")?;
    let addresses = AddressBook::from_entries(&entries);
    let hs = recovered.hard_state;
    let timing = &opts.config.timing;
    let mut cfg = RaftConfig::new(raft_id);
    cfg.election_tick = timing.election_ticks;
    cfg.heartbeat_tick = timing.heartbeat_ticks;
    cfg.lease_read = timing.lease_reads;
    cfg.max_msg_bytes = (opts.config.max_message_bytes / 2).max(1);
    cfg.snapshot_chunk_bytes = snapshot_chunk_bytes(opts.config.max_message_bytes);
    // Not the core's default (4 GiB): a follower holds an incoming
    // snapshot in memory until it is complete.
    cfg.max_snapshot_bytes = opts.config.max_snapshot_bytes;
    cfg.snapshot_check = crate::driver::snapshot_restores;
    cfg.seed = rand::random();
    let init = InitialState {
        hard_state: HardState {
            term: hs.term,
            vote: (hs.vote != 0).then_some(hs.vote),
            commit: hs.commit,
        },
        snapshot,
        entries,
        membership: Membership::with_voters(voters),
    };
    let raft = Raft::new(cfg, init).context("starting the Raft core")?;
    Ok(Recovery {
        raft,
        wal,
        store,
        addresses,
    })
}

/// The voters this node starts from when its log holds no configuration:
/// fixed at its first start (the config's nodes, or none when joining) and
/// kept in `<data_dir>/bootstrap`, so later edits of the config file (say,
/// listing a node that will join) never change a member's starting point.
fn bootstrap_voters(opts: &ServerOptions, config_voters: Vec<NodeId>) -> anyhow::Result<Vec<NodeId>> {
    let path = opts.data_dir.join("bootstrap");
    match std::fs::read_to_string(&path) {
        Ok(text) => text
            .split_whitespace()
            .map(|id| id.parse::<NodeId>().ok().filter(|&id| id != 0))
            .collect::<Option<Vec<_>>>()
            .with_context(|| format!("{} is not a list of node ids", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let voters = if opts.join.is_some() { Vec::new() } else { config_voters };
            std::fs::create_dir_all(&opts.data_dir).with_context(|| format!("creating {}", opts.data_dir.display()))?;
            let text: Vec<String> = voters.iter().map(|id| id.to_string()).collect();
            // Durable before the node starts: after a power cut, a bootstrap
            // file that came back empty would read as "joining, no voters".
            let tmp = opts.data_dir.join("bootstrap.tmp");
            std::fs::File::create(&tmp)
                .and_then(|mut f| {
                    std::io::Write::write_all(&mut f, text.join(" ").as_bytes())?;
                    f.sync_all()
                })
                .and_then(|_| std::fs::rename(&tmp, &path))
                .with_context(|| format!("writing {}", path.display()))?;
            triton_storage::sync_dir(&opts.data_dir)?;
            if let Some(parent) = opts.data_dir.parent().filter(|p| !p.as_os_str().is_empty()) {
                triton_storage::sync_dir(parent)?;
            }
            Ok(voters)
        }
        Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
    }
}

/// Longest key the KV service accepts.
pub const MAX_KEY_BYTES: usize = 4096;

/// Room a KV request leaves around its key and value: the session (two
/// varints), field tags and lengths. Generous; it only has to stay small.
pub const KV_REQUEST_MARGIN_BYTES: u64 = 1024;

/// The largest KV request the node reads: a key and a value at their
/// limits, plus [`KV_REQUEST_MARGIN_BYTES`] (and never more than
/// `max_message_bytes`). A larger one is refused by gRPC as it arrives,
/// before it is buffered, with `OUT_OF_RANGE` ("decoded message length too
/// large"); one within this but over `max_key_bytes` or `max_value_bytes`
/// is read and refused with `INVALID_ARGUMENT`. (With the message limit
/// here, 64 MiB by default, eight concurrent 60 MB puts took a node from
/// 59 to 319 MB.)
pub fn kv_request_limit(config: &ClusterConfig) -> usize {
    let limit = (MAX_KEY_BYTES as u64)
        .saturating_add(config.max_value_bytes)
        .saturating_add(KV_REQUEST_MARGIN_BYTES)
        .min(config.max_message_bytes);
    usize::try_from(limit).unwrap_or(usize::MAX)
}

/// Where node `id`'s data was when a relative `data_dir` (or the default)
/// was relative to the working directory instead of the config file's
/// directory, if that is another place: a node started there before the
/// change must not start empty after it.
fn cwd_relative_data_dir(config: &ClusterConfig, id: u64) -> Option<PathBuf> {
    config.config_dir.as_ref()?;
    let dir = config
        .data_dir
        .as_deref()
        .unwrap_or(std::path::Path::new("triton-data"));
    if dir.is_absolute() {
        return None;
    }
    let old = std::path::absolute(dir.join(format!("node-{id}"))).ok()?;
    (old != config.node_data_dir(id)).then_some(old)
}

/// What a starting node warns about: settings that work but leave the
/// cluster's data at risk. `members` is how many members it knows of.
fn startup_warnings(opts: &ServerOptions, members: usize) -> Vec<String> {
    let config = &opts.config;
    let mut warnings = Vec::new();
    let mutual_tls = config.tls.as_ref().is_some_and(|t| t.ca.is_some());
    let peer_token = config.admin_token.is_some() && !config.peer_token_optional;
    if members > 1 && !mutual_tls && !peer_token {
        warnings.push(format!(
            "peers' Raft streams are not authenticated ({}, and no [tls] ca): anyone who can reach {} can \
             send this node forged peer messages, e.g. an acknowledgement that makes a leader commit a write \
             no majority holds. Set admin_token (and not peer_token_optional), or [tls] with a ca, in the \
             cluster config",
            if config.admin_token.is_some() {
                "peer_token_optional lets streams without the admin token through"
            } else {
                "no admin_token"
            },
            config.node(opts.id).map_or("the gRPC port", |n| n.addr.as_str())
        ));
    }
    warnings
}

/// Whether `data_dir` holds a node's state from an earlier start: its
/// bootstrap voters or its log. Without either the node never voted.
pub fn holds_node_state(data_dir: &Path) -> bool {
    data_dir.join("bootstrap").exists() || data_dir.join("wal").exists()
}

/// Whether a node may start. `first_start`: its data directory holds no
/// state ([`holds_node_state`]). A member of a multi-node cluster that starts
/// empty would bootstrap as a founding voter with no log and no record of
/// its votes: if it was a member before (its data lost, or kept in another
/// directory), it could vote a second time in a term it already voted in,
/// electing two leaders in one term and losing acknowledged writes. So
/// starting empty needs `--new-cluster` (as etcd needs
/// `--initial-cluster-state new`), or `--join`. A config of one node has
/// nobody to vote twice against.
fn check_first_start(opts: &ServerOptions, first_start: bool) -> anyhow::Result<()> {
    if opts.new_cluster && opts.join.is_some() {
        bail!(
            "--new-cluster and --join contradict each other: --new-cluster founds a new cluster from the \
             config's nodes, --join adds this node to a running one"
        );
    }
    let nodes = opts.config.nodes.len();
    if first_start && opts.join.is_none() && nodes > 1 && !opts.new_cluster {
        bail!(
            "node {id}'s data directory {dir} holds no state (no log, no record of its votes) and the config \
             lists {nodes} nodes, so it would start as a founding voter of a new cluster; refusing without \
             --new-cluster. If this is the first start of a new cluster, start every node this first time with \
             --new-cluster (or use `triton up`). If this node was a member before and lost its data (or keeps \
             it in another directory), starting it empty could let it vote twice in one term and lose writes \
             the cluster acknowledged: restore its data directory (or pass the right --data-dir), or remove it \
             from the cluster (triton admin --config <file> remove {id}) and start it again with --join \
             <address of a member>",
            id = opts.id,
            dir = opts.data_dir.display(),
        );
    }
    Ok(())
}

/// Runs a node until `shutdown` resolves.
pub async fn serve(
    opts: ServerOptions,
    mut faces: Vec<Box<dyn Face>>,
    shutdown: impl Future<Output = ()> + Send,
) -> anyhow::Result<()> {
    let node = opts.config.node(opts.id)?.clone();
    let raft_id = ClusterConfig::raft_id(opts.id);
    let listen: SocketAddr = tokio::net::lookup_host(&node.addr)
        .await
        .with_context(|| format!("resolving {}", node.addr))?
        .next()
        .with_context(|| format!("{} resolves to no address", node.addr))?;
    let addrs: HashMap<NodeId, String> = opts
        .config
        .nodes
        .iter()
        .map(|n| (ClusterConfig::raft_id(n.id), n.addr.clone()))
        .collect();
    let voters: Vec<NodeId> = addrs.keys().copied().collect();
    if !voters.contains(&raft_id) {
        bail!("node {} is not in the cluster config", opts.id);
    }
    // Nothing of a previous run: no bootstrap voters and no log.
    let first_start = !holds_node_state(&opts.data_dir);
    if first_start && opts.data_dir == opts.config.node_data_dir(opts.id) {
        if let Some(old) = cwd_relative_data_dir(&opts.config, opts.id).filter(|old| old.join("bootstrap").exists()) {
            bail!(
                "node {}'s data directory {} is empty, but {} holds a node's data: a relative data_dir (or the \
                 default one) used to be relative to the directory the server was started from, and is now \
                 relative to the config file's directory. Move {} to {}, or start with --data-dir {}",
                opts.id,
                opts.data_dir.display(),
                old.display(),
                old.display(),
                opts.data_dir.display(),
                old.display()
            );
        }
    }
    // Before anything is written: a refused node leaves its directory as it
    // found it, so starting it again with the right flag works.
    check_first_start(&opts, first_start)?;
    if opts.new_cluster && !first_start {
        tracing::info!(
            "--new-cluster ignored: {} already holds node {}'s state",
            opts.data_dir.display(),
            opts.id
        );
    }
    let voters = bootstrap_voters(&opts, voters)?;
    // TLS files are read before recovery, so a wrong path stops the node at once.
    let mut builder = tonic::transport::Server::builder();
    if let Some(tls) = server_tls(&opts.config).context("loading the [tls] files")? {
        builder = builder.tls_config(tls).context("setting up TLS")?;
    }
    let dialer = Dialer::from_config(&opts.config).context("loading the [tls] files")?;
    let Recovery {
        raft,
        wal,
        store,
        addresses: from_wal,
    } = recover(&opts, raft_id, voters)?;
    // Addresses: what this node saved, then what its log says, then the
    // config file (which wins for the nodes it lists that are members).
    let mut book = AddressBook::load(&opts.data_dir)?;
    book.merge(&from_wal);
    for (id, addr) in config_addresses(&addrs, &raft.membership().all_nodes()) {
        book.insert(id, addr)
            .with_context(|| format!("node {}'s address in the config", crate::driver::user_id(id)))?;
    }
    book.save(&opts.data_dir).context("saving the member addresses")?;
    let known_members = book.iter().count().max(opts.config.nodes.len());
    for warning in startup_warnings(&opts, known_members) {
        tracing::warn!("WARNING: {warning}");
    }
    tracing::info!(
        id = opts.id,
        addr = %node.addr,
        peers = ?opts.config.nodes.iter().filter(|n| n.id != opts.id).map(|n| n.addr.as_str()).collect::<Vec<_>>(),
        term = raft.term(),
        last_index = raft.last_index(),
        commit = raft.commit_index(),
        data_dir = %opts.data_dir.display(),
        "node {} starting: listening on {}, term {}, last index {}",
        opts.id,
        node.addr,
        raft.term(),
        raft.last_index()
    );

    let max_message_bytes = usize::try_from(opts.config.max_message_bytes).unwrap_or(usize::MAX);
    let peers: HashMap<NodeId, String> = book
        .iter()
        .filter(|(id, _)| *id != raft_id)
        .map(|(id, a)| (id, a.to_string()))
        .collect();
    // Members known by id only (a snapshot replaced the entries naming
    // them, and this node stopped before it could ask): ask at once.
    let addresses_wanted = Arc::new(tokio::sync::Notify::new());
    if !book.missing(raft.membership().all_nodes(), raft_id).is_empty() {
        addresses_wanted.notify_one();
    }
    let addresses = Arc::new(std::sync::RwLock::new(book));
    let is_member = raft.membership().all_nodes().contains(&raft_id);
    let timing = opts.config.timing.signature();
    let outbox = Outbox::start(
        &tokio::runtime::Handle::current(),
        peers,
        max_message_bytes,
        dialer,
        &timing,
        crate::auth::ClientToken::from_config(&opts.config),
    );
    let (driver_tx, driver_rx) = crossbeam_channel::bounded::<Input>(65_536);
    let known_leader = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let driver = Driver::new(
        raft,
        wal,
        store,
        outbox,
        DriverOptions {
            addresses: addresses.clone(),
            data_dir: opts.data_dir.clone(),
            tick: Duration::from_millis(opts.config.timing.tick_ms),
            snapshot_threshold: opts.config.snapshot_threshold,
            read_timeout: Duration::from_secs(5),
            leader: known_leader.clone(),
            addresses_wanted: addresses_wanted.clone(),
        },
    );
    let driver_thread = std::thread::Builder::new()
        .name(format!("raft-driver-{}", opts.id))
        .spawn(move || {
            // A node whose driver died would keep its sockets open and
            // answer nothing: end the process instead, as `fatal` does, so
            // that peers see it gone and a supervisor restarts it. (The
            // panic hook has already printed the panic, if stderr could
            // take it.)
            if std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| driver.run(driver_rx))).is_err() {
                std::process::exit(70);
            }
        })
        .context("starting the driver thread")?;

    let handle = NodeHandle {
        driver: driver_tx.clone(),
        config: Arc::new(opts.config.clone()),
        raft_id,
        addresses,
        request_timeout: Duration::from_secs(5),
        max_key_bytes: MAX_KEY_BYTES,
        max_value_bytes: usize::try_from(opts.config.max_value_bytes).unwrap_or(usize::MAX),
        max_command_bytes: crate::service::command_limit(opts.config.max_message_bytes),
        leader: known_leader,
    };
    // Peers' streams carry the admin token (if the config sets one): a forged
    // message from anyone who reaches the port could crash a follower or
    // rewrite its log.
    let transport = tonic::service::interceptor::InterceptedService::new(
        RaftTransportServer::new(
            TransportService::new(driver_tx.clone(), raft_id, &timing, handle.addresses.clone())
                .asking_for_unknown_senders(addresses_wanted.clone()),
        )
        .max_decoding_message_size(max_message_bytes)
        .max_encoding_message_size(max_message_bytes),
        AdminAuth::for_peers(&opts.config),
    );
    // Requests are bounded by what a KV request can validly hold, not by
    // the message limit: each concurrent request is buffered whole before
    // it is checked. Answers may be larger (a value stored under an older,
    // larger max_value_bytes).
    let kv = KvServer::new(KvService { node: handle.clone() })
        .max_decoding_message_size(kv_request_limit(&opts.config))
        .max_encoding_message_size(max_message_bytes);
    // Fault RPCs need the admin token (if the config sets one) on top of
    // enable_test_rpcs, which the service checks.
    let control = ControlServer::with_interceptor(
        ControlService {
            node: handle.clone(),
            enabled: opts.config.enable_test_rpcs,
        },
        AdminAuth::from_config(&opts.config),
    );
    let admin = AdminServer::new(AdminService { node: handle.clone() });
    let mut routes = Routes::new(transport)
        .add_service(kv)
        .add_service(control)
        .add_service(admin);
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut tasks = Vec::new();
    if let (Some(seed), false) = (&opts.join, is_member) {
        let join = join_cluster(
            seed.clone(),
            opts.id,
            node.addr.clone(),
            opts.config.clone(),
            handle.clone(),
        );
        let mut stop = stop_rx.clone();
        tasks.push(tokio::spawn(async move {
            tokio::select! {
                r = join => r,
                _ = stop.changed() => Ok(()),
            }
        }));
    }
    {
        let learn = learn_missing_addresses(opts.config.clone(), handle.clone(), addresses_wanted);
        let mut stop = stop_rx.clone();
        tasks.push(tokio::spawn(async move {
            tokio::select! {
                () = learn => Ok(()),
                _ = stop.changed() => Ok(()),
            }
        }));
    }
    for face in faces.iter_mut() {
        routes = face.add_routes(&handle, routes);
        match face.spawn(handle.clone(), stop_rx.clone()) {
            Ok(started) => tasks.extend(started),
            Err(e) => {
                let _ = stop_tx.send(true);
                for t in tasks {
                    let _ = t.await;
                }
                let _ = driver_tx.send(Input::Shutdown);
                let _ = driver_thread.join();
                return Err(e);
            }
        }
    }
    // On shutdown, a leader first hands leadership over (and waits up to 2 s
    // for it to move) while still serving, so peers can complete the transfer.
    let handover = handle.clone();
    let stopping = Arc::new(tokio::sync::Notify::new());
    let stopping_tx = stopping.clone();
    let shutdown = async move {
        shutdown.await;
        stopping_tx.notify_one();
        let _ = handover.driver.try_send(Input::Handover);
        let start = std::time::Instant::now();
        while start.elapsed() < Duration::from_secs(2) {
            match handover.status().await {
                Ok(s) if s.role == "leader" => tokio::time::sleep(Duration::from_millis(20)).await,
                _ => break,
            }
        }
    };
    let server = builder
        .tcp_nodelay(true)
        .add_routes(routes)
        .serve_with_shutdown(listen, shutdown);
    // A graceful shutdown waits for every connection to close, but peers'
    // transport streams never do: after the handover and a short grace
    // period for in-flight requests, drop the server (closing them).
    let served = tokio::select! {
        r = server => r,
        _ = async {
            stopping.notified().await;
            tokio::time::sleep(Duration::from_millis(2500)).await;
        } => Ok(()),
    };
    let _ = stop_tx.send(true);
    for t in tasks {
        match t.await {
            Ok(Err(e)) => tracing::error!("a face stopped with an error: {e:#}"),
            Err(e) => tracing::error!("a face panicked: {e}"),
            Ok(Ok(())) => {}
        }
    }
    // Stop the driver (it syncs the WAL) whatever happened to the server.
    let _ = driver_tx.send(Input::Shutdown);
    let _ = driver_thread.join();
    served.with_context(|| format!("serving on {listen}"))?;
    tracing::info!("node {} stopped", opts.id);
    Ok(())
}

/// The config file's addresses (`addrs`, by Raft id) that a starting node
/// takes: those of `members`, its recovered configuration (snapshot and
/// log), or all of them when that is empty (a node that has not joined yet
/// knows no configuration). A founding member removed since is left out:
/// once its removal is compacted into the snapshot no entry replays it, and
/// taking its address at every start had this node dial it, and take its
/// streams, for good.
fn config_addresses<'a>(addrs: &'a HashMap<NodeId, String>, members: &BTreeSet<NodeId>) -> Vec<(NodeId, &'a str)> {
    addrs
        .iter()
        .filter(|(id, _)| members.is_empty() || members.contains(id))
        .map(|(&id, addr)| (id, addr.as_str()))
        .collect()
}

/// The members an answer to `Members` or to a join names, as Raft ids with
/// their addresses, but `me` and members listed without an address. The
/// answer comes from the network, so an id no config could hold (`u64::MAX`
/// overflowed `raft_id` and panicked, ending [`learn_missing_addresses`]
/// for good) or an address the book cannot store (one with a newline or
/// `=` was saved, and the next start refused the book) is logged and skipped.
fn reply_addresses(members: &[Member], me: NodeId) -> Vec<(NodeId, String)> {
    members
        .iter()
        .filter(|m| !m.addr.is_empty())
        .filter_map(|m| match ClusterConfig::checked_raft_id(m.id) {
            Some(id) if crate::members::valid_addr(&m.addr) => Some((id, m.addr.clone())),
            _ => {
                tracing::warn!(id = m.id, addr = ?m.addr, "ignoring a member whose id or address is invalid");
                None
            }
        })
        .filter(|&(id, _)| id != me)
        .collect()
}

/// Least time between two rounds of [`learn_missing_addresses`]: a refused
/// sender retries its stream every few hundred milliseconds.
const ADDRESS_ROUND_GAP: Duration = Duration::from_secs(1);
/// Most time between two rounds: the gap doubles after each round that
/// learns nothing (a removed node that keeps trying to reach its old peers
/// is refused for good, and asking about it every second would be waste).
const ADDRESS_ROUND_MAX_GAP: Duration = Duration::from_secs(64);

/// Each time `wanted` is notified (the transport refused a stream from a
/// sender this node does not know, or the configuration in force names a
/// member without an address), asks the members this node knows for the
/// membership, as the leader sees it (`triton admin members`), and learns the
/// addresses of members it did not know.
///
/// Why: addresses travel in membership entries, and a member that was down
/// while a node joined can miss those entries, because a snapshot replaced
/// them when it caught up, or because the newcomer became leader and its
/// stream, the only way to receive them, is refused as unknown.
///
/// Only unknown ids are taken: an address this node already has is changed
/// only by the log (a member removed and re-added elsewhere), so an answer
/// cannot redirect a known member's traffic.
async fn learn_missing_addresses(config: ClusterConfig, node: NodeHandle, wanted: Arc<tokio::sync::Notify>) {
    let mut gap = ADDRESS_ROUND_GAP;
    loop {
        wanted.notified().await;
        let me = node.raft_id;
        let known: Vec<String> = {
            let book = node.addresses.read().unwrap_or_else(|e| e.into_inner());
            book.iter()
                .filter(|&(id, _)| id != me)
                .map(|(_, a)| a.to_string())
                .collect()
        };
        let asked = match AdminClient::new(known, config.clone()) {
            Ok(mut client) => {
                client.deadline = Duration::from_secs(3);
                client.call(AdminCall::Members).await
            }
            Err(e) => Err(e),
        };
        match asked {
            Ok(reply) => {
                let new: Vec<(NodeId, String)> = {
                    let book = node.addresses.read().unwrap_or_else(|e| e.into_inner());
                    reply_addresses(&reply.members, me)
                        .into_iter()
                        .filter(|&(id, _)| book.get(id).is_none())
                        .collect()
                };
                gap = if new.is_empty() {
                    (gap * 2).min(ADDRESS_ROUND_MAX_GAP)
                } else {
                    ADDRESS_ROUND_GAP
                };
                if !new.is_empty() {
                    tracing::info!(
                        answered_by = reply.answered_by,
                        "learned the addresses of members this node did not know: {new:?}"
                    );
                    // A full queue drops it; the next refusal asks again.
                    let _ = node.driver.try_send(crate::driver::Input::LearnAddresses(new));
                }
            }
            Err(e) => tracing::warn!("could not ask the members for the addresses of members this node lacks: {e:#}"),
        }
        tokio::time::sleep(gap).await;
    }
}

/// `--join`: asks the cluster (through `seed`, following redirects to the
/// leader) to add this node as a learner, retrying until it is a member.
/// The leader then streams it the log or a snapshot; an operator promotes
/// it to voter once it has caught up (`triton admin promote`).
///
/// The answer names every member's address. They go to the driver at once
/// (address book, a sender to each): the transport takes streams only from
/// members it knows, and a leader that joined after this node's config was
/// written would otherwise be refused, and never answered, until its
/// address arrived in the log, which that leader's stream is the only way
/// to receive.
async fn join_cluster(
    seed: String,
    id: u64,
    addr: String,
    config: ClusterConfig,
    node: NodeHandle,
) -> anyhow::Result<()> {
    let mut client = AdminClient::new(vec![seed.clone()], config)?;
    client.deadline = Duration::from_secs(3600);
    match client.call(AdminCall::AddLearner { id, addr: addr.clone() }).await {
        Ok(reply) => {
            tracing::info!(seed, "joined the cluster as learner {id}; members: {:?}", reply.members);
            let addrs = reply_addresses(&reply.members, ClusterConfig::raft_id(id));
            // A full queue drops it; the log carries the addresses too.
            let _ = node.driver.try_send(crate::driver::Input::LearnAddresses(addrs));
            Ok(())
        }
        Err(e) if e.to_string().contains("already") => {
            tracing::info!("already a member: {e:#}");
            Ok(())
        }
        Err(e) => {
            tracing::error!(seed, "could not join the cluster: {e:#}");
            Err(e)
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use prost::Message as _;
    use triton_config::{ClusterConfig, NodeConfig, TlsConfig};
    use triton_raft::{Body, Membership, Message, SnapshotMeta};

    use super::*;

    fn config(nodes: u64) -> ClusterConfig {
        ClusterConfig {
            nodes: (0..nodes)
                .map(|id| NodeConfig {
                    id,
                    addr: format!("127.0.0.1:{}", 7000 + id),
                    file_addr: None,
                    http_addr: None,
                })
                .collect(),
            ..ClusterConfig::default()
        }
    }

    fn opts(config: ClusterConfig, join: Option<&str>) -> ServerOptions {
        ServerOptions {
            config,
            id: 0,
            data_dir: PathBuf::from("/data/node-0"),
            join: join.map(str::to_string),
            new_cluster: false,
        }
    }

    /// A chunk of the size chosen for `max_message_bytes`, with a large
    /// membership, still fits one message in its batch and gRPC frame.
    #[test]
    fn a_snapshot_chunk_and_its_envelope_fit_one_message() {
        for max in [triton_config::MIN_MESSAGE_BYTES, 1 << 20, 64 << 20] {
            let chunk = snapshot_chunk_bytes(max);
            assert!(chunk <= MAX_SNAPSHOT_CHUNK_BYTES);
            // Numbers as large as the wire allows (`Message::numbers_in_range`).
            let big_id = 1u64 << 62;
            let m = Message {
                from: big_id,
                to: big_id - 1,
                term: big_id,
                body: Body::Snapshot {
                    meta: SnapshotMeta {
                        index: big_id,
                        term: big_id,
                        membership: Membership {
                            voters: (0..100).map(|i| big_id - i).collect(),
                            voters_outgoing: (100..200).map(|i| big_id - i).collect(),
                            learners: (200..300).map(|i| big_id - i).collect(),
                        },
                    },
                    offset: big_id,
                    total: big_id,
                    data: vec![7u8; chunk as usize].into(),
                    done: true,
                },
            };
            let batch = triton_proto::raft::RaftBatch {
                messages: vec![crate::codec::message_to_pb(&m)],
            };
            // Plus gRPC's 5-byte frame header.
            let framed = batch.encoded_len() as u64 + 5;
            assert!(framed <= max, "a {chunk}-byte chunk takes {framed} bytes, over {max}");
        }
    }

    #[test]
    fn kv_requests_are_bounded_by_the_data_limits_not_the_message_limit() {
        let mut c = config(1);
        assert_eq!(
            kv_request_limit(&c),
            MAX_KEY_BYTES + (1 << 20) + KV_REQUEST_MARGIN_BYTES as usize
        );
        c.max_message_bytes = 64 << 10;
        c.max_value_bytes = 64 << 10;
        assert_eq!(kv_request_limit(&c), 64 << 10);
    }

    /// A member of a multi-node cluster on an empty data directory starts
    /// only when told it founds a new cluster (or joins): it may be a member
    /// that lost its data, which could vote twice in one term.
    #[test]
    fn an_empty_member_of_a_multi_node_cluster_needs_new_cluster_or_join() {
        let with = |nodes: u64, join: Option<&str>, new_cluster: bool| ServerOptions {
            new_cluster,
            ..opts(config(nodes), join)
        };
        // Empty, three nodes, no flag: refused, with both ways forward.
        let e = check_first_start(&with(3, None, false), true).unwrap_err().to_string();
        for part in [
            "holds no state",
            "--new-cluster",
            "triton up",
            "restore",
            "remove 0",
            "--join",
        ] {
            assert!(e.contains(part), "{part:?} missing from: {e}");
        }
        // The first start of a new cluster, said so.
        check_first_start(&with(3, None, true), true).unwrap();
        // One node alone: nobody to vote twice against.
        check_first_start(&with(1, None, false), true).unwrap();
        // Joining: an empty directory is expected.
        check_first_start(&with(3, Some("127.0.0.1:7001"), false), true).unwrap();
        // Both at once is a contradiction, with or without state.
        for first_start in [true, false] {
            let e = check_first_start(&with(3, Some("127.0.0.1:7001"), true), first_start).unwrap_err();
            assert!(e.to_string().contains("--join"), "{e}");
        }
        // A restart on its own state needs no flag, and ignores one.
        check_first_start(&with(3, None, false), false).unwrap();
        check_first_start(&with(3, None, true), false).unwrap();
    }

    #[test]
    fn an_open_cluster_is_warned_about() {
        let warned = |o: &ServerOptions, members: usize| {
            startup_warnings(o, members)
                .iter()
                .map(|w| if w.contains("forged") { "open" } else { "other" })
                .collect::<Vec<_>>()
        };
        // Three nodes, no token, no TLS.
        assert_eq!(warned(&opts(config(3), None), 3), ["open"]);
        assert_eq!(warned(&opts(config(3), Some("127.0.0.1:7001")), 3), ["open"]);
        // One node alone: nobody to forge.
        assert!(warned(&opts(config(1), None), 1).is_empty());
        // ... unless members joined it since.
        assert_eq!(warned(&opts(config(1), None), 2), ["open"]);
        let token = ClusterConfig {
            admin_token: Some("s3cret".into()),
            ..config(3)
        };
        assert!(warned(&opts(token.clone(), None), 3).is_empty());
        let optional = ClusterConfig {
            peer_token_optional: true,
            ..token
        };
        assert_eq!(warned(&opts(optional, None), 3), ["open"]);
        let tls = |ca: Option<&str>| ClusterConfig {
            tls: Some(TlsConfig {
                cert: "c.pem".into(),
                key: "k.pem".into(),
                ca: ca.map(PathBuf::from),
            }),
            ..config(3)
        };
        assert!(warned(&opts(tls(Some("ca.pem")), None), 3).is_empty());
        // TLS without client certificates lets anyone in.
        assert_eq!(warned(&opts(tls(None), None), 3), ["open"]);
    }

    /// An answer to `Members` or to a join comes from the network: an absurd
    /// id or an address the book cannot store is skipped, not taken (one
    /// panicked the task that asked; the other, saved, kept the node from
    /// starting again).
    #[test]
    fn members_named_by_an_answer_are_checked_before_they_are_taken() {
        let member = |id: u64, addr: &str| Member {
            id,
            addr: addr.into(),
            ..Member::default()
        };
        let members = [
            member(0, "127.0.0.1:7000"),
            member(1, "127.0.0.1:7001"),
            member(u64::MAX, "127.0.0.1:7009"),
            member(triton_config::MAX_TOML_INT + 1, "127.0.0.1:7008"),
            member(2, "127.0.0.1:7002\n9=evil:1"),
            member(3, "a=b:1"),
            member(4, ""),
            member(5, "node5.example:7005"),
        ];
        let taken = reply_addresses(&members, ClusterConfig::raft_id(1));
        assert_eq!(
            taken,
            [(1, "127.0.0.1:7000".to_string()), (6, "node5.example:7005".to_string())]
        );
        let mut book = AddressBook::default();
        for (id, addr) in &taken {
            book.insert(*id, addr).unwrap();
        }
        assert_eq!(AddressBook::decode(&book.encode()).unwrap(), book);
    }

    /// A restart takes the config file's addresses of members only: a
    /// founding member removed since (its removal compacted into the
    /// snapshot) is not put back in the book to be dialled forever.
    #[test]
    fn a_restart_takes_the_config_addresses_of_members_only() {
        let addrs: HashMap<NodeId, String> = config(3)
            .nodes
            .iter()
            .map(|n| (ClusterConfig::raft_id(n.id), n.addr.clone()))
            .collect();
        let mut taken = config_addresses(&addrs, &BTreeSet::from([1, 2, 7]));
        taken.sort();
        assert_eq!(taken, [(1, "127.0.0.1:7000"), (2, "127.0.0.1:7001")]);
        // No configuration yet (a node joining): all of them.
        assert_eq!(config_addresses(&addrs, &BTreeSet::new()).len(), 3);
    }

    /// Where a node's data was while a relative data_dir was relative to the
    /// working directory: only when that is another place than now.
    #[test]
    fn the_old_place_of_a_relative_data_dir_is_the_working_directory() {
        let cwd = std::env::current_dir().unwrap();
        let elsewhere = ClusterConfig {
            config_dir: Some(PathBuf::from("/etc/triton")),
            ..config(3)
        };
        assert_eq!(
            cwd_relative_data_dir(&elsewhere, 2),
            Some(cwd.join("triton-data/node-2"))
        );
        let relative = ClusterConfig {
            data_dir: Some("data".into()),
            ..elsewhere.clone()
        };
        assert_eq!(cwd_relative_data_dir(&relative, 1), Some(cwd.join("data/node-1")));
        let absolute = ClusterConfig {
            data_dir: Some("/var/lib/triton".into()),
            ..elsewhere.clone()
        };
        assert_eq!(cwd_relative_data_dir(&absolute, 1), None);
        // Parsed, not loaded: relative to the working directory as before.
        assert_eq!(cwd_relative_data_dir(&config(3), 1), None);
        let here = ClusterConfig {
            config_dir: Some(cwd.clone()),
            ..config(3)
        };
        assert_eq!(cwd_relative_data_dir(&here, 1), None);
    }
}
