//! The parameter study: in the seeded simulator, the time to elect a new
//! leader after the leader crashes (vs cluster size, election timeout,
//! heartbeat interval and message loss) and the messages per committed entry
//! (vs batch size, heartbeat interval, payload); on a real local cluster,
//! throughput and latency vs clients per cluster size. Writes CSV and plots.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use bytes::Bytes;
use triton_raft::NodeId;
use triton_sim::checker::Violation;
use triton_sim::{Millis, Sim, SimOptions};

use crate::kv::{self, Op, Target};
use crate::plot::{write_chart, Chart, Series};
use crate::stats::quantile;

/// The grid. Every list must be non-empty.
#[derive(Clone, Debug)]
pub struct StudyGrid {
    /// Cluster sizes (simulator and real).
    pub sizes: Vec<usize>,
    /// Simulator tick length.
    pub tick_ms: u64,
    /// Election timeouts in ticks (the timeout is random in `[e, 2e)`).
    pub election_ticks: Vec<u32>,
    /// Heartbeat intervals in ticks.
    pub heartbeat_ticks: Vec<u32>,
    /// Message loss probabilities.
    pub loss: Vec<f64>,
    /// Leader crashes (seeds) per simulator election point.
    pub trials: u64,
    /// Entries proposed per leader ready cycle.
    pub batch: Vec<usize>,
    /// Payload bytes per entry.
    pub payload: Vec<usize>,
    /// Real-cluster client counts.
    pub clients: Vec<usize>,
    /// Real-cluster cluster sizes (a subset of what the machine can run).
    pub real_sizes: Vec<usize>,
    /// Real-cluster measurement time per point.
    pub real_duration: Duration,
}

impl StudyGrid {
    /// The default grid: a few minutes in all.
    pub fn standard() -> StudyGrid {
        StudyGrid {
            sizes: vec![3, 5, 7],
            tick_ms: 10,
            election_ticks: vec![15, 30, 60],
            heartbeat_ticks: vec![2, 5, 10],
            loss: vec![0.0, 0.05, 0.1, 0.2, 0.3],
            trials: 40,
            batch: vec![1, 4, 16, 64, 256],
            payload: vec![16, 256, 4096],
            clients: vec![1, 4, 16, 64, 128],
            real_sizes: vec![3, 5, 7],
            real_duration: Duration::from_secs(2),
        }
    }

    /// A tiny grid for CI smoke runs (seconds).
    pub fn smoke() -> StudyGrid {
        StudyGrid {
            sizes: vec![3, 5],
            tick_ms: 10,
            election_ticks: vec![30],
            heartbeat_ticks: vec![10],
            loss: vec![0.0, 0.1],
            trials: 3,
            batch: vec![1, 16],
            payload: vec![256],
            clients: vec![1, 4],
            real_sizes: vec![3],
            real_duration: Duration::from_millis(300),
        }
    }

    fn validate(&self) -> anyhow::Result<()> {
        anyhow::ensure!(
            !self.sizes.is_empty()
                && !self.election_ticks.is_empty()
                && !self.heartbeat_ticks.is_empty()
                && !self.loss.is_empty()
                && !self.batch.is_empty()
                && !self.payload.is_empty()
                && self.trials > 0
                && self.tick_ms > 0,
            "every simulator list of the grid needs at least one value"
        );
        anyhow::ensure!(
            self.loss.iter().all(|l| (0.0..1.0).contains(l)),
            "loss must be in [0, 1)"
        );
        anyhow::ensure!(self.sizes.iter().all(|&n| n > 0), "cluster sizes must be positive");
        anyhow::ensure!(self.batch.iter().all(|&b| b > 0), "batch sizes must be positive");
        Ok(())
    }
}

fn sim_options(nodes: usize, seed: u64, tick_ms: u64, election: u32, heartbeat: u32, loss: f64) -> SimOptions {
    let mut o = SimOptions::new(nodes, seed);
    o.tick_ms = tick_ms;
    o.election_tick = election;
    o.heartbeat_tick = heartbeat;
    o.loss = loss;
    o
}

