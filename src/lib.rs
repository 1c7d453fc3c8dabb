//! accord: a rollout agreement monitor.
//!
//! Data flow, one module per stage: [`decode`] a record → resolve its
//! [`features`] id → [`join`] per request → [`judge`] at close →
//! [`export`] as metrics, summaries and verdicts. [`pipeline`] strings the
//! stages together for one stream; [`replay`] drives it from files.

pub mod api;
pub mod catalog;
pub mod decode;
pub mod demo;
pub mod exit;
pub mod export;
pub mod features;
pub mod fuzzing;
pub mod http;
pub mod join;
pub mod judge;
pub mod live;
pub mod pipeline;
pub(crate) mod ratelimit;
pub mod replay;
pub mod server;
pub mod service;
pub mod simulate;
pub mod source;
pub mod status_page;

pub use catalog::Catalog;
pub use features::Features;
pub use pipeline::Pipeline;
