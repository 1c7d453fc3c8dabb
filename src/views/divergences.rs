//! The divergences API's read model: recent divergent requests with every
//! layer's record as received.

use serde::Serialize;

use super::layer_namer;
use crate::catalog::FeatureSpec;
use crate::decode::format_rfc3339_ms;
use crate::features::FeatureId;
use crate::live::{LiveView, Sample, SampleRecord};

#[derive(Debug, Clone, Serialize)]
pub(crate) struct KindView {
    pub kind: &'static str,
    pub upstream: String,
    pub downstream: String,
    pub explanation: String,
}

#[derive(Debug, Clone, Serialize)]
pub(crate) struct RecordView {
    pub layer: String,
    /// Offset within its topic partition.
    pub position: u64,
    /// Event time accord used (RFC 3339).
    pub ts: String,
    pub path: &'static str,
    /// The record as received; `null` when it is no longer available.
    pub record: Option<serde_json::Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unavailable: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub(crate) struct SampleView {
    pub request_id: String,
    pub verdict: &'static str,
    pub path: &'static str,
    /// Join start (earliest event time).
    pub start: String,
    /// Wall-clock time accord closed the join.
    pub closed_at: String,
    /// `complete`, `window`, `evicted` or `end_of_stream`.
    pub close_cause: &'static str,
    /// The leading explanation of the divergence.
    pub explanation: String,
    pub kinds: Vec<KindView>,
    pub missing: Vec<String>,
    pub records: Vec<RecordView>,
}

#[derive(Debug, Clone, Serialize)]
pub(crate) struct DivergencesView {
    pub feature: String,
    pub limit: usize,
    /// Divergent requests kept for this feature (at most `max_kept`).
    pub kept: usize,
    pub max_kept: usize,
    pub divergent_requests: Vec<SampleView>,
    /// How complete and fresh the consumer group's view is (`accord run`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub view: Option<crate::live::Freshness>,
}

fn record_view(r: &SampleRecord, name: String) -> RecordView {
    let (record, unavailable) = match &r.raw {
        // Not JSON (the record was rejected for that reason, or is an
        // OpenTelemetry item): shown as text.
        Some(b) => match serde_json::from_slice::<serde_json::Value>(b) {
            Ok(v) => (Some(v), None),
            Err(_) => (Some(serde_json::Value::String(String::from_utf8_lossy(b).into_owned())), None),
        },
        None => (
            None,
            Some(format!(
                "the {name} record at position {} is no longer in the sample buffer (--sample-buffer-bytes)",
                r.pos.offset
            )),
        ),
    };
    RecordView {
        layer: name,
        position: r.pos.offset,
        ts: format_rfc3339_ms(r.ts_ms),
        path: r.path.as_str(),
        record,
        unavailable,
    }
}

pub(crate) fn sample_view(live: &LiveView, spec: &FeatureSpec, s: &Sample) -> SampleView {
    let layer = layer_namer(live.features());
    SampleView {
        request_id: s.request_id.clone(),
        verdict: s.verdict.as_str(),
        path: s.path.as_str(),
        start: format_rfc3339_ms(s.start_ms),
        closed_at: format_rfc3339_ms(s.closed_ms),
        explanation: s.cause.map(|c| c.explain(&layer, spec)).unwrap_or_default(),
        close_cause: s.close_cause.as_str(),
        kinds: s
            .pairs
            .iter()
            .map(|p| KindView {
                kind: p.kind.as_str(),
                upstream: layer(p.upstream),
                downstream: layer(p.downstream),
                explanation: p.explain(&layer, spec),
            })
            .collect(),
        missing: s.missing.iter().map(&layer).collect(),
        records: s.records.iter().map(|r| record_view(r, layer(r.layer))).collect(),
    }
}

/// A feature's most recent divergent requests, newest first, and how many
/// are kept. The record bytes are parsed here, after the view's lock is
/// released.
pub(crate) fn sample_views(live: &LiveView, id: FeatureId, limit: usize) -> (Vec<SampleView>, usize) {
    let spec = live.features().spec(id);
    let (samples, kept) = live.samples(id, limit);
    (samples.iter().map(|s| sample_view(live, &spec, s)).collect(), kept)
}
