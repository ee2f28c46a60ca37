//! The cluster configuration of Triton, read from one of three formats.
//!
//! Every `triton server` process of a cluster loads the same file and picks
//! its own entry with `--id`, so the file must mean the same thing on every
//! node and be rejected, with the line or field named, on every node when it
//! is wrong. [`parse`] detects the format from the content:
//!
//! * **JSON** (the text starts with `{`), the SurfStore form
//!   `{"RaftAddrs": ["host:port", ...], "BlockAddrs": ["host:port", ...]}`:
//!   node `i` is `RaftAddrs[i]`, block stores are `BlockAddrs`.
//! * **Text** (the first non-blank line starts with `M:`), the form
//!   `M: 3` followed by `metadata0: host:port`, `metadata1: ...` lines, in
//!   order, with blank lines allowed: node `K` is `metadataK`.
//! * **TOML** otherwise, the native form: every field of [`ClusterConfig`]
//!   (see `examples/cluster.toml`, which documents each one). Unknown keys
//!   are errors, so a typo cannot silently leave a default in place.
//!
//! In the JSON and text forms ids are positions (0-based) and every other
//! field takes its default. All three are checked by
//! [`ClusterConfig::validate`] before [`parse`] returns.
//!
//! ```
//! let config = triton_config::parse("M: 2\nmetadata0: 127.0.0.1:7000\nmetadata1: 127.0.0.1:7001\n").unwrap();
//! assert_eq!(config.node(1).unwrap().addr, "127.0.0.1:7001");
//! assert_eq!(config.timing.tick_ms, 50);
//! let again = triton_config::parse(&config.to_toml()).unwrap();
//! assert_eq!(again, config);
//! ```

#![warn(missing_docs)]

mod addr;
pub use addr::{check_host_port, same_host_port};
mod json;
mod text;

use std::collections::HashMap;
use std::fmt;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Largest config file [`load`] reads. Real configs are a few KiB; the cap
/// only stops a wrong path (a disk image, `/dev/zero`) from eating memory.
pub const MAX_CONFIG_BYTES: u64 = 1 << 20;

/// Largest node id and snapshot threshold: the TOML spec's integers are
/// signed 64-bit, so larger values would not be portable to other TOML
/// tools, and it keeps [`ClusterConfig::raft_id`] from overflowing.
pub const MAX_TOML_INT: u64 = i64::MAX as u64;

/// The first line of every [`ClusterConfig::to_toml`] output, by which a tool
/// (`triton up`) can tell a file it generated from one a person wrote.
pub const TOML_HEADER: &str = "# Triton cluster configuration.";

/// Largest `max_message_bytes`: a gRPC message carries a 4-byte length.
pub const MAX_GRPC_MESSAGE_BYTES: u64 = u32::MAX as u64;

/// Smallest `max_message_bytes` (64 KiB). A message must hold a command's
/// framing, a snapshot chunk's envelope and a batch of small messages;
/// below a few hundred bytes no write fits at all.
pub const MIN_MESSAGE_BYTES: u64 = 64 * 1024;

/// Default `max_snapshot_bytes` (1 GiB).
pub const DEFAULT_MAX_SNAPSHOT_BYTES: u64 = 1 << 30;

/// Smallest `max_snapshot_bytes` (1 MiB): an empty store's snapshot is a
/// few dozen bytes, but a cap this low is almost certainly a unit mistake.
pub const MIN_SNAPSHOT_BYTES: u64 = 1 << 20;

/// Largest `max_value_bytes`: the replicated store's own limit (its
/// `StoreOptions`, the same on every replica whatever its config says). A
/// larger value would be replicated and then refused when applied.
pub const MAX_VALUE_BYTES: u64 = 64 * 1024 * 1024;

/// Largest `timing.election_ticks`: the core draws timeouts from up to twice
/// it in a `u32` (the core's own limit is the same).
pub const MAX_ELECTION_TICKS: u32 = 1 << 30;
/// Largest `timing.tick_ms` (one minute): a slower clock makes elections take
/// hours and is certainly a unit mistake.
pub const MAX_TICK_MS: u64 = 60_000;

