//! Helpers shared by the integration tests.
#![allow(dead_code)]

use std::fs;
use std::path::{Path, PathBuf};

use triton_storage::{LogEntry, Wal, WalOptions};

/// A scratch directory for tests that fsync thousands of times: on tmpfs
/// (`/dev/shm`, where fsync costs nothing) when there is one, so they take
/// seconds on a busy machine. The code paths are the same; only the disk's
/// latency differs. Tests that must hit a real disk use `tempfile::tempdir()`.
pub fn fast_tempdir() -> tempfile::TempDir {
    let shm = Path::new("/dev/shm");
    if shm.is_dir() {
        if let Ok(dir) = tempfile::tempdir_in(shm) {
            return dir;
        }
    }
    tempfile::tempdir().unwrap()
}

pub fn entry(index: u64, term: u64, len: usize) -> LogEntry {
    LogEntry {
        index,
        term,
        payload: (0..len).map(|i| (index as usize * 31 + i) as u8).collect(),
    }
}

pub fn entries(from: u64, to: u64, term: u64, len: usize) -> Vec<LogEntry> {
    (from..=to).map(|i| entry(i, term, len)).collect()
}

pub fn small_opts() -> WalOptions {
    WalOptions {
        segment_bytes: 1024,
        max_record_bytes: 64 << 10,
        write_buffer_bytes: 256,
        preallocate_bytes: 400,
    }
}

pub fn open(dir: &Path, opts: &WalOptions) -> (Wal, triton_storage::Recovered) {
    Wal::open(dir, opts.clone()).expect("open")
}

pub fn files_with_suffix(dir: &Path, suffix: &str) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_str().unwrap().ends_with(suffix))
        .collect();
    v.sort();
    v
}

/// Copies every file of `from` into the empty directory `to`.
pub fn copy_dir(from: &Path, to: &Path) {
    fs::create_dir_all(to).unwrap();
    for item in fs::read_dir(from).unwrap() {
        let p = item.unwrap().path();
        fs::copy(&p, to.join(p.file_name().unwrap())).unwrap();
    }
}

/// xorshift64*: small and seeded, to pick operations and crash points.
pub struct Rng(pub u64);

impl Rng {
    /// A seed's generator (any seed: the state is never zero).
    pub fn seeded(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1)
    }

    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}
