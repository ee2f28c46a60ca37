//! Converts between the core's messages and their protobuf form. Decoding
//! treats the input as untrusted: anything malformed is an error, never a
//! panic.

use bytes::Bytes;
use triton_proto::raft as pb;
use triton_raft::{Body, Entry, EntryKind, Membership, Message, SnapshotMeta};

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("malformed raft message: {0}")]
pub struct DecodeError(pub &'static str);

pub fn membership_to_pb(m: &Membership) -> pb::Membership {
    pb::Membership {
        voters: m.voters.iter().copied().collect(),
        voters_outgoing: m.voters_outgoing.iter().copied().collect(),
        learners: m.learners.iter().copied().collect(),
    }
}

pub fn membership_from_pb(m: &pb::Membership) -> Membership {
    Membership {
        voters: m.voters.iter().copied().collect(),
        voters_outgoing: m.voters_outgoing.iter().copied().collect(),
        learners: m.learners.iter().copied().collect(),
    }
}

fn kind_to_pb(k: EntryKind) -> i32 {
    match k {
        EntryKind::Command => pb::EntryKind::Command as i32,
        EntryKind::Noop => pb::EntryKind::Noop as i32,
        EntryKind::Membership => pb::EntryKind::Membership as i32,
    }
}

fn kind_from_pb(k: i32) -> Result<EntryKind, DecodeError> {
    match pb::EntryKind::try_from(k) {
        Ok(pb::EntryKind::Command) => Ok(EntryKind::Command),
        Ok(pb::EntryKind::Noop) => Ok(EntryKind::Noop),
        Ok(pb::EntryKind::Membership) => Ok(EntryKind::Membership),
        Err(_) => Err(DecodeError("unknown entry kind")),
    }
}

pub fn entry_to_pb(e: &Entry) -> pb::Entry {
    pb::Entry {
        index: e.index,
        term: e.term,
        kind: kind_to_pb(e.kind),
        data: e.data.to_vec(),
    }
}

pub fn entry_from_pb(e: pb::Entry) -> Result<Entry, DecodeError> {
    if e.index == 0 || e.term == 0 {
        return Err(DecodeError("entry with index or term 0"));
    }
    Ok(Entry {
        index: e.index,
        term: e.term,
        kind: kind_from_pb(e.kind)?,
        data: Bytes::from(e.data),
    })
}

fn meta_to_pb(m: &SnapshotMeta) -> pb::SnapshotMeta {
    pb::SnapshotMeta {
        index: m.index,
        term: m.term,
        membership: Some(membership_to_pb(&m.membership)),
    }
}

fn meta_from_pb(m: Option<pb::SnapshotMeta>) -> Result<SnapshotMeta, DecodeError> {
    let m = m.ok_or(DecodeError("snapshot without metadata"))?;
    let membership = m
        .membership
        .as_ref()
        .ok_or(DecodeError("snapshot without membership"))?;
    Ok(SnapshotMeta {
        index: m.index,
        term: m.term,
        membership: membership_from_pb(membership),
    })
}

pub fn message_to_pb(m: &Message) -> pb::RaftMessage {
    use pb::raft_message::Body as B;
    let body = match &m.body {
        Body::Vote {
            pre_vote,
            last_index,
            last_term,
            transfer,
        } => B::Vote(pb::Vote {
            pre_vote: *pre_vote,
            last_index: *last_index,
            last_term: *last_term,
            transfer: *transfer,
        }),
        Body::VoteResponse { pre_vote, granted } => B::VoteResponse(pb::VoteResponse {
            pre_vote: *pre_vote,
            granted: *granted,
        }),
        Body::Append {
            prev_index,
            prev_term,
            entries,
            commit,
        } => B::Append(pb::Append {
            prev_index: *prev_index,
            prev_term: *prev_term,
            entries: entries.iter().map(entry_to_pb).collect(),
            commit: *commit,
        }),
        Body::AppendResponse {
            reject,
            index,
            hint_index,
            hint_term,
        } => B::AppendResponse(pb::AppendResponse {
            reject: *reject,
            index: *index,
            hint_index: *hint_index,
            hint_term: *hint_term,
        }),
        Body::Heartbeat { commit, read_seq } => B::Heartbeat(pb::Heartbeat {
            commit: *commit,
            read_seq: *read_seq,
        }),
        Body::HeartbeatResponse { read_seq } => B::HeartbeatResponse(pb::HeartbeatResponse { read_seq: *read_seq }),
        Body::Snapshot {
            meta,
            offset,
            total,
            data,
            done,
        } => B::Snapshot(pb::SnapshotChunk {
            meta: Some(meta_to_pb(meta)),
            offset: *offset,
            total: *total,
            data: data.to_vec(),
            done: *done,
        }),
        Body::SnapshotResponse {
            index,
            next_offset,
            reject,
        } => B::SnapshotResponse(pb::SnapshotResponse {
            index: *index,
            next_offset: *next_offset,
            reject: *reject,
        }),
        Body::TimeoutNow => B::TimeoutNow(pb::TimeoutNow {}),
        Body::ReadIndex { request } => B::ReadIndex(pb::ReadIndex { request: *request }),
        Body::ReadIndexResponse { request, index } => B::ReadIndexResponse(pb::ReadIndexResponse {
            request: *request,
            index: *index,
        }),
    };
    pb::RaftMessage {
        from: m.from,
        to: m.to,
        term: m.term,
        body: Some(body),
    }
}

pub fn message_from_pb(m: pb::RaftMessage) -> Result<Message, DecodeError> {
    use pb::raft_message::Body as B;
    if m.from == 0 || m.to == 0 {
        return Err(DecodeError("sender or receiver is 0"));
    }
    let body = match m.body.ok_or(DecodeError("message without a body"))? {
        B::Vote(v) => Body::Vote {
            pre_vote: v.pre_vote,
            last_index: v.last_index,
            last_term: v.last_term,
            transfer: v.transfer,
        },
        B::VoteResponse(v) => Body::VoteResponse {
            pre_vote: v.pre_vote,
            granted: v.granted,
        },
        B::Append(a) => {
            let entries = a
                .entries
                .into_iter()
                .map(entry_from_pb)
                .collect::<Result<Vec<_>, _>>()?;
            for (i, e) in entries.iter().enumerate() {
                // Checked: both numbers come from the peer.
                if Some(e.index) != a.prev_index.checked_add(1 + i as u64) {
                    return Err(DecodeError("append entries are not contiguous"));
                }
            }
            Body::Append {
                prev_index: a.prev_index,
                prev_term: a.prev_term,
                entries,
                commit: a.commit,
            }
        }
        B::AppendResponse(r) => Body::AppendResponse {
            reject: r.reject,
            index: r.index,
            hint_index: r.hint_index,
            hint_term: r.hint_term,
        },
        B::Heartbeat(h) => Body::Heartbeat {
            commit: h.commit,
            read_seq: h.read_seq,
        },
        B::HeartbeatResponse(h) => Body::HeartbeatResponse { read_seq: h.read_seq },
        B::Snapshot(s) => {
            if s.offset
                .checked_add(s.data.len() as u64)
                .is_none_or(|end| end > s.total)
            {
                return Err(DecodeError("snapshot chunk beyond its total"));
            }
            Body::Snapshot {
                meta: meta_from_pb(s.meta)?,
                offset: s.offset,
                total: s.total,
                data: Bytes::from(s.data),
                done: s.done,
            }
        }
        B::SnapshotResponse(s) => Body::SnapshotResponse {
            index: s.index,
            next_offset: s.next_offset,
            reject: s.reject,
        },
        B::TimeoutNow(_) => Body::TimeoutNow,
        B::ReadIndex(r) => Body::ReadIndex { request: r.request },
        B::ReadIndexResponse(r) => Body::ReadIndexResponse {
            request: r.request,
            index: r.index,
        },
    };
    let message = Message {
        from: m.from,
        to: m.to,
        term: m.term,
        body,
    };
    // The core would ignore it too; refusing it here names the problem in
    // the transport's log.
    if !message.numbers_in_range() {
        return Err(DecodeError("a term, index or offset beyond 2^62"));
    }
    if !message.well_formed() {
        return Err(DecodeError(
            "a term inside the message past the sender's, or entries out of order",
        ));
    }
    Ok(message)
}

/// How a log entry is stored in the WAL: one kind byte, then the data.
pub fn entry_to_payload(e: &Entry) -> Vec<u8> {
    let mut p = Vec::with_capacity(e.data.len() + 1);
    p.push(kind_to_pb(e.kind) as u8);
    p.extend_from_slice(&e.data);
    p
}

pub fn entry_from_payload(index: u64, term: u64, payload: &[u8]) -> Result<Entry, DecodeError> {
    let (&kind, data) = payload.split_first().ok_or(DecodeError("empty WAL payload"))?;
    Ok(Entry {
        index,
        term,
        kind: kind_from_pb(kind as i32)?,
        data: Bytes::copy_from_slice(data),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_roundtrip_and_garbage_is_rejected() {
        let e = Entry {
            index: 5,
            term: 2,
            kind: EntryKind::Command,
            data: Bytes::from_static(b"x"),
        };
        let m = Message {
            from: 1,
            to: 2,
            term: 2,
            body: Body::Append {
                prev_index: 4,
                prev_term: 1,
                entries: vec![e.clone()],
                commit: 3,
            },
        };
        assert_eq!(message_from_pb(message_to_pb(&m)), Ok(m));
        let payload = entry_to_payload(&e);
        assert_eq!(entry_from_payload(5, 2, &payload), Ok(e));
        assert!(entry_from_payload(5, 2, &[]).is_err());
        assert!(entry_from_payload(5, 2, &[77]).is_err());
        let mut bad = message_to_pb(&Message {
            from: 1,
            to: 2,
            term: 1,
            body: Body::TimeoutNow,
        });
        bad.body = None;
        assert!(message_from_pb(bad).is_err());
    }

    #[test]
    fn an_append_whose_indexes_overflow_is_an_error_not_a_panic() {
        let append = |prev_index: u64, index: u64| Message {
            from: 1,
            to: 2,
            term: 1,
            body: Body::Append {
                prev_index,
                prev_term: 1,
                entries: vec![Entry {
                    index,
                    term: 1,
                    kind: EntryKind::Command,
                    data: Bytes::new(),
                }],
                commit: 0,
            },
        };
        assert!(message_from_pb(message_to_pb(&append(u64::MAX, 1))).is_err());
        assert!(message_from_pb(message_to_pb(&append(u64::MAX, 0))).is_err());
        // Contiguous, but past the bound no real log reaches.
        assert!(message_from_pb(message_to_pb(&append(u64::MAX - 1, u64::MAX))).is_err());
        let top = triton_raft::message::MAX_WIRE_NUMBER;
        assert!(message_from_pb(message_to_pb(&append(top - 1, top))).is_ok());
    }

    #[test]
    fn a_term_beyond_the_wire_bound_is_an_error() {
        let with_term = |term: u64| Message {
            from: 1,
            to: 2,
            term,
            body: Body::HeartbeatResponse { read_seq: 0 },
        };
        let top = triton_raft::message::MAX_WIRE_NUMBER;
        assert!(message_from_pb(message_to_pb(&with_term(top))).is_ok());
        assert!(message_from_pb(message_to_pb(&with_term(top + 1))).is_err());
        assert!(message_from_pb(message_to_pb(&with_term(u64::MAX))).is_err());
    }
}
