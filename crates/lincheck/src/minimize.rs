//! Shrinking a violating per-key history to a small one that still violates,
//! so a person can see the anomaly in a handful of operations.
//!
//! Three passes, each step re-running the search with a small budget (a step
//! whose check runs out of budget is simply not taken), under a cap on the
//! number of checks:
//!
//! 1. **Time prefix.** For a time `T`, the prefix keeps the operations called
//!    by `T`, with those still running at `T` turned into unknown-outcome
//!    operations. Any linearization of the whole history restricts to one of
//!    the prefix, so a violating prefix proves the whole history violates, and
//!    prefixes only get easier to explain as `T` shrinks: binary search finds
//!    the earliest violating one. Unknown-outcome operations are then dropped
//!    (they can always be linearized last, so they cannot rescue anything),
//!    except writes a kept operation [`observes`]: without them the reader
//!    would show a made-up anomaly (a value nobody wrote) instead of the
//!    original one. If the rest violates before the earliest violating
//!    prefix did, every unknown operation stays.
//! 2. **Whole clients**, then 3. **chunks of operations** halving down to
//!    single ones (delta debugging), latest first. Dropping a read only
//!    removes a constraint, but dropping a write can make a read that saw it
//!    unexplainable and fabricate an anomaly ("read of a value nobody
//!    wrote"). So a candidate is accepted only if it violates both as it is
//!    and with the dropped writes put back with their answers ignored (each
//!    took effect somewhere inside its interval, any outcome), and never while
//!    a kept operation [`observes`] a dropped write (read its value or
//!    version), nor when the
//!    candidate already violates before the time the earliest violating
//!    prefix of pass 1 completed (an earlier anomaly is made up). The result
//!    always violates on its own; that it shows the *original* anomaly is a
//!    well-founded heuristic, not a proof.

use std::collections::BTreeMap;

use crate::history::{Input, Operation, Output};
use crate::model::CompiledOp;
use crate::search::{check_ops, Budget, SearchOutcome};

/// Limits for [`minimize`].
#[derive(Clone, Copy, Debug)]
pub struct MinimizeOptions {
    /// Most searches run while minimizing.
    pub max_attempts: usize,
    /// Model steps allowed to each of those searches (but see
    /// [`minimize`]'s `prefix_budget`).
    pub budget_per_attempt: u64,
    /// Model steps allowed to all of them together.
    pub max_total_steps: u64,
}

impl Default for MinimizeOptions {
    fn default() -> Self {
        MinimizeOptions {
            max_attempts: 600,
            budget_per_attempt: 100_000,
            max_total_steps: 20_000_000,
        }
    }
}

/// The outcome of [`minimize`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Minimized {
    /// Indices into the input slice of the operations kept, by call time.
    pub kept: Vec<usize>,
    /// Searches run.
    pub attempts: usize,
    /// True if the attempt cap stopped minimization early.
    pub capped: bool,
}

struct Shrinker<'a> {
    ops: &'a [Operation],
    compiled: &'a [CompiledOp],
    /// A time up to which the history was shown linearizable (the return
    /// before the earliest violating prefix), if pass 1 found one.
    clean_until: Option<u64>,
    opts: MinimizeOptions,
    attempts: usize,
    total_steps: u64,
}

impl Shrinker<'_> {
    fn out_of_attempts(&self) -> bool {
        self.attempts >= self.opts.max_attempts || self.total_steps >= self.opts.max_total_steps
    }

    fn search(&mut self, ops: &[CompiledOp], steps: u64) -> SearchOutcome {
        self.attempts += 1;
        let result = check_ops(ops, Budget::steps(steps));
        self.total_steps += result.steps;
        result.outcome
    }

    fn violates(&mut self, ops: &[CompiledOp]) -> bool {
        self.search(ops, self.opts.budget_per_attempt) == SearchOutcome::Violation
    }

    /// Whether `kept` violates, and no earlier than the original did.
    fn violates_on_time(&mut self, kept: &[CompiledOp]) -> bool {
        if !self.violates(kept) {
            return false;
        }
        match self.clean_until {
            // A violation completing earlier was made up by the dropping.
            Some(t) => {
                let early: Vec<CompiledOp> = prefix(kept, t).into_iter().map(|(_, op)| op).collect();
                self.search(&early, self.opts.budget_per_attempt) == SearchOutcome::Linearizable
            }
            None => true,
        }
    }

    /// Would dropping `dropped` from `current` still leave a violation, both
    /// as it is and with the dropped writes put back with their answers
    /// ignored (each took effect inside its interval, with any outcome)?
    fn can_drop(&mut self, current: &[(usize, CompiledOp)], dropped: &[usize]) -> bool {
        // Never drop a write that a remaining operation saw.
        for &d in dropped {
            let (w, wop) = current[d];
            if !wop.may_write() {
                continue;
            }
            let seen = current
                .iter()
                .enumerate()
                .any(|(pos, (r, _))| dropped.binary_search(&pos).is_err() && observes(&self.ops[*r], &self.ops[w]));
            if seen {
                return false;
            }
        }
        let kept: Vec<CompiledOp> = current
            .iter()
            .enumerate()
            .filter(|(pos, _)| dropped.binary_search(pos).is_err())
            .map(|(_, (_, op))| *op)
            .collect();
        if !self.violates_on_time(&kept) {
            return false;
        }
        let mut with_writes = kept;
        let before = with_writes.len();
        if dropped.len() > MAX_REINSERTED {
            // Too many to re-add cheaply; the other guards stand alone.
            return true;
        }
        with_writes.extend(
            dropped
                .iter()
                .map(|&pos| current[pos].1)
                .filter(CompiledOp::may_write)
                .map(CompiledOp::with_output_ignored),
        );
        with_writes.len() == before || self.out_of_attempts() || self.violates(&with_writes)
    }
}

