//! Committing: an offset is never committed ahead of what it promises.
//!
//! In order: the verdicts produced so far are flushed; this instance's
//! share of the live view is published (see `stats`: the statistics taken
//! with the states); each stream's handover state is written to the
//! handover topic (one record per flush: some brokers, tansu among them,
//! report a wrong high watermark for multi-record batches, and the reader
//! stops at the high watermark); the offsets are committed with the state
//! as each topic partition's commit metadata. A failed step stops the
//! round; it is retried later.

use std::collections::HashMap;
use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext};
use rdkafka::producer::{BaseRecord, Producer as _};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use tracing::{debug, warn};

use super::handover::StreamState;
use super::internal::handover_key;
use super::verdicts::Producer;

/// How long a commit may wait for the producers; a failed commit is
/// retried after [`COMMIT_BACKOFF`], so a broker outage never keeps the
/// consumer thread blocked for long.
pub const FLUSH_TIMEOUT: Duration = Duration::from_secs(2);
pub const COMMIT_BACKOFF: Duration = Duration::from_secs(10);

/// What one commit round writes.
#[derive(Debug, Default, PartialEq)]
pub struct Plan {
    /// `(key, state)` records of the handover topic.
    pub records: Vec<(String, String)>,
    /// `(topic, partition, offset, metadata)` to commit.
    pub offsets: Vec<(String, i32, i64, String)>,
}

/// The plan for `states`, leaving out streams whose state equals the one
/// committed last (`committed`) when `only_changed`.
pub fn plan(
    group: &str,
    states: &[(i32, StreamState)],
    committed: &HashMap<i32, StreamState>,
    only_changed: bool,
) -> Plan {
    let mut out = Plan::default();
    for (p, st) in states {
        if only_changed && committed.get(p) == Some(st) {
            continue;
        }
        let text = st.encode();
        out.records.push((handover_key(group, *p), text.clone()));
        for t in &st.topics {
            out.offsets.push((t.topic.clone(), *p, t.offset, text.clone()));
        }
    }
    out
}

/// Where a commit round writes.
pub struct Sinks<'a> {
    pub verdicts: Option<&'a Producer>,
    pub handover: &'a Producer,
    pub handover_topic: &'a str,
}

/// Why a round stopped.
#[derive(Debug, thiserror::Error)]
pub enum CommitError {
    #[error("verdicts not delivered: {0}")]
    Verdicts(rdkafka::error::KafkaError),
    #[error("cannot publish the live view's statistics to {topic}: {source}")]
    Stats { topic: String, source: rdkafka::error::KafkaError },
    #[error("cannot write the handover state to {topic}: {source}")]
    Handover { topic: String, source: rdkafka::error::KafkaError },
    #[error("offset commit failed: {0}")]
    Offsets(rdkafka::error::KafkaError),
}

/// Step 1: every verdict produced so far is delivered. Blocking.
pub fn flush_verdicts(sinks: &Sinks<'_>) -> Result<(), CommitError> {
    match sinks.verdicts {
        Some(v) => v.flush(FLUSH_TIMEOUT).map_err(CommitError::Verdicts),
        None => Ok(()),
    }
}

/// Step 3 (after the share, step 2): the handover states. Blocking.
pub fn write_handover(plan: &Plan, sinks: &Sinks<'_>) -> Result<(), CommitError> {
    for (key, body) in &plan.records {
        let handover = |source| CommitError::Handover { topic: sinks.handover_topic.to_string(), source };
        sinks
            .handover
            .send(BaseRecord::to(sinks.handover_topic).key(key).payload(body))
            .map_err(|(e, _)| handover(e))?;
        sinks.handover.flush(FLUSH_TIMEOUT).map_err(handover)?;
    }
    Ok(())
}

/// Step 4: the offsets, each with its stream's state as metadata.
pub fn commit_offsets<C: ConsumerContext>(
    plan: &Plan,
    consumer: &BaseConsumer<C>,
    mode: CommitMode,
) -> Result<(), CommitError> {
    if plan.offsets.is_empty() {
        return Ok(());
    }
    let mut tpl = TopicPartitionList::new();
    for (topic, p, offset, meta) in &plan.offsets {
        if tpl.add_partition_offset(topic, *p, Offset::Offset(*offset)).is_ok() {
            if let Some(mut e) = tpl.find_partition(topic, *p) {
                e.set_metadata(meta.clone());
            }
        }
    }
    consumer.commit(&tpl, mode).map_err(CommitError::Offsets)?;
    debug!(partitions = tpl.count(), "offsets committed");
    Ok(())
}

/// Logs a failed round (the caller counts it and retries).
pub fn log_failure(e: &CommitError) {
    warn!(error = %e, "commit round failed; offsets not committed this round");
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::kafka::handover::TopicMark;

    fn st(c: i64) -> StreamState {
        StreamState {
            wm_at_offset: 1,
            wm_processed: 2,
            topics: vec![
                TopicMark { topic: "web".into(), offset: c, processed: c + 3 },
                TopicMark { topic: "backend".into(), offset: c + 1, processed: c + 5 },
            ],
        }
    }

    #[test]
    fn every_topic_partition_of_a_stream_carries_the_whole_state() {
        let p = plan("g", &[(3, st(10))], &HashMap::new(), true);
        let text = st(10).encode();
        assert_eq!(p.records, [("g/3".to_string(), text.clone())]);
        assert_eq!(p.offsets, [("web".to_string(), 3, 10, text.clone()), ("backend".to_string(), 3, 11, text)]);
    }

    #[test]
    fn unchanged_streams_are_left_out_unless_asked() {
        let committed = HashMap::from([(3, st(10))]);
        let states = [(3, st(10)), (4, st(7))];
        let p = plan("g", &states, &committed, true);
        assert_eq!(p.records.len(), 1);
        assert!(p.offsets.iter().all(|o| o.1 == 4));
        assert_eq!(plan("g", &states, &committed, false).records.len(), 2);
    }
}
