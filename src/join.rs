//! Join stage: groups the records of one stream (a Kafka partition, a
//! replay file) by `(feature, request_id)` and closes each group as
//! docs/reference.md#opening-and-closing-a-join
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
//! - `order`: per source of the stream (a topic; a file of a merged replay),
//!   the first record of that source of every join and tombstone, in
//!   arrival order, for the lowest offset of the source still needed (what
//!   a Kafka commit may cover: re-reading every source from its needed
//!   offset re-reads every record of every join still held).
//!
//! Nothing here doubles by copying all it holds at once (`chunked`,
//! `tombs`): the judging task must not stall while its state grows.

use std::hash::{BuildHasher, Hash, Hasher};

use hashbrown::HashTable;

use crate::catalog::{FeatureSpec, LayerSet};
use crate::features::FeatureId;
use crate::judge::{judge, Divergence, Facts};

mod chunked;
mod deadlines;
mod observer;
mod ring;
mod tombs;
pub use crate::position::Position;
use chunked::{ChunkDeque, ChunkVec};
use deadlines::Deadlines;
pub use observer::{Closed, Evidence, Observer};
pub use ring::RawRing;
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

impl CloseCause {
    pub const ALL: [CloseCause; 4] =
        [CloseCause::Complete, CloseCause::Window, CloseCause::Evicted, CloseCause::EndOfStream];
    pub fn as_str(self) -> &'static str {
        match self {
            CloseCause::Complete => "complete",
            CloseCause::Window => "window",
            CloseCause::Evicted => "evicted",
            CloseCause::EndOfStream => "end_of_stream",
        }
    }
}

/// The earliest record of one source that the engine still needs to
/// rebuild its state (see [`JoinEngine::lowest_needed`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Needed {
    pub offset: u64,
    /// When the record arrived in the stream, to tell which source's
    /// needed record came first.
    pub arrival: u64,
    /// The watermark right after the record was judged.
    pub watermark: i64,
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
    expect: LayerSet,
    awaited: LayerSet,
}

struct Join {
    key: SmallKey,
    hash: u64,
    feature: FeatureId,
    gen: u32,
    start: i64,
    /// Where the join's first record came from (source, position key):
    /// identifies this join among the joins a key has had (see `order`).
    /// Two fields rather than a tuple, so the source byte packs with the
    /// other small fields instead of taking eight bytes.
    first_source: u8,
    first_key: u64,
    /// Sources (bit `s`, below 64) whose records the join has in `order`.
    sources: u64,
    reported: LayerSet,
    /// Records held in `inline` (the first `n`, 0 once closed), then in
    /// `more`. The record that completes a join is never stored (it is
    /// judged at once), so a join of up to `INLINE + 1` layers needs no
    /// allocation and finding it and adding a record touch one slab entry.
    n: u8,
    inline: [Facts; INLINE],
    /// Allocated only past `INLINE` records, from a pool of spare vectors
    /// (boxed: a pointer in every join instead of a vector's three words;
    /// the memory target counts every byte of the slab entry).
    #[allow(clippy::box_collection)]
    more: Option<Box<Vec<Facts>>>,
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

impl Join {
    /// Open: a join holds at least the record that opened it until it
    /// closes, and closing empties it (`n` is then 0).
    fn live(&self) -> bool {
        self.n != 0
    }

