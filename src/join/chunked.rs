//! Containers that grow without moving what they hold.
//!
//! A `Vec` or `VecDeque` that doubles copies everything it holds, in one
//! go, on the task that judges records: with a few hundred thousand open
//! joins per partition that is a 10–30 ms stall, and the partitions of one
//! consumer grow in step, so their stalls add up to verdicts 100+ ms late
//! while a consumer warms up (docs/performance.md, verdict latency). These
//! grow by one fixed-size chunk at a time instead; indexing costs one more
//! (cached) load.

use std::collections::VecDeque;
use std::ops::{Index, IndexMut};

const CHUNK_BITS: u32 = 12;
/// Elements per chunk: large enough that the chunk table stays tiny (and
/// in cache), small enough that allocating one is cheap.
const CHUNK: usize = 1 << CHUNK_BITS;

/// An append-only vector in fixed chunks: `push` never moves elements.
pub(super) struct ChunkVec<T> {
    chunks: Vec<Vec<T>>,
    len: usize,
}

impl<T> Default for ChunkVec<T> {
    fn default() -> Self {
        ChunkVec { chunks: Vec::new(), len: 0 }
    }
}

impl<T> ChunkVec<T> {
    /// Appends `v`; returns its index.
    pub fn push(&mut self, v: T) -> usize {
        match self.chunks.last_mut() {
            Some(c) if c.len() < CHUNK => c.push(v),
            _ => {
                let mut c = Vec::with_capacity(CHUNK);
                c.push(v);
                self.chunks.push(c);
            }
        }
        self.len += 1;
        self.len - 1
    }

    pub fn iter(&self) -> impl Iterator<Item = &T> {
        self.chunks.iter().flatten()
    }
}

impl<T> Index<usize> for ChunkVec<T> {
    type Output = T;
    #[inline]
    fn index(&self, i: usize) -> &T {
        &self.chunks[i >> CHUNK_BITS][i & (CHUNK - 1)]
    }
}

impl<T> IndexMut<usize> for ChunkVec<T> {
    #[inline]
    fn index_mut(&mut self, i: usize) -> &mut T {
        &mut self.chunks[i >> CHUNK_BITS][i & (CHUNK - 1)]
    }
}

/// A FIFO queue in fixed chunks: `push_back` never moves elements, and a
/// chunk emptied at the front is reused at the back.
pub(super) struct ChunkDeque<T> {
    chunks: VecDeque<Vec<T>>,
    /// Index of the front element in `chunks[0]`.
    head: usize,
    len: usize,
    spare: Option<Vec<T>>,
}

impl<T> Default for ChunkDeque<T> {
    fn default() -> Self {
        ChunkDeque { chunks: VecDeque::new(), head: 0, len: 0, spare: None }
    }
}

impl<T: Copy> ChunkDeque<T> {
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn push_back(&mut self, v: T) {
        match self.chunks.back_mut() {
            Some(c) if c.len() < CHUNK => c.push(v),
            _ => {
                let mut c = self.spare.take().unwrap_or_else(|| Vec::with_capacity(CHUNK));
                c.clear();
                c.push(v);
                self.chunks.push_back(c);
            }
        }
        self.len += 1;
    }

    pub fn front(&self) -> Option<&T> {
        self.chunks.front().and_then(|c| c.get(self.head))
    }

    /// The element `i` places behind the front.
    pub fn get(&self, i: usize) -> Option<&T> {
        let i = self.head + i;
        self.chunks.get(i >> CHUNK_BITS).and_then(|c| c.get(i & (CHUNK - 1)))
    }

    pub fn back(&self) -> Option<&T> {
        self.chunks.back().and_then(|c| c.last())
    }

    pub fn pop_front(&mut self) -> Option<T> {
        let c = self.chunks.front()?;
        let v = *c.get(self.head)?;
        self.head += 1;
        self.len -= 1;
        if self.head == c.len() {
            if self.len == 0 {
                // Keep the one chunk; start it over.
                self.chunks.truncate(1);
                if let Some(c) = self.chunks.front_mut() {
                    c.clear();
                }
            } else {
                self.spare = self.chunks.pop_front();
            }
            self.head = 0;
        }
        Some(v)
    }

    pub fn clear(&mut self) {
        self.chunks.clear();
        self.head = 0;
        self.len = 0;
    }

    pub fn iter(&self) -> impl Iterator<Item = &T> {
        let head = self.head;
        self.chunks.iter().enumerate().flat_map(move |(i, c)| c[if i == 0 { head } else { 0 }..].iter())
    }

    /// Keeps the elements for which `keep` is true, in order (O(n), and
    /// moves what it keeps: for rare compaction only).
    pub fn retain(&mut self, mut keep: impl FnMut(&T) -> bool) {
        let mut out = ChunkDeque::default();
        for v in self.iter() {
            if keep(v) {
                out.push_back(*v);
            }
        }
        *self = out;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[derive(Debug, Clone)]
    enum Op {
        Push(u32),
        Pop,
        Retain(u32),
        Clear,
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            20 => any::<u32>().prop_map(Op::Push),
            10 => Just(Op::Pop),
            1 => (2u32..5).prop_map(Op::Retain),
            1 => Just(Op::Clear),
        ]
    }

    proptest! {
        /// The deque behaves as `VecDeque` under any sequence of operations,
        /// across chunk boundaries (bursts of pushes and pops).
        #[test]
        fn deque_matches_vecdeque(ops in proptest::collection::vec((op(), 1usize..3000), 1..40)) {
            let mut d = ChunkDeque::default();
            let mut m = VecDeque::new();
            for (o, times) in ops {
                for k in 0..times {
                    match o {
                        Op::Push(v) => { let v = v.wrapping_add(k as u32); d.push_back(v); m.push_back(v); }
                        Op::Pop => prop_assert_eq!(d.pop_front(), m.pop_front()),
                        Op::Retain(r) => { d.retain(|v| v % r != 0); m.retain(|v| v % r != 0); }
                        Op::Clear => { d.clear(); m.clear(); }
                    }
                    prop_assert_eq!(d.len(), m.len());
                    prop_assert_eq!(d.front(), m.front());
                    prop_assert_eq!(d.back(), m.back());
                    let i = k * 7 % (m.len() + 1);
                    prop_assert_eq!(d.get(i), m.get(i));
                }
                prop_assert!(d.iter().eq(m.iter()));
            }
        }
    }

    #[test]
    fn vec_indexes_across_chunks_without_moving() {
        let mut v = ChunkVec::default();
        for i in 0..3 * CHUNK + 5 {
            assert_eq!(v.push(i), i);
        }
        let first = &v[0] as *const usize;
        for i in 0..CHUNK {
            v.push(i);
        }
        assert_eq!(first, &v[0] as *const usize, "push moved an element");
        v[CHUNK + 1] = 7;
        assert_eq!(v[CHUNK + 1], 7);
        assert_eq!(v[3 * CHUNK + 4], 3 * CHUNK + 4);
        assert_eq!(v.iter().count(), 4 * CHUNK + 5);
    }
}
