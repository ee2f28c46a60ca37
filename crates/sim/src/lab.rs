//! A harness in the shape of the classic Raft lab's `config`: named
//! scenarios read like the paper's stories ("disconnect the leader, check a
//! new one is elected") and keep the lab's time and traffic budgets, in
//! simulated time.

use bytes::Bytes;
use triton_raft::{ConfChange, ConfChangeError, Index, Membership, NodeId, Term};

use crate::{Millis, Sim, SimOptions};

pub struct Lab {
    pub sim: Sim,
    connected: Vec<bool>,
}

impl Lab {
    pub fn new(nodes: usize, seed: u64) -> Lab {
        Lab::with(SimOptions::new(nodes, seed))
    }

    /// Loses 10% of messages and delays some by up to 30 ms (reordering).
    pub fn unreliable(nodes: usize, seed: u64) -> Lab {
        let mut o = SimOptions::new(nodes, seed);
        o.loss = 0.1;
        o.max_delay_ms = 30;
        Lab::with(o)
    }

    pub fn with(opts: SimOptions) -> Lab {
        let n = opts.nodes + opts.spare_nodes;
        Lab {
            sim: Sim::new(opts),
            connected: vec![true; n],
        }
    }

    pub fn n(&self) -> usize {
        self.sim.nodes.len()
    }

    /// Advances simulated time, failing the test on any safety violation.
    pub fn run(&mut self, ms: Millis) {
        if let Err(v) = self.sim.run_for(ms) {
            panic!("{v} (seed {})", self.sim.opts.seed);
        }
    }

    pub fn is_connected(&self, id: NodeId) -> bool {
        self.connected[(id - 1) as usize]
    }

    pub fn disconnect(&mut self, id: NodeId) {
        self.connected[(id - 1) as usize] = false;
        self.sim.disconnect(id);
    }

    pub fn connect(&mut self, id: NodeId) {
        self.connected[(id - 1) as usize] = true;
        self.sim.connect(id);
        // Keep other disconnected nodes cut off.
        for other in 1..=self.n() as NodeId {
            if !self.is_connected(other) {
                self.sim.disconnect(other);
            }
        }
    }

    pub fn crash(&mut self, id: NodeId) {
        self.sim.crash(id);
    }

    pub fn restart(&mut self, id: NodeId) {
        self.sim.crash(id);
        self.sim.restart(id);
    }

    pub fn alive(&self, id: NodeId) -> bool {
        self.sim.node(id).alive()
    }

    fn live_connected(&self) -> Vec<NodeId> {
        (1..=self.n() as NodeId)
            .filter(|&id| self.is_connected(id) && self.alive(id))
            .collect()
    }

    /// Waits (up to 5 s) for exactly one leader among connected nodes in the
    /// newest term, and returns it.
    pub fn check_one_leader(&mut self) -> NodeId {
        for _ in 0..10 {
            self.run(500);
            let mut by_term: std::collections::BTreeMap<Term, Vec<NodeId>> = Default::default();
            for id in self.live_connected() {
                let r = self.sim.node(id).raft();
                if r.is_leader() {
                    by_term.entry(r.term()).or_default().push(id);
                }
            }
            for (term, leaders) in &by_term {
                assert!(
                    leaders.len() <= 1,
                    "term {term} has {} leaders: {leaders:?}",
                    leaders.len()
                );
            }
            if let Some((_, leaders)) = by_term.iter().next_back() {
                return leaders[0];
            }
        }
        panic!("expected one leader within 5 s (seed {})", self.sim.opts.seed);
    }

    /// All connected nodes agree on the term; returns it.
    pub fn check_terms(&self) -> Term {
        let terms: Vec<Term> = self
            .live_connected()
            .iter()
            .map(|&id| self.sim.node(id).raft().term())
            .collect();
        assert!(
            terms.windows(2).all(|w| w[0] == w[1]),
            "servers disagree on term: {terms:?}"
        );
        terms[0]
    }

    pub fn check_no_leader(&self) {
        for id in self.live_connected() {
            assert!(!self.sim.node(id).raft().is_leader(), "node {id} leads, but should not");
        }
    }

