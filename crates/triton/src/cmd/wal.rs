//! `triton wal dump DIR`: a read-only look at a node's WAL directory
//! (segments, records, hard state, snapshot metadata, damage with offsets).
//! The logic lives in `triton_storage::inspect`.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Subcommand};
use triton_storage::WalOptions;

/// `triton wal ...`
#[derive(Args)]
pub struct WalArgs {
    #[command(subcommand)]
    command: WalCommand,
}

#[derive(Subcommand)]
enum WalCommand {
    /// Print the segments, records, hard state and snapshot metadata of a WAL
    /// directory. Read-only: never repairs anything. Exits 2 if damage is found.
    Dump(DumpArgs),
}

#[derive(Args)]
struct DumpArgs {
    /// The WAL directory.
    dir: PathBuf,
    /// Only per-segment totals, not every record.
    #[arg(long)]
    summary: bool,
    /// Largest record body to accept. The default is the node's own limit
    /// (`triton_storage::MAX_RECORD_BYTES`): a smaller one reports a healthy
    /// log with larger records as damaged.
    #[arg(long, default_value_t = triton_storage::MAX_RECORD_BYTES)]
    max_record_bytes: u32,
}

/// Runs a `triton wal` subcommand.
pub fn run(args: WalArgs) -> anyhow::Result<ExitCode> {
    match args.command {
        WalCommand::Dump(a) => {
            let opts = WalOptions {
                max_record_bytes: a.max_record_bytes,
                ..WalOptions::default()
            };
            let stdout = std::io::stdout();
            let mut out = std::io::BufWriter::new(stdout.lock());
            let summary = triton_storage::inspect::dump(&a.dir, &opts, !a.summary, &mut out)
                .with_context(|| format!("dumping {}", a.dir.display()))?;
            writeln!(
                out,
                "{} segments, {} records, {} problems",
                summary.segments, summary.records, summary.problems
            )?;
            out.flush()?;
            Ok(if summary.problems > 0 {
                ExitCode::from(2)
            } else {
                ExitCode::SUCCESS
            })
        }
    }
}
