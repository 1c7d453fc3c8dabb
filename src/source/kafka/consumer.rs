//! The consumer thread: polls the consumer group, serves its rebalances and
//! commits what the judging threads judged.
//!
//! Rebalances (eager: every rebalance revokes everything, then assigns):
//! - revoke: the streams are taken back from their judging threads with
//!   their final handover states, which are committed before the partitions
//!   leave; if that fails (the broker is away) the streams are kept in
//!   memory in case they come back;
//! - assign: each stream's newest handover state (commit metadata or the
//!   handover topic) says where each topic starts and what to re-read
//!   silently; the partition queues are split off the consumer's queue and
//!   the stream goes to the least busy judging thread. A stream some of
//!   whose topics went to another instance is refused: not consumed, and
//!   `/readyz` says why.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, Weak};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rdkafka::client::ClientContext;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::statistics::Statistics;
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use rdkafka::types::RDKafkaErrorCode;
use tracing::{error, info, warn};

use super::client_log::{forward_log, security_problem};
use super::commit::{self, CommitError, Sinks, COMMIT_BACKOFF};
use super::handover::StreamState;
use super::internal::read_handover_topic;
use super::judge::{Control, Ends, JudgeHandle, Released, Slot};
use super::stats::{Publisher, ReaderState};
use super::stream::Stream;
use super::verdicts::{Producer, VerdictProducer};
use super::{client_config, client_config_for, ClientRole, KafkaConfig, SourceError, SourceStatus};
use crate::decode::InputFormat;
use crate::export::metrics::{lag_gauge, watermark_gauge, Metrics};
use crate::features::Features;
use crate::live::{Delta, LiveView};
use crate::pipeline::Pipeline;
use crate::ratelimit::{RateLimit, Verdict};

/// How long a stream revoked without a persisted handover is kept.
const RETAIN_FOR: Duration = Duration::from_secs(600);
/// How long the consumer thread waits for a judging thread to answer.
const JUDGE_REPLY: Duration = Duration::from_secs(30);

