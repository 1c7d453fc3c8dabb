//! End-to-end gate through Kafka (librdkafka's in-process mock cluster):
//! a `healthy-ramp` rollout keeps the gate `proceed` once enough samples
//! arrived, then a `fake-availability` rollout (the frontend exposes v2
//! before the API advertises it) turns it to `hold` and the Flagger
//! webhook from 200 to 412. Records carry event times near now, so the
//! live windows (wall clock) see them. Every wait is bounded.

mod common;

use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use accord::catalog::Catalog;
use accord::service::Service;
use accord::simulate::{Generator, Scenario, Timing};
use accord::source::kafka::KafkaConfig;
use rdkafka::config::ClientConfig;
use rdkafka::mocking::MockCluster;
use rdkafka::producer::{FutureProducer, FutureRecord};
use serde_json::Value;
use tokio_util::sync::CancellationToken;

const MIN_SAMPLES: u64 = 40;
const TOPIC: &str = "decisions";

async fn http(addr: std::net::SocketAddr, path: &str) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(format!("GET {path} HTTP/1.0\r\nHost: x\r\n\r\n").as_bytes()).await.unwrap();
    let mut buf = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut buf)).await.expect("http answer").unwrap();
    let text = String::from_utf8_lossy(&buf).into_owned();
    let code = text[9..12].parse().unwrap();
    let body = text.split_once("\r\n\r\n").map(|x| x.1).unwrap_or("").to_string();
    (code, body)
}

/// What a gate answer was decided over: the view's newest share, which
/// streams it lacks or holds stale, and the counts judged in the window.
/// The shares of one publication round carry one timestamp but may be
/// applied a few at a time, so `updated_at` alone does not tell two views
/// apart.
fn evidence(g: &Value) -> [Value; 8] {
    let v = &g["view"];
    [
        v["updated_at"].clone(),
        v["missing_streams"].clone(),
        v["stale_streams"].clone(),
        g["requests"].clone(),
        g["exposed_requests"].clone(),
        g["exposed_agreement"].clone(),
        g["incomplete_ratio"].clone(),
        g["old_path_agreement"].clone(),
    ]
}

/// The gate and its webhook, asked one after the other. The view moves in
/// steps (a share per commit interval), so a step may fall between the two
/// requests: they must agree when asked over the same view.
async fn gate(addr: std::net::SocketAddr) -> (Value, u16) {
    let q = format!("window=5m&min_samples={MIN_SAMPLES}&min_agreement=0.999&max_incomplete=0.01");
    let mut last = None;
    for _ in 0..20 {
        let (code, body) = http(addr, &format!("/api/v1/gates/checkout_v2?{q}")).await;
        assert_eq!(code, 200, "{body}");
        let g: Value = serde_json::from_str(&body).unwrap();
        let (hook, body) = http(addr, &format!("/api/v1/gates/checkout_v2/webhook?{q}")).await;
        let h: Value = serde_json::from_str(&body).unwrap();
        if evidence(&h) == evidence(&g) {
            assert_eq!(h["decision"], g["decision"], "the same view, the same decision");
            return (g, hook);
        }
        last = Some((g, h));
    }
    panic!("the view moved between every gate and webhook request: {last:?}");
}

