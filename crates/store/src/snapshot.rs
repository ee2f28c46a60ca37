//! The snapshot format: the whole state as one deterministic byte string.
//!
//! Raft compacts its log by replacing a prefix with a snapshot of the state
//! machine, and ships snapshots to lagging followers, so the bytes come back
//! from disk and network: every length is checked against the bytes that
//! remain before anything is allocated, and decoding never panics.
//!
//! Layout (all integers little-endian; `bytes` = u64 length + content;
//! `string` = `bytes` holding UTF-8):
//!
//! ```text
//! magic           8 bytes  "TRTNSTOR"
//! format version  u32      2
//! applied_index   u64
//! clock_ms        u64      (format 2; a format-1 snapshot reads as 0)
//! max_sessions    u64
//! max_key_bytes   u64
//! max_value_bytes u64
//! key count       u64, then per key in ascending byte order:
//!                   key bytes, value bytes, version u64, expires_at_ms u64
//! session count   u64, then per session in ascending client id:
//!                   client_id u64, last_seq u64, last_index u64, result
//! file count      u64, then per file in ascending name order:
//!                   name string, version i32, hash count u64, hash strings
//! crc32c          u32 of every byte before it
//! ```
//!
//! A result is a tag byte and its fields: 1 Put(version u64),
//! 2 Append(version u64), 3 Delete(existed bool), 4 Cas(ok bool, version u64,
//! found bool), 5 Expire(removed bool), 6 SurfUpdate(version i32),
//! 7 TooLarge, 8 Malformed, 9 StaleSession, 10 SessionExpired (never stored: no session is kept for it), 11 Registered (u64 client id; the result of a session's registration, kept until its first write); a bool is one byte, 0 or 1.
//!
//! The encoding is canonical: collections are written in order, and decoding
//! rejects anything out of order, duplicated, non-0/1 booleans or trailing
//! bytes, so `snapshot(restore(b)) == b` for every `b` that restores.
//! Derived indexes (expiry, session eviction order, byte count) are not
//! stored; they are rebuilt and then checked with
//! [`Store::check_invariants`].

use std::collections::{BTreeMap, BTreeSet};
use std::convert::Infallible;

use crate::store::{item_bytes, Item, SessionRecord};
use crate::{FileMeta, Store, StoreError, StoreOptions, WriteResult};

/// First bytes of every snapshot.
pub const SNAPSHOT_MAGIC: [u8; 8] = *b"TRTNSTOR";
/// The format this build writes. It also reads format 1, which had no
/// `clock_ms` (the store's clock then starts at 0).
pub const SNAPSHOT_FORMAT_VERSION: u32 = 2;
const HEADER_LEN: usize = SNAPSHOT_MAGIC.len() + 4;
const CRC_LEN: usize = 4;

impl Store {
    /// Snapshot: a deterministic byte encoding of the whole state (keys, versions, expiries, sessions, files, applied index), with a magic number, a format version and a CRC32C; identical stores give identical bytes.
    ///
    /// The layout is described in the [`snapshot`](crate::snapshot) module.
    pub fn snapshot(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(usize::try_from(self.bytes).unwrap_or(0).saturating_add(64));
        out.extend_from_slice(&SNAPSHOT_MAGIC);
        out.extend_from_slice(&SNAPSHOT_FORMAT_VERSION.to_le_bytes());
        put_u64(&mut out, self.applied_index);
        put_u64(&mut out, self.clock_ms);
        put_u64(&mut out, self.opts.max_sessions);
        put_u64(&mut out, self.opts.max_key_bytes);
        put_u64(&mut out, self.opts.max_value_bytes);

        put_u64(&mut out, self.kv.len() as u64);
        for (key, item) in &self.kv {
            put_bytes(&mut out, key);
            put_bytes(&mut out, &item.value);
            put_u64(&mut out, item.version);
            put_u64(&mut out, item.expires_at_ms);
        }

        put_u64(&mut out, self.sessions.len() as u64);
        for (client_id, record) in &self.sessions {
            put_u64(&mut out, *client_id);
            put_u64(&mut out, record.last_seq);
            put_u64(&mut out, record.last_index);
            put_result(&mut out, &record.result);
        }

        put_u64(&mut out, self.files.len() as u64);
        for (name, meta) in &self.files {
            put_bytes(&mut out, name.as_bytes());
            out.extend_from_slice(&meta.version.to_le_bytes());
            put_u64(&mut out, meta.block_hashes.len() as u64);
            for hash in &meta.block_hashes {
                put_bytes(&mut out, hash.as_bytes());
            }
        }

        let crc = crc32c::crc32c(&out);
        out.extend_from_slice(&crc.to_le_bytes());
        out
    }

