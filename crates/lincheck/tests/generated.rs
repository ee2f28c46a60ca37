//! Property tests over generated histories: a simulated correct store (each
//! operation takes effect at one instant inside its interval, some outcomes
//! unknown) must always be judged linearizable; mutated histories must still
//! get an answer; a large history must be checked without exhausting the
//! budget (a guard against exponential behaviour, not a timing assertion).

use proptest::prelude::*;
use triton_lincheck::gen::{generate, GenParams, Rng};
use triton_lincheck::{check, history, CheckOptions, Output, Verdict};

fn params(clients: u64, ops_per_client: usize, keys: usize, unknown_fraction: f64) -> GenParams {
    GenParams {
        clients,
        ops_per_client,
        keys,
        unknown_fraction,
        ..GenParams::default()
    }
}

proptest! {
    // A fixed seed keeps CI reproducible; PROPTEST_CASES raises the count
    // for a longer local run.
    #![proptest_config(ProptestConfig {
        cases: 200,
        rng_seed: proptest::test_runner::RngSeed::Fixed(0x7472_6974_6f6e),
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn generated_valid_histories_are_linearizable(
        seed in any::<u64>(),
        clients in 1u64..6,
        ops in 1usize..30,
        keys in 1usize..4,
        unknown in prop_oneof![Just(0.0), Just(0.05), Just(0.3)],
    ) {
        let history = generate(&params(clients, ops, keys, unknown), seed);
        let report = check(&history, &CheckOptions::default());
        prop_assert_eq!(report.verdict, Verdict::Linearizable, "{:#?}", report);
        // Round trip through the file format changes nothing.
        let mut file = Vec::new();
        history::write_jsonl(&mut file, &history).unwrap();
        let parsed = history::parse_jsonl(&file[..], history::ParseLimits::default()).unwrap();
        prop_assert_eq!(parsed, history);
    }

    #[test]
    fn mutated_histories_still_get_a_verdict(
        seed in any::<u64>(),
        clients in 1u64..5,
        ops in 1usize..25,
        unknown in prop_oneof![Just(0.0), Just(0.1)],
        which in any::<u64>(),
        bump in 1u64..3,
    ) {
        let mut history = generate(&params(clients, ops, 1, unknown), seed);
        let gets: Vec<usize> = history
            .iter()
            .enumerate()
            .filter(|(_, op)| matches!(op.output, Some(Output::Get { .. })))
            .map(|(i, _)| i)
            .collect();
        prop_assume!(!gets.is_empty());
        let i = gets[(which % gets.len() as u64) as usize];
        let mut rng = Rng::new(which);
        if let Some(Output::Get { value, version }) = &mut history[i].output {
            if rng.chance(0.5) {
                *value = Some(format!("never-written-{}", rng.next_u64()));
            } else {
                *version += bump;
            }
        }
        let report = check(&history, &CheckOptions::default());
        prop_assert!(
            matches!(report.verdict, Verdict::Violation | Verdict::Linearizable),
            "{:?}",
            report.per_key.iter().map(|k| (k.operations, k.verdict, k.steps)).collect::<Vec<_>>()
        );
        if report.verdict == Verdict::Violation {
            let v = report.violations().next().unwrap().violation.as_ref().unwrap();
            prop_assert!(!v.minimal.is_empty());
            prop_assert_eq!(check(&v.minimal, &CheckOptions::default()).verdict, Verdict::Violation);
        }
    }
}

#[test]
fn a_read_of_a_never_written_value_in_a_generated_history_is_caught() {
    let mut history = generate(&params(4, 30, 1, 0.0), 11);
    let i = history
        .iter()
        .position(|op| matches!(op.output, Some(Output::Get { .. })))
        .expect("the generator makes reads");
    history[i].output = Some(Output::Get {
        value: Some("never-written".to_string()),
        version: 1,
    });
    assert_eq!(check(&history, &CheckOptions::default()).verdict, Verdict::Violation);
}

#[test]
fn ten_clients_times_a_thousand_ops_on_five_keys_is_checked_within_budget() {
    let history = generate(&params(10, 1000, 5, 0.01), 2024);
    assert_eq!(history.len(), 10_000);
    let report = check(&history, &CheckOptions::default());
    assert_eq!(
        report.verdict,
        Verdict::Linearizable,
        "{:?}",
        report
            .per_key
            .iter()
            .map(|k| (&k.key, k.verdict, k.steps))
            .collect::<Vec<_>>()
    );
    assert_eq!(report.per_key.len(), 5);
    for key in &report.per_key {
        assert!(key.steps < CheckOptions::default().budget_per_key);
    }
}

#[test]
fn twenty_concurrent_clients_on_one_key_are_checked_within_budget() {
    // Many concurrent writers: without pruning operations whose version is
    // already passed, this explodes.
    let history = generate(&params(20, 300, 1, 0.01), 3);
    let report = check(&history, &CheckOptions::default());
    assert_eq!(
        report.verdict,
        Verdict::Linearizable,
        "steps {}",
        report.per_key[0].steps
    );
}

#[test]
fn a_stale_read_in_a_long_single_key_history_is_minimized_to_a_few_operations() {
    let mut history = generate(&params(10, 500, 1, 0.0), 11);
    // The middle read returns an earlier read's (different) answer.
    let reads: Vec<usize> = (0..history.len())
        .filter(|&i| matches!(history[i].output, Some(Output::Get { .. })))
        .collect();
    let target = reads[reads.len() / 2];
    let earlier = reads[..reads.len() / 2]
        .iter()
        .rev()
        .copied()
        .find(|&i| history[i].output != history[target].output && history[i].ret < Some(history[target].call))
        .expect("an earlier, different read");
    history[target].output = history[earlier].output.clone();
    let report = check(&history, &CheckOptions::default());
    assert_eq!(report.verdict, Verdict::Violation);
    let v = report.violations().next().unwrap().violation.as_ref().unwrap();
    assert!(v.minimal.len() <= 12, "minimal has {} operations", v.minimal.len());
    assert!(v.minimal.contains(&history[target]), "the stale read is in the witness");
    assert_eq!(check(&v.minimal, &CheckOptions::default()).verdict, Verdict::Violation);
}
