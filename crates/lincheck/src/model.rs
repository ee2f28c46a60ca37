//! The sequential specification of one key of the store, as the search uses it.
//!
//! # The model
//!
//! A key's concrete state is `(value, version, last)`: `value` is the current
//! value or missing, `version` the version of the current value, and `last`
//! the greatest version ever given to the key (the store uses the Raft log
//! index, so the checker knows only that each new version is strictly greater
//! than `last`, never the exact number). Every key starts missing with
//! `last = 0`. Sequentially:
//!
//! * `Get` returns `(value, version)`, or `(None, 0)` when missing; no change.
//! * `Put(v)` sets `value = v`; `Append(s)` sets `value = value ++ s` (missing
//!   counts as `""`). Both pick a new version `n > last` and return it;
//!   `version = last = n`.
//! * `Delete` removes the key (returning whether it existed); `last` stays,
//!   so a later write re-creates the key with a still-greater version.
//! * `Cas(e, v)` succeeds iff the key exists and `version == e`: then it acts
//!   as `Put(v)` and returns `ok = true` with the new version; otherwise it
//!   changes nothing and returns `ok = false` with the current version (0 when
//!   missing).
//!
//! # The abstraction the search tracks
//!
//! While the value is always known exactly, an operation whose outcome is
//! unknown may have written a version nobody saw. So the search keeps a
//! [`KeyState`] `{ value, lo, exact }` standing for the *set* of concrete
//! states with that value and `last == lo` (when `exact`) or `last >= lo`
//! (when not); while the key exists `version == last`. Every rule below only
//! keeps a successor if *some* concrete state of the set allows the observed
//! output, and keeps *every* concrete successor consistent with it (it may keep
//! more: see the failed unknown `Cas`), so the check is sound: it never calls a
//! linearizable history a violation. Observing a version (a `Get`, a failed
//! `Cas`) narrows `last >= lo` back to an exact value.
//!
//! An unknown-outcome operation that is linearized takes effect with *any*
//! output: an unknown write moves `lo` to `lo + 1` (inexact); an unknown
//! `Cas` whose success depends on the unknown version yields both the success
//! state and the unchanged one. "Never took effect" is covered by the search,
//! which may always linearize such an operation last.
//!
//! Values are compared through [`ValueHash`] (length plus two polynomial hashes
//! modulo 2^61 - 1), so `Append` is O(1) and states are small and cheap to
//! hash. Equal strings always have equal hashes; a collision between different
//! strings (probability about 2^-100 per comparison) could only make the checker
//! accept more, never reject a linearizable history.

use crate::history::{Input, Operation, Output};

const MOD: u64 = (1 << 61) - 1;
const BASE1: u64 = 0x1f35_3a2b_7d11_0c4b % MOD;
const BASE2: u64 = 0x0b7e_1516_28ae_d2a7 % MOD;

fn mul_mod(a: u64, b: u64) -> u64 {
    let p = (a as u128) * (b as u128);
    let lo = (p as u64) & MOD;
    let hi = (p >> 61) as u64;
    let s = lo + hi;
    if s >= MOD {
        s - MOD
    } else {
        s
    }
}

fn add_mod(a: u64, b: u64) -> u64 {
    let s = a + b; // both < 2^61, no overflow
    if s >= MOD {
        s - MOD
    } else {
        s
    }
}

/// A string's fingerprint: its length in bytes and two polynomial hashes.
/// Concatenation is computed from the parts' fingerprints alone.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ValueHash {
    len: u64,
    h1: u64,
    h2: u64,
}

/// A suffix ready for O(1) concatenation: its fingerprint and `BASE^len`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Suffix {
    hash: ValueHash,
    pow1: u64,
    pow2: u64,
}

impl ValueHash {
    /// The fingerprint of the empty string.
    pub const EMPTY: ValueHash = ValueHash { len: 0, h1: 0, h2: 0 };

    /// Fingerprints `s`.
    pub fn of(s: &str) -> ValueHash {
        let (mut h1, mut h2) = (0u64, 0u64);
        for &b in s.as_bytes() {
            h1 = add_mod(mul_mod(h1, BASE1), b as u64 + 1);
            h2 = add_mod(mul_mod(h2, BASE2), b as u64 + 1);
        }
        ValueHash {
            len: s.len() as u64,
            h1,
            h2,
        }
    }

