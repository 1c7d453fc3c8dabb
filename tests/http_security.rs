//! The secured HTTP server against real clients on 127.0.0.1: basic auth,
//! TLS with a CA the client verifies, mutual TLS, read and idle timeouts,
//! slow clients, load shedding, HTTP/2 and graceful shutdown; and the
//! binary refusing a bad web configuration. Certificates are generated
//! at test time. Every wait is bounded; nothing asserts on durations
//! beyond generous "eventually" bounds.

mod common;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use accord::http::{router, AppState};
use accord::http::{serve, ServeOptions, WebConfig};
use accord::{Catalog, Features};
use axum::routing::get;
use axum::Router;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::Semaphore;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// Upper bound for anything that should happen "soon".
const BOUND: Duration = Duration::from_secs(20);

// ---------- fixtures ----------

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("accord-http-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A CA, a server certificate for localhost/127.0.0.1 and a client
/// certificate, all signed by the CA; plus a client certificate from a
/// CA the server does not know.
struct Pki {
    ca_pem: String,
    server_pem: String,
    server_key: String,
    client_pem: String,
    client_key: String,
    rogue_client_pem: String,
    rogue_client_key: String,
}

fn ca(name: &str) -> (Issuer<'static, KeyPair>, String) {
    let key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(DnType::CommonName, name);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
    let cert = params.self_signed(&key).unwrap();
    (Issuer::new(params, key), cert.pem())
}

fn leaf(issuer: &Issuer<'static, KeyPair>, names: &[&str], usage: ExtendedKeyUsagePurpose) -> (String, String) {
    let key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::new(names.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap();
    params.distinguished_name.push(DnType::CommonName, names[0]);
    params.extended_key_usages = vec![usage];
    let cert = params.signed_by(&key, issuer).unwrap();
    (cert.pem(), key.serialize_pem())
}

impl Pki {
    fn new() -> Pki {
        let (issuer, ca_pem) = ca("accord test CA");
        let (server_pem, server_key) = leaf(&issuer, &["localhost", "127.0.0.1"], ExtendedKeyUsagePurpose::ServerAuth);
        let (client_pem, client_key) = leaf(&issuer, &["prometheus"], ExtendedKeyUsagePurpose::ClientAuth);
        let (rogue, _) = ca("someone else's CA");
        let (rogue_client_pem, rogue_client_key) = leaf(&rogue, &["prometheus"], ExtendedKeyUsagePurpose::ClientAuth);
        Pki { ca_pem, server_pem, server_key, client_pem, client_key, rogue_client_pem, rogue_client_key }
    }

    /// Writes the server's files into `dir` (names relative to web.yml).
    fn write_server_files(&self, dir: &Path) {
        std::fs::write(dir.join("server.crt"), &self.server_pem).unwrap();
        std::fs::write(dir.join("server.key"), &self.server_key).unwrap();
        std::fs::write(dir.join("ca.crt"), &self.ca_pem).unwrap();
    }
}

fn web_config(dir: &Path, yaml: &str) -> Arc<WebConfig> {
    let path = dir.join("web.yml");
    std::fs::write(&path, yaml).unwrap();
    Arc::new(WebConfig::load(&path).unwrap_or_else(|e| panic!("{e}")))
}

/// The real router (metrics, health, API) ready, plus `/slow`, which
/// holds its request until `gate` gives it a permit.
struct App {
    router: Router,
    in_slow: Arc<AtomicUsize>,
    gate: Arc<Semaphore>,
}

fn app() -> App {
    let cat = Catalog::parse(Path::new("c.toml"), include_str!("conformance/catalog.toml")).unwrap();
    let features = Arc::new(Features::new(Arc::new(cat)));
    let state = AppState {
        metrics: accord::export::Metrics::new(features.clone()).unwrap(),
        status: Arc::new(accord::source::kafka::SourceStatus::default()),
        live: accord::live::LiveView::new(features),
    };
    state.status.broker_up.store(true, Ordering::Relaxed);
    state.status.assigned.store(true, Ordering::Relaxed);
    let in_slow = Arc::new(AtomicUsize::new(0));
    let gate = Arc::new(Semaphore::new(0));
    let (n, g) = (in_slow.clone(), gate.clone());
    let router = router(state).route(
        "/slow",
        get(move || {
            let (n, g) = (n.clone(), g.clone());
            async move {
                n.fetch_add(1, Ordering::SeqCst);
                // Bounded: a test that forgets to release still ends.
                let _ = tokio::time::timeout(BOUND, g.acquire()).await;
                "slow done\n"
            }
        }),
    );
    App { router, in_slow, gate }
}

struct Server {
    addr: SocketAddr,
    cancel: CancellationToken,
    task: JoinHandle<Result<(), accord::http::ServeError>>,
}

impl Server {
    async fn stop(self) {
        self.cancel.cancel();
        let r = tokio::time::timeout(BOUND, self.task).await.expect("serve returns after cancel");
        r.unwrap().unwrap();
    }
}

async fn start(router: Router, opts: ServeOptions) -> Server {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let cancel = CancellationToken::new();
    let task = tokio::spawn(serve(listener, router, opts, cancel.clone()));
    Server { addr, cancel, task }
}

fn opts(web: Option<Arc<WebConfig>>) -> ServeOptions {
    ServeOptions {
        web,
        read_timeout: Duration::from_secs(10),
        grace: Duration::from_secs(5),
        ..ServeOptions::default()
    }
}

// ---------- a minimal HTTP/1.1 client ----------

#[derive(Debug)]
struct Reply {
    status: u16,
    head: String,
    body: String,
}

impl Reply {
    fn header(&self, name: &str) -> Option<&str> {
        self.head.lines().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case(name).then(|| v.trim())
        })
    }
}

