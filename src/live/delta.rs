//! The mergeable unit of live statistics: what some judging task saw,
//! per feature, per second (see the module header of `live`).
//!
//! A [`Delta`] names its features and layers (a layer table, indices into
//! it everywhere else), so deltas of instances whose catalogs differ (a
//! tracked feature seen by one instance only, a layer added during a
//! rolling restart) still merge by name. Merging is exact and does not
//! depend on order: counts add, histograms add, and samples keep the
//! newest [`MAX_SAMPLES`] per feature by a total order ([`sample_order`]).

use std::cmp::Ordering;
use std::collections::BTreeMap;
use std::sync::Arc;

use hdrhistogram::Histogram;

use super::{
    CauseCount, LayerStats, PairCount, Point, Sample, WindowStats, BUCKET_MS, EXIT_SLICE_MS, LAG_HIGH_MS, LAG_SLICE_MS,
    MAX_SAMPLES,
};
use crate::catalog::{LayerId, LayerSet, MAX_LAYERS};
use crate::exit::ExitAgg;
use crate::explain::{Cause, Pair};
use crate::join::{CloseCause, Position};
use crate::judge::{RequestPath, Verdict};

/// Per-layer counters of a bucket: non-late records by path, late
/// records, missing reports.
pub(crate) const L_NEW: usize = 0;
pub(crate) const L_OLD: usize = 1;
pub(crate) const L_UNKNOWN: usize = 2;
pub(crate) const L_LATE: usize = 3;
pub(crate) const L_MISSING: usize = 4;
pub(crate) type LayerCounts = [u32; 5];

/// One second of one feature.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Bucket {
    /// Closed joins, `[path][verdict]`.
    pub(crate) requests: [[u32; 4]; 4],
    /// Requests with at least one divergence of each kind.
    pub(crate) kinds: [u32; 4],
    /// Indexed by layer (the layer table's length).
    pub(crate) layers: Vec<LayerCounts>,
    /// `(pair, requests, exposed requests)`, usually empty.
    pub(crate) pairs: Vec<(Pair, u32, u32)>,
    /// `(cause, requests, exposed requests)`, usually empty.
    pub(crate) causes: Vec<(Cause, u32, u32)>,
}

/// Adds `(all, exposed)` to the entry of `key`.
pub(crate) fn count<K: PartialEq>(list: &mut Vec<(K, u32, u32)>, key: K, all: u32, exposed: u32) {
    match list.iter_mut().find(|e| e.0 == key) {
        Some(e) => {
            e.1 = e.1.saturating_add(all);
            e.2 = e.2.saturating_add(exposed);
        }
        None => list.push((key, all, exposed)),
    }
}

impl Bucket {
    pub(crate) fn new(layers: usize) -> Self {
        Bucket {
            requests: [[0; 4]; 4],
            kinds: [0; 4],
            layers: vec![[0; 5]; layers],
            pairs: Vec::new(),
            causes: Vec::new(),
        }
    }

    pub(crate) fn add(&mut self, o: Bucket) {
        for (a, b) in self.requests.iter_mut().flatten().zip(o.requests.iter().flatten()) {
            *a = a.saturating_add(*b);
        }
        for (a, b) in self.kinds.iter_mut().zip(o.kinds) {
            *a = a.saturating_add(b);
        }
        for (a, b) in self.layers.iter_mut().zip(&o.layers) {
            for (x, y) in a.iter_mut().zip(b) {
                *x = x.saturating_add(*y);
            }
        }
        for (p, all, exposed) in o.pairs {
            count(&mut self.pairs, p, all, exposed);
        }
        for (c, all, exposed) in o.causes {
            count(&mut self.causes, c, all, exposed);
        }
    }
}

/// The empty lag histogram every instance uses.
pub(crate) fn lag_histogram() -> Histogram<u32> {
    Histogram::new_with_bounds(1, LAG_HIGH_MS, 1).expect("valid histogram bounds")
}

/// Ten seconds of one feature's lags, per layer.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct LagSlice {
    pub(crate) layers: Vec<Option<Histogram<u32>>>,
}

impl LagSlice {
    pub(crate) fn new(layers: usize) -> Self {
        LagSlice { layers: (0..layers).map(|_| None).collect() }
    }

