//! `triton gensort | showsort | valsort | sort | netsort`: thin shells over
//! the `triton-sort` crate (argument parsing, a summary line on stderr).

use std::fs::File;
use std::io::{BufReader, BufWriter, ErrorKind, Read, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::{Args, Subcommand};
use triton_sort::net::{Config, NetOptions};
use triton_sort::size::parse_size;
use triton_sort::{gen, valsort, RECORD_LEN};

/// Sizes accept `1000`, `1mb`, `2 GB`, `1GiB`: k/m/g/t are 1000-based,
/// ki/mi/gi/ti are 1024-based.
fn size_arg(s: &str) -> Result<u64, String> {
    parse_size(s).map_err(|e| e.to_string())
}

/// The record-sorting subcommands (flattened into the top level).
#[derive(Subcommand)]
pub enum SortCommand {
    /// Write random 100-byte records; the same seed gives the same bytes.
    Gensort(GensortArgs),
    /// Print one line per record: key in hex, a space, a shortened value.
    Showsort(ShowsortArgs),
    /// Check that a file is sorted; print its record count and checksum.
    Valsort(ValsortArgs),
    /// Sort a file of 100-byte records (external sort beyond --memory).
    Sort(SortArgs),
    /// Sort across servers: each writes its own slice of the key space.
    Netsort(NetsortArgs),
}

/// Arguments of `triton gensort`.
#[derive(Args)]
pub struct GensortArgs {
    /// File to write.
    pub output: PathBuf,
    /// Size in bytes with an optional unit (1000, 1mb, 2 GB, 1GiB), rounded
    /// up to a multiple of 100.
    #[arg(value_parser = size_arg)]
    pub size: u64,
    /// Seed of the random keys.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
}

/// Arguments of `triton showsort`.
#[derive(Args)]
pub struct ShowsortArgs {
    /// File of 100-byte records.
    pub file: PathBuf,
    /// Show at most this many records.
    #[arg(long)]
    pub limit: Option<u64>,
}

/// Arguments of `triton valsort`.
#[derive(Args)]
pub struct ValsortArgs {
    /// File of 100-byte records.
    pub file: PathBuf,
}

/// Arguments of `triton sort`.
#[derive(Args)]
pub struct SortArgs {
    /// File to sort.
    pub input: PathBuf,
    /// Where to write the sorted records (may not be the input if it
    /// exceeds --memory).
    pub output: PathBuf,
    /// Memory budget (default: half of physical memory).
    #[arg(long, value_parser = size_arg)]
    pub memory: Option<u64>,
    /// Worker threads (default: one per core).
    #[arg(long)]
    pub threads: Option<usize>,
}

/// Arguments of `triton netsort`.
#[derive(Args)]
pub struct NetsortArgs {
    /// This server's id in the config.
    pub server_id: u32,
    /// This server's input file.
    pub input: PathBuf,
    /// This server's output file (its slice of the sorted whole).
    pub output: PathBuf,
    /// YAML: `servers: [{serverId: 0, host: "localhost", port: "8080"}, ...]`.
    pub config: PathBuf,
    /// Memory budget (default: half of physical memory).
    #[arg(long, value_parser = size_arg)]
    pub memory: Option<u64>,
    /// Seconds to keep dialling peers that have not started yet.
    #[arg(long, default_value_t = 30.0)]
    pub connect_timeout: f64,
    /// Seconds a connection may stay silent before the peer counts as hung
    /// (default: 30, more with a large --memory, whose spills are long).
    #[arg(long)]
    pub io_timeout: Option<f64>,
    /// Worker threads (default: one per core).
    #[arg(long)]
    pub threads: Option<usize>,
}

/// Run one of the sorting subcommands.
pub fn run(command: SortCommand) -> anyhow::Result<ExitCode> {
    match command {
        SortCommand::Gensort(a) => gensort(a),
        SortCommand::Showsort(a) => showsort(a),
        SortCommand::Valsort(a) => run_valsort(a),
        SortCommand::Sort(a) => sort(a),
        SortCommand::Netsort(a) => netsort(a),
    }
}

/// On SIGINT or SIGTERM, removes the sort's spilled runs and unfinished
/// output (which the destructors of an exit by signal would not) and
/// exits with the signal's conventional status (130 or 143).
fn remove_scratch_on_signal() -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()
        .context("starting the signal watcher")?;
    // Installed here, before the sort starts, so no signal slips through
    // (`super::stop_signal` installs its handlers when first polled, on the
    // watcher thread's schedule).
    let mut term = rt
        .block_on(async { tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) })
        .context("installing a SIGTERM handler")?;
    let mut int = rt
        .block_on(async { tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt()) })
        .context("installing a SIGINT handler")?;
    std::thread::Builder::new()
        .name("signal-watcher".into())
        .spawn(move || {
            let (name, code) = rt.block_on(async {
                tokio::select! {
                    _ = int.recv() => ("interrupted", 130),
                    _ = term.recv() => ("SIGTERM", 143),
                }
            });
            let removed = triton_sort::scratch::remove_all();
            eprintln!("triton: {name}: stopped; removed {removed} temporary file(s) or directory(ies)");
            std::process::exit(code);
        })
        .context("starting the signal watcher")?;
    Ok(())
}

