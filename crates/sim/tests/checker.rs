//! The simulator's safety checker must catch each violation it names: fed
//! hand-made broken states, every check fires (and a sound state passes).

use bytes::Bytes;
use triton_raft::{
    Body, Config, Entry, EntryKind, HardState, InitialState, Membership, Message, Raft, Snapshot, SnapshotMeta,
};
use triton_sim::checker::Checker;
use triton_sim::Disk;

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
    // Node 1 leads term 1 and commits index 1.
    c.on_leader_commit(1, 1);
    c.on_apply(1, &entry(1, 1, "x")).unwrap();
    c.on_leader(2, &core(2, 2, vec![entry(1, 1, "x")], three())).unwrap();
    let v = c.on_leader(3, &core(3, 3, vec![], three())).unwrap_err();
    assert_eq!(v.property, "leader completeness");
    let v = c
        .on_leader(3, &core(3, 4, vec![entry(1, 1, "other")], three()))
        .unwrap_err();
    assert_eq!(v.property, "leader completeness");
}

/// §5.4's property is about later terms: a candidate of an older term whose
/// votes arrive late (it was paused) may lead that term after a later one
/// committed entries it lacks. Not a violation; an entry committed in an
/// earlier term is still required.
#[test]
fn a_late_leader_of_an_older_term_need_not_hold_what_a_later_term_committed() {
    let mut c = Checker::default();
    c.on_leader_commit(1, 1);
    c.on_apply(2, &entry(1, 1, "x")).unwrap();
    c.on_leader_commit(3, 2);
    c.on_apply(2, &entry(2, 3, "y")).unwrap();
    // Leader of term 2 (elected late): holds term 1's entry, lacks term 3's.
    c.on_leader(1, &core(1, 2, vec![entry(1, 1, "x")], three())).unwrap();
    // A leader of term 4 must hold both.
    let v = c
        .on_leader(3, &core(3, 4, vec![entry(1, 1, "x")], three()))
        .unwrap_err();
    assert_eq!(v.property, "leader completeness", "{v}");
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

/// A disk holding `hard_state` and `entries` (no snapshot).
fn disk(term: u64, vote: Option<u64>, entries: Vec<Entry>) -> Disk {
    Disk {
        hard_state: HardState { term, vote, commit: 0 },
        snapshot: None,
        entries,
        unsynced_commit: None,
    }
}

fn msg(from: u64, to: u64, term: u64, body: Body) -> Message {
    Message { from, to, term, body }
}

fn append() -> Body {
    Body::Append {
        prev_index: 0,
        prev_term: 0,
        entries: vec![],
        commit: 0,
    }
}

fn append_ack(index: u64) -> Body {
    Body::AppendResponse {
        reject: false,
        index,
        hint_index: 0,
        hint_term: 0,
    }
}

fn vote_granted() -> Body {
    Body::VoteResponse {
        pre_vote: false,
        granted: true,
    }
}

#[test]
fn a_message_sent_before_its_term_is_durable_is_caught() {
    let mut c = Checker::default();
    c.on_leader(1, &core(1, 5, vec![], three())).unwrap();
    c.on_leader(1, &core(1, 6, vec![], three())).unwrap();
    let d = disk(5, Some(1), vec![]);
    c.on_send_before_persist(1, &d, &msg(1, 2, 5, append())).unwrap();
    let v = c.on_send_before_persist(1, &d, &msg(1, 2, 6, append())).unwrap_err();
    assert_eq!(v.property, "Ready contract");
    // A pre-vote carries the term it would campaign in and promises nothing.
    let pre_vote = Body::Vote {
        pre_vote: true,
        last_index: 0,
        last_term: 0,
        transfer: false,
    };
    c.on_send_before_persist(1, &d, &msg(1, 2, 6, pre_vote)).unwrap();
    let pre_vote_granted = Body::VoteResponse {
        pre_vote: true,
        granted: true,
    };
    c.on_send_before_persist(2, &disk(5, None, vec![]), &msg(2, 1, 6, pre_vote_granted))
        .unwrap();
}

/// The legal early messages: a leader's appends, heartbeats, snapshot
/// chunks and transfer request, in its durable term, while its entries are
/// not yet durable.
#[test]
fn a_leaders_early_replication_traffic_passes() {
    let mut c = Checker::default();
    c.on_leader(1, &core(1, 5, vec![], three())).unwrap();
    let d = disk(5, Some(1), vec![entry(1, 5, "a")]);
    let with_entries = Body::Append {
        prev_index: 1,
        prev_term: 5,
        entries: vec![entry(2, 5, "b"), entry(3, 5, "c")],
        commit: 1,
    };
    let heartbeat = Body::Heartbeat { commit: 1, read_seq: 3 };
    for body in [with_entries, heartbeat, Body::TimeoutNow] {
        c.on_send_before_persist(1, &d, &msg(1, 2, 5, body)).unwrap();
    }
    assert_eq!(c.violation, None);
}

/// Only a leader's replication traffic and pre-votes may leave before the
/// Ready is persisted: an acknowledgement, a real vote or a vote request
/// sent early is caught even when its term is durable and its promise
/// happens to hold.
#[test]
fn a_message_the_contract_keeps_until_persistence_sent_early_is_caught() {
    let mut c = Checker::default();
    c.on_leader(1, &core(1, 5, vec![], three())).unwrap();
    let d = disk(5, Some(1), vec![entry(1, 5, "a")]);
    let vote = Body::Vote {
        pre_vote: false,
        last_index: 1,
        last_term: 5,
        transfer: false,
    };
    let early = [
        msg(2, 1, 5, append_ack(1)),
        msg(2, 1, 5, vote_granted()),
        msg(2, 1, 5, Body::HeartbeatResponse { read_seq: 1 }),
        msg(2, 3, 5, vote),
        msg(2, 1, 5, Body::ReadIndex { request: 1 }),
    ];
    for m in early {
        let d = disk(5, Some(1), vec![entry(1, 5, "a")]);
        let v = c.on_send_before_persist(m.from, &d, &m).unwrap_err();
        assert_eq!(v.property, "Ready contract", "{}", m.body.name());
        assert!(v.detail.contains("before persisting"), "{v}");
    }
    // An append in a durable term from a node that does not lead it.
    let v = c.on_send_before_persist(2, &d, &msg(2, 3, 5, append())).unwrap_err();
    assert!(v.detail.contains("does not lead"), "{v}");
}

/// A follower that acknowledges entries its disk does not hold (before
/// persisting, or with a broken persist step) is caught wherever the
/// acknowledgement leaves.
#[test]
fn an_append_acknowledged_past_the_durable_log_is_caught() {
    let c = Checker::default();
    let d = disk(5, None, vec![entry(1, 5, "a"), entry(2, 5, "b")]);
    c.on_send_after_persist(2, &d, &msg(2, 1, 5, append_ack(2))).unwrap();
    let v = c
        .on_send_after_persist(2, &d, &msg(2, 1, 5, append_ack(3)))
        .unwrap_err();
    assert_eq!(v.property, "Ready contract");
    assert!(v.detail.contains("durable log ends at 2"), "{v}");
    // A rejection promises no entries.
    let reject = Body::AppendResponse {
        reject: true,
        index: 9,
        hint_index: 2,
        hint_term: 5,
    };
    c.on_send_after_persist(2, &d, &msg(2, 1, 5, reject)).unwrap();
    // Entries compacted into the snapshot count as held.
    let compacted = Disk {
        snapshot: Some(Snapshot {
            meta: SnapshotMeta {
                index: 4,
                term: 5,
                membership: three(),
            },
            data: Bytes::new(),
        }),
        ..disk(5, None, vec![])
    };
    c.on_send_after_persist(2, &compacted, &msg(2, 1, 5, append_ack(4)))
        .unwrap();
    c.on_send_after_persist(2, &compacted, &msg(2, 1, 5, append_ack(5)))
        .unwrap_err();
}

/// A granted vote must be the vote on disk: same term, same candidate.
#[test]
fn a_granted_vote_not_on_disk_is_caught() {
    let c = Checker::default();
    c.on_send_after_persist(2, &disk(5, Some(1), vec![]), &msg(2, 1, 5, vote_granted()))
        .unwrap();
    for d in [
        disk(5, None, vec![]),
        disk(5, Some(3), vec![]),
        disk(4, Some(1), vec![]),
    ] {
        let v = c
            .on_send_after_persist(2, &d, &msg(2, 1, 5, vote_granted()))
            .unwrap_err();
        assert_eq!(v.property, "Ready contract", "{:?}", d.hard_state);
    }
    // A refusal promises nothing.
    let refused = Body::VoteResponse {
        pre_vote: false,
        granted: false,
    };
    c.on_send_after_persist(2, &disk(5, None, vec![]), &msg(2, 1, 5, refused))
        .unwrap();
}

#[test]
fn equal_entries_after_different_prefixes_are_caught() {
    let mut c = Checker::default();
    c.on_persist(1, &core(1, 3, vec![entry(1, 1, "x")], three()), &[entry(2, 3, "a")], 0)
        .unwrap();
    let v = c
        .on_persist(2, &core(2, 3, vec![entry(1, 2, "x")], three()), &[entry(2, 3, "a")], 0)
        .unwrap_err();
    assert_eq!(v.property, "log matching");
    assert!(v.detail.contains("different prefix"), "{v}");
}

/// A core whose log starts after a snapshot at `index`: it no longer knows
/// the terms of the entries before.
fn compacted_core(id: u64, index: u64) -> Raft {
    Raft::new(
        Config::new(id),
        InitialState {
            hard_state: HardState {
                term: 3,
                vote: None,
                commit: index,
            },
            snapshot: Some(Snapshot {
                meta: SnapshotMeta {
                    index,
                    term: 1,
                    membership: three(),
                },
                data: Bytes::new(),
            }),
            entries: vec![],
            membership: three(),
        },
    )
    .unwrap()
}

/// The first node to record an entry may not know the term before it (it
/// compacted it); the checker learns it from a later holder, so a third
/// holder with a different prefix is still caught.
#[test]
fn a_prefix_unknown_at_first_is_learned_later() {
    let mut c = Checker::default();
    let compacted = compacted_core(1, 5);
    assert_eq!(compacted.term_at(1), None);
    c.on_persist(1, &compacted, &[entry(2, 3, "a")], 0).unwrap();
    c.on_persist(2, &core(2, 3, vec![entry(1, 1, "x")], three()), &[entry(2, 3, "a")], 0)
        .unwrap();
    let v = c
        .on_persist(3, &core(3, 3, vec![entry(1, 2, "x")], three()), &[entry(2, 3, "a")], 0)
        .unwrap_err();
    assert_eq!(v.property, "log matching");
}

#[test]
fn different_data_applied_at_one_index_is_caught() {
    let mut c = Checker::default();
    c.on_apply(1, &entry(1, 1, "a")).unwrap();
    c.on_apply(2, &entry(1, 1, "a")).unwrap();
    let v = c.on_apply(3, &entry(1, 1, "b")).unwrap_err();
    assert_eq!(v.property, "state machine safety");
}

#[test]
fn a_snapshot_of_another_history_is_caught() {
    let mut c = Checker::default();
    c.on_apply(1, &entry(3, 2, "a")).unwrap();
    let meta = |index, term| SnapshotMeta {
        index,
        term,
        membership: three(),
    };
    c.on_snapshot_installed(2, &meta(3, 2)).unwrap();
    // Nothing applied there yet: nothing to compare with.
    c.on_snapshot_installed(2, &meta(4, 1)).unwrap();
    let v = c.on_snapshot_installed(3, &meta(3, 1)).unwrap_err();
    assert_eq!(v.property, "state machine safety");
}
