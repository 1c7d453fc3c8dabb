//! The Kafka source of `accord run` (SPEC §8): a consumer group over one
//! or more topics, one [`Pipeline`] (and so one watermark) per partition,
//! at-least-once commits, idle partitions advanced by the wall clock.
//!
//! Threading: one task consumes and judges; the partition map sits
//! behind a mutex only because librdkafka's rebalance callback must reach
//! it synchronously (it runs inside `recv()` on the same task, so the
//! lock is never contended by processing). On revoke, the callback
//! commits each partition's lowest needed offset *before* the partition
//! leaves, so the next owner resumes from there.
//!
//! Commit rule: an offset is committed only when every join holding a
//! record at or below it has closed, and every remembered closed key
//! whose first record is below it has been forgotten — so the next owner
//! can rebuild the exact state by replaying from the committed offset.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance, StreamConsumer};
use rdkafka::error::KafkaError;
use rdkafka::message::{BorrowedMessage, Message};
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use rdkafka::statistics::Statistics;
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use rdkafka::ClientContext;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::export::metrics::{lag_gauge, watermark_gauge, Metrics, MetricsObserver};
use crate::export::verdicts::verdict_json;
use crate::features::Features;
use crate::join::{Closed, Observer};
use crate::pipeline::Pipeline;

/// What `accord run` needs to reach Kafka.
#[derive(Debug, Clone)]
pub struct KafkaConfig {
    pub brokers: String,
    pub topics: Vec<String>,
    pub group: String,
    /// Extra librdkafka properties (`--kafka key=value`), e.g. SASL/TLS.
    pub properties: Vec<(String, String)>,
    pub verdicts_topic: Option<String>,
    pub commit_interval: Duration,
    /// Bytes of raw records kept per partition for divergence samples.
    pub sample_bytes: usize,
}

