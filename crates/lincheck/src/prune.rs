//! Leaving out unknown-outcome writes that provably cannot matter.
//!
//! An operation with an unknown outcome stays pending forever in the search
//! (it may take effect at any time, or never), which multiplies the
//! configurations to explore; a history with a violation and many such
//! operations can then exhaust the budget. Most of them either never took
//! effect or were overwritten before anyone looked. An unknown-outcome write
//! `W` (Put, Append or Cas) is left out when nothing recorded could depend on
//! it:
//!
//! 1. no read that returned after `W` was called saw a value containing the
//!    string `W` writes (nobody saw its value, or a value built on it);
//! 2. no successful delete that returned after `W` was called might have
//!    needed `W` to find the key present (one is fine if a known write
//!    certainly precedes it with no other delete possibly in between);
//! 3. no operation that stays in the search relied on a version no
//!    known-outcome write created (a failed compare-and-set's reported
//!    version, a compare-and-set's expected version) that `W` may have
//!    created: called before that operation returned, and after every known
//!    write with a version at least as large had returned. (A read's version
//!    needs no rule: it belongs to the write whose value the read saw, which
//!    rule 1 keeps.)
//!
//! Why this is sound: take a linearization of the real execution in which
//! `W` took effect, and drop `W`. Between `W` and the next overwrite, no
//! operation observed `W` (by 1-3), unknown-outcome operations can be moved to
//! the end, and afterwards the model's state is the same except that the
//! greatest version so far is no larger, which only loosens later checks.
//!
//! **Cost.** Both functions here run before the search and outside its step
//! budget, so they take a work limit of their own (`max_work`, see
//! [`WORK_PER_STEP`]). What does not depend on unknown-outcome operations is
//! O(n log n); what does is up to O(unknown × n) comparisons, each charged
//! against the limit (one unit, plus one per 64 bytes of strings compared).
//! Past the limit they give up and prune nothing, which is always sound: the
//! search then merely has more pending operations to consider.

use std::collections::{HashMap, HashSet};

use crate::history::{Input, Operation, Output};

/// Units of pruning work allowed per step of the search budget: a unit (a
/// comparison of two operations) costs a few nanoseconds, a model step about
/// a microsecond, so pruning can never take much longer than the search it
/// serves may.
pub const WORK_PER_STEP: u64 = 64;

/// What is left of a work limit.
struct Work(u64);

impl Work {
    /// Spends `units`; `None` once the limit is passed.
    fn charge(&mut self, units: u64) -> Option<()> {
        self.0 = self.0.checked_sub(units)?;
        Some(())
    }

    /// Spends one unit for comparing two strings, plus one per 64 bytes.
    fn charge_strings(&mut self, a: &str, b: &str) -> Option<()> {
        self.charge(1 + (a.len() + b.len()) as u64 / 64)
    }
}

fn is_unknown_write(op: &Operation) -> bool {
    op.output.is_none() && matches!(op.input, Input::Put { .. } | Input::Append { .. } | Input::Cas { .. })
}

fn is_known_write(op: &Operation) -> bool {
    matches!(
        op.output,
        Some(Output::Put { .. }) | Some(Output::Append { .. }) | Some(Output::Cas { ok: true, .. })
    )
}

/// For each operation, whether the search needs it (`false` = an
/// unknown-outcome operation that cannot matter, see the module docs). All
/// the unneeded ones are left out together: a left-out compare-and-set never
/// took effect in the reduced execution, so it cannot have relied on another
/// left-out write's version either.
///
/// If that takes more than about `max_work` units of work (see the module
/// docs), only unknown-outcome reads are left out.
pub fn needed(ops: &[Operation], max_work: u64) -> Vec<bool> {
    // Unknown-outcome reads have no effect and no answer: never needed.
    let keep_all: Vec<bool> = ops
        .iter()
        .map(|op| !(op.input == Input::Get && op.output.is_none()))
        .collect();
    if !ops.iter().any(is_unknown_write) {
        return keep_all;
    }
    needed_writes(ops, keep_all.clone(), &mut Work(max_work)).unwrap_or(keep_all)
}