/// The whole cluster as every node sees it.
///
/// Fields missing from a TOML file take the defaults listed on each field
/// (the same as [`ClusterConfig::default`], except that the default has no
/// nodes and so is not valid until some are added).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ClusterConfig {
    /// The Raft nodes, in ascending id order. At least one is required.
    /// TOML: one `[[nodes]]` table per node.
    pub nodes: Vec<NodeConfig>,
    /// Block store (SurfStore) addresses, `host:port`. Default: none.
    /// JSON: `BlockAddrs`; TOML: `block_stores = ["host:port", ...]`.
    pub block_stores: Vec<String>,
    /// Raft clock settings. TOML: the `[timing]` table. Default: [`Timing::default`].
    pub timing: Timing,
    /// Number of log entries applied since the last snapshot that triggers a
    /// new one (and lets the log before it be discarded). Default: 10 000.
    pub snapshot_threshold: u64,
    /// Parent directory of the nodes' data: node `<id>` keeps its log and
    /// snapshots in `<data_dir>/node-<id>` (see [`ClusterConfig::node_data_dir`]),
    /// so one file serves a cluster on one machine. A relative path is
    /// relative to the directory of the config file (not to where the
    /// server is started). Default (`None`): `triton-data`, next to the
    /// config file. The server's `--data-dir` flag names the node's own
    /// directory and takes precedence over both.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data_dir: Option<PathBuf>,
    /// Whether the server accepts the test and fault-injection RPCs (partition,
    /// crash, slow disk). They are refused unless this is `true`, so a
    /// production cluster cannot be broken by a stray test client.
    /// Default: `false`.
    pub enable_test_rpcs: bool,
    /// Shared secret that admin RPCs (membership changes, snapshots on
    /// demand) and fault RPCs must carry in their metadata, as
    /// `authorization: Bearer <token>` (checked by `triton_node::auth`).
    /// `None` (the default): no token is checked. Printable ASCII without
    /// spaces, because it travels in gRPC metadata. Never printed by `Debug`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub admin_token: Option<String>,
    /// Accept peers' Raft streams that carry no token (a wrong one is still
    /// refused). Only for a rolling upgrade from a version whose nodes did
    /// not send it: set it on every node, upgrade them all, then remove it.
    /// Default: `false` (with an `admin_token`, peers must send it).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub peer_token_optional: bool,
    /// Largest gRPC message, in bytes, the server sends or accepts (it bounds
    /// AppendEntries batches and snapshot chunks too). Default: 64 MiB; at
    /// least 64 KiB ([`MIN_MESSAGE_BYTES`]), at most 4 GiB - 1. A node's log
    /// written under a larger one still opens after it is lowered (the
    /// WAL's record limit does not depend on it), but a stored value larger
    /// than the new limit can no longer be sent in one message.
    pub max_message_bytes: u64,
    /// Largest KV value or file content, in bytes, a client may store.
    /// Must not exceed `max_message_bytes`; a write whose whole command
    /// (value, key and framing) comes within 256 bytes of
    /// `max_message_bytes` is refused as too large. Default: 1 MiB; at most
    /// [`MAX_VALUE_BYTES`] (64 MiB).
    pub max_value_bytes: u64,
    /// Largest snapshot, in bytes, a node accepts from a leader. A follower
    /// holds an incoming snapshot in memory until it is complete, so this
    /// bounds what a (possibly forged) transfer can make it allocate; a
    /// store whose snapshot is larger cannot be sent to a lagging follower
    /// (the follower logs why). Default: 1 GiB; 1 MiB to 2^63 - 1.
    pub max_snapshot_bytes: u64,
    /// TLS for the gRPC port. `None` (the default): plaintext.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls: Option<TlsConfig>,
    /// The directory of the file [`load`] read this config from, where a
    /// relative `data_dir` (and the default one) starts. Not part of the
    /// file: never written by [`ClusterConfig::to_toml`]; `None` for a
    /// config made by [`parse`] (paths are then relative to the working
    /// directory).
    #[serde(skip)]
    pub config_dir: Option<PathBuf>,
}

