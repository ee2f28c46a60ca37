//! Hand-driven tests of one core: the Figure 8 commit rule, batching,
//! pipelining, probing and input validation.

use bytes::Bytes;
use triton_raft::{
    Body, ConfChange, Config, Entry, EntryKind, HardState, InitialState, Membership, Message, ProposeError, Raft,
    Ready, Role, SnapshotMeta, MAX_TERM_JUMP,
};

fn cfg(id: u64) -> Config {
    let mut c = Config::new(id);
    c.seed = 1;
    c
}

fn drain(r: &mut Raft) -> Vec<Message> {
    let mut out = Vec::new();
    while r.has_ready() {
        let rd: Ready = r.ready();
        out.extend(rd.messages);
        out.extend(rd.persisted_messages);
        r.advance();
    }
    out
}

fn msg(from: u64, to: u64, term: u64, body: Body) -> Message {
    Message { from, to, term, body }
}

/// Elects node 1 of {1,2,3} with node 2's votes; returns the leader.
fn elect(init: InitialState) -> Raft {
    elect_with(cfg(1), init)
}

fn elect_with(config: Config, init: InitialState) -> Raft {
    let mut r = Raft::new(config, init).unwrap();
    r.campaign();
    drain(&mut r);
    let t = r.term();
    r.step(msg(
        2,
        1,
        t + 1,
        Body::VoteResponse {
            pre_vote: true,
            granted: true,
        },
    ));
    drain(&mut r);
    let t = r.term();
    r.step(msg(
        2,
        1,
        t,
        Body::VoteResponse {
            pre_vote: false,
            granted: true,
        },
    ));
    assert_eq!(r.role(), Role::Leader);
    r
}

fn three() -> InitialState {
    InitialState {
        membership: Membership::with_voters([1, 2, 3]),
        ..Default::default()
    }
}

fn ack(r: &mut Raft, from: u64, index: u64) {
    let t = r.term();
    r.step(msg(
        from,
        1,
        t,
        Body::AppendResponse {
            reject: false,
            index,
            hint_index: 0,
            hint_term: 0,
        },
    ));
}

/// Figure 8: replicas of an entry from an earlier term are not enough to
/// commit it; only an entry of the current term commits (and with it, all
/// before it).
#[test]
fn entries_of_earlier_terms_commit_only_through_one_of_the_current_term() {
    let e = |index, term| Entry {
        index,
        term,
        kind: EntryKind::Command,
        data: Bytes::new(),
    };
    let init = InitialState {
        hard_state: HardState {
            term: 2,
            vote: None,
            commit: 0,
        },
        entries: vec![e(1, 1), e(2, 2)],
        ..three()
    };
    let mut r = elect(init);
    assert_eq!(r.term(), 3);
    drain(&mut r);
    // A majority (1 and 2) holds index 2 of term 2: still not committed.
    ack(&mut r, 2, 2);
    drain(&mut r);
    assert_eq!(
        r.commit_index(),
        0,
        "an old-term entry was committed by counting replicas"
    );
    // Node 2 acknowledges the no-op of term 3 at index 3: everything commits.
    ack(&mut r, 2, 3);
    drain(&mut r);
    assert_eq!(r.commit_index(), 3);
}

#[test]
fn many_proposals_go_out_in_few_appends_bounded_by_bytes() {
    let mut r = elect(three());
    drain(&mut r);
    ack(&mut r, 2, 1); // node 2 now in replicate state
    drain(&mut r);
    for i in 0..100 {
        r.propose(Bytes::from(vec![i as u8; 100])).unwrap();
    }
    let to2: Vec<Message> = drain(&mut r).into_iter().filter(|m| m.to == 2).collect();
    let appends: Vec<usize> = to2
        .iter()
        .filter_map(|m| match &m.body {
            Body::Append { entries, .. } => Some(entries.len()),
            _ => None,
        })
        .collect();
    assert_eq!(appends, vec![100], "100 proposals should ride in one append");

    // With a 1 KiB cap, each append carries about 1 KiB of entries.
    let mut c = cfg(1);
    c.max_msg_bytes = 1024;
    let mut r = elect_with(c, three());
    drain(&mut r);
    ack(&mut r, 2, 1);
    drain(&mut r);
    for i in 0..100 {
        r.propose(Bytes::from(vec![i as u8; 100])).unwrap();
    }
    let sizes: Vec<u64> = drain(&mut r)
        .into_iter()
        .filter(|m| m.to == 2)
        .filter_map(|m| match m.body {
            Body::Append { entries, .. } => Some(entries.iter().map(Entry::size).sum()),
            _ => None,
        })
        .collect();
    assert!(sizes.len() >= 10, "expected many appends, got {sizes:?}");
    assert!(
        sizes.iter().all(|&s| s <= 1024 + 124),
        "an append exceeded the byte cap: {sizes:?}"
    );
}

#[test]
fn pipelining_is_bounded_by_the_inflight_window_and_falls_back_to_probing() {
    let mut c = cfg(1);
    c.max_inflight_msgs = 4;
    c.max_msg_bytes = 1; // one entry per append
    let mut r = elect_with(c, three());
    drain(&mut r);
    ack(&mut r, 2, 1);
    drain(&mut r);
    for i in 0..10 {
        r.propose(Bytes::from(vec![i; 10])).unwrap();
    }
    let count = |ms: &[Message]| {
        ms.iter()
            .filter(|m| m.to == 2 && matches!(&m.body, Body::Append { entries, .. } if !entries.is_empty()))
            .count()
    };
    let out = drain(&mut r);
    assert_eq!(count(&out), 4, "the window allows exactly 4 appends in flight");
    // One acknowledgement frees one slot.
    ack(&mut r, 2, 2);
    let out = drain(&mut r);
    assert_eq!(count(&out), 1);
    // A rejection drops back to probing: one append at a time.
    let t = r.term();
    r.step(msg(
        2,
        1,
        t,
        Body::AppendResponse {
            reject: true,
            index: 4,
            hint_index: 2,
            hint_term: 1,
        },
    ));
    let out = drain(&mut r);
    assert_eq!(count(&out), 1, "probe state sends one append");
    // Node 2 had matched 2, so probing resumes right after it.
    assert_eq!(r.progress_of(2), Some((2, 3)));
}

