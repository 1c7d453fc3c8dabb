//! [`ExitAgg`]: the evidence of the exit review for one feature, mergeable,
//! serialisable and bounded (see the module header of `exit` for the
//! bound and the exactness rule).
//!
//! Every cap keeps a **canonical** part of the evidence, one that depends
//! only on the multiset of records and never on the order they were added
//! or merged in: the takers that sort first, the revisions that sort last
//! in natural order, the lowest distinct milliseconds of a second, the
//! latest seconds of a revision. That is what makes merging exact where it
//! is exact and identical everywhere else, whichever instance merges.

use std::cmp::Ordering;
use std::collections::{BTreeMap, VecDeque};

use crate::join::Evidence;
use crate::judge::RecordPath;

/// Revisions kept per feature (like the stale-revision counter's memory
/// per stream); the ones that sort first in natural order are dropped
/// beyond it, their records kept as a count per layer.
pub const MAX_REVISIONS: usize = 16;
/// `(service, build)` pairs kept per layer; the ones that sort last are
/// summed beyond it.
pub const MAX_TAKERS: usize = 256;
/// Distinct milliseconds kept per layer, revision and second (the lowest).
pub const MS_DETAIL: usize = 16;
/// Longer service, build and revision names are cut (at a character
/// boundary) to this many bytes.
pub const MAX_NAME_BYTES: usize = 128;
/// Seconds kept per layer and revision by [`ExitAgg::for_live`]: an hour
/// of event time and eight minutes for late and early records.
pub const LIVE_SECONDS_PER_LAYER: usize = 4_096;
/// `(layer, second)` entries kept per revision by [`ExitAgg::for_archive`]:
/// twelve days of event time for four layers.
pub const ARCHIVE_SECONDS: usize = 1 << 22;
/// The name under which a record without `service` or `build` counts.
pub const UNKNOWN: &str = "unknown";

/// Records counted with the latest event time among them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Seen {
    pub records: u64,
    /// `i64::MIN` while `records` is 0.
    pub last_ms: i64,
}

impl Default for Seen {
    fn default() -> Self {
        Seen { records: 0, last_ms: i64::MIN }
    }
}

impl Seen {
    pub(crate) fn merge(&mut self, o: Seen) {
        self.records = self.records.saturating_add(o.records);
        self.last_ms = self.last_ms.max(o.last_ms);
    }
}

/// Records counted with the earliest and latest event time among them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Span {
    pub records: u64,
    /// `i64::MAX` while `records` is 0.
    pub first_ms: i64,
    /// `i64::MIN` while `records` is 0.
    pub last_ms: i64,
}

impl Default for Span {
    fn default() -> Self {
        Span { records: 0, first_ms: i64::MAX, last_ms: i64::MIN }
    }
}

impl Span {
    pub(crate) fn add(&mut self, ts_ms: i64) {
        self.records = self.records.saturating_add(1);
        self.first_ms = self.first_ms.min(ts_ms);
        self.last_ms = self.last_ms.max(ts_ms);
    }
    pub(crate) fn merge(&mut self, o: Span) {
        self.records = self.records.saturating_add(o.records);
        self.first_ms = self.first_ms.min(o.first_ms);
        self.last_ms = self.last_ms.max(o.last_ms);
    }
    /// Records at or after `t`, as `(known, unresolved)`: all or none when
    /// `t` lies outside the span, else all unresolved.
    pub fn from_time(&self, t: i64) -> (u64, u64) {
        if self.records == 0 || t > self.last_ms {
            (0, 0)
        } else if t <= self.first_ms {
            (self.records, 0)
        } else {
            (0, self.records)
        }
    }
}

/// One layer's evidence.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LayerAgg {
    /// Records by [`RecordPath`] (new, old, unknown), late ones included.
    pub paths: [u64; 3],
    /// Every record of the layer.
    pub span: Span,
    /// Old-path records by service, then build: the [`MAX_TAKERS`] pairs
    /// that sort first.
    pub(crate) takers: BTreeMap<String, BTreeMap<String, Seen>>,
    pub(crate) n_takers: usize,
    /// Old-path records of the pairs beyond [`MAX_TAKERS`].
    pub(crate) takers_spill: Seen,
    /// Records of revisions beyond [`MAX_REVISIONS`].
    pub(crate) dropped: Span,
}

impl LayerAgg {
    pub fn records(&self) -> u64 {
        self.paths.iter().fold(0u64, |a, b| a.saturating_add(*b))
    }

