//! The Kafka source of `accord run`: a consumer group over one or more
//! co-partitioned topics. Partition `p` of every topic is one stream (one
//! watermark, one set of open joins); streams are spread over judging
//! threads; offsets are committed at least once, with a handover state
//! that lets the next owner continue exactly.
//!
//! # Layout
//! - [`config`](self): what `accord run` needs to reach Kafka (this file);
//! - `consumer`: the consumer thread — polls the group, serves rebalances
//!   (assign: inherit and split the partition queues; revoke: take the
//!   streams back and commit them) and commits periodically;
//! - `judge`: the judging threads, each owning some streams and their
//!   partition queues;
//! - `stream`: one stream's rules (suppressed re-read after a handover,
//!   idle watermark), without threads or librdkafka;
//! - `merge`: which topic's record a stream judges next;
//! - `handover`: the handover state and its text form;
//! - `commit`: verdicts flushed, handover state written, offsets committed,
//!   in that order;
//! - `internal`: the internal topics named after the group;
//! - `verdicts`: the verdicts topic producer.
//!
//! Blocking librdkafka calls (polls, synchronous commits, flushes, reads of
//! the handover topic) run on the consumer and judging threads, never on
//! the async runtime, which serves HTTP.

mod client_log;
mod commit;
mod consumer;
mod handover;
mod internal;
mod judge;
mod merge;
mod stats;
mod stream;
mod verdicts;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rdkafka::client::ClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::error::KafkaError;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

pub use handover::{StreamState, TopicMark};
pub use internal::default_names as internal_topic_names;
pub use stats::SHARE_SAMPLES;

use crate::decode::InputFormat;
use crate::export::metrics::Metrics;
use crate::features::Features;
use crate::live::LiveView;
use crate::ratelimit::{RateLimit, Verdict};

/// What `accord run` needs to reach Kafka.
#[derive(Debug, Clone)]
pub struct KafkaConfig {
    pub brokers: String,
    /// Co-partitioned topics: partition `p` of each is one stream.
    pub topics: Vec<String>,
    /// The input format of each topic (by index; a topic without one is
    /// read as accord decision records).
    pub formats: Vec<InputFormat>,
    pub group: String,
    /// Extra librdkafka properties (`--kafka key=value`): TLS, SASL, ...
    pub properties: Vec<(String, String)>,
    pub verdicts_topic: Option<String>,
    /// Where handover states live (default `<group>.accord-handover`).
    pub handover_topic: Option<String>,
    /// Where the live view's statistics go (default `<group>.accord-stats`).
    pub stats_topic: Option<String>,
    pub commit_interval: Duration,
    /// Bytes of raw records kept for divergence samples, for the whole
    /// instance (shared by its streams).
    pub sample_bytes: usize,
    /// Judging threads (streams are spread over them).
    pub judge_threads: usize,
    /// The name this instance publishes its share of the live view under
    /// (default: host name and process id).
    pub instance_id: Option<String>,
}

impl KafkaConfig {
    /// The input format of topic `t`.
    pub fn format(&self, t: usize) -> InputFormat {
        self.formats.get(t).copied().unwrap_or(InputFormat::Accord)
    }

