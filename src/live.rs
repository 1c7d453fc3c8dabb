//! Live statistics per feature over sliding windows (default 5 minutes,
//! up to [`MAX_WINDOW_MS`]), read by the gate, features and divergences
//! APIs and the status page (SPEC §6).
//!
//! # What is kept, per feature
//! - a ring of 1-second [`Bucket`]s covering the last hour: closed joins
//!   by path × verdict, requests per divergence kind, divergences per
//!   `(kind, upstream, downstream)` pair (all requests and exposed ones
//!   apart), and per layer its non-late records by path, late records and
//!   missing reports. Buckets exist only for seconds that saw an event, so
//!   an idle feature costs nothing;
//! - a ring of 10-second lag slices: per layer an `hdrhistogram` (1 ms …
//!   the longest join window, 1 significant digit: ≤ 6.25 % error) of the
//!   event time of the layer's first record minus the join start. A window
//!   reads the slices that overlap it, so lag quantiles cover the window
//!   rounded out to whole 10-second slices;
//! - the [`MAX_SAMPLES`] most recent divergent requests, with the bytes of
//!   every record as received (from the join engine's sample ring, see
//!   [`Closed::raw`]); the bytes are parsed only when an API reads them.
//!
//! # Time
//! Everything is bucketed by the **wall-clock time at which accord saw
//! the event** (a record's arrival, a join's close), not by event time: a
//! gate asks "what did the stack do in the last five minutes", and a
//! replayed backlog or a skewed producer clock must not hide fresh
//! disagreement in old buckets. Every function that needs the time takes
//! `now_ms` as a parameter; [`LiveStats`] holds the clock (the wall clock
//! in production, a manual one in tests), so no test sleeps.
//!
//! # Locking
//! One `Mutex` per feature, no global lock. The Kafka source calls its
//! observers from one consume task, so each feature's mutex has a single
//! writer; HTTP handlers lock it only to sum a window (a few thousand
//! small buckets and ≤ 361 histograms per layer, well under a
//! millisecond) or to copy the samples out, and parse JSON after
//! unlocking. An uncontended lock costs tens of nanoseconds per record,
//! which is why the observer writes straight through instead of batching
//! locally: a local batch would need a flush tick the `Observer` trait
//! does not have, and would hide the newest second from the gate. The
//! per-feature mutexes themselves live in a `RwLock<Vec<…>>` that is
//! written only when a tracked (`unknown_features = "track"`) feature is
//! first seen; the observer caches the `Arc`s, so its hot path never
//! touches that lock.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};

use hdrhistogram::Histogram;

use crate::catalog::{FeatureSpec, LayerId, LayerSet};
use crate::features::{FeatureId, Features};
use crate::join::{CloseCause, Closed, Observer};
use crate::judge::{Divergence, DivergenceKind, RecordPath, RequestPath, Verdict};

/// The longest window the APIs accept.
pub const MAX_WINDOW_MS: i64 = 3_600_000;
/// The default window of the gate, features API and status page.
pub const DEFAULT_WINDOW_MS: i64 = 300_000;
/// Divergent requests kept per feature.
pub const MAX_SAMPLES: usize = 100;
/// Granularity of counts.
pub const BUCKET_MS: i64 = 1_000;
/// Granularity of lag histograms.
pub const LAG_SLICE_MS: i64 = 10_000;

/// Milliseconds since the epoch, now.
pub type Clock = Arc<dyn Fn() -> i64 + Send + Sync>;

/// The wall clock.
pub fn wall_clock() -> Clock {
    Arc::new(|| chrono::Utc::now().timestamp_millis())
}

/// How a path mismatch went, when the two layers each took one path.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(u8)]
pub enum Direction {
    /// Not known (same layer, or a layer with records on both paths), or
    /// not a path mismatch.
    Unknown = 0,
    /// The upstream layer took the new path, the downstream one the old.
    UpstreamNew = 1,
    /// The upstream layer took the old path, the downstream one the new.
    DownstreamNew = 2,
}

/// One divergence of a request, with the direction of a path mismatch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Pair {
    pub kind: DivergenceKind,
    pub upstream: LayerId,
    pub downstream: LayerId,
    pub direction: Direction,
}

impl Pair {
    fn key(self) -> u32 {
        (self.kind as u32) << 24
            | (self.upstream.index() as u32) << 16
            | (self.downstream.index() as u32) << 8
            | self.direction as u32
    }
    fn from_key(k: u32) -> Pair {
        let kind = DivergenceKind::ALL[(k >> 24) as usize & 3];
        let direction = match k & 0xff {
            1 => Direction::UpstreamNew,
            2 => Direction::DownstreamNew,
            _ => Direction::Unknown,
        };
        Pair { kind, upstream: LayerId::new((k >> 16) as u8), downstream: LayerId::new((k >> 8) as u8), direction }
    }

    /// The pair of a divergence, with the direction read from the records.
    pub fn of(d: &Divergence, records: &[crate::judge::Facts]) -> Pair {
        let mut direction = Direction::Unknown;
        if d.kind == DivergenceKind::PathMismatch && d.upstream != d.downstream {
            let paths = |l: LayerId| {
                let mut new = false;
                let mut old = false;
                for r in records.iter().filter(|r| r.layer == l) {
                    new |= r.path == RecordPath::New;
                    old |= r.path == RecordPath::Old;
                }
                (new, old)
            };
            direction = match (paths(d.upstream), paths(d.downstream)) {
                ((true, false), (false, true)) => Direction::UpstreamNew,
                ((false, true), (true, false)) => Direction::DownstreamNew,
                _ => Direction::Unknown,
            };
        }
        Pair { kind: d.kind, upstream: d.upstream, downstream: d.downstream, direction }
    }