    /// Every kept `(service, build, seen)` pair.
    pub fn takers(&self) -> impl Iterator<Item = (&str, &str, Seen)> {
        self.takers.iter().flat_map(|(s, m)| m.iter().map(move |(b, seen)| (s.as_str(), b.as_str(), *seen)))
    }

    /// Old-path records whose pair was not kept.
    pub fn takers_spill(&self) -> Seen {
        self.takers_spill
    }

    /// Records of revisions that were not kept.
    pub fn dropped_revisions(&self) -> Span {
        self.dropped
    }

    fn add_taker(&mut self, service: &str, build: &str, seen: Seen) {
        if let Some(s) = self.takers.get_mut(service).and_then(|m| m.get_mut(build)) {
            s.merge(seen);
            return;
        }
        if self.n_takers >= MAX_TAKERS {
            let Some(largest) = self.largest_taker() else { return };
            if (service, build) > (largest.0.as_str(), largest.1.as_str()) {
                self.takers_spill.merge(seen);
                return;
            }
            let by_service = self.takers.get_mut(&largest.0).expect("largest service is kept");
            let evicted = by_service.remove(&largest.1).unwrap_or_default();
            if by_service.is_empty() {
                self.takers.remove(&largest.0);
            }
            self.n_takers -= 1;
            self.takers_spill.merge(evicted);
        }
        self.takers.entry(service.to_string()).or_default().insert(build.to_string(), seen);
        self.n_takers += 1;
    }

    fn largest_taker(&self) -> Option<(String, String)> {
        let (s, m) = self.takers.last_key_value()?;
        let (b, _) = m.last_key_value()?;
        Some((s.clone(), b.clone()))
    }

    fn merge(&mut self, o: LayerAgg) {
        for (a, b) in self.paths.iter_mut().zip(o.paths) {
            *a = a.saturating_add(b);
        }
        self.span.merge(o.span);
        self.dropped.merge(o.dropped);
        self.takers_spill.merge(o.takers_spill);
        for (s, m) in o.takers {
            for (b, seen) in m {
                self.add_taker(&s, &b, seen);
            }
        }
    }
}

/// One second of one layer's records of one revision: how many, and how
/// many at each of the [`MS_DETAIL`] lowest distinct milliseconds (the
/// rest, the *spill*, are known to be later than those).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Second {
    pub sec: i64,
    pub count: u64,
    /// `(millisecond << 54) | count`, sorted by millisecond.
    pub(crate) detail: Vec<u64>,
}

const DETAIL_COUNT: u64 = (1 << 54) - 1;

pub(crate) fn pack(ms: u16, count: u64) -> u64 {
    (u64::from(ms) << 54) | count.min(DETAIL_COUNT)
}

pub(crate) fn unpack(d: u64) -> (u16, u64) {
    ((d >> 54) as u16, d & DETAIL_COUNT)
}

impl Second {
    fn new(sec: i64) -> Self {
        Second { sec, count: 0, detail: Vec::new() }
    }

    pub fn detail(&self) -> impl Iterator<Item = (u16, u64)> + '_ {
        self.detail.iter().map(|d| unpack(*d))
    }

    fn add(&mut self, ms: u16, n: u64) {
        self.count = self.count.saturating_add(n);
        match self.detail.binary_search_by_key(&ms, |d| unpack(*d).0) {
            Ok(i) => {
                let (_, c) = unpack(self.detail[i]);
                self.detail[i] = pack(ms, c.saturating_add(n));
            }
            Err(i) if i < MS_DETAIL => {
                self.detail.insert(i, pack(ms, n));
                self.detail.truncate(MS_DETAIL);
            }
            Err(_) => {}
        }
    }

    fn merge(&mut self, o: &Second) {
        // Adds `o`'s detail; what falls beyond the kept milliseconds is
        // already in `o.count`, so it joins the spill by itself.
        self.count = self.count.saturating_add(o.count);
        for (ms, n) in o.detail() {
            self.count = self.count.saturating_sub(n);
            self.add(ms, n);
        }
    }

    fn spill(&self) -> u64 {
        self.count.saturating_sub(self.detail().map(|(_, n)| n).fold(0u64, u64::saturating_add))
    }

    /// Records at or after millisecond `ms` of this second, as `(known,
    /// unresolved)`.
    fn from(&self, ms: u16) -> (u64, u64) {
        let known = self.detail().filter(|(m, _)| *m >= ms).map(|(_, n)| n).fold(0u64, u64::saturating_add);
        let spill = self.spill();
        match self.detail.last().map(|d| unpack(*d).0) {
            _ if spill == 0 => (known, 0),
            // The spill lies after the highest kept millisecond.
            Some(top) if ms <= top + 1 => (known.saturating_add(spill), 0),
            _ => (known, spill),
        }
    }
}