    /// The defaults of `accord run` for these brokers, topics and group.
    pub fn new(brokers: &str, topics: &[&str], group: &str) -> Self {
        KafkaConfig {
            brokers: brokers.to_string(),
            topics: topics.iter().map(|t| t.to_string()).collect(),
            formats: Vec::new(),
            group: group.to_string(),
            properties: Vec::new(),
            verdicts_topic: None,
            handover_topic: None,
            stats_topic: None,
            commit_interval: Duration::from_secs(1),
            sample_bytes: 64 << 20,
            judge_threads: std::thread::available_parallelism().map_or(1, |n| n.get()),
            instance_id: None,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// Bad configuration: the caller exits with code 2.
    #[error("{0}")]
    Config(String),
    #[error("kafka: {0}")]
    Kafka(#[from] KafkaError),
    #[error("{0}")]
    Thread(String),
}

/// The base client configuration shared by consumers and producers.
pub fn client_config(brokers: &str, properties: &[(String, String)]) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", brokers);
    for (k, v) in properties {
        c.set(k, v);
    }
    c
}

/// The kind of librdkafka client a configuration is for (admin clients are
/// producers to librdkafka).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientRole {
    Consumer,
    Producer,
}

/// Properties only a consumer reads, and only a producer reads (the C and P
/// columns of librdkafka's CONFIGURATION.md). One `--kafka` list configures
/// every client of an instance; librdkafka logs a CONFWARN for each property
/// a client of the other kind was given, so those are left out.
const CONSUMER_ONLY: &[&str] = &[
    "group.id",
    "group.instance.id",
    "partition.assignment.strategy",
    "session.timeout.ms",
    "heartbeat.interval.ms",
    "group.protocol.type",
    "group.protocol",
    "group.remote.assignor",
    "coordinator.query.interval.ms",
    "max.poll.interval.ms",
    "enable.auto.commit",
    "auto.commit.interval.ms",
    "enable.auto.offset.store",
    "queued.min.messages",
    "queued.max.messages.kbytes",
    "fetch.wait.max.ms",
    "fetch.queue.backoff.ms",
    "fetch.message.max.bytes",
    "max.partition.fetch.bytes",
    "fetch.max.bytes",
    "fetch.min.bytes",
    "fetch.error.backoff.ms",
    "offset.store.method",
    "isolation.level",
    "enable.partition.eof",
    "check.crcs",
    "auto.offset.reset",
];
const PRODUCER_ONLY: &[&str] = &[
    "transactional.id",
    "transaction.timeout.ms",
    "enable.idempotence",
    "enable.gapless.guarantee",
    "queue.buffering.max.messages",
    "queue.buffering.max.kbytes",
    "queue.buffering.max.ms",
    "linger.ms",
    "message.send.max.retries",
    "retries",
    "queue.buffering.backpressure.threshold",
    "compression.codec",
    "compression.type",
    "compression.level",
    "batch.num.messages",
    "batch.size",
    "delivery.report.only.error",
    "sticky.partitioning.linger.ms",
    "acks",
    "request.required.acks",
    "request.timeout.ms",
    "message.timeout.ms",
    "delivery.timeout.ms",
    "partitioner",
];

/// [`client_config`] for one kind of client: the properties the other kind
/// alone reads are left out.
pub fn client_config_for(brokers: &str, properties: &[(String, String)], role: ClientRole) -> ClientConfig {
    let other = match role {
        ClientRole::Consumer => PRODUCER_ONLY,
        ClientRole::Producer => CONSUMER_ONLY,
    };
    let kept: Vec<(String, String)> =
        properties.iter().filter(|(k, _)| !other.contains(&k.as_str())).cloned().collect();
    client_config(brokers, &kept)
}

/// Live state shared with the HTTP server (`/readyz`) and tests.
#[derive(Default)]
pub struct SourceStatus {
    /// Streams are assigned.
    pub assigned: AtomicBool,
    pub broker_up: AtomicBool,
    /// Messages handled (judged, or re-read after a handover).
    pub records: AtomicU64,
    /// A problem that keeps the instance from being ready though the broker
    /// answers: failed authentication, a failed TLS handshake, an
    /// assignment that splits a stream.
    problem: Mutex<Option<String>>,
}

impl SourceStatus {
    pub fn ready(&self) -> bool {
        self.readiness().is_ok()
    }

    /// `Ok` when ready, else why not, in words an operator acts on.
    pub fn readiness(&self) -> Result<(), String> {
        if let Some(p) = self.problem.lock().unwrap_or_else(|e| e.into_inner()).clone() {
            return Err(p);
        }
        if !self.broker_up.load(Ordering::Relaxed) {
            return Err("kafka broker unreachable".into());
        }
        if !self.assigned.load(Ordering::Relaxed) {
            return Err("no partitions assigned yet".into());
        }
        Ok(())
    }

    /// librdkafka reports every broker down: not ready, and no stream
    /// advances its watermark by the wall clock until the broker is back.
    pub(crate) fn broker_down(&self, ready: &prometheus::IntGauge) {
        self.broker_up.store(false, Ordering::Relaxed);
        ready.set(0);
    }

