//! Unit tests of every operation and result, exactly-once sessions, session
//! eviction, expiry and SurfStore's version rules, through the public API.

use triton_store::{Command, FileMeta, Session, Store, StoreOptions, WriteOp, WriteResult};

/// A store plus the next log index, so tests read as a sequence of writes.
struct Harness {
    store: Store,
    next: u64,
}

impl Harness {
    fn new() -> Self {
        Self::with(StoreOptions::default())
    }

    fn with(opts: StoreOptions) -> Self {
        Harness {
            store: Store::new(opts),
            next: 1,
        }
    }

    /// Applies `op` at time `now` without a session, through the byte path.
    fn run(&mut self, now: u64, op: WriteOp) -> WriteResult {
        self.run_as(None, now, op)
    }

    fn run_as(&mut self, session: Option<(u64, u64)>, now: u64, op: WriteOp) -> WriteResult {
        let cmd = Command {
            session: session.map(|(client_id, seq)| Session { client_id, seq }),
            now_ms: now,
            op,
        };
        let index = self.next;
        self.next += 1;
        let result = self.store.apply(index, &cmd.encode());
        self.store.check_invariants().unwrap();
        result
    }

    /// Registers a session at the next index; returns its client id.
    fn register(&mut self) -> u64 {
        let index = self.next;
        match self.run(0, WriteOp::RegisterSession) {
            WriteResult::Registered { client_id } => {
                assert_eq!(client_id, index);
                client_id
            }
            other => panic!("registration answered {other:?}"),
        }
    }

    fn value(&self, key: &str, now: u64) -> Option<Vec<u8>> {
        self.store.get(key.as_bytes(), now).map(|e| e.value.to_vec())
    }
}

fn put(key: &str, value: &str, expires_at_ms: u64) -> WriteOp {
    WriteOp::Put {
        key: key.into(),
        value: value.into(),
        expires_at_ms,
    }
}
fn append(key: &str, value: &str) -> WriteOp {
    WriteOp::Append {
        key: key.into(),
        value: value.into(),
    }
}
fn delete(key: &str) -> WriteOp {
    WriteOp::Delete { key: key.into() }
}
fn cas(key: &str, expected_version: u64, value: &str, expires_at_ms: u64) -> WriteOp {
    WriteOp::Cas {
        key: key.into(),
        expected_version,
        value: value.into(),
        expires_at_ms,
    }
}
fn expire(key: &str, version: u64) -> WriteOp {
    WriteOp::Expire {
        key: key.into(),
        version,
    }
}
fn surf(filename: &str, version: i32, hashes: &[&str]) -> WriteOp {
    WriteOp::SurfUpdate {
        filename: filename.into(),
        version,
        block_hashes: hashes.iter().map(|h| h.to_string()).collect(),
    }
}

#[test]
fn put_sets_value_and_version_is_the_log_index() {
    let mut h = Harness::new();
    assert_eq!(h.run(0, put("a", "1", 0)), WriteResult::Put { version: 1 });
    assert_eq!(h.run(0, put("a", "2", 0)), WriteResult::Put { version: 2 });
    let e = h.store.get(b"a", 0).unwrap();
    assert_eq!((e.value, e.version, e.expires_at_ms), (&b"2"[..], 2, 0));
    assert_eq!(h.store.len(), 1);
    assert_eq!(h.store.applied_index(), 2);
}

#[test]
fn versions_are_never_reused_after_delete_and_recreate() {
    let mut h = Harness::new();
    h.run(0, put("a", "1", 0));
    assert_eq!(h.run(0, delete("a")), WriteResult::Delete { existed: true });
    h.store.skip(3);
    h.next = 4;
    assert_eq!(h.run(0, put("a", "1", 0)), WriteResult::Put { version: 4 });
}

#[test]
fn append_creates_extends_and_keeps_expiry() {
    let mut h = Harness::new();
    assert_eq!(h.run(0, append("a", "x")), WriteResult::Append { version: 1 });
    assert_eq!(h.value("a", 0).unwrap(), b"x");
    assert_eq!(h.store.get(b"a", 0).unwrap().expires_at_ms, 0);
    h.run(0, put("b", "he", 100));
    assert_eq!(h.run(10, append("b", "llo")), WriteResult::Append { version: 3 });
    let e = h.store.get(b"b", 10).unwrap();
    assert_eq!((e.value, e.version, e.expires_at_ms), (&b"hello"[..], 3, 100));
}

