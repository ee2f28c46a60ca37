//! The record format: 100 bytes, a 10-byte key compared as an unsigned
//! big-endian 80-bit integer, then a 90-byte value that is carried along.

use std::path::Path;

use crate::error::{Error, Result};

/// Bytes per record.
pub const RECORD_LEN: usize = 100;
/// Bytes of key at the start of each record.
pub const KEY_LEN: usize = 10;
/// Bytes of value after the key.
pub const VALUE_LEN: usize = RECORD_LEN - KEY_LEN;

/// The key of `record` as an 80-bit integer, so keys compare with one `u128`
/// comparison instead of a byte-slice compare.
#[inline]
pub fn key_of(record: &[u8]) -> u128 {
    debug_assert!(record.len() >= KEY_LEN);
    let hi = u64::from_be_bytes(record[0..8].try_into().expect("8 bytes"));
    let lo = u16::from_be_bytes(record[8..10].try_into().expect("2 bytes"));
    ((hi as u128) << 16) | lo as u128
}

/// The top 64 bits of the key: enough to pick a bucket or a server.
#[inline]
pub fn key_prefix(record: &[u8]) -> u64 {
    u64::from_be_bytes(record[0..8].try_into().expect("8 bytes"))
}

/// Number of records in a file of `size` bytes, or a clear error if the size
/// is not a whole number of records.
pub fn record_count(path: &Path, size: u64) -> Result<u64> {
    if !size.is_multiple_of(RECORD_LEN as u64) {
        return Err(Error::NotWholeRecords {
            path: path.to_path_buf(),
            size,
        });
    }
    Ok(size / RECORD_LEN as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_order_is_unsigned_big_endian() {
        let mut a = [0u8; RECORD_LEN];
        let mut b = [0u8; RECORD_LEN];
        a[9] = 0xff; // only the last key byte set
        b[0] = 0x01; // first key byte set: larger
        assert!(key_of(&a) < key_of(&b));
        a[0] = 0x80; // the top bit counts as unsigned
        assert!(key_of(&a) > key_of(&b));
        b[10] = 0xff; // value bytes do not matter
        b[0] = 0x80;
        b[9] = 0xff;
        assert_eq!(key_of(&a), key_of(&b));
        assert_eq!(key_of(&[0xff; 10]), (1u128 << 80) - 1);
    }

    #[test]
    fn record_count_rejects_partial_records() {
        let p = Path::new("f");
        assert_eq!(record_count(p, 0).unwrap(), 0);
        assert_eq!(record_count(p, 300).unwrap(), 3);
        let err = record_count(p, 150).unwrap_err().to_string();
        assert!(err.contains("not a multiple of the 100-byte"), "{err}");
    }
}
