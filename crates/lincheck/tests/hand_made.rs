//! Hand-made histories, linearizable and not, each small enough to verify by
//! reasoning. Every "not linearizable" case also checks that the reported
//! minimal sub-history violates on its own.

use triton_lincheck::{check, CheckOptions, Input, Operation, Output, Verdict};

fn op(client: u64, input: Input, output: Option<Output>, call: u64, ret: Option<u64>) -> Operation {
    Operation {
        client,
        key: "k".to_string(),
        input,
        output,
        call,
        ret,
    }
}

fn get(c: u64, value: Option<&str>, version: u64, call: u64, ret: u64) -> Operation {
    op(
        c,
        Input::Get,
        Some(Output::Get {
            value: value.map(str::to_string),
            version,
        }),
        call,
        Some(ret),
    )
}

fn put(c: u64, value: &str, version: u64, call: u64, ret: u64) -> Operation {
    op(
        c,
        Input::Put {
            value: value.to_string(),
        },
        Some(Output::Put { version }),
        call,
        Some(ret),
    )
}

fn put_unknown(c: u64, value: &str, call: u64) -> Operation {
    op(
        c,
        Input::Put {
            value: value.to_string(),
        },
        None,
        call,
        None,
    )
}

fn append(c: u64, value: &str, version: u64, call: u64, ret: u64) -> Operation {
    op(
        c,
        Input::Append {
            value: value.to_string(),
        },
        Some(Output::Append { version }),
        call,
        Some(ret),
    )
}

fn delete(c: u64, existed: bool, call: u64, ret: u64) -> Operation {
    op(c, Input::Delete, Some(Output::Delete { existed }), call, Some(ret))
}

fn cas(c: u64, expected_version: u64, value: &str, ok: bool, version: u64, call: u64, ret: u64) -> Operation {
    op(
        c,
        Input::Cas {
            expected_version,
            value: value.to_string(),
        },
        Some(Output::Cas { ok, version }),
        call,
        Some(ret),
    )
}

fn verdict(history: &[Operation]) -> Verdict {
    check(history, &CheckOptions::default()).verdict
}

fn assert_linearizable(history: &[Operation]) {
    let report = check(history, &CheckOptions::default());
    assert_eq!(report.verdict, Verdict::Linearizable, "{report:#?}");
}

/// Asserts a violation and returns the minimal sub-history, after checking
/// that it is non-empty, drawn from `history`, and violates on its own.
fn assert_violation(history: &[Operation]) -> Vec<Operation> {
    let report = check(history, &CheckOptions::default());
    assert_eq!(report.verdict, Verdict::Violation, "{report:#?}");
    let key = report.violations().next().expect("a violating key");
    let v = key.violation.as_ref().expect("violation evidence");
    assert!(!v.minimal.is_empty());
    assert!(v.minimal.len() <= history.len());
    for m in &v.minimal {
        assert!(history.contains(m), "minimal op {m:?} not from the history");
    }
    assert_eq!(verdict(&v.minimal), Verdict::Violation, "minimal must violate alone");
    let html = key.render_html().expect("html");
    assert!(html.contains("No order of these operations explains what the clients saw"));
    assert_eq!(v.highlight.len(), v.minimal.len());
    v.minimal.clone()
}

// ---- linearizable ----

#[test]
fn empty_history_is_linearizable() {
    assert_linearizable(&[]);
}

#[test]
fn sequential_history_of_every_operation_is_linearizable() {
    assert_linearizable(&[
        get(1, None, 0, 0, 1),
        put(1, "a", 3, 2, 3),
        get(2, Some("a"), 3, 4, 5),
        append(1, "b", 5, 6, 7),
        get(2, Some("ab"), 5, 8, 9),
        cas(1, 5, "c", true, 8, 10, 11),
        cas(2, 5, "d", false, 8, 12, 13),
        delete(1, true, 14, 15),
        get(2, None, 0, 16, 17),
        cas(2, 8, "e", false, 0, 18, 19),
        delete(1, false, 20, 21),
        append(2, "x", 30, 22, 23),
        get(1, Some("x"), 30, 24, 25),
    ]);
}

