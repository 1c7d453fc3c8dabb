//! One accord across many instances: three instances in one consumer group
//! each answer the gate, features and divergences APIs for the whole group
//! — the same figures from any instance, equal to `accord replay` of the
//! same records — again after one instance restarts, and after all stop and
//! one starts fresh (it rebuilds the last hour from the stats topic). Each
//! instance's share of the view equals its own Prometheus counters.
//!
//! Runs on librdkafka's mock cluster; with `ACCORD_TEST_BROKERS` against a
//! real broker (`.ci/run` does that with tansu).

mod common;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use accord::catalog::Catalog;
use accord::export::Metrics;
use accord::join::{Closed, Observer};
use accord::judge::{RequestPath, Verdict};
use accord::pipeline::Pipeline;
use accord::replay::replay_stream;
use accord::service::{Service, ServiceError};
use accord::simulate::{Generator, Scenario, SimRecord, Timing};
use accord::source::kafka::{KafkaConfig, SourceStatus};
use accord::Features;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::config::ClientConfig;
use rdkafka::mocking::MockCluster;
use rdkafka::producer::{FutureProducer, FutureRecord};
use serde_json::Value;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

static N: AtomicU32 = AtomicU32::new(0);
const PARTITIONS: i32 = 6;

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
                for r in admin
                    .create_topics(
                        &[NewTopic::new(&name, partitions, TopicReplication::Fixed(1))],
                        &AdminOptions::new(),
                    )
                    .await
                    .unwrap()
                {
                    r.unwrap();
                }
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
        name
    }
}

struct Instance {
    name: String,
    cancel: CancellationToken,
    handle: JoinHandle<Result<(), ServiceError>>,
    metrics: Metrics,
    status: Arc<SourceStatus>,
    addr: SocketAddr,
}

impl Instance {
    async fn start(b: &Broker, catalog: &Arc<Catalog>, topic: &str, group: &str, name: &str) -> Instance {
        if let Some(m) = &b.mock {
            common::mock_internal_topics(m, group);
        }
        let service = Service::new(catalog.clone()).unwrap();
        let (metrics, status) = (service.metrics.clone(), service.status.clone());
        let listener = Service::bind("127.0.0.1:0".parse().unwrap()).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let cancel = CancellationToken::new();
        let kafka = KafkaConfig {
            commit_interval: Duration::from_millis(300),
            sample_bytes: 1 << 20,
            instance_id: Some(name.to_string()),
            ..KafkaConfig::new(&b.brokers, &[topic], group)
        };
        common::init_log("global_view");
        let handle = tokio::spawn(common::instrumented(name, service.run(kafka, listener, cancel.clone())));
        Instance { name: name.to_string(), cancel, handle, metrics, status, addr }
    }

    async fn stop(self) {
        self.cancel.cancel();
        tokio::time::timeout(Duration::from_secs(30), self.handle).await.expect("stops in time").unwrap().unwrap();
    }

    fn get(&self, path: &str) -> Value {
        let port = self.addr.port();
        let (code, body) = common::http_get(port, path).unwrap_or_else(|| panic!("{path}: no answer"));
        assert_eq!(code, 200, "{path}: {body}");
        serde_json::from_str(&body).unwrap()
    }
}

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

/// One complete request per partition, far ahead in event time: every
/// stream's watermark passes every join.
async fn end_markers(brokers: &str, topic: &str, ts: i64) -> Vec<(i32, i64, Vec<u8>)> {
    let mut out = Vec::new();
    let mut covered = std::collections::HashSet::new();
    let mut i = 0;
    while (covered.len() as i32) < PARTITIONS && i < 2000 {
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
        let sent = produce(brokers, topic, &recs).await;
        covered.insert(sent[0].0);
        out.extend(sent);
    }
    out
}

/// What the gate answers, per feature, from `accord replay` of the same
/// records (each partition one stream).
#[derive(Default)]
struct Expected {
    /// feature -> [path][verdict]
    requests: BTreeMap<String, [[u64; 4]; 4]>,
    /// feature -> kind -> requests with at least one divergence of it.
    kinds: BTreeMap<String, BTreeMap<String, u64>>,
    features: Option<Arc<Features>>,
}

impl Observer for Expected {
    fn closed(&mut self, c: &Closed<'_>) {
        let name = self.features.as_ref().unwrap().name(c.feature);
        let j = c.judgement;
        self.requests.entry(name.clone()).or_insert([[0; 4]; 4])[j.path as usize][j.verdict as usize] += 1;
        let mut kinds: Vec<&str> = c.divergences.iter().map(|d| d.kind.as_str()).collect();
        kinds.sort_unstable();
        kinds.dedup();
        for k in kinds {
            *self.kinds.entry(name.clone()).or_default().entry(k.to_string()).or_default() += 1;
        }
    }
}