/// One layer's records of one revision.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RevLayer {
    pub span: Span,
    /// Seconds at or after the revision's horizon, in order.
    pub(crate) seconds: VecDeque<Second>,
}

impl RevLayer {
    /// Records with an event time at or after `t`, as `(known,
    /// unresolved)`: `unresolved` records may lie on either side of `t`
    /// (their second overflowed its millisecond detail, or fell below the
    /// horizon).
    pub fn from_time(&self, t: i64, horizon: i64) -> (u64, u64) {
        let outside = self.span.from_time(t);
        if outside.1 == 0 {
            return outside;
        }
        let (sec, ms) = (t.div_euclid(1000), t.rem_euclid(1000) as u16);
        let (mut known, mut unresolved, mut kept) = (0u64, 0u64, 0u64);
        for s in &self.seconds {
            kept = kept.saturating_add(s.count);
            match s.sec.cmp(&sec) {
                Ordering::Less => {}
                Ordering::Equal => {
                    let (k, u) = s.from(ms);
                    known = known.saturating_add(k);
                    unresolved = unresolved.saturating_add(u);
                }
                Ordering::Greater => known = known.saturating_add(s.count),
            }
        }
        // Records below the horizon are all earlier than `t` when `t`'s
        // second is at or above it.
        if sec < horizon {
            unresolved = unresolved.saturating_add(self.span.records.saturating_sub(kept));
        }
        (known, unresolved)
    }
}

/// One revision's evidence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RevAgg {
    pub name: String,
    /// Seconds below this one are no longer kept apart (their records are
    /// in the spans only); `i64::MIN` while every second is kept.
    pub horizon: i64,
    pub layers: BTreeMap<String, RevLayer>,
    pub(crate) entries: usize,
}

impl RevAgg {
    fn new(name: &str) -> Self {
        RevAgg { name: name.to_string(), horizon: i64::MIN, layers: BTreeMap::new(), entries: 0 }
    }

    /// Every record of the revision.
    pub fn span(&self) -> Span {
        let mut s = Span::default();
        for l in self.layers.values() {
            s.merge(l.span);
        }
        s
    }

    fn layer_mut(&mut self, layer: &str) -> &mut RevLayer {
        if !self.layers.contains_key(layer) {
            self.layers.insert(layer.to_string(), RevLayer::default());
        }
        self.layers.get_mut(layer).expect("inserted")
    }

    fn add(&mut self, layer: &str, ts_ms: i64, budget: usize) {
        let horizon = self.horizon;
        let l = self.layer_mut(layer);
        l.span.add(ts_ms);
        let (sec, ms) = (ts_ms.div_euclid(1000), ts_ms.rem_euclid(1000) as u16);
        if sec < horizon {
            return;
        }
        // Records mostly come in event-time order: the newest second first.
        let found = match l.seconds.back() {
            Some(b) if b.sec == sec => Ok(l.seconds.len() - 1),
            Some(b) if b.sec < sec => Err(l.seconds.len()),
            _ => l.seconds.binary_search_by_key(&sec, |s| s.sec),
        };
        let i = found.unwrap_or_else(|i| {
            l.seconds.insert(i, Second::new(sec));
            i
        });
        l.seconds[i].add(ms, 1);
        if found.is_err() {
            self.entries += 1;
            self.trim(budget);
        }
    }

    fn merge(&mut self, o: RevAgg, budget: usize) {
        self.horizon = self.horizon.max(o.horizon);
        let horizon = self.horizon;
        for (name, ol) in o.layers {
            let l = self.layer_mut(&name);
            l.span.merge(ol.span);
            let mine = std::mem::take(&mut l.seconds);
            let mut out = VecDeque::with_capacity(mine.len().max(ol.seconds.len()));
            let (mut a, mut b) = (mine.into_iter().peekable(), ol.seconds.into_iter().peekable());
            loop {
                let next = match (a.peek(), b.peek()) {
                    (Some(x), Some(y)) if x.sec == y.sec => {
                        let mut x = a.next().expect("peeked");
                        x.merge(&b.next().expect("peeked"));
                        x
                    }
                    (Some(x), Some(y)) if x.sec < y.sec => a.next().expect("peeked"),
                    (Some(_), Some(_)) | (None, Some(_)) => b.next().expect("peeked"),
                    (Some(_), None) => a.next().expect("peeked"),
                    (None, None) => break,
                };
                if next.sec >= horizon {
                    out.push_back(next);
                }
            }
            l.seconds = out;
        }
        // Seconds below a raised horizon may have left either side.
        for l in self.layers.values_mut() {
            while l.seconds.front().is_some_and(|s| s.sec < horizon) {
                l.seconds.pop_front();
            }
        }
        self.entries = self.layers.values().map(|l| l.seconds.len()).sum();
        self.trim(budget);
    }

