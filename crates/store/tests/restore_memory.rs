//! Restoring a snapshot holds little beyond the store it builds: the heap
//! at its peak, counted by this test binary's allocator, is within a
//! quarter of what the restored store keeps. Restoring used to gather every
//! item (and a copy of every expiring key) in lists before building the
//! maps, about as much memory again.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

use triton_store::{Command, Store, WriteOp};

/// The system allocator, counting the bytes held now and at the peak.
struct Counting;

static HELD: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            let held = HELD.fetch_add(layout.size(), Ordering::Relaxed) + layout.size();
            PEAK.fetch_max(held, Ordering::Relaxed);
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) };
        HELD.fetch_sub(layout.size(), Ordering::Relaxed);
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// A snapshot of `n` small keys, one in `every` expiring (0: none).
fn snapshot(n: u64, every: u64) -> Vec<u8> {
    let mut store = Store::default();
    for i in 0..n {
        let op = WriteOp::Put {
            key: format!("f/key-{i:012}").into_bytes(),
            value: format!("{:024}", i * 7919).into_bytes(),
            // Deadlines out of key order, as real ones are.
            expires_at_ms: if every != 0 && i % every == 0 {
                10_000_000 + (i * 7919) % 1_000_000
            } else {
                0
            },
        };
        store.apply_command(
            i + 1,
            Command {
                session: None,
                now_ms: 1,
                op,
            },
        );
    }
    store.snapshot()
}

#[test]
fn restoring_a_snapshot_holds_little_beyond_the_store_it_builds() {
    for every in [0, 2, 1] {
        let data = snapshot(200_000, every);
        let before = HELD.load(Ordering::Relaxed);
        PEAK.store(before, Ordering::Relaxed);
        let store = Store::restore(&data).expect("restores");
        let kept = HELD.load(Ordering::Relaxed) - before;
        let peak = PEAK.load(Ordering::Relaxed) - before;
        assert_eq!(store.len(), 200_000);
        let ratio = peak as f64 / kept as f64;
        eprintln!(
            "one key in {every} expiring: snapshot {} B, store {kept} B ({:.2}x), peak {peak} B ({ratio:.2}x the store)",
            data.len(),
            kept as f64 / data.len() as f64
        );
        assert!(
            ratio < 1.25,
            "one key in {every} expiring: the peak is {ratio:.2}x the store"
        );
        drop(store);
    }
}
