//! The replicated state machine the simulator runs on every node: the real
//! one, `triton_store::Store` (versioned keys, exactly-once sessions,
//! canonical snapshots), behind the small vocabulary the simulated clients
//! speak. Every seed therefore also tests the production state machine:
//! its determinism across replicas, its session table under retries and
//! snapshots. Commands that are not KV commands (the lab scenarios propose
//! raw bytes) decode as malformed and change nothing but the applied index,
//! as on a real node.

use bytes::Bytes;
use triton_raft::Index;
use triton_store::{Command, Session, Store, StoreOptions, WriteOp, WriteResult};

/// A KV write as proposed by a simulated client.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KvCommand {
    /// The client's registered session ([`KvCommand::register`]).
    pub session: u64,
    pub seq: u64,
    pub key: String,
    pub append: bool,
    pub value: String,
}

impl KvCommand {
    /// The command that registers a session; applied, it yields the
    /// session's id (its log index), as on a real node.
    pub fn register() -> Bytes {
        let cmd = Command {
            session: None,
            now_ms: 0,
            op: WriteOp::RegisterSession,
        };
        Bytes::from(cmd.encode())
    }

    /// The store's own command encoding.
    pub fn encode(&self) -> Bytes {
        let key = self.key.as_bytes().to_vec();
        let value = self.value.as_bytes().to_vec();
        let op = if self.append {
            WriteOp::Append { key, value }
        } else {
            WriteOp::Put {
                key,
                value,
                expires_at_ms: 0,
            }
        };
        let cmd = Command {
            session: Some(Session {
                client_id: self.session,
                seq: self.seq,
            }),
            now_ms: 0,
            op,
        };
        Bytes::from(cmd.encode())
    }

    pub fn decode(data: &[u8]) -> Option<KvCommand> {
        let cmd = Command::decode(data).ok()?;
        let session = cmd.session?;
        let (key, value, append) = match cmd.op {
            WriteOp::Put { key, value, .. } => (key, value, false),
            WriteOp::Append { key, value } => (key, value, true),
            _ => return None,
        };
        Some(KvCommand {
            session: session.client_id,
            seq: session.seq,
            key: String::from_utf8(key).ok()?,
            append,
            value: String::from_utf8(value).ok()?,
        })
    }
}

/// One node's copy of the store.
#[derive(Debug)]
pub struct KvStore {
    store: Store,
    /// The index of the last entry applied or skipped (mirrors the store's).
    pub applied: Index,
}

impl Default for KvStore {
    fn default() -> Self {
        KvStore {
            store: Store::new(StoreOptions::default()),
            applied: 0,
        }
    }
}

impl KvStore {
    /// Applies a committed command at `index`; returns the version the
    /// command produced (the original one for a duplicate), the session id
    /// for a registration, or `None` for bytes that are not a KV write or
    /// a write the store refused.
    pub fn apply(&mut self, index: Index, data: &[u8]) -> Option<Index> {
        assert!(
            index > self.applied,
            "applied {index} twice or out of order (at {})",
            self.applied
        );
        let result = self.store.apply(index, data);
        self.applied = self.store.applied_index();
        debug_assert_eq!(self.applied, index);
        match result {
            WriteResult::Put { version } | WriteResult::Append { version } => Some(version),
            WriteResult::Registered { client_id } => Some(client_id),
            _ => None,
        }
    }

    pub fn skip(&mut self, index: Index) {
        assert!(index > self.applied);
        self.store.skip(index);
        self.applied = index;
    }

    pub fn get(&self, key: &str) -> (Option<String>, Index) {
        match self.store.get(key.as_bytes(), 0) {
            Some(e) => (Some(String::from_utf8_lossy(e.value).into_owned()), e.version),
            None => (None, 0),
        }
    }

    /// The store's canonical snapshot bytes, used as snapshot data (and to
    /// compare replicas: equal states give equal bytes).
    pub fn encode(&self) -> Bytes {
        Bytes::from(self.store.snapshot())
    }

    pub fn decode(data: &[u8]) -> Option<KvStore> {
        let store = Store::restore(data).ok()?;
        let applied = store.applied_index();
        Some(KvStore { store, applied })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_and_snapshots_roundtrip() {
        let cmd = KvCommand {
            session: 1,
            seq: 1,
            key: "k".into(),
            append: true,
            value: "v1".into(),
        };
        assert_eq!(KvCommand::decode(&cmd.encode()), Some(cmd.clone()));
        let mut kv = KvStore::default();
        // An unregistered session's write is refused.
        assert_eq!(kv.apply(1, &cmd.encode()), None);
        assert_eq!(kv.apply(2, &KvCommand::register()), Some(2));
        let cmd = KvCommand { session: 2, ..cmd };
        assert_eq!(kv.apply(3, &cmd.encode()), Some(3));
        // A duplicate returns the original version and changes nothing.
        assert_eq!(kv.apply(4, &cmd.encode()), Some(3));
        assert_eq!(kv.get("k"), (Some("v1".into()), 3));
        let copy = KvStore::decode(&kv.encode()).unwrap();
        assert_eq!((copy.get("k"), copy.applied), (kv.get("k"), 4));
        assert_eq!(KvCommand::decode(b"raw"), None);
        assert_eq!(kv.apply(5, b"raw"), None);
        assert_eq!(kv.applied, 5);
    }
}
