//! `triton sim`: runs the deterministic simulator, one seed or a batch.

use std::process::ExitCode;

use anyhow::{bail, Context};
use triton_sim::fuzz::{run_plan, FaultMix, Plan};

#[derive(clap::Args)]
pub struct SimArgs {
    /// Seed that decides every choice of the run (the first seed with --seeds).
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Run this many consecutive seeds, each with the plan it implies.
    #[arg(long)]
    pub seeds: Option<u64>,
    /// Cluster size (default: implied by the seed: 3, 5, 7, 1, 2 or 4).
    #[arg(long)]
    pub nodes: Option<usize>,
    /// Faults to inject: crashes,torn,partitions,lossy,snapshots,membership | all | none
    /// (default: implied by the seed).
    #[arg(long)]
    pub faults: Option<String>,
    /// Print every event of the run.
    #[arg(long)]
    pub trace: bool,
}

pub fn run(args: SimArgs) -> anyhow::Result<ExitCode> {
    let mix = args
        .faults
        .as_deref()
        .map(FaultMix::parse)
        .transpose()
        .map_err(anyhow::Error::msg)?;
    if let Some(n) = args.nodes {
        if !(1..=9).contains(&n) {
            bail!("--nodes must be between 1 and 9, got {n}");
        }
    }
    let count = args.seeds.unwrap_or(1);
    let mut failed = 0;
    for seed in args.seed..args.seed.checked_add(count).context("seed range overflows")? {
        let mut plan = Plan::for_seed(seed);
        if let Some(n) = args.nodes {
            plan.nodes = n;
        }
        if let Some(m) = mix {
            plan.mix = m;
        }
        match run_plan(plan, args.trace) {
            Ok(r) => {
                if count == 1 {
                    println!(
                        "seed {seed}: ok ({} nodes, faults {}): {} client ops completed, {} unknown, {} entries committed, {} leaders, {} messages, {} simulated ms",
                        r.plan.nodes, r.plan.mix, r.completed, r.unknown, r.committed_entries, r.leaders, r.messages, r.simulated_ms
                    );
                }
            }
            Err(f) => {
                failed += 1;
                println!("FAIL {f}");
            }
        }
    }
    if count > 1 {
        println!("{} of {count} seeds passed", count - failed);
    }
    Ok(if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
