//! Turning a node's status into `/status` JSON and `/metrics` text.
//!
//! Why a separate document type ([`StatusDoc`]) rather than serialising the
//! node's own structs: the JSON is an interface (the dashboard and `triton
//! up` read it, possibly from a node of another build), so it uses the
//! user-facing ids (config ids, not Raft ids) and only says what it means.

use std::fmt::Write as _;

use serde::{Deserialize, Serialize};
use triton_config::ClusterConfig;
use triton_node::driver::NodeStatus;
use triton_node::members::AddressBook;
use triton_node::metrics::APPLY_LATENCY_BOUNDS_MS;

/// One member of the cluster: a node of the config or of the configuration in
/// force (one that joined later has only the gRPC address it joined with).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberDoc {
    /// User-facing id.
    pub id: u64,
    /// gRPC address (KV clients, peers).
    pub addr: String,
    /// File-server address, if configured.
    pub file_addr: Option<String>,
    /// HTTP address (metrics, status, dashboard), if configured.
    pub http_addr: Option<String>,
    /// Its place in the configuration this node has in force: `voter`,
    /// `learner`, `outgoing` (old half of a joint configuration) or `none`.
    #[serde(default)]
    pub membership: String,
}

/// A peer's replication progress as the leader sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerDoc {
    /// User-facing id.
    pub id: u64,
    /// Highest index known to be on the peer.
    pub matched: u64,
    /// Next index the leader sends it.
    pub next: u64,
    /// Entries the peer is behind the leader's log.
    pub lag: u64,
}

/// A change of leader this node observed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaderChange {
    /// Wall-clock time of the observation (ms since the Unix epoch).
    pub at_ms: u64,
    /// The term the new leader leads.
    pub term: u64,
    /// User-facing id of the new leader; `None` while there is none.
    pub leader: Option<u64>,
}

/// The `/status` document.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StatusDoc {
    /// This node's user-facing id.
    pub id: u64,
    /// `leader`, `follower`, `candidate` or `pre-candidate`.
    pub role: String,
    /// Current term.
    pub term: u64,
    /// User-facing id of the leader this node knows of.
    pub leader: Option<u64>,
    /// Highest index known committed.
    pub commit_index: u64,
    /// Highest index applied to the store.
    pub applied_index: u64,
    /// Last index in the log.
    pub last_index: u64,
    /// Index covered by the latest snapshot.
    pub snapshot_index: u64,
    /// Frozen by the test RPC.
    pub crashed: bool,
    /// Keys in the store (`None` if the store did not answer).
    pub store_keys: Option<u64>,
    /// Writes submitted to this node.
    pub writes: u64,
    /// Writes this node answered as applied.
    pub writes_applied: u64,
    /// Reads submitted to this node.
    pub reads: u64,
    /// Elections this node started.
    pub elections_started: u64,
    /// Times this node became leader.
    pub times_leader: u64,
    /// Raft messages this node sent.
    pub messages_sent: u64,
    /// Replication progress of each peer (leader only).
    pub peers: Vec<PeerDoc>,
    /// Every member of the configuration, with its addresses.
    pub members: Vec<MemberDoc>,
    /// Recent leader changes observed here, oldest first.
    pub leader_changes: Vec<LeaderChange>,
    /// Wall-clock time of this document (ms since the Unix epoch).
    pub now_ms: u64,
}

/// Raft ids are config ids + 1 ([`ClusterConfig::raft_id`]).
fn user_id(raft_id: u64) -> u64 {
    raft_id.saturating_sub(1)
}

/// Builds the `/status` document. Its members are the config's nodes (with
/// every face's address; `none` if removed since) and every node of the
/// configuration in force (`addresses` gives a newcomer's gRPC address).
pub fn status_doc(
    config: &ClusterConfig,
    addresses: &AddressBook,
    status: &NodeStatus,
    store_keys: Option<u64>,
    leader_changes: Vec<LeaderChange>,
    now_ms: u64,
) -> StatusDoc {
    let m = &status.metrics;
    StatusDoc {
        id: user_id(status.raft_id),
        role: status.role.clone(),
        term: status.term,
        leader: status.leader.map(user_id),
        commit_index: status.commit_index,
        applied_index: status.applied_index,
        last_index: status.last_index,
        snapshot_index: status.snapshot_index,
        crashed: status.crashed,
        store_keys,
        writes: m.writes,
        writes_applied: m.writes_applied,
        reads: m.reads,
        elections_started: m.elections_started,
        times_leader: m.times_leader,
        messages_sent: m.messages_sent,
        peers: m
            .peers
            .iter()
            .map(|p| PeerDoc {
                id: user_id(p.id),
                matched: p.matched,
                next: p.next,
                lag: status.last_index.saturating_sub(p.matched),
            })
            .collect(),
        members: members(config, addresses, status),
        leader_changes,
        now_ms,
    }
}

