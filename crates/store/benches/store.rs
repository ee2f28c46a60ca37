//! Throughput of the state machine: applying commands (the per-entry cost
//! every replica pays), reads, and snapshot/restore of a 100k-key store.
//!
//! `cargo bench -p triton-store --bench store`

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use triton_store::{Command, Session, Store, StoreOptions, WriteOp, WriteResult};

const KEYS: u64 = 100_000;

fn key(i: u64) -> Vec<u8> {
    format!("key-{i:08}").into_bytes()
}

/// `n` encoded Puts of 100-byte values over `KEYS` keys, a third of them
/// with an expiry, each from one of the 1000 sessions [`filled`] registers
/// (ids 1..=1000), with a growing seq.
fn puts(n: u64) -> Vec<Vec<u8>> {
    (0..n)
        .map(|i| {
            let k = i.wrapping_mul(0x9e37_79b9_7f4a_7c15) % KEYS;
            Command {
                session: Some(Session {
                    client_id: i % 1000 + 1,
                    seq: i / 1000 + 1,
                }),
                now_ms: 1_000 + i,
                op: WriteOp::Put {
                    key: key(k),
                    value: vec![b'v'; 100],
                    expires_at_ms: if i % 3 == 0 { 1_000_000 + i } else { 0 },
                },
            }
            .encode()
        })
        .collect()
}

fn filled() -> Store {
    let mut store = Store::new(StoreOptions::default());
    let register = Command {
        session: None,
        now_ms: 0,
        op: WriteOp::RegisterSession,
    };
    for index in 1..=1000 {
        store.apply_command(index, register.clone());
    }
    for (i, cmd) in puts(KEYS * 2).iter().enumerate() {
        let result = store.apply(1001 + i as u64, cmd);
        assert!(matches!(result, WriteResult::Put { .. }), "{result:?}");
    }
    store
}

fn bench(c: &mut Criterion) {
    let batch = puts(10_000);
    let mut g = c.benchmark_group("store");
    g.sample_size(10);
    g.throughput(Throughput::Elements(batch.len() as u64));
    g.bench_function("decode 10k put commands", |b| {
        b.iter(|| batch.iter().map(|c| Command::decode(c).is_ok() as usize).sum::<usize>())
    });
    g.bench_function("apply 10k puts (sessions, 100 B values) to a 100k-key store", |b| {
        let base = filled();
        b.iter_batched(
            || base.clone(),
            |mut store| {
                let start = store.applied_index() + 1;
                for (i, cmd) in batch.iter().enumerate() {
                    store.apply(start + i as u64, cmd);
                }
                store
            },
            BatchSize::LargeInput,
        )
    });
    let store = filled();
    g.bench_function("get 10k keys", |b| {
        b.iter(|| {
            (0..10_000u64)
                .filter(|i| store.get(&key(i * 7 % KEYS), 0).is_some())
                .count()
        })
    });
    let snapshot = store.snapshot();
    g.throughput(Throughput::Bytes(snapshot.len() as u64));
    g.bench_function("snapshot 100k keys", |b| b.iter(|| store.snapshot().len()));
    g.bench_function("restore 100k keys", |b| {
        b.iter(|| Store::restore(&snapshot).unwrap().len())
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