    /// The fingerprint of `self ++ suffix`.
    pub fn concat(self, suffix: &Suffix) -> ValueHash {
        ValueHash {
            len: self.len.saturating_add(suffix.hash.len),
            h1: add_mod(mul_mod(self.h1, suffix.pow1), suffix.hash.h1),
            h2: add_mod(mul_mod(self.h2, suffix.pow2), suffix.hash.h2),
        }
    }
}

impl Suffix {
    /// Prepares `s` for [`ValueHash::concat`].
    pub fn of(s: &str) -> Suffix {
        let (mut pow1, mut pow2) = (1u64, 1u64);
        for _ in s.as_bytes() {
            pow1 = mul_mod(pow1, BASE1);
            pow2 = mul_mod(pow2, BASE2);
        }
        Suffix {
            hash: ValueHash::of(s),
            pow1,
            pow2,
        }
    }
}

/// A set of concrete key states (see the module docs): the value, and the
/// greatest version ever given, exactly (`exact`) or as a lower bound.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct KeyState {
    /// Current value, `None` when the key is missing.
    pub value: Option<ValueHash>,
    /// The greatest version ever given to the key (or a lower bound of it).
    pub lo: u64,
    /// Whether `lo` is the exact greatest version.
    pub exact: bool,
}

impl KeyState {
    /// Every key starts missing and never written.
    pub const INITIAL: KeyState = KeyState {
        value: None,
        lo: 0,
        exact: true,
    };

    /// The state after a write of `value` whose version is unknown.
    fn written_unknown(&self, value: ValueHash) -> Option<KeyState> {
        Some(KeyState {
            value: Some(value),
            lo: self.lo.checked_add(1)?,
            exact: false,
        })
    }

    /// The state after a write of `value` that reported version `version`,
    /// if that version is possible (strictly greater than every earlier one).
    fn written_known(&self, value: ValueHash, version: u64) -> Option<KeyState> {
        // exact: version > last = lo; inexact: version > last >= lo.
        (version > self.lo).then_some(KeyState {
            value: Some(value),
            lo: version,
            exact: true,
        })
    }

    /// This state narrowed to "the current version is `version`", if possible.
    /// Only meaningful while the key exists.
    fn observe_version(&self, version: u64) -> Option<KeyState> {
        let possible = if self.exact {
            version == self.lo
        } else {
            version >= self.lo
        };
        possible.then_some(KeyState {
            lo: version,
            exact: true,
            ..*self
        })
    }
}

/// An operation's input and output with values replaced by fingerprints, so
/// the search never touches strings. Built once per operation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CompiledInput {
    /// See [`Input::Get`].
    Get,
    /// See [`Input::Put`].
    Put(ValueHash),
    /// See [`Input::Append`].
    Append(Suffix),
    /// See [`Input::Delete`].
    Delete,
    /// See [`Input::Cas`].
    Cas {
        /// Expected version.
        expected: u64,
        /// New value.
        value: ValueHash,
    },
}

/// See [`Output`]; `Mismatch` marks an output whose variant does not match
/// the input (never explainable).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CompiledOutput {
    /// See [`Output::Get`].
    Get {
        /// Value read.
        value: Option<ValueHash>,
        /// Version read.
        version: u64,
    },
    /// See [`Output::Put`] and [`Output::Append`].
    Written {
        /// New version.
        version: u64,
    },
    /// See [`Output::Delete`].
    Delete {
        /// Whether the key existed.
        existed: bool,
    },
    /// See [`Output::Cas`].
    Cas {
        /// Success.
        ok: bool,
        /// New or current version.
        version: u64,
    },
    /// Output variant does not match the input variant.
    Mismatch,
}

/// An operation ready for the search: fingerprints plus its interval. An
/// operation from a history with an unknown outcome has `ret = None`
/// (+infinity); minimization also builds operations with an unknown output
/// but a finite `ret` ("took effect inside its interval, answer ignored").
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CompiledOp {
    /// The request.
    pub input: CompiledInput,
    /// The answer, `None` when unknown.
    pub output: Option<CompiledOutput>,
    /// Call time.
    pub call: u64,
    /// Return time, `None` = +infinity.
    pub ret: Option<u64>,
}

