//! Append + sync throughput of the WAL for batches of 1, 16 and 256 entries of
//! 256 bytes, against the floor: writing the same bytes to a plain file and
//! calling fdatasync (what any durable log must pay on this disk).

use std::fs::OpenOptions;
use std::io::Write;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use triton_storage::{LogEntry, Wal, WalOptions};

const PAYLOAD: usize = 256;

fn bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("wal_append_sync");
    group.sample_size(20);
    group.measurement_time(std::time::Duration::from_secs(5));
    for batch in [1u64, 16, 256] {
        group.throughput(Throughput::Elements(batch));
        group.bench_with_input(
            BenchmarkId::new("triton_wal", batch),
            &batch,
            |b, &batch| {
                let dir = tempfile::tempdir().unwrap();
                let (mut wal, _) = Wal::open(dir.path(), WalOptions::default()).unwrap();
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
            },
        );
        group.bench_with_input(
            BenchmarkId::new("raw_write_fdatasync", batch),
            &batch,
            |b, &batch| {
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
            },
        );
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
