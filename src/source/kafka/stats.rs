//! The global live view through Kafka: every instance publishes what it
//! judged to the stats topic, and reads every instance's share back.
//!
//! A **share** is one record of the stats topic, published by the
//! consumer thread with every commit round (an empty one too: it tells the
//! instance is alive and which streams it owns), before the handover state
//! and the offsets: the payload is the live statistics' delta judged since
//! the previous share (`live::Delta`, JSON, compressed by the producer), the
//! headers say who published it, when, and each owned stream's handover
//! state. Because a share covers exactly what the states it carries cover,
//! a handover neither loses nor double-counts a request in the view: the
//! next owner re-reads the rest silently (see `handover`), and it takes the
//! newest state it finds, shares included.
//!
//! The **reader** (one thread per instance) consumes the whole topic from
//! an hour back (so a restarted instance rebuilds the last hour before it
//! answers) and applies every share to the view. Cost grows with instances
//! × features × buckets per commit interval, not with requests.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rdkafka::client::ClientContext;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, Headers, Message, OwnedHeaders};
use rdkafka::producer::{BaseRecord, Producer as _};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use tracing::{info, warn};

use super::commit::FLUSH_TIMEOUT;
use super::handover::StreamState;
use super::verdicts::Producer;
use super::{client_config_for, ClientRole, KafkaConfig, SourceStatus};
use crate::live::{Delta, LiveView, ShareNote, MAX_WINDOW_MS};
use crate::ratelimit::{RateLimit, Verdict};

const H_VERSION: &str = "accord-share";
const H_INSTANCE: &str = "instance";
const H_PUBLISHED: &str = "published-ms";
const H_STREAMS: &str = "streams";

/// What a share's headers say.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Envelope {
    pub instance: String,
    pub published_ms: i64,
    /// Each owned stream and its handover state (text form).
    pub streams: Vec<(i32, String)>,
}

impl Envelope {
    /// The envelope of a share: every stream with a state, and every other
    /// owned stream with an empty one (nothing judged since it came to this
    /// instance: a caught-up stream is still this instance's, and the view
    /// must not call it missing or stale).
    pub fn new(instance: String, published_ms: i64, states: &[(i32, StreamState)], owned: &[i32]) -> Envelope {
        let mut streams: Vec<(i32, String)> = states.iter().map(|(p, s)| (*p, s.encode())).collect();
        for p in owned {
            if !states.iter().any(|(q, _)| q == p) {
                streams.push((*p, String::new()));
            }
        }
        streams.sort_by_key(|s| s.0);
        Envelope { instance, published_ms, streams }
    }

    /// `p=STATE` lines (states hold no newline).
    fn streams_text(&self) -> String {
        self.streams.iter().map(|(p, s)| format!("{p}={s}")).collect::<Vec<_>>().join("\n")
    }

    fn headers(&self) -> OwnedHeaders {
        let published = self.published_ms.to_string();
        let streams = self.streams_text();
        OwnedHeaders::new_with_capacity(4)
            .insert(Header { key: H_VERSION, value: Some("1") })
            .insert(Header { key: H_INSTANCE, value: Some(self.instance.as_str()) })
            .insert(Header { key: H_PUBLISHED, value: Some(published.as_str()) })
            .insert(Header { key: H_STREAMS, value: Some(streams.as_str()) })
    }

    /// The envelope of a message's headers; `None` if it is not a share.
    fn parse(headers: &impl Headers) -> Option<Envelope> {
        let mut version = None;
        let mut env = Envelope { instance: String::new(), published_ms: 0, streams: Vec::new() };
        for i in 0..headers.count() {
            let h = headers.get(i);
            let v = std::str::from_utf8(h.value.unwrap_or_default()).ok()?;
            match h.key {
                H_VERSION => version = Some(v == "1"),
                H_INSTANCE => env.instance = v.to_string(),
                H_PUBLISHED => env.published_ms = v.parse().ok()?,
                H_STREAMS => {
                    for line in v.lines().filter(|l| !l.is_empty()) {
                        let (p, st) = line.split_once('=')?;
                        env.streams.push((p.parse().ok()?, st.to_string()));
                    }
                }
                _ => {}
            }
        }
        (version == Some(true) && !env.instance.is_empty()).then_some(env)
    }
}

