//! Reading a segment's bytes through a bounded window, so that neither
//! recovery nor the dump ever holds a whole file: a segment may be up to
//! about 4 GiB long with the node's record limit, and a sparse file (or a
//! torn write that extended the file) has that length without the bytes.
//! What stays in memory is the records decoded from it; zeros and damaged
//! bytes after them are read a chunk at a time.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;

use crate::format::{self, Record, RecordProblem, Scan, ENTRY_BODY_FIXED, RECORD_HEADER_LEN};
use crate::types::LogEntry;

/// Bytes read from a file at a time (the window, and the scratch buffer).
const CHUNK: usize = 1 << 20;

/// Checksum work (bytes) a search for a valid record may spend: crafted
/// input can make the search quadratic, so it gives up when this runs out.
#[derive(Debug, Clone)]
pub(crate) struct ScanBudget {
    left: u64,
    granted: u64,
    spent: u64,
}

impl ScanBudget {
    pub(crate) fn new(bytes: u64) -> ScanBudget {
        ScanBudget {
            left: bytes,
            granted: bytes,
            spent: 0,
        }
    }

    /// What recovery allows one search over `n` bytes: 64 times their
    /// length, at least 64 MiB.
    pub(crate) fn for_search(n: u64) -> ScanBudget {
        ScanBudget::new(n.saturating_mul(64).max(64 << 20))
    }

    pub(crate) fn add(&mut self, bytes: u64) {
        self.left = self.left.saturating_add(bytes);
        self.granted = self.granted.saturating_add(bytes);
    }

    /// Checksum bytes spent so far.
    pub(crate) fn spent(&self) -> u64 {
        self.spent
    }

    /// Everything granted so far.
    pub(crate) fn granted(&self) -> u64 {
        self.granted
    }

    fn spend(&mut self, bytes: u64) -> bool {
        if bytes > self.left {
            self.left = 0;
            return false;
        }
        self.left -= bytes;
        self.spent += bytes;
        true
    }
}

enum Bytes<'a> {
    Slice(&'a [u8]),
    File(&'a File),
}

/// The bytes of one segment: a slice already in memory, or a file read
/// through a window of [`CHUNK`] bytes.
pub(crate) struct Source<'a> {
    bytes: Bytes<'a>,
    len: u64,
    window: Vec<u8>,
    window_start: u64,
    scratch: Vec<u8>,
    /// Bytes read from the file so far (for tests of the I/O a search costs).
    read: u64,
}