/// One Raft node: who it is and where it listens.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeConfig {
    /// User-facing id, unique in the cluster, chosen with `--id`. The JSON
    /// and text forms number nodes 0, 1, 2, ...; TOML ids are explicit.
    /// Raft's own id is [`ClusterConfig::raft_id`] of this. Required.
    pub id: u64,
    /// gRPC `host:port`, used by peers (Raft RPCs) and clients alike, so it
    /// must be dialable: not `0.0.0.0`. Required.
    pub addr: String,
    /// `host:port` of the node's file server (the text protocol). `None`:
    /// the server picks (8080 for a single-node run). The server binds it
    /// and, with more than one node, followers redirect clients to the
    /// leader's, so it must then be dialable: not `0.0.0.0` or `[::]`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file_addr: Option<String>,
    /// `host:port` of the node's HTTP port (metrics and dashboard). `None`:
    /// the server picks, or serves none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http_addr: Option<String>,
}

/// Raft's logical clock. Raft counts ticks; `tick_ms` turns them into time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Timing {
    /// Milliseconds per tick, 1 to 60 000. Default: 50.
    pub tick_ms: u64,
    /// A follower that hears no leader for a random number of ticks in
    /// `[election_ticks + 1, 2 * election_ticks)` starts an election. Must be
    /// greater than `heartbeat_ticks`. Default: 10 (550-1000 ms at 50 ms).
    pub election_ticks: u32,
    /// A leader sends heartbeats every this many ticks; at least 1.
    /// Default: 2 (100 ms at 50 ms).
    pub heartbeat_ticks: u32,
    /// Linearizable reads on the leader's lease: no heartbeat round per
    /// read while a quorum acknowledged one within `election_ticks - 1`
    /// ticks less 10%. Assumes the nodes' clocks run at rates less than 10%
    /// apart (real clocks differ by parts per million) and needs
    /// `election_ticks >= 3`. `false`: every read confirms leadership with
    /// a heartbeat round (ReadIndex). The lease is counted in the leader's
    /// ticks and honoured in the followers', so every node must run the
    /// same `[timing]` (peers refuse each other's messages otherwise):
    /// change it only with the whole cluster stopped.
    /// Default: `true`.
    pub lease_reads: bool,
}

/// TLS files for the gRPC port, PEM-encoded. `triton_node::tls` reads them
/// when a node or client starts and names the field of any file that is
/// missing or holds no certificate or key; this crate only checks that the
/// paths are given, since a config is parsed on machines (clients, the
/// `triton up` generator) where a node's key files need not exist.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// The node's certificate chain. Required.
    pub cert: PathBuf,
    /// The certificate's private key. Required.
    pub key: PathBuf,
    /// CA bundle to verify peers with (mutual TLS). `None`: peers are not
    /// asked for certificates.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca: Option<PathBuf>,
}

/// Why a config was rejected. The message names the file (for [`load`]),
/// the line (TOML and text: line number; JSON: line and column) or the field,
/// and what was expected.
///
/// Each message is complete in itself and `source()` is always `None`, so
/// printing with anyhow's `{:#}` (which appends the source chain) does not
/// repeat the inner error.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config file {}: {cause}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// What the OS said.
        cause: std::io::Error,
    },
    /// The file is larger than [`MAX_CONFIG_BYTES`].
    #[error("config file {} is larger than {limit} bytes; is it the right file?", path.display())]
    TooLarge {
        /// The file.
        path: PathBuf,
        /// [`MAX_CONFIG_BYTES`].
        limit: u64,
    },
    /// A parse or validation error in a file read by [`load`].
    #[error("{}: {error}", path.display())]
    InFile {
        /// The file.
        path: PathBuf,
        /// What is wrong with its content.
        error: Box<ConfigError>,
    },
    /// The bytes are not UTF-8 text.
    #[error("line {line}: not UTF-8 text (bad byte at offset {offset}); is this a config file?")]
    NotUtf8 {
        /// 1-based line of the bad byte.
        line: usize,
        /// Byte offset of the bad byte.
        offset: usize,
    },
    /// Nothing but whitespace.
    #[error("the config is empty; expected TOML ([[nodes]] tables), JSON ({{\"RaftAddrs\": [...]}}) or text ('M: n' then 'metadataK: host:port' lines)")]
    Empty,
    /// The TOML form did not parse or did not fit [`ClusterConfig`]
    /// (toml's message gives line, column and the field).
    #[error("invalid TOML config: {}", .0.to_string().trim_end())]
    Toml(toml::de::Error),
    /// The JSON form did not parse or did not fit
    /// `{"RaftAddrs": [...], "BlockAddrs": [...]}`.
    #[error("invalid JSON config: {0}")]
    Json(serde_json::Error),
    /// A problem at one line of the text (or of any form, for characters no
    /// form allows).
    #[error("line {line}: {message}")]
    Line {
        /// 1-based line number.
        line: usize,
        /// What was wrong and what was expected.
        message: String,
    },
    /// A value that parsed but is not acceptable.
    #[error("{field}: {message}")]
    Invalid {
        /// Where the value is: a TOML path like `nodes[1].addr` or
        /// `timing.tick_ms`, a JSON one like `RaftAddrs[2]`, or `line N (metadataK)`.
        field: String,
        /// What was wrong and what was expected.
        message: String,
    },
    /// `--id` names no node of the config.
    #[error("no node with id {id} in the config; its node ids are {known:?}")]
    UnknownNode {
        /// The id asked for.
        id: u64,
        /// The ids the config has.
        known: Vec<u64>,
    },
}