#[test]
fn concurrent_writes_with_a_read_of_either_value_are_linearizable() {
    // The versions fix the writes' order: y (4) then x (5).
    let writes = [put(1, "x", 5, 0, 10), put(2, "y", 4, 0, 10)];
    let mut reads_x = writes.to_vec();
    reads_x.push(get(3, Some("x"), 5, 2, 12));
    assert_linearizable(&reads_x);
    let mut reads_y = writes.to_vec();
    reads_y.push(get(3, Some("y"), 4, 2, 12));
    assert_linearizable(&reads_y);
    let mut reads_nothing = writes.to_vec();
    reads_nothing.push(get(3, None, 0, 2, 12));
    assert_linearizable(&reads_nothing);
}

#[test]
fn unknown_outcome_write_that_took_effect_is_linearizable() {
    assert_linearizable(&[
        put(1, "a", 1, 0, 1),
        put_unknown(2, "b", 2),
        get(1, Some("b"), 7, 5, 6),
        // The unknown write's version was 7: a Cas on it succeeds.
        cas(1, 7, "c", true, 9, 7, 8),
        get(3, Some("c"), 9, 10, 11),
    ]);
}

#[test]
fn unknown_outcome_write_that_did_not_take_effect_is_linearizable() {
    assert_linearizable(&[
        put(1, "a", 1, 0, 1),
        put_unknown(2, "b", 2),
        get(1, Some("a"), 1, 5, 6),
        get(3, Some("a"), 1, 100, 101),
    ]);
}

#[test]
fn unknown_outcome_write_landing_after_the_client_gave_up_is_linearizable() {
    // The client timed out at 3, but its write landed later: ret is ignored.
    let mut late = put_unknown(2, "b", 2);
    late.ret = Some(3);
    assert_linearizable(&[
        put(1, "a", 1, 0, 1),
        late,
        get(1, Some("a"), 1, 5, 6),
        get(1, Some("b"), 4, 7, 8),
    ]);
}

#[test]
fn versions_hidden_by_unknown_writes_do_not_cause_false_alarms() {
    // Two unknown writes make the version unknown (>= 3); a Cas whose
    // expected version is a guess that happens to be right succeeds; a
    // failed Cas reports the real current version.
    assert_linearizable(&[
        put(1, "a", 1, 0, 1),
        put_unknown(2, "b", 2),
        put_unknown(3, "c", 3),
        cas(1, 12, "d", true, 13, 10, 11),
        cas(2, 12, "e", false, 13, 14, 15),
        get(3, Some("d"), 13, 16, 17),
    ]);
}

#[test]
fn unknown_cas_may_or_may_not_have_succeeded() {
    let unknown_cas = op(
        2,
        Input::Cas {
            expected_version: 1,
            value: "b".to_string(),
        },
        None,
        2,
        None,
    );
    for read in [get(1, Some("a"), 1, 5, 6), get(1, Some("b"), 2, 5, 6)] {
        assert_linearizable(&[put(1, "a", 1, 0, 1), unknown_cas.clone(), read]);
    }
    // But it cannot succeed against a version it did not expect.
    assert_violation(&[
        put(1, "a", 1, 0, 1),
        unknown_cas.clone(),
        put(1, "x", 3, 2, 3),
        get(1, Some("b"), 4, 5, 6),
    ]);
}

#[test]
fn a_return_and_a_call_at_the_same_instant_count_as_concurrent() {
    // The Get is called at 5, when the Put returns: either order is allowed.
    assert_linearizable(&[put(1, "a", 1, 0, 5), get(2, None, 0, 5, 6)]);
    // One tick later, the Put is definitely first.
    assert_violation(&[put(1, "a", 1, 0, 5), get(2, None, 0, 6, 7)]);
}

