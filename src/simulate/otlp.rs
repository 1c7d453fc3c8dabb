//! The simulator's decisions as OpenFeature flag-evaluation events, the
//! way OpenTelemetry SDKs and the Collector would deliver them: the
//! frontend as log records (the JavaScript web SDK's event hook), backends
//! as span events (the Go and Java OpenTelemetry hooks), a mix of both
//! generations of attribute and event names, the accord-specific fields as
//! attributes, and the layer either from `service.name` (through the
//! catalog's `[otel.layers]`) or from an `accord.layer` attribute.
//!
//! A Collector batch (every record emitted within [`BATCH_MS`]) is split
//! the way its Kafka exporter splits with `partition_logs_by_trace_id` /
//! `partition_traces_by_id`: one export request per trace id (and signal),
//! keyed by that trace id. Requests are encoded with the official
//! `opentelemetry-proto` types, as protobuf or as OTLP/JSON.
//!
//! Besides evaluations, some requests carry other events (an exception, an
//! HTTP access log): accord must skip and count them; [`Encoder::ignored`]
//! says how many were written.

use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, InstrumentationScope, KeyValue};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{span, ResourceSpans, ScopeSpans, Span};
use prost::Message;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

use crate::catalog::{OtelConfig, RequestIdSource};
use crate::decode::{FlagState, InputFormat, Record};

/// How long a simulated Collector batches before it exports.
pub const BATCH_MS: i64 = 200;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Signal {
    Logs,
    Traces,
}

/// Encodes batches of decision records as OTLP export requests.
pub struct Encoder {
    format: InputFormat,
    otel: OtelConfig,
    rng: SmallRng,
    /// Items written that are not flag evaluations.
    pub ignored: u64,
}

/// One export request: its Kafka key (the trace id in hex) and bytes.
pub struct Encoded {
    pub key: String,
    pub payload: Vec<u8>,
    /// The batch's records it holds, by index, in message order.
    pub order: Vec<usize>,
}

