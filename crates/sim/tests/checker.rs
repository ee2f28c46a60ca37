//! The simulator's safety checker must catch each violation it names: fed
//! hand-made broken states, every check fires (and a sound state passes).

use bytes::Bytes;
use triton_raft::{Body, Config, Entry, EntryKind, HardState, InitialState, Membership, Message, Raft};
use triton_sim::checker::Checker;

fn entry(index: u64, term: u64, data: &'static str) -> Entry {
    Entry {
        index,
        term,
        kind: EntryKind::Command,
        data: Bytes::from_static(data.as_bytes()),
    }
}

/// A core for node `id` at `term` holding `entries` (commit 0).
fn core(id: u64, term: u64, entries: Vec<Entry>, membership: Membership) -> Raft {
    Raft::new(
        Config::new(id),
        InitialState {
            hard_state: HardState {
                term,
                vote: None,
                commit: 0,
            },
            snapshot: None,
            entries,
            membership,
        },
    )
    .unwrap()
}

fn three() -> Membership {
    Membership::with_voters([1, 2, 3])
}

#[test]
fn two_leaders_in_one_term_are_caught() {
    let mut c = Checker::default();
    c.on_leader(1, &core(1, 5, vec![], three())).unwrap();
    c.on_leader(1, &core(1, 5, vec![], three())).unwrap();
    let v = c.on_leader(2, &core(2, 5, vec![], three())).unwrap_err();
    assert_eq!(v.property, "election safety");
    c.on_leader(2, &core(2, 6, vec![], three())).unwrap();
}

#[test]
fn a_learner_leading_is_caught() {
    let mut c = Checker::default();
    let m = Membership {
        learners: [4].into_iter().collect(),
        ..three()
    };
    let v = c.on_leader(4, &core(4, 2, vec![], m)).unwrap_err();
    assert_eq!(v.property, "election safety");
}

#[test]
fn a_leader_missing_a_committed_entry_is_caught() {
    let mut c = Checker::default();
    c.on_apply(1, &entry(1, 1, "x")).unwrap();
    c.on_leader(2, &core(2, 2, vec![entry(1, 1, "x")], three())).unwrap();
    let v = c.on_leader(3, &core(3, 3, vec![], three())).unwrap_err();
    assert_eq!(v.property, "leader completeness");
    let v = c
        .on_leader(3, &core(3, 4, vec![entry(1, 1, "other")], three()))
        .unwrap_err();
    assert_eq!(v.property, "leader completeness");
}

#[test]
fn diverging_logs_and_state_machines_are_caught() {
    let mut c = Checker::default();
    let r = core(1, 1, vec![], three());
    c.on_persist(1, &r, &[entry(1, 1, "a")], 0).unwrap();
    c.on_persist(2, &r, &[entry(1, 1, "a")], 0).unwrap();
    let v = c.on_persist(3, &r, &[entry(1, 1, "b")], 0).unwrap_err();
    assert_eq!(v.property, "log matching");

    c.on_apply(1, &entry(1, 1, "a")).unwrap();
    c.on_apply(2, &entry(1, 1, "a")).unwrap();
    let v = c.on_apply(3, &entry(1, 2, "a")).unwrap_err();
    assert_eq!(v.property, "state machine safety");
}

#[test]
fn a_commit_index_going_back_after_a_restart_is_caught() {
    let mut c = Checker::default();
    let r = core(1, 1, vec![], three());
    c.on_persist(1, &r, &[], 3).unwrap();
    let v = c.on_restart(1, &core(1, 1, vec![], three())).unwrap_err();
    assert_eq!(v.property, "durability");
    c.on_restart(2, &core(2, 1, vec![], three())).unwrap();
}

#[test]
fn a_message_sent_before_its_term_is_durable_is_caught() {
    let c = Checker::default();
    let append = |term: u64| Message {
        from: 1,
        to: 2,
        term,
        body: Body::Append {
            prev_index: 0,
            prev_term: 0,
            entries: vec![],
            commit: 0,
        },
    };
    c.on_send_before_persist(1, 5, &append(5)).unwrap();
    let v = c.on_send_before_persist(1, 5, &append(6)).unwrap_err();
    assert_eq!(v.property, "Ready contract");
    // A pre-vote carries the term it would campaign in and promises nothing.
    let pre_vote = Message {
        from: 1,
        to: 2,
        term: 6,
        body: Body::Vote {
            pre_vote: true,
            last_index: 0,
            last_term: 0,
            transfer: false,
        },
    };
    c.on_send_before_persist(1, 5, &pre_vote).unwrap();
}
