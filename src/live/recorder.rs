//! The observer one judging task feeds: it accumulates a [`Delta`] of its
//! own, without a lock, and hands it over with [`Recorder::take`].
//!
//! Per event it finds the feature's slot by index and the current bucket
//! (the newest, almost always), and adds; a bucket is allocated once per
//! second and feature, a lag histogram once per ten seconds, feature and
//! layer, an exit slice once per ten seconds and feature (its tables grow
//! once per layer, revision, old-path taker and event-time second), and a
//! sample only for a divergent request (it keeps the record bytes). The
//! scratch vectors of a close are reused.

use std::sync::Arc;

use super::delta::{
    count, lag_histogram, trim_samples, Bucket, FeatureDelta, LagSlice, LayerCounts, L_LATE, L_MISSING, L_NEW, L_OLD,
    L_UNKNOWN,
};
use super::{Delta, Sample, SampleRecord, BUCKET_MS, EXIT_SLICE_MS, LAG_SLICE_MS, MAX_SAMPLES};
use crate::catalog::{LayerId, LayerSet};
use crate::exit::ExitAgg;
use crate::explain::{Cause, Pair};
use crate::features::{FeatureId, Features};
use crate::join::{Closed, Evidence, Observer};
use crate::judge::{RecordPath, RequestPath, Verdict};

/// Accumulates what one judging task saw; see the module header of `live`.
pub struct Recorder {
    features: Arc<Features>,
    layers: usize,
    /// Wall-clock milliseconds, set by the owner; never steps back.
    now_ms: i64,
    sec: i64,
    slot: i64,
    exit_slot: i64,
    /// `(layer, second)` entries an exit slice keeps per revision: the
    /// live view's bound for the catalog's layers.
    exit_budget: usize,
    /// By feature id.
    slots: Vec<FeatureDelta>,
    /// Samples kept so far: orders closes within a millisecond.
    seq: u64,
    pairs: Vec<Pair>,
    lags: Vec<(LayerId, i64)>,
}

impl Recorder {
    /// A recorder for the features of `features`, with "now" at `now_ms`.
    pub fn new(features: Arc<Features>, now_ms: i64) -> Self {
        let layers = features.catalog().layers.len();
        let mut r = Recorder {
            features,
            layers,
            now_ms: i64::MIN,
            sec: 0,
            slot: 0,
            exit_slot: 0,
            exit_budget: ExitAgg::for_live(layers).budget(),
            slots: Vec::new(),
            seq: 0,
            pairs: Vec::new(),
            lags: Vec::new(),
        };
        r.set_now_ms(now_ms);
        r
    }

    /// The wall-clock time events are counted at from now on. The owner
    /// sets it once per batch of input (one clock read per batch, not per
    /// record). A time before the last one set counts as the last one, so
    /// a clock that steps back counts into the newest bucket.
    pub fn set_now_ms(&mut self, now_ms: i64) {
        if now_ms > self.now_ms {
            self.now_ms = now_ms;
            self.sec = now_ms.div_euclid(BUCKET_MS);
            self.slot = now_ms.div_euclid(LAG_SLICE_MS);
            self.exit_slot = now_ms.div_euclid(EXIT_SLICE_MS);
        }
    }

    pub fn now_ms(&self) -> i64 {
        self.now_ms
    }

    /// Hands over what was accumulated since the last call, and starts
    /// afresh.
    pub fn take(&mut self) -> Delta {
        let mut d = Delta::new(self.features.catalog().layers.clone());
        for (i, f) in self.slots.iter_mut().enumerate() {
            if f.is_empty() {
                continue;
            }
            let mut f = std::mem::take(f);
            f.normalize();
            d.features.insert(self.features.name(FeatureId::new(i as u16)), f);
        }
        d
    }

    fn feature(&mut self, id: FeatureId) -> &mut FeatureDelta {
        if self.slots.len() <= id.index() {
            self.slots.resize_with(id.index() + 1, FeatureDelta::default);
        }
        &mut self.slots[id.index()]
    }

    /// The current second's bucket of a feature.
    fn bucket(&mut self, id: FeatureId) -> &mut Bucket {
        let (sec, layers) = (self.sec, self.layers);
        self.feature(id).buckets.entry(sec).or_insert_with(|| Bucket::new(layers))
    }

    fn layer(&mut self, id: FeatureId, layer: LayerId) -> Option<&mut LayerCounts> {
        self.bucket(id).layers.get_mut(layer.index())
    }

