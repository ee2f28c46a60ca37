//! `triton`: the one binary. Each subcommand lives in `cmd/<name>.rs` and is a
//! thin shell over a library crate under `crates/`; no logic lives here.

use std::io::Write as _;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod cmd;

/// mimalloc instead of the system allocator: the leader's profile under
/// 512 writers spent about 10% of its CPU in glibc malloc/free (per-request
/// gRPC and protobuf buffers); see docs/PERFORMANCE.md.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "triton",
    version,
    about = "Triton: a fault-tolerant distributed storage system"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Benchmarks (measured, never asserted): see docs/BENCHMARKS.md.
    #[command(subcommand)]
    Bench(cmd::bench::BenchCommand),
    /// Serve a SurfStore block store (durable, content-addressed blocks).
    Blockstore(cmd::blockstore::BlockstoreArgs),
    /// File-server client: read, write, cas, delete (follows redirects); bench.
    Files(cmd::files::FilesArgs),
    /// Serve static files over HTTP/1.1 (TritonHTTP), with optional virtual hosts.
    Http(cmd::http::HttpArgs),
    /// Key-value client: get, put, append, del, status.
    Kv(cmd::kv::KvArgs),
    /// Change a running cluster's membership (add-learner, promote, remove)
    /// or move its leadership; list its members.
    Admin(cmd::admin::AdminArgs),
    /// Check a recorded client history (JSON lines) for linearizability.
    Lincheck(cmd::lincheck::LincheckArgs),
    /// Run one node of a Triton cluster.
    Server(cmd::server::ServerArgs),
    /// Run the deterministic Raft cluster simulator: one seed, or a batch (replays failures).
    Sim(cmd::sim::SimArgs),
    /// Sorting 100-byte records: gensort, showsort, valsort, sort, netsort.
    #[command(flatten)]
    Sort(cmd::sort::SortCommand),
    /// SurfStore tools: `surf mapping` prints which block store holds each block.
    #[command(subcommand)]
    Surf(cmd::surf::SurfCommand),
    /// Sync a directory with SurfStore (exit 0 ok, 1 no majority, 64 usage).
    Sync(cmd::surf::SyncArgs),
    /// Start a complete local system (3 nodes, 2 block stores, dashboard) in one terminal.
    Up(cmd::up::UpArgs),
    /// Jepsen-style test: inject faults into a cluster and check the client history is linearizable.
    Verify(cmd::verify::VerifyArgs),
    /// Inspect a node's write-ahead log (read-only).
    Wal(cmd::wal::WalArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    cmd::raise_open_file_limit();
    let result = match cli.command {
        Command::Bench(command) => cmd::bench::run(command),
        Command::Blockstore(args) => cmd::blockstore::run(args),
        Command::Files(args) => cmd::files::run(args),
        Command::Http(args) => cmd::http::run(args),
        Command::Kv(args) => cmd::kv::run(args),
        Command::Admin(args) => cmd::admin::run(args),
        Command::Lincheck(args) => cmd::lincheck::run(args),
        Command::Server(args) => cmd::server::run(args),
        Command::Sim(args) => cmd::sim::run(args),
        Command::Sort(command) => cmd::sort::run(command),
        Command::Surf(command) => cmd::surf::run(command),
        Command::Sync(args) => cmd::surf::run_sync(args),
        Command::Up(args) => cmd::up::run(args),
        Command::Verify(args) => cmd::verify::run_cmd(args),
        Command::Wal(args) => cmd::wal::run(args),
    };
    match result {
        Ok(code) => code,
        Err(err) => {
            // Not `eprintln!`, which panics if stderr cannot be written.
            let _ = writeln!(std::io::stderr(), "triton: error: {err:#}");
            ExitCode::FAILURE
        }
    }
}
