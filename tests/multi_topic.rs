//! Several topics as one set of streams: the web tier logs to one topic,
//! the backend to another, both keyed by request id with equal partition
//! counts. Partition `p` of both topics is one stream, so a request whose
//! frontend record is in one topic and whose worker record is in the other
//! is joined — exactly as `accord replay --merge` joins the two topics'
//! partition `p` kept as files. Also across a graceful restart and a
//! rebalance, with no handover flags.
//!
//! Runs on librdkafka's mock cluster; with `ACCORD_TEST_BROKERS` against a
//! real broker (`.ci/run` does that with tansu).

mod common;

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use accord::catalog::Catalog;
use accord::export::Metrics;
use accord::replay::{replay, ReplayOptions, Source};
use accord::service::{Service, ServiceError};
use accord::simulate::{Generator, Scenario, SimRecord, Timing};
use accord::source::kafka::{KafkaConfig, SourceStatus};
use accord::Features;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::mocking::MockCluster;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

static N: AtomicU32 = AtomicU32::new(0);
const PARTITIONS: i32 = 4;
/// The web tier's layers; the others log to the backend topic.
const WEB: [&str; 2] = ["frontend", "api"];

struct Broker {
    mock: Option<MockCluster<'static, rdkafka::producer::DefaultProducerContext>>,
    brokers: String,
}

impl Broker {
    fn new() -> Broker {
        match std::env::var("ACCORD_TEST_BROKERS") {
            Ok(b) => Broker { mock: None, brokers: b },
            Err(_) => {
                let m = MockCluster::new(1).unwrap();
                let brokers = m.bootstrap_servers();
                Broker { mock: Some(m), brokers }
            }
        }
    }