    pub(crate) fn add(&mut self, o: LagSlice) {
        for (a, b) in self.layers.iter_mut().zip(o.layers) {
            match (a.as_mut(), b) {
                // Same bounds everywhere: adding never fails.
                (Some(a), Some(b)) => {
                    let _ = a.add(&b);
                }
                (None, Some(b)) => *a = Some(b),
                (_, None) => {}
            }
        }
    }
}

/// The total order of samples: newest close first, then the rest of the
/// content, so that every instance that merges the same samples keeps the
/// same ones, whatever the order it merged them in.
pub(crate) fn sample_order(a: &Sample, b: &Sample) -> Ordering {
    fn rec(s: &Sample) -> impl Iterator<Item = (LayerId, Position, i64, u8, Option<&[u8]>)> {
        s.records.iter().map(|r| (r.layer, r.pos, r.ts_ms, r.path as u8, r.raw.as_deref()))
    }
    let cause = |c: CloseCause| c as u8;
    (b.closed_ms, b.seq)
        .cmp(&(a.closed_ms, a.seq))
        .then_with(|| a.request_id.cmp(&b.request_id))
        .then_with(|| a.start_ms.cmp(&b.start_ms))
        .then_with(|| (a.verdict, a.path, cause(a.close_cause)).cmp(&(b.verdict, b.path, cause(b.close_cause))))
        .then_with(|| (&a.pairs, a.cause, a.missing).cmp(&(&b.pairs, b.cause, b.missing)))
        .then_with(|| rec(a).cmp(rec(b)))
}

/// Sorts samples newest first and keeps [`MAX_SAMPLES`].
pub(crate) fn trim_samples(samples: &mut Vec<Sample>) {
    samples.sort_by(sample_order);
    samples.truncate(MAX_SAMPLES);
}

/// One feature's share of a delta.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct FeatureDelta {
    /// By second since the epoch.
    pub(crate) buckets: BTreeMap<i64, Bucket>,
    /// By 10-second slot since the epoch.
    pub(crate) lags: BTreeMap<i64, LagSlice>,
    /// Newest first by [`sample_order`], at most [`MAX_SAMPLES`].
    pub(crate) samples: Vec<Sample>,
    /// The exit review's evidence, by 10-second slot since the epoch.
    /// Shared with readers: a slice that a reader still merges is copied
    /// before it changes, so no lock is held while a review is computed.
    pub(crate) exits: BTreeMap<i64, Arc<ExitAgg>>,
}

/// Adds an exit slice into a map of them.
pub(crate) fn merge_exit(exits: &mut BTreeMap<i64, Arc<ExitAgg>>, slot: i64, agg: Arc<ExitAgg>) {
    match exits.get_mut(&slot) {
        Some(mine) => Arc::make_mut(mine).merge(Arc::unwrap_or_clone(agg)),
        None => {
            exits.insert(slot, agg);
        }
    }
}

/// `⌈a / b⌉` for a positive `b`.
fn div_ceil(a: i64, b: i64) -> i64 {
    -(-a).div_euclid(b)
}

impl FeatureDelta {
    pub(crate) fn is_empty(&self) -> bool {
        self.buckets.is_empty() && self.lags.is_empty() && self.samples.is_empty() && self.exits.is_empty()
    }

    /// Puts pairs and causes in their order and trims the samples, so that
    /// equal contents compare equal.
    pub(crate) fn normalize(&mut self) {
        for b in self.buckets.values_mut() {
            b.pairs.sort_by_key(|e| e.0);
            b.causes.sort_by_key(|e| e.0);
        }
        trim_samples(&mut self.samples);
    }

    /// Adds `o` in (both over the same layer table).
    pub(crate) fn merge(&mut self, o: FeatureDelta) {
        for (sec, b) in o.buckets {
            match self.buckets.get_mut(&sec) {
                Some(a) => a.add(b),
                None => {
                    self.buckets.insert(sec, b);
                }
            }
        }
        for (slot, s) in o.lags {
            match self.lags.get_mut(&slot) {
                Some(a) => a.add(s),
                None => {
                    self.lags.insert(slot, s);
                }
            }
        }
        if !o.samples.is_empty() {
            self.samples.extend(o.samples);
            trim_samples(&mut self.samples);
        }
        for (slot, a) in o.exits {
            merge_exit(&mut self.exits, slot, a);
        }
    }

