//! Entry points for the fuzz target `wal_recover`, public so the checked-in
//! corpus also runs under `cargo test`.

use std::fs;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::error::StorageError;
use crate::format::segment_file_name;
use crate::types::{Recovered, WalOptions};
use crate::wal::Wal;

/// A segment crafted to make a search past damage as costly as it can (the
/// tests of `triton wal dump`'s checksum budget): 200 blocks of 60 damaged
/// records that each claim a body of `claimed` bytes, each block ending in
/// a valid record, then enough filler that every claimed body fits in the
/// file (so each candidate costs a checksum).
pub fn crafted_damage_segment(claimed: u32) -> Vec<u8> {
    use crate::format::{encode_record, encode_segment_header, Record, REC_ENTRY};
    let mut candidate = claimed.to_le_bytes().to_vec();
    candidate.extend_from_slice(&[0, 0, 0, 0, REC_ENTRY]);
    let mut good = Vec::new();
    encode_record(&mut good, &Record::HardState(Default::default()));
    let mut seg = encode_segment_header(1, 1).to_vec();
    seg.extend_from_slice(&good);
    for _ in 0..200 {
        for _ in 0..60 {
            seg.extend_from_slice(&candidate);
        }
        seg.extend_from_slice(&good);
    }
    seg.extend(std::iter::repeat_n(7u8, claimed as usize + 64));
    seg
}

/// Record limit used by the fuzz target (small, so large lengths hit the bound).
pub const FUZZ_MAX_RECORD_BYTES: u32 = 1 << 20;

/// Writes `segment` as the only segment file of a fresh temporary directory
/// and opens it. Must return Ok or an error, never panic. On success it also
/// checks what recovery promises: a contiguous log, and that opening the
/// repaired directory again finds the same state with nothing left to repair.
pub fn recover_segment_bytes(segment: &[u8]) -> Result<Recovered, StorageError> {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    // tmpfs when available: fsync is free there, so the fuzzer runs faster.
    let shm = std::path::Path::new("/dev/shm");
    let base = if shm.is_dir() {
        shm.to_path_buf()
    } else {
        std::env::temp_dir()
    };
    let dir: PathBuf = base.join(format!(
        "triton-storage-fuzz-{}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).map_err(|e| StorageError::io(&dir, e))?;
    let result = recover_in(&dir, segment);
    let _ = fs::remove_dir_all(&dir);
    result
}

fn recover_in(dir: &std::path::Path, segment: &[u8]) -> Result<Recovered, StorageError> {
    let path = dir.join(segment_file_name(1, 1));
    fs::write(&path, segment).map_err(|e| StorageError::io(&path, e))?;
    let opts = WalOptions {
        max_record_bytes: FUZZ_MAX_RECORD_BYTES,
        ..WalOptions::default()
    };
    let (wal, recovered) = Wal::open(dir, opts.clone())?;
    drop(wal);
    for (i, e) in recovered.entries.iter().enumerate() {
        assert_eq!(e.index, i as u64 + 1, "recovered log is not contiguous from 1");
    }
    let (_, again) = Wal::open(dir, opts).expect("a repaired log must reopen");
    assert_eq!(again.entries, recovered.entries, "reopen changed the entries");
    assert_eq!(again.hard_state, recovered.hard_state, "reopen changed the hard state");
    assert_eq!(again.repaired_tail, None, "reopen found a second torn tail");
    Ok(recovered)
}