#[test]
fn followers_refuse_proposals_and_name_the_leader() {
    let mut r = Raft::new(cfg(2), three()).unwrap();
    r.step(msg(1, 2, 1, Body::Heartbeat { commit: 0, read_seq: 0 }));
    drain(&mut r);
    assert_eq!(
        r.propose(Bytes::from_static(b"x")),
        Err(ProposeError::NotLeader { leader: Some(1) })
    );
}

#[test]
fn invalid_configs_and_foreign_messages_are_rejected_not_panicked() {
    let mut c = cfg(1);
    c.election_tick = 1;
    c.heartbeat_tick = 1;
    assert!(Raft::new(c, three()).is_err());
    assert!(Raft::new(cfg(0), three()).is_err());
    let mut c = cfg(1);
    c.election_tick = u32::MAX;
    assert!(
        Raft::new(c, three()).is_err(),
        "an absurd election timeout must be refused, not overflow"
    );
    let mut r = Raft::new(cfg(1), three()).unwrap();
    // Addressed to someone else, or from "nobody": ignored.
    r.step(msg(2, 9, 5, Body::TimeoutNow));
    r.step(msg(0, 1, 5, Body::TimeoutNow));
    assert_eq!(r.term(), 0);
    assert_eq!(r.stats().stale_messages, 2);
}

/// Input validation: numbers only a forged or corrupted message carries. A
/// term of 2^64 - 1, once adopted, made the next election's `term + 1`
/// overflow (and, being durable, every restart's); an acknowledgement past
/// the leader's log made the leader count replicas that do not exist.
#[test]
fn terms_and_indexes_no_real_cluster_reaches_are_ignored_not_adopted() {
    let mut r = Raft::new(cfg(1), three()).unwrap();
    r.step(msg(2, 1, u64::MAX, Body::HeartbeatResponse { read_seq: 0 }));
    r.step(msg(
        2,
        1,
        1,
        Body::Vote {
            pre_vote: false,
            last_index: u64::MAX,
            last_term: 1,
            transfer: false,
        },
    ));
    assert_eq!(r.term(), 0, "a forged term was adopted");
    assert_eq!(r.stats().invalid_messages, 2);
    // The node still times out and campaigns as usual.
    for _ in 0..50 {
        r.tick();
        drain(&mut r);
    }
    assert_ne!(r.role(), Role::Follower);

    let mut l = elect(three());
    drain(&mut l);
    let last = l.last_index();
    // The no-op of the new term is unacknowledged: nothing is committed.
    ack(&mut l, 2, last + 5);
    ack(&mut l, 2, u64::MAX);
    drain(&mut l);
    assert_eq!(l.commit_index(), 0, "an acknowledgement past the log counted");
    assert_eq!(l.stats().invalid_messages, 2);
    ack(&mut l, 2, last);
    drain(&mut l);
    assert_eq!(l.commit_index(), last);

    // A second leader of the term, which election safety rules out: a
    // leader used to panic on its append; now it, and a follower of
    // another leader, ignore it.
    let t = l.term();
    let heartbeat = |from: u64, to: u64| msg(from, to, t, Body::Heartbeat { commit: 0, read_seq: 0 });
    l.step(heartbeat(3, 1));
    drain(&mut l);
    assert_eq!(l.role(), Role::Leader);
    assert_eq!(l.stats().invalid_messages, 3);
    let mut f = Raft::new(cfg(2), three()).unwrap();
    f.step(heartbeat(1, 2));
    drain(&mut f);
    assert_eq!((f.role(), f.leader()), (Role::Follower, Some(1)));
    f.step(heartbeat(3, 2));
    drain(&mut f);
    assert_eq!(f.leader(), Some(1), "a follower switched leaders within a term");
    assert_eq!(f.stats().invalid_messages, 1);
}

/// Found by fuzzing: a snapshot whose configuration had no incoming voters
/// (`voters_outgoing` {1} only) made its receiver a leader of a joint
/// configuration that never left it: every `Ready` appended one more entry,
/// and the host's loop never ended. A configuration that cannot decide
/// anything is refused.
#[test]
fn a_snapshot_whose_configuration_has_no_voters_is_refused() {
    let mut r = Raft::new(cfg(1), three()).unwrap();
    let meta = SnapshotMeta {
        index: 7,
        term: 3,
        membership: Membership {
            voters: [].into(),
            voters_outgoing: [1].into(),
            learners: [2, 4].into(),
        },
    };
    r.step(msg(
        2,
        1,
        3,
        Body::Snapshot {
            meta,
            offset: 0,
            total: 4,
            data: Bytes::from_static(b"snap"),
            done: true,
        },
    ));
    assert_eq!(r.stats().invalid_messages, 1);
    for _ in 0..40 {
        let mut cycles = 0;
        while r.has_ready() {
            cycles += 1;
            assert!(cycles < 100, "Ready never ends: last index {}", r.last_index());
            let _ = r.ready();
            r.advance();
        }
        r.tick();
    }
    assert_eq!(r.membership(), &Membership::with_voters([1, 2, 3]));
}