impl<'a> Source<'a> {
    pub(crate) fn slice(data: &'a [u8]) -> Source<'a> {
        Source {
            bytes: Bytes::Slice(data),
            len: data.len() as u64,
            window: Vec::new(),
            window_start: 0,
            scratch: Vec::new(),
            read: 0,
        }
    }

    /// `file`, taken to be `len` bytes long (its length when it was opened).
    pub(crate) fn file(file: &'a File, len: u64) -> Source<'a> {
        Source {
            bytes: Bytes::File(file),
            len,
            window: Vec::new(),
            window_start: 0,
            scratch: Vec::new(),
            read: 0,
        }
    }

    pub(crate) fn len(&self) -> u64 {
        self.len
    }

    /// The bytes `[at, at + n)`, which must be inside the file. For a file,
    /// `n` is at most [`CHUNK`] (a header, a small record, a block to scan).
    pub(crate) fn get(&mut self, at: u64, n: usize) -> io::Result<&[u8]> {
        debug_assert!(at + n as u64 <= self.len);
        let file = match self.bytes {
            Bytes::Slice(s) => return Ok(&s[at as usize..at as usize + n]),
            Bytes::File(f) => f,
        };
        debug_assert!(n <= CHUNK, "the window holds at most one chunk");
        let end = at + n as u64;
        if at < self.window_start || end > self.window_start + self.window.len() as u64 {
            let want = (self.len - at).min(CHUNK as u64).max(n as u64) as usize;
            self.window.resize(want, 0);
            file.read_exact_at(&mut self.window, at)?;
            self.read += want as u64;
            self.window_start = at;
        }
        let off = (at - self.window_start) as usize;
        Ok(&self.window[off..off + n])
    }

    /// The bytes from `at` (inside the file) to the end of the window, at
    /// least a record header's worth or to the end of the file: what a
    /// search looks at next without reading again what the window holds.
    fn block(&mut self, at: u64) -> io::Result<&[u8]> {
        if let Bytes::Slice(s) = self.bytes {
            return Ok(&s[at as usize..]);
        }
        let ws = self.window_start;
        let window_end = ws + self.window.len() as u64;
        let need = (RECORD_HEADER_LEN as u64).min(self.len - at);
        if at >= ws && at + need <= window_end {
            return Ok(&self.window[(at - ws) as usize..]);
        }
        let n = (self.len - at).min(CHUNK as u64) as usize;
        self.get(at, n)
    }

    /// CRC-32C of `[at, at + n)`. Does not move the window: a search checks
    /// candidates ahead of where it reads headers, and a record's body may
    /// be far longer than the window.
    fn crc(&mut self, at: u64, n: u64) -> io::Result<u32> {
        let file = match self.bytes {
            Bytes::Slice(s) => return Ok(crc32c::crc32c(&s[at as usize..(at + n) as usize])),
            Bytes::File(f) => f,
        };
        let ws = self.window_start;
        if at >= ws && at + n <= ws + self.window.len() as u64 {
            let off = (at - ws) as usize;
            return Ok(crc32c::crc32c(&self.window[off..off + n as usize]));
        }
        self.scratch.resize(CHUNK, 0);
        let (mut crc, mut pos, end) = (0u32, at, at + n);
        while pos < end {
            let k = (end - pos).min(CHUNK as u64) as usize;
            file.read_exact_at(&mut self.scratch[..k], pos)?;
            self.read += k as u64;
            crc = crc32c::crc32c_append(crc, &self.scratch[..k]);
            pos += k as u64;
        }
        Ok(crc)
    }

    /// Checks the record at `at` (the file runs to `len`); returns its total
    /// length (header + body). Same rules, in the same order, as
    /// [`format::check_record`]: the length is checked against
    /// `max_record_bytes` and the bytes left before any body is read.
    pub(crate) fn check_record(&mut self, at: u64, max_record_bytes: u32) -> io::Result<Result<u64, RecordProblem>> {
        let available = self.len - at;
        if available < RECORD_HEADER_LEN as u64 {
            return Ok(Err(RecordProblem::Incomplete {
                needed: RECORD_HEADER_LEN as u64,
                available,
            }));
        }
        let h = self.get(at, RECORD_HEADER_LEN)?;
        let len = u32::from_le_bytes(h[0..4].try_into().expect("4 bytes"));
        let stored = u32::from_le_bytes(h[4..8].try_into().expect("4 bytes"));
        let kind = h[8];
        if len > max_record_bytes {
            return Ok(Err(RecordProblem::TooLarge {
                len,
                max: max_record_bytes,
            }));
        }
        let total = RECORD_HEADER_LEN as u64 + u64::from(len);
        if available < total {
            return Ok(Err(RecordProblem::Incomplete {
                needed: total,
                available,
            }));
        }
        let computed = self.crc(at + 8, 1 + u64::from(len))?;
        if stored != computed {
            return Ok(Err(RecordProblem::BadChecksum { stored, computed }));
        }
        if !format::shape_ok(kind, len) {
            return Ok(Err(RecordProblem::BadShape { kind, len }));
        }
        Ok(Ok(total))
    }

    /// Decodes the record `check_record` accepted at `at` (`total` bytes).
    /// Allocates its body: bounded by `max_record_bytes` and the bytes
    /// present, and only for a record whose checksum matched.
    pub(crate) fn decode(&mut self, at: u64, total: u64) -> io::Result<Record> {
        if matches!(self.bytes, Bytes::Slice(_)) || total <= CHUNK as u64 {
            return Ok(format::decode_checked(self.get(at, total as usize)?));
        }
        // Longer than the window: only an entry is (other records are a few
        // bytes). Its payload is read straight into the entry.
        let Bytes::File(file) = self.bytes else {
            unreachable!("slices returned above")
        };
        let body = at + RECORD_HEADER_LEN as u64;
        let fixed = self.get(body, ENTRY_BODY_FIXED)?;
        let index = u64::from_le_bytes(fixed[0..8].try_into().expect("8 bytes"));
        let term = u64::from_le_bytes(fixed[8..16].try_into().expect("8 bytes"));
        let payload_at = body + ENTRY_BODY_FIXED as u64;
        let mut payload = vec![0u8; (at + total - payload_at) as usize];
        file.read_exact_at(&mut payload, payload_at)?;
        Ok(Record::Entry(LogEntry { index, term, payload }))
    }

    /// Whether every byte from `at` to the end is zero (the preallocated,
    /// never written end of the last segment), read a chunk at a time.
    pub(crate) fn is_unused(&mut self, at: u64) -> io::Result<bool> {
        let mut pos = at;
        while pos < self.len {
            let n = (self.len - pos).min(CHUNK as u64) as usize;
            if self.get(pos, n)?.iter().any(|&b| b != 0) {
                return Ok(false);
            }
            pos += n as u64;
        }
        Ok(true)
    }

    /// Searches every offset from `from` on for a valid record; `Found`
    /// holds its offset in the file. Cheap checks (length bound, known type
    /// and body size) run before the checksum, whose work is taken from
    /// `budget`: `GaveUp` when it runs out.
    pub(crate) fn find_valid_record(
        &mut self,
        from: u64,
        max_record_bytes: u32,
        budget: &mut ScanBudget,
    ) -> io::Result<Scan> {
        let len = self.len;
        let mut at = from;
        while at + RECORD_HEADER_LEN as u64 <= len {
            let block = self.block(at)?;
            let n = block.len();
            let mut candidate = None;
            for i in 0..=n - RECORD_HEADER_LEN {
                let rec_len = u32::from_le_bytes(block[i..i + 4].try_into().expect("4 bytes"));
                let left = len - (at + i as u64) - RECORD_HEADER_LEN as u64;
                if rec_len <= max_record_bytes && u64::from(rec_len) <= left && format::shape_ok(block[i + 8], rec_len)
                {
                    candidate = Some((at + i as u64, rec_len));
                    break;
                }
            }
            let Some((c, rec_len)) = candidate else {
                // Every offset whose header lies in this block was looked at.
                at += (n - RECORD_HEADER_LEN + 1) as u64;
                continue;
            };
            if !budget.spend(u64::from(rec_len) + 1) {
                return Ok(Scan::GaveUp);
            }
            if self.check_record(c, max_record_bytes)?.is_ok() {
                return Ok(Scan::Found(c as usize));
            }
            at = c + 1;
        }
        Ok(Scan::Nothing)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::{encode_record, REC_TRUNCATE};

    /// Many candidates (plausible headers, wrong checksums) in a file several
    /// windows long: each costs its checksum and nothing more. Reading a
    /// window again from each candidate would read a MiB per 9-byte one.
    #[test]
    fn a_search_reads_the_file_about_once() {
        let mut bytes = Vec::new();
        while bytes.len() < 4 << 20 {
            bytes.extend_from_slice(&[8, 0, 0, 0, 0, 0, 0, 0, REC_TRUNCATE]);
        }
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("candidates");
        std::fs::write(&path, &bytes).unwrap();
        let file = File::open(&path).unwrap();
        let len = bytes.len() as u64;
        let mut src = Source::file(&file, len);
        let mut budget = ScanBudget::for_search(len);
        assert_eq!(src.find_valid_record(0, 1024, &mut budget).unwrap(), Scan::Nothing);
        assert!(budget.spent() > len / 2, "{} checksummed", budget.spent());
        assert!(
            src.read <= len + budget.spent() + 2 * CHUNK as u64,
            "{} bytes read for a {len}-byte file",
            src.read
        );
        // And a valid record at the very end is found.
        encode_record(&mut bytes, &Record::Truncate { from: 3 });
        std::fs::write(&path, &bytes).unwrap();
        let file = File::open(&path).unwrap();
        let mut src = Source::file(&file, bytes.len() as u64);
        let found = src
            .find_valid_record(0, 1024, &mut ScanBudget::for_search(len))
            .unwrap();
        assert_eq!(found, Scan::Found(len as usize));
    }
}