/// [`needed`] for the unknown-outcome writes (`needed` starts out right for
/// every other operation), or `None` past the work limit.
fn needed_writes(ops: &[Operation], mut needed: Vec<bool>, work: &mut Work) -> Option<Vec<bool>> {
    work.charge(ops.len() as u64)?;
    let created: HashSet<u64> = ops
        .iter()
        .filter_map(|op| match op.output {
            Some(Output::Put { version })
            | Some(Output::Append { version })
            | Some(Output::Cas { ok: true, version }) => Some(version),
            _ => None,
        })
        .collect();
    // Versions a client relied on without seeing the value (a failed Cas's
    // report, a Cas's expectation) that no known-outcome write created.
    let orphan = |op: &Operation| -> Option<u64> {
        let mentioned = match (&op.input, &op.output) {
            (_, Some(Output::Cas { ok: false, version })) if *version != 0 => Some(*version),
            (_, Some(Output::Cas { ok: false, .. })) => None,
            (Input::Cas { expected_version, .. }, _) => Some(*expected_version),
            _ => None,
        };
        mentioned.filter(|v| !created.contains(v))
    };
    // Known-outcome writes by return time (return, version, call), with the
    // greatest version and the latest call among those returned so far.
    let mut known_writes: Vec<(u64, u64, u64)> = ops
        .iter()
        .filter(|op| is_known_write(op))
        .filter_map(|op| match op.output {
            Some(Output::Put { version }) | Some(Output::Append { version }) | Some(Output::Cas { version, .. }) => {
                op.effective_ret().map(|r| (r, version, op.call))
            }
            _ => None,
        })
        .collect();
    known_writes.sort_unstable();
    let (mut max_version, mut max_call) = (0, 0);
    let prefix_max: Vec<(u64, u64)> = known_writes
        .iter()
        .map(|&(_, v, call)| {
            max_version = max_version.max(v);
            max_call = max_call.max(call);
            (max_version, max_call)
        })
        .collect();
    // (Greatest version, latest call) of the known writes returned before
    // `t`: they certainly precede anything called at `t`, and a write called
    // at `t` gets a greater version.
    let before = |t: u64| -> Option<(u64, u64)> {
        let n = known_writes.partition_point(|&(r, _, _)| r < t);
        n.checked_sub(1).map(|i| prefix_max[i])
    };
    let floor_at = |t: u64| -> u64 { before(t).map_or(0, |(v, _)| v) };
    // Call and return times (+infinity for none) of every delete, sorted.
    let delete_ret = |x: &Operation| x.effective_ret().unwrap_or(u64::MAX);
    let mut delete_calls: Vec<u64> = ops
        .iter()
        .filter(|x| x.input == Input::Delete)
        .map(|x| x.call)
        .collect();
    let mut delete_rets: Vec<u64> = ops
        .iter()
        .filter(|x| x.input == Input::Delete)
        .map(delete_ret)
        .collect();
    delete_calls.sort_unstable();
    delete_rets.sort_unstable();
    // A successful delete needs no unknown write when a known write certainly
    // precedes it with no other delete possibly in between: the key exists
    // at the delete whatever the unknown writes did. A call and a return at
    // the same instant are concurrent (as in the search), so "certainly
    // precedes" is a strict `<`, and "possibly in between" keeps the ties:
    // another delete may come after the write if it returned no earlier than
    // the write's call, and before `d` if it was called no later than `d`
    // returned. The write called last is the best one to pick.
    let self_sufficient = |d: &Operation| -> bool {
        let Some((_, k_call)) = before(d.call) else {
            return false;
        };
        let d_ret = delete_ret(d);
        // Deletes called by `d`'s return, less those that returned before
        // `k_call` (all of which were called by then, as k_call < d.call),
        // less `d` itself (counted in the first, not in the second).
        let called_by_d_ret = delete_calls.partition_point(|&c| c <= d_ret);
        let returned_before_k = delete_rets.partition_point(|&r| r < k_call);
        // (Saturating: only an invalid history, a return before its call,
        // could make the second count exceed the first.)
        called_by_d_ret.saturating_sub(returned_before_k) == 1
    };
    let needy_delete_return: Option<u64> = ops
        .iter()
        .filter(|d| matches!(d.output, Some(Output::Delete { existed: true })) && !self_sufficient(d))
        .map(delete_ret)
        .max();
    // Reads of a present key (return, value), by return time.
    let mut reads: Vec<(u64, &str)> = ops
        .iter()
        .filter_map(|op| match &op.output {
            Some(Output::Get { value: Some(v), .. }) => Some((op.effective_ret().unwrap_or(u64::MAX), v.as_str())),
            _ => None,
        })
        .collect();
    reads.sort_unstable_by_key(|&(r, _)| r);
    // Rules 1 and 2: observed by value, or possibly needed by a delete.
    for (op, kept) in ops.iter().zip(needed.iter_mut()) {
        let written = match (&op.input, &op.output) {
            (Input::Put { value } | Input::Append { value } | Input::Cas { value, .. }, None) => value,
            _ => continue,
        };
        *kept = needy_delete_return.is_some_and(|r| r >= op.call);
        if !*kept {
            let from = reads.partition_point(|&(r, _)| r < op.call);
            for &(_, v) in &reads[from..] {
                work.charge_strings(v, written)?;
                if v.contains(written.as_str()) {
                    *kept = true;
                    break;
                }
            }
        }
    }
    // Rule 3, to a fixpoint (an unknown Cas kept for this rule may itself
    // rely on another write's version): a write is needed if it may have
    // created a version that a kept operation relied on, i.e. it was called
    // before that operation returned and after every known write with a
    // version at least as large had returned.
    loop {
        work.charge(ops.len() as u64)?;
        // (return, version) of the versions relied on, by return time, with
        // the greatest version among those returning at or after each.
        let mut mentions: Vec<(u64, u64)> = ops
            .iter()
            .zip(&needed)
            .filter(|(_, &kept)| kept)
            .filter_map(|(op, _)| orphan(op).map(|v| (op.effective_ret().unwrap_or(u64::MAX), v)))
            .collect();
        mentions.sort_unstable();
        let mut suffix_max = vec![0; mentions.len()];
        let mut running = 0;
        for (i, &(_, v)) in mentions.iter().enumerate().rev() {
            running = running.max(v);
            suffix_max[i] = running;
        }
        let mut changed = false;
        for (op, kept) in ops.iter().zip(needed.iter_mut()) {
            if *kept || !is_unknown_write(op) {
                continue;
            }
            let from = mentions.partition_point(|&(ret, _)| ret < op.call);
            if suffix_max.get(from).is_some_and(|&v| v > floor_at(op.call)) {
                *kept = true;
                changed = true;
            }
        }
        if !changed {
            return Some(needed);
        }
    }
}

