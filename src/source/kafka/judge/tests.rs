//! A judging thread on librdkafka's in-process mock cluster: messages that
//! arrived before the partition queue was split (routed) and the queue's
//! are judged once each, in offset order even when the queue filled first; a snapshot and a release hand back the state and
//! the statistics of exactly what was judged.

use std::sync::atomic::AtomicU64;

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer, DefaultConsumerContext};
use rdkafka::message::{OwnedHeaders, Timestamp};
use rdkafka::mocking::MockCluster;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer as _};
use rdkafka::{Offset, TopicPartitionList};

use super::*;
use crate::catalog::{Catalog, LayerId};
use crate::features::{FeatureId, Features};
use crate::judge::RecordPath;
use crate::pipeline::Pipeline;

/// Counts the records judged and the requests closed.
struct Seen(Arc<AtomicU64>, Arc<AtomicU64>);

impl Observer for Seen {
    fn record(&mut self, _: FeatureId, _: LayerId, _: RecordPath, _: bool) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }
    fn closed(&mut self, _: &crate::join::Closed<'_>) {
        self.1.fetch_add(1, Ordering::Relaxed);
    }
}

const LAYERS: [&str; 4] = ["frontend", "api", "worker", "analytics"];
const T0: i64 = 1_795_168_800_000;

fn record(i: usize) -> Vec<u8> {
    let layer = LAYERS[i % 4];
    format!(
        r#"{{"request_id":"r{}","layer":"{layer}","feature":"checkout_v2","ts":{},"selected_flow":"v2"}}"#,
        i / 4,
        T0
    )
    .into_bytes()
}

#[test]
fn a_judging_thread_judges_routed_then_queued_messages_and_hands_the_stream_back() {
    let text = include_str!("../../../../tests/conformance/catalog.toml");
    let features = Arc::new(Features::new(Arc::new(Catalog::parse(std::path::Path::new("c.toml"), text).unwrap())));
    let mock = MockCluster::new(1).unwrap();
    mock.create_topic("t", 1, 1).unwrap();
    let brokers = mock.bootstrap_servers();
    // Three requests of four layers: offsets 0..12.
    let producer: BaseProducer = ClientConfig::new().set("bootstrap.servers", &brokers).create().unwrap();
    for i in 0..12 {
        let body = record(i);
        producer.send(BaseRecord::to("t").partition(0).key("k").payload(&body).timestamp(T0)).unwrap();
    }
    producer.flush(Duration::from_secs(10)).unwrap();

    // The partition queue starts at offset 4: offsets 0..4 were fetched on
    // the consumer's main queue before the split and are routed.
    let consumer: Arc<BaseConsumer> = Arc::new(
        ClientConfig::new()
            .set("bootstrap.servers", &brokers)
            .set("group.id", "judge-test")
            .set("enable.auto.commit", "false")
            .set("session.timeout.ms", "6000")
            .create()
            .unwrap(),
    );
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset("t", 0, Offset::Offset(4)).unwrap();
    consumer.assign(&tpl).unwrap();
    let mut queue = consumer.split_partition_queue("t", 0).unwrap();

    let status = Arc::new(SourceStatus::default());
    let metrics = crate::export::metrics::Metrics::new(features.clone()).unwrap();
    let (seen, closed) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let ctx = Context { status: status.clone(), metrics };
    let mut handle = spawn::<DefaultConsumerContext, _>(0, ctx, Seen(seen.clone(), closed.clone())).unwrap();
    let stream = Stream::new(0, Pipeline::new(features.clone(), 1 << 16), &["t".to_string()]);
    let recorder = Recorder::new(features.clone(), T0);
    // As the consumer thread does: the queue's callback wakes the thread.
    let wake = Arc::new(AtomicBool::new(true));
    let (w, thread) = (wake.clone(), handle.thread());
    queue.set_nonempty_callback(move || {
        w.store(true, Ordering::Release);
        thread.unpark();
    });
    // Let the fetcher fill the partition queue (offsets 4..12) first: the
    // routed messages arrive after it, as when the consumer thread drains
    // its main queue after the rebalance that split the partition.
    let fetched = Instant::now();
    while fetched.elapsed() < Duration::from_millis(1500) {
        let _ = consumer.poll(Duration::from_millis(50));
    }
    let slot =
        Slot::new(stream, vec![queue], Ends::new(consumer.clone(), &["t".to_string()], 0), wake, Vec::new(), recorder);
    assert!(handle.send(Control::Add(Box::new(slot))));
    let waited = Instant::now();
    while waited.elapsed() < Duration::from_millis(500) {
        let _ = consumer.poll(Duration::from_millis(50));
    }
    assert_eq!(
        status.records.load(Ordering::Relaxed),
        0,
        "nothing of the partition queue is judged before the main queue's messages are routed"
    );
    for offset in 0..4 {
        let msg = OwnedMessage::new(
            Some(record(offset as usize)),
            Some(b"k".to_vec()),
            "t".into(),
            Timestamp::CreateTime(T0),
            0,
            offset,
            Some(OwnedHeaders::new()),
        );
        assert!(handle.send(Control::Routed { partition: 0, topic: 0, msg }));
    }
    assert!(handle.send(Control::RoutingDone { partitions: vec![0] }));

    let deadline = Instant::now() + Duration::from_secs(20);
    while status.records.load(Ordering::Relaxed) < 12 {
        assert!(Instant::now() < deadline, "judged {} of 12 messages", status.records.load(Ordering::Relaxed));
        let _ = consumer.poll(Duration::from_millis(50));
    }
    assert_eq!(seen.load(Ordering::Relaxed), 12, "every record judged once");
    // Each request closed once its every layer reported: the routed
    // messages (request 0) met the queued ones in order.
    assert_eq!(closed.load(Ordering::Relaxed), 3);

    // A snapshot: the state covers offsets 0..=11, the statistics every
    // record; the next snapshot has nothing new.
    let (tx, rx) = mpsc::channel();
    assert!(handle.send(Control::Snapshot { reply: tx }));
    let snaps = rx.recv_timeout(Duration::from_secs(10)).unwrap();
    assert_eq!(snaps.len(), 1);
    let state = snaps[0].state.clone().expect("a state after judging");
    assert_eq!(state.topic("t").map(|m| m.processed), Some(11));
    assert!(!snaps[0].delta.is_empty(), "the statistics of what was judged");

    // Release: the stream comes back with the same state and nothing new.
    let (tx, rx) = mpsc::channel();
    assert!(handle.send(Control::Release { partitions: vec![0], reply: tx }));
    let released = rx.recv_timeout(Duration::from_secs(10)).unwrap();
    assert_eq!(released.len(), 1);
    assert_eq!(released[0].state.as_ref(), Some(&state));
    assert!(released[0].delta.is_empty(), "nothing judged since the snapshot");
    assert_eq!(released[0].stream.open_joins(), 0);
    handle.stop();
}

#[test]
fn a_topic_read_to_its_last_fetched_end_offset_is_caught_up() {
    // Read up to the end offset of the last fetch: nothing to wait for.
    assert!(caught_up(Some(120), Some((0, 120))));
    // Records fetched or still to fetch past what was judged.
    assert!(!caught_up(Some(119), Some((0, 120))));
    // Nothing judged: caught up only if the partition holds nothing.
    assert!(caught_up(None, Some((40, 40))));
    assert!(!caught_up(None, Some((0, 40))));
    // Not fetched yet (librdkafka knows no end offset).
    assert!(!caught_up(Some(5), None));
    assert!(!caught_up(None, None));
}