/// Found by fuzzing: a snapshot of term 67 from a sender of term 3 was
/// installed; the node then led term 4 and its own no-op came after an
/// entry of term 67 (terms going backwards: the log's assertion fired).
/// No term inside a message may be past the sender's own.
#[test]
fn terms_inside_a_message_past_its_senders_are_refused() {
    let entry = |index, term| Entry {
        index,
        term,
        kind: EntryKind::Command,
        data: Bytes::new(),
    };
    let mut r = Raft::new(cfg(1), three()).unwrap();
    let snapshot = Body::Snapshot {
        meta: SnapshotMeta {
            index: 39,
            term: 67,
            membership: Membership::with_voters([1, 2, 3]),
        },
        offset: 0,
        total: 4,
        data: Bytes::from_static(b"snap"),
        done: true,
    };
    let append = |entries: Vec<Entry>| Body::Append {
        prev_index: 0,
        prev_term: 0,
        entries,
        commit: 0,
    };
    r.step(msg(2, 1, 3, snapshot));
    r.step(msg(2, 1, 3, append(vec![entry(1, 4)])));
    r.step(msg(2, 1, 3, append(vec![entry(1, 3), entry(2, 2)])));
    r.step(msg(2, 1, 3, append(vec![entry(2, 3)])));
    r.step(msg(
        2,
        1,
        3,
        Body::Vote {
            pre_vote: false,
            last_index: 5,
            last_term: 4,
            transfer: false,
        },
    ));
    assert_eq!(r.stats().invalid_messages, 5);
    assert_eq!((r.term(), r.last_index()), (0, 0), "an invalid message was obeyed");
    // A well-formed append of the same sender is taken.
    r.step(msg(2, 1, 3, append(vec![entry(1, 2), entry(2, 3)])));
    drain(&mut r);
    assert_eq!((r.term(), r.last_index()), (3, 2));
}

/// A snapshot the host cannot restore (`Config::snapshot_check`) is not
/// installed and its last chunk not acknowledged, so the leader sends that
/// chunk again; an intact resend is installed.
#[test]
fn a_snapshot_the_host_cannot_restore_is_not_installed() {
    let mut c = cfg(1);
    c.snapshot_check = |_, data| data != b"snap-BAD";
    let mut r = Raft::new(c, three()).unwrap();
    let chunk = |offset: u64, data: &'static [u8], done: bool| {
        msg(
            2,
            1,
            3,
            Body::Snapshot {
                meta: SnapshotMeta {
                    index: 7,
                    term: 3,
                    membership: Membership::with_voters([1, 2, 3]),
                },
                offset,
                total: 8,
                data: Bytes::from_static(data),
                done,
            },
        )
    };
    r.step(chunk(0, b"snap", false));
    assert_eq!(drain(&mut r).len(), 1, "the first chunk is acknowledged");
    r.step(chunk(4, b"-BAD", true));
    assert!(drain(&mut r).is_empty(), "a refused snapshot was acknowledged");
    assert_eq!((r.stats().refused_snapshots, r.commit_index()), (1, 0));
    r.step(chunk(4, b"-OK!", true));
    let out = drain(&mut r);
    assert_eq!(r.commit_index(), 7, "the intact resend was not installed");
    assert!(matches!(
        out[..],
        [Message {
            body: Body::SnapshotResponse {
                index: 7,
                next_offset: 8,
                reject: false
            },
            ..
        }]
    ));
}

#[test]
fn a_vote_waits_for_persistence_and_a_leader_append_does_not() {
    let mut r = Raft::new(cfg(2), three()).unwrap();
    r.step(msg(
        1,
        2,
        1,
        Body::Vote {
            pre_vote: false,
            last_index: 0,
            last_term: 0,
            transfer: false,
        },
    ));
    let rd = r.ready();
    assert!(rd.messages.is_empty());
    assert!(matches!(
        rd.persisted_messages[0].body,
        Body::VoteResponse { granted: true, .. }
    ));
    assert_eq!(
        rd.hard_state.map(|h| h.vote),
        Some(Some(1)),
        "the vote must be in the hard state to persist"
    );
    r.advance();

    let mut l = elect(three());
    let rd = l.ready();
    assert!(
        rd.messages.iter().any(|m| matches!(m.body, Body::Append { .. })),
        "a leader's appends go out at once"
    );
    assert!(!rd.entries.is_empty());
    l.advance();
}

/// §5.3: a new leader sets every follower's next index just after the last
/// entry of its own log, and probes from there; a follower that holds the
/// same log gets only the new entry, not the log from its start.
#[test]
fn a_new_leader_probes_each_follower_just_after_its_own_last_entry() {
    let log: Vec<Entry> = (1..=50)
        .map(|index| Entry {
            index,
            term: 1,
            kind: EntryKind::Command,
            data: Bytes::from(vec![b'x'; 1000]),
        })
        .collect();
    let mut l = elect(InitialState {
        hard_state: HardState {
            term: 1,
            vote: None,
            commit: 50,
        },
        entries: log,
        ..three()
    });
    // The no-op of the new term is 51; the probe of each follower is sent at
    // prev_index 50.
    assert_eq!(l.progress_of(2).map(|(_, next)| next), Some(51));
    let appends: Vec<(u64, u64, usize)> = drain(&mut l)
        .into_iter()
        .filter_map(|m| match m.body {
            Body::Append {
                prev_index, entries, ..
            } => Some((m.to, prev_index, entries.len())),
            _ => None,
        })
        .collect();
    assert!(!appends.is_empty());
    for (to, prev_index, n) in appends {
        assert_eq!((prev_index, n), (50, 1), "the append to {to}");
    }
}

/// A single voter wins its election in the step that raises its term: its
/// appends (here to a learner) wait until that term is durable, like vote
/// requests do; a leader elected by votes sends them at once.
#[test]
fn a_single_voters_first_appends_wait_for_its_term_to_be_durable() {
    let mut r = Raft::new(
        cfg(1),
        InitialState {
            membership: Membership {
                learners: [2].into(),
                ..Membership::with_voters([1])
            },
            ..Default::default()
        },
    )
    .unwrap();
    r.campaign();
    assert_eq!(r.role(), Role::Leader);
    let rd = r.ready();
    let is_append = |m: &Message| matches!(m.body, Body::Append { .. });
    assert!(rd.hard_state.is_some_and(|h| h.term == 1));
    assert!(!rd.messages.iter().any(is_append), "{:?}", rd.messages);
    assert!(
        rd.persisted_messages.iter().any(is_append),
        "{:?}",
        rd.persisted_messages
    );
    r.advance();
    // With the term durable, later appends go out at once.
    r.step(msg(
        2,
        1,
        1,
        Body::AppendResponse {
            reject: false,
            index: 1,
            hint_index: 0,
            hint_term: 0,
        },
    ));
    r.propose(Bytes::from_static(b"x")).unwrap();
    let rd = r.ready();
    assert!(rd.messages.iter().any(is_append), "{:?}", rd.messages);
    r.advance();
}

