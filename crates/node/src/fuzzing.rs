//! Entry points for the fuzzer (`crates/node/fuzz`), public so the
//! checked-in corpus also runs under `cargo test`: what a node decodes from
//! the network or from its peers' log entries must be refused cleanly,
//! never panic, and what is accepted must round-trip.

use prost::Message as _;
use triton_proto::raft::RaftBatch;

use crate::codec::{message_from_pb, message_to_pb};
use crate::members::AddressBook;

/// Which decoder the input went to and whether it accepted it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Accepted,
    Refused,
}

/// The first byte picks the decoder: even, a peer's `RaftBatch` (protobuf)
/// and every message in it; odd, a membership entry's payload and the
/// address book in its context.
pub fn network_input(data: &[u8]) -> Outcome {
    let Some((&mode, body)) = data.split_first() else {
        return Outcome::Refused;
    };
    if mode % 2 == 0 {
        peer_batch(body)
    } else {
        membership_entry(body)
    }
}

fn peer_batch(body: &[u8]) -> Outcome {
    let Ok(batch) = RaftBatch::decode(body) else {
        return Outcome::Refused;
    };
    let mut outcome = Outcome::Accepted;
    let mut accepted = Vec::new();
    for pb in batch.messages {
        match message_from_pb(pb) {
            Ok(m) => {
                // What is accepted survives a round trip unchanged.
                let again = message_from_pb(message_to_pb(&m)).expect("an encoded message decodes");
                assert_eq!(again, m, "message round trip");
                accepted.push(m);
            }
            Err(_) => outcome = Outcome::Refused,
        }
    }
    step_into_cores(accepted);
    outcome
}

/// Steps what was accepted into a follower and a leader (node 1, the
/// messages readdressed to it from node 2), then lets time pass: a
/// message the decoder lets through must not make the core panic, now or
/// at its next election (a forged term of 2^64 - 1 once did).
fn step_into_cores(messages: Vec<triton_raft::Message>) {
    use triton_raft::{Config, InitialState, Membership, Raft};
    if messages.is_empty() {
        return;
    }
    let core = |membership: Membership| {
        let mut cfg = Config::new(1);
        cfg.seed = 1;
        let init = InitialState {
            membership,
            ..Default::default()
        };
        Raft::new(cfg, init).expect("a valid configuration")
    };
    let follower = core(Membership::with_voters([1, 2, 3]));
    // A lone voter leads at once; its learners get appends and acknowledge.
    let mut leader = core(Membership {
        voters: [1].into(),
        learners: [2, 3].into(),
        ..Default::default()
    });
    leader.campaign();
    for mut r in [follower, leader] {
        drain(&mut r);
        for m in &messages {
            r.step(triton_raft::Message {
                from: 2,
                to: 1,
                ..m.clone()
            });
            drain(&mut r);
        }
        for _ in 0..30 {
            r.tick();
            drain(&mut r);
        }
    }
}

fn drain(r: &mut triton_raft::Raft) {
    while r.has_ready() {
        let _ = r.ready();
        r.advance();
    }
}

fn membership_entry(body: &[u8]) -> Outcome {
    let data = bytes::Bytes::copy_from_slice(body);
    let Ok((membership, context)) = triton_raft::confchange::decode_entry(&data) else {
        return Outcome::Refused;
    };
    let again = triton_raft::confchange::decode_entry(&triton_raft::confchange::encode_entry(&membership, &context))
        .expect("an encoded entry decodes");
    assert_eq!(again.0, membership, "membership round trip");
    match AddressBook::decode(&context) {
        Ok(book) => {
            assert_eq!(
                AddressBook::decode(&book.encode()).as_ref(),
                Ok(&book),
                "address round trip"
            );
            Outcome::Accepted
        }
        Err(_) => Outcome::Refused,
    }
}