impl CompiledOp {
    /// Compiles `op`.
    pub fn new(op: &Operation) -> CompiledOp {
        let input = match &op.input {
            Input::Get => CompiledInput::Get,
            Input::Put { value } => CompiledInput::Put(ValueHash::of(value)),
            Input::Append { value } => CompiledInput::Append(Suffix::of(value)),
            Input::Delete => CompiledInput::Delete,
            Input::Cas {
                expected_version,
                value,
            } => CompiledInput::Cas {
                expected: *expected_version,
                value: ValueHash::of(value),
            },
        };
        let output = op.output.as_ref().map(|out| {
            if !op.output_matches_input() {
                return CompiledOutput::Mismatch;
            }
            match out {
                Output::Get { value, version } => CompiledOutput::Get {
                    value: value.as_deref().map(ValueHash::of),
                    version: *version,
                },
                Output::Put { version } | Output::Append { version } => CompiledOutput::Written { version: *version },
                Output::Delete { existed } => CompiledOutput::Delete { existed: *existed },
                Output::Cas { ok, version } => CompiledOutput::Cas {
                    ok: *ok,
                    version: *version,
                },
            }
        });
        CompiledOp {
            input,
            output,
            call: op.call,
            ret: op.effective_ret(),
        }
    }

    /// The same operation with its outcome forgotten: it may take effect at
    /// any time after its call, or never. Used by minimization.
    pub fn as_unknown(mut self) -> CompiledOp {
        self.output = None;
        self.ret = None;
        self
    }

    /// The same operation with its answer forgotten but its interval kept: it
    /// took effect between call and return, with any outcome. Used by
    /// minimization to stand in for a dropped write.
    pub fn with_output_ignored(mut self) -> CompiledOp {
        self.output = None;
        self
    }

    /// The largest `lo` (greatest version given so far, see [`KeyState`]) at
    /// which this operation can still be linearized, or `None` if there is
    /// no such bound. `lo` never decreases along an execution, so once it
    /// passes this bound the operation is dead: the search uses that to
    /// abandon a branch at once instead of at the operation's return.
    pub fn max_lo(&self) -> Option<u64> {
        match self.output? {
            // A write's new version must exceed lo.
            CompiledOutput::Written { version } | CompiledOutput::Cas { ok: true, version } => {
                let cas_expected = match self.input {
                    CompiledInput::Cas { expected, .. } => expected,
                    _ => u64::MAX,
                };
                // A successful Cas also needs the current version (>= lo)
                // to equal `expected`.
                Some(version.saturating_sub(1).min(cas_expected))
            }
            // Reading a present key's version needs that version >= lo.
            CompiledOutput::Get {
                value: Some(_),
                version,
            } => Some(version),
            CompiledOutput::Cas { ok: false, version } if version != 0 => Some(version),
            _ => None,
        }
    }

    /// True iff the operation can change the key in some execution (so
    /// dropping it could make the history harder, not easier, to explain).
    pub fn may_write(&self) -> bool {
        !matches!(
            (self.input, self.output),
            (CompiledInput::Get, _)
                | (CompiledInput::Cas { .. }, Some(CompiledOutput::Cas { ok: false, .. }))
                | (CompiledInput::Delete, Some(CompiledOutput::Delete { existed: false }))
        )
    }
}

/// Pushes onto `out` every state of `state` after `op` takes effect with the
/// recorded output (or any output, when unknown). Pushes nothing when no
/// concrete state in `state` could have produced the recorded output.
pub fn step(state: &KeyState, op: &CompiledOp, out: &mut Vec<KeyState>) {
    let s = *state;
    match op.output {
        None => step_unknown(s, op.input, out),
        Some(output) => {
            if let Some(next) = step_known(s, op.input, output) {
                out.push(next);
            }
        }
    }
}

fn current_value_for_append(s: &KeyState) -> ValueHash {
    s.value.unwrap_or(ValueHash::EMPTY)
}

