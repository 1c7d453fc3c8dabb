//! The internal topics where state that must outlive an instance lives:
//! named after the consumer group, created at start-up when missing.
//!
//! - `<group>.accord-handover` (compacted): each stream's newest handover
//!   state, keyed `<group>/<partition>`. Brokers that drop offset-commit
//!   metadata (tansu does) and commits refused during a rebalance (Apache
//!   Kafka refuses them) would otherwise lose the state.
//! - `<group>.accord-stats` (deleted after a few hours): what every
//!   instance judged, per feature and time bucket, for the global live view.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use rdkafka::types::RDKafkaErrorCode;

use super::handover::StreamState;
use super::{client_config_for, ClientRole, KafkaConfig, SourceError};

/// What one internal topic is for and the settings it needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InternalTopic {
    pub name: String,
    pub what: &'static str,
    /// Topic configuration accord creates it with (and needs).
    pub settings: &'static [(&'static str, &'static str)],
}

/// Handover states are small and only the newest per stream matters.
const HANDOVER_SETTINGS: &[(&str, &str)] = &[("cleanup.policy", "compact")];
/// The live view rebuilds the last hour after a restart; three hours of
/// retention leave room for a slow restart.
const STATS_SETTINGS: &[(&str, &str)] = &[("cleanup.policy", "delete"), ("retention.ms", "10800000")];

impl InternalTopic {
    pub fn handover(cfg: &KafkaConfig) -> Self {
        InternalTopic {
            name: cfg.handover_topic.clone().unwrap_or_else(|| format!("{}.accord-handover", cfg.group)),
            what: "handover state",
            settings: HANDOVER_SETTINGS,
        }
    }

    pub fn stats(cfg: &KafkaConfig) -> Self {
        InternalTopic {
            name: cfg.stats_topic.clone().unwrap_or_else(|| format!("{}.accord-stats", cfg.group)),
            what: "live view statistics",
            settings: STATS_SETTINGS,
        }
    }

    fn settings_text(&self) -> String {
        let mut s = vec!["partitions=1".to_string()];
        s.extend(self.settings.iter().map(|(k, v)| format!("{k}={v}")));
        s.join(", ")
    }
}

/// The internal topics of a group, by default names.
pub fn default_names(group: &str) -> [String; 2] {
    [format!("{group}.accord-handover"), format!("{group}.accord-stats")]
}

/// Creates the topics of `wanted` that the broker does not have. A broker
/// that refuses is a configuration problem: the error names the topic and
/// the settings it needs, so an operator can create it.
pub async fn ensure(cfg: &KafkaConfig, existing: &[String], wanted: &[InternalTopic]) -> Result<(), SourceError> {
    let missing: Vec<&InternalTopic> = wanted.iter().filter(|t| !existing.contains(&t.name)).collect();
    if missing.is_empty() {
        return Ok(());
    }
    let admin: AdminClient<DefaultClientContext> =
        client_config_for(&cfg.brokers, &cfg.properties, ClientRole::Producer)
            .create()
            .map_err(|e| SourceError::Config(format!("kafka admin client configuration: {e}")))?;
    let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));
    for t in missing {
        let mut created = Err(String::new());
        // Replication -1 asks for the broker's default (Kafka 2.4 and
        // later); brokers that do not know it are asked for 1.
        for replication in [-1, 1] {
            let mut nt = NewTopic::new(&t.name, 1, TopicReplication::Fixed(replication));
            for (k, v) in t.settings {
                nt = nt.set(k, v);
            }
            let r = admin.create_topics([&nt], &opts).await;
            created = match r {
                Ok(results) => match results.into_iter().next() {
                    Some(Ok(_)) | None => Ok(()),
                    Some(Err((_, RDKafkaErrorCode::TopicAlreadyExists))) => Ok(()),
                    Some(Err((_, code))) => Err(code.to_string()),
                },
                Err(e) => Err(e.to_string()),
            };
            if created.is_ok() {
                break;
            }
        }
        match created {
            Ok(()) => tracing::info!(topic = %t.name, settings = %t.settings_text(), "created the {} topic", t.what),
            Err(e) => {
                return Err(SourceError::Config(format!(
                    "cannot create the {} topic {:?} on {}: {e}; create it with {} (or name another with --{}-topic)",
                    t.what,
                    t.name,
                    cfg.brokers,
                    t.settings_text(),
                    if t.what == "handover state" { "handover" } else { "stats" },
                )))
            }
        }
    }
    Ok(())
}

