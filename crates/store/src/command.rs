//! Commands: what a client asks the replicated state machine to do.
//!
//! A [`Command`] is proposed by the leader, travels through the Raft log as
//! bytes and is applied on every replica. The bytes are protobuf (prost) so
//! that other languages can produce them and fields can be added later; the
//! schema is `crates/store/proto/store.proto`, and a test checks that the
//! field tags listed there are the ones this module writes.
//!
//! The public types ([`Command`], [`WriteOp`], [`Session`]) are plain Rust;
//! the private `wire` module holds their prost twins. Keeping them apart lets
//! `WriteOp` use named fields (prost's `Oneof` wants one-field tuple
//! variants) and makes "the command has no operation" an error at the
//! boundary rather than an `Option` every caller must handle.

use prost::Message;

use crate::StoreError;

/// Identifies one request of one client, for exactly-once execution.
///
/// A client numbers its requests with a `seq` that only grows; a retry reuses
/// the seq of the request it retries, so the store can recognise it and return
/// the first result instead of applying the write twice.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Session {
    /// The client's identity, unique in the cluster (chosen by the client or
    /// assigned by the server; the store only compares it).
    pub client_id: u64,
    /// The request number: strictly greater than every earlier request of
    /// this client, equal for retries of the same request.
    pub seq: u64,
}

/// One write to the store. Reads never go through the log (see
/// [`Store::get`](crate::Store::get)).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WriteOp {
    /// Sets `key` to `value` with a new version, replacing any expiry.
    Put {
        /// The key.
        key: Vec<u8>,
        /// The new value.
        value: Vec<u8>,
        /// Absolute expiry in Unix milliseconds; 0 means never.
        expires_at_ms: u64,
    },
    /// Appends `value` to the key's value (creating the key, without expiry,
    /// if it is missing or expired) and keeps the existing expiry.
    Append {
        /// The key.
        key: Vec<u8>,
        /// Bytes to append.
        value: Vec<u8>,
    },
    /// Removes the key.
    Delete {
        /// The key.
        key: Vec<u8>,
    },
    /// Compare-and-set: writes iff the key exists, is not expired, and has
    /// version `expected_version`.
    Cas {
        /// The key.
        key: Vec<u8>,
        /// The version the client last saw.
        expected_version: u64,
        /// The new value.
        value: Vec<u8>,
        /// New absolute expiry in Unix milliseconds; 0 means never.
        expires_at_ms: u64,
    },
    /// Proposed by the leader after [`Store::expired`](crate::Store::expired):
    /// removes the key iff it still has exactly `version` and is expired at
    /// the command's `now_ms`. A key rewritten in the meantime survives.
    Expire {
        /// The key.
        key: Vec<u8>,
        /// The version the leader saw expired.
        version: u64,
    },
    /// SurfStore `UpdateFile`: sets a file's block list iff `version` is the
    /// current version + 1 (1 for a new file). A deleted file is a tombstone
    /// whose block list is `["0"]`.
    SurfUpdate {
        /// The file name.
        filename: String,
        /// The proposed new version.
        version: i32,
        /// The file's block hashes in order (`["0"]` = deleted,
        /// `["-1"]` = empty file, by SurfStore convention; stored as given).
        block_hashes: Vec<String>,
    },
    /// Opens a session whose client id is this command's log index (Raft
    /// thesis §6.3): ids are never reused, and a registration applied twice
    /// (a retried request) opens two sessions, one of them never used. Only
    /// a registered client's writes are applied; see the crate docs.
    RegisterSession,
}

/// A command as it travels through the Raft log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Command {
    /// Present for client requests (exactly-once); absent for commands the
    /// leader proposes itself, such as [`WriteOp::Expire`], which are never
    /// deduplicated.
    pub session: Option<Session>,
    /// The leader's wall clock (Unix milliseconds) when it proposed the
    /// command. It is the only notion of time inside `apply`, so every
    /// replica judges expiry the same way.
    pub now_ms: u64,
    /// The write.
    pub op: WriteOp,
}

impl Command {
    /// Encodes the command as protobuf bytes (the `Command` message of
    /// `proto/store.proto`).
    pub fn encode(&self) -> Vec<u8> {
        wire::Command::from(self).encode_to_vec()
    }

    /// Decodes protobuf bytes. Never panics; allocations are bounded by the
    /// input's length (prost checks every length prefix against what remains).
    pub fn decode(bytes: &[u8]) -> Result<Command, StoreError> {
        let wire = wire::Command::decode(bytes)?;
        Command::try_from(wire)
    }
}

