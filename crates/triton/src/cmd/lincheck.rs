//! `triton lincheck HISTORY.jsonl [--html OUT.html]`: checks a recorded client
//! history for linearizability (see the `triton-lincheck` crate). Exit status:
//! 0 linearizable, 1 violation (or an unreadable history), 2 inconclusive
//! (a key ran out of search budget).

use std::fs::File;
use std::io::{BufReader, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use anyhow::Context;
use triton_lincheck::{check, history, CheckOptions, ParseLimits, Verdict};

#[derive(clap::Args)]
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
}

pub fn run(args: LincheckArgs) -> anyhow::Result<ExitCode> {
    let file = File::open(&args.history).with_context(|| format!("opening {}", args.history.display()))?;
    let ops = history::parse_jsonl(BufReader::new(file), ParseLimits::default())
        .with_context(|| format!("reading {}", args.history.display()))?;
    let opts = CheckOptions {
        budget_per_key: args.budget,
        minimize: !args.no_minimize,
        ..CheckOptions::default()
    };
    let mut out = std::io::stdout().lock();
    let started = Instant::now();
    let report = check(&ops, &opts);
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
