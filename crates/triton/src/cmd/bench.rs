//! `triton bench ...`: benchmarks (measured, never asserted).

use std::process::ExitCode;
use std::time::Duration;

use triton_sim::bench::core_throughput;

#[derive(clap::Subcommand)]
pub enum BenchCommand {
    /// CPU cost of the Raft core: committed entries/s of 3 cores in one
    /// thread (instant network, in-memory storage).
    Core {
        /// Seconds per configuration (split over 5 runs).
        #[arg(long, default_value_t = 3.0)]
        seconds: f64,
        /// Concurrent closed-loop proposers to measure.
        #[arg(long, value_delimiter = ',', default_values_t = [1usize, 256])]
        proposers: Vec<usize>,
        /// Payload bytes per entry.
        #[arg(long, default_value_t = 16)]
        payload: usize,
    },
}

pub fn run(cmd: BenchCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        BenchCommand::Core {
            seconds,
            proposers,
            payload,
        } => {
            anyhow::ensure!(seconds > 0.0, "--seconds must be positive");
            for p in proposers {
                anyhow::ensure!(p > 0, "--proposers must be positive");
                let mut runs: Vec<f64> = (0..5)
                    .map(|_| core_throughput(p, payload, Duration::from_secs_f64(seconds / 5.0)).ops_per_sec())
                    .collect();
                runs.sort_by(f64::total_cmp);
                println!(
                    "core: 3 nodes, {p} proposers, {payload}-byte entries: median {:.0} committed entries/s (min {:.0}, max {:.0}, 5 runs)",
                    runs[2], runs[0], runs[4]
                );
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}
