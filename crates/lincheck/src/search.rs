//! Wing & Gong's linearizability search with Lowe's memoization, for the
//! history of one key (the approach of Porcupine's `checkSingle`).
//!
//! Calls and returns form one list sorted by time. The search walks it: at a
//! call it tries to linearize that operation now (apply it to the model); if
//! the model allows it and the pair (set of linearized operations, model
//! state) was never seen before, it removes ("lifts") the operation's call and
//! return from the list and starts over from the front. Reaching a return
//! means the operation that returns there had to be linearized already: back
//! up to the last choice. Remembering every pair seen (the cache) is what
//! keeps this from being exponential on real histories.
//!
//! **Ties.** A call and a return at the same timestamp are taken as
//! concurrent (the call is ordered first). That is the conservative choice: it
//! only allows more orders, so equal clock readings can never turn a
//! linearizable history into a reported violation.
//!
//! **Nondeterminism.** An operation with an unknown outcome, or one that
//! leaves the model's version unknown, may lead to several states; the search
//! state is therefore a small sorted set of [`KeyState`]s (the usual
//! power-set construction), and a step is allowed iff the set stays non-empty.
//!
//! **Dead operations.** Versions only grow, so an operation whose recorded
//! version is already below the model's (a write reporting a version not
//! above the greatest one given, a read reporting an older version) can never
//! be linearized later: the branch is abandoned at once rather than at that
//! operation's return, which would first explore every interleaving of the
//! operations in between. This is what keeps many concurrent writers cheap.
//!
//! **Budget.** Every model step counts against a step budget, and the memo
//! cache's approximate size against a memory budget ([`Budget`]). Running
//! out of either gives [`SearchOutcome::Unknown`], never "linearizable".

use hashbrown::HashTable;

use crate::model::{step, CompiledOp, KeyState};

/// What one search concluded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SearchOutcome {
    /// Some order of the operations explains every output.
    Linearizable,
    /// No order does.
    Violation,
    /// The budget ran out before either could be shown.
    Unknown,
}

/// The search's result with its cost.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SearchResult {
    /// The conclusion.
    pub outcome: SearchOutcome,
    /// Model steps taken (the budget's unit).
    pub steps: u64,
}

/// Largest set of model states tracked at once. Larger sets (many unknown
/// compare-and-sets in a row) end the search as `Unknown`.
pub const MAX_STATE_SET: usize = 256;

const NIL: u32 = u32::MAX;

/// One call or return in the doubly-linked event list.
#[derive(Clone, Copy)]
struct Event {
    op: u32,
    is_call: bool,
    /// For a call, the index of its return event.
    partner: u32,
    prev: u32,
    next: u32,
}

/// The event list; index `head` (the last slot) is a sentinel.
struct EventList {
    events: Vec<Event>,
    head: u32,
}

impl EventList {
    fn new(ops: &[CompiledOp]) -> EventList {
        // (time, 0 = call / 1 = return, op): calls before returns at equal
        // times (see module docs); `None` returns sort last.
        let mut order: Vec<(u64, u8, u32)> = Vec::with_capacity(ops.len() * 2);
        for (i, op) in ops.iter().enumerate() {
            order.push((op.call, 0, i as u32));
            order.push((op.ret.unwrap_or(u64::MAX), 1, i as u32));
        }
        order.sort_unstable();
        let n = order.len();
        let head = n as u32;
        let mut events = vec![
            Event {
                op: NIL,
                is_call: false,
                partner: NIL,
                prev: NIL,
                next: NIL,
            };
            n + 1
        ];
        let mut return_slot = vec![NIL; ops.len()];
        for (slot, &(_, kind, op)) in order.iter().enumerate() {
            if kind == 1 {
                return_slot[op as usize] = slot as u32;
            }
        }
        for (slot, &(_, kind, op)) in order.iter().enumerate() {
            events[slot] = Event {
                op,
                is_call: kind == 0,
                partner: if kind == 0 { return_slot[op as usize] } else { NIL },
                prev: if slot == 0 { head } else { slot as u32 - 1 },
                next: if slot + 1 == n { NIL } else { slot as u32 + 1 },
            };
        }
        events[n].next = if n == 0 { NIL } else { 0 };
        EventList { events, head }
    }