/// A deterministic, valid (non-zero) trace id for a request id, so the
/// same simulated request has the same trace in every run.
pub fn trace_id_of(request_id: &str) -> [u8; 16] {
    let fnv = |seed: u64| {
        let mut h = seed;
        for b in request_id.bytes() {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
        h
    };
    let mut t = [0u8; 16];
    t[..8].copy_from_slice(&fnv(0xcbf2_9ce4_8422_2325).to_be_bytes());
    t[8..].copy_from_slice(&(fnv(0x8422_2325_cbf2_9ce4) | 1).to_be_bytes());
    t
}

fn hex(b: &[u8]) -> String {
    use std::fmt::Write;
    b.iter().fold(String::with_capacity(b.len() * 2), |mut s, x| {
        let _ = write!(s, "{x:02x}");
        s
    })
}

fn kv(key: &str, v: any_value::Value) -> KeyValue {
    KeyValue { key: key.into(), value: Some(AnyValue { value: Some(v) }), ..Default::default() }
}

fn s(key: &str, v: &str) -> KeyValue {
    kv(key, any_value::Value::StringValue(v.into()))
}

fn scope() -> Option<InstrumentationScope> {
    Some(InstrumentationScope { name: "@openfeature/open-telemetry-hooks".into(), ..Default::default() })
}

impl Encoder {
    /// `format` must be an OTLP format; `otel` is the catalog section the
    /// output must satisfy (attribute names, request id, service layers).
    pub fn new(format: InputFormat, otel: &OtelConfig, seed: u64) -> Self {
        Encoder { format, otel: otel.clone(), rng: SmallRng::seed_from_u64(seed ^ 0x07e1), ignored: 0 }
    }

    fn signal(&self, layer: &str) -> Signal {
        match self.format {
            InputFormat::OtlpProtoLogs => Signal::Logs,
            InputFormat::OtlpProtoTraces => Signal::Traces,
            _ if layer == "frontend" => Signal::Logs,
            _ => Signal::Traces,
        }
    }

    /// Encodes one batch (records in emit order) into export requests, one
    /// per trace id and signal, in the order of their first record.
    pub fn encode_batch(&mut self, batch: &[Record<'_>]) -> Vec<Encoded> {
        let mut groups: Vec<([u8; 16], Signal, Vec<usize>)> = Vec::new();
        for (i, r) in batch.iter().enumerate() {
            let trace = trace_id_of(&r.request_id);
            let signal = self.signal(&r.layer);
            match groups.iter_mut().find(|(t, s, _)| *t == trace && *s == signal) {
                Some(g) => g.2.push(i),
                None => groups.push((trace, signal, vec![i])),
            }
        }
        groups
            .into_iter()
            .map(|(trace, signal, idx)| {
                let order: Vec<usize> = Self::by_service(batch, &idx).into_iter().flatten().collect();
                let recs: Vec<&Record<'_>> = order.iter().map(|&i| &batch[i]).collect();
                let payload = match signal {
                    Signal::Logs => self.logs(trace, &recs),
                    Signal::Traces => self.traces(trace, &recs),
                };
                Encoded { key: hex(&trace), payload, order }
            })
            .collect()
    }

    fn json(&self) -> bool {
        self.format == InputFormat::OtlpJson
    }

    /// Record indexes grouped by service (one resource each), in order.
    fn by_service(batch: &[Record<'_>], idx: &[usize]) -> Vec<Vec<usize>> {
        let mut out: Vec<Vec<usize>> = Vec::new();
        for &i in idx {
            match out.iter_mut().find(|g| batch[g[0]].service == batch[i].service) {
                Some(g) => g.push(i),
                None => out.push(vec![i]),
            }
        }
        out
    }

    /// Consecutive records of one service (the message order makes them
    /// consecutive), one resource each.
    fn runs<'r, 'a>(recs: &[&'r Record<'a>]) -> Vec<Vec<&'r Record<'a>>> {
        let mut out: Vec<Vec<&Record<'_>>> = Vec::new();
        for r in recs {
            match out.last_mut() {
                Some(g) if g[0].service == r.service => g.push(r),
                _ => out.push(vec![r]),
            }
        }
        out
    }

    fn resource(&mut self, r: &Record<'_>) -> Option<Resource> {
        let mut attributes = Vec::with_capacity(5);
        if let Some(v) = &r.service {
            attributes.push(s("service.name", v));
        }
        if let Some(v) = &r.instance {
            attributes.push(s("service.instance.id", v));
        }
        if let Some(v) = &r.build {
            attributes.push(s("service.version", v));
        }
        let lang = if r.layer == "frontend" { "webjs" } else { "go" };
        attributes.push(s("telemetry.sdk.language", lang));
        Some(Resource { attributes, ..Default::default() })
    }

    /// The layer is told by `service.name` when the catalog maps it (and
    /// then now and then also by `accord.layer`), else by `accord.layer`.
    fn needs_layer_attribute(&mut self, r: &Record<'_>) -> bool {
        let mapped = r.service.as_deref().is_some_and(|svc| {
            self.otel.layers.get(svc).map(String::as_str) == Some(&*r.layer)
                || (!self.otel.layers.contains_key(svc) && svc == r.layer)
        });
        !mapped || self.rng.gen_bool(0.1)
    }

    /// The attributes of one evaluation. `new_names`: the current semantic
    /// conventions (`feature_flag.result.variant`), else the deprecated
    /// ones (`feature_flag.variant`). Returns the body for a JavaScript
    /// style log record (a boolean value without a variant).
    fn evaluation(
        &mut self,
        r: &Record<'_>,
        new_names: bool,
        log: bool,
        attrs: &mut Vec<KeyValue>,
        accord: &mut Vec<KeyValue>,
    ) -> Option<AnyValue> {
        attrs.push(s("feature_flag.key", &r.feature));
        attrs.push(s("feature_flag.provider_name", "flagd"));
        let mut body = None;
        match &r.flag_state {
            Some(FlagState::Variant(v)) => {
                attrs.push(s(if new_names { "feature_flag.result.variant" } else { "feature_flag.variant" }, v))
            }
            Some(FlagState::Bool(b)) if log && self.rng.gen_bool(0.5) => {
                body = Some(AnyValue { value: Some(any_value::Value::BoolValue(*b)) })
            }
            Some(FlagState::Bool(b)) => attrs.push(kv("feature_flag.result.value", any_value::Value::BoolValue(*b))),
            None => {}
        }
        if let Some(v) = &r.flags_revision {
            attrs.push(s("feature_flag.version", v));
        }
        if let RequestIdSource::Attribute(name) = &self.otel.request_id {
            attrs.push(s(name, &r.request_id));
        }
        if self.needs_layer_attribute(r) {
            accord.push(s("accord.layer", &r.layer));
        }
        if let Some(v) = &r.selected_flow {
            accord.push(s(&self.otel.selected_flow, v));
        }
        if let Some(v) = &r.api_capability {
            accord.push(s(&self.otel.api_capability, v));
        }
        if let Some(v) = &r.job_payload_version {
            match v.parse::<i64>() {
                Ok(n) if self.rng.gen_bool(0.7) => {
                    accord.push(kv(&self.otel.job_payload_version, any_value::Value::IntValue(n)))
                }
                _ => accord.push(s(&self.otel.job_payload_version, v)),
            }
        }
        body
    }

    /// Event time in nanoseconds, with sub-millisecond digits accord drops
    /// (0: no time).
    fn nanos(&mut self, r: &Record<'_>) -> u64 {
        match r.ts_ms {
            Some(ms) if ms > 0 => ms as u64 * 1_000_000 + self.rng.gen_range(0..1_000_000),
            _ => 0,
        }
    }

    fn logs(&mut self, trace: [u8; 16], recs: &[&Record<'_>]) -> Vec<u8> {
        let mut resource_logs = Vec::new();
        for group in Self::runs(recs) {
            let mut log_records = Vec::with_capacity(group.len() + 1);
            for r in &group {
                if self.rng.gen_bool(0.05) {
                    // An access log on the same trace: not an evaluation.
                    log_records.push(LogRecord {
                        time_unix_nano: self.nanos(r),
                        event_name: "http.request".into(),
                        body: Some(AnyValue { value: Some(any_value::Value::StringValue("GET /checkout 200".into())) }),
                        attributes: vec![s("http.route", "/checkout")],
                        trace_id: trace.to_vec(),
                        ..Default::default()
                    });
                    self.ignored += 1;
                }
                let new_names = self.rng.gen_bool(0.6);
                let mut attributes = Vec::with_capacity(10);
                let mut accord = Vec::with_capacity(4);
                let body = self.evaluation(r, new_names, true, &mut attributes, &mut accord);
                attributes.append(&mut accord);
                let mut event_name = String::new();
                match (new_names, self.rng.gen_range(0..3)) {
                    (true, _) => event_name = "feature_flag.evaluation".into(),
                    (false, 0) => event_name = "feature_flag".into(),
                    (false, 1) => attributes.push(s("event.name", "feature_flag")),
                    // No event name at all: a log record with a flag key.
                    (false, _) => {}
                }
                let t = self.nanos(r);
                // Some SDKs leave the event time unset and stamp only the
                // observed time.
                let (time_unix_nano, observed_time_unix_nano) = match t {
                    0 => (0, 0),
                    t if self.rng.gen_bool(0.2) => (0, t),
                    t => (t, t + self.rng.gen_range(0..50_000_000)),
                };
                log_records.push(LogRecord {
                    time_unix_nano,
                    observed_time_unix_nano,
                    severity_number: 9,
                    severity_text: "INFO".into(),
                    body,
                    attributes,
                    trace_id: trace.to_vec(),
                    span_id: self.rng.gen::<[u8; 8]>().to_vec(),
                    event_name,
                    ..Default::default()
                });
            }
            resource_logs.push(ResourceLogs {
                resource: self.resource(group[0]),
                scope_logs: vec![ScopeLogs { scope: scope(), log_records, ..Default::default() }],
                ..Default::default()
            });
        }
        let req = ExportLogsServiceRequest { resource_logs };
        if self.json() {
            compact_json(&req)
        } else {
            req.encode_to_vec()
        }
    }

    fn traces(&mut self, trace: [u8; 16], recs: &[&Record<'_>]) -> Vec<u8> {
        let mut resource_spans = Vec::new();
        for group in Self::runs(recs) {
            let mut spans = Vec::with_capacity(group.len());
            for r in &group {
                let new_names = self.rng.gen_bool(0.6);
                let mut event_attrs = Vec::with_capacity(10);
                let mut accord = Vec::with_capacity(4);
                self.evaluation(r, new_names, false, &mut event_attrs, &mut accord);
                // The accord-specific fields sit on the event or, as a
                // span attribute set by the handler, on its span.
                let mut span_attrs = vec![s("http.request.method", "POST")];
                if self.rng.gen_bool(0.3) {
                    span_attrs.append(&mut accord);
                } else {
                    event_attrs.append(&mut accord);
                }
                let t = self.nanos(r);
                let mut events = vec![span::Event {
                    time_unix_nano: t,
                    name: if new_names { "feature_flag.evaluation" } else { "feature_flag" }.into(),
                    attributes: event_attrs,
                    ..Default::default()
                }];
                if self.rng.gen_bool(0.05) {
                    events.push(span::Event {
                        time_unix_nano: t + 1_000,
                        name: "exception".into(),
                        attributes: vec![s("exception.type", "TimeoutError")],
                        ..Default::default()
                    });
                    self.ignored += 1;
                }
                let name = match &*r.layer {
                    "frontend" => "documentLoad",
                    "api" => "POST /checkout",
                    "worker" => "process fulfilment job",
                    _ => "ingest order event",
                };
                spans.push(Span {
                    trace_id: trace.to_vec(),
                    span_id: self.rng.gen::<[u8; 8]>().to_vec(),
                    name: name.into(),
                    kind: 2,
                    start_time_unix_nano: t.saturating_sub(2_000_000),
                    end_time_unix_nano: t + 3_000_000,
                    attributes: span_attrs,
                    events,
                    ..Default::default()
                });
            }
            resource_spans.push(ResourceSpans {
                resource: self.resource(group[0]),
                scope_spans: vec![ScopeSpans { scope: scope(), spans, ..Default::default() }],
                ..Default::default()
            });
        }
        let req = ExportTraceServiceRequest { resource_spans };
        if self.json() {
            compact_json(&req)
        } else {
            req.encode_to_vec()
        }
    }
}

/// OTLP/JSON as the Collector writes it: its marshaler leaves out fields
/// at their default value (0, "", false, empty lists, absent messages),
/// which the `opentelemetry-proto` serde encoding writes out. An
/// `AnyValue` keeps its one field whatever the value (`boolValue: false`).
fn compact_json<T: serde::Serialize>(req: &T) -> Vec<u8> {
    use serde_json::Value;
    const ANY_VALUE: [&str; 7] =
        ["stringValue", "boolValue", "intValue", "doubleValue", "arrayValue", "kvlistValue", "bytesValue"];
    fn strip(v: &mut Value) {
        match v {
            Value::Object(m) if m.keys().any(|k| ANY_VALUE.contains(&k.as_str())) => {}
            Value::Object(m) => m.retain(|k, x| {
                strip(x);
                !match x {
                    Value::Null | Value::Bool(false) => true,
                    Value::Number(n) => n.as_f64() == Some(0.0),
                    Value::String(s) => s.is_empty() || (k.ends_with("UnixNano") && s == "0"),
                    Value::Array(a) => a.is_empty(),
                    Value::Object(o) => o.is_empty(),
                    Value::Bool(true) => false,
                }
            }),
            Value::Array(a) => a.iter_mut().for_each(strip),
            _ => {}
        }
    }
    let mut v = serde_json::to_value(req).unwrap_or_default();
    strip(&mut v);
    serde_json::to_vec(&v).unwrap_or_default()
}