    async fn topic(&self, base: &str, partitions: i32) -> String {
        let name = format!("{base}-{}-{}", std::process::id(), N.fetch_add(1, Ordering::Relaxed));
        match &self.mock {
            Some(m) => m.create_topic(&name, partitions, 1).unwrap(),
            None => {
                let admin: AdminClient<_> =
                    ClientConfig::new().set("bootstrap.servers", &self.brokers).create().unwrap();
                let r = admin
                    .create_topics(
                        &[NewTopic::new(&name, partitions, TopicReplication::Fixed(1))],
                        &AdminOptions::new(),
                    )
                    .await
                    .unwrap();
                for x in r {
                    x.unwrap();
                }
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
        name
    }
}

/// A produced record: (topic index, partition, offset, body).
type Produced = (usize, i32, i64, Vec<u8>);

fn layer_of(json: &str) -> &str {
    json.split("\"layer\":\"").nth(1).and_then(|s| s.split('"').next()).unwrap_or("")
}

/// Produces each record to the web or the backend topic by its layer,
/// keyed by request id, in order.
async fn produce(brokers: &str, topics: &[String; 2], recs: &[SimRecord]) -> Vec<Produced> {
    let p: FutureProducer =
        ClientConfig::new().set("bootstrap.servers", brokers).set("linger.ms", "5").create().unwrap();
    let mut futs = Vec::new();
    for r in recs {
        let t = usize::from(!WEB.contains(&layer_of(&r.json)));
        let f = p.send_result(FutureRecord::to(&topics[t]).key(&r.key).payload(&r.json)).map_err(|(e, _)| e).unwrap();
        futs.push((t, f, r.json.clone().into_bytes()));
    }
    let mut out = Vec::new();
    for (t, f, body) in futs {
        let (part, off) = f.await.unwrap().map_err(|(e, _)| e).unwrap();
        out.push((t, part, off, body));
    }
    out
}

/// One complete request per partition, far ahead in event time, split over
/// both topics: it advances every stream's watermark past every join (live
/// and in the replay alike).
async fn end_markers(brokers: &str, topics: &[String; 2], ts: i64) -> Vec<Produced> {
    let mut out = Vec::new();
    let mut covered = std::collections::HashSet::new();
    let mut i = 0;
    while (covered.len() as i32) < PARTITIONS && i < 1000 {
        let id = format!("end-marker-{i}");
        i += 1;
        let recs: Vec<SimRecord> = ["frontend", "api", "analytics"]
            .iter()
            .map(|l| SimRecord {
                emit_ms: 0,
                key: id.clone(),
                json: format!(r#"{{"request_id":"{id}","layer":"{l}","feature":"search.ranking","ts":{ts},"selected_flow":"ltr"}}"#),
            })
            .collect();
        let sent = produce(brokers, topics, &recs).await;
        covered.insert(sent[0].1);
        out.extend(sent);
    }
    out
}

/// `accord replay --merge` of each partition's two topic files, summed
/// over partitions: the contract counters.
fn replay_merged(features: &Arc<Features>, produced: &[Produced]) -> BTreeMap<String, f64> {
    let dir =
        std::env::temp_dir().join(format!("accord-multi-{}-{}", std::process::id(), N.fetch_add(1, Ordering::Relaxed)));
    std::fs::create_dir_all(&dir).unwrap();
    let m = Metrics::new(features.clone()).unwrap();
    let mut obs = m.observer();
    for p in 0..PARTITIONS {
        let files: Vec<Source> = (0..2)
            .map(|t| {
                let mut recs: Vec<&Produced> = produced.iter().filter(|r| r.0 == t && r.1 == p).collect();
                recs.sort_by_key(|r| r.2);
                let text: Vec<&[u8]> = recs.iter().map(|r| &r.3[..]).collect();
                let path = dir.join(format!("p{p}-t{t}.jsonl"));
                std::fs::write(&path, text.join(&b"\n"[..])).unwrap();
                Source::File(path)
            })
            .collect();
        replay(&files, features, ReplayOptions { merge: true, ..Default::default() }, &mut obs).unwrap();
    }
    contract(&m)
}

fn contract(m: &Metrics) -> BTreeMap<String, f64> {
    common::parse_prometheus(&m.render())
        .into_iter()
        .filter(|(k, _)| common::CONTRACT_COUNTERS.contains(&common::metric_name(k)))
        .collect()
}

fn sum(a: &BTreeMap<String, f64>, b: &BTreeMap<String, f64>) -> BTreeMap<String, f64> {
    let mut out = a.clone();
    for (k, v) in b {
        *out.entry(k.clone()).or_default() += v;
    }
    out
}

fn total_requests(m: &BTreeMap<String, f64>) -> f64 {
    m.iter().filter(|(k, _)| k.starts_with("accord_requests_total{")).map(|(_, v)| v).sum()
}

fn assert_exact(live: &BTreeMap<String, f64>, replayed: &BTreeMap<String, f64>, ctx: &str) {
    let diffs: Vec<String> = replayed
        .iter()
        .filter_map(|(k, v)| {
            let got = live.get(k).copied().unwrap_or(0.0);
            (got != *v).then(|| format!("{k}: live {got}, replay --merge {v}"))
        })
        .collect();
    assert!(diffs.is_empty(), "{ctx}: {} differences:\n{}", diffs.len(), diffs.join("\n"));
    assert!(total_requests(replayed) > 100.0, "{ctx}: the stream judged requests");
}

async fn wait_until(what: &str, limit: Duration, mut f: impl FnMut() -> bool) {
    let t = Instant::now();
    while !f() {
        assert!(t.elapsed() < limit, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

struct Instance {
    cancel: CancellationToken,
    handle: JoinHandle<Result<(), ServiceError>>,
    metrics: Metrics,
    status: Arc<SourceStatus>,
}

impl Instance {
    async fn start(b: &Broker, catalog: &Arc<Catalog>, topics: &[String; 2], group: &str, verdicts: &str) -> Instance {
        if let Some(m) = &b.mock {
            common::mock_internal_topics(m, group);
        }
        let service = Service::new(catalog.clone()).unwrap();
        let (metrics, status) = (service.metrics.clone(), service.status.clone());
        let listener = Service::bind("127.0.0.1:0".parse().unwrap()).await.unwrap();
        let cancel = CancellationToken::new();
        // No handover flags: accord keeps its state in topics named after
        // the group.
        let kafka = KafkaConfig {
            verdicts_topic: Some(verdicts.to_string()),
            commit_interval: Duration::from_millis(300),
            sample_bytes: 1 << 20,
            ..KafkaConfig::new(&b.brokers, &[&topics[0], &topics[1]], group)
        };
        common::init_log("multi_topic");
        let handle = tokio::spawn(common::instrumented(
            &common::next_instance_name(),
            service.run(kafka, listener, cancel.clone()),
        ));
        Instance { cancel, handle, metrics, status }
    }

    async fn stop(self) -> Metrics {
        self.cancel.cancel();
        tokio::time::timeout(Duration::from_secs(30), self.handle).await.expect("stops in time").unwrap().unwrap();
        self.metrics
    }
}

fn read_verdicts(brokers: &str, topic: &str, expect: usize) -> HashMap<(String, String), u32> {
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", format!("verdict-reader-{}", N.fetch_add(1, Ordering::Relaxed)))
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(topic, 0, Offset::Beginning).unwrap();
    c.assign(&tpl).unwrap();
    let mut out: HashMap<(String, String), u32> = HashMap::new();
    let (mut n, t, mut quiet_since) = (0, Instant::now(), Instant::now());
    while t.elapsed() < Duration::from_secs(60) {
        match c.poll(Duration::from_millis(200)) {
            Some(Ok(m)) => {
                let v: serde_json::Value = serde_json::from_slice(m.payload().unwrap()).unwrap();
                *out.entry((v["feature"].as_str().unwrap().into(), v["request_id"].as_str().unwrap().into()))
                    .or_default() += 1;
                n += 1;
                quiet_since = Instant::now();
            }
            _ if n >= expect && quiet_since.elapsed() > Duration::from_secs(2) => break,
            _ => {}
        }
    }
    out
}

fn setup_catalog() -> (Arc<Catalog>, Arc<Features>) {
    let catalog = Arc::new(Catalog::parse(Path::new("multi.toml"), &common::catalog_with("20s", "2s", "15s")).unwrap());
    let features = Arc::new(Features::new(catalog.clone()));
    (catalog, features)
}

fn stream(base: i64, seed: u64) -> Vec<SimRecord> {
    Generator::new(Scenario::Mixed, Timing { window_ms: 20_000, allowed_lateness_ms: 2_000 }, 250.0, 16_000, base, seed)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_topics_judge_like_replay_merge_across_restart_and_rebalance() {
    let broker = Broker::new();
    let (catalog, features) = setup_catalog();
    let topics = [broker.topic("multi-web", PARTITIONS).await, broker.topic("multi-backend", PARTITIONS).await];
    let verdicts = broker.topic("multi-verdicts", 1).await;
    let group = format!("multi-{}", std::process::id());
    // Event times ahead of the wall clock (within the catalog's bad-clock
    // limit): no stream's watermark moves by idleness during the test, so
    // cuts land with joins open and the outcome is deterministic.
    let base = chrono::Utc::now().timestamp_millis() + 120_000;
    let recs = stream(base, 11);
    let third = recs.len() / 3;

    // A judges the first third, then stops (SIGTERM's path).
    let mut produced = produce(&broker.brokers, &topics, &recs[..third]).await;
    let a = Instance::start(&broker, &catalog, &topics, &group, &verdicts).await;
    let n = produced.len() as u64;
    wait_until("A to consume the first third", Duration::from_secs(60), || {
        a.status.records.load(Ordering::Relaxed) >= n
    })
    .await;
    assert!(a.metrics.open_joins.get() > 10, "the cut lands with joins open");
    let a_metrics = a.stop().await;

    // B takes over; C joins (rebalance) and leaves again.
    let b = Instance::start(&broker, &catalog, &topics, &group, &verdicts).await;
    produced.extend(produce(&broker.brokers, &topics, &recs[third..2 * third]).await);
    let n2 = produced.len() as u64;
    wait_until("B to consume the second third", Duration::from_secs(60), || {
        b.status.records.load(Ordering::Relaxed) >= n2 - n
    })
    .await;
    let c = Instance::start(&broker, &catalog, &topics, &group, &verdicts).await;
    wait_until("C to get streams", Duration::from_secs(60), || c.status.assigned.load(Ordering::Relaxed)).await;
    produced.extend(produce(&broker.brokers, &topics, &recs[2 * third..]).await);
    let n3 = produced.len() as u64;
    wait_until("B and C to consume everything", Duration::from_secs(60), || {
        b.status.records.load(Ordering::Relaxed) + c.status.records.load(Ordering::Relaxed) >= n3 - n
    })
    .await;
    let c_metrics = c.stop().await;
    produced.extend(end_markers(&broker.brokers, &topics, base + 600_000).await);

    let expected = replay_merged(&features, &produced);
    let want = total_requests(&expected);
    let b_metrics = b.metrics.clone();
    wait_until("every request to be judged", Duration::from_secs(60), || {
        let live = sum(&sum(&contract(&a_metrics), &contract(&b_metrics)), &contract(&c_metrics));
        total_requests(&live) >= want && b_metrics.open_joins.get() == 0
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let b_metrics = b.stop().await;
    let live = sum(&sum(&contract(&a_metrics), &contract(&b_metrics)), &contract(&c_metrics));
    assert_exact(&live, &expected, "restart and rebalance");
    // Requests with records in both topics were joined across them.
    let complete: f64 = live
        .iter()
        .filter(|(k, _)| {
            k.starts_with("accord_requests_total{")
                && k.contains("feature=\"checkout_v2\"")
                && !k.contains("incomplete")
        })
        .map(|(_, v)| v)
        .sum();
    assert!(complete > 50.0, "checkout_v2 requests joined across both topics: {complete}");

    let verdict_counts = read_verdicts(&broker.brokers, &verdicts, want as usize);
    assert_eq!(verdict_counts.len() as f64, want, "every judged request is on the verdicts topic");
    let dup: Vec<_> = verdict_counts.iter().filter(|(_, n)| **n > 1).collect();
    assert!(dup.is_empty(), "duplicated verdicts: {:?}", &dup[..dup.len().min(5)]);
}

/// A topic whose partition has been read to the end is not waited for.
/// librdkafka reports the end of a partition only with the fetch after the
/// one that brought its last records, and a broker with nothing new holds
/// that fetch for `fetch.wait.max.ms`; the stream must not sit out that
/// long-poll (here 20 s, with `max_topic_idle` at 5 minutes) before it
/// judges the other topic's later records. Mock cluster only: it is the
/// broker whose long-poll the test controls.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_topic_read_to_its_end_is_not_waited_for() {
    if std::env::var_os("ACCORD_TEST_BROKERS").is_some() {
        return;
    }
    let broker = Broker::new();
    let text = common::catalog_with("20s", "2s", "15s").replace("max_topic_idle = \"1s\"", "max_topic_idle = \"5m\"");
    let catalog = Arc::new(Catalog::parse(Path::new("multi.toml"), &text).unwrap());
    let topics = [broker.topic("caught-up-web", 1).await, broker.topic("caught-up-backend", 1).await];
    let verdicts = broker.topic("caught-up-verdicts", 1).await;
    let group = format!("caught-up-{}", std::process::id());
    // The web topic's records go on in event time past the backend's last.
    let base = chrono::Utc::now().timestamp_millis() + 120_000;
    let rec = |i: i64, layer: &str, ts: i64| SimRecord {
        emit_ms: 0,
        key: format!("r-{i}"),
        json: format!(r#"{{"request_id":"r-{i}","layer":"{layer}","feature":"checkout_v2","ts":{ts}}}"#),
    };
    let mut recs: Vec<SimRecord> = (0..100).map(|i| rec(i, "frontend", base + 10 * i)).collect();
    recs.extend((0..50).map(|i| rec(i, "worker", base + 10 * i + 5)));
    let n = produce(&broker.brokers, &topics, &recs).await.len() as u64;

    if let Some(m) = &broker.mock {
        common::mock_internal_topics(m, &group);
    }
    let service = Service::new(catalog.clone()).unwrap();
    let status = service.status.clone();
    let listener = Service::bind("127.0.0.1:0".parse().unwrap()).await.unwrap();
    let cancel = CancellationToken::new();
    let kafka = KafkaConfig {
        verdicts_topic: Some(verdicts),
        properties: vec![("fetch.wait.max.ms".into(), "20000".into())],
        ..KafkaConfig::new(&broker.brokers, &[&topics[0], &topics[1]], &group)
    };
    common::init_log("multi_topic");
    let handle = tokio::spawn(service.run(kafka, listener, cancel.clone()));
    // Group join and the first fetch take a few seconds on the mock
    // cluster; the end-of-partition event would take 20 s more.
    wait_until("every record to be judged before the long-poll ends", Duration::from_secs(15), || {
        status.records.load(Ordering::Relaxed) >= n
    })
    .await;
    cancel.cancel();
    tokio::time::timeout(Duration::from_secs(30), handle).await.expect("stops in time").unwrap().unwrap();
}