    fn first(&self) -> u32 {
        self.events[self.head as usize].next
    }

    fn unlink(&mut self, e: u32) {
        let Event { prev, next, .. } = self.events[e as usize];
        self.events[prev as usize].next = next;
        if next != NIL {
            self.events[next as usize].prev = prev;
        }
    }

    fn relink(&mut self, e: u32) {
        let Event { prev, next, .. } = self.events[e as usize];
        self.events[prev as usize].next = e;
        if next != NIL {
            self.events[next as usize].prev = e;
        }
    }

    /// Removes a call and its return (in that order).
    fn lift(&mut self, call: u32) {
        let ret = self.events[call as usize].partner;
        self.unlink(call);
        self.unlink(ret);
    }

    /// Undoes [`EventList::lift`] (in reverse order, so links come back exactly).
    fn unlift(&mut self, call: u32) {
        let ret = self.events[call as usize].partner;
        self.relink(ret);
        self.relink(call);
    }
}

fn splitmix64(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// A small, fast hasher (splitmix64 finalizer per word) for model states.
struct MixHasher(u64);

impl std::hash::Hasher for MixHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut word = [0u8; 8];
            word[..chunk.len()].copy_from_slice(chunk);
            self.write_u64(u64::from_le_bytes(word));
        }
    }
    fn write_u64(&mut self, i: u64) {
        self.0 = splitmix64(self.0 ^ i);
    }
}

fn hash_states(states: &[KeyState]) -> u64 {
    use std::hash::Hash;
    let mut h = MixHasher(0x51_7cc1_b727_220a);
    states.hash(&mut h);
    std::hash::Hasher::finish(&h)
}

/// The memo of configurations already explored: (linearized operations,
/// state set). Operations that never return (unknown outcome) get special
/// treatment: having linearized *fewer* of them is never worse, because the
/// search may always leave them out for good. So a configuration is keyed by
/// its returning operations and state set, and for each key the cache keeps
/// the sets of never-returning operations seen with it; a new configuration
/// is skipped if a seen set is a subset of its own (it is dominated: every
/// way to finish from it also works from the seen one). Without such
/// operations this is the plain exact-match memo of Lowe's algorithm.
struct Cache {
    /// Per group: the linearized set, trimmed (see [`trim`]).
    bits: Vec<(u32, Box<[u64]>)>,
    states: Vec<Box<[KeyState]>>,
    hashes: Vec<u64>,
    /// Per group: the never-returning sets seen (no one a subset of another).
    open_sets: Vec<Vec<Box<[u64]>>>,
    table: HashTable<u32>,
    /// Approximate heap bytes held.
    bytes: usize,
}

/// Minimum over the not-yet-linearized operations of their [`CompiledOp::max_lo`]
/// (a segment tree, so linearizing and undoing are O(log n)).
struct DeadlineTree {
    size: usize,
    min: Vec<u64>,
    leaf: Vec<u64>,
}

impl DeadlineTree {
    fn new(ops: &[CompiledOp]) -> DeadlineTree {
        let size = ops.len().next_power_of_two().max(1);
        let leaf: Vec<u64> = ops.iter().map(|op| op.max_lo().unwrap_or(u64::MAX)).collect();
        let mut min = vec![u64::MAX; 2 * size];
        min[size..size + leaf.len()].copy_from_slice(&leaf);
        for i in (1..size).rev() {
            min[i] = min[2 * i].min(min[2 * i + 1]);
        }
        DeadlineTree { size, min, leaf }
    }

    fn set(&mut self, op: usize, linearized: bool) {
        let mut i = self.size + op;
        self.min[i] = if linearized { u64::MAX } else { self.leaf[op] };
        while i > 1 {
            i /= 2;
            self.min[i] = self.min[2 * i].min(self.min[2 * i + 1]);
        }
    }

