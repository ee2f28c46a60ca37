//! `cargo bench -p triton-sim --bench core`: committed entries per second of
//! a 3-node cluster of cores in one thread (instant network, in-memory
//! storage), with 1 and 256 closed-loop proposers. Also `triton bench core`.

use std::time::Duration;

use triton_sim::bench::core_throughput;

fn main() {
    let secs = std::env::var("TRITON_BENCH_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(3.0);
    for proposers in [1, 256] {
        let mut runs: Vec<f64> = (0..5)
            .map(|_| core_throughput(proposers, 16, Duration::from_secs_f64(secs / 5.0)).ops_per_sec())
            .collect();
        runs.sort_by(f64::total_cmp);
        println!(
            "core/3 nodes/{proposers:>3} proposers: median {:>10.0} committed entries/s (min {:.0}, max {:.0}, 5 runs)",
            runs[2], runs[0], runs[4]
        );
    }
}
