//! The safety properties of Raft (Figure 3 of the paper), checked after
//! every simulated event. Each check keeps the facts it needs globally, so
//! it sees across nodes, terms and restarts.

use std::collections::{BTreeMap, HashMap};

use bytes::Bytes;
use triton_raft::{Body, Entry, Index, Message, NodeId, Raft, SnapshotMeta, Term};

/// A broken property, with enough detail to start debugging.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Violation {
    pub property: &'static str,
    pub detail: String,
}

impl std::fmt::Display for Violation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} violated: {}", self.property, self.detail)
    }
}

fn violation(property: &'static str, detail: String) -> Result<(), Violation> {
    Err(Violation { property, detail })
}

#[derive(Default)]
pub struct Checker {
    pub violation: Option<Violation>,
    /// Election safety: the one leader of each term.
    leaders: HashMap<Term, NodeId>,
    /// Log matching: what any log holds at (index, term): its data and the
    /// term of the entry before it. Equal (index, term) must mean equal
    /// entries and, inductively, equal prefixes.
    facts: HashMap<(Index, Term), (Bytes, Option<Term>)>,
    /// State machine safety: the entry applied at each index, by anyone.
    pub committed: BTreeMap<Index, (Term, Bytes)>,
    /// Durability: the highest commit index each node made durable.
    durable_commit: HashMap<NodeId, Index>,
    /// Ready batches in which some leader answered reads on its lease.
    pub lease_reads: u64,
}

impl Checker {
    pub fn fail(&mut self, v: Violation) {
        if self.violation.is_none() {
            self.violation = Some(v);
        }
    }

    pub fn leaders_by_term(&self) -> &HashMap<Term, NodeId> {
        &self.leaders
    }

    /// Leader `id` of `term` answered a read on its lease: the lease's
    /// promise is that no later term has a leader yet (one might have
    /// committed writes this read does not see).
    pub fn on_lease_read(&mut self, id: NodeId, term: Term) -> Result<(), Violation> {
        self.lease_reads += 1;
        if let Some((&later, &leader)) = self.leaders.iter().filter(|(&t, _)| t > term).min_by_key(|(&t, _)| t) {
            return violation(
                "lease safety",
                format!("node {id} answered a read on its lease of term {term} after node {leader} was elected for term {later}"),
            );
        }
        Ok(())
    }

    /// Messages a `Ready` sends before its writes are durable: each may
    /// promise only what is already on the node's disk. Its term must be
    /// durable (a peer that acts on a term the sender then loses in a crash
    /// can see two different leaders' entries under one term); pre-votes
    /// promise nothing and carry the term they would campaign in.
    pub fn on_send_before_persist(&self, id: NodeId, durable_term: u64, m: &Message) -> Result<(), Violation> {
        let pre_vote = matches!(
            m.body,
            Body::Vote { pre_vote: true, .. } | Body::VoteResponse { pre_vote: true, .. }
        );
        if !pre_vote && m.term > durable_term {
            return violation(
                "Ready contract",
                format!(
                    "node {id} sent {} in term {} before that term was durable (its disk holds term {durable_term})",
                    m.body.name(),
                    m.term
                ),
            );
        }
        Ok(())
    }

    /// A node just became leader: election safety and leader completeness.
    pub fn on_leader(&mut self, id: NodeId, raft: &Raft) -> Result<(), Violation> {
        let term = raft.term();
        if let Some(&other) = self.leaders.get(&term) {
            if other != id {
                return violation(
                    "election safety",
                    format!("nodes {other} and {id} both lead term {term}"),
                );
            }
        }
        self.leaders.insert(term, id);
        // A learner never leads. (A node removed by a configuration not yet
        // committed may lead until it commits its removal: see
        // `triton_raft::confchange`.)
        if raft.membership().learners.contains(&id) {
            return violation(
                "election safety",
                format!("learner {id} leads term {term} in {:?}", raft.membership()),
            );
        }
        // Every entry committed so far must be in the new leader's log.
        let snapshot_index = raft.snapshot_index();
        for (&index, (t, data)) in self.committed.range(snapshot_index + 1..) {
            let held = raft.entries(index, index + 1);
            match held.first() {
                Some(e) if e.term == *t && e.data == *data => {}
                other => {
                    return violation(
                        "leader completeness",
                        format!(
                            "node {id}, leader of term {term}, lacks committed entry {index} (term {t}); it holds {:?}",
                            other.map(|e| e.term)
                        ),
                    )
                }
            }
        }
        Ok(())
    }

    /// A node made `entries` durable: log matching.
    pub fn on_persist(
        &mut self,
        id: NodeId,
        raft: &Raft,
        entries: &[Entry],
        durable_commit: Index,
    ) -> Result<(), Violation> {
        for e in entries {
            let prev_term = raft.term_at(e.index - 1);
            match self.facts.get(&(e.index, e.term)) {
                Some((data, prev)) => {
                    if *data != e.data || (prev.is_some() && prev_term.is_some() && *prev != prev_term) {
                        return violation(
                            "log matching",
                            format!(
                                "node {id} holds a different entry at index {} term {} (or a different prefix)",
                                e.index, e.term
                            ),
                        );
                    }
                }
                None => {
                    self.facts.insert((e.index, e.term), (e.data.clone(), prev_term));
                }
            }
        }
        let d = self.durable_commit.entry(id).or_default();
        *d = (*d).max(durable_commit);
        Ok(())
    }

    /// A node applied `e`: state machine safety.
    pub fn on_apply(&mut self, id: NodeId, e: &Entry) -> Result<(), Violation> {
        match self.committed.get(&e.index) {
            Some((t, data)) if *t != e.term || *data != e.data => violation(
                "state machine safety",
                format!(
                    "node {id} applied term {} at index {}, others applied term {t}",
                    e.term, e.index
                ),
            ),
            Some(_) => Ok(()),
            None => {
                self.committed.insert(e.index, (e.term, e.data.clone()));
                Ok(())
            }
        }
    }

    pub fn on_snapshot_installed(&mut self, id: NodeId, meta: &SnapshotMeta) {
        if let Some((t, _)) = self.committed.get(&meta.index) {
            if *t != meta.term {
                self.fail(Violation {
                    property: "state machine safety",
                    detail: format!(
                        "node {id} installed a snapshot at {} of term {}, committed term is {t}",
                        meta.index, meta.term
                    ),
                });
            }
        }
    }

    /// A node restarted from its disk: durability of its commit index.
    pub fn on_restart(&mut self, id: NodeId, raft: &Raft) -> Result<(), Violation> {
        let durable = self.durable_commit.get(&id).copied().unwrap_or(0);
        if raft.commit_index() < durable {
            return violation(
                "durability",
                format!(
                    "node {id} restarted with commit index {} below its durable {durable}",
                    raft.commit_index()
                ),
            );
        }
        Ok(())
    }
}