    /// The smallest bound among unlinearized operations.
    fn min(&self) -> u64 {
        self.min[1]
    }
}

/// A linearized set without its leading all-ones words and trailing zero
/// words: `(index of the first word kept, the words kept)`. Operations are
/// sorted by call time, so linearized sets are "everything up to here, plus
/// a few": trimming stores a few words instead of one bit per operation.
fn trim(bits: &[u64]) -> (u32, &[u64]) {
    let start = bits.iter().position(|&w| w != u64::MAX).unwrap_or(bits.len());
    let end = bits.iter().rposition(|&w| w != 0).map_or(0, |i| i + 1).max(start);
    (start as u32, &bits[start..end])
}

fn is_subset(small: &[u64], big: &[u64]) -> bool {
    small.iter().zip(big).all(|(s, b)| s & !b == 0)
}

impl Cache {
    fn new() -> Cache {
        Cache {
            bits: Vec::new(),
            states: Vec::new(),
            hashes: Vec::new(),
            open_sets: Vec::new(),
            table: HashTable::new(),
            bytes: 0,
        }
    }

    /// Records the configuration; returns false if it (or one dominating it)
    /// was already there.
    fn insert(&mut self, hash: u64, bits: &[u64], states: &[KeyState], open: &[u64]) -> bool {
        let (offset, bits) = trim(bits);
        let (arena, stored) = (&self.bits, &self.states);
        let group = self
            .table
            .find(hash, |&idx| {
                let i = idx as usize;
                arena[i].0 == offset && &*arena[i].1 == bits && &*stored[i] == states
            })
            .copied();
        if let Some(g) = group {
            let sets = &mut self.open_sets[g as usize];
            if sets.iter().any(|seen| is_subset(seen, open)) {
                return false;
            }
            sets.retain(|seen| !is_subset(open, seen));
            sets.push(open.into());
            self.bytes += 16 + open.len() * 8;
            return true;
        }
        let idx = self.states.len() as u32;
        self.bits.push((offset, bits.into()));
        self.states.push(states.into());
        self.hashes.push(hash);
        self.open_sets.push(vec![open.into()]);
        self.bytes += 112 + (bits.len() + open.len()) * 8 + std::mem::size_of_val(states);
        let hashes = &self.hashes;
        self.table.insert_unique(hash, idx, |&i| hashes[i as usize]);
        true
    }
}

fn op_key(op: usize) -> u64 {
    splitmix64(op as u64 ^ 0x6a09_e667_f3bc_c909)
}

/// Limits of one search. Exceeding either ends it with
/// [`SearchOutcome::Unknown`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Budget {
    /// Model steps (time).
    pub steps: u64,
    /// Approximate bytes held by the memo cache and stack (memory).
    pub memory_bytes: usize,
}

impl Budget {
    /// A budget of `steps` steps and at most 256 MiB.
    pub fn steps(steps: u64) -> Budget {
        Budget {
            steps,
            memory_bytes: 256 << 20,
        }
    }
}

