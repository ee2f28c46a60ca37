//! Property tests: agreement with a naive reference model, determinism
//! across replicas, snapshot/restore equivalence, and robustness against
//! malformed commands and snapshots.
//!
//! The seed is fixed so failures reproduce; `PROPTEST_CASES` raises the
//! number of cases for a longer local run.

use std::collections::BTreeMap;

use proptest::prelude::*;
use triton_store::{Command, Session, Store, StoreError, StoreOptions, WriteOp, WriteResult};

fn config() -> ProptestConfig {
    ProptestConfig {
        rng_seed: proptest::test_runner::RngSeed::Fixed(0x7374_6f72_6521),
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

/// One step of a replicated history, as the log would carry it.
#[derive(Debug, Clone)]
enum Step {
    /// A command; `session` is (client, seq step): the seq step is applied to
    /// the client's last proposed seq (-1 = stale, 0 = retry, >0 = new).
    /// Client `c` is the `c`-th session registered so far, or a client id
    /// never registered when fewer are.
    Cmd {
        session: Option<(u64, i8)>,
        clock_advance: u64,
        op: WriteOp,
    },
    /// The leader scans for expired keys and proposes Expire for each.
    ExpireScan { limit: usize },
    /// Bytes that are not a command.
    Garbage(Vec<u8>),
    /// A log entry that is not a command (no-op, membership).
    Skip,
}

fn key() -> impl Strategy<Value = Vec<u8>> {
    prop::sample::select(vec![&b""[..], b"a", b"b", b"c", b"dd", b"e\xff"]).prop_map(|k| k.to_vec())
}

fn value() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(any::<u8>(), 0..6)
}

/// Expiry relative to a clock that stays below 10_000 in these histories.
fn expiry() -> impl Strategy<Value = u64> {
    prop_oneof![Just(0u64), 1u64..12_000]
}

fn op() -> impl Strategy<Value = WriteOp> {
    prop_oneof![
        (key(), value(), expiry()).prop_map(|(key, value, expires_at_ms)| WriteOp::Put {
            key,
            value,
            expires_at_ms
        }),
        (key(), value()).prop_map(|(key, value)| WriteOp::Append { key, value }),
        key().prop_map(|key| WriteOp::Delete { key }),
        (key(), 0u64..40, value(), expiry()).prop_map(|(key, expected_version, value, expires_at_ms)| {
            WriteOp::Cas {
                key,
                expected_version,
                value,
                expires_at_ms,
            }
        }),
        (key(), 0u64..40).prop_map(|(key, version)| WriteOp::Expire { key, version }),
        (
            prop::sample::select(vec!["f", "g", "h"]),
            -1i32..5,
            prop::collection::vec(prop::sample::select(vec!["0", "-1", "h1", "h2"]), 0..3)
        )
            .prop_map(|(f, version, hashes)| WriteOp::SurfUpdate {
                filename: f.to_string(),
                version,
                block_hashes: hashes.into_iter().map(String::from).collect(),
            }),
        Just(WriteOp::RegisterSession),
    ]
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        8 => (prop::option::of((0u64..5, -1i8..3)), 0u64..400, op())
            .prop_map(|(session, clock_advance, op)| Step::Cmd { session, clock_advance, op }),
        1 => (0usize..4).prop_map(|limit| Step::ExpireScan { limit }),
        1 => prop::collection::vec(any::<u8>(), 0..12).prop_map(Step::Garbage),
        1 => Just(Step::Skip),
    ]
}

fn history(max: usize) -> impl Strategy<Value = Vec<Step>> {
    prop::collection::vec(step(), 0..max)
}

/// The leader's side of a history: log index, clock and each client's seq.
/// Cloned along with a store so a restored copy can continue identically.
#[derive(Debug, Clone, Default)]
struct Driver {
    index: u64,
    now_ms: u64,
    seqs: BTreeMap<u64, u64>,
    /// Client ids the store assigned, in order.
    registered: Vec<u64>,
}

