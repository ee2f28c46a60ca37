//! The state machine itself: apply, reads, expiry scan and bookkeeping.

use std::collections::{BTreeMap, BTreeSet};

use crate::{Command, Session, WriteOp};

/// Per-key overhead counted by [`Store::approximate_bytes`] (map node share,
/// version, expiry, vector headers). An estimate for metrics, not an exact
/// heap measurement.
const ITEM_OVERHEAD: u64 = 64;
/// Extra overhead of a key that has an expiry (its entry in the expiry index,
/// which also holds a copy of the key).
const EXPIRY_OVERHEAD: u64 = 40;
/// Overhead of one exactly-once session record.
const SESSION_OVERHEAD: u64 = 96;
/// Overhead of one SurfStore file record, and of each of its block hashes.
const FILE_OVERHEAD: u64 = 64;
const HASH_OVERHEAD: u64 = 24;

/// Limits of a store. They are part of the replicated state: every replica
/// must use the same values (they are written into snapshots and restored
/// from them), otherwise the replicas could evict different sessions or
/// reject different writes and diverge. Choose them when the cluster is
/// created.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoreOptions {
    /// How many clients' exactly-once records are kept; beyond it the
    /// session least recently written is forgotten. At least 1.
    pub max_sessions: u64,
    /// Largest key (and SurfStore file name) in bytes; larger writes get
    /// [`WriteResult::TooLarge`].
    pub max_key_bytes: u64,
    /// Largest value in bytes, including the result of an append (for
    /// SurfStore: the total length of a file's block hashes).
    pub max_value_bytes: u64,
}

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions {
            max_sessions: 100_000,
            max_key_bytes: 64 * 1024,
            max_value_bytes: 64 * 1024 * 1024,
        }
    }
}

/// The outcome of one write, identical on every replica.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum WriteResult {
    /// The key now has `version` (the log index of the write).
    Put {
        /// New version of the key.
        version: u64,
    },
    /// The key now has `version` (the log index of the write).
    Append {
        /// New version of the key.
        version: u64,
    },
    /// The key is gone.
    Delete {
        /// Whether a live (unexpired) key was removed.
        existed: bool,
    },
    /// Compare-and-set outcome; `ok && found`, `!ok && found` (version
    /// mismatch, memcached `EXISTS`) or `!ok && !found` (`NOT_FOUND`).
    Cas {
        /// Whether the value was written.
        ok: bool,
        /// The new version if `ok`; otherwise the current version (0 if missing).
        version: u64,
        /// Whether the key existed and was not expired.
        found: bool,
    },
    /// Expiry outcome.
    Expire {
        /// Whether the key was removed (false if it was rewritten or is not
        /// expired at the command's time).
        removed: bool,
    },
    /// SurfStore update outcome.
    SurfUpdate {
        /// The file's new version, or -1 if the proposed version was not
        /// current + 1.
        version: i32,
    },
    /// The key or value exceeds [`StoreOptions`]' limits; nothing changed.
    TooLarge,
    /// The command could not be decoded: deterministic on every replica, never a panic.
    Malformed,
    /// seq below the session's last applied seq (a very late retry): the original result is gone.
    StaleSession,
    /// The session's client id is unknown: never registered, or forgotten
    /// (evicted), so a retry of a write that was applied could be applied
    /// again. Nothing was applied; the client must register a new session
    /// (and report an earlier attempt's outcome as unknown).
    SessionExpired,
    /// [`WriteOp::RegisterSession`]: the new session's client id (the
    /// command's log index).
    Registered {
        /// The id to put in this session's writes.
        client_id: u64,
    },
}

/// A live key as seen by a read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Entry<'a> {
    /// The value.
    pub value: &'a [u8],
    /// The log index of the last write to the key (what a CAS compares).
    pub version: u64,
    /// Absolute expiry in Unix milliseconds; 0 means never.
    pub expires_at_ms: u64,
}

/// SurfStore metadata of one file.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct FileMeta {
    /// The file's version: 1 when created, +1 on every update (deletes too).
    pub version: i32,
    /// The file's block hashes in order; `["0"]` is a tombstone.
    pub block_hashes: Vec<String>,
}