/// Decides whether `ops` (all on one key) are linearizable within `budget`.
pub fn check_ops(ops: &[CompiledOp], budget: Budget) -> SearchResult {
    let n = ops.len();
    assert!(n < (u32::MAX / 2) as usize, "too many operations for one key");
    let mut known_remaining = ops.iter().filter(|op| op.ret.is_some()).count();
    if known_remaining == 0 {
        return SearchResult {
            outcome: SearchOutcome::Linearizable,
            steps: 0,
        };
    }
    let words = n.div_ceil(64);
    // Never-returning operations are numbered apart (see `Cache`).
    let mut open_slot = vec![NIL; n];
    let mut open_count = 0usize;
    for (i, op) in ops.iter().enumerate() {
        if op.ret.is_none() {
            open_slot[i] = open_count as u32;
            open_count += 1;
        }
    }
    let mut list = EventList::new(ops);
    let mut cache = Cache::new();
    let mut deadlines = DeadlineTree::new(ops);
    // Linearized returning operations (by op index) and never-returning ones
    // (by open slot); `lin_hash` is the Zobrist hash of the former.
    let mut linearized = vec![0u64; words];
    let mut linearized_open = vec![0u64; open_count.div_ceil(64)];
    let mut lin_hash = 0u64;
    let mut states: Vec<KeyState> = vec![KeyState::INITIAL];
    // Each frame: the call event lifted and the state set before it.
    let mut stack: Vec<(u32, Vec<KeyState>)> = Vec::new();
    let mut next_states: Vec<KeyState> = Vec::new();
    let mut steps = 0u64;
    let mut entry = list.first();
    loop {
        if entry == NIL {
            // Only reachable if every event was lifted, which the
            // known_remaining check below returns before.
            unreachable!("event list exhausted without a verdict");
        }
        let event = list.events[entry as usize];
        if event.is_call {
            if steps >= budget.steps || cache.bytes + stack.len() * 64 > budget.memory_bytes {
                return SearchResult {
                    outcome: SearchOutcome::Unknown,
                    steps,
                };
            }
            steps += 1;
            let op = &ops[event.op as usize];
            next_states.clear();
            for s in &states {
                step(s, op, &mut next_states);
            }
            if next_states.len() > MAX_STATE_SET {
                return SearchResult {
                    outcome: SearchOutcome::Unknown,
                    steps,
                };
            }
            let mut advanced = false;
            if !next_states.is_empty() {
                next_states.sort_unstable();
                next_states.dedup();
                let i = event.op as usize;
                let (set, bit, key) = match open_slot[i] {
                    NIL => (&mut linearized, i, op_key(i)),
                    slot => (&mut linearized_open, slot as usize, 0),
                };
                set[bit / 64] |= 1 << (bit % 64);
                deadlines.set(i, true);
                // Some operation still to linearize can no longer be (its
                // version bound was passed): a dead end, whatever follows.
                let min_lo = next_states.iter().map(|s| s.lo).min().unwrap_or(0);
                let alive = deadlines.min() >= min_lo;
                let hash = lin_hash ^ key ^ hash_states(&next_states);
                if alive && cache.insert(hash, &linearized, &next_states, &linearized_open) {
                    lin_hash ^= key;
                    let previous = std::mem::replace(&mut states, next_states.clone());
                    stack.push((entry, previous));
                    list.lift(entry);
                    if op.ret.is_some() {
                        known_remaining -= 1;
                        if known_remaining == 0 {
                            // The rest never return (unknown outcomes):
                            // linearize them last, as "never took effect".
                            return SearchResult {
                                outcome: SearchOutcome::Linearizable,
                                steps,
                            };
                        }
                    }
                    entry = list.first();
                    advanced = true;
                } else {
                    let set = if open_slot[i] == NIL {
                        &mut linearized
                    } else {
                        &mut linearized_open
                    };
                    set[bit / 64] &= !(1 << (bit % 64));
                    deadlines.set(i, false);
                }
            }
            if !advanced {
                entry = event.next;
            }
        } else {
            // An operation returns here without having been linearized:
            // undo the last choice and try the next candidate after it.
            let Some((call, previous)) = stack.pop() else {
                return SearchResult {
                    outcome: SearchOutcome::Violation,
                    steps,
                };
            };
            let i = list.events[call as usize].op as usize;
            if ops[i].ret.is_some() {
                known_remaining += 1;
            }
            match open_slot[i] {
                NIL => {
                    linearized[i / 64] &= !(1 << (i % 64));
                    lin_hash ^= op_key(i);
                }
                slot => {
                    let slot = slot as usize;
                    linearized_open[slot / 64] &= !(1 << (slot % 64));
                }
            }
            deadlines.set(i, false);
            states = previous;
            list.unlift(call);
            entry = list.events[call as usize].next;
        }
    }
}
