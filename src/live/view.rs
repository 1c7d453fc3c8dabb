//! The merged store the APIs read: deltas in, windows and samples out.

use std::sync::{Arc, Mutex, MutexGuard, RwLock};

use super::delta::FeatureDelta;
use super::shares::{Freshness, InstanceView, ShareNote, Shares};
use super::{wall_clock, Clock, Delta, Point, Recorder, Sample, WindowStats, MAX_WINDOW_MS};
use crate::exit::{ExitAgg, RequestCounts};
use crate::features::{FeatureId, Features, Resolved};

struct Inner {
    features: Arc<Features>,
    clock: Clock,
    /// By feature id.
    slots: RwLock<Vec<Arc<Mutex<FeatureDelta>>>>,
    /// Whose shares the view holds (global view only).
    shares: Mutex<Shares>,
    /// Shares older than this make the view incomplete.
    fresh_ms: std::sync::atomic::AtomicI64,
    /// Still reading back the last hour after a start.
    rebuilding: std::sync::atomic::AtomicBool,
}

/// Live statistics of every feature, merged from deltas, over the last
/// hour. Cheap to clone (one `Arc`).
#[derive(Clone)]
pub struct LiveView {
    inner: Arc<Inner>,
}

/// The flag exit review's inputs over a window, from the view.
#[derive(Debug, Clone, PartialEq)]
pub struct ExitEvidence {
    /// Every valid record (late ones included) that arrived in the period.
    pub agg: ExitAgg,
    /// The joins that closed in the same period.
    pub requests: RequestCounts,
    /// Where the period starts: the window's start rounded down to a whole
    /// exit slice (the period ends at the window's end).
    pub from_ms: i64,
}

/// What [`LiveView::apply`] did with a delta.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Applied {
    /// Features added in.
    pub features: usize,
    /// Features dropped: not in this instance's catalog, and unknown
    /// features are rejected (`unknown_features = "reject"`).
    pub rejected: usize,
}

