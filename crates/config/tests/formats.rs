//! Each format parses to the expected config; malformed configs give errors
//! that name the line or field; the files under `examples/` all load.

use std::path::{Path, PathBuf};

use triton_config::{load, parse, parse_bytes, ClusterConfig, ConfigError, NodeConfig, Timing, TlsConfig};

fn node(id: u64, addr: &str) -> NodeConfig {
    NodeConfig {
        id,
        addr: addr.to_string(),
        file_addr: None,
        http_addr: None,
    }
}

fn three_nodes() -> Vec<NodeConfig> {
    vec![
        node(0, "127.0.0.1:7000"),
        node(1, "127.0.0.1:7001"),
        node(2, "127.0.0.1:7002"),
    ]
}

fn examples_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples")
}

#[test]
fn text_form_parses_with_defaults() {
    let config =
        parse("\n\nM: 3\nmetadata0: 127.0.0.1:7000\n\n  metadata1:127.0.0.1:7001  \r\nmetadata2: 127.0.0.1:7002")
            .expect("valid text form");
    assert_eq!(
        config,
        ClusterConfig {
            nodes: three_nodes(),
            ..ClusterConfig::default()
        }
    );
}

#[test]
fn json_form_parses_with_defaults() {
    let config = parse(
        r#"  {"RaftAddrs": ["127.0.0.1:7000", "127.0.0.1:7001", "127.0.0.1:7002"], "BlockAddrs": ["blocks.local:7100"]}"#,
    )
    .expect("valid JSON form");
    assert_eq!(
        config,
        ClusterConfig {
            nodes: three_nodes(),
            block_stores: vec!["blocks.local:7100".into()],
            ..ClusterConfig::default()
        }
    );
    // BlockAddrs may be left out.
    let config = parse(r#"{"RaftAddrs": ["[::1]:7000"]}"#).expect("valid JSON form");
    assert_eq!(config.nodes, vec![node(0, "[::1]:7000")]);
    assert!(config.block_stores.is_empty());
}

#[test]
fn toml_form_parses_every_field() {
    let text = r#"
        block_stores = ["127.0.0.1:7100"]
        snapshot_threshold = 500
        data_dir = "/var/lib/triton"
        enable_test_rpcs = true
        admin_token = "s3cret"
        peer_token_optional = true
        max_message_bytes = 100000
        max_value_bytes = 100
        max_snapshot_bytes = 2000000
        [timing]
        tick_ms = 10
        election_ticks = 20
        heartbeat_ticks = 3
        [tls]
        cert = "c.pem"
        key = "k.pem"
        [[nodes]]
        id = 4
        addr = "node4:7000"
        file_addr = "node4:8080"
        http_addr = "node4:9000"
        [[nodes]]
        id = 7
        addr = "node7:7000"
    "#;
    let config = parse(text).expect("valid TOML");
    let expected = ClusterConfig {
        nodes: vec![
            NodeConfig {
                id: 4,
                addr: "node4:7000".into(),
                file_addr: Some("node4:8080".into()),
                http_addr: Some("node4:9000".into()),
            },
            node(7, "node7:7000"),
        ],
        block_stores: vec!["127.0.0.1:7100".into()],
        timing: Timing {
            tick_ms: 10,
            election_ticks: 20,
            heartbeat_ticks: 3,
            lease_reads: true,
        },
        snapshot_threshold: 500,
        data_dir: Some("/var/lib/triton".into()),
        enable_test_rpcs: true,
        admin_token: Some("s3cret".into()),
        peer_token_optional: true,
        max_message_bytes: 100_000,
        max_value_bytes: 100,
        max_snapshot_bytes: 2_000_000,
        tls: Some(TlsConfig {
            cert: "c.pem".into(),
            key: "k.pem".into(),
            ca: None,
        }),
        config_dir: None,
    };
    assert_eq!(config, expected);
    assert_eq!(config.node(7).unwrap().addr, "node7:7000");
    assert_eq!(config.node_data_dir(7), Path::new("/var/lib/triton/node-7"));
}

#[test]
fn toml_defaults_match_the_documented_values() {
    let config = parse("[[nodes]]\nid = 0\naddr = \"127.0.0.1:7000\"\n").expect("minimal TOML");
    assert_eq!(
        config.timing,
        Timing {
            tick_ms: 50,
            election_ticks: 10,
            heartbeat_ticks: 2,
            lease_reads: true,
        }
    );
    assert_eq!(config.snapshot_threshold, 10_000);
    assert_eq!(config.max_message_bytes, 64 << 20);
    assert_eq!(config.max_value_bytes, 1 << 20);
    assert_eq!(config.max_snapshot_bytes, 1 << 30);
    assert!(!config.enable_test_rpcs);
    assert_eq!((config.data_dir, config.admin_token, config.tls), (None, None, None));
    assert!(config.block_stores.is_empty());
    let t = Timing::default();
    assert_eq!(
        t.election_timeout(),
        std::time::Duration::from_millis(550)..std::time::Duration::from_millis(1000)
    );
    assert_eq!(t.heartbeat_interval(), std::time::Duration::from_millis(100));
    let absurd = Timing {
        tick_ms: u64::MAX,
        election_ticks: u32::MAX,
        heartbeat_ticks: u32::MAX,
        lease_reads: true,
    };
    assert_eq!(absurd.election_timeout().end, std::time::Duration::MAX);
    assert_eq!(absurd.heartbeat_interval(), std::time::Duration::MAX);
    assert_eq!(
        ClusterConfig::default().node_data_dir(3),
        Path::new("triton-data/node-3")
    );
}

#[test]
fn unknown_id_lists_known_ids() {
    let config = parse("M: 2\nmetadata0: a:1\nmetadata1: b:1\n").unwrap();
    let err = config.node(5).unwrap_err();
    assert!(matches!(err, ConfigError::UnknownNode { id: 5, .. }));
    let msg = err.to_string();
    assert!(msg.contains("no node with id 5") && msg.contains("[0, 1]"), "{msg}");
    assert_eq!(ClusterConfig::raft_id(0), 1);
    assert_eq!(ClusterConfig::raft_id(41), 42);
}

#[test]
fn debug_output_hides_the_admin_token() {
    let config = ClusterConfig {
        nodes: three_nodes(),
        admin_token: Some("hunter2".into()),
        ..ClusterConfig::default()
    };
    let shown = format!("{config:?}");
    assert!(!shown.contains("hunter2") && shown.contains("<redacted>"), "{shown}");
}

/// Malformed inputs, each with substrings its error message must contain.
#[test]
fn malformed_inputs_name_the_line_or_field() {
    const NODE0: &str = "[[nodes]]\nid = 0\naddr = \"127.0.0.1:7000\"\n";
    let cases: Vec<(&str, String, &[&str])> = vec![
        ("empty file", String::new(), &["empty"]),
        ("whitespace only", " \n\t\n".into(), &["empty"]),
        ("bad TOML", "[[nodes]]\nid = 0\naddr = \"127.0.0.1:7000\n".into(), &["TOML", "line 3"]),
        ("TOML unknown field", format!("{NODE0}adr = \"x:1\"\n"), &["line 4", "unknown field `adr`"]),
        ("TOML unknown top-level field", format!("snapshot_treshold = 5\n{NODE0}"), &["line 1", "snapshot_treshold"]),
        ("TOML unknown timing field", format!("[timing]\ntick = 5\n{NODE0}"), &["line 2", "`tick`"]),
        ("TOML missing addr", "[[nodes]]\nid = 0\n".into(), &["line 1", "missing field `addr`"]),
        ("TOML missing id", "[[nodes]]\naddr = \"a:1\"\n".into(), &["missing field `id`"]),
        ("TOML wrong type", format!("{NODE0}[timing]\ntick_ms = \"fast\"\n"), &["line 5", "tick_ms"]),
        ("TOML negative", format!("snapshot_threshold = -1\n{NODE0}"), &["line 1", "snapshot_threshold"]),
        ("TOML no nodes", "snapshot_threshold = 5\n".into(), &["nodes", "at least one node"]),
        (
            "TOML duplicate id",
            format!("{NODE0}[[nodes]]\nid = 0\naddr = \"127.0.0.1:7001\"\n"),
            &["nodes[1].id", "duplicate id 0", "nodes[0].id"],
        ),
        (
            "TOML ids out of order",
            "[[nodes]]\nid = 2\naddr = \"a:1\"\n[[nodes]]\nid = 1\naddr = \"b:1\"\n".into(),
            &["nodes[1].id", "ascending"],
        ),
        (
            "TOML duplicate address across nodes",
            format!("{NODE0}[[nodes]]\nid = 1\naddr = \"127.0.0.1:7000\"\n"),
            &["nodes[1].addr", "duplicate address", "nodes[0].addr"],
        ),
        (
            "TOML duplicate address across kinds",
            "[[nodes]]\nid = 0\naddr = \"a:1\"\nhttp_addr = \"b:2\"\n[[nodes]]\nid = 1\naddr = \"c:1\"\nfile_addr = \"B:2\"\n"
                .into(),
            &["nodes[1].file_addr", "duplicate address", "nodes[0].http_addr"],
        ),
        (
            "TOML block store reuses a node address",
            format!("block_stores = [\"127.0.0.1:7000\"]\n{NODE0}"),
            &["block_stores[0]", "duplicate address", "nodes[0].addr"],
        ),
        ("TOML bad port", "[[nodes]]\nid = 0\naddr = \"127.0.0.1:70000\"\n".into(), &["nodes[0].addr", "1 to 65535"]),
        ("TOML no port", "[[nodes]]\nid = 0\naddr = \"127.0.0.1\"\n".into(), &["nodes[0].addr", "host:port"]),
        (
            "TOML bad http port",
            format!("{NODE0}http_addr = \"127.0.0.1:0\"\n"),
            &["nodes[0].http_addr", "1 to 65535"],
        ),
        (
            "TOML unspecified peer address",
            "[[nodes]]\nid = 0\naddr = \"0.0.0.0:7000\"\n".into(),
            &["nodes[0].addr", "cannot dial"],
        ),
        ("TOML zero tick", format!("{NODE0}[timing]\ntick_ms = 0\n"), &["timing.tick_ms", "1 to 60000"]),
        (
            "TOML election not above heartbeat",
            format!("{NODE0}[timing]\nelection_ticks = 2\nheartbeat_ticks = 2\n"),
            &["timing.election_ticks", "greater than timing.heartbeat_ticks"],
        ),
        ("TOML zero heartbeat", format!("{NODE0}[timing]\nheartbeat_ticks = 0\n"), &["timing.heartbeat_ticks"]),
        (
            "TOML absurd election timeout",
            format!("{NODE0}[timing]\nelection_ticks = 4294967295\n"),
            &["timing.election_ticks", "at most 1073741824"],
        ),
        ("TOML zero snapshot threshold", format!("snapshot_threshold = 0\n{NODE0}"), &["snapshot_threshold"]),
        (
            "TOML message cap above gRPC's",
            format!("max_message_bytes = 4294967296\n{NODE0}"),
            &["max_message_bytes", "4294967295"],
        ),
        (
            "TOML value larger than message",
            format!("max_message_bytes = 65536\nmax_value_bytes = 65537\n{NODE0}"),
            &["max_value_bytes", "fit in a message"],
        ),
        (
            // It used to pass here and stop the node at WAL open (16), or
            // leave no room for any write (under 256).
            "TOML message cap too small for any write",
            format!("max_message_bytes = 16\nmax_value_bytes = 1\n{NODE0}"),
            &["max_message_bytes", "expected 65536 (64 KiB)"],
        ),
        (
            "TOML message cap just below the minimum",
            format!("max_message_bytes = 65535\nmax_value_bytes = 1\n{NODE0}"),
            &["max_message_bytes", "out of range"],
        ),
        (
            "TOML snapshot cap too small",
            format!("max_snapshot_bytes = 1000\n{NODE0}"),
            &["max_snapshot_bytes", "1048576 (1 MiB)"],
        ),
        (
            "TOML value larger than the store holds",
            format!("max_message_bytes = 100000000\nmax_value_bytes = 67108865\n{NODE0}"),
            &["max_value_bytes", "store holds values of at most 67108864"],
        ),
        ("TOML empty data dir", format!("data_dir = \"\"\n{NODE0}"), &["data_dir", "empty"]),
        ("TOML admin token with space", format!("admin_token = \"a b\"\n{NODE0}"), &["admin_token", "printable"]),
        ("TOML tls without key", format!("[tls]\ncert = \"c\"\n{NODE0}"), &["missing field `key`"]),
        ("TOML tls empty cert", format!("[tls]\ncert = \"\"\nkey = \"k\"\n{NODE0}"), &["tls.cert", "empty"]),
        ("bad JSON", "{\"RaftAddrs\": [\"a:1\",]}".into(), &["JSON", "line 1 column"]),
        ("JSON on line 3", "{\n\"RaftAddrs\": [\n  \"a:1\" \"b:1\"]}".into(), &["JSON", "line 3 column"]),
        ("JSON unknown field", "{\"RaftAdrs\": [\"a:1\"]}".into(), &["unknown field `RaftAdrs`", "RaftAddrs"]),
        ("JSON missing RaftAddrs", "{\"BlockAddrs\": [\"a:1\"]}".into(), &["missing field `RaftAddrs`"]),
        ("JSON no nodes", "{\"RaftAddrs\": []}".into(), &["RaftAddrs", "at least one node"]),
        ("JSON bad port", "{\"RaftAddrs\": [\"a:1\", \"b:port\"]}".into(), &["RaftAddrs[1]", "1 to 65535"]),
        (
            "JSON duplicate address",
            "{\"RaftAddrs\": [\"a:1\"], \"BlockAddrs\": [\"a:2\", \"a:1\"]}".into(),
            &["BlockAddrs[1]", "duplicate address", "RaftAddrs[0]"],
        ),
        ("text M mismatch (too few)", "M: 3\nmetadata0: a:1\nmetadata1: a:2\n".into(), &["line 1", "M: 3 but 2"]),
        ("text M mismatch (too many)", "M: 1\nmetadata0: a:1\nmetadata1: a:2\n".into(), &["line 3", "more metadataK"]),
        (
            "text gap in metadataK",
            "M: 3\nmetadata0: a:1\nmetadata2: a:2\nmetadata3: a:3\n".into(),
            &["line 3", "expected metadata1, found metadata2"],
        ),
        ("text out of order", "M: 2\nmetadata1: a:1\nmetadata0: a:2\n".into(), &["line 2", "expected metadata0"]),
        ("text leading zero", "M: 2\nmetadata0: a:1\nmetadata01: a:2\n".into(), &["line 3", "expected metadata1"]),
        ("text wrong key", "M: 1\n\nblock0: a:1\n".into(), &["line 3", "expected 'metadataK: host:port'"]),
        ("text no colon", "M: 1\nmetadata0 a:1\n".into(), &["line 2", "expected 'metadataK: host:port' (here metadata0)"]),
        ("text bad M", "M: three\nmetadata0: a:1\n".into(), &["line 1", "expected 'M: <number"]),
        ("text zero M", "M: 0\n".into(), &["line 1", "at least 1"]),
        ("text bad port", "M: 1\nmetadata0: a:99999\n".into(), &["line 2", "metadata0", "1 to 65535"]),
        (
            "text duplicate address",
            "M: 2\nmetadata0: a:1\n\nmetadata1: A:1\n".into(),
            &["line 4 (metadata1)", "duplicate address", "line 2 (metadata0)"],
        ),
        ("binary garbage", "\u{7f}ELF\u{2}\u{1}\u{1}\0\0\0".into(), &["line 1", "control character", "binary"]),
        ("NUL on a later line", format!("{NODE0}\0"), &["line 4", "U+0000"]),
    ];
    for (name, input, wanted) in cases {
        let err = parse(&input).expect_err(name);
        let msg = err.to_string();
        for want in wanted {
            assert!(msg.contains(want), "{name}: error {msg:?} should contain {want:?}");
        }
    }
}

#[test]
fn unknown_field_is_reported_for_every_table() {
    // deny_unknown_fields on each struct: a typo anywhere is an error.
    for (table, key) in [
        ("", "enable_test_rpc"),
        ("[timing]\n", "tickms"),
        ("[tls]\ncert=\"c\"\nkey=\"k\"\n", "caa"),
    ] {
        let text = format!("{table}{key} = 1\n[[nodes]]\nid = 0\naddr = \"a:1\"\n");
        let msg = parse(&text).unwrap_err().to_string();
        assert!(msg.contains(&format!("unknown field `{key}`")), "{msg}");
    }
}

#[test]
fn non_utf8_bytes_are_an_error_naming_the_line() {
    let err = parse_bytes(b"M: 1\nmetadata0: \xff\xfe:1\n").unwrap_err();
    assert!(matches!(err, ConfigError::NotUtf8 { line: 2, offset: 16 }), "{err:?}");
    assert!(err.to_string().contains("line 2"), "{err}");
}

#[test]
fn load_names_the_path_in_every_error() {
    let dir = std::env::temp_dir().join(format!("triton-config-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();

    let missing = dir.join("missing.toml");
    let msg = load(&missing).unwrap_err().to_string();
    assert!(msg.contains("missing.toml") && msg.contains("cannot read"), "{msg}");

    let bad = dir.join("bad.txt");
    std::fs::write(&bad, "M: 2\nmetadata0: a:1\n").unwrap();
    let msg = load(&bad).unwrap_err().to_string();
    assert!(
        msg.contains("bad.txt") && msg.contains("line 1") && msg.contains("M: 2 but 1"),
        "{msg}"
    );

    let big = dir.join("big.toml");
    std::fs::write(&big, vec![b'#'; (triton_config::MAX_CONFIG_BYTES + 1) as usize]).unwrap();
    let msg = load(&big).unwrap_err().to_string();
    assert!(msg.contains("big.toml") && msg.contains("larger than"), "{msg}");

    let good = dir.join("good.json");
    std::fs::write(&good, "{\"RaftAddrs\": [\"a:1\"]}").unwrap();
    assert_eq!(load(&good).unwrap().nodes, vec![node(0, "a:1")]);

    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn every_example_file_loads() {
    let mut names = Vec::new();
    for entry in std::fs::read_dir(examples_dir()).expect("examples/ exists") {
        let path = entry.unwrap().path();
        let config = load(&path).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(config.config_dir.as_deref(), Some(examples_dir().as_path()));
        // Each example also survives the TOML round trip (the text does not
        // say where the file is).
        let config = ClusterConfig {
            config_dir: None,
            ..config
        };
        assert_eq!(parse(&config.to_toml()).unwrap(), config, "{}", path.display());
        names.push(path.file_name().unwrap().to_string_lossy().into_owned());
    }
    names.sort();
    assert_eq!(names, ["cluster.json", "cluster.toml", "cluster.txt", "cluster5.toml"]);
}

#[test]
fn examples_say_what_they_show() {
    let dir = examples_dir();
    let json = load(&dir.join("cluster.json")).unwrap();
    let text = load(&dir.join("cluster.txt")).unwrap();
    assert_eq!(json.nodes, three_nodes());
    assert_eq!(json.block_stores, ["127.0.0.1:7100", "127.0.0.1:7101"]);
    assert_eq!(
        text,
        ClusterConfig {
            nodes: three_nodes(),
            config_dir: Some(dir.clone()),
            ..ClusterConfig::default()
        }
    );

    let full = load(&dir.join("cluster.toml")).unwrap();
    assert_eq!(full.nodes.len(), 3);
    assert!(full
        .nodes
        .iter()
        .all(|n| n.addr.starts_with("127.0.0.1:") && n.file_addr.is_some() && n.http_addr.is_some()));
    assert!(full.tls.as_ref().is_some_and(|t| t.ca.is_some()));
    assert!(full.admin_token.is_some() && full.data_dir.is_some() && !full.block_stores.is_empty());
    // Every top-level field is spelt out in the documented example.
    let source = std::fs::read_to_string(dir.join("cluster.toml")).unwrap();
    for key in [
        "block_stores",
        "snapshot_threshold",
        "data_dir",
        "enable_test_rpcs",
        "admin_token",
        "max_message_bytes",
        "max_value_bytes",
        "[timing]",
        "tick_ms",
        "election_ticks",
        "heartbeat_ticks",
        "[tls]",
        "cert",
        "key",
        "ca",
        "[[nodes]]",
        "file_addr",
        "http_addr",
    ] {
        assert!(source.contains(key), "cluster.toml lacks {key}");
    }

    let five = load(&dir.join("cluster5.toml")).unwrap();
    assert_eq!(five.nodes.iter().map(|n| n.id).collect::<Vec<_>>(), [0, 1, 2, 3, 4]);
}

#[test]
fn to_toml_round_trips_a_full_config() {
    let config = ClusterConfig {
        nodes: vec![
            NodeConfig {
                id: 0,
                addr: "[::1]:7000".into(),
                file_addr: Some("localhost:8080".into()),
                http_addr: Some("localhost:9000".into()),
            },
            node(9, "host-9.example:7000"),
        ],
        block_stores: vec!["b1:1".into(), "b2:2".into()],
        timing: Timing {
            tick_ms: 7,
            election_ticks: 30,
            heartbeat_ticks: 1,
            lease_reads: false,
        },
        snapshot_threshold: triton_config::MAX_TOML_INT,
        data_dir: Some("dir with \"quotes\"\nand a newline".into()),
        enable_test_rpcs: true,
        admin_token: Some("t0k3n!".into()),
        peer_token_optional: true,
        max_message_bytes: triton_config::MAX_GRPC_MESSAGE_BYTES,
        max_value_bytes: 1,
        max_snapshot_bytes: triton_config::MAX_TOML_INT,
        tls: Some(TlsConfig {
            cert: "c".into(),
            key: "k".into(),
            ca: Some("ca".into()),
        }),
        config_dir: None,
    };
    config.validate().unwrap();
    let written = config.to_toml();
    assert!(written.starts_with("# Triton cluster configuration"), "{written}");
    assert_eq!(parse(&written).unwrap(), config, "{written}");
}

/// The start command in `to_toml`'s header finds node N's data: a relative
/// or absent `data_dir` is relative to the file's directory.
#[test]
fn to_toml_header_gives_a_start_command_that_finds_the_data() {
    let header = |data_dir: Option<&str>| {
        let config = ClusterConfig {
            nodes: three_nodes(),
            data_dir: data_dir.map(PathBuf::from),
            ..ClusterConfig::default()
        };
        let written = config.to_toml();
        assert!(written.starts_with(triton_config::TOML_HEADER), "{written}");
        assert_eq!(parse(&written).unwrap(), config, "{written}");
        written
            .lines()
            .take_while(|l| l.starts_with('#'))
            .collect::<Vec<_>>()
            .join("\n")
    };
    let absolute = header(Some("/var/lib/triton"));
    assert!(
        absolute.contains("triton server --config <this file> --id N\n"),
        "{absolute}"
    );
    assert!(absolute.contains("<data_dir>/node-N"), "{absolute}");
    let relative = header(Some("triton-data"));
    assert!(relative.contains("relative to this file's directory"), "{relative}");
    let none = header(None);
    assert!(none.contains("--config <this file> --id N\n"), "{none}");
    assert!(none.contains("triton-data/node-N next to this file"), "{none}");
}

#[test]
fn validate_rejects_what_toml_cannot_hold() {
    let mut config = ClusterConfig {
        nodes: vec![node(u64::MAX, "a:1")],
        ..ClusterConfig::default()
    };
    let msg = config.validate().unwrap_err().to_string();
    assert!(msg.contains("nodes[0].id") && msg.contains("above"), "{msg}");
    config.nodes[0].id = 0;
    config.snapshot_threshold = u64::MAX;
    assert!(config
        .validate()
        .unwrap_err()
        .to_string()
        .contains("snapshot_threshold"));
}

#[test]
fn validate_rejects_each_remaining_bad_value() {
    let good = || ClusterConfig {
        nodes: three_nodes(),
        ..ClusterConfig::default()
    };
    good().validate().expect("the base config is valid");
    type Spoil = fn(&mut ClusterConfig);
    let cases: Vec<(&str, Spoil, &[&str])> = vec![
        (
            "slow tick",
            (|c| c.timing.tick_ms = 60_001),
            &["timing.tick_ms", "60001"],
        ),
        (
            "zero message cap",
            (|c| c.max_message_bytes = 0),
            &["max_message_bytes", "out of range"],
        ),
        (
            "snapshot cap above TOML's integers",
            (|c| c.max_snapshot_bytes = u64::MAX),
            &["max_snapshot_bytes", "out of range"],
        ),
        (
            "zero value cap",
            (|c| c.max_value_bytes = 0),
            &["max_value_bytes", "out of range"],
        ),
        (
            "empty token",
            (|c| c.admin_token = Some(String::new())),
            &["admin_token", "non-empty"],
        ),
        (
            "token with newline",
            (|c| c.admin_token = Some("a\nb".into())),
            &["admin_token"],
        ),
        (
            "empty CA path",
            (|c| {
                c.tls = Some(TlsConfig {
                    cert: "c".into(),
                    key: "k".into(),
                    ca: Some("".into()),
                })
            }),
            &["tls.ca", "empty"],
        ),
        (
            "empty key path",
            (|c| {
                c.tls = Some(TlsConfig {
                    cert: "c".into(),
                    key: "".into(),
                    ca: None,
                })
            }),
            &["tls.key"],
        ),
        (
            "unspecified block store",
            (|c| c.block_stores = vec!["[::]:7100".into()]),
            &["block_stores[0]", "cannot dial"],
        ),
        (
            "bad file address",
            (|c| c.nodes[2].file_addr = Some("nohost".into())),
            &["nodes[2].file_addr", "host:port"],
        ),
        ("no nodes", (|c| c.nodes.clear()), &["nodes", "at least one node"]),
    ];
    for (name, spoil, wanted) in cases {
        let mut config = good();
        spoil(&mut config);
        let msg = config.validate().expect_err(name).to_string();
        for want in wanted {
            assert!(msg.contains(want), "{name}: {msg:?} should contain {want:?}");
        }
    }
}

/// Followers redirect file clients to the leader's `file_addr`: in a cluster
/// of several nodes, a listen-on-all-interfaces one would send remote
/// clients to their own machine. A single node redirects nobody.
#[test]
fn an_unspecified_file_addr_is_refused_only_where_clients_are_redirected_to_it() {
    for unspecified in ["0.0.0.0:8080", "[::]:8080"] {
        let mut three = ClusterConfig {
            nodes: three_nodes(),
            ..ClusterConfig::default()
        };
        three.nodes[1].file_addr = Some(unspecified.into());
        let msg = three.validate().expect_err(unspecified).to_string();
        for want in ["nodes[1].file_addr", "cannot dial", "redirect"] {
            assert!(msg.contains(want), "{msg:?} should contain {want:?}");
        }
        let mut one = ClusterConfig {
            nodes: vec![node(0, "127.0.0.1:7000")],
            ..ClusterConfig::default()
        };
        one.nodes[0].file_addr = Some(unspecified.into());
        one.validate().expect("a single node may listen on every interface");
        // The HTTP port is never redirected to.
        let mut http = ClusterConfig {
            nodes: three_nodes(),
            ..ClusterConfig::default()
        };
        http.nodes[1].http_addr = Some(unspecified.into());
        http.validate().expect("http_addr is only bound");
    }
    // The text of a TOML file says which node.
    let text = "[[nodes]]\nid = 0\naddr = \"10.0.0.1:7000\"\nfile_addr = \"0.0.0.0:8080\"\n\
                [[nodes]]\nid = 1\naddr = \"10.0.0.2:7000\"\nfile_addr = \"10.0.0.2:8080\"\n";
    let msg = parse(text).unwrap_err().to_string();
    assert!(
        msg.contains("nodes[0].file_addr") && msg.contains("0.0.0.0:8080"),
        "{msg}"
    );
}

#[test]
fn validate_rejects_a_non_utf8_path() {
    use std::os::unix::ffi::OsStrExt;
    let config = ClusterConfig {
        nodes: three_nodes(),
        data_dir: Some(std::ffi::OsStr::from_bytes(b"data\xff").into()),
        ..ClusterConfig::default()
    };
    let msg = config.validate().unwrap_err().to_string();
    assert!(msg.contains("data_dir") && msg.contains("not UTF-8"), "{msg}");
}

#[test]
fn the_admin_token_never_appears_in_an_error() {
    let config = ClusterConfig {
        nodes: three_nodes(),
        admin_token: Some("secret token".into()),
        ..ClusterConfig::default()
    };
    let msg = config.validate().unwrap_err().to_string();
    assert!(msg.contains("admin_token") && !msg.contains("secret"), "{msg}");
}

#[test]
#[should_panic(expected = "TOML cannot hold")]
fn to_toml_panics_only_on_values_validate_rejects() {
    use std::os::unix::ffi::OsStrExt;
    let config = ClusterConfig {
        nodes: three_nodes(),
        data_dir: Some(std::ffi::OsStr::from_bytes(b"data\xff").into()),
        ..ClusterConfig::default()
    };
    assert!(config.validate().is_err());
    let _ = config.to_toml();
}

#[test]
fn errors_are_self_contained_so_chains_do_not_repeat_them() {
    use std::error::Error;
    let dir = std::env::temp_dir().join(format!("triton-config-chain-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let bad = dir.join("bad.toml");
    std::fs::write(&bad, "[[nodes]]\nid = 0\n").unwrap();
    let errors = [
        load(&dir.join("missing.toml")).unwrap_err(),
        load(&bad).unwrap_err(),
        parse("{").unwrap_err(),
        parse("x = ").unwrap_err(),
    ];
    for err in errors {
        assert!(err.source().is_none(), "{err}");
    }
    let msg = load(&bad).unwrap_err().to_string();
    assert!(
        msg.contains("bad.toml") && msg.contains("line 1") && msg.contains("missing field `addr`"),
        "{msg}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn ids_from_requests_map_to_raft_ids_only_within_a_configs_range() {
    let max = triton_config::MAX_TOML_INT;
    assert_eq!(ClusterConfig::checked_raft_id(0), Some(1));
    assert_eq!(ClusterConfig::checked_raft_id(max), Some(max + 1));
    assert_eq!(ClusterConfig::checked_raft_id(max + 1), None);
    assert_eq!(ClusterConfig::checked_raft_id(u64::MAX), None);
}

/// A relative `data_dir`, and the default one, are relative to the config
/// file's directory, not to where the server happens to be started: started
/// from elsewhere, a node used to find an empty directory and rejoin its
/// cluster with no log and no vote.
#[test]
fn a_relative_data_dir_is_relative_to_the_config_file() {
    let dir = std::env::temp_dir().join(format!("triton-config-datadir-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let nodes = "[[nodes]]\nid = 0\naddr = \"127.0.0.1:7000\"\n[[nodes]]\nid = 1\naddr = \"127.0.0.1:7001\"\n";
    let write = |name: &str, head: &str| {
        let path = dir.join(name);
        std::fs::write(&path, format!("{head}{nodes}")).unwrap();
        path
    };
    let relative = load(&write("relative.toml", "data_dir = \"./data\"\n")).unwrap();
    assert_eq!(relative.node_data_dir(1), dir.join("./data").join("node-1"));
    let default = load(&write("default.toml", "")).unwrap();
    assert_eq!(default.node_data_dir(0), dir.join("triton-data/node-0"));
    let absolute = load(&write("absolute.toml", "data_dir = \"/var/lib/triton\"\n")).unwrap();
    assert_eq!(absolute.node_data_dir(1), Path::new("/var/lib/triton/node-1"));
    // The field keeps what the file says (`triton up` checks it as written).
    assert_eq!(relative.data_dir.as_deref(), Some(Path::new("./data")));
    assert_eq!(default.data_dir, None);
    // A config path given relative to the working directory still names
    // an absolute directory.
    let cwd = std::env::current_dir().unwrap();
    let from_cwd = pathdiff(&dir.join("default.toml"), &cwd);
    let config = load(&from_cwd).unwrap();
    assert!(
        config.node_data_dir(0).is_absolute(),
        "{}",
        config.node_data_dir(0).display()
    );
    assert_eq!(
        config.config_dir.unwrap().canonicalize().unwrap(),
        dir.canonicalize().unwrap()
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

/// `to` as a path relative to `from` (both absolute).
fn pathdiff(to: &Path, from: &Path) -> PathBuf {
    let up = from.components().count() - 1;
    let mut rel: PathBuf = std::iter::repeat_n("..", up).collect();
    rel.push(to.strip_prefix("/").unwrap());
    rel
}
