//! accord: a rollout agreement monitor.
//!
//! Data flow, one module per stage: [`decode`] a record → resolve its
//! [`features`] id → [`join`] per request → [`judge`] at close →
//! [`export`] as metrics, summaries and verdicts. [`pipeline`] strings the
//! stages together for one stream; [`replay`] drives it from files.
//!
//! The read side: [`explain`] tells a divergent request in words, [`live`]
//! keeps windowed statistics (mergeable deltas, a recorder per judging
//! task, the view the APIs read), [`gate`] decides a rollout gate, and
//! [`http`] serves the APIs and the status page from read models built in
//! `views`.

pub mod catalog;
pub mod decode;
pub mod demo;
pub mod exit;
pub mod explain;
pub mod export;
pub mod features;
pub mod fuzzing;
pub mod gate;
pub mod http;
pub mod join;
pub mod judge;
pub mod live;
pub mod pipeline;
pub mod position;
pub(crate) mod ratelimit;
pub mod replay;
pub mod service;
pub mod simulate;
pub mod source;
mod text;
mod views;

pub use catalog::Catalog;
pub use features::Features;
pub use pipeline::Pipeline;