impl Driver {
    /// Runs `steps` against `store`, checking invariants after every entry,
    /// and returns every result in order.
    fn run<R: Replica>(&mut self, store: &mut R, steps: &[Step]) -> Vec<WriteResult> {
        let mut results = Vec::new();
        for step in steps {
            match step {
                Step::Cmd {
                    session,
                    clock_advance,
                    op,
                } => {
                    self.now_ms += clock_advance;
                    let session = session.map(|(client, delta)| {
                        let client_id = match self.registered.get(client as usize) {
                            Some(&id) => id,
                            None => u64::MAX - client,
                        };
                        let last = self.seqs.entry(client_id).or_insert(0);
                        let seq = last.saturating_add_signed(delta.into());
                        *last = (*last).max(seq);
                        Session { client_id, seq }
                    });
                    let cmd = Command {
                        session,
                        now_ms: self.now_ms,
                        op: op.clone(),
                    };
                    let result = self.apply(store, &cmd.encode());
                    if let (WriteOp::RegisterSession, WriteResult::Registered { client_id }) = (op, result) {
                        assert_eq!(client_id, self.index, "a session's id is its registration's index");
                        self.registered.push(client_id);
                    }
                    results.push(result);
                }
                Step::ExpireScan { limit } => {
                    for (key, version) in store.expired(self.now_ms, *limit) {
                        let cmd = Command {
                            session: None,
                            now_ms: self.now_ms,
                            op: WriteOp::Expire { key, version },
                        };
                        let result = self.apply(store, &cmd.encode());
                        assert_eq!(
                            result,
                            WriteResult::Expire { removed: true },
                            "a scanned key must expire"
                        );
                        results.push(result);
                    }
                }
                Step::Garbage(bytes) => results.push(self.apply(store, bytes)),
                Step::Skip => {
                    self.index += 1;
                    store.skip(self.index);
                }
            }
            store.check(self.index);
        }
        results
    }

    fn apply<R: Replica>(&mut self, store: &mut R, bytes: &[u8]) -> WriteResult {
        self.index += 1;
        store.apply(self.index, bytes)
    }
}

/// What the driver needs of a state machine: the store itself, or the store
/// paired with the reference model.
trait Replica {
    fn apply(&mut self, index: u64, bytes: &[u8]) -> WriteResult;
    fn skip(&mut self, index: u64);
    fn expired(&self, now_ms: u64, limit: usize) -> Vec<(Vec<u8>, u64)>;
    /// Checks internal consistency after an entry at `index`.
    fn check(&self, index: u64);
}

impl Replica for Store {
    fn apply(&mut self, index: u64, bytes: &[u8]) -> WriteResult {
        Store::apply(self, index, bytes)
    }
    fn skip(&mut self, index: u64) {
        Store::skip(self, index)
    }
    fn expired(&self, now_ms: u64, limit: usize) -> Vec<(Vec<u8>, u64)> {
        Store::expired(self, now_ms, limit)
    }
    fn check(&self, index: u64) {
        self.check_invariants().unwrap();
        assert_eq!(self.applied_index(), index);
    }
}

/// A deliberately naive reference implementation of the documented
/// semantics (linear scans, no indexes), to compare the store against.
#[derive(Debug, Clone)]
struct Model {
    opts: StoreOptions,
    /// key -> (value, version, expires_at_ms)
    kv: BTreeMap<Vec<u8>, (Vec<u8>, u64, u64)>,
    /// filename -> (version, hashes)
    files: BTreeMap<String, (i32, Vec<String>)>,
    /// client -> (last seq, index of that seq, its result)
    sessions: BTreeMap<u64, (u64, u64, WriteResult)>,
    /// The latest command time seen: commands apply at no earlier time.
    clock: u64,
}

impl Model {
    fn new(opts: StoreOptions) -> Self {
        Model {
            opts,
            kv: BTreeMap::new(),
            files: BTreeMap::new(),
            sessions: BTreeMap::new(),
            clock: 0,
        }
    }

    fn live(&self, key: &[u8], now: u64) -> Option<&(Vec<u8>, u64, u64)> {
        self.kv.get(key).filter(|(_, _, exp)| *exp == 0 || *exp > now)
    }

    fn fits(&self, key: usize, value: usize) -> bool {
        key as u64 <= self.opts.max_key_bytes && value as u64 <= self.opts.max_value_bytes
    }

    /// Records a session's latest write, forgetting the one whose latest
    /// write is oldest (ties: lowest id) when the table is full.
    fn remember(&mut self, client_id: u64, seq: u64, index: u64, result: WriteResult) {
        if !self.sessions.contains_key(&client_id) && self.sessions.len() as u64 == self.opts.max_sessions {
            let (&oldest, _) = self.sessions.iter().min_by_key(|(c, (_, i, _))| (*i, **c)).unwrap();
            self.sessions.remove(&oldest);
        }
        self.sessions.insert(client_id, (seq, index, result));
    }

