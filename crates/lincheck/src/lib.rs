//! `triton-lincheck`: decides whether a recorded history of client requests
//! against Triton's key-value store is linearizable, i.e. whether some single
//! order of the requests, each placed inside its own call-to-return interval,
//! explains every answer the clients got.
//!
//! * [`history`]: the data model ([`Operation`], [`Input`], [`Output`]) and
//!   the JSON-lines file format.
//! * [`model`]: the per-key sequential specification, including how versions
//!   are checked when unknown-outcome writes hide them.
//! * [`search`]: Wing-Gong search with Lowe's memoization, with a budget.
//! * [`minimize`]: shrinking a violation to a small failing sub-history.
//! * [`html`]: drawing it on a timeline.
//! * [`prune`]: leaving out unknown-outcome operations that cannot matter.
//! * [`gen`]: random valid histories, for tests and benchmarks.
//!
//! Assumptions: every key starts missing (check histories of fresh keys);
//! all `call`/`ret` times come from one monotonic clock; a call and a return
//! at the same instant are taken as concurrent (the permissive reading).
//!
//! Keys are independent (a register per key is a P-compositional model), so
//! [`check`] splits the history per key and searches the keys in parallel. A
//! key whose search exceeds its budget is reported [`Verdict::Unknown`], never
//! as linearizable.
//!
//! ```
//! use triton_lincheck::{check, CheckOptions, Input, Operation, Output, Verdict};
//!
//! let op = |client, input, output, call, ret| Operation {
//!     client,
//!     key: "k".into(),
//!     input,
//!     output: Some(output),
//!     call,
//!     ret: Some(ret),
//! };
//! let history = vec![
//!     op(1, Input::Put { value: "a".into() }, Output::Put { version: 7 }, 0, 10),
//!     // The put had completed, yet the key reads as missing: a stale read.
//!     op(2, Input::Get, Output::Get { value: None, version: 0 }, 20, 30),
//! ];
//! let report = check(&history, &CheckOptions::default());
//! assert_eq!(report.verdict, Verdict::Violation);
//! let key = report.violations().next().unwrap();
//! assert_eq!(key.violation.as_ref().unwrap().minimal.len(), 2);
//! assert!(key.render_html().unwrap().contains("<svg"));
//! ```

pub mod gen;
pub mod history;
pub mod html;
pub mod minimize;
pub mod model;
pub mod prune;
pub mod search;

use std::collections::BTreeMap;

use rayon::prelude::*;
use serde::{Deserialize, Serialize};

pub use history::{parse_jsonl, HistoryError, Input, Operation, Output, ParseLimits};
pub use html::render_html;
pub use minimize::MinimizeOptions;

use model::CompiledOp;
use search::{check_ops, SearchOutcome};

/// Knobs for [`check`].
#[derive(Clone, Copy, Debug)]
pub struct CheckOptions {
    /// Model steps allowed per key before giving up with `Unknown` (about
    /// a second per million on one core). Pruning before the search may do
    /// [`prune::WORK_PER_STEP`] times as many (much cheaper) units of work
    /// before it gives up and leaves the search everything.
    pub budget_per_key: u64,
    /// Approximate bytes the search of one key may hold before giving up
    /// with `Unknown` (keys run in parallel, one per rayon thread).
    pub memory_per_key: usize,
    /// Shrink violations to a small failing sub-history.
    pub minimize: bool,
    /// Limits of that shrinking.
    pub minimize_options: MinimizeOptions,
    /// Check keys in parallel (rayon).
    pub parallel: bool,
    /// Most operations of a violating key kept as timeline context around
    /// the minimal failing sub-history.
    pub max_context_ops: usize,
}

impl Default for CheckOptions {
    fn default() -> Self {
        CheckOptions {
            budget_per_key: 5_000_000,
            memory_per_key: 512 << 20,
            minimize: true,
            minimize_options: MinimizeOptions::default(),
            parallel: true,
            max_context_ops: 300,
        }
    }
}

/// The conclusion for a key or a whole history.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Verdict {
    /// Some order explains every answer.
    Linearizable,
    /// No order does.
    Violation,
    /// The search budget ran out: nothing is claimed.
    Unknown,
}

/// Evidence for a violation on one key.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Violation {
    /// The smallest failing sub-history found, by call time. It violates on
    /// its own (re-checking it gives [`Verdict::Violation`]).
    pub minimal: Vec<Operation>,
    /// Operations of the key around `minimal` (including it), for display.
    pub context: Vec<Operation>,
    /// Indices into `context` of the operations of `minimal`.
    pub highlight: Vec<usize>,
    /// Searches run while minimizing.
    pub minimize_attempts: usize,
    /// True if minimization stopped at its attempt cap (so `minimal` may
    /// still hold operations that do not matter).
    pub minimize_capped: bool,
}