fn step_known(s: KeyState, input: CompiledInput, output: CompiledOutput) -> Option<KeyState> {
    match (input, output) {
        (CompiledInput::Get, CompiledOutput::Get { value, version }) => {
            if value != s.value {
                return None;
            }
            match value {
                None => (version == 0).then_some(s),
                Some(_) => s.observe_version(version),
            }
        }
        (CompiledInput::Put(v), CompiledOutput::Written { version }) => s.written_known(v, version),
        (CompiledInput::Append(suffix), CompiledOutput::Written { version }) => {
            s.written_known(current_value_for_append(&s).concat(&suffix), version)
        }
        (CompiledInput::Delete, CompiledOutput::Delete { existed }) => {
            (existed == s.value.is_some()).then_some(KeyState { value: None, ..s })
        }
        (CompiledInput::Cas { expected, value }, CompiledOutput::Cas { ok: true, version }) => {
            s.value?;
            let narrowed = s.observe_version(expected)?;
            // The new version must exceed the current one, which is `expected`.
            narrowed.written_known(value, version)
        }
        (CompiledInput::Cas { expected, .. }, CompiledOutput::Cas { ok: false, version }) => {
            match s.value {
                None => (version == 0).then_some(s),
                // It failed, so the current version (reported) is not `expected`.
                Some(_) if version == expected => None,
                Some(_) => s.observe_version(version),
            }
        }
        _ => None,
    }
}

fn step_unknown(s: KeyState, input: CompiledInput, out: &mut Vec<KeyState>) {
    let next = match input {
        CompiledInput::Get => Some(s),
        CompiledInput::Put(v) => s.written_unknown(v),
        CompiledInput::Append(suffix) => s.written_unknown(current_value_for_append(&s).concat(&suffix)),
        CompiledInput::Delete => Some(KeyState { value: None, ..s }),
        CompiledInput::Cas { expected, value } => {
            if s.value.is_none() || expected < s.lo || (s.exact && expected != s.lo) {
                // Fails in every concrete state of the set: no change.
                Some(s)
            } else if s.exact {
                // expected == lo == current version: succeeds.
                s.written_unknown(value)
            } else {
                // Succeeds iff the unknown version (>= lo) equals `expected`.
                // On success the new version exceeds `expected`. On failure we
                // keep the whole set (including version == expected, which is
                // more than the truth: permissive, hence still sound).
                if let Some(lo) = expected.checked_add(1) {
                    out.push(KeyState {
                        value: Some(value),
                        lo,
                        exact: false,
                    });
                }
                Some(s)
            }
        }
    };
    if let Some(next) = next {
        out.push(next);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn concat_fingerprint_matches_fingerprint_of_concatenation() {
        let ab = ValueHash::of("ab").concat(&Suffix::of("cde"));
        assert_eq!(ab, ValueHash::of("abcde"));
        assert_eq!(ValueHash::EMPTY.concat(&Suffix::of("x")), ValueHash::of("x"));
        assert_ne!(ValueHash::of("ab"), ValueHash::of("ba"));
        assert_ne!(ValueHash::of(""), ValueHash::of("\0"));
    }

    #[test]
    fn unknown_write_makes_version_a_lower_bound_and_a_read_narrows_it() {
        let put = CompiledOp {
            input: CompiledInput::Put(ValueHash::of("a")),
            output: None,
            call: 0,
            ret: None,
        };
        let mut out = Vec::new();
        step(&KeyState::INITIAL, &put, &mut out);
        assert_eq!(out.len(), 1);
        assert!(!out[0].exact);
        let get = |version| CompiledOp {
            input: CompiledInput::Get,
            output: Some(CompiledOutput::Get {
                value: Some(ValueHash::of("a")),
                version,
            }),
            call: 0,
            ret: Some(1),
        };
        let mut narrowed = Vec::new();
        step(&out[0], &get(0), &mut narrowed);
        assert!(narrowed.is_empty(), "version 0 is never given by a write");
        step(&out[0], &get(42), &mut narrowed);
        assert_eq!(
            narrowed,
            vec![KeyState {
                value: Some(ValueHash::of("a")),
                lo: 42,
                exact: true
            }]
        );
    }
}