impl Default for ClusterConfig {
    fn default() -> Self {
        ClusterConfig {
            nodes: Vec::new(),
            block_stores: Vec::new(),
            timing: Timing::default(),
            snapshot_threshold: 10_000,
            data_dir: None,
            enable_test_rpcs: false,
            admin_token: None,
            peer_token_optional: false,
            max_message_bytes: 64 << 20,
            max_value_bytes: 1 << 20,
            max_snapshot_bytes: DEFAULT_MAX_SNAPSHOT_BYTES,
            tls: None,
            config_dir: None,
        }
    }
}

impl Default for Timing {
    fn default() -> Self {
        Timing {
            tick_ms: 50,
            election_ticks: 10,
            heartbeat_ticks: 2,
            lease_reads: true,
        }
    }
}

impl Timing {
    /// The length of one tick.
    pub fn tick(&self) -> Duration {
        Duration::from_millis(self.tick_ms)
    }

    /// Everything two nodes must agree on for leader leases to be safe (a
    /// lease is counted in the leader's ticks and honoured in the
    /// followers'): peers compare it when a transport stream opens and
    /// refuse a peer whose timing differs.
    pub fn signature(&self) -> String {
        format!(
            "tick_ms={} election_ticks={} heartbeat_ticks={} lease_reads={}",
            self.tick_ms, self.election_ticks, self.heartbeat_ticks, self.lease_reads
        )
    }

    /// How often a leader sends heartbeats.
    pub fn heartbeat_interval(&self) -> Duration {
        self.tick().saturating_mul(self.heartbeat_ticks)
    }

    /// The range a follower's election timeout is drawn from:
    /// `[election_ticks + 1, 2 * election_ticks)` ticks (the core's rule).
    /// (Saturating, so even an unvalidated timing cannot overflow.)
    pub fn election_timeout(&self) -> std::ops::Range<Duration> {
        let low = self.tick().saturating_mul(self.election_ticks.saturating_add(1));
        let high = self.tick().saturating_mul(self.election_ticks.saturating_mul(2));
        low..high.max(low.saturating_add(self.tick()))
    }
}

// Hand-written so that `{:?}` of a config (in logs, in panics) never shows
// the admin token.
impl fmt::Debug for ClusterConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClusterConfig")
            .field("nodes", &self.nodes)
            .field("block_stores", &self.block_stores)
            .field("timing", &self.timing)
            .field("snapshot_threshold", &self.snapshot_threshold)
            .field("data_dir", &self.data_dir)
            .field("enable_test_rpcs", &self.enable_test_rpcs)
            .field("admin_token", &self.admin_token.as_ref().map(|_| "<redacted>"))
            .field("peer_token_optional", &self.peer_token_optional)
            .field("max_message_bytes", &self.max_message_bytes)
            .field("max_value_bytes", &self.max_value_bytes)
            .field("max_snapshot_bytes", &self.max_snapshot_bytes)
            .field("tls", &self.tls)
            .field("config_dir", &self.config_dir)
            .finish()
    }
}

/// A place in the config that an error can point at. Each format names
/// these in its own terms (see [`Labels`]).
#[derive(Debug, Clone, Copy)]
pub(crate) enum Field {
    /// The list of nodes as a whole.
    Nodes,
    /// `nodes[i].id`.
    NodeId(usize),
    /// `nodes[i].addr`.
    NodeAddr(usize),
    /// `nodes[i].file_addr`.
    NodeFileAddr(usize),
    /// `nodes[i].http_addr`.
    NodeHttpAddr(usize),
    /// `block_stores[i]`.
    BlockStore(usize),
}

