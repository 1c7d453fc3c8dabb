//! The gate, features and divergences APIs (see docs/gate.md).
//!
//! - `GET /api/v1/gates/{feature}` — `proceed` / `hold` / `inconclusive`
//!   with the figures and reasons behind it; always 200 for a known
//!   feature. `…/webhook` (GET or POST) answers the same body with 200 for
//!   `proceed` and 412 otherwise, for Flagger.
//! - `GET /api/v1/features[/{feature}]` — catalog data, live figures, exit
//!   readiness and the default gate of each feature.
//! - `GET /api/v1/features/{feature}/divergences?limit=N` — the most recent
//!   divergent requests with every layer's record as received.
//! - `GET /api/v1/features/{feature}/exit-review?window=1h` — the flag exit
//!   review over the view (JSON, or Markdown with `?format=markdown` or
//!   `Accept: text/markdown`).
//!
//! Parameters are validated strictly: a malformed, out-of-range, repeated
//! or unknown parameter is a 400 with a JSON error (a typo must not
//! silently loosen a gate), never a 500.

use std::collections::BTreeMap;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Path as UrlPath, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use serde::Serialize;

use super::AppState;
use crate::decode::format_rfc3339_ms;
use crate::exit::{render_markdown, DEFAULT_MIN_SAMPLES};
use crate::features::FeatureId;
use crate::gate::{evaluate, parse_params, parse_window, with_freshness, GateView, ParamError, PARAMS};
use crate::live::{LiveView, DEFAULT_EXIT_WINDOW_MS, DEFAULT_WINDOW_MS, MAX_SAMPLES};
use crate::views::{feature_view, feature_views, layer_namer, live_review, sample_views, DivergencesView};

/// Default number of divergent requests the divergences API returns.
pub(crate) const DEFAULT_LIMIT: usize = 20;