    /// Drops the buckets and lag slices that no window ending at or after
    /// `now_ms` can read any more.
    pub(crate) fn prune(&mut self, now_ms: i64, keep_ms: i64) {
        let from = now_ms - keep_ms;
        self.buckets = self.buckets.split_off(&div_ceil(from, BUCKET_MS));
        self.lags = self.lags.split_off(&from.div_euclid(LAG_SLICE_MS));
        self.exits = self.exits.split_off(&from.div_euclid(EXIT_SLICE_MS));
    }

    /// The exit slices that overlap the window `(now − window, now]`, and
    /// where the first of them starts: the window rounded out to whole
    /// slices (not later than the window's own start).
    pub(crate) fn exit_slices(&self, now_ms: i64, window_ms: i64) -> (Vec<Arc<ExitAgg>>, i64) {
        let from = now_ms - window_ms;
        let (first, last) = (from.div_euclid(EXIT_SLICE_MS), now_ms.div_euclid(EXIT_SLICE_MS));
        let slices = self.exits.range(first..=last.max(first)).filter(|(s, _)| **s <= last).map(|e| e.1.clone());
        (slices.collect(), first * EXIT_SLICE_MS)
    }

    /// `points` consecutive steps of `step_ms` ending at `now_ms`: a
    /// bucket counts in the step its second starts in, point `i` covering
    /// the starts in `[now − (points − i) × step, now − (points − i − 1) ×
    /// step)` (the last one also a second starting at `now` itself), so the
    /// points add up to [`FeatureDelta::window`] of `points × step`.
    pub(crate) fn series(&self, layers: usize, now_ms: i64, step_ms: i64, points: usize) -> Vec<Point> {
        let mut out = vec![Point::empty(layers); points];
        let step = step_ms.max(1);
        let start = now_ms - step * points as i64;
        let (first, last) = (div_ceil(start, BUCKET_MS), now_ms.div_euclid(BUCKET_MS));
        for (sec, b) in self.buckets.range(first..=last.max(first)).filter(|(s, _)| **s <= last) {
            let i = (sec * BUCKET_MS - start).div_euclid(step).min(points as i64 - 1);
            let Some(p) = usize::try_from(i).ok().and_then(|i| out.get_mut(i)) else { continue };
            for path in [RequestPath::New, RequestPath::Mixed] {
                let row = &b.requests[path as usize];
                let all: u64 = row.iter().map(|n| u64::from(*n)).sum();
                p.exposed_judged += all - u64::from(row[Verdict::Incomplete as usize]);
                p.exposed_agree += u64::from(row[Verdict::Agree as usize]);
            }
            for (acc, c) in p.layers.iter_mut().zip(&b.layers) {
                acc.0 += u64::from(c[L_NEW]);
                acc.1 += u64::from(c[L_OLD]);
            }
        }
        out
    }

