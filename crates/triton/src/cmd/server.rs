//! `triton server`: runs one node of a cluster.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use triton_node::server::{serve, ServerOptions};

#[derive(clap::Args)]
pub struct ServerArgs {
    /// Cluster config: TOML, JSON ({"RaftAddrs": [...]}) or the "M: n" text form.
    #[arg(long)]
    pub config: PathBuf,
    /// This node's id in the config (0-based in the JSON and text forms).
    #[arg(long)]
    pub id: u64,
    /// Where this node keeps its WAL and snapshots (default: the config's
    /// data_dir, else triton-data/node-<id>, both relative to the config
    /// file's directory).
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Join a running cluster through this member (host:port) instead of
    /// bootstrapping with the config's nodes. The node must be listed in
    /// the config (for its addresses); it asks the cluster to add it as a
    /// learner, catches up, and waits for `triton admin promote`.
    #[arg(long, value_name = "HOST:PORT")]
    pub join: Option<String>,
    /// First start of a brand-new cluster: bootstrap this node as a founding
    /// voter from the config's node list. Needed only when the data
    /// directory is empty and the config lists more than one node (without
    /// it, such a node refuses to start: it may be a member that lost its
    /// data); ignored when the data directory already holds the node's state.
    #[arg(long, conflicts_with = "join")]
    pub new_cluster: bool,
}

/// Logs go to stderr; `RUST_LOG` filters them (default `info`).
pub fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        // A log line that cannot be written (a full disk) is dropped. By
        // default the subscriber reports it with `eprintln!`, which then
        // panics in whichever thread logged: the Raft driver's, once.
        .log_internal_errors(false)
        .try_init();
}

pub fn run(args: ServerArgs) -> anyhow::Result<ExitCode> {
    init_tracing();
    let config = triton_config::load(&args.config)?;
    config.node(args.id)?;
    let data_dir = args.data_dir.unwrap_or_else(|| config.node_data_dir(args.id));
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    rt.block_on(async move {
        let shutdown = async {
            let s = super::stop_signal().await;
            tracing::info!("{s}; shutting down");
        };
        serve(
            ServerOptions {
                config,
                id: args.id,
                data_dir,
                join: args.join,
                new_cluster: args.new_cluster,
            },
            vec![
                Box::new(triton_fileserver::FileServerFace),
                Box::new(triton_surfstore::meta::SurfstoreFace),
                Box::new(triton_ops::MetricsFace),
            ],
            shutdown,
        )
        .await
    })?;
    Ok(ExitCode::SUCCESS)
}