#[test]
fn append_on_an_expired_key_starts_fresh_without_expiry() {
    let mut h = Harness::new();
    h.run(0, put("a", "old", 100));
    assert_eq!(h.run(100, append("a", "new")), WriteResult::Append { version: 2 });
    let e = h.store.get(b"a", 1_000_000).unwrap();
    assert_eq!((e.value, e.expires_at_ms), (&b"new"[..], 0));
}

#[test]
fn delete_reports_whether_a_live_key_existed() {
    let mut h = Harness::new();
    assert_eq!(h.run(0, delete("a")), WriteResult::Delete { existed: false });
    h.run(0, put("a", "1", 0));
    assert_eq!(h.run(0, delete("a")), WriteResult::Delete { existed: true });
    assert_eq!(h.value("a", 0), None);
    assert!(h.store.is_empty());
}

#[test]
fn delete_of_an_expired_key_removes_it_and_reports_missing() {
    let mut h = Harness::new();
    h.run(0, put("a", "1", 50));
    assert_eq!(h.run(60, delete("a")), WriteResult::Delete { existed: false });
    assert_eq!(h.store.len(), 0);
    assert!(h.store.expired(u64::MAX, 10).is_empty());
}

#[test]
fn cas_succeeds_only_on_the_expected_version() {
    let mut h = Harness::new();
    assert_eq!(
        h.run(0, cas("a", 0, "x", 0)),
        WriteResult::Cas {
            ok: false,
            version: 0,
            found: false
        }
    );
    assert_eq!(h.value("a", 0), None, "a failed CAS creates nothing");
    h.run(0, put("a", "1", 0)); // version 2
    assert_eq!(
        h.run(0, cas("a", 1, "x", 0)),
        WriteResult::Cas {
            ok: false,
            version: 2,
            found: true
        }
    );
    assert_eq!(h.value("a", 0).unwrap(), b"1");
    assert_eq!(
        h.run(0, cas("a", 2, "y", 500)),
        WriteResult::Cas {
            ok: true,
            version: 4,
            found: true
        }
    );
    let e = h.store.get(b"a", 0).unwrap();
    assert_eq!(
        (e.value, e.version, e.expires_at_ms),
        (&b"y"[..], 4, 500),
        "CAS replaces the expiry"
    );
}

#[test]
fn cas_treats_an_expired_key_as_missing() {
    let mut h = Harness::new();
    h.run(0, put("a", "1", 10)); // version 1
    assert_eq!(
        h.run(10, cas("a", 1, "x", 0)),
        WriteResult::Cas {
            ok: false,
            version: 0,
            found: false
        }
    );
}

#[test]
fn get_hides_an_expired_key() {
    let mut h = Harness::new();
    h.run(0, put("a", "1", 1_000));
    assert_eq!(h.value("a", 999).unwrap(), b"1");
    assert_eq!(h.value("a", 1_000), None);
    assert_eq!(h.value("a", u64::MAX), None);
    assert_eq!(h.store.len(), 1, "still stored until an Expire command removes it");
}

#[test]
fn expired_lists_the_first_expired_keys_in_key_order_up_to_the_limit() {
    let mut h = Harness::new();
    h.run(0, put("d", "", 10)); // 1
    h.run(0, put("b", "", 30)); // 2
    h.run(0, put("a", "", 20)); // 3
    h.run(0, put("c", "", 0)); // 4: never expires
    h.run(0, put("e", "", 40)); // 5
    assert_eq!(h.store.expired(9, 10), vec![]);
    assert_eq!(
        h.store.expired(30, 10),
        vec![(b"a".to_vec(), 3), (b"b".to_vec(), 2), (b"d".to_vec(), 1)]
    );
    // Over the limit: the keys that expired first (d at 10, a at 20), by key.
    assert_eq!(h.store.expired(30, 2), vec![(b"a".to_vec(), 3), (b"d".to_vec(), 1)]);
    assert_eq!(h.store.expired(30, 1), vec![(b"d".to_vec(), 1)]);
    assert_eq!(h.store.expired(u64::MAX, 0), vec![]);
    assert_eq!(h.store.expired(u64::MAX, 100).len(), 4);
    // Equal expiry: the smaller key comes first.
    h.run(0, put("0", "", 40)); // 6
                                // At 40 all five are expired; "0" and "e" both expire at 40, so "0" is
                                // taken and "e" is left for the next batch.
    let keys: Vec<Vec<u8>> = h.store.expired(40, 4).into_iter().map(|(k, _)| k).collect();
    assert_eq!(keys, [&b"0"[..], b"a", b"b", b"d"]);
}