/// A stored key's value and metadata.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Item {
    pub(crate) value: Vec<u8>,
    pub(crate) version: u64,
    pub(crate) expires_at_ms: u64,
}

impl Item {
    fn is_expired(&self, now_ms: u64) -> bool {
        is_expired(self.expires_at_ms, now_ms)
    }
}

/// A key with expiry `expires_at_ms` is expired from that instant on; 0 never expires.
/// Moves a write's absolute expiry `behind_ms` later: the command was
/// stamped that far behind the store's clock (see `Store::clock_ms`).
fn rebase_expiry(op: &mut WriteOp, behind_ms: u64) {
    if behind_ms == 0 {
        return;
    }
    if let WriteOp::Put { expires_at_ms, .. } | WriteOp::Cas { expires_at_ms, .. } = op {
        if *expires_at_ms != 0 {
            *expires_at_ms = expires_at_ms.saturating_add(behind_ms);
        }
    }
}

fn is_expired(expires_at_ms: u64, now_ms: u64) -> bool {
    expires_at_ms != 0 && expires_at_ms <= now_ms
}

/// What the store remembers of one client, for exactly-once execution.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct SessionRecord {
    /// The client's last applied seq.
    pub(crate) last_seq: u64,
    /// The log index at which it was applied (eviction order).
    pub(crate) last_index: u64,
    /// Its result, returned again to a retry of the same seq.
    pub(crate) result: WriteResult,
}

/// Triton's replicated state machine.
///
/// Every replica applies the same committed log entries in the same order
/// and must end in the same state, so nothing in [`Store::apply`] reads a
/// clock, a random source or a hash map's iteration order: time comes from
/// the command ([`Command::now_ms`]), versions from the log index, and every
/// collection is ordered. [`Store::snapshot`] is therefore byte-identical on
/// replicas that applied the same prefix, which tests check.
#[derive(Debug, Clone)]
pub struct Store {
    pub(crate) opts: StoreOptions,
    pub(crate) applied_index: u64,
    pub(crate) kv: BTreeMap<Vec<u8>, Item>,
    /// (expires_at_ms, key) for every key with a non-zero expiry, so the
    /// leader's expiry scan does not walk the whole map.
    pub(crate) expiry: BTreeSet<(u64, Vec<u8>)>,
    pub(crate) sessions: BTreeMap<u64, SessionRecord>,
    /// (last_index, client_id) of every session: the first is evicted first.
    pub(crate) session_lru: BTreeSet<(u64, u64)>,
    pub(crate) files: BTreeMap<String, FileMeta>,
    pub(crate) bytes: u64,
    /// The latest command time applied (ms since the epoch): commands carry
    /// their leader's clock, and time in the log never goes back. Without
    /// it, a command stamped earlier but ordered later (two requests stamped
    /// in one order and proposed in the other, a new leader whose clock is
    /// behind, a clock stepped back) would see an expired key alive again:
    /// a cas answered NOT_FOUND, then a later one succeeding on the same
    /// version. In the snapshot, so every replica applies the same times.
    ///
    /// A command stamped behind this clock has its expiry moved by the same
    /// amount (its time to live is kept, counted in log time): a leader
    /// whose clock ran ahead holds log time ahead until real time catches
    /// up, and files written meanwhile by a correct leader then expire late
    /// by up to that offset, instead of being expired when written.
    pub(crate) clock_ms: u64,
}

impl Default for Store {
    fn default() -> Self {
        Store::new(StoreOptions::default())
    }
}

impl Store {
    /// An empty store that has applied nothing (applied index 0).
    ///
    /// # Panics
    /// If `opts.max_sessions` is 0 (exactly-once needs at least one record).
    pub fn new(opts: StoreOptions) -> Store {
        assert!(opts.max_sessions >= 1, "StoreOptions::max_sessions must be at least 1");
        Store {
            opts,
            applied_index: 0,
            kv: BTreeMap::new(),
            expiry: BTreeSet::new(),
            sessions: BTreeMap::new(),
            session_lru: BTreeSet::new(),
            files: BTreeMap::new(),
            bytes: 0,
            clock_ms: 0,
        }
    }