/// Produces a scenario's records (event times over the last `duration_ms`)
/// and returns how many were sent.
async fn produce(brokers: &str, scenario: Scenario, duration_ms: i64, seed: u64) -> usize {
    let timing = Timing { window_ms: 5_000, allowed_lateness_ms: 2_000 };
    let base = chrono::Utc::now().timestamp_millis() - duration_ms;
    let gen = Generator::new(scenario, timing, 1_500.0, duration_ms, base, seed);
    let producer: FutureProducer =
        ClientConfig::new().set("bootstrap.servers", brokers).set("linger.ms", "5").create().unwrap();
    let mut pending = Vec::new();
    for rec in gen {
        let f =
            producer.send_result(FutureRecord::to(TOPIC).key(&rec.key).payload(&rec.json)).map_err(|(e, _)| e).unwrap();
        pending.push(f);
    }
    let n = pending.len();
    for f in pending {
        tokio::time::timeout(Duration::from_secs(10), f).await.expect("delivery").unwrap().map_err(|(e, _)| e).unwrap();
    }
    n
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gate_holds_on_fake_availability_and_proceeds_on_a_healthy_ramp() {
    let t0 = Instant::now();
    let cluster = MockCluster::new(1).unwrap();
    cluster.create_topic(TOPIC, 2, 1).unwrap();
    let brokers = cluster.bootstrap_servers();

    let catalog =
        Arc::new(Catalog::parse(Path::new("gate-e2e.toml"), &common::catalog_with("5s", "2s", "4s")).unwrap());
    let service = Service::new(catalog).unwrap();
    let status = service.status.clone();
    let listener = Service::bind("127.0.0.1:0".parse().unwrap()).await.unwrap();
    let addr = listener.local_addr().unwrap();
    let cancel = CancellationToken::new();
    let group = format!("accord-gate-e2e-{}", std::process::id());
    common::mock_internal_topics(&cluster, &group);
    let kafka = KafkaConfig {
        commit_interval: Duration::from_millis(500),
        sample_bytes: 1 << 20,
        ..KafkaConfig::new(&brokers, &[TOPIC], &group)
    };
    let run = tokio::spawn(service.run(kafka, listener, cancel.clone()));

    // Before any traffic: nothing to judge.
    let deadline = Instant::now() + Duration::from_secs(15);
    while http(addr, "/readyz").await.0 != 200 {
        assert!(Instant::now() < deadline, "not ready within 15 s");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (g, hook) = gate(addr).await;
    assert_eq!(g["decision"], "inconclusive", "{g}");
    assert_eq!(hook, 412);

    // Phase 1: a healthy ramp. Inconclusive until MIN_SAMPLES exposed
    // requests closed, then proceed, and it stays proceed.
    let sent = produce(&brokers, Scenario::HealthyRamp, 1_500, 7).await;
    let mut seen_proceed = 0;
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let (g, hook) = gate(addr).await;
        let exposed = g["exposed_requests"].as_u64().unwrap();
        if exposed >= MIN_SAMPLES {
            assert_eq!(g["decision"], "proceed", "healthy ramp must proceed: {g}");
            assert_eq!(hook, 200);
            assert_eq!(g["exposed_agreement"], 1.0);
            seen_proceed += 1;
        } else {
            assert_eq!(g["decision"], "inconclusive", "{g}");
            assert_eq!(hook, 412);
        }
        if status.records.load(Ordering::Relaxed) as usize >= sent && seen_proceed >= 3 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "healthy ramp: {} of {sent} records consumed, gate {g}",
            status.records.load(Ordering::Relaxed)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (g, _) = gate(addr).await;
    assert_eq!(g["decision"], "proceed", "{g}");
    let healthy_exposed = g["exposed_requests"].as_u64().unwrap();

    // Phase 2: the frontend exposes v2 before the API advertises it.
    let sent2 = produce(&brokers, Scenario::FakeAvailability, 1_500, 8).await;
    let deadline = Instant::now() + Duration::from_secs(15);
    let held = loop {
        let (g, hook) = gate(addr).await;
        if g["decision"] == "hold" {
            assert_eq!(hook, 412);
            break g;
        }
        assert!(Instant::now() < deadline, "no hold within 15 s: {g}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(held["exposed_requests"].as_u64().unwrap() > healthy_exposed);
    assert!(held["exposed_agreement"].as_f64().unwrap() < 0.999);
    assert!(held["divergences"]["exposure_without_capability"].as_u64().unwrap() > 0);
    let first = held["reasons"][0].as_str().unwrap();
    assert!(first.starts_with("exposed agreement "), "{first}");
    assert!(
        held["reasons"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r.as_str().unwrap().contains("frontend took the new path and api did not advertise v2")),
        "{held}"
    );

    // Let the rest arrive; the gate stays on hold.
    let deadline = Instant::now() + Duration::from_secs(10);
    while (status.records.load(Ordering::Relaxed) as usize) < sent + sent2 {
        assert!(Instant::now() < deadline, "fake availability records not all consumed");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (g, hook) = gate(addr).await;
    assert_eq!((g["decision"].as_str(), hook), (Some("hold"), 412), "{g}");

    // The story behind it: divergent requests with every layer's record.
    // The view takes what was judged with each commit round: the samples
    // of the last records arrive with the next round.
    let deadline = Instant::now() + Duration::from_secs(10);
    let d = loop {
        let (code, body) = http(addr, "/api/v1/features/checkout_v2/divergences?limit=5").await;
        assert_eq!(code, 200);
        let d: Value = serde_json::from_str(&body).unwrap();
        if d["divergent_requests"].as_array().unwrap().len() == 5 {
            break d;
        }
        assert!(Instant::now() < deadline, "fewer than 5 divergent requests after 10 s: {d}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let list = d["divergent_requests"].as_array().unwrap();
    let s = &list[0];
    let rid = s["request_id"].as_str().unwrap().to_string();
    assert_eq!(s["records"].as_array().unwrap().len(), 4, "{s}");
    for r in s["records"].as_array().unwrap() {
        assert_eq!(r["record"]["request_id"], rid.as_str(), "record as received: {r}");
    }
    let (code, feats) = http(addr, "/api/v1/features").await;
    assert_eq!(code, 200);
    let feats: Value = serde_json::from_str(&feats).unwrap();
    assert_ne!(feats["features"][0]["gate"]["decision"], "proceed");
    assert!(feats["features"][0]["layers"][0]["new_path_ratio"].as_f64().unwrap() > 0.0);
    let (code, page) = http(addr, "/").await;
    assert_eq!(code, 200);
    assert!(page.contains("checkout_v2") && page.contains("search.ranking"));
    assert!(page.contains(&rid), "status page shows the newest divergent request {rid}");

    cancel.cancel();
    tokio::time::timeout(Duration::from_secs(20), run).await.expect("service stops").unwrap().unwrap();
    drop(cluster);
    eprintln!("gate e2e took {:?}", t0.elapsed());
}