    /// Sums the window `(now − window, now]`: a bucket counts while its
    /// second starts at or after `now − window` (and not after `now`: a
    /// reader with an older clock does not see what had not happened yet);
    /// a lag slice counts while it overlaps the window.
    pub(crate) fn window(&self, layers: usize, now_ms: i64, window_ms: i64) -> WindowStats {
        let from = now_ms - window_ms;
        let mut w = WindowStats::empty(window_ms, layers);
        let (first, last) = (div_ceil(from, BUCKET_MS), now_ms.div_euclid(BUCKET_MS));
        let mut pairs: BTreeMap<Pair, (u64, u64)> = BTreeMap::new();
        let mut causes: BTreeMap<Cause, (u64, u64)> = BTreeMap::new();
        for b in self.buckets.range(first..=last.max(first)).filter(|(s, _)| **s <= last).map(|e| e.1) {
            for (p, row) in b.requests.iter().enumerate() {
                for (v, n) in row.iter().enumerate() {
                    w.requests[p][v] += u64::from(*n);
                }
            }
            for (k, n) in b.kinds.iter().enumerate() {
                w.kinds[k] += u64::from(*n);
            }
            for (s, c) in w.layers.iter_mut().zip(&b.layers) {
                s.new += u64::from(c[L_NEW]);
                s.old += u64::from(c[L_OLD]);
                s.unknown += u64::from(c[L_UNKNOWN]);
                s.late += u64::from(c[L_LATE]);
                s.missing += u64::from(c[L_MISSING]);
            }
            for &(p, all, exposed) in &b.pairs {
                let e = pairs.entry(p).or_default();
                e.0 += u64::from(all);
                e.1 += u64::from(exposed);
            }
            for &(c, all, exposed) in &b.causes {
                let e = causes.entry(c).or_default();
                e.0 += u64::from(all);
                e.1 += u64::from(exposed);
            }
        }
        w.pairs = pairs.into_iter().map(|(pair, (requests, exposed))| PairCount { pair, requests, exposed }).collect();
        w.pairs.sort_by(|a, b| b.requests.cmp(&a.requests).then(a.pair.cmp(&b.pair)));
        w.causes =
            causes.into_iter().map(|(cause, (requests, exposed))| CauseCount { cause, requests, exposed }).collect();
        w.causes.sort_by(|a, b| b.requests.cmp(&a.requests).then(a.cause.cmp(&b.cause)));
        let (first, last) = (from.div_euclid(LAG_SLICE_MS), now_ms.div_euclid(LAG_SLICE_MS));
        let slices: Vec<&LagSlice> =
            self.lags.range(first..=last.max(first)).filter(|(s, _)| **s <= last).map(|e| e.1).collect();
        for (l, stats) in w.layers.iter_mut().enumerate() {
            let mut acc: Option<Histogram<u32>> = None;
            for h in slices.iter().filter_map(|s| s.layers.get(l).and_then(Option::as_ref)) {
                match &mut acc {
                    Some(a) => {
                        let _ = a.add(h);
                    }
                    None => acc = Some(h.clone()),
                }
            }
            if let Some(h) = acc.filter(|h| !h.is_empty()) {
                set_lags(stats, &h);
            }
        }
        w
    }
}

fn set_lags(s: &mut LayerStats, h: &Histogram<u32>) {
    s.lag_samples = h.len();
    s.lag_p50_ms = Some(h.value_at_quantile(0.5));
    s.lag_p99_ms = Some(h.value_at_quantile(0.99));
}

/// Live statistics of some features over some seconds: what a judging
/// task hands over ([`Recorder::take`](super::Recorder::take)), what an
/// instance ships to the others, and what the view adds in
/// ([`LiveView::apply`](super::LiveView::apply)).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Delta {
    /// The layer table: every `LayerId` in the delta indexes it.
    pub(crate) layers: Vec<String>,
    /// By feature name.
    pub(crate) features: BTreeMap<String, FeatureDelta>,
}

impl Delta {
    /// An empty delta over a layer table (the catalog's `layers`).
    pub fn new(layers: Vec<String>) -> Self {
        Delta { layers, features: BTreeMap::new() }
    }

    /// The layer table.
    pub fn layers(&self) -> &[String] {
        &self.layers
    }

    /// Whether the delta holds nothing at all.
    pub fn is_empty(&self) -> bool {
        self.features.values().all(FeatureDelta::is_empty)
    }

    /// The features the delta holds something of.
    pub fn features(&self) -> impl Iterator<Item = &str> {
        self.features.iter().filter(|(_, f)| !f.is_empty()).map(|(n, _)| n.as_str())
    }

    /// The seconds (since the epoch) of the oldest and newest bucket, if any.
    pub fn seconds(&self) -> Option<(i64, i64)> {
        let mut secs = self
            .features
            .values()
            .flat_map(|f| f.buckets.keys().next().into_iter().chain(f.buckets.keys().next_back()));
        let first = *secs.next()?;
        Some(secs.fold((first, first), |(lo, hi), s| (lo.min(*s), hi.max(*s))))
    }

