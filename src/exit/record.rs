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
    /// Every feature, with the live view's bound ([`ExitAgg::for_live`]).
    pub fn new(features: Arc<Features>) -> Self {
        let budget = ExitAgg::for_live(features.catalog().layers.len()).budget();
        ExitRecorder { features, only: None, budget, aggs: Vec::new() }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::Catalog;
    use crate::export::summary::Summary;
    use crate::pipeline::Pipeline;

    fn features() -> Arc<Features> {
        let path = std::path::Path::new("accord.toml");
        Arc::new(Features::new(Arc::new(Catalog::parse(path, include_str!("../../accord.toml")).unwrap())))
    }

    #[test]
    fn every_valid_record_is_evidence_late_ones_included() {
        let rec = |id: &str, layer: &str, ts: &str, flow: &str, extra: &str| {
            format!(
                r#"{{"request_id":"{id}","layer":"{layer}","feature":"checkout_v2","ts":"2026-11-20T10:{ts}Z","selected_flow":"{flow}"{extra}}}"#
            )
        };
        let text = [
            rec("a", "frontend", "00:00.000", "v2", r#","flags_revision":"r1","service":"web","build":"1""#),
            rec("a", "worker", "00:00.500", "v1", r#","service":"fw","build":"7""#),
            // Moves the watermark far ahead: request a closes.
            rec("b", "frontend", "05:00.000", "v2", ""),
            // Late: its join closed. Still evidence, on the old path.
            rec("a", "analytics", "00:01.000", "v1", r#","flags_revision":"r0""#),
            "not json".to_string(),
            rec("c", "frontend", "05:00.000", "v2", r#","feature":"nope""#),
        ]
        .join("\n");
        let f = features();
        let mut p = Pipeline::new(f.clone(), 0);
        let mut obs = (ExitRecorder::new(f.clone()), (RequestTally::default(), Summary::new(f.clone())));
        crate::replay::replay_stream(text.as_bytes(), &mut p, &mut obs, "t").unwrap();
        let summary = obs.1 .1.report();
        assert_eq!(summary.late, 1);
        let id = FeatureId::new(0);
        let agg = obs.0.get(id).unwrap();
        let records: u64 = agg.layers().values().map(|l| l.records()).sum();
        assert_eq!(records, summary.records);
        assert_eq!(agg.layers()["analytics"].paths, [0, 1, 0]);
        let takers: Vec<_> = agg.layers()["analytics"].takers().collect();
        assert_eq!(takers, [("unknown", "unknown", crate::exit::Seen { records: 1, last_ms: 1_795_168_801_000 })]);
        assert_eq!(agg.revisions().iter().map(|r| r.name.as_str()).collect::<Vec<_>>(), ["r0", "r1"]);
        assert_eq!(obs.1 .0.get(id), RequestCounts { requests: 2, divergent: 1, incomplete: 1, by_kind: [1, 0, 0, 0] });
        // `take` hands everything over once.
        assert_eq!(obs.0.take().len(), 1);
        assert!(obs.0.get(id).is_none());
    }

    #[test]
    fn an_archive_recorder_keeps_one_feature() {
        let f = features();
        let mut r = ExitRecorder::for_archive(f.clone(), FeatureId::new(1));
        let mut p = Pipeline::new(f, 0);
        let text = concat!(
            r#"{"request_id":"a","layer":"api","feature":"checkout_v2","ts":1,"selected_flow":"v2"}"#,
            "\n",
            r#"{"request_id":"a","layer":"api","feature":"search.ranking","ts":1,"selected_flow":"ltr"}"#,
        );
        crate::replay::replay_stream(text.as_bytes(), &mut p, &mut r, "t").unwrap();
        let all = r.take();
        assert_eq!(all.len(), 1);
        assert_eq!(all[0].0, FeatureId::new(1));
        assert_eq!(all[0].1.budget(), crate::exit::ARCHIVE_SECONDS);
    }
}