    /// What happened, in words a release manager understands ("frontend
    /// took the new path and api did not advertise v2").
    pub fn explain(&self, layer: &dyn Fn(LayerId) -> String, spec: &FeatureSpec) -> String {
        let (u, d) = (layer(self.upstream), layer(self.downstream));
        let same = self.upstream == self.downstream;
        match self.kind {
            DivergenceKind::PathMismatch => match self.direction {
                Direction::UpstreamNew => format!("{u} took the new path but {d} took the old one"),
                Direction::DownstreamNew => {
                    format!("{u} took the old path but {d} took the new one")
                }
                Direction::Unknown if same => format!(
                    "two {u} records of one request took different paths (e.g. a retried job run by an old and a new {u})"
                ),
                Direction::Unknown => format!("{u} and {d} took different paths"),
            },
            DivergenceKind::ExposureWithoutCapability => {
                let cap = spec.new_capability.as_deref().unwrap_or("the new capability");
                // The pair is (new-path layer, api) in pipeline order.
                let exposed = if u == "api" { &d } else { &u };
                if same {
                    format!("{u} took the new path without advertising {cap}")
                } else {
                    format!("{exposed} took the new path and api did not advertise {cap}")
                }
            }
            DivergenceKind::PayloadVersionMismatch if same => {
                format!("two {u} records of one request carried different job payload versions")
            }
            DivergenceKind::PayloadVersionMismatch => {
                format!("{u} and {d} carried different job payload versions")
            }
            DivergenceKind::SnapshotSkew if same => {
                format!("two {u} records of one request evaluated different flag revisions")
            }
            DivergenceKind::SnapshotSkew => {
                format!("{u} and {d} evaluated different flag revisions")
            }
        }
    }
}

/// The one explanation of a divergent request that the gate and the
/// status page lead with, so that counts per cause add up to the divergent
/// requests (a request with four divergent pairs is one story, not four):
/// a missing capability first (the most specific root cause), then how the
/// layers split between the paths, then payload versions, then flag
/// revisions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Cause {
    /// `exposed` took the new path and the api layer did not advertise the
    /// capability it needs.
    NoCapability {
        exposed: LayerId,
        api: LayerId,
    },
    /// Layers (bit masks) whose records took only the new path, only the
    /// old path, or both.
    PathSplit {
        new: LayerSet,
        old: LayerSet,
        both: LayerSet,
    },
    PayloadVersions {
        upstream: LayerId,
        downstream: LayerId,
    },
    FlagRevisions {
        upstream: LayerId,
        downstream: LayerId,
    },
}

fn layer_list(set: LayerSet, layer: &dyn Fn(LayerId) -> String) -> String {
    let mut names: Vec<String> = set.iter().map(layer).collect();
    match names.len() {
        0 => String::new(),
        1 => names.remove(0),
        n => format!("{} and {}", names[..n - 1].join(", "), names[n - 1]),
    }
}

impl Cause {
    /// The cause of a closed join's divergences (`None` without any).
    pub fn of(divergences: &[Divergence], records: &[crate::judge::Facts]) -> Option<Cause> {
        if let Some(d) = divergences.iter().find(|d| d.kind == DivergenceKind::ExposureWithoutCapability) {
            // The pair is (new-path layer, api) in pipeline order: the api
            // one is the layer whose record advertised another capability.
            let api_is_up =
                records.iter().any(|r| r.layer == d.upstream && r.capability == crate::judge::Capability::Differs);
            let (exposed, api) = if api_is_up { (d.downstream, d.upstream) } else { (d.upstream, d.downstream) };
            return Some(Cause::NoCapability { exposed, api });
        }
        if divergences.iter().any(|d| d.kind == DivergenceKind::PathMismatch) {
            let (mut new, mut old) = (LayerSet::EMPTY, LayerSet::EMPTY);
            for r in records {
                match r.path {
                    RecordPath::New => new.insert(r.layer),
                    RecordPath::Old => old.insert(r.layer),
                    RecordPath::Unknown => {}
                }
            }
            let both = new.intersection(old);
            return Some(Cause::PathSplit { new: new.minus(both), old: old.minus(both), both });
        }
        let first = |k: DivergenceKind| divergences.iter().find(|d| d.kind == k);
        if let Some(d) = first(DivergenceKind::PayloadVersionMismatch) {
            return Some(Cause::PayloadVersions { upstream: d.upstream, downstream: d.downstream });
        }
        first(DivergenceKind::SnapshotSkew)
            .map(|d| Cause::FlagRevisions { upstream: d.upstream, downstream: d.downstream })
    }

