//! Read-only listing of a WAL directory for operators (`triton wal dump`):
//! segments, records, hard state and snapshot metadata. Unlike
//! [`crate::Wal::open`] it never repairs or deletes anything, and it keeps
//! going past damage so the operator sees the whole picture.

use std::fmt::Write as _;
use std::fs;
use std::path::Path;

use crate::error::StorageError;
use crate::format::{self, Record, SEGMENT_HEADER_LEN};
use crate::snapshot;
use crate::types::WalOptions;

/// What a dump found, besides the text.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DumpSummary {
    /// Segment files listed.
    pub segments: usize,
    /// Valid records listed.
    pub records: usize,
    /// Problems found (damaged records or headers, bad snapshots).
    pub problems: usize,
}

fn describe(record: &Record) -> String {
    match record {
        Record::Entry(e) => format!(
            "entry index={} term={} payload={}B",
            e.index,
            e.term,
            e.payload.len()
        ),
        Record::HardState(hs) => format!(
            "hard-state term={} vote={} commit={}",
            hs.term, hs.vote, hs.commit
        ),
        Record::Truncate { from } => format!("truncate from={from}"),
        Record::Snapshot { index, term } => format!("snapshot-marker index={index} term={term}"),
    }
}

/// Describes the contents of `dir` into `out`. With `records` false, only
/// per-segment totals are printed.
pub fn dump(
    dir: &Path,
    opts: &WalOptions,
    records: bool,
    out: &mut String,
) -> Result<DumpSummary, StorageError> {
    let mut summary = DumpSummary::default();
    let mut names: Vec<_> = fs::read_dir(dir)
        .map_err(|e| StorageError::io(dir, e))?
        .filter_map(|item| item.ok())
        .filter_map(|item| item.file_name().into_string().ok())
        .collect();
    names.sort();
    for name in names
        .iter()
        .filter(|n| format::parse_snapshot_file_name(n).is_some())
    {
        let path = dir.join(name);
        match snapshot::verify_snapshot_file(&path) {
            Ok(m) => {
                let _ = writeln!(
                    out,
                    "snapshot {name}: index={} term={} membership={}B",
                    m.index,
                    m.term,
                    m.membership.len()
                );
            }
            Err(e) => {
                summary.problems += 1;
                let _ = writeln!(out, "snapshot {name}: DAMAGED: {e}");
            }
        }
    }
    for name in names.iter().filter(|n| n.ends_with(".tmp")) {
        let _ = writeln!(
            out,
            "leftover temporary file {name} (deleted at the next open)"
        );
    }
    let segment_names: Vec<_> = names
        .iter()
        .filter(|n| format::parse_segment_file_name(n).is_some())
        .collect();
    for name in &segment_names {
        summary.segments += 1;
        let path = dir.join(name);
        let data = fs::read(&path).map_err(|e| StorageError::io(&path, e))?;
        match format::check_segment_header(&data) {
            Ok((seq, first)) => {
                let _ = writeln!(
                    out,
                    "segment {name}: {} bytes, seq={seq} first_index={first}",
                    data.len()
                );
            }
            Err(reason) => {
                summary.problems += 1;
                let _ = writeln!(out, "segment {name}: DAMAGED header at offset 0: {reason}");
                continue;
            }
        }
        let (mut count, mut entries, mut last_hs) = (0usize, 0usize, None);
        let mut at = SEGMENT_HEADER_LEN;
        while at < data.len() {
            match format::check_record(&data[at..], opts.max_record_bytes) {
                Ok(n) => {
                    let record = format::decode_checked(&data[at..]);
                    if records {
                        let _ = writeln!(out, "  @{at}: {}", describe(&record));
                    }
                    match &record {
                        Record::Entry(_) => entries += 1,
                        Record::HardState(hs) => last_hs = Some(*hs),
                        _ => {}
                    }
                    count += 1;
                    at += n;
                }
                Err(problem) => {
                    summary.problems += 1;
                    let after = format::find_valid_record(&data[at + 1..], opts.max_record_bytes)
                        .map(|n| format!("; a valid record follows at offset {}", at + 1 + n))
                        .unwrap_or_else(|| {
                            "; nothing valid after it (a torn tail if this is the last segment)"
                                .into()
                        });
                    let _ = writeln!(out, "  @{at}: DAMAGED: {problem}{after}");
                    break;
                }
            }
        }
        summary.records += count;
        let _ = writeln!(
            out,
            "  {count} records, {entries} entries, last hard state: {}",
            last_hs.map_or("none".into(), |hs| describe(&Record::HardState(hs)))
        );
    }
    if segment_names.is_empty() {
        let _ = writeln!(out, "no WAL segments in {}", dir.display());
    }
    Ok(summary)
}
