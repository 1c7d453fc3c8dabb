//! Judging threads: each owns some streams and their partition queues,
//! and judges their messages in order, one stream's messages by one thread
//! only. Several threads use several cores; nothing here runs on the async
//! runtime, so blocking (a full producer queue, a partition queue poll)
//! never stalls the HTTP server.
//!
//! A thread sleeps until a partition queue of one of its streams becomes
//! non-empty (librdkafka's queue callback wakes it), a control message
//! arrives, or its 250 ms tick is due (idle watermarks, gauges).

use std::collections::VecDeque;
use std::ffi::CString;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::Arc;
use std::thread::{self, JoinHandle, Thread};
use std::time::{Duration, Instant};

use prometheus::Gauge;
use rdkafka::consumer::base_consumer::PartitionQueue;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::error::KafkaError;
use rdkafka::message::{BorrowedMessage, Message, OwnedMessage};
use tracing::warn;

use super::handover::StreamState;
use super::merge::{choose, first_smallest, Choice, TopicView};
use super::stream::{Judged, Msg, Stream};
use super::SourceStatus;
use crate::decode::Reject;
use crate::join::Observer;
use crate::live::{Delta, Recorder};
use crate::pipeline::Valid;
use crate::ratelimit::{RateLimit, Verdict};

/// Messages handled per stream before the thread looks at its other
/// streams, control messages and its tick again.
const DRAIN_BUDGET: usize = 256;

/// How often idle streams advance their watermark and gauges refresh.
pub const TICK: Duration = Duration::from_millis(250);

/// A stream with the partition queues of its topics.
pub struct Slot<C: ConsumerContext + 'static> {
    pub stream: Stream,
    /// One per topic of the stream, in the stream's topic order.
    pub queues: Vec<PartitionQueue<C>>,
    /// Where those partitions end, as last fetched.
    ends: Ends<C>,
    /// Set by a queue's non-empty callback (and when a round ends with
    /// messages left).
    pub wake: Arc<AtomicBool>,
    /// `accord_watermark_delay_seconds`, one per topic of the stream.
    pub wm_gauges: Vec<Gauge>,
    /// Heads fetched but not judged when the last round ended (waiting for
    /// another topic), with their merge keys.
    parked: Vec<Option<(i64, OwnedMessage)>>,
    /// Messages of this stream that arrived on the consumer's main queue
    /// (fetched before the partition's queue was split), oldest first.
    routed: VecDeque<(usize, OwnedMessage)>,
    /// More may still be routed: the partition queues hold only what was
    /// fetched after the split, so they wait until the consumer thread has
    /// emptied its main queue (`Control::RoutingDone`). Judged earlier,
    /// a queued message would make the older routed ones look re-delivered.
    routing: bool,
    /// When the merge may stop waiting for a topic.
    wait_until: Option<Instant>,
    /// The stream's live statistics since its last share (taken with its
    /// handover state, so a share covers what the state covers).
    recorder: Recorder,
}

impl<C: ConsumerContext + 'static> Slot<C> {
    pub fn new(
        stream: Stream,
        queues: Vec<PartitionQueue<C>>,
        ends: Ends<C>,
        wake: Arc<AtomicBool>,
        wm_gauges: Vec<Gauge>,
        recorder: Recorder,
    ) -> Self {
        let n = queues.len();
        Slot {
            stream,
            queues,
            ends,
            wake,
            wm_gauges,
            parked: (0..n).map(|_| None).collect(),
            routed: VecDeque::new(),
            routing: true,
            wait_until: None,
            recorder,
        }
    }

    /// The stream's handover state and its live statistics since the last
    /// snapshot, taken together.
    fn snapshot(&mut self) -> Snapshot {
        Snapshot { partition: self.stream.partition, state: self.stream.handover(), delta: self.recorder.take() }
    }
}

/// Where partition `p` of each of a stream's topics ends, as far as the
/// last fetch response said: librdkafka's cached high watermark
/// (`rd_kafka_get_watermark_offsets`, which asks no broker).
///
/// librdkafka reports the end of a partition (`PartitionEOF`) only with the
/// fetch response *after* the one that brought its last records, and when
/// no partition of that fetch has records the broker holds it for
/// `fetch.wait.max.ms` (500 ms by default). A merge that waited for that
/// event would stall on a topic it has in fact read to the end; Kafka
/// Streams decides the same way from the end offset of its last fetch
/// (KIP-695: with `max.task.idle.ms` 0 a task waits only while a partition
/// has known lag).
pub struct Ends<C: ConsumerContext + 'static> {
    consumer: Arc<BaseConsumer<C>>,
    topics: Vec<CString>,
    partition: i32,
}