/// Everything the consumer thread and its callbacks share.
pub struct Shared {
    cfg: KafkaConfig,
    features: Arc<Features>,
    metrics: Metrics,
    status: Arc<SourceStatus>,
    handover_topic: String,
    handover: Arc<Producer>,
    verdicts: Option<Arc<Producer>>,
    judges: Mutex<Vec<JudgeHandle<Ctx>>>,
    /// Stream (partition) → index of its judging thread.
    owner: Mutex<HashMap<i32, usize>>,
    /// The state committed last, per stream.
    committed: Mutex<HashMap<i32, StreamState>>,
    /// Streams revoked while their state could not be persisted.
    retained: Mutex<HashMap<i32, (Instant, Stream)>>,
    /// Streams made in the assign callback, started once the assignment
    /// is applied.
    pending: Mutex<Vec<(i32, Stream)>>,
    /// Streams started since the consumer's main queue was last found
    /// empty: messages fetched before their partition queues were split
    /// may still be on it (see `Control::RoutingDone`).
    routing: Mutex<Vec<i32>>,
    /// Partitions of streams refused because other instances own some of
    /// their topics.
    refused: Mutex<Vec<i32>>,
    consumer: OnceLock<Weak<BaseConsumer<Ctx>>>,
    errors: Mutex<RateLimit>,
    auth_errors: Mutex<RateLimit>,
    /// The live view this instance serves, and its share of it.
    view: LiveView,
    publisher: Publisher,
    stats_topic: String,
    /// Statistics taken but not yet published (a failed round).
    pending_stats: Mutex<Delta>,
    /// What the stats topic reader has seen.
    reader: Arc<ReaderState>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Shared {
    pub fn new(
        cfg: &KafkaConfig,
        features: &Arc<Features>,
        metrics: &Metrics,
        status: &Arc<SourceStatus>,
        handover_topic: String,
        view: LiveView,
        stats: (Publisher, String, Arc<ReaderState>),
    ) -> Result<Arc<Shared>, SourceError> {
        let producer = |what: &str| -> Result<Arc<Producer>, SourceError> {
            let mut pc = client_config_for(&cfg.brokers, &cfg.properties, ClientRole::Producer);
            pc.set("linger.ms", "5").set("queue.buffering.max.messages", "200000");
            pc.create().map(Arc::new).map_err(|e| SourceError::Config(format!("{what} producer configuration: {e}")))
        };
        Ok(Arc::new(Shared {
            cfg: cfg.clone(),
            features: features.clone(),
            metrics: metrics.clone(),
            status: status.clone(),
            handover_topic,
            handover: producer("handover")?,
            verdicts: cfg.verdicts_topic.as_ref().map(|_| producer("verdicts")).transpose()?,
            judges: Mutex::new(Vec::new()),
            owner: Mutex::new(HashMap::new()),
            committed: Mutex::new(HashMap::new()),
            retained: Mutex::new(HashMap::new()),
            pending: Mutex::new(Vec::new()),
            routing: Mutex::new(Vec::new()),
            refused: Mutex::new(Vec::new()),
            consumer: OnceLock::new(),
            errors: Mutex::new(RateLimit::every(Duration::from_secs(10))),
            auth_errors: Mutex::new(RateLimit::every(Duration::from_secs(30))),
            pending_stats: Mutex::new(Delta::new(features.catalog().layers.clone())),
            view,
            publisher: stats.0,
            stats_topic: stats.1,
            reader: stats.2,
        }))
    }

    /// A verdicts observer for one judging thread (none without
    /// `--verdicts-topic`).
    pub fn verdict_observer(&self) -> Option<VerdictProducer> {
        let (p, t) = (self.verdicts.as_ref()?, self.cfg.verdicts_topic.as_ref()?);
        Some(VerdictProducer::new(p.clone(), t.clone(), self.features.clone()))
    }

    pub fn status(&self) -> Arc<SourceStatus> {
        self.status.clone()
    }

    fn sinks(&self) -> Sinks<'_> {
        Sinks { verdicts: self.verdicts.as_deref(), handover: &self.handover, handover_topic: &self.handover_topic }
    }

    /// One commit round for `states` and the statistics taken with them
    /// (`delta`); returns whether the states are persisted. A periodic
    /// round (`heartbeat`) publishes a share even when nothing changed: it
    /// tells the view this instance is alive and which streams it owns.
    fn commit(
        &self,
        consumer: &BaseConsumer<Ctx>,
        states: &[(i32, StreamState)],
        delta: Delta,
        only_changed: bool,
        heartbeat: bool,
    ) -> bool {
        let plan = commit::plan(&self.cfg.group, states, &lock(&self.committed), only_changed);
        let sinks = self.sinks();
        // Statistics not yet published (an earlier round failed) go with
        // this round's: none is lost, none is published twice.
        let mut pending = lock(&self.pending_stats);
        pending.merge(delta);
        let publish = heartbeat || !pending.is_empty() || !plan.offsets.is_empty();
        let round = commit::flush_verdicts(&sinks)
            .and_then(|()| {
                if !publish {
                    return Ok(());
                }
                let now = chrono::Utc::now().timestamp_millis();
                let owned: Vec<i32> = lock(&self.owner).keys().copied().collect();
                match self.publisher.publish(&mut pending, states, &owned, now) {
                    Ok(bytes) => {
                        self.metrics.stats_bytes.inc_by(bytes as u64);
                        *pending = Delta::new(self.features.catalog().layers.clone());
                        Ok(())
                    }
                    Err(source) => Err(CommitError::Stats { topic: self.stats_topic.clone(), source }),
                }
            })
            .and_then(|()| commit::write_handover(&plan, &sinks))
            .and_then(|()| commit::commit_offsets(&plan, consumer, CommitMode::Sync));
        drop(pending);
        match round {
            Ok(()) => {
                if !plan.offsets.is_empty() {
                    self.metrics.commits.with_label_values(&["ok"]).inc();
                }
                let mut committed = lock(&self.committed);
                for (p, st) in states {
                    committed.insert(*p, st.clone());
                }
                true
            }
            Err(e) => {
                self.metrics.commits.with_label_values(&["error"]).inc();
                commit::log_failure(&e);
                false
            }
        }
    }