    fn exec(&mut self, index: u64, now: u64, op: WriteOp) -> WriteResult {
        match op {
            WriteOp::RegisterSession => unreachable!("Model::apply handles registrations"),
            WriteOp::Put {
                key,
                value,
                expires_at_ms,
            } => {
                if !self.fits(key.len(), value.len()) {
                    return WriteResult::TooLarge;
                }
                self.kv.insert(key, (value, index, expires_at_ms));
                WriteResult::Put { version: index }
            }
            WriteOp::Append { key, value } => {
                let (mut v, exp) = match self.live(&key, now) {
                    Some((v, _, exp)) => (v.clone(), *exp),
                    None => (Vec::new(), 0),
                };
                v.extend_from_slice(&value);
                if !self.fits(key.len(), v.len()) {
                    return WriteResult::TooLarge;
                }
                self.kv.insert(key, (v, index, exp));
                WriteResult::Append { version: index }
            }
            WriteOp::Delete { key } => {
                let existed = self.live(&key, now).is_some();
                self.kv.remove(&key);
                WriteResult::Delete { existed }
            }
            WriteOp::Cas {
                key,
                expected_version,
                value,
                expires_at_ms,
            } => {
                if !self.fits(key.len(), value.len()) {
                    return WriteResult::TooLarge;
                }
                match self.live(&key, now).map(|(_, ver, _)| *ver) {
                    None => WriteResult::Cas {
                        ok: false,
                        version: 0,
                        found: false,
                    },
                    Some(v) if v != expected_version => WriteResult::Cas {
                        ok: false,
                        version: v,
                        found: true,
                    },
                    Some(_) => {
                        self.kv.insert(key, (value, index, expires_at_ms));
                        WriteResult::Cas {
                            ok: true,
                            version: index,
                            found: true,
                        }
                    }
                }
            }
            WriteOp::Expire { key, version } => {
                let removed =
                    matches!(self.kv.get(&key), Some((_, v, exp)) if *v == version && *exp != 0 && *exp <= now);
                if removed {
                    self.kv.remove(&key);
                }
                WriteResult::Expire { removed }
            }
            WriteOp::SurfUpdate {
                filename,
                version,
                block_hashes,
            } => {
                if !self.fits(filename.len(), block_hashes.iter().map(String::len).sum()) {
                    return WriteResult::TooLarge;
                }
                let current = self.files.get(&filename).map_or(0i64, |(v, _)| i64::from(*v));
                if i64::from(version) != current + 1 {
                    return WriteResult::SurfUpdate { version: -1 };
                }
                self.files.insert(filename, (version, block_hashes));
                WriteResult::SurfUpdate { version }
            }
        }
    }
}

impl Replica for Model {
    fn apply(&mut self, index: u64, bytes: &[u8]) -> WriteResult {
        let Ok(cmd) = Command::decode(bytes) else {
            return WriteResult::Malformed;
        };
        self.clock = self.clock.max(cmd.now_ms);
        let now = self.clock;
        let behind = now - cmd.now_ms;
        let mut cmd = cmd;
        // A write stamped behind the clock keeps its time to live.
        if let WriteOp::Put { expires_at_ms, .. } | WriteOp::Cas { expires_at_ms, .. } = &mut cmd.op {
            if *expires_at_ms != 0 {
                *expires_at_ms = expires_at_ms.saturating_add(behind);
            }
        }
        if cmd.op == WriteOp::RegisterSession {
            let result = WriteResult::Registered { client_id: index };
            self.remember(index, 0, index, result);
            return result;
        }
        let Some(s) = cmd.session else {
            return self.exec(index, now, cmd.op);
        };
        match self.sessions.get(&s.client_id) {
            Some(&(seq, _, _)) if s.seq < seq || s.seq == 0 => return WriteResult::StaleSession,
            Some(&(seq, _, result)) if s.seq == seq => return result,
            Some(_) => {}
            None => return WriteResult::SessionExpired,
        }
        let result = self.exec(index, now, cmd.op);
        self.remember(s.client_id, s.seq, index, result);
        result
    }
    fn skip(&mut self, _index: u64) {}
    fn expired(&self, now: u64, limit: usize) -> Vec<(Vec<u8>, u64)> {
        let mut all: Vec<(u64, Vec<u8>, u64)> = self
            .kv
            .iter()
            .filter(|(_, (_, _, exp))| *exp != 0 && *exp <= now)
            .map(|(k, (_, ver, exp))| (*exp, k.clone(), *ver))
            .collect();
        all.sort();
        let mut batch: Vec<_> = all.into_iter().take(limit).map(|(_, k, v)| (k, v)).collect();
        batch.sort();
        batch
    }
    fn check(&self, _index: u64) {}
}