impl<C: ConsumerContext + 'static> Ends<C> {
    pub fn new(consumer: Arc<BaseConsumer<C>>, topics: &[String], partition: i32) -> Self {
        // A topic name with a NUL byte cannot be subscribed to; such a topic
        // is never known to be caught up (the end-of-partition event still is).
        let topics = topics.iter().map(|t| CString::new(t.as_str()).unwrap_or_default()).collect();
        Ends { consumer, topics, partition }
    }

    /// `(low, high)` watermarks of topic `t`'s partition as last fetched,
    /// if librdkafka has fetched it.
    fn watermarks(&self, t: usize) -> Option<(i64, i64)> {
        let topic = self.topics.get(t)?;
        let (mut low, mut high) = (-1i64, -1i64);
        // SAFETY: the client pointer is valid while `self.consumer` is held;
        // `topic` is a NUL-terminated string that outlives the call, and the
        // out-pointers point to locals. The call only reads the partition's
        // cached offsets under its lock.
        let err = unsafe {
            rdkafka::bindings::rd_kafka_get_watermark_offsets(
                self.consumer.client().native_ptr(),
                topic.as_ptr(),
                self.partition,
                &mut low,
                &mut high,
            )
        };
        (err == rdkafka::bindings::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR && low >= 0 && high >= 0)
            .then_some((low, high))
    }
}

/// Whether a topic whose partition queue is empty has been read to the end
/// of its partition: the offset after its last message judged (`next`) has
/// reached the end offset of the last fetch (`marks`, low and high). A
/// topic with nothing judged yet is caught up only if its partition holds
/// nothing. Offsets past the last message (transaction markers, a
/// read-committed consumer behind an open transaction) leave it to the
/// end-of-partition event.
pub fn caught_up(next: Option<i64>, marks: Option<(i64, i64)>) -> bool {
    match (next, marks) {
        (Some(next), Some((_, high))) => next >= high,
        (None, Some((low, high))) => low == high,
        (_, None) => false,
    }
}

/// What a commit round takes of one stream.
pub struct Snapshot {
    pub partition: i32,
    pub state: Option<StreamState>,
    pub delta: Delta,
}

/// A stream handed back by its thread.
pub struct Released {
    pub stream: Stream,
    pub state: Option<StreamState>,
    /// Its live statistics since the last snapshot.
    pub delta: Delta,
}

pub enum Control<C: ConsumerContext + 'static> {
    Add(Box<Slot<C>>),
    /// Hand back these partitions' streams (they leave this instance).
    Release {
        partitions: Vec<i32>,
        reply: Sender<Vec<Released>>,
    },
    /// The handover state and statistics of every stream, for a commit.
    Snapshot {
        reply: Sender<Vec<Snapshot>>,
    },
    Routed {
        partition: i32,
        topic: usize,
        msg: OwnedMessage,
    },
    /// Every message of these streams fetched before their partition
    /// queues were split has been routed: the queues come next.
    RoutingDone {
        partitions: Vec<i32>,
    },
    /// The broker answers again: every stream's idle clock starts over.
    BrokerBackUp,
    Stop,
}

/// The handle the consumer side keeps of a judging thread.
pub struct JudgeHandle<C: ConsumerContext + 'static> {
    pub tx: Sender<Control<C>>,
    thread: Thread,
    join: Option<JoinHandle<()>>,
    /// Streams it owns (for spreading new ones).
    pub streams: usize,
}

impl<C: ConsumerContext + 'static> JudgeHandle<C> {
    pub fn send(&self, c: Control<C>) -> bool {
        let ok = self.tx.send(c).is_ok();
        self.thread.unpark();
        ok
    }

    /// A waker for partition queue callbacks.
    pub fn thread(&self) -> Thread {
        self.thread.clone()
    }

    pub fn stop(&mut self) {
        self.send(Control::Stop);
        if let Some(j) = self.join.take() {
            let _ = j.join();
        }
    }
}

/// What a judging thread shares with the rest of the source.
pub struct Context {
    pub status: Arc<SourceStatus>,
    pub metrics: crate::export::metrics::Metrics,
}

/// Starts a judging thread whose events go to `obs`.
pub fn spawn<C, O>(index: usize, ctx: Context, mut obs: O) -> std::io::Result<JudgeHandle<C>>
where
    C: ConsumerContext + 'static,
    O: Observer + Send + 'static,
{
    let (tx, rx) = mpsc::channel::<Control<C>>();
    let span = tracing::Span::current();
    let join = thread::Builder::new()
        .name(format!("accord-judge-{index}"))
        .spawn(move || span.in_scope(|| run(rx, ctx, &mut obs)))?;
    let thread = join.thread().clone();
    Ok(JudgeHandle { tx, thread, join: Some(join), streams: 0 })
}