#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// Bad configuration: the caller exits with code 2.
    #[error("{0}")]
    Config(String),
    #[error("kafka: {0}")]
    Kafka(#[from] KafkaError),
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

/// Live state shared with the HTTP server.
#[derive(Default)]
pub struct SourceStatus {
    /// Partitions are assigned and the broker answers.
    pub assigned: AtomicBool,
    pub broker_up: AtomicBool,
    pub records: AtomicU64,
}

impl SourceStatus {
    pub fn ready(&self) -> bool {
        self.assigned.load(Ordering::Relaxed) && self.broker_up.load(Ordering::Relaxed)
    }
}

type PartKey = (String, i32);

/// State of one assigned partition.
struct Partition {
    pipeline: Pipeline,
    /// Offset after the last processed record (`None` before the first).
    next_offset: Option<i64>,
    committed: Option<i64>,
    last_record: Instant,
    wm_gauge: prometheus::Gauge,
}

impl Partition {
    /// The offset the next owner must resume from.
    fn commit_offset(&mut self) -> Option<i64> {
        let next = self.next_offset?;
        Some(self.pipeline.engine_mut().lowest_needed_pos().map_or(next, |p| p as i64))
    }
}

/// Everything the consume loop and the rebalance callback share.
struct Shared {
    features: Arc<Features>,
    metrics: Metrics,
    status: Arc<SourceStatus>,
    parts: Mutex<HashMap<PartKey, Partition>>,
    sample_bytes: usize,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, HashMap<PartKey, Partition>> {
        self.parts.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn new_partition(&self, topic: &str, partition: i32) -> Partition {
        Partition {
            pipeline: Pipeline::new(self.features.clone(), self.sample_bytes),
            next_offset: None,
            committed: None,
            last_record: Instant::now(),
            wm_gauge: watermark_gauge(&self.metrics, topic, partition),
        }
    }

    /// Offsets to commit for `keys` (all partitions if `None`).
    fn commit_list(parts: &mut HashMap<PartKey, Partition>, only_changed: bool) -> TopicPartitionList {
        let mut tpl = TopicPartitionList::new();
        for ((topic, p), part) in parts.iter_mut() {
            if let Some(off) = part.commit_offset() {
                if !only_changed || part.committed != Some(off) {
                    let _ = tpl.add_partition_offset(topic, *p, Offset::Offset(off));
                }
            }
        }
        tpl
    }

    fn mark_committed(&self, tpl: &TopicPartitionList, parts: &mut HashMap<PartKey, Partition>) {
        for e in tpl.elements() {
            if let (Some(part), Offset::Offset(o)) =
                (parts.get_mut(&(e.topic().to_string(), e.partition())), e.offset())
            {
                part.committed = Some(o);
            }
        }
    }
}

struct Ctx {
    shared: Arc<Shared>,
}

impl ClientContext for Ctx {
    fn stats(&self, stats: Statistics) {
        for (topic, t) in &stats.topics {
            for (&p, ps) in &t.partitions {
                if p >= 0 && ps.consumer_lag >= 0 {
                    lag_gauge(&self.shared.metrics, topic, p).set(ps.consumer_lag);
                }
            }
        }
    }

    fn error(&self, error: KafkaError, reason: &str) {
        use rdkafka::types::RDKafkaErrorCode as C;
        if let Some(code) = error.rdkafka_error_code() {
            if matches!(code, C::AllBrokersDown | C::BrokerTransportFailure) {
                self.shared.status.broker_up.store(false, Ordering::Relaxed);
                self.shared.metrics.ready.set(0);
            }
        }
        warn!(%error, reason, "kafka client error");
    }
}

impl ConsumerContext for Ctx {
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        self.shared.metrics.rebalances.inc();
        let Rebalance::Revoke(revoked) = rebalance else {
            return;
        };
        // Commit what the next owner needs, then forget the partitions.
        let mut parts = self.shared.lock();
        let mut leaving = HashMap::new();
        for e in revoked.elements() {
            let key = (e.topic().to_string(), e.partition());
            if let Some(p) = parts.remove(&key) {
                leaving.insert(key, p);
            }
        }
        let tpl = Shared::commit_list(&mut leaving, false);
        if tpl.count() > 0 {
            match consumer.commit(&tpl, CommitMode::Sync) {
                Ok(()) => self.shared.metrics.commits.with_label_values(&["ok"]).inc(),
                Err(e) => {
                    self.shared.metrics.commits.with_label_values(&["error"]).inc();
                    warn!(error = %e, "commit on revoke failed; the next owner re-reads from the previous commit");
                }
            }
        }
        for (t, p) in leaving.keys() {
            let _ = self.shared.metrics.watermark_delay.remove_label_values(&[t, &p.to_string()]);
        }
        info!(revoked = leaving.len(), still_owned = parts.len(), "partitions revoked");
        if parts.is_empty() {
            self.shared.status.assigned.store(false, Ordering::Relaxed);
            self.shared.metrics.ready.set(0);
        }
    }

    fn post_rebalance(&self, _consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Assign(tpl) = rebalance {
            let mut parts = self.shared.lock();
            for e in tpl.elements() {
                parts
                    .entry((e.topic().to_string(), e.partition()))
                    .or_insert_with(|| self.shared.new_partition(e.topic(), e.partition()));
            }
            let assigned = !parts.is_empty();
            info!(partitions = parts.len(), "partitions assigned");
            self.shared.status.assigned.store(assigned, Ordering::Relaxed);
            self.shared.status.broker_up.store(true, Ordering::Relaxed);
            self.shared.metrics.ready.set(i64::from(assigned));
        }
    }

    fn commit_callback(&self, result: rdkafka::error::KafkaResult<()>, _offsets: &TopicPartitionList) {
        match result {
            Ok(()) => self.shared.metrics.commits.with_label_values(&["ok"]).inc(),
            Err(e) => {
                self.shared.metrics.commits.with_label_values(&["error"]).inc();
                warn!(error = %e, "offset commit failed; will retry at the next interval");
            }
        }
    }
}

/// Produces every closed join to the verdicts topic (SPEC §7).
struct VerdictProducer {
    producer: ThreadedProducer<DefaultProducerContext>,
    topic: String,
    features: Arc<Features>,
}

impl Observer for VerdictProducer {
    fn record(&mut self, _: u16, _: u8, _: crate::judge::Path, _: bool) {}
    fn closed(&mut self, c: &Closed<'_>) {
        let line = verdict_json(c, &self.features.name(c.feature), self.features.catalog());
        let Ok(body) = serde_json::to_vec(&line) else {
            return;
        };
        let mut rec = BaseRecord::to(&self.topic).key(c.request_id).payload(&body);
        // The queue is bounded; when it is full, wait for deliveries
        // rather than drop a verdict.
        for _ in 0..100 {
            match self.producer.send(rec) {
                Ok(()) => return,
                Err((KafkaError::MessageProduction(rdkafka::types::RDKafkaErrorCode::QueueFull), r)) => {
                    rec = r;
                    std::thread::sleep(Duration::from_millis(10));
                }
                Err((e, _)) => {
                    warn!(error = %e, "cannot produce verdict");
                    return;
                }
            }
        }
        warn!("verdicts producer queue stayed full; verdict dropped");
    }
}

/// Rate-limited log of rejected records: the first few each second with
/// topic, partition and offset, then a count of what was not logged.
struct RejectLog {
    window_start: Instant,
    logged: u32,
    suppressed: u64,
}

impl RejectLog {
    const PER_SECOND: u32 = 5;
    fn log(&mut self, topic: &str, partition: i32, offset: i64, reason: crate::decode::Reject) {
        if self.window_start.elapsed() >= Duration::from_secs(1) {
            if self.suppressed > 0 {
                warn!(suppressed = self.suppressed, "more records rejected (not logged individually)");
            }
            self.window_start = Instant::now();
            self.logged = 0;
            self.suppressed = 0;
        }
        if self.logged < Self::PER_SECOND {
            self.logged += 1;
            warn!(topic, partition, offset, %reason, "record rejected and skipped");
        } else {
            self.suppressed += 1;
        }
    }
}

/// Consumes until `cancel`, then commits what was judged and leaves the
/// group. Extra observers (live statistics) see every event.
pub struct KafkaSource {
    cfg: KafkaConfig,
    shared: Arc<Shared>,
}

impl KafkaSource {
    pub fn new(cfg: KafkaConfig, features: Arc<Features>, metrics: Metrics, status: Arc<SourceStatus>) -> Self {
        let shared = Arc::new(Shared {
            features,
            metrics,
            status,
            parts: Mutex::new(HashMap::new()),
            sample_bytes: cfg.sample_bytes,
        });
        KafkaSource { cfg, shared }
    }

    fn consumer(&self) -> Result<StreamConsumer<Ctx>, SourceError> {
        let mut c = client_config(&self.cfg.brokers, &[]);
        c.set("group.id", &self.cfg.group)
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("auto.offset.reset", "earliest")
            // Short enough that group joins do not stall (FIELD-NOTES).
            .set("session.timeout.ms", "6000")
            .set("heartbeat.interval.ms", "1000")
            .set("statistics.interval.ms", "5000")
            // Bound the prefetch per partition so a flood cannot grow
            // memory in librdkafka's queues.
            .set("queued.max.messages.kbytes", "16384")
            .set("partition.assignment.strategy", "range,roundrobin");
        for (k, v) in &self.cfg.properties {
            c.set(k, v);
        }
        c.create_with_context(Ctx { shared: self.shared.clone() })
            .map_err(|e| SourceError::Config(format!("kafka consumer configuration: {e}")))
    }

    /// Checks that every topic exists and that their partition counts are
    /// equal (records of one request must meet in one partition). Retries
    /// while the broker is unreachable.
    async fn check_topics(
        &self,
        consumer: &Arc<StreamConsumer<Ctx>>,
        cancel: &CancellationToken,
    ) -> Result<Option<usize>, SourceError> {
        let mut attempt = 0u32;
        loop {
            let c = consumer.clone();
            let md = tokio::task::spawn_blocking(move || c.fetch_metadata(None, Duration::from_secs(5)))
                .await
                .map_err(|e| SourceError::Config(format!("metadata task failed: {e}")))?;
            match md {
                Ok(md) => {
                    self.shared.status.broker_up.store(true, Ordering::Relaxed);
                    let mut counts = Vec::new();
                    for t in &self.cfg.topics {
                        match md.topics().iter().find(|m| m.name() == t) {
                            Some(m) if m.error().is_none() && !m.partitions().is_empty() => {
                                counts.push((t.clone(), m.partitions().len()))
                            }
                            _ => {
                                return Err(SourceError::Config(format!(
                                    "topic {t:?} does not exist on {} (create it, or fix --topic)",
                                    self.cfg.brokers
                                )))
                            }
                        }
                    }
                    if counts.windows(2).any(|w| w[0].1 != w[1].1) {
                        let list: Vec<String> = counts.iter().map(|(t, n)| format!("{t}={n}")).collect();
                        return Err(SourceError::Config(format!(
                            "topics must have equal partition counts so a request's records meet in one partition: {}",
                            list.join(", ")
                        )));
                    }
                    return Ok(counts.first().map(|c| c.1));
                }
                Err(e) => {
                    self.shared.status.broker_up.store(false, Ordering::Relaxed);
                    attempt += 1;
                    warn!(brokers = %self.cfg.brokers, error = %e, attempt, "kafka broker unreachable; retrying (readyz answers 503 meanwhile)");
                    tokio::select! {
                        _ = cancel.cancelled() => return Ok(None),
                        _ = tokio::time::sleep(Duration::from_secs(2)) => {}
                    }
                }
            }
        }
    }

    /// Runs the source until `cancel`.
    pub async fn run(self, cancel: CancellationToken, mut extra: impl Observer) -> Result<(), SourceError> {
        let consumer = Arc::new(self.consumer()?);
        if self.check_topics(&consumer, &cancel).await?.is_none() {
            return Ok(());
        }
        let topics: Vec<&str> = self.cfg.topics.iter().map(String::as_str).collect();
        consumer.subscribe(&topics).map_err(|e| SourceError::Config(format!("cannot subscribe to {topics:?}: {e}")))?;
        info!(topics = ?topics, group = %self.cfg.group, brokers = %self.cfg.brokers, "consuming");

        let mut verdicts = match &self.cfg.verdicts_topic {
            Some(t) => {
                let mut pc = client_config(&self.cfg.brokers, &self.cfg.properties);
                pc.set("linger.ms", "5").set("queue.buffering.max.messages", "200000");
                let producer: ThreadedProducer<DefaultProducerContext> =
                    pc.create().map_err(|e| SourceError::Config(format!("verdicts producer configuration: {e}")))?;
                Some(VerdictProducer { producer, topic: t.clone(), features: self.shared.features.clone() })
            }
            None => None,
        };

        let mut metrics_obs: MetricsObserver = self.shared.metrics.observer();
        let lateness = self.shared.features.catalog().allowed_lateness_ms;
        let mut tick = tokio::time::interval(Duration::from_millis(250));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut last_commit = Instant::now();
        let mut rejects = RejectLog { window_start: Instant::now(), logged: 0, suppressed: 0 };
        loop {
            tokio::select! {
                biased;
                _ = cancel.cancelled() => break,
                msg = consumer.recv() => match msg {
                    Ok(m) => {
                        let mut parts = self.shared.lock();
                        let key = (m.topic().to_string(), m.partition());
                        let part = parts
                            .entry(key)
                            .or_insert_with(|| self.shared.new_partition(m.topic(), m.partition()));
                        let mut obs = (&mut metrics_obs, (&mut extra, OptObserver(verdicts.as_mut())));
                        handle(part, &m, &mut obs, &mut rejects);
                        self.shared.status.records.fetch_add(1, Ordering::Relaxed);
                        if !self.shared.status.broker_up.load(Ordering::Relaxed) {
                            self.shared.status.broker_up.store(true, Ordering::Relaxed);
                            self.shared.metrics.ready.set(i64::from(self.shared.status.assigned.load(Ordering::Relaxed)));
                        }
                    }
                    Err(e) => {
                        warn!(error = %e, "kafka consume error");
                        tokio::time::sleep(Duration::from_millis(200)).await;
                    }
                },
                _ = tick.tick() => {
                    let now_ms = chrono::Utc::now().timestamp_millis();
                    {
                        let mut parts = self.shared.lock();
                        let mut obs = (&mut metrics_obs, (&mut extra, OptObserver(verdicts.as_mut())));
                        for part in parts.values_mut() {
                            // SPEC §4: a stream idle for allowed_lateness
                            // advances its watermark with the wall clock.
                            if part.last_record.elapsed() >= Duration::from_millis(lateness.max(0) as u64) {
                                part.pipeline.engine_mut().advance_watermark(now_ms - lateness, &mut obs);
                            }
                            let wm = part.pipeline.engine().watermark();
                            if wm != i64::MIN {
                                part.wm_gauge.set((now_ms - wm) as f64 / 1000.0);
                            }
                        }
                    }
                    if last_commit.elapsed() >= self.cfg.commit_interval {
                        last_commit = Instant::now();
                        self.commit(&consumer, verdicts.as_ref(), CommitMode::Async);
                    }
                }
            }
        }
        info!("shutting down: committing judged offsets");
        self.commit(&consumer, verdicts.as_ref(), CommitMode::Sync);
        consumer.unsubscribe();
        Ok(())
    }

    /// Commits each partition's lowest needed offset. Verdicts produced so
    /// far are flushed first, so a committed offset never runs ahead of
    /// the verdicts topic.
    fn commit(&self, consumer: &StreamConsumer<Ctx>, verdicts: Option<&VerdictProducer>, mode: CommitMode) {
        if let Some(v) = verdicts {
            if let Err(e) = v.producer.flush(Duration::from_secs(10)) {
                warn!(error = %e, "verdicts not delivered; offsets not committed this round");
                return;
            }
        }
        let mut parts = self.shared.lock();
        let tpl = Shared::commit_list(&mut parts, true);
        if tpl.count() == 0 {
            return;
        }
        match consumer.commit(&tpl, mode) {
            Ok(()) => {
                if matches!(mode, CommitMode::Sync) {
                    self.shared.metrics.commits.with_label_values(&["ok"]).inc();
                }
                self.shared.mark_committed(&tpl, &mut parts);
                debug!(partitions = tpl.count(), "offsets committed");
            }
            Err(e) => {
                self.shared.metrics.commits.with_label_values(&["error"]).inc();
                warn!(error = %e, "offset commit failed");
            }
        }
    }
}

/// An observer that may be absent.
struct OptObserver<'a, T>(Option<&'a mut T>);

