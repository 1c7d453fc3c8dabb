//! The read models of the features and divergences APIs, built from the
//! live view: what the JSON answers carry and the status page shows.

mod divergences;
mod exit;

use std::collections::BTreeMap;

use serde::Serialize;

pub(crate) use divergences::{sample_views, DivergencesView, RecordView, SampleView};
pub(crate) use exit::{exit_parts, live_review, ConvergenceView, ExitView};

use crate::catalog::LayerId;
use crate::features::{FeatureId, Features};
use crate::gate::{divergence_counts, evaluate, with_freshness, GateParams, GateView};
use crate::judge::{RequestPath, Verdict};
use crate::live::LiveView;

/// Names layers for explanations.
pub(crate) fn layer_namer(features: &Features) -> impl Fn(LayerId) -> String + '_ {
    move |l| features.catalog().layer_name(l).to_string()
}

#[derive(Debug, Clone, Serialize)]
pub(crate) struct PairView {
    pub kind: &'static str,
    pub upstream: String,
    pub downstream: String,
    pub requests: u64,
    pub exposed_requests: u64,
    pub explanation: String,
}

#[derive(Debug, Clone, Serialize)]
pub(crate) struct CauseView {
    pub explanation: String,
    /// Divergent requests with this leading explanation (each counts once).
    pub requests: u64,
    pub exposed_requests: u64,
}

#[derive(Debug, Clone, Serialize)]
pub(crate) struct LayerView {
    pub layer: String,
    /// `expected`, `optional` or `unlisted` (judged if it reports).
    pub role: &'static str,
    /// Non-late records in the window.
    pub records: u64,
    pub new: u64,
    pub old: u64,
    pub unknown: u64,
    pub late: u64,
    /// Closed requests this layer never reported to.
    pub missing: u64,
    /// `new / (new + old)`.
    pub new_path_ratio: Option<f64>,
    /// `old / records`.
    pub old_path_share: Option<f64>,
    pub lag_p50_seconds: Option<f64>,
    pub lag_p99_seconds: Option<f64>,
}

#[derive(Debug, Clone, Serialize)]
pub(crate) struct Links {
    pub gate: String,
    pub webhook: String,
    pub divergences: String,
    /// The flag exit review over the same window.
    pub exit_review: String,
}

#[derive(Debug, Clone, Serialize)]
pub(crate) struct FeatureView {
    pub feature: String,
    pub owner: String,
    pub class: &'static str,
    pub in_catalog: bool,
    /// Planned removal date (`YYYY-MM-DD`).
    pub expires: Option<String>,
    pub expires_timestamp_seconds: Option<i64>,
    /// Whole days from today (UTC) to the removal date; negative once past.
    pub days_to_expiry: Option<i64>,
    pub expired: bool,
    pub window_seconds: u64,
    pub requests: u64,
    pub exposed_requests: u64,
    pub exposed_agreement: Option<f64>,
    pub incomplete_ratio: Option<f64>,
    pub verdicts: BTreeMap<&'static str, u64>,
    /// `path -> verdict -> requests`.
    pub requests_by_path: BTreeMap<&'static str, BTreeMap<&'static str, u64>>,
    pub divergences: BTreeMap<&'static str, u64>,
    /// Divergent requests by leading explanation, most frequent first.
    pub divergence_causes: Vec<CauseView>,
    /// Per layer pair and kind (like `accord_divergences_total`).
    pub divergence_pairs: Vec<PairView>,
    pub layers: Vec<LayerView>,
    /// The flag exit review's status over the window, with its blockers
    /// (the whole review is at `links.exit_review`).
    pub exit_readiness: ExitView,
    /// Which flag revision is current and how far each layer adopted it.
    pub revision_convergence: ConvergenceView,
    /// The gate with default thresholds over this window.
    pub gate: GateView,
    pub links: Links,
}

/// A feature key in a URL path. Catalog keys are `[A-Za-z0-9_.:-]`;
/// tracked names may hold anything.
pub(crate) fn url_escape(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "_.-".contains(c) {
                c.to_string()
            } else {
                let mut b = [0; 4];
                c.encode_utf8(&mut b).bytes().map(|x| format!("%{x:02X}")).collect()
            }
        })
        .collect()
}

