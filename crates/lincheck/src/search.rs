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
//! **Budget.** Every model step counts against a budget; the cache can hold at
//! most one entry per step, so time and memory are both bounded. Running out
//! gives [`SearchOutcome::Unknown`], never "linearizable".

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

/// The memo of (linearized set, state set) pairs already explored. Bitsets are
/// stored back to back in one arena; the table holds entry indices.
struct Cache {
    words: usize,
    bits: Vec<u64>,
    states: Vec<Box<[KeyState]>>,
    hashes: Vec<u64>,
    table: HashTable<u32>,
}

impl Cache {
    fn new(words: usize) -> Cache {
        Cache {
            words,
            bits: Vec::new(),
            states: Vec::new(),
            hashes: Vec::new(),
            table: HashTable::new(),
        }
    }

    /// Inserts the pair; returns false if it was already there.
    fn insert(&mut self, hash: u64, bits: &[u64], states: &[KeyState]) -> bool {
        let words = self.words;
        let (arena, stored) = (&self.bits, &self.states);
        let found = self
            .table
            .find(hash, |&idx| {
                let i = idx as usize;
                &arena[i * words..(i + 1) * words] == bits && &*stored[i] == states
            })
            .is_some();
        if found {
            return false;
        }
        let idx = self.states.len() as u32;
        self.bits.extend_from_slice(bits);
        self.states.push(states.into());
        self.hashes.push(hash);
        let hashes = &self.hashes;
        self.table.insert_unique(hash, idx, |&i| hashes[i as usize]);
        true
    }
}

fn op_key(op: usize) -> u64 {
    splitmix64(op as u64 ^ 0x6a09_e667_f3bc_c909)
}

/// Decides whether `ops` (all on one key) are linearizable, taking at most
/// `budget` model steps.
pub fn check_ops(ops: &[CompiledOp], budget: u64) -> SearchResult {
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
    let mut list = EventList::new(ops);
    let mut cache = Cache::new(words);
    let mut linearized = vec![0u64; words];
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
            if steps >= budget {
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
                linearized[i / 64] |= 1 << (i % 64);
                let hash = lin_hash ^ op_key(i) ^ hash_states(&next_states);
                if cache.insert(hash, &linearized, &next_states) {
                    lin_hash ^= op_key(i);
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
                    linearized[i / 64] &= !(1 << (i % 64));
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
            linearized[i / 64] &= !(1 << (i % 64));
            lin_hash ^= op_key(i);
            states = previous;
            list.unlift(call);
            entry = list.events[call as usize].next;
        }
    }
}