/// Whether `reader`'s output shows a trace of `writer`: it read a value
/// containing what `writer` wrote, reported or relied on the version `writer`
/// created. Conservative (may say yes for a coincidence), which only
/// keeps more operations.
pub fn observes(reader: &Operation, writer: &Operation) -> bool {
    let written: Option<&str> = match &writer.input {
        Input::Put { value } | Input::Append { value } | Input::Cas { value, .. } => Some(value),
        Input::Get | Input::Delete => None,
    };
    let created_version = match writer.output {
        Some(Output::Put { version }) | Some(Output::Append { version }) | Some(Output::Cas { ok: true, version }) => {
            Some(version)
        }
        _ => None,
    };
    let (read_value, read_version) = match (&reader.input, &reader.output) {
        (_, Some(Output::Get { value, version })) => (value.as_deref(), Some(*version)),
        (_, Some(Output::Cas { ok: false, version })) => (None, Some(*version)),
        (Input::Cas { expected_version, .. }, Some(Output::Cas { ok: true, .. })) => (None, Some(*expected_version)),
        _ => (None, None),
    };
    let value_seen = matches!((read_value, written), (Some(r), Some(w)) if r.contains(w));
    let version_seen = matches!((read_version, created_version), (Some(r), Some(c)) if r == c && c != 0);
    value_seen || version_seen
}

/// Largest chunk whose writes are put back (answers ignored) to check a drop.
const MAX_REINSERTED: usize = 64;

fn prefix(compiled: &[CompiledOp], t: u64) -> Vec<(usize, CompiledOp)> {
    compiled
        .iter()
        .enumerate()
        .filter(|(_, op)| op.call <= t)
        .map(|(i, op)| match op.ret {
            Some(r) if r <= t => (i, *op),
            _ => (i, op.as_unknown()),
        })
        .collect()
}

