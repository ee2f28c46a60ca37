//! The in-memory replicated log: a snapshot boundary followed by entries.
//!
//! The core keeps its whole log in memory; the host bounds it by taking
//! snapshots (`Raft::compact`). Three cursors move forward through it:
//! `applied <= committed`, and `persisted` (what the host has made durable).
//! `committed` never moves backwards; `persisted` does when a new leader
//! overwrites an unpersisted or conflicting suffix.

use std::collections::VecDeque;

use crate::types::{Entry, Index, Term};

#[derive(Debug, Clone)]
pub struct RaftLog {
    snapshot_index: Index,
    snapshot_term: Term,
    /// Entries `snapshot_index + 1 ..= last_index()`, contiguous.
    entries: VecDeque<Entry>,
    committed: Index,
    applied: Index,
    persisted: Index,
}

/// Why an incoming append could not be accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AppendRejected {
    /// The last index of our log that might still match the leader's.
    pub hint_index: Index,
    pub hint_term: Term,
}

impl RaftLog {
    /// A log that starts after a snapshot at (`snapshot_index`, `snapshot_term`),
    /// holding `entries`, all already durable.
    pub fn restore(snapshot_index: Index, snapshot_term: Term, entries: Vec<Entry>, commit: Index) -> Self {
        for (offset, e) in entries.iter().enumerate() {
            assert_eq!(
                e.index,
                snapshot_index + 1 + offset as u64,
                "restored log is not contiguous"
            );
        }
        let entries: VecDeque<Entry> = entries.into();
        let last = snapshot_index + entries.len() as u64;
        // A persisted commit hint beyond what we hold would be a lie; cap it.
        let committed = commit.clamp(snapshot_index, last);
        RaftLog {
            snapshot_index,
            snapshot_term,
            entries,
            committed,
            applied: snapshot_index,
            persisted: last,
        }
    }

    pub fn snapshot_index(&self) -> Index {
        self.snapshot_index
    }
    pub fn snapshot_term(&self) -> Term {
        self.snapshot_term
    }
    pub fn first_index(&self) -> Index {
        self.snapshot_index + 1
    }
    pub fn last_index(&self) -> Index {
        self.snapshot_index + self.entries.len() as u64
    }
    pub fn last_term(&self) -> Term {
        self.entries.back().map_or(self.snapshot_term, |e| e.term)
    }
    pub fn committed(&self) -> Index {
        self.committed
    }
    pub fn applied(&self) -> Index {
        self.applied
    }
    pub fn persisted(&self) -> Index {
        self.persisted
    }

    /// The term of the entry at `index`, if we still know it (not compacted
    /// away, not past the end).
    pub fn term(&self, index: Index) -> Option<Term> {
        if index == self.snapshot_index {
            return Some(self.snapshot_term);
        }
        if index < self.snapshot_index || index > self.last_index() {
            return None;
        }
        Some(self.entry(index).term)
    }

    fn entry(&self, index: Index) -> &Entry {
        debug_assert!(index > self.snapshot_index && index <= self.last_index());
        &self.entries[(index - self.snapshot_index - 1) as usize]
    }

    pub fn matches(&self, index: Index, term: Term) -> bool {
        self.term(index) == Some(term)
    }

    /// §5.4.1: is a candidate's log (`last_index`, `last_term`) at least as
    /// up to date as ours?
    pub fn is_up_to_date(&self, last_index: Index, last_term: Term) -> bool {
        last_term > self.last_term() || (last_term == self.last_term() && last_index >= self.last_index())
    }

    /// Entries in `[lo, hi)`, at least one if any, at most `max_bytes` beyond
    /// the first. `None` if `lo` is compacted.
    pub fn slice(&self, lo: Index, hi: Index, max_bytes: u64) -> Option<Vec<Entry>> {
        if lo <= self.snapshot_index {
            return None;
        }
        let hi = hi.min(self.last_index() + 1);
        let mut out = Vec::new();
        let mut bytes = 0;
        let mut index = lo;
        while index < hi {
            let e = self.entry(index);
            bytes += e.size();
            if !out.is_empty() && bytes > max_bytes {
                break;
            }
            out.push(e.clone());
            index += 1;
        }
        Some(out)
    }

    /// Appends entries of a leader's own making (always at the end).
    pub fn append_own(&mut self, entry: Entry) {
        assert_eq!(entry.index, self.last_index() + 1, "leader appends at the end");
        assert!(entry.term >= self.last_term(), "terms in the log never decrease");
        self.entries.push_back(entry);
    }

