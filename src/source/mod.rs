//! Sources at the edge of the pipeline: Kafka (the service) and the
//! simulator's producer.

pub mod kafka;
pub mod produce;