    /// The handover state of every stream and the statistics taken with
    /// them, from every judging thread.
    fn snapshot(&self) -> (Vec<(i32, StreamState)>, Delta) {
        let judges = lock(&self.judges);
        let mut replies = Vec::new();
        for j in judges.iter() {
            let (tx, rx) = mpsc::channel();
            if j.send(Control::Snapshot { reply: tx }) {
                replies.push(rx);
            }
        }
        let mut delta = Delta::new(self.features.catalog().layers.clone());
        let mut states = Vec::new();
        for snap in replies.into_iter().filter_map(|rx| rx.recv_timeout(JUDGE_REPLY).ok()).flatten() {
            delta.merge(snap.delta);
            if let Some(st) = snap.state {
                states.push((snap.partition, st));
            }
        }
        (states, delta)
    }

    /// Takes streams back with their final states and statistics.
    fn release_with_states(&self, partitions: &[i32]) -> (Vec<Released>, Vec<(i32, StreamState)>, Delta) {
        let mut released = self.release(partitions);
        let mut delta = Delta::new(self.features.catalog().layers.clone());
        let mut states = Vec::new();
        for r in &mut released {
            delta.merge(std::mem::take(&mut r.delta));
            if let Some(st) = r.state.clone() {
                states.push((r.stream.partition, st));
            }
        }
        (released, states, delta)
    }

    /// Takes streams back from their judging threads.
    fn release(&self, partitions: &[i32]) -> Vec<Released> {
        let mut owner = lock(&self.owner);
        let mut judges = lock(&self.judges);
        let by_judge = by_judge(partitions.iter().filter_map(|p| owner.remove(p).map(|j| (j, *p))));
        let mut out = Vec::new();
        for (j, ps) in by_judge {
            let (tx, rx) = mpsc::channel();
            let n = ps.len();
            if judges[j].send(Control::Release { partitions: ps, reply: tx }) {
                match rx.recv_timeout(JUDGE_REPLY) {
                    Ok(r) => out.extend(r),
                    Err(e) => error!(error = %e, "a judging thread did not hand its streams back"),
                }
            }
            judges[j].streams = judges[j].streams.saturating_sub(n);
        }
        out
    }

    /// Revoked streams: commit their final states, then let them go.
    fn revoke(&self, consumer: &BaseConsumer<Ctx>, revoked: &TopicPartitionList) {
        let mut partitions: Vec<i32> = revoked.elements().iter().map(|e| e.partition()).collect();
        partitions.sort_unstable();
        partitions.dedup();
        lock(&self.refused).retain(|p| !partitions.contains(p));
        let (released, states, delta) = self.release_with_states(&partitions);
        let persisted = self.commit(consumer, &states, delta, false, false);
        let n = released.len();
        for r in released {
            // Their open joins now belong to the next owner.
            self.metrics.open_joins.sub(r.stream.open_joins() as i64);
            let p = r.stream.partition.to_string();
            for t in r.stream.topics() {
                let _ = self.metrics.watermark_delay.remove_label_values(&[t, &p]);
                let _ = self.metrics.consumer_lag.remove_label_values(&[t, &p]);
            }
            r.stream.log_release();
            if !persisted {
                // The broker is away (a session timeout during an outage):
                // keep the stream; if it comes back to this instance and
                // nobody got further, it continues exactly.
                let mut kept = lock(&self.retained);
                kept.retain(|_, (at, _)| at.elapsed() < RETAIN_FOR);
                kept.insert(r.stream.partition, (Instant::now(), r.stream));
            }
        }
        if !persisted && n > 0 {
            warn!(
                streams = n,
                "revoked without a persisted handover state; keeping it in case the partitions come back"
            );
        }
        let owned = lock(&self.owner).len();
        info!(revoked = n, still_owned = owned, "partitions revoked");
        if owned == 0 {
            self.status.assigned.store(false, Ordering::Relaxed);
            self.metrics.ready.set(0);
        }
    }

