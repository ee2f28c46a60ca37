//! `triton sync` and `triton surf mapping`: SurfStore's client (the logic is
//! in `triton-surfsync`). Exit codes: 0 success, 1 the metadata service has
//! no majority (or another runtime failure, with a message), 64 usage errors
//! found here (BASEDIR, BLOCKSIZE, --chunking, the config). Syntax errors
//! caught by clap itself (an unknown flag, a missing argument) exit 2.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use triton_surfsync::{Chunker, Chunking, ProgressMode, SyncError, SyncOptions};

/// Exit code for usage errors (BSD's EX_USAGE).
const EXIT_USAGE: u8 = 64;
/// Exit code when the metadata service has no majority.
const EXIT_NO_MAJORITY: u8 = 1;

#[derive(clap::Args)]
pub struct SyncArgs {
    /// Cluster config (TOML, the course's JSON with RaftAddrs, or text).
    #[arg(long)]
    pub config: PathBuf,
    /// The directory to sync (its index is BASEDIR/index.db).
    pub basedir: PathBuf,
    /// Block size in bytes (the average chunk size with --chunking cdc).
    #[arg(allow_hyphen_values = true)]
    pub blocksize: String,
    /// How files are cut into blocks: `fixed` (the course's) or `cdc`
    /// (FastCDC: an insertion re-uploads only nearby chunks).
    #[arg(long, default_value = "fixed")]
    pub chunking: String,
    /// Seconds without an answer from any metadata node before giving up
    /// with "no majority" (exit 1).
    #[arg(long, default_value_t = 10.0)]
    pub deadline: f64,
    /// Blocks in flight at once to or from the block stores (1 to 1024);
    /// uploads to Triton's block stores use min(this, 4) block streams.
    #[arg(long, default_value_t = triton_surfsync::sync::DEFAULT_BLOCK_JOBS)]
    pub jobs: usize,
}

#[derive(clap::Subcommand)]
pub enum SurfCommand {
    /// Print which block store holds each block of the files in BASEDIR:
    /// `file<TAB>block-index<TAB>hash<TAB>store`.
    Mapping(SyncArgs),
}

fn usage(message: impl std::fmt::Display) -> anyhow::Result<ExitCode> {
    eprintln!("triton: usage error: {message}");
    Ok(ExitCode::from(EXIT_USAGE))
}

/// Checks the arguments; `Err` is a usage error message.
fn options(args: &SyncArgs) -> Result<SyncOptions, String> {
    let mode = match args.chunking.as_str() {
        "fixed" => Chunking::Fixed,
        "cdc" => Chunking::Cdc,
        other => return Err(format!("--chunking must be fixed or cdc, got {other:?}")),
    };
    let block_size: usize = args
        .blocksize
        .parse()
        .map_err(|_| format!("BLOCKSIZE must be a positive integer, got {:?}", args.blocksize))?;
    let chunker = Chunker::new(mode, block_size)?;
    if !args.basedir.is_dir() {
        return Err(format!("BASEDIR {} is not a directory", args.basedir.display()));
    }
    if !(args.deadline.is_finite() && args.deadline > 0.0 && args.deadline <= 86_400.0) {
        return Err(format!("--deadline must be 0 to 86400 seconds, got {}", args.deadline));
    }
    if !(1..=1024).contains(&args.jobs) {
        return Err(format!("--jobs must be 1 to 1024, got {}", args.jobs));
    }
    let config = triton_config::load(&args.config).map_err(|e| format!("{e}"))?;
    Ok(SyncOptions {
        base_dir: args.basedir.clone(),
        chunker,
        meta_addrs: config.nodes.iter().map(|n| n.addr.clone()).collect(),
        meta_dialer: triton_node::tls::Dialer::from_config(&config).map_err(|e| format!("{e:#}"))?,
        meta_deadline: Duration::from_secs_f64(args.deadline),
        block_timeout: Duration::from_secs(30),
        progress: ProgressMode::detect(),
        block_jobs: args.jobs,
    })
}

fn exit_for(err: SyncError) -> anyhow::Result<ExitCode> {
    match err {
        SyncError::Usage(m) => usage(m),
        SyncError::NoMajority(m) => {
            eprintln!("triton: error: {m}");
            Ok(ExitCode::from(EXIT_NO_MAJORITY))
        }
        SyncError::Failed(m) => Err(anyhow::anyhow!(m)),
    }
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the runtime")
}

/// `triton sync`.
pub fn run_sync(args: SyncArgs) -> anyhow::Result<ExitCode> {
    let opts = match options(&args) {
        Ok(o) => o,
        Err(m) => return usage(m),
    };
    match runtime()?.block_on(triton_surfsync::sync(&opts)) {
        Ok(summary) => {
            println!("{summary}");
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => exit_for(e),
    }
}

/// `triton surf ...`.
pub fn run(command: SurfCommand) -> anyhow::Result<ExitCode> {
    match command {
        SurfCommand::Mapping(args) => {
            let opts = match options(&args) {
                Ok(o) => o,
                Err(m) => return usage(m),
            };
            match runtime()?.block_on(triton_surfsync::mapping(&opts)) {
                Ok(lines) => {
                    for l in lines {
                        println!("{}\t{}\t{}\t{}", l.file, l.block_index, l.hash, l.store);
                    }
                    Ok(ExitCode::SUCCESS)
                }
                Err(e) => exit_for(e),
            }
        }
    }
}
