//! The recorded client history: what each client asked ([`Input`]), what it was
//! told ([`Output`], or nothing when the outcome is unknown), and when
//! ([`Operation::call`] / [`Operation::ret`] on one monotonic clock).
//!
//! Histories travel as JSON lines (one [`Operation`] per line) so that a
//! recorder can append as it goes and a crash loses at most the last line.
//! [`parse_jsonl`] reads such a file with hard limits, because the file comes
//! from disk and must never make the checker panic or allocate without bound.

use std::io::BufRead;

use serde::{Deserialize, Serialize};

/// What a client asked the store to do to one key.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub enum Input {
    /// Read the current value and version.
    Get,
    /// Set the value (creating the key if missing).
    Put {
        /// The new value.
        value: String,
    },
    /// Concatenate `value` to the current value (a missing key counts as "").
    Append {
        /// The suffix to add.
        value: String,
    },
    /// Remove the key.
    Delete,
    /// Set the value iff the key exists and its version is `expected_version`.
    Cas {
        /// The version the client believes the key has.
        expected_version: u64,
        /// The value to set on success.
        value: String,
    },
}

/// What the store answered. Its variant must match the [`Input`] variant
/// ([`validate`] refuses a mismatched pair).
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub enum Output {
    /// The value and version current at the read (`None`, 0 for a missing key).
    Get {
        /// Current value.
        value: Option<String>,
        /// Current version (0 when the key is missing).
        version: u64,
    },
    /// The version the Put gave the key.
    Put {
        /// New version.
        version: u64,
    },
    /// The version the Append gave the key.
    Append {
        /// New version.
        version: u64,
    },
    /// Whether the key existed when it was deleted.
    Delete {
        /// True iff there was something to delete.
        existed: bool,
    },
    /// The outcome of a compare-and-set.
    Cas {
        /// True iff the value was set.
        ok: bool,
        /// The new version when `ok`, the current version (0 if missing) when not.
        version: u64,
    },
}

/// One client request as the client saw it.
///
/// In JSON every field but `ret` must be present and no other may be: a
/// misspelled `output` would otherwise read as "outcome unknown", which the
/// checker may leave out, so the answer would silently go unchecked.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Operation {
    /// Who issued it. Used for display (one timeline row per client) and for
    /// minimization (drop whole clients); the checker itself only uses times.
    pub client: u64,
    /// The key it touched. Keys are checked independently (P-compositionality).
    pub key: String,
    /// What was asked.
    pub input: Input,
    /// What was answered; `None` = outcome unknown (timeout, lost connection):
    /// the operation may have taken effect at any time after `call`, even after
    /// `ret`, or never. Its `ret` is then ignored and taken as +infinity.
    /// Required in JSON (`"output": null` for unknown).
    #[serde(deserialize_with = "required_output")]
    pub output: Option<Output>,
    /// When the request was sent, in ns on one monotonic clock.
    pub call: u64,
    /// When the answer arrived; `None` = never: treated as +infinity.
    pub ret: Option<u64>,
}

/// `output` as serde reads it, but with no default: an absent field is an
/// error, not an unknown outcome (serde fills a missing `Option` with `None`
/// unless the field has a `deserialize_with`).
fn required_output<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Output>, D::Error> {
    Option::<Output>::deserialize(d)
}

impl Operation {
    /// The time after which the operation can no longer take effect, or
    /// `None` for +infinity (never returned, or outcome unknown).
    pub fn effective_ret(&self) -> Option<u64> {
        match self.output {
            Some(_) => self.ret,
            None => None,
        }
    }

    /// True iff `output` is present and of the same variant as `input`.
    pub fn output_matches_input(&self) -> bool {
        matches!(
            (&self.input, &self.output),
            (_, None)
                | (Input::Get, Some(Output::Get { .. }))
                | (Input::Put { .. }, Some(Output::Put { .. }))
                | (Input::Append { .. }, Some(Output::Append { .. }))
                | (Input::Delete, Some(Output::Delete { .. }))
                | (Input::Cas { .. }, Some(Output::Cas { .. }))
        )
    }