    pub fn n_committed(&self, index: Index) -> (usize, Option<Bytes>) {
        self.sim.n_committed(index)
    }

    /// The lab's `one`: gets `cmd` committed on at least `expected` nodes
    /// within 10 s, trying every connected node as leader. With `retry`,
    /// resubmits if a leader lost it.
    pub fn one(&mut self, cmd: &[u8], expected: usize, retry: bool) -> Index {
        let cmd = Bytes::copy_from_slice(cmd);
        let start = self.sim.now;
        let mut next = 0usize;
        while self.sim.now - start < 10_000 {
            let mut index = None;
            for _ in 0..self.n() {
                next = next % self.n() + 1;
                let id = next as NodeId;
                if !self.is_connected(id) {
                    continue;
                }
                if let Ok((i, _)) = self.sim.propose(id, cmd.clone(), None) {
                    index = Some(i);
                    break;
                }
            }
            if let Some(index) = index {
                let t0 = self.sim.now;
                while self.sim.now - t0 < 2_000 {
                    let (n, data) = self.n_committed(index);
                    if n >= expected && data.as_ref() == Some(&cmd) {
                        return index;
                    }
                    self.run(20);
                }
                assert!(
                    retry,
                    "one({cmd:?}) failed to reach agreement (seed {})",
                    self.sim.opts.seed
                );
            } else {
                self.run(50);
            }
        }
        panic!(
            "one({cmd:?}) failed to reach agreement within 10 s (seed {})",
            self.sim.opts.seed
        );
    }

    /// Waits until at least `n` nodes applied `index`; returns its data.
    /// Gives up (returns `None`) if the term moves past `start_term`.
    pub fn wait(&mut self, index: Index, n: usize, start_term: Option<Term>) -> Option<Bytes> {
        for step in 0..30 {
            let (count, data) = self.n_committed(index);
            if count >= n {
                return data;
            }
            self.run(10 << step.min(6));
            if let Some(t) = start_term {
                let moved = self
                    .live_connected()
                    .iter()
                    .any(|&id| self.sim.node(id).raft().term() > t);
                if moved {
                    return None;
                }
            }
        }
        let (count, _) = self.n_committed(index);
        panic!(
            "only {count} nodes applied {index}, wanted {n} (seed {})",
            self.sim.opts.seed
        );
    }

    /// Gets a membership change through: proposes it at the leader until
    /// accepted (a pending change or a learner still catching up makes the
    /// leader refuse for a while), then waits until a leader has applied the
    /// final (non-joint) configuration. Returns that configuration.
    pub fn reconfigure(&mut self, change: ConfChange) -> Membership {
        let start = self.sim.now;
        let index = loop {
            assert!(
                self.sim.now - start < 10_000,
                "{change:?} was not accepted within 10 s (seed {})",
                self.sim.opts.seed
            );
            let leader = self.check_one_leader();
            match self.sim.propose_conf_change(leader, change) {
                Ok((index, _)) => break index,
                Err(e @ (ConfChangeError::Invalid(_) | ConfChangeError::Refused { .. })) => {
                    panic!("{change:?} refused: {e}")
                }
                Err(_) => self.run(50),
            }
        };
        while self.sim.now - start < 10_000 {
            self.run(20);
            if let Some(l) = self.sim.leader() {
                let r = self.sim.node(l).raft();
                if r.applied_index() >= index && r.membership().voters_outgoing.is_empty() {
                    return r.membership().clone();
                }
            }
        }
        panic!(
            "{change:?} at {index} did not complete within 10 s (seed {})",
            self.sim.opts.seed
        );
    }

    /// Proposes at `id` directly (no waiting).
    pub fn start(&mut self, id: NodeId, cmd: &[u8]) -> Option<(Index, Term)> {
        self.sim.propose(id, Bytes::copy_from_slice(cmd), None).ok()
    }

    pub fn messages(&self) -> u64 {
        self.sim.traffic.messages
    }

    pub fn bytes(&self) -> u64 {
        self.sim.traffic.bytes
    }
}