    /// The problem set by `set_problem`, if any.
    pub fn problem(&self) -> Option<String> {
        self.problem.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    pub fn set_problem(&self, problem: impl Into<String>) {
        *self.problem.lock().unwrap_or_else(|e| e.into_inner()) = Some(problem.into());
    }

    /// Clears a problem whose text starts with `prefix` (what resolved it
    /// knows only its kind).
    pub fn clear_problem(&self, prefix: &str) {
        let mut p = self.problem.lock().unwrap_or_else(|e| e.into_inner());
        if p.as_deref().is_some_and(|s| s.starts_with(prefix)) {
            *p = None;
        }
    }
}

/// Consumes until `cancel`, then commits what was judged and leaves the
/// group. Each judging thread's events also go to an observer made by
/// `extra` (live statistics).
pub struct KafkaSource {
    cfg: KafkaConfig,
    features: Arc<Features>,
    metrics: Metrics,
    status: Arc<SourceStatus>,
}

impl KafkaSource {
    pub fn new(cfg: KafkaConfig, features: Arc<Features>, metrics: Metrics, status: Arc<SourceStatus>) -> Self {
        KafkaSource { cfg, features, metrics, status }
    }

    /// Runs the source until `cancel`.
    pub async fn run(self, cancel: CancellationToken, view: LiveView) -> Result<(), SourceError> {
        config::check(&self.cfg)?;
        let Some((existing, streams)) = self.check_topics(&cancel).await? else {
            return Ok(());
        };
        let handover = internal::InternalTopic::handover(&self.cfg);
        let stats = internal::InternalTopic::stats(&self.cfg);
        internal::ensure(&self.cfg, &existing, &[handover.clone(), stats.clone()]).await?;
        info!(
            topic = %handover.name,
            "handover state lives in the offset commits' metadata and in topic {:?} (keyed {}/<partition>)",
            handover.name,
            self.cfg.group
        );
        // The global view: every instance's share of `streams` streams,
        // none older than a few commit intervals.
        let fresh_ms = (5 * self.cfg.commit_interval.as_millis() as i64).max(10_000);
        view.expect_streams(streams, fresh_ms);
        let instance = self.cfg.instance_id.clone().unwrap_or_else(stats::instance_id);
        let kafka = |e: KafkaError| SourceError::Config(format!("stats topic client configuration: {e}"));
        let publisher = stats::Publisher::new(&self.cfg, stats.name.clone(), instance.clone()).map_err(kafka)?;
        let health = (self.status.clone(), self.metrics.ready.clone());
        let reader = stats::Reader::new(&self.cfg, stats.name.clone(), &instance, health).map_err(kafka)?;
        let reader_state = reader.state.clone();
        let stop = Arc::new(AtomicBool::new(false));
        let reader =
            reader.start(view.clone(), stop.clone()).map_err(|e| SourceError::Thread(format!("stats reader: {e}")))?;
        info!(topic = %stats.name, %instance, streams, "live view: publishing this instance's share and reading every instance's");
        let shared = consumer::Shared::new(
            &self.cfg,
            &self.features,
            &self.metrics,
            &self.status,
            handover.name,
            view,
            (publisher, stats.name, reader_state),
        )?;
        let mut judges = Vec::new();
        for i in 0..self.cfg.judge_threads.max(1) {
            let obs = (self.metrics.observer(), shared.verdict_observer());
            let ctx = judge::Context { status: shared.status(), metrics: self.metrics.clone() };
            judges.push(judge::spawn(i, ctx, obs).map_err(|e| SourceError::Thread(format!("judging thread: {e}")))?);
        }
        let worker = consumer::start(shared, judges, stop.clone())?;
        info!(topics = ?self.cfg.topics, group = %self.cfg.group, brokers = %self.cfg.brokers, threads = self.cfg.judge_threads.max(1), "consuming");
        cancel.cancelled().await;
        info!("shutting down: committing judged offsets");
        let consumer_stop = stop.clone();
        let result = tokio::task::spawn_blocking(move || {
            consumer_stop.store(true, Ordering::Release);
            let r = worker.join();
            let _ = reader.join();
            r
        })
        .await
        .map_err(|e| SourceError::Thread(format!("consumer thread: {e}")))?
        .map_err(|_| SourceError::Thread("consumer thread panicked".into()))?;
        result
    }

