//! Properties: `parse` never panics on any input, and every valid config
//! survives `to_toml` then `parse` unchanged.

use proptest::prelude::*;
use triton_config::{check_invariants, parse, ClusterConfig, NodeConfig, Timing, TlsConfig};

/// Host names and IPs, so generated configs use every address shape.
fn host() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-z][a-z0-9-]{0,10}(\\.[a-z][a-z0-9]{0,5}){0,2}",
        (0u8..=255, 0u8..=255, 0u8..=255, 1u8..=255).prop_map(|(a, b, c, d)| format!("{a}.{b}.{c}.{d}")),
        Just("[::1]".to_string()),
        any::<u128>().prop_map(|ip| format!("[{}]", std::net::Ipv6Addr::from(ip))),
    ]
}

/// Paths with characters TOML must quote or escape.
fn path() -> impl Strategy<Value = std::path::PathBuf> {
    "[a-zA-Z0-9 ./\\\\\"'\n\té-]{1,20}".prop_map(Into::into)
}

/// A valid config: distinct ascending ids, distinct addresses (each address
/// uses its own port), every optional field sometimes present.
fn valid_config() -> impl Strategy<Value = ClusterConfig> {
    let node = (
        host(),
        proptest::option::of(host()),
        proptest::option::of(host()),
        1u64..1000, // gap to the next id
    );
    (
        proptest::collection::vec(node, 1..6),
        proptest::collection::vec(host(), 0..3),
        (1u64..=60_000, 1u32..100, 1u32..1000),
        1u64..=i64::MAX as u64,
        proptest::option::of(path()),
        any::<bool>(),
        proptest::option::of("[!-~]{1,30}"),
        (triton_config::MIN_MESSAGE_BYTES..=u32::MAX as u64, any::<u64>()),
        proptest::option::of((path(), path(), proptest::option::of(path()))),
    )
        .prop_map(
            |(nodes, blocks, (tick_ms, heartbeat, extra), snapshot, data_dir, test_rpcs, token, (msg, val), tls)| {
                // Ports count up from 1 so no two addresses are the same socket.
                let mut port = 0u32;
                let mut next = |host: String| {
                    port += 1;
                    format!("{host}:{port}")
                };
                let mut id = 0u64;
                let nodes = nodes
                    .into_iter()
                    .map(|(addr, file, http, gap)| {
                        id += gap;
                        NodeConfig {
                            id,
                            addr: next(addr),
                            file_addr: file.map(&mut next),
                            http_addr: http.map(&mut next),
                        }
                    })
                    .collect();
                let block_stores = blocks.into_iter().map(&mut next).collect();
                ClusterConfig {
                    nodes,
                    block_stores,
                    timing: Timing {
                        tick_ms,
                        election_ticks: heartbeat + extra,
                        heartbeat_ticks: heartbeat,
                        lease_reads: heartbeat + extra >= 3,
                    },
                    snapshot_threshold: snapshot,
                    data_dir,
                    enable_test_rpcs: test_rpcs,
                    // Any bool the generator already draws.
                    peer_token_optional: test_rpcs,
                    admin_token: token,
                    max_message_bytes: msg,
                    // At most the store's limit too, which validate() enforces.
                    max_value_bytes: 1 + val % msg.min(triton_config::MAX_VALUE_BYTES),
                    // Any number the generator already draws, in range.
                    max_snapshot_bytes: snapshot.max(triton_config::MIN_SNAPSHOT_BYTES),
                    tls: tls.map(|(cert, key, ca)| TlsConfig { cert, key, ca }),
                    config_dir: None,
                }
            },
        )
}

/// Bytes of the example files, to mutate into near-valid inputs.
fn examples() -> Vec<Vec<u8>> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples");
    let mut files: Vec<_> = std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().path()).collect();
    files.sort();
    files.iter().map(|p| std::fs::read(p).unwrap()).collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn valid_configs_round_trip_through_toml(config in valid_config()) {
        prop_assert!(config.validate().is_ok(), "{:?}", config.validate());
        let written = config.to_toml();
        let parsed = parse(&written);
        prop_assert!(parsed.is_ok(), "{:?}\n{}", parsed, written);
        prop_assert_eq!(parsed.unwrap(), config);
    }

    #[test]
    fn arbitrary_strings_never_panic(text in any::<String>()) {
        check_invariants(text.as_bytes());
    }

    #[test]
    fn config_shaped_strings_never_panic(text in "[ \n\\[\\]{}\":=,.#a-zM0-9_]{0,200}") {
        check_invariants(text.as_bytes());
    }

    #[test]
    fn mutated_examples_never_panic(
        which in 0usize..4,
        edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>(), 0u8..3), 1..8),
    ) {
        let mut bytes = examples()[which].clone();
        for (at, byte, kind) in edits {
            let i = at.index(bytes.len() + 1);
            match kind {
                0 => bytes.insert(i, byte),
                1 if i < bytes.len() => { bytes.remove(i); }
                _ if i < bytes.len() => bytes[i] = byte,
                _ => bytes.push(byte),
            }
        }
        check_invariants(&bytes);
    }
}

#[test]
fn deeply_nested_input_is_an_error_not_a_stack_overflow() {
    for text in [
        "[".repeat(100_000),
        "{\"RaftAddrs\":".to_string() + &"[".repeat(100_000),
        format!("a = {}", "[".repeat(100_000)),
    ] {
        assert!(parse(&text).is_err());
    }
}