    /// In words a release manager understands.
    pub fn explain(&self, layer: &dyn Fn(LayerId) -> String, spec: &FeatureSpec) -> String {
        match *self {
            Cause::NoCapability { exposed, api } => {
                let cap = spec.new_capability.as_deref().unwrap_or("the new capability");
                if exposed == api {
                    format!("{} took the new path without advertising {cap}", layer(api))
                } else {
                    format!("{} took the new path and {} did not advertise {cap}", layer(exposed), layer(api))
                }
            }
            Cause::PathSplit { new, old, both } => {
                let (n, o) = (new, old);
                let split = if n.is_empty() && o.is_empty() {
                    String::new()
                } else if n.is_empty() {
                    format!("{} took the old path", layer_list(o, layer))
                } else if o.is_empty() {
                    format!("{} took the new path", layer_list(n, layer))
                } else if o.len() <= n.len() {
                    format!(
                        "{} took the old path while {} took the new one",
                        layer_list(o, layer),
                        layer_list(n, layer)
                    )
                } else {
                    format!(
                        "{} took the new path while {} took the old one",
                        layer_list(n, layer),
                        layer_list(o, layer)
                    )
                };
                if both.is_empty() {
                    split
                } else if split.is_empty() && both.len() == 1 {
                    let l = layer_list(both, layer);
                    format!(
                        "two {l} records of one request took different paths (e.g. a retried job run by an old and a new {l})"
                    )
                } else if split.is_empty() {
                    format!("{} each took both paths", layer_list(both, layer))
                } else {
                    format!("{split}, and {} took both", layer_list(both, layer))
                }
            }
            Cause::PayloadVersions { upstream, downstream } => Pair {
                kind: DivergenceKind::PayloadVersionMismatch,
                upstream,
                downstream,
                direction: Direction::Unknown,
            }
            .explain(layer, spec),
            Cause::FlagRevisions { upstream, downstream } => {
                Pair { kind: DivergenceKind::SnapshotSkew, upstream, downstream, direction: Direction::Unknown }
                    .explain(layer, spec)
            }
        }
    }
}

// Per-layer counters in a bucket.
const L_NEW: usize = 0;
const L_OLD: usize = 1;
const L_UNKNOWN: usize = 2;
const L_LATE: usize = 3;
const L_MISSING: usize = 4;

/// One second of one feature.
struct Bucket {
    sec: i64,
    /// Closed joins, `path * 4 + verdict`.
    requests: [u32; 16],
    /// Requests with at least one divergence of each kind.
    kinds: [u32; 4],
    layers: Box<[[u32; 5]]>,
    /// `(pair key, requests, exposed requests)`, usually empty.
    pairs: Vec<(u32, u32, u32)>,
    /// `(cause, requests, exposed requests)`, usually empty.
    causes: Vec<(Cause, u32, u32)>,
}

struct LagSlice {
    slot: i64,
    layers: Box<[Option<Histogram<u32>>]>,
}

/// A divergent request as it closed.
#[derive(Debug, Clone)]
pub struct Sample {
    pub request_id: String,
    pub verdict: Verdict,
    pub path: RequestPath,
    pub start_ms: i64,
    /// Wall-clock time of the close.
    pub closed_ms: i64,
    pub close_cause: CloseCause,
    pub pairs: Vec<Pair>,
    pub cause: Option<Cause>,
    /// Expected layers that never reported.
    pub missing: LayerSet,
    /// In pipeline order, then event time.
    pub records: Vec<SampleRecord>,
}

#[derive(Debug, Clone)]
pub struct SampleRecord {
    pub layer: LayerId,
    /// Where the record came from (offset within its topic partition).
    pub pos: crate::join::Position,
    pub ts_ms: i64,
    pub path: RecordPath,
    /// The record as received; `None` if it had left the sample buffer.
    pub raw: Option<Box<[u8]>>,
}

/// What the live statistics keep of one closed join.
pub struct CloseEvent<'a> {
    pub verdict: Verdict,
    pub path: RequestPath,
    /// Expected layers that never reported.
    pub missing: LayerSet,
    pub pairs: &'a [Pair],
    /// The request's leading explanation, if it diverged.
    pub cause: Option<Cause>,
    /// Per layer that reported: its first record's event time minus the
    /// join start, in milliseconds.
    pub lags: &'a [(LayerId, i64)],
    /// Kept among the recent divergent requests if present.
    pub sample: Option<Sample>,
}

/// The live state of one feature. Public so it can be exercised directly;
/// normally reached through [`LiveStats`].
pub struct FeatureLive {
    layers: usize,
    lag_high_ms: u64,
    buckets: VecDeque<Bucket>,
    lag: VecDeque<LagSlice>,
    samples: VecDeque<Sample>,
}

impl FeatureLive {
    pub fn new(layers: usize, lag_high_ms: u64) -> Self {
        FeatureLive {
            layers,
            lag_high_ms: lag_high_ms.max(2),
            buckets: VecDeque::new(),
            lag: VecDeque::new(),
            samples: VecDeque::new(),
        }
    }

    fn bucket(&mut self, now_ms: i64) -> &mut Bucket {
        let sec = now_ms.div_euclid(BUCKET_MS);
        // A clock that steps back counts into the newest bucket.
        if self.buckets.back().is_none_or(|b| b.sec < sec) {
            while self.buckets.front().is_some_and(|b| (b.sec + 1) * BUCKET_MS < now_ms - MAX_WINDOW_MS) {
                self.buckets.pop_front();
            }
            self.buckets.push_back(Bucket {
                sec,
                requests: [0; 16],
                kinds: [0; 4],
                layers: vec![[0; 5]; self.layers].into_boxed_slice(),
                pairs: Vec::new(),
                causes: Vec::new(),
            });
        }
        self.buckets.back_mut().expect("just pushed")
    }