    /// Handover states of `partitions`: from the commit metadata (valid
    /// only with the committed offset it came with) and from the handover
    /// topic; the newest wins.
    fn inherited(&self, consumer: &BaseConsumer<Ctx>, tpl: &TopicPartitionList) -> HashMap<i32, StreamState> {
        let mut out: HashMap<i32, StreamState> = HashMap::new();
        match consumer.committed_offsets(tpl.clone(), Duration::from_secs(10)) {
            Ok(committed) => {
                for e in committed.elements() {
                    if let (Offset::Offset(o), Some(st)) = (e.offset(), StreamState::decode(e.metadata(), e.topic())) {
                        if st.topic(e.topic()).is_some_and(|m| m.offset == o) {
                            let prev = out.remove(&e.partition());
                            out.insert(e.partition(), StreamState::newest(prev, st));
                        }
                    }
                }
            }
            Err(e) => warn!(error = %e, "cannot read committed offsets"),
        }
        // The stats topic's shares carry every owner's states too, written
        // just before the handover topic: read it up to its end first.
        let caught_up = self.reader_ends().is_some_and(|ends| self.reader.wait_for(&ends, Duration::from_secs(10)));
        if !caught_up {
            warn!(topic = %self.stats_topic, "the stats topic reader has not caught up; handover states from commits and the handover topic only");
        }
        for e in tpl.elements() {
            if let Some(st) = self.reader.state(e.partition()) {
                let prev = out.remove(&e.partition());
                out.insert(e.partition(), StreamState::newest(prev, st));
            }
        }
        match read_handover_topic(&self.cfg, &self.handover_topic) {
            Ok(states) => {
                for (p, st) in states {
                    if out.contains_key(&p) || tpl.elements().iter().any(|e| e.partition() == p) {
                        let prev = out.remove(&p);
                        out.insert(p, StreamState::newest(prev, st));
                    }
                }
            }
            Err(e) => warn!(error = %e, topic = %self.handover_topic, "cannot read the handover topic"),
        }
        out
    }

    /// The stats topic's end, now (blocking).
    fn reader_ends(&self) -> Option<HashMap<i32, i64>> {
        let probe = client_config_for(&self.cfg.brokers, &self.cfg.properties, ClientRole::Consumer)
            .create::<BaseConsumer>()
            .ok()?;
        let md = probe.fetch_metadata(Some(&self.stats_topic), Duration::from_secs(5)).ok()?;
        let mut out = HashMap::new();
        for p in md.topics().iter().flat_map(|t| t.partitions().iter().map(|p| p.id())) {
            let (_, high) = probe.fetch_watermarks(&self.stats_topic, p, Duration::from_secs(5)).ok()?;
            out.insert(p, high);
        }
        Some(out)
    }