/// A safety violation in a study run, as an error that says how to run it
/// again: the simulator is deterministic, so the same options replay it.
fn violation(sim: &Sim, what: &str, v: Violation) -> anyhow::Error {
    let o = &sim.opts;
    anyhow::anyhow!(
        "safety violation in the simulator ({what}, seed {}): {v}; replay: triton_bench::study::{what} \
         with SimOptions::new({}, {}) and tick_ms = {}, election_tick = {}, heartbeat_tick = {}, loss = {} \
         (set trace = true to see every event)",
        o.seed,
        o.nodes,
        o.seed,
        o.tick_ms,
        o.election_tick,
        o.heartbeat_tick,
        o.loss
    )
}

/// Runs `sim` for `ms` simulated milliseconds; a violation is an error.
fn run(sim: &mut Sim, what: &str, ms: Millis) -> anyhow::Result<()> {
    sim.run_for(ms).map_err(|v| violation(sim, what, v))
}

/// How long until a leader other than `not` is elected: `None` if none is
/// within `within` (a real outcome under heavy loss), an error on a safety
/// violation (which must not read as "no leader").
fn wait_leader(sim: &mut Sim, what: &str, not: Option<NodeId>, within: Millis) -> anyhow::Result<Option<Millis>> {
    let start = sim.now;
    while sim.now - start < within {
        run(sim, what, 5)?;
        if let Some(l) = sim.leader() {
            if Some(l) != not {
                return Ok(Some(sim.now - start));
            }
        }
    }
    Ok(None)
}

/// Simulated milliseconds from crashing a settled leader until another
/// node leads, or `None` if none did within 60 s. A safety violation is an
/// error naming the seed.
pub fn election_after_crash(opts: SimOptions) -> anyhow::Result<Option<Millis>> {
    election_after_crash_in(Sim::new(opts))
}

fn election_after_crash_in(mut sim: Sim) -> anyhow::Result<Option<Millis>> {
    const WHAT: &str = "election_after_crash";
    if wait_leader(&mut sim, WHAT, None, 60_000)?.is_none() {
        return Ok(None);
    }
    run(&mut sim, WHAT, 1000)?;
    let Some(old) = sim.leader() else {
        return Ok(None);
    };
    sim.crash(old);
    wait_leader(&mut sim, WHAT, Some(old), 60_000)
}

/// Messages (and bytes) sent per committed entry when the leader proposes
/// `batch` entries per ready cycle every tick for 3 simulated seconds;
/// `None` if no leader held long enough to measure. A safety violation is
/// an error naming the seed.
pub fn messages_per_entry(opts: SimOptions, batch: usize, payload: usize) -> anyhow::Result<Option<(f64, f64)>> {
    messages_per_entry_in(Sim::new(opts), batch, payload)
}

fn messages_per_entry_in(mut sim: Sim, batch: usize, payload: usize) -> anyhow::Result<Option<(f64, f64)>> {
    const WHAT: &str = "messages_per_entry";
    let tick = sim.opts.tick_ms;
    if wait_leader(&mut sim, WHAT, None, 60_000)?.is_none() {
        return Ok(None);
    }
    run(&mut sim, WHAT, 500)?;
    let Some(leader) = sim.leader() else {
        return Ok(None);
    };
    let Some(idx) = sim.nodes.iter().position(|n| n.id == leader) else {
        return Ok(None);
    };
    let c0 = sim.nodes[idx].raft().commit_index();
    let (m0, b0) = (sim.traffic.messages, sim.traffic.bytes);
    let data = Bytes::from(vec![b'p'; payload]);
    let end = sim.now + 3000;
    while sim.now < end {
        let Some(raft) = sim.nodes[idx].raft.as_mut() else {
            return Ok(None);
        };
        for _ in 0..batch {
            // Refused (leadership lost): not measurable, not a violation.
            if raft.propose(data.clone()).is_err() {
                return Ok(None);
            }
        }
        sim.process_ready(leader);
        run(&mut sim, WHAT, tick)?;
    }
    run(&mut sim, WHAT, 500)?;
    let committed = sim.nodes[idx].raft().commit_index().saturating_sub(c0);
    if committed == 0 {
        return Ok(None);
    }
    Ok(Some((
        (sim.traffic.messages - m0) as f64 / committed as f64,
        (sim.traffic.bytes - b0) as f64 / committed as f64,
    )))
}

