//! Triton's performance benchmarks (issue 10). They measure; they never
//! assert speed. Three families:
//!
//! - [`kv`]: one load generator drives either a local Triton cluster or a
//!   local etcd cluster with the same workload (8-byte keys, 256-byte values,
//!   linearizable gets), so the two are compared in one run.
//! - [`failover`]: SIGKILL the leader of a 3-node cluster under load, again
//!   and again, and measure how long writes stop; plus [`failover::spurious_term_changes`]
//!   in the simulator, to show default timing holds under a 20 ms network delay.
//! - [`study`]: a parameter grid in the deterministic simulator and on a real
//!   cluster, written as CSV and plotted ([`plot`]).
#![warn(missing_docs)]

pub mod etcd;
pub mod failover;
pub mod kv;
pub mod latency;
pub mod plot;
pub mod stats;
pub mod study;

/// A fresh, empty scratch directory for one benchmark's clusters, named
/// after `what`, removed when dropped (cluster data from a benchmark is
/// not worth keeping). Unique per call: a directory left by an earlier run
/// that was killed is never reused, since nodes would start on its old
/// logs (and etcd ignore `--initial-cluster` for its old data).
pub fn scratch_dir(what: &str) -> anyhow::Result<tempfile::TempDir> {
    tempfile::Builder::new()
        .prefix(&format!("triton-bench-{what}-"))
        .tempdir()
        .map_err(|e| anyhow::anyhow!("creating a scratch directory for {what}: {e}"))
}

/// Generated client for etcd's `etcdserverpb.KV` service (Put and Range only).
#[allow(missing_docs, clippy::all)]
pub mod etcdpb {
    tonic::include_proto!("etcdserverpb");
}

#[cfg(test)]
mod tests {
    use super::scratch_dir;

    #[test]
    fn scratch_dirs_are_fresh_and_removed_on_drop() {
        // What an earlier run killed with SIGKILL left behind, under the
        // name a pid-based scheme would give this process.
        let stale = std::env::temp_dir().join(format!("triton-bench-kv-{}", std::process::id()));
        std::fs::create_dir_all(stale.join("triton/node-0")).unwrap();
        let a = scratch_dir("kv").unwrap();
        let b = scratch_dir("kv").unwrap();
        assert_ne!(a.path(), b.path());
        assert_ne!(a.path(), stale.as_path());
        for d in [&a, &b] {
            assert!(d.path().starts_with(std::env::temp_dir()), "{}", d.path().display());
            assert_eq!(
                std::fs::read_dir(d.path()).unwrap().count(),
                0,
                "{} is not empty",
                d.path().display()
            );
        }
        let path = a.path().to_path_buf();
        std::fs::create_dir_all(path.join("triton")).unwrap();
        drop(a);
        assert!(!path.exists(), "{} outlived its guard", path.display());
        std::fs::remove_dir_all(&stale).unwrap();
    }
}
