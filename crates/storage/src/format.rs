//! The on-disk format, byte by byte (docs/STORAGE.md is the prose version).
//!
//! Every file starts with a magic number and a format version so that a future
//! format, or a file that is not ours, is refused rather than misread. All
//! integers are little-endian. Checksums are CRC-32C (Castagnoli).

use crate::reader::{ScanBudget, Source};
use crate::types::{HardState, LogEntry};

/// Version of the segment and snapshot formats written by this code.
pub const FORMAT_VERSION: u32 = 1;
/// First 8 bytes of every WAL segment file.
pub const SEGMENT_MAGIC: [u8; 8] = *b"TRTNWAL\0";
/// First 8 bytes of every snapshot file.
pub const SNAPSHOT_MAGIC: [u8; 8] = *b"TRTNSNAP";
/// Segment header: magic(8) version(4) seq(8) first_index(8) crc32c(4).
pub const SEGMENT_HEADER_LEN: usize = 32;
/// Record header: len(4) crc32c(4) type(1). `len` counts the body only.
pub const RECORD_HEADER_LEN: usize = 9;
/// Snapshot header: magic(8) version(4) index(8) term(8) membership_len(4) data_len(8).
pub const SNAPSHOT_HEADER_LEN: usize = 40;
/// Snapshot trailer: crc32c(4) of every byte before it.
pub const SNAPSHOT_TRAILER_LEN: usize = 4;

/// Largest log index, segment sequence number or term accepted from disk or
/// from a snapshot: far beyond any real log, and leaves room for `+ 1`.
pub const MAX_INDEX: u64 = 1 << 62;

/// Largest snapshot membership blob accepted, on write and from disk. It is
/// a list of member ids and roles, a few bytes a member; recovery reads it
/// into memory before the file's checksum is checked, so it needs a bound
/// smaller than the file length (a sparse file has any length for free).
pub const MAX_MEMBERSHIP_BYTES: u32 = 16 << 20;

/// Record type: one log entry. Body: index(8) term(8) payload(len - 16).
pub const REC_ENTRY: u8 = 1;
/// Record type: hard state. Body: term(8) vote(8) commit(8).
pub const REC_HARD_STATE: u8 = 2;
/// Record type: drop every entry with index >= from. Body: from(8).
pub const REC_TRUNCATE: u8 = 3;
/// Record type: a snapshot at (index, term) is durable. Body: index(8) term(8).
pub const REC_SNAPSHOT: u8 = 4;

/// Fixed part of an entry record's body (index and term).
pub const ENTRY_BODY_FIXED: usize = 16;

/// One decoded WAL record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Record {
    /// A log entry.
    Entry(LogEntry),
    /// The latest hard state (the last one in the log wins).
    HardState(HardState),
    /// Entries with index >= `from` were replaced (a conflicting suffix).
    Truncate {
        /// First index removed.
        from: u64,
    },
    /// A snapshot at (`index`, `term`) was made durable; the log from here on
    /// depends on it, so recovery refuses to fall back to an older snapshot.
    Snapshot {
        /// Last index covered by the snapshot.
        index: u64,
        /// Term of that entry.
        term: u64,
    },
}

/// Why the bytes at some offset are not a valid record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecordProblem {
    /// The header or the body runs past the end of the file.
    Incomplete {
        /// Bytes the record needs.
        needed: u64,
        /// Bytes left in the file.
        available: u64,
    },
    /// The length prefix is over `max_record_bytes`.
    TooLarge {
        /// The length prefix.
        len: u32,
        /// The limit.
        max: u32,
    },
    /// The stored checksum does not match the bytes.
    BadChecksum {
        /// Stored value.
        stored: u32,
        /// Value computed over type and body.
        computed: u32,
    },
    /// The checksum matches but the type or the body length is not one we write.
    BadShape {
        /// The type byte.
        kind: u8,
        /// The body length.
        len: u32,
    },
}