/// Followers that heard the same last heartbeat tick out of phase: when one
/// times out and asks for pre-votes, the other may have counted one tick
/// fewer. The election timeout starts one tick above the lease window, so
/// that peer is already out of its lease and grants; otherwise the cluster
/// would wait out a second timeout (the failover tail).
#[test]
fn a_peer_one_tick_behind_grants_the_pre_vote_of_the_first_to_time_out() {
    for seed in 0..50 {
        let heartbeat = |to| msg(1, to, 1, Body::Heartbeat { commit: 0, read_seq: 0 });
        let mut c2 = cfg(2);
        c2.seed = seed;
        let mut a = Raft::new(c2.clone(), three()).unwrap();
        a.step(heartbeat(2));
        drain(&mut a);
        let mut ticks = 0;
        let pre_vote = loop {
            a.tick();
            ticks += 1;
            let out = drain(&mut a);
            if let Some(m) = out
                .into_iter()
                .find(|m| m.to == 3 && matches!(m.body, Body::Vote { .. }))
            {
                break m;
            }
            assert!(
                ticks < 2 * c2.election_tick,
                "seed {seed}: no campaign within 2 election timeouts"
            );
        };
        assert!(
            ticks > c2.election_tick,
            "seed {seed}: campaigned inside the lease window"
        );
        let answer = |peer_ticks: u32| {
            let mut b = Raft::new(cfg(3), three()).unwrap();
            b.step(heartbeat(3));
            drain(&mut b);
            for _ in 0..peer_ticks {
                b.tick();
            }
            drain(&mut b);
            b.step(pre_vote.clone());
            drain(&mut b).into_iter().find_map(|m| match m.body {
                Body::VoteResponse {
                    pre_vote: true,
                    granted,
                } => Some(granted),
                _ => None,
            })
        };
        assert_eq!(
            answer(ticks - 1),
            Some(true),
            "seed {seed}: a peer one tick behind refused"
        );
        // Control: inside its lease (election_tick - 1 ticks) the peer still
        // ignores the request, so the test above can tell the difference.
        assert_eq!(
            answer(c2.election_tick - 1),
            None,
            "seed {seed}: the lease no longer holds"
        );
    }
}

// ----- leader lease reads (thesis §6.4.1) ------------------------------------

fn lease_cfg(id: u64) -> Config {
    let mut c = cfg(id);
    c.lease_read = true;
    c
}

/// A leader of {1,2,3} whose no-op is committed (node 2 acknowledged it).
fn committed_leader(config: Config) -> Raft {
    let mut r = elect_with(config, three());
    drain(&mut r);
    let last = r.last_index();
    ack(&mut r, 2, last);
    drain(&mut r);
    assert_eq!(r.commit_index(), last);
    r
}

fn lease_leader() -> Raft {
    committed_leader(lease_cfg(1))
}

/// Ticks until the leader sends a heartbeat round; returns its number and
/// the ticks it took.
fn next_round(r: &mut Raft) -> (u64, u32) {
    for ticks in 1..=100 {
        r.tick();
        let round = drain(r).into_iter().find_map(|m| match m.body {
            Body::Heartbeat { read_seq, .. } if m.to == 2 => Some(read_seq),
            _ => None,
        });
        if let Some(seq) = round {
            return (seq, ticks);
        }
    }
    panic!("no heartbeat round within 100 ticks");
}

/// Sends the next heartbeat round and has node 2 acknowledge it at once;
/// returns its number.
fn ack_next_round(r: &mut Raft) -> u64 {
    let (seq, _) = next_round(r);
    ack_round(r, 2, seq);
    drain(r);
    seq
}

fn ack_round(r: &mut Raft, from: u64, read_seq: u64) {
    let t = r.term();
    r.step(msg(from, 1, t, Body::HeartbeatResponse { read_seq }));
}

/// Asks for a read and returns whether it was answered in the very next
/// `Ready`, and the messages that went out with it.
fn read_now(r: &mut Raft, ctx: &'static [u8]) -> (bool, Vec<Message>) {
    r.read_index(Bytes::from_static(ctx)).unwrap();
    let rd = r.ready();
    let answered = rd.read_states.iter().any(|s| &s.ctx[..] == ctx);
    let mut out = rd.messages;
    out.extend(rd.persisted_messages);
    r.advance();
    out.extend(drain(r));
    (answered, out)
}

fn has_heartbeat(out: &[Message]) -> bool {
    out.iter().any(|m| matches!(m.body, Body::Heartbeat { .. }))
}

#[test]
fn a_leader_on_its_lease_answers_a_read_without_a_heartbeat_round() {
    let mut r = lease_leader();
    ack_next_round(&mut r);
    let (answered, out) = read_now(&mut r, b"r1");
    assert!(answered, "a read on a valid lease waited");
    assert!(!has_heartbeat(&out), "a lease read sent a heartbeat round");
    assert_eq!(r.stats().lease_reads, 1);

    // Control: the same leader without lease reads needs a round.
    let mut plain = committed_leader(cfg(1));
    assert!(!plain.config().lease_read);
    ack_next_round(&mut plain);
    let (answered, out) = read_now(&mut plain, b"r1");
    assert!(!answered && has_heartbeat(&out), "ReadIndex skipped its round");
}