    /// Adds `other` in. Exact: counts add, histograms add, and each
    /// feature keeps its [`MAX_SAMPLES`] newest samples, so merging the
    /// same deltas in any order gives the same delta. Layers are matched by
    /// name; layers beyond the 64 a layer set holds are dropped.
    pub fn merge(&mut self, mut other: Delta) {
        if other.layers != self.layers {
            let mut table = self.layers.clone();
            for l in &other.layers {
                if !table.contains(l) && table.len() < MAX_LAYERS {
                    table.push(l.clone());
                }
            }
            if table != self.layers {
                self.relayer(&table);
            }
            other.relayer(&table);
        }
        for (name, f) in other.features {
            match self.features.get_mut(&name) {
                Some(mine) => mine.merge(f),
                None => {
                    self.features.insert(name, f);
                }
            }
        }
    }

    /// A feature's figures over `window_ms` up to `now_ms` (`None` if the
    /// delta holds nothing of it).
    pub fn window(&self, feature: &str, now_ms: i64, window_ms: i64) -> Option<WindowStats> {
        self.features.get(feature).map(|f| f.window(self.layers.len(), now_ms, window_ms))
    }

    /// A feature's figures over every second the delta holds (`None` if
    /// it holds nothing of it).
    pub fn totals(&self, feature: &str) -> Option<WindowStats> {
        let (first, last) = self.seconds()?;
        let now_ms = (last + 1) * super::BUCKET_MS - 1;
        self.window(feature, now_ms, (last - first + 1) * super::BUCKET_MS)
    }

    /// A feature's exit evidence over the exit slices that overlap
    /// `window_ms` up to `now_ms`, merged (`None` if the delta holds
    /// nothing of the feature).
    pub fn exit_evidence(&self, feature: &str, now_ms: i64, window_ms: i64) -> Option<ExitAgg> {
        let (slices, _) = self.features.get(feature)?.exit_slices(now_ms, window_ms);
        Some(ExitAgg::merged(slices.into_iter().map(Arc::unwrap_or_clone)))
    }

    /// Keeps at most `n` samples per feature, the newest. Samples are
    /// examples, not counts: the counters are untouched.
    pub fn limit_samples(&mut self, n: usize) {
        for f in self.features.values_mut() {
            f.samples.truncate(n);
        }
    }

    /// A feature's newest divergent requests, newest first.
    pub fn samples(&self, feature: &str, limit: usize) -> Vec<Sample> {
        self.features.get(feature).map_or_else(Vec::new, |f| f.samples.iter().take(limit).cloned().collect())
    }

