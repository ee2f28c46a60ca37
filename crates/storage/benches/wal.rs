//! Append + sync throughput of the WAL for batches of 1, 16 and 256 entries of
//! 256 bytes, with and without preallocation, against the floor: writing the same bytes to a plain file and
//! calling fdatasync (what any durable log must pay on this disk).

use std::fs::OpenOptions;
use std::io::Write;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use triton_storage::{LogEntry, Wal, WalOptions, WalWriter, WriteBatch};

const PAYLOAD: usize = 256;

fn bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("wal_append_sync");
    group.sample_size(20);
    group.measurement_time(std::time::Duration::from_secs(5));
    for batch in [1u64, 16, 256] {
        group.throughput(Throughput::Elements(batch));
        // With the default zero-filled preallocation, and without it (every
        // fsync then also commits the file's new size to the journal).
        for (name, preallocate_bytes) in [
            ("triton_wal", WalOptions::default().preallocate_bytes),
            ("triton_wal_appending", 0),
        ] {
            group.bench_with_input(BenchmarkId::new(name, batch), &batch, |b, &batch| {
                let dir = tempfile::tempdir().unwrap();
                let opts = WalOptions {
                    preallocate_bytes,
                    ..WalOptions::default()
                };
                let (mut wal, _) = Wal::open(dir.path(), opts).unwrap();
                let mut next = 1u64;
                b.iter(|| {
                    let entries: Vec<LogEntry> = (next..next + batch)
                        .map(|index| LogEntry {
                            index,
                            term: 1,
                            payload: vec![7; PAYLOAD],
                        })
                        .collect();
                    next += batch;
                    wal.append(&entries).unwrap();
                    wal.sync().unwrap();
                });
            });
        }
        group.bench_with_input(BenchmarkId::new("raw_write_fdatasync", batch), &batch, |b, &batch| {
            let dir = tempfile::tempdir().unwrap();
            let mut f = OpenOptions::new()
                .append(true)
                .create(true)
                .open(dir.path().join("raw"))
                .unwrap();
            // Same bytes as the WAL writes: 9-byte header + 16 bytes of index/term + payload.
            let bytes = vec![7u8; (9 + 16 + PAYLOAD) * batch as usize];
            b.iter(|| {
                f.write_all(&bytes).unwrap();
                f.sync_data().unwrap();
            });
        });
    }
    group.finish();

    // Group commit through the writer thread: 256 callers each submit one
    // entry at the same time and wait; compare with `triton_wal/256` above.
    let mut group = c.benchmark_group("wal_writer_group_commit");
    group.sample_size(20);
    group.measurement_time(std::time::Duration::from_secs(5));
    group.throughput(Throughput::Elements(256));
    group.bench_function("256_single_entry_batches", |b| {
        let dir = tempfile::tempdir().unwrap();
        let (wal, _) = Wal::open(dir.path(), WalOptions::default()).unwrap();
        let writer = WalWriter::spawn(wal).unwrap();
        let mut next = 1u64;
        b.iter(|| {
            let (tx, rx) = std::sync::mpsc::channel();
            for index in next..next + 256 {
                let tx = tx.clone();
                let batch = WriteBatch {
                    entries: vec![LogEntry {
                        index,
                        term: 1,
                        payload: vec![7; PAYLOAD],
                    }],
                    hard_state: None,
                };
                writer.submit(batch, move |r| tx.send(r).unwrap()).unwrap();
            }
            drop(tx);
            assert!(rx.iter().all(|r| r.is_ok()));
            next += 256;
        });
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