/// Files the study wrote.
#[derive(Debug, Default)]
pub struct StudyOutput {
    /// CSV files.
    pub csv: Vec<PathBuf>,
    /// Plot files (SVG and PNG).
    pub plots: Vec<PathBuf>,
}

fn push_chart(out: &mut StudyOutput, dir: &Path, name: &str, chart: &Chart) -> anyhow::Result<()> {
    let base = dir.join(name);
    write_chart(&base, chart)?;
    out.plots.push(base.with_extension("svg"));
    out.plots.push(base.with_extension("png"));
    Ok(())
}

/// Runs the simulator part of the study, writing CSV and plots into `out_dir`.
pub fn run_sim_study(grid: &StudyGrid, out_dir: &Path, mut progress: impl FnMut(&str)) -> anyhow::Result<StudyOutput> {
    grid.validate()?;
    std::fs::create_dir_all(out_dir)?;
    let mut out = StudyOutput::default();

    // Election time after a leader crash.
    let mut csv =
        String::from("nodes,tick_ms,election_ms,heartbeat_ms,loss,trials,elected,p50_ms,p90_ms,p99_ms,max_ms\n");
    // (election ticks) -> series over loss, for the first cluster size and default heartbeat.
    let hb_plot = grid.heartbeat_ticks[grid.heartbeat_ticks.len() / 2];
    let mut by_timeout: Vec<Series> = Vec::new();
    let mut by_size: Vec<Series> = Vec::new();
    let e_plot = grid.election_ticks[grid.election_ticks.len() / 2];
    for &n in &grid.sizes {
        for &e in &grid.election_ticks {
            for &hb in &grid.heartbeat_ticks {
                if hb >= e {
                    continue;
                }
                for &loss in &grid.loss {
                    let mut times = Vec::new();
                    for seed in 0..grid.trials {
                        if let Some(t) = election_after_crash(sim_options(n, seed, grid.tick_ms, e, hb, loss))? {
                            times.push(t as f64);
                        }
                    }
                    times.sort_by(f64::total_cmp);
                    let q = |p| quantile(&times, p).unwrap_or(f64::NAN);
                    writeln!(
                        csv,
                        "{n},{},{},{},{loss},{},{},{},{},{},{}",
                        grid.tick_ms,
                        e as u64 * grid.tick_ms,
                        hb as u64 * grid.tick_ms,
                        grid.trials,
                        times.len(),
                        q(0.5),
                        q(0.9),
                        q(0.99),
                        q(1.0)
                    )?;
                    if !times.is_empty() && hb == hb_plot {
                        if n == grid.sizes[0] {
                            let label =
                                format!("timeout {}-{} ms", e as u64 * grid.tick_ms, 2 * e as u64 * grid.tick_ms);
                            push_point(&mut by_timeout, &label, loss * 100.0, q(0.5));
                        }
                        if e == e_plot {
                            push_point(&mut by_size, &format!("{n} nodes"), loss * 100.0, q(0.5));
                        }
                    }
                }
                progress(&format!(
                    "election: {n} nodes, election {e} ticks, heartbeat {hb} ticks"
                ));
            }
        }
    }
    let p = out_dir.join("sim_election.csv");
    std::fs::write(&p, csv)?;
    out.csv.push(p);
    if !by_timeout.is_empty() {
        push_chart(
            &mut out,
            out_dir,
            "election_time_vs_loss",
            &Chart {
                title: format!(
                    "Median time to a new leader after a leader crash ({} nodes, sim)",
                    grid.sizes[0]
                ),
                x_label: "message loss (%)".into(),
                y_label: "ms".into(),
                log_x: false,
                series: by_timeout,
            },
        )?;
        push_chart(
            &mut out,
            out_dir,
            "election_time_vs_size",
            &Chart {
                title: format!(
                    "Median time to a new leader by cluster size (timeout {}-{} ms, sim)",
                    e_plot as u64 * grid.tick_ms,
                    2 * e_plot as u64 * grid.tick_ms
                ),
                x_label: "message loss (%)".into(),
                y_label: "ms".into(),
                log_x: false,
                series: by_size,
            },
        )?;
    }

    // Messages per committed entry.
    let mut csv = String::from("nodes,heartbeat_ms,batch,payload,msgs_per_entry,bytes_per_entry\n");
    let mut by_batch: Vec<Series> = Vec::new();
    let payload_plot = grid.payload[grid.payload.len() / 2];
    let e_default = *grid.election_ticks.iter().max().expect("validated");
    for &n in &grid.sizes {
        for &hb in &grid.heartbeat_ticks {
            if hb >= e_default {
                continue;
            }
            for &b in &grid.batch {
                for &pl in &grid.payload {
                    let opts = sim_options(n, 1, grid.tick_ms, e_default, hb, 0.0);
                    let Some((m, bytes)) = messages_per_entry(opts, b, pl)? else {
                        continue;
                    };
                    writeln!(csv, "{n},{},{b},{pl},{m:.4},{bytes:.1}", hb as u64 * grid.tick_ms)?;
                    if hb == hb_plot && pl == payload_plot {
                        push_point(&mut by_batch, &format!("{n} nodes"), b as f64, m);
                    }
                }
            }
            progress(&format!("messages: {n} nodes, heartbeat {hb} ticks"));
        }
    }
    let p = out_dir.join("sim_messages.csv");
    std::fs::write(&p, csv)?;
    out.csv.push(p);
    if !by_batch.is_empty() {
        push_chart(
            &mut out,
            out_dir,
            "messages_per_entry_vs_batch",
            &Chart {
                title: "Messages per committed entry vs batch size (sim)".into(),
                x_label: "entries per leader ready cycle".into(),
                y_label: "messages / entry".into(),
                log_x: true,
                series: by_batch,
            },
        )?;
    }
    Ok(out)
}