impl<T: Observer> Observer for OptObserver<'_, T> {
    fn rejected(&mut self, r: crate::decode::Reject) {
        if let Some(o) = self.0.as_mut() {
            o.rejected(r)
        }
    }
    fn record(&mut self, f: u16, l: u8, p: crate::judge::Path, late: bool) {
        if let Some(o) = self.0.as_mut() {
            o.record(f, l, p, late)
        }
    }
    fn closed(&mut self, c: &Closed<'_>) {
        if let Some(o) = self.0.as_mut() {
            o.closed(c)
        }
    }
    fn open_joins(&mut self, d: i64) {
        if let Some(o) = self.0.as_mut() {
            o.open_joins(d)
        }
    }
}

fn handle(part: &mut Partition, m: &BorrowedMessage<'_>, obs: &mut impl Observer, rejects: &mut RejectLog) {
    let offset = m.offset();
    if part.next_offset.is_some_and(|n| offset < n) {
        // Re-delivered after a seek; already judged.
        return;
    }
    part.next_offset = Some(offset + 1);
    part.last_record = Instant::now();
    // An empty or tombstone message is a record that is not JSON.
    let payload = m.payload().unwrap_or(&[]);
    let fallback = m.timestamp().to_millis().unwrap_or_else(|| chrono::Utc::now().timestamp_millis());
    if let Err(reason) = part.pipeline.ingest(payload, offset.max(0) as u64, fallback, obs) {
        rejects.log(m.topic(), m.partition(), offset, reason);
    }
}