impl From<&Command> for wire::Command {
    fn from(c: &Command) -> Self {
        use wire::command::Op;
        let op = match &c.op {
            WriteOp::Put {
                key,
                value,
                expires_at_ms,
            } => Op::Put(wire::Put {
                key: key.clone(),
                value: value.clone(),
                expires_at_ms: *expires_at_ms,
            }),
            WriteOp::Append { key, value } => Op::Append(wire::Append {
                key: key.clone(),
                value: value.clone(),
            }),
            WriteOp::Delete { key } => Op::Delete(wire::Delete { key: key.clone() }),
            WriteOp::Cas {
                key,
                expected_version,
                value,
                expires_at_ms,
            } => Op::Cas(wire::Cas {
                key: key.clone(),
                expected_version: *expected_version,
                value: value.clone(),
                expires_at_ms: *expires_at_ms,
            }),
            WriteOp::Expire { key, version } => Op::Expire(wire::Expire {
                key: key.clone(),
                version: *version,
            }),
            WriteOp::SurfUpdate {
                filename,
                version,
                block_hashes,
            } => Op::SurfUpdate(wire::SurfUpdate {
                filename: filename.clone(),
                version: *version,
                block_hashes: block_hashes.clone(),
            }),
            WriteOp::RegisterSession => Op::RegisterSession(wire::RegisterSession {}),
        };
        wire::Command {
            session: c.session.map(|s| wire::Session {
                client_id: s.client_id,
                seq: s.seq,
            }),
            now_ms: c.now_ms,
            op: Some(op),
        }
    }
}

impl TryFrom<wire::Command> for Command {
    type Error = StoreError;

    fn try_from(w: wire::Command) -> Result<Self, StoreError> {
        use wire::command::Op;
        let op = match w.op.ok_or(StoreError::MissingOp)? {
            Op::Put(p) => WriteOp::Put {
                key: p.key,
                value: p.value,
                expires_at_ms: p.expires_at_ms,
            },
            Op::Append(a) => WriteOp::Append {
                key: a.key,
                value: a.value,
            },
            Op::Delete(d) => WriteOp::Delete { key: d.key },
            Op::Cas(c) => WriteOp::Cas {
                key: c.key,
                expected_version: c.expected_version,
                value: c.value,
                expires_at_ms: c.expires_at_ms,
            },
            Op::Expire(e) => WriteOp::Expire {
                key: e.key,
                version: e.version,
            },
            Op::SurfUpdate(s) => WriteOp::SurfUpdate {
                filename: s.filename,
                version: s.version,
                block_hashes: s.block_hashes,
            },
            Op::RegisterSession(_) => WriteOp::RegisterSession,
        };
        Ok(Command {
            session: w.session.map(|s| Session {
                client_id: s.client_id,
                seq: s.seq,
            }),
            now_ms: w.now_ms,
            op,
        })
    }
}

/// The prost messages, field for field the messages of `proto/store.proto`.
/// Crate-visible so the schema test can encode them directly.
pub(crate) mod wire {
    /// `triton.store.v1.Session`
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Session {
        #[prost(uint64, tag = "1")]
        pub client_id: u64,
        #[prost(uint64, tag = "2")]
        pub seq: u64,
    }

    /// `triton.store.v1.Command`
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Command {
        #[prost(message, optional, tag = "1")]
        pub session: Option<Session>,
        #[prost(uint64, tag = "2")]
        pub now_ms: u64,
        #[prost(oneof = "command::Op", tags = "3, 4, 5, 6, 7, 8, 9")]
        pub op: Option<command::Op>,
    }

    /// The `op` oneof of `Command`.
    pub mod command {
        /// `oneof op`
        #[derive(Clone, PartialEq, prost::Oneof)]
        pub enum Op {
            #[prost(message, tag = "3")]
            Put(super::Put),
            #[prost(message, tag = "4")]
            Append(super::Append),
            #[prost(message, tag = "5")]
            Delete(super::Delete),
            #[prost(message, tag = "6")]
            Cas(super::Cas),
            #[prost(message, tag = "7")]
            Expire(super::Expire),
            #[prost(message, tag = "8")]
            SurfUpdate(super::SurfUpdate),
            #[prost(message, tag = "9")]
            RegisterSession(super::RegisterSession),
        }
    }

    /// `triton.store.v1.Put`
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Put {
        #[prost(bytes = "vec", tag = "1")]
        pub key: Vec<u8>,
        #[prost(bytes = "vec", tag = "2")]
        pub value: Vec<u8>,
        #[prost(uint64, tag = "3")]
        pub expires_at_ms: u64,
    }