impl RecordProblem {
    /// Whether a crash in the middle of an append can explain this problem.
    /// A record with a good checksum but an unknown shape, or a length over
    /// the limit, was never a half-written record of ours.
    pub fn may_be_torn(&self) -> bool {
        matches!(
            self,
            RecordProblem::Incomplete { .. } | RecordProblem::BadChecksum { .. }
        )
    }
}

impl std::fmt::Display for RecordProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RecordProblem::Incomplete { needed, available } => write!(
                f,
                "incomplete record: needs {needed} bytes, {available} left in the file"
            ),
            RecordProblem::TooLarge { len, max } => {
                write!(f, "record length {len} is over max_record_bytes = {max}")
            }
            RecordProblem::BadChecksum { stored, computed } => {
                write!(f, "checksum mismatch: stored {stored:#010x}, computed {computed:#010x}")
            }
            RecordProblem::BadShape { kind, len } => write!(
                f,
                "record of type {kind} with a {len}-byte body is not a record this version writes"
            ),
        }
    }
}

fn u32_at(buf: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(buf[at..at + 4].try_into().expect("4 bytes"))
}

fn u64_at(buf: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(buf[at..at + 8].try_into().expect("8 bytes"))
}

/// Whether `kind` with a `len`-byte body is a shape this version writes.
pub(crate) fn shape_ok(kind: u8, len: u32) -> bool {
    match kind {
        REC_ENTRY => len as usize >= ENTRY_BODY_FIXED,
        REC_HARD_STATE => len == 24,
        REC_TRUNCATE => len == 8,
        REC_SNAPSHOT => len == 16,
        _ => false,
    }
}

/// Appends one record (header, type, body parts) to `out`.
fn encode_parts(out: &mut Vec<u8>, kind: u8, parts: &[&[u8]]) {
    let body_len: usize = parts.iter().map(|p| p.len()).sum();
    let len = u32::try_from(body_len).expect("callers bound record sizes by max_record_bytes");
    let start = out.len();
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(&[0; 4]);
    out.push(kind);
    for part in parts {
        out.extend_from_slice(part);
    }
    let crc = crc32c::crc32c(&out[start + 8..]);
    out[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
}

/// Appends the encoding of `record` to `out`.
pub fn encode_record(out: &mut Vec<u8>, record: &Record) {
    match record {
        Record::Entry(e) => encode_entry(out, e),
        Record::HardState(hs) => encode_parts(
            out,
            REC_HARD_STATE,
            &[&hs.term.to_le_bytes(), &hs.vote.to_le_bytes(), &hs.commit.to_le_bytes()],
        ),
        Record::Truncate { from } => encode_parts(out, REC_TRUNCATE, &[&from.to_le_bytes()]),
        Record::Snapshot { index, term } => {
            encode_parts(out, REC_SNAPSHOT, &[&index.to_le_bytes(), &term.to_le_bytes()])
        }
    }
}

/// Appends an entry record without copying the entry first.
pub fn encode_entry(out: &mut Vec<u8>, e: &LogEntry) {
    encode_parts(
        out,
        REC_ENTRY,
        &[&e.index.to_le_bytes(), &e.term.to_le_bytes(), &e.payload],
    );
}

/// Checks the record at the start of `buf` (which runs to the end of the
/// file) without allocating. Returns its total length (header + body).
pub fn check_record(buf: &[u8], max_record_bytes: u32) -> Result<usize, RecordProblem> {
    Source::slice(buf)
        .check_record(0, max_record_bytes)
        .expect("reading a slice cannot fail")
        .map(|total| total as usize)
}

/// Outcome of [`find_valid_record`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scan {
    /// A valid record starts at this offset.
    Found(usize),
    /// No offset holds a valid record.
    Nothing,
    /// The search spent its checksum budget without an answer (only crafted
    /// input does this); callers must treat it like `Found`: not provably torn.
    GaveUp,
}