    /// [`Store::restore`], for a snapshot whose Raft metadata says it is at
    /// `index`: a store applied to any other index is refused, because the
    /// node would apply on from the wrong place.
    pub fn restore_at(data: &[u8], index: u64) -> Result<Store, StoreError> {
        let store = Store::restore(data)?;
        if store.applied_index() != index {
            return Err(StoreError::WrongIndex {
                expected: index,
                applied: store.applied_index(),
            });
        }
        Ok(store)
    }

    /// Rebuilds a store from [`Store::snapshot`] bytes, including its
    /// [`StoreOptions`].
    ///
    /// Corrupt, truncated or foreign input gives an error, never a panic;
    /// memory use is bounded by a small multiple of `data.len()` because
    /// every length and count is checked against the remaining input first.
    pub fn restore(data: &[u8]) -> Result<Store, StoreError> {
        let min = HEADER_LEN + CRC_LEN;
        if data.len() < min {
            return Err(StoreError::SnapshotTooShort { len: data.len(), min });
        }
        if data[..SNAPSHOT_MAGIC.len()] != SNAPSHOT_MAGIC {
            return Err(StoreError::BadMagic);
        }
        let format = u32::from_le_bytes(data[SNAPSHOT_MAGIC.len()..HEADER_LEN].try_into().expect("4 bytes"));
        if format != SNAPSHOT_FORMAT_VERSION && format != 1 {
            return Err(StoreError::UnsupportedVersion(format));
        }
        let (content, trailer) = data.split_at(data.len() - CRC_LEN);
        let stored = u32::from_le_bytes(trailer.try_into().expect("4 bytes"));
        let computed = crc32c::crc32c(content);
        if stored != computed {
            return Err(StoreError::Checksum { stored, computed });
        }

        let mut r = Reader {
            rest: &content[HEADER_LEN..],
        };
        let applied_index = r.u64("applied index")?;
        let clock_ms = if format >= 2 { r.u64("clock")? } else { 0 };
        let opts = StoreOptions {
            max_sessions: r.u64("max_sessions")?,
            max_key_bytes: r.u64("max_key_bytes")?,
            max_value_bytes: r.u64("max_value_bytes")?,
        };
        if opts.max_sessions == 0 {
            return Err(StoreError::Invalid("max_sessions is 0".into()));
        }
        let mut store = Store::new(opts);
        store.applied_index = applied_index;
        store.clock_ms = clock_ms;

        // The map is built straight from the input, in chunks (see
        // `build_in_chunks`): no list of every item beside it, and no copy
        // of the expiring keys yet. The expiry index comes after, from the
        // map, the same way. Keys arrive sorted, so merging chunks is cheap.
        let keys = r.u64("key count")?;
        let mut previous: Option<&[u8]> = None;
        let mut bytes = 0u64;
        store.kv = build_in_chunks((0..keys).map(|_| {
            let key = r.bytes("key")?;
            if previous.is_some_and(|p| p >= key) {
                return Err(StoreError::Invalid("keys not in strictly ascending order".into()));
            }
            previous = Some(key);
            let item = Item {
                value: r.bytes("value")?.to_vec(),
                version: r.u64("version")?,
                expires_at_ms: r.u64("expiry")?,
            };
            bytes += item_bytes(key, &item);
            Ok((key.to_vec(), item))
        }))?;
        store.bytes += bytes;
        let expiring = store.kv.iter().filter(|(_, item)| item.expires_at_ms != 0);
        let Ok(expiry) =
            build_in_chunks(expiring.map(|(key, item)| Ok::<_, Infallible>((item.expires_at_ms, key.clone()))));
        store.expiry = expiry;

        let sessions = r.u64("session count")?;
        let mut previous: Option<u64> = None;
        for _ in 0..sessions {
            let client_id = r.u64("client id")?;
            if previous.is_some_and(|p| p >= client_id) {
                return Err(StoreError::Invalid(
                    "sessions not in strictly ascending client id order".into(),
                ));
            }
            previous = Some(client_id);
            let last_seq = r.u64("session seq")?;
            let last_index = r.u64("session index")?;
            let result = r.result()?;
            store.insert_session(
                client_id,
                SessionRecord {
                    last_seq,
                    last_index,
                    result,
                },
            );
        }

        let files = r.u64("file count")?;
        let mut previous: Option<String> = None;
        for _ in 0..files {
            let name = r.string("file name")?;
            if previous.as_ref().is_some_and(|p| *p >= name) {
                return Err(StoreError::Invalid("files not in strictly ascending name order".into()));
            }
            let version = r.i32("file version")?;
            let hashes = r.u64("hash count")?;
            let mut block_hashes = Vec::new();
            for _ in 0..hashes {
                block_hashes.push(r.string("block hash")?);
            }
            store.insert_file(name.clone(), FileMeta { version, block_hashes });
            previous = Some(name);
        }

        if !r.rest.is_empty() {
            return Err(StoreError::Invalid(format!(
                "{} trailing bytes after the content",
                r.rest.len()
            )));
        }
        store.check_invariants().map_err(StoreError::Invalid)?;
        Ok(store)
    }
}

