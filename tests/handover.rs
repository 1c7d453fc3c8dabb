//! Exact handover (docs/reference.md#commits-and-exact-handover): a graceful
//! stop or a rebalance neither loses
//! an open join nor judges a request twice, and the verdicts topic holds
//! each judged request once. The sum of every instance's counters must
//! equal `accord replay` of the same records, exactly.
//!
//! Runs on librdkafka's mock cluster; with `ACCORD_TEST_BROKERS` it runs
//! against a real broker (test topics created through the admin API), as
//! `accord run` runs by default: no handover topic is named, accord creates
//! `<group>.accord-handover` itself.

mod common;

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use accord::catalog::Catalog;
use accord::export::Metrics;
use accord::pipeline::Pipeline;
use accord::replay::replay_stream;
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

struct Instance {
    cancel: CancellationToken,
    handle: JoinHandle<Result<(), ServiceError>>,
    metrics: Metrics,
    status: Arc<SourceStatus>,
}

impl Instance {
    async fn start(b: &Broker, catalog: &Arc<Catalog>, topic: &str, group: &str, verdicts: &str) -> Instance {
        let service = Service::new(catalog.clone()).unwrap();
        let metrics = service.metrics.clone();
        let status = service.status.clone();
        let listener = Service::bind("127.0.0.1:0".parse().unwrap()).await.unwrap();
        let cancel = CancellationToken::new();
        if let Some(m) = &b.mock {
            common::mock_internal_topics(m, group);
        }
        let kafka = KafkaConfig {
            verdicts_topic: Some(verdicts.to_string()),
            commit_interval: Duration::from_millis(300),
            sample_bytes: 0,
            ..KafkaConfig::new(&b.brokers, &[topic], group)
        };
        common::init_log("handover");
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

/// Produces `recs`; returns (partition, offset, body) of each.
async fn produce(brokers: &str, topic: &str, recs: &[SimRecord]) -> Vec<(i32, i64, Vec<u8>)> {
    let p: FutureProducer =
        ClientConfig::new().set("bootstrap.servers", brokers).set("linger.ms", "5").create().unwrap();
    let mut futs = Vec::new();
    for r in recs {
        let f = p.send_result(FutureRecord::to(topic).key(&r.key).payload(&r.json)).map_err(|(e, _)| e).unwrap();
        futs.push((f, r.json.clone().into_bytes()));
    }
    let mut out = Vec::new();
    for (f, body) in futs {
        let (part, off) = f.await.unwrap().map_err(|(e, _)| e).unwrap();
        out.push((part, off, body));
    }
    out
}

/// One complete request per partition, far ahead in event time: it
/// advances every partition's watermark past every join (in the live run
/// and in the replay alike), so the test need not wait for wall-clock time.
async fn end_markers(brokers: &str, topic: &str, partitions: i32, ts: i64) -> Vec<(i32, i64, Vec<u8>)> {
    let mut out = Vec::new();
    let mut covered = std::collections::HashSet::new();
    let mut i = 0;
    while (covered.len() as i32) < partitions && i < 1000 {
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
        // Send the first to learn its partition; skip keys of covered ones.
        let first = produce(brokers, topic, &recs[..1]).await;
        let part = first[0].0;
        out.extend(first);
        out.extend(produce(brokers, topic, &recs[1..]).await);
        covered.insert(part);
    }
    out
}

fn contract(m: &Metrics) -> BTreeMap<String, f64> {
    common::parse_prometheus(&m.render())
        .into_iter()
        .filter(|(k, _)| common::CONTRACT_COUNTERS.contains(&common::metric_name(k)))
        .collect()
}

fn replay(features: &Arc<Features>, produced: &[(i32, i64, Vec<u8>)]) -> BTreeMap<String, f64> {
    let mut by_part: BTreeMap<i32, Vec<(i64, &[u8])>> = BTreeMap::new();
    for (p, o, b) in produced {
        by_part.entry(*p).or_default().push((*o, b));
    }
    let m = Metrics::new(features.clone()).unwrap();
    let mut obs = m.observer();
    for recs in by_part.values_mut() {
        recs.sort_by_key(|r| r.0);
        let mut text = Vec::new();
        for (_, b) in recs.iter() {
            text.extend_from_slice(b);
            text.push(b'\n');
        }
        replay_stream(std::io::Cursor::new(text), &mut Pipeline::new(features.clone(), 0), &mut obs, "p").unwrap();
    }
    contract(&m)
}

async fn wait_until(what: &str, limit: Duration, mut f: impl FnMut() -> bool) {
    let t = Instant::now();
    while !f() {
        assert!(t.elapsed() < limit, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Reads the verdicts topic to its end: `(feature, request_id) -> count`.
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
    let mut n = 0;
    let t = Instant::now();
    // Read what is there (at least `expect`), then a little longer for duplicates.
    let mut quiet_since = Instant::now();
    while t.elapsed() < Duration::from_secs(60) {
        match c.poll(Duration::from_millis(200)) {
            Some(Ok(m)) => {
                let v: serde_json::Value = serde_json::from_slice(m.payload().unwrap()).unwrap();
                *out.entry((v["feature"].as_str().unwrap().into(), v["request_id"].as_str().unwrap().into()))
                    .or_default() += 1;
                n += 1;
                quiet_since = Instant::now();
            }
            _ => {
                if n >= expect && quiet_since.elapsed() > Duration::from_secs(2) {
                    break;
                }
            }
        }
    }
    out
}

/// Handover states in the group's internal topic (which accord created on
/// a real broker, since no topic was named): the state the next owner
/// continued from lives there.
fn handover_states(brokers: &str, group: &str) -> usize {
    let topic = &accord::source::kafka::internal_topic_names(group)[0];
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", format!("handover-reader-{}", N.fetch_add(1, Ordering::Relaxed)))
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(topic, 0, Offset::Beginning).unwrap();
    c.assign(&tpl).unwrap();
    let (mut n, t, mut quiet_since) = (0, Instant::now(), Instant::now());
    while t.elapsed() < Duration::from_secs(30) && quiet_since.elapsed() < Duration::from_secs(2) {
        if let Some(Ok(m)) = c.poll(Duration::from_millis(200)) {
            if m.key().is_some_and(|k| k.starts_with(format!("{group}/").as_bytes())) {
                n += 1;
            }
            quiet_since = Instant::now();
        }
    }
    n
}

fn sum(a: &BTreeMap<String, f64>, b: &BTreeMap<String, f64>) -> BTreeMap<String, f64> {
    let mut out = a.clone();
    for (k, v) in b {
        *out.entry(k.clone()).or_default() += v;
    }
    out
}

fn assert_exact(live: &BTreeMap<String, f64>, replayed: &BTreeMap<String, f64>, ctx: &str) {
    let mut diffs = Vec::new();
    for (k, v) in replayed {
        let got = live.get(k).copied().unwrap_or(0.0);
        if got != *v {
            diffs.push(format!("{k}: instances {got}, replay {v}"));
        }
    }
    assert!(diffs.is_empty(), "{ctx}: {} differences:\n{}", diffs.len(), diffs.join("\n"));
}

fn total_requests(m: &BTreeMap<String, f64>) -> f64 {
    m.iter().filter(|(k, _)| k.starts_with("accord_requests_total{")).map(|(_, v)| v).sum()
}

struct Setup {
    broker: Broker,
    catalog: Arc<Catalog>,
    features: Arc<Features>,
    topic: String,
    verdicts: String,
    stream: Vec<SimRecord>,
    base: i64,
}

async fn setup() -> Setup {
    common::init_log("handover");
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_env("ACCORD_LOG").unwrap_or_else(|_| "warn".into()))
        .with_test_writer()
        .try_init();
    let broker = Broker::new();
    let catalog =
        Arc::new(Catalog::parse(Path::new("handover.toml"), &common::catalog_with("20s", "2s", "15s")).unwrap());
    let features = Arc::new(Features::new(catalog.clone()));
    let topic = broker.topic("handover-decisions", 4).await;
    let verdicts = broker.topic("handover-verdicts", 1).await;
    // No handover topic is named: the state goes to the group's internal
    // topic, which accord creates at start-up on a real broker (the mock
    // cluster cannot create topics: `Instance::start` makes it there).
    // Brokers refuse offset commits during a rebalance (the mock cluster
    // does) and some drop commit metadata (tansu does): that topic keeps the
    // state regardless.
    // Event times ahead of the wall clock: no partition's watermark moves
    // by wall-clock idleness during the test, so the cut lands with many
    // joins open (20 s windows) and the outcome is deterministic.
    let base = chrono::Utc::now().timestamp_millis() + 120_000;
    let stream: Vec<SimRecord> = Generator::new(
        Scenario::Mixed,
        Timing { window_ms: 20_000, allowed_lateness_ms: 2_000 },
        250.0,
        24_000,
        base,
        9,
    )
    .collect();
    Setup { broker, catalog, features, topic, verdicts, stream, base }
}

async fn finish(s: &Setup, produced: &mut Vec<(i32, i64, Vec<u8>)>) {
    produced.extend(end_markers(&s.broker.brokers, &s.topic, 4, s.base + 600_000).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_restart_judges_every_request_once() {
    let s = setup().await;
    let group = format!("restart-{}", std::process::id());
    let half = s.stream.len() / 2;
    let mut produced = produce(&s.broker.brokers, &s.topic, &s.stream[..half]).await;

    let a = Instance::start(&s.broker, &s.catalog, &s.topic, &group, &s.verdicts).await;
    let n = produced.len() as u64;
    wait_until("instance A to consume the first half", Duration::from_secs(60), || {
        a.status.records.load(Ordering::Relaxed) >= n
    })
    .await;
    let open_at_cut = a.metrics.open_joins.get();
    assert!(open_at_cut > 20, "the cut should land with joins open ({open_at_cut})");
    let a_metrics = a.stop().await;
    assert_eq!(a_metrics.open_joins.get(), 0, "a stopped instance holds no joins");

    let b = Instance::start(&s.broker, &s.catalog, &s.topic, &group, &s.verdicts).await;
    produced.extend(produce(&s.broker.brokers, &s.topic, &s.stream[half..]).await);
    finish(&s, &mut produced).await;
    let b_metrics = b.metrics.clone();
    let expected = replay(&s.features, &produced);
    let want = total_requests(&expected);
    wait_until("instance B to judge everything", Duration::from_secs(60), || {
        total_requests(&sum(&contract(&a_metrics), &contract(&b_metrics))) >= want && b_metrics.open_joins.get() == 0
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let suppressed = b_metrics.replayed_suppressed.get();
    let b_metrics = b.stop().await;
    let live = sum(&contract(&a_metrics), &contract(&b_metrics));
    if expected.iter().any(|(k, v)| live.get(k).copied().unwrap_or(0.0) != *v) {
        eprintln!("restart: {}", common::explain_verdicts(&s.broker.brokers, &s.verdicts, &produced, &["analytics"]));
    }
    assert_exact(&live, &expected, "restart");
    assert!(suppressed > 0, "B re-read and suppressed the records of A's open joins");
    eprintln!("restart: {open_at_cut} joins open at the cut, {suppressed} records re-read silently by B, {want} requests judged once");

    let verdicts = read_verdicts(&s.broker.brokers, &s.verdicts, want as usize);
    assert_eq!(verdicts.len() as f64, want, "every judged request is on the verdicts topic");
    let dup: Vec<_> = verdicts.iter().filter(|(_, n)| **n > 1).collect();
    assert!(dup.is_empty(), "duplicated verdicts: {:?}", &dup[..dup.len().min(5)]);
    assert!(handover_states(&s.broker.brokers, &group) > 0, "handover states in {group}.accord-handover");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rebalance_in_and_out_judges_every_request_once() {
    let s = setup().await;
    let group = format!("rebalance-{}", std::process::id());
    let third = s.stream.len() / 3;
    let a = Instance::start(&s.broker, &s.catalog, &s.topic, &group, &s.verdicts).await;
    let mut produced = produce(&s.broker.brokers, &s.topic, &s.stream[..third]).await;
    let n1 = produced.len() as u64;
    wait_until("A to consume the first third", Duration::from_secs(60), || {
        a.status.records.load(Ordering::Relaxed) >= n1
    })
    .await;

    // B joins: the group rebalances, A hands over some partitions.
    let b = Instance::start(&s.broker, &s.catalog, &s.topic, &group, &s.verdicts).await;
    wait_until("B to get partitions", Duration::from_secs(60), || b.status.assigned.load(Ordering::Relaxed)).await;
    produced.extend(produce(&s.broker.brokers, &s.topic, &s.stream[third..2 * third]).await);
    let n2 = produced.len() as u64;
    // Records judged, not re-read: after the rebalance each instance
    // silently re-reads what the previous owner judged but had not
    // committed, and `records` counts those too, so A's re-reads alone
    // could reach `n2` before B had judged anything. (`records` first:
    // the judging thread adds to it before the suppressed count, so this
    // order can only undercount.)
    let judged = |i: &Instance| {
        let records = i.status.records.load(Ordering::Relaxed);
        records.saturating_sub(i.metrics.replayed_suppressed.get())
    };
    wait_until("A and B to judge the second third, B some of it", Duration::from_secs(60), || {
        judged(&a) + judged(&b) >= n2 && judged(&b) > 0
    })
    .await;

    // B leaves: A takes its partitions back from B's handover state.
    let b_metrics = b.stop().await;
    produced.extend(produce(&s.broker.brokers, &s.topic, &s.stream[2 * third..]).await);
    finish(&s, &mut produced).await;
    let expected = replay(&s.features, &produced);
    let want = total_requests(&expected);
    let a_metrics = a.metrics.clone();
    wait_until("A to judge everything", Duration::from_secs(60), || {
        total_requests(&sum(&contract(&a_metrics), &contract(&b_metrics))) >= want && a_metrics.open_joins.get() == 0
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let a_metrics = a.stop().await;
    let live = sum(&contract(&a_metrics), &contract(&b_metrics));
    if expected.iter().any(|(k, v)| live.get(k).copied().unwrap_or(0.0) != *v) {
        eprintln!("rebalance: {}", common::explain_verdicts(&s.broker.brokers, &s.verdicts, &produced, &["analytics"]));
    }
    assert_exact(&live, &expected, "rebalance");
    eprintln!(
        "rebalance: {want} requests judged once; rebalances seen by A: {}, records re-read silently: A {} B {}",
        a_metrics.rebalances.get(),
        a_metrics.replayed_suppressed.get(),
        b_metrics.replayed_suppressed.get()
    );
    let verdicts = read_verdicts(&s.broker.brokers, &s.verdicts, want as usize);
    assert_eq!(verdicts.len() as f64, want);
    assert!(verdicts.values().all(|n| *n == 1), "a verdict was produced twice");
    assert!(handover_states(&s.broker.brokers, &group) > 0, "handover states in {group}.accord-handover");
}