    /// Re-expresses the delta over another layer table, matching layers by
    /// name. What concerns a layer `to` lacks is dropped: its counters, and
    /// the pairs and causes that name it (the requests still count).
    pub(crate) fn relayer(&mut self, to: &[String]) {
        let map: Vec<Option<LayerId>> =
            self.layers.iter().map(|l| to.iter().position(|t| t == l).map(|i| LayerId::new(i as u8))).collect();
        let m = |l: LayerId| map.get(l.index()).copied().flatten();
        let set = |s: LayerSet| s.iter().filter_map(m).collect::<LayerSet>();
        let pair = |p: Pair| Some(Pair { upstream: m(p.upstream)?, downstream: m(p.downstream)?, ..p });
        let cause = |c: Cause| {
            Some(match c {
                Cause::NoCapability { exposed, api } => Cause::NoCapability { exposed: m(exposed)?, api: m(api)? },
                Cause::PathSplit { new, old, both } => {
                    Cause::PathSplit { new: set(new), old: set(old), both: set(both) }
                }
                Cause::PayloadVersions { upstream, downstream } => {
                    Cause::PayloadVersions { upstream: m(upstream)?, downstream: m(downstream)? }
                }
                Cause::FlagRevisions { upstream, downstream } => {
                    Cause::FlagRevisions { upstream: m(upstream)?, downstream: m(downstream)? }
                }
            })
        };
        let n = to.len();
        for f in self.features.values_mut() {
            for b in f.buckets.values_mut() {
                let mut layers = vec![[0; 5]; n];
                for (i, c) in b.layers.iter().enumerate() {
                    if let Some(Some(t)) = map.get(i) {
                        layers[t.index()] = *c;
                    }
                }
                b.layers = layers;
                b.pairs =
                    std::mem::take(&mut b.pairs).into_iter().filter_map(|(p, a, e)| Some((pair(p)?, a, e))).collect();
                b.causes =
                    std::mem::take(&mut b.causes).into_iter().filter_map(|(c, a, e)| Some((cause(c)?, a, e))).collect();
            }
            for s in f.lags.values_mut() {
                let mut layers = LagSlice::new(n).layers;
                for (i, h) in std::mem::take(&mut s.layers).into_iter().enumerate() {
                    if let Some(Some(t)) = map.get(i) {
                        layers[t.index()] = h;
                    }
                }
                s.layers = layers;
            }
            for s in &mut f.samples {
                s.pairs = s.pairs.iter().filter_map(|p| pair(*p)).collect();
                s.cause = s.cause.and_then(cause);
                s.missing = set(s.missing);
                s.records.retain_mut(|r| match m(r.layer) {
                    Some(l) => {
                        r.layer = l;
                        true
                    }
                    None => false,
                });
            }
            if !f.samples.is_empty() {
                trim_samples(&mut f.samples);
            }
        }
        self.layers = to.to_vec();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::judge::{DivergenceKind, RequestPath, Verdict};

    fn bucket_with(layers: usize, f: impl FnOnce(&mut Bucket)) -> Bucket {
        let mut b = Bucket::new(layers);
        f(&mut b);
        b
    }

    fn delta(layers: &[&str], feature: &str, sec: i64, b: Bucket) -> Delta {
        let mut d = Delta::new(layers.iter().map(|s| s.to_string()).collect());
        d.features.entry(feature.into()).or_default().buckets.insert(sec, b);
        d
    }

    #[test]
    fn merge_matches_layers_by_name() {
        let l0 = LayerId::new(0);
        let l1 = LayerId::new(1);
        let pair = Pair {
            kind: DivergenceKind::PathMismatch,
            upstream: l0,
            downstream: l1,
            direction: crate::explain::Direction::UpstreamNew,
        };
        let a = delta(
            &["frontend", "api"],
            "f",
            10,
            bucket_with(2, |b| {
                b.layers[1][L_OLD] = 2;
                b.requests[RequestPath::Mixed as usize][Verdict::Diverge as usize] = 1;
                b.pairs.push((pair, 1, 1));
            }),
        );
        // Another instance's catalog lists the layers in another order and
        // has one more.
        let b = delta(
            &["api", "mobile", "frontend"],
            "f",
            10,
            bucket_with(3, |b| {
                b.layers[0][L_OLD] = 3;
                b.layers[1][L_NEW] = 7;
                b.pairs.push((Pair { upstream: LayerId::new(2), downstream: l0, ..pair }, 1, 0));
            }),
        );
        let mut ab = a.clone();
        ab.merge(b.clone());
        assert_eq!(ab.layers(), ["frontend", "api", "mobile"]);
        let w = ab.window("f", 10_000, 1_000).unwrap();
        assert_eq!(w.layers[1].old, 5);
        assert_eq!(w.layers[2].new, 7);
        assert_eq!(w.pairs, [PairCount { pair, requests: 2, exposed: 1 }]);
        // The view re-expresses a delta over its own table, dropping layers
        // it does not know.
        let mut v = b;
        v.relayer(&["frontend".into(), "api".into()]);
        let w = v.window("f", 10_000, 1_000).unwrap();
        assert_eq!((w.layers.len(), w.layers[1].old), (2, 3));
        assert_eq!(w.pairs[0].pair, pair);
    }

    #[test]
    fn prune_keeps_what_a_window_ending_now_can_read() {
        let mut f = FeatureDelta::default();
        for s in 0..10 {
            f.buckets.insert(s, Bucket::new(1));
            f.lags.insert(s, LagSlice::new(1));
        }
        f.prune(5_500, 2_000);
        assert_eq!(f.buckets.keys().copied().collect::<Vec<_>>(), (4..10).collect::<Vec<_>>());
        // Slot 0 covers [0, 10 s), which overlaps (3.5 s, 5.5 s].
        assert_eq!(f.lags.len(), 10);
        f.prune(25_000, 2_000);
        assert!(f.buckets.is_empty());
        assert_eq!(f.lags.keys().copied().collect::<Vec<_>>(), [2, 3, 4, 5, 6, 7, 8, 9]);
    }
}
