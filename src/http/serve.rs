//! The HTTP server: an accept loop on hyper with optional TLS (rustls,
//! ring provider), HTTP/1.1 and, over TLS when enabled, HTTP/2; per
//! connection read and idle timeouts; graceful, bounded shutdown.
//!
//! Timeouts follow Go's `net/http` server model, which exporter-toolkit
//! users know: a new connection must complete its TLS handshake and its
//! first request's headers within the read timeout (a client that sends
//! nothing, or headers too slowly, is dropped); between requests a
//! keep-alive connection may sit idle for the idle timeout, and once the
//! next request's first byte arrives its headers must be complete within
//! the read timeout. hyper's own header timer cannot tell the two apart
//! (it runs from when the connection starts waiting), so each connection
//! has a small watchdog fed by byte counts and in-flight requests.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::extract::ConnectInfo;
use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;
use tracing::{debug, info, warn};

use super::layers::protect;
use super::web_config::WebConfig;

/// How the server treats connections and requests.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    /// TLS, basic auth, headers, rate limit; `None`: plain HTTP, no auth.
    pub web: Option<Arc<WebConfig>>,
    /// TLS handshake plus request headers; and, on a keep-alive connection,
    /// headers from the request's first byte.
    pub read_timeout: Duration,
    /// How long a keep-alive connection may wait for its next request.
    pub idle_timeout: Duration,
    /// Requests in the handlers at once (health and readiness excluded).
    pub max_concurrent: usize,
    /// How long a request beyond `max_concurrent` waits for a slot before
    /// it is answered 503.
    pub queue_wait: Duration,
    /// How long in-flight requests may take to finish at shutdown.
    pub grace: Duration,
}

impl Default for ServeOptions {
    fn default() -> Self {
        ServeOptions {
            web: None,
            read_timeout: DEFAULT_READ_TIMEOUT,
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
            max_concurrent: DEFAULT_MAX_CONCURRENT,
            queue_wait: Duration::from_secs(1),
            grace: Duration::from_secs(10),
        }
    }
}

pub const DEFAULT_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// Longer than the common scrape intervals (15 s to 1 min) and than cloud
/// load balancers' idle timeouts (60 s), so the peer closes idle
/// connections first and scrapes reuse theirs.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(120);
pub const DEFAULT_MAX_CONCURRENT: usize = 512;

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The listening socket itself is unusable (not a transient error such
    /// as running out of file descriptors, which is retried).
    #[error("http listener failed: {0}")]
    Accept(#[source] io::Error),
}

/// Serves `app` on `listener` until `shutdown`, then lets in-flight
/// requests finish for up to `opts.grace` and closes what is left.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    opts: ServeOptions,
    shutdown: CancellationToken,
) -> Result<(), ServeError> {
    let app = protect(app, opts.web.as_deref(), opts.max_concurrent, opts.queue_wait);
    let tls = opts.web.as_ref().and_then(|w| w.tls.as_ref()).map(|t| TlsAcceptor::from(t.server_config.clone()));
    let http2 = opts.web.as_ref().is_some_and(|w| w.http2);
    let shared = Arc::new(Shared { app, tls, http2, read_timeout: opts.read_timeout, idle_timeout: opts.idle_timeout });
    if let Ok(addr) = listener.local_addr() {
        let auth = opts.web.as_ref().is_some_and(|w| w.basic_auth());
        info!(%addr, tls = shared.tls.is_some(), basic_auth = auth, "http serving");
    }

    let mut conns = JoinSet::new();
    let result = loop {
        tokio::select! {
            biased;
            _ = shutdown.cancelled() => break Ok(()),
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    let _ = stream.set_nodelay(true);
                    conns.spawn(connection(stream, peer, shared.clone(), shutdown.clone()));
                }
                Err(e) if fatal_accept_error(&e) => break Err(ServeError::Accept(e)),
                Err(e) => {
                    // Out of file descriptors or buffers: back off and retry;
                    // the connections we hold will time out and free some.
                    warn!(error = %e, "http accept failed; retrying");
                    tokio::select! {
                        _ = shutdown.cancelled() => break Ok(()),
                        _ = tokio::time::sleep(Duration::from_millis(100)) => {}
                    }
                }
            },
        }
    };
    drop(listener);
    // Every connection task sees `shutdown` too and closes once idle.
    let drained = tokio::time::timeout(opts.grace, async { while conns.join_next().await.is_some() {} }).await;
    if drained.is_err() {
        warn!(open = conns.len(), grace = ?opts.grace, "http connections still open after the grace period; closing them");
        conns.abort_all();
        while conns.join_next().await.is_some() {}
    }
    result
}