    /// A short human label such as `Put("a") -> v7` (values longer than 24
    /// characters are cut) for reports and the HTML timeline.
    pub fn label(&self) -> String {
        fn q(s: &str) -> String {
            let mut cut: String = s.chars().take(24).collect();
            if cut.len() < s.len() {
                cut.push('…');
            }
            format!("{cut:?}")
        }
        let input = match &self.input {
            Input::Get => "Get".to_string(),
            Input::Put { value } => format!("Put({})", q(value)),
            Input::Append { value } => format!("Append({})", q(value)),
            Input::Delete => "Delete".to_string(),
            Input::Cas {
                expected_version,
                value,
            } => format!("Cas(v{expected_version}, {})", q(value)),
        };
        let output = match &self.output {
            None => "?".to_string(),
            Some(Output::Get {
                value: Some(v),
                version,
            }) => format!("{} v{version}", q(v)),
            Some(Output::Get { value: None, version }) => format!("missing v{version}"),
            Some(Output::Put { version }) | Some(Output::Append { version }) => {
                format!("v{version}")
            }
            Some(Output::Delete { existed }) => format!("existed={existed}"),
            Some(Output::Cas { ok, version }) => format!("ok={ok} v{version}"),
        };
        format!("{input} -> {output}")
    }
}

/// Why a history file was refused.
#[derive(Debug, thiserror::Error)]
pub enum HistoryError {
    /// The file could not be read.
    #[error("reading history: {0}")]
    Io(#[from] std::io::Error),
    /// A line is longer than [`ParseLimits::max_line_bytes`].
    #[error("line {line}: longer than {limit} bytes")]
    LineTooLong {
        /// 1-based line number.
        line: usize,
        /// The limit in force.
        limit: usize,
    },
    /// More operations than [`ParseLimits::max_operations`].
    #[error("more than {limit} operations")]
    TooManyOperations {
        /// The limit in force.
        limit: usize,
    },
    /// More bytes than [`ParseLimits::max_total_bytes`].
    #[error("longer than {limit} bytes (the limit on a history's size)")]
    TooLarge {
        /// The limit in force.
        limit: u64,
    },
    /// A line is not a JSON [`Operation`].
    #[error("line {line}: not an operation: {error}")]
    Json {
        /// 1-based line number.
        line: usize,
        /// What serde said.
        error: serde_json::Error,
    },
    /// A line parses but describes an impossible operation.
    #[error("line {line}: {reason}")]
    Invalid {
        /// 1-based line number.
        line: usize,
        /// What is wrong with it.
        reason: String,
    },
    /// An operation handed to [`crate::try_check`] is impossible.
    #[error("operation {index} (0-based): {reason}")]
    InvalidOperation {
        /// Its position in the history.
        index: usize,
        /// What is wrong with it.
        reason: String,
    },
}

/// Hard limits for [`parse_jsonl`], so a hostile or corrupt file is refused
/// with an error instead of exhausting memory.
#[derive(Clone, Copy, Debug)]
pub struct ParseLimits {
    /// Longest accepted line, in bytes (the newline excluded).
    pub max_line_bytes: usize,
    /// Most operations accepted in one history.
    pub max_operations: usize,
    /// Most bytes read from one history (lines, newlines and blank lines
    /// included): the parsed operations take about as much memory again.
    pub max_total_bytes: u64,
}

impl Default for ParseLimits {
    fn default() -> Self {
        ParseLimits {
            max_line_bytes: 1 << 20,
            max_operations: 10_000_000,
            max_total_bytes: DEFAULT_MAX_TOTAL_BYTES,
        }
    }
}

/// [`ParseLimits::max_total_bytes`] by default: 4 GiB, about ten times the
/// history of `triton verify` at its default `--max-ops`.
pub const DEFAULT_MAX_TOTAL_BYTES: u64 = 4 << 30;

/// Checks what serde cannot: that `ret` is not before `call`, that an
/// answered operation has a return time, and that the output variant
/// matches the input variant.
pub fn validate(op: &Operation) -> Result<(), String> {
    if op.output.is_some() && op.ret.is_none() {
        // The search would take it as one whose outcome is unknown, which it
        // may leave out: its answer would never be checked.
        return Err("has an output but no return time (\"ret\": null)".to_string());
    }
    if let Some(ret) = op.ret {
        if ret < op.call {
            return Err(format!("returns at {ret}, before its call at {}", op.call));
        }
    }
    if !op.output_matches_input() {
        return Err("output variant does not match input variant".to_string());
    }
    Ok(())
}

/// Reads a JSON-lines history (blank lines are skipped), validating every
/// operation and enforcing `limits`.
pub fn parse_jsonl<R: BufRead>(mut reader: R, limits: ParseLimits) -> Result<Vec<Operation>, HistoryError> {
    let mut ops = Vec::new();
    let mut buf = Vec::new();
    let mut line_no = 0usize;
    let mut total = 0u64;
    loop {
        buf.clear();
        line_no += 1;
        // Read at most limit+1 bytes of the line so a huge line cannot grow `buf`.
        let read =
            std::io::Read::take(reader.by_ref(), limits.max_line_bytes as u64 + 1).read_until(b'\n', &mut buf)?;
        if read == 0 {
            break;
        }
        total = total.saturating_add(read as u64);
        if total > limits.max_total_bytes {
            return Err(HistoryError::TooLarge {
                limit: limits.max_total_bytes,
            });
        }
        if buf.last() == Some(&b'\n') {
            buf.pop();
        } else if buf.len() > limits.max_line_bytes {
            return Err(HistoryError::LineTooLong {
                line: line_no,
                limit: limits.max_line_bytes,
            });
        }
        if buf.last() == Some(&b'\r') {
            buf.pop();
        }
        if buf.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        if ops.len() >= limits.max_operations {
            return Err(HistoryError::TooManyOperations {
                limit: limits.max_operations,
            });
        }
        let op: Operation =
            serde_json::from_slice(&buf).map_err(|error| HistoryError::Json { line: line_no, error })?;
        validate(&op).map_err(|reason| HistoryError::Invalid { line: line_no, reason })?;
        ops.push(op);
    }
    Ok(ops)
}

/// Writes `ops` as JSON lines (the inverse of [`parse_jsonl`]).
pub fn write_jsonl<W: std::io::Write>(mut out: W, ops: &[Operation]) -> std::io::Result<()> {
    for op in ops {
        serde_json::to_writer(&mut out, op)?;
        out.write_all(b"\n")?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const LINE: &str =
        r#"{"client":1,"key":"k","input":"Get","output":{"Get":{"value":null,"version":0}},"call":1,"ret":2}"#;

    #[test]
    fn parses_lines_and_skips_blank_ones() {
        let text = format!("{LINE}\n\n{LINE}\r\n{LINE}");
        let ops = parse_jsonl(text.as_bytes(), ParseLimits::default()).unwrap();
        assert_eq!(ops.len(), 3);
        let mut out = Vec::new();
        write_jsonl(&mut out, &ops).unwrap();
        assert_eq!(parse_jsonl(&out[..], ParseLimits::default()).unwrap(), ops);
    }

    #[test]
    fn refuses_overlong_lines_and_too_many_operations() {
        let limits = ParseLimits {
            max_line_bytes: 40,
            max_operations: 10,
            ..ParseLimits::default()
        };
        let err = parse_jsonl(format!("{LINE}\n").as_bytes(), limits).unwrap_err();
        assert!(matches!(err, HistoryError::LineTooLong { line: 1, .. }), "{err}");
        let limits = ParseLimits {
            max_line_bytes: 1000,
            max_operations: 2,
            ..ParseLimits::default()
        };
        let text = [LINE, LINE, LINE].join("\n");
        let err = parse_jsonl(text.as_bytes(), limits).unwrap_err();
        assert!(matches!(err, HistoryError::TooManyOperations { limit: 2 }), "{err}");
    }

    #[test]
    fn refuses_a_history_larger_than_its_byte_limit() {
        let text = [LINE, LINE, LINE].join("\n");
        // Two lines and their newlines fit, the third does not.
        let limit = 2 * (LINE.len() as u64 + 1) + 10;
        let limits = ParseLimits {
            max_total_bytes: limit,
            ..ParseLimits::default()
        };
        let err = parse_jsonl(text.as_bytes(), limits).unwrap_err();
        assert!(
            matches!(err, HistoryError::TooLarge { limit: l } if l == limit),
            "{err}"
        );
        assert!(err.to_string().contains(&limit.to_string()), "{err}");
        // Blank lines count too: they cost reading all the same.
        let padded = format!("{LINE}\n{}\n", " ".repeat(200));
        let limits = ParseLimits {
            max_total_bytes: 150,
            ..ParseLimits::default()
        };
        assert!(matches!(
            parse_jsonl(padded.as_bytes(), limits),
            Err(HistoryError::TooLarge { .. })
        ));
        let limits = ParseLimits {
            max_total_bytes: text.len() as u64,
            ..ParseLimits::default()
        };
        assert_eq!(parse_jsonl(text.as_bytes(), limits).unwrap().len(), 3);
    }

    #[test]
    fn refuses_a_missing_or_misspelled_output_but_takes_an_explicit_null() {
        // A misspelled field would otherwise leave `output` absent, read as an
        // unknown outcome: the answer would never be checked.
        let typo = LINE.replace(r#""output""#, r#""result""#);
        let err = parse_jsonl(typo.as_bytes(), ParseLimits::default()).unwrap_err();
        assert!(matches!(&err, HistoryError::Json { line: 1, .. }), "{err}");
        assert!(err.to_string().contains("result"), "{err}");
        let absent = LINE.replace(r#""output":{"Get":{"value":null,"version":0}},"#, "");
        let err = parse_jsonl(absent.as_bytes(), ParseLimits::default()).unwrap_err();
        assert!(err.to_string().contains("missing field `output`"), "{err}");
        let unknown = LINE.replace(r#"{"Get":{"value":null,"version":0}}"#, "null");
        let ops = parse_jsonl(unknown.as_bytes(), ParseLimits::default()).unwrap();
        assert_eq!(ops[0].output, None);
        // Unknown fields inside an input or output are refused as well.
        let extra = LINE.replace(r#""version":0}"#, r#""version":0,"versoin":3}"#);
        let err = parse_jsonl(extra.as_bytes(), ParseLimits::default()).unwrap_err();
        assert!(err.to_string().contains("versoin"), "{err}");
        // `ret` may still be left out of an unknown-outcome operation.
        let no_ret = unknown.replace(r#","ret":2"#, "");
        assert_eq!(
            parse_jsonl(no_ret.as_bytes(), ParseLimits::default()).unwrap()[0].ret,
            None
        );
    }

    #[test]
    fn refuses_impossible_operations() {
        let backwards = LINE.replace(r#""call":1,"ret":2"#, r#""call":5,"ret":2"#);
        let err = parse_jsonl(backwards.as_bytes(), ParseLimits::default()).unwrap_err();
        assert!(matches!(err, HistoryError::Invalid { line: 1, .. }), "{err}");
        let mismatched = LINE.replace(r#"{"Get":{"value":null,"version":0}}"#, r#"{"Put":{"version":3}}"#);
        let err = parse_jsonl(mismatched.as_bytes(), ParseLimits::default()).unwrap_err();
        assert!(matches!(err, HistoryError::Invalid { line: 1, .. }), "{err}");
        let answered_never_returned = LINE.replace(r#""ret":2"#, r#""ret":null"#);
        let err = parse_jsonl(answered_never_returned.as_bytes(), ParseLimits::default()).unwrap_err();
        assert!(
            matches!(&err, HistoryError::Invalid { line: 1, reason } if reason.contains("no return time")),
            "{err}"
        );
        let err = parse_jsonl(&b"{\"client\":1}\n"[..], ParseLimits::default()).unwrap_err();
        assert!(matches!(err, HistoryError::Json { line: 1, .. }), "{err}");
        let err = parse_jsonl(&[0xff, 0xfe, b'\n'][..], ParseLimits::default()).unwrap_err();
        assert!(matches!(err, HistoryError::Json { line: 1, .. }), "{err}");
    }
}