/// A query string that cannot be taken as given.
#[derive(Debug, thiserror::Error)]
pub(crate) enum QueryError {
    #[error("malformed query string: {0}")]
    Malformed(String),
    #[error("unknown parameter {name:?} (known: {known})")]
    Unknown { name: String, known: String },
    #[error("parameter {0:?} given more than once")]
    Repeated(String),
    #[error("limit must be an integer from 1 to {MAX_SAMPLES}, got {0:?}")]
    Limit(String),
    #[error("format must be json or markdown, got {0:?}")]
    Format(String),
    #[error(transparent)]
    Param(#[from] ParamError),
}

/// A JSON error response.
#[derive(Debug)]
pub(crate) struct ApiError {
    pub status: StatusCode,
    pub message: String,
    pub known_features: Option<Vec<String>>,
}

impl From<QueryError> for ApiError {
    fn from(e: QueryError) -> Self {
        ApiError { status: StatusCode::BAD_REQUEST, message: e.to_string(), known_features: None }
    }
}

impl From<ParamError> for ApiError {
    fn from(e: ParamError) -> Self {
        QueryError::Param(e).into()
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
pub(crate) fn json_response<T: Serialize>(status: StatusCode, body: &T) -> Response {
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
fn params(q: RawQuery, allowed: &[&str]) -> Result<BTreeMap<String, String>, QueryError> {
    let Query(pairs) = q.map_err(|e| QueryError::Malformed(e.to_string()))?;
    let mut out = BTreeMap::new();
    for (k, v) in pairs {
        if !allowed.contains(&k.as_str()) {
            return Err(QueryError::Unknown { name: k, known: allowed.join(", ") });
        }
        if out.contains_key(&k) {
            return Err(QueryError::Repeated(k));
        }
        out.insert(k, v);
    }
    Ok(out)
}

fn find_feature(live: &LiveView, name: &str) -> Result<FeatureId, ApiError> {
    live.feature_id(name).ok_or_else(|| {
        let f = live.features();
        ApiError {
            status: StatusCode::NOT_FOUND,
            message: format!("unknown feature {name:?}"),
            known_features: Some(f.ids().map(|id| f.name(id)).collect()),
        }
    })
}

pub(super) fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/v1/view", get(view))
        .route("/api/v1/features", get(features))
        .route("/api/v1/features/{feature}", get(feature))
        .route("/api/v1/features/{feature}/divergences", get(divergences))
        .route("/api/v1/features/{feature}/exit-review", get(exit_review))
        .route("/api/v1/gates/{feature}", get(gate))
        .route("/api/v1/gates/{feature}/webhook", get(webhook).post(webhook))
}

fn window_param(q: &BTreeMap<String, String>) -> Result<i64, QueryError> {
    Ok(q.get("window").map(|w| parse_window(w)).transpose()?.unwrap_or(DEFAULT_WINDOW_MS))
}

async fn features(State(s): State<AppState>, q: RawQuery) -> Result<Response, ApiError> {
    let q = params(q, &["window"])?;
    let window_ms = window_param(&q)?;
    let now = s.live.now_ms();
    let views: Vec<_> = feature_views(&s.live, now, window_ms).into_iter().map(|(_, v)| v).collect();
    let body = serde_json::json!({
        "window_seconds": window_ms / 1000,
        "generated_at": format_rfc3339_ms(now),
        "layers": s.live.features().catalog().layers,
        "view": s.live.freshness(now),
        "features": views,
    });
    Ok(json_response(StatusCode::OK, &body))
}

/// `GET /api/v1/view`: how complete and fresh the consumer group's view
/// is, and what each instance has published (compare an instance's share
/// with its own `/metrics`).
async fn view(State(s): State<AppState>) -> Response {
    let now = s.live.now_ms();
    let body = serde_json::json!({
        "generated_at": format_rfc3339_ms(now),
        "rebuilding": s.live.rebuilding(),
        "view": s.live.freshness(now),
        "instances": s.live.instances(),
    });
    json_response(StatusCode::OK, &body)
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
            _ => return Err(QueryError::Limit(l.clone()).into()),
        },
    };
    let (list, kept) = sample_views(&s.live, id, limit);
    Ok(json_response(
        StatusCode::OK,
        &DivergencesView {
            feature: name,
            limit,
            kept,
            max_kept: MAX_SAMPLES,
            divergent_requests: list,
            view: s.live.freshness(s.live.now_ms()),
        },
    ))
}

fn gate_view(s: &AppState, name: &str, q: RawQuery) -> Result<GateView, ApiError> {
    let id = find_feature(&s.live, name)?;
    let q = params(q, &PARAMS)?;
    let p = parse_params(|k| q.get(k).map(String::as_str))?;
    let now = s.live.now_ms();
    let w = s.live.window(id, now, p.window_ms);
    let spec = s.live.features().spec(id);
    let g = evaluate(name, &spec, &w, &p, &layer_namer(s.live.features()), now);
    Ok(with_freshness(g, s.live.freshness(now)))
}

async fn gate(State(s): State<AppState>, UrlPath(name): UrlPath<String>, q: RawQuery) -> Result<Response, ApiError> {
    let g = gate_view(&s, &name, q)?;
    Ok(json_response(StatusCode::OK, &g))
}

/// 200 for `proceed`, 412 for `hold`, and for `inconclusive` what the
/// `inconclusive` parameter says (Flagger treats non-2xx as "not yet").
async fn webhook(State(s): State<AppState>, UrlPath(name): UrlPath<String>, q: RawQuery) -> Result<Response, ApiError> {
    let g = gate_view(&s, &name, q)?;
    let code = StatusCode::from_u16(g.webhook.status).unwrap_or(StatusCode::PRECONDITION_FAILED);
    Ok(json_response(code, &g))
}

/// Whether an `Accept` header prefers Markdown to JSON: `text/markdown`
/// with a quality above that of `application/json` (HTTP content
/// negotiation; absent ranges count as 0, `*/*` counts for JSON).
fn prefers_markdown(headers: &HeaderMap) -> bool {
    let (mut md, mut json) = (0.0f32, 0.0f32);
    for value in headers.get_all(header::ACCEPT).iter().filter_map(|v| v.to_str().ok()) {
        for range in value.split(',') {
            let mut parts = range.split(';');
            let media = parts.next().unwrap_or("").trim().to_ascii_lowercase();
            let q = parts
                .filter_map(|p| p.trim().strip_prefix("q=").and_then(|q| q.trim().parse::<f32>().ok()))
                .next()
                .unwrap_or(1.0)
                .clamp(0.0, 1.0);
            match media.as_str() {
                "text/markdown" => md = md.max(q),
                "application/json" | "application/*" | "*/*" => json = json.max(q),
                _ => {}
            }
        }
    }
    md > json
}

/// `GET /api/v1/features/{feature}/exit-review?window=1h&min_samples=200&format=json|markdown`.
async fn exit_review(
    State(s): State<AppState>,
    UrlPath(name): UrlPath<String>,
    headers: HeaderMap,
    q: RawQuery,
) -> Result<Response, ApiError> {
    let id = find_feature(&s.live, &name)?;
    let q = params(q, &["window", "min_samples", "format"])?;
    let window_ms = q.get("window").map(|w| parse_window(w)).transpose()?.unwrap_or(DEFAULT_EXIT_WINDOW_MS);
    let min_samples = match q.get("min_samples") {
        None => DEFAULT_MIN_SAMPLES,
        Some(n) => n.trim().parse::<u64>().map_err(|_| ParamError::MinSamples(n.clone()))?,
    };
    let markdown = match q.get("format").map(String::as_str) {
        None => prefers_markdown(&headers),
        Some("json") => false,
        Some("markdown") => true,
        Some(other) => return Err(QueryError::Format(other.to_string()).into()),
    };
    let now = s.live.now_ms();
    let r = live_review(&s.live, id, now, window_ms, min_samples);
    if markdown {
        let body = render_markdown(&r.review);
        let ct = "text/markdown; charset=utf-8";
        return Ok(([(header::CONTENT_TYPE, ct), (header::CACHE_CONTROL, "no-store")], body).into_response());
    }
    Ok(json_response(StatusCode::OK, &r))
}

#[cfg(test)]
mod tests;