/// The store and the model side by side: every result must agree.
struct Checked {
    store: Store,
    model: Model,
}

impl Replica for Checked {
    fn apply(&mut self, index: u64, bytes: &[u8]) -> WriteResult {
        let (s, m) = (self.store.apply(index, bytes), self.model.apply(index, bytes));
        assert_eq!(
            s,
            m,
            "store and model disagree at index {index} on {:?}",
            Command::decode(bytes)
        );
        s
    }
    fn skip(&mut self, index: u64) {
        self.store.skip(index);
    }
    fn expired(&self, now_ms: u64, limit: usize) -> Vec<(Vec<u8>, u64)> {
        let (s, m) = (self.store.expired(now_ms, limit), self.model.expired(now_ms, limit));
        assert_eq!(s, m, "expired({now_ms}, {limit})");
        s
    }
    fn check(&self, index: u64) {
        self.store.check(index);
        for (key, (value, version, exp)) in &self.model.kv {
            // Read at time 0: the store reads at its clock instead, so a key
            // shows iff it is live at the latest applied command's time.
            let e = self.store.get(key, 0);
            let live = (*exp == 0 || *exp > self.model.clock).then_some((&value[..], *version, *exp));
            assert_eq!(e.map(|e| (e.value, e.version, e.expires_at_ms)), live);
        }
        assert_eq!(self.store.len(), self.model.kv.len());
        let files: BTreeMap<_, _> = self
            .store
            .file_info_map()
            .into_iter()
            .map(|(k, m)| (k, (m.version, m.block_hashes)))
            .collect();
        assert_eq!(files, self.model.files);
        assert_eq!(self.store.session_count(), self.model.sessions.len());
    }
}

/// Everything a client can observe of a store, for comparing two of them.
fn observe(store: &Store, now_ms: u64) -> impl PartialEq + std::fmt::Debug {
    let keys: Vec<_> = [&b""[..], b"a", b"b", b"c", b"dd", b"e\xff"]
        .iter()
        .map(|k| {
            store
                .get(k, now_ms)
                .map(|e| (e.value.to_vec(), e.version, e.expires_at_ms))
        })
        .collect();
    (
        keys,
        store.expired(now_ms, usize::MAX),
        store.file_info_map(),
        store.len(),
        store.approximate_bytes(),
        store.applied_index(),
        store.session_count(),
    )
}

