//! The flag exit review over the live view, and what the features API and
//! the status page show of it: exit readiness (the review's status, one
//! rule for every answer) and revision convergence per layer.

use serde::Serialize;

use super::url_escape;
use crate::exit::{review, ExitReview, ReviewParams, ReviewWindow, Status};
use crate::features::FeatureId;
use crate::live::{Freshness, LiveView};
use crate::text::{human_window, num, pct1};

/// Blockers the features API repeats from the review (the review has all).
pub(crate) const SHOWN_BLOCKERS: usize = 5;

/// The exit review answered live: the review of the view's evidence and
/// closed requests over the window, with the view's freshness.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct LiveExitReview {
    #[serde(flatten)]
    pub review: ExitReview,
    /// How complete and fresh the consumer group's view is (`accord run`).
    pub view: Option<Freshness>,
}

/// The exit review of a feature over `window_ms` up to `now_ms`.
///
/// A view that misses some partition's share (or holds a stale one) covers
/// part of the traffic: the review then cannot call the flag unused, so
/// `ready` becomes `insufficient_data` with the reason as its blocker;
/// otherwise the reason leads the notes.
pub(crate) fn live_review(
    live: &LiveView,
    id: FeatureId,
    now_ms: i64,
    window_ms: i64,
    min_samples: u64,
) -> LiveExitReview {
    let features = live.features();
    let ev = live.exit_evidence(id, now_ms, window_ms);
    let spec = features.spec(id);
    let params = ReviewParams { window: ReviewWindow::Last { window_ms }, now_ms, min_samples };
    let mut r = review(&ev.agg, &ev.requests, &spec, &features.catalog().layers, &params);
    let view = live.freshness(now_ms);
    if let Some(problem) = view.as_ref().and_then(Freshness::problem) {
        if r.status == Status::Ready {
            r.status = Status::InsufficientData;
            r.blockers.push(problem);
        } else {
            r.notes.insert(0, problem);
        }
    }
    LiveExitReview { review: r, view }
}

/// The review's answer in the features API and on the status page.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct ExitView {
    /// The exit review's status over the window: `ready`, `not_ready` or
    /// `insufficient_data`.
    pub status: &'static str,
    /// Closed requests in the window, and how many `ready` needs.
    pub requests: u64,
    pub min_samples: u64,
    /// Layers with old-path records in the window, in pipeline order.
    pub layers_on_old_path: Vec<String>,
    /// The review's first blockers, most actionable first.
    pub blockers: Vec<String>,
    /// Blockers beyond those listed.
    pub more_blockers: usize,
    /// One line for people.
    pub summary: String,
    /// The whole review over the same window.
    pub review: String,
}

/// One layer's convergence on the current flag revision.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct LayerConvergence {
    pub layer: String,
    /// Of its records since the current revision was first seen that carry
    /// a revision, the share that carries another one.
    pub stale_share: Option<f64>,
    /// Present when the evidence cannot tell the stale share exactly.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stale_share_range: Option<(f64, f64)>,
    /// From the current revision's first sight to the layer's first record
    /// carrying it; `null` while it has none.
    pub adoption_lag_seconds: Option<f64>,
}

/// Which flag snapshot the layers evaluate (`flags_revision`).
#[derive(Debug, Clone, Serialize)]
pub(crate) struct ConvergenceView {
    /// The revision first seen last in the window.
    pub current_revision: Option<String>,
    /// Event time of its first record.
    pub first_seen: Option<String>,
    /// Revisions seen in the window.
    pub revisions: usize,
    pub layers: Vec<LayerConvergence>,
}

/// Readiness and convergence from a review over `window_ms`.
pub(crate) fn exit_parts(name: &str, r: &ExitReview, window_ms: i64) -> (ExitView, ConvergenceView) {
    let win = human_window(window_ms);
    let on_old: Vec<_> = r.layers.iter().filter(|l| l.old_ratio.is_some_and(|x| x > 0.0)).collect();
    let records: u64 = r.layers.iter().map(|l| l.records).sum();
    let summary = match r.status {
        Status::Ready => format!(
            "no layer took the old path for requests of {name} in the last {win} ({} records), and none of its {} \
             requests diverged or was incomplete: the flag can be deleted",
            num(records),
            num(r.requests)
        ),
        Status::NotReady if !on_old.is_empty() => {
            let list: Vec<String> = on_old
                .iter()
                .map(|l| format!("{} ({} of its records)", l.layer, pct1(l.old_ratio.unwrap_or(0.0))))
                .collect();
            format!("still taking the old path in the last {win}: {}", list.join(", "))
        }
        Status::NotReady | Status::InsufficientData => match r.blockers.first() {
            Some(b) => format!("in the last {win}: {b}"),
            None => format!("in the last {win}: {}", r.status.as_str()),
        },
    };
    let key = url_escape(name);
    let exit = ExitView {
        status: r.status.as_str(),
        requests: r.requests,
        min_samples: r.min_samples,
        layers_on_old_path: on_old.iter().map(|l| l.layer.clone()).collect(),
        blockers: r.blockers.iter().take(SHOWN_BLOCKERS).cloned().collect(),
        more_blockers: r.blockers.len().saturating_sub(SHOWN_BLOCKERS),
        summary,
        review: format!("/api/v1/features/{key}/exit-review?window={}", window_param(window_ms)),
    };
    let first_seen = r
        .current_revision
        .as_ref()
        .and_then(|c| r.revisions.iter().find(|v| &v.revision == c))
        .map(|v| v.first_seen.clone());
    let convergence = ConvergenceView {
        current_revision: r.current_revision.clone(),
        first_seen,
        revisions: r.revisions.len(),
        layers: r
            .layers
            .iter()
            .map(|l| LayerConvergence {
                layer: l.layer.clone(),
                stale_share: l.stale_share,
                stale_share_range: l.stale_share_range,
                adoption_lag_seconds: l.adoption_lag_seconds,
            })
            .collect(),
    };
    (exit, convergence)
}

/// A window as a query value (`5m`, `1h`, `90s`).
pub(crate) fn window_param(window_ms: i64) -> String {
    let s = window_ms.max(0) / 1000;
    match s {
        s if s % 3600 == 0 && s > 0 => format!("{}h", s / 3600),
        s if s % 60 == 0 && s > 0 => format!("{}m", s / 60),
        s => format!("{s}s"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_as_query_values() {
        assert_eq!(window_param(300_000), "5m");
        assert_eq!(window_param(3_600_000), "1h");
        assert_eq!(window_param(90_000), "90s");
        assert_eq!(window_param(1_000), "1s");
    }
}