/// Searches `buf` for a valid record at any offset (used to tell a torn tail,
/// after which nothing valid may follow, from damage in the middle of a log).
/// Cheap checks (length bound, known type and body size) run before the
/// checksum. The checksum work is capped at 64 times the length of `buf`
/// (at least 64 MiB), so crafted input cannot make recovery hang.
pub fn find_valid_record(buf: &[u8], max_record_bytes: u32) -> Scan {
    Source::slice(buf)
        .find_valid_record(0, max_record_bytes, &mut ScanBudget::for_search(buf.len() as u64))
        .expect("reading a slice cannot fail")
}

/// Decodes a record that `check_record` accepted; `buf` starts at the record.
/// Allocates at most the record's body length, which the check bounded by
/// both `max_record_bytes` and the bytes actually present.
pub fn decode_checked(buf: &[u8]) -> Record {
    let len = u32_at(buf, 0) as usize;
    let body = &buf[RECORD_HEADER_LEN..RECORD_HEADER_LEN + len];
    match buf[8] {
        REC_ENTRY => Record::Entry(LogEntry {
            index: u64_at(body, 0),
            term: u64_at(body, 8),
            payload: body[ENTRY_BODY_FIXED..].to_vec(),
        }),
        REC_HARD_STATE => Record::HardState(HardState {
            term: u64_at(body, 0),
            vote: u64_at(body, 8),
            commit: u64_at(body, 16),
        }),
        REC_TRUNCATE => Record::Truncate { from: u64_at(body, 0) },
        REC_SNAPSHOT => Record::Snapshot {
            index: u64_at(body, 0),
            term: u64_at(body, 8),
        },
        other => unreachable!("check_record accepted unknown record type {other}"),
    }
}

/// Encodes a segment header.
pub fn encode_segment_header(seq: u64, first_index: u64) -> [u8; SEGMENT_HEADER_LEN] {
    let mut h = [0u8; SEGMENT_HEADER_LEN];
    h[0..8].copy_from_slice(&SEGMENT_MAGIC);
    h[8..12].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
    h[12..20].copy_from_slice(&seq.to_le_bytes());
    h[20..28].copy_from_slice(&first_index.to_le_bytes());
    let crc = crc32c::crc32c(&h[..28]);
    h[28..32].copy_from_slice(&crc.to_le_bytes());
    h
}

/// Checks a segment header; returns (seq, first_index).
pub fn check_segment_header(buf: &[u8]) -> Result<(u64, u64), String> {
    if buf.len() < SEGMENT_HEADER_LEN {
        return Err(format!(
            "segment header needs {SEGMENT_HEADER_LEN} bytes, the file has {}",
            buf.len()
        ));
    }
    if buf[0..8] != SEGMENT_MAGIC {
        return Err("not a Triton WAL segment (bad magic number)".into());
    }
    let stored = u32_at(buf, 28);
    let computed = crc32c::crc32c(&buf[..28]);
    if stored != computed {
        return Err(format!(
            "segment header checksum mismatch: stored {stored:#010x}, computed {computed:#010x}"
        ));
    }
    let version = u32_at(buf, 8);
    if version != FORMAT_VERSION {
        return Err(format!(
            "segment format version {version}, this build reads only {FORMAT_VERSION}"
        ));
    }
    Ok((u64_at(buf, 12), u64_at(buf, 20)))
}

/// Snapshot header fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SnapshotHeader {
    /// Last index covered.
    pub index: u64,
    /// Term of that entry.
    pub term: u64,
    /// Length of the opaque membership blob.
    pub membership_len: u32,
    /// Length of the opaque state-machine data.
    pub data_len: u64,
}