#[test]
fn a_delete_returning_when_a_write_is_called_may_precede_it() {
    // The delete at [20, 50] may take effect at 50 just after "b" is put
    // (called at 50, the same instant), so the last delete needs the
    // unknown-outcome Put of "c" to find the key. Pruning once left that
    // Put out because it counted a delete returning at 50 as before a write
    // called at 50, and reported a violation.
    assert_linearizable(&[
        put(1, "a", 1, 0, 10),
        delete(2, true, 15, 18),
        delete(2, true, 20, 50),
        put(3, "b", 2, 50, 60),
        put_unknown(4, "c", 55),
        delete(5, true, 70, 80),
    ]);
}

#[test]
fn two_deletes_at_the_same_instant_may_have_a_write_between_them() {
    // Both deletes take no time and happen at 20: "b", if it took effect at
    // 20, can come between them. Pruning once counted neither delete as
    // possibly between the other and the Put of "a" (a call at the same
    // instant as a return was taken as after it), left the Put of "b" out,
    // and reported a violation.
    assert_linearizable(&[
        put(1, "a", 1, 0, 10),
        put_unknown(2, "b", 5),
        delete(3, true, 20, 20),
        delete(4, true, 20, 20),
    ]);
}

#[test]
fn deleted_key_is_recreated_with_a_greater_version() {
    assert_linearizable(&[
        put(1, "a", 4, 0, 1),
        delete(1, true, 2, 3),
        put(1, "b", 6, 4, 5),
        get(1, Some("b"), 6, 6, 7),
    ]);
    assert_violation(&[put(1, "a", 4, 0, 1), delete(1, true, 2, 3), put(1, "b", 3, 4, 5)]);
}

// ---- not linearizable ----

#[test]
fn stale_read_after_a_completed_write_is_a_violation() {
    let minimal = assert_violation(&[put(1, "a", 1, 0, 1), put(2, "b", 2, 2, 3), get(3, Some("a"), 1, 4, 5)]);
    assert!(minimal.len() <= 3, "{minimal:#?}");
    assert!(minimal.contains(&get(3, Some("a"), 1, 4, 5)));
}

#[test]
fn lost_write_is_a_violation() {
    // The completed append of "b" is never seen by a later read, which sees
    // the older value at the newer version.
    assert_violation(&[
        append(1, "a", 1, 0, 1),
        append(2, "b", 2, 2, 3),
        get(3, Some("a"), 2, 4, 5),
    ]);
    // Two concurrent puts; the versions say "b" came last, yet a read after
    // both completed sees "a": the write of "b" was lost.
    assert_violation(&[
        put(1, "a", 1, 0, 10),
        put(2, "b", 2, 0, 10),
        get(3, Some("a"), 1, 20, 21),
    ]);
    // A completed put is lost: the later read sees the other value.
    assert_violation(&[put(1, "x", 1, 0, 1), put(2, "y", 2, 2, 3), get(3, Some("x"), 3, 4, 5)]);
}

#[test]
fn read_of_a_value_never_written_is_a_violation() {
    assert_violation(&[put(1, "a", 1, 0, 1), get(2, Some("zzz"), 1, 2, 3)]);
}

#[test]
fn read_of_a_value_written_by_a_failed_operation_is_a_violation() {
    assert_violation(&[
        put(1, "a", 1, 0, 1),
        cas(2, 5, "c", false, 1, 2, 3),
        get(3, Some("c"), 2, 4, 5),
    ]);
}

#[test]
fn duplicate_append_is_a_violation() {
    assert_violation(&[
        append(1, "x", 1, 0, 1),
        append(2, "y", 2, 2, 3),
        get(3, Some("xyy"), 3, 4, 5),
    ]);
    // Even when the append's outcome is unknown, it applies at most once.
    let unknown_append = op(2, Input::Append { value: "y".to_string() }, None, 2, None);
    assert_violation(&[append(1, "x", 1, 0, 1), unknown_append, get(3, Some("xyy"), 9, 4, 5)]);
}

