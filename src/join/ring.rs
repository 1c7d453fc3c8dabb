//! The sample buffer of a stream: the bytes of its most recent records,
//! so divergence samples can show every layer's record as received without
//! every open join holding its records' bytes.

/// A byte-capped FIFO of the most recent raw records of one source, by
/// position key (`Position::key`, growing within a source).
///
/// The bytes sit in one buffer of `cap` bytes, written in a circle; a
/// record is never split (the tail that does not fit is skipped), and a
/// record is found in O(1) while keys are contiguous, by a bounded binary
/// search otherwise (records not kept: late, rejected).
pub struct RawRing {
    cap: usize,
    data: Vec<u8>,
    /// Bytes ever written, counting skipped tails: an entry at `at` is
    /// intact while `at + cap >= end`.
    end: u64,
    /// In write order; `entries[head..]` are live (a Vec rather than a
    /// deque, so lookups can search a sub-slice).
    entries: Vec<Entry>,
    head: usize,
}

#[derive(Debug, Clone, Copy)]
struct Entry {
    seq: u64,
    /// Offset in the bytes ever written (see `end`).
    at: u64,
    len: u32,
}

impl RawRing {
    pub fn new(cap: usize) -> Self {
        RawRing { cap, data: Vec::new(), end: 0, entries: Vec::new(), head: 0 }
    }

    pub(super) fn push(&mut self, seq: u64, raw: &[u8]) {
        let cap = self.cap as u64;
        let len = raw.len() as u64;
        if cap == 0 || len > cap || len > u32::MAX as u64 {
            return;
        }
        if self.entries.last().is_some_and(|e| e.seq >= seq) {
            // Keys grow; a source that starts over starts empty.
            self.entries.clear();
            self.head = 0;
        }
        let mut at = self.end;
        if at % cap + len > cap {
            at += cap - at % cap;
        }
        self.end = at + len;
        while self.entries.get(self.head).is_some_and(|e| e.at + cap < self.end) {
            self.head += 1;
        }
        if self.head > 1024 && self.head * 2 > self.entries.len() {
            self.entries.drain(..self.head);
            self.head = 0;
        }
        let off = (at % cap) as usize;
        if self.data.is_empty() {
            // Zeroed memory comes from the OS untouched (calloc), so the
            // buffer takes RSS only as it is written, and is never copied
            // to grow (doubling copied up to 8 MiB on the judging task:
            // a 30 ms stall, docs/performance.md).
            self.data = vec![0; self.cap];
        }
        self.data[off..off + raw.len()].copy_from_slice(raw);
        self.entries.push(Entry { seq, at, len: len as u32 });
    }

    /// The record of key `seq`, while it is held.
    pub fn get(&self, seq: u64) -> Option<&[u8]> {
        let live = &self.entries[self.head..];
        let (first, last) = (live.first()?.seq, live.last()?.seq);
        if seq < first || seq > last {
            return None;
        }
        // Sequence numbers grow by at least one per entry, so the entry of
        // `seq` is at most `seq - first` from the front and `last - seq`
        // from the back: with few gaps the range is a handful of entries.
        let hi = ((seq - first) as usize).min(live.len() - 1);
        let lo = (live.len() - 1).saturating_sub((last - seq) as usize);
        let i = lo + live[lo..=hi].binary_search_by_key(&seq, |e| e.seq).ok()?;
        let e = live[i];
        let off = (e.at % self.cap as u64) as usize;
        self.data.get(off..off + e.len as usize)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// What the ring returns is exactly what was pushed at that
        /// position, and the newest records (up to half its size) are
        /// always there.
        #[test]
        fn returns_what_was_pushed_and_keeps_the_newest(
            cap in 0usize..600,
            recs in prop::collection::vec((0usize..200, 1u64..4, any::<u8>()), 0..200),
        ) {
            let mut ring = RawRing::new(cap);
            let mut pushed: Vec<(u64, Vec<u8>)> = Vec::new();
            let mut pos = 0u64;
            for (len, step, byte) in recs {
                pos += step;
                let raw = vec![byte.wrapping_add(pos as u8); len];
                ring.push(pos, &raw);
                pushed.push((pos, raw));
                let mut newest = 0usize;
                for (i, (p, r)) in pushed.iter().enumerate().rev() {
                    let got = ring.get(*p);
                    if let Some(g) = got {
                        prop_assert_eq!(g, &r[..]);
                    }
                    newest += r.len();
                    if cap > 0 && newest * 2 <= cap {
                        prop_assert!(got.is_some(), "record at {} missing, {} of {} newest", p, pushed.len() - i, pushed.len());
                    }
                }
                prop_assert!(ring.get(pos + 1).is_none());
            }
        }
    }

    #[test]
    fn a_stream_starting_over_clears_the_ring() {
        let mut ring = RawRing::new(100);
        ring.push(5, b"abc");
        ring.push(1, b"xy");
        assert_eq!(ring.get(5), None);
        assert_eq!(ring.get(1), Some(&b"xy"[..]));
    }
}