/// The name this instance publishes under: the host name (the pod name
/// on Kubernetes) and the process id.
pub fn instance_id() -> String {
    let host = std::env::var("HOSTNAME")
        .ok()
        .filter(|h| !h.is_empty())
        .or_else(|| std::fs::read_to_string("/proc/sys/kernel/hostname").ok().map(|h| h.trim().to_string()))
        .unwrap_or_else(|| "accord".into());
    format!("{host}-{}", std::process::id())
}

/// Samples per feature in one share. Samples are most of a share's bytes
/// (each carries its request's records); the view keeps the newest
/// `live::MAX_SAMPLES` of all shares, so a few per commit interval and
/// instance keep it full while the topic stays small (measured with
/// `examples/view_memory.rs`, see docs/performance.md).
pub const SHARE_SAMPLES: usize = 10;

/// Publishes this instance's shares.
pub struct Publisher {
    producer: Arc<Producer>,
    topic: String,
    instance: String,
}

impl Publisher {
    pub fn new(cfg: &KafkaConfig, topic: String, instance: String) -> Result<Publisher, KafkaError> {
        let mut pc = client_config_for(&cfg.brokers, &cfg.properties, ClientRole::Producer);
        // Idempotent: a retried send never becomes a second share (which the
        // view would add twice). Compressed: shares are repetitive JSON.
        pc.set("linger.ms", "5").set("enable.idempotence", "true").set("compression.type", "zstd");
        Ok(Publisher { producer: Arc::new(pc.create()?), topic, instance })
    }

    /// Publishes one share and waits for the broker to have it. The share
    /// carries at most [`SHARE_SAMPLES`] samples per feature.
    pub fn publish(
        &self,
        delta: &mut Delta,
        streams: &[(i32, StreamState)],
        owned: &[i32],
        now_ms: i64,
    ) -> Result<usize, KafkaError> {
        let env = Envelope::new(self.instance.clone(), now_ms, streams, owned);
        delta.limit_samples(SHARE_SAMPLES);
        let body = delta.encode();
        let rec = BaseRecord::to(&self.topic).key(&self.instance).payload(&body).headers(env.headers());
        self.producer.send(rec).map_err(|(e, _)| e)?;
        self.producer.flush(FLUSH_TIMEOUT)?;
        Ok(body.len())
    }
}

/// What the reader shares with the consumer thread.
#[derive(Default)]
pub struct ReaderState {
    /// Next offset read, per partition of the stats topic.
    positions: Mutex<HashMap<i32, i64>>,
    moved: Condvar,
    /// The newest handover state each stream's shares carried.
    states: Mutex<HashMap<i32, StreamState>>,
}

impl ReaderState {
    /// The newest handover state the shares carried for `partition`.
    pub fn state(&self, partition: i32) -> Option<StreamState> {
        self.states.lock().unwrap_or_else(|e| e.into_inner()).get(&partition).cloned()
    }

    /// Waits (at most `limit`) until the reader has read up to `ends`
    /// (next offsets per partition).
    pub fn wait_for(&self, ends: &HashMap<i32, i64>, limit: Duration) -> bool {
        let deadline = Instant::now() + limit;
        let mut pos = self.positions.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            if ends.iter().all(|(p, end)| pos.get(p).is_some_and(|n| n >= end)) {
                return true;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            pos = self.moved.wait_timeout(pos, left).unwrap_or_else(|e| e.into_inner()).0;
        }
    }
}

/// The reader's librdkafka callbacks. The reader polls on its own thread,
/// so it also tells the instance when every broker is down: the consumer
/// thread may be blocked meanwhile in a synchronous offset commit that
/// waits for the broker to come back, and the judging threads must stop
/// advancing idle watermarks by the wall clock (and `/readyz` say 503) at
/// once. The consumer's statistics callback says when the broker is back.
pub struct ReaderCtx {
    status: Arc<SourceStatus>,
    ready: prometheus::IntGauge,
}

impl ClientContext for ReaderCtx {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, log_message: &str) {
        super::client_log::forward_log(level, fac, log_message);
    }

    fn error(&self, error: KafkaError, reason: &str) {
        if error.rdkafka_error_code() == Some(RDKafkaErrorCode::AllBrokersDown) {
            self.status.broker_down(&self.ready);
        }
        tracing::debug!(%error, reason, "stats topic reader: kafka client error");
    }
}