#[test]
fn expire_removes_only_a_matching_expired_version() {
    let mut h = Harness::new();
    h.run(0, put("a", "1", 100)); // version 1
    assert_eq!(
        h.run(99, expire("a", 1)),
        WriteResult::Expire { removed: false },
        "not yet expired"
    );
    assert_eq!(
        h.run(100, expire("a", 7)),
        WriteResult::Expire { removed: false },
        "wrong version"
    );
    assert_eq!(h.run(100, expire("missing", 1)), WriteResult::Expire { removed: false });
    assert_eq!(h.store.len(), 1);
    assert_eq!(h.run(100, expire("a", 1)), WriteResult::Expire { removed: true });
    assert_eq!(h.store.len(), 0);
}

#[test]
fn a_write_after_the_scan_saves_the_key_from_expire() {
    let mut h = Harness::new();
    h.run(0, put("a", "1", 100)); // version 1
    let scanned = h.store.expired(150, 10);
    assert_eq!(scanned, vec![(b"a".to_vec(), 1)]);
    // The client rewrites the key (no expiry) before the leader's Expire commits.
    assert_eq!(h.run(150, put("a", "2", 0)), WriteResult::Put { version: 2 });
    assert_eq!(h.run(150, expire("a", 1)), WriteResult::Expire { removed: false });
    assert_eq!(h.value("a", u64::MAX).unwrap(), b"2");
    assert!(
        h.store.expired(u64::MAX, 10).is_empty(),
        "the later write replaced the expiry"
    );
}

#[test]
fn put_replaces_the_expiry_and_append_keeps_it() {
    let mut h = Harness::new();
    h.run(0, put("a", "1", 100));
    h.run(0, put("a", "2", 500));
    assert_eq!(h.value("a", 200).unwrap(), b"2");
    assert_eq!(h.store.expired(499, 10), vec![]);
    h.run(0, append("a", "3"));
    assert_eq!(h.store.get(b"a", 0).unwrap().expires_at_ms, 500);
    h.run(0, put("a", "4", 0));
    assert_eq!(h.store.expired(u64::MAX, 10), vec![]);
}

#[test]
fn put_with_a_past_expiry_is_stored_but_invisible() {
    let mut h = Harness::new();
    assert_eq!(h.run(1_000, put("a", "1", 500)), WriteResult::Put { version: 1 });
    assert_eq!(h.value("a", 1_000), None);
    assert_eq!(h.store.expired(1_000, 10), vec![(b"a".to_vec(), 1)]);
}

#[test]
fn a_registration_opens_a_session_named_by_its_index() {
    let mut h = Harness::new();
    h.run(0, put("a", "", 0)); // index 1
    assert_eq!(h.register(), 2);
    // Registering again (a retried request) opens another session.
    assert_eq!(h.register(), 3);
    assert_eq!(h.store.session_count(), 2);
    // Both write independently, from seq 1.
    assert_eq!(
        h.run_as(Some((2, 1)), 0, put("a", "", 0)),
        WriteResult::Put { version: 4 }
    );
    assert_eq!(
        h.run_as(Some((3, 1)), 0, put("a", "", 0)),
        WriteResult::Put { version: 5 }
    );
    // A session sent along with a registration is ignored.
    let cmd = Command {
        session: Some(Session { client_id: 2, seq: 2 }),
        now_ms: 0,
        op: WriteOp::RegisterSession,
    };
    assert_eq!(
        h.store.apply(6, &cmd.encode()),
        WriteResult::Registered { client_id: 6 }
    );
}

#[test]
fn an_unregistered_client_is_refused_whatever_its_seq() {
    let mut h = Harness::new();
    for seq in [1, 2, 7] {
        assert_eq!(
            h.run_as(Some((42, seq)), 0, put("a", "", 0)),
            WriteResult::SessionExpired
        );
    }
    assert_eq!(h.value("a", 0), None);
    assert_eq!(h.store.session_count(), 0);
}