    fn lag_slice(&mut self, now_ms: i64) -> &mut LagSlice {
        let slot = now_ms.div_euclid(LAG_SLICE_MS);
        if self.lag.back().is_none_or(|s| s.slot < slot) {
            while self.lag.front().is_some_and(|s| (s.slot + 1) * LAG_SLICE_MS < now_ms - MAX_WINDOW_MS) {
                self.lag.pop_front();
            }
            self.lag.push_back(LagSlice { slot, layers: (0..self.layers).map(|_| None).collect() });
        }
        self.lag.back_mut().expect("just pushed")
    }

    /// A valid record arrived (`late` ones changed no verdict).
    pub fn on_record(&mut self, now_ms: i64, layer: LayerId, path: RecordPath, late: bool) {
        let b = self.bucket(now_ms);
        let Some(l) = b.layers.get_mut(layer.index()) else {
            return;
        };
        let i = if late {
            L_LATE
        } else {
            match path {
                RecordPath::New => L_NEW,
                RecordPath::Old => L_OLD,
                RecordPath::Unknown => L_UNKNOWN,
            }
        };
        l[i] = l[i].saturating_add(1);
    }

    /// A join closed: count it, and keep it as a sample if it diverged.
    pub fn on_close(&mut self, now_ms: i64, ev: CloseEvent<'_>) {
        let CloseEvent { verdict, path, missing, pairs, cause, lags, sample } = ev;
        let exposed = path.exposed();
        let b = self.bucket(now_ms);
        let r = &mut b.requests[path as usize * 4 + verdict as usize];
        *r = r.saturating_add(1);
        let mut kinds = [false; 4];
        for p in pairs {
            kinds[p.kind as usize] = true;
            let key = p.key();
            match b.pairs.iter_mut().find(|e| e.0 == key) {
                Some(e) => {
                    e.1 += 1;
                    e.2 += u32::from(exposed);
                }
                None => b.pairs.push((key, 1, u32::from(exposed))),
            }
        }
        if let Some(c) = cause {
            match b.causes.iter_mut().find(|e| e.0 == c) {
                Some(e) => {
                    e.1 += 1;
                    e.2 += u32::from(exposed);
                }
                None => b.causes.push((c, 1, u32::from(exposed))),
            }
        }
        for (k, hit) in kinds.iter().enumerate() {
            b.kinds[k] += u32::from(*hit);
        }
        for l in missing {
            if let Some(c) = b.layers.get_mut(l.index()) {
                c[L_MISSING] += 1;
            }
        }
        if !lags.is_empty() {
            let high = self.lag_high_ms;
            let s = self.lag_slice(now_ms);
            for &(l, ms) in lags {
                if let Some(h) = s.layers.get_mut(l.index()) {
                    h.get_or_insert_with(|| Histogram::new_with_bounds(1, high, 1).expect("valid histogram bounds"))
                        .saturating_record(ms.max(0) as u64);
                }
            }
        }
        if let Some(s) = sample {
            if self.samples.len() >= MAX_SAMPLES {
                self.samples.pop_front();
            }
            self.samples.push_back(s);
        }
    }

    /// Sums the window `(now − window, now]`: a bucket counts while its
    /// second starts at or after `now − window`.
    pub fn window(&self, now_ms: i64, window_ms: i64) -> WindowStats {
        let from = now_ms - window_ms;
        let mut w = WindowStats {
            window_ms,
            requests: [[0; 4]; 4],
            kinds: [0; 4],
            pairs: Vec::new(),
            causes: Vec::new(),
            layers: vec![LayerStats::default(); self.layers],
        };
        let mut pairs: BTreeMap<u32, (u64, u64)> = BTreeMap::new();
        let mut causes: BTreeMap<Cause, (u64, u64)> = BTreeMap::new();
        for b in self.buckets.iter().rev() {
            if b.sec * BUCKET_MS < from {
                break;
            }
            if b.sec * BUCKET_MS > now_ms {
                continue;
            }
            for (i, n) in b.requests.iter().enumerate() {
                w.requests[i / 4][i % 4] += u64::from(*n);
            }
            for (k, n) in b.kinds.iter().enumerate() {
                w.kinds[k] += u64::from(*n);
            }
            for (l, c) in b.layers.iter().enumerate() {
                let s = &mut w.layers[l];
                s.new += u64::from(c[L_NEW]);
                s.old += u64::from(c[L_OLD]);
                s.unknown += u64::from(c[L_UNKNOWN]);
                s.late += u64::from(c[L_LATE]);
                s.missing += u64::from(c[L_MISSING]);
            }
            for &(key, all, exposed) in &b.pairs {
                let e = pairs.entry(key).or_default();
                e.0 += u64::from(all);
                e.1 += u64::from(exposed);
            }
            for &(c, all, exposed) in &b.causes {
                let e = causes.entry(c).or_default();
                e.0 += u64::from(all);
                e.1 += u64::from(exposed);
            }
        }
        w.pairs = pairs
            .into_iter()
            .map(|(k, (requests, exposed))| PairCount { pair: Pair::from_key(k), requests, exposed })
            .collect();
        w.pairs.sort_by(|a, b| b.requests.cmp(&a.requests).then(a.pair.cmp(&b.pair)));
        w.causes =
            causes.into_iter().map(|(cause, (requests, exposed))| CauseCount { cause, requests, exposed }).collect();
        w.causes.sort_by(|a, b| b.requests.cmp(&a.requests).then(a.cause.cmp(&b.cause)));
        for l in 0..self.layers {
            let mut acc: Option<Histogram<u32>> = None;
            for s in self.lag.iter().rev() {
                if (s.slot + 1) * LAG_SLICE_MS <= from {
                    break;
                }
                if s.slot * LAG_SLICE_MS > now_ms {
                    continue;
                }
                if let Some(h) = &s.layers[l] {
                    match &mut acc {
                        Some(a) => {
                            let _ = a.add(h);
                        }
                        None => acc = Some(h.clone()),
                    }
                }
            }
            if let Some(h) = acc.filter(|h| !h.is_empty()) {
                let s = &mut w.layers[l];
                s.lag_samples = h.len();
                s.lag_p50_ms = Some(h.value_at_quantile(0.5));
                s.lag_p99_ms = Some(h.value_at_quantile(0.99));
            }
        }
        w
    }

