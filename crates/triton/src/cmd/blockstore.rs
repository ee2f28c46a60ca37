//! `triton blockstore`: a SurfStore block store (content-addressed, durable
//! blocks behind the course's `BlockStore` gRPC service).

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use triton_surfstore::blockstore::{bind, serve_block_store, BlockDir, DEFAULT_MAX_BLOCK_BYTES};

#[derive(clap::Args)]
pub struct BlockstoreArgs {
    /// Address to serve on (host:port), as listed in the cluster config's block_stores.
    #[arg(long)]
    pub listen: String,
    /// Directory holding the blocks (created if missing).
    #[arg(long)]
    pub dir: PathBuf,
    /// Largest block accepted by PutBlock, in bytes.
    #[arg(long, default_value_t = DEFAULT_MAX_BLOCK_BYTES)]
    pub max_block_bytes: usize,
}

pub fn run(args: BlockstoreArgs) -> anyhow::Result<ExitCode> {
    super::server::init_tracing();
    let dir = Arc::new(BlockDir::open(&args.dir, args.max_block_bytes)?);
    let recovery = dir.recovery();
    if recovery.truncated_bytes > 0 {
        tracing::warn!(
            bytes = recovery.truncated_bytes,
            "cut a torn record from the end of the newest pack (an interrupted, unacknowledged put)"
        );
    }
    for (pack, offset, bytes) in &recovery.damaged {
        tracing::error!(
            pack,
            offset,
            bytes,
            "damaged range in a pack, skipped: its records are not served, the pack's records before and after \
             it are; the bytes are left in the file for inspection"
        );
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    rt.block_on(async move {
        let (listener, local) = bind(&args.listen).await?;
        tracing::info!(addr = %local, dir = %args.dir.display(), blocks = dir.len(), "block store serving");
        let shutdown = async {
            let s = super::stop_signal().await;
            tracing::info!("{s}; shutting down");
        };
        serve_block_store(listener, dir, shutdown).await
    })?;
    Ok(ExitCode::SUCCESS)
}
