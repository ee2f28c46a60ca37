//! Runs the checked-in corpus of the `network_input` fuzz target
//! (`crates/node/fuzz`) through the function the fuzzer calls, so it keeps
//! running under `cargo test`. `write_seed_corpus` (ignored) writes the
//! hand-made seeds the corpus started from.

use std::path::{Path, PathBuf};

use bytes::Bytes;
use prost::Message as _;
use triton_node::codec::message_to_pb;
use triton_node::fuzzing::{network_input, Outcome};
use triton_node::members::AddressBook;
use triton_proto::raft::RaftBatch;
use triton_raft::{Body, Entry, EntryKind, Membership, Message, SnapshotMeta};

fn corpus_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/network_input")
}

#[test]
fn network_input_corpus_never_panics() {
    let mut files: Vec<_> = std::fs::read_dir(corpus_dir())
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    assert!(files.len() >= 10, "corpus has {} files", files.len());
    let (mut accepted, mut refused) = (0, 0);
    for f in &files {
        match network_input(&std::fs::read(f).unwrap()) {
            Outcome::Accepted => accepted += 1,
            Outcome::Refused => refused += 1,
        }
    }
    // Both paths stay exercised.
    assert!(accepted > 0 && refused > 0, "{accepted} accepted, {refused} refused");
}

fn seeds() -> Vec<(String, Vec<u8>)> {
    let m = |body| Message {
        from: 1,
        to: 2,
        term: 3,
        body,
    };
    let entry = |index, kind, data: &'static [u8]| Entry {
        index,
        term: 3,
        kind,
        data: Bytes::from_static(data),
    };
    let membership = Membership {
        voters: [1, 2, 3].into_iter().collect(),
        voters_outgoing: [1, 2].into_iter().collect(),
        learners: [4].into_iter().collect(),
    };
    let messages = vec![
        (
            "vote",
            m(Body::Vote {
                pre_vote: true,
                last_index: 9,
                last_term: 2,
                transfer: false,
            }),
        ),
        (
            "append",
            m(Body::Append {
                prev_index: 4,
                prev_term: 3,
                entries: vec![entry(5, EntryKind::Command, b"cmd"), entry(6, EntryKind::Noop, b"")],
                commit: 4,
            }),
        ),
        (
            "snapshot",
            m(Body::Snapshot {
                meta: SnapshotMeta {
                    index: 7,
                    term: 3,
                    membership: membership.clone(),
                },
                offset: 0,
                total: 4,
                data: Bytes::from_static(b"snap"),
                done: true,
            }),
        ),
        (
            "read_index_response",
            m(Body::ReadIndexResponse {
                request: 8,
                index: Some(12),
            }),
        ),
        ("timeout_now", m(Body::TimeoutNow)),
    ];
    let mut out = Vec::new();
    for (name, msg) in messages {
        let batch = RaftBatch {
            messages: vec![message_to_pb(&msg)],
        };
        out.push((format!("batch-{name}"), [vec![0u8], batch.encode_to_vec()].concat()));
    }
    let mut book = AddressBook::default();
    book.insert(1, "127.0.0.1:7001").unwrap();
    book.insert(4, "node4.example:7004").unwrap();
    let entry = triton_raft::confchange::encode_entry(&membership, &book.encode());
    out.push(("membership-entry".into(), [vec![1u8], entry.to_vec()].concat()));
    let bad_context = triton_raft::confchange::encode_entry(&membership, b"4=no port");
    out.push((
        "membership-bad-context".into(),
        [vec![1u8], bad_context.to_vec()].concat(),
    ));
    out.push(("membership-truncated".into(), [vec![1u8], entry[..9].to_vec()].concat()));
    out.push(("batch-garbage".into(), vec![0, 0xff, 0xff, 0xff, 0x0f]));
    out.push(("empty".into(), vec![]));
    out
}

#[test]
fn seeds_decode_as_expected() {
    for (name, data) in seeds() {
        let refused = ["bad", "truncated", "garbage", "empty"]
            .iter()
            .any(|w| name.contains(w));
        let expect = if refused { Outcome::Refused } else { Outcome::Accepted };
        assert_eq!(network_input(&data), expect, "{name}");
    }
}

#[test]
#[ignore = "writes the seed corpus; run by hand"]
fn write_seed_corpus() {
    std::fs::create_dir_all(corpus_dir()).unwrap();
    for (name, data) in seeds() {
        std::fs::write(corpus_dir().join(name), data).unwrap();
    }
}