/// The lease runs `lease_ticks` from when the acknowledged round was sent,
/// not from when the acknowledgement arrived.
#[test]
fn the_lease_ends_lease_ticks_after_the_acknowledged_round_was_sent() {
    let mut r = lease_leader();
    let lease = r.config().lease_ticks();
    assert_eq!(lease, 8, "election_tick 10 gives up one tick of nine to clock drift");
    let (seq, _) = next_round(&mut r);
    // Later rounds go unanswered; this one is acknowledged late.
    let mut elapsed = 0;
    while elapsed < lease - 1 {
        elapsed += next_round(&mut r).1;
    }
    assert_eq!(elapsed, lease - 1);
    ack_round(&mut r, 2, seq);
    drain(&mut r);
    let (answered, _) = read_now(&mut r, b"in");
    assert!(answered, "the lease ended early");
    r.tick();
    drain(&mut r);
    let (answered, out) = read_now(&mut r, b"out");
    assert!(!answered, "a read was answered on an expired lease");
    assert!(has_heartbeat(&out), "the read did not start a round");
    assert_eq!(r.stats().lease_reads, 1);
}

/// Only a quorum's acknowledgement makes a lease: in {1,2,3,4,5} one
/// follower is not enough.
#[test]
fn a_minority_acknowledgement_makes_no_lease() {
    let five = InitialState {
        membership: Membership::with_voters([1, 2, 3, 4, 5]),
        ..Default::default()
    };
    let mut r = Raft::new(lease_cfg(1), five).unwrap();
    r.campaign();
    drain(&mut r);
    for (pre_vote, from) in [(true, 2), (true, 3), (false, 2), (false, 3)] {
        let t = r.term() + u64::from(pre_vote);
        r.step(msg(
            from,
            1,
            t,
            Body::VoteResponse {
                pre_vote,
                granted: true,
            },
        ));
        drain(&mut r);
    }
    assert_eq!(r.role(), Role::Leader);
    let last = r.last_index();
    ack(&mut r, 2, last);
    ack(&mut r, 3, last);
    drain(&mut r);
    let (seq, _) = next_round(&mut r);
    ack_round(&mut r, 2, seq);
    drain(&mut r);
    assert!(!read_now(&mut r, b"minority").0, "one of four followers gave a lease");
    ack_round(&mut r, 3, seq + 1);
    ack_round(&mut r, 2, seq + 1);
    drain(&mut r);
    assert!(
        read_now(&mut r, b"majority").0,
        "a quorum's acknowledgement gave no lease"
    );
}

/// Voters grant a transfer target's vote despite their lease, so the old
/// leader must stop answering on its lease as soon as a transfer begins.
#[test]
fn a_leader_gives_up_its_lease_when_it_transfers_leadership() {
    let mut r = lease_leader();
    ack_next_round(&mut r);
    assert!(read_now(&mut r, b"before").0);
    r.transfer_leader(3).unwrap();
    drain(&mut r);
    let (answered, _) = read_now(&mut r, b"during");
    assert!(!answered, "a read was answered on the lease during a transfer");
    // The target may still win after the transfer times out (a TimeoutNow
    // in flight): fresh acknowledgements in this term give no lease back.
    for _ in 0..r.config().election_tick {
        r.tick();
        let rounds: Vec<u64> = drain(&mut r)
            .into_iter()
            .filter_map(|m| match m.body {
                Body::Heartbeat { read_seq, .. } => Some(read_seq),
                _ => None,
            })
            .collect();
        for seq in rounds {
            ack_round(&mut r, 2, seq);
        }
        drain(&mut r);
    }
    assert_eq!(r.role(), Role::Leader);
    assert!(
        r.propose(Bytes::from_static(b"x")).is_ok(),
        "the transfer did not time out"
    );
    drain(&mut r);
    let (answered, _) = read_now(&mut r, b"after");
    assert!(!answered, "the lease came back in the term of an abandoned transfer");
}

/// The arithmetic of the lease against the promise it relies on, on one
/// clock: the follower acknowledges the round the instant it is sent, and
/// its first tick comes right after (the worst phase). The leader's last
/// leased tick count `j` covers real time up to `j + 1` ticks after the
/// send; the follower grants a vote at its `k`-th tick, `k - 1` ticks after
/// the send. So `j + 1 <= k - 1` must hold for every election timeout.
#[test]
fn a_lease_ends_before_an_acknowledging_follower_can_vote() {
    for e in [3, 4, 5, 9, 10, 11, 30, 101] {
        let mut lc = lease_cfg(1);
        lc.election_tick = e;
        let mut leader = committed_leader(lc);
        let seq = ack_next_round(&mut leader);
        let mut last_leased = None;
        for j in 0..2 * e {
            if !leader.is_leader() {
                break; // check-quorum: nobody else acknowledged since
            }
            if read_now(&mut leader, b"r").0 {
                last_leased = Some(j);
            }
            leader.tick();
            drain(&mut leader);
        }
        let j = last_leased.expect("the lease held at least at the send");

        let mut fc = lease_cfg(2);
        fc.election_tick = e;
        let mut follower = Raft::new(fc, three()).unwrap();
        // Past the restart rule, so only the heartbeat's promise counts.
        for _ in 0..e {
            follower.tick();
        }
        drain(&mut follower);
        follower.step(msg(
            1,
            2,
            1,
            Body::Heartbeat {
                commit: 0,
                read_seq: seq,
            },
        ));
        drain(&mut follower);
        let vote = msg(
            3,
            2,
            2,
            Body::Vote {
                pre_vote: false,
                last_index: 10,
                last_term: 1,
                transfer: false,
            },
        );
        let k = (1..=2 * e)
            .find(|_| {
                follower.tick();
                drain(&mut follower);
                follower.step(vote.clone());
                drain(&mut follower)
                    .iter()
                    .any(|m| matches!(m.body, Body::VoteResponse { granted: true, .. }))
            })
            .expect("the follower votes within two election timeouts");
        assert_eq!(k, e, "election_tick {e}: the follower's promise");
        assert!(
            j + 1 < k,
            "election_tick {e}: lease to tick {j} of the send, the follower votes at its tick {k}"
        );
    }
}