/// Everything the features API and the status page show of one feature.
pub(crate) fn feature_view(live: &LiveView, id: FeatureId, now_ms: i64, window_ms: i64) -> FeatureView {
    let features = live.features();
    let cat = features.catalog();
    let spec = features.spec(id);
    let name = spec.key.clone();
    let w = live.window(id, now_ms, window_ms);
    let layer = layer_namer(features);
    let gate = evaluate(&name, &spec, &w, &GateParams { window_ms, ..GateParams::default() }, &layer, now_ms);
    let gate = with_freshness(gate, live.freshness(now_ms));
    let verdicts = Verdict::ALL.iter().map(|v| (v.as_str(), w.verdict(*v))).collect();
    let requests_by_path = RequestPath::ALL
        .iter()
        .map(|p| {
            (p.as_str(), Verdict::ALL.iter().map(|v| (v.as_str(), w.requests[*p as usize][*v as usize])).collect())
        })
        .collect();
    let divergence_pairs = w
        .pairs
        .iter()
        .map(|c| PairView {
            kind: c.pair.kind.as_str(),
            upstream: layer(c.pair.upstream),
            downstream: layer(c.pair.downstream),
            requests: c.requests,
            exposed_requests: c.exposed,
            explanation: c.pair.explain(&layer, &spec),
        })
        .collect();
    let divergence_causes = w
        .causes
        .iter()
        .map(|c| CauseView {
            explanation: c.cause.explain(&layer, &spec),
            requests: c.requests,
            exposed_requests: c.exposed,
        })
        .collect();
    let layers: Vec<LayerView> = cat
        .all_layers()
        .iter()
        .zip(&w.layers)
        .map(|(id, l)| LayerView {
            layer: layer(id),
            role: if spec.expect.contains(id) {
                "expected"
            } else if spec.optional.contains(id) {
                "optional"
            } else {
                "unlisted"
            },
            records: l.records(),
            new: l.new,
            old: l.old,
            unknown: l.unknown,
            late: l.late,
            missing: l.missing,
            new_path_ratio: l.new_path_ratio(),
            old_path_share: l.old_path_share(),
            lag_p50_seconds: l.lag_p50_ms.map(|v| v as f64 / 1000.0),
            lag_p99_seconds: l.lag_p99_ms.map(|v| v as f64 / 1000.0),
        })
        .collect();
    let review = live_review(live, id, now_ms, window_ms, crate::exit::DEFAULT_MIN_SAMPLES).review;
    let (exit_readiness, revision_convergence) = exit_parts(&name, &review, window_ms);
    let today = now_ms.div_euclid(86_400_000) * 86_400;
    let days = spec.expires.map(|e| (e - today).div_euclid(86_400));
    let key = url_escape(&name);
    FeatureView {
        owner: spec.owner.clone(),
        class: spec.class.as_str(),
        in_catalog: features.in_catalog(id),
        expires: spec.expires_text.clone(),
        expires_timestamp_seconds: spec.expires,
        days_to_expiry: days,
        expired: days.is_some_and(|d| d < 0),
        window_seconds: (window_ms / 1000) as u64,
        requests: w.total(),
        exposed_requests: w.exposed(),
        exposed_agreement: w.exposed_agreement(),
        incomplete_ratio: w.incomplete_ratio(),
        verdicts,
        requests_by_path,
        divergences: divergence_counts(&w),
        divergence_causes,
        divergence_pairs,
        layers,
        links: Links {
            gate: format!("/api/v1/gates/{key}"),
            webhook: format!("/api/v1/gates/{key}/webhook"),
            divergences: format!("/api/v1/features/{key}/divergences"),
            exit_review: exit_readiness.review.clone(),
        },
        exit_readiness,
        revision_convergence,
        gate,
        feature: name,
    }
}

/// Every feature known so far, in id order (catalog order first).
pub(crate) fn feature_views(live: &LiveView, now_ms: i64, window_ms: i64) -> Vec<(FeatureId, FeatureView)> {
    live.features().ids().map(|id| (id, feature_view(live, id, now_ms, window_ms))).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn feature_keys_are_escaped_in_links() {
        assert_eq!(url_escape("search.ranking"), "search.ranking");
        assert_eq!(url_escape("a b/c?é"), "a%20b%2Fc%3F%C3%A9");
    }
}
