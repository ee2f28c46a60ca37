//! gensort and showsort: deterministic random records and a readable dump.
//!
//! Byte layout of generated record number `i` (counting from 0 in the file):
//!
//! | bytes   | content |
//! |---------|---------|
//! | 0..10   | key: 10 bytes from ChaCha8 (`seed_from_u64(seed)`, stream = `i / BLOCK_RECORDS`), uniformly random |
//! | 10..42  | `i` as 32 upper-case hex digits (ASCII), so every record is unique and traceable |
//! | 42..98  | filler: byte `j` is `b'A' + (i + j) % 26` (ASCII letters) |
//! | 98..100 | `\r\n` |
//!
//! Keys of block `b` (records `b*BLOCK_RECORDS ..`) come from ChaCha8 stream
//! `b`, so blocks are generated in parallel and the bytes depend only on the
//! seed and the record number, never on the thread count.

use std::io::Write;

use rand_chacha::ChaCha8Rng;
use rand_core::{RngCore, SeedableRng};
use rayon::prelude::*;

use crate::record::{KEY_LEN, RECORD_LEN};
use crate::writer::PipelinedWriter;

/// Records generated from one ChaCha8 stream.
pub const BLOCK_RECORDS: u64 = 1 << 16;

/// Fill `out` (whole records) with records `first..` of the sequence for `seed`.
/// `first` must be at the start of a block.
fn fill_block(seed: u64, first: u64, out: &mut [u8]) {
    debug_assert_eq!(first % BLOCK_RECORDS, 0);
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    rng.set_stream(first / BLOCK_RECORDS);
    for (k, record) in out.chunks_exact_mut(RECORD_LEN).enumerate() {
        let i = first + k as u64;
        rng.fill_bytes(&mut record[..KEY_LEN]);
        write!(&mut record[10..42], "{:032X}", i as u128).expect("32 hex digits fit");
        for (j, byte) in record[42..98].iter_mut().enumerate() {
            *byte = b'A' + ((i + j as u64) % 26) as u8;
        }
        record[98..100].copy_from_slice(b"\r\n");
    }
}

/// Write `records` generated records for `seed` to `out`.
pub fn generate<W: Write + Send + 'static>(out: W, records: u64, seed: u64) -> std::io::Result<()> {
    // Each writer buffer holds a whole number of blocks.
    let blocks_per_buffer: u64 = 8;
    let block_bytes = (BLOCK_RECORDS as usize) * RECORD_LEN;
    let mut out = PipelinedWriter::new(out, block_bytes * blocks_per_buffer as usize);
    let mut first = 0u64;
    while first < records {
        let count = (records - first).min(BLOCK_RECORDS * blocks_per_buffer);
        let mut buf = out.take_buffer()?;
        buf.resize(count as usize * RECORD_LEN, 0);
        buf.par_chunks_mut(block_bytes)
            .enumerate()
            .for_each(|(b, chunk)| fill_block(seed, first + b as u64 * BLOCK_RECORDS, chunk));
        out.send_buffer(buf)?;
        first += count;
    }
    out.finish()?;
    Ok(())
}

/// Records needed for at least `bytes` bytes (the size rounded up to a
/// multiple of 100).
pub fn records_for_size(bytes: u64) -> u64 {
    bytes.div_ceil(RECORD_LEN as u64)
}

/// One showsort line: the key in hex, a space, and the first 32 value bytes
/// (printable ASCII as is, anything else as `.`), then `...`.
pub fn show_record(record: &[u8]) -> String {
    assert_eq!(record.len(), RECORD_LEN);
    let mut line = String::with_capacity(64);
    for b in &record[..KEY_LEN] {
        line.push_str(&format!("{b:02x}"));
    }
    line.push(' ');
    for &b in &record[KEY_LEN..KEY_LEN + 32] {
        line.push(if b.is_ascii_graphic() || b == b' ' {
            b as char
        } else {
            '.'
        });
    }
    line.push_str("...");
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_bytes_other_seed_other_keys() {
        let n = BLOCK_RECORDS * 2 + 5;
        // generate() needs an owned writer: collect through a shared buffer.
        let gen = |seed| {
            let sink = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
            struct Sink(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);
            impl Write for Sink {
                fn write(&mut self, d: &[u8]) -> std::io::Result<usize> {
                    self.0.lock().unwrap().extend_from_slice(d);
                    Ok(d.len())
                }
                fn flush(&mut self) -> std::io::Result<()> {
                    Ok(())
                }
            }
            generate(Sink(sink.clone()), n, seed).unwrap();
            let v = sink.lock().unwrap().clone();
            v
        };
        let first = gen(7);
        assert_eq!(first.len() as u64, n * RECORD_LEN as u64);
        assert_eq!(first, gen(7));
        let other = gen(8);
        assert_ne!(first[..KEY_LEN], other[..KEY_LEN]);
        // Layout: record 3's row number, filler and line end.
        let r3 = &first[300..400];
        assert_eq!(&r3[10..42], format!("{:032X}", 3).as_bytes());
        assert_eq!(r3[42], b'A' + 3);
        assert_eq!(&r3[98..], b"\r\n");
    }

    #[test]
    fn sizes_round_up_to_whole_records() {
        assert_eq!(records_for_size(0), 0);
        assert_eq!(records_for_size(1), 1);
        assert_eq!(records_for_size(100), 1);
        assert_eq!(records_for_size(1000), 10);
        assert_eq!(records_for_size(1001), 11);
    }

    #[test]
    fn show_record_prints_key_hex_and_short_value() {
        let mut r = [b'z'; RECORD_LEN];
        r[..KEY_LEN].copy_from_slice(&[0, 1, 2, 3, 4, 5, 6, 7, 8, 0xff]);
        r[10] = 0;
        let line = show_record(&r);
        assert_eq!(line, format!("000102030405060708ff .{}...", "z".repeat(31)));
    }
}