fn run<C: ConsumerContext + 'static>(rx: Receiver<Control<C>>, ctx: Context, obs: &mut impl Observer) {
    let mut slots: Vec<Slot<C>> = Vec::new();
    let mut rejects = RateLimit::new(Duration::from_secs(1), 5);
    let mut errors = RateLimit::every(Duration::from_secs(10));
    let mut next_tick = Instant::now() + TICK;
    loop {
        loop {
            match rx.try_recv() {
                Ok(Control::Add(slot)) => {
                    slot.wake.store(true, Ordering::Release);
                    slots.push(*slot);
                }
                Ok(Control::Release { partitions, reply }) => {
                    let mut out = Vec::new();
                    let mut i = 0;
                    while i < slots.len() {
                        if partitions.contains(&slots[i].stream.partition) {
                            let mut slot = slots.swap_remove(i);
                            let Snapshot { state, delta, .. } = slot.snapshot();
                            out.push(Released { stream: slot.stream, state, delta });
                        } else {
                            i += 1;
                        }
                    }
                    let _ = reply.send(out);
                }
                Ok(Control::Snapshot { reply }) => {
                    let snaps = slots.iter_mut().map(Slot::snapshot).collect();
                    let _ = reply.send(snaps);
                }
                Ok(Control::Routed { partition, topic, msg }) => {
                    if let Some(s) = slots.iter_mut().find(|s| s.stream.partition == partition) {
                        s.routed.push_back((topic, msg));
                        s.wake.store(true, Ordering::Release);
                    }
                }
                Ok(Control::RoutingDone { partitions }) => {
                    for s in slots.iter_mut().filter(|s| partitions.contains(&s.stream.partition)) {
                        s.routing = false;
                        s.wake.store(true, Ordering::Release);
                    }
                }
                Ok(Control::BrokerBackUp) => {
                    let now = Instant::now();
                    for s in &mut slots {
                        s.stream.restart_idle_clock(now);
                    }
                }
                Ok(Control::Stop) | Err(mpsc::TryRecvError::Disconnected) => return,
                Err(mpsc::TryRecvError::Empty) => break,
            }
        }
        let mut handled = 0u64;
        let mut suppressed = 0u64;
        let mut wake_at = next_tick;
        // One clock read per loop for the live statistics' buckets.
        let now_ms = chrono::Utc::now().timestamp_millis();
        for slot in &mut slots {
            let due = slot.wait_until.is_some_and(|w| Instant::now() >= w);
            if !(slot.wake.swap(false, Ordering::AcqRel) || due) {
                if let Some(w) = slot.wait_until {
                    wake_at = wake_at.min(w);
                }
                continue;
            }
            slot.recorder.set_now_ms(now_ms);
            let (j, more) = round(slot, obs, &mut rejects, &mut errors);
            handled += j.live + j.suppressed;
            suppressed += j.suppressed;
            if more {
                slot.wake.store(true, Ordering::Release);
            }
            if let Some(w) = slot.wait_until {
                wake_at = wake_at.min(w);
            }
        }
        if handled > 0 {
            // Once per round: readers (readyz, tests) poll this counter, and
            // a per-message atomic add on a line they keep reading costs
            // more than judging.
            ctx.status.records.fetch_add(handled, Ordering::Relaxed);
        }
        if suppressed > 0 {
            ctx.metrics.replayed_suppressed.inc_by(suppressed);
        }
        let now = Instant::now();
        if now >= next_tick {
            let now_ms = chrono::Utc::now().timestamp_millis();
            let broker_up = ctx.status.broker_up.load(Ordering::Relaxed);
            for slot in &mut slots {
                slot.recorder.set_now_ms(now_ms);
                slot.stream.tick(now, now_ms, broker_up, &mut (&mut *obs, &mut slot.recorder));
                let wm = slot.stream.watermark();
                if wm != i64::MIN {
                    for g in &slot.wm_gauges {
                        g.set((now_ms - wm) as f64 / 1000.0);
                    }
                }
            }
            next_tick = now + TICK;
            wake_at = wake_at.min(next_tick);
        }
        let busy = slots.iter().any(|s| s.wake.load(Ordering::Acquire));
        if !busy {
            thread::park_timeout(wake_at.saturating_duration_since(Instant::now()));
        }
    }
}