    /// Counts a closed join, and keeps it as a sample if it diverged.
    pub(crate) fn on_close(&mut self, feature: FeatureId, ev: CloseEvent<'_>) {
        let CloseEvent { verdict, path, missing, pairs, cause, lags, sample } = ev;
        let exposed = u32::from(path.exposed());
        let b = self.bucket(feature);
        let r = &mut b.requests[path as usize][verdict as usize];
        *r = r.saturating_add(1);
        let mut kinds = [false; 4];
        for p in pairs {
            kinds[p.kind as usize] = true;
            count(&mut b.pairs, *p, 1, exposed);
        }
        for (n, hit) in b.kinds.iter_mut().zip(kinds) {
            *n = n.saturating_add(u32::from(hit));
        }
        if let Some(c) = cause {
            count(&mut b.causes, c, 1, exposed);
        }
        for l in missing {
            if let Some(m) = b.layers.get_mut(l.index()) {
                m[L_MISSING] = m[L_MISSING].saturating_add(1);
            }
        }
        if !lags.is_empty() {
            let (slot, layers) = (self.slot, self.layers);
            let s = self.feature(feature).lags.entry(slot).or_insert_with(|| LagSlice::new(layers));
            for &(l, ms) in lags {
                if let Some(h) = s.layers.get_mut(l.index()) {
                    h.get_or_insert_with(lag_histogram).saturating_record(ms.max(0) as u64);
                }
            }
        }
        if let Some(mut sample) = sample {
            self.seq += 1;
            sample.seq = self.seq;
            let samples = &mut self.feature(feature).samples;
            samples.push(sample);
            // Trimmed in batches: the newest MAX_SAMPLES survive either way.
            if samples.len() >= 2 * MAX_SAMPLES {
                trim_samples(samples);
            }
        }
    }
}

/// What the live statistics keep of one closed join.
pub(crate) struct CloseEvent<'a> {
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

impl Observer for Recorder {
    /// The exit review's evidence, into the current exit slice.
    fn evidence(&mut self, e: &Evidence<'_>) {
        let Some(layer) = self.features.catalog().layers.get(e.layer.index()) else { return };
        let i = e.feature.index();
        if self.slots.len() <= i {
            self.slots.resize_with(i + 1, FeatureDelta::default);
        }
        let (slot, budget) = (self.exit_slot, self.exit_budget);
        let agg = self.slots[i].exits.entry(slot).or_insert_with(|| Arc::new(ExitAgg::with_budget(budget)));
        // The recorder's slices are its own until taken: never copied here.
        Arc::make_mut(agg).add(layer, e);
    }

    fn record(&mut self, feature: FeatureId, layer: LayerId, path: RecordPath, late: bool) {
        let i = if late {
            L_LATE
        } else {
            match path {
                RecordPath::New => L_NEW,
                RecordPath::Old => L_OLD,
                RecordPath::Unknown => L_UNKNOWN,
            }
        };
        if let Some(l) = self.layer(feature, layer) {
            l[i] = l[i].saturating_add(1);
        }
    }

