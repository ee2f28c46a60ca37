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
    /// Puts and linearizable gets against a local 3-node Triton cluster (and
    /// etcd with `--target etcd`), N clients each: throughput, p50-p99.9.
    Kv(KvArgs),
    /// SIGKILL the leader of a 3-node cluster under load, repeatedly; report
    /// how long writes stopped.
    Failover(FailoverArgs),
    /// One client's latency by request kind (status, serializable get,
    /// linearizable get, put) on a local 3-node cluster: what each step of a
    /// request costs.
    Latency(LatencyArgs),
    /// Parameter study: simulator grid plus a small real-cluster grid; CSV
    /// and plots (SVG, PNG).
    Study(StudyArgs),
}

#[derive(clap::Args)]
pub struct LatencyArgs {
    /// Sequential requests per kind.
    #[arg(long, default_value_t = 3000)]
    requests: usize,
    /// 200 requests per kind (CI).
    #[arg(long)]
    smoke: bool,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum KvTarget {
    /// Triton only.
    Triton,
    /// etcd only (`--endpoints`, or a local cluster started from `--etcd-bin`).
    Etcd,
    /// Both, in one run (etcd skipped with a note if it is not installed).
    Both,
}

#[derive(clap::Args)]
pub struct KvArgs {
    /// Which systems to measure.
    #[arg(long, value_enum, default_value_t = KvTarget::Both)]
    target: KvTarget,
    /// etcd client endpoints (host:port, comma separated); default: start a
    /// local 3-member etcd cluster.
    #[arg(long, value_delimiter = ',')]
    endpoints: Vec<String>,
    /// The etcd server binary.
    #[arg(long, default_value = "etcd")]
    etcd_bin: std::path::PathBuf,
    /// Concurrent clients to measure.
    #[arg(long, value_delimiter = ',', default_values_t = [1usize, 16, 128, 512])]
    clients: Vec<usize>,
    /// Seconds per point.
    #[arg(long, default_value_t = 3.0)]
    seconds: f64,
    /// A few hundred milliseconds per point, clients 1 and 16 (CI).
    #[arg(long)]
    smoke: bool,
    /// Write the results as CSV here.
    #[arg(long)]
    csv: Option<std::path::PathBuf>,
}

#[derive(clap::Args)]
pub struct FailoverArgs {
    /// Leader kills.
    #[arg(long, default_value_t = 20)]
    kills: usize,
    /// Concurrent writers during the run.
    #[arg(long, default_value_t = 8)]
    load_clients: usize,
    /// 2 kills, short settling (CI).
    #[arg(long)]
    smoke: bool,
}

#[derive(clap::Args)]
pub struct StudyArgs {
    /// Where CSV and plots go.
    #[arg(long, default_value = "docs/plots")]
    out: std::path::PathBuf,
    /// Skip the real-cluster grid.
    #[arg(long)]
    sim_only: bool,
    /// A tiny grid (CI).
    #[arg(long)]
    smoke: bool,
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
        BenchCommand::Kv(args) => runtime()?.block_on(super::until_stopped(kv(args))),
        BenchCommand::Failover(args) => runtime()?.block_on(super::until_stopped(failover(args))),
        // One thread: the client's own wake-ups stay off the measured path.
        BenchCommand::Latency(args) => tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?
            .block_on(super::until_stopped(latency(args))),
        BenchCommand::Study(args) => study(args),
    }
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread().enable_all().build()?)
}

async fn kv(args: KvArgs) -> anyhow::Result<ExitCode> {
    use triton_bench::kv::{self as bkv, Op, Target};
    let (clients, seconds) = if args.smoke {
        // Long enough that one slow fsync or an election on a loaded
        // machine does not leave a point with no operation at all.
        (vec![1, 16], 1.0)
    } else {
        (args.clients.clone(), args.seconds)
    };
    anyhow::ensure!(seconds > 0.0, "--seconds must be positive");
    anyhow::ensure!(clients.iter().all(|&c| c > 0), "--clients must be positive");
    let duration = Duration::from_secs_f64(seconds);
    let tmp = triton_bench::scratch_dir("kv")?;
    let binary = std::env::current_exe()?;
    let mut targets: Vec<(Target, Vec<String>)> = Vec::new();
    let _triton;
    if args.target != KvTarget::Etcd {
        eprintln!("starting a 3-node Triton cluster (WAL fsync on)...");
        let c = bkv::start_triton(&binary, &tmp.path().join("triton"), 3).await?;
        targets.push((Target::Triton, c.addrs()));
        _triton = c;
    }
    let _etcd;
    if args.target != KvTarget::Triton {
        if !args.endpoints.is_empty() {
            targets.push((Target::Etcd, args.endpoints.clone()));
        } else if triton_bench::etcd::available(&args.etcd_bin) {
            eprintln!("starting a 3-member etcd cluster ({})...", args.etcd_bin.display());
            let dir = tmp.path().join("etcd");
            std::fs::create_dir_all(&dir)?;
            let e = triton_bench::etcd::EtcdCluster::start(&args.etcd_bin, &dir, 3).await?;
            targets.push((Target::Etcd, e.endpoints.clone()));
            _etcd = e;
        } else if args.target == KvTarget::Etcd {
            anyhow::bail!(
                "{} not found; install etcd-server or pass --endpoints",
                args.etcd_bin.display()
            );
        } else {
            println!(
                "note: etcd not found ({}); measuring Triton only",
                args.etcd_bin.display()
            );
        }
    }
    let mut csv = format!("{}\n", bkv::CSV_HEADER);
    println!("{}", bkv::TABLE_HEADER);
    for op in [Op::Put, Op::Get] {
        for (target, endpoints) in &targets {
            if op == Op::Get {
                bkv::preload(*target, endpoints).await?;
            }
            for &c in &clients {
                let p = bkv::run_point(*target, endpoints, op, c, duration, bkv::VALUE_BYTES).await?;
                println!("{}", bkv::table_row(&p));
                csv.push_str(&bkv::csv_row(&p));
                csv.push('\n');
            }
        }
    }
    if let Some(path) = args.csv {
        std::fs::write(&path, csv)?;
        println!("wrote {}", path.display());
    }
    Ok(ExitCode::SUCCESS)
}