    /// Raises the horizon past the earliest seconds until at most `budget`
    /// `(layer, second)` entries are kept: the smallest horizon that fits,
    /// which depends only on the revision's records.
    fn trim(&mut self, budget: usize) {
        while self.entries > budget {
            let Some(low) = self.layers.values().filter_map(|l| l.seconds.front().map(|s| s.sec)).min() else {
                break;
            };
            for l in self.layers.values_mut() {
                if l.seconds.front().is_some_and(|s| s.sec == low) {
                    l.seconds.pop_front();
                    self.entries -= 1;
                }
            }
            self.horizon = low.saturating_add(1);
        }
    }
}

/// Orders revision names as people number them: runs of digits compare as
/// numbers (`r9` before `r10`), everything else byte by byte; names equal
/// that way (`r01`, `r1`) are ordered by their bytes, so the order is total.
pub fn natural_cmp(a: &str, b: &str) -> Ordering {
    let (x, y) = (a.as_bytes(), b.as_bytes());
    let (mut i, mut j) = (0, 0);
    while i < x.len() && j < y.len() {
        if x[i].is_ascii_digit() && y[j].is_ascii_digit() {
            let (si, sj) = (i, j);
            while i < x.len() && x[i].is_ascii_digit() {
                i += 1;
            }
            while j < y.len() && y[j].is_ascii_digit() {
                j += 1;
            }
            let trim = |d: &'_ [u8]| -> usize { d.iter().take_while(|c| **c == b'0').count() };
            let (dx, dy) = (&x[si..i], &y[sj..j]);
            let (dx, dy) = (&dx[trim(dx)..], &dy[trim(dy)..]);
            let o = dx.len().cmp(&dy.len()).then_with(|| dx.cmp(dy));
            if o != Ordering::Equal {
                return o;
            }
        } else {
            if x[i] != y[j] {
                return x[i].cmp(&y[j]);
            }
            i += 1;
            j += 1;
        }
    }
    (x.len() - i).cmp(&(y.len() - j)).then_with(|| x.cmp(y))
}

/// Cuts a name to [`MAX_NAME_BYTES`] at a character boundary.
pub fn clip(s: &str) -> &str {
    if s.len() <= MAX_NAME_BYTES {
        return s;
    }
    let mut end = MAX_NAME_BYTES;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// The evidence of the exit review for one feature, over some records.
///
/// Mergeable in any order with the same result ([`ExitAgg::merge`]),
/// serialisable ([`ExitAgg::encode`], [`ExitAgg::decode`]) and bounded by
/// the caps above, whatever the records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExitAgg {
    /// `(layer, second)` entries kept per revision.
    pub(crate) budget: usize,
    pub(crate) layers: BTreeMap<String, LayerAgg>,
    /// In natural order of their names.
    pub(crate) revisions: Vec<RevAgg>,
}

impl Default for ExitAgg {
    fn default() -> Self {
        ExitAgg::new()
    }
}

impl ExitAgg {
    /// The live view's bound for four layers (the default catalog's).
    pub fn new() -> Self {
        ExitAgg::for_live(4)
    }

    /// For the live view of a catalog with `layers` layers:
    /// [`LIVE_SECONDS_PER_LAYER`] seconds per layer and revision, so an hour
    /// of evidence is kept whole whatever the layers.
    pub fn for_live(layers: usize) -> Self {
        ExitAgg::with_budget(layers.clamp(1, crate::catalog::MAX_LAYERS) * LIVE_SECONDS_PER_LAYER)
    }

    /// For `accord report`: [`ARCHIVE_SECONDS`] per revision.
    pub fn for_archive() -> Self {
        ExitAgg::with_budget(ARCHIVE_SECONDS)
    }

