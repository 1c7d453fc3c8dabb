//! The observers that collect the review's inputs: [`ExitRecorder`] (the
//! evidence of every valid record, per feature) and [`RequestTally`] (the
//! closed requests per feature).

use std::sync::Arc;

use crate::features::{FeatureId, Features};
use crate::join::{Closed, Evidence, Observer};
use crate::judge::{DivergenceKind, Verdict};

use super::agg::ExitAgg;

/// Closed requests of one feature over a window, as the review needs them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RequestCounts {
    /// Closed joins.
    pub requests: u64,
    /// Verdict `diverge`.
    pub divergent: u64,
    /// Verdict `incomplete`.
    pub incomplete: u64,
    /// Requests with at least one divergence of each kind, indexed by
    /// [`DivergenceKind`].
    pub by_kind: [u64; 4],
}

impl RequestCounts {
    /// Counts one closed join.
    pub fn add_closed(&mut self, c: &Closed<'_>) {
        self.requests += 1;
        match c.judgement.verdict {
            Verdict::Diverge => self.divergent += 1,
            Verdict::Incomplete => self.incomplete += 1,
            Verdict::Agree | Verdict::Degraded => {}
        }
        for k in DivergenceKind::ALL {
            if c.divergences.iter().any(|d| d.kind == k) {
                self.by_kind[k as usize] += 1;
            }
        }
    }

    /// The same figures from the live view's window.
    pub fn from_window(w: &crate::live::WindowStats) -> Self {
        RequestCounts {
            requests: w.total(),
            divergent: w.verdict(Verdict::Diverge),
            incomplete: w.verdict(Verdict::Incomplete),
            by_kind: w.kinds,
        }
    }
}

/// Closed requests per feature (an observer).
#[derive(Debug, Clone, Default)]
pub struct RequestTally {
    per_feature: Vec<RequestCounts>,
}

impl RequestTally {
    pub fn get(&self, feature: FeatureId) -> RequestCounts {
        self.per_feature.get(feature.index()).copied().unwrap_or_default()
    }
}

impl Observer for RequestTally {
    fn closed(&mut self, c: &Closed<'_>) {
        let i = c.feature.index();
        if self.per_feature.len() <= i {
            self.per_feature.resize(i + 1, RequestCounts::default());
        }
        self.per_feature[i].add_closed(c);
    }
}

/// Fills an [`ExitAgg`] per feature from [`Observer::evidence`], with no
/// lock (one per judging task, like the live-statistics recorder) and no
/// allocation per record once a feature's layers, takers, revisions and
/// seconds are known.
pub struct ExitRecorder {
    features: Arc<Features>,
    /// Only this feature's evidence, when set.
    only: Option<FeatureId>,
    budget: usize,
    aggs: Vec<Option<ExitAgg>>,
}

impl ExitRecorder {
    /// Every feature, with the live view's bound ([`ExitAgg::new`]).
    pub fn new(features: Arc<Features>) -> Self {
        ExitRecorder { features, only: None, budget: ExitAgg::new().budget(), aggs: Vec::new() }
    }

    /// One feature, with the archive's bound ([`ExitAgg::for_archive`]).
    pub fn for_archive(features: Arc<Features>, feature: FeatureId) -> Self {
        ExitRecorder { features, only: Some(feature), budget: ExitAgg::for_archive().budget(), aggs: Vec::new() }
    }

    /// The evidence of `feature` so far.
    pub fn get(&self, feature: FeatureId) -> Option<&ExitAgg> {
        self.aggs.get(feature.index())?.as_ref()
    }

    /// Hands over what was collected, per feature, and starts afresh.
    pub fn take(&mut self) -> Vec<(FeatureId, ExitAgg)> {
        std::mem::take(&mut self.aggs)
            .into_iter()
            .enumerate()
            .filter_map(|(i, a)| Some((FeatureId::new(u16::try_from(i).ok()?), a?)))
            .collect()
    }
}

impl Observer for ExitRecorder {
    fn evidence(&mut self, e: &Evidence<'_>) {
        if self.only.is_some_and(|f| f != e.feature) {
            return;
        }
        let i = e.feature.index();
        if self.aggs.len() <= i {
            self.aggs.resize_with(i + 1, || None);
        }
        let budget = self.budget;
        let agg = self.aggs[i].get_or_insert_with(|| ExitAgg::with_budget(budget));
        let layers = &self.features.catalog().layers;
        if let Some(name) = layers.get(e.layer.index()) {
            agg.add(name, e);
        }
    }
}