    /// Checks that every topic exists and that their partition counts are
    /// equal (records of one request must meet in one stream). Retries
    /// while the broker is unreachable; returns the broker's topic names and
    /// the number of streams (the topics' partition count), or `None` if
    /// cancelled first.
    async fn check_topics(&self, cancel: &CancellationToken) -> Result<Option<(Vec<String>, usize)>, SourceError> {
        let ctx =
            ProbeCtx { status: self.status.clone(), logged: Mutex::new(RateLimit::every(Duration::from_secs(30))) };
        let probe: BaseConsumer<ProbeCtx> =
            client_config_for(&self.cfg.brokers, &self.cfg.properties, ClientRole::Consumer)
                .create_with_context(ctx)
                .map_err(|e| SourceError::Config(format!("kafka client configuration: {e}")))?;
        let probe = Arc::new(probe);
        let mut attempt = 0u32;
        loop {
            let c = probe.clone();
            let md = tokio::task::spawn_blocking(move || {
                let md = c.fetch_metadata(None, Duration::from_secs(5)).map(|md| {
                    md.topics()
                        .iter()
                        .map(|t| (t.name().to_string(), t.error().is_none(), t.partitions().len()))
                        .collect::<Vec<_>>()
                });
                if md.is_err() {
                    // Serve the client's error events: a refused certificate
                    // or login is reported there, with librdkafka's reason.
                    // (A consumed log or statistics event also reads as
                    // `None`: no early exit.)
                    for _ in 0..64 {
                        let _ = c.poll(Duration::ZERO);
                    }
                }
                md
            })
            .await
            .map_err(|e| SourceError::Thread(format!("metadata task: {e}")))?;
            match md {
                Ok(topics) => {
                    self.status.broker_up.store(true, Ordering::Relaxed);
                    self.status.clear_problem("kafka authentication");
                    self.status.clear_problem("kafka TLS");
                    config::check_partition_counts(&self.cfg, &topics)?;
                    let streams = topics.iter().find(|t| self.cfg.topics.contains(&t.0)).map_or(0, |t| t.2);
                    return Ok(Some((topics.into_iter().map(|t| t.0).collect(), streams)));
                }
                Err(e) => {
                    self.status.broker_up.store(false, Ordering::Relaxed);
                    attempt += 1;
                    // A refused certificate or login has its own line
                    // (`ProbeCtx`); this one would only repeat it vaguely.
                    if self.status.problem().is_none() {
                        warn!(brokers = %self.cfg.brokers, error = %e, attempt, "kafka broker unreachable; retrying (readyz answers 503 meanwhile)");
                    }
                    tokio::select! {
                        _ = cancel.cancelled() => return Ok(None),
                        _ = tokio::time::sleep(Duration::from_secs(2)) => {}
                    }
                }
            }
        }
    }
}

/// librdkafka's callbacks for the start-up probe. A broker that refuses
/// accord's certificate or credentials answers no metadata request, so the
/// probe is where the operator learns why: the same readyz reason and
/// rate-limited line as the consumer gives later.
struct ProbeCtx {
    status: Arc<SourceStatus>,
    logged: Mutex<RateLimit>,
}

impl ClientContext for ProbeCtx {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, log_message: &str) {
        client_log::forward_log(level, fac, log_message);
    }

    fn error(&self, error: KafkaError, reason: &str) {
        if let Some(p) = client_log::security_problem(error.rdkafka_error_code(), reason) {
            let log = self.logged.lock().unwrap_or_else(|e| e.into_inner()).check(Instant::now());
            if let Verdict::Log { .. } = log {
                tracing::error!("{p}");
            }
            self.status.set_problem(p);
        }
    }
}

impl ConsumerContext for ProbeCtx {}

mod config {
    //! Checks of the configuration that need no broker, and of the topic
    //! layout that needs its metadata.

    use super::{KafkaConfig, SourceError};

    /// Partition assignment strategies that give one instance partition
    /// `p` of every topic: the range assignor does, for co-partitioned
    /// topics; accord's handover expects eager rebalancing.
    pub fn check(cfg: &KafkaConfig) -> Result<(), SourceError> {
        if cfg.topics.is_empty() {
            return Err(SourceError::Config("no topic to consume (--topic)".into()));
        }
        if cfg.topics.len() > usize::from(u8::MAX) {
            return Err(SourceError::Config(format!("at most 255 topics form one stream, got {}", cfg.topics.len())));
        }
        for (k, v) in &cfg.properties {
            if k == "partition.assignment.strategy" {
                let ok =
                    v.split(',').all(|s| s.trim() == "range" || (cfg.topics.len() == 1 && s.trim() == "roundrobin"));
                if !ok {
                    return Err(SourceError::Config(format!(
                        "--kafka partition.assignment.strategy={v}: accord needs the range assignor{} (one instance owns partition p of every topic; rebalances are eager)",
                        if cfg.topics.len() > 1 { "" } else { " or roundrobin" }
                    )));
                }
            }
            if k == "group.protocol" && v != "classic" {
                return Err(SourceError::Config(format!(
                    "--kafka group.protocol={v}: accord needs the classic consumer group protocol"
                )));
            }
        }
        Ok(())
    }

