//! The gate, features and divergences APIs (SPEC §6), over [`LiveStats`].
//!
//! - `GET /api/v1/gates/{feature}` — `proceed` / `hold` / `inconclusive`
//!   with the figures and reasons behind it; always 200 for a known
//!   feature. `…/webhook` (GET or POST) answers the same body with 200 for
//!   `proceed` and 412 otherwise, for Flagger.
//! - `GET /api/v1/features[/{feature}]` — catalog data, live figures,
//!   exit readiness and the default gate of each feature.
//! - `GET /api/v1/features/{feature}/divergences?limit=N` — the most
//!   recent divergent requests with every layer's record as received.
//!
//! Gate semantics (also in `docs/gate.md`), over the closed joins of the
//! feature whose close fell in the window:
//! - `exposed_requests`: joins on the `new` or `mixed` path, any verdict;
//! - `exposed_agreement`: `agree` / exposed joins whose verdict is not
//!   `incomplete` (SPEC §4); `null` when there is none;
//! - `incomplete_ratio`: `incomplete` joins / all closed joins (any path);
//!   `null` when none closed;
//! - `inconclusive` when `exposed_requests < min_samples` (or every
//!   exposed join was incomplete and incompleteness alone does not hold);
//!   else `hold` when `exposed_agreement < min_agreement` or
//!   `incomplete_ratio > max_incomplete`; else `proceed`. Equal to a
//!   threshold passes.
//!
//! Parameters are validated strictly: a malformed, out-of-range, repeated
//! or unknown parameter is a 400 with a JSON error (a typo must not
//! silently loosen a gate), never a 500.

use std::collections::BTreeMap;
use std::time::Duration;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Path as UrlPath, Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use serde::Serialize;

use crate::catalog::{FeatureSpec, LayerId};
use crate::decode::format_rfc3339_ms;
use crate::features::FeatureId;
use crate::judge::{DivergenceKind, RequestPath, Verdict};
use crate::live::{LiveStats, Pair, Sample, WindowStats, DEFAULT_WINDOW_MS, MAX_SAMPLES, MAX_WINDOW_MS};
use crate::server::AppState;

/// Default number of divergent requests the divergences API returns.
pub const DEFAULT_LIMIT: usize = 20;

/// Gate thresholds and window.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct GateParams {
    #[serde(skip)]
    pub window_ms: i64,
    pub min_samples: u64,
    pub min_agreement: f64,
    pub max_incomplete: f64,
}

impl Default for GateParams {
    fn default() -> Self {
        GateParams { window_ms: DEFAULT_WINDOW_MS, min_samples: 200, min_agreement: 0.999, max_incomplete: 0.01 }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Decision {
    Proceed,
    Hold,
    Inconclusive,
}

impl Decision {
    pub fn as_str(self) -> &'static str {
        match self {
            Decision::Proceed => "proceed",
            Decision::Hold => "hold",
            Decision::Inconclusive => "inconclusive",
        }
    }
}

/// The gate's answer (SPEC §6 fields first, then context).
#[derive(Debug, Clone, Serialize)]
pub struct GateView {
    pub feature: String,
    pub decision: Decision,
    pub exposed_agreement: Option<f64>,
    pub exposed_requests: u64,
    pub incomplete_ratio: Option<f64>,
    /// Requests (any path) with at least one divergence of each kind.
    pub divergences: BTreeMap<&'static str, u64>,
    pub reasons: Vec<String>,
    pub window_seconds: u64,
    /// All closed requests of the feature in the window.
    pub requests: u64,
    /// Exposed requests that count towards exposed agreement (not incomplete).
    pub exposed_judged: u64,
    pub thresholds: GateParams,
    pub evaluated_at: String,
}

/// Formats a ratio as a percentage with up to `decimals` decimals,
/// trailing zeros trimmed ("97.2%", "100%").
fn pct_with(x: f64, decimals: usize) -> String {
    let s = format!("{:.*}", decimals, x * 100.0);
    let s = if s.contains('.') { s.trim_end_matches('0').trim_end_matches('.').to_string() } else { s };
    format!("{s}%")
}

/// A ratio as a short percentage.
pub fn pct(x: f64) -> String {
    pct_with(x, 2)
}

/// A ratio as a percentage with at most one decimal.
pub fn pct1(x: f64) -> String {
    pct_with(x, 1)
}

/// A value and a threshold with just enough decimals to tell them apart.
fn pct_pair(x: f64, t: f64) -> (String, String) {
    for d in 1..=4 {
        let (a, b) = (pct_with(x, d), pct_with(t, d));
        if a != b || x == t || d == 4 {
            return (a, b);
        }
    }
    unreachable!()
}

/// `5m`, `1h`, `90s` → `1m 30s`.
pub fn human_window(ms: i64) -> String {
    humantime::format_duration(Duration::from_millis(ms.max(0) as u64)).to_string()
}

fn plural(n: u64, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

fn layer_namer(live: &LiveStats) -> impl Fn(LayerId) -> String + '_ {
    move |l| live.features().catalog().layer_name(l).to_string()
}

fn divergence_counts(w: &WindowStats) -> BTreeMap<&'static str, u64> {
    DivergenceKind::ALL.iter().map(|k| (k.as_str(), w.kinds[*k as usize])).collect()
}

