//! Join stage: groups the records of one stream (a Kafka partition, a
//! replay file) by `(feature, request_id)` and closes each group as SPEC §4
//! says: early once every awaited layer reported, at `start + window` on
//! the watermark, by force under `max_open_joins`, or at end of stream.
//!
//! The engine is synchronous and owned by one task; time only enters as
//! event times and explicit watermark advances, so it is tested without
//! clocks or brokers.
//!
//! Data structures (all bounded by `max_open_joins` / `max_closed_keys`):
//! - `slab` of open joins, found through `index` (a hash table of slots);
//! - per feature, `(start, slot, generation)` in start order (a FIFO for
//!   joins opened in order, a min-heap for the rest): within one feature
//!   the window is fixed, so start order is deadline order and expiry
//!   never scans all joins. Entries go stale when a join closes
//!   early or its start moves back; stale entries are skipped on pop;
//! - tombstones: hashes of closed keys with the watermark at which they
//!   are forgotten (`start + 2 × window`), plus a FIFO of them in close
//!   order for reclaiming memory (`tombs`);
//! - `order`: first positions of joins and tombstones in arrival order, for
//!   the lowest position still needed (what a Kafka commit may cover).
//!
//! Nothing here doubles by copying all it holds at once (`chunked`,
//! `tombs`): the judging task must not stall while its state grows.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::hash::{BuildHasher, Hash, Hasher};

use hashbrown::HashTable;

use crate::catalog::{FeatureSpec, LayerId};
use crate::features::FeatureId;
use crate::judge::{judge, Divergence, Facts, Judgement, Path};

mod chunked;
mod tombs;
use chunked::{ChunkDeque, ChunkVec};
use tombs::{Tomb, Tombs};

/// Why a join closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseCause {
    /// Every `expect` and `optional` layer reported.
    Complete,
    /// The watermark reached `start + window`.
    Window,
    /// Forced out by `max_open_joins` (oldest start first).
    Evicted,
    /// End of a replay stream.
    EndOfStream,
}

/// A join as it closes; borrowed for the duration of the callback.
pub struct Closed<'a> {
    pub feature: FeatureId,
    pub request_id: &'a str,
    pub start_ms: i64,
    pub cause: CloseCause,
    pub judgement: Judgement,
    pub divergences: &'a [Divergence],
    pub records: &'a [Facts],
    ring: &'a RawRing,
}

impl Closed<'_> {
    /// The bytes of a record of this join as received, while the engine's
    /// sample buffer still holds them.
    pub fn raw(&self, pos: u64) -> Option<&[u8]> {
        self.ring.get(pos)
    }
}

/// Receives everything the join stage decides. Metrics, the replay
/// summary, verdict output and live statistics are observers.
pub trait Observer {
    /// A record failed validation (counted, skipped).
    fn rejected(&mut self, _reason: crate::decode::Reject) {}
    /// A valid record was counted; `late` records change no verdict.
    fn record(&mut self, feature: FeatureId, layer: LayerId, path: Path, late: bool);
    /// A join closed and was judged.
    fn closed(&mut self, c: &Closed<'_>);
    /// The number of open joins changed by `delta`.
    fn open_joins(&mut self, _delta: i64) {}
}

/// One validated record, ready to join.
#[derive(Debug, Clone, Copy)]
pub struct Input<'a> {
    pub feature: FeatureId,
    /// The join key's request part (see `Pipeline` for `other`).
    pub key: &'a str,
    pub facts: Facts,
    /// The record's bytes, kept for divergence samples if enabled.
    pub raw: &'a [u8],
}

#[derive(Debug, Clone)]
pub struct Limits {
    pub allowed_lateness_ms: i64,
    pub max_open_joins: usize,
    pub max_closed_keys: usize,
    /// Bytes of raw records kept for divergence samples (0 = none).
    pub sample_bytes: usize,
}

struct Spec {
    window_ms: i64,
    expect: u64,
    awaited: u64,
}

struct Join {
    key: SmallKey,
    hash: u64,
    feature: FeatureId,
    live: bool,
    gen: u32,
    start: i64,
    first_pos: u64,
    reported: u64,
    /// Records held in `inline` (the first `n`), then in `more`. The
    /// record that completes a join is never stored (it is judged at
    /// once), so a join of up to `INLINE + 1` layers needs no allocation
    /// and finding it and adding a record touch one slab entry.
    n: u8,
    inline: [Facts; INLINE],
    /// Allocated only past `INLINE` records, from a pool of spare vectors.
    more: Vec<Facts>,
}