    fn first(&self) -> (u8, u64) {
        (self.first_source, self.first_key)
    }
}

impl SmallKey {
    const INLINE: usize = 38;
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
            SmallKey::Heap(s) => s,
            _ => std::str::from_utf8(self.as_bytes()).unwrap_or(""),
        }
    }
    /// The key's bytes, for finding a join: [`SmallKey::as_str`] checks
    /// the inline bytes as UTF-8 again, which a comparison need not.
    fn as_bytes(&self) -> &[u8] {
        match self {
            SmallKey::Inline(n, b) => &b[..*n as usize],
            SmallKey::Heap(s) => s.as_bytes(),
            SmallKey::Empty => b"",
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
    /// Per source: the first record of every join and tombstone, in arrival
    /// order (within a source, arrival order is position order).
    order: Vec<ChunkDeque<OrderEntry>>,
    /// Entries in `order` (all sources).
    order_len: usize,
    /// Joins opened so far (orders `order` entries across sources).
    arrivals: u64,
    divs: Vec<Divergence>,
    /// The closing join's records, contiguous (reused buffer).
    recs: Vec<Facts>,
    /// Spare record vectors of closed joins, reused by new ones.
    #[allow(clippy::vec_box)] // boxed as in `Join::more`, to move in and out
    spare: Vec<Box<Vec<Facts>>>,
    /// Recent records' bytes per source, for divergence samples.
    rings: Vec<RawRing>,
    evicted: u64,
}

impl JoinEngine {
    pub fn new(limits: Limits) -> Self {
        JoinEngine {
            specs: Vec::new(),
            rings: Vec::new(),
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
            order: Vec::new(),
            order_len: 0,
            arrivals: 0,
            divs: Vec::new(),
            recs: Vec::new(),
            spare: Vec::new(),
            evicted: 0,
        }
    }

    /// Registers (or refreshes) the spec of a feature id. Must be called
    /// before the first record of that feature.
    pub fn set_spec(&mut self, id: FeatureId, spec: &FeatureSpec) {
        let i = id.index();
        while self.specs.len() <= i {
            self.specs.push(Spec { window_ms: 0, expect: LayerSet::EMPTY, awaited: LayerSet::EMPTY });
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
    /// then count the record as late or join it
    /// (docs/reference.md#order-of-work).
    pub fn process(&mut self, inp: Input<'_>, obs: &mut impl Observer) {
        let f = inp.facts;
        self.advance_watermark(f.ts_ms.saturating_sub(self.limits.allowed_lateness_ms), obs);
        let fi = inp.feature.index();
        let (window, awaited) = (self.specs[fi].window_ms, self.specs[fi].awaited);
        let hash = self.key_hash(inp.feature, inp.key);
        let slab = &self.slab;
        let found = self
            .index
            .find(ix::hash(hash), |&e| {
                ix::matches(e, hash) && {
                    let j = &slab[ix::slot(e) as usize];
                    j.hash == hash && j.feature == inp.feature && j.key.as_bytes() == inp.key.as_bytes()
                }
            })
            .map(|&e| ix::slot(e));
        if let Some(slot) = found {
            self.keep_sample(&f, inp.raw);
            obs.record(inp.feature, f.layer, f.path, false);
            let j = &mut self.slab[slot as usize];
            let bit = 1u64.checked_shl(f.source.into()).unwrap_or(0);
            if j.sources & bit == 0 || bit == 0 {
                // The join's first record from this source: a commit of
                // this source must not pass it while the join is held.
                j.sources |= bit;
                let first = j.first();
                self.push_order(f.source, f.position().key(), first, hash);
            }
            let j = &mut self.slab[slot as usize];
            j.reported.insert(f.layer);
            if f.ts_ms < j.start {
                j.start = f.ts_ms;
                let e = (j.start, slot, j.gen);
                self.heaps[fi].push(e);
                self.next_deadline = self.next_deadline.min(j.start.saturating_add(window));
            }
            if j.reported.is_superset(awaited) {
                self.close_with(slot, CloseCause::Complete, Some(f), obs);
                return;
            }
            if (j.n as usize) < INLINE {
                j.inline[j.n as usize] = f;
                j.n += 1;
            } else {
                let more =
                    j.more.get_or_insert_with(|| self.spare.pop().unwrap_or_else(|| Box::new(Vec::with_capacity(4))));
                more.push(f);
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
        self.keep_sample(&f, inp.raw);
        obs.record(inp.feature, f.layer, f.path, false);
        let first = (f.source, f.position().key());
        let slot = match self.free.pop() {
            Some(s) => {
                // Fill the free slot in place (no temporary to move).
                let j = &mut self.slab[s as usize];
                j.key.set(inp.key);
                j.hash = hash;
                j.feature = inp.feature;
                j.start = f.ts_ms;
                (j.first_source, j.first_key) = first;
                j.sources = 1u64.checked_shl(f.source.into()).unwrap_or(0);
                j.reported = LayerSet::of(f.layer);
                j.n = 1;
                j.inline[0] = f;
                s
            }
            None => {
                let slot = self.slab.push(Join {
                    key: SmallKey::new(inp.key),
                    hash,
                    feature: inp.feature,
                    gen: 0,
                    start: f.ts_ms,
                    first_source: first.0,
                    first_key: first.1,
                    sources: 1u64.checked_shl(f.source.into()).unwrap_or(0),
                    reported: LayerSet::of(f.layer),
                    n: 1,
                    inline: [f; INLINE],
                    more: None,
                });
                slot as u32
            }
        };
        self.index.insert_unique(ix::hash(hash), ix::entry(hash, slot), |&e| ix::hash(e));
        let gen = self.slab[slot as usize].gen;
        self.heaps[fi].push((f.ts_ms, slot, gen));
        self.next_deadline = self.next_deadline.min(f.ts_ms.saturating_add(window));
        self.push_order(f.source, first.1, first, hash);
        self.open += 1;
        obs.open_joins(1);
        if LayerSet::of(f.layer).is_superset(awaited) {
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
    /// watermark passes `start + 2 × window` (docs/reference.md#late-records).
    fn remembered(&self, hash: u64) -> bool {
        self.tombs.get(hash).is_some_and(|t| t.forget_at >= self.watermark)
    }

    /// Notes that a join (identified by its first record `first`) holds a
    /// record of `source` at `key`.
    fn push_order(&mut self, source: u8, key: u64, first: (u8, u64), hash: u64) {
        let src = source as usize;
        if self.order.len() <= src {
            self.order.resize_with(src + 1, ChunkDeque::default);
        }
        self.arrivals += 1;
        self.order[src].push_back(OrderEntry { arrival: self.arrivals, key, first, hash, wm: self.watermark });
        self.order_len += 1;
        // `order` is trimmed from the front by `lowest_needed`; a stream
        // nobody asks (replay) or an old join pinning the front would let it
        // grow with every join ever opened. Keep it proportional to the
        // state it describes.
        if self.order_len > 2 * (self.open + self.tombs.len()) * self.order.len() + 1024 {
            self.trim_order();
        }
    }

    /// The join or tombstone whose first record came from `first` still
    /// holds its key.
    fn holds(&self, hash: u64, first: (u8, u64)) -> bool {
        self.tombs.get(hash).is_some_and(|t| t.first == first && t.forget_at >= self.watermark)
            || self
                .index
                .find(ix::hash(hash), |&x| ix::matches(x, hash) && self.slab[ix::slot(x) as usize].first() == first)
                .is_some()
    }

    /// Keeps the record's bytes for divergence samples.
    fn keep_sample(&mut self, f: &Facts, raw: &[u8]) {
        if self.limits.sample_bytes == 0 {
            return;
        }
        let s = f.source as usize;
        if self.rings.len() <= s {
            // The budget is the stream's, shared by its sources.
            let cap = self.limits.sample_bytes / (s + 1);
            self.rings.resize_with(s + 1, || RawRing::new(cap));
        }
        self.rings[s].push(f.position().key(), raw);
    }

    fn valid(&self, start: i64, slot: u32, gen: u32) -> bool {
        let j = &self.slab[slot as usize];
        j.live() && j.gen == gen && j.start == start
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
        let more = j.more.take();
        self.recs.clear();
        self.recs.extend_from_slice(&j.inline[..j.n as usize]);
        self.recs.extend_from_slice(more.as_deref().map_or(&[], |m| &m[..]));
        self.recs.extend(last);
        j.n = 0;
        if let Some(mut more) = more {
            if self.spare.len() < 4096 {
                more.clear();
                self.spare.push(more);
            }
        }
        j.gen = j.gen.wrapping_add(1);
        let (hash, feature, start, first) = (j.hash, j.feature, j.start, j.first());
        if let Ok(e) = self.index.find_entry(ix::hash(hash), |&e| ix::slot(e) == slot) {
            e.remove();
        }
        self.free.push(slot);
        self.open -= 1;
        obs.open_joins(-1);
        let spec = &self.specs[feature.index()];
        let judgement = judge(spec.expect, &self.recs, &mut self.divs);
        obs.closed(&Closed {
            feature,
            request_id: self.slab[slot as usize].key.as_str(),
            start_ms: start,
            cause,
            judgement,
            divergences: &self.divs,
            records: &self.recs,
            rings: &self.rings,
        });
        if cause == CloseCause::EndOfStream {
            return;
        }
        let forget_at = start.saturating_add(spec.window_ms.saturating_mul(2));
        self.tombs.insert(hash, Tomb { forget_at, first }, self.limits.max_closed_keys);
    }

    /// Closes every open join (end of a replay file), oldest start first.
    pub fn flush(&mut self, obs: &mut impl Observer) {
        let mut live: Vec<(i64, (u8, u64), u32)> = self
            .slab
            .iter()
            .enumerate()
            .filter(|(_, j)| j.live())
            .map(|(i, j)| (j.start, j.first(), i as u32))
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
        for o in &mut self.order {
            o.clear();
        }
        self.order_len = 0;
    }

    fn trim_order(&mut self) {
        let mut order = std::mem::take(&mut self.order);
        for o in order.iter_mut() {
            o.retain(|e| self.holds(e.hash, e.first));
        }
        self.order_len = order.iter().map(|o| o.len()).sum();
        self.order = order;
    }

    /// The earliest record of `source` still needed to rebuild this
    /// engine's state (open joins and remembered closed keys); `None` if
    /// none of its records is held. Everything of that source below the
    /// offset may be committed: replaying from the needed offsets of every
    /// source, starting with the watermark of the earliest of them (by
    /// `arrival`), rebuilds the same joins and tombstones.
    pub fn lowest_needed(&mut self, source: usize) -> Option<Needed> {
        while let Some(e) = self.order.get(source).and_then(|o| o.front()).copied() {
            if self.holds(e.hash, e.first) {
                return Some(Needed { offset: e.key >> 16, arrival: e.arrival, watermark: e.wm });
            }
            self.order[source].pop_front();
            self.order_len -= 1;
        }
        None
    }
}

/// See `JoinEngine::order`.
#[derive(Debug, Clone, Copy)]
struct OrderEntry {
    arrival: u64,
    /// `Position::key` of the join's first record of this source.
    key: u64,
    /// The join's first record of all (which join of the key it is).
    first: (u8, u64),
    hash: u64,
    wm: i64,
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

#[cfg(test)]
mod tests {
    use super::*;

    /// The memory target (≤ 300 bytes per open join, docs/performance.md)
    /// rests on the slab entry's size: a field that breaks the packing
    /// (a tuple with padding, an unboxed vector) shows here first.
    #[test]
    fn a_join_with_a_uuid_inline_fits_in_216_bytes() {
        const { assert!(SmallKey::INLINE >= 36, "a UUID request id is kept inline") };
        assert_eq!(std::mem::size_of::<Join>(), 216);
    }
}