/// A node forgets at restart whose heartbeats it acknowledged; with lease
/// reads it keeps refusing votes for an election timeout, as it promised.
#[test]
fn a_restarted_node_refuses_votes_for_an_election_timeout() {
    let vote = |to| {
        msg(
            3,
            to,
            2,
            Body::Vote {
                pre_vote: false,
                last_index: 10,
                last_term: 1,
                transfer: false,
            },
        )
    };
    let granted = |lease_read: bool, ticks: u32| {
        let mut c = cfg(2);
        c.lease_read = lease_read;
        let mut r = Raft::new(c, three()).unwrap();
        for _ in 0..ticks {
            r.tick();
        }
        drain(&mut r);
        r.step(vote(2));
        drain(&mut r).into_iter().any(|m| {
            matches!(
                m.body,
                Body::VoteResponse {
                    pre_vote: false,
                    granted: true
                }
            )
        })
    };
    let e = cfg(2).election_tick;
    assert!(!granted(true, 0), "a just-restarted node granted a vote");
    assert!(
        !granted(true, e - 1),
        "granted a vote inside its first election timeout"
    );
    assert!(granted(true, e), "still refusing after an election timeout");
    // Control: without lease reads a restarted node votes at once.
    assert!(granted(false, 0));
}

#[test]
fn lease_reads_need_check_quorum_and_room_for_a_lease() {
    let mut c = lease_cfg(1);
    c.check_quorum = false;
    assert!(Raft::new(c, three()).is_err(), "lease reads without check-quorum");
    let mut c = lease_cfg(1);
    c.election_tick = 2;
    assert!(Raft::new(c, three()).is_err(), "no room for a lease");
    let mut c = lease_cfg(1);
    c.election_tick = 3;
    assert_eq!(c.lease_ticks(), 1);
    assert!(Raft::new(c, three()).is_ok());
    // A forced election would override the followers' promises.
    let mut follower = Raft::new(lease_cfg(2), three()).unwrap();
    assert!(follower.force_campaign().is_err());
    assert_eq!(follower.role(), Role::Follower);
    let mut plain = Raft::new(cfg(2), three()).unwrap();
    assert!(plain.force_campaign().is_ok());
    assert_eq!(plain.role(), Role::Candidate);
}

// ----- telling followers the commit index ------------------------------------

/// The commit index the first append or heartbeat to node 2 among `out`
/// carries, if any.
fn commit_sent_to_2(out: &[Message]) -> Option<u64> {
    out.iter().find_map(|m| match m.body {
        Body::Append { commit, .. } | Body::Heartbeat { commit, .. } if m.to == 2 => Some(commit),
        _ => None,
    })
}

/// Proposes one entry and has node 2 acknowledge it, which commits it;
/// returns its index. The messages of the commit stay in the core.
fn commit_one(r: &mut Raft) -> u64 {
    r.propose(Bytes::from_static(b"a")).unwrap();
    drain(r);
    let index = r.last_index();
    ack(r, 2, index);
    index
}

fn has_append_to_2(out: &[Message]) -> bool {
    out.iter().any(|m| m.to == 2 && matches!(m.body, Body::Append { .. }))
}

/// A new commit index is not broadcast on its own at once: it rides on the
/// next append (the next proposal's), or goes out at the next tick. With
/// one client that halves the messages per write: the commit-only append
/// and its acknowledgement used to follow every write.
#[test]
fn a_new_commit_index_rides_on_the_next_append_or_goes_out_at_the_next_tick() {
    let mut r = committed_leader(cfg(1));
    let a = commit_one(&mut r);
    let out = drain(&mut r);
    assert_eq!(r.commit_index(), a);
    assert_eq!(
        commit_sent_to_2(&out),
        None,
        "a commit-only append went out at once: {out:?}"
    );

    // The next proposal's append carries it.
    r.propose(Bytes::from_static(b"b")).unwrap();
    let out = drain(&mut r);
    assert_eq!(commit_sent_to_2(&out), Some(a), "{out:?}");

    // With nothing more proposed, the next tick sends it (in an append, or
    // in the heartbeat if the tick is a heartbeat's).
    let b = r.last_index();
    ack(&mut r, 2, b);
    assert_eq!(commit_sent_to_2(&drain(&mut r)), None);
    r.tick();
    assert_eq!(commit_sent_to_2(&drain(&mut r)), Some(b));
    // Once told, ticks send no further append.
    for _ in 0..5 {
        r.tick();
        assert!(!has_append_to_2(&drain(&mut r)), "an append with nothing new");
    }
}

/// A follower's forwarded read: it applies up to the read index before it
/// reads, so it must learn that the index is committed. A leader on its
/// lease answers at once, without the heartbeat round that would carry the
/// commit index; the append carrying it goes first, on the same stream.
#[test]
fn a_follower_learns_the_commit_index_before_the_answer_to_its_read() {
    let mut r = lease_leader();
    ack_next_round(&mut r); // the lease holds from here
    let a = commit_one(&mut r);
    drain(&mut r);
    let t = r.term();
    r.step(msg(2, 1, t, Body::ReadIndex { request: 7 }));
    let out: Vec<Message> = drain(&mut r).into_iter().filter(|m| m.to == 2).collect();
    let answer = out
        .iter()
        .position(|m| matches!(m.body, Body::ReadIndexResponse { request: 7, index: Some(i) } if i == a))
        .unwrap_or_else(|| panic!("the read was not answered at once: {out:?}"));
    assert_eq!(commit_sent_to_2(&out[..answer]), Some(a), "{out:?}");

    // A second read of the same index sends no second append.
    r.step(msg(2, 1, t, Body::ReadIndex { request: 8 }));
    let out = drain(&mut r);
    assert!(!has_append_to_2(&out), "{out:?}");

    // Without a lease the read waits for a heartbeat round, and the round's
    // heartbeat carries the commit index.
    let mut r = committed_leader(cfg(1));
    let a = commit_one(&mut r);
    drain(&mut r);
    let t = r.term();
    r.step(msg(2, 1, t, Body::ReadIndex { request: 9 }));
    let out = drain(&mut r);
    let seq = out
        .iter()
        .find_map(|m| match m.body {
            Body::Heartbeat { commit, read_seq } if m.to == 2 => Some((commit, read_seq)),
            _ => None,
        })
        .unwrap_or_else(|| panic!("no heartbeat round: {out:?}"));
    assert_eq!(seq.0, a, "the round's heartbeat does not carry the commit index");
    ack_round(&mut r, 2, seq.1);
    let answered = drain(&mut r)
        .iter()
        .any(|m| m.to == 2 && matches!(m.body, Body::ReadIndexResponse { request: 9, index: Some(i) } if i == a));
    assert!(answered, "the read was not answered after its round");
}