/// A fetched message at the head of a topic, borrowed from librdkafka (with
/// its accord record decoded for the merge) or kept from an earlier round.
enum Head<'q> {
    Fetched(Fetched<'q>),
    Kept(OwnedMessage),
}

/// A message borrowed from librdkafka and the decode of its accord record
/// that gave its merge key, which the judge then takes instead of decoding
/// the record again.
struct Fetched<'q> {
    // Declared before `msg`, so dropped before it: it borrows `msg`'s
    // payload.
    decoded: Option<Result<Valid<'q>, Reject>>,
    msg: BorrowedMessage<'q>,
}

impl<'q> Fetched<'q> {
    /// Decodes `msg` for its merge key in `stream` (topic `t`).
    fn new(msg: BorrowedMessage<'q>, stream: &mut Stream, t: usize) -> (i64, Self) {
        let payload = msg.payload().unwrap_or(&[]);
        // SAFETY: the payload is librdkafka's buffer, owned by the message
        // `msg` points to and freed only when `msg` is dropped; moving `msg`
        // does not move it. The decode borrowing it stays beside `msg` and
        // leaves only by `Head::judge`, which hands it to the judge while
        // `msg` is alive, or is dropped first (field order, `Head::detach`).
        // The pipeline keeps nothing borrowed (it has no lifetime).
        let payload: &'q [u8] = unsafe { std::slice::from_raw_parts(payload.as_ptr(), payload.len()) };
        let m = Msg { offset: msg.offset(), timestamp_ms: msg.timestamp().to_millis(), payload };
        let (key, decoded) = stream.merge_key(t, &m);
        (key, Fetched { decoded, msg })
    }
}

impl Head<'_> {
    fn offset(&self) -> i64 {
        match self {
            Head::Fetched(f) => f.msg.offset(),
            Head::Kept(m) => m.offset(),
        }
    }

    /// Judges the message as topic `t`'s of `stream`.
    fn judge(
        self,
        t: usize,
        stream: &mut Stream,
        obs: &mut impl Observer,
        rejects: &mut RateLimit,
        now: Instant,
    ) -> Judged {
        match self {
            Head::Fetched(Fetched { decoded, msg }) => {
                stream.judge_decoded(t, Msg::of(&msg), decoded, obs, rejects, now)
            }
            Head::Kept(m) => stream.judge(t, Msg::of(&m), obs, rejects, now),
        }
    }

    /// Kept for the next round: a borrowed message is copied, and its
    /// decode dropped (the next round decodes the copy).
    fn detach(self) -> OwnedMessage {
        match self {
            Head::Fetched(Fetched { decoded, msg }) => {
                drop(decoded);
                msg.detach()
            }
            Head::Kept(m) => m,
        }
    }
}