impl ConsumerContext for ReaderCtx {}

/// The stats topic reader.
pub struct Reader {
    consumer: Arc<BaseConsumer<ReaderCtx>>,
    topic: String,
    pub state: Arc<ReaderState>,
}

impl Reader {
    pub fn new(
        cfg: &KafkaConfig,
        topic: String,
        instance: &str,
        (status, ready): (Arc<SourceStatus>, prometheus::IntGauge),
    ) -> Result<Reader, KafkaError> {
        let mut c = client_config_for(&cfg.brokers, &cfg.properties, ClientRole::Consumer);
        c.set("group.id", format!("{}-stats-{instance}", cfg.group))
            .set("enable.auto.commit", "false")
            .set("enable.partition.eof", "false")
            .set("auto.offset.reset", "earliest")
            .set("fetch.wait.max.ms", "100")
            .set("session.timeout.ms", "6000");
        let consumer = c.create_with_context(ReaderCtx { status, ready })?;
        Ok(Reader { consumer: Arc::new(consumer), topic, state: Arc::default() })
    }

    /// The end (next offset) of every partition of the topic, now.
    /// Blocking.
    pub fn ends(&self) -> Result<HashMap<i32, i64>, KafkaError> {
        let md = self.consumer.fetch_metadata(Some(&self.topic), Duration::from_secs(5))?;
        let mut out = HashMap::new();
        for p in md.topics().iter().flat_map(|t| t.partitions().iter().map(|p| p.id())) {
            let (_, high) = self.consumer.fetch_watermarks(&self.topic, p, Duration::from_secs(5))?;
            out.insert(p, high);
        }
        Ok(out)
    }

    /// Starts reading from an hour back; the view is `rebuilding` until
    /// the reader has caught up with the topic's end at start.
    pub fn start(self, view: LiveView, stop: Arc<AtomicBool>) -> std::io::Result<JoinHandle<()>> {
        view.set_rebuilding(true);
        let span = tracing::Span::current();
        std::thread::Builder::new().name("accord-stats".into()).spawn(move || span.in_scope(|| self.run(view, stop)))
    }

    fn assign_from_an_hour_back(&self) -> Result<(), KafkaError> {
        let md = self.consumer.fetch_metadata(Some(&self.topic), Duration::from_secs(5))?;
        let since = chrono::Utc::now().timestamp_millis() - MAX_WINDOW_MS - 60_000;
        let mut times = TopicPartitionList::new();
        for p in md.topics().iter().flat_map(|t| t.partitions().iter().map(|p| p.id())) {
            times.add_partition_offset(&self.topic, p, Offset::Offset(since))?;
        }
        let start = self.consumer.offsets_for_times(times.clone(), Duration::from_secs(10)).unwrap_or_else(|e| {
            warn!(error = %e, topic = %self.topic, "cannot look up offsets by time; reading the stats topic from its start");
            let mut all = TopicPartitionList::new();
            for e in times.elements() {
                let _ = all.add_partition_offset(&self.topic, e.partition(), Offset::Beginning);
            }
            all
        });
        let mut tpl = TopicPartitionList::new();
        for e in start.elements() {
            // A lookup that finds nothing (no record that recent, or a
            // broker that cannot look offsets up by time): from the start;
            // the view drops what is older than an hour as it applies it.
            let o = match e.offset() {
                Offset::Offset(o) if o >= 0 => Offset::Offset(o),
                _ => Offset::Beginning,
            };
            tpl.add_partition_offset(&self.topic, e.partition(), o)?;
        }
        self.consumer.assign(&tpl)
    }