/// A sort's error, unless a signal is stopping the process: then the error
/// is the signal handler's doing (it removes the files the sort is
/// writing), and this thread waits for the handler's exit instead of
/// reporting it.
fn unless_stopped(e: triton_sort::Error) -> triton_sort::Error {
    while triton_sort::scratch::interrupted() {
        std::thread::park();
    }
    e
}

fn threads(n: Option<usize>) -> anyhow::Result<()> {
    match n {
        Some(0) => anyhow::bail!("--threads must be at least 1"),
        Some(n) => Ok(triton_sort::use_threads(n)?),
        None => Ok(()),
    }
}

fn seconds(what: &str, s: f64) -> anyhow::Result<Duration> {
    const WEEK: f64 = 7.0 * 86_400.0;
    // Zero is refused here: sockets take no zero timeout, and "do not wait"
    // would fail any peer that starts a moment late.
    if !(s > 0.0 && s <= WEEK) {
        anyhow::bail!("{what} must be more than 0 and at most {WEEK} seconds, got {s}");
    }
    Ok(Duration::from_secs_f64(s))
}

fn gensort(a: GensortArgs) -> anyhow::Result<ExitCode> {
    let records = gen::records_for_size(a.size);
    let file = File::create(&a.output).with_context(|| format!("creating {}", a.output.display()))?;
    gen::generate(file, records, a.seed).with_context(|| format!("writing {}", a.output.display()))?;
    eprintln!(
        "wrote {records} records ({} bytes) to {}",
        records * RECORD_LEN as u64,
        a.output.display()
    );
    Ok(ExitCode::SUCCESS)
}

fn open_records(path: &Path) -> anyhow::Result<File> {
    let file = File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let size = file
        .metadata()
        .with_context(|| format!("reading {}", path.display()))?
        .len();
    triton_sort::record::record_count(path, size)?;
    Ok(file)
}

fn showsort(a: ShowsortArgs) -> anyhow::Result<ExitCode> {
    let mut input = BufReader::with_capacity(1 << 20, open_records(&a.file)?);
    let stdout = std::io::stdout();
    let mut out = BufWriter::new(stdout.lock());
    let mut record = [0u8; RECORD_LEN];
    let mut shown = 0u64;
    while a.limit.is_none_or(|l| shown < l) {
        match input.read_exact(&mut record) {
            Ok(()) => {}
            Err(e) if e.kind() == ErrorKind::UnexpectedEof => break,
            Err(e) => return Err(e).with_context(|| format!("reading {}", a.file.display())),
        }
        let line = gen::show_record(&record);
        if let Err(e) = writeln!(out, "{line}") {
            // `triton showsort f | head` is fine.
            if e.kind() == ErrorKind::BrokenPipe {
                return Ok(ExitCode::SUCCESS);
            }
            return Err(e.into());
        }
        shown += 1;
    }
    match out.flush() {
        Err(e) if e.kind() != ErrorKind::BrokenPipe => Err(e.into()),
        _ => Ok(ExitCode::SUCCESS),
    }
}

fn run_valsort(a: ValsortArgs) -> anyhow::Result<ExitCode> {
    let report = valsort::validate_file(&a.file)?;
    println!("Records: {}", report.records);
    println!("Duplicate keys: {}", report.duplicate_keys);
    println!("Checksum: {:032x}", report.checksum);
    match report.first_unordered {
        None => {
            println!("File is sorted");
            Ok(ExitCode::SUCCESS)
        }
        Some(i) => {
            println!("File is not sorted: record {i} has a smaller key than record {}", i - 1);
            Ok(ExitCode::from(1))
        }
    }
}

fn sort(a: SortArgs) -> anyhow::Result<ExitCode> {
    threads(a.threads)?;
    remove_scratch_on_signal()?;
    let memory = a.memory.unwrap_or_else(triton_sort::default_memory);
    let start = Instant::now();
    let stats =
        triton_sort::sort_file(&a.input, &a.output, &triton_sort::SortOptions { memory }).map_err(unless_stopped)?;
    eprintln!(
        "sorted {} records in {:.3}s ({})",
        stats.records,
        start.elapsed().as_secs_f64(),
        if stats.runs == 0 {
            "in memory".to_string()
        } else {
            format!("external: {} runs merged", stats.runs)
        }
    );
    Ok(ExitCode::SUCCESS)
}

fn netsort(a: NetsortArgs) -> anyhow::Result<ExitCode> {
    threads(a.threads)?;
    remove_scratch_on_signal()?;
    let config = Config::load(&a.config)?;
    let memory = a.memory.unwrap_or_else(triton_sort::default_memory);
    let options = NetOptions {
        memory,
        connect_timeout: seconds("--connect-timeout", a.connect_timeout)?,
        io_timeout: match a.io_timeout {
            Some(s) => seconds("--io-timeout", s)?,
            None => triton_sort::net::default_io_timeout(memory),
        },
    };
    let start = Instant::now();
    let stats = triton_sort::net::netsort(a.server_id, &a.input, &a.output, &config, &options)
        .map_err(unless_stopped)
        .with_context(|| format!("server {}", a.server_id))?;
    eprintln!(
        "server {}: read {} records, received {} from peers, wrote {} sorted records in {:.3}s ({} runs spilled)",
        a.server_id,
        stats.input_records,
        stats.received_records,
        stats.output.records,
        start.elapsed().as_secs_f64(),
        stats.output.runs
    );
    Ok(ExitCode::SUCCESS)
}
