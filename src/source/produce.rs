//! Sends simulated messages (decision records, or OpenTelemetry export
//! requests) to Kafka, paced to the wall clock.

use std::time::Duration;

use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use tokio_util::sync::CancellationToken;
use tracing::warn;

use crate::simulate::{Messages, Report};
use crate::source::kafka::{client_config_for, ClientRole};

#[derive(Debug, thiserror::Error)]
pub enum ProduceError {
    #[error("kafka producer configuration: {0}")]
    Config(rdkafka::error::KafkaError),
    #[error("cannot deliver to {topic}: {source}")]
    Deliver { topic: String, source: rdkafka::error::KafkaError },
}

/// Produces every generated message at its emit time (relative to now),
/// keyed by request id (trace id for OpenTelemetry). Returns what was sent. Stops early on `cancel`
/// (the report then covers what was generated so far, and records of
/// requests in flight may be missing).
pub async fn produce(
    brokers: &str,
    properties: &[(String, String)],
    topic: &str,
    mut gen: Messages,
    cancel: CancellationToken,
) -> Result<Report, ProduceError> {
    let mut cfg = client_config_for(brokers, properties, ClientRole::Producer);
    cfg.set("linger.ms", "5").set("queue.buffering.max.messages", "500000").set("message.timeout.ms", "120000");
    let producer: FutureProducer = cfg.create().map_err(ProduceError::Config)?;
    let start = tokio::time::Instant::now();
    let mut inflight = Vec::with_capacity(1024);
    while let Some(emit) = gen.peek_emit_ms() {
        let due = start + Duration::from_millis(emit.max(0) as u64);
        if due > tokio::time::Instant::now() {
            // Deliver what is queued before sleeping.
            for f in inflight.drain(..) {
                check(f, topic).await?;
            }
            tokio::select! {
                _ = cancel.cancelled() => break,
                _ = tokio::time::sleep_until(due) => {}
            }
        }
        let Some(rec) = gen.next() else { break };
        let fut = producer
            .send_result(FutureRecord::to(topic).key(&rec.key).payload(&rec.payload))
            .map_err(|(e, _)| ProduceError::Deliver { topic: topic.into(), source: e });
        match fut {
            Ok(f) => inflight.push(f),
            Err(e) => {
                // Local queue full: drain and retry once.
                warn!(error = %e, "producer queue full; draining");
                for f in inflight.drain(..) {
                    check(f, topic).await?;
                }
                let f = producer
                    .send_result(FutureRecord::to(topic).key(&rec.key).payload(&rec.payload))
                    .map_err(|(e, _)| ProduceError::Deliver { topic: topic.into(), source: e })?;
                inflight.push(f);
            }
        }
        if inflight.len() >= 1000 {
            for f in inflight.drain(..) {
                check(f, topic).await?;
            }
        }
    }
    for f in inflight.drain(..) {
        check(f, topic).await?;
    }
    let _ = producer.flush(Duration::from_secs(30));
    Ok(gen.report())
}

async fn check(f: rdkafka::producer::DeliveryFuture, topic: &str) -> Result<(), ProduceError> {
    match f.await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err((e, _))) => Err(ProduceError::Deliver { topic: topic.into(), source: e }),
        Err(_) => Ok(()), // producer dropped while shutting down
    }
}
