//! The HTTP API on axum: metrics, health and readiness here; the gate,
//! features and divergences APIs in `api`; the status page in `page`.
//! Handlers answer 400 or 404 with a JSON error for bad requests, never
//! 500, and read the live view without holding its locks across I/O.
//!
//! Serving it securely: the Prometheus exporters' web configuration
//! (`--web-config-file`: TLS, mutual TLS, basic auth, security headers),
//! timeouts and a bound on concurrent requests. [`serve`] takes the router
//! and serves it with all of that.

mod api;
pub mod auth;
pub mod layers;
mod page;
pub mod serve;
#[cfg(test)]
mod test_rig;
pub mod web_config;

pub use serve::{serve, ServeError, ServeOptions};
pub use web_config::{WebConfig, WebConfigError};

use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;

use crate::export::Metrics;
use crate::live::LiveView;
use crate::source::kafka::SourceStatus;

/// What every handler may read. Cheap to clone.
#[derive(Clone)]
pub struct AppState {
    pub metrics: Metrics,
    pub status: Arc<SourceStatus>,
    /// Live per-feature statistics (gate, features API, status page).
    pub live: LiveView,
}

pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .merge(page::routes())
        .merge(api::routes())
        .with_state(state)
}

async fn metrics(State(s): State<AppState>) -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], s.metrics.render())
}

async fn healthz() -> &'static str {
    "ok\n"
}

/// 200 once the catalog is loaded (it is, or the process would not run)
/// and partitions are assigned from a reachable broker.
async fn readyz(State(s): State<AppState>) -> impl IntoResponse {
    if s.live.rebuilding() {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            "not ready: rebuilding the live view from the stats topic\n".to_string(),
        );
    }
    match s.status.readiness() {
        Ok(()) => (StatusCode::OK, "ready\n".to_string()),
        Err(why) => (StatusCode::SERVICE_UNAVAILABLE, format!("not ready: {why}\n")),
    }
}

#[cfg(test)]
mod tests {
    use super::test_rig::Rig;
    use axum::http::StatusCode;
    use std::sync::atomic::Ordering;

    #[tokio::test]
    async fn health_ready_and_metrics() {
        let r = Rig::new(0);
        assert_eq!(r.get_text("/healthz").await.0, StatusCode::OK);
        let (code, body) = r.get_text("/readyz").await;
        assert_eq!(code, StatusCode::SERVICE_UNAVAILABLE);
        assert!(body.contains("broker unreachable"));
        r.state.status.broker_up.store(true, Ordering::Relaxed);
        let (code, body) = r.get_text("/readyz").await;
        assert_eq!(code, StatusCode::SERVICE_UNAVAILABLE);
        assert!(body.contains("no partitions assigned"));
        r.state.status.assigned.store(true, Ordering::Relaxed);
        assert_eq!(r.get_text("/readyz").await.0, StatusCode::OK);
        let (code, body) = r.get_text("/metrics").await;
        assert_eq!(code, StatusCode::OK);
        assert!(body.contains("# HELP accord_requests_total"));
        assert!(body.contains(r#"accord_build_info{version=""#));
    }
}