fn replay(features: &Arc<Features>, produced: &[(i32, i64, Vec<u8>)]) -> Expected {
    let mut e = Expected { features: Some(features.clone()), ..Expected::default() };
    let mut by_part: BTreeMap<i32, Vec<(i64, &[u8])>> = BTreeMap::new();
    for (p, o, b) in produced {
        by_part.entry(*p).or_default().push((*o, b));
    }
    for recs in by_part.values_mut() {
        recs.sort_by_key(|r| r.0);
        let text: Vec<&[u8]> = recs.iter().map(|r| r.1).collect();
        let mut p = Pipeline::new(features.clone(), 0);
        replay_stream(std::io::Cursor::new(text.join(&b"\n"[..])), &mut p, &mut e, "p").unwrap();
    }
    e
}

/// The figures the test compares, from a gate answer over the last hour.
fn gate_figures(g: &Value) -> (u64, Option<f64>, Option<f64>, BTreeMap<String, u64>) {
    let divs = g["divergences"].as_object().unwrap().iter().map(|(k, v)| (k.clone(), v.as_u64().unwrap())).collect();
    (g["exposed_requests"].as_u64().unwrap(), g["exposed_agreement"].as_f64(), g["incomplete_ratio"].as_f64(), divs)
}

fn expected_figures(e: &Expected, feature: &str) -> (u64, Option<f64>, Option<f64>, BTreeMap<String, u64>) {
    let r = e.requests.get(feature).copied().unwrap_or([[0; 4]; 4]);
    let exposed_row = |p: RequestPath| r[p as usize];
    let exposed: u64 = exposed_row(RequestPath::New).iter().chain(exposed_row(RequestPath::Mixed).iter()).sum();
    let incomplete_exposed = r[RequestPath::New as usize][Verdict::Incomplete as usize]
        + r[RequestPath::Mixed as usize][Verdict::Incomplete as usize];
    let agree =
        r[RequestPath::New as usize][Verdict::Agree as usize] + r[RequestPath::Mixed as usize][Verdict::Agree as usize];
    let judged = exposed - incomplete_exposed;
    let total: u64 = r.iter().flatten().sum();
    let incomplete: u64 = r.iter().map(|row| row[Verdict::Incomplete as usize]).sum();
    let mut divs: BTreeMap<String, u64> =
        ["path_mismatch", "exposure_without_capability", "payload_version_mismatch", "snapshot_skew"]
            .iter()
            .map(|k| (k.to_string(), 0))
            .collect();
    for (k, n) in e.kinds.get(feature).cloned().unwrap_or_default() {
        divs.insert(k, n);
    }
    (
        exposed,
        (judged > 0).then(|| agree as f64 / judged as f64),
        (total > 0).then(|| incomplete as f64 / total as f64),
        divs,
    )
}

const GATE: &str = "/api/v1/gates/checkout_v2?window=1h&min_samples=1";

/// The parts of an answer that must be identical from every instance
/// (times of the answer itself and of the freshness excluded).
fn stable(v: &Value) -> Value {
    let mut v = v.clone();
    if let Some(o) = v.as_object_mut() {
        for k in ["generated_at", "evaluated_at", "view"] {
            o.remove(k);
        }
        if let Some(Value::Array(fs)) = o.get_mut("features") {
            for f in fs {
                if let Some(fo) = f.as_object_mut() {
                    fo.remove("gate");
                }
            }
        }
    }
    v
}

