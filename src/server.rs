//! HTTP API (SPEC §6) on axum: metrics, health and readiness here; the
//! gate, features and status page routes live in `api` and mount on the
//! same router.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;

use crate::export::Metrics;
use crate::live::LiveStats;
use crate::source::kafka::SourceStatus;

/// What every handler may read. Cheap to clone.
#[derive(Clone)]
pub struct AppState {
    pub metrics: Metrics,
    pub status: Arc<SourceStatus>,
    /// Live per-feature statistics (gate, features API, status page).
    pub live: LiveStats,
}

pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/", get(crate::status_page::index))
        .merge(crate::api::routes())
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
    match s.status.readiness() {
        Ok(()) => (StatusCode::OK, "ready\n".to_string()),
        Err(why) => (StatusCode::SERVICE_UNAVAILABLE, format!("not ready: {why}\n")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Catalog, Features};
    use axum::body::Body;
    use axum::http::Request;
    use http_body_util::BodyExt;
    use std::sync::atomic::Ordering;
    use tower::ServiceExt;

    fn state() -> AppState {
        let cat =
            Catalog::parse(std::path::Path::new("c.toml"), include_str!("../tests/conformance/catalog.toml")).unwrap();
        let f = Arc::new(Features::new(Arc::new(cat)));
        AppState {
            metrics: Metrics::new(f.clone()).unwrap(),
            status: Arc::new(SourceStatus::default()),
            live: LiveStats::new(f),
        }
    }

    async fn get(app: Router, path: &str) -> (StatusCode, String) {
        let r = app.oneshot(Request::get(path).body(Body::empty()).unwrap()).await.unwrap();
        let code = r.status();
        let body = r.into_body().collect().await.unwrap().to_bytes();
        (code, String::from_utf8(body.to_vec()).unwrap())
    }

    #[tokio::test]
    async fn health_ready_and_metrics() {
        let s = state();
        let app = router(s.clone());
        assert_eq!(get(app.clone(), "/healthz").await.0, StatusCode::OK);
        let (code, body) = get(app.clone(), "/readyz").await;
        assert_eq!(code, StatusCode::SERVICE_UNAVAILABLE);
        assert!(body.contains("broker unreachable"));
        s.status.broker_up.store(true, Ordering::Relaxed);
        s.status.assigned.store(true, Ordering::Relaxed);
        assert_eq!(get(app.clone(), "/readyz").await.0, StatusCode::OK);
        let (code, body) = get(app, "/metrics").await;
        assert_eq!(code, StatusCode::OK);
        assert!(body.contains("# HELP accord_requests_total"));
        assert!(body.contains(r#"accord_build_info{version=""#));
    }
}