/// For each unknown-outcome Put or Cas that a known read proves took effect,
/// the latest time it can have taken effect: the earliest return of a read
/// that returned exactly its value. `None` for every other operation.
///
/// Only values that no other write could have built are used: no other
/// write's string (Put or Cas value, Append suffix, including the empty
/// string) occurs inside it. Then a read of exactly that value can only
/// follow this very write, which must therefore have taken effect before the
/// read returned. Giving the search that deadline turns a forever-pending
/// operation into an ordinary one with an ignored answer.
///
/// If that takes more than about `max_work` units of work (see the module
/// docs), no deadline is given at all.
pub fn deadlines(ops: &[Operation], max_work: u64) -> Vec<Option<u64>> {
    let none = vec![None; ops.len()];
    if !ops.iter().any(is_unknown_write) {
        return none;
    }
    deadlines_within(ops, &mut Work(max_work)).unwrap_or(none)
}

fn deadlines_within(ops: &[Operation], work: &mut Work) -> Option<Vec<Option<u64>>> {
    fn written(op: &Operation) -> Option<&str> {
        match &op.input {
            Input::Put { value } | Input::Append { value } | Input::Cas { value, .. } => Some(value),
            Input::Get | Input::Delete => None,
        }
    }
    work.charge(ops.len() as u64)?;
    // The earliest return of a read of each value.
    let mut first_read: HashMap<&str, u64> = HashMap::new();
    for op in ops {
        if let (Some(Output::Get { value: Some(v), .. }), Some(r)) = (&op.output, op.effective_ret()) {
            let earliest = first_read.entry(v.as_str()).or_insert(r);
            *earliest = (*earliest).min(r);
        }
    }
    let writes: Vec<(usize, &str)> = ops
        .iter()
        .enumerate()
        .filter_map(|(j, op)| written(op).map(|w| (j, w)))
        .collect();
    let mut write_count: HashMap<&[u8], usize> = HashMap::new();
    for &(_, w) in &writes {
        *write_count.entry(w.as_bytes()).or_default() += 1;
    }
    let mut deadlines = Vec::with_capacity(ops.len());
    for (i, op) in ops.iter().enumerate() {
        let candidate = op.output.is_none() && matches!(op.input, Input::Put { .. } | Input::Cas { .. });
        let read_at = candidate
            .then(|| written(op).and_then(|value| first_read.get(value).map(|&r| (value, r))))
            .flatten();
        let Some((value, read_ret)) = read_at else {
            deadlines.push(None);
            continue;
        };
        // Does another write's string occur inside `value`? Look its
        // substrings up, or scan the writes, whichever is fewer.
        let bytes = value.as_bytes();
        let substrings = (bytes.len() + 1) * (bytes.len() + 2) / 2;
        let mut buildable_otherwise = false;
        if substrings <= writes.len() {
            'found: for start in 0..=bytes.len() {
                for end in start..=bytes.len() {
                    let part = &bytes[start..end];
                    work.charge(1 + part.len() as u64 / 64)?;
                    let this_one = usize::from(part == bytes);
                    if write_count.get(part).is_some_and(|&n| n > this_one) {
                        buildable_otherwise = true;
                        break 'found;
                    }
                }
            }
        } else {
            for &(j, w) in &writes {
                work.charge_strings(value, w)?;
                if j != i && value.contains(w) {
                    buildable_otherwise = true;
                    break;
                }
            }
        }
        deadlines.push((!buildable_otherwise).then_some(read_ret.max(op.call)));
    }
    Some(deadlines)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn op(input: Input, output: Option<Output>, call: u64, ret: Option<u64>) -> Operation {
        Operation {
            client: 1,
            key: "k".into(),
            input,
            output,
            call,
            ret,
        }
    }

    #[test]
    fn unseen_unknown_write_is_not_needed_but_a_seen_one_is() {
        let put = |v: &str, call| op(Input::Put { value: v.into() }, None, call, None);
        let read = |v: &str, version, call| {
            op(
                Input::Get,
                Some(Output::Get {
                    value: Some(v.into()),
                    version,
                }),
                call,
                Some(call + 1),
            )
        };
        let known_put = op(
            Input::Put { value: "a".into() },
            Some(Output::Put { version: 3 }),
            0,
            Some(1),
        );
        // "b" is read (version 3 is known), "c" never is.
        let ops = vec![known_put.clone(), put("b", 2), put("c", 2), read("a", 3, 5)];
        assert_eq!(needed(&ops, u64::MAX), vec![true, false, false, true]);
        let ops = vec![known_put.clone(), put("b", 2), read("b", 3, 5)];
        assert_eq!(needed(&ops, u64::MAX), vec![true, true, true]);
        let d = deadlines(
            &[known_put.clone(), put("b", 2), read("b", 3, 5), read("b", 3, 8)],
            u64::MAX,
        );
        assert_eq!(d, vec![None, Some(6), None, None]);
        // "ab" could also be built by Put "a" + Append "b": no deadline.
        let append = op(Input::Append { value: "b".into() }, None, 2, None);
        let d = deadlines(&[known_put.clone(), put("ab", 2), append, read("ab", 3, 5)], u64::MAX);
        assert_eq!(d, vec![None, None, None, None]);
        // A failed Cas reports version 9, which no known write created: the
        // unknown write of "c" (called before it returned, after version 3)
        // may have created it, so it stays; one called after does not.
        let failed_cas = op(
            Input::Cas {
                expected_version: 3,
                value: "z".into(),
            },
            Some(Output::Cas { ok: false, version: 9 }),
            4,
            Some(5),
        );
        let ops = vec![known_put.clone(), put("c", 2), failed_cas.clone(), put("d", 6)];
        assert_eq!(needed(&ops, u64::MAX), vec![true, true, true, false]);
        // A successful delete with no known write before it may have needed
        // an unknown write to find the key; one right after a known write not.
        let delete = |call| {
            op(
                Input::Delete,
                Some(Output::Delete { existed: true }),
                call,
                Some(call + 1),
            )
        };
        let ops = vec![put("c", 0), delete(5)];
        assert_eq!(needed(&ops, u64::MAX), vec![true, true]);
        let ops = vec![known_put, put("c", 0), delete(5)];
        assert_eq!(needed(&ops, u64::MAX), vec![true, false, true]);
    }

    #[test]
    fn past_its_work_limit_pruning_leaves_everything_to_the_search() {
        let put = |v: String, call| op(Input::Put { value: v }, None, call, None);
        let read = |v: String, call| {
            op(
                Input::Get,
                Some(Output::Get {
                    value: Some(v),
                    version: 1,
                }),
                call,
                Some(call + 1),
            )
        };
        // 100 unknown writes nobody saw, told apart from 100 reads of
        // something else only by comparing each with each.
        let known_put = op(
            Input::Put { value: "a".into() },
            Some(Output::Put { version: 1 }),
            0,
            Some(1),
        );
        let mut ops = vec![known_put];
        ops.extend((0..100).map(|i| put(format!("<{i}>"), 2)));
        ops.extend((0..100).map(|i| read("a".into(), 10 + 2 * i)));
        let pruned = needed(&ops, u64::MAX);
        assert_eq!(pruned.iter().filter(|&&n| !n).count(), 100);
        assert!(needed(&ops, 5_000).iter().all(|&n| n));
        // Reads of exactly each unknown write's value: a deadline each, but
        // only with the work to check no other write could have built it.
        let mut ops: Vec<Operation> = (0..100).map(|i| put(format!("<{i}>"), i)).collect();
        ops.extend((0..100).map(|i| read(format!("<{i}>"), 200 + i)));
        let d = deadlines(&ops, u64::MAX);
        assert_eq!(d[..100], (0..100).map(|i| Some(201 + i)).collect::<Vec<_>>()[..]);
        assert_eq!(d[100..], vec![None; 100][..]);
        assert_eq!(deadlines(&ops, 1_000), vec![None; 200]);
    }
}