/// Records kept inline per join: four layers (frontend, api, worker,
/// analytics) need three, the fourth completes the join.
const INLINE: usize = 3;

/// A request id stored inline when short (all real ones), so finding a
/// join touches one cache line and opening one allocates nothing.
#[derive(Default)]
enum SmallKey {
    Inline(u8, [u8; SmallKey::INLINE]),
    Heap(Box<str>),
    #[default]
    Empty,
}

impl SmallKey {
    const INLINE: usize = 30;
    fn new(s: &str) -> Self {
        if s.len() <= Self::INLINE {
            let mut b = [0; Self::INLINE];
            b[..s.len()].copy_from_slice(s.as_bytes());
            SmallKey::Inline(s.len() as u8, b)
        } else {
            SmallKey::Heap(s.into())
        }
    }
    fn set(&mut self, s: &str) {
        match self {
            SmallKey::Inline(n, b) if s.len() <= Self::INLINE => {
                b[..s.len()].copy_from_slice(s.as_bytes());
                *n = s.len() as u8;
            }
            _ => *self = SmallKey::new(s),
        }
    }
    fn as_str(&self) -> &str {
        match self {
            SmallKey::Inline(n, b) => std::str::from_utf8(&b[..*n as usize]).unwrap_or(""),
            SmallKey::Heap(s) => s,
            SmallKey::Empty => "",
        }
    }
}

pub struct JoinEngine {
    specs: Vec<Spec>,
    limits: Limits,
    watermark: i64,
    /// Grows by chunks: a doubling `Vec` would copy every open join at
    /// once on the judging task (see `chunked`).
    slab: ChunkVec<Join>,
    free: Vec<u32>,
    /// Open joins by key hash, as `ix` entries (hash high half and slot),
    /// so that a rehash reads only the table, never the slab.
    index: HashTable<u64>,
    hasher: foldhash::quality::FixedState,
    heaps: Vec<Deadlines>,
    /// A lower bound of the earliest window deadline of any open join.
    next_deadline: i64,
    open: usize,
    /// Remembered closed keys (see `tombs`).
    tombs: Tombs,
    /// `(first position, key hash, watermark after that record advanced it)`.
    order: ChunkDeque<(u64, u64, i64)>,
    divs: Vec<Divergence>,
    /// The closing join's records, contiguous (reused buffer).
    recs: Vec<Facts>,
    /// Spare record vectors of closed joins, reused by new ones.
    spare: Vec<Vec<Facts>>,
    ring: RawRing,
    evicted: u64,
}

impl JoinEngine {
    pub fn new(limits: Limits) -> Self {
        JoinEngine {
            specs: Vec::new(),
            ring: RawRing::new(limits.sample_bytes),
            limits,
            watermark: i64::MIN,
            slab: ChunkVec::default(),
            free: Vec::new(),
            index: HashTable::new(),
            hasher: foldhash::quality::FixedState::with_seed(0x6163_636f_7264),
            heaps: Vec::new(),
            next_deadline: i64::MAX,
            open: 0,
            tombs: Tombs::default(),
            order: ChunkDeque::default(),
            divs: Vec::new(),
            recs: Vec::new(),
            spare: Vec::new(),
            evicted: 0,
        }
    }

    /// Registers (or refreshes) the spec of a feature id. Must be called
    /// before the first record of that feature.
    pub fn set_spec(&mut self, id: FeatureId, spec: &FeatureSpec) {
        let i = id as usize;
        while self.specs.len() <= i {
            self.specs.push(Spec { window_ms: 0, expect: 0, awaited: 0 });
            self.heaps.push(Deadlines::default());
        }
        self.specs[i] = Spec { window_ms: spec.window_ms, expect: spec.expect, awaited: spec.awaited() };
    }

    /// The current watermark (`i64::MIN` before the first record).
    pub fn watermark(&self) -> i64 {
        self.watermark
    }

    pub fn open_joins(&self) -> usize {
        self.open
    }

    pub fn closed_keys(&self) -> usize {
        self.tombs.len()
    }

