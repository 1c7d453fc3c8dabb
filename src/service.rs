//! `accord run`: the catalog, the metrics registry, the HTTP server and
//! the Kafka source, wired together with one cancellation token.
//!
//! Shutdown (SIGINT/SIGTERM → `cancel`): the source stops consuming,
//! commits the lowest offset each partition still needs and leaves the
//! group; open joins are not judged here, the next owner replays them.
//! The HTTP server drains with a grace timeout.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::catalog::Catalog;
use crate::export::Metrics;
use crate::features::Features;
use crate::http::{router, serve, AppState, ServeOptions};
use crate::join::{Closed, Observer};
use crate::live::LiveView;
use crate::source::kafka::{KafkaConfig, KafkaSource, SourceError, SourceStatus};

/// How long the HTTP server may take to finish in-flight requests.
pub const GRACE: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    /// Configuration the user must fix; exit code 2.
    #[error("{0}")]
    Config(String),
    #[error("{0}")]
    Runtime(String),
}

impl From<SourceError> for ServiceError {
    fn from(e: SourceError) -> Self {
        match e {
            SourceError::Config(m) => ServiceError::Config(m),
            e => ServiceError::Runtime(e.to_string()),
        }
    }
}

/// A running service's handles, for tests and the demo.
pub struct Service {
    pub catalog: Arc<Catalog>,
    pub features: Arc<Features>,
    pub metrics: Metrics,
    pub status: Arc<SourceStatus>,
    /// Live statistics behind the gate, features API and status page.
    pub live: LiveView,
    /// TLS, authentication, timeouts and limits of the HTTP server.
    pub http: ServeOptions,
}

impl Service {
    pub fn new(catalog: Arc<Catalog>) -> Result<Self, ServiceError> {
        let features = Arc::new(Features::new(catalog.clone()));
        let metrics = Metrics::new(features.clone()).map_err(|e| ServiceError::Runtime(e.to_string()))?;
        metrics.ready.set(0);
        Ok(Service {
            catalog,
            live: LiveView::new(features.clone()),
            features,
            metrics,
            status: Arc::new(SourceStatus::default()),
            http: ServeOptions { grace: GRACE, ..ServeOptions::default() },
        })
    }

    pub fn app_state(&self) -> AppState {
        AppState { metrics: self.metrics.clone(), status: self.status.clone(), live: self.live.clone() }
    }

    /// Binds the HTTP listener (a bind failure is a configuration error).
    pub async fn bind(listen: SocketAddr) -> Result<tokio::net::TcpListener, ServiceError> {
        tokio::net::TcpListener::bind(listen)
            .await
            .map_err(|e| ServiceError::Config(format!("cannot listen on {listen}: {e}")))
    }

    /// Serves HTTP on `listener` and consumes Kafka until `cancel`.
    pub async fn run(
        self,
        kafka: KafkaConfig,
        listener: tokio::net::TcpListener,
        cancel: CancellationToken,
    ) -> Result<(), ServiceError> {
        let addr = listener.local_addr().map_err(|e| ServiceError::Runtime(e.to_string()))?;
        let app = router(self.app_state());
        let server = tokio::spawn(serve(listener, app, self.http.clone(), cancel.clone()));
        info!(%addr, "http listening");
        let source = KafkaSource::new(kafka, self.features.clone(), self.metrics.clone(), self.status.clone());
        // Every instance publishes what it judged to the stats topic and
        // serves the view merged from every instance's share.
        let result = source.run(cancel.clone(), self.live.clone()).await;
        // Whatever ended the source ends the service.
        cancel.cancel();
        // `serve` bounds its own drain by `http.grace`; this is a backstop.
        match tokio::time::timeout(self.http.grace + Duration::from_secs(2), server).await {
            Ok(Ok(Ok(()))) => {}
            Ok(Ok(Err(e))) => warn!(error = %e, "http server error"),
            Ok(Err(e)) => warn!(error = %e, "http server task failed"),
            Err(_) => warn!("http server did not drain within the grace period"),
        }
        result.map_err(ServiceError::from)
    }
}

/// The observer slot for features not configured.
pub struct NoObserver;

impl Observer for NoObserver {
    fn record(
        &mut self,
        _: crate::features::FeatureId,
        _: crate::catalog::LayerId,
        _: crate::judge::RecordPath,
        _: bool,
    ) {
    }
    fn closed(&mut self, _: &Closed<'_>) {}
}

/// Cancels `token` on SIGINT or SIGTERM (drain and stop); the returned
/// token is cancelled on a second signal (the caller stops at once: `main`
/// decides the exit code).
pub fn cancel_on_signals(token: CancellationToken) -> CancellationToken {
    let abort = CancellationToken::new();
    let aborted = abort.clone();
    tokio::spawn(async move {
        let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(s) => s,
            Err(e) => {
                warn!(error = %e, "cannot install SIGTERM handler");
                return;
            }
        };
        for n in 0..2 {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
            if n == 0 {
                info!("signal received: draining (a second signal exits at once)");
                token.cancel();
            } else {
                warn!("second signal: exiting without draining");
                abort.cancel();
            }
        }
    });
    aborted
}