fn push_point(series: &mut Vec<Series>, label: &str, x: f64, y: f64) {
    if !y.is_finite() {
        return;
    }
    match series.iter_mut().find(|s| s.label == label) {
        Some(s) => s.points.push((x, y)),
        None => series.push(Series {
            label: label.to_string(),
            points: vec![(x, y)],
        }),
    }
}

/// Runs the real-cluster part: for each cluster size, puts with each client
/// count, on a fresh local cluster under `work_dir`.
pub async fn run_real_study(
    binary: &Path,
    work_dir: &Path,
    grid: &StudyGrid,
    out_dir: &Path,
    mut progress: impl FnMut(&str),
) -> anyhow::Result<StudyOutput> {
    anyhow::ensure!(
        !grid.clients.is_empty() && !grid.real_sizes.is_empty(),
        "real grid is empty"
    );
    std::fs::create_dir_all(out_dir)?;
    let mut out = StudyOutput::default();
    let mut csv = format!("nodes,{}\n", kv::CSV_HEADER);
    let mut tput = Vec::new();
    let mut p99 = Vec::new();
    for &n in &grid.real_sizes {
        let dir = work_dir.join(format!("real-{n}"));
        let cluster = kv::start_triton(binary, &dir, n).await?;
        for &c in &grid.clients {
            let p = kv::run_point(
                Target::Triton,
                &cluster.addrs(),
                Op::Put,
                c,
                grid.real_duration,
                kv::VALUE_BYTES,
            )
            .await?;
            writeln!(csv, "{n},{}", kv::csv_row(&p))?;
            // A point with nothing measured is left out, not drawn as 0.
            if let Some(t) = p.summary.throughput() {
                push_point(&mut tput, &format!("{n} nodes"), c as f64, t);
            }
            if let Some(us) = p.summary.p99_us {
                push_point(&mut p99, &format!("{n} nodes"), c as f64, us as f64 / 1000.0);
            }
            progress(&match p.summary.throughput() {
                Some(t) => format!(
                    "real: {n} nodes, {c} clients: {t:.0} puts/s ({} errors)",
                    p.summary.errors
                ),
                None => format!("real: {n} nodes, {c} clients: no put started in the window"),
            });
        }
        drop(cluster);
    }
    let p = out_dir.join("real_clients.csv");
    std::fs::write(&p, csv)?;
    out.csv.push(p);
    let log_x = grid.clients.iter().all(|&c| c > 0) && grid.clients.len() > 1;
    push_chart(
        &mut out,
        out_dir,
        "real_throughput_vs_clients",
        &Chart {
            title: "Put throughput vs clients (local cluster, fsync on)".into(),
            x_label: "concurrent clients".into(),
            y_label: "puts / s".into(),
            log_x,
            series: tput,
        },
    )?;
    push_chart(
        &mut out,
        out_dir,
        "real_p99_vs_clients",
        &Chart {
            title: "Put p99 latency vs clients (local cluster, fsync on)".into(),
            x_label: "concurrent clients".into(),
            y_label: "p99 latency (ms)".into(),
            log_x,
            series: p99,
        },
    )?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_crashed_leader_is_replaced_and_loss_slows_it_down() {
        let quick: Vec<Millis> = (0..5)
            .filter_map(|s| election_after_crash(sim_options(3, s, 10, 30, 10, 0.0)).unwrap())
            .collect();
        assert_eq!(quick.len(), 5, "every crash should be followed by a new leader");
        // Never faster than the shortest election timeout minus a heartbeat.
        assert!(quick.iter().all(|&t| t >= 200), "{quick:?}");
    }

    #[test]
    fn batching_sends_fewer_messages_per_entry() {
        let one = messages_per_entry(sim_options(3, 1, 10, 30, 10, 0.0), 1, 16)
            .unwrap()
            .unwrap();
        let many = messages_per_entry(sim_options(3, 1, 10, 30, 10, 0.0), 64, 16)
            .unwrap()
            .unwrap();
        assert!(many.0 < one.0, "batch 64: {} msgs/entry, batch 1: {}", many.0, one.0);
    }

    /// A simulator whose checker has seen a violation: the next event
    /// reports it, as one the checker finds itself would be.
    fn violated(opts: SimOptions) -> Sim {
        let mut sim = Sim::new(opts);
        sim.checker.fail(Violation {
            property: "election safety",
            detail: "planted by the test".into(),
        });
        sim
    }

    #[test]
    fn a_safety_violation_is_an_error_of_the_study_not_a_gap() {
        for (what, r) in [
            (
                "election_after_crash",
                election_after_crash_in(violated(sim_options(3, 7, 10, 30, 10, 0.1))).map(|_| ()),
            ),
            (
                "messages_per_entry",
                messages_per_entry_in(violated(sim_options(3, 7, 10, 30, 10, 0.1)), 4, 16).map(|_| ()),
            ),
        ] {
            let err = format!("{:#}", r.expect_err("a violation must not read as no leader / no row"));
            assert!(
                err.contains("election safety violated: planted by the test") && err.contains("seed 7"),
                "{err}"
            );
            assert!(
                err.contains(&format!(
                    "replay: triton_bench::study::{what} with SimOptions::new(3, 7)"
                )) && err.contains("loss = 0.1"),
                "{err}"
            );
        }
    }

    #[test]
    fn smoke_grid_writes_csv_and_plots() {
        let dir = tempfile::tempdir().unwrap();
        let out = run_sim_study(&StudyGrid::smoke(), dir.path(), |_| {}).unwrap();
        assert_eq!(out.csv.len(), 2);
        assert_eq!(out.plots.len(), 6);
        let csv = std::fs::read_to_string(dir.path().join("sim_election.csv")).unwrap();
        assert_eq!(csv.lines().count(), 1 + 2 * 2, "{csv}");
        for p in &out.plots {
            assert!(std::fs::metadata(p).unwrap().len() > 0);
        }
    }

    #[test]
    fn bad_grids_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let mut g = StudyGrid::smoke();
        g.loss = vec![1.5];
        assert!(run_sim_study(&g, dir.path(), |_| {}).is_err());
        let mut g = StudyGrid::smoke();
        g.sizes.clear();
        assert!(run_sim_study(&g, dir.path(), |_| {}).is_err());
    }
}