    /// Handles AppendEntries (§5.3): checks `prev`, truncates a conflicting
    /// suffix, appends what is new, and advances `committed`. Returns the
    /// last index known to match the leader.
    pub fn maybe_append(
        &mut self,
        prev_index: Index,
        prev_term: Term,
        leader_commit: Index,
        entries: &[Entry],
    ) -> Result<Index, AppendRejected> {
        if !self.matches(prev_index, prev_term) {
            return Err(self.reject_hint(prev_index, prev_term));
        }
        let mut last_new = prev_index;
        for (offset, e) in entries.iter().enumerate() {
            assert_eq!(e.index, prev_index + 1 + offset as u64, "append is not contiguous");
            last_new = e.index;
            match self.term(e.index) {
                Some(t) if t == e.term => continue,
                Some(_) => {
                    // §5.3: delete the conflicting entry and all that follow.
                    // A committed entry can never conflict (Leader Completeness).
                    assert!(
                        e.index > self.committed,
                        "conflict at committed index {} (committed {})",
                        e.index,
                        self.committed
                    );
                    self.truncate_from(e.index);
                    self.entries.push_back(e.clone());
                }
                None => {
                    if e.index <= self.snapshot_index {
                        continue; // already covered by our snapshot
                    }
                    self.entries.push_back(e.clone());
                }
            }
        }
        self.commit_to(leader_commit.min(last_new));
        Ok(last_new)
    }

    fn truncate_from(&mut self, index: Index) {
        assert!(index > self.snapshot_index && index <= self.last_index() + 1);
        let keep = (index - self.snapshot_index - 1) as usize;
        self.entries.truncate(keep);
        self.persisted = self.persisted.min(index - 1);
    }

    /// The conflict hint for a rejected append: the largest index
    /// `<= min(prev_index, last_index)` whose term is `<= prev_term`. The
    /// leader can skip everything after it in one round trip.
    fn reject_hint(&self, prev_index: Index, prev_term: Term) -> AppendRejected {
        let mut index = prev_index.min(self.last_index());
        while index > self.snapshot_index {
            let t = self.entry(index).term;
            if t <= prev_term {
                return AppendRejected {
                    hint_index: index,
                    hint_term: t,
                };
            }
            index -= 1;
        }
        AppendRejected {
            hint_index: self.snapshot_index,
            hint_term: self.snapshot_term,
        }
    }

    /// Leader side of the hint: the largest index `<= index` whose term is
    /// `<= term` in our log. Entries after it cannot match the follower's.
    pub fn find_conflict_by_term(&self, index: Index, term: Term) -> Index {
        let mut i = index.min(self.last_index());
        while i > self.snapshot_index {
            if self.entry(i).term <= term {
                return i;
            }
            i -= 1;
        }
        i
    }

    pub fn commit_to(&mut self, index: Index) {
        if index > self.committed {
            assert!(
                index <= self.last_index(),
                "commit {index} beyond last index {}",
                self.last_index()
            );
            self.committed = index;
        }
    }

    /// Entries the host has not yet been asked to persist.
    pub fn unpersisted(&self) -> Vec<Entry> {
        let from = self.persisted.max(self.snapshot_index) + 1;
        self.slice(from, self.last_index() + 1, u64::MAX).unwrap_or_default()
    }

    /// The host made everything up to `(index, term)` durable. Ignored if a
    /// newer leader replaced that entry meanwhile.
    pub fn persisted_to(&mut self, index: Index, term: Term) {
        if index > self.persisted && self.matches(index, term) {
            self.persisted = index;
        }
    }

    /// Committed entries not yet handed to the host, at most `max_bytes`
    /// (but at least one).
    pub fn next_to_apply(&self, max_bytes: u64) -> Vec<Entry> {
        let lo = self.applied + 1;
        if lo > self.committed {
            return Vec::new();
        }
        self.slice(lo, self.committed + 1, max_bytes).unwrap_or_default()
    }

    pub fn applied_to(&mut self, index: Index) {
        assert!(
            index <= self.committed,
            "applied {index} beyond committed {}",
            self.committed
        );
        if index > self.applied {
            self.applied = index;
        }
    }

    /// Drops entries up to `index` (covered by a local snapshot). Only
    /// applied entries may be compacted.
    pub fn compact(&mut self, index: Index) {
        if index <= self.snapshot_index {
            return;
        }
        assert!(index <= self.applied, "compact {index} beyond applied {}", self.applied);
        let term = self.term(index).expect("compacting an entry we hold");
        let drop = (index - self.snapshot_index) as usize;
        self.entries.drain(..drop);
        self.snapshot_index = index;
        self.snapshot_term = term;
    }

    /// Installs a snapshot received from a leader. Keeps the suffix after it
    /// if our log agrees at the snapshot point (§7: "retain log entries
    /// following it"), otherwise discards the whole log.
    pub fn install_snapshot(&mut self, index: Index, term: Term) {
        assert!(
            index > self.committed,
            "snapshot {index} is not ahead of commit {}",
            self.committed
        );
        if self.matches(index, term) {
            let drop = (index - self.snapshot_index) as usize;
            self.entries.drain(..drop);
        } else {
            self.entries.clear();
            self.persisted = index; // the snapshot itself is persisted with this Ready
        }
        self.snapshot_index = index;
        self.snapshot_term = term;
        self.persisted = self.persisted.max(index);
        self.committed = index;
        self.applied = index;
    }

    /// Total size of the entries in `[lo, hi]` that we hold (flow control).
    pub fn bytes_between(&self, lo: Index, hi: Index) -> u64 {
        let lo = lo.max(self.snapshot_index + 1);
        let hi = hi.min(self.last_index());
        if lo > hi {
            return 0;
        }
        let start = (lo - self.snapshot_index - 1) as usize;
        let end = (hi - self.snapshot_index) as usize;
        self.entries.range(start..end).map(Entry::size).sum()
    }
}
