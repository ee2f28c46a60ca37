//! `triton files`: a client of the file-server face (read, write, cas,
//! delete; follows `ERR_REDIRECT`) and its load generator (`bench`).

use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use triton_fileserver::loadgen::{self, LoadOptions, PhaseReport, Protocol};
use triton_fileserver::protocol::{check_name, NameError};
use triton_fileserver::{FileClient, Limits, Reply, Request};

#[derive(clap::Args)]
pub struct FilesArgs {
    /// File servers of the cluster, `host:port,...` (any subset; redirects are followed).
    #[arg(
        long,
        env = "TRITON_FILES_ENDPOINTS",
        value_delimiter = ',',
        default_value = "127.0.0.1:8080"
    )]
    pub endpoints: Vec<String>,
    #[command(subcommand)]
    pub op: FilesOp,
}

#[derive(clap::Subcommand)]
pub enum FilesOp {
    /// Print a file's reply: `CONTENTS <version> <numbytes> <exptime>`, then its bytes.
    Read {
        #[arg(value_parser = file_name)]
        name: String,
    },
    /// Write a file from FILE or `-` (stdin).
    Write {
        #[arg(value_parser = file_name)]
        name: String,
        source: PathBuf,
        /// Seconds until the file expires (0: never).
        #[arg(long, default_value_t = 0)]
        exptime: u64,
    },
    /// Compare-and-swap: write iff the file has VERSION.
    Cas {
        #[arg(value_parser = file_name)]
        name: String,
        version: u64,
        source: PathBuf,
        /// Seconds until the file expires (0: never).
        #[arg(long, default_value_t = 0)]
        exptime: u64,
    },
    /// Delete a file.
    Delete {
        #[arg(value_parser = file_name)]
        name: String,
    },
    /// Load generator: write then read `--files` files of `--size` bytes over
    /// `--connections` connections (Triton or memcached protocol).
    Bench {
        #[arg(long, value_enum, default_value_t = BenchProtocol::Triton)]
        protocol: BenchProtocol,
        #[arg(long, default_value_t = 50)]
        connections: usize,
        /// Requests per connection in each phase.
        #[arg(long, default_value_t = 200)]
        ops: usize,
        #[arg(long, default_value_t = 1024)]
        size: usize,
        #[arg(long, default_value_t = 1000)]
        files: usize,
        #[arg(long, default_value_t = 1)]
        seed: u64,
    },
}

#[derive(Clone, Copy, clap::ValueEnum)]
pub enum BenchProtocol {
    Triton,
    Memcached,
}

/// Refuses, with the server's rule, a name that would not travel as one
/// field: `x\r\ndelete y` would send a second request, `a 5` would turn
/// into a write's size.
fn file_name(name: &str) -> Result<String, NameError> {
    check_name(name.as_bytes(), Limits::default().max_filename_bytes)?;
    Ok(name.to_string())
}

fn read_source(path: &PathBuf) -> anyhow::Result<Vec<u8>> {
    if path.as_os_str() == "-" {
        let mut v = Vec::new();
        std::io::stdin().read_to_end(&mut v).context("reading stdin")?;
        Ok(v)
    } else {
        std::fs::read(path).with_context(|| format!("reading {}", path.display()))
    }
}

fn print_phase(what: &str, p: &PhaseReport) {
    println!(
        "{what}: {} ops in {:.2} s = {:.0} ops/s, p50 {:.2} ms, p99 {:.2} ms",
        p.ops,
        p.elapsed.as_secs_f64(),
        p.throughput(),
        p.p50.as_secs_f64() * 1e3,
        p.p99.as_secs_f64() * 1e3
    );
}

pub fn run(args: FilesArgs) -> anyhow::Result<ExitCode> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let req = match args.op {
        FilesOp::Read { name } => Request::Read {
            name: name.into_bytes(),
        },
        FilesOp::Delete { name } => Request::Delete {
            name: name.into_bytes(),
        },
        FilesOp::Write { name, source, exptime } => Request::Write {
            name: name.into_bytes(),
            content: read_source(&source)?,
            exptime_s: exptime,
        },
        FilesOp::Cas {
            name,
            version,
            source,
            exptime,
        } => Request::Cas {
            name: name.into_bytes(),
            version,
            content: read_source(&source)?,
            exptime_s: exptime,
        },
        FilesOp::Bench {
            protocol,
            connections,
            ops,
            size,
            files,
            seed,
        } => {
            let opts = LoadOptions {
                endpoints: args.endpoints,
                protocol: match protocol {
                    BenchProtocol::Triton => Protocol::Triton,
                    BenchProtocol::Memcached => Protocol::Memcached,
                },
                connections,
                ops_per_connection: ops,
                size,
                files,
                seed,
            };
            let report = rt.block_on(loadgen::run(&opts))?;
            print_phase("write", &report.write);
            print_phase("read", &report.read);
            return Ok(ExitCode::SUCCESS);
        }
    };
    let reply = match rt.block_on(async {
        let mut client = FileClient::new(args.endpoints)?;
        client.call(&req).await
    }) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("triton files: {e:#}");
            return Ok(ExitCode::from(2));
        }
    };
    let mut wire = Vec::new();
    reply.encode(&mut wire);
    std::io::stdout().write_all(&wire).context("writing stdout")?;
    Ok(ExitCode::from(match reply {
        r if r.is_success() => 0,
        Reply::FileNotFound | Reply::ErrVersion { .. } => 1,
        _ => 2,
    }))
}