    /// The assign callback, before the assignment is applied: builds each
    /// stream from the newest handover state and sets where each topic
    /// starts.
    fn assign(&self, consumer: &BaseConsumer<Ctx>, tpl: &TopicPartitionList) {
        let mut by_p: BTreeMap<i32, Vec<String>> = BTreeMap::new();
        for e in tpl.elements() {
            by_p.entry(e.partition()).or_default().push(e.topic().to_string());
        }
        let mut refused = Vec::new();
        by_p.retain(|p, topics| {
            let whole = self.cfg.topics.iter().all(|t| topics.contains(t));
            if !whole {
                refused.push(*p);
            }
            whole
        });
        if !refused.is_empty() {
            let msg = format!(
                "assignment splits streams {refused:?}: another instance owns partition p of some topics; every instance must use partition.assignment.strategy=range over the same topics"
            );
            error!("{msg}");
            self.status.set_problem(msg);
            *lock(&self.refused) = refused;
        }
        let inherited = self.inherited(consumer, tpl);
        let mut pending = Vec::new();
        for &p in by_p.keys() {
            let state = inherited.get(&p);
            if let Some((_, mut s)) = lock(&self.retained).remove(&p) {
                // Ours, unless another owner got further meanwhile.
                let mine = s.handover();
                if state.is_none_or(|st| mine.as_ref().is_some_and(|m| m.progress() >= st.progress())) {
                    info!(partition = p, "partition back: continuing from the state kept in memory");
                    s.restart_idle_clock(Instant::now());
                    self.seek(tpl, p, mine.as_ref().map(|st| seek_offsets(&self.cfg.topics, st)));
                    pending.push((p, s));
                    continue;
                }
            }
            let mut stream = self.new_stream(p, by_p.len());
            if let Some(st) = state {
                info!(partition = p, state = %st.encode(), "continuing from the previous owner's handover state");
                let seek = stream.inherit(st);
                self.seek(tpl, p, Some(seek));
            }
            pending.push((p, stream));
        }
        *lock(&self.pending) = pending;
    }

    fn seek(&self, tpl: &TopicPartitionList, p: i32, offsets: Option<Vec<Option<i64>>>) {
        let Some(offsets) = offsets else { return };
        for (t, o) in self.cfg.topics.iter().zip(offsets) {
            if let (Some(o), Some(mut el)) = (o, tpl.find_partition(t, p)) {
                let _ = el.set_offset(Offset::Offset(o));
            }
        }
    }

    /// A new stream, one of `streams` this instance is being assigned.
    fn new_stream(&self, p: i32, streams: usize) -> Stream {
        // One sample budget per instance, shared by its streams (rebalances
        // are eager: every assignment hands out all of them at once).
        let budget = self.cfg.sample_bytes / streams.max(1);
        let counters = self
            .cfg
            .topics
            .iter()
            .map(|t| self.metrics.topic_waits_expired.with_label_values(&[t.as_str(), &p.to_string()]))
            .collect();
        let formats: Vec<InputFormat> = (0..self.cfg.topics.len()).map(|t| self.cfg.format(t)).collect();
        Stream::new(p, Pipeline::new(self.features.clone(), budget), &self.cfg.topics)
            .with_formats(formats)
            .with_overdue_counters(counters)
    }

    /// After the assignment is applied: split each new stream's partition
    /// queues off the consumer's queue and hand the stream to the least
    /// busy judging thread.
    fn start_pending(&self) {
        let Some(consumer) = self.consumer.get().and_then(Weak::upgrade) else { return };
        let pending = std::mem::take(&mut *lock(&self.pending));
        let mut judges = lock(&self.judges);
        let mut owner = lock(&self.owner);
        for (p, stream) in pending {
            let Some(j) = (0..judges.len()).min_by_key(|&j| judges[j].streams) else { break };
            let wake = Arc::new(AtomicBool::new(true));
            let mut queues = Vec::new();
            for t in &self.cfg.topics {
                match consumer.split_partition_queue(t, p) {
                    Some(mut q) => {
                        let (w, thread) = (wake.clone(), judges[j].thread());
                        q.set_nonempty_callback(move || {
                            w.store(true, Ordering::Release);
                            thread.unpark();
                        });
                        queues.push(q);
                    }
                    None => error!(topic = %t, partition = p, "cannot split the partition queue"),
                }
            }
            if queues.len() != self.cfg.topics.len() {
                continue;
            }
            self.metrics.open_joins.add(stream.open_joins() as i64);
            let gauges = self.cfg.topics.iter().map(|t| watermark_gauge(&self.metrics, t, p)).collect();
            let ends = Ends::new(consumer.clone(), &self.cfg.topics, p);
            let slot = Slot::new(stream, queues, ends, wake, gauges, self.view.recorder());
            if judges[j].send(Control::Add(Box::new(slot))) {
                judges[j].streams += 1;
                owner.insert(p, j);
                lock(&self.routing).push(p);
            }
        }
        let refused = lock(&self.refused).clone();
        if !refused.is_empty() {
            let mut tpl = TopicPartitionList::new();
            for t in &self.cfg.topics {
                for p in &refused {
                    let _ = tpl.add_partition_offset(t, *p, Offset::Invalid);
                }
            }
            let _ = consumer.pause(&tpl);
        }
        let assigned = !owner.is_empty();
        self.status.assigned.store(assigned, Ordering::Relaxed);
        self.status.broker_up.store(true, Ordering::Relaxed);
        self.metrics.ready.set(i64::from(assigned && refused.is_empty()));
        info!(streams = owner.len(), "partitions assigned");
    }

