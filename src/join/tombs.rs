//! Remembered closed keys (tombstones, docs/reference.md#late-records): a
//! closed key's later
//! records are late until the watermark passes `start + 2 × window`.
//!
//! Tombstones come and go at the close rate (tens of thousands per second
//! per partition), so the table is large and churns. A hash table that
//! fills up rehashes everything at once, on the judging task: 10–40 ms per
//! partition at a few hundred thousand entries, and partitions fill in
//! step. Here a full table is set aside instead, a larger one takes the
//! inserts, and the old one's entries move over a few per insert (found
//! through the close-order FIFO, which lists every entry), so no insert
//! does more than a bounded amount of work. Lookups check both tables
//! only while a move is under way.

use hashbrown::HashMap;

use super::chunked::ChunkDeque;

#[derive(Clone, Copy)]
pub(super) struct Tomb {
    pub forget_at: i64,
    /// Where the join's first record came from: `(source, Position::key)`.
    pub first: (u8, u64),
}

/// Entries moved from the old table per insert: the move ends after a
/// quarter as many inserts as the old table held entries, long before
/// the new table (twice as large) fills.
const MOVE_PER_INSERT: usize = 4;

#[derive(Default)]
pub(super) struct Tombs {
    cur: HashMap<u64, Tomb>,
    /// The table `cur` replaced; empty unless a move is under way.
    old: HashMap<u64, Tomb>,
    /// `(forget_at, hash)` in close order. Close order is nearly
    /// `forget_at` order, so the front is (almost always) the next to go;
    /// an entry queued behind a later one is forgotten a little late in
    /// memory, but lookups check `forget_at` themselves, so what is judged
    /// late never depends on when memory is reclaimed.
    fifo: ChunkDeque<(i64, u64)>,
    /// FIFO indexes `[moved, move_end)` may still name entries of `old`.
    moved: usize,
    move_end: usize,
}

impl Tombs {
    /// Entries held (a key is in one table at most).
    pub fn len(&self) -> usize {
        self.cur.len() + self.old.len()
    }

    #[inline]
    pub fn get(&self, hash: u64) -> Option<&Tomb> {
        match self.cur.get(&hash) {
            None if !self.old.is_empty() => self.old.get(&hash),
            t => t,
        }
    }

    /// Remembers `hash`; if `max` are held, forgets the earliest closed
    /// first.
    pub fn insert(&mut self, hash: u64, tomb: Tomb, max: usize) {
        if self.len() >= max {
            while let Some((at, h)) = self.pop_front() {
                if self.remove_if(h, at) {
                    break;
                }
            }
        }
        self.make_room();
        if !self.old.is_empty() {
            // A key is in one table at most.
            self.old.remove(&hash);
        }
        self.cur.insert(hash, tomb);
        self.fifo.push_back((tomb.forget_at, hash));
    }

    /// Forgets every entry with `forget_at < wm` that has reached the
    /// front of the close order.
    pub fn expire(&mut self, wm: i64) {
        while let Some(&(at, hash)) = self.fifo.front() {
            if at >= wm {
                break;
            }
            self.pop_front();
            self.remove_if(hash, at);
        }
    }

    pub fn clear(&mut self) {
        *self = Tombs::default();
    }

    fn pop_front(&mut self) -> Option<(i64, u64)> {
        let e = self.fifo.pop_front()?;
        self.moved = self.moved.saturating_sub(1);
        self.move_end = self.move_end.saturating_sub(1);
        Some(e)
    }

    /// Removes `hash` if the entry is the one closed with `forget_at`.
    fn remove_if(&mut self, hash: u64, forget_at: i64) -> bool {
        for t in [&mut self.cur, &mut self.old] {
            if t.get(&hash).is_some_and(|t| t.forget_at == forget_at) {
                t.remove(&hash);
                return true;
            }
        }
        false
    }