/// The result for one key.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyReport {
    /// The key.
    pub key: String,
    /// Its verdict.
    pub verdict: Verdict,
    /// Operations on it.
    pub operations: usize,
    /// Model steps the search took.
    pub steps: u64,
    /// Present iff `verdict` is `Violation`.
    pub violation: Option<Violation>,
}

impl KeyReport {
    /// The HTML timeline of this key's violation, if it has one.
    pub fn render_html(&self) -> Option<String> {
        let v = self.violation.as_ref()?;
        Some(render_html(&self.key, &v.context, &v.highlight))
    }
}

/// The result for a whole history.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Report {
    /// `Violation` if any key violates, else `Unknown` if any key ran out of
    /// budget, else `Linearizable`.
    pub verdict: Verdict,
    /// One entry per key, sorted by key.
    pub per_key: Vec<KeyReport>,
    /// Operations checked.
    pub operations: usize,
}

impl Report {
    /// Keys with a violation.
    pub fn violations(&self) -> impl Iterator<Item = &KeyReport> {
        self.per_key.iter().filter(|k| k.verdict == Verdict::Violation)
    }

    /// Keys whose search ran out of budget.
    pub fn unknown_keys(&self) -> impl Iterator<Item = &KeyReport> {
        self.per_key.iter().filter(|k| k.verdict == Verdict::Unknown)
    }
}

/// Checks `history` for linearizability, key by key.
///
/// # Panics
///
/// If an operation fails [`history::validate`] (parsed histories never do):
/// an impossible operation could be left out of the search unchecked. Use
/// [`try_check`] for an error instead.
pub fn check(history: &[Operation], opts: &CheckOptions) -> Report {
    try_check(history, opts).unwrap_or_else(|e| panic!("triton_lincheck::check: invalid history: {e}"))
}

/// [`check`], refusing with an error a history with an operation that fails
/// [`history::validate`].
pub fn try_check(history: &[Operation], opts: &CheckOptions) -> Result<Report, HistoryError> {
    validate_all(history)?;
    let mut by_key: BTreeMap<&str, Vec<Operation>> = BTreeMap::new();
    for op in history {
        by_key.entry(&op.key).or_default().push(op.clone());
    }
    let keys = by_key.into_iter().map(|(k, ops)| (k.to_string(), ops)).collect();
    Ok(check_keys(keys, history.len(), opts))
}

/// [`try_check`] taking the history by value: each operation moves into its
/// key's group instead of being copied, so a large history is not held twice.
pub fn check_owned(history: Vec<Operation>, opts: &CheckOptions) -> Result<Report, HistoryError> {
    validate_all(&history)?;
    let operations = history.len();
    let mut by_key: BTreeMap<String, Vec<Operation>> = BTreeMap::new();
    for op in history {
        match by_key.get_mut(&op.key) {
            Some(ops) => ops.push(op),
            None => {
                by_key.insert(op.key.clone(), vec![op]);
            }
        }
    }
    Ok(check_keys(by_key.into_iter().collect(), operations, opts))
}

fn validate_all(history: &[Operation]) -> Result<(), HistoryError> {
    for (index, op) in history.iter().enumerate() {
        history::validate(op).map_err(|reason| HistoryError::InvalidOperation { index, reason })?;
    }
    Ok(())
}

/// Checks every key's group of (valid) operations.
fn check_keys(mut keys: Vec<(String, Vec<Operation>)>, operations: usize, opts: &CheckOptions) -> Report {
    // By call time: the search's memo stores linearized sets compactly when
    // operation numbers follow time.
    for (_, ops) in keys.iter_mut() {
        ops.sort_by_key(|op| (op.call, op.effective_ret().unwrap_or(u64::MAX)));
    }
    let per_key: Vec<KeyReport> = if opts.parallel {
        keys.par_iter().map(|(key, ops)| check_key(key, ops, opts)).collect()
    } else {
        keys.iter().map(|(key, ops)| check_key(key, ops, opts)).collect()
    };
    let verdict = if per_key.iter().any(|k| k.verdict == Verdict::Violation) {
        Verdict::Violation
    } else if per_key.iter().any(|k| k.verdict == Verdict::Unknown) {
        Verdict::Unknown
    } else {
        Verdict::Linearizable
    };
    Report {
        verdict,
        per_key,
        operations,
    }
}

/// Parses a JSON-lines history from `data` and checks it: the whole pipeline
/// of `triton lincheck`, as one function the fuzz target calls.
pub fn check_jsonl(data: &[u8], limits: ParseLimits, opts: &CheckOptions) -> Result<Report, HistoryError> {
    let ops = parse_jsonl(data, limits)?;
    check_owned(ops, opts)
}