#[test]
fn duplicate_seq_returns_the_original_result_and_changes_nothing() {
    let mut h = Harness::new();
    let c = h.register(); // index 1
    let first = h.run_as(Some((c, 1)), 0, put("a", "1", 0));
    assert_eq!(first, WriteResult::Put { version: 2 });
    let before = h.store.snapshot();
    // A retry of seq 1, even carrying a different op, returns the cached result.
    assert_eq!(h.run_as(Some((c, 1)), 0, put("a", "other", 0)), first);
    assert_eq!(h.value("a", 0).unwrap(), b"1");
    let after = h.store.snapshot();
    // Only the applied index moved: restore both and compare everything else.
    let (mut b, a) = (Store::restore(&before).unwrap(), Store::restore(&after).unwrap());
    b.skip(3);
    assert_eq!(b.snapshot(), a.snapshot());
}

#[test]
fn retried_append_is_not_applied_twice() {
    let mut h = Harness::new();
    let c = h.register(); // index 1
    assert_eq!(
        h.run_as(Some((c, 1)), 0, append("a", "x")),
        WriteResult::Append { version: 2 }
    );
    assert_eq!(
        h.run_as(Some((c, 1)), 0, append("a", "x")),
        WriteResult::Append { version: 2 }
    );
    assert_eq!(h.value("a", 0).unwrap(), b"x");
    assert_eq!(
        h.run_as(Some((c, 2)), 0, append("a", "x")),
        WriteResult::Append { version: 4 }
    );
    assert_eq!(h.value("a", 0).unwrap(), b"xx");
}

#[test]
fn seq_below_the_last_is_stale() {
    let mut h = Harness::new();
    let (c, d) = (h.register(), h.register()); // indexes 1, 2
    h.run_as(Some((c, 1)), 0, put("a", "1", 0));
    h.run_as(Some((c, 3)), 0, put("a", "3", 0));
    assert_eq!(h.run_as(Some((c, 2)), 0, put("a", "2", 0)), WriteResult::StaleSession);
    assert_eq!(h.run_as(Some((c, 1)), 0, put("a", "1", 0)), WriteResult::StaleSession);
    assert_eq!(h.value("a", 0).unwrap(), b"3");
    // Another client's numbering is independent.
    assert_eq!(
        h.run_as(Some((d, 1)), 0, put("b", "1", 0)),
        WriteResult::Put { version: 7 }
    );
}

#[test]
fn failed_results_are_cached_too() {
    let mut h = Harness::new();
    let c = h.register(); // index 1
    let miss = h.run_as(Some((c, 1)), 0, cas("a", 3, "x", 0));
    assert_eq!(
        miss,
        WriteResult::Cas {
            ok: false,
            version: 0,
            found: false
        }
    );
    h.run(0, put("a", "1", 0)); // version 3
                                // The retry must not see the new key: it gets the first answer.
    assert_eq!(h.run_as(Some((c, 1)), 0, cas("a", 3, "x", 0)), miss);
}

#[test]
fn commands_without_session_are_never_deduplicated() {
    let mut h = Harness::new();
    assert_eq!(h.run(0, append("a", "x")), WriteResult::Append { version: 1 });
    assert_eq!(h.run(0, append("a", "x")), WriteResult::Append { version: 2 });
    assert_eq!(h.value("a", 0).unwrap(), b"xx");
    assert_eq!(h.store.session_count(), 0);
}

#[test]
fn full_session_table_evicts_the_oldest_last_write() {
    let opts = StoreOptions {
        max_sessions: 3,
        ..StoreOptions::default()
    };
    let mut h = Harness::with(opts);
    let (a, b, c) = (h.register(), h.register(), h.register()); // indexes 1, 2, 3
    h.run_as(Some((b, 1)), 0, put("a", "", 0)); // index 4
    h.run_as(Some((c, 1)), 0, put("a", "", 0)); // index 5
    h.run_as(Some((a, 1)), 0, put("a", "", 0)); // index 6: a is now the newest
    assert_eq!(h.store.session_count(), 3);
    let d = h.register(); // index 7 evicts b (last write at 4)
    assert_eq!(h.store.session_count(), 3);
    // b is forgotten: even the retry of its first write is refused, not
    // applied again.
    assert_eq!(h.run_as(Some((b, 1)), 0, put("a", "", 0)), WriteResult::SessionExpired);
    // c, a and d are still deduplicated or writing.
    assert_eq!(
        h.run_as(Some((c, 1)), 0, put("a", "", 0)),
        WriteResult::Put { version: 5 }
    );
    assert_eq!(
        h.run_as(Some((a, 1)), 0, put("a", "", 0)),
        WriteResult::Put { version: 6 }
    );
    assert_eq!(
        h.run_as(Some((d, 1)), 0, put("a", "", 0)),
        WriteResult::Put { version: 11 }
    );
}

