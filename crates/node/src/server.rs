//! Starting a node: recover from the WAL, start the driver thread and the
//! peer senders, serve gRPC until shutdown.

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tonic::service::Routes;
use triton_config::ClusterConfig;
use triton_proto::admin::admin_server::AdminServer;
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
}

/// What recovery found, for the first log line.
struct Recovery {
    raft: Raft,
    wal: Wal,
    store: Store,
    /// Addresses carried by the membership entries in the WAL.
    addresses: AddressBook,
}

fn recover(opts: &ServerOptions, raft_id: NodeId, voters: Vec<NodeId>) -> anyhow::Result<Recovery> {
    let wal_dir = opts.data_dir.join("wal");
    let wal_opts = WalOptions {
        max_record_bytes: u32::try_from(opts.config.max_message_bytes).unwrap_or(u32::MAX),
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
    // config file (which wins for the nodes it lists).
    let mut book = AddressBook::load(&opts.data_dir)?;
    book.merge(&from_wal);
    for (&id, addr) in &addrs {
        book.insert(id, addr);
    }
    book.save(&opts.data_dir).context("saving the member addresses")?;
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
        max_key_bytes: 4096,
        max_value_bytes: usize::try_from(opts.config.max_value_bytes).unwrap_or(usize::MAX),
        max_command_bytes: crate::service::command_limit(opts.config.max_message_bytes),
        leader: known_leader,
    };
    // Peers' streams carry the admin token (if the config sets one): a forged
    // message from anyone who reaches the port could crash a follower or
    // rewrite its log.
    let transport = tonic::service::interceptor::InterceptedService::new(
        RaftTransportServer::new(TransportService::new(driver_tx.clone(), raft_id, &timing))
            .max_decoding_message_size(max_message_bytes)
            .max_encoding_message_size(max_message_bytes),
        AdminAuth::for_peers(&opts.config),
    );
    let kv = KvServer::new(KvService { node: handle.clone() })
        .max_decoding_message_size(max_message_bytes)
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
        let join = join_cluster(seed.clone(), opts.id, node.addr.clone(), opts.config.clone());
        let mut stop = stop_rx.clone();
        tasks.push(tokio::spawn(async move {
            tokio::select! {
                r = join => r,
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

/// `--join`: asks the cluster (through `seed`, following redirects to the
/// leader) to add this node as a learner, retrying until it is a member.
/// The leader then streams it the log or a snapshot; an operator promotes
/// it to voter once it has caught up (`triton admin promote`).
async fn join_cluster(seed: String, id: u64, addr: String, config: ClusterConfig) -> anyhow::Result<()> {
    let mut client = AdminClient::new(vec![seed.clone()], config)?;
    client.deadline = Duration::from_secs(3600);
    match client.call(AdminCall::AddLearner { id, addr: addr.clone() }).await {
        Ok(reply) => {
            tracing::info!(seed, "joined the cluster as learner {id}; members: {:?}", reply.members);
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
