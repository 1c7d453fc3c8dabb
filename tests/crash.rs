//! kill -9 mid-stream, then restart: no verdict is lost, and the verdicts
//! judged twice are bounded by what one commit interval covers. Runs the
//! real binary against librdkafka's mock cluster hosted by this test.

mod common;

use std::collections::HashMap;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use accord::catalog::Catalog;
use accord::export::verdicts::{VerdictLine, VerdictWriter};
use accord::pipeline::Pipeline;
use accord::replay::replay_stream;
use accord::simulate::{Generator, Scenario, Timing};
use accord::Features;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::mocking::MockCluster;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};

const RATE: f64 = 400.0;
const COMMIT_INTERVAL_S: f64 = 1.0;

/// Topic names, unique per run so a real broker can be reused.
struct Topics {
    decisions: String,
    verdicts: String,
    group: String,
}

fn spawn(brokers: &str, catalog: &Path, port: u16, t: &Topics) -> Child {
    Command::new(env!("CARGO_BIN_EXE_accord"))
        .args(["run", "--config", catalog.to_str().unwrap(), "--brokers", brokers])
        .args(["--topic", &t.decisions, "--group", &t.group, "--verdicts-topic", &t.verdicts])
        // No --handover-topic: as `accord run` runs by default, the state
        // goes to `<group>.accord-handover`, created by accord on a real
        // broker (by the test on the mock cluster, which cannot).
        .args(["--commit-interval", "1s"])
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .env("ACCORD_LOG", if common::log_dir().is_some() { "info" } else { "warn" })
        .stdout(Stdio::null())
        .stderr(log_file(port))
        .spawn()
        .unwrap()
}

/// The instance's log, kept in the test log directory when there is one.
fn log_file(port: u16) -> Stdio {
    match common::log_dir().and_then(|d| std::fs::File::create(d.join(format!("crash-{port}.log"))).ok()) {
        Some(f) => Stdio::from(f),
        None => Stdio::null(),
    }
}