async fn failover(args: FailoverArgs) -> anyhow::Result<ExitCode> {
    use triton_bench::failover::{run_failover, FailoverOptions};
    let mut opts = FailoverOptions {
        kills: args.kills,
        load_clients: args.load_clients,
        ..FailoverOptions::default()
    };
    if args.smoke {
        opts.kills = 2;
        opts.load_clients = 2;
        opts.settle = Duration::from_millis(500);
    }
    anyhow::ensure!(opts.kills > 0, "--kills must be positive");
    let tmp = triton_bench::scratch_dir("failover")?;
    let binary = std::env::current_exe()?;
    eprintln!(
        "3-node cluster, tick {} ms, election {} ticks, heartbeat {} ticks; {} leader kills under {} writers",
        opts.timing.tick_ms, opts.timing.election_ticks, opts.timing.heartbeat_ticks, opts.kills, opts.load_clients
    );
    let mut times = run_failover(&binary, tmp.path(), &opts, |k, d| {
        println!(
            "kill {}: writes resumed after {:.0} ms",
            k + 1,
            d.as_secs_f64() * 1000.0
        )
    })
    .await?;
    times.sort();
    let ms: Vec<f64> = times.iter().map(|d| d.as_secs_f64() * 1000.0).collect();
    let q = |p| triton_bench::stats::quantile(&ms, p).unwrap_or(f64::NAN);
    println!(
        "failover: {} kills: min {:.0} ms, median {:.0} ms, p99 {:.0} ms, max {:.0} ms",
        ms.len(),
        q(0.0),
        q(0.5),
        q(0.99),
        q(1.0)
    );
    Ok(ExitCode::SUCCESS)
}

async fn latency(args: LatencyArgs) -> anyhow::Result<ExitCode> {
    use triton_bench::latency;
    let requests = if args.smoke { 200 } else { args.requests };
    anyhow::ensure!(requests > 0, "--requests must be positive");
    let tmp = triton_bench::scratch_dir("latency")?;
    let binary = std::env::current_exe()?;
    eprintln!("starting a 3-node Triton cluster (WAL fsync on)...");
    let cluster = triton_bench::kv::start_triton(&binary, &tmp.path().join("triton"), 3).await?;
    latency::warm_up(&cluster.addrs()).await?;
    let leader = triton_bench::failover::find_leader(&cluster, Duration::from_secs(30)).await?;
    println!("{}", latency::TABLE_HEADER);
    for k in latency::measure(&cluster.addrs(), &cluster.addrs()[leader], requests).await? {
        println!("{}", latency::table_row(&k));
    }
    Ok(ExitCode::SUCCESS)
}

fn study(args: StudyArgs) -> anyhow::Result<ExitCode> {
    use triton_bench::study::{run_real_study, run_sim_study, StudyGrid};
    let grid = if args.smoke {
        StudyGrid::smoke()
    } else {
        StudyGrid::standard()
    };
    let mut out = run_sim_study(&grid, &args.out, |m| eprintln!("{m}"))?;
    if !args.sim_only {
        let tmp = triton_bench::scratch_dir("study")?;
        let binary = std::env::current_exe()?;
        let real = runtime()?.block_on(super::until_stopped(run_real_study(
            &binary,
            tmp.path(),
            &grid,
            &args.out,
            |m| println!("{m}"),
        )))?;
        out.csv.extend(real.csv);
        out.plots.extend(real.plots);
    }
    for p in out.csv.iter().chain(&out.plots) {
        println!("wrote {}", p.display());
    }
    Ok(ExitCode::SUCCESS)
}