/// Names a [`Field`] the way the user wrote it: TOML paths, JSON keys, or
/// text-form line numbers.
pub(crate) trait Labels {
    fn label(&self, field: Field) -> String;
}

/// Labels in the native (TOML) vocabulary, which is also the Rust one.
struct TomlLabels;

impl Labels for TomlLabels {
    fn label(&self, field: Field) -> String {
        match field {
            Field::Nodes => "nodes".to_string(),
            Field::NodeId(i) => format!("nodes[{i}].id"),
            Field::NodeAddr(i) => format!("nodes[{i}].addr"),
            Field::NodeFileAddr(i) => format!("nodes[{i}].file_addr"),
            Field::NodeHttpAddr(i) => format!("nodes[{i}].http_addr"),
            Field::BlockStore(i) => format!("block_stores[{i}]"),
        }
    }
}

fn invalid(field: impl Into<String>, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        field: field.into(),
        message: message.into(),
    }
}

impl ClusterConfig {
    /// The node with user-facing id `id`, or an error listing the ids there are.
    pub fn node(&self, id: u64) -> Result<&NodeConfig, ConfigError> {
        self.nodes
            .iter()
            .find(|n| n.id == id)
            .ok_or_else(|| ConfigError::UnknownNode {
                id,
                known: self.nodes.iter().map(|n| n.id).collect(),
            })
    }

    /// Raft's id for user-facing id `id`: Raft reserves 0 for "nobody", and
    /// the JSON and text forms number nodes from 0. Ids of a validated config
    /// are at most [`MAX_TOML_INT`], so this cannot overflow for them.
    pub fn raft_id(id: u64) -> u64 {
        id + 1
    }

    /// [`Self::raft_id`] of an id from a request, which no config validated:
    /// `None` for an id no config could hold.
    pub fn checked_raft_id(id: u64) -> Option<u64> {
        (id <= MAX_TOML_INT).then(|| Self::raft_id(id))
    }

    /// Where node `id` keeps its log and snapshots: `<data_dir>/node-<id>`,
    /// with `data_dir` defaulting to `triton-data`, and a relative one
    /// taken from [`ClusterConfig::config_dir`] when the config was loaded
    /// from a file. Relative to the working directory, as it used to be,
    /// a server started from another directory found an empty data
    /// directory and rejoined its cluster with no log and no vote.
    pub fn node_data_dir(&self, id: u64) -> PathBuf {
        let dir = self.data_dir.as_deref().unwrap_or(Path::new("triton-data"));
        match &self.config_dir {
            Some(base) if dir.is_relative() => base.join(dir),
            _ => dir.to_path_buf(),
        }
        .join(format!("node-{id}"))
    }

