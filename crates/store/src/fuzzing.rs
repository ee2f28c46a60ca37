//! The entry point of the `restore` fuzz target (`crates/store/fuzz`),
//! public so that the checked-in corpus also runs under `cargo test`.
//!
//! A random mutation almost never keeps the CRC32C right, so a fuzzer fed
//! raw snapshots would test little beyond the checksum. The first input byte
//! therefore chooses: even, the rest is restored as it is; odd, the rest is
//! treated as snapshot content and a correct checksum is appended first,
//! which takes the fuzzer straight to the structural checks.

use crate::{Command, Store, StoreError, WriteOp};

/// Restores a snapshot built from fuzz input (see the module docs) and, if it
/// is accepted, checks what restore promises: the state satisfies
/// [`Store::check_invariants`], re-snapshots to the very same bytes, and keeps
/// its invariants through a few further writes.
///
/// # Panics
/// Only if one of those promises is broken: that is the bug the fuzzer hunts.
pub fn restore_and_check(input: &[u8]) -> Result<Store, StoreError> {
    let Some((&mode, rest)) = input.split_first() else {
        return Store::restore(input);
    };
    let data = if mode % 2 == 1 {
        let mut sealed = rest.to_vec();
        sealed.extend_from_slice(&crc32c::crc32c(rest).to_le_bytes());
        sealed
    } else {
        rest.to_vec()
    };
    let store = Store::restore(&data)?;
    if let Err(broken) = store.check_invariants() {
        panic!("restore accepted a state that breaks an invariant: {broken}");
    }
    // Canonical in the format this build writes (an older one is rewritten).
    if data[8..12] == crate::snapshot::SNAPSHOT_FORMAT_VERSION.to_le_bytes() {
        assert!(store.snapshot() == data, "restore accepted a non-canonical snapshot");
    }

    let mut next = store.clone();
    let now_ms = 1_000;
    let mut index = next.applied_index();
    let mut writes = vec![WriteOp::Expire {
        key: Vec::new(),
        version: 0,
    }];
    for (key, version) in next.expired(now_ms, 4) {
        writes.push(WriteOp::Append {
            key: key.clone(),
            value: b"+".to_vec(),
        });
        writes.push(WriteOp::Expire { key, version });
    }
    for op in writes {
        let Some(i) = index.checked_add(1) else { break };
        index = i;
        next.apply_command(
            index,
            Command {
                session: None,
                now_ms,
                op,
            },
        );
        if let Err(broken) = next.check_invariants() {
            panic!("a write after restore broke an invariant: {broken}");
        }
    }
    Ok(store)
}