    pub fn evicted(&self) -> u64 {
        self.evicted
    }

    fn key_hash(&self, feature: FeatureId, key: &str) -> u64 {
        let mut h = self.hasher.build_hasher();
        feature.hash(&mut h);
        key.hash(&mut h);
        h.finish()
    }

    /// Judges one record: advance the watermark (closing what it closes),
    /// then count the record as late or join it (SPEC §4, order of work).
    pub fn process(&mut self, inp: Input<'_>, obs: &mut impl Observer) {
        let f = inp.facts;
        self.advance_watermark(f.ts_ms.saturating_sub(self.limits.allowed_lateness_ms), obs);
        let fi = inp.feature as usize;
        let (window, awaited) = (self.specs[fi].window_ms, self.specs[fi].awaited);
        let hash = self.key_hash(inp.feature, inp.key);
        let slab = &self.slab;
        let found = self
            .index
            .find(ix::hash(hash), |&e| {
                ix::matches(e, hash) && {
                    let j = &slab[ix::slot(e) as usize];
                    j.hash == hash && j.feature == inp.feature && j.key.as_str() == inp.key
                }
            })
            .map(|&e| ix::slot(e));
        if let Some(slot) = found {
            self.ring.push(f.pos, inp.raw);
            obs.record(inp.feature, f.layer, f.path, false);
            let j = &mut self.slab[slot as usize];
            j.reported |= 1 << f.layer;
            if f.ts_ms < j.start {
                j.start = f.ts_ms;
                let e = (j.start, slot, j.gen);
                self.heaps[fi].push(e);
                self.next_deadline = self.next_deadline.min(j.start.saturating_add(window));
            }
            if j.reported & awaited == awaited {
                self.close_with(slot, CloseCause::Complete, Some(f), obs);
                return;
            }
            if (j.n as usize) < INLINE {
                j.inline[j.n as usize] = f;
                j.n += 1;
            } else {
                if j.more.capacity() == 0 {
                    j.more = self.spare.pop().unwrap_or_else(|| Vec::with_capacity(4));
                }
                j.more.push(f);
            }
            if j.start.saturating_add(window) <= self.watermark {
                self.close(slot, CloseCause::Window, obs);
            }
            return;
        }
        if self.remembered(hash) || f.ts_ms.saturating_add(window) < self.watermark {
            obs.record(inp.feature, f.layer, f.path, true);
            return;
        }
        if self.open >= self.limits.max_open_joins {
            self.evict_oldest(obs);
        }
        self.ring.push(f.pos, inp.raw);
        obs.record(inp.feature, f.layer, f.path, false);
        let slot = match self.free.pop() {
            Some(s) => {
                // Fill the free slot in place (no temporary to move).
                let j = &mut self.slab[s as usize];
                j.key.set(inp.key);
                j.hash = hash;
                j.feature = inp.feature;
                j.live = true;
                j.start = f.ts_ms;
                j.first_pos = f.pos;
                j.reported = 1 << f.layer;
                j.n = 1;
                j.inline[0] = f;
                s
            }
            None => {
                let slot = self.slab.push(Join {
                    key: SmallKey::new(inp.key),
                    hash,
                    feature: inp.feature,
                    live: true,
                    gen: 0,
                    start: f.ts_ms,
                    first_pos: f.pos,
                    reported: 1 << f.layer,
                    n: 1,
                    inline: [f; INLINE],
                    more: Vec::new(),
                });
                slot as u32
            }
        };
        self.index.insert_unique(ix::hash(hash), ix::entry(hash, slot), |&e| ix::hash(e));
        let gen = self.slab[slot as usize].gen;
        self.heaps[fi].push((f.ts_ms, slot, gen));
        self.next_deadline = self.next_deadline.min(f.ts_ms.saturating_add(window));
        self.order.push_back((f.pos, hash, self.watermark));
        // `order` is trimmed from the front by `lowest_needed`; a stream
        // nobody asks (replay) or an old join pinning the front would let it
        // grow with every join ever opened. Keep it proportional to the
        // state it describes.
        if self.order.len() > 2 * (self.open + self.tombs.len()) + 1024 {
            self.trim_order();
        }
        self.open += 1;
        obs.open_joins(1);
        if (1u64 << f.layer) & awaited == awaited {
            self.close(slot, CloseCause::Complete, obs);
        } else if f.ts_ms.saturating_add(window) <= self.watermark {
            self.close(slot, CloseCause::Window, obs);
        }
    }

