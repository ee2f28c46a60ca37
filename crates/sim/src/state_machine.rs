//! The replicated state machine the simulator runs on every node: a small
//! versioned key-value store with client sessions (exactly-once), the same
//! semantics the real store has, so that histories can be checked for
//! linearizability. Commands that are not KV commands (the lab scenarios
//! propose raw bytes) are recorded and otherwise ignored.

use std::collections::BTreeMap;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use triton_raft::Index;

/// A KV write as proposed by a simulated client.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KvCommand {
    pub client: u64,
    pub seq: u64,
    pub key: String,
    pub append: bool,
    pub value: String,
}

const KV_TAG: u8 = 0xA5;

impl KvCommand {
    pub fn encode(&self) -> Bytes {
        let mut b = BytesMut::new();
        b.put_u8(KV_TAG);
        b.put_u64(self.client);
        b.put_u64(self.seq);
        b.put_u8(self.append as u8);
        put_str(&mut b, &self.key);
        put_str(&mut b, &self.value);
        b.freeze()
    }

    pub fn decode(mut data: &[u8]) -> Option<KvCommand> {
        if data.first() != Some(&KV_TAG) || data.len() < 18 {
            return None;
        }
        data.advance(1);
        let client = data.get_u64();
        let seq = data.get_u64();
        let append = data.get_u8() == 1;
        let key = get_str(&mut data)?;
        let value = get_str(&mut data)?;
        Some(KvCommand {
            client,
            seq,
            key,
            append,
            value,
        })
    }
}

fn put_str(b: &mut BytesMut, s: &str) {
    b.put_u32(s.len() as u32);
    b.put_slice(s.as_bytes());
}

fn get_str(data: &mut &[u8]) -> Option<String> {
    if data.len() < 4 {
        return None;
    }
    let n = data.get_u32() as usize;
    if data.len() < n {
        return None;
    }
    let s = String::from_utf8(data[..n].to_vec()).ok()?;
    data.advance(n);
    Some(s)
}

/// A key's value and version (the log index of its last write).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Versioned {
    pub value: String,
    pub version: Index,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct KvStore {
    pub data: BTreeMap<String, Versioned>,
    /// Per client: last applied sequence number and the version it produced,
    /// so a retried command is answered with its original result.
    pub sessions: BTreeMap<u64, (u64, Index)>,
    pub applied: Index,
}

impl KvStore {
    /// Applies a committed command at `index`; returns the version the
    /// command produced (the original one for a duplicate).
    pub fn apply(&mut self, index: Index, data: &[u8]) -> Option<Index> {
        assert!(
            index > self.applied,
            "applied {index} twice or out of order (at {})",
            self.applied
        );
        self.applied = index;
        let cmd = KvCommand::decode(data)?;
        if let Some(&(seq, version)) = self.sessions.get(&cmd.client) {
            if cmd.seq <= seq {
                return Some(version);
            }
        }
        let slot = self.data.entry(cmd.key.clone()).or_default();
        if cmd.append {
            slot.value.push_str(&cmd.value);
        } else {
            slot.value = cmd.value.clone();
        }
        slot.version = index;
        self.sessions.insert(cmd.client, (cmd.seq, index));
        Some(index)
    }

    pub fn skip(&mut self, index: Index) {
        assert!(index > self.applied);
        self.applied = index;
    }

    pub fn get(&self, key: &str) -> (Option<String>, Index) {
        match self.data.get(key) {
            Some(v) => (Some(v.value.clone()), v.version),
            None => (None, 0),
        }
    }

    /// A deterministic encoding, used as snapshot data.
    pub fn encode(&self) -> Bytes {
        let mut b = BytesMut::new();
        b.put_u64(self.applied);
        b.put_u32(self.data.len() as u32);
        for (k, v) in &self.data {
            put_str(&mut b, k);
            put_str(&mut b, &v.value);
            b.put_u64(v.version);
        }
        b.put_u32(self.sessions.len() as u32);
        for (c, (s, v)) in &self.sessions {
            b.put_u64(*c);
            b.put_u64(*s);
            b.put_u64(*v);
        }
        b.freeze()
    }

    pub fn decode(mut data: &[u8]) -> Option<KvStore> {
        let mut kv = KvStore::default();
        if data.len() < 12 {
            return None;
        }
        kv.applied = data.get_u64();
        let n = data.get_u32();
        for _ in 0..n {
            let k = get_str(&mut data)?;
            let value = get_str(&mut data)?;
            if data.len() < 8 {
                return None;
            }
            let version = data.get_u64();
            kv.data.insert(k, Versioned { value, version });
        }
        if data.len() < 4 {
            return None;
        }
        let n = data.get_u32();
        for _ in 0..n {
            if data.len() < 24 {
                return None;
            }
            let (c, s, v) = (data.get_u64(), data.get_u64(), data.get_u64());
            kv.sessions.insert(c, (s, v));
        }
        Some(kv)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_and_snapshots_roundtrip() {
        let cmd = KvCommand {
            client: 7,
            seq: 3,
            key: "k".into(),
            append: true,
            value: "v1".into(),
        };
        assert_eq!(KvCommand::decode(&cmd.encode()), Some(cmd.clone()));
        let mut kv = KvStore::default();
        assert_eq!(kv.apply(1, &cmd.encode()), Some(1));
        // A duplicate returns the original version and changes nothing.
        assert_eq!(kv.apply(2, &cmd.encode()), Some(1));
        assert_eq!(kv.get("k"), (Some("v1".into()), 1));
        assert_eq!(KvStore::decode(&kv.encode()), Some(kv));
        assert_eq!(KvCommand::decode(b"raw"), None);
    }
}