    /// `triton.store.v1.Append`
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Append {
        #[prost(bytes = "vec", tag = "1")]
        pub key: Vec<u8>,
        #[prost(bytes = "vec", tag = "2")]
        pub value: Vec<u8>,
    }

    /// `triton.store.v1.Delete`
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Delete {
        #[prost(bytes = "vec", tag = "1")]
        pub key: Vec<u8>,
    }

    /// `triton.store.v1.Cas`
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Cas {
        #[prost(bytes = "vec", tag = "1")]
        pub key: Vec<u8>,
        #[prost(uint64, tag = "2")]
        pub expected_version: u64,
        #[prost(bytes = "vec", tag = "3")]
        pub value: Vec<u8>,
        #[prost(uint64, tag = "4")]
        pub expires_at_ms: u64,
    }

    /// `triton.store.v1.Expire`
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Expire {
        #[prost(bytes = "vec", tag = "1")]
        pub key: Vec<u8>,
        #[prost(uint64, tag = "2")]
        pub version: u64,
    }

    /// `triton.store.v1.SurfUpdate`
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct SurfUpdate {
        #[prost(string, tag = "1")]
        pub filename: String,
        #[prost(int32, tag = "2")]
        pub version: i32,
        #[prost(string, repeated, tag = "3")]
        pub block_hashes: Vec<String>,
    }

    /// `triton.store.v1.RegisterSession`
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct RegisterSession {}
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all_ops() -> Vec<WriteOp> {
        vec![
            WriteOp::Put {
                key: b"k".to_vec(),
                value: b"v".to_vec(),
                expires_at_ms: 7,
            },
            WriteOp::Append {
                key: b"k".to_vec(),
                value: b"w".to_vec(),
            },
            WriteOp::Delete { key: b"k".to_vec() },
            WriteOp::Cas {
                key: b"k".to_vec(),
                expected_version: 3,
                value: b"x".to_vec(),
                expires_at_ms: 9,
            },
            WriteOp::Expire {
                key: b"k".to_vec(),
                version: 3,
            },
            WriteOp::SurfUpdate {
                filename: "f".into(),
                version: -1,
                block_hashes: vec!["h1".into(), "h2".into()],
            },
            WriteOp::RegisterSession,
            // All-default fields still round-trip: proto3 omits them, the op stays.
            WriteOp::Delete { key: Vec::new() },
        ]
    }

    #[test]
    fn every_op_round_trips_with_and_without_session() {
        for op in all_ops() {
            for session in [
                None,
                Some(Session { client_id: 1, seq: 2 }),
                Some(Session { client_id: 0, seq: 0 }),
            ] {
                let c = Command {
                    session,
                    now_ms: 1_700_000_000_000,
                    op: op.clone(),
                };
                assert_eq!(Command::decode(&c.encode()).unwrap(), c);
            }
        }
    }

    #[test]
    fn empty_bytes_are_a_command_without_op() {
        assert_eq!(Command::decode(&[]), Err(StoreError::MissingOp));
    }

    #[test]
    fn unknown_op_tag_is_missing_op() {
        // Field 15, length-delimited, empty: a future op this build does not know.
        assert_eq!(Command::decode(&[0x7a, 0x00]), Err(StoreError::MissingOp));
    }

    #[test]
    fn garbage_and_truncation_are_decode_errors() {
        assert!(matches!(Command::decode(&[0xff]), Err(StoreError::Decode(_))));
        let c = Command {
            session: None,
            now_ms: 5,
            op: WriteOp::Put {
                key: b"key".to_vec(),
                value: b"value".to_vec(),
                expires_at_ms: 0,
            },
        };
        let bytes = c.encode();
        // Cutting inside the Put message breaks its length prefix.
        assert!(matches!(
            Command::decode(&bytes[..bytes.len() - 1]),
            Err(StoreError::Decode(_))
        ));
    }

    #[test]
    fn invalid_utf8_filename_is_rejected() {
        let w = wire::Command {
            session: None,
            now_ms: 0,
            op: Some(wire::command::Op::SurfUpdate(wire::SurfUpdate {
                filename: "ab".into(),
                version: 1,
                block_hashes: vec![],
            })),
        };
        let mut bytes = w.encode_to_vec();
        let pos = bytes.windows(2).position(|w| w == b"ab").unwrap();
        bytes[pos] = 0xff;
        assert!(matches!(Command::decode(&bytes), Err(StoreError::Decode(_))));
    }
}
