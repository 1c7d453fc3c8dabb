//! (s) the statistics topic: after a (d) run, what the instance wrote to
//! `<group>.accord-stats`, the internal topic where the live view's
//! statistics go so that every instance can show the whole group. Its
//! volume follows the number of instances and how often each publishes
//! (the commit interval), not the records/s judged, so the projection to
//! 1,000,000 records/s multiplies the per-instance rate by the instances
//! that rate needs.

use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};

use crate::kafka::{Bench, Run};

/// The records/s the projection is made for.
const TARGET: f64 = 1_000_000.0;

/// Records and bytes (keys and values) of a topic.
#[derive(Default, Debug, PartialEq)]
pub struct Volume {
    pub records: u64,
    pub bytes: u64,
}

pub fn stats_topic(bench: &Bench<'_>, group: &str, run: &Run, n: usize) -> anyhow::Result<()> {
    let topic = accord::source::kafka::internal_topic_names(group)
        .into_iter()
        .find(|t| t.ends_with(".accord-stats"))
        .ok_or_else(|| anyhow::anyhow!("no statistics topic among the internal topics"))?;
    let v = read_topic(&bench.cluster.bootstrap_servers(), &topic)?;
    let secs = run.lifetime.max(1e-9);
    println!(
        "(s) statistics topic {topic}: {} records, {} bytes (keys and values) in the run's {:.1} s: {:.2} records/s, {:.0} bytes/s per instance",
        v.records,
        v.bytes,
        secs,
        v.records as f64 / secs,
        v.bytes as f64 / secs
    );
    let rate = n as f64 / run.drained.secs;
    let p = project(&v, secs, rate);
    match p.mean_record {
        Some(mean) => println!(
            "    mean record {mean:.0} bytes; at {TARGET:.0} records/s: {} instances at this run's {rate:.0} records/s each -> {:.1} records/s, {:.0} bytes/s",
            p.instances, p.records_per_sec, p.bytes_per_sec
        ),
        None => println!(
            "    empty: nothing published there yet; at {TARGET:.0} records/s it would be {} instances at this run's {rate:.0} records/s each, times what one instance publishes",
            p.instances
        ),
    }
    println!("    (the record count follows instances x commit interval, not records/s: the run's lifetime, group join included, is the time base)");
    Ok(())
}

/// The stats topic at 1,000,000 records/s judged.
#[derive(Debug, PartialEq)]
pub struct Projection {
    pub instances: u64,
    pub mean_record: Option<f64>,
    pub records_per_sec: f64,
    pub bytes_per_sec: f64,
}

/// One instance wrote `v` in `secs` while judging up to `rate` records/s.
pub fn project(v: &Volume, secs: f64, rate: f64) -> Projection {
    let instances = (TARGET / rate.max(1.0)).ceil().max(1.0) as u64;
    Projection {
        instances,
        mean_record: (v.records > 0).then(|| v.bytes as f64 / v.records as f64),
        records_per_sec: instances as f64 * v.records as f64 / secs,
        bytes_per_sec: instances as f64 * v.bytes as f64 / secs,
    }
}

/// Reads every partition of `topic` from its start to its high watermark.
fn read_topic(brokers: &str, topic: &str) -> anyhow::Result<Volume> {
    let consumer: BaseConsumer = rdkafka::config::ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", "throughput-stats-reader")
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "false")
        .create()?;
    let md = consumer.fetch_metadata(Some(topic), Duration::from_secs(10))?;
    let parts: Vec<i32> = md.topics().iter().flat_map(|t| t.partitions().iter().map(|p| p.id())).collect();
    let mut tpl = TopicPartitionList::new();
    let mut remaining = 0i64;
    for &p in &parts {
        let (low, high) = consumer.fetch_watermarks(topic, p, Duration::from_secs(10))?;
        remaining += high - low;
        tpl.add_partition_offset(topic, p, Offset::Beginning)?;
    }
    let mut v = Volume::default();
    if remaining == 0 {
        return Ok(v);
    }
    consumer.assign(&tpl)?;
    let deadline = Instant::now() + Duration::from_secs(30);
    while remaining > 0 {
        anyhow::ensure!(Instant::now() < deadline, "{topic}: {remaining} records not read within 30 s");
        match consumer.poll(Duration::from_millis(100)) {
            Some(Ok(m)) => {
                v.records += 1;
                v.bytes += (m.key().map_or(0, <[u8]>::len) + m.payload().map_or(0, <[u8]>::len)) as u64;
                remaining -= 1;
            }
            Some(Err(e)) => return Err(e.into()),
            None => {}
        }
    }
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn projection_scales_with_instances_not_records() {
        let p = project(&Volume { records: 20, bytes: 10_000 }, 10.0, 400_000.0);
        assert_eq!(p.instances, 3);
        assert_eq!(p.mean_record, Some(500.0));
        assert_eq!(p.records_per_sec, 6.0);
        assert_eq!(p.bytes_per_sec, 3_000.0);
        let empty = project(&Volume::default(), 10.0, 2_000_000.0);
        assert_eq!((empty.instances, empty.mean_record, empty.bytes_per_sec), (1, None, 0.0));
    }
}