    /// Moves the watermark forward (never back) and closes what it closes.
    /// The live source calls this for idle partitions with the wall clock.
    pub fn advance_watermark(&mut self, wm: i64, obs: &mut impl Observer) {
        if wm <= self.watermark {
            return;
        }
        self.watermark = wm;
        if wm >= self.next_deadline {
            let mut next = i64::MAX;
            for fi in 0..self.heaps.len() {
                let window = self.specs[fi].window_ms;
                while let Some((start, slot, gen)) = self.heaps[fi].peek() {
                    if start.saturating_add(window) > wm {
                        next = next.min(start.saturating_add(window));
                        break;
                    }
                    self.heaps[fi].pop();
                    if self.valid(start, slot, gen) {
                        self.close(slot, CloseCause::Window, obs);
                    }
                }
            }
            self.next_deadline = next;
        }
        self.tombs.expire(wm);
    }

    /// A closed key is remembered (its records are late) until the
    /// watermark passes `start + 2 × window` (SPEC §4).
    fn remembered(&self, hash: u64) -> bool {
        self.tombs.get(hash).is_some_and(|t| t.forget_at >= self.watermark)
    }

    /// The tombstone first seen at `pos` is still remembered.
    fn tomb_holds(&self, hash: u64, pos: u64) -> bool {
        self.tombs.get(hash).is_some_and(|t| t.first_pos == pos && t.forget_at >= self.watermark)
    }

    fn valid(&self, start: i64, slot: u32, gen: u32) -> bool {
        let j = &self.slab[slot as usize];
        j.live && j.gen == gen && j.start == start
    }

    fn evict_oldest(&mut self, obs: &mut impl Observer) {
        let mut best: Option<(i64, u32)> = None;
        for fi in 0..self.heaps.len() {
            while let Some((start, slot, gen)) = self.heaps[fi].peek() {
                if self.valid(start, slot, gen) {
                    if best.is_none_or(|(s, _)| start < s) {
                        best = Some((start, slot));
                    }
                    break;
                }
                self.heaps[fi].pop();
            }
        }
        if let Some((_, slot)) = best {
            self.evicted += 1;
            self.close(slot, CloseCause::Evicted, obs);
        }
    }

    fn close(&mut self, slot: u32, cause: CloseCause, obs: &mut impl Observer) {
        self.close_with(slot, cause, None, obs)
    }

    /// Closes a join; `last` is the record that completed it (not stored).
    fn close_with(&mut self, slot: u32, cause: CloseCause, last: Option<Facts>, obs: &mut impl Observer) {
        let j = &mut self.slab[slot as usize];
        let mut more = std::mem::take(&mut j.more);
        self.recs.clear();
        self.recs.extend_from_slice(&j.inline[..j.n as usize]);
        self.recs.extend_from_slice(&more);
        self.recs.extend(last);
        j.n = 0;
        if more.capacity() != 0 && self.spare.len() < 4096 {
            more.clear();
            self.spare.push(more);
        }
        j.live = false;
        j.gen = j.gen.wrapping_add(1);
        let (hash, feature, start, first_pos) = (j.hash, j.feature, j.start, j.first_pos);
        if let Ok(e) = self.index.find_entry(ix::hash(hash), |&e| ix::slot(e) == slot) {
            e.remove();
        }
        self.free.push(slot);
        self.open -= 1;
        obs.open_joins(-1);
        let spec = &self.specs[feature as usize];
        let judgement = judge(spec.expect, &self.recs, &mut self.divs);
        obs.closed(&Closed {
            feature,
            request_id: self.slab[slot as usize].key.as_str(),
            start_ms: start,
            cause,
            judgement,
            divergences: &self.divs,
            records: &self.recs,
            ring: &self.ring,
        });
        if cause == CloseCause::EndOfStream {
            return;
        }
        let forget_at = start.saturating_add(spec.window_ms.saturating_mul(2));
        self.tombs.insert(hash, Tomb { forget_at, first_pos }, self.limits.max_closed_keys);
    }

