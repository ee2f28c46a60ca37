//! `triton verify`: fault injection + linearizability check of a cluster.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use triton_verify::{parse_duration, run, Fault, VerifyOptions};

/// The exit statuses and what stays on disk, as `--help` shows them.
const AFTER_HELP: &str = "Exit status: 0 PASS (linearizable, some writes completed, the cluster recovered (every \
client had a write answered and every node a read), no node exited on its own, every requested kind of fault was \
injected at least once when tried (a leader or freeze fault that found no leader does not count), every fault \
healed); 1 anything else \
(FAIL, INCONCLUSIVE, or an error). A run that does not pass prints the command that replays it (same seed: same \
fault schedule and workload; the timing of a real cluster differs) and the `triton lincheck` command that re-checks \
its history. Without --out, files go to $TMPDIR/triton-verify-<pid>-<seed>, removed after a PASS unless --keep; \
with --out they are always kept.";

#[derive(clap::Args)]
#[command(after_help = AFTER_HELP)]
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
    /// Directory for the history, node logs and data, and violation pages
    /// (kept). Default: a directory under $TMPDIR, removed after a PASS.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Keep the default output directory after a PASS too.
    #[arg(long)]
    pub keep: bool,
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

/// `arg` as one shell word.
fn shell_word(arg: &str) -> String {
    let plain = |c: char| c.is_ascii_alphanumeric() || "_-./:,=@%+".contains(c);
    if !arg.is_empty() && arg.chars().all(plain) {
        arg.to_string()
    } else {
        format!("'{}'", arg.replace('\'', r"'\''"))
    }
}

/// The command line that runs this test again: every option spelled out
/// (defaults too, so a later change of a default cannot change the replay),
/// without `--out`, so the replay does not overwrite this run's evidence.
fn replay_command(args: &VerifyArgs) -> String {
    let binary = std::env::args().next().unwrap_or_else(|| "triton".into());
    let mut words = vec![binary, "verify".into()];
    let mut opt = |name: &str, value: String| {
        words.push(format!("--{name}"));
        words.push(value);
    };
    match (&args.endpoints, &args.config) {
        (Some(e), _) => opt("endpoints", e.join(",")),
        (None, None) => opt("nodes", args.nodes.to_string()),
        (None, Some(_)) => {}
    }
    if let Some(c) = &args.config {
        opt("config", c.display().to_string());
    }
    opt("duration", args.duration.clone());
    opt("clients", args.clients.to_string());
    opt("keys", args.keys.to_string());
    opt("faults", args.faults.clone());
    opt("seed", args.seed.to_string());
    opt("recovery-timeout", args.recovery_timeout.to_string());
    opt("max-ops", args.max_ops.to_string());
    if args.unsafe_stale_reads {
        words.push("--unsafe-stale-reads".into());
    }
    words.iter().map(|w| shell_word(w)).collect::<Vec<_>>().join(" ")
}

pub fn run_cmd(args: VerifyArgs) -> anyhow::Result<ExitCode> {
    let faults = Fault::parse_list(&args.faults)?;
    let duration = parse_duration(&args.duration)?;
    let replay = replay_command(&args);
    let out_dir = match &args.out {
        Some(d) => d.clone(),
        None => std::env::temp_dir().join(format!("triton-verify-{}-{}", std::process::id(), args.seed)),
    };
    let remove_after_pass = args.out.is_none() && !args.keep;
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
        out_dir: out_dir.clone(),
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
    let summary = match result {
        Ok(summary) => summary,
        Err(e) => {
            // A run that ended in an error did not pass either: it replays
            // too (its history, if any, is named in the error).
            println!("replay: {replay}");
            return Err(e);
        }
    };
    println!("{summary}");
    if !summary.passed() {
        println!("replay: {replay}");
        println!(
            "re-check the history: {} lincheck {}",
            shell_word(&std::env::args().next().unwrap_or_else(|| "triton".into())),
            shell_word(&summary.history_path.display().to_string())
        );
        return Ok(ExitCode::from(1));
    }
    if remove_after_pass {
        // The nodes' data of a passing run is of no further use (--keep).
        match std::fs::remove_dir_all(&out_dir) {
            Ok(()) => eprintln!("removed {} (pass --keep or --out to keep it)", out_dir.display()),
            Err(e) => eprintln!("could not remove {}: {e}", out_dir.display()),
        }
    }
    Ok(ExitCode::SUCCESS)
}