/// Decides the gate of one feature over a window.
pub fn evaluate(
    name: &str,
    spec: &FeatureSpec,
    w: &WindowStats,
    p: &GateParams,
    layer: &dyn Fn(LayerId) -> String,
    now_ms: i64,
) -> GateView {
    let win = human_window(p.window_ms);
    let total = w.total();
    let exposed = w.exposed();
    let judged = w.exposed_judged();
    let agreement = w.exposed_agreement();
    let incomplete = w.incomplete_ratio();
    // Divergent exposed requests by leading explanation: the counts add up.
    let mut exposed_pairs: Vec<(u64, String)> =
        w.causes.iter().filter(|c| c.exposed > 0).map(|c| (c.exposed, c.cause.explain(layer, spec))).collect();
    exposed_pairs.sort_by_key(|p| std::cmp::Reverse(p.0));
    let degraded = w.exposed_verdicts(Verdict::Degraded);
    let where_ = |n: u64, what: &str| format!("{} where {what}", plural(n, "request", "requests"));

    let mut reasons = Vec::new();
    let agreement_low = agreement.is_some_and(|a| a < p.min_agreement);
    let incomplete_high = incomplete.is_some_and(|r| r > p.max_incomplete);
    let decision = if exposed < p.min_samples {
        if total == 0 {
            reasons.push(format!(
                "no request of {name} closed in the last {win}: no traffic, or no layer logs decision records for it"
            ));
        } else {
            reasons.push(format!(
                "only {} (new or mixed path) closed in the last {win}; the gate needs at least {} (min_samples)",
                plural(exposed, "exposed request", "exposed requests"),
                p.min_samples
            ));
            let old = w.path(RequestPath::Old) + w.path(RequestPath::Unknown);
            if old > 0 {
                reasons.push(format!(
                    "{} took no new path; exposed agreement ignores them",
                    plural(old, "request", "requests")
                ));
            }
        }
        if let (true, Some(a)) = (agreement_low, agreement) {
            let (a, t) = pct_pair(a, p.min_agreement);
            let mut r = format!("early signal: exposed agreement so far {a} < {t}");
            if let Some((n, what)) = exposed_pairs.first() {
                r.push_str(&format!(": {}", where_(*n, what)));
            }
            reasons.push(r);
        }
        Decision::Inconclusive
    } else {
        if let (true, Some(a)) = (agreement_low, agreement) {
            let (a_s, t_s) = pct_pair(a, p.min_agreement);
            let head = format!("exposed agreement {a_s} < {t_s} over {win}");
            match exposed_pairs.first() {
                Some((n, what)) => reasons.push(format!("{head}: {}", where_(*n, what))),
                None if degraded > 0 => reasons.push(format!(
                    "{head}: {} degraded (a layer saw the flag on and fell back to the old path)",
                    plural(degraded, "exposed request", "exposed requests")
                )),
                None => reasons.push(head),
            }
            for (n, what) in exposed_pairs.iter().skip(1).take(3) {
                reasons.push(format!("also {}", where_(*n, what)));
            }
            if degraded > 0 && !exposed_pairs.is_empty() {
                reasons.push(format!(
                    "also {} degraded (a layer saw the flag on and fell back to the old path)",
                    plural(degraded, "exposed request", "exposed requests")
                ));
            }
            reasons.push(format!("{} of {judged} judged exposed requests did not agree", judged - w.exposed_agree()));
        }
        if let (true, Some(r)) = (incomplete_high, incomplete) {
            let (r_s, m_s) = pct_pair(r, p.max_incomplete);
            let mut missing: Vec<(u64, String)> = w
                .layers
                .iter()
                .enumerate()
                .filter(|(_, l)| l.missing > 0)
                .map(|(i, l)| (l.missing, layer(LayerId::new(i as u8))))
                .collect();
            missing.sort_by_key(|m| std::cmp::Reverse(m.0));
            let mut r = format!(
                "{r_s} of requests incomplete > {m_s} allowed over {win} ({} of {total})",
                w.verdict(Verdict::Incomplete)
            );
            if !missing.is_empty() {
                let list: Vec<String> = missing
                    .iter()
                    .map(|(n, l)| format!("{l} never reported for {}", plural(*n, "request", "requests")))
                    .collect();
                r.push_str(&format!(": {}", list.join(", ")));
            }
            reasons.push(r);
        }
        if !reasons.is_empty() {
            Decision::Hold
        } else if let Some(a) = agreement {
            let (a_s, t_s) = pct_pair(a, p.min_agreement);
            reasons.push(format!("exposed agreement {a_s} ≥ {t_s} over {win} ({judged} judged exposed requests)"));
            let r = incomplete.unwrap_or(0.0);
            let (r_s, m_s) = pct_pair(r, p.max_incomplete);
            reasons.push(format!("incomplete requests {r_s} ≤ {m_s}"));
            if let Some((n, what)) = exposed_pairs.first() {
                reasons.push(format!("within tolerance: {}", where_(*n, what)));
            }
            Decision::Proceed
        } else {
            reasons.push(format!(
                "all {exposed} exposed requests in the last {win} were incomplete: no agreement can be measured"
            ));
            Decision::Inconclusive
        }
    };
    GateView {
        feature: name.to_string(),
        decision,
        exposed_agreement: agreement,
        exposed_requests: exposed,
        incomplete_ratio: incomplete,
        divergences: divergence_counts(w),
        reasons,
        window_seconds: (p.window_ms / 1000) as u64,
        requests: total,
        exposed_judged: judged,
        thresholds: *p,
        evaluated_at: format_rfc3339_ms(now_ms),
    }
}

// ------------------------------------------------------------ features --