    /// The consumer's main queue was found empty: since the split no message
    /// of a started stream goes there, so every one fetched before it has
    /// been routed, and the streams' partition queues may be read.
    fn routing_done(&self) {
        let started = std::mem::take(&mut *lock(&self.routing));
        if started.is_empty() {
            return;
        }
        let owner = lock(&self.owner);
        let judges = lock(&self.judges);
        for (j, partitions) in by_judge(started.into_iter().filter_map(|p| owner.get(&p).map(|&j| (j, p)))) {
            judges[j].send(Control::RoutingDone { partitions });
        }
    }

    /// A message that arrived on the consumer's own queue (fetched before
    /// its partition's queue was split): to its stream, in order.
    fn route(&self, m: &rdkafka::message::BorrowedMessage<'_>) {
        let Some(t) = self.cfg.topics.iter().position(|x| x == m.topic()) else { return };
        let owner = lock(&self.owner);
        if let Some(&j) = owner.get(&m.partition()) {
            lock(&self.judges)[j].send(Control::Routed { partition: m.partition(), topic: t, msg: m.detach() });
        }
    }

    /// The broker answers again: streams get a fresh idle clock, so none
    /// advances its watermark by wall clock before its backlog arrives.
    fn broker_back_up(&self) {
        for j in lock(&self.judges).iter() {
            j.send(Control::BrokerBackUp);
        }
        if !self.status.broker_up.swap(true, Ordering::Relaxed) {
            info!("kafka broker reachable again");
        }
        let assigned = self.status.assigned.load(Ordering::Relaxed);
        self.metrics.ready.set(i64::from(assigned && lock(&self.refused).is_empty()));
    }
}

/// Whether the consumer's main queue holds nothing (messages fetched before
/// a partition queue was split, events). rust-rdkafka's `poll` answers
/// `None` both for an empty queue and after serving an event, so this asks
/// librdkafka (`rd_kafka_queue_length` of the consumer queue, the one
/// `BaseConsumer::poll` reads).
fn main_queue_empty(consumer: &BaseConsumer<Ctx>) -> bool {
    use rdkafka::bindings as rd;
    // SAFETY: the client pointer is valid while `consumer` is borrowed; the
    // queue handle returned by `rd_kafka_queue_get_consumer` is a new
    // reference, released before returning.
    unsafe {
        let q = rd::rd_kafka_queue_get_consumer(consumer.client().native_ptr());
        if q.is_null() {
            return true;
        }
        let n = rd::rd_kafka_queue_length(q);
        rd::rd_kafka_queue_destroy(q);
        n == 0
    }
}

/// Partitions grouped by the judging thread that owns them.
fn by_judge(owned: impl Iterator<Item = (usize, i32)>) -> BTreeMap<usize, Vec<i32>> {
    let mut out: BTreeMap<usize, Vec<i32>> = BTreeMap::new();
    for (j, p) in owned {
        out.entry(j).or_default().push(p);
    }
    out
}