/// A follower forwards each read to the leader it knows. When the term
/// changes, the old leader drops them unanswered, so the follower forgets
/// them too; and a queue that is full drops its oldest instead of refusing
/// every read from then on.
#[test]
fn forwarded_reads_are_forgotten_at_a_new_term_and_never_block_for_good() {
    let heartbeat = |from: u64, term: u64| msg(from, 2, term, Body::Heartbeat { commit: 0, read_seq: 0 });
    let mut f = Raft::new(cfg(2), three()).unwrap();
    f.step(heartbeat(1, 1));
    drain(&mut f);
    for _ in 0..3 {
        f.read_index(Bytes::from_static(b"r")).unwrap();
    }
    assert_eq!(f.pending_forwarded_reads(), 3);
    f.step(heartbeat(3, 2));
    assert_eq!(f.pending_forwarded_reads(), 0);
    drain(&mut f);

    // No answer ever comes (lost messages): the queue stays bounded and
    // reads keep being forwarded.
    for _ in 0..(1 << 16) {
        f.read_index(Bytes::from_static(b"r")).unwrap();
    }
    drain(&mut f);
    assert_eq!(f.pending_forwarded_reads(), 1 << 16);
    f.read_index(Bytes::from_static(b"one more")).unwrap();
    assert_eq!(f.pending_forwarded_reads(), 1 << 16);
}