    /// `topics`: the broker's `(name, ok, partitions)`.
    pub fn check_partition_counts(cfg: &KafkaConfig, topics: &[(String, bool, usize)]) -> Result<(), SourceError> {
        let mut counts = Vec::new();
        for t in &cfg.topics {
            match topics.iter().find(|m| &m.0 == t) {
                Some((_, true, n)) if *n > 0 => counts.push((t.clone(), *n)),
                _ => {
                    return Err(SourceError::Config(format!(
                        "topic {t:?} does not exist on {} (create it, or fix --topic)",
                        cfg.brokers
                    )))
                }
            }
        }
        if counts.windows(2).any(|w| w[0].1 != w[1].1) {
            let list: Vec<String> = counts.iter().map(|(t, n)| format!("{t}={n}")).collect();
            return Err(SourceError::Config(format!(
                "topics must have equal partition counts so a request's records meet in one stream (co-partitioned, keyed by request_id): {}",
                list.join(", ")
            )));
        }
        Ok(())
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        fn cfg(topics: &[&str], props: &[(&str, &str)]) -> KafkaConfig {
            let mut c = KafkaConfig::new("b:1", topics, "g");
            c.properties = props.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
            c
        }

        #[test]
        fn each_kind_of_client_gets_the_properties_it_reads() {
            let props: Vec<(String, String)> = [
                ("security.protocol", "SSL"),
                ("fetch.wait.max.ms", "50"),
                ("compression.type", "zstd"),
                ("client.id", "accord"),
            ]
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
            let c = super::super::client_config_for("b:1", &props, super::super::ClientRole::Consumer);
            assert_eq!(c.get("security.protocol"), Some("SSL"));
            assert_eq!(c.get("fetch.wait.max.ms"), Some("50"));
            assert_eq!(c.get("compression.type"), None);
            assert_eq!(c.get("client.id"), Some("accord"));
            let p = super::super::client_config_for("b:1", &props, super::super::ClientRole::Producer);
            assert_eq!(p.get("security.protocol"), Some("SSL"));
            assert_eq!(p.get("fetch.wait.max.ms"), None);
            assert_eq!(p.get("compression.type"), Some("zstd"));
            assert_eq!(p.get("bootstrap.servers"), Some("b:1"));
        }

        #[test]
        fn only_assignors_that_keep_streams_whole() {
            assert!(check(&cfg(&["a"], &[])).is_ok());
            assert!(check(&cfg(&["a"], &[("partition.assignment.strategy", "roundrobin")])).is_ok());
            assert!(check(&cfg(&["a", "b"], &[("partition.assignment.strategy", "range")])).is_ok());
            let e = check(&cfg(&["a", "b"], &[("partition.assignment.strategy", "roundrobin")])).unwrap_err();
            assert!(e.to_string().contains("range assignor"), "{e}");
            assert!(check(&cfg(&["a"], &[("partition.assignment.strategy", "cooperative-sticky")])).is_err());
            assert!(check(&cfg(&["a"], &[("group.protocol", "consumer")])).is_err());
            assert!(check(&cfg(&[], &[])).is_err());
        }

        #[test]
        fn topics_must_exist_and_be_co_partitioned() {
            let c = cfg(&["web", "backend"], &[]);
            let md = |a: usize, b: usize| vec![("web".to_string(), true, a), ("backend".to_string(), true, b)];
            assert!(check_partition_counts(&c, &md(6, 6)).is_ok());
            let e = check_partition_counts(&c, &md(6, 4)).unwrap_err().to_string();
            assert!(e.contains("web=6, backend=4") && !e.contains('\n'), "{e}");
            let e = check_partition_counts(&c, &md(6, 0)).unwrap_err().to_string();
            assert!(e.contains("\"backend\" does not exist"), "{e}");
        }
    }
}
