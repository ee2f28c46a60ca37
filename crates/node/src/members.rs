//! The address book: where each member's gRPC port is.
//!
//! The Raft core knows members by id only. Addresses travel in the opaque
//! context of every membership entry (the full map for every member of the
//! new configuration, so the latest entry alone is enough), and each node
//! keeps what it learned in `members` under its data directory, written
//! atomically, so a node that restarts, or that caught up from a snapshot
//! taken after the entries that named its peers, still knows where they are.
//! Nodes of the config file are in the book from the start, unless the
//! node's recovered configuration says they were removed.
//!
//! Context format, kept trivially parseable and bounded: one `id=addr` line
//! per member, ids in decimal (Raft ids), addresses without whitespace.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use triton_raft::{Entry, EntryKind, NodeId};

/// Longest address accepted from a context or the file.
const MAX_ADDR_BYTES: usize = 256;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AddressBook {
    addrs: BTreeMap<NodeId, String>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed member addresses: {0}")]
pub struct AddressError(pub String);

impl AddressBook {
    /// The addresses carried by the membership entries among `entries`
    /// (later entries win); a context that does not decode is logged and
    /// skipped, as every node skips it.
    pub fn from_entries(entries: &[Entry]) -> AddressBook {
        let mut book = AddressBook::default();
        for e in entries.iter().filter(|e| e.kind == EntryKind::Membership) {
            let Ok((_, context)) = triton_raft::confchange::decode_entry(&e.data) else {
                continue;
            };
            match AddressBook::decode(&context) {
                Ok(carried) => {
                    book.merge(&carried);
                }
                Err(err) => tracing::warn!(index = e.index, "ignoring member addresses: {err}"),
            }
        }
        book
    }

    pub fn is_empty(&self) -> bool {
        self.addrs.is_empty()
    }

    pub fn get(&self, id: NodeId) -> Option<&str> {
        self.addrs.get(&id).map(String::as_str)
    }

    pub fn iter(&self) -> impl Iterator<Item = (NodeId, &str)> {
        self.addrs.iter().map(|(&id, a)| (id, a.as_str()))
    }

    /// The ids among `members`, other than `me`, whose address this book
    /// lacks.
    pub fn missing(&self, members: impl IntoIterator<Item = NodeId>, me: NodeId) -> Vec<NodeId> {
        members
            .into_iter()
            .filter(|&id| id != me && !self.addrs.contains_key(&id))
            .collect()
    }

    /// Records `addr` for `id`; true if that changed anything. Refuses
    /// node 0 and an address [`valid_addr`] refuses: saved, it would make
    /// [`AddressBook::load`] refuse the file, and the node could not start.
    pub fn insert(&mut self, id: NodeId, addr: &str) -> Result<bool, AddressError> {
        if id == 0 || !valid_addr(addr) {
            return Err(AddressError(format!("cannot record {addr:?} for node id {id}")));
        }
        Ok(self.addrs.insert(id, addr.to_string()).as_deref() != Some(addr))
    }

    /// Forgets `id`'s address; true if it was known.
    pub fn remove(&mut self, id: NodeId) -> bool {
        self.addrs.remove(&id).is_some()
    }

    /// Takes every address of `other`; true if anything changed.
    pub fn merge(&mut self, other: &AddressBook) -> bool {
        let mut changed = false;
        for (id, addr) in other.addrs.iter() {
            // Every book's entries passed `insert` or `decode`.
            changed |= self.addrs.insert(*id, addr.clone()).as_ref() != Some(addr);
        }
        changed
    }

    /// The context of a membership entry: the addresses of `members` that
    /// this book knows.
    pub fn context_for(&self, members: impl IntoIterator<Item = NodeId>) -> Vec<u8> {
        let mut out = String::new();
        for id in members {
            if let Some(addr) = self.get(id) {
                out.push_str(&format!("{id}={addr}\n"));
            }
        }
        out.into_bytes()
    }

    /// Parses a context (or the file, same format). Never panics; refuses
    /// anything that is not `id=addr` lines.
    pub fn decode(bytes: &[u8]) -> Result<AddressBook, AddressError> {
        let text = std::str::from_utf8(bytes).map_err(|_| AddressError("not UTF-8".into()))?;
        let mut book = AddressBook::default();
        for line in text.lines().filter(|l| !l.trim().is_empty()) {
            let (id, addr) = line
                .split_once('=')
                .ok_or_else(|| AddressError(format!("line {line:?} is not id=addr")))?;
            let id: NodeId = id
                .trim()
                .parse()
                .map_err(|_| AddressError(format!("bad node id {id:?}")))?;
            let addr = addr.trim();
            if id == 0 || !valid_addr(addr) {
                return Err(AddressError(format!("bad entry {line:?}")));
            }
            book.addrs.insert(id, addr.to_string());
        }
        Ok(book)
    }

    pub fn encode(&self) -> Vec<u8> {
        self.context_for(self.addrs.keys().copied())
    }

    fn file(dir: &Path) -> PathBuf {
        dir.join("members")
    }

    /// Reads the book saved in `dir` (empty if there is none yet).
    pub fn load(dir: &Path) -> anyhow::Result<AddressBook> {
        let path = Self::file(dir);
        match std::fs::read(&path) {
            Ok(bytes) => AddressBook::decode(&bytes).map_err(|e| anyhow::anyhow!("{}: {e}", path.display())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(AddressBook::default()),
            Err(e) => Err(anyhow::anyhow!("reading {}: {e}", path.display())),
        }
    }

    /// Saves the book in `dir` atomically (temp file, fsync, rename, fsync
    /// of the directory): a crash leaves the old book or the new one.
    pub fn save(&self, dir: &Path) -> std::io::Result<()> {
        let path = Self::file(dir);
        let tmp = dir.join("members.tmp");
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(&self.encode())?;
        f.sync_all()?;
        std::fs::rename(&tmp, &path)?;
        std::fs::File::open(dir)?.sync_all()
    }
}

/// A plausible `host:port`: non-empty, bounded, no whitespace or `=`.
pub fn valid_addr(addr: &str) -> bool {
    !addr.is_empty()
        && addr.len() <= MAX_ADDR_BYTES
        && addr.contains(':')
        && !addr.chars().any(|c| c.is_whitespace() || c == '=' || c.is_control())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn contexts_round_trip_and_garbage_is_refused() {
        let mut book = AddressBook::default();
        assert!(book.insert(1, "127.0.0.1:7001").unwrap());
        assert!(!book.insert(1, "127.0.0.1:7001").unwrap());
        book.insert(5, "node5.example:7005").unwrap();
        let ctx = book.context_for([5, 1, 9]);
        assert_eq!(AddressBook::decode(&ctx).unwrap(), book);
        for bad in [
            &b"1"[..],
            b"0=127.0.0.1:1",
            b"x=127.0.0.1:1",
            b"1=",
            b"1=no-port",
            b"1=a b:1",
            b"\xff=1:1",
        ] {
            assert!(AddressBook::decode(bad).is_err(), "{bad:?} accepted");
        }
        assert_eq!(AddressBook::decode(b"").unwrap(), AddressBook::default());
    }

    /// An address the file format cannot hold is refused, not recorded: a
    /// newline or `=` from a peer's answer, once saved, made `load` refuse
    /// the book, and the node could not start again.
    #[test]
    fn an_address_the_file_cannot_hold_is_refused() {
        let mut book = AddressBook::default();
        book.insert(1, "127.0.0.1:7001").unwrap();
        for (id, bad) in [
            (2, "127.0.0.1:7002\n3=127.0.0.1:7003"),
            (2, "a=b:1"),
            (2, "127.0.0.1:7002 "),
            (2, ""),
            (2, "no-port"),
            (0, "127.0.0.1:7000"),
        ] {
            assert!(book.insert(id, bad).is_err(), "{id}={bad:?} accepted");
        }
        assert_eq!(book.iter().collect::<Vec<_>>(), [(1, "127.0.0.1:7001")]);
        assert_eq!(AddressBook::decode(&book.encode()).unwrap(), book);
    }

    #[test]
    fn missing_names_the_members_without_an_address_but_this_node() {
        let mut book = AddressBook::default();
        book.insert(1, "127.0.0.1:7001").unwrap();
        book.insert(2, "127.0.0.1:7002").unwrap();
        assert_eq!(book.missing([1, 2, 3, 4], 4), vec![3]);
        assert_eq!(book.missing([1, 2], 3), Vec::<NodeId>::new());
    }

    #[test]
    fn the_book_survives_a_save_and_load() {
        let dir = std::env::temp_dir().join(format!("triton-members-{}", std::process::id()));
        // A run killed here leaves the directory; a later process may get the same pid.
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        assert_eq!(AddressBook::load(&dir).unwrap(), AddressBook::default());
        let mut book = AddressBook::default();
        book.insert(2, "127.0.0.1:7002").unwrap();
        book.save(&dir).unwrap();
        assert_eq!(AddressBook::load(&dir).unwrap(), book);
        std::fs::write(dir.join("members"), b"garbage").unwrap();
        assert!(AddressBook::load(&dir).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