fn small_sessions() -> StoreOptions {
    // Few sessions and small values, so that eviction and TooLarge happen in
    // most histories.
    StoreOptions {
        max_sessions: 3,
        max_key_bytes: 8,
        max_value_bytes: 8,
    }
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn replicas_fed_the_same_log_give_identical_snapshots(steps in history(120)) {
        let (mut a, mut b) = (Store::new(small_sessions()), Store::new(small_sessions()));
        let results_a = Driver::default().run(&mut a, &steps);
        let results_b = Driver::default().run(&mut b, &steps);
        prop_assert_eq!(results_a, results_b);
        prop_assert_eq!(a.snapshot(), b.snapshot());
    }

    #[test]
    fn a_restored_store_behaves_like_the_original(
        prefix in history(80),
        suffix in history(80),
    ) {
        let mut original = Store::new(small_sessions());
        let mut driver = Driver::default();
        driver.run(&mut original, &prefix);
        let bytes = original.snapshot();
        let mut restored = Store::restore(&bytes).unwrap();
        prop_assert_eq!(restored.snapshot(), bytes);
        prop_assert_eq!(restored.options(), original.options());
        prop_assert_eq!(observe(&restored, driver.now_ms), observe(&original, driver.now_ms));

        let mut driver_copy = driver.clone();
        let results_original = driver.run(&mut original, &suffix);
        let results_restored = driver_copy.run(&mut restored, &suffix);
        prop_assert_eq!(results_original, results_restored);
        prop_assert_eq!(original.snapshot(), restored.snapshot());
        for now in [0, driver.now_ms / 2, driver.now_ms, u64::MAX] {
            prop_assert_eq!(observe(&original, now), observe(&restored, now));
        }
    }

    #[test]
    fn the_store_agrees_with_a_naive_model(steps in history(150)) {
        let mut both = Checked { store: Store::new(small_sessions()), model: Model::new(small_sessions()) };
        Driver::default().run(&mut both, &steps);
    }

    #[test]
    fn arbitrary_command_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..64)) {
        let mut store = Store::default();
        store.apply(1, &Command { session: None, now_ms: 0, op: WriteOp::Put {
            key: b"a".to_vec(), value: b"v".to_vec(), expires_at_ms: 0 } }.encode());
        let mut by_command = store.clone();
        let result = store.apply(2, &bytes);
        match Command::decode(&bytes) {
            Err(_) => prop_assert_eq!(result, WriteResult::Malformed),
            Ok(cmd) => prop_assert_eq!(result, by_command.apply_command(2, cmd)),
        }
        store.check_invariants().unwrap();
    }

    #[test]
    fn truncated_commands_are_malformed_or_a_valid_prefix(
        op in op(),
        session in prop::option::of((any::<u64>(), any::<u64>())),
        now_ms in any::<u64>(),
        cut in any::<prop::sample::Index>(),
    ) {
        let session = session.map(|(client_id, seq)| Session { client_id, seq });
        let bytes = Command { session, now_ms, op }.encode();
        let cut = cut.index(bytes.len());
        let mut store = Store::default();
        let result = store.apply(1, &bytes[..cut]);
        prop_assert_eq!(result == WriteResult::Malformed, Command::decode(&bytes[..cut]).is_err());
    }

    #[test]
    fn random_bytes_never_restore(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
        prop_assert!(Store::restore(&bytes).is_err());
    }

    #[test]
    fn damaged_snapshots_are_refused(
        steps in history(40),
        cut in any::<prop::sample::Index>(),
        flip in any::<prop::sample::Index>(),
        bit in 0u8..8,
    ) {
        let mut store = Store::new(small_sessions());
        Driver::default().run(&mut store, &steps);
        let bytes = store.snapshot();
        let cut = cut.index(bytes.len());
        prop_assert!(Store::restore(&bytes[..cut]).is_err(), "truncated to {} of {}", cut, bytes.len());
        let mut flipped = bytes.clone();
        flipped[flip.index(bytes.len())] ^= 1 << bit;
        prop_assert!(Store::restore(&flipped).is_err());
        let mut longer = bytes;
        longer.push(0);
        prop_assert!(Store::restore(&longer).is_err());
    }

    /// With the checksum recomputed, damage reaches the structural checks:
    /// they must refuse it or accept a canonical state, never panic.
    #[test]
    fn resealed_damage_is_refused_or_canonical(
        steps in history(40),
        edits in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..4),
        cut in prop::option::of(any::<prop::sample::Index>()),
    ) {
        let mut store = Store::new(small_sessions());
        Driver::default().run(&mut store, &steps);
        let bytes = store.snapshot();
        let mut body = bytes[..bytes.len() - 4].to_vec();
        // Keep the header so the structural parser is reached.
        for (at, byte) in edits {
            let at = 12 + at.index(body.len() - 12);
            body[at] = byte;
        }
        if let Some(cut) = cut {
            body.truncate(12 + cut.index(body.len() - 12));
        }
        let resealed = reseal(body);
        if let Ok(restored) = Store::restore(&resealed) {
            prop_assert_eq!(restored.snapshot(), resealed);
            restored.check_invariants().unwrap();
        }
    }

    #[test]
    fn resealed_random_bodies_never_panic(body in prop::collection::vec(any::<u8>(), 0..200)) {
        let mut data = b"TRTNSTOR".to_vec();
        data.extend_from_slice(&triton_store::snapshot::SNAPSHOT_FORMAT_VERSION.to_le_bytes());
        data.extend_from_slice(&body);
        let resealed = reseal(data);
        if let Ok(restored) = Store::restore(&resealed) {
            prop_assert_eq!(restored.snapshot(), resealed);
        }
    }
}