#[test]
fn cas_succeeding_on_a_wrong_version_is_a_violation() {
    assert_violation(&[put(1, "a", 1, 0, 1), cas(2, 5, "b", true, 6, 2, 3)]);
    // And failing on the right one.
    assert_violation(&[put(1, "a", 1, 0, 1), cas(2, 1, "b", false, 1, 2, 3)]);
}

#[test]
fn versions_going_backwards_are_a_violation() {
    assert_violation(&[put(1, "a", 5, 0, 1), put(1, "b", 3, 2, 3)]);
    assert_violation(&[
        put(1, "a", 5, 0, 1),
        get(2, Some("a"), 5, 2, 3),
        get(2, Some("a"), 4, 4, 5),
    ]);
}

#[test]
fn delete_of_a_missing_key_claiming_it_existed_is_a_violation() {
    assert_violation(&[delete(1, true, 0, 1)]);
}

#[test]
fn output_of_the_wrong_kind_is_refused() {
    let history = [op(1, Input::Get, Some(Output::Put { version: 1 }), 0, Some(1))];
    let err = triton_lincheck::try_check(&history, &CheckOptions::default()).unwrap_err();
    assert!(err.to_string().contains("does not match"), "{err}");
}

#[test]
fn keys_are_checked_independently() {
    let mut history = vec![put(1, "a", 1, 0, 1), get(2, Some("a"), 1, 2, 3)];
    let mut other = put(1, "z", 2, 0, 1);
    other.key = "other".to_string();
    history.push(other);
    let report = check(&history, &CheckOptions::default());
    assert_eq!(report.verdict, Verdict::Linearizable);
    assert_eq!(report.per_key.len(), 2);

    // A stale read on one key is reported on that key only.
    let mut stale = get(3, None, 0, 5, 6);
    stale.key = "other".to_string();
    history.push(stale);
    let report = check(&history, &CheckOptions::default());
    assert_eq!(report.verdict, Verdict::Violation);
    let bad: Vec<&str> = report.violations().map(|k| k.key.as_str()).collect();
    assert_eq!(bad, vec!["other"]);
}

#[test]
fn exhausted_budget_is_unknown_never_linearizable() {
    let history = [put(1, "a", 1, 0, 1), get(2, Some("a"), 1, 2, 3)];
    let opts = CheckOptions {
        budget_per_key: 1,
        ..CheckOptions::default()
    };
    let report = check(&history, &opts);
    assert_eq!(report.verdict, Verdict::Unknown);
    assert_eq!(report.unknown_keys().count(), 1);
}

#[test]
fn minimization_finds_the_stale_read_inside_a_long_valid_history() {
    use triton_lincheck::gen::{generate, GenParams};
    let params = GenParams {
        clients: 5,
        ops_per_client: 60,
        keys: 1,
        unknown_fraction: 0.0,
        ..GenParams::default()
    };
    let mut history = generate(&params, 7);
    assert_eq!(verdict(&history), Verdict::Linearizable);
    // After everything, a fresh client writes then reads back nothing.
    let end = history.iter().filter_map(|op| op.ret).max().unwrap_or(0) + 10;
    let mut w = put(100, "fresh", 1_000_000, end, end + 1);
    w.key = "key0".to_string();
    let mut r = get(101, None, 0, end + 2, end + 3);
    r.key = "key0".to_string();
    history.push(w);
    history.push(r.clone());
    let report = check(&history, &CheckOptions::default());
    assert_eq!(report.verdict, Verdict::Violation);
    let v = report
        .violations()
        .next()
        .and_then(|k| k.violation.as_ref())
        .expect("evidence");
    assert!(
        v.minimal.len() <= 3,
        "expected a tiny witness, got {} ops: {:#?} (attempts {}, capped {})",
        v.minimal.len(),
        v.minimal.iter().map(|o| o.label()).collect::<Vec<_>>(),
        v.minimize_attempts,
        v.minimize_capped
    );
    assert!(v.minimal.contains(&r), "{:#?}", v.minimal);
    // The fresh write is not needed: the read of "missing" after the last
    // real write is already anomalous.
    assert!(v.minimal.len() >= 2);
    assert_eq!(verdict(&v.minimal), Verdict::Violation);
}

