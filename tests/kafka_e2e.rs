//! End-to-end through Kafka: simulate a known mix → `accord run`'s
//! service → scrape `/metrics` → counters equal what the simulator
//! reports and what `accord replay` gives on the same records (each
//! partition replayed as one stream).
//!
//! By default the broker is librdkafka's in-process mock cluster. With
//! `ACCORD_TEST_BROKERS` (and `ACCORD_TEST_TOPIC`, a topic of 4
//! partitions) the same test runs against a real broker; `.ci/run` does
//! that with tansu.

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use accord::catalog::Catalog;
use accord::export::summary::Summary;
use accord::pipeline::Pipeline;
use accord::replay::replay_stream;
use accord::service::Service;
use accord::simulate::{Generator, Scenario, Timing};
use accord::source::kafka::KafkaConfig;
use accord::Features;
use rdkafka::config::ClientConfig;
use rdkafka::mocking::MockCluster;
use rdkafka::producer::{FutureProducer, FutureRecord};
use tokio_util::sync::CancellationToken;

/// One record of each reject reason (docs/reference.md#reject-reasons), an
/// empty message, and a record
/// without a key (judged normally: the key is routing, not schema).
fn bad_records() -> Vec<(Option<String>, Vec<u8>)> {
    let big = format!(r#"{{"request_id":"x","layer":"api","feature":"checkout_v2","pad":"{}"}}"#, "p".repeat(70_000));
    vec![
        (Some("bad-1".into()), br#"{"request_id": "x", "layer": "api""#.to_vec()),
        (Some("bad-2".into()), br#"{"layer":"api","feature":"checkout_v2"}"#.to_vec()),
        (Some("bad-3".into()), br#"{"request_id":"x","layer":"api","feature":"checkout_v2","ts":"soon"}"#.to_vec()),
        (Some("bad-4".into()), br#"{"request_id":"x","layer":"mobile","feature":"checkout_v2"}"#.to_vec()),
        (Some("bad-5".into()), br#"{"request_id":"x","layer":"api","feature":"nope"}"#.to_vec()),
        (Some("bad-6".into()), big.into_bytes()),
        (Some("bad-7".into()), Vec::new()),
        (None, br#"{"layer":"worker","feature":"checkout_v2"}"#.to_vec()),
    ]
}

async fn scrape(addr: std::net::SocketAddr, path: &str) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    // HTTP/1.0: no chunked transfer encoding to undo.
    s.write_all(format!("GET {path} HTTP/1.0\r\nHost: x\r\n\r\n").as_bytes()).await.unwrap();
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).await.unwrap();
    let text = String::from_utf8_lossy(&buf).into_owned();
    let code = text[9..12].parse().unwrap();
    let body = text.split_once("\r\n\r\n").map(|x| x.1).unwrap_or("").to_string();
    (code, body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn simulated_rollout_through_kafka_matches_simulator_and_replay() {
    let real = std::env::var("ACCORD_TEST_BROKERS").ok();
    let cluster = if real.is_none() { Some(MockCluster::new(1).unwrap()) } else { None };
    let topic = std::env::var("ACCORD_TEST_TOPIC").unwrap_or_else(|_| "decisions".into());
    let brokers = match (&real, &cluster) {
        (Some(b), _) => b.clone(),
        (None, Some(c)) => {
            c.create_topic(&topic, 4, 1).unwrap();
            c.bootstrap_servers()
        }
        _ => unreachable!(),
    };

    let catalog = Arc::new(Catalog::parse(Path::new("e2e.toml"), &common::catalog_with("5s", "3s", "4s")).unwrap());
    let features = Arc::new(Features::new(catalog.clone()));

    // Produce everything first, event times in the recent past; the
    // service then reads as fast as it can.
    let timing = Timing { window_ms: 5_000, allowed_lateness_ms: 3_000 };
    let duration_ms = 30_000;
    let base = chrono::Utc::now().timestamp_millis() - duration_ms - 60_000;
    let mut gen = Generator::new(Scenario::Mixed, timing, 300.0, duration_ms, base, 42);
    let producer: FutureProducer =
        ClientConfig::new().set("bootstrap.servers", &brokers).set("linger.ms", "5").create().unwrap();
    let mut by_partition: BTreeMap<i32, Vec<(i64, Vec<u8>)>> = BTreeMap::new();
    let mut pending = Vec::new();
    for (key, payload) in bad_records() {
        let mut r = FutureRecord::to(&topic).payload(&payload);
        if let Some(k) = &key {
            r = r.key(k);
        }
        let d = producer.send(r, Duration::from_secs(10)).await.expect("deliver");
        by_partition.entry(d.0).or_default().push((d.1, payload));
    }
    for rec in gen.by_ref() {
        let f = producer
            .send_result(FutureRecord::to(&topic).key(&rec.key).payload(&rec.json))
            .map_err(|(e, _)| e)
            .unwrap();
        pending.push((f, rec.json.into_bytes()));
        if pending.len() >= 2000 {
            for (f, body) in pending.drain(..) {
                let d = f.await.unwrap().map_err(|(e, _)| e).unwrap();
                by_partition.entry(d.0).or_default().push((d.1, body));
            }
        }
    }
    for (f, body) in pending.drain(..) {
        let d = f.await.unwrap().map_err(|(e, _)| e).unwrap();
        by_partition.entry(d.0).or_default().push((d.1, body));
    }
    let report = gen.report;
    let total: usize = by_partition.values().map(Vec::len).sum();
    assert!(by_partition.len() > 1, "records spread over partitions");

    // The service.
    let service = Service::new(catalog.clone()).unwrap();
    let metrics = service.metrics.clone();
    let status = service.status.clone();
    let listener = Service::bind("127.0.0.1:0".parse().unwrap()).await.unwrap();
    let addr = listener.local_addr().unwrap();
    let cancel = CancellationToken::new();
    let group = format!("accord-e2e-{}", std::process::id());
    if let Some(c) = &cluster {
        common::mock_internal_topics(c, &group);
    }
    let kafka = KafkaConfig {
        commit_interval: Duration::from_millis(500),
        sample_bytes: 1 << 20,
        ..KafkaConfig::new(&brokers, &[&topic], &group)
    };
    let run = tokio::spawn(service.run(kafka, listener, cancel.clone()));

    // Wait: every record consumed, then every join closed (idle
    // partitions advance with the wall clock after allowed_lateness).
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let consumed = status.records.load(Ordering::Relaxed) as usize;
        if consumed >= total && metrics.open_joins.get() == 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "timed out: consumed {consumed}/{total}, open joins {}",
            metrics.open_joins.get()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(scrape(addr, "/readyz").await.0, 200);
    let (code, body) = scrape(addr, "/metrics").await;
    assert_eq!(code, 200);
    let live = common::parse_prometheus(&body);

    // Replay the same records, one stream per partition in offset order.
    let replay_metrics = accord::export::Metrics::new(features.clone()).unwrap();
    let mut obs = (replay_metrics.observer(), Summary::new(features.clone()));
    for recs in by_partition.values_mut() {
        recs.sort_by_key(|(o, _)| *o);
        let mut text = Vec::new();
        for (_, body) in recs.iter() {
            // A blank line is no record in a file, but an empty message is
            // one on a topic (malformed JSON): write it as a JSON string,
            // which is malformed in the same way.
            text.extend_from_slice(if body.is_empty() { b"\"\"" } else { body });
            text.push(b'\n');
        }
        let mut p = Pipeline::new(features.clone(), 0);
        replay_stream(std::io::Cursor::new(text), &mut p, &mut obs, "partition").unwrap();
    }
    let replayed = common::parse_prometheus(&replay_metrics.render());

    let mut diffs = Vec::new();
    for (series, v) in &replayed {
        if common::CONTRACT_COUNTERS.contains(&common::metric_name(series)) {
            let got = live.get(series).copied().unwrap_or(f64::NAN);
            if got != *v {
                diffs.push(format!("{series}: live {got}, replay {v}"));
            }
        }
    }
    assert!(diffs.is_empty(), "live and replay differ:\n{}", diffs.join("\n"));

    // The simulator's expectations, exactly.
    for (feature, by) in &report.expected {
        for (pv, n) in by {
            let (path, verdict) = pv.split_once('/').unwrap();
            let series = format!(r#"accord_requests_total{{feature="{feature}",path="{path}",verdict="{verdict}"}}"#);
            assert_eq!(live.get(&series).copied(), Some(*n as f64), "{series}");
        }
    }
    let live_requests: f64 = live.iter().filter(|(k, _)| k.starts_with("accord_requests_total{")).map(|(_, v)| v).sum();
    assert_eq!(live_requests, report.requests as f64, "no unexpected verdicts");
    let late: f64 = live.iter().filter(|(k, _)| k.starts_with("accord_records_late_total{")).map(|(_, v)| v).sum();
    assert_eq!(late, report.late_records as f64);
    // Every reject reason once; the empty message is malformed JSON; the
    // keyless record lacks request_id.
    for (reason, n) in [
        ("malformed_json", 2.0),
        ("missing_field", 2.0),
        ("invalid_field", 1.0),
        ("unknown_layer", 1.0),
        ("unknown_feature", 1.0),
        ("too_large", 1.0),
    ] {
        assert_eq!(live[&format!(r#"accord_records_rejected_total{{reason="{reason}"}}"#)], n, "{reason}");
    }
    // Engine observability: commits are counted, lag is read-position lag.
    assert!(live[r#"accord_kafka_commits_total{result="ok"}"#] > 0.0, "commits counted");
    assert_eq!(live["accord_ready"], 1.0);
    // The summary of the replay agrees with its own metrics.
    let summary = serde_json::to_string(&obs.1.report()).unwrap();
    common::assert_summary_matches(&summary, &replayed, "kafka replay");

    cancel.cancel();
    tokio::time::timeout(Duration::from_secs(20), run).await.expect("service stops").unwrap().unwrap();
    drop(cluster);
}