/// Appends a fresh CRC32C, as a buggy or malicious writer would.
fn reseal(mut content: Vec<u8>) -> Vec<u8> {
    let crc = crc32c::crc32c(&content);
    content.extend_from_slice(&crc.to_le_bytes());
    content
}

#[test]
fn restore_reports_each_kind_of_damage() {
    let mut store = Store::default();
    let put = Command {
        session: None,
        now_ms: 0,
        op: WriteOp::Put {
            key: b"k".into(),
            value: b"v".into(),
            expires_at_ms: 0,
        },
    };
    store.apply(1, &put.encode());
    let good = store.snapshot();
    assert!(Store::restore(&good).is_ok());

    assert!(matches!(
        Store::restore(&good[..10]),
        Err(StoreError::SnapshotTooShort { len: 10, .. })
    ));
    let mut bad = good.clone();
    bad[0] = b'X';
    assert_eq!(Store::restore(&bad).unwrap_err(), StoreError::BadMagic);
    let mut bad = good.clone();
    bad[8] = 9;
    assert_eq!(Store::restore(&bad).unwrap_err(), StoreError::UnsupportedVersion(9));
    let mut bad = good.clone();
    bad[20] ^= 1;
    assert!(matches!(Store::restore(&bad), Err(StoreError::Checksum { .. })));
    let body = &good[..good.len() - 4];
    assert!(matches!(
        Store::restore(&reseal(body[..body.len() - 3].to_vec())),
        Err(StoreError::Truncated(_))
    ));
    let mut longer = body.to_vec();
    longer.push(0);
    assert!(matches!(Store::restore(&reseal(longer)), Err(StoreError::Invalid(m)) if m.contains("trailing")));
}

/// Builds snapshot content field by field, for inputs `snapshot` never writes.
struct Builder(Vec<u8>);

impl Builder {
    fn new(applied_index: u64, max_sessions: u64) -> Self {
        Builder::with_format(2, applied_index, max_sessions)
    }
    /// Format 1 had no clock after the applied index.
    fn with_format(format: u32, applied_index: u64, max_sessions: u64) -> Self {
        let mut b = Builder(b"TRTNSTOR".to_vec());
        b.0.extend_from_slice(&format.to_le_bytes());
        b.u64(applied_index);
        if format >= 2 {
            b.u64(0);
        }
        b.u64(max_sessions).u64(1024).u64(1024);
        b
    }
    fn u64(&mut self, v: u64) -> &mut Self {
        self.0.extend_from_slice(&v.to_le_bytes());
        self
    }
    fn bytes(&mut self, b: &[u8]) -> &mut Self {
        self.u64(b.len() as u64);
        self.0.extend_from_slice(b);
        self
    }
    fn raw(&mut self, b: &[u8]) -> &mut Self {
        self.0.extend_from_slice(b);
        self
    }
    fn key(&mut self, key: &[u8], version: u64) -> &mut Self {
        self.bytes(key).bytes(b"v").u64(version).u64(0)
    }
    fn finish(&mut self) -> Result<Store, StoreError> {
        Store::restore(&reseal(self.0.clone()))
    }
}

