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

use std::fs::File;
use std::io::Read;
use std::path::Path;

use crate::error::StorageError;
use crate::format::{self, Record, RecordProblem, Scan, SEGMENT_HEADER_LEN};
use crate::reader::{ScanBudget, Source};

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
    parse(path, &mut Source::slice(data), max_record_bytes, is_last)
}

/// Opens segment `path`, refusing one longer than `max_len` as `Corrupt` (at
/// offset `max_len`). Returns the file and its length.
pub(crate) fn open_segment(path: &Path, max_len: u64) -> Result<(File, u64), StorageError> {
    let file = File::open(path).map_err(|e| StorageError::io(path, e))?;
    let len = file.metadata().map_err(|e| StorageError::io(path, e))?.len();
    if len > max_len {
        return Err(StorageError::corrupt(
            path,
            max_len,
            format!(
                "the segment is {len} bytes long, more than the {max_len} a segment written with these options can hold (segment_bytes + one record of max_record_bytes + preallocate_bytes; lowering them below what wrote the log makes recovery refuse it)"
            ),
        ));
    }
    Ok((file, len))
}

/// Reads and parses segment file `path` (refused if longer than `max_len`)
/// as [`parse_segment`] does, through a bounded window: what stays in
/// memory is its records, never the zeros or damaged bytes after them.
pub(crate) fn read_segment(
    path: &Path,
    max_len: u64,
    max_record_bytes: u32,
    is_last: bool,
) -> Result<SegmentContents, StorageError> {
    let (file, len) = open_segment(path, max_len)?;
    parse(path, &mut Source::file(&file, len), max_record_bytes, is_last)
}

/// Reads at most `n` bytes from the start of `path` (for files known to be short).
pub(crate) fn read_prefix(path: &Path, n: u64) -> Result<Vec<u8>, StorageError> {
    let mut data = Vec::new();
    File::open(path)
        .and_then(|f| f.take(n).read_to_end(&mut data))
        .map_err(|e| StorageError::io(path, e))?;
    Ok(data)
}

fn parse(
    path: &Path,
    src: &mut Source<'_>,
    max_record_bytes: u32,
    is_last: bool,
) -> Result<SegmentContents, StorageError> {
    let io = |e| StorageError::io(path, e);
    let len = src.len();
    let head = src.get(0, len.min(SEGMENT_HEADER_LEN as u64) as usize).map_err(io)?;
    let (seq, first_index) = match format::check_segment_header(head) {
        Ok(v) => v,
        Err(reason) => {
            let mut budget = ScanBudget::for_search(len.saturating_sub(1));
            let followed = src.find_valid_record(1, max_record_bytes, &mut budget).map_err(io)?;
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
    let mut at = SEGMENT_HEADER_LEN as u64;
    let mut torn_tail = None;
    while at < len {
        match src.check_record(at, max_record_bytes).map_err(io)? {
            Ok(n) => {
                records.push((at, src.decode(at, n).map_err(io)?));
                at += n;
            }
            Err(_) if is_last && src.is_unused(at).map_err(io)? => break,
            Err(problem) => {
                check_tail(path, src, at, &problem, max_record_bytes, is_last)?;
                torn_tail = Some((at, problem.to_string()));
                break;
            }
        }
    }
    Ok(SegmentContents {
        seq,
        first_index,
        records,
        torn_tail,
        records_end: at,
    })
}

/// Where the records of the last segment at `path` end (the offset the next
/// append writes at, before any preallocated zeros): for tests that tear the
/// final record, and for tools.
pub fn records_end(path: &Path, max_record_bytes: u32) -> Result<u64, StorageError> {
    Ok(read_segment(path, u64::MAX, max_record_bytes, true)?.records_end)
}

/// Returns Ok if the problem at `at` is a torn tail, else the Corrupt error.
fn check_tail(
    path: &Path,
    src: &mut Source<'_>,
    at: u64,
    problem: &RecordProblem,
    max_record_bytes: u32,
    is_last: bool,
) -> Result<(), StorageError> {
    if !is_last {
        return Err(StorageError::corrupt(
            path,
            at,
            format!("{problem} (in a segment that is not the last one, so it cannot be a torn write)"),
        ));
    }
    if !problem.may_be_torn() {
        return Err(StorageError::corrupt(path, at, problem.to_string()));
    }
    let mut budget = ScanBudget::for_search(src.len() - at - 1);
    match src
        .find_valid_record(at + 1, max_record_bytes, &mut budget)
        .map_err(|e| StorageError::io(path, e))?
    {
        Scan::Nothing => Ok(()),
        Scan::Found(next) => Err(StorageError::corrupt(
            path,
            at,
            format!("{problem}, but a valid record follows at offset {next}, so this is not a torn tail"),
        )),
        Scan::GaveUp => Err(StorageError::corrupt(
            path,
            at,
            format!("{problem}, and the bytes after it are too large to prove that no valid record follows"),
        )),
    }
}
