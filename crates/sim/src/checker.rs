//! The safety properties of Raft (Figure 3 of the paper), checked after
//! every simulated event. Each check keeps the facts it needs globally, so
//! it sees across nodes, terms and restarts.

use std::collections::{BTreeMap, HashMap};

use bytes::Bytes;
use triton_raft::{Body, Entry, Index, Message, NodeId, Raft, SnapshotMeta, Term};

use crate::Disk;

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

fn is_pre_vote(m: &Message) -> bool {
    matches!(
        m.body,
        Body::Vote { pre_vote: true, .. } | Body::VoteResponse { pre_vote: true, .. }
    )
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
    /// The highest commit index each term's leader reached: an entry is
    /// committed "in" the first term whose leader's commit index passed it.
    commit_by_term: BTreeMap<Term, Index>,
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

    /// Messages a `Ready` sends before its writes are durable (see
    /// `triton_raft::Ready`): only a leader's appends, heartbeats and
    /// snapshot chunks (and the TimeoutNow of a transfer, which the core
    /// sends the same way and which promises nothing), and pre-votes, may
    /// leave early; anything else promises state the node may lose in a
    /// crash. A leader's traffic must come from the leader of its term, and
    /// its term must be durable (a peer that acts on a term the sender then
    /// loses in a crash can see two different leaders' entries under one
    /// term). Then the checks of [`Checker::on_send_after_persist`].
    pub fn on_send_before_persist(&self, id: NodeId, disk: &Disk, m: &Message) -> Result<(), Violation> {
        let leader_traffic = matches!(
            m.body,
            Body::Append { .. } | Body::Heartbeat { .. } | Body::Snapshot { .. } | Body::TimeoutNow
        );
        if !leader_traffic && !is_pre_vote(m) {
            return violation(
                "Ready contract",
                format!(
                    "node {id} sent {} in term {} before persisting its Ready (only a leader's appends, heartbeats and snapshots, and pre-votes, may leave early)",
                    m.body.name(),
                    m.term
                ),
            );
        }
        if leader_traffic && self.leaders.get(&m.term) != Some(&id) {
            return violation(
                "Ready contract",
                format!(
                    "node {id} sent {} in term {} before persisting its Ready but does not lead that term (its leader: {:?})",
                    m.body.name(),
                    m.term,
                    self.leaders.get(&m.term)
                ),
            );
        }
        self.on_send_after_persist(id, disk, m)
    }

    /// Any message a node sends: what it promises must be on `disk` (the
    /// node's durable state when the message leaves). Its term is durable
    /// (pre-votes promise nothing and carry the term they would campaign
    /// in); a granted vote is the vote on disk; an accepted append
    /// acknowledges no entry past the durable log.
    pub fn on_send_after_persist(&self, id: NodeId, disk: &Disk, m: &Message) -> Result<(), Violation> {
        let durable = disk.hard_state;
        if !is_pre_vote(m) && m.term > durable.term {
            return violation(
                "Ready contract",
                format!(
                    "node {id} sent {} in term {} before that term was durable (its disk holds term {})",
                    m.body.name(),
                    m.term,
                    durable.term
                ),
            );
        }
        match m.body {
            Body::VoteResponse {
                pre_vote: false,
                granted: true,
            } if durable.term != m.term || durable.vote != Some(m.to) => violation(
                "Ready contract",
                format!(
                    "node {id} granted its vote in term {} to node {} but its disk holds term {} vote {:?}",
                    m.term, m.to, durable.term, durable.vote
                ),
            ),
            Body::AppendResponse {
                reject: false, index, ..
            } if index > disk.last_index() => violation(
                "Ready contract",
                format!(
                    "node {id} acknowledged entries up to {index} to node {} but its durable log ends at {}",
                    m.to,
                    disk.last_index()
                ),
            ),
            _ => Ok(()),
        }
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
        // Every entry committed in an earlier term must be in the new
        // leader's log (§5.4: Leader Completeness speaks of later terms). A
        // leader whose votes arrived late (a candidate paused, then woken)
        // may lead an older term than one already led; what was committed
        // in that later term it need not hold, and cannot harm: the
        // majority's higher term refuses its appends.
        let snapshot_index = raft.snapshot_index();
        let bound = self.commit_by_term.range(..term).map(|(_, &i)| i).max().unwrap_or(0);
        let must_hold = match bound > snapshot_index {
            true => self.committed.range(snapshot_index + 1..=bound),
            false => self.committed.range(0..0),
        };
        for (&index, (t, data)) in must_hold {
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

    /// Node `id` leads `term` with commit index `commit` (see
    /// `commit_by_term`).
    pub fn on_leader_commit(&mut self, term: Term, commit: Index) {
        let c = self.commit_by_term.entry(term).or_default();
        *c = (*c).max(commit);
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
            match self.facts.get_mut(&(e.index, e.term)) {
                Some((data, prev)) => {
                    if *data != e.data || (prev.is_some() && prev_term.is_some() && *prev != prev_term) {
                        return violation(
                            "log matching",
                            format!(
                                "node {id} holds a different entry at index {} term {} (or a different prefix: previous term {prev_term:?}, recorded {prev:?})",
                                e.index, e.term
                            ),
                        );
                    }
                    // The first holder may have compacted the previous entry:
                    // learn its term from a later one, or the prefix goes unchecked.
                    if prev.is_none() {
                        *prev = prev_term;
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
                    "node {id} applied term {} at index {}, others applied term {t} (same data: {})",
                    e.term,
                    e.index,
                    *data == e.data
                ),
            ),
            Some(_) => Ok(()),
            None => {
                self.committed.insert(e.index, (e.term, e.data.clone()));
                Ok(())
            }
        }
    }

    /// A node installed a snapshot: its last entry must be the one applied
    /// at that index (state machine safety).
    pub fn on_snapshot_installed(&self, id: NodeId, meta: &SnapshotMeta) -> Result<(), Violation> {
        match self.committed.get(&meta.index) {
            Some((t, _)) if *t != meta.term => violation(
                "state machine safety",
                format!(
                    "node {id} installed a snapshot at {} of term {}, committed term is {t}",
                    meta.index, meta.term
                ),
            ),
            _ => Ok(()),
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
