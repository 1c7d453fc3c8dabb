//! The request-side protections, as tower layers on the router: basic
//! authentication, exporter-toolkit's optional rate limit, a bound on
//! requests served at once, and the configured security headers.
//!
//! `/healthz` and `/readyz` bypass authentication, the rate limit and the
//! concurrency bound: orchestrators probe them without credentials, and a
//! liveness probe that fails because the server is busy would get a
//! healthy process restarted.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{Request, State};
use axum::http::{header, HeaderName, HeaderValue, StatusCode};
use axum::middleware::{from_fn_with_state, Next};
use axum::response::{IntoResponse, Response};
use axum::Router;
use tokio::sync::Semaphore;

use super::auth::{BasicAuth, CHALLENGE};
use super::web_config::{RateLimit, WebConfig};

/// Paths answered without credentials and outside every limit.
pub const UNPROTECTED: &[&str] = &["/healthz", "/readyz"];

fn unprotected(req: &Request) -> bool {
    UNPROTECTED.contains(&req.uri().path())
}

/// Wraps `app` in the layers `web` asks for, and in the concurrency bound
/// (always on): at most `max_concurrent` requests in the handlers at once;
/// one more waits up to `queue_wait` for a slot, then gets 503.
pub fn protect(app: Router, web: Option<&WebConfig>, max_concurrent: usize, queue_wait: Duration) -> Router {
    let mut app = app;
    if let Some(auth) = web.and_then(|w| BasicAuth::new(&w.users)) {
        app = app.layer(from_fn_with_state(auth, basic_auth));
    }
    if let Some(rl) = web.and_then(|w| w.rate_limit) {
        app = app.layer(from_fn_with_state(Arc::new(TokenBucket::new(rl)), rate_limit));
    }
    let limit = Arc::new(ConcurrencyLimit { slots: Semaphore::new(max_concurrent.max(1)), queue_wait });
    app = app.layer(from_fn_with_state(limit, concurrency_limit));
    if let Some(headers) = web.map(|w| w.headers.clone()).filter(|h| !h.is_empty()) {
        app = app.layer(from_fn_with_state(Arc::new(headers), add_headers));
    }
    app
}

async fn basic_auth(State(auth): State<Arc<BasicAuth>>, req: Request, next: Next) -> Response {
    if unprotected(&req) || auth.check(req.headers()).await {
        return next.run(req).await;
    }
    (StatusCode::UNAUTHORIZED, [(header::WWW_AUTHENTICATE, HeaderValue::from_static(CHALLENGE))], "Unauthorized\n")
        .into_response()
}

struct ConcurrencyLimit {
    slots: Semaphore,
    queue_wait: Duration,
}

async fn concurrency_limit(State(limit): State<Arc<ConcurrencyLimit>>, req: Request, next: Next) -> Response {
    if unprotected(&req) {
        return next.run(req).await;
    }
    let permit = match limit.slots.try_acquire() {
        Ok(p) => p,
        Err(_) => match tokio::time::timeout(limit.queue_wait, limit.slots.acquire()).await {
            Ok(Ok(p)) => p,
            _ => {
                tracing::debug!(path = req.uri().path(), "load shed: too many requests in flight");
                return (
                    StatusCode::SERVICE_UNAVAILABLE,
                    [(header::RETRY_AFTER, HeaderValue::from_static("1"))],
                    "too many requests in flight, retry later\n",
                )
                    .into_response();
            }
        },
    };
    let response = next.run(req).await;
    drop(permit);
    response
}

/// A token bucket (Go's `rate.Limiter` with `rate.Every(interval)` and
/// `burst`), shared by every request.
struct TokenBucket {
    per_token: Duration,
    burst: f64,
    state: Mutex<(f64, Instant)>,
}

impl TokenBucket {
    fn new(rl: RateLimit) -> Self {
        TokenBucket {
            per_token: rl.interval,
            burst: rl.burst as f64,
            state: Mutex::new((rl.burst as f64, Instant::now())),
        }
    }

    fn allow(&self, now: Instant) -> bool {
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let earned = now.saturating_duration_since(s.1).as_secs_f64() / self.per_token.as_secs_f64();
        s.0 = (s.0 + earned).min(self.burst);
        s.1 = now;
        if s.0 >= 1.0 {
            s.0 -= 1.0;
            true
        } else {
            false
        }
    }
}

async fn rate_limit(State(bucket): State<Arc<TokenBucket>>, req: Request, next: Next) -> Response {
    if unprotected(&req) || bucket.allow(Instant::now()) {
        return next.run(req).await;
    }
    (StatusCode::TOO_MANY_REQUESTS, "Too Many Requests\n").into_response()
}

/// exporter-toolkit sets the headers before the handler runs, so a handler
/// that sets one itself wins; the same here.
async fn add_headers(State(headers): State<Arc<Vec<(HeaderName, HeaderValue)>>>, req: Request, next: Next) -> Response {
    let mut response = next.run(req).await;
    for (name, value) in headers.iter() {
        if !response.headers().contains_key(name) {
            response.headers_mut().insert(name.clone(), value.clone());
        }
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_bucket_allows_burst_then_one_per_interval() {
        let b = TokenBucket::new(RateLimit { interval: Duration::from_secs(1), burst: 2 });
        let t0 = Instant::now();
        assert!(b.allow(t0));
        assert!(b.allow(t0));
        assert!(!b.allow(t0));
        assert!(!b.allow(t0 + Duration::from_millis(500)));
        assert!(b.allow(t0 + Duration::from_millis(1000)));
        assert!(!b.allow(t0 + Duration::from_millis(1000)));
        // Never more than the burst, however long the pause.
        let later = t0 + Duration::from_secs(3600);
        assert!(b.allow(later));
        assert!(b.allow(later));
        assert!(!b.allow(later));
    }
}
