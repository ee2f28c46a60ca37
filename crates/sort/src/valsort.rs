//! valsort: is a file sorted, how many records does it hold, and an
//! order-independent checksum so a sort's input and output can be compared.
//!
//! The checksum is the wrapping 128-bit sum of `xxh3_64(record)` over all
//! 100-byte records. Addition commutes, so any permutation of the same
//! multiset of records has the same checksum, while a changed, lost or
//! duplicated record changes it (with overwhelming probability).

use std::fs::File;
use std::io::{ErrorKind, Read};
use std::path::Path;

use rayon::prelude::*;
use xxhash_rust::xxh3::xxh3_64;

use crate::error::{Error, IoContext, Result};
use crate::record::{key_of, record_count, RECORD_LEN};

/// What valsort found.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Report {
    /// Records in the file.
    pub records: u64,
    /// Number (from 0) of the first record whose key is smaller than its
    /// predecessor's; `None` if the file is sorted.
    pub first_unordered: Option<u64>,
    /// Records whose key equals their predecessor's (in file order).
    pub duplicate_keys: u64,
    /// Order-independent checksum (see the module doc).
    pub checksum: u128,
}

impl Report {
    /// True if every key is at least its predecessor's.
    pub fn is_sorted(&self) -> bool {
        self.first_unordered.is_none()
    }
}

/// Checksum contribution of one record.
#[inline]
pub fn record_hash(record: &[u8]) -> u128 {
    xxh3_64(record) as u128
}

/// Order-independent checksum of a buffer of whole records.
pub fn checksum(records: &[u8]) -> u128 {
    records
        .par_chunks(RECORD_LEN * 4096)
        .map(|c| {
            c.chunks_exact(RECORD_LEN)
                .fold(0u128, |s, r| s.wrapping_add(record_hash(r)))
        })
        .reduce(|| 0, u128::wrapping_add)
}

/// Check `input` (named `path` in errors), streaming in large buffers.
pub fn validate_reader<R: Read>(input: &mut R, path: &Path) -> Result<Report> {
    const BUF: usize = RECORD_LEN * 80_000; // 8 MB
    let mut buf = vec![0u8; BUF];
    let mut report = Report::default();
    let mut previous: Option<u128> = None;
    let mut total: u64 = 0;
    loop {
        let mut filled = 0;
        while filled < BUF {
            match input.read(&mut buf[filled..]) {
                Ok(0) => break,
                Ok(n) => filled += n,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => return Err(e).ctx(|| format!("reading {}", path.display())),
            }
        }
        total += filled as u64;
        if filled % RECORD_LEN != 0 {
            return Err(Error::NotWholeRecords {
                path: path.to_path_buf(),
                size: total,
            });
        }
        let data = &buf[..filled];
        report.checksum = report.checksum.wrapping_add(checksum(data));
        for record in data.chunks_exact(RECORD_LEN) {
            let key = key_of(record);
            if let Some(prev) = previous {
                if key < prev && report.first_unordered.is_none() {
                    report.first_unordered = Some(report.records);
                } else if key == prev {
                    report.duplicate_keys += 1;
                }
            }
            previous = Some(key);
            report.records += 1;
        }
        if filled < BUF {
            return Ok(report);
        }
    }
}

/// Check the file at `path`.
pub fn validate_file(path: &Path) -> Result<Report> {
    let mut file = File::open(path).ctx(|| format!("opening {}", path.display()))?;
    let size = file
        .metadata()
        .ctx(|| format!("reading the size of {}", path.display()))?
        .len();
    let regular = file.metadata().map(|m| m.is_file()).unwrap_or(false);
    // Pipes and devices have no size to check up front; the reader still
    // rejects a partial record at the end.
    let expected = if regular { Some(record_count(path, size)?) } else { None };
    let report = validate_reader(&mut file, path)?;
    if expected.is_some_and(|e| e != report.records) {
        return Err(Error::Io {
            context: format!("reading {}", path.display()),
            source: std::io::Error::new(ErrorKind::UnexpectedEof, "file changed size while being read"),
        });
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(key: u8, tag: u8) -> [u8; RECORD_LEN] {
        let mut r = [tag; RECORD_LEN];
        r[..10].copy_from_slice(&[key; 10]);
        r
    }

    fn check(records: &[[u8; RECORD_LEN]]) -> Report {
        let data: Vec<u8> = records.concat();
        validate_reader(&mut &data[..], Path::new("mem")).unwrap()
    }

    #[test]
    fn sorted_file_with_duplicates_passes() {
        let r = check(&[rec(1, 0), rec(2, 0), rec(2, 1), rec(9, 0)]);
        assert!(r.is_sorted());
        assert_eq!(r.records, 4);
        assert_eq!(r.duplicate_keys, 1);
        assert!(check(&[]).is_sorted());
    }

    #[test]
    fn unsorted_file_is_caught_at_the_first_bad_record() {
        let r = check(&[rec(1, 0), rec(5, 0), rec(3, 0), rec(2, 0)]);
        assert_eq!(r.first_unordered, Some(2));
        assert!(!r.is_sorted());
    }

    #[test]
    fn checksum_ignores_order_but_not_content() {
        let a = check(&[rec(1, 0), rec(5, 0), rec(3, 7)]);
        let b = check(&[rec(3, 7), rec(1, 0), rec(5, 0)]);
        assert_eq!(a.checksum, b.checksum);
        let changed = check(&[rec(3, 8), rec(1, 0), rec(5, 0)]);
        assert_ne!(a.checksum, changed.checksum);
        let duplicated = check(&[rec(1, 0), rec(1, 0), rec(5, 0)]);
        assert_ne!(a.checksum, duplicated.checksum);
    }

    #[test]
    fn partial_record_is_an_error() {
        let data = [0u8; 250];
        let err = validate_reader(&mut &data[..], Path::new("f")).unwrap_err().to_string();
        assert!(err.contains("not a multiple of the 100-byte"), "{err}");
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("odd");
        std::fs::write(&p, [0u8; 101]).unwrap();
        assert!(validate_file(&p).is_err());
        assert!(validate_file(&dir.path().join("missing")).is_err());
    }
}
