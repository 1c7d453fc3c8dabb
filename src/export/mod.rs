//! Export stage: what the judged stream becomes for its users —
//! Prometheus metrics, the replay summary, and one JSON verdict per
//! closed join (replay `--format verdicts`, the verdicts topic).

pub mod metrics;
pub mod summary;
pub mod verdicts;

pub use metrics::{Metrics, MetricsObserver};
pub use summary::Summary;
pub use verdicts::{verdict_json, VerdictLine};