#[derive(Debug, Clone, Serialize)]
pub struct PairView {
    pub kind: &'static str,
    pub upstream: String,
    pub downstream: String,
    pub requests: u64,
    pub exposed_requests: u64,
    pub explanation: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct CauseView {
    pub explanation: String,
    /// Divergent requests with this leading explanation (each counts once).
    pub requests: u64,
    pub exposed_requests: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct LayerView {
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
pub struct ExitView {
    /// `ready` (no layer took the old path), `not_ready`, or `no_traffic`.
    pub status: &'static str,
    pub layers_on_old_path: Vec<String>,
    pub summary: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct Links {
    pub gate: String,
    pub webhook: String,
    pub divergences: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct FeatureView {
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
    pub exit_readiness: ExitView,
    /// The gate with default thresholds over this window.
    pub gate: GateView,
    pub links: Links,
}

fn url_escape(s: &str) -> String {
    // Feature keys are `[A-Za-z0-9_.:-]` (SPEC §2); tracked names too.
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
pub fn feature_view(live: &LiveStats, id: FeatureId, now_ms: i64, window_ms: i64) -> FeatureView {
    let features = live.features();
    let cat = features.catalog();
    let spec = features.spec(id);
    let name = spec.key.clone();
    let w = live.window(id, now_ms, window_ms);
    let layer = layer_namer(live);
    let win = human_window(window_ms);
    let gate = evaluate(&name, &spec, &w, &GateParams { window_ms, ..GateParams::default() }, &layer, now_ms);
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
    let layers: Vec<LayerView> = w
        .layers
        .iter()
        .enumerate()
        .map(|(i, l)| {
            let id = LayerId::new(i as u8);
            LayerView {
                layer: cat.layers[i].clone(),
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
            }
        })
        .collect();
    let on_old: Vec<&LayerView> = layers.iter().filter(|l| l.old > 0).collect();
    let records: u64 = layers.iter().map(|l| l.records).sum();
    let exit_readiness = if records == 0 {
        ExitView {
            status: "no_traffic",
            layers_on_old_path: vec![],
            summary: format!(
                "no decision records in the last {win}: cannot tell whether any layer still needs the old path"
            ),
        }
    } else if on_old.is_empty() {
        ExitView {
            status: "ready",
            layers_on_old_path: vec![],
            summary: format!("no layer took the old path for requests of {name} in the last {win} ({records} records)"),
        }
    } else {
        let list: Vec<String> = on_old
            .iter()
            .map(|l| format!("{} ({} of its records)", l.layer, pct1(l.old_path_share.unwrap_or(0.0))))
            .collect();
        ExitView {
            status: "not_ready",
            layers_on_old_path: on_old.iter().map(|l| l.layer.clone()).collect(),
            summary: format!("still taking the old path in the last {win}: {}", list.join(", ")),
        }
    };
    let today = now_ms.div_euclid(86_400_000) * 86_400;
    let days = spec.expires.map(|e| (e - today).div_euclid(86_400));
    let esc = url_escape(&name);
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
        exit_readiness,
        gate,
        links: Links {
            gate: format!("/api/v1/gates/{esc}"),
            webhook: format!("/api/v1/gates/{esc}/webhook"),
            divergences: format!("/api/v1/features/{esc}/divergences"),
        },
        feature: name,
    }
}

/// Every feature known so far, in id order (catalog order first).
pub fn feature_views(live: &LiveStats, now_ms: i64, window_ms: i64) -> Vec<FeatureView> {
    live.features().ids().map(|id| feature_view(live, id, now_ms, window_ms)).collect()
}

// --------------------------------------------------------- divergences --

#[derive(Debug, Clone, Serialize)]
pub struct KindView {
    pub kind: &'static str,
    pub upstream: String,
    pub downstream: String,
    pub explanation: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct RecordView {
    pub layer: String,
    /// Offset within its topic partition.
    pub position: u64,
    /// Event time accord used (RFC 3339).
    pub ts: String,
    pub path: &'static str,
    /// The record as received; `null` when it is no longer available.
    pub record: Option<serde_json::Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unavailable: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct SampleView {
    pub request_id: String,
    pub verdict: &'static str,
    pub path: &'static str,
    /// Join start (earliest event time).
    pub start: String,
    /// Wall-clock time accord closed the join.
    pub closed_at: String,
    /// `complete`, `window`, `evicted` or `end_of_stream`.
    pub close_cause: &'static str,
    /// The leading explanation of the divergence.
    pub explanation: String,
    pub kinds: Vec<KindView>,
    pub missing: Vec<String>,
    pub records: Vec<RecordView>,
}

pub fn sample_view(live: &LiveStats, spec: &FeatureSpec, s: &Sample) -> SampleView {
    let layer = layer_namer(live);
    let missing = s.missing.iter().map(&layer).collect();
    SampleView {
        request_id: s.request_id.clone(),
        verdict: s.verdict.as_str(),
        path: s.path.as_str(),
        start: format_rfc3339_ms(s.start_ms),
        closed_at: format_rfc3339_ms(s.closed_ms),
        explanation: s.cause.map(|c| c.explain(&layer, spec)).unwrap_or_default(),
        close_cause: match s.close_cause {
            crate::join::CloseCause::Complete => "complete",
            crate::join::CloseCause::Window => "window",
            crate::join::CloseCause::Evicted => "evicted",
            crate::join::CloseCause::EndOfStream => "end_of_stream",
        },
        kinds: s
            .pairs
            .iter()
            .map(|p: &Pair| KindView {
                kind: p.kind.as_str(),
                upstream: layer(p.upstream),
                downstream: layer(p.downstream),
                explanation: p.explain(&layer, spec),
            })
            .collect(),
        missing,
        records: s
            .records
            .iter()
            .map(|r| {
                let name = layer(r.layer);
                let (record, unavailable) = match &r.raw {
                    Some(b) => match serde_json::from_slice::<serde_json::Value>(b) {
                        Ok(v) => (Some(v), None),
                        Err(_) => (
                            Some(serde_json::Value::String(
                                String::from_utf8_lossy(b).into_owned(),
                            )),
                            None,
                        ),
                    },
                    None => (
                        None,
                        Some(format!(
                            "the {name} record at position {} is no longer in the sample buffer (--sample-buffer-bytes)",
                            r.pos.offset
                        )),
                    ),
                };
                RecordView {
                    layer: name,
                    position: r.pos.offset,
                    ts: format_rfc3339_ms(r.ts_ms),
                    path: r.path.as_str(),
                    record,
                    unavailable,
                }
            })
            .collect(),
    }
}

/// A feature's most recent divergent requests, newest first, and how many
/// are kept.
pub fn sample_views(live: &LiveStats, id: FeatureId, limit: usize) -> (Vec<SampleView>, usize) {
    let spec = live.features().spec(id);
    let (samples, kept) = live.samples(id, limit);
    (samples.iter().map(|s| sample_view(live, &spec, s)).collect(), kept)
}

#[derive(Debug, Clone, Serialize)]
pub struct DivergencesView {
    pub feature: String,
    pub limit: usize,
    /// Divergent requests kept for this feature (at most `max_kept`).
    pub kept: usize,
    pub max_kept: usize,
    pub divergent_requests: Vec<SampleView>,
}

// ---------------------------------------------------------------- HTTP --

/// A JSON error response.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub message: String,
    pub known_features: Option<Vec<String>>,
}

impl ApiError {
    pub fn bad_request(message: impl Into<String>) -> Self {
        ApiError { status: StatusCode::BAD_REQUEST, message: message.into(), known_features: None }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut body = serde_json::json!({
            "error": self.message,
            "status": self.status.as_u16(),
        });
        if let Some(k) = self.known_features {
            body["known_features"] = serde_json::json!(k);
        }
        json_response(self.status, &body)
    }
}

/// Pretty JSON (people call these with curl), never cached.
pub fn json_response<T: Serialize>(status: StatusCode, body: &T) -> Response {
    match serde_json::to_string_pretty(body) {
        Ok(mut s) => {
            s.push('\n');
            (status, [(header::CONTENT_TYPE, "application/json"), (header::CACHE_CONTROL, "no-store")], s)
                .into_response()
        }
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, format!("cannot encode response: {e}")).into_response(),
    }
}

type RawQuery = Result<Query<Vec<(String, String)>>, QueryRejection>;

/// The query parameters, each at most once and all in `allowed`.
fn params(q: RawQuery, allowed: &[&str]) -> Result<BTreeMap<String, String>, ApiError> {
    let Query(pairs) = q.map_err(|e| ApiError::bad_request(format!("malformed query string: {e}")))?;
    let mut out = BTreeMap::new();
    for (k, v) in pairs {
        if !allowed.contains(&k.as_str()) {
            return Err(ApiError::bad_request(format!("unknown parameter {k:?} (known: {})", allowed.join(", "))));
        }
        if out.insert(k.clone(), v).is_some() {
            return Err(ApiError::bad_request(format!("parameter {k:?} given more than once")));
        }
    }
    Ok(out)
}

/// A window: humantime, whole seconds, from 1s to 1h.
pub fn parse_window(s: &str) -> Result<i64, String> {
    let d = humantime::parse_duration(s.trim())
        .map_err(|e| format!("window {s:?} is not a duration ({e}); use e.g. 30s, 5m or 1h"))?;
    if d.is_zero() {
        return Err("window must be at least 1s".into());
    }
    if d > Duration::from_millis(MAX_WINDOW_MS as u64) {
        return Err(format!("window {s:?} is longer than 1h, the longest window live statistics keep"));
    }
    if d.subsec_nanos() != 0 {
        return Err(format!("window {s:?} must be a whole number of seconds"));
    }
    Ok(d.as_millis() as i64)
}

fn parse_ratio(name: &str, s: &str) -> Result<f64, String> {
    match s.trim().parse::<f64>() {
        Ok(x) if (0.0..=1.0).contains(&x) => Ok(x),
        Ok(_) => Err(format!("{name} must be between 0 and 1 (a fraction, e.g. 0.999), got {s:?}")),
        Err(_) => Err(format!("{name} must be a number between 0 and 1, got {s:?}")),
    }
}

/// Parses the gate's query parameters (missing ones take defaults).
pub fn parse_gate_params(q: &BTreeMap<String, String>) -> Result<GateParams, String> {
    let mut p = GateParams::default();
    if let Some(w) = q.get("window") {
        p.window_ms = parse_window(w)?;
    }
    if let Some(n) = q.get("min_samples") {
        p.min_samples =
            n.trim().parse::<u64>().map_err(|_| format!("min_samples must be a non-negative integer, got {n:?}"))?;
    }
    if let Some(a) = q.get("min_agreement") {
        p.min_agreement = parse_ratio("min_agreement", a)?;
    }
    if let Some(m) = q.get("max_incomplete") {
        p.max_incomplete = parse_ratio("max_incomplete", m)?;
    }
    Ok(p)
}

fn find_feature(live: &LiveStats, name: &str) -> Result<FeatureId, ApiError> {
    live.feature_id(name).ok_or_else(|| {
        let f = live.features();
        ApiError {
            status: StatusCode::NOT_FOUND,
            message: format!("unknown feature {name:?}"),
            known_features: Some(f.ids().map(|id| f.name(id)).collect()),
        }
    })
}

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/v1/features", get(features))
        .route("/api/v1/features/{feature}", get(feature))
        .route("/api/v1/features/{feature}/divergences", get(divergences))
        .route("/api/v1/gates/{feature}", get(gate))
        .route("/api/v1/gates/{feature}/webhook", get(webhook).post(webhook))
}

fn window_param(q: &BTreeMap<String, String>) -> Result<i64, ApiError> {
    q.get("window").map_or(Ok(DEFAULT_WINDOW_MS), |w| parse_window(w)).map_err(ApiError::bad_request)
}

async fn features(State(s): State<AppState>, q: RawQuery) -> Result<Response, ApiError> {
    let q = params(q, &["window"])?;
    let window_ms = window_param(&q)?;
    let now = s.live.now_ms();
    let body = serde_json::json!({
        "window_seconds": window_ms / 1000,
        "generated_at": format_rfc3339_ms(now),
        "layers": s.live.features().catalog().layers,
        "features": feature_views(&s.live, now, window_ms),
    });
    Ok(json_response(StatusCode::OK, &body))
}

async fn feature(State(s): State<AppState>, UrlPath(name): UrlPath<String>, q: RawQuery) -> Result<Response, ApiError> {
    let id = find_feature(&s.live, &name)?;
    let q = params(q, &["window"])?;
    let window_ms = window_param(&q)?;
    let now = s.live.now_ms();
    Ok(json_response(StatusCode::OK, &feature_view(&s.live, id, now, window_ms)))
}

async fn divergences(
    State(s): State<AppState>,
    UrlPath(name): UrlPath<String>,
    q: RawQuery,
) -> Result<Response, ApiError> {
    let id = find_feature(&s.live, &name)?;
    let q = params(q, &["limit"])?;
    let limit = match q.get("limit") {
        None => DEFAULT_LIMIT,
        Some(l) => match l.trim().parse::<usize>() {
            Ok(n) if (1..=MAX_SAMPLES).contains(&n) => n,
            _ => {
                return Err(ApiError::bad_request(format!(
                    "limit must be an integer from 1 to {MAX_SAMPLES}, got {l:?}"
                )))
            }
        },
    };
    let (list, kept) = sample_views(&s.live, id, limit);
    Ok(json_response(
        StatusCode::OK,
        &DivergencesView { feature: name, limit, kept, max_kept: MAX_SAMPLES, divergent_requests: list },
    ))
}

fn gate_view(s: &AppState, name: &str, q: RawQuery) -> Result<GateView, ApiError> {
    let id = find_feature(&s.live, name)?;
    let q = params(q, &["window", "min_samples", "min_agreement", "max_incomplete"])?;
    let p = parse_gate_params(&q).map_err(ApiError::bad_request)?;
    let now = s.live.now_ms();
    let w = s.live.window(id, now, p.window_ms);
    let spec = s.live.features().spec(id);
    Ok(evaluate(name, &spec, &w, &p, &layer_namer(&s.live), now))
}

async fn gate(State(s): State<AppState>, UrlPath(name): UrlPath<String>, q: RawQuery) -> Result<Response, ApiError> {
    let g = gate_view(&s, &name, q)?;
    Ok(json_response(StatusCode::OK, &g))
}

/// 200 for `proceed`, 412 otherwise (Flagger treats non-2xx as "not yet").
async fn webhook(State(s): State<AppState>, UrlPath(name): UrlPath<String>, q: RawQuery) -> Result<Response, ApiError> {
    let g = gate_view(&s, &name, q)?;
    let code = if g.decision == Decision::Proceed { StatusCode::OK } else { StatusCode::PRECONDITION_FAILED };
    Ok(json_response(code, &g))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::Catalog;
    use crate::export::Metrics;
    use crate::live::LiveObserver;
    use crate::pipeline::Pipeline;
    use crate::source::kafka::SourceStatus;
    use crate::Features;
    use axum::body::Body;
    use axum::http::Request;
    use http_body_util::BodyExt;
    use serde_json::Value;
    use std::sync::atomic::{AtomicI64, Ordering};
    use std::sync::Arc;
    use tower::ServiceExt;

    /// 2027-01-01T00:00:00Z
    const T0: i64 = 1_798_761_600_000;

    /// A live stats instance with a manual clock, fed through a real
    /// pipeline.
    struct Rig {
        state: AppState,
        clock: Arc<AtomicI64>,
        pipe: Pipeline,
        obs: LiveObserver,
        pos: u64,
        seq: u64,
    }

    #[derive(Clone, Copy)]
    enum Story {
        AgreeNew,
        AgreeOld,
        /// Frontend shows v2, api does not advertise it.
        Fake,
        /// Frontend saw the flag on and fell back.
        Degraded,
        /// New path, analytics never reports.
        NoAnalytics,
    }

    impl Rig {
        fn new(sample_bytes: usize) -> Rig {
            let cat = Catalog::parse(std::path::Path::new("c.toml"), include_str!("../tests/conformance/catalog.toml"))
                .unwrap();
            let f = Arc::new(Features::new(Arc::new(cat)));
            let clock = Arc::new(AtomicI64::new(T0));
            let c = clock.clone();
            let live = LiveStats::with_clock(f.clone(), Arc::new(move || c.load(Ordering::Relaxed)));
            Rig {
                obs: live.observer(),
                pipe: Pipeline::new(f.clone(), sample_bytes),
                state: AppState { metrics: Metrics::new(f).unwrap(), status: Arc::new(SourceStatus::default()), live },
                clock,
                pos: 0,
                seq: 0,
            }
        }

        fn set_now(&self, ms: i64) {
            self.clock.store(ms, Ordering::Relaxed);
        }

        fn feed(&mut self, story: Story, n: usize) {
            for _ in 0..n {
                self.seq += 1;
                let id = format!("req-{:04}", self.seq);
                let ts = self.clock.load(Ordering::Relaxed);
                let (front, api, worker, analytics) = match story {
                    Story::AgreeNew => (
                        r#""flag_state":true,"selected_flow":"v2""#,
                        r#""api_capability":"v2","selected_flow":"v2","job_payload_version":2"#,
                        Some(r#""job_payload_version":2"#),
                        Some(r#""selected_flow":"v2""#),
                    ),
                    Story::AgreeOld => (
                        r#""flag_state":false,"selected_flow":"v1""#,
                        r#""api_capability":"v2","selected_flow":"v1","job_payload_version":1"#,
                        Some(r#""job_payload_version":1"#),
                        Some(r#""selected_flow":"v1""#),
                    ),
                    Story::Fake => (
                        r#""flag_state":true,"selected_flow":"v2""#,
                        r#""api_capability":"v1","selected_flow":"v1","job_payload_version":1"#,
                        Some(r#""job_payload_version":1"#),
                        Some(r#""selected_flow":"v1""#),
                    ),
                    Story::Degraded => (
                        r#""flag_state":true,"selected_flow":"v1""#,
                        r#""api_capability":"v2","selected_flow":"v1","job_payload_version":1"#,
                        Some(r#""job_payload_version":1"#),
                        Some(r#""selected_flow":"v1""#),
                    ),
                    Story::NoAnalytics => (
                        r#""flag_state":true,"selected_flow":"v2""#,
                        r#""api_capability":"v2","selected_flow":"v2","job_payload_version":2"#,
                        Some(r#""job_payload_version":2"#),
                        None,
                    ),
                };
                let mut recs = vec![("frontend", front), ("api", api)];
                recs.extend(worker.map(|w| ("worker", w)));
                recs.extend(analytics.map(|a| ("analytics", a)));
                for (i, (layer, extra)) in recs.into_iter().enumerate() {
                    let r = format!(
                        r#"{{"request_id":"{id}","layer":"{layer}","feature":"checkout_v2","ts":{},{extra}}}"#,
                        ts + i as i64 * 10
                    );
                    self.pos += 1;
                    self.pipe.ingest(r.as_bytes(), crate::join::Position::new(0, self.pos), ts, &mut self.obs).unwrap();
                }
            }
            // Close what waits for a layer that never comes.
            self.pipe.engine_mut().flush(&mut self.obs);
        }

        async fn get(&self, path: &str) -> (StatusCode, Value) {
            let (code, body) = self.get_text(path).await;
            let v = serde_json::from_str(&body).unwrap_or_else(|e| panic!("{path}: not JSON ({e}): {body}"));
            (code, v)
        }

        async fn get_text(&self, path: &str) -> (StatusCode, String) {
            let app = crate::server::router(self.state.clone());
            let r = app.oneshot(Request::get(path).body(Body::empty()).unwrap()).await.unwrap();
            let code = r.status();
            let body = r.into_body().collect().await.unwrap().to_bytes();
            (code, String::from_utf8(body.to_vec()).unwrap())
        }

        /// The gate, and the webhook's status for the same query.
        async fn gate(&self, query: &str) -> (Value, StatusCode) {
            let (code, g) = self.get(&format!("/api/v1/gates/checkout_v2?{query}")).await;
            assert_eq!(code, StatusCode::OK, "{g}");
            let (hook, body) = self.get(&format!("/api/v1/gates/checkout_v2/webhook?{query}")).await;
            assert_eq!(body["decision"], g["decision"]);
            (g, hook)
        }
    }

    fn reasons(g: &Value) -> String {
        g["reasons"].as_array().unwrap().iter().map(|r| r.as_str().unwrap()).collect::<Vec<_>>().join(" | ")
    }

    #[tokio::test]
    async fn gate_body_has_every_spec_field() {
        let mut r = Rig::new(1 << 20);
        r.feed(Story::AgreeNew, 3);
        let (g, _) = r.gate("min_samples=1").await;
        for f in [
            "feature",
            "decision",
            "exposed_agreement",
            "exposed_requests",
            "incomplete_ratio",
            "divergences",
            "reasons",
            "window_seconds",
        ] {
            assert!(g.get(f).is_some(), "{f} missing in {g}");
        }
        assert_eq!(g["feature"], "checkout_v2");
        assert_eq!(g["window_seconds"], 300);
        assert_eq!(g["exposed_requests"], 3);
        assert_eq!(g["exposed_agreement"], 1.0);
        assert_eq!(g["incomplete_ratio"], 0.0);
        let kinds = g["divergences"].as_object().unwrap();
        assert_eq!(kinds.len(), 4);
        assert!(kinds.values().all(|v| v == 0));
    }

    #[tokio::test]
    async fn no_traffic_is_inconclusive_and_the_webhook_412() {
        let r = Rig::new(0);
        let (g, hook) = r.gate("").await;
        assert_eq!(g["decision"], "inconclusive");
        assert_eq!(hook, StatusCode::PRECONDITION_FAILED);
        assert_eq!(g["exposed_agreement"], Value::Null);
        assert_eq!(g["incomplete_ratio"], Value::Null);
        assert!(reasons(&g).contains("no request of checkout_v2 closed in the last 5m"), "{}", reasons(&g));
    }

    #[tokio::test]
    async fn min_samples_edge_one_short_is_inconclusive_exactly_decides() {
        let mut r = Rig::new(0);
        r.feed(Story::AgreeNew, 9);
        r.feed(Story::AgreeOld, 20);
        let (g, hook) = r.gate("min_samples=10").await;
        assert_eq!(g["decision"], "inconclusive", "{g}");
        assert_eq!(hook, StatusCode::PRECONDITION_FAILED);
        let why = reasons(&g);
        assert!(why.contains("only 9 exposed requests"), "{why}");
        assert!(why.contains("20 requests took no new path"), "{why}");
        r.feed(Story::AgreeNew, 1);
        let (g, hook) = r.gate("min_samples=10").await;
        assert_eq!(g["decision"], "proceed", "{g}");
        assert_eq!(hook, StatusCode::OK);
        assert_eq!(g["exposed_requests"], 10);
        assert!(reasons(&g).contains("exposed agreement 100% ≥ 99.9% over 5m"), "{}", reasons(&g));
    }

    #[tokio::test]
    async fn old_path_only_traffic_is_inconclusive() {
        let mut r = Rig::new(0);
        r.feed(Story::AgreeOld, 300);
        let (g, _) = r.gate("").await;
        assert_eq!(g["decision"], "inconclusive");
        assert_eq!(g["exposed_requests"], 0);
        assert_eq!(g["requests"], 300);
    }

    #[tokio::test]
    async fn agreement_exactly_at_the_threshold_proceeds_just_below_holds() {
        let mut r = Rig::new(0);
        r.feed(Story::AgreeNew, 999);
        r.feed(Story::Fake, 1);
        let (g, hook) = r.gate("min_samples=1000&min_agreement=0.999").await;
        assert_eq!(g["exposed_agreement"], 0.999);
        assert_eq!(g["decision"], "proceed", "{g}");
        assert_eq!(hook, StatusCode::OK);
        assert!(
            reasons(&g).contains("within tolerance: 1 request where frontend took the new path"),
            "{}",
            reasons(&g)
        );
        let (g, hook) = r.gate("min_samples=1000&min_agreement=0.9991").await;
        assert_eq!(g["decision"], "hold", "{g}");
        assert_eq!(hook, StatusCode::PRECONDITION_FAILED);
        // Enough decimals to tell value and threshold apart.
        assert!(reasons(&g).starts_with("exposed agreement 99.9% < 99.91% over 5m"), "{}", reasons(&g));
    }

    #[tokio::test]
    async fn disagreement_holds_with_reasons_a_release_manager_reads() {
        let mut r = Rig::new(0);
        r.feed(Story::AgreeNew, 20);
        r.feed(Story::Fake, 5);
        r.feed(Story::Degraded, 2);
        let (g, hook) = r.gate("min_samples=20").await;
        assert_eq!(g["decision"], "hold", "{g}");
        assert_eq!(hook, StatusCode::PRECONDITION_FAILED);
        assert_eq!(g["exposed_requests"], 25);
        assert_eq!(g["exposed_agreement"], 0.8);
        assert_eq!(g["divergences"]["exposure_without_capability"], 5);
        assert_eq!(g["divergences"]["path_mismatch"], 5);
        let rs: Vec<&str> = g["reasons"].as_array().unwrap().iter().map(|v| v.as_str().unwrap()).collect();
        assert!(rs[0].starts_with("exposed agreement 80% < 99.9% over 5m: 5 requests where "), "{rs:?}");
        let all = rs.join(" | ");
        assert!(all.contains("frontend took the new path and api did not advertise v2"), "{all}");
        assert!(!all.contains("worker took the old"), "one explanation per request: {all}");
        assert!(all.contains("5 of 25 judged exposed requests did not agree"), "{all}");
        // Degraded requests took the old path only: not exposed.
        assert!(!all.contains("degraded"), "{all}");
    }

    #[tokio::test]
    async fn incomplete_over_the_limit_holds_at_the_limit_proceeds() {
        let mut r = Rig::new(0);
        r.feed(Story::AgreeNew, 9);
        r.feed(Story::NoAnalytics, 1);
        let (g, hook) = r.gate("min_samples=5&max_incomplete=0.1").await;
        assert_eq!(g["incomplete_ratio"], 0.1);
        assert_eq!(g["decision"], "proceed", "{g}");
        assert_eq!(hook, StatusCode::OK);
        let (g, hook) = r.gate("min_samples=5&max_incomplete=0.05").await;
        assert_eq!(g["decision"], "hold", "{g}");
        assert_eq!(hook, StatusCode::PRECONDITION_FAILED);
        // Incomplete requests do not count against agreement.
        assert_eq!(g["exposed_agreement"], 1.0);
        assert_eq!(
            reasons(&g),
            "10% of requests incomplete > 5% allowed over 5m (1 of 10): analytics never reported for 1 request"
        );
    }

    #[tokio::test]
    async fn every_exposed_request_incomplete_is_inconclusive_unless_incompleteness_holds() {
        let mut r = Rig::new(0);
        r.feed(Story::NoAnalytics, 10);
        let (g, _) = r.gate("min_samples=10&max_incomplete=1").await;
        assert_eq!(g["decision"], "inconclusive", "{g}");
        assert!(reasons(&g).contains("were incomplete: no agreement can be measured"));
        let (g, _) = r.gate("min_samples=10").await;
        assert_eq!(g["decision"], "hold", "{g}");
    }

    #[tokio::test]
    async fn window_slides_past_old_disagreement() {
        let mut r = Rig::new(0);
        r.feed(Story::Fake, 10);
        r.set_now(T0 + 61_000);
        r.feed(Story::AgreeNew, 10);
        let (g, _) = r.gate("min_samples=10&window=2m").await;
        assert_eq!(g["decision"], "hold");
        assert_eq!(g["window_seconds"], 120);
        let (g, _) = r.gate("min_samples=10&window=1m").await;
        assert_eq!(g["decision"], "proceed", "{g}");
        r.set_now(T0 + 61_000 + 300_001);
        let (g, _) = r.gate("min_samples=10").await;
        assert_eq!(g["decision"], "inconclusive");
        assert_eq!(g["requests"], 0);
        let (g, _) = r.gate("min_samples=10&window=1h").await;
        assert_eq!(g["requests"], 20);
    }

    #[tokio::test]
    async fn bad_parameters_are_400_json_never_500() {
        let r = Rig::new(0);
        for q in [
            "window=abc",
            "window=5",
            "window=0s",
            "window=2h",
            "window=61m",
            "window=1500ms",
            "window=",
            "min_samples=-1",
            "min_samples=1.5",
            "min_samples=ten",
            "min_samples=",
            "min_agreement=1.5",
            "min_agreement=-0.1",
            "min_agreement=NaN",
            "min_agreement=99.9",
            "max_incomplete=2",
            "max_incomplete=x",
            "min_sample=10",
            "window=5m&window=10m",
        ] {
            for path in ["/api/v1/gates/checkout_v2", "/api/v1/gates/checkout_v2/webhook"] {
                let (code, body) = r.get(&format!("{path}?{q}")).await;
                assert_eq!(code, StatusCode::BAD_REQUEST, "{path}?{q}: {body}");
                assert!(body["error"].as_str().is_some_and(|e| !e.is_empty()), "{q}: {body}");
                assert_eq!(body["status"], 400);
            }
        }
        // Accepted edge values.
        for q in ["window=1s", "window=1h", "window=60m", "min_samples=0", "min_agreement=0", "max_incomplete=1"] {
            let (code, body) = r.get(&format!("/api/v1/gates/checkout_v2?{q}")).await;
            assert_eq!(code, StatusCode::OK, "{q}: {body}");
        }
        for q in ["limit=0", "limit=101", "limit=x", "limit=-1", "limit=", "n=3"] {
            let (code, body) = r.get(&format!("/api/v1/features/checkout_v2/divergences?{q}")).await;
            assert_eq!(code, StatusCode::BAD_REQUEST, "{q}: {body}");
        }
        for q in ["window=0s", "window=3h", "feature=x"] {
            let (code, _) = r.get(&format!("/api/v1/features?{q}")).await;
            assert_eq!(code, StatusCode::BAD_REQUEST, "{q}");
        }
    }

    #[tokio::test]
    async fn unknown_features_are_404_json() {
        let r = Rig::new(0);
        for path in [
            "/api/v1/gates/nope",
            "/api/v1/gates/nope/webhook",
            "/api/v1/gates/nope?window=abc",
            "/api/v1/features/nope",
            "/api/v1/features/nope/divergences",
        ] {
            let (code, body) = r.get(path).await;
            assert_eq!(code, StatusCode::NOT_FOUND, "{path}");
            assert_eq!(body["error"], "unknown feature \"nope\"");
            assert_eq!(body["known_features"], serde_json::json!(["checkout_v2", "search.ranking"]));
        }
    }

    #[tokio::test]
    async fn webhook_accepts_flaggers_post() {
        let mut r = Rig::new(0);
        r.feed(Story::AgreeNew, 5);
        let app = crate::server::router(r.state.clone());
        let req = Request::post("/api/v1/gates/checkout_v2/webhook?min_samples=5")
            .header("content-type", "application/json")
            .body(Body::from(r#"{"name":"podinfo","namespace":"test","phase":"Progressing","metadata":{}}"#))
            .unwrap();
        let resp = app.oneshot(req).await.unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
    }

    #[tokio::test]
    async fn features_api_shows_catalog_live_figures_and_exit_readiness() {
        let mut r = Rig::new(0);
        r.feed(Story::AgreeNew, 6);
        r.feed(Story::AgreeOld, 2);
        let (code, body) = r.get("/api/v1/features").await;
        assert_eq!(code, StatusCode::OK);
        assert_eq!(body["window_seconds"], 300);
        let fs = body["features"].as_array().unwrap();
        assert_eq!(fs.len(), 2);
        let c = &fs[0];
        assert_eq!(c["feature"], "checkout_v2");
        assert_eq!(c["owner"], "payments");
        assert_eq!(c["class"], "state-machine");
        assert_eq!(c["expires"], "2027-01-31");
        assert_eq!(c["days_to_expiry"], 30);
        assert_eq!(c["expired"], false);
        assert_eq!(c["exposed_agreement"], 1.0);
        assert_eq!(c["verdicts"]["agree"], 8);
        assert_eq!(c["requests_by_path"]["old"]["agree"], 2);
        let front = &c["layers"][0];
        assert_eq!(front["layer"], "frontend");
        assert_eq!(front["role"], "expected");
        assert_eq!(front["new_path_ratio"], 0.75);
        assert_eq!(front["old_path_share"], 0.25);
        assert!(front["lag_p50_seconds"].is_number());
        assert!(c["layers"][3]["lag_p99_seconds"].as_f64().unwrap() > 0.0);
        assert_eq!(c["exit_readiness"]["status"], "not_ready");
        assert_eq!(
            c["exit_readiness"]["layers_on_old_path"],
            serde_json::json!(["frontend", "api", "worker", "analytics"])
        );
        assert!(c["exit_readiness"]["summary"].as_str().unwrap().contains("frontend (25% of its records)"));
        assert_eq!(c["gate"]["decision"], "inconclusive");
        assert_eq!(c["divergence_causes"], serde_json::json!([]));
        let s = &fs[1];
        assert_eq!(s["feature"], "search.ranking");
        assert_eq!(s["exit_readiness"]["status"], "no_traffic");
        assert_eq!(s["layers"][2]["role"], "unlisted");
        assert_eq!(s["layers"][0]["role"], "optional");
        assert_eq!(s["exposed_agreement"], Value::Null);

        // After the old path is gone for a whole window: ready to exit.
        r.set_now(T0 + 400_000);
        r.feed(Story::AgreeNew, 3);
        let (_, c) = r.get("/api/v1/features/checkout_v2").await;
        assert_eq!(c["exit_readiness"]["status"], "ready");
        assert!(c["exit_readiness"]["summary"].as_str().unwrap().starts_with("no layer took the old path"));
        let (_, c) = r.get("/api/v1/features/checkout_v2?window=1h").await;
        assert_eq!(c["exit_readiness"]["status"], "not_ready");
        assert_eq!(c["window_seconds"], 3600);
        // Expiry after the date.
        r.set_now(1_801_526_400_000); // 2027-02-02
        let (_, c) = r.get("/api/v1/features/checkout_v2").await;
        assert_eq!(c["days_to_expiry"], -2);
        assert_eq!(c["expired"], true);
    }

    #[tokio::test]
    async fn divergences_show_every_layers_record_as_received() {
        let mut r = Rig::new(1 << 20);
        r.feed(Story::Fake, 25);
        r.feed(Story::AgreeNew, 5);
        let (code, d) = r.get("/api/v1/features/checkout_v2/divergences").await;
        assert_eq!(code, StatusCode::OK);
        assert_eq!(d["limit"], 20);
        assert_eq!(d["kept"], 25);
        let list = d["divergent_requests"].as_array().unwrap();
        assert_eq!(list.len(), 20);
        let s = &list[0];
        assert_eq!(s["request_id"], "req-0025", "newest first");
        assert_eq!(s["verdict"], "diverge");
        assert_eq!(s["path"], "mixed");
        assert_eq!(s["explanation"], "frontend took the new path and api did not advertise v2");
        let kinds: Vec<&str> = s["kinds"].as_array().unwrap().iter().map(|k| k["kind"].as_str().unwrap()).collect();
        assert!(kinds.contains(&"exposure_without_capability"), "{kinds:?}");
        let ewc = s["kinds"].as_array().unwrap().iter().find(|k| k["kind"] == "exposure_without_capability").unwrap();
        assert_eq!(ewc["upstream"], "frontend");
        assert_eq!(ewc["downstream"], "api");
        assert_eq!(ewc["explanation"], "frontend took the new path and api did not advertise v2");
        let recs = s["records"].as_array().unwrap();
        assert_eq!(recs.len(), 4);
        assert_eq!(recs[1]["layer"], "api");
        assert_eq!(recs[1]["record"]["api_capability"], "v1");
        assert_eq!(recs[1]["record"]["request_id"], "req-0025");
        assert!(recs[1].get("unavailable").is_none());
        let (_, d) = r.get("/api/v1/features/checkout_v2/divergences?limit=100").await;
        assert_eq!(d["divergent_requests"].as_array().unwrap().len(), 25);
        let (_, d) = r.get("/api/v1/features/search.ranking/divergences?limit=1").await;
        assert_eq!(d["divergent_requests"], serde_json::json!([]));
    }

    #[tokio::test]
    async fn records_that_left_the_sample_buffer_are_named() {
        let mut r = Rig::new(0);
        r.feed(Story::Fake, 1);
        let (_, d) = r.get("/api/v1/features/checkout_v2/divergences?limit=1").await;
        let rec = &d["divergent_requests"][0]["records"][2];
        assert_eq!(rec["record"], Value::Null);
        assert_eq!(rec["layer"], "worker");
        assert_eq!(rec["position"], 3);
        assert_eq!(
            rec["unavailable"],
            "the worker record at position 3 is no longer in the sample buffer (--sample-buffer-bytes)"
        );
    }

    #[tokio::test]
    async fn status_page_renders_every_feature_and_divergent_request_without_external_assets() {
        let mut r = Rig::new(1 << 20);
        r.feed(Story::AgreeNew, 5);
        r.feed(Story::Fake, 2);
        let (code, html) = r.get_text("/").await;
        assert_eq!(code, StatusCode::OK);
        assert!(html.starts_with("<!doctype html>"));
        for needle in [
            "checkout_v2",
            "search.ranking",
            "req-0007",
            "frontend took the new path and api did not advertise v2",
            "<mark>  &quot;api_capability&quot;: &quot;v1&quot;,</mark>",
            "pill inconclusive",
            "early signal: exposed agreement so far 71.4% &lt; 99.9%",
            "/api/v1/gates/checkout_v2",
            "/api/v1/features/checkout_v2/divergences",
        ] {
            assert!(html.contains(needle), "status page lacks {needle}");
        }
        assert!(!html.contains("<!--CONTENT-->"));
        for external in ["src=\"http", "href=\"http", "<link", "@import", "url(http"] {
            assert!(!html.contains(external), "external asset: {external}");
        }
    }

    #[test]
    fn percentages_are_short_but_tell_value_and_threshold_apart() {
        assert_eq!(pct(0.972), "97.2%");
        assert_eq!(pct(1.0), "100%");
        assert_eq!(pct(0.0), "0%");
        assert_eq!(pct_pair(0.972, 0.999), ("97.2%".into(), "99.9%".into()));
        assert_eq!(pct_pair(0.99897, 0.999), ("99.897%".into(), "99.9%".into()));
        assert_eq!(pct_pair(0.999, 0.999), ("99.9%".into(), "99.9%".into()));
        assert_eq!(human_window(300_000), "5m");
        assert_eq!(human_window(90_000), "1m 30s");
    }
}
