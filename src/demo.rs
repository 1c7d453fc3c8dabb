//! `accord demo`: an in-process Kafka (librdkafka's mock cluster), the
//! simulator running the `mixed` scenario, and the service, with no
//! set-up. The mock cluster is not `Send`, so it lives on the caller's
//! task for the whole run.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use rdkafka::mocking::MockCluster;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::catalog::Catalog;
use crate::decode::InputFormat;
use crate::http::ServeOptions;
use crate::service::{Service, ServiceError};
use crate::simulate::{Generator, Messages, Scenario, Timing};
use crate::source::kafka::{internal_topic_names, KafkaConfig};
use crate::source::produce::produce;

/// The demo's catalog: the example catalog's features with short windows
/// so every verdict shows up within seconds.
pub const DEMO_CATALOG: &str = r#"
[monitor]
layers = ["frontend", "api", "worker", "analytics"]
window = "5s"
allowed_lateness = "1s"
max_open_joins = 100000

[[feature]]
key = "checkout_v2"
owner = "payments"
class = "state-machine"
expires = "2027-01-31"
expect = ["frontend", "api", "worker", "analytics"]
new_flow = "v2"
new_capability = "v2"
new_payload_version = "2"

[[feature]]
key = "search.ranking"
owner = "search"
class = "decision"
expires = "2027-06-30"
expect = ["api", "analytics"]
optional = ["frontend"]
window = "4s"
new_flow = "ltr"

[otel]
request_id = "trace_id"
[otel.layers]
"web-spa" = "frontend"
"checkout-api" = "api"
"fulfilment-worker" = "worker"
"#;

pub const DEMO_TOPIC: &str = "decisions";
const DEMO_GROUP: &str = "accord-demo";

pub struct DemoOptions {
    pub listen: SocketAddr,
    pub rate: f64,
    pub partitions: i32,
    /// What the simulated stack logs (accord records, or OpenTelemetry
    /// flag-evaluation events).
    pub format: InputFormat,
    /// TLS, authentication, timeouts and limits of the HTTP server.
    pub http: ServeOptions,
}

pub async fn demo(opts: DemoOptions, cancel: CancellationToken) -> Result<(), ServiceError> {
    let catalog = Arc::new(
        Catalog::parse(Path::new("<demo catalog>"), DEMO_CATALOG).map_err(|e| ServiceError::Config(e.to_string()))?,
    );
    let listener = Service::bind(opts.listen).await?;
    let cluster = MockCluster::new(1).map_err(|e| ServiceError::Runtime(format!("mock cluster: {e}")))?;
    cluster
        .create_topic(DEMO_TOPIC, opts.partitions, 1)
        .map_err(|e| ServiceError::Runtime(format!("mock cluster topic: {e}")))?;
    // The mock cluster cannot create topics through the admin API, so the
    // internal topics accord would create are made here.
    for t in internal_topic_names(DEMO_GROUP) {
        cluster.create_topic(&t, 1, 1).map_err(|e| ServiceError::Runtime(format!("mock cluster topic {t}: {e}")))?;
    }
    let brokers = cluster.bootstrap_servers();
    let addr = listener.local_addr().map_err(|e| ServiceError::Runtime(e.to_string()))?;
    let scheme = if opts.http.web.as_ref().is_some_and(|w| w.tls.is_some()) { "https" } else { "http" };
    println!(
        "accord demo: in-process Kafka at {brokers}, topic {DEMO_TOPIC:?} ({} partitions) of {} messages",
        opts.partitions, opts.format
    );
    println!("  status page   {scheme}://{addr}/");
    println!("  metrics       {scheme}://{addr}/metrics");
    println!("  features      {scheme}://{addr}/api/v1/features");
    println!("  gate          {scheme}://{addr}/api/v1/gates/checkout_v2?window=1m&min_samples=50");
    println!("  divergences   {scheme}://{addr}/api/v1/features/checkout_v2/divergences?limit=5");
    println!("Simulating a mixed rollout at {} records/s; Ctrl-C stops.", opts.rate);

    let timing = Timing {
        window_ms: catalog.feature("checkout_v2").map_or(catalog.window_ms, |f| f.window_ms),
        allowed_lateness_ms: catalog.allowed_lateness_ms,
    };
    let gen = Generator::new(
        Scenario::Mixed,
        timing,
        opts.rate,
        24 * 3600 * 1000,
        chrono::Utc::now().timestamp_millis(),
        rand::random(),
    );
    let producer_cancel = cancel.child_token();
    let producer = {
        let brokers = brokers.clone();
        let messages = Messages::new(gen, opts.format, &catalog.otel, rand::random());
        tokio::spawn(async move { produce(&brokers, &[], DEMO_TOPIC, messages, producer_cancel).await })
    };
    let kafka = KafkaConfig {
        // The mock broker answers a fetch only when `fetch.wait.max.ms`
        // runs out, even when records arrive meanwhile (a real broker
        // answers once `fetch.min.bytes` is there), so librdkafka's default
        // of 500 ms would delay verdicts on the demo page by up to that.
        properties: vec![("fetch.wait.max.ms".into(), "50".into())],
        formats: vec![opts.format],
        ..KafkaConfig::new(&brokers, &[DEMO_TOPIC], DEMO_GROUP)
    };
    let mut service = Service::new(catalog)?;
    service.http = ServeOptions { grace: service.http.grace, ..opts.http };
    let result = service.run(kafka, listener, cancel.clone()).await;
    cancel.cancel();
    match producer.await {
        Ok(Ok(report)) => info!(requests = report.requests, records = report.records, "simulator stopped"),
        Ok(Err(e)) => warn!(error = %e, "simulator failed"),
        Err(e) => warn!(error = %e, "simulator task failed"),
    }
    drop(cluster);
    result
}