fn lock(m: &Mutex<FeatureDelta>) -> MutexGuard<'_, FeatureDelta> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl LiveView {
    pub fn new(features: Arc<Features>) -> Self {
        Self::with_clock(features, wall_clock())
    }

    pub fn with_clock(features: Arc<Features>, clock: Clock) -> Self {
        LiveView {
            inner: Arc::new(Inner {
                features,
                clock,
                slots: RwLock::new(Vec::new()),
                shares: Mutex::new(Shares::default()),
                fresh_ms: std::sync::atomic::AtomicI64::new(0),
                rebuilding: std::sync::atomic::AtomicBool::new(false),
            }),
        }
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
        self.inner.features.lookup(name)
    }

    /// A recorder over this view's features, with "now" at the view's clock.
    pub fn recorder(&self) -> Recorder {
        Recorder::new(self.inner.features.clone(), self.now_ms())
    }

    fn slot(&self, id: FeatureId) -> Arc<Mutex<FeatureDelta>> {
        let i = id.index();
        {
            let s = self.inner.slots.read().unwrap_or_else(|e| e.into_inner());
            if let Some(m) = s.get(i) {
                return m.clone();
            }
        }
        let mut s = self.inner.slots.write().unwrap_or_else(|e| e.into_inner());
        while s.len() <= i {
            s.push(Arc::default());
        }
        s[i].clone()
    }

    /// Adds a delta in (from any instance: features and layers are matched
    /// by name; a tracked feature another instance saw first is tracked
    /// here too), and drops what has left the last hour. Safe from several
    /// threads; each feature's lock is held only while its share is added.
    pub fn apply(&self, mut delta: Delta) -> Applied {
        let features = &self.inner.features;
        let layers = &features.catalog().layers;
        if &delta.layers != layers {
            delta.relayer(layers);
        }
        let now = self.now_ms();
        let mut applied = Applied::default();
        for (name, mut f) in delta.features {
            // `lookup` first: it knows `other`, which `resolve` would track
            // as a new name.
            let resolved = features.lookup(&name).map_or_else(|| features.resolve(&name), Resolved::Known);
            let id = match resolved {
                Resolved::Known(id) | Resolved::Other(id) => id,
                Resolved::Rejected => {
                    applied.rejected += 1;
                    continue;
                }
            };
            // Older than an hour: nothing to lock for.
            f.prune(now, MAX_WINDOW_MS);
            let slot = self.slot(id);
            let mut g = lock(&slot);
            g.merge(f);
            g.prune(now, MAX_WINDOW_MS);
            applied.features += 1;
        }
        applied
    }

    /// Adds an instance's published share: its delta and what it says of
    /// the streams it owns.
    pub fn apply_share(&self, note: &ShareNote<'_>, delta: Delta) -> Applied {
        self.inner.shares.lock().unwrap_or_else(|e| e.into_inner()).note(note, &delta);
        self.apply(delta)
    }

    /// The view is global: it expects a share of each of `streams`
    /// streams, none older than `fresh_ms`.
    pub fn expect_streams(&self, streams: usize, fresh_ms: i64) {
        self.inner.shares.lock().unwrap_or_else(|e| e.into_inner()).set_expected_streams(streams);
        self.inner.fresh_ms.store(fresh_ms, std::sync::atomic::Ordering::Relaxed);
    }

    /// How complete and fresh the view is at `now_ms`; `None` for a view
    /// that is not fed by shares (replay, tests).
    pub fn freshness(&self, now_ms: i64) -> Option<Freshness> {
        let bound = self.inner.fresh_ms.load(std::sync::atomic::Ordering::Relaxed);
        (bound > 0).then(|| self.inner.shares.lock().unwrap_or_else(|e| e.into_inner()).freshness(now_ms, bound))
    }

    /// What each instance has published.
    pub fn instances(&self) -> Vec<InstanceView> {
        self.inner.shares.lock().unwrap_or_else(|e| e.into_inner()).instances()
    }

    /// Marks the view as reading back the last hour (after a start).
    pub fn set_rebuilding(&self, rebuilding: bool) {
        self.inner.rebuilding.store(rebuilding, std::sync::atomic::Ordering::Release);
    }

    pub fn rebuilding(&self) -> bool {
        self.inner.rebuilding.load(std::sync::atomic::Ordering::Acquire)
    }

    /// A feature's figures over `window_ms` up to `now_ms`.
    pub fn window(&self, id: FeatureId, now_ms: i64, window_ms: i64) -> WindowStats {
        let layers = self.inner.features.catalog().layers.len();
        let slot = self.slot(id);
        let g = lock(&slot);
        g.window(layers, now_ms, window_ms)
    }

    /// The exit review's evidence of a feature over `window_ms` up to
    /// `now_ms`, rounded out to whole exit slices: the evidence and the
    /// closed requests over the same period. The slices are merged after
    /// the feature's lock is released.
    pub fn exit_evidence(&self, id: FeatureId, now_ms: i64, window_ms: i64) -> ExitEvidence {
        let layers = self.inner.features.catalog().layers.len();
        let slot = self.slot(id);
        let (slices, from_ms, requests) = {
            let g = lock(&slot);
            let (slices, from_ms) = g.exit_slices(now_ms, window_ms);
            (slices, from_ms, g.window(layers, now_ms, now_ms - from_ms).request_counts())
        };
        let agg = match slices.len() {
            0 => ExitAgg::for_live(layers),
            _ => ExitAgg::merged(slices.into_iter().map(std::sync::Arc::unwrap_or_clone)),
        };
        ExitEvidence { agg, requests, from_ms }
    }

    /// A feature's chart: `points` steps of `step_ms` ending at `now_ms`.
    pub fn series(&self, id: FeatureId, now_ms: i64, step_ms: i64, points: usize) -> Vec<Point> {
        let layers = self.inner.features.catalog().layers.len();
        let slot = self.slot(id);
        let g = lock(&slot);
        g.series(layers, now_ms, step_ms, points)
    }

    /// A feature's most recent divergent requests, newest first, and how
    /// many are kept.
    pub fn samples(&self, id: FeatureId, limit: usize) -> (Vec<Sample>, usize) {
        let slot = self.slot(id);
        let g = lock(&slot);
        (g.samples.iter().take(limit).cloned().collect(), g.samples.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::{Catalog, LayerId, LayerSet};
    use crate::judge::{RequestPath, Verdict};
    use crate::live::recorder::CloseEvent;
    use crate::live::MAX_SAMPLES;
    use std::sync::atomic::{AtomicI64, Ordering};

    const F0: FeatureId = FeatureId::new(0);
    const L0: LayerId = LayerId::new(0);

    fn features(toml: &str) -> Arc<Features> {
        Arc::new(Features::new(Arc::new(Catalog::parse(std::path::Path::new("c.toml"), toml).unwrap())))
    }

    fn catalog() -> String {
        include_str!("../../tests/conformance/catalog.toml").to_string()
    }

    fn manual(features: Arc<Features>, at: i64) -> (LiveView, Arc<AtomicI64>) {
        let clock = Arc::new(AtomicI64::new(at));
        let c = clock.clone();
        (LiveView::with_clock(features, Arc::new(move || c.load(Ordering::Relaxed))), clock)
    }

    fn agree(lags: &[(LayerId, i64)]) -> CloseEvent<'_> {
        CloseEvent {
            verdict: Verdict::Agree,
            path: RequestPath::Old,
            missing: LayerSet::EMPTY,
            pairs: &[],
            cause: None,
            lags,
            sample: None,
        }
    }

    #[test]
    fn ring_stays_bounded_to_an_hour() {
        let (live, clock) = manual(features(&catalog()), 0);
        let mut r = live.recorder();
        for s in 0..7_200i64 {
            clock.store(s * 1000, Ordering::Relaxed);
            r.set_now_ms(s * 1000);
            r.on_close(F0, agree(&[(L0, 5)]));
            live.apply(r.take());
        }
        {
            let slot = live.slot(F0);
            let g = lock(&slot);
            assert!(g.buckets.len() <= 3_602, "{} buckets", g.buckets.len());
            assert!(g.lags.len() <= 362, "{} slices", g.lags.len());
        }
        let now = 7_199_000;
        let w = live.window(F0, now, MAX_WINDOW_MS);
        assert_eq!(w.total(), 3_601);
        assert_eq!(live.window(F0, now, 60_000).total(), 61);
        // A delta from more than an hour ago changes nothing.
        let mut old = Recorder::new(live.features().clone(), 0);
        old.on_close(F0, agree(&[]));
        assert_eq!(live.apply(old.take()), Applied { features: 1, rejected: 0 });
        assert_eq!(live.window(F0, now, MAX_WINDOW_MS).total(), 3_601);
    }

    fn evidence(layer: u8, ts_ms: i64, rev: &str) -> crate::join::Evidence<'_> {
        crate::join::Evidence {
            feature: F0,
            layer: LayerId::new(layer),
            path: crate::judge::RecordPath::Old,
            ts_ms,
            service: Some("worker-svc"),
            build: Some("b7"),
            revision: Some(rev),
        }
    }

    #[test]
    fn exit_evidence_is_kept_for_an_hour_in_ten_second_slices() {
        use crate::join::Observer;
        let (live, clock) = manual(features(&catalog()), 0);
        let mut r = live.recorder();
        for s in (0..7_200i64).step_by(5) {
            clock.store(s * 1000, Ordering::Relaxed);
            r.set_now_ms(s * 1000);
            r.evidence(&evidence(2, s * 1000 - 300, "r1"));
            live.apply(r.take());
        }
        {
            let slot = live.slot(F0);
            let g = lock(&slot);
            assert!(g.exits.len() <= 362, "{} slices", g.exits.len());
        }
        let now = 7_195_000;
        let ev = live.exit_evidence(F0, now, MAX_WINDOW_MS);
        // (now − 1h, now] rounded out to whole slices: from 3,590 s.
        assert_eq!(ev.from_ms, 3_590_000);
        let worker = &ev.agg.layers()["worker"];
        assert_eq!(worker.records(), (7_195 - 3_590) / 5 + 1);
        assert_eq!(worker.takers().next().map(|t| (t.0, t.1, t.2.last_ms)), Some(("worker-svc", "b7", now - 300)));
    }

    #[test]
    fn exit_evidence_and_requests_cover_the_same_slices() {
        use crate::join::Observer;
        let (live, _) = manual(features(&catalog()), 9_000);
        let mut r = live.recorder();
        for (at, rev) in [(9_900, "r0"), (10_500, "r1"), (19_999, "r1"), (25_000, "r2")] {
            r.set_now_ms(at);
            r.on_close(F0, agree(&[]));
            r.evidence(&evidence(1, at - 50, rev));
        }
        live.apply(r.take());
        // The window (15 s, 25 s] overlaps the slices of [10 s, 20 s) and
        // [20 s, 30 s): evidence and requests both start at 10 s.
        let ev = live.exit_evidence(F0, 25_000, 10_000);
        assert_eq!(ev.from_ms, 10_000);
        assert_eq!(ev.requests.requests, 3);
        assert_eq!(ev.agg.layers()["api"].records(), 3);
        let revs: Vec<&str> = ev.agg.revisions().iter().map(|r| r.name.as_str()).collect();
        assert_eq!(revs, ["r1", "r2"]);
        // A window on a slice boundary takes no slice before it.
        assert_eq!(live.exit_evidence(F0, 30_000, 10_000).from_ms, 20_000);
        assert_eq!(live.exit_evidence(F0, 30_000, 10_000).requests.requests, 1);
        // Nothing: an empty aggregate and no request.
        let none = live.exit_evidence(FeatureId::new(1), 25_000, 10_000);
        assert!(none.agg.is_empty());
        assert_eq!(none.requests.requests, 0);
    }

    #[test]
    fn chart_points_add_up_to_the_window() {
        use crate::join::Observer;
        let (live, _) = manual(features(&catalog()), 0);
        let mut r = live.recorder();
        for at in [0i64, 59_999, 60_000, 61_000, 119_000, 120_000] {
            r.set_now_ms(at);
            r.on_close(F0, CloseEvent { path: RequestPath::New, ..agree(&[]) });
            r.record(F0, L0, crate::judge::RecordPath::New, false);
            r.record(F0, LayerId::new(1), crate::judge::RecordPath::Old, false);
        }
        r.set_now_ms(120_000);
        r.on_close(F0, CloseEvent { path: RequestPath::Mixed, verdict: Verdict::Diverge, ..agree(&[]) });
        r.on_close(F0, CloseEvent { path: RequestPath::New, verdict: Verdict::Incomplete, ..agree(&[]) });
        live.apply(r.take());
        let pts = live.series(F0, 120_000, 60_000, 2);
        // [0, 60 s) and [60 s, 120 s], the second starting at now included.
        assert_eq!((pts[0].exposed_judged, pts[0].exposed_agree), (2, 2));
        assert_eq!((pts[1].exposed_judged, pts[1].exposed_agree), (5, 4));
        assert_eq!(pts[1].exposed_agreement(), Some(0.8));
        assert_eq!(pts[0].layers[0], (2, 0));
        assert_eq!(pts[1].new_path_ratio(1), Some(0.0));
        assert_eq!(pts[1].new_path_ratio(2), None);
        let w = live.window(F0, 120_000, 120_000);
        let sum: u64 = pts.iter().map(|p| p.exposed_judged).sum();
        assert_eq!(sum, w.exposed_judged());
        assert_eq!(pts.iter().map(|p| p.layers[0].0).sum::<u64>(), w.layers[0].new);
    }

    #[test]
    fn several_threads_apply_while_readers_read() {
        let (live, _) = manual(features(&catalog()), 50_000);
        std::thread::scope(|s| {
            for t in 0..4 {
                let live = &live;
                s.spawn(move || {
                    let mut r = live.recorder();
                    for i in 0..50 {
                        r.set_now_ms(50_000 + t * 1_000 + i);
                        r.on_close(F0, agree(&[(L0, i)]));
                        r.on_close(FeatureId::new(1), agree(&[]));
                        live.apply(r.take());
                        let _ = live.window(F0, 60_000, 60_000);
                    }
                });
            }
        });
        let w = live.window(F0, 60_000, 60_000);
        assert_eq!(w.total(), 200);
        assert_eq!(w.layers[0].lag_samples, 200);
        assert_eq!(live.window(FeatureId::new(1), 60_000, 60_000).total(), 200);
    }

    #[test]
    fn deltas_of_other_instances_merge_by_feature_and_layer_name() {
        let tracking = catalog().replace("[monitor]", "[monitor]\nunknown_features = \"track\"");
        // Another instance tracked a feature this one has not seen, under
        // the same ids this one gives to other names.
        let theirs = features(&tracking);
        assert!(matches!(theirs.resolve("beta"), Resolved::Known(_)));
        let beta = theirs.lookup("beta").unwrap();
        let mut r = Recorder::new(theirs.clone(), 10_000);
        r.on_close(beta, agree(&[]));
        r.on_close(theirs.lookup("other").unwrap(), agree(&[]));

        let ours = features(&tracking);
        assert!(matches!(ours.resolve("alpha"), Resolved::Known(_)));
        let (live, _) = manual(ours.clone(), 10_000);
        assert_eq!(live.apply(r.take()), Applied { features: 2, rejected: 0 });
        let id = live.feature_id("beta").expect("tracked here too");
        assert_ne!(id, beta, "ids differ between instances");
        assert_eq!(live.window(id, 10_000, 1_000).total(), 1);
        assert_eq!(live.window(live.feature_id("alpha").unwrap(), 10_000, 1_000).total(), 0);
        // `other` is `other`, not a new tracked name.
        assert_eq!(live.window(live.feature_id("other").unwrap(), 10_000, 1_000).total(), 1);
        assert_eq!(ours.len(), 5, "checkout_v2, search.ranking, other, alpha, beta");

        // Rejected where this instance rejects unknown features.
        let (strict, _) = manual(features(&catalog()), 10_000);
        let mut r = Recorder::new(theirs.clone(), 10_000);
        r.on_close(beta, agree(&[]));
        r.on_close(F0, agree(&[]));
        assert_eq!(strict.apply(r.take()), Applied { features: 1, rejected: 1 });
        assert_eq!(strict.window(F0, 10_000, 1_000).total(), 1);
    }

    #[test]
    fn shares_note_their_instance_and_streams() {
        let (live, _) = manual(features(&catalog()), 5_000);
        assert_eq!(live.freshness(5_000), None, "not a global view");
        live.expect_streams(2, 10_000);
        let mut r = live.recorder();
        r.set_now_ms(5_500);
        r.on_close(F0, agree(&[]));
        let note = ShareNote { instance: "a-1", published_ms: 5_600, streams: &[0, 1] };
        assert_eq!(live.apply_share(&note, r.take()), Applied { features: 1, rejected: 0 });
        assert_eq!(live.window(F0, 6_000, 5_000).total(), 1);
        let f = live.freshness(6_000).unwrap();
        assert!(f.complete(), "{f:?}");
        let inst = live.instances();
        assert_eq!(inst[0].instance, "a-1");
        assert_eq!(inst[0].requests["checkout_v2"]["old"]["agree"], 1);
        assert_eq!(live.samples(F0, MAX_SAMPLES), (vec![], 0));
    }
}