fn basic(user: &str, pass: &str) -> String {
    use base64::Engine as _;
    format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}")))
}

/// One request with `Connection: close`; the reply read to EOF.
async fn request<S: AsyncRead + AsyncWrite + Unpin>(
    mut s: S,
    path: &str,
    auth: Option<&str>,
) -> std::io::Result<Reply> {
    let mut req = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n");
    if let Some(a) = auth {
        req.push_str(&format!("Authorization: {a}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).await?;
    let mut buf = Vec::new();
    tokio::time::timeout(BOUND, s.read_to_end(&mut buf))
        .await
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "no reply"))??;
    parse_reply(&buf)
}

fn parse_reply(buf: &[u8]) -> std::io::Result<Reply> {
    let text = String::from_utf8_lossy(buf).into_owned();
    let bad = || std::io::Error::new(std::io::ErrorKind::InvalidData, format!("not an HTTP reply: {text:?}"));
    let (head, body) = text.split_once("\r\n\r\n").ok_or_else(bad)?;
    let status = head.split(' ').nth(1).and_then(|s| s.parse().ok()).ok_or_else(bad)?;
    Ok(Reply { status, head: head.to_string(), body: body.to_string() })
}

async fn fetch(addr: SocketAddr, path: &str, auth: Option<&str>) -> Reply {
    let s = TcpStream::connect(addr).await.unwrap();
    request(s, path, auth).await.unwrap()
}

// ---------- a TLS client ----------

fn tls_client(ca_pem: &str, client: Option<(&str, &str)>, alpn: &[&[u8]]) -> tokio_rustls::TlsConnector {
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        roots.add(c.unwrap()).unwrap();
    }
    let b = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots);
    let mut cfg = match client {
        None => b.with_no_client_auth(),
        Some((cert, key)) => {
            let chain: Vec<CertificateDer<'static>> =
                CertificateDer::pem_slice_iter(cert.as_bytes()).collect::<Result<_, _>>().unwrap();
            b.with_client_auth_cert(chain, PrivateKeyDer::from_pem_slice(key.as_bytes()).unwrap()).unwrap()
        }
    };
    cfg.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    tokio_rustls::TlsConnector::from(Arc::new(cfg))
}

