//! The verdicts topic: every closed join produced as one JSON record keyed
//! by `request_id` (the `replay --format verdicts` shape), the audit trail
//! of which requests were judged under which path.
//!
//! The producer's queue is flushed before every offset commit, so a
//! committed offset never runs ahead of the verdicts it covers.

use std::sync::Arc;
use std::time::Duration;

use rdkafka::error::KafkaError;
use rdkafka::producer::{BaseRecord, DefaultProducerContext, ThreadedProducer};
use rdkafka::types::RDKafkaErrorCode;
use tracing::warn;

use crate::export::verdicts::verdict_json;
use crate::features::Features;
use crate::join::{Closed, Observer};

pub type Producer = ThreadedProducer<DefaultProducerContext>;

/// Produces every closed join to the verdicts topic. One per judging
/// thread; they share the producer.
pub struct VerdictProducer {
    producer: Arc<Producer>,
    topic: String,
    features: Arc<Features>,
}

impl VerdictProducer {
    pub fn new(producer: Arc<Producer>, topic: String, features: Arc<Features>) -> Self {
        VerdictProducer { producer, topic, features }
    }
}

impl Observer for VerdictProducer {
    fn closed(&mut self, c: &Closed<'_>) {
        let line = verdict_json(c, &self.features.name(c.feature), self.features.catalog());
        let Ok(body) = serde_json::to_vec(&line) else {
            return;
        };
        let mut rec = BaseRecord::to(&self.topic).key(c.request_id).payload(&body);
        // The queue is bounded; when it is full, wait for deliveries rather
        // than drop a verdict (this runs on a judging thread, never on the
        // async runtime).
        for _ in 0..1000 {
            match self.producer.send(rec) {
                Ok(()) => return,
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), r)) => {
                    rec = r;
                    std::thread::sleep(Duration::from_millis(10));
                }
                Err((e, _)) => {
                    warn!(error = %e, "cannot produce verdict");
                    return;
                }
            }
        }
        warn!("verdicts producer queue stayed full for 10 s; verdict dropped");
    }
}
