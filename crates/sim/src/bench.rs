//! The CPU cost of the core: a 3-node cluster in one thread with an
//! instant network and in-memory storage, so only the cores' own work is
//! measured. Comparable to openraft's in-memory benchmark (its anchor:
//! ~33k-70k ops/s with one client, ~1.0M-1.8M ops/s with 256 clients on an
//! M1 Max).

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use bytes::Bytes;
use triton_raft::{Config, InitialState, Membership, Message, NodeId, Raft};

/// One measurement.
#[derive(Clone, Debug)]
pub struct CoreThroughput {
    pub proposers: usize,
    pub committed: u64,
    pub elapsed: Duration,
}

impl CoreThroughput {
    pub fn ops_per_sec(&self) -> f64 {
        self.committed as f64 / self.elapsed.as_secs_f64()
    }
}

/// Runs `proposers` closed-loop clients (each waits for its last proposal
/// to be applied by the leader before proposing again) for `duration`.
pub fn core_throughput(proposers: usize, payload: usize, duration: Duration) -> CoreThroughput {
    assert!(proposers > 0);
    let ids: Vec<NodeId> = vec![1, 2, 3];
    let mut nodes: Vec<Raft> = ids
        .iter()
        .map(|&id| {
            let mut c = Config::new(id);
            c.max_inflight_msgs = 1024;
            let init = InitialState {
                membership: Membership::with_voters(ids.clone()),
                ..Default::default()
            };
            Raft::new(c, init).expect("valid config")
        })
        .collect();
    let mut net: VecDeque<Message> = VecDeque::new();
    nodes[0]
        .force_campaign()
        .expect("the benchmark runs without lease reads");
    let mut outstanding = 0usize;
    let mut committed = 0u64;
    let payload = Bytes::from(vec![7u8; payload]);
    let mut start = None;
    loop {
        // Let proposers fill up once the leader has committed its no-op.
        if nodes[0].is_leader() && nodes[0].commit_index() > 0 {
            let t0 = *start.get_or_insert_with(Instant::now);
            if t0.elapsed() >= duration {
                return CoreThroughput {
                    proposers,
                    committed,
                    elapsed: t0.elapsed(),
                };
            }
            while outstanding < proposers {
                nodes[0].propose(payload.clone()).expect("leader accepts");
                outstanding += 1;
            }
        }
        for (i, node) in nodes.iter_mut().enumerate() {
            while node.has_ready() {
                let rd = node.ready();
                net.extend(rd.messages);
                // In-memory storage: persisting is a no-op.
                net.extend(rd.persisted_messages);
                if i == 0 {
                    let n = rd.committed_entries.iter().filter(|e| !e.data.is_empty()).count();
                    committed += n as u64;
                    outstanding -= n.min(outstanding);
                }
                node.advance();
            }
        }
        if net.is_empty() {
            for n in nodes.iter_mut() {
                n.tick();
            }
        }
        while let Some(m) = net.pop_front() {
            let to = (m.to - 1) as usize;
            nodes[to].step(m);
        }
    }
}
