//! The text form: `M: 3`, then `metadata0: host:port`, `metadata1: ...`.
//!
//! The format is tiny, so it is parsed by hand, line by line, and every
//! error names its line: `line N: expected 'metadataK: host:port'`. Blank
//! lines are allowed anywhere; the `metadataK` lines must be numbered 0, 1,
//! 2, ... in order and there must be exactly `M` of them.

use crate::{addr, ClusterConfig, ConfigError, Field, Labels, NodeConfig};

/// Whether `text` is in this form: its first non-blank line starts with `M:`.
pub(crate) fn looks_like_text_form(text: &str) -> bool {
    text.lines()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .is_some_and(|l| l.starts_with("M:"))
}

/// Names fields by the line they came from.
struct TextLabels {
    /// Line of `M: n`.
    m_line: usize,
    /// Line of `metadataK`, indexed by K.
    node_lines: Vec<usize>,
}

impl Labels for TextLabels {
    fn label(&self, field: Field) -> String {
        match field {
            Field::Nodes | Field::BlockStore(_) => format!("line {} (M)", self.m_line),
            Field::NodeId(k) | Field::NodeAddr(k) | Field::NodeFileAddr(k) | Field::NodeHttpAddr(k) => {
                match self.node_lines.get(k) {
                    Some(line) => format!("line {line} (metadata{k})"),
                    None => format!("metadata{k}"),
                }
            }
        }
    }
}

fn at(line: usize, message: impl Into<String>) -> ConfigError {
    ConfigError::Line {
        line,
        message: message.into(),
    }
}

/// Parses and validates the text form.
pub(crate) fn parse(text: &str) -> Result<ClusterConfig, ConfigError> {
    let mut lines = text
        .lines()
        .enumerate()
        .map(|(i, l)| (i + 1, l.trim()))
        .filter(|(_, l)| !l.is_empty());
    let Some((m_line, first)) = lines.next() else {
        return Err(ConfigError::Empty);
    };
    let m_value = first.strip_prefix("M:").map(str::trim).unwrap_or_default();
    let m: u64 = match m_value.parse() {
        Ok(m) if m_value.bytes().all(|b| b.is_ascii_digit()) => m,
        _ => {
            return Err(at(
                m_line,
                format!("expected 'M: <number of metadata servers>', got {}", addr::quote(first)),
            ))
        }
    };
    if m == 0 {
        return Err(at(
            m_line,
            "M must be at least 1 (the number of metadataK lines that follow)",
        ));
    }

    let mut nodes = Vec::new();
    let mut node_lines = Vec::new();
    for (line, content) in lines {
        let expected_k = nodes.len() as u64;
        if expected_k == m {
            return Err(at(
                line,
                format!("more metadataK lines than 'M: {m}' on line {m_line} announces; they must match"),
            ));
        }
        let Some((key, value)) = content.split_once(':') else {
            return Err(at(
                line,
                format!(
                    "expected 'metadataK: host:port' (here metadata{expected_k}), got {}",
                    addr::quote(content)
                ),
            ));
        };
        let key = key.trim();
        let value = value.trim();
        match key.strip_prefix("metadata").map(|k| (k, k.parse::<u64>())) {
            Some((digits, Ok(k))) if digits.bytes().all(|b| b.is_ascii_digit()) => {
                if k != expected_k || digits != k.to_string() {
                    return Err(at(
                        line,
                        format!(
                            "expected metadata{expected_k}, found {key}: metadataK lines are numbered 0, 1, 2, ... in order, without gaps"
                        ),
                    ));
                }
            }
            _ => {
                return Err(at(
                    line,
                    format!(
                        "expected 'metadataK: host:port' (here metadata{expected_k}), got {}",
                        addr::quote(content)
                    ),
                ))
            }
        }
        addr::parse_host_port(value).map_err(|m| at(line, format!("{key}: {m}")))?;
        nodes.push(NodeConfig {
            id: expected_k,
            addr: value.to_string(),
            file_addr: None,
            http_addr: None,
        });
        node_lines.push(line);
    }
    if nodes.len() as u64 != m {
        return Err(at(
            m_line,
            format!("M: {m} but {} metadataK line(s) follow; they must match", nodes.len()),
        ));
    }
    let config = ClusterConfig {
        nodes,
        ..ClusterConfig::default()
    };
    config.validate_with(&TextLabels { m_line, node_lines })?;
    Ok(config)
}
