//! The merged store the APIs read: deltas in, windows and samples out.

use std::sync::{Arc, Mutex, MutexGuard, RwLock};

use super::delta::FeatureDelta;
use super::{wall_clock, Clock, Delta, Recorder, Sample, WindowStats, MAX_WINDOW_MS};
use crate::catalog::LayerId;
use crate::features::{FeatureId, Features, Resolved};
use crate::join::{Closed, Observer};
use crate::judge::RecordPath;

struct Inner {
    features: Arc<Features>,
    clock: Clock,
    /// By feature id.
    slots: RwLock<Vec<Arc<Mutex<FeatureDelta>>>>,
}

/// Live statistics of every feature, merged from deltas, over the last
/// hour. Cheap to clone (one `Arc`).
#[derive(Clone)]
pub struct LiveView {
    inner: Arc<Inner>,
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
        LiveView { inner: Arc::new(Inner { features, clock, slots: RwLock::new(Vec::new()) }) }
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

    /// A feature's figures over `window_ms` up to `now_ms`.
    pub fn window(&self, id: FeatureId, now_ms: i64, window_ms: i64) -> WindowStats {
        let layers = self.inner.features.catalog().layers.len();
        let slot = self.slot(id);
        let g = lock(&slot);
        g.window(layers, now_ms, window_ms)
    }

    /// A feature's most recent divergent requests, newest first, and how
    /// many are kept.
    pub fn samples(&self, id: FeatureId, limit: usize) -> (Vec<Sample>, usize) {
        let slot = self.slot(id);
        let g = lock(&slot);
        (g.samples.iter().take(limit).cloned().collect(), g.samples.len())
    }
}

/// A recorder that feeds a view in the same process: what `accord run`
/// wires while each instance serves what it judged itself. The owner sets
/// "now" per batch ([`LocalFeed::set_now_ms`]) and calls
/// [`LocalFeed::flush`] on its tick.
pub struct LocalFeed {
    recorder: Recorder,
    view: LiveView,
}

impl LocalFeed {
    pub fn new(view: &LiveView) -> Self {
        LocalFeed { recorder: view.recorder(), view: view.clone() }
    }

    pub fn set_now_ms(&mut self, now_ms: i64) {
        self.recorder.set_now_ms(now_ms);
    }

    /// Adds what was recorded since the last flush to the view.
    pub fn flush(&mut self) {
        let d = self.recorder.take();
        if !d.is_empty() {
            self.view.apply(d);
        }
    }
}

impl Observer for LocalFeed {
    fn record(&mut self, feature: FeatureId, layer: LayerId, path: RecordPath, late: bool) {
        self.recorder.record(feature, layer, path, late);
    }
    fn closed(&mut self, c: &Closed<'_>) {
        self.recorder.closed(c);
    }
}
