//! One stream of `accord run`: partition `p` of every subscribed topic,
//! with one watermark and one set of open joins.
//!
//! The stream judges the messages its judging thread hands it, suppresses
//! the effects of what a previous owner already judged (handover), tells
//! what the next owner needs (`handover`), and advances its watermark with
//! the wall clock when it is idle. It knows nothing of threads or of
//! librdkafka, so every rule here is tested with plain values.

use std::time::{Duration, Instant};

use tracing::{info, warn};

use super::handover::{StreamState, TopicMark};
use super::merge::TopicView;
use crate::decode::{InputFormat, Reject};
use crate::join::{Observer, Position};
use crate::pipeline::{MessageOutcome, Pipeline, Valid};
use crate::ratelimit::{RateLimit, Verdict};

/// The part of a Kafka message the stream reads.
#[derive(Debug, Clone, Copy)]
pub struct Msg<'a> {
    pub offset: i64,
    /// The message timestamp (create or log-append time), if it has one.
    pub timestamp_ms: Option<i64>,
    /// An empty or tombstone message is a record that is not JSON.
    pub payload: &'a [u8],
}

impl<'a> Msg<'a> {
    pub fn of(m: &'a impl rdkafka::Message) -> Self {
        Msg { offset: m.offset(), timestamp_ms: m.timestamp().to_millis(), payload: m.payload().unwrap_or(&[]) }
    }
}

/// After an assignment or a broker recovery, fetches can stall for seconds
/// with a backlog waiting (seen with tansu): that is not idleness, so no
/// wall-clock watermark before this much time has passed.
pub const IDLE_GRACE: Duration = Duration::from_secs(30);

/// How long a new owner waits for the records it must re-read before it
/// goes live without them (retention may have deleted them).
pub const REPLAY_GIVE_UP: Duration = Duration::from_secs(30);

/// Where one topic of the stream stands.
#[derive(Debug)]
struct Cursor {
    name: String,
    format: InputFormat,
    /// The offset after the last message judged (`None` before the first).
    next_offset: Option<i64>,
    /// Re-reading: the previous owner's last processed offset, while records
    /// up to it are still to come.
    suppress_through: Option<i64>,
    at_eof: bool,
    /// Since when the topic has had nothing fetched while others had.
    empty_since: Option<Instant>,
    /// The merge stopped waiting for it (until it has records again).
    overdue: bool,
}

/// Per-stream state.
pub struct Stream {
    pub partition: i32,
    pipeline: Pipeline,
    topics: Vec<Cursor>,
    /// While re-reading: the previous owner's last watermark, raised to
    /// (silently) once every topic has read past its mark.
    replay_wm: Option<i64>,
    last_record: Instant,
    idle_not_before: Instant,
    /// Stream-local clock origin for the merge's milliseconds.
    origin: Instant,
    /// `accord_stream_topic_waits_expired_total`, per topic.
    overdue: Vec<prometheus::IntCounter>,
}

/// Passes on only what describes this instance's own state (the open
/// joins gauge), for work the previous owner already reported.
pub struct Quiet<'a, O: Observer>(pub &'a mut O);

impl<O: Observer> Observer for Quiet<'_, O> {
    fn open_joins(&mut self, d: i64) {
        self.0.open_joins(d)
    }
}

/// What the judging thread's loop reports back for metrics and logs.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Judged {
    pub live: u64,
    pub suppressed: u64,
}

impl Stream {
    pub fn new(partition: i32, pipeline: Pipeline, topics: &[String]) -> Self {
        let now = Instant::now();
        Stream {
            partition,
            pipeline,
            topics: topics
                .iter()
                .map(|t| Cursor {
                    name: t.clone(),
                    format: InputFormat::Accord,
                    next_offset: None,
                    suppress_through: None,
                    at_eof: false,
                    empty_since: None,
                    overdue: false,
                })
                .collect(),
            replay_wm: None,
            last_record: now,
            idle_not_before: now + IDLE_GRACE,
            origin: now,
            overdue: Vec::new(),
        }
    }