// ---- minimization keeps the unknown writes its readers saw ----

/// The reviewer's `fab.jsonl`: the unknown Put("a") is what the read saw, so
/// the anomaly is two writes sharing version 5. Dropping the unknown put made
/// the minimal sub-history show a different one: a read of a value nobody
/// wrote.
#[test]
fn minimization_keeps_an_unknown_write_a_read_saw_instead_of_fabricating_an_anomaly() {
    let history = vec![
        put_unknown(1, "a", 0),
        get(2, Some("a"), 5, 1, 10),
        put(3, "b", 5, 2, 3),
    ];
    let minimal = assert_violation(&history);
    assert_eq!(minimal, history, "every operation takes part in the anomaly");
    assert!(minimal.iter().any(|m| m.output.is_none()), "the unknown write is shown");
}

/// The reviewer's `stuck.jsonl`: with the unknown Put("a") dropped, every
/// candidate violated before the original anomaly did, so no unrelated
/// operation could be dropped either.
#[test]
fn minimization_is_not_stuck_after_dropping_a_seen_unknown_write() {
    let anomaly = vec![
        put_unknown(3, "a", 6),
        get(2, Some("a"), 10, 7, 8),
        put(4, "b", 10, 9, 10),
    ];
    let mut history = vec![put(1, "p", 1, 0, 1), put(1, "q", 2, 2, 3), get(2, Some("q"), 2, 4, 5)];
    history.extend(anomaly.iter().cloned());
    let minimal = assert_violation(&history);
    assert_eq!(minimal, anomaly, "only the anomaly is left");
}

/// An unknown delete is seen by no read's value, only through a read of a
/// missing key: dropping it turns that read into a stale read that completes
/// before the real anomaly (the deleted value read again), so it stays.
#[test]
fn minimization_keeps_an_unknown_delete_that_explains_a_missing_read() {
    let unknown_delete = op(3, Input::Delete, None, 2, None);
    let history = vec![
        put(1, "a", 1, 0, 1),
        unknown_delete.clone(),
        get(2, None, 0, 3, 4),
        get(2, Some("a"), 1, 5, 6),
    ];
    let minimal = assert_violation(&history);
    assert_eq!(minimal, history, "every operation takes part in the anomaly");
}

// ---- validation in release builds too ----

#[test]
fn an_impossible_operation_is_refused_not_checked() {
    let mut answered_never_returned = put(1, "a", 1, 0, 1);
    answered_never_returned.ret = None;
    let history = vec![get(2, None, 0, 0, 1), answered_never_returned];
    let err = triton_lincheck::try_check(&history, &CheckOptions::default()).unwrap_err();
    assert!(
        matches!(&err, triton_lincheck::HistoryError::InvalidOperation { index: 1, .. }),
        "{err}"
    );
    let err = triton_lincheck::check_owned(history.clone(), &CheckOptions::default()).unwrap_err();
    assert!(err.to_string().contains("no return time"), "{err}");
    let caught = std::panic::catch_unwind(|| check(&history, &CheckOptions::default()));
    assert!(caught.is_err(), "check() must not judge an impossible operation");
}

#[test]
fn check_owned_reports_what_check_does() {
    let history = vec![
        put(1, "a", 1, 0, 10),
        Operation {
            key: "other".into(),
            ..get(2, None, 0, 0, 1)
        },
        put(2, "b", 2, 20, 30),
        get(3, Some("a"), 1, 40, 50),
    ];
    let by_ref = check(&history, &CheckOptions::default());
    let owned = triton_lincheck::check_owned(history, &CheckOptions::default()).unwrap();
    assert_eq!(owned, by_ref);
    assert_eq!(owned.verdict, Verdict::Violation);
    assert_eq!(owned.operations, 4);
    assert_eq!(owned.per_key.len(), 2);
}
