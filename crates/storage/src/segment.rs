//! Reading one segment file and applying the torn-tail rule.
//!
//! Only the last record of the last segment may be damaged, and only in a way
//! a crash mid-append explains (incomplete, or a checksum mismatch) with no
//! valid record anywhere after it. Everything else is corruption.
//!
//! The last segment may also end in zero bytes: the part preallocated ahead
//! of its records (`WalOptions::preallocate_bytes`) and not yet written. No
//! record is all zeros (its checksum would not match), so where the rest of
//! the file is zeros the records end cleanly; nothing was torn.

use std::path::Path;

use crate::error::StorageError;
use crate::format::{self, Record, RecordProblem, Scan, SEGMENT_HEADER_LEN};

/// The records of one segment, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SegmentContents {
    /// Sequence number from the header.
    pub seq: u64,
    /// First index from the header (the log's next index when it was created).
    pub first_index: u64,
    /// Each valid record with its byte offset.
    pub records: Vec<(u64, Record)>,
    /// A torn tail: where the valid part ends and why the rest is not valid.
    /// Offset 0 means even the header is torn.
    pub torn_tail: Option<(u64, String)>,
    /// Where the valid records end: the file's length, the start of its
    /// zero-filled preallocated part, or the torn tail.
    pub records_end: u64,
}

/// Parses the bytes of segment `path`. `is_last` says whether a torn tail is
/// allowed (only in the last segment, which is the only one ever appended to).
pub fn parse_segment(
    path: &Path,
    data: &[u8],
    max_record_bytes: u32,
    is_last: bool,
) -> Result<SegmentContents, StorageError> {
    let (seq, first_index) = match format::check_segment_header(data) {
        Ok(v) => v,
        Err(reason) => {
            let followed = format::find_valid_record(data.get(1..).unwrap_or(&[]), max_record_bytes);
            return match followed {
                // Nothing valid anywhere in the file: a segment whose creation was
                // torn; it never held anything, so removing it loses nothing.
                Scan::Nothing if is_last => Ok(SegmentContents {
                    seq: 0,
                    first_index: 0,
                    records: Vec::new(),
                    torn_tail: Some((0, reason)),
                    records_end: 0,
                }),
                _ => Err(StorageError::corrupt(path, 0, reason)),
            };
        }
    };
    let mut records = Vec::new();
    let mut at = SEGMENT_HEADER_LEN;
    let mut torn_tail = None;
    while at < data.len() {
        match format::check_record(&data[at..], max_record_bytes) {
            Ok(n) => {
                records.push((at as u64, format::decode_checked(&data[at..])));
                at += n;
            }
            Err(_) if is_last && is_unused(&data[at..]) => break,
            Err(problem) => {
                check_tail(path, data, at, &problem, max_record_bytes, is_last)?;
                torn_tail = Some((at as u64, problem.to_string()));
                break;
            }
        }
    }
    Ok(SegmentContents {
        seq,
        first_index,
        records,
        torn_tail,
        records_end: at as u64,
    })
}

/// Whether `rest` is the never-written, zero-filled end of a segment.
pub(crate) fn is_unused(rest: &[u8]) -> bool {
    rest.iter().all(|&b| b == 0)
}

/// Where the records of the last segment at `path` end (the offset the next
/// append writes at, before any preallocated zeros): for tests that tear the
/// final record, and for tools.
pub fn records_end(path: &Path, max_record_bytes: u32) -> Result<u64, StorageError> {
    let data = std::fs::read(path).map_err(|e| StorageError::io(path, e))?;
    Ok(parse_segment(path, &data, max_record_bytes, true)?.records_end)
}

/// Returns Ok if the problem at `at` is a torn tail, else the Corrupt error.
fn check_tail(
    path: &Path,
    data: &[u8],
    at: usize,
    problem: &RecordProblem,
    max_record_bytes: u32,
    is_last: bool,
) -> Result<(), StorageError> {
    if !is_last {
        return Err(StorageError::corrupt(
            path,
            at as u64,
            format!("{problem} (in a segment that is not the last one, so it cannot be a torn write)"),
        ));
    }
    if !problem.may_be_torn() {
        return Err(StorageError::corrupt(path, at as u64, problem.to_string()));
    }
    match format::find_valid_record(&data[at + 1..], max_record_bytes) {
        Scan::Nothing => Ok(()),
        Scan::Found(next) => Err(StorageError::corrupt(
            path,
            at as u64,
            format!(
                "{problem}, but a valid record follows at offset {}, so this is not a torn tail",
                at + 1 + next
            ),
        )),
        Scan::GaveUp => Err(StorageError::corrupt(
            path,
            at as u64,
            format!("{problem}, and the bytes after it are too large to prove that no valid record follows"),
        )),
    }
}