    /// Closes every open join (end of a replay file), oldest start first.
    pub fn flush(&mut self, obs: &mut impl Observer) {
        let mut live: Vec<(i64, u64, u32)> = self
            .slab
            .iter()
            .enumerate()
            .filter(|(_, j)| j.live)
            .map(|(i, j)| (j.start, j.first_pos, i as u32))
            .collect();
        live.sort_unstable();
        for (_, _, slot) in live {
            self.close(slot, CloseCause::EndOfStream, obs);
        }
        for h in &mut self.heaps {
            h.clear();
        }
        self.next_deadline = i64::MAX;
        self.tombs.clear();
        self.order.clear();
    }

    fn trim_order(&mut self) {
        let (tombs, index, slab, wm) = (&self.tombs, &self.index, &self.slab, self.watermark);
        self.order.retain(|&(pos, hash, _)| {
            tombs.get(hash).is_some_and(|t| t.first_pos == pos && t.forget_at >= wm)
                || index
                    .find(ix::hash(hash), |&e| ix::matches(e, hash) && slab[ix::slot(e) as usize].first_pos == pos)
                    .is_some()
        });
    }

    /// The lowest stream position still needed to rebuild this engine's
    /// state (open joins and remembered closed keys), with the watermark
    /// right after that record was processed; `None` if nothing is held.
    /// Everything below the position may be committed: replaying from it
    /// with that watermark rebuilds the same joins and tombstones.
    pub fn lowest_needed(&mut self) -> Option<(u64, i64)> {
        while let Some(&(pos, hash, wm)) = self.order.front() {
            let tomb = self.tomb_holds(hash, pos);
            let slab = &self.slab;
            let open = !tomb
                && self
                    .index
                    .find(ix::hash(hash), |&e| ix::matches(e, hash) && slab[ix::slot(e) as usize].first_pos == pos)
                    .is_some();
            if tomb || open {
                return Some((pos, wm));
            }
            self.order.pop_front();
        }
        None
    }

    /// The lowest stream position held by an open join (closing it can
    /// still change a verdict).
    pub fn lowest_open_pos(&self) -> Option<u64> {
        self.slab.iter().filter(|j| j.live).map(|j| j.first_pos).min()
    }
}

/// Index entries: the key hash's high half and the slot, in one `u64`.
/// The table is hashed by the high half alone, so a rehash recomputes
/// every bucket from the entry itself; the low half is checked in the
/// slab (`Join::hash`).
mod ix {
    #[inline]
    pub fn entry(hash: u64, slot: u32) -> u64 {
        (hash & 0xffff_ffff_0000_0000) | slot as u64
    }
    #[inline]
    pub fn slot(e: u64) -> u32 {
        e as u32
    }
    #[inline]
    pub fn matches(e: u64, hash: u64) -> bool {
        (e ^ hash) >> 32 == 0
    }
    /// Spreads the high half over the whole word (hashbrown takes the
    /// bucket from the low bits and the tag from the top seven). Takes a
    /// key hash or an entry: both have the same high half.
    #[inline]
    pub fn hash(hash: u64) -> u64 {
        (hash >> 32).wrapping_mul(0x9e37_79b9_7f4a_7c15)
    }
}

/// `(start, slot, generation)` entries of one feature, smallest start
/// first. Joins mostly open in start order, so entries go to a FIFO and
/// only those that arrive out of order to a heap: popping is O(1) for
/// almost every join instead of a sift through a heap of every join in
/// the window.
#[derive(Default)]
struct Deadlines {
    fifo: ChunkDeque<(i64, u32, u32)>,
    heap: BinaryHeap<Reverse<(i64, u32, u32)>>,
}

impl Deadlines {
    fn push(&mut self, e: (i64, u32, u32)) {
        if self.fifo.back().is_none_or(|b| b.0 <= e.0) {
            self.fifo.push_back(e);
        } else {
            self.heap.push(Reverse(e));
        }
    }

    fn peek(&self) -> Option<(i64, u32, u32)> {
        match (self.fifo.front(), self.heap.peek()) {
            (Some(&f), Some(&Reverse(h))) => Some(f.min(h)),
            (Some(&f), None) => Some(f),
            (None, Some(&Reverse(h))) => Some(h),
            (None, None) => None,
        }
    }