fn members(config: &ClusterConfig, addresses: &AddressBook, status: &NodeStatus) -> Vec<MemberDoc> {
    let mut raft_ids: std::collections::BTreeSet<u64> =
        config.nodes.iter().map(|n| ClusterConfig::raft_id(n.id)).collect();
    raft_ids.extend(status.membership.all_nodes());
    let members: Vec<MemberDoc> = raft_ids
        .into_iter()
        .map(|raft_id| {
            let membership = status.membership.role_of(raft_id).to_string();
            match config.nodes.iter().find(|n| ClusterConfig::raft_id(n.id) == raft_id) {
                Some(n) => MemberDoc {
                    id: n.id,
                    addr: n.addr.clone(),
                    file_addr: n.file_addr.clone(),
                    http_addr: n.http_addr.clone(),
                    membership,
                },
                None => MemberDoc {
                    id: user_id(raft_id),
                    addr: addresses.get(raft_id).unwrap_or_default().to_string(),
                    file_addr: None,
                    http_addr: None,
                    membership,
                },
            }
        })
        .collect();
    debug_assert!(members.windows(2).all(|w| w[0].id < w[1].id), "one row per node, by id");
    members
}

/// Parses a `/status` document (for `triton up` and tests).
pub fn parse_status(json: &str) -> anyhow::Result<StatusDoc> {
    Ok(serde_json::from_str(json)?)
}

const ROLES: [&str; 4] = ["leader", "follower", "candidate", "pre-candidate"];