/// The handover topic's key for a stream.
pub fn handover_key(group: &str, partition: i32) -> String {
    format!("{group}/{partition}")
}

/// The stream (partition) a handover topic key names for `group`: today's
/// `<group>/<partition>`, or the single-topic `<group>/<topic>/<partition>`
/// of earlier versions (whose topic is returned too).
fn parse_key<'a>(key: &'a str, group: &str) -> Option<(i32, Option<&'a str>)> {
    let rest = key.strip_prefix(group)?.strip_prefix('/')?;
    match rest.rsplit_once('/') {
        Some((topic, p)) => Some((p.parse().ok()?, Some(topic))),
        None => Some((rest.parse().ok()?, None)),
    }
}

/// Reads the handover topic to its end: the newest state of each of the
/// group's streams. Blocking (call it off the async runtime).
pub fn read_handover_topic(cfg: &KafkaConfig, topic: &str) -> Result<HashMap<i32, StreamState>, KafkaError> {
    let mut c = client_config_for(&cfg.brokers, &cfg.properties, ClientRole::Consumer);
    c.set("group.id", format!("{}-handover-reader", cfg.group))
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "false")
        .set("session.timeout.ms", "6000");
    let consumer: BaseConsumer = c.create()?;
    let md = consumer.fetch_metadata(Some(topic), Duration::from_secs(5))?;
    let parts: Vec<i32> = md.topics().iter().flat_map(|t| t.partitions().iter().map(|p| p.id())).collect();
    let mut tpl = TopicPartitionList::new();
    let mut ends = HashMap::new();
    for p in &parts {
        let (_, high) = consumer.fetch_watermarks(topic, *p, Duration::from_secs(5))?;
        if high > 0 {
            tpl.add_partition_offset(topic, *p, Offset::Beginning)?;
            ends.insert(*p, high);
        }
    }
    let mut out: HashMap<i32, StreamState> = HashMap::new();
    if ends.is_empty() {
        return Ok(out);
    }
    consumer.assign(&tpl)?;
    let deadline = Instant::now() + Duration::from_secs(15);
    // Past the reported end, read on until the topic stays quiet: the high
    // watermark is only a hint on some brokers (tansu reports it low).
    let mut quiet_since: Option<Instant> = None;
    while Instant::now() < deadline {
        if ends.is_empty() && quiet_since.get_or_insert_with(Instant::now).elapsed() > Duration::from_millis(1500) {
            break;
        }
        let Some(m) = consumer.poll(Duration::from_millis(100)) else { continue };
        let m = m?;
        quiet_since = None;
        if let (Some(k), Some(v)) = (m.key(), m.payload()) {
            let key = std::str::from_utf8(k).ok().and_then(|k| parse_key(k, &cfg.group));
            let body = std::str::from_utf8(v).ok();
            if let (Some((p, topic)), Some(body)) = (key, body) {
                if let Some(st) = StreamState::decode(body, topic.unwrap_or_default()) {
                    let prev = out.remove(&p);
                    out.insert(p, StreamState::newest(prev, st));
                }
            }
        }
        if ends.get(&m.partition()).is_some_and(|&end| m.offset() + 1 >= end) {
            ends.remove(&m.partition());
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_the_group_unless_overridden() {
        let mut cfg = KafkaConfig::new("b:9092", &["decisions"], "payments-accord");
        assert_eq!(InternalTopic::handover(&cfg).name, "payments-accord.accord-handover");
        assert_eq!(InternalTopic::stats(&cfg).name, "payments-accord.accord-stats");
        cfg.handover_topic = Some("custom".into());
        assert_eq!(InternalTopic::handover(&cfg).name, "custom");
        assert_eq!(default_names("g"), ["g.accord-handover", "g.accord-stats"]);
        assert_eq!(
            InternalTopic::stats(&cfg).settings_text(),
            "partitions=1, cleanup.policy=delete, retention.ms=10800000"
        );
    }

    #[test]
    fn keys_of_this_and_earlier_versions() {
        assert_eq!(parse_key(&handover_key("g", 7), "g"), Some((7, None)));
        assert_eq!(parse_key("g/decisions/3", "g"), Some((3, Some("decisions"))));
        assert_eq!(parse_key("other/3", "g"), None);
        assert_eq!(parse_key("g2/3", "g"), None);
        assert_eq!(parse_key("g/x", "g"), None);
    }
}