/// Shrinks `ops` (one key's history, known to violate) to a small violating
/// sub-history. If the full history cannot be shown to violate within the
/// per-attempt budget, only the passes that could be checked are applied.
///
/// `prefix_budget` is the step budget of each search of pass 1, which checks
/// prefixes about as large as the whole history: give it a few times the
/// steps the full check took.
pub fn minimize(ops: &[Operation], opts: MinimizeOptions, prefix_budget: u64) -> Minimized {
    let compiled: Vec<CompiledOp> = ops.iter().map(CompiledOp::new).collect();
    let mut sh = Shrinker {
        ops,
        compiled: &compiled,
        clean_until: None,
        opts,
        attempts: 0,
        total_steps: 0,
    };

    // Pass 1: earliest violating time prefix (binary search over return times).
    let mut rets: Vec<u64> = sh.compiled.iter().filter_map(|op| op.ret).collect();
    rets.sort_unstable();
    rets.dedup();
    let mut current: Vec<(usize, CompiledOp)> = sh.compiled.iter().copied().enumerate().collect();
    let (mut lo, mut hi) = (0usize, rets.len());
    // Invariant: prefixes before index `lo` were not shown to violate; the
    // prefix at `hi` (or the whole history when hi == len) violates.
    while lo < hi && !sh.out_of_attempts() {
        let mid = lo + (hi - lo) / 2;
        let candidate = prefix(sh.compiled, rets[mid]);
        let test: Vec<CompiledOp> = candidate.iter().map(|(_, op)| *op).collect();
        if sh.search(&test, prefix_budget.max(opts.budget_per_attempt)) == SearchOutcome::Violation {
            hi = mid;
            current = candidate;
        } else {
            lo = mid + 1;
        }
    }
    if hi < rets.len() && hi > 0 {
        sh.clean_until = Some(rets[hi - 1]);
    }
    // Unknown outcomes can always be linearized last: they never explain away
    // a violation, so dropping them keeps one. But not necessarily the same
    // one: a read that saw an unknown write's value would become a read of a
    // value nobody wrote, a new anomaly that may complete before the original
    // did (which also leaves later passes unable to drop anything, since
    // every candidate then violates too early). So unknown writes that a kept
    // operation observes stay, shown as unknown; and if what is left still
    // violates too early (an unknown write seen only through its effect on
    // versions, or an unknown delete), every unknown operation stays.
    let known: Vec<(usize, CompiledOp)> = current
        .iter()
        .copied()
        .filter(|(w, op)| {
            op.output.is_some()
                || (op.may_write()
                    && current
                        .iter()
                        .any(|(r, rop)| rop.output.is_some() && observes(&ops[*r], &ops[*w])))
        })
        .collect();
    if known.len() < current.len() {
        let test: Vec<CompiledOp> = known.iter().map(|(_, op)| *op).collect();
        if sh.violates_on_time(&test) {
            current = known;
        }
    }

    // Pass 1b: the anomaly is usually local in time. Keep only the latest
    // `window` operations (doubling), plus every earlier write they observe
    // (transitively), as long as that still violates, on time.
    let mut window = 16usize;
    while window < current.len() && !sh.out_of_attempts() {
        let start = current.len() - window;
        let mut keep = vec![false; current.len()];
        keep[start..].iter_mut().for_each(|k| *k = true);
        let mut frontier: Vec<usize> = (start..current.len()).collect();
        while let Some(r) = frontier.pop() {
            for w in 0..start {
                if !keep[w] && observes(&ops[current[r].0], &ops[current[w].0]) {
                    keep[w] = true;
                    frontier.push(w);
                }
            }
        }
        let kept_count = keep.iter().filter(|&&k| k).count();
        if kept_count <= 4 * window {
            let candidate: Vec<(usize, CompiledOp)> =
                current.iter().zip(&keep).filter(|(_, &k)| k).map(|(c, _)| *c).collect();
            let test: Vec<CompiledOp> = candidate.iter().map(|(_, op)| *op).collect();
            if sh.violates_on_time(&test) {
                current = candidate;
                break;
            }
        }
        window *= 2;
    }

    // Pass 2: whole clients, the busiest first.
    let mut by_client: BTreeMap<u64, usize> = BTreeMap::new();
    for (i, _) in &current {
        *by_client.entry(ops[*i].client).or_default() += 1;
    }
    let mut clients: Vec<(u64, usize)> = by_client.into_iter().collect();
    clients.sort_by_key(|&(client, count)| (std::cmp::Reverse(count), client));
    if clients.len() > 1 {
        for (client, _) in clients {
            if sh.out_of_attempts() {
                break;
            }
            let dropped: Vec<usize> = current
                .iter()
                .enumerate()
                .filter(|(_, (i, _))| ops[*i].client == client)
                .map(|(pos, _)| pos)
                .collect();
            if dropped.len() < current.len() && sh.can_drop(&current, &dropped) {
                remove_positions(&mut current, &dropped);
            }
        }
    }

    // Pass 3: chunks, halving down to single operations, latest first: a
    // write can only go once nothing kept observes it, and observers come
    // later, so walking backwards unravels chains of writes in one sweep.
    // Single operations are swept again until nothing more goes (an observer
    // may sit before what it observed, so one sweep can leave a droppable
    // write behind).
    let mut chunk = (current.len() / 2).max(1);
    loop {
        let mut end = current.len();
        let mut progress = false;
        while end > 0 && !sh.out_of_attempts() {
            let start = end.saturating_sub(chunk);
            if end - start == current.len() {
                break; // never drop everything
            }
            let dropped: Vec<usize> = (start..end).collect();
            if sh.can_drop(&current, &dropped) {
                remove_positions(&mut current, &dropped);
                progress = true;
            }
            end = start;
        }
        if sh.out_of_attempts() || (chunk == 1 && !progress) {
            break;
        }
        chunk = (chunk / 2).max(1);
    }

    let mut kept: Vec<usize> = current.iter().map(|(i, _)| *i).collect();
    kept.sort_by_key(|&i| (ops[i].call, i));
    Minimized {
        kept,
        attempts: sh.attempts,
        capped: sh.out_of_attempts(),
    }
}

fn remove_positions(current: &mut Vec<(usize, CompiledOp)>, sorted_positions: &[usize]) {
    let mut pos = 0usize;
    current.retain(|_| {
        let keep = sorted_positions.binary_search(&pos).is_err();
        pos += 1;
        keep
    });
}