/// [`check_jsonl`] with small limits (256 operations, 4 KiB lines, 20 000
/// steps per key, 30 minimization attempts): what the fuzz target runs on
/// arbitrary bytes, and what its checked-in corpus runs through in
/// `cargo test`. Also asserts the checker's own invariant that a reported
/// minimal sub-history is never judged linearizable on its own.
pub fn check_jsonl_quick(data: &[u8]) -> Result<Report, HistoryError> {
    let limits = ParseLimits {
        max_line_bytes: 4096,
        max_operations: 256,
        max_total_bytes: 1 << 20,
    };
    let opts = CheckOptions {
        budget_per_key: 20_000,
        memory_per_key: 16 << 20,
        minimize_options: MinimizeOptions {
            max_attempts: 30,
            budget_per_attempt: 5_000,
            max_total_steps: 100_000,
        },
        parallel: false,
        ..CheckOptions::default()
    };
    let report = check_jsonl(data, limits, &opts)?;
    for key in report.violations() {
        let v = key.violation.as_ref().expect("a violating key has evidence");
        assert!(!v.minimal.is_empty(), "empty minimal sub-history");
        let recheck = check(&v.minimal, &opts);
        assert_ne!(
            recheck.verdict,
            Verdict::Linearizable,
            "minimal sub-history judged linearizable: {:?}",
            v.minimal
        );
        let _ = key.render_html();
    }
    Ok(report)
}

/// Checks the operations of one key.
pub fn check_key(key: &str, ops: &[Operation], opts: &CheckOptions) -> KeyReport {
    // Unknown-outcome reads, and unknown-outcome writes nobody can have
    // seen, cannot matter: leave them out of the search (see `prune`).
    // Unknown-outcome writes a read proves took effect get that read's
    // return as a deadline.
    // Pruning runs before the search, within a work limit of its own
    // proportional to the search's.
    let prune_work = opts.budget_per_key.saturating_mul(prune::WORK_PER_STEP);
    let needed = prune::needed(ops, prune_work);
    let deadlines = prune::deadlines(ops, prune_work);
    let compiled: Vec<CompiledOp> = ops
        .iter()
        .zip(needed.iter().zip(&deadlines))
        .filter(|(_, (&n, _))| n)
        .map(|(op, (_, &deadline))| {
            let mut compiled = CompiledOp::new(op);
            if compiled.output.is_none() && deadline.is_some() {
                compiled.ret = deadline;
            }
            compiled
        })
        .collect();
    let budget = search::Budget {
        steps: opts.budget_per_key,
        memory_bytes: opts.memory_per_key,
    };
    let result = check_ops(&compiled, budget);
    let verdict = match result.outcome {
        SearchOutcome::Linearizable => Verdict::Linearizable,
        SearchOutcome::Violation => Verdict::Violation,
        SearchOutcome::Unknown => Verdict::Unknown,
    };
    let violation = (verdict == Verdict::Violation).then(|| violation_evidence(ops, opts, result.steps));
    KeyReport {
        key: key.to_string(),
        verdict,
        operations: ops.len(),
        steps: result.steps,
        violation,
    }
}

fn violation_evidence(ops: &[Operation], opts: &CheckOptions, full_steps: u64) -> Violation {
    let (kept, attempts, capped) = if opts.minimize {
        let prefix_budget = full_steps.saturating_mul(4).min(opts.budget_per_key);
        let m = minimize::minimize(ops, opts.minimize_options, prefix_budget);
        (m.kept, m.attempts, m.capped)
    } else {
        ((0..ops.len()).collect(), 0, false)
    };
    let minimal: Vec<Operation> = kept.iter().map(|&i| ops[i].clone()).collect();
    // Context: operations overlapping the minimal ones' time span.
    let start = minimal.iter().map(|op| op.call).min().unwrap_or(0);
    let end = minimal
        .iter()
        .map(|op| op.effective_ret().unwrap_or(u64::MAX))
        .max()
        .unwrap_or(u64::MAX);
    let mut context_idx: Vec<usize> = (0..ops.len())
        .filter(|&i| ops[i].call <= end && ops[i].effective_ret().is_none_or(|r| r >= start))
        .collect();
    if context_idx.len() > opts.max_context_ops.max(kept.len()) {
        context_idx = kept.clone();
    }
    context_idx.sort_by_key(|&i| (ops[i].call, i));
    let context: Vec<Operation> = context_idx.iter().map(|&i| ops[i].clone()).collect();
    let highlight: Vec<usize> = context_idx
        .iter()
        .enumerate()
        .filter(|(_, i)| kept.contains(i))
        .map(|(pos, _)| pos)
        .collect();
    Violation {
        minimal,
        context,
        highlight,
        minimize_attempts: attempts,
        minimize_capped: capped,
    }
}
