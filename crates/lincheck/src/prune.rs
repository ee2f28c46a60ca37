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
//! 2. no successful delete that returned after `W` was called (it might have
//!    needed `W` to find the key present);
//! 3. every version the history mentions but does not explain (read
//!    versions, failed compare-and-set versions, compare-and-set expected
//!    versions other than of failed ones) was created by an operation with a
//!    known outcome. `W`'s own version is unknown and, versions being unique,
//!    differs from all of those, so nobody can have seen or relied on it.
//!
//! Why this is sound: take a linearization of the real execution in which
//! `W` took effect, and drop `W`. Between `W` and the next overwrite, no
//! operation observed `W` (by 1-3), unknown-outcome operations can be moved to
//! the end, and afterwards the model's state is the same except that the
//! greatest version so far is no larger, which only loosens later checks.

use std::collections::HashSet;

use crate::history::{Input, Operation, Output};

/// For each operation, whether the search needs it (`false` = an
/// unknown-outcome operation that cannot matter, see the module docs).
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
    let orphan_version = ops.iter().any(|op| {
        let mentioned = match (&op.input, &op.output) {
            (
                _,
                Some(Output::Get {
                    value: Some(_),
                    version,
                }),
            ) => Some(*version),
            (_, Some(Output::Cas { ok: false, version })) if *version != 0 => Some(*version),
            (_, Some(Output::Cas { ok: false, .. })) => None,
            (Input::Cas { expected_version, .. }, _) => Some(*expected_version),
            _ => None,
        };
        mentioned.is_some_and(|v| !created.contains(&v))
    });
    let open = |op: &Operation| op.effective_ret().is_none() || op.output.is_none();
    ops.iter()
        .map(|op| {
            if !open(op) || op.output.is_some() {
                return true;
            }
            let written = match &op.input {
                Input::Get => return false, // no effect, no answer
                Input::Delete => return true,
                Input::Put { value } | Input::Append { value } | Input::Cas { value, .. } => value,
            };
            if orphan_version {
                return true;
            }
            ops.iter().any(|other| {
                let after = other.effective_ret().is_none_or(|r| r >= op.call);
                match &other.output {
                    Some(Output::Get { value: Some(v), .. }) => after && v.contains(written.as_str()),
                    Some(Output::Delete { existed: true }) => after,
                    _ => false,
                }
            })
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
        // A version nobody known created: every unknown write may matter.
        let ops = vec![known_put, put("c", 2), read("a", 9, 5)];
        assert_eq!(needed(&ops), vec![true, true, true]);
    }
}
