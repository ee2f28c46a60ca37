//! Randomized safety and liveness runs. `cargo test` runs a bounded batch;
//! `TRITON_SIM_SEEDS=N` (and `TRITON_SIM_START=S`) runs as many as asked.
//! Every failure prints the one line that replays it.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use triton_sim::fuzz::{run_plan, run_sabotaged_plan, run_seed, Failure, FaultMix, Plan, Sabotage};

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

#[test]
fn random_seeds_keep_raft_safe_and_live() {
    let count = env_u64("TRITON_SIM_SEEDS", 2000);
    let start = env_u64("TRITON_SIM_START", 0);
    let next = AtomicU64::new(start);
    let failures: Mutex<Vec<Failure>> = Mutex::new(Vec::new());
    let totals = Mutex::new((0usize, 0usize, 0u64, 0u64));
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
    std::thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(|| loop {
                let seed = next.fetch_add(1, Ordering::Relaxed);
                if seed >= start + count {
                    break;
                }
                match run_seed(seed, false) {
                    Ok(r) => {
                        let mut t = totals.lock().unwrap();
                        t.0 += r.completed;
                        t.1 += r.committed_entries;
                        t.2 += r.simulated_ms;
                        t.3 += r.lease_reads;
                    }
                    Err(f) => {
                        eprintln!("FAIL {f}");
                        failures.lock().unwrap().push(f);
                    }
                }
            });
        }
    });
    let (ops, entries, ms, leased) = *totals.lock().unwrap();
    eprintln!(
        "{count} seeds from {start}: {ops} client ops completed, {entries} entries committed, {leased} lease read batches, {} simulated s",
        ms / 1000
    );
    let failures = failures.into_inner().unwrap();
    assert!(
        failures.is_empty(),
        "{} of {count} seeds failed; first: {}",
        failures.len(),
        failures[0]
    );
    assert!(
        ops > count as usize,
        "the workload made too little progress to mean anything"
    );
    // The second block of every two reads on leases (see `Plan::for_seed`).
    if count >= 2 * triton_sim::fuzz::LEASE_BLOCK {
        assert!(leased > 0, "no seed exercised lease reads");
    }
}

/// Replays one seed with a trace: `TRITON_SIM_SEED=N [TRITON_SIM_NODES=n]
/// [TRITON_SIM_FAULTS=mix] cargo test --release -p triton-sim --test fuzz replay -- --nocapture`.
#[test]
fn replay() {
    let seed = env_u64("TRITON_SIM_SEED", 42);
    let trace = std::env::var("TRITON_SIM_SEED").is_ok();
    let mut plan = Plan::for_seed(seed);
    if let Ok(n) = std::env::var("TRITON_SIM_NODES") {
        plan.nodes = n.parse().expect("TRITON_SIM_NODES is a number");
    }
    if let Ok(f) = std::env::var("TRITON_SIM_FAULTS") {
        plan.mix = FaultMix::parse(&f).expect("TRITON_SIM_FAULTS is a fault mix");
    }
    match run_plan(plan, trace) {
        Ok(r) => {
            eprintln!("seed {seed}: ok, {} ops completed, {} unknown", r.completed, r.unknown);
            assert!(r.completed > 0);
        }
        Err(f) => panic!("{f}"),
    }
}

#[test]
fn a_run_in_which_no_client_got_an_answer_fails() {
    let mut plan = Plan::for_seed(0);
    plan.clients = 0;
    let failure = run_plan(plan, false).expect_err("a run that checked nothing must not pass");
    assert_eq!(failure.violation.property, "progress");
}

/// Each end-of-run check of `run_plan` fails a run that breaks its
/// property (through the test-only `run_sabotaged_plan`), naming it.
fn sabotaged(sabotage: Sabotage) -> Failure {
    let plan = Plan::for_seed(0);
    assert_eq!(plan.mix, FaultMix::default(), "seed 0 runs without faults");
    run_plan(plan.clone(), false).expect("the plan passes unsabotaged");
    run_sabotaged_plan(plan, false, sabotage).expect_err("a sabotaged run must fail")
}

#[test]
fn a_cluster_that_never_recovers_fails_liveness() {
    let f = sabotaged(Sabotage::NoRecovery);
    assert_eq!(f.violation.property, "liveness", "{f}");
}

#[test]
fn an_acknowledged_write_lost_from_the_final_cluster_fails_durability() {
    let f = sabotaged(Sabotage::LoseLastAckedWrite);
    assert_eq!(f.violation.property, "durability", "{f}");
    assert!(f.violation.detail.contains("acknowledged write \"c"), "{f}");
    assert!(f.violation.detail.contains("leader node"), "{f}");
}

#[test]
fn a_replica_that_skipped_an_entry_fails_convergence() {
    // Index 2 is a client's session registration: later writes cannot
    // mask its loss (the check compares final states).
    let f = sabotaged(Sabotage::SkipApply { node: 2, index: 2 });
    assert_eq!(f.violation.property, "convergence", "{f}");
}

#[test]
fn a_read_of_a_value_never_written_fails_linearizability() {
    let f = sabotaged(Sabotage::CorruptRead);
    assert_eq!(f.violation.property, "linearizability", "{f}");
}

#[test]
fn a_panic_during_a_run_is_reported_with_the_time_it_happened() {
    let f = sabotaged(Sabotage::Panic { at_ms: 1_000 });
    assert_eq!(f.violation.property, "core assertion", "{f}");
    assert!(f.violation.detail.contains("sabotage"), "{f}");
    assert!((1_000..2_000).contains(&f.at_ms), "reported at {} ms: {f}", f.at_ms);
}