    /// Checks everything a parse cannot: at least one node; ids unique,
    /// ascending and at most [`MAX_TOML_INT`]; every address `host:port`
    /// with a port 1-65535 (and not `0.0.0.0` or `[::]` where others must
    /// dial it: `addr`, block stores, and `file_addr` in a cluster of more
    /// than one node, since redirects send clients there);
    /// no address used twice among all nodes' `addr`/`file_addr`/`http_addr`
    /// and the block stores; `0 < tick_ms <= 60 000`; `heartbeat_ticks >= 1`;
    /// `election_ticks > heartbeat_ticks`; `snapshot_threshold >= 1`;
    /// `0 < max_value_bytes <= max_message_bytes < 4 GiB` and
    /// `max_message_bytes >= 64 KiB`; `max_snapshot_bytes` from 1 MiB to
    /// 2^63 - 1; non-empty, UTF-8
    /// paths; an admin token of printable ASCII. [`parse`] calls it.
    /// Errors name the field with its TOML path.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.validate_with(&TomlLabels)
    }

    /// [`ClusterConfig::validate`], naming node and address fields with `labels`.
    pub(crate) fn validate_with(&self, labels: &dyn Labels) -> Result<(), ConfigError> {
        if self.nodes.is_empty() {
            return Err(invalid(labels.label(Field::Nodes), "at least one node is required"));
        }
        let mut index_of_id = HashMap::new();
        for (i, node) in self.nodes.iter().enumerate() {
            if node.id > MAX_TOML_INT {
                return Err(invalid(
                    labels.label(Field::NodeId(i)),
                    format!("id {} is above {MAX_TOML_INT}", node.id),
                ));
            }
            if let Some(first) = index_of_id.insert(node.id, i) {
                return Err(invalid(
                    labels.label(Field::NodeId(i)),
                    format!("duplicate id {} (also {})", node.id, labels.label(Field::NodeId(first))),
                ));
            }
        }
        for (i, pair) in self.nodes.windows(2).enumerate() {
            if pair[1].id < pair[0].id {
                return Err(invalid(
                    labels.label(Field::NodeId(i + 1)),
                    format!(
                        "id {} comes after id {}; list nodes in ascending id order",
                        pair[1].id, pair[0].id
                    ),
                ));
            }
        }
        self.check_addresses(labels)?;

        let t = &self.timing;
        if t.tick_ms == 0 || t.tick_ms > MAX_TICK_MS {
            return Err(invalid(
                "timing.tick_ms",
                format!("{} is out of range; expected 1 to {MAX_TICK_MS}", t.tick_ms),
            ));
        }
        if t.heartbeat_ticks == 0 {
            return Err(invalid("timing.heartbeat_ticks", "must be at least 1"));
        }
        if t.election_ticks > MAX_ELECTION_TICKS {
            return Err(invalid(
                "timing.election_ticks",
                format!(
                    "{} is out of range; expected at most {MAX_ELECTION_TICKS}",
                    t.election_ticks
                ),
            ));
        }
        if t.election_ticks <= t.heartbeat_ticks {
            return Err(invalid(
                "timing.election_ticks",
                format!(
                    "{} must be greater than timing.heartbeat_ticks ({}), or followers would start elections between heartbeats",
                    t.election_ticks, t.heartbeat_ticks
                ),
            ));
        }
        if t.lease_reads && t.election_ticks < 3 {
            return Err(invalid(
                "timing.lease_reads",
                format!(
                    "needs timing.election_ticks >= 3 (it is {}) to leave room for a lease; set lease_reads = false",
                    t.election_ticks
                ),
            ));
        }
        if self.snapshot_threshold == 0 || self.snapshot_threshold > MAX_TOML_INT {
            return Err(invalid(
                "snapshot_threshold",
                format!(
                    "{} is out of range; expected 1 to {MAX_TOML_INT}",
                    self.snapshot_threshold
                ),
            ));
        }
        if !(MIN_MESSAGE_BYTES..=MAX_GRPC_MESSAGE_BYTES).contains(&self.max_message_bytes) {
            return Err(invalid(
                "max_message_bytes",
                format!(
                    "{} is out of range; expected {MIN_MESSAGE_BYTES} (64 KiB) to {MAX_GRPC_MESSAGE_BYTES}",
                    self.max_message_bytes
                ),
            ));
        }
        if self.max_value_bytes == 0 || self.max_value_bytes > self.max_message_bytes {
            return Err(invalid(
                "max_value_bytes",
                format!(
                    "{} is out of range; expected 1 to max_message_bytes ({}), since a value must fit in a message",
                    self.max_value_bytes, self.max_message_bytes
                ),
            ));
        }
        if self.max_value_bytes > MAX_VALUE_BYTES {
            return Err(invalid(
                "max_value_bytes",
                format!(
                    "{} is out of range; the replicated store holds values of at most {MAX_VALUE_BYTES} bytes",
                    self.max_value_bytes
                ),
            ));
        }
        if !(MIN_SNAPSHOT_BYTES..=MAX_TOML_INT).contains(&self.max_snapshot_bytes) {
            return Err(invalid(
                "max_snapshot_bytes",
                format!(
                    "{} is out of range; expected {MIN_SNAPSHOT_BYTES} (1 MiB) to {MAX_TOML_INT}",
                    self.max_snapshot_bytes
                ),
            ));
        }
        if let Some(dir) = &self.data_dir {
            check_path("data_dir", dir)?;
        }
        if let Some(token) = &self.admin_token {
            // The token itself is never quoted in the error.
            if token.is_empty() || !token.bytes().all(|b| b.is_ascii_graphic()) {
                return Err(invalid(
                    "admin_token",
                    "must be non-empty printable ASCII without spaces (it travels in gRPC metadata); omit it to check no token",
                ));
            }
        }
        if let Some(tls) = &self.tls {
            check_path("tls.cert", &tls.cert)?;
            check_path("tls.key", &tls.key)?;
            if let Some(ca) = &tls.ca {
                check_path("tls.ca", ca)?;
            }
        }
        Ok(())
    }

    /// Every address is `host:port`, dialed ones are not the unspecified
    /// address, and no two are the same socket.
    fn check_addresses(&self, labels: &dyn Labels) -> Result<(), ConfigError> {
        // (field, address, whether other processes dial it)
        let mut all = Vec::new();
        // A follower's file server answers writes with `ERR_REDIRECT <the
        // leader's file_addr>`: with several nodes, clients dial it too.
        let file_addr_dialed = self.nodes.len() > 1;
        for (i, node) in self.nodes.iter().enumerate() {
            all.push((Field::NodeAddr(i), node.addr.as_str(), true));
            if let Some(a) = &node.file_addr {
                all.push((Field::NodeFileAddr(i), a.as_str(), file_addr_dialed));
            }
            if let Some(a) = &node.http_addr {
                all.push((Field::NodeHttpAddr(i), a.as_str(), false));
            }
        }
        for (i, a) in self.block_stores.iter().enumerate() {
            all.push((Field::BlockStore(i), a.as_str(), true));
        }
        let mut seen = HashMap::new();
        for (field, address, dialed) in all {
            let key = addr::parse_host_port(address).map_err(|m| invalid(labels.label(field), m))?;
            if dialed && key.is_unspecified() {
                let who = match field {
                    Field::NodeFileAddr(_) => {
                        "file clients cannot dial (followers redirect writes to the leader's file_addr)"
                    }
                    _ => "peers and clients cannot dial",
                };
                return Err(invalid(
                    labels.label(field),
                    format!(
                        "{} is a listen-on-all-interfaces address that {who}; give a reachable host",
                        addr::quote(address)
                    ),
                ));
            }
            if let Some(first) = seen.insert(key, field) {
                return Err(invalid(
                    labels.label(field),
                    format!(
                        "duplicate address {} (also {})",
                        addr::quote(address),
                        labels.label(first)
                    ),
                ));
            }
        }
        Ok(())
    }

    /// The config as native TOML, every field written out (defaults too), so
    /// `triton up` can write a file a person can read and edit.
    /// `parse(&c.to_toml()) == Ok(c)` for every `c` that passes
    /// [`ClusterConfig::validate`] and has no [`ClusterConfig::config_dir`]
    /// (which is where a file is, not what it says).
    ///
    /// # Panics
    ///
    /// If a value has no TOML form: a path that is not UTF-8.
    /// [`ClusterConfig::validate`] rejects those, so this never panics for a
    /// config that came from [`parse`] or [`load`].
    pub fn to_toml(&self) -> String {
        let body = toml::to_string(self).unwrap_or_else(|e| {
            panic!("ClusterConfig::to_toml: the config has a value TOML cannot hold ({e}); validate() rejects it")
        });
        // The start command must find node N's data wherever it is run
        // from: a node of several started on an empty directory refuses to
        // (or, given --new-cluster, founds the cluster again with no log and
        // no vote). `load` resolves a relative data_dir against the file's
        // directory, so the short command is exact in every case.
        let start = match &self.data_dir {
            Some(dir) if dir.is_absolute() => {
                "# Start node N with: triton server --config <this file> --id N\n\
                 # (node N keeps its data in <data_dir>/node-N, data_dir as set below)"
            }
            Some(_) => {
                "# Start node N with: triton server --config <this file> --id N\n\
                 # (node N keeps its data in <data_dir>/node-N, data_dir (below) relative to this file's directory)"
            }
            None => {
                "# Start node N with: triton server --config <this file> --id N\n\
                 # (node N keeps its data in triton-data/node-N next to this file; set data_dir to move it)"
            }
        };
        // A node of several on an empty data directory refuses to start
        // without the flag (it may have lost its data).
        let first = if self.nodes.len() > 1 {
            "\n# (the first start of a new cluster only: add --new-cluster)"
        } else {
            ""
        };
        format!("{TOML_HEADER} Every field is described in examples/cluster.toml.\n{start}{first}\n\n{body}")
    }
}