    fn run(self, view: LiveView, stop: Arc<AtomicBool>) {
        let mut errors = RateLimit::every(Duration::from_secs(10));
        let started = Instant::now();
        let mut target: Option<HashMap<i32, i64>> = None;
        while target.is_none() && !stop.load(Ordering::Acquire) {
            match self.assign_from_an_hour_back().and_then(|()| self.ends()) {
                Ok(ends) => target = Some(ends),
                Err(e) => {
                    if let Verdict::Log { .. } = errors.check(Instant::now()) {
                        warn!(error = %e, topic = %self.topic, "cannot read the stats topic yet; retrying");
                    }
                    std::thread::sleep(Duration::from_secs(1));
                }
            }
        }
        let target = target.unwrap_or_default();
        let mut rebuilt = false;
        let (mut shares, mut bytes) = (0u64, 0usize);
        while !stop.load(Ordering::Acquire) {
            if !rebuilt {
                let pos = self.state.positions.lock().unwrap_or_else(|e| e.into_inner());
                let caught_up = target.iter().all(|(p, end)| *end == 0 || pos.get(p).is_some_and(|n| n >= end));
                drop(pos);
                // Give up waiting after a minute (a broker that reports its
                // high watermark wrong, a topic cut by retention).
                if caught_up || started.elapsed() > Duration::from_secs(60) {
                    rebuilt = true;
                    view.set_rebuilding(false);
                    info!(
                        shares,
                        bytes,
                        secs = started.elapsed().as_secs_f64(),
                        "live view rebuilt from the stats topic"
                    );
                }
            }
            let Some(m) = self.consumer.poll(Duration::from_millis(100)) else { continue };
            let m = match m {
                Ok(m) => m,
                Err(e) => {
                    if let Verdict::Log { suppressed } = errors.check(Instant::now()) {
                        warn!(error = %e, suppressed, "stats topic read error (logged at most every 10 s)");
                    }
                    continue;
                }
            };
            self.apply(&view, &m);
            shares += 1;
            bytes += m.payload_len();
            let mut pos = self.state.positions.lock().unwrap_or_else(|e| e.into_inner());
            pos.insert(m.partition(), m.offset() + 1);
            self.state.moved.notify_all();
        }
        view.set_rebuilding(false);
    }

    fn apply(&self, view: &LiveView, m: &impl Message) {
        let Some(env) = m.headers().and_then(Envelope::parse) else {
            return; // not a share: another tool wrote to the topic
        };
        let delta = match Delta::decode(m.payload().unwrap_or_default()) {
            Ok(d) => d,
            Err(e) => {
                warn!(error = %e, instance = %env.instance, offset = m.offset(), "undecodable share skipped");
                Delta::default()
            }
        };
        let streams: Vec<i32> = env.streams.iter().map(|s| s.0).collect();
        let mut states = self.state.states.lock().unwrap_or_else(|e| e.into_inner());
        for (p, text) in &env.streams {
            if let Some(st) = StreamState::decode(text, "") {
                let prev = states.remove(p);
                states.insert(*p, StreamState::newest(prev, st));
            }
        }
        drop(states);
        view.apply_share(
            &ShareNote { instance: &env.instance, published_ms: env.published_ms, streams: &streams },
            delta,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn envelope_round_trip() {
        let env = Envelope {
            instance: "accord-7f9c-12".into(),
            published_ms: 1_795_168_800_123,
            streams: vec![(0, "accord2;wo=1;wp=2;t=a,o=3,p=4".into()), (5, "accord2;wo=1;wp=2;t=a,o=0,p=-1".into())],
        };
        assert_eq!(Envelope::parse(&env.headers()), Some(env));
        let empty = Envelope { instance: "i".into(), published_ms: 0, streams: vec![] };
        assert_eq!(Envelope::parse(&empty.headers()), Some(empty));
    }

    #[test]
    fn owned_streams_without_a_state_are_claimed_with_an_empty_one() {
        let st = StreamState::decode("accord2;wo=1;wp=2;t=a,o=3,p=4", "").unwrap();
        let env = Envelope::new("i".into(), 9, &[(2, st.clone())], &[0, 2]);
        assert_eq!(env.streams, vec![(0, String::new()), (2, st.encode())]);
        let back = Envelope::parse(&env.headers()).unwrap();
        assert_eq!(back.streams.iter().map(|s| s.0).collect::<Vec<_>>(), [0, 2]);
        // The empty state decodes to none: it never replaces a real one.
        assert_eq!(StreamState::decode(&back.streams[0].1, ""), None);
    }

    #[test]
    fn other_messages_are_not_shares() {
        let h = OwnedHeaders::new().insert(Header { key: "x", value: Some("y") });
        assert_eq!(Envelope::parse(&h), None);
        let h = OwnedHeaders::new()
            .insert(Header { key: H_VERSION, value: Some("1") })
            .insert(Header { key: H_PUBLISHED, value: Some("soon") })
            .insert(Header { key: H_INSTANCE, value: Some("i") });
        assert_eq!(Envelope::parse(&h), None);
    }
}
