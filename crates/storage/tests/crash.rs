//! Real process crashes: a child process (this same test binary, re-run with
//! an environment variable) appends and syncs in a loop and reports each
//! synced index on stdout; the parent kills it with SIGKILL at a seeded point
//! and recovers. Everything reported synced must be there, and nothing that
//! was never written may appear.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

use common::*;
use triton_storage::{HardState, Wal, WalOptions};

const CHILD_ENV: &str = "TRITON_STORAGE_CRASH_CHILD_DIR";

/// Kills the child even if the test panics.
struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn opts() -> WalOptions {
    // Small segments and buffer: kills land in rolls and mid-flush too.
    WalOptions {
        segment_bytes: 8 << 10,
        max_record_bytes: 1 << 20,
        write_buffer_bytes: 700,
        preallocate_bytes: 3000,
    }
}

/// The child: append batches of 1-7 entries (deterministic content), sync,
/// report; forever, until killed.
fn child(dir: &str) -> ! {
    let (mut wal, rec) = Wal::open(std::path::Path::new(dir), opts()).unwrap();
    let mut next = rec.entries.last().map_or(1, |e| e.index + 1);
    let mut n = 0u64;
    loop {
        n += 1;
        let batch = entries(next, next + n % 7, 1, (n % 50) as usize + 10);
        next += batch.len() as u64;
        wal.append(&batch).unwrap();
        wal.set_hard_state(HardState {
            term: 1,
            vote: 1,
            commit: next - 1,
        })
        .unwrap();
        wal.sync().unwrap();
        println!("synced {}", next - 1);
    }
}

#[test]
fn sigkill_at_any_point_loses_nothing_that_was_synced() {
    if let Ok(dir) = std::env::var(CHILD_ENV) {
        child(&dir);
    }
    let dir = fast_tempdir();
    // Seeded kill points: after this many reported syncs (each round resumes
    // the log the previous round left).
    for (round, kill_after) in [37usize, 5, 120, 1, 64].into_iter().enumerate() {
        let mut proc = KillOnDrop(
            Command::new(std::env::current_exe().unwrap())
                .args([
                    "--exact",
                    "sigkill_at_any_point_loses_nothing_that_was_synced",
                    "--nocapture",
                    "--test-threads=1",
                ])
                .env(CHILD_ENV, dir.path())
                .stdout(Stdio::piped())
                .stderr(Stdio::null())
                .spawn()
                .unwrap(),
        );
        let stdout = proc.0.stdout.take().unwrap();
        let (mut last_synced, mut seen) = (0u64, 0usize);
        for line in BufReader::new(stdout).lines() {
            let line = line.unwrap();
            if let Some(n) = line.strip_prefix("synced ") {
                last_synced = n.parse().unwrap();
                seen += 1;
                if seen >= kill_after {
                    break;
                }
            }
        }
        assert!(
            seen >= kill_after,
            "round {round}: the child stopped after {seen} syncs"
        );
        proc.0.kill().unwrap();
        proc.0.wait().unwrap();
        let (_, rec) = Wal::open(dir.path(), opts()).unwrap();
        let got = rec.entries.len() as u64;
        for (i, e) in rec.entries.iter().enumerate() {
            assert_eq!(e.index, i as u64 + 1, "round {round}: log not contiguous");
        }
        assert!(
            got >= last_synced,
            "round {round}: {got} entries recovered, {last_synced} were synced"
        );
        for e in &rec.entries {
            let want = entries(e.index, e.index, 1, e.payload.len()).remove(0);
            assert_eq!(e, &want, "round {round}: entry {} was never written like this", e.index);
        }
        assert!(rec.hard_state.commit >= last_synced, "round {round}");
        assert!(
            rec.hard_state.commit <= got,
            "round {round}: hard state ahead of the log"
        );
    }
}
