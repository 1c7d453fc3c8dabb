//! Window deadlines of one feature's open joins, smallest start first.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use super::chunked::ChunkDeque;

/// `(start, slot, generation)` entries of one feature, smallest start
/// first. Joins mostly open in start order, so entries go to a FIFO and
/// only those that arrive out of order to a heap: popping is O(1) for
/// almost every join instead of a sift through a heap of every join in
/// the window.
#[derive(Default)]
pub(super) struct Deadlines {
    fifo: ChunkDeque<(i64, u32, u32)>,
    heap: BinaryHeap<Reverse<(i64, u32, u32)>>,
}

impl Deadlines {
    pub(super) fn push(&mut self, e: (i64, u32, u32)) {
        if self.fifo.back().is_none_or(|b| b.0 <= e.0) {
            self.fifo.push_back(e);
        } else {
            self.heap.push(Reverse(e));
        }
    }

    pub(super) fn peek(&self) -> Option<(i64, u32, u32)> {
        match (self.fifo.front(), self.heap.peek()) {
            (Some(&f), Some(&Reverse(h))) => Some(f.min(h)),
            (Some(&f), None) => Some(f),
            (None, Some(&Reverse(h))) => Some(h),
            (None, None) => None,
        }
    }

    pub(super) fn pop(&mut self) {
        match (self.fifo.front(), self.heap.peek()) {
            (Some(f), Some(Reverse(h))) if h < f => {
                self.heap.pop();
            }
            (Some(_), _) => {
                self.fifo.pop_front();
            }
            (None, _) => {
                self.heap.pop();
            }
        }
    }

    pub(super) fn clear(&mut self) {
        self.fifo.clear();
        self.heap.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::Deadlines;
    use proptest::prelude::*;

    proptest! {
        /// Deadlines come out in start order however they went in.
        #[test]
        fn deadlines_pop_in_start_order(starts in prop::collection::vec(-50i64..50, 0..300)) {
            let mut d = Deadlines::default();
            for (i, s) in starts.iter().enumerate() {
                d.push((*s, i as u32, 0));
            }
            let mut out = Vec::new();
            while let Some(e) = d.peek() {
                out.push(e);
                d.pop();
            }
            let mut want: Vec<_> = starts.iter().enumerate().map(|(i, s)| (*s, i as u32, 0)).collect();
            want.sort();
            prop_assert_eq!(out, want);
        }
    }
}