    fn pop(&mut self) {
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

    fn clear(&mut self) {
        self.fifo.clear();
        self.heap.clear();
    }
}

/// A byte-capped FIFO of the most recent raw records, by position, so
/// divergence samples can show records "as received" without every open
/// join holding its records' bytes.
///
/// The bytes sit in one buffer of `cap` bytes, written in a circle; a
/// record is never split (the tail that does not fit is skipped), and a
/// record is found in O(1) while positions are contiguous (Kafka offsets,
/// replay lines), by binary search otherwise.
pub struct RawRing {
    cap: usize,
    data: Vec<u8>,
    /// Bytes ever written, counting skipped tails: an entry at `at` is
    /// intact while `at + cap >= end`.
    end: u64,
    /// `(position, at, len)` in write order; `entries[head..]` are live
    /// (a Vec rather than a deque, so lookups can search a sub-slice).
    entries: Vec<(u64, u64, u32)>,
    head: usize,
}

impl RawRing {
    pub fn new(cap: usize) -> Self {
        RawRing { cap, data: Vec::new(), end: 0, entries: Vec::new(), head: 0 }
    }

    fn push(&mut self, pos: u64, raw: &[u8]) {
        let cap = self.cap as u64;
        let len = raw.len() as u64;
        if cap == 0 || len > cap || len > u32::MAX as u64 {
            return;
        }
        if self.entries.last().is_some_and(|e| e.0 >= pos) {
            // Positions must grow; a replayed stream starts over.
            self.entries.clear();
            self.head = 0;
        }
        let mut at = self.end;
        if at % cap + len > cap {
            at += cap - at % cap;
        }
        self.end = at + len;
        while self.entries.get(self.head).is_some_and(|e| e.1 + cap < self.end) {
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
        self.entries.push((pos, at, len as u32));
    }

    pub fn get(&self, pos: u64) -> Option<&[u8]> {
        let live = &self.entries[self.head..];
        let (first, last) = (live.first()?.0, live.last()?.0);
        if pos < first || pos > last {
            return None;
        }
        // Positions grow by at least one per entry, so the entry of `pos`
        // is at most `pos - first` from the front and `last - pos` from
        // the back: with few gaps (records not kept: late, rejected) the
        // range is a handful of entries.
        let hi = ((pos - first) as usize).min(live.len() - 1);
        let lo = (live.len() - 1).saturating_sub((last - pos) as usize);
        let i = lo + live[lo..=hi].binary_search_by_key(&pos, |e| e.0).ok()?;
        let (_, at, len) = live[i];
        let off = (at % self.cap as u64) as usize;
        self.data.get(off..off + len as usize)
    }
}

/// Both observers see everything, in order.
impl<A: Observer, B: Observer> Observer for (A, B) {
    fn rejected(&mut self, r: crate::decode::Reject) {
        self.0.rejected(r);
        self.1.rejected(r);
    }
    fn record(&mut self, feature: FeatureId, layer: LayerId, path: Path, late: bool) {
        self.0.record(feature, layer, path, late);
        self.1.record(feature, layer, path, late);
    }
    fn closed(&mut self, c: &Closed<'_>) {
        self.0.closed(c);
        self.1.closed(c);
    }
    fn open_joins(&mut self, d: i64) {
        self.0.open_joins(d);
        self.1.open_joins(d);
    }
}

impl<T: Observer + ?Sized> Observer for &mut T {
    fn rejected(&mut self, r: crate::decode::Reject) {
        (**self).rejected(r)
    }
    fn record(&mut self, feature: FeatureId, layer: LayerId, path: Path, late: bool) {
        (**self).record(feature, layer, path, late)
    }
    fn closed(&mut self, c: &Closed<'_>) {
        (**self).closed(c)
    }
    fn open_joins(&mut self, d: i64) {
        (**self).open_joins(d)
    }
}

#[cfg(test)]
mod tests {
    use super::RawRing;
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

    proptest! {
        /// Deadlines come out in start order however they went in.
        #[test]
        fn deadlines_pop_in_start_order(starts in prop::collection::vec(-50i64..50, 0..300)) {
            let mut d = super::Deadlines::default();
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

    #[test]
    fn a_stream_starting_over_clears_the_ring() {
        let mut ring = RawRing::new(100);
        ring.push(5, b"abc");
        ring.push(1, b"xy");
        assert_eq!(ring.get(5), None);
        assert_eq!(ring.get(1), Some(&b"xy"[..]));
    }
}