    /// Moves a few entries of `old`, and sets `cur` aside when one more
    /// insert would make it rehash.
    fn make_room(&mut self) {
        if !self.old.is_empty() {
            let end = self.move_end.min(self.fifo.len());
            let stop = (self.moved + MOVE_PER_INSERT).min(end);
            while self.moved < stop {
                if let Some(&(_, h)) = self.fifo.get(self.moved) {
                    if let Some(t) = self.old.remove(&h) {
                        // An entry already in `cur` is newer.
                        self.cur.entry(h).or_insert(t);
                    }
                }
                self.moved += 1;
            }
            if self.moved >= end || self.cur.len() >= self.cur.capacity() {
                // Done (or `cur` filled first, which the sizes rule out):
                // whatever is left moves now.
                for (h, t) in std::mem::take(&mut self.old) {
                    self.cur.entry(h).or_insert(t);
                }
            }
        }
        // `capacity()` is entries plus inserts left before a rehash (which
        // removals do not always give back), so this also catches the
        // in-place rehash a churning table needs from time to time.
        if self.old.is_empty() && self.cur.len() >= 4096 && self.cur.len() >= self.cur.capacity() {
            let n = self.cur.len();
            self.old = std::mem::replace(&mut self.cur, HashMap::with_capacity(2 * n));
            self.moved = 0;
            self.move_end = self.fifo.len();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// A plain map with the same forgetting rules, as the reference.
    #[derive(Default)]
    struct Model {
        map: std::collections::HashMap<u64, Tomb>,
        fifo: std::collections::VecDeque<(i64, u64)>,
    }

    impl Model {
        fn remove_if(&mut self, h: u64, at: i64) -> bool {
            if self.map.get(&h).is_some_and(|t| t.forget_at == at) {
                self.map.remove(&h);
                return true;
            }
            false
        }
        fn insert(&mut self, h: u64, t: Tomb, max: usize) {
            if self.map.len() >= max {
                while let Some((at, k)) = self.fifo.pop_front() {
                    if self.remove_if(k, at) {
                        break;
                    }
                }
            }
            self.map.insert(h, t);
            self.fifo.push_back((t.forget_at, h));
        }
        fn expire(&mut self, wm: i64) {
            while let Some(&(at, h)) = self.fifo.front() {
                if at >= wm {
                    break;
                }
                self.fifo.pop_front();
                self.remove_if(h, at);
            }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        /// Through rotations and moves, lookups answer as a plain map does:
        /// keys drawn from a small space so keys are closed again, the
        /// watermark advancing, a bound that evicts.
        #[test]
        fn behaves_as_one_map(
            steps in proptest::collection::vec((0u64..50_000, 0i64..3, any::<bool>()), 20_000..40_000),
            max in prop_oneof![Just(usize::MAX), 5_000usize..15_000],
        ) {
            let (mut t, mut m) = (Tombs::default(), Model::default());
            let mut clock = 0i64;
            for (i, (key, dt, probe)) in steps.into_iter().enumerate() {
                clock += dt;
                let h = key.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
                if probe {
                    let a = t.get(h).map(|x| (x.forget_at, x.first));
                    let b = m.map.get(&h).map(|x| (x.forget_at, x.first));
                    prop_assert_eq!(a, b, "lookup {} at step {}", h, i);
                } else {
                    let tomb = Tomb { forget_at: clock + 30_000, first: (0, i as u64) };
                    t.insert(h, tomb, max);
                    m.insert(h, tomb, max);
                }
                if i % 97 == 0 {
                    t.expire(clock);
                    m.expire(clock);
                }
                prop_assert_eq!(t.len(), m.map.len());
            }
        }
    }

    /// Growth goes through moves (not a rehash of everything), and every
    /// key stays found during and after them.
    #[test]
    fn grows_by_moving_a_few_per_insert() {
        let mut t = Tombs::default();
        let (mut moves, mut longest) = (0, 0usize);
        for i in 0..200_000u64 {
            let h = i.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
            let was_moving = !t.old.is_empty();
            let old_len = t.old.len();
            t.insert(h, Tomb { forget_at: i as i64, first: (0, i) }, usize::MAX);
            if !was_moving && !t.old.is_empty() {
                moves += 1;
            }
            if was_moving {
                // At most MOVE_PER_INSERT moved, unless the move finished.
                longest = longest.max(old_len - t.old.len());
            }
            if i % 1000 == 0 {
                for k in (0..=i).step_by(97) {
                    let hk = k.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
                    assert_eq!(t.get(hk).map(|x| x.first), Some((0, k)), "key {k} lost after {i} inserts");
                }
            }
        }
        assert!(moves >= 4, "only {moves} moves for 200,000 entries");
        assert_eq!(t.len(), 200_000);
        // The last insert of a move may take what is left: bounded by the
        // FIFO entries of already-forgotten keys, none here.
        assert!(longest <= MOVE_PER_INSERT, "an insert moved {longest} entries");
        t.expire(i64::MAX);
        assert_eq!(t.len(), 0);
    }
}