    /// The input format of each topic (accord decision records unless
    /// given).
    pub fn with_formats(mut self, formats: Vec<InputFormat>) -> Self {
        for (c, f) in self.topics.iter_mut().zip(formats) {
            c.format = f;
        }
        self
    }

    /// Counters of expired waits, one per topic (see `note_overdue`).
    pub fn with_overdue_counters(mut self, counters: Vec<prometheus::IntCounter>) -> Self {
        self.overdue = counters;
        self
    }

    /// The merge stopped waiting for topic `t` (nothing fetched for
    /// `max_topic_idle`) and went on without it.
    /// Counted once per wait: the stream goes on without the topic until it
    /// has records again.
    pub fn note_overdue(&mut self, t: usize) {
        if std::mem::replace(&mut self.topics[t].overdue, true) {
            return;
        }
        if let Some(c) = self.overdue.get(t) {
            c.inc();
        }
        warn!(
            topic = %self.topics[t].name,
            partition = self.partition,
            "topic had nothing to fetch for max_topic_idle; judging the stream's other topics without it"
        );
    }

    /// Whether some topic still re-reads what the previous owner judged.
    pub fn re_reading(&self) -> bool {
        self.topics.iter().any(|c| c.suppress_through.is_some())
    }

    pub fn max_topic_idle_ms(&self) -> i64 {
        self.pipeline.features().catalog().max_topic_idle_ms
    }

    /// The instant of stream-local milliseconds `ms`.
    pub fn instant(&self, ms: i64) -> Instant {
        self.origin + Duration::from_millis(ms.max(0) as u64)
    }

    pub fn topics(&self) -> impl Iterator<Item = &str> {
        self.topics.iter().map(|c| c.name.as_str())
    }

    pub fn open_joins(&self) -> usize {
        self.pipeline.engine().open_joins()
    }

    pub fn watermark(&self) -> i64 {
        self.pipeline.engine().watermark()
    }

    /// Takes over from a previous owner; returns, per topic, the offset to
    /// start fetching at (`None`: the group's committed offset, or the
    /// earliest).
    pub fn inherit(&mut self, st: &StreamState) -> Vec<Option<i64>> {
        let engine = self.pipeline.engine_mut();
        engine.advance_watermark(st.wm_at_offset, &mut Quiet(&mut NoObserver));
        let mut seek = Vec::with_capacity(self.topics.len());
        let mut any = false;
        for c in &mut self.topics {
            match st.topic(&c.name) {
                Some(m) => {
                    seek.push(Some(m.offset));
                    if m.processed >= m.offset {
                        c.suppress_through = Some(m.processed);
                        any = true;
                    }
                }
                None => seek.push(None),
            }
        }
        if any {
            self.replay_wm = Some(st.wm_processed);
        } else {
            engine.advance_watermark(st.wm_processed, &mut Quiet(&mut NoObserver));
        }
        seek
    }

    /// What the next owner needs, or `None` before anything was judged or
    /// inherited (the previous commit then stays valid).
    pub fn handover(&mut self) -> Option<StreamState> {
        let wm_now = self.pipeline.engine().watermark();
        let mut topics = Vec::new();
        let mut earliest: Option<(u64, i64)> = None;
        for (i, c) in self.topics.iter().enumerate() {
            let next = match (c.next_offset, c.suppress_through) {
                (Some(n), _) => n,
                // Inherited but nothing re-read yet: the inherited marks stand.
                (None, Some(_)) | (None, None) => continue,
            };
            let needed = self.pipeline.engine_mut().lowest_needed(i);
            if let Some(n) = needed {
                if earliest.is_none_or(|(a, _)| n.arrival < a) {
                    earliest = Some((n.arrival, n.watermark));
                }
            }
            let processed = (next - 1).max(c.suppress_through.unwrap_or(i64::MIN));
            topics.push(TopicMark {
                topic: c.name.clone(),
                offset: needed.map_or(next, |n| n.offset as i64),
                processed,
            });
        }
        if topics.is_empty() {
            return None;
        }
        Some(StreamState {
            wm_at_offset: earliest.map_or(wm_now, |e| e.1),
            wm_processed: self.replay_wm.unwrap_or(wm_now),
            topics,
        })
    }