    /// The latest command time applied ([`Store::get`] never reads at an
    /// earlier time).
    pub fn clock_ms(&self) -> u64 {
        self.clock_ms
    }

    /// The limits this store runs with (restored from a snapshot, if any).
    pub fn options(&self) -> StoreOptions {
        self.opts
    }

    /// Applies the committed command at `index` (strictly increasing; assert it). Version of any write = `index`,
    /// so versions come from one cluster-wide counter that only grows, never reused after delete + re-create.
    ///
    /// Bytes that do not decode give [`WriteResult::Malformed`] on every
    /// replica and change nothing but the applied index.
    ///
    /// # Panics
    /// If `index` is not greater than [`Store::applied_index`]: the caller
    /// would be applying the log out of order, which must stop the node.
    pub fn apply(&mut self, index: u64, data: &[u8]) -> WriteResult {
        match Command::decode(data) {
            Ok(cmd) => self.apply_command(index, cmd),
            Err(_) => {
                self.advance(index);
                WriteResult::Malformed
            }
        }
    }

    /// [`Store::apply`] for a command already decoded (the same result as
    /// applying `cmd.encode()`).
    ///
    /// # Panics
    /// As [`Store::apply`].
    pub fn apply_command(&mut self, index: u64, cmd: Command) -> WriteResult {
        self.advance(index);
        self.clock_ms = self.clock_ms.max(cmd.now_ms);
        let now_ms = self.clock_ms;
        let mut cmd = cmd;
        rebase_expiry(&mut cmd.op, now_ms - cmd.now_ms);
        // A registration is not deduplicated (a session sent along is
        // ignored): each one opens a session of its own.
        let Some(session) = cmd.session.filter(|_| cmd.op != WriteOp::RegisterSession) else {
            return self.execute(index, now_ms, cmd.op);
        };
        match self.sessions.get(&session.client_id) {
            // Seq 0 is the registration's own: below every write's.
            Some(record) if session.seq < record.last_seq || session.seq == 0 => return WriteResult::StaleSession,
            Some(record) if session.seq == record.last_seq => return record.result,
            Some(_) => {}
            // Only registered sessions write: a client we do not know was
            // never registered or was forgotten, and in the second case this
            // may be the retry of a write already applied.
            None => return WriteResult::SessionExpired,
        }
        let result = self.execute(index, now_ms, cmd.op);
        self.remember(session, index, result);
        result
    }

    /// Called for log entries that are not commands (raft no-ops, membership): only advances applied_index.
    ///
    /// # Panics
    /// As [`Store::apply`].
    pub fn skip(&mut self, index: u64) {
        self.advance(index);
    }

    /// The index of the last entry applied or skipped (0 for a new store).
    pub fn applied_index(&self) -> u64 {
        self.applied_index
    }