#[test]
fn restore_refuses_inconsistent_content_with_a_valid_checksum() {
    let invalid = |r: Result<Store, StoreError>, what: &str| match r {
        Err(StoreError::Invalid(m)) => assert!(m.contains(what), "{m:?} should mention {what:?}"),
        other => panic!("expected Invalid({what}), got {other:?}"),
    };
    // The builder itself is right: a well-formed state restores.
    let ok = Builder::new(5, 2)
        .u64(2)
        .key(b"a", 1)
        .key(b"b", 5)
        .u64(0)
        .u64(0)
        .finish()
        .unwrap();
    assert_eq!(ok.len(), 2);

    invalid(Builder::new(5, 0).u64(0).u64(0).u64(0).finish(), "max_sessions");
    invalid(
        Builder::new(5, 2)
            .u64(2)
            .key(b"b", 1)
            .key(b"a", 1)
            .u64(0)
            .u64(0)
            .finish(),
        "ascending",
    );
    invalid(
        Builder::new(5, 2)
            .u64(2)
            .key(b"a", 1)
            .key(b"a", 1)
            .u64(0)
            .u64(0)
            .finish(),
        "ascending",
    );
    invalid(Builder::new(5, 2).u64(1).key(b"a", 6).u64(0).u64(0).finish(), "outside");
    invalid(Builder::new(5, 2).u64(1).key(b"a", 0).u64(0).u64(0).finish(), "outside");
    // Sessions: too many, out of order, a bad result tag, a bad boolean.
    let session = |b: &mut Builder, client: u64| {
        b.u64(client).u64(1).u64(1).raw(&[7]);
    };
    let mut b = Builder::new(5, 1);
    b.u64(0).u64(2);
    session(&mut b, 1);
    session(&mut b, 2);
    invalid(b.u64(0).finish(), "max_sessions");
    let mut b = Builder::new(5, 4);
    b.u64(0).u64(2);
    session(&mut b, 2);
    session(&mut b, 1);
    invalid(b.u64(0).finish(), "ascending");
    invalid(
        Builder::new(5, 4)
            .u64(0)
            .u64(1)
            .u64(1)
            .u64(1)
            .u64(1)
            .raw(&[42])
            .u64(0)
            .finish(),
        "tag",
    );
    invalid(
        Builder::new(5, 4)
            .u64(0)
            .u64(1)
            .u64(1)
            .u64(1)
            .u64(1)
            .raw(&[3, 2])
            .u64(0)
            .finish(),
        "boolean",
    );
    // Files: bad UTF-8, version 0, out of order.
    invalid(
        Builder::new(5, 4)
            .u64(0)
            .u64(0)
            .u64(1)
            .bytes(b"\xff")
            .raw(&1i32.to_le_bytes())
            .u64(0)
            .finish(),
        "UTF-8",
    );
    invalid(
        Builder::new(5, 4)
            .u64(0)
            .u64(0)
            .u64(1)
            .bytes(b"f")
            .raw(&0i32.to_le_bytes())
            .u64(0)
            .finish(),
        "below 1",
    );
    let file = |b: &mut Builder, name: &[u8]| {
        b.bytes(name).raw(&1i32.to_le_bytes()).u64(0);
    };
    let mut b = Builder::new(5, 4);
    b.u64(0).u64(0).u64(2);
    file(&mut b, b"g");
    file(&mut b, b"f");
    invalid(b.finish(), "ascending");
}

#[test]
fn huge_counts_and_lengths_fail_without_allocating() {
    // A count or a length of u64::MAX must be refused by the bounds check,
    // not attempted (which would abort on allocation or loop for ages).
    assert!(matches!(
        Builder::new(5, 2).u64(u64::MAX).finish(),
        Err(StoreError::Truncated(_))
    ));
    assert!(matches!(
        Builder::new(5, 2).u64(1).u64(u64::MAX).finish(),
        Err(StoreError::Truncated(_))
    ));
    assert!(matches!(
        Builder::new(5, 2).u64(0).u64(u64::MAX).finish(),
        Err(StoreError::Truncated(_))
    ));
    assert!(matches!(
        Builder::new(5, 2)
            .u64(0)
            .u64(0)
            .u64(1)
            .bytes(b"f")
            .raw(&1i32.to_le_bytes())
            .u64(u64::MAX)
            .finish(),
        Err(StoreError::Truncated(_))
    ));
}

#[test]
fn a_format_1_snapshot_restores_with_its_clock_at_zero() {
    let store = Builder::with_format(1, 5, 2).u64(0).u64(0).u64(0).finish().unwrap();
    assert_eq!((store.applied_index(), store.clock_ms()), (5, 0));
    // Written back in the current format.
    assert_eq!(
        store.snapshot()[8..12],
        triton_store::snapshot::SNAPSHOT_FORMAT_VERSION.to_le_bytes()
    );
}

#[test]
fn a_snapshot_whose_store_is_at_another_index_than_its_metadata_is_refused() {
    let mut store = Store::default();
    for i in 1..=5 {
        store.skip(i);
    }
    let data = store.snapshot();
    assert_eq!(Store::restore_at(&data, 5).map(|s| s.applied_index()), Ok(5));
    for index in [4, 6] {
        match Store::restore_at(&data, index) {
            Err(StoreError::WrongIndex { expected, applied: 5 }) => assert_eq!(expected, index),
            other => panic!("index {index}: {other:?}"),
        }
    }
    assert!(matches!(
        Store::restore_at(b"garbage", 5),
        Err(StoreError::SnapshotTooShort { .. })
    ));
}