/// A snapshot that agrees with the follower's log keeps the log after it;
/// a configuration entry in that part stays the one in force (§6).
#[test]
fn a_snapshot_below_a_configuration_entry_leaves_that_configuration_in_force() {
    let before = Membership {
        learners: [4].into(),
        ..Membership::with_voters([1, 2, 3])
    };
    let joint = Membership {
        voters: [1, 2, 3, 4].into(),
        voters_outgoing: [1, 2, 3].into(),
        learners: Default::default(),
    };
    let mut log: Vec<Entry> = (1..=49)
        .map(|index| Entry {
            index,
            term: 1,
            kind: EntryKind::Command,
            data: Bytes::from_static(b"x"),
        })
        .collect();
    log.push(Entry {
        index: 50,
        term: 1,
        kind: EntryKind::Membership,
        data: triton_raft::confchange::encode_entry(&joint, b""),
    });
    let mut f = Raft::new(
        cfg(3),
        InitialState {
            hard_state: HardState {
                term: 1,
                vote: None,
                commit: 45,
            },
            entries: log,
            membership: before.clone(),
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(f.membership(), &joint);
    f.step(msg(
        2,
        3,
        1,
        Body::Snapshot {
            meta: triton_raft::SnapshotMeta {
                index: 48,
                term: 1,
                membership: before,
            },
            offset: 0,
            total: 1,
            data: Bytes::from_static(b"s"),
            done: true,
        },
    ));
    assert_eq!(f.last_index(), 50, "the log after the snapshot is kept");
    assert_eq!(f.membership(), &joint);
}

/// A leader that shrinks its cluster to itself confirms the reads it was
/// waiting to confirm: no heartbeat answer would ever come to do it.
#[test]
fn reads_pending_when_the_cluster_shrinks_to_the_leader_are_answered() {
    let two = InitialState {
        membership: Membership::with_voters([1, 2]),
        ..Default::default()
    };
    let mut l = elect(two);
    drain(&mut l);
    ack(&mut l, 2, 1); // the no-op commits
    drain(&mut l);
    l.propose_conf_change(triton_raft::ConfChange::Remove(2), Bytes::new())
        .unwrap();
    drain(&mut l);
    l.read_index(Bytes::from_static(b"r")).unwrap();
    let rd = l.ready();
    assert!(rd.read_states.is_empty(), "the read waits for a heartbeat round");
    l.advance();
    // Node 2 acknowledges the joint configuration (not the read round); the
    // leader commits it and appends the final one, {1}.
    ack(&mut l, 2, 2);
    let mut answered = Vec::new();
    while l.has_ready() {
        let rd = l.ready();
        answered.extend(rd.read_states);
        l.advance();
    }
    assert_eq!(l.membership(), &Membership::with_voters([1]));
    assert_eq!(answered.len(), 1, "the pending read is answered");
}

// ----- found by review: hostile or unlucky inputs ----------------------------

fn heartbeat_response(from: u64, term: u64, read_seq: u64) -> Message {
    msg(from, 1, term, Body::HeartbeatResponse { read_seq })
}

/// §6: a leader removed by `C_new` leads until `C_new` commits. An operator's
/// transfer that timed out before then used to step it down and trip the
/// "a removed node must not campaign" assertion (it still is a voter of the
/// joint configuration its peers may be in): the process died.
#[test]
fn a_removed_leader_whose_handover_times_out_before_its_removal_commits_keeps_leading() {
    let mut l = elect(three());
    drain(&mut l);
    let noop = l.last_index();
    ack(&mut l, 2, noop);
    drain(&mut l);
    l.propose_conf_change(ConfChange::Remove(1), Bytes::new()).unwrap();
    drain(&mut l);
    let joint = l.last_index();
    // The joint configuration needs a majority of {2, 3} too.
    ack(&mut l, 2, joint);
    ack(&mut l, 3, joint);
    drain(&mut l);
    let c_new = l.last_index();
    assert!(c_new > joint, "the committed joint configuration is followed by C_new");
    assert!(!l.membership().is_voter(1));
    l.transfer_leader(2).unwrap();
    drain(&mut l);
    // The followers answer heartbeats (check-quorum holds) but C_new does
    // not commit within the transfer's timeout.
    let t = l.term();
    for _ in 0..3 * cfg(1).election_tick {
        l.tick();
        drain(&mut l);
        l.step(heartbeat_response(2, t, 0));
        l.step(heartbeat_response(3, t, 0));
        drain(&mut l);
    }
    assert_eq!(l.role(), Role::Leader, "left before committing its own removal");
    // Once C_new commits (both of {2, 3}) it hands over and steps down.
    ack(&mut l, 2, c_new);
    ack(&mut l, 3, c_new);
    let out = drain(&mut l);
    assert_eq!(l.role(), Role::Follower);
    assert!(out.iter().any(|m| m.to == 2 && matches!(m.body, Body::TimeoutNow)));
}

/// A follower restarted within a term numbers its forwarded reads afresh
/// (from its new seed): a late answer to its previous start's read does not
/// answer the new one, which may have been asked after a later write.
#[test]
fn a_restarted_follower_does_not_take_a_late_answer_to_its_previous_starts_read() {
    let forwarded = |seed: u64, ctx: &'static [u8]| {
        let mut c = cfg(2);
        c.seed = seed;
        let mut f = Raft::new(c, three()).unwrap();
        f.step(msg(1, 2, 1, Body::Heartbeat { commit: 0, read_seq: 0 }));
        drain(&mut f);
        f.read_index(Bytes::from_static(ctx)).unwrap();
        let request = drain(&mut f)
            .iter()
            .find_map(|m| match m.body {
                Body::ReadIndex { request } => Some(request),
                _ => None,
            })
            .expect("the read is forwarded to the leader");
        (f, request)
    };
    let (_, old_request) = forwarded(1, b"old");
    let (mut restarted, new_request) = forwarded(2, b"new");
    assert_ne!(old_request, new_request);
    let late = Body::ReadIndexResponse {
        request: old_request,
        index: Some(5),
    };
    restarted.step(msg(1, 2, 1, late));
    assert!(
        restarted.ready().read_states.is_empty(),
        "a late answer served the new read"
    );
    restarted.advance();
    restarted.step(msg(
        1,
        2,
        1,
        Body::ReadIndexResponse {
            request: new_request,
            index: Some(5),
        },
    ));
    assert_eq!(restarted.ready().read_states.len(), 1);
}

/// A term in range but billions of elections ahead is forged or corrupt:
/// adopting it (durably) near the wire bound would leave no term for the
/// next election. Refused; an ordinary jump is adopted.
#[test]
fn a_term_billions_of_elections_ahead_is_refused() {
    let mut r = Raft::new(cfg(1), three()).unwrap();
    let heartbeat = |term: u64| msg(2, 1, term, Body::Heartbeat { commit: 0, read_seq: 0 });
    r.step(heartbeat(1 << 62));
    r.step(heartbeat(MAX_TERM_JUMP + 1));
    assert_eq!((r.term(), r.stats().invalid_messages), (0, 2));
    r.step(heartbeat(MAX_TERM_JUMP));
    assert_eq!(r.term(), MAX_TERM_JUMP);
}

/// A heartbeat answer for a round the leader never sent would confirm that
/// follower's part of every later round in advance: ignored.
#[test]
fn an_answer_to_a_heartbeat_round_never_sent_is_ignored() {
    let mut l = elect(three());
    drain(&mut l);
    let t = l.term();
    l.step(heartbeat_response(2, t, u64::MAX));
    assert_eq!(l.stats().invalid_messages, 1);
}

/// A follower that refuses a snapshot (too large for it) is not sent it
/// again at every heartbeat: the leader waits 20 election timeouts.
#[test]
fn a_refused_snapshot_is_not_resent_at_every_heartbeat() {
    let mut l = elect(three());
    let mut out = drain(&mut l);
    for i in 0..5u8 {
        l.propose(Bytes::from(vec![i; 10])).unwrap();
    }
    out.extend(drain(&mut l));
    // The probe node 3 has not answered yet.
    let probe = out
        .iter()
        .find_map(|m| match m.body {
            Body::Append { prev_index, .. } if m.to == 3 => Some(prev_index),
            _ => None,
        })
        .expect("a probe went to node 3");
    let last = l.last_index();
    ack(&mut l, 2, last);
    drain(&mut l);
    l.compact(last, Bytes::from_static(b"state")).unwrap();
    let t = l.term();
    let snapshots = |out: &[Message]| {
        out.iter()
            .filter(|m| m.to == 3 && matches!(m.body, Body::Snapshot { .. }))
            .count()
    };
    // Node 3 has nothing: its probe rejection starts a transfer.
    l.step(msg(
        3,
        1,
        t,
        Body::AppendResponse {
            reject: true,
            index: probe,
            hint_index: 0,
            hint_term: 0,
        },
    ));
    assert!(snapshots(&drain(&mut l)) > 0, "the snapshot goes out");
    l.step(msg(
        3,
        1,
        t,
        Body::SnapshotResponse {
            index: last,
            next_offset: 0,
            reject: true,
        },
    ));
    drain(&mut l);
    let ticks = 20 * cfg(1).election_tick;
    let mut sent = 0;
    for _ in 0..ticks - 1 {
        l.tick();
        sent += snapshots(&drain(&mut l));
        l.step(heartbeat_response(3, t, 0));
        sent += snapshots(&drain(&mut l));
        l.step(msg(
            3,
            1,
            t,
            Body::AppendResponse {
                reject: true,
                index: last,
                hint_index: 0,
                hint_term: 0,
            },
        ));
        sent += snapshots(&drain(&mut l));
    }
    assert_eq!(sent, 0, "the refused snapshot was sent again within the back-off");
    for _ in 0..2 {
        l.tick();
        l.step(heartbeat_response(3, t, 0));
        sent += snapshots(&drain(&mut l));
    }
    assert!(sent > 0, "after the back-off the leader tries again");
}