/// Waits until every instance answers `path` the same and equal to the
/// replay, every stream covered; returns the answer.
async fn converged(instances: &[&Instance], e: &Expected, what: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let answers: Vec<Value> = instances.iter().map(|i| i.get(GATE)).collect();
        // Every stream covered by a recent share: the gate decides on all
        // of the traffic (it is inconclusive otherwise).
        let covered = |a: &Value, k: &str| a["view"][k].as_array().is_some_and(|m| m.is_empty());
        let complete = answers.iter().all(|a| covered(a, "missing_streams") && covered(a, "stale_streams"));
        let same = answers.windows(2).all(|w| stable(&w[0]) == stable(&w[1]));
        let want = expected_figures(e, "checkout_v2");
        let equal = answers.iter().all(|a| gate_figures(a) == want);
        if complete && same && equal {
            // The features, divergences and exit-review APIs agree across
            // instances too.
            for path in [
                "/api/v1/features?window=1h",
                "/api/v1/features/checkout_v2/divergences?limit=100",
                "/api/v1/features/checkout_v2/exit-review?window=1h",
            ] {
                let all: Vec<Value> = instances.iter().map(|i| stable(&i.get(path))).collect();
                assert!(all.windows(2).all(|w| w[0] == w[1]), "{what}: {path} differs between instances");
            }
            return answers[0].clone();
        }
        assert!(
            Instant::now() < deadline,
            "{what}: instances never converged on the replay's figures {want:?}: {:?}",
            answers.iter().map(|a| (gate_figures(a), a["view"].clone())).collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Waits until the group has settled after a change at `since_ms`: the
/// shares the live instances published since then own every stream between
/// them, each once. The test stops an instance only in a settled group:
/// stopping one in the middle of a rebalance is the crash test's business,
/// and tansu 0.6 then keeps the departed member as the group's leader, so
/// no later member is ever assigned (its SyncGroup answers "rebalance in
/// progress" for good).
async fn settled(live: &[&Instance], since_ms: i64, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let view = live[0].get("/api/v1/view");
        let (mut owned, mut fresh) = (Vec::new(), true);
        for i in live {
            let share = view["instances"].as_array().and_then(|a| a.iter().find(|x| x["instance"] == i.name.as_str()));
            let Some(share) = share else {
                fresh = false;
                continue;
            };
            let at = chrono::DateTime::parse_from_rfc3339(share["published_at"].as_str().unwrap_or(""))
                .map_or(0, |t| t.timestamp_millis());
            fresh &= at > since_ms;
            owned.extend(share["streams"].as_array().into_iter().flatten().filter_map(Value::as_i64));
        }
        owned.sort_unstable();
        if fresh && owned == (0..PARTITIONS as i64).collect::<Vec<_>>() {
            return;
        }
        assert!(Instant::now() < deadline, "{what}: the group did not settle: {}", view["instances"]);
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

/// An instance's share of the view (what it published) equals its own
/// `accord_requests_total`.
fn share_equals_counters(any: &Instance, inst: &Instance) {
    let view = any.get("/api/v1/view");
    let share = view["instances"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["instance"] == inst.name.as_str())
        .unwrap_or_else(|| panic!("{} has no share in the view", inst.name));
    let counters = common::parse_prometheus(&inst.metrics.render());
    for (series, v) in counters.iter().filter(|(k, _)| k.starts_with("accord_requests_total{")) {
        let label =
            |l: &str| series.split(&format!("{l}=\"")).nth(1).and_then(|s| s.split('"').next()).unwrap().to_string();
        let (f, p, vd) = (label("feature"), label("path"), label("verdict"));
        let published = share["requests"][&f][&p][&vd].as_f64().unwrap_or(0.0);
        assert_eq!(published, *v, "{}: {series}: share {published}, counters {v}", inst.name);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_instance_answers_for_the_whole_group_across_restarts() {
    let broker = Broker::new();
    let catalog = Arc::new(Catalog::parse(Path::new("g.toml"), &common::catalog_with("20s", "2s", "15s")).unwrap());
    let features = Arc::new(Features::new(catalog.clone()));
    let topic = broker.topic("global-decisions", PARTITIONS).await;
    let group = format!("global-{}", std::process::id());
    let base = chrono::Utc::now().timestamp_millis() + 120_000;
    let recs: Vec<SimRecord> = Generator::new(
        Scenario::Mixed,
        Timing { window_ms: 20_000, allowed_lateness_ms: 2_000 },
        250.0,
        12_000,
        base,
        3,
    )
    .collect();

    // Three instances; the stream is produced while they rebalance.
    let a = Instance::start(&broker, &catalog, &topic, &group, "a").await;
    let b = Instance::start(&broker, &catalog, &topic, &group, "b").await;
    let mut produced = produce(&broker.brokers, &topic, &recs[..recs.len() / 2]).await;
    let c = Instance::start(&broker, &catalog, &topic, &group, "c").await;
    produced.extend(produce(&broker.brokers, &topic, &recs[recs.len() / 2..]).await);
    produced.extend(end_markers(&broker.brokers, &topic, base + 600_000).await);
    let expected = replay(&features, &produced);
    let all = [&a, &b, &c];
    let n = produced.len() as u64;
    let deadline = Instant::now() + Duration::from_secs(90);
    while all.iter().map(|i| i.status.records.load(Ordering::Relaxed)).sum::<u64>() < n
        || all.iter().any(|i| i.metrics.open_joins.get() != 0)
    {
        assert!(Instant::now() < deadline, "the instances did not judge every record");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let first = converged(&all, &expected, "three instances").await;
    assert!(first["exposed_requests"].as_u64().unwrap() > 100, "a rollout with exposed requests");
    for i in all {
        share_equals_counters(&a, i);
    }

    // One instance restarts: the group rebalances, the view stays whole.
    let c_name = c.name.clone();
    let now = || chrono::Utc::now().timestamp_millis();
    c.stop().await;
    // The old c's last share is older than this: c's shares from now on
    // are the new instance's.
    let t = now();
    let c = Instance::start(&broker, &catalog, &topic, &group, &c_name).await;
    settled(&[&a, &b, &c], t, "after a restart").await;
    let again = converged(&[&a, &b, &c], &expected, "after a restart").await;
    assert_eq!(stable(&again), stable(&first));

    // Every instance stops; one starts fresh and rebuilds the last hour.
    let t = now();
    a.stop().await;
    settled(&[&b, &c], t, "a stopped").await;
    let t = now();
    b.stop().await;
    settled(&[&c], t, "a and b stopped").await;
    c.stop().await;
    let d = Instance::start(&broker, &catalog, &topic, &group, "d").await;
    let fresh = converged(&[&d], &expected, "a fresh instance after all stopped").await;
    assert_eq!(stable(&fresh), stable(&first));
    d.stop().await;
}