/// The start offset of each configured topic in a state.
fn seek_offsets(topics: &[String], st: &StreamState) -> Vec<Option<i64>> {
    topics.iter().map(|t| st.topic(t).map(|m| m.offset)).collect()
}

/// librdkafka's callbacks.
pub struct Ctx {
    shared: Arc<Shared>,
}

impl ClientContext for Ctx {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, log_message: &str) {
        forward_log(level, fac, log_message);
    }

    fn stats(&self, stats: Statistics) {
        // A broker in state UP (not the bootstrap placeholder) means the
        // cluster answers, even if no record arrives.
        let up = stats.brokers.values().any(|b| b.state == "UP" && b.nodeid >= 0);
        if up {
            self.shared.status.clear_problem("kafka authentication");
            self.shared.status.clear_problem("kafka TLS");
            if !self.shared.status.broker_up.load(Ordering::Relaxed) {
                self.shared.broker_back_up();
            }
        }
        // Lag from the read position (what accord has yet to judge), not
        // from the committed offset, which trails by design while joins
        // are open (up to two windows plus lateness).
        for (topic, t) in &stats.topics {
            for (&p, ps) in &t.partitions {
                if p >= 0 && ps.app_offset >= 0 && ps.hi_offset >= 0 {
                    lag_gauge(&self.shared.metrics, topic, p).set((ps.hi_offset - ps.app_offset).max(0));
                }
            }
        }
    }

    fn error(&self, error: KafkaError, reason: &str) {
        let code = error.rdkafka_error_code();
        match code {
            // The end of a partition is not an error.
            Some(RDKafkaErrorCode::PartitionEOF) => return,
            Some(RDKafkaErrorCode::AllBrokersDown) => self.shared.status.broker_down(&self.shared.metrics.ready),
            _ => {}
        }
        // Credentials and certificates do not fix themselves: one clear
        // line (repeated every 30 s while it lasts) and the readyz reason.
        if let Some(p) = security_problem(code, reason) {
            if let Verdict::Log { .. } = lock(&self.shared.auth_errors).check(Instant::now()) {
                error!("{p}");
            }
            self.shared.status.set_problem(p);
            self.shared.metrics.ready.set(0);
            return;
        }
        if let Verdict::Log { suppressed } = lock(&self.shared.errors).check(Instant::now()) {
            warn!(%error, reason, suppressed, "kafka client error (logged at most every 10 s)");
        }
    }
}

impl ConsumerContext for Ctx {
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        self.shared.metrics.rebalances.inc();
        match rebalance {
            Rebalance::Revoke(revoked) => self.shared.revoke(consumer, revoked),
            Rebalance::Assign(tpl) => self.shared.assign(consumer, tpl),
            Rebalance::Error(e) => warn!(error = %e, "rebalance error"),
        }
    }

    fn post_rebalance(&self, _consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Assign(_) = rebalance {
            self.shared.start_pending();
        }
    }
}