    /// Read path (served after ReadIndex): `None` if missing OR expired at `now_ms` (a read never returns an expired key).
    /// A `now_ms` before [`Store::clock_ms`] reads at that instead: a read
    /// must not see alive what an applied command already saw expired.
    pub fn get(&self, key: &[u8], now_ms: u64) -> Option<Entry<'_>> {
        let now_ms = now_ms.max(self.clock_ms);
        self.kv
            .get(key)
            .filter(|item| !item.is_expired(now_ms))
            .map(|item| Entry {
                value: &item.value,
                version: item.version,
                expires_at_ms: item.expires_at_ms,
            })
    }

    /// Keys expired at `now_ms` (at most `limit`, in key order), with their version, for the leader to propose `Expire`.
    ///
    /// When more than `limit` keys are expired, the batch is the `limit` keys
    /// that expired first (ties: smaller key first), sorted by key. Taking
    /// them from the front of the expiry index costs O(limit log n) however
    /// many keys are expired, so a leader that calls this on every tick while
    /// a million keys expire at once does not rescan them all each time.
    pub fn expired(&self, now_ms: u64, limit: usize) -> Vec<(Vec<u8>, u64)> {
        let mut batch: Vec<(Vec<u8>, u64)> = self
            .expiry
            .iter()
            .take_while(|(at, _)| is_expired(*at, now_ms))
            .take(limit)
            .map(|(_, key)| (key.clone(), self.kv[key].version))
            .collect();
        batch.sort_unstable();
        batch
    }

    /// SurfStore's `GetFileInfoMap`: every file, tombstones included.
    pub fn file_info_map(&self) -> BTreeMap<String, FileMeta> {
        self.files.clone()
    }

    /// One file's SurfStore metadata, without copying the whole map.
    pub fn file_meta(&self, filename: &str) -> Option<&FileMeta> {
        self.files.get(filename)
    }

    /// Number of stored keys, including expired keys not yet removed by an
    /// `Expire` command (SurfStore files are not counted).
    pub fn len(&self) -> usize {
        self.kv.len()
    }

    /// Whether no key is stored (expired or not).
    pub fn is_empty(&self) -> bool {
        self.kv.is_empty()
    }

    /// Number of exactly-once session records held (at most `max_sessions`).
    pub fn session_count(&self) -> usize {
        self.sessions.len()
    }

    /// An estimate of the memory held by keys, values, files and sessions,
    /// for metrics; maintained incrementally, so cheap to call.
    pub fn approximate_bytes(&self) -> u64 {
        self.bytes
    }

    fn advance(&mut self, index: u64) {
        assert!(
            index > self.applied_index,
            "log applied out of order: index {index} after applied index {}",
            self.applied_index
        );
        self.applied_index = index;
    }

    /// Runs one write; the caller handles sessions.
    fn execute(&mut self, index: u64, now_ms: u64, op: WriteOp) -> WriteResult {
        match op {
            WriteOp::RegisterSession => {
                // Applied indexes start at 1: no session gets id 0, which
                // the node refuses as "no session".
                let client_id = index;
                debug_assert!(client_id > 0 && !self.sessions.contains_key(&client_id));
                let result = WriteResult::Registered { client_id };
                self.remember(Session { client_id, seq: 0 }, index, result);
                result
            }
            WriteOp::Put {
                key,
                value,
                expires_at_ms,
            } => {
                if self.too_large(&key, value.len()) {
                    return WriteResult::TooLarge;
                }
                self.take(&key);
                self.insert(
                    key,
                    Item {
                        value,
                        version: index,
                        expires_at_ms,
                    },
                );
                WriteResult::Put { version: index }
            }
            WriteOp::Append { key, value } => {
                let live_len = self.get(&key, now_ms).map_or(0, |e| e.value.len());
                if self.too_large(&key, live_len.saturating_add(value.len())) {
                    return WriteResult::TooLarge;
                }
                let item = match self.take(&key) {
                    Some(mut item) if !item.is_expired(now_ms) => {
                        item.value.extend_from_slice(&value);
                        item.version = index;
                        item
                    }
                    // Missing or expired: start fresh, without expiry.
                    _ => Item {
                        value,
                        version: index,
                        expires_at_ms: 0,
                    },
                };
                self.insert(key, item);
                WriteResult::Append { version: index }
            }
            WriteOp::Delete { key } => {
                let existed = self.take(&key).is_some_and(|item| !item.is_expired(now_ms));
                WriteResult::Delete { existed }
            }
            WriteOp::Cas {
                key,
                expected_version,
                value,
                expires_at_ms,
            } => {
                if self.too_large(&key, value.len()) {
                    return WriteResult::TooLarge;
                }
                let current = self.get(&key, now_ms).map(|e| e.version);
                match current {
                    None => WriteResult::Cas {
                        ok: false,
                        version: 0,
                        found: false,
                    },
                    Some(version) if version != expected_version => WriteResult::Cas {
                        ok: false,
                        version,
                        found: true,
                    },
                    Some(_) => {
                        self.take(&key);
                        self.insert(
                            key,
                            Item {
                                value,
                                version: index,
                                expires_at_ms,
                            },
                        );
                        WriteResult::Cas {
                            ok: true,
                            version: index,
                            found: true,
                        }
                    }
                }
            }
            WriteOp::Expire { key, version } => {
                let due = self
                    .kv
                    .get(&key)
                    .is_some_and(|item| item.version == version && item.is_expired(now_ms));
                if due {
                    self.take(&key);
                }
                WriteResult::Expire { removed: due }
            }
            WriteOp::SurfUpdate {
                filename,
                version,
                block_hashes,
            } => {
                let hashes_len = block_hashes.iter().fold(0usize, |n, h| n.saturating_add(h.len()));
                if self.too_large(filename.as_bytes(), hashes_len) {
                    return WriteResult::TooLarge;
                }
                let current = self.files.get(&filename).map_or(0, |f| f.version);
                if current.checked_add(1) != Some(version) {
                    return WriteResult::SurfUpdate { version: -1 };
                }
                let meta = FileMeta { version, block_hashes };
                self.bytes += file_bytes(&filename, &meta);
                if let Some(old) = self.files.insert(filename.clone(), meta) {
                    self.bytes -= file_bytes(&filename, &old);
                }
                WriteResult::SurfUpdate { version }
            }
        }
    }

    fn too_large(&self, key: &[u8], value_len: usize) -> bool {
        key.len() as u64 > self.opts.max_key_bytes || value_len as u64 > self.opts.max_value_bytes
    }

    /// Removes a key from the map, the expiry index and the byte count.
    fn take(&mut self, key: &[u8]) -> Option<Item> {
        let item = self.kv.remove(key)?;
        if item.expires_at_ms != 0 {
            let was_indexed = self.expiry.remove(&(item.expires_at_ms, key.to_vec()));
            debug_assert!(was_indexed, "expiring key missing from the expiry index");
        }
        self.bytes -= item_bytes(key, &item);
        Some(item)
    }

    /// Inserts a key that is not in the map (callers `take` it first).
    pub(crate) fn insert(&mut self, key: Vec<u8>, item: Item) {
        self.bytes += item_bytes(&key, &item);
        if item.expires_at_ms != 0 {
            self.expiry.insert((item.expires_at_ms, key.clone()));
        }
        let previous = self.kv.insert(key, item);
        assert!(previous.is_none(), "Store::insert over an existing key");
    }

    /// Records a client's newly applied seq, evicting the least recently
    /// written session if the table is full.
    fn remember(&mut self, session: Session, index: u64, result: WriteResult) {
        let record = SessionRecord {
            last_seq: session.seq,
            last_index: index,
            result,
        };
        if let Some(old) = self.sessions.insert(session.client_id, record) {
            self.session_lru.remove(&(old.last_index, session.client_id));
        } else {
            self.bytes += SESSION_OVERHEAD;
            if self.sessions.len() as u64 > self.opts.max_sessions {
                let (_, evicted) = self
                    .session_lru
                    .pop_first()
                    .expect("a full session table has an oldest session");
                self.sessions.remove(&evicted);
                self.bytes -= SESSION_OVERHEAD;
            }
        }
        self.session_lru.insert((index, session.client_id));
    }

    /// Inserts a restored session record (snapshot decoding).
    pub(crate) fn insert_session(&mut self, client_id: u64, record: SessionRecord) {
        self.session_lru.insert((record.last_index, client_id));
        self.sessions.insert(client_id, record);
        self.bytes += SESSION_OVERHEAD;
    }

    /// Inserts a restored file record (snapshot decoding).
    pub(crate) fn insert_file(&mut self, filename: String, meta: FileMeta) {
        self.bytes += file_bytes(&filename, &meta);
        self.files.insert(filename, meta);
    }

    /// Checks every invariant of the state, including the derived indexes
    /// and the byte count, in O(size). Used after restoring a snapshot (whose
    /// checksum can be right while its writer was wrong) and by tests.
    pub fn check_invariants(&self) -> Result<(), String> {
        if self.opts.max_sessions == 0 {
            return Err("max_sessions is 0".into());
        }
        let mut bytes = 0u64;
        let mut expiring = 0usize;
        for (key, item) in &self.kv {
            if item.version == 0 || item.version > self.applied_index {
                return Err(format!(
                    "key version {} outside 1..={} (the applied index)",
                    item.version, self.applied_index
                ));
            }
            if key.len() as u64 > self.opts.max_key_bytes || item.value.len() as u64 > self.opts.max_value_bytes {
                return Err("key or value above the store's limits".into());
            }
            expiring += usize::from(item.expires_at_ms != 0);
            bytes += item_bytes(key, item);
        }
        // Every index entry names a key with that expiry, and there are as
        // many entries as expiring keys: the index and the map agree.
        if expiring != self.expiry.len() {
            return Err(format!(
                "expiry index has {} entries for {expiring} expiring keys",
                self.expiry.len()
            ));
        }
        for (at, key) in &self.expiry {
            if *at == 0 || self.kv.get(key).map(|item| item.expires_at_ms) != Some(*at) {
                return Err("expiry index entry does not match its key".into());
            }
        }
        if self.sessions.len() as u64 > self.opts.max_sessions {
            return Err(format!(
                "{} sessions above max_sessions {}",
                self.sessions.len(),
                self.opts.max_sessions
            ));
        }
        if self.sessions.len() != self.session_lru.len() {
            return Err("session eviction index out of step with the sessions".into());
        }
        for (client_id, record) in &self.sessions {
            if record.last_index == 0 || record.last_index > self.applied_index {
                return Err(format!(
                    "session applied at index {} outside 1..={}",
                    record.last_index, self.applied_index
                ));
            }
            if !self.session_lru.contains(&(record.last_index, *client_id)) {
                return Err("session missing from the eviction index".into());
            }
            bytes += SESSION_OVERHEAD;
        }
        for (filename, meta) in &self.files {
            if meta.version < 1 {
                return Err(format!("file version {} below 1", meta.version));
            }
            let hashes_len = meta.block_hashes.iter().map(|h| h.len() as u64).sum::<u64>();
            if filename.len() as u64 > self.opts.max_key_bytes || hashes_len > self.opts.max_value_bytes {
                return Err("file name or block list above the store's limits".into());
            }
            bytes += file_bytes(filename, meta);
        }
        if bytes != self.bytes {
            return Err(format!("byte count {} but the content adds up to {bytes}", self.bytes));
        }
        Ok(())
    }
}

