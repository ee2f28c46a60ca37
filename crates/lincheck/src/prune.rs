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

use std::collections::HashSet;

use crate::history::{Input, Operation, Output};

/// For each operation, whether the search needs it (`false` = an
/// unknown-outcome operation that cannot matter, see the module docs). All
/// the unneeded ones are left out together: a left-out compare-and-set never
/// took effect in the reduced execution, so it cannot have relied on another
/// left-out write's version either.
pub fn needed(ops: &[Operation]) -> Vec<bool> {
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
    // Greatest known-outcome version created by writes returned before `t`:
    // a write called at `t` gets a greater version.
    let mut known_writes: Vec<(u64, u64)> = ops
        .iter()
        .filter_map(|op| match op.output {
            Some(Output::Put { version })
            | Some(Output::Append { version })
            | Some(Output::Cas { ok: true, version }) => op.effective_ret().map(|r| (r, version)),
            _ => None,
        })
        .collect();
    known_writes.sort_unstable();
    let mut running = 0;
    let prefix_max: Vec<u64> = known_writes
        .iter()
        .map(|&(_, v)| {
            running = running.max(v);
            running
        })
        .collect();
    let floor_at = |t: u64| -> u64 {
        let n = known_writes.partition_point(|&(r, _)| r < t);
        if n == 0 {
            0
        } else {
            prefix_max[n - 1]
        }
    };
    // A successful delete needs no unknown write when a known write certainly
    // precedes it with no other delete possibly in between: the key exists
    // at the delete whatever the unknown writes did.
    let self_sufficient = |d: &Operation| -> bool {
        let latest_before = ops
            .iter()
            .filter(|k| {
                matches!(
                    k.output,
                    Some(Output::Put { .. }) | Some(Output::Append { .. }) | Some(Output::Cas { ok: true, .. })
                ) && k.effective_ret().is_some_and(|r| r < d.call)
            })
            .map(|k| k.call)
            .max();
        let Some(k_call) = latest_before else {
            return false;
        };
        !ops.iter().any(|x| {
            x.input == Input::Delete
                && !std::ptr::eq(x, d)
                && d.effective_ret().is_none_or(|r| x.call < r)
                && x.effective_ret().is_none_or(|r| r > k_call)
        })
    };
    let needy_delete_returns: Vec<u64> = ops
        .iter()
        .filter(|d| matches!(d.output, Some(Output::Delete { existed: true })) && !self_sufficient(d))
        .map(|d| d.effective_ret().unwrap_or(u64::MAX))
        .collect();
    // Rules 1 and 2: observed by value, or possibly needed by a delete.
    let mut needed: Vec<bool> = ops
        .iter()
        .map(|op| {
            let written = match (&op.input, &op.output) {
                (_, Some(_)) => return true,
                (Input::Get, None) => return false, // no effect, no answer
                (Input::Delete, None) => return true,
                (Input::Put { value } | Input::Append { value } | Input::Cas { value, .. }, None) => value,
            };
            needy_delete_returns.iter().any(|&r| r >= op.call)
                || ops.iter().any(|other| match &other.output {
                    Some(Output::Get { value: Some(v), .. }) => {
                        other.effective_ret().is_none_or(|r| r >= op.call) && v.contains(written.as_str())
                    }
                    _ => false,
                })
        })
        .collect();
    // Rule 3, to a fixpoint (an unknown Cas kept for this rule may itself
    // rely on another write's version): a write is needed if it may have
    // created a version that a kept operation relied on, i.e. it was called
    // before that operation returned and after every known write with a
    // version at least as large had returned.
    loop {
        let mentions: Vec<(u64, u64)> = ops
            .iter()
            .zip(&needed)
            .filter(|(_, &kept)| kept)
            .filter_map(|(op, _)| orphan(op).map(|v| (op.effective_ret().unwrap_or(u64::MAX), v)))
            .collect();
        let mut changed = false;
        for (op, kept) in ops.iter().zip(needed.iter_mut()) {
            if *kept || op.output.is_some() || op.input == Input::Get {
                continue;
            }
            let floor = floor_at(op.call);
            if mentions.iter().any(|&(ret, v)| op.call <= ret && v > floor) {
                *kept = true;
                changed = true;
            }
        }
        if !changed {
            return needed;
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
pub fn deadlines(ops: &[Operation]) -> Vec<Option<u64>> {
    fn written(op: &Operation) -> Option<&str> {
        match &op.input {
            Input::Put { value } | Input::Append { value } | Input::Cas { value, .. } => Some(value),
            Input::Get | Input::Delete => None,
        }
    }
    ops.iter()
        .enumerate()
        .map(|(i, op)| {
            if op.output.is_some() || !matches!(op.input, Input::Put { .. } | Input::Cas { .. }) {
                return None;
            }
            let value = written(op)?;
            let buildable_otherwise = ops
                .iter()
                .enumerate()
                .any(|(j, other)| j != i && written(other).is_some_and(|w| value.contains(w)));
            if buildable_otherwise {
                return None;
            }
            ops.iter()
                .filter_map(|other| match &other.output {
                    Some(Output::Get { value: Some(v), .. }) if v == value => other.effective_ret(),
                    _ => None,
                })
                .min()
                .map(|r| r.max(op.call))
        })
        .collect()
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
        assert_eq!(needed(&ops), vec![true, false, false, true]);
        let ops = vec![known_put.clone(), put("b", 2), read("b", 3, 5)];
        assert_eq!(needed(&ops), vec![true, true, true]);
        let d = deadlines(&[known_put.clone(), put("b", 2), read("b", 3, 5), read("b", 3, 8)]);
        assert_eq!(d, vec![None, Some(6), None, None]);
        // "ab" could also be built by Put "a" + Append "b": no deadline.
        let append = op(Input::Append { value: "b".into() }, None, 2, None);
        let d = deadlines(&[known_put.clone(), put("ab", 2), append, read("ab", 3, 5)]);
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
        assert_eq!(needed(&ops), vec![true, true, true, false]);
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
        assert_eq!(needed(&ops), vec![true, true]);
        let ops = vec![known_put, put("c", 0), delete(5)];
        assert_eq!(needed(&ops), vec![true, false, true]);
    }
}
