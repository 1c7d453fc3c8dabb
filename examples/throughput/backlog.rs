//! The backlog of (c), (d), (t) and (i): the generated records produced to
//! the mock cluster, keyed by request id, each with its emit time as the
//! message timestamp (what a service logging a decision as it makes it
//! would give), so accord's event time comes from the records' own `ts`
//! (within `max_clock_skew` of the message timestamp) as in production.

use std::time::Duration;

use accord::simulate::SimRecord;
use rdkafka::producer::{BaseRecord, Producer, ProducerContext, ThreadedProducer};

use crate::kafka::Mock;
use crate::support;

/// librdkafka's mock cluster keeps only the newest 5 MiB of each partition
/// (`rdkafka_mock.c`, `max_size`), so a backlog is spread over enough
/// partitions to stay under that.
pub const MOCK_PARTITION_BUDGET: usize = 4 << 20;

/// Bytes a record takes in a partition of the mock: its JSON plus the
/// record overhead in a batch.
pub fn record_bytes(r: &SimRecord) -> usize {
    r.json.len() + 70
}

/// The partition of a record: by key, so a request's records share one
/// (in every topic of a co-partitioned set).
pub fn partition_of(key: &str, parts: i32) -> i32 {
    (accord::judge::text_hash(key) % parts as u64) as i32
}

/// The message timestamp of a generated record: when it was emitted.
pub fn timestamp_of(r: &SimRecord) -> i64 {
    support::BASE_MS + r.emit_ms
}

/// The partitions the backlog needs (at least `min`) so that none holds
/// more than the mock cluster keeps.
pub fn backlog_partitions(records: &[SimRecord], min: i32) -> i32 {
    let mut parts = min.max(1);
    loop {
        let mut bytes = vec![0usize; parts as usize];
        for r in records {
            bytes[partition_of(&r.key, parts) as usize] += record_bytes(r);
        }
        if bytes.iter().all(|&b| b <= MOCK_PARTITION_BUDGET) {
            return parts;
        }
        parts = (parts * 5 / 4).max(parts + 1);
    }
}

/// The layer of a generated record.
pub fn layer_of(json: &str) -> &str {
    json.split("\"layer\":\"").nth(1).and_then(|s| s.split('"').next()).unwrap_or("")
}

/// (t)'s split: the web tier (frontend, api) to the first topic, the
/// backend (worker, analytics) to the second.
pub fn layer_topic(r: &SimRecord) -> usize {
    usize::from(!matches!(layer_of(&r.json), "frontend" | "api"))
}

/// Sends one record, waiting while the producer's queue is full.
pub fn send<C: ProducerContext<DeliveryOpaque = ()>>(
    producer: &ThreadedProducer<C>,
    topic: &str,
    r: &SimRecord,
    partition: i32,
) {
    let mut rec =
        BaseRecord::<str, str>::to(topic).key(&r.key).payload(&r.json).partition(partition).timestamp(timestamp_of(r));
    while let Err((_, back)) = producer.send(rec) {
        rec = back;
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// Produces the whole stream to `topics` (each of `parts` partitions,
/// created here; `route` picks a record's topic, keyed so a request's
/// records share a partition number) before any consumer starts, so what
/// a phase times is draining a backlog: no consumer ever waits for the
/// producer. (Producing while consuming would time the producer, or, with
/// the clock started after the producer's flush, only the tail.)
pub fn produce_backlog<C: ProducerContext<DeliveryOpaque = ()>>(
    cluster: &Mock,
    producer: &ThreadedProducer<C>,
    topics: &[&str],
    records: &[SimRecord],
    parts: i32,
    route: impl Fn(&SimRecord) -> usize,
) -> anyhow::Result<()> {
    for t in topics {
        cluster.create_topic(t, parts, 1)?;
    }
    for r in records {
        send(producer, topics[route(r)], r, partition_of(&r.key, parts));
    }
    producer.flush(Duration::from_secs(120))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(key: &str, layer: &str, emit_ms: i64) -> SimRecord {
        SimRecord {
            emit_ms,
            key: key.into(),
            json: format!(r#"{{"request_id":"{key}","layer":"{layer}","feature":"checkout_v2"}}"#),
        }
    }

    #[test]
    fn layers_split_web_from_backend() {
        let topics: Vec<usize> =
            ["frontend", "api", "worker", "analytics"].iter().map(|l| layer_topic(&rec("r", l, 0))).collect();
        assert_eq!(topics, [0, 0, 1, 1]);
        assert_eq!(timestamp_of(&rec("r", "api", 5)), support::BASE_MS + 5);
    }

    #[test]
    fn partitions_grow_until_each_fits() {
        let big: Vec<SimRecord> = (0..60_000).map(|i| rec(&format!("req-{i}"), "api", 0)).collect();
        let total: usize = big.iter().map(record_bytes).sum();
        let p = backlog_partitions(&big, 1);
        assert!(p as usize >= total.div_ceil(MOCK_PARTITION_BUDGET), "{p} partitions for {total} bytes");
        assert_eq!(backlog_partitions(&big[..10], 4), 4);
    }
}