    /// Keeps at most `budget` `(layer, second)` entries per revision (at
    /// least 1, at most [`ARCHIVE_SECONDS`]).
    pub fn with_budget(budget: usize) -> Self {
        ExitAgg { budget: budget.clamp(1, ARCHIVE_SECONDS), layers: BTreeMap::new(), revisions: Vec::new() }
    }

    pub fn budget(&self) -> usize {
        self.budget
    }

    pub fn is_empty(&self) -> bool {
        self.layers.is_empty()
    }

    /// Layers by name.
    pub fn layers(&self) -> &BTreeMap<String, LayerAgg> {
        &self.layers
    }

    /// Kept revisions, in natural order of their names.
    pub fn revisions(&self) -> &[RevAgg] {
        &self.revisions
    }

    /// Whether some revision was dropped by [`MAX_REVISIONS`].
    pub fn revisions_dropped(&self) -> bool {
        self.layers.values().any(|l| l.dropped.records > 0)
    }

    fn layer_mut(&mut self, layer: &str) -> &mut LayerAgg {
        if !self.layers.contains_key(layer) {
            self.layers.insert(layer.to_string(), LayerAgg::default());
        }
        self.layers.get_mut(layer).expect("inserted")
    }

    /// Adds one record of `layer` (the catalog's name of `e.layer`).
    pub fn add(&mut self, layer: &str, e: &Evidence<'_>) {
        let l = self.layer_mut(layer);
        l.paths[e.path as usize] = l.paths[e.path as usize].saturating_add(1);
        l.span.add(e.ts_ms);
        if e.path == RecordPath::Old {
            let service = e.service.map_or(UNKNOWN, clip);
            let build = e.build.map_or(UNKNOWN, clip);
            l.add_taker(service, build, Seen { records: 1, last_ms: e.ts_ms });
        }
        if let Some(rev) = e.revision {
            self.add_revision(layer, clip(rev), e.ts_ms);
        }
    }

    fn add_revision(&mut self, layer: &str, rev: &str, ts_ms: i64) {
        let budget = self.budget;
        match self.revisions.binary_search_by(|r| natural_cmp(&r.name, rev)) {
            Ok(i) => self.revisions[i].add(layer, ts_ms, budget),
            Err(i) => {
                let Some(i) = self.make_room(i) else {
                    self.layer_mut(layer).dropped.add(ts_ms);
                    return;
                };
                self.revisions.insert(i, RevAgg::new(rev));
                self.revisions[i].add(layer, ts_ms, budget);
            }
        }
    }

    /// Frees a place for a new revision that sorts at `i`: drops the
    /// lowest when full. `None` when the new one is itself the lowest.
    fn make_room(&mut self, i: usize) -> Option<usize> {
        if self.revisions.len() < MAX_REVISIONS {
            return Some(i);
        }
        if i == 0 {
            return None;
        }
        let lowest = self.revisions.remove(0);
        self.drop_revision(lowest);
        Some(i - 1)
    }

    fn drop_revision(&mut self, r: RevAgg) {
        for (name, l) in r.layers {
            self.layer_mut(&name).dropped.merge(l.span);
        }
    }

    /// Merges several aggregates (a window's time buckets) into one, with
    /// the smallest budget among them; [`ExitAgg::new`] for none.
    pub fn merged(parts: impl IntoIterator<Item = ExitAgg>) -> ExitAgg {
        let mut parts = parts.into_iter();
        let Some(mut acc) = parts.next() else { return ExitAgg::new() };
        for p in parts {
            acc.merge(p);
        }
        acc
    }

    /// Adds everything `o` holds: the result does not depend on the order
    /// of merges and adds, only on the records (and on the smaller budget
    /// of the two: start a window from one of its parts, or use
    /// [`ExitAgg::merged`], not from an aggregate with a smaller budget).
    pub fn merge(&mut self, o: ExitAgg) {
        if o.budget < self.budget {
            self.budget = o.budget;
            for r in &mut self.revisions {
                r.trim(o.budget);
            }
        }
        let budget = self.budget;
        for (name, l) in o.layers {
            self.layer_mut(&name).merge(l);
        }
        for r in o.revisions {
            match self.revisions.binary_search_by(|x| natural_cmp(&x.name, &r.name)) {
                Ok(i) => self.revisions[i].merge(r, budget),
                Err(i) => match self.make_room(i) {
                    Some(i) => {
                        let mut r = r;
                        r.trim(budget);
                        self.revisions.insert(i, r);
                    }
                    None => self.drop_revision(r),
                },
            }
        }
    }
}

#[cfg(test)]
pub(crate) mod tests;