/// Judges up to `DRAIN_BUDGET` messages of one stream; returns what it
/// judged and whether messages are left.
///
/// A round ends only on a queue found empty (or a merge that must wait):
/// librdkafka calls a queue's non-empty callback when the queue goes from
/// empty to non-empty, never for what is added behind an event still in it.
/// An end-of-partition event or a fetch error is such an event: messages
/// fetched after it arrive silently, so a round that stopped at it would
/// leave them unread until the next wake-up, which never comes.
fn round<C: ConsumerContext + 'static>(
    slot: &mut Slot<C>,
    obs: &mut impl Observer,
    rejects: &mut RateLimit,
    errors: &mut RateLimit,
) -> (Judged, bool) {
    let Slot { stream, queues, ends, parked, routed, routing, wait_until, recorder, .. } = slot;
    *wait_until = None;
    // Every event also goes to the stream's own live statistics.
    let mut both = (obs, recorder);
    let obs = &mut both;
    let mut judged = Judged::default();
    let mut add = |j: Judged| {
        judged.live += j.live;
        judged.suppressed += j.suppressed;
    };
    // Messages from the main queue are older than anything queued since.
    while let Some((t, m)) = routed.pop_front() {
        add(stream.judge(t, Msg::of(&m), obs, rejects, Instant::now()));
    }
    if *routing {
        return (judged, false);
    }
    if queues.len() == 1 {
        // One topic: nothing to merge, judge in offset order as fetched.
        for _ in 0..DRAIN_BUDGET {
            if let Some((_, m)) = parked[0].take() {
                add(stream.judge(0, Msg::of(&m), obs, rejects, Instant::now()));
                continue;
            }
            match queues[0].poll(Duration::ZERO) {
                Some(Ok(m)) => add(stream.judge(0, Msg::of(&m), obs, rejects, Instant::now())),
                // Keep polling: messages may be queued behind an error or an
                // end-of-partition event, and librdkafka's non-empty callback
                // fires only when the queue was empty, so stopping here would
                // leave them unread until the next rebalance.
                Some(Err(e)) => fetch_error(stream, 0, e, errors),
                None => {
                    stream.empty(0, false, Instant::now());
                    return (judged, false);
                }
            }
        }
        return (judged, true);
    }
    // Several topics: merge by event time.
    let mut heads: Vec<Option<(i64, Head<'_>)>> =
        parked.iter_mut().map(|p| p.take().map(|(k, m)| (k, Head::Kept(m)))).collect();
    let mut views = Vec::with_capacity(heads.len());
    let mut more = false;
    let mut n = 0;
    // One clock reading serves the records judged in a row (at most
    // `DRAIN_BUDGET`, a millisecond or so): it is renewed whenever a topic
    // is found empty (the start of a wait for it) and before the merge
    // decides to wait, so no wait is cut short by a long round. What else
    // reads it (a stream's last-record time) may lag by one round.
    let mut now = Instant::now();
    loop {
        for (t, h) in heads.iter_mut().enumerate() {
            // Past events (end of partition, errors) to a message or to an
            // empty queue: messages may be queued behind an event.
            while h.is_none() {
                match queues[t].poll(Duration::ZERO) {
                    Some(Ok(m)) => {
                        let (key, fetched) = Fetched::new(m, stream, t);
                        *h = Some((key, Head::Fetched(fetched)));
                    }
                    Some(Err(e)) => fetch_error(stream, t, e, errors),
                    None => {
                        // The wait for this topic starts now, not when
                        // the round did: renew the round's clock.
                        now = Instant::now();
                        let eof = caught_up(stream.next_offset(t), ends.watermarks(t));
                        stream.empty(t, eof, now);
                        break;
                    }
                }
            }
        }
        if n == DRAIN_BUDGET {
            more = true;
            break;
        }
        let choice = if heads.iter().all(Option::is_some) && !stream.re_reading() {
            // The usual step while records flow: every topic has a record
            // fetched and none is re-read, so `choose` would take the
            // smallest key, ties to the topic named first, and wait for
            // nobody. Decided here without building its views.
            let topic = first_smallest(heads.iter().map(|h| h.as_ref().map(|h| h.0))).unwrap_or(0);
            let choice = Choice::Take { topic, overdue: None };
            debug_assert_eq!(choice, {
                views_of(stream, &heads, &mut views);
                choose(&views, stream.millis(now), stream.max_topic_idle_ms())
            });
            choice
        } else {
            views_of(stream, &heads, &mut views);
            let mut choice = choose(&views, stream.millis(now), stream.max_topic_idle_ms());
            if matches!(choice, Choice::Wait { .. }) {
                now = Instant::now();
                choice = choose(&views, stream.millis(now), stream.max_topic_idle_ms());
            }
            choice
        };
        match choice {
            Choice::Take { topic, overdue } => {
                if let Some(u) = overdue {
                    stream.note_overdue(u);
                }
                if let Some((_, m)) = heads[topic].take() {
                    add(m.judge(topic, stream, obs, rejects, now));
                }
                n += 1;
            }
            Choice::Wait { until_ms, .. } => {
                *wait_until = until_ms.map(|ms| stream.instant(ms));
                break;
            }
            Choice::Idle => break,
        }
    }
    for (t, h) in heads.into_iter().enumerate() {
        parked[t] = h.map(|(k, m)| (k, m.detach()));
    }
    (judged, more)
}

/// The merge's view of every topic of `stream`, with its fetched head.
fn views_of(stream: &Stream, heads: &[Option<(i64, Head<'_>)>], views: &mut Vec<TopicView>) {
    views.clear();
    views
        .extend(heads.iter().enumerate().map(|(t, h)| stream.topic_view(t, h.as_ref().map(|(k, m)| (*k, m.offset())))));
}

fn fetch_error(stream: &mut Stream, t: usize, e: KafkaError, errors: &mut RateLimit) {
    match e {
        // The end of the partition is not an error: the topic is caught up.
        KafkaError::PartitionEOF(_) => stream.empty(t, true, Instant::now()),
        e => {
            if let Verdict::Log { suppressed } = errors.check(Instant::now()) {
                warn!(partition = stream.partition, error = %e, suppressed, "kafka fetch error (logged at most every 10 s)");
            }
        }
    }
}

#[cfg(test)]
mod tests;
