//! `triton lincheck HISTORY.jsonl [--html OUT.html]`: checks a recorded client
//! history for linearizability (see the `triton-lincheck` crate). Exit status:
//! see [`EXIT_CODES`].

use std::fs::File;
use std::io::{BufReader, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use anyhow::Context;
use triton_lincheck::{check_owned, history, CheckOptions, ParseLimits, Verdict};

/// The exit statuses, as `--help` shows them.
const EXIT_CODES: &str = "Exit status: 0 linearizable; 1 NOT linearizable, or the history could not be read \
(a line that is not an operation: every field but \"ret\" is required, \"output\": null for an unknown \
outcome, and no other field is allowed); 2 inconclusive (a key ran out of search budget); 3 nothing to check \
(no operation with a known answer: an empty history proves nothing).";

/// Exit status when the history holds no known answer.
const NOTHING_TO_CHECK: u8 = 3;

#[derive(clap::Args)]
#[command(after_help = EXIT_CODES)]
pub struct LincheckArgs {
    /// History file: one JSON `Operation` per line.
    pub history: PathBuf,
    /// On a violation, write a timeline of the failing key to this HTML file.
    #[arg(long)]
    pub html: Option<PathBuf>,
    /// Model steps allowed per key before giving up as inconclusive.
    #[arg(long, default_value_t = CheckOptions::default().budget_per_key)]
    pub budget: u64,
    /// Skip shrinking a violation to a small failing sub-history.
    #[arg(long)]
    pub no_minimize: bool,
    /// Refuse a history file larger than this many bytes (its operations
    /// take about as much memory again).
    #[arg(long, default_value_t = history::DEFAULT_MAX_TOTAL_BYTES)]
    pub max_bytes: u64,
}

pub fn run(args: LincheckArgs) -> anyhow::Result<ExitCode> {
    let file = File::open(&args.history).with_context(|| format!("opening {}", args.history.display()))?;
    let limits = ParseLimits {
        max_total_bytes: args.max_bytes,
        ..ParseLimits::default()
    };
    let ops = history::parse_jsonl(BufReader::new(file), limits)
        .with_context(|| format!("reading {}", args.history.display()))?;
    let known = ops.iter().filter(|op| op.output.is_some()).count();
    let unknown = ops.len() - known;
    let opts = CheckOptions {
        budget_per_key: args.budget,
        minimize: !args.no_minimize,
        ..CheckOptions::default()
    };
    let mut out = std::io::stdout().lock();
    writeln!(
        out,
        "{} operations: {known} with a known answer, {unknown} with an unknown outcome",
        ops.len()
    )?;
    if known == 0 {
        // Unknown outcomes may all be taken as never having happened: such a
        // history is linearizable whatever the store did.
        writeln!(
            out,
            "nothing to check: no operation has a known answer (is this the right file, with an \"output\" on every line?)"
        )?;
        return Ok(ExitCode::from(NOTHING_TO_CHECK));
    }
    let started = Instant::now();
    let report = check_owned(ops, &opts).with_context(|| format!("checking {}", args.history.display()))?;
    let elapsed = started.elapsed();
    let steps: u64 = report.per_key.iter().map(|k| k.steps).sum();
    writeln!(
        out,
        "{} operations on {} keys, {} search steps, {:.3} s",
        report.operations,
        report.per_key.len(),
        steps,
        elapsed.as_secs_f64()
    )?;
    for key in report.unknown_keys() {
        writeln!(
            out,
            "key {:?}: inconclusive ({} operations, search budget of {} steps exhausted)",
            key.key, key.operations, args.budget
        )?;
    }
    match report.verdict {
        Verdict::Linearizable => {
            writeln!(out, "linearizable")?;
            Ok(ExitCode::SUCCESS)
        }
        Verdict::Unknown => {
            writeln!(
                out,
                "inconclusive: no violation found, but not every key could be checked"
            )?;
            Ok(ExitCode::from(2))
        }
        Verdict::Violation => {
            let mut html_written = false;
            for key in report.violations() {
                let Some(v) = &key.violation else { continue };
                writeln!(
                    out,
                    "key {:?}: NOT linearizable ({} operations); no order of these {} explains what the clients saw{}:",
                    key.key,
                    key.operations,
                    v.minimal.len(),
                    if v.minimize_capped {
                        " (minimization stopped at its attempt cap)"
                    } else {
                        ""
                    }
                )?;
                for op in &v.minimal {
                    let ret = op
                        .effective_ret()
                        .map_or_else(|| "never".to_string(), |r| r.to_string());
                    writeln!(
                        out,
                        "  client {:>4}  [{:>14} .. {:>14}]  {}",
                        op.client,
                        op.call,
                        ret,
                        op.label()
                    )?;
                }
                writeln!(out, "  as JSON lines (re-check with `triton lincheck FILE`):")?;
                history::write_jsonl(&mut out, &v.minimal)?;
                if let (Some(path), false) = (&args.html, html_written) {
                    let page = key.render_html().unwrap_or_default();
                    std::fs::write(path, page).with_context(|| format!("writing {}", path.display()))?;
                    writeln!(out, "  timeline written to {}", path.display())?;
                    html_written = true;
                }
            }
            Ok(ExitCode::FAILURE)
        }
    }
}