/// Creates the consumer, subscribes and starts the consumer thread, which
/// runs until `stop` and then commits, stops the judging threads and
/// leaves the group.
pub fn start(
    shared: Arc<Shared>,
    judges: Vec<JudgeHandle<Ctx>>,
    stop: Arc<AtomicBool>,
) -> Result<JoinHandle<Result<(), SourceError>>, SourceError> {
    let cfg = &shared.cfg;
    let mut c = client_config(&cfg.brokers, &[]);
    c.set("group.id", &cfg.group)
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", "earliest")
        // Short enough that group joins do not stall (mock cluster, tansu).
        .set("session.timeout.ms", "6000")
        .set("heartbeat.interval.ms", "1000")
        .set("statistics.interval.ms", "5000")
        // End-of-partition events tell "caught up" from "stalled".
        .set("enable.partition.eof", "true")
        // Bound the prefetch per partition so a flood cannot grow memory in
        // librdkafka's queues.
        .set("queued.max.messages.kbytes", "16384")
        // With that bound reached, librdkafka 2.x waits
        // `fetch.queue.backoff.ms` (default 1000) before fetching again: a
        // consumer slower than its fetcher would drain in bursts with
        // one-second pauses (docs/performance.md).
        .set("fetch.queue.backoff.ms", "10")
        // One instance owns partition p of every topic (co-partitioning).
        .set("partition.assignment.strategy", "range");
    for (k, v) in client_config_for(&cfg.brokers, &cfg.properties, ClientRole::Consumer).config_map().iter() {
        c.set(k, v);
    }
    let consumer: BaseConsumer<Ctx> = c
        .create_with_context(Ctx { shared: shared.clone() })
        .map_err(|e| SourceError::Config(format!("kafka consumer configuration: {e}")))?;
    let consumer = Arc::new(consumer);
    let _ = shared.consumer.set(Arc::downgrade(&consumer));
    *lock(&shared.judges) = judges;
    let topics: Vec<&str> = cfg.topics.iter().map(String::as_str).collect();
    consumer.subscribe(&topics).map_err(|e| SourceError::Config(format!("cannot subscribe to {topics:?}: {e}")))?;
    // The caller's span (an instance's, when several run in one process,
    // as in the tests) goes with the thread's log lines.
    let span = tracing::Span::current();
    std::thread::Builder::new()
        .name("accord-kafka".into())
        .spawn(move || span.in_scope(|| run(consumer, shared, stop)))
        .map_err(|e| SourceError::Thread(format!("consumer thread: {e}")))
}

fn run(consumer: Arc<BaseConsumer<Ctx>>, shared: Arc<Shared>, stop: Arc<AtomicBool>) -> Result<(), SourceError> {
    let interval = shared.cfg.commit_interval;
    let mut next_commit = Instant::now() + interval;
    let mut errors = RateLimit::every(Duration::from_secs(10));
    while !stop.load(Ordering::Acquire) {
        match consumer.poll(Duration::from_millis(100)) {
            Some(Ok(m)) => shared.route(&m),
            // `None` also follows a rebalance or commit event served by the
            // poll, with messages still queued: ask the queue itself.
            None if main_queue_empty(&consumer) => shared.routing_done(),
            Some(Err(KafkaError::PartitionEOF(_))) | None => {}
            Some(Err(e)) => {
                if let Verdict::Log { suppressed } = errors.check(Instant::now()) {
                    warn!(error = %e, suppressed, "kafka consume error (logged at most every 10 s)");
                }
            }
        }
        if shared.status.broker_up.load(Ordering::Relaxed) && Instant::now() >= next_commit {
            let (states, delta) = shared.snapshot();
            let ok = shared.commit(&consumer, &states, delta, true, true);
            if let Some(f) = shared.view.freshness(chrono::Utc::now().timestamp_millis()) {
                shared.metrics.view_age.set(f.age_seconds.unwrap_or(f64::NAN));
                shared.metrics.view_instances.set(f.instances as i64);
            }
            next_commit = Instant::now() + if ok { interval } else { COMMIT_BACKOFF };
        }
    }
    // Shutdown: every stream's final state is committed; open joins are
    // not judged here, the next owner replays them.
    let owned: Vec<i32> = lock(&shared.owner).keys().copied().collect();
    let (released, states, delta) = shared.release_with_states(&owned);
    shared.commit(&consumer, &states, delta, false, true);
    for r in &released {
        shared.metrics.open_joins.sub(r.stream.open_joins() as i64);
    }
    drop(released);
    for j in lock(&shared.judges).iter_mut() {
        j.stop();
    }
    lock(&shared.judges).clear();
    consumer.unsubscribe();
    Ok(())
}