fn check_path(field: &str, path: &Path) -> Result<(), ConfigError> {
    if path.as_os_str().is_empty() {
        return Err(invalid(field, "the path is empty; omit the field to use the default"));
    }
    if path.to_str().is_none() {
        return Err(invalid(field, format!("the path {} is not UTF-8", path.display())));
    }
    Ok(())
}

/// Parses a config in any of the three forms and validates it.
///
/// The form is detected from the content (see the crate docs): JSON if the
/// text starts, after whitespace, with `{`; the text form if its first
/// non-blank line starts with `M:`; TOML otherwise. A leading UTF-8 byte
/// order mark is ignored; raw control characters other than tab and line
/// ends are rejected in every form, with their line.
pub fn parse(text: &str) -> Result<ClusterConfig, ConfigError> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    if text.trim().is_empty() {
        return Err(ConfigError::Empty);
    }
    // No form allows raw control characters (TOML allows tab; all allow line
    // ends). Catching them here gives binary garbage one clear message.
    for (n, line) in text.split('\n').enumerate() {
        if let Some(c) = line
            .trim_end_matches('\r')
            .chars()
            .find(|&c| c.is_ascii_control() && c != '\t')
        {
            return Err(ConfigError::Line {
                line: n + 1,
                message: format!(
                    "control character U+{:04X}; a config is plain text (is this a binary file?)",
                    c as u32
                ),
            });
        }
    }
    let trimmed = text.trim_start();
    if trimmed.starts_with('{') {
        json::parse(text)
    } else if text::looks_like_text_form(text) {
        text::parse(text)
    } else {
        let config: ClusterConfig = toml::from_str(text).map_err(ConfigError::Toml)?;
        config.validate()?;
        Ok(config)
    }
}

