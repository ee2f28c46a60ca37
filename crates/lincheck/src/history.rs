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

/// What the store answered. Its variant must match the [`Input`] variant;
/// a mismatched pair can never be explained and so counts as a violation.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
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
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
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
    pub output: Option<Output>,
    /// When the request was sent, in ns on one monotonic clock.
    pub call: u64,
    /// When the answer arrived; `None` = never: treated as +infinity.
    pub ret: Option<u64>,
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
}

/// Hard limits for [`parse_jsonl`], so a hostile or corrupt file is refused
/// with an error instead of exhausting memory.
#[derive(Clone, Copy, Debug)]
pub struct ParseLimits {
    /// Longest accepted line, in bytes (the newline excluded).
    pub max_line_bytes: usize,
    /// Most operations accepted in one history.
    pub max_operations: usize,
}

impl Default for ParseLimits {
    fn default() -> Self {
        ParseLimits {
            max_line_bytes: 1 << 20,
            max_operations: 10_000_000,
        }
    }
}

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
    loop {
        buf.clear();
        line_no += 1;
        // Read at most limit+1 bytes of the line so a huge line cannot grow `buf`.
        let read =
            std::io::Read::take(reader.by_ref(), limits.max_line_bytes as u64 + 1).read_until(b'\n', &mut buf)?;
        if read == 0 {
            break;
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
        };
        let err = parse_jsonl(format!("{LINE}\n").as_bytes(), limits).unwrap_err();
        assert!(matches!(err, HistoryError::LineTooLong { line: 1, .. }), "{err}");
        let limits = ParseLimits {
            max_line_bytes: 1000,
            max_operations: 2,
        };
        let text = [LINE, LINE, LINE].join("\n");
        let err = parse_jsonl(text.as_bytes(), limits).unwrap_err();
        assert!(matches!(err, HistoryError::TooManyOperations { limit: 2 }), "{err}");
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