fn wait_ready(port: u16) {
    let t = Instant::now();
    while common::http_get(port, "/readyz").map(|r| r.0) != Some(200) {
        assert!(t.elapsed() < Duration::from_secs(60), "instance never became ready");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_loses_no_verdict_and_bounds_duplicates() {
    // The mock cluster, or a real broker with ACCORD_TEST_BROKERS.
    let id = std::process::id();
    let topics = Topics {
        decisions: format!("crash-decisions-{id}"),
        verdicts: format!("crash-verdicts-{id}"),
        group: format!("crash-{id}"),
    };
    let cluster = match std::env::var("ACCORD_TEST_BROKERS") {
        Ok(_) => None,
        Err(_) => Some(MockCluster::new(1).unwrap()),
    };
    let brokers = match &cluster {
        Some(c) => {
            c.create_topic(&topics.decisions, 4, 1).unwrap();
            c.create_topic(&topics.verdicts, 1, 1).unwrap();
            common::mock_internal_topics(c, &topics.group);
            c.bootstrap_servers()
        }
        None => {
            let brokers = std::env::var("ACCORD_TEST_BROKERS").unwrap();
            let admin: rdkafka::admin::AdminClient<_> =
                ClientConfig::new().set("bootstrap.servers", &brokers).create().unwrap();
            use rdkafka::admin::{NewTopic, TopicReplication::Fixed};
            let specs = [NewTopic::new(&topics.decisions, 4, Fixed(1)), NewTopic::new(&topics.verdicts, 1, Fixed(1))];
            for r in admin.create_topics(&specs, &rdkafka::admin::AdminOptions::new()).await.unwrap() {
                r.unwrap();
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
            brokers
        }
    };
    let dir = std::env::temp_dir().join(format!("accord-crash-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let catalog_path = dir.join("crash.toml");
    std::fs::write(&catalog_path, common::catalog_with("20s", "2s", "15s")).unwrap();

    let port_a = common::free_port();
    let mut a = spawn(&brokers, &catalog_path, port_a, &topics);
    wait_ready(port_a);

    // Event times ahead of the wall clock (nothing closes by idleness),
    // records paced at RATE so a commit interval covers a known amount.
    let base = chrono::Utc::now().timestamp_millis() + 120_000;
    let stream: Vec<_> = Generator::new(
        Scenario::Mixed,
        Timing { window_ms: 20_000, allowed_lateness_ms: 2_000 },
        RATE,
        16_000,
        base,
        5,
    )
    .collect();
    let producer: FutureProducer =
        ClientConfig::new().set("bootstrap.servers", &brokers).set("linger.ms", "2").create().unwrap();
    let mut produced: Vec<(i32, i64, Vec<u8>)> = Vec::new();
    let start = Instant::now();
    let mut b: Option<(Child, u16)> = None;
    let mut killed_at = None;
    for rec in &stream {
        let due = Duration::from_millis(rec.emit_ms as u64);
        if let Some(wait) = due.checked_sub(start.elapsed()) {
            tokio::time::sleep(wait).await;
        }
        if killed_at.is_none() && start.elapsed() > Duration::from_secs(7) {
            a.kill().unwrap(); // SIGKILL
            a.wait().unwrap();
            killed_at = Some(produced.len());
            let port_b = common::free_port();
            b = Some((spawn(&brokers, &catalog_path, port_b, &topics), port_b));
        }
        let (p, o) = producer
            .send(FutureRecord::to(&topics.decisions).key(&rec.key).payload(&rec.json), Duration::from_secs(10))
            .await
            .map_err(|(e, _)| e)
            .unwrap();
        produced.push((p, o, rec.json.clone().into_bytes()));
    }
    // One complete far-future request per partition closes every join.
    let mut covered = std::collections::HashSet::new();
    for i in 0..200 {
        if covered.len() == 4 {
            break;
        }
        let id = format!("end-{i}");
        for l in ["frontend", "api", "analytics"] {
            let body = format!(
                r#"{{"request_id":"{id}","layer":"{l}","feature":"search.ranking","ts":{},"selected_flow":"ltr"}}"#,
                base + 600_000
            );
            let (p, o) = producer
                .send(FutureRecord::to(&topics.decisions).key(&id).payload(&body), Duration::from_secs(10))
                .await
                .map_err(|(e, _)| e)
                .unwrap();
            covered.insert(p);
            produced.push((p, o, body.into_bytes()));
        }
    }
    // (A is dead already; this only reaps it if the stream ended first.)
    let _ = a.kill();
    let _ = a.wait();
    let (mut b, port_b) = b.expect("A was killed mid-stream");

    // What a single uninterrupted judge says.
    let catalog = Arc::new(Catalog::parse(Path::new("crash.toml"), &common::catalog_with("20s", "2s", "15s")).unwrap());
    let features = Arc::new(Features::new(catalog));
    let mut by_part: HashMap<i32, Vec<(i64, &[u8])>> = HashMap::new();
    for (p, o, body) in &produced {
        by_part.entry(*p).or_default().push((*o, body));
    }
    let mut w = VerdictWriter::new(Vec::new(), features.clone());
    for recs in by_part.values_mut() {
        recs.sort_by_key(|r| r.0);
        let text: Vec<u8> = recs.iter().flat_map(|(_, b)| b.iter().copied().chain(std::iter::once(b'\n'))).collect();
        replay_stream(std::io::Cursor::new(text), &mut Pipeline::new(features.clone(), 0), &mut w, "p").unwrap();
    }
    let lines = String::from_utf8(w.into_inner()).unwrap();
    let expected: Vec<VerdictLine> = lines.lines().map(|l| serde_json::from_str(l).unwrap()).collect();

    // Wait for B to judge everything, then read the verdicts topic.
    let t = Instant::now();
    loop {
        let m = common::http_get(port_b, "/metrics").map(|r| common::parse_prometheus(&r.1)).unwrap_or_default();
        let open = m.get("accord_open_joins").copied().unwrap_or(-1.0);
        let seen = read_verdicts(&brokers, &topics.verdicts, Duration::from_secs(1));
        if open == 0.0 && expected.iter().all(|v| seen.contains_key(&(v.feature.clone(), v.request_id.clone()))) {
            break;
        }
        assert!(t.elapsed() < Duration::from_secs(90), "B did not judge everything: open joins {open}");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let suppressed = common::http_get(port_b, "/metrics")
        .map(|r| common::parse_prometheus(&r.1))
        .and_then(|m| m.get("accord_records_replayed_suppressed_total").copied())
        .unwrap_or(0.0);
    let _ = Command::new("kill").arg("-TERM").arg(b.id().to_string()).status();
    let _ = b.wait();

    let seen = read_verdicts(&brokers, &topics.verdicts, Duration::from_secs(3));
    let want: std::collections::HashSet<_> =
        expected.iter().map(|v| (v.feature.clone(), v.request_id.clone())).collect();
    let lost: Vec<_> = want.iter().filter(|k| !seen.contains_key(*k)).collect();
    assert!(lost.is_empty(), "verdicts lost: {}", lost.len());
    let duplicates: u32 = seen.values().map(|n| n - 1).sum();
    let extra: Vec<_> = seen.keys().filter(|k| !want.contains(*k)).collect();
    // One commit interval at RATE records/s covers about RATE/3.8 requests
    // (the state written before the kill is at most one interval old);
    // half an interval more for records in flight when the kill lands.
    let bound = (1.5 * COMMIT_INTERVAL_S * RATE / 3.8) as u32;
    eprintln!(
        "kill -9 after {} records: {} requests judged, 0 lost, {} judged twice (bound {bound}), {} unexpected, B re-read {} records silently",
        killed_at.unwrap_or(0),
        want.len(),
        duplicates,
        extra.len(),
        suppressed
    );
    assert!(duplicates <= bound, "{duplicates} duplicates exceed one commit interval's worth ({bound})");
    assert!(extra.len() as u32 <= bound, "{} verdicts for requests a single judge never closed", extra.len());
}

fn read_verdicts(brokers: &str, topic: &str, quiet: Duration) -> HashMap<(String, String), u32> {
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", "crash-verdict-reader")
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(topic, 0, Offset::Beginning).unwrap();
    c.assign(&tpl).unwrap();
    let mut out: HashMap<(String, String), u32> = HashMap::new();
    let mut last = Instant::now();
    let t = Instant::now();
    while last.elapsed() < quiet && t.elapsed() < Duration::from_secs(30) {
        if let Some(Ok(m)) = c.poll(Duration::from_millis(100)) {
            let v: serde_json::Value = serde_json::from_slice(m.payload().unwrap_or(b"{}")).unwrap();
            if let (Some(f), Some(r)) = (v["feature"].as_str(), v["request_id"].as_str()) {
                *out.entry((f.to_string(), r.to_string())).or_default() += 1;
            }
            last = Instant::now();
        }
    }
    out
}