/// [`parse`] for raw bytes, as read from a file: they must be UTF-8.
pub fn parse_bytes(bytes: &[u8]) -> Result<ClusterConfig, ConfigError> {
    match std::str::from_utf8(bytes) {
        Ok(text) => parse(text),
        Err(e) => {
            let offset = e.valid_up_to();
            let line = 1 + bytes[..offset].iter().filter(|&&b| b == b'\n').count();
            Err(ConfigError::NotUtf8 { line, offset })
        }
    }
}

/// Reads the config file at `path` (at most [`MAX_CONFIG_BYTES`]) and parses
/// it with [`parse_bytes`]. Every error names the path. The config's
/// [`ClusterConfig::config_dir`] is the file's directory (made absolute), so
/// [`ClusterConfig::node_data_dir`] does not depend on the working directory.
pub fn load(path: &Path) -> Result<ClusterConfig, ConfigError> {
    let read_err = |cause| ConfigError::Read {
        path: path.to_path_buf(),
        cause,
    };
    let file = std::fs::File::open(path).map_err(read_err)?;
    let mut bytes = Vec::new();
    file.take(MAX_CONFIG_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(read_err)?;
    if bytes.len() as u64 > MAX_CONFIG_BYTES {
        return Err(ConfigError::TooLarge {
            path: path.to_path_buf(),
            limit: MAX_CONFIG_BYTES,
        });
    }
    let mut config = parse_bytes(&bytes).map_err(|e| ConfigError::InFile {
        path: path.to_path_buf(),
        error: Box::new(e),
    })?;
    // The file was just opened by this path, so only a working directory
    // that vanished meanwhile makes this fail (paths then stay relative).
    config.config_dir = std::path::absolute(path)
        .ok()
        .and_then(|p| p.parent().map(Path::to_path_buf));
    Ok(config)
}

/// Checks the properties the fuzz target and its corpus test rely on, for
/// one input: [`parse_bytes`] returns instead of panicking, an error has a
/// non-empty message, and an accepted config validates and survives a
/// [`ClusterConfig::to_toml`] round trip unchanged.
///
/// # Panics
///
/// When one of those properties fails: that is the bug it exists to report.
#[doc(hidden)]
pub fn check_invariants(bytes: &[u8]) {
    match parse_bytes(bytes) {
        Ok(config) => {
            config.validate().expect("a parsed config validates");
            let written = config.to_toml();
            let again = parse(&written).unwrap_or_else(|e| panic!("to_toml output does not parse: {e}\n{written}"));
            assert_eq!(again, config, "to_toml round trip changed the config");
        }
        Err(e) => assert!(!e.to_string().is_empty(), "an error has a message"),
    }
}