/// A collection that [`build_in_chunks`] can build: a `BTreeMap` or a
/// `BTreeSet`, whose `append` merges two sorted trees in linear time and
/// leaves full nodes, as `from_iter` does.
trait Tree<T>: FromIterator<T> + Default {
    fn len(&self) -> usize;
    fn append(&mut self, other: &mut Self);
}

impl<K: Ord, V> Tree<(K, V)> for BTreeMap<K, V> {
    fn len(&self) -> usize {
        BTreeMap::len(self)
    }
    fn append(&mut self, other: &mut Self) {
        BTreeMap::append(self, other);
    }
}

impl<T: Ord> Tree<T> for BTreeSet<T> {
    fn len(&self) -> usize {
        BTreeSet::len(self)
    }
    fn append(&mut self, other: &mut Self) {
        BTreeSet::append(self, other);
    }
}

/// Builds a tree from `items` (distinct keys, any order; an error stops
/// it) a chunk at a time, each chunk a quarter of what is built so far:
/// `from_iter` alone first collects every item into a list, which is held
/// (with the sort's scratch space, for unsorted input) beside the tree
/// being built, about as much memory again as the tree. Here that list is
/// a fifth of it; each item is moved about five times instead of once.
fn build_in_chunks<T, C: Tree<T>, E>(mut items: impl Iterator<Item = Result<T, E>>) -> Result<C, E> {
    const FIRST_CHUNK: usize = 1024;
    let mut tree = C::default();
    loop {
        let want = FIRST_CHUNK.max(tree.len() / 4);
        let chunk: Vec<T> = items.by_ref().take(want).collect::<Result<_, E>>()?;
        let last = chunk.len() < want;
        // `into_iter` lets `from_iter` sort and build in the chunk's own buffer.
        let mut part: C = chunk.into_iter().collect();
        tree.append(&mut part);
        if last {
            return Ok(tree);
        }
    }
}

fn put_u64(out: &mut Vec<u8>, v: u64) {
    out.extend_from_slice(&v.to_le_bytes());
}

fn put_bytes(out: &mut Vec<u8>, b: &[u8]) {
    put_u64(out, b.len() as u64);
    out.extend_from_slice(b);
}