    /// The merge's view of topic `t` with its fetched head, if any.
    pub fn topic_view(&self, t: usize, head: Option<(i64, i64)>) -> TopicView {
        let c = &self.topics[t];
        let ms = |i: Instant| i.saturating_duration_since(self.origin).as_millis() as i64;
        let suppress_through = c.suppress_through.filter(|&m| match head {
            Some((_, offset)) => offset <= m,
            None => c.next_offset.is_none_or(|n| n <= m),
        });
        TopicView { head, at_eof: c.at_eof, empty_since_ms: c.empty_since.map(ms), suppress_through }
    }

    /// The stream-local milliseconds of `now` (the merge's clock).
    pub fn millis(&self, now: Instant) -> i64 {
        now.saturating_duration_since(self.origin).as_millis() as i64
    }

    /// The event time by which a fetched message of topic `t` takes its
    /// turn in the merge: its (first valid) record's own `ts` (bad clocks
    /// excepted), else the message timestamp. An OpenTelemetry message
    /// holds many records and takes its turn as a whole, by its first. A
    /// message with no valid record takes no turn (`i64::MIN`: judged, as
    /// a reject, as soon as it is at the head of its topic), as rejects take
    /// none in `replay --merge`, so it holds back nothing behind it.
    ///
    /// An accord record is decoded here once, and the decode is returned
    /// for [`Stream::judge_decoded`]: before, the merge read each record's
    /// `ts` on its own and the judge decoded the record again, which was
    /// most of what the merge cost (docs/performance.md).
    pub fn merge_key<'a>(&mut self, t: usize, m: &Msg<'a>) -> (i64, Option<Result<Valid<'a>, Reject>>) {
        let reference = m.timestamp_ms.unwrap_or_else(|| chrono::Utc::now().timestamp_millis());
        let format = self.topics[t].format;
        if format == InputFormat::Accord {
            let v = self.pipeline.validate(m.payload);
            let key = match &v {
                Ok(v) => self.pipeline.event_time(v, reference, &mut NoObserver).unwrap_or(reference),
                Err(_) => i64::MIN,
            };
            return (key, Some(v));
        }
        let (mut key, mut valid) = (None, false);
        self.pipeline.for_each_record(format, m.payload, &mut NoObserver, |p, _, v, _, obs| {
            if let Ok(v) = v {
                valid = true;
                if key.is_none() {
                    key = p.event_time(&v, reference, obs);
                }
            }
        });
        let key = match (key, valid) {
            (Some(ts), _) => ts,
            (None, true) => reference,
            (None, false) => i64::MIN,
        };
        (key, None)
    }

    /// The offset after topic `t`'s last message judged, if any.
    pub fn next_offset(&self, t: usize) -> Option<i64> {
        self.topics[t].next_offset
    }

    /// Topic `t` had nothing to fetch (`eof`: it is at the end of its
    /// partition) at `now`.
    pub fn empty(&mut self, t: usize, eof: bool, now: Instant) {
        let c = &mut self.topics[t];
        if eof {
            c.at_eof = true;
        }
        c.empty_since.get_or_insert(now);
    }

    /// Judges one message of topic `t`.
    pub fn judge(
        &mut self,
        t: usize,
        m: Msg<'_>,
        obs: &mut impl Observer,
        rejects: &mut RateLimit,
        now: Instant,
    ) -> Judged {
        self.judge_decoded(t, m, None, obs, rejects, now)
    }

    /// [`Stream::judge`] of a message whose accord record [`Stream::merge_key`]
    /// has decoded (`decoded`; `None`: decode it here).
    pub fn judge_decoded(
        &mut self,
        t: usize,
        m: Msg<'_>,
        decoded: Option<Result<Valid<'_>, Reject>>,
        obs: &mut impl Observer,
        rejects: &mut RateLimit,
        now: Instant,
    ) -> Judged {
        let c = &mut self.topics[t];
        if c.next_offset.is_some_and(|n| m.offset < n) {
            return Judged::default(); // re-delivered after a seek; judged already
        }
        c.next_offset = Some(m.offset + 1);
        c.at_eof = false;
        c.empty_since = None;
        c.overdue = false;
        self.last_record = now;
        let suppressed = c.suppress_through.is_some_and(|through| m.offset <= through);
        if c.suppress_through.is_some_and(|through| m.offset >= through) {
            c.suppress_through = None;
        }
        let reference = m.timestamp_ms.unwrap_or_else(|| chrono::Utc::now().timestamp_millis());
        let at = Position::new(t as u8, m.offset.max(0) as u64);
        let format = self.topics[t].format;
        if suppressed {
            // Judged by the previous owner: rebuild state, report nothing.
            let _ = ingest(&mut self.pipeline, format, m, decoded, at, reference, &mut Quiet(obs));
            self.finish_replay_if_done(obs);
            return Judged { live: 0, suppressed: 1 };
        }
        // A live record: whatever had to be re-read is done.
        self.finish_replay(obs);
        if let Some(reason) = ingest(&mut self.pipeline, format, m, decoded, at, reference, obs).first_reject {
            if let Verdict::Log { suppressed } = rejects.check(now) {
                let topic = &self.topics[t].name;
                warn!(topic, partition = self.partition, offset = m.offset, %reason, suppressed, "record rejected and skipped (more are counted, not logged)");
            }
        }
        Judged { live: 1, suppressed: 0 }
    }

    /// Every topic has read past the previous owner's marks: catch up with
    /// its watermark (closing, silently, what it closed) and go live.
    fn finish_replay_if_done(&mut self, obs: &mut impl Observer) {
        if self.replay_wm.is_some() && self.topics.iter().all(|c| c.suppress_through.is_none()) {
            self.finish_replay(obs);
        }
    }

    fn finish_replay(&mut self, obs: &mut impl Observer) {
        if let Some(wm) = self.replay_wm.take() {
            for c in &mut self.topics {
                c.suppress_through = None;
            }
            self.pipeline.engine_mut().advance_watermark(wm, &mut Quiet(obs));
        }
    }

    /// Periodic work: give up on re-read records that never come, and
    /// advance the watermark with the wall clock when the stream is idle
    /// (every topic at the end of its partition for `allowed_lateness`;
    /// never while the broker is away: the stream is cut off, not idle).
    pub fn tick(&mut self, now: Instant, now_ms: i64, broker_up: bool, obs: &mut impl Observer) {
        if self.replay_wm.is_some() {
            if now.saturating_duration_since(self.last_record) <= REPLAY_GIVE_UP {
                return;
            }
            let marks: Vec<String> =
                self.topics.iter().filter_map(|c| c.suppress_through.map(|m| format!("{}@{m}", c.name))).collect();
            warn!(partition = self.partition, marks = ?marks, "records up to the previous owner's marks did not arrive; going live");
            self.finish_replay(obs);
        }
        let lateness = self.pipeline.features().catalog().allowed_lateness_ms;
        let idle = self.topics.iter().all(|c| c.at_eof)
            && now.saturating_duration_since(self.last_record) >= Duration::from_millis(lateness.max(0) as u64)
            && now >= self.idle_not_before;
        if broker_up && idle {
            self.pipeline.engine_mut().advance_watermark(now_ms - lateness, obs);
        }
    }

    /// The broker answers again (or the stream was just assigned): no
    /// wall-clock watermark before the backlog had a chance to arrive.
    pub fn restart_idle_clock(&mut self, now: Instant) {
        self.last_record = now;
        self.idle_not_before = now + IDLE_GRACE;
        for c in &mut self.topics {
            c.at_eof = false;
        }
    }

    /// The stream is leaving this instance: its open joins are no longer
    /// this instance's to report.
    pub fn log_release(&self) {
        info!(partition = self.partition, open_joins = self.open_joins(), "stream handed over");
    }
}