/// Renders Prometheus' text exposition format (version 0.0.4).
pub fn prometheus(status: &NodeStatus, store_keys: Option<u64>) -> String {
    let mut out = String::with_capacity(4096);
    let m = &status.metrics;
    let mut gauge = |name: &str, help: &str, kind: &str, value: u64| {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}");
    };
    gauge("triton_term", "Current Raft term.", "gauge", status.term);
    gauge(
        "triton_commit_index",
        "Highest log index known committed.",
        "gauge",
        status.commit_index,
    );
    gauge(
        "triton_applied_index",
        "Highest log index applied to the store.",
        "gauge",
        status.applied_index,
    );
    gauge(
        "triton_last_index",
        "Last index in the log.",
        "gauge",
        status.last_index,
    );
    gauge(
        "triton_snapshot_index",
        "Index covered by the latest snapshot.",
        "gauge",
        status.snapshot_index,
    );
    gauge(
        "triton_log_entries",
        "Entries in the log after the snapshot.",
        "gauge",
        status.last_index.saturating_sub(status.snapshot_index),
    );
    gauge(
        "triton_crashed",
        "1 if frozen by the test RPC.",
        "gauge",
        u64::from(status.crashed),
    );
    if let Some(k) = store_keys {
        gauge("triton_store_keys", "Keys in the replicated store.", "gauge", k);
    }
    gauge(
        "triton_proposals_total",
        "Writes submitted to this node.",
        "counter",
        m.writes,
    );
    gauge(
        "triton_writes_applied_total",
        "Writes this node answered as applied.",
        "counter",
        m.writes_applied,
    );
    gauge(
        "triton_reads_total",
        "Reads submitted to this node.",
        "counter",
        m.reads,
    );
    gauge(
        "triton_lease_reads_total",
        "Linearizable reads answered on the leader's lease, without a heartbeat round.",
        "counter",
        m.lease_reads,
    );
    gauge(
        "triton_elections_total",
        "Elections this node started.",
        "counter",
        m.elections_started,
    );
    gauge(
        "triton_times_leader_total",
        "Times this node became leader.",
        "counter",
        m.times_leader,
    );
    gauge(
        "triton_messages_sent_total",
        "Raft messages sent.",
        "counter",
        m.messages_sent,
    );
    gauge(
        "triton_snapshots_sent_total",
        "Snapshots sent to lagging peers.",
        "counter",
        m.snapshots_sent,
    );
    gauge(
        "triton_snapshots_installed_total",
        "Snapshots installed from a leader.",
        "counter",
        m.snapshots_installed,
    );
    // Signed: -1 says "no leader known".
    let leader = status.leader.map_or(-1, |l| i64::try_from(user_id(l)).unwrap_or(-1));
    let _ = writeln!(
        out,
        "# HELP triton_leader_id User-facing id of the known leader (-1: none).\n# TYPE triton_leader_id gauge\ntriton_leader_id {leader}"
    );

    let _ = writeln!(
        out,
        "# HELP triton_role 1 for this node's current role.\n# TYPE triton_role gauge"
    );
    for r in ROLES {
        let _ = writeln!(out, "triton_role{{role=\"{r}\"}} {}", u64::from(status.role == r));
    }
    let _ = writeln!(
        out,
        "# HELP triton_peer_lag_entries Entries a peer is behind the leader's log (leader only).\n# TYPE triton_peer_lag_entries gauge"
    );
    for p in &m.peers {
        let _ = writeln!(
            out,
            "triton_peer_lag_entries{{peer=\"{}\"}} {}",
            user_id(p.id),
            status.last_index.saturating_sub(p.matched)
        );
    }
    let h = &m.apply_latency;
    let _ = writeln!(
        out,
        "# HELP triton_apply_latency_seconds From proposal to applied, for this node's own proposals.\n# TYPE triton_apply_latency_seconds histogram"
    );
    let mut cumulative = 0;
    for (i, &bound) in APPLY_LATENCY_BOUNDS_MS.iter().enumerate() {
        cumulative += h.buckets.get(i).copied().unwrap_or(0);
        let _ = writeln!(
            out,
            "triton_apply_latency_seconds_bucket{{le=\"{}\"}} {cumulative}",
            bound / 1000.0
        );
    }
    let _ = writeln!(out, "triton_apply_latency_seconds_bucket{{le=\"+Inf\"}} {}", h.count);
    let _ = writeln!(out, "triton_apply_latency_seconds_sum {}", h.sum_seconds);
    let _ = writeln!(out, "triton_apply_latency_seconds_count {}", h.count);
    out
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use triton_node::metrics::PeerProgress;

    use super::*;

    fn leader_status() -> NodeStatus {
        let mut s = NodeStatus {
            raft_id: 2,
            role: "leader".into(),
            term: 7,
            leader: Some(2),
            commit_index: 40,
            applied_index: 39,
            last_index: 42,
            snapshot_index: 10,
            ..Default::default()
        };
        s.metrics.writes = 5;
        s.metrics.lease_reads = 4;
        s.metrics.peers = vec![PeerProgress {
            id: 1,
            matched: 30,
            next: 31,
        }];
        s.metrics.apply_latency.observe(Duration::from_millis(3));
        s
    }

    #[test]
    fn prometheus_lines() {
        let text = prometheus(&leader_status(), Some(3));
        for line in [
            "triton_term 7",
            "triton_commit_index 40",
            "triton_applied_index 39",
            "triton_log_entries 32",
            "triton_leader_id 1",
            "triton_store_keys 3",
            "triton_proposals_total 5",
            "triton_lease_reads_total 4",
            "triton_role{role=\"leader\"} 1",
            "triton_role{role=\"follower\"} 0",
            "triton_peer_lag_entries{peer=\"0\"} 12",
            "triton_apply_latency_seconds_bucket{le=\"0.002\"} 0",
            "triton_apply_latency_seconds_bucket{le=\"0.005\"} 1",
            "triton_apply_latency_seconds_bucket{le=\"+Inf\"} 1",
            "triton_apply_latency_seconds_count 1",
        ] {
            assert!(text.lines().any(|l| l == line), "missing {line:?} in\n{text}");
        }
        // Every sample line is `name[{labels}] value` with a numeric value.
        for l in text.lines().filter(|l| !l.starts_with('#')) {
            let (_, v) = l.rsplit_once(' ').expect("sample line");
            assert!(v.parse::<f64>().is_ok(), "bad value in {l:?}");
        }
    }

    #[test]
    fn no_leader_is_minus_one() {
        let s = NodeStatus {
            raft_id: 1,
            role: "candidate".into(),
            ..Default::default()
        };
        let text = prometheus(&s, None);
        assert!(text.contains("\ntriton_leader_id -1\n"));
        assert!(!text.contains("triton_store_keys"));
    }

    #[test]
    fn status_doc_uses_user_ids() {
        let config = triton_config::parse("M: 2\nmetadata0: 127.0.0.1:7000\nmetadata1: 127.0.0.1:7001\n").unwrap();
        let doc = status_doc(
            &config,
            &AddressBook::default(),
            &leader_status(),
            Some(3),
            Vec::new(),
            99,
        );
        assert_eq!(doc.id, 1);
        assert_eq!(doc.leader, Some(1));
        assert_eq!(doc.peers[0].id, 0);
        assert_eq!(doc.peers[0].lag, 12);
        assert_eq!(doc.members.len(), 2);
        let json = serde_json::to_string(&doc).unwrap();
        let back = parse_status(&json).unwrap();
        assert_eq!(back, doc);
        assert!(parse_status("{\"id\": 1}").is_err());
        assert!(parse_status("not json").is_err());
    }

    #[test]
    fn members_are_the_configs_nodes_and_the_configuration_in_force() {
        let config = triton_config::parse("M: 2\nmetadata0: 127.0.0.1:7000\nmetadata1: 127.0.0.1:7001\n").unwrap();
        // Node 3 (Raft id 4) joined after the config was written, as a
        // learner; node 1 (Raft id 2) has been removed.
        let mut status = leader_status();
        status.membership = triton_raft::Membership {
            voters: [1].into(),
            learners: [4].into(),
            ..Default::default()
        };
        let mut book = AddressBook::default();
        book.insert(4, "127.0.0.1:7003").unwrap();
        let doc = status_doc(&config, &book, &status, None, Vec::new(), 99);
        let rows: Vec<(u64, &str, &str)> = doc
            .members
            .iter()
            .map(|m| (m.id, m.addr.as_str(), m.membership.as_str()))
            .collect();
        assert_eq!(
            rows,
            [
                (0, "127.0.0.1:7000", "voter"),
                (1, "127.0.0.1:7001", "none"),
                (3, "127.0.0.1:7003", "learner")
            ]
        );
        assert_eq!(doc.members[2].http_addr, None);
    }
}