/// Errors that mean the listener is broken, not that a connection or the
/// process is momentarily short of something.
fn fatal_accept_error(e: &io::Error) -> bool {
    const EBADF: i32 = 9;
    const EINVAL: i32 = 22;
    const ENOTSOCK: i32 = 88;
    matches!(e.raw_os_error(), Some(EBADF | EINVAL | ENOTSOCK))
}

struct Shared {
    app: Router,
    tls: Option<TlsAcceptor>,
    http2: bool,
    read_timeout: Duration,
    idle_timeout: Duration,
}

async fn connection(stream: TcpStream, peer: SocketAddr, shared: Arc<Shared>, shutdown: CancellationToken) {
    let activity = Arc::new(Activity::new());
    let io = Watched { inner: stream, activity: activity.clone() };
    match &shared.tls {
        None => drive(io, false, peer, &shared, activity, &shutdown).await,
        Some(acceptor) => {
            let tls = tokio::select! {
                _ = shutdown.cancelled() => return,
                r = tokio::time::timeout(shared.read_timeout, acceptor.accept(io)) => match r {
                    Ok(Ok(tls)) => tls,
                    Ok(Err(e)) => {
                        debug!(%peer, error = %e, "tls handshake failed");
                        return;
                    }
                    Err(_) => {
                        debug!(%peer, "tls handshake timed out");
                        return;
                    }
                },
            };
            let h2 = shared.http2 && tls.get_ref().1.alpn_protocol() == Some(&b"h2"[..]);
            // The first request's clock starts after the handshake.
            activity.restart();
            drive(tls, h2, peer, &shared, activity, &shutdown).await
        }
    }
}

/// Serves one connection until it ends, times out, or `shutdown` has
/// drained it.
async fn drive<I>(
    io: I,
    h2: bool,
    peer: SocketAddr,
    shared: &Shared,
    activity: Arc<Activity>,
    shutdown: &CancellationToken,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let app = shared.app.clone();
    let tracked = activity.clone();
    let svc = hyper::service::service_fn(move |mut req: hyper::Request<Incoming>| {
        let busy = Busy::enter(tracked.clone());
        req.extensions_mut().insert(ConnectInfo(peer));
        let app = app.clone();
        async move {
            let response = app.oneshot(req).await;
            drop(busy);
            response
        }
    });
    let io = TokioIo::new(io);
    let watchdog = activity.watchdog(shared.read_timeout, shared.idle_timeout, h2);
    tokio::pin!(watchdog);
    if h2 {
        let conn = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
            .timer(TokioTimer::new())
            .serve_connection(io, svc);
        tokio::pin!(conn);
        run_conn(conn, |c| c.graceful_shutdown(), watchdog, peer, shutdown).await
    } else {
        let conn = hyper::server::conn::http1::Builder::new()
            .timer(TokioTimer::new())
            // Our watchdog does it, telling idle from slow (see module doc).
            .header_read_timeout(None)
            .serve_connection(io, svc);
        tokio::pin!(conn);
        run_conn(conn, |c| c.graceful_shutdown(), watchdog, peer, shutdown).await
    }
}

async fn run_conn<C, W>(
    mut conn: Pin<&mut C>,
    graceful: impl Fn(Pin<&mut C>),
    mut watchdog: Pin<&mut W>,
    peer: SocketAddr,
    shutdown: &CancellationToken,
) where
    C: Future<Output = Result<(), hyper::Error>>,
    W: Future<Output = ()>,
{
    let mut draining = false;
    loop {
        tokio::select! {
            r = conn.as_mut() => {
                if let Err(e) = r {
                    debug!(%peer, error = %e, "http connection ended with an error");
                }
                return;
            }
            _ = watchdog.as_mut() => {
                debug!(%peer, "http connection timed out (read or idle timeout); closing");
                return;
            }
            _ = shutdown.cancelled(), if !draining => {
                // Finishes the request in flight, if any, then closes.
                graceful(conn.as_mut());
                draining = true;
            }
        }
    }
}

/// What a connection has done lately, in milliseconds since `origin`.
struct Activity {
    origin: Instant,
    /// Requests inside the handlers.
    busy: AtomicUsize,
    /// Requests answered so far.
    answered: AtomicU64,
    /// When the connection last became idle (the last request finished).
    idle_since: AtomicU64,
    /// The last write (a response still being flushed is not idle).
    last_write: AtomicU64,
    /// The first byte read since the connection became idle; `NONE` if none.
    first_read: AtomicU64,
    /// When the clock for the first request started (after any handshake).
    started: AtomicU64,
}

const NONE: u64 = u64::MAX;

impl Activity {
    fn new() -> Self {
        Activity {
            origin: Instant::now(),
            busy: AtomicUsize::new(0),
            answered: AtomicU64::new(0),
            idle_since: AtomicU64::new(0),
            last_write: AtomicU64::new(0),
            first_read: AtomicU64::new(NONE),
            started: AtomicU64::new(0),
        }
    }

