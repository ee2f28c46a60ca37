//! `triton verify`: fault injection + linearizability check of a cluster.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use triton_verify::{parse_duration, run, Fault, VerifyOptions};

#[derive(clap::Args)]
pub struct VerifyArgs {
    /// Start the nodes of this cluster config locally (it needs
    /// enable_test_rpcs = true for partition/leader faults). Default: a
    /// generated config on free loopback ports. With --endpoints, only its
    /// TLS files and admin token are used, to reach the running cluster.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Nodes of the generated cluster.
    #[arg(long, default_value_t = 3)]
    pub nodes: usize,
    /// Attach to a running cluster instead (only partition/leader faults, via
    /// its test RPCs, and membership changes, via its admin token).
    #[arg(long, value_delimiter = ',')]
    pub endpoints: Option<Vec<String>>,
    /// How long faults are injected (e.g. 20s, 2m).
    #[arg(long, default_value = "60s")]
    pub duration: String,
    #[arg(long, default_value_t = 10)]
    pub clients: usize,
    #[arg(long, default_value_t = 5)]
    pub keys: usize,
    /// Comma-separated: kill, partition, pause, leader, membership, freeze
    /// (cut off the leader and SIGSTOP it inside its lease), or none.
    #[arg(long, default_value = "kill,partition,pause,leader,membership,freeze")]
    pub faults: String,
    /// Seed of the fault schedule and the workload.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Directory for the history, node logs and violation pages.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// TEST ONLY: serve reads from any node without ReadIndex (a deliberately
    /// broken mode that the checker must catch).
    #[arg(long, hide = true)]
    pub unsafe_stale_reads: bool,
    /// Seconds the cluster may take to recover once faults stop.
    #[arg(long, default_value_t = 20)]
    pub recovery_timeout: u64,
    /// Keep the history under about this many operations (it is held in
    /// memory and checked at the end): a long run paces its clients to fit.
    /// 0: no limit.
    #[arg(long, default_value_t = triton_verify::DEFAULT_MAX_OPS)]
    pub max_ops: u64,
}

pub fn run_cmd(args: VerifyArgs) -> anyhow::Result<ExitCode> {
    let faults = Fault::parse_list(&args.faults)?;
    let duration = parse_duration(&args.duration)?;
    let out_dir = match args.out {
        Some(d) => d,
        None => std::env::temp_dir().join(format!("triton-verify-{}-{}", std::process::id(), args.seed)),
    };
    let opts = VerifyOptions {
        binary: std::env::current_exe().context("locating the triton binary")?,
        config: args.config,
        nodes: args.nodes,
        endpoints: args.endpoints,
        duration,
        clients: args.clients,
        keys: args.keys,
        faults,
        seed: args.seed,
        out_dir,
        unsafe_stale_reads: args.unsafe_stale_reads,
        recovery_timeout: std::time::Duration::from_secs(args.recovery_timeout),
        progress: std::io::stderr().is_terminal(),
        max_ops: args.max_ops,
    };
    eprintln!(
        "triton verify: seed {}, {} clients on {} keys, faults {:?} for {:?}; output in {}",
        opts.seed,
        opts.clients,
        opts.keys,
        opts.faults,
        opts.duration,
        opts.out_dir.display()
    );
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    // Not `until_stopped`: a stopped run must first heal the faults it put on
    // a cluster the user attached, so `run` hears the stop itself.
    let result = rt.block_on(run(opts, super::stop_signal()));
    // A checker thread still searching after a stop is not waited for.
    rt.shutdown_background();
    let summary = result?;
    println!("{summary}");
    Ok(if summary.passed() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