fn put_result(out: &mut Vec<u8>, result: &WriteResult) {
    match *result {
        WriteResult::Put { version } => {
            out.push(1);
            put_u64(out, version);
        }
        WriteResult::Append { version } => {
            out.push(2);
            put_u64(out, version);
        }
        WriteResult::Delete { existed } => out.extend_from_slice(&[3, existed as u8]),
        WriteResult::Cas { ok, version, found } => {
            out.extend_from_slice(&[4, ok as u8]);
            put_u64(out, version);
            out.push(found as u8);
        }
        WriteResult::Expire { removed } => out.extend_from_slice(&[5, removed as u8]),
        WriteResult::SurfUpdate { version } => {
            out.push(6);
            out.extend_from_slice(&version.to_le_bytes());
        }
        WriteResult::TooLarge => out.push(7),
        WriteResult::Malformed => out.push(8),
        WriteResult::StaleSession => out.push(9),
        WriteResult::SessionExpired => out.push(10),
        WriteResult::Registered { client_id } => {
            out.push(11);
            out.extend_from_slice(&client_id.to_le_bytes());
        }
    }
}

/// A cursor over the snapshot content; every read checks what remains.
struct Reader<'a> {
    rest: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: u64, what: &'static str) -> Result<&'a [u8], StoreError> {
        let n = usize::try_from(n)
            .ok()
            .filter(|n| *n <= self.rest.len())
            .ok_or(StoreError::Truncated(what))?;
        let (head, tail) = self.rest.split_at(n);
        self.rest = tail;
        Ok(head)
    }

    fn array<const N: usize>(&mut self, what: &'static str) -> Result<[u8; N], StoreError> {
        Ok(self.take(N as u64, what)?.try_into().expect("take returned N bytes"))
    }

    fn u64(&mut self, what: &'static str) -> Result<u64, StoreError> {
        Ok(u64::from_le_bytes(self.array(what)?))
    }

    fn i32(&mut self, what: &'static str) -> Result<i32, StoreError> {
        Ok(i32::from_le_bytes(self.array(what)?))
    }

    fn bool(&mut self, what: &'static str) -> Result<bool, StoreError> {
        match self.array::<1>(what)?[0] {
            0 => Ok(false),
            1 => Ok(true),
            other => Err(StoreError::Invalid(format!("{what}: boolean byte {other}"))),
        }
    }

    fn bytes(&mut self, what: &'static str) -> Result<&'a [u8], StoreError> {
        let len = self.u64(what)?;
        self.take(len, what)
    }

    fn string(&mut self, what: &'static str) -> Result<String, StoreError> {
        let b = self.bytes(what)?;
        String::from_utf8(b.to_vec()).map_err(|_| StoreError::Invalid(format!("{what} is not UTF-8")))
    }

    fn result(&mut self) -> Result<WriteResult, StoreError> {
        const WHAT: &str = "session result";
        Ok(match self.array::<1>(WHAT)?[0] {
            1 => WriteResult::Put {
                version: self.u64(WHAT)?,
            },
            2 => WriteResult::Append {
                version: self.u64(WHAT)?,
            },
            3 => WriteResult::Delete {
                existed: self.bool(WHAT)?,
            },
            4 => WriteResult::Cas {
                ok: self.bool(WHAT)?,
                version: self.u64(WHAT)?,
                found: self.bool(WHAT)?,
            },
            5 => WriteResult::Expire {
                removed: self.bool(WHAT)?,
            },
            6 => WriteResult::SurfUpdate {
                version: self.i32(WHAT)?,
            },
            7 => WriteResult::TooLarge,
            8 => WriteResult::Malformed,
            9 => WriteResult::StaleSession,
            10 => WriteResult::SessionExpired,
            11 => WriteResult::Registered {
                client_id: self.u64(WHAT)?,
            },
            tag => return Err(StoreError::Invalid(format!("unknown session result tag {tag}"))),
        })
    }
}