pub(crate) fn item_bytes(key: &[u8], item: &Item) -> u64 {
    let expiry = if item.expires_at_ms != 0 {
        key.len() as u64 + EXPIRY_OVERHEAD
    } else {
        0
    };
    key.len() as u64 + item.value.len() as u64 + ITEM_OVERHEAD + expiry
}

fn file_bytes(filename: &str, meta: &FileMeta) -> u64 {
    let hashes = meta
        .block_hashes
        .iter()
        .map(|h| h.len() as u64 + HASH_OVERHEAD)
        .sum::<u64>();
    filename.len() as u64 + FILE_OVERHEAD + hashes
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A command stamped at `now_ms`, without a session.
    fn at(now_ms: u64, op: WriteOp) -> Command {
        Command {
            session: None,
            now_ms,
            op,
        }
    }

    #[test]
    fn time_in_the_log_never_goes_back() {
        let mut store = Store::default();
        let key = b"k".to_vec();
        let put = WriteOp::Put {
            key: key.clone(),
            value: b"v".to_vec(),
            expires_at_ms: 103,
        };
        assert!(matches!(
            store.apply_command(1, at(100, put)),
            WriteResult::Put { version: 1 }
        ));
        let cas = || WriteOp::Cas {
            key: key.clone(),
            expected_version: 1,
            value: b"w".to_vec(),
            expires_at_ms: 0,
        };
        // Stamped after the expiry: not found.
        let first = store.apply_command(2, at(105, cas()));
        assert!(
            matches!(
                first,
                WriteResult::Cas {
                    ok: false,
                    found: false,
                    ..
                }
            ),
            "{first:?}"
        );
        // Stamped earlier but ordered later (a new leader's slower clock):
        // the key must not come back to life, for writes or reads.
        let second = store.apply_command(3, at(102, cas()));
        assert!(
            matches!(
                second,
                WriteResult::Cas {
                    ok: false,
                    found: false,
                    ..
                }
            ),
            "{second:?}"
        );
        assert_eq!(store.clock_ms(), 105);
        assert!(store.get(&key, 102).is_none());
        // The clock survives a snapshot, so a restored replica agrees.
        let restored = Store::restore(&store.snapshot()).unwrap();
        assert_eq!(restored.clock_ms(), 105);
        assert!(restored.get(&key, 0).is_none());
        // A write stamped behind the clock keeps its time to live (10 ms),
        // counted from the clock: it is not expired when written.
        let late = WriteOp::Put {
            key: b"late".to_vec(),
            value: b"v".to_vec(),
            expires_at_ms: 60,
        };
        store.apply_command(4, at(50, late));
        assert_eq!(store.get(b"late", 0).map(|e| e.expires_at_ms), Some(115));
        assert!(store.get(b"late", 115).is_none());
    }

    fn register() -> Command {
        Command {
            session: None,
            now_ms: 0,
            op: WriteOp::RegisterSession,
        }
    }

    fn put(client_id: u64, seq: u64, key: &[u8]) -> Command {
        Command {
            session: Some(Session { client_id, seq }),
            now_ms: 0,
            op: WriteOp::Put {
                key: key.to_vec(),
                value: Vec::new(),
                expires_at_ms: 0,
            },
        }
    }

    #[test]
    fn eviction_ties_are_broken_by_client_id() {
        // apply gives every session a distinct last index; a restored state
        // may not, and the order must still be total: lowest client id first.
        let mut store = Store::new(StoreOptions {
            max_sessions: 2,
            ..StoreOptions::default()
        });
        store.skip(5);
        let cached = WriteResult::Put { version: 5 };
        store.insert_session(
            9,
            SessionRecord {
                last_seq: 1,
                last_index: 5,
                result: cached,
            },
        );
        store.insert_session(
            4,
            SessionRecord {
                last_seq: 1,
                last_index: 5,
                result: cached,
            },
        );
        store.check_invariants().unwrap();
        assert_eq!(
            store.apply_command(6, register()),
            WriteResult::Registered { client_id: 6 }
        );
        assert!(store.sessions.contains_key(&9) && !store.sessions.contains_key(&4));
        assert_eq!(store.apply_command(7, put(9, 1, b"k")), cached);
        store.check_invariants().unwrap();
    }

    #[test]
    fn surf_version_at_i32_max_cannot_advance() {
        let mut store = Store::default();
        store.skip(1);
        store.insert_file(
            "f".into(),
            FileMeta {
                version: i32::MAX,
                block_hashes: vec!["h".into()],
            },
        );
        for version in [i32::MIN, -1, i32::MAX] {
            let cmd = Command {
                session: None,
                now_ms: 0,
                op: WriteOp::SurfUpdate {
                    filename: "f".into(),
                    version,
                    block_hashes: vec![],
                },
            };
            assert_eq!(
                store.apply_command(store.applied_index() + 1, cmd),
                WriteResult::SurfUpdate { version: -1 }
            );
        }
        assert_eq!(store.file_meta("f").unwrap().version, i32::MAX);
    }

    #[test]
    fn check_invariants_catches_broken_indexes_and_counts() {
        let mut store = Store::default();
        store.apply_command(1, register());
        assert_eq!(store.apply_command(2, put(1, 1, b"k")), WriteResult::Put { version: 2 });
        store.check_invariants().unwrap();

        let mut bad = store.clone();
        bad.bytes += 1;
        assert!(bad.check_invariants().unwrap_err().contains("byte count"));

        let mut bad = store.clone();
        bad.expiry.insert((5, b"k".to_vec()));
        assert!(bad.check_invariants().unwrap_err().contains("expiry index"));

        let mut bad = store.clone();
        bad.kv.get_mut(&b"k"[..]).unwrap().version = 3;
        assert!(bad.check_invariants().unwrap_err().contains("outside"));

        let mut bad = store.clone();
        bad.session_lru.clear();
        assert!(bad.check_invariants().unwrap_err().contains("eviction index"));

        let mut bad = store.clone();
        bad.opts.max_key_bytes = 0;
        assert!(bad.check_invariants().unwrap_err().contains("limits"));

        let mut bad = store;
        bad.files.insert(
            "f".into(),
            FileMeta {
                version: 0,
                block_hashes: vec![],
            },
        );
        assert!(bad.check_invariants().unwrap_err().contains("below 1"));
    }
}