    /// The most recent divergent requests, newest first.
    pub fn samples(&self, limit: usize) -> Vec<Sample> {
        self.samples.iter().rev().take(limit).cloned().collect()
    }

    pub fn samples_kept(&self) -> usize {
        self.samples.len()
    }
}

/// Per layer, over a window.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LayerStats {
    /// Non-late records by path.
    pub new: u64,
    pub old: u64,
    pub unknown: u64,
    pub late: u64,
    /// Closed joins this (expected) layer never reported to.
    pub missing: u64,
    pub lag_samples: u64,
    pub lag_p50_ms: Option<u64>,
    pub lag_p99_ms: Option<u64>,
}

impl LayerStats {
    /// Non-late records.
    pub fn records(&self) -> u64 {
        self.new + self.old + self.unknown
    }
    /// `new / (new + old)`: of the records with a known path, the share
    /// that took the new one.
    pub fn new_path_ratio(&self) -> Option<f64> {
        let known = self.new + self.old;
        (known > 0).then(|| self.new as f64 / known as f64)
    }
    /// `old / records`: the share of this layer's records that still took
    /// the old path.
    pub fn old_path_share(&self) -> Option<f64> {
        let n = self.records();
        (n > 0).then(|| self.old as f64 / n as f64)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PairCount {
    pub pair: Pair,
    /// Requests with this divergence.
    pub requests: u64,
    /// Of those, requests on the new or mixed path.
    pub exposed: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CauseCount {
    pub cause: Cause,
    /// Divergent requests with this leading explanation.
    pub requests: u64,
    /// Of those, requests on the new or mixed path.
    pub exposed: u64,
}

/// One feature's figures over a window.
#[derive(Debug, Clone, PartialEq)]
pub struct WindowStats {
    pub window_ms: i64,
    /// Closed joins, `[path][verdict]`.
    pub requests: [[u64; 4]; 4],
    /// Requests with at least one divergence of each kind.
    pub kinds: [u64; 4],
    /// Per divergent pair, most frequent first (a request counts once per
    /// pair, like `accord_divergences_total`).
    pub pairs: Vec<PairCount>,
    /// Divergent requests by leading explanation, most frequent first (a
    /// request counts once).
    pub causes: Vec<CauseCount>,
    pub layers: Vec<LayerStats>,
}

impl WindowStats {
    /// Closed joins.
    pub fn total(&self) -> u64 {
        self.requests.iter().flatten().sum()
    }
    pub fn verdict(&self, v: Verdict) -> u64 {
        self.requests.iter().map(|p| p[v as usize]).sum()
    }
    pub fn path(&self, p: RequestPath) -> u64 {
        self.requests[p as usize].iter().sum()
    }
    fn exposed_verdict(&self, v: Verdict) -> u64 {
        self.requests[RequestPath::New as usize][v as usize] + self.requests[RequestPath::Mixed as usize][v as usize]
    }
    /// Closed joins on the new or mixed path, whatever their verdict.
    pub fn exposed(&self) -> u64 {
        self.path(RequestPath::New) + self.path(RequestPath::Mixed)
    }
    /// Exposed joins that count towards exposed agreement (verdict other
    /// than `incomplete`, SPEC §4).
    pub fn exposed_judged(&self) -> u64 {
        self.exposed() - self.exposed_verdict(Verdict::Incomplete)
    }
    pub fn exposed_agree(&self) -> u64 {
        self.exposed_verdict(Verdict::Agree)
    }
    pub fn exposed_verdicts(&self, v: Verdict) -> u64 {
        self.exposed_verdict(v)
    }
    /// SPEC §4's headline number; `None` without a judged exposed request.
    pub fn exposed_agreement(&self) -> Option<f64> {
        let n = self.exposed_judged();
        (n > 0).then(|| self.exposed_agree() as f64 / n as f64)
    }
    /// Incomplete joins (any path) over all closed joins.
    pub fn incomplete_ratio(&self) -> Option<f64> {
        let n = self.total();
        (n > 0).then(|| self.verdict(Verdict::Incomplete) as f64 / n as f64)
    }
}

struct Inner {
    features: Arc<Features>,
    clock: Clock,
    lag_high_ms: u64,
    slots: RwLock<Vec<Arc<Mutex<FeatureLive>>>>,
}

/// Live statistics of every feature. Cheap to clone (one `Arc`).
#[derive(Clone)]
pub struct LiveStats {
    inner: Arc<Inner>,
}

fn lock(m: &Mutex<FeatureLive>) -> MutexGuard<'_, FeatureLive> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl LiveStats {
    pub fn new(features: Arc<Features>) -> Self {
        Self::with_clock(features, wall_clock())
    }

    pub fn with_clock(features: Arc<Features>, clock: Clock) -> Self {
        let cat = features.catalog();
        let lag_high_ms =
            cat.features.iter().map(|f| f.window_ms).chain([cat.window_ms, 1_000]).max().unwrap_or(1_000) as u64;
        LiveStats { inner: Arc::new(Inner { features, clock, lag_high_ms, slots: RwLock::new(Vec::new()) }) }
    }

    pub fn now_ms(&self) -> i64 {
        (self.inner.clock)()
    }

    pub fn features(&self) -> &Arc<Features> {
        &self.inner.features
    }

    /// The id of a feature known so far (catalog, `other`, tracked), without
    /// registering new names.
    pub fn feature_id(&self, name: &str) -> Option<FeatureId> {
        let f = &self.inner.features;
        f.lookup(name)
    }

    fn slot(&self, id: FeatureId) -> Arc<Mutex<FeatureLive>> {
        let i = id.index();
        {
            let s = self.inner.slots.read().unwrap_or_else(|e| e.into_inner());
            if let Some(m) = s.get(i) {
                return m.clone();
            }
        }
        let mut s = self.inner.slots.write().unwrap_or_else(|e| e.into_inner());
        let layers = self.inner.features.catalog().layers.len();
        while s.len() <= i {
            s.push(Arc::new(Mutex::new(FeatureLive::new(layers, self.inner.lag_high_ms))));
        }
        s[i].clone()
    }

    /// A feature's figures over `window_ms` up to `now_ms`.
    pub fn window(&self, id: FeatureId, now_ms: i64, window_ms: i64) -> WindowStats {
        let slot = self.slot(id);
        let g = lock(&slot);
        g.window(now_ms, window_ms)
    }

    /// A feature's most recent divergent requests, newest first, and how
    /// many are kept.
    pub fn samples(&self, id: FeatureId, limit: usize) -> (Vec<Sample>, usize) {
        let slot = self.slot(id);
        let g = lock(&slot);
        (g.samples(limit), g.samples_kept())
    }

    /// The observer the judging task feeds.
    pub fn observer(&self) -> LiveObserver {
        LiveObserver { live: self.clone(), slots: Vec::new(), pairs: Vec::new(), lags: Vec::new() }
    }
}

/// Feeds [`LiveStats`] from a pipeline. One per judging task.
pub struct LiveObserver {
    live: LiveStats,
    slots: Vec<Arc<Mutex<FeatureLive>>>,
    pairs: Vec<Pair>,
    lags: Vec<(LayerId, i64)>,
}

impl LiveObserver {
    fn slot(&mut self, id: FeatureId) -> &Mutex<FeatureLive> {
        while self.slots.len() <= id.index() {
            let next = FeatureId::new(self.slots.len() as u16);
            self.slots.push(self.live.slot(next));
        }
        &self.slots[id.index()]
    }
}

impl Observer for LiveObserver {
    fn record(&mut self, feature: FeatureId, layer: LayerId, path: RecordPath, late: bool) {
        let now = self.live.now_ms();
        lock(self.slot(feature)).on_record(now, layer, path, late);
    }

    fn closed(&mut self, c: &Closed<'_>) {
        let now = self.live.now_ms();
        let j = c.judgement;
        let mut pairs = std::mem::take(&mut self.pairs);
        let mut lags = std::mem::take(&mut self.lags);
        pairs.clear();
        lags.clear();
        pairs.extend(c.divergences.iter().map(|d| Pair::of(d, c.records)));
        for r in c.records {
            match lags.iter_mut().find(|(l, _)| *l == r.layer) {
                Some(e) => e.1 = e.1.min(r.ts_ms - c.start_ms),
                None => lags.push((r.layer, r.ts_ms - c.start_ms)),
            }
        }
        let cause = Cause::of(c.divergences, c.records);
        let sample = (j.verdict == Verdict::Diverge).then(|| {
            let mut records: Vec<SampleRecord> = c
                .records
                .iter()
                .map(|r| SampleRecord {
                    layer: r.layer,
                    pos: r.position(),
                    ts_ms: r.ts_ms,
                    path: r.path,
                    raw: c.raw(r).map(Box::from),
                })
                .collect();
            records.sort_by_key(|r| (r.layer, r.ts_ms, r.pos));
            Sample {
                request_id: c.request_id.to_string(),
                verdict: j.verdict,
                path: j.path,
                start_ms: c.start_ms,
                closed_ms: now,
                close_cause: c.cause,
                pairs: pairs.clone(),
                cause,
                missing: j.missing,
                records,
            }
        });
        lock(self.slot(c.feature)).on_close(
            now,
            CloseEvent {
                verdict: j.verdict,
                path: j.path,
                missing: j.missing,
                pairs: &pairs,
                cause,
                lags: &lags,
                sample,
            },
        );
        self.pairs = pairs;
        self.lags = lags;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::Catalog;
    use crate::pipeline::Pipeline;
    use std::sync::atomic::{AtomicI64, Ordering};

    const L0: LayerId = LayerId::new(0);
    const L1: LayerId = LayerId::new(1);
    const L3: LayerId = LayerId::new(3);
    const F0: FeatureId = FeatureId::new(0);

    fn features() -> Arc<Features> {
        let cat =
            Catalog::parse(std::path::Path::new("c.toml"), include_str!("../tests/conformance/catalog.toml")).unwrap();
        Arc::new(Features::new(Arc::new(cat)))
    }

    fn ev(verdict: Verdict, path: RequestPath) -> CloseEvent<'static> {
        CloseEvent { verdict, path, missing: LayerSet::EMPTY, pairs: &[], cause: None, lags: &[], sample: None }
    }

    #[test]
    fn window_includes_a_second_while_it_starts_within_the_window() {
        let mut f = FeatureLive::new(4, 60_000);
        f.on_close(10_400, ev(Verdict::Agree, RequestPath::New));
        f.on_record(10_999, L1, RecordPath::New, false);
        // The bucket [10 s, 11 s) is in the window while 10 s >= now - window.
        assert_eq!(f.window(15_000, 5_000).total(), 1);
        assert_eq!(f.window(15_000, 5_000).layers[1].new, 1);
        assert_eq!(f.window(15_001, 5_000).total(), 0);
        assert_eq!(f.window(15_001, 5_000).layers[1].new, 0);
        assert_eq!(f.window(15_001, 6_000).total(), 1);
        // Not yet happened (a reader with an older clock) is not counted.
        assert_eq!(f.window(9_000, 5_000).total(), 0);
    }

    #[test]
    fn ring_stays_bounded_to_an_hour() {
        let mut f = FeatureLive::new(4, 60_000);
        for s in 0..7_200i64 {
            f.on_close(s * 1000, CloseEvent { lags: &[(L0, 5)], ..ev(Verdict::Agree, RequestPath::Old) });
        }
        assert!(f.buckets.len() <= 3_602, "{} buckets", f.buckets.len());
        assert!(f.lag.len() <= 362, "{} slices", f.lag.len());
        let now = 7_199_000;
        let w = f.window(now, MAX_WINDOW_MS);
        assert_eq!(w.total(), 3_601);
        assert_eq!(f.window(now, 60_000).total(), 61);
    }

    #[test]
    fn clock_stepping_back_counts_into_the_newest_bucket() {
        let mut f = FeatureLive::new(4, 60_000);
        f.on_close(100_000, ev(Verdict::Agree, RequestPath::New));
        f.on_close(90_000, ev(Verdict::Diverge, RequestPath::Mixed));
        assert_eq!(f.buckets.len(), 1);
        let w = f.window(100_000, 5_000);
        assert_eq!(w.total(), 2);
        assert_eq!(w.exposed_agreement(), Some(0.5));
    }

    #[test]
    fn lag_quantiles_per_layer_and_slices_leave_the_window() {
        let mut f = FeatureLive::new(4, 120_000);
        for i in 0..100i64 {
            f.on_close(
                0,
                CloseEvent { lags: &[(L0, 0), (L1, i), (L3, 1000 + i * 10)], ..ev(Verdict::Agree, RequestPath::New) },
            );
        }
        let w = f.window(1_000, 5_000);
        assert_eq!(w.layers[0].lag_p99_ms, Some(0));
        let p50 = w.layers[1].lag_p50_ms.unwrap();
        assert!((46..=54).contains(&p50), "{p50}");
        let p99 = w.layers[3].lag_p99_ms.unwrap();
        assert!((1_900..=2_100).contains(&p99), "{p99}");
        assert_eq!(w.layers[2].lag_p50_ms, None);
        assert_eq!(w.layers[3].lag_samples, 100);
        // The 10 s slice [0, 10 s) overlaps a 5 s window until 15 s.
        assert!(f.window(14_999, 5_000).layers[1].lag_p50_ms.is_some());
        assert_eq!(f.window(15_000, 5_000).layers[1].lag_p50_ms, None);
    }

    #[test]
    fn ratios_and_exposed_agreement() {
        let mut f = FeatureLive::new(4, 60_000);
        for _ in 0..3 {
            f.on_record(0, L0, RecordPath::New, false);
        }
        f.on_record(0, L0, RecordPath::Old, false);
        f.on_record(0, L0, RecordPath::Unknown, false);
        f.on_record(0, L0, RecordPath::Old, true);
        f.on_close(0, ev(Verdict::Agree, RequestPath::New));
        f.on_close(0, ev(Verdict::Agree, RequestPath::Old));
        f.on_close(0, ev(Verdict::Incomplete, RequestPath::New));
        f.on_close(0, ev(Verdict::Degraded, RequestPath::Mixed));
        let w = f.window(0, 1_000);
        let l = &w.layers[0];
        assert_eq!((l.new, l.old, l.unknown, l.late), (3, 1, 1, 1));
        assert_eq!(l.new_path_ratio(), Some(0.75));
        assert_eq!(l.old_path_share(), Some(0.2));
        assert_eq!(w.total(), 4);
        assert_eq!(w.exposed(), 3);
        assert_eq!(w.exposed_judged(), 2);
        assert_eq!(w.exposed_agreement(), Some(0.5));
        assert_eq!(w.incomplete_ratio(), Some(0.25));
        assert_eq!(FeatureLive::new(4, 1).window(0, 1_000).exposed_agreement(), None);
    }

    #[test]
    fn samples_ring_keeps_the_newest_hundred() {
        let mut f = FeatureLive::new(4, 60_000);
        for i in 0..150 {
            let s = Sample {
                request_id: format!("r{i}"),
                verdict: Verdict::Diverge,
                path: RequestPath::Mixed,
                start_ms: 0,
                closed_ms: i,
                close_cause: CloseCause::Complete,
                pairs: vec![],
                cause: None,
                missing: LayerSet::EMPTY,
                records: vec![],
            };
            f.on_close(i, CloseEvent { sample: Some(s), ..ev(Verdict::Diverge, RequestPath::Mixed) });
        }
        assert_eq!(f.samples_kept(), MAX_SAMPLES);
        let s = f.samples(3);
        assert_eq!(s.iter().map(|s| s.request_id.as_str()).collect::<Vec<_>>(), ["r149", "r148", "r147"]);
    }

    fn rec(id: &str, layer: &str, ts: i64, extra: &str) -> String {
        format!(
            r#"{{"request_id":"{id}","layer":"{layer}","feature":"checkout_v2","ts":{ts}{extra},"flags_revision":"r1"}}"#
        )
    }

    #[test]
    fn observer_counts_closes_lags_pairs_and_samples_with_raw_records() {
        let now = Arc::new(AtomicI64::new(1_000_000));
        let n = now.clone();
        let live = LiveStats::with_clock(features(), Arc::new(move || n.load(Ordering::Relaxed)));
        let mut obs = live.observer();
        let mut p = Pipeline::new(live.features().clone(), 1 << 20);
        let recs = [
            rec("a", "frontend", 1000, r#","flag_state":true,"selected_flow":"v2""#),
            rec("a", "api", 1020, r#","api_capability":"v1","selected_flow":"v1","job_payload_version":1"#),
            rec("a", "worker", 1300, r#","job_payload_version":1"#),
            rec("a", "analytics", 1500, r#","selected_flow":"v1""#),
        ];
        for (i, r) in recs.iter().enumerate() {
            p.ingest(r.as_bytes(), crate::join::Position::new(0, i as u64), 0, &mut obs).unwrap();
        }
        let w = live.window(F0, 1_000_000, DEFAULT_WINDOW_MS);
        assert_eq!(w.requests[RequestPath::Mixed as usize][Verdict::Diverge as usize], 1);
        assert_eq!(w.kinds[DivergenceKind::PathMismatch as usize], 1);
        assert_eq!(w.kinds[DivergenceKind::ExposureWithoutCapability as usize], 1);
        let fe = Pair {
            kind: DivergenceKind::ExposureWithoutCapability,
            upstream: L0,
            downstream: L1,
            direction: Direction::Unknown,
        };
        assert!(w.pairs.iter().any(|c| c.pair == fe && c.exposed == 1));
        let pm =
            w.pairs.iter().find(|c| c.pair.kind == DivergenceKind::PathMismatch && c.pair.downstream == L1).unwrap();
        assert_eq!(pm.pair.direction, Direction::UpstreamNew);
        assert_eq!(w.layers[0].new, 1);
        assert_eq!(w.layers[1].old, 1);
        // 1 significant digit: within 6.25 %.
        let lag = w.layers[2].lag_p50_ms.unwrap();
        assert!((300..=318).contains(&lag), "{lag}");
        let (s, kept) = live.samples(F0, 10);
        assert_eq!(kept, 1);
        assert_eq!(s[0].request_id, "a");
        assert_eq!(s[0].closed_ms, 1_000_000);
        assert_eq!(s[0].records.len(), 4);
        assert_eq!(s[0].records[1].raw.as_deref(), Some(recs[1].as_bytes()));
        let layer = |l: LayerId| live.features().catalog().layer_name(l).to_string();
        let spec = live.features().spec(F0);
        assert_eq!(fe.explain(&layer, &spec), "frontend took the new path and api did not advertise v2");
        assert_eq!(pm.pair.explain(&layer, &spec), "frontend took the new path but api took the old one");
        // Unknown names are not registered by a lookup.
        assert_eq!(live.feature_id("search.ranking"), Some(FeatureId::new(1)));
        assert_eq!(live.feature_id("nope"), None);
    }

    #[test]
    fn causes_explain_each_divergent_request_once() {
        let f = features();
        let layer = |l: LayerId| f.catalog().layer_name(l).to_string();
        let spec = f.spec(F0);
        let set = LayerSet::from_bits;
        let split = |new: u64, old: u64, both: u64| {
            Cause::PathSplit { new: set(new), old: set(old), both: set(both) }.explain(&layer, &spec)
        };
        assert_eq!(
            split(0b1011, 0b0100, 0),
            "worker took the old path while frontend, api and analytics took the new one"
        );
        assert_eq!(
            split(0b0001, 0b1110, 0),
            "frontend took the new path while api, worker and analytics took the old one"
        );
        assert_eq!(
            split(0b0011, 0b1100, 0),
            "worker and analytics took the old path while frontend and api took the new one"
        );
        assert_eq!(
            split(0, 0, 0b0100),
            "two worker records of one request took different paths (e.g. a retried job run by an old and a new worker)"
        );
        assert_eq!(split(0b0011, 0, 0b0100), "frontend and api took the new path, and worker took both");
        assert_eq!(
            Cause::NoCapability { exposed: L0, api: L1 }.explain(&layer, &spec),
            "frontend took the new path and api did not advertise v2"
        );
        assert_eq!(
            Cause::FlagRevisions { upstream: L0, downstream: L1 }.explain(&layer, &spec),
            "frontend and api evaluated different flag revisions"
        );
    }
}
