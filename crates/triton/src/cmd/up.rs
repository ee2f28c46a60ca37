//! `triton up`: a complete local system in one terminal (see `triton_ops::up`).

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;

#[derive(clap::Args)]
pub struct UpArgs {
    /// Metadata/KV/file-server nodes (a new directory only).
    #[arg(long, default_value_t = 3)]
    pub nodes: usize,
    /// Where the config, the data and the logs live.
    #[arg(long, default_value = "./triton-data")]
    pub dir: PathBuf,
    /// gRPC ports base.., file base+100.., HTTP base+200.., block stores
    /// base+300.. (a new directory only).
    #[arg(long, default_value_t = 7000)]
    pub base_port: u16,
    /// Seconds to wait for a leader before giving up (a value too large
    /// for the clock waits until interrupted).
    #[arg(long, default_value_t = 60)]
    pub leader_timeout: u64,
}

pub fn run(args: UpArgs) -> anyhow::Result<ExitCode> {
    let exe = std::env::current_exe().context("finding the triton binary")?;
    // One thread: children get PR_SET_PDEATHSIG from the thread that
    // spawns them, so that thread must live as long as the supervisor.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    rt.block_on(async move {
        let stop = async {
            super::stop_signal().await;
        };
        let opts = triton_ops::up::UpOptions {
            nodes: args.nodes,
            dir: args.dir,
            base_port: args.base_port,
            exe,
            leader_timeout: Duration::from_secs(args.leader_timeout),
            stop_grace: Duration::from_secs(10),
        };
        triton_ops::up::run(opts, &mut std::io::stdout(), stop).await
    })?;
    Ok(ExitCode::SUCCESS)
}