/// A TLS request; `Err` when the handshake or the exchange fails.
async fn tls_get(
    conn: &tokio_rustls::TlsConnector,
    addr: SocketAddr,
    path: &str,
    auth: Option<&str>,
) -> std::io::Result<Reply> {
    let tcp = TcpStream::connect(addr).await?;
    let name = ServerName::try_from("localhost").unwrap();
    let tls = tokio::time::timeout(BOUND, conn.connect(name, tcp))
        .await
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "handshake"))??;
    request(tls, path, auth).await
}

/// Whether the server closes `s` (EOF or reset) within `BOUND`.
async fn dropped_eventually<S: AsyncRead + Unpin>(s: &mut S) -> bool {
    let mut buf = [0u8; 1024];
    let deadline = tokio::time::Instant::now() + BOUND;
    loop {
        match tokio::time::timeout_at(deadline, s.read(&mut buf)).await {
            Err(_) => return false,
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            // A 408 or other bytes before the close are fine.
            Ok(Ok(_)) => continue,
        }
    }
}

// ---------- basic auth ----------

const USERS: &str = "basic_auth_users:\n  alice: HASH_A\n  bob: HASH_B\n";

fn users_yaml() -> String {
    USERS
        .replace("HASH_A", &bcrypt::hash("wonderland", 4).unwrap())
        .replace("HASH_B", &bcrypt::hash("builder", 4).unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn basic_auth_guards_everything_but_health_and_readiness() {
    let dir = temp_dir("auth");
    let yaml = format!("{}http_server_config:\n  headers:\n    X-Frame-Options: deny\n", users_yaml());
    let server = start(app().router, opts(Some(web_config(&dir, &yaml)))).await;
    let a = server.addr;

    for path in ["/metrics", "/api/v1/features", "/", "/no/such/page"] {
        let r = fetch(a, path, None).await;
        assert_eq!(r.status, 401, "{path} without credentials: {r:?}");
        assert_eq!(r.header("www-authenticate"), Some("Basic realm=\"accord\""), "{path}");
        // Configured headers go on every response, refusals included.
        assert_eq!(r.header("x-frame-options"), Some("deny"), "{path}");
    }
    assert_eq!(fetch(a, "/metrics", Some(&basic("alice", "builder"))).await.status, 401, "wrong password");
    assert_eq!(fetch(a, "/metrics", Some(&basic("carol", "wonderland"))).await.status, 401, "unknown user");
    assert_eq!(fetch(a, "/metrics", Some("Bearer abc")).await.status, 401, "not basic");

    let r = fetch(a, "/metrics", Some(&basic("alice", "wonderland"))).await;
    assert_eq!(r.status, 200, "{r:?}");
    assert!(r.body.contains("accord_build_info"), "{}", r.body);
    assert_eq!(r.header("x-frame-options"), Some("deny"));
    // Cached now; still right, for both users.
    assert_eq!(fetch(a, "/metrics", Some(&basic("alice", "wonderland"))).await.status, 200);
    assert_eq!(fetch(a, "/api/v1/features", Some(&basic("bob", "builder"))).await.status, 200);

    for path in ["/healthz", "/readyz"] {
        let r = fetch(a, path, None).await;
        assert_eq!(r.status, 200, "{path} needs no credentials: {r:?}");
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_web_config_nothing_asks_for_credentials() {
    let server = start(app().router, opts(None)).await;
    assert_eq!(fetch(server.addr, "/metrics", None).await.status, 200);
    server.stop().await;
}

// ---------- TLS ----------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_with_a_ca_the_client_verifies() {
    let pki = Pki::new();
    let dir = temp_dir("tls");
    pki.write_server_files(&dir);
    let yaml = format!("tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n{}", users_yaml());
    let server = start(app().router, opts(Some(web_config(&dir, &yaml)))).await;
    let a = server.addr;

    let client = tls_client(&pki.ca_pem, None, &[]);
    let r = tls_get(&client, a, "/healthz", None).await.unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(tls_get(&client, a, "/metrics", None).await.unwrap().status, 401);
    let r = tls_get(&client, a, "/metrics", Some(&basic("alice", "wonderland"))).await.unwrap();
    assert_eq!(r.status, 200);
    assert!(r.body.contains("accord_build_info"));

    // A client trusting another CA refuses the server.
    let (_, other_ca) = ca("unrelated CA");
    assert!(tls_get(&tls_client(&other_ca, None, &[]), a, "/healthz", None).await.is_err());
    // Plain HTTP on the TLS port gets no HTTP answer.
    let plain = TcpStream::connect(a).await.unwrap();
    assert!(request(plain, "/healthz", None).await.is_err());
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutual_tls_requires_a_client_certificate_from_the_ca() {
    let pki = Pki::new();
    let dir = temp_dir("mtls");
    pki.write_server_files(&dir);
    let yaml = "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n  \
                client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: ca.crt\n";
    let server = start(app().router, opts(Some(web_config(&dir, yaml)))).await;
    let a = server.addr;

    let no_cert = tls_client(&pki.ca_pem, None, &[]);
    assert!(tls_get(&no_cert, a, "/metrics", None).await.is_err(), "no client certificate: no answer");
    let rogue = tls_client(&pki.ca_pem, Some((&pki.rogue_client_pem, &pki.rogue_client_key)), &[]);
    assert!(tls_get(&rogue, a, "/metrics", None).await.is_err(), "certificate from an unknown CA");
    let good = tls_client(&pki.ca_pem, Some((&pki.client_pem, &pki.client_key)), &[]);
    let r = tls_get(&good, a, "/metrics", None).await.unwrap();
    assert_eq!(r.status, 200, "{r:?}");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn other_client_auth_policies_and_allowed_sans() {
    let pki = Pki::new();
    let dir = temp_dir("policies");
    pki.write_server_files(&dir);
    let base = "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n";
    let no_cert = tls_client(&pki.ca_pem, None, &[]);
    let good = tls_client(&pki.ca_pem, Some((&pki.client_pem, &pki.client_key)), &[]);
    let rogue = tls_client(&pki.ca_pem, Some((&pki.rogue_client_pem, &pki.rogue_client_key)), &[]);

    // RequireAnyClientCert: some certificate, not verified against a CA.
    let yaml = format!("{base}  client_auth_type: RequireAnyClientCert\n");
    let server = start(app().router, opts(Some(web_config(&dir, &yaml)))).await;
    assert!(tls_get(&no_cert, server.addr, "/healthz", None).await.is_err());
    assert_eq!(tls_get(&rogue, server.addr, "/healthz", None).await.unwrap().status, 200);
    server.stop().await;

    // VerifyClientCertIfGiven: none is fine, a bad one is not.
    let yaml = format!("{base}  client_auth_type: VerifyClientCertIfGiven\n  client_ca_file: ca.crt\n");
    let server = start(app().router, opts(Some(web_config(&dir, &yaml)))).await;
    assert_eq!(tls_get(&no_cert, server.addr, "/healthz", None).await.unwrap().status, 200);
    assert_eq!(tls_get(&good, server.addr, "/healthz", None).await.unwrap().status, 200);
    assert!(tls_get(&rogue, server.addr, "/healthz", None).await.is_err());
    server.stop().await;

    // client_allowed_sans: the CA's client certificate names "prometheus".
    let mtls = format!("{base}  client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: ca.crt\n");
    let server =
        start(app().router, opts(Some(web_config(&dir, &format!("{mtls}  client_allowed_sans: [prometheus]\n")))))
            .await;
    assert_eq!(tls_get(&good, server.addr, "/healthz", None).await.unwrap().status, 200);
    server.stop().await;
    let server =
        start(app().router, opts(Some(web_config(&dir, &format!("{mtls}  client_allowed_sans: [grafana]\n"))))).await;
    assert!(tls_get(&good, server.addr, "/healthz", None).await.is_err(), "SAN not allowed");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limit_answers_429_beyond_the_burst_but_not_to_health() {
    let dir = temp_dir("ratelimit");
    let yaml = "rate_limit:\n  interval: 1h\n  burst: 3\n";
    let server = start(app().router, opts(Some(web_config(&dir, yaml)))).await;
    let mut codes = Vec::new();
    for _ in 0..5 {
        codes.push(fetch(server.addr, "/metrics", None).await.status);
    }
    assert_eq!(codes, [200, 200, 200, 429, 429]);
    assert_eq!(fetch(server.addr, "/healthz", None).await.status, 200);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_over_tls_when_enabled_and_only_then() {
    let pki = Pki::new();
    let dir = temp_dir("h2");
    pki.write_server_files(&dir);
    let yaml = format!("tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n{}", users_yaml());
    let server = start(app().router, opts(Some(web_config(&dir, &yaml)))).await;

    let conn = tls_client(&pki.ca_pem, None, &[b"h2", b"http/1.1"]);
    let tcp = TcpStream::connect(server.addr).await.unwrap();
    let tls = conn.connect(ServerName::try_from("localhost").unwrap(), tcp).await.unwrap();
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    let (h2, connection) = h2::client::handshake(tls).await.unwrap();
    let driver = tokio::spawn(connection);
    let mut h2 = h2.ready().await.unwrap();
    for (path, auth, want) in
        [("/healthz", None, 200), ("/metrics", None, 401), ("/metrics", Some(basic("bob", "builder")), 200)]
    {
        let mut req = axum::http::Request::get(format!("https://localhost{path}"));
        if let Some(a) = auth {
            req = req.header("authorization", a);
        }
        let (resp, _) = h2.send_request(req.body(()).unwrap(), true).unwrap();
        let resp = tokio::time::timeout(BOUND, resp).await.unwrap().unwrap();
        assert_eq!(resp.status().as_u16(), want, "{path} over HTTP/2");
        h2 = h2.ready().await.unwrap();
    }
    drop(h2);
    driver.abort();
    server.stop().await;

    // http2: false offers HTTP/1.1 only.
    let yaml =
        "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\nhttp_server_config:\n  http2: false\n";
    let server = start(app().router, opts(Some(web_config(&dir, yaml)))).await;
    let tcp = TcpStream::connect(server.addr).await.unwrap();
    let tls = conn.connect(ServerName::try_from("localhost").unwrap(), tcp).await.unwrap();
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"http/1.1"[..]));
    let r = request(tls, "/healthz", None).await.unwrap();
    assert_eq!(r.status, 200);
    server.stop().await;
}

// ---------- timeouts ----------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_and_slow_clients_are_dropped_after_the_read_timeout() {
    let pki = Pki::new();
    let dir = temp_dir("timeouts");
    pki.write_server_files(&dir);
    let short = |web| ServeOptions {
        read_timeout: Duration::from_millis(300),
        idle_timeout: Duration::from_secs(60),
        ..opts(web)
    };
    let plain = start(app().router, short(None)).await;

    // Connects and sends nothing.
    let mut silent = TcpStream::connect(plain.addr).await.unwrap();
    assert!(dropped_eventually(&mut silent).await, "a silent client is dropped");
    // Sends half a request and stops.
    let mut slow = TcpStream::connect(plain.addr).await.unwrap();
    slow.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n").await.unwrap();
    assert!(dropped_eventually(&mut slow).await, "a client that never finishes its headers is dropped");

    // A keep-alive connection may idle longer than the read timeout (the
    // idle timeout is a minute) and still be served.
    let mut ka = TcpStream::connect(plain.addr).await.unwrap();
    ka.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
    let mut buf = vec![0u8; 4096];
    let n = tokio::time::timeout(BOUND, ka.read(&mut buf)).await.unwrap().unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
    tokio::time::sleep(Duration::from_secs(1)).await;
    let r = request(ka, "/healthz", None).await.unwrap();
    assert_eq!(r.status, 200, "kept alive across an idle pause longer than the read timeout");
    plain.stop().await;

    // An idle keep-alive connection is closed after the idle timeout.
    let idle = start(
        app().router,
        ServeOptions { read_timeout: Duration::from_secs(10), idle_timeout: Duration::from_millis(300), ..opts(None) },
    )
    .await;
    let mut ka = TcpStream::connect(idle.addr).await.unwrap();
    ka.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
    let n = tokio::time::timeout(BOUND, ka.read(&mut buf)).await.unwrap().unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
    assert!(dropped_eventually(&mut ka).await, "an idle keep-alive connection is closed");
    idle.stop().await;

    // Over TLS: a client that never starts the handshake is dropped too.
    let yaml = "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n";
    let tls = start(app().router, short(Some(web_config(&dir, yaml)))).await;
    let mut silent = TcpStream::connect(tls.addr).await.unwrap();
    assert!(dropped_eventually(&mut silent).await, "a silent TLS client is dropped");
    tls.stop().await;
}

// ---------- limits ----------

/// 600 clients each hold a connection with half a request; the health
/// endpoints and authenticated scrapes keep answering.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn six_hundred_slow_clients_do_not_starve_healthz() {
    let dir = temp_dir("slowloris");
    let server = start(app().router, opts(Some(web_config(&dir, &users_yaml())))).await;
    let a = server.addr;
    let mut slow = Vec::with_capacity(600);
    for _ in 0..600 {
        let mut s = TcpStream::connect(a).await.unwrap();
        s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nX-Slow: ").await.unwrap();
        slow.push(s);
    }
    for _ in 0..20 {
        assert_eq!(fetch(a, "/healthz", None).await.status, 200);
        assert_eq!(fetch(a, "/readyz", None).await.status, 200);
    }
    assert_eq!(fetch(a, "/metrics", Some(&basic("alice", "wonderland"))).await.status, 200);
    drop(slow);
    server.stop().await;
}

/// More slow requests than the limit: the ones beyond it are shed with
/// 503 after a short wait, the rest are served once released, health keeps
/// answering, and nothing hangs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_beyond_the_limit_are_shed_not_hung() {
    const LIMIT: usize = 512;
    const EXTRA: usize = 20;
    let app = app();
    let o = ServeOptions { max_concurrent: LIMIT, queue_wait: Duration::from_millis(200), ..opts(None) };
    let server = start(app.router, o).await;
    let a = server.addr;

    let clients: Vec<_> =
        (0..LIMIT + EXTRA).map(|_| tokio::spawn(async move { fetch(a, "/slow", None).await.status })).collect();
    // All slots taken.
    tokio::time::timeout(BOUND, async {
        while app.in_slow.load(Ordering::SeqCst) < LIMIT {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("the limit's worth of requests reach the handler");
    assert_eq!(fetch(a, "/healthz", None).await.status, 200, "health answers at the limit");
    // The extra ones were shed: wait until that many clients finished.
    tokio::time::timeout(BOUND, async {
        while clients.iter().filter(|c| c.is_finished()).count() < EXTRA {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("requests beyond the limit are answered");
    assert_eq!(app.in_slow.load(Ordering::SeqCst), LIMIT, "never more than the limit in the handlers");
    app.gate.add_permits(LIMIT + EXTRA);
    let mut codes = std::collections::BTreeMap::new();
    for c in clients {
        let code = tokio::time::timeout(BOUND, c).await.expect("no hang").unwrap();
        *codes.entry(code).or_insert(0usize) += 1;
    }
    assert_eq!(codes.get(&200), Some(&LIMIT), "{codes:?}");
    assert_eq!(codes.get(&503), Some(&EXTRA), "{codes:?}");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_waits_briefly_for_a_slot() {
    let app = app();
    let o = ServeOptions { max_concurrent: 1, queue_wait: BOUND, ..opts(None) };
    let server = start(app.router, o).await;
    let a = server.addr;
    let first = tokio::spawn(async move { fetch(a, "/slow", None).await.status });
    tokio::time::timeout(BOUND, async {
        while app.in_slow.load(Ordering::SeqCst) < 1 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .unwrap();
    let second = tokio::spawn(async move { fetch(a, "/slow", None).await.status });
    // The second waits for the first's slot, then is served.
    app.gate.add_permits(2);
    assert_eq!(tokio::time::timeout(BOUND, first).await.unwrap().unwrap(), 200);
    assert_eq!(tokio::time::timeout(BOUND, second).await.unwrap().unwrap(), 200);
    server.stop().await;
}

// ---------- shutdown ----------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_lets_in_flight_requests_finish() {
    let app = app();
    let server = start(app.router, opts(None)).await;
    let a = server.addr;
    let in_flight = tokio::spawn(async move { fetch(a, "/slow", None).await.status });
    tokio::time::timeout(BOUND, async {
        while app.in_slow.load(Ordering::SeqCst) < 1 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .unwrap();
    server.cancel.cancel();
    // New connections are refused once the listener is closed.
    tokio::time::timeout(BOUND, async {
        while TcpStream::connect(a).await.is_ok() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("the listener closes");
    app.gate.add_permits(1);
    assert_eq!(tokio::time::timeout(BOUND, in_flight).await.unwrap().unwrap(), 200);
    tokio::time::timeout(BOUND, server.task).await.unwrap().unwrap().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_is_bounded_by_the_grace_period() {
    let app = app();
    let o = ServeOptions { grace: Duration::from_millis(200), ..opts(None) };
    let server = start(app.router, o).await;
    let a = server.addr;
    let stuck = tokio::spawn(async move { request(TcpStream::connect(a).await?, "/slow", None).await });
    tokio::time::timeout(BOUND, async {
        while app.in_slow.load(Ordering::SeqCst) < 1 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .unwrap();
    server.cancel.cancel();
    // The handler never gets its permit; serve still returns.
    tokio::time::timeout(BOUND, server.task).await.expect("bounded drain").unwrap().unwrap();
    stuck.abort();
}

// ---------- the binary ----------

#[test]
fn the_binary_refuses_a_bad_web_config_with_one_line_and_exit_2() {
    let dir = temp_dir("cli");
    let bad = dir.join("bad.yml");
    std::fs::write(&bad, "tls_server_config:\n  cert_file: /nonexistent/cert.pem\n  key_file: /nonexistent/key.pem\n")
        .unwrap();
    let bad_s = bad.to_str().unwrap();
    let catalog = concat!(env!("CARGO_MANIFEST_DIR"), "/accord.toml");
    for args in [
        vec!["demo", "--listen", "127.0.0.1:0", "--web-config-file", bad_s],
        vec!["run", "--config", catalog, "--brokers", "127.0.0.1:1", "--topic", "t", "--web-config-file", bad_s],
    ] {
        let (code, out, err) = common::accord(&args, b"");
        assert_eq!(code, 2, "{args:?}: {err}");
        assert!(out.is_empty(), "{out}");
        assert_eq!(err.trim().lines().count(), 1, "{err}");
        assert!(
            err.contains(&format!(
                "{bad_s}: tls_server_config.cert_file: cannot read /nonexistent/cert.pem: No such file or directory"
            )),
            "{err}"
        );
    }
    // An unknown field, through the environment variable.
    let unknown = dir.join("unknown.yml");
    std::fs::write(&unknown, "basic_auth_user:\n  alice: x\n").unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_accord"))
        .args(["demo", "--listen", "127.0.0.1:0"])
        .env("ACCORD_WEB_CONFIG_FILE", &unknown)
        .env("ACCORD_LOG", "warn")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(err.contains("unknown.yml: basic_auth_user: unknown field"), "{err}");
}