    fn now(&self) -> u64 {
        self.origin.elapsed().as_millis() as u64
    }

    fn restart(&self) {
        self.started.store(self.now(), Ordering::Relaxed);
    }

    fn on_read(&self) {
        if self.busy.load(Ordering::Relaxed) == 0 && self.first_read.load(Ordering::Relaxed) == NONE {
            self.first_read.store(self.now(), Ordering::Relaxed);
        }
    }

    fn on_write(&self) {
        self.last_write.store(self.now(), Ordering::Relaxed);
    }

    /// When the connection must be closed, in ms since `origin`; `None`
    /// while a request is in the handlers.
    fn deadline(&self, read: u64, idle: u64, h2: bool) -> Option<u64> {
        if self.busy.load(Ordering::Relaxed) > 0 {
            return None;
        }
        if self.answered.load(Ordering::Relaxed) == 0 {
            return Some(self.started.load(Ordering::Relaxed).saturating_add(read));
        }
        let idle_since = self.idle_since.load(Ordering::Relaxed);
        if h2 {
            // HTTP/2 control frames (pings, settings) are not requests:
            // only the time since the last stream counts.
            return Some(idle_since.saturating_add(idle));
        }
        match self.first_read.load(Ordering::Relaxed) {
            NONE => Some(idle_since.max(self.last_write.load(Ordering::Relaxed)).saturating_add(idle)),
            first => Some(first.saturating_add(read)),
        }
    }

    /// Resolves when the connection has timed out.
    async fn watchdog(self: Arc<Self>, read: Duration, idle: Duration, h2: bool) {
        let (read_ms, idle_ms) = (read.as_millis() as u64, idle.as_millis() as u64);
        loop {
            let now = self.now();
            let wait = match self.deadline(read_ms, idle_ms, h2) {
                Some(d) if d <= now => return,
                Some(d) => d - now,
                // Busy: look again later.
                None => read_ms.min(idle_ms).max(1),
            };
            tokio::time::sleep(Duration::from_millis(wait)).await;
        }
    }
}

/// Marks a request as inside the handlers for as long as it lives.
struct Busy(Arc<Activity>);

impl Busy {
    fn enter(a: Arc<Activity>) -> Self {
        a.busy.fetch_add(1, Ordering::Relaxed);
        Busy(a)
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        let a = &self.0;
        a.answered.fetch_add(1, Ordering::Relaxed);
        a.idle_since.store(a.now(), Ordering::Relaxed);
        a.first_read.store(NONE, Ordering::Relaxed);
        a.busy.fetch_sub(1, Ordering::Relaxed);
    }
}

/// The socket, reporting reads and writes to the connection's `Activity`.
struct Watched<S> {
    inner: S,
    activity: Arc<Activity>,
}

impl<S: AsyncRead + Unpin> AsyncRead for Watched<S> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(r, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.activity.on_read();
        }
        r
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Watched<S> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, data: &[u8]) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write(cx, data);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.on_write();
        }
        r
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.on_write();
        }
        r
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deadlines_follow_the_go_server_model() {
        let a = Activity::new();
        let (read, idle) = (1_000, 5_000);
        // A new connection: the first request's headers within `read`.
        assert_eq!(a.deadline(read, idle, false), Some(1_000));
        a.started.store(200, Ordering::Relaxed);
        assert_eq!(a.deadline(read, idle, false), Some(1_200));
        // In the handlers: no deadline.
        a.busy.store(1, Ordering::Relaxed);
        assert_eq!(a.deadline(read, idle, false), None);
        a.busy.store(0, Ordering::Relaxed);
        a.answered.store(1, Ordering::Relaxed);
        a.idle_since.store(3_000, Ordering::Relaxed);
        // Idle keep-alive: `idle` from the end of the last response.
        assert_eq!(a.deadline(read, idle, false), Some(8_000));
        a.last_write.store(3_500, Ordering::Relaxed);
        assert_eq!(a.deadline(read, idle, false), Some(8_500));
        // The next request started arriving: `read` from its first byte.
        a.first_read.store(4_000, Ordering::Relaxed);
        assert_eq!(a.deadline(read, idle, false), Some(5_000));
        // HTTP/2 counts streams, not bytes.
        assert_eq!(a.deadline(read, idle, true), Some(8_000));
    }

    #[test]
    fn only_a_broken_listener_is_fatal() {
        assert!(fatal_accept_error(&io::Error::from_raw_os_error(9)));
        assert!(!fatal_accept_error(&io::Error::from_raw_os_error(24)), "EMFILE is retried");
        assert!(!fatal_accept_error(&io::Error::from(io::ErrorKind::ConnectionAborted)));
    }
}