    fn closed(&mut self, c: &Closed<'_>) {
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
                closed_ms: self.now_ms,
                seq: 0,
                close_cause: c.cause,
                pairs: pairs.clone(),
                cause,
                missing: j.missing,
                records,
            }
        });
        self.on_close(
            c.feature,
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
pub(crate) mod tests {
    use super::*;
    use crate::catalog::Catalog;
    use crate::explain::Direction;
    use crate::join::CloseCause;
    use crate::judge::DivergenceKind;
    use crate::live::{LiveView, WindowStats, DEFAULT_WINDOW_MS};
    use crate::pipeline::Pipeline;
    use std::sync::atomic::{AtomicI64, Ordering};

    const L0: LayerId = LayerId::new(0);
    const L1: LayerId = LayerId::new(1);
    const L3: LayerId = LayerId::new(3);
    const F0: FeatureId = FeatureId::new(0);

    pub(crate) fn features() -> Arc<Features> {
        let cat = Catalog::parse(std::path::Path::new("c.toml"), include_str!("../../tests/conformance/catalog.toml"))
            .unwrap();
        Arc::new(Features::new(Arc::new(cat)))
    }

    fn ev(verdict: Verdict, path: RequestPath) -> CloseEvent<'static> {
        CloseEvent { verdict, path, missing: LayerSet::EMPTY, pairs: &[], cause: None, lags: &[], sample: None }
    }

    /// The recorder's delta, read as checkout_v2's window.
    fn windows(r: &mut Recorder) -> impl Fn(i64, i64) -> WindowStats {
        let d = r.take();
        move |now, window| d.window("checkout_v2", now, window).unwrap_or_else(|| WindowStats::empty(window, 4))
    }

    #[test]
    fn window_includes_a_second_while_it_starts_within_the_window() {
        let mut r = Recorder::new(features(), 10_400);
        r.on_close(F0, ev(Verdict::Agree, RequestPath::New));
        r.set_now_ms(10_999);
        r.record(F0, L1, RecordPath::New, false);
        let w = windows(&mut r);
        // The bucket [10 s, 11 s) is in the window while 10 s >= now - window.
        assert_eq!(w(15_000, 5_000).total(), 1);
        assert_eq!(w(15_000, 5_000).layers[1].new, 1);
        assert_eq!(w(15_001, 5_000).total(), 0);
        assert_eq!(w(15_001, 5_000).layers[1].new, 0);
        assert_eq!(w(15_001, 6_000).total(), 1);
        // Not yet happened (a reader with an older clock) is not counted.
        assert_eq!(w(9_000, 5_000).total(), 0);
    }

    #[test]
    fn clock_stepping_back_counts_into_the_newest_bucket() {
        let mut r = Recorder::new(features(), 100_000);
        r.on_close(F0, ev(Verdict::Agree, RequestPath::New));
        r.set_now_ms(90_000);
        assert_eq!(r.now_ms(), 100_000);
        r.on_close(F0, ev(Verdict::Diverge, RequestPath::Mixed));
        let d = r.take();
        assert_eq!(d.seconds(), Some((100, 100)));
        let w = d.window("checkout_v2", 100_000, 5_000).unwrap();
        assert_eq!(w.total(), 2);
        assert_eq!(w.exposed_agreement(), Some(0.5));
        // Taken: the next delta starts empty.
        assert!(r.take().is_empty());
    }

    #[test]
    fn lag_quantiles_per_layer_and_slices_leave_the_window() {
        let mut r = Recorder::new(features(), 0);
        for i in 0..100i64 {
            r.on_close(
                F0,
                CloseEvent { lags: &[(L0, 0), (L1, i), (L3, 1000 + i * 10)], ..ev(Verdict::Agree, RequestPath::New) },
            );
        }
        let w = windows(&mut r);
        let s = w(1_000, 5_000);
        assert_eq!(s.layers[0].lag_p99_ms, Some(0));
        let p50 = s.layers[1].lag_p50_ms.unwrap();
        assert!((46..=54).contains(&p50), "{p50}");
        let p99 = s.layers[3].lag_p99_ms.unwrap();
        assert!((1_900..=2_100).contains(&p99), "{p99}");
        assert_eq!(s.layers[2].lag_p50_ms, None);
        assert_eq!(s.layers[3].lag_samples, 100);
        // The 10 s slice [0, 10 s) overlaps a 5 s window until 15 s.
        assert!(w(14_999, 5_000).layers[1].lag_p50_ms.is_some());
        assert_eq!(w(15_000, 5_000).layers[1].lag_p50_ms, None);
    }

    #[test]
    fn ratios_and_exposed_agreement() {
        let mut r = Recorder::new(features(), 0);
        for _ in 0..3 {
            r.record(F0, L0, RecordPath::New, false);
        }
        r.record(F0, L0, RecordPath::Old, false);
        r.record(F0, L0, RecordPath::Unknown, false);
        r.record(F0, L0, RecordPath::Old, true);
        r.on_close(F0, ev(Verdict::Agree, RequestPath::New));
        r.on_close(F0, ev(Verdict::Agree, RequestPath::Old));
        r.on_close(F0, ev(Verdict::Incomplete, RequestPath::New));
        r.on_close(F0, ev(Verdict::Degraded, RequestPath::Mixed));
        let w = windows(&mut r)(0, 1_000);
        let l = &w.layers[0];
        assert_eq!((l.new, l.old, l.unknown, l.late), (3, 1, 1, 1));
        assert_eq!(l.new_path_ratio(), Some(0.75));
        assert_eq!(l.old_path_share(), Some(0.2));
        assert_eq!(w.total(), 4);
        assert_eq!(w.exposed(), 3);
        assert_eq!(w.exposed_judged(), 2);
        assert_eq!(w.exposed_agreement(), Some(0.5));
        assert_eq!(w.incomplete_ratio(), Some(0.25));
        assert_eq!(WindowStats::empty(1_000, 4).exposed_agreement(), None);
    }

    pub(crate) fn sample(id: &str, closed_ms: i64) -> Sample {
        Sample {
            request_id: id.into(),
            verdict: Verdict::Diverge,
            path: RequestPath::Mixed,
            start_ms: 0,
            closed_ms,
            seq: 0,
            close_cause: CloseCause::Complete,
            pairs: vec![],
            cause: None,
            missing: LayerSet::EMPTY,
            records: vec![],
        }
    }

    #[test]
    fn samples_ring_keeps_the_newest_hundred() {
        let mut r = Recorder::new(features(), 0);
        for i in 0..150 {
            r.set_now_ms(i);
            let s = sample(&format!("r{i}"), i);
            r.on_close(F0, CloseEvent { sample: Some(s), ..ev(Verdict::Diverge, RequestPath::Mixed) });
        }
        let d = r.take();
        assert_eq!(d.samples("checkout_v2", usize::MAX).len(), MAX_SAMPLES);
        let s = d.samples("checkout_v2", 3);
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
        let live = LiveView::with_clock(features(), Arc::new(move || n.load(Ordering::Relaxed)));
        let mut obs = live.recorder();
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
        // Nothing reaches the view before the recorder's delta does.
        assert_eq!(live.window(F0, 1_000_000, DEFAULT_WINDOW_MS).total(), 0);
        live.apply(obs.take());
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
        assert_eq!(w.causes.len(), 1, "one story per request");
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
}