/// Encodes a snapshot header.
pub fn encode_snapshot_header(h: &SnapshotHeader) -> [u8; SNAPSHOT_HEADER_LEN] {
    let mut b = [0u8; SNAPSHOT_HEADER_LEN];
    b[0..8].copy_from_slice(&SNAPSHOT_MAGIC);
    b[8..12].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
    b[12..20].copy_from_slice(&h.index.to_le_bytes());
    b[20..28].copy_from_slice(&h.term.to_le_bytes());
    b[28..32].copy_from_slice(&h.membership_len.to_le_bytes());
    b[32..40].copy_from_slice(&h.data_len.to_le_bytes());
    b
}

/// Checks a snapshot header against the file length it came from.
pub fn check_snapshot_header(buf: &[u8], file_len: u64) -> Result<SnapshotHeader, String> {
    if buf.len() < SNAPSHOT_HEADER_LEN {
        return Err(format!(
            "snapshot header needs {SNAPSHOT_HEADER_LEN} bytes, the file has {}",
            buf.len()
        ));
    }
    if buf[0..8] != SNAPSHOT_MAGIC {
        return Err("not a Triton snapshot (bad magic number)".into());
    }
    let version = u32_at(buf, 8);
    if version != FORMAT_VERSION {
        return Err(format!(
            "snapshot format version {version}, this build reads only {FORMAT_VERSION}"
        ));
    }
    let h = SnapshotHeader {
        index: u64_at(buf, 12),
        term: u64_at(buf, 20),
        membership_len: u32_at(buf, 28),
        data_len: u64_at(buf, 32),
    };
    if h.index > MAX_INDEX || h.term > MAX_INDEX {
        return Err(format!(
            "snapshot index {} or term {} is past the supported maximum {MAX_INDEX}",
            h.index, h.term
        ));
    }
    if h.membership_len > MAX_MEMBERSHIP_BYTES {
        return Err(format!(
            "snapshot header announces {} bytes of membership, over the limit of {MAX_MEMBERSHIP_BYTES}",
            h.membership_len
        ));
    }
    let expected = (SNAPSHOT_HEADER_LEN as u64 + SNAPSHOT_TRAILER_LEN as u64)
        .checked_add(u64::from(h.membership_len))
        .and_then(|n| n.checked_add(h.data_len));
    if expected != Some(file_len) {
        return Err(format!(
            "snapshot header announces {} bytes of membership and {} of data, but the file is {file_len} bytes",
            h.membership_len, h.data_len
        ));
    }
    Ok(h)
}

/// File name of segment `seq` whose first entry will be `first_index`.
pub fn segment_file_name(seq: u64, first_index: u64) -> String {
    format!("{seq:020}-{first_index:020}.wal")
}

/// Parses a segment file name into (seq, first_index).
pub fn parse_segment_file_name(name: &str) -> Option<(u64, u64)> {
    let stem = name.strip_suffix(".wal")?;
    let (seq, first) = stem.split_once('-')?;
    if seq.len() != 20 || first.len() != 20 {
        return None;
    }
    Some((parse_digits(seq)?, parse_digits(first)?))
}

/// File name of the snapshot at (index, term).
pub fn snapshot_file_name(index: u64, term: u64) -> String {
    format!("snap-{index:020}-{term:020}.snap")
}

/// Parses a snapshot file name into (index, term).
pub fn parse_snapshot_file_name(name: &str) -> Option<(u64, u64)> {
    let stem = name.strip_prefix("snap-")?.strip_suffix(".snap")?;
    let (index, term) = stem.split_once('-')?;
    if index.len() != 20 || term.len() != 20 {
        return None;
    }
    Some((parse_digits(index)?, parse_digits(term)?))
}

