use std::collections::VecDeque;

use crate::types::Index;

/// The appends sent to one follower and not yet acknowledged (pipelining).
/// Bounded both in count and in bytes so a slow follower cannot make the
/// leader buffer without limit.
#[derive(Debug, Clone)]
pub struct Inflights {
    /// (last index carried, bytes carried), in sending order.
    sent: VecDeque<(Index, u64)>,
    bytes: u64,
    max_count: usize,
    max_bytes: u64,
}

impl Inflights {
    pub fn new(max_count: usize, max_bytes: u64) -> Self {
        assert!(max_count > 0, "a window of zero appends would never replicate");
        Inflights {
            sent: VecDeque::new(),
            bytes: 0,
            max_count,
            max_bytes,
        }
    }

    pub fn full(&self) -> bool {
        self.sent.len() >= self.max_count || self.bytes >= self.max_bytes
    }

    pub fn count(&self) -> usize {
        self.sent.len()
    }

    pub fn add(&mut self, last_index: Index, bytes: u64) {
        debug_assert!(
            self.sent.back().is_none_or(|&(i, _)| i < last_index),
            "inflights out of order"
        );
        self.sent.push_back((last_index, bytes));
        self.bytes += bytes;
    }

    /// Frees every append whose entries end at or before `index`.
    pub fn free_to(&mut self, index: Index) {
        while let Some(&(last, bytes)) = self.sent.front() {
            if last > index {
                break;
            }
            self.sent.pop_front();
            self.bytes -= bytes;
        }
    }

    pub fn clear(&mut self) {
        self.sent.clear();
        self.bytes = 0;
    }
}