/// A forgotten client's retry is refused, not applied again: the store
/// cannot tell whether it was applied (Raft thesis §6.3).
#[test]
fn a_forgotten_clients_retry_is_refused_not_applied_again() {
    let opts = StoreOptions {
        max_sessions: 1,
        ..StoreOptions::default()
    };
    let mut h = Harness::with(opts);
    let c = h.register(); // index 1
    assert_eq!(
        h.run_as(Some((c, 1)), 0, append("a", "x")),
        WriteResult::Append { version: 2 }
    );
    h.register(); // index 3 evicts c
                  // c's retry of seq 1 (its reply was lost): refused, not doubled; and
                  // so is anything later.
    for seq in [1, 2] {
        assert_eq!(
            h.run_as(Some((c, seq)), 0, append("a", "x")),
            WriteResult::SessionExpired
        );
    }
    assert_eq!(h.value("a", 0), Some(b"x".to_vec()));
}

#[test]
fn a_duplicate_does_not_refresh_a_sessions_eviction_order() {
    let opts = StoreOptions {
        max_sessions: 2,
        ..StoreOptions::default()
    };
    let mut h = Harness::with(opts);
    let (a, b) = (h.register(), h.register()); // indexes 1, 2
    h.run_as(Some((b, 1)), 0, put("a", "", 0)); // index 3
    h.run_as(Some((a, 1)), 0, put("a", "", 0)); // index 4
    h.run_as(Some((b, 1)), 0, put("a", "", 0)); // index 5, a duplicate: b stays at index 3
    h.register(); // index 6 evicts b
    assert_eq!(
        h.run_as(Some((a, 1)), 0, put("a", "", 0)),
        WriteResult::Put { version: 4 }
    );
    assert_eq!(h.run_as(Some((b, 1)), 0, put("a", "", 0)), WriteResult::SessionExpired);
}

#[test]
fn surf_new_file_must_be_version_one() {
    let mut h = Harness::new();
    assert_eq!(h.run(0, surf("f", 2, &["h1"])), WriteResult::SurfUpdate { version: -1 });
    assert_eq!(h.run(0, surf("f", 0, &["h1"])), WriteResult::SurfUpdate { version: -1 });
    assert!(h.store.file_info_map().is_empty());
    assert_eq!(
        h.run(0, surf("f", 1, &["h1", "h2"])),
        WriteResult::SurfUpdate { version: 1 }
    );
    assert_eq!(
        h.store.file_info_map().get("f"),
        Some(&FileMeta {
            version: 1,
            block_hashes: vec!["h1".into(), "h2".into()]
        })
    );
}

#[test]
fn surf_update_needs_exactly_current_plus_one() {
    let mut h = Harness::new();
    h.run(0, surf("f", 1, &["h1"]));
    assert_eq!(h.run(0, surf("f", 1, &["h2"])), WriteResult::SurfUpdate { version: -1 });
    assert_eq!(h.run(0, surf("f", 3, &["h2"])), WriteResult::SurfUpdate { version: -1 });
    assert_eq!(h.store.file_meta("f").unwrap().block_hashes, vec!["h1".to_string()]);
    assert_eq!(h.run(0, surf("f", 2, &["h2"])), WriteResult::SurfUpdate { version: 2 });
    assert_eq!(h.store.file_meta("f").unwrap().version, 2);
}

#[test]
fn surf_tombstone_and_recreate() {
    let mut h = Harness::new();
    h.run(0, surf("f", 1, &["h1"]));
    assert_eq!(h.run(0, surf("f", 2, &["0"])), WriteResult::SurfUpdate { version: 2 });
    assert_eq!(
        h.store.file_meta("f"),
        Some(&FileMeta {
            version: 2,
            block_hashes: vec!["0".into()]
        })
    );
    assert_eq!(
        h.run(0, surf("f", 1, &["h3"])),
        WriteResult::SurfUpdate { version: -1 },
        "not a new file"
    );
    assert_eq!(h.run(0, surf("f", 3, &["h3"])), WriteResult::SurfUpdate { version: 3 });
}