fn parse_digits(s: &str) -> Option<u64> {
    if s.bytes().all(|b| b.is_ascii_digit()) {
        s.parse().ok()
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_roundtrip_and_reject_damage() {
        let records = [
            Record::Entry(LogEntry {
                index: 7,
                term: 3,
                payload: b"hello".to_vec(),
            }),
            Record::HardState(HardState {
                term: 3,
                vote: 2,
                commit: 6,
            }),
            Record::Truncate { from: 5 },
            Record::Snapshot { index: 4, term: 2 },
        ];
        for r in &records {
            let mut buf = Vec::new();
            encode_record(&mut buf, r);
            assert_eq!(check_record(&buf, 1024), Ok(buf.len()));
            assert_eq!(&decode_checked(&buf), r);
            for cut in 0..buf.len() {
                assert!(matches!(
                    check_record(&buf[..cut], 1024),
                    Err(RecordProblem::Incomplete { .. })
                ));
            }
            for i in 4..buf.len() {
                let mut bad = buf.clone();
                bad[i] ^= 0x10;
                assert!(
                    matches!(check_record(&bad, 1024), Err(RecordProblem::BadChecksum { .. })),
                    "flip at {i}"
                );
            }
        }
    }

    #[test]
    fn length_over_limit_is_refused_before_reading_the_body() {
        let mut buf = vec![0xff, 0xff, 0xff, 0xff];
        buf.extend_from_slice(&[0; 5]);
        assert_eq!(
            check_record(&buf, 1 << 20),
            Err(RecordProblem::TooLarge {
                len: u32::MAX,
                max: 1 << 20
            })
        );
    }

    #[test]
    fn scan_finds_a_record_after_garbage_and_gives_up_on_crafted_input() {
        let mut rec = Vec::new();
        encode_record(&mut rec, &Record::Truncate { from: 3 });
        let mut buf = vec![0x55; 10];
        buf.extend_from_slice(&rec);
        assert_eq!(find_valid_record(&buf, 1024), Scan::Found(10));
        assert_eq!(find_valid_record(&buf[11..], 1024), Scan::Nothing);
        // Every offset claims a plausible entry record whose body runs to the
        // end: the naive search would be quadratic.
        let mut crafted = Vec::new();
        let n = 2 << 20;
        while crafted.len() < n {
            let left = (n - crafted.len()) as u32;
            crafted.extend_from_slice(&left.saturating_sub(9).to_le_bytes());
            crafted.extend_from_slice(&[0, 0, 0, 0, REC_ENTRY]);
        }
        crafted.truncate(n);
        let fitted: Vec<u8> = crafted.clone();
        assert_eq!(find_valid_record(&fitted, 64 << 20), Scan::GaveUp);
    }

    #[test]
    fn good_checksum_with_unknown_type_is_bad_shape() {
        let mut buf = Vec::new();
        encode_parts(&mut buf, 9, &[&[1, 2, 3]]);
        assert_eq!(
            check_record(&buf, 1024),
            Err(RecordProblem::BadShape { kind: 9, len: 3 })
        );
        assert!(!RecordProblem::BadShape { kind: 9, len: 3 }.may_be_torn());
    }

    #[test]
    fn file_names_roundtrip_and_reject_others() {
        assert_eq!(parse_segment_file_name(&segment_file_name(3, 1234)), Some((3, 1234)));
        assert_eq!(parse_snapshot_file_name(&snapshot_file_name(99, 4)), Some((99, 4)));
        assert_eq!(parse_segment_file_name("1-2.wal"), None);
        assert_eq!(
            parse_segment_file_name("+0000000000000000001-00000000000000000001.wal"),
            None
        );
        assert_eq!(parse_snapshot_file_name("snap-x.snap"), None);
    }

    #[test]
    fn headers_check() {
        let h = encode_segment_header(5, 77);
        assert_eq!(check_segment_header(&h), Ok((5, 77)));
        let mut bad = h;
        bad[13] ^= 1;
        assert!(check_segment_header(&bad).is_err());
        assert!(check_segment_header(&h[..31]).is_err());
        let sh = SnapshotHeader {
            index: 10,
            term: 2,
            membership_len: 3,
            data_len: 5,
        };
        let enc = encode_snapshot_header(&sh);
        assert_eq!(check_snapshot_header(&enc, 52), Ok(sh));
        assert!(check_snapshot_header(&enc, 51).is_err());
    }
}