/// A message into the pipeline: its own decode, or the one the merge made.
fn ingest(
    p: &mut Pipeline,
    format: InputFormat,
    m: Msg<'_>,
    decoded: Option<Result<Valid<'_>, Reject>>,
    at: Position,
    reference: i64,
    obs: &mut impl Observer,
) -> MessageOutcome {
    match decoded {
        Some(v) => {
            let mut out = MessageOutcome::default();
            p.ingest_validated(v, at, Some(m.payload), reference, obs, &mut out);
            out
        }
        None => p.ingest_message(format, m.payload, at, reference, obs),
    }
}

struct NoObserver;

impl Observer for NoObserver {}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::Catalog;
    use crate::export::summary::{Summary, SummaryReport};
    use crate::features::Features;
    use std::sync::Arc;

    const T0: i64 = 1_795_168_800_000;

    fn features() -> Arc<Features> {
        let text = include_str!("../../../tests/conformance/catalog.toml");
        Arc::new(Features::new(Arc::new(Catalog::parse(std::path::Path::new("c.toml"), text).unwrap())))
    }

    fn rec(id: usize, layer: &str, ts: i64) -> Vec<u8> {
        format!(r#"{{"request_id":"r{id}","layer":"{layer}","feature":"checkout_v2","ts":{ts},"selected_flow":"v2"}}"#)
            .into_bytes()
    }

    fn stream(topics: &[&str]) -> Stream {
        let names: Vec<String> = topics.iter().map(|s| s.to_string()).collect();
        Stream::new(0, Pipeline::new(features(), 1 << 16), &names)
    }

    #[test]
    fn merge_keys_by_own_time_message_time_or_no_turn() {
        let mut s = stream(&["a"]);
        let key =
            |s: &mut Stream, payload: &[u8]| s.merge_key(0, &Msg { offset: 0, timestamp_ms: Some(T0), payload }).0;
        // Its own `ts`, also escaped.
        assert_eq!(key(&mut s, &rec(1, "api", T0 - 5)), T0 - 5);
        let escaped = format!(r#"{{"request_id":"r\u0031","layer":"api","feature":"checkout_v2","ts":{}}}"#, T0 - 7);
        assert_eq!(key(&mut s, escaped.as_bytes()), T0 - 7);
        // No `ts`, or one far ahead of the message time (a bad clock).
        assert_eq!(key(&mut s, br#"{"request_id":"r","layer":"api","feature":"checkout_v2"}"#), T0);
        assert_eq!(key(&mut s, &rec(1, "api", T0 + 86_400_000)), T0);
        // Nothing valid: no turn.
        assert_eq!(key(&mut s, b"not json"), i64::MIN);
        assert_eq!(key(&mut s, br#"{"request_id":"r1","layer":"nope","feature":"checkout_v2","ts":5}"#), i64::MIN);
    }

    #[test]
    fn a_record_decoded_for_its_merge_key_is_judged_as_decoded_anew() {
        // The judge takes the merge's decode: the same counters as a stream
        // that decodes each record when judging it.
        let msgs = requests(40, &["frontend", "api", "worker"], |_| 0);
        let (mut fresh, mut taken) = (stream(&["a"]), stream(&["a"]));
        let f = features();
        let (mut a, mut b) = (Summary::new(f.clone()), Summary::new(f.clone()));
        let mut r = RateLimit::every(Duration::from_secs(1));
        for (t, offset, ts, payload) in &msgs {
            let m = Msg { offset: *offset, timestamp_ms: Some(*ts), payload };
            fresh.judge(*t, m, &mut a, &mut r, Instant::now());
            let (_, decoded) = taken.merge_key(*t, &m);
            assert!(decoded.is_some(), "an accord record is decoded for its key");
            taken.judge_decoded(*t, m, decoded, &mut b, &mut r, Instant::now());
        }
        fresh.pipeline.engine_mut().flush(&mut a);
        taken.pipeline.engine_mut().flush(&mut b);
        let (a, b) = (report(&f, a), report(&f, b));
        assert!(a.requests > 0);
        assert_eq!(a, b);
    }

    /// Judges `msgs` (topic, offset, message timestamp, record) in order.
    fn feed(s: &mut Stream, msgs: &[(usize, i64, i64, Vec<u8>)], obs: &mut impl Observer) -> Judged {
        let mut r = RateLimit::every(Duration::from_secs(1));
        let mut total = Judged::default();
        for (t, offset, ts, payload) in msgs {
            let j = s.judge(*t, Msg { offset: *offset, timestamp_ms: Some(*ts), payload }, obs, &mut r, Instant::now());
            total.live += j.live;
            total.suppressed += j.suppressed;
        }
        total
    }

    fn requests(n: usize, layers: &[&str], topic_of: impl Fn(&str) -> usize) -> Vec<(usize, i64, i64, Vec<u8>)> {
        let mut offsets = [0i64; 4];
        let mut out = Vec::new();
        for i in 0..n {
            for (k, l) in layers.iter().enumerate() {
                let t = topic_of(l);
                let ts = T0 + i as i64 * 3_000 + k as i64 * 100;
                out.push((t, offsets[t], ts, rec(i, l, ts)));
                offsets[t] += 1;
            }
        }
        out
    }

    fn report(f: &Arc<Features>, s: Summary) -> SummaryReport {
        let _ = f;
        let mut s = s;
        s.report()
    }

    #[test]
    fn a_handover_at_any_point_is_exact() {
        let layers = ["frontend", "api", "worker", "analytics"];
        let msgs = requests(40, &layers, |l| usize::from(l == "worker" || l == "analytics"));
        let f = features();
        // One owner judges everything.
        let mut whole = Summary::new(f.clone());
        let mut s = stream(&["a", "b"]);
        feed(&mut s, &msgs, &mut whole);
        s.pipeline.engine_mut().flush(&mut whole);
        let want = report(&f, whole);
        for cut in [0, 1, 7, 33, 80, 159] {
            // The first owner stops after `cut` messages, the second
            // inherits its state and re-reads from the needed offsets.
            let mut both = Summary::new(f.clone());
            let mut a = stream(&["a", "b"]);
            feed(&mut a, &msgs[..cut], &mut both);
            let state = a.handover();
            let mut b = stream(&["a", "b"]);
            let seek = match &state {
                Some(st) => b.inherit(&StreamState::decode(&st.encode(), "a").unwrap()),
                None => vec![None, None],
            };
            let rest: Vec<_> = msgs.iter().filter(|(t, off, _, _)| *off >= seek[*t].unwrap_or(0)).cloned().collect();
            let judged = feed(&mut b, &rest, &mut both);
            b.pipeline.engine_mut().flush(&mut both);
            assert_eq!(report(&f, both), want, "cut after {cut} messages");
            assert_eq!(judged.live as usize, msgs.len() - cut, "cut {cut}: every message judged live once");
        }
    }

    #[test]
    fn state_names_every_topic_it_read() {
        let mut s = stream(&["a", "b"]);
        let mut sum = Summary::new(features());
        assert_eq!(s.handover(), None, "nothing judged, nothing to commit");
        feed(&mut s, &[(1, 5, T0, rec(1, "worker", T0))], &mut sum);
        let st = s.handover().unwrap();
        assert_eq!(st.topics, [TopicMark { topic: "b".into(), offset: 5, processed: 5 }]);
        assert_eq!(st.wm_at_offset, T0 - 5_000);
    }

    #[test]
    fn idle_only_when_every_topic_is_caught_up() {
        let mut s = stream(&["a", "b"]);
        let mut sum = Summary::new(features());
        feed(&mut s, &[(0, 0, T0, rec(1, "frontend", T0))], &mut sum);
        let later = Instant::now() + IDLE_GRACE + Duration::from_secs(10);
        s.empty(0, true, later);
        s.tick(later, T0 + 60_000, true, &mut sum);
        assert_eq!(s.watermark(), T0 - 5_000, "topic b is not caught up");
        s.empty(1, true, later);
        s.tick(later, T0 + 60_000, false, &mut sum);
        assert_eq!(s.watermark(), T0 - 5_000, "the broker is away");
        s.tick(later, T0 + 60_000, true, &mut sum);
        assert_eq!(s.watermark(), T0 + 55_000);
        assert_eq!(sum.report().requests, 1, "the open join closed by the wall clock");
    }
}