#[test]
fn surf_empty_file_hashes_are_stored_as_given() {
    let mut h = Harness::new();
    assert_eq!(
        h.run(0, surf("empty", 1, &["-1"])),
        WriteResult::SurfUpdate { version: 1 }
    );
    assert_eq!(h.store.file_meta("empty").unwrap().block_hashes, vec!["-1".to_string()]);
}

#[test]
fn surf_files_and_keys_are_separate_namespaces() {
    let mut h = Harness::new();
    h.run(0, surf("x", 1, &["h"]));
    h.run(0, put("x", "v", 0));
    assert_eq!(h.store.len(), 1);
    assert_eq!(h.store.file_info_map().len(), 1);
}

#[test]
fn oversized_keys_and_values_are_rejected_without_change() {
    let opts = StoreOptions {
        max_key_bytes: 4,
        max_value_bytes: 8,
        ..StoreOptions::default()
    };
    let mut h = Harness::with(opts);
    assert_eq!(h.run(0, put("12345", "", 0)), WriteResult::TooLarge);
    assert_eq!(h.run(0, put("k", "123456789", 0)), WriteResult::TooLarge);
    assert_eq!(h.run(0, put("k", "12345678", 0)), WriteResult::Put { version: 3 });
    assert_eq!(
        h.run(0, append("k", "9")),
        WriteResult::TooLarge,
        "the appended result would be too large"
    );
    assert_eq!(h.run(0, cas("k", 3, "123456789", 0)), WriteResult::TooLarge);
    assert_eq!(h.run(0, surf("fffff", 1, &[])), WriteResult::TooLarge);
    assert_eq!(h.run(0, surf("f", 1, &["12345", "6789"])), WriteResult::TooLarge);
    assert_eq!(h.value("k", 0).unwrap(), b"12345678");
    assert!(h.store.file_info_map().is_empty());
}

#[test]
fn malformed_bytes_change_only_the_applied_index() {
    let mut store = Store::new(StoreOptions::default());
    let before = store.snapshot();
    assert_eq!(store.apply(1, &[0xff, 0xff]), WriteResult::Malformed);
    assert_eq!(store.apply(2, &[]), WriteResult::Malformed, "no op");
    assert_eq!(store.applied_index(), 2);
    let mut reference = Store::restore(&before).unwrap();
    reference.skip(2);
    assert_eq!(store.snapshot(), reference.snapshot());
}

#[test]
fn skip_advances_the_applied_index() {
    let mut store = Store::default();
    store.skip(1);
    store.skip(5);
    assert_eq!(store.applied_index(), 5);
    let cmd = Command {
        session: None,
        now_ms: 0,
        op: put("a", "", 0),
    };
    assert_eq!(store.apply(6, &cmd.encode()), WriteResult::Put { version: 6 });
}

#[test]
#[should_panic(expected = "out of order")]
fn applying_an_old_index_panics() {
    let mut store = Store::default();
    store.skip(3);
    store.apply(3, &[]);
}

#[test]
#[should_panic(expected = "max_sessions")]
fn zero_sessions_is_refused() {
    Store::new(StoreOptions {
        max_sessions: 0,
        ..StoreOptions::default()
    });
}

#[test]
fn apply_command_matches_apply_of_the_encoding() {
    let cmd = Command {
        session: Some(Session { client_id: 1, seq: 1 }),
        now_ms: 3,
        op: append("a", "b"),
    };
    let (mut a, mut b) = (Store::default(), Store::default());
    let register = Command {
        session: None,
        now_ms: 0,
        op: WriteOp::RegisterSession,
    };
    assert_eq!(a.apply(1, &register.encode()), b.apply_command(1, register));
    assert_eq!(a.apply(2, &cmd.encode()), b.apply_command(2, cmd));
    assert_eq!(a.snapshot(), b.snapshot());
}

#[test]
fn approximate_bytes_grows_and_shrinks_with_content() {
    let mut h = Harness::new();
    assert_eq!(h.store.approximate_bytes(), 0);
    h.run(0, put("key", &"v".repeat(1000), 0));
    let one = h.store.approximate_bytes();
    assert!(one >= 1003, "{one}");
    h.run(0, delete("key"));
    assert_eq!(h.store.approximate_bytes(), 0);
}
