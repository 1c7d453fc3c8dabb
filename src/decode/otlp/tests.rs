//! Every event shape and name generation, the lookup orders, the value
//! types, and malformed messages; each request built with the official
//! `opentelemetry-proto` types and decoded both as protobuf and as
//! OTLP/JSON (their serde encoding), which must agree.

use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{any_value::Value, AnyValue, KeyValue};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{span::Event, ResourceSpans, ScopeSpans, Span};
use proptest::prelude::*;
use prost::Message;

use super::*;
use crate::catalog::{Catalog, OtelConfig};
use crate::decode::FlagState;

const TRACE: [u8; 16] = [0xab; 16];
const TRACE_HEX: &str = "abababababababababababababababab";
const T0: u64 = 1_795_168_800_123_456_789;

fn kv(k: &str, v: Value) -> KeyValue {
    KeyValue { key: k.into(), value: Some(AnyValue { value: Some(v) }), ..Default::default() }
}
fn s(k: &str, v: &str) -> KeyValue {
    kv(k, Value::StringValue(v.into()))
}
fn int(k: &str, v: i64) -> KeyValue {
    kv(k, Value::IntValue(v))
}
fn resource(attrs: Vec<KeyValue>) -> Option<Resource> {
    Some(Resource { attributes: attrs, ..Default::default() })
}

fn log(event_name: &str, attrs: Vec<KeyValue>) -> LogRecord {
    LogRecord {
        time_unix_nano: T0,
        event_name: event_name.into(),
        attributes: attrs,
        trace_id: TRACE.to_vec(),
        span_id: vec![1; 8],
        ..Default::default()
    }
}

fn logs(resource_attrs: Vec<KeyValue>, records: Vec<LogRecord>) -> ExportLogsServiceRequest {
    ExportLogsServiceRequest {
        resource_logs: vec![ResourceLogs {
            resource: resource(resource_attrs),
            scope_logs: vec![ScopeLogs { log_records: records, ..Default::default() }],
            ..Default::default()
        }],
    }
}

fn span(attrs: Vec<KeyValue>, events: Vec<Event>) -> Span {
    Span {
        trace_id: TRACE.to_vec(),
        span_id: vec![2; 8],
        name: "POST /checkout".into(),
        attributes: attrs,
        events,
        ..Default::default()
    }
}

fn event(name: &str, attrs: Vec<KeyValue>) -> Event {
    Event { time_unix_nano: T0, name: name.into(), attributes: attrs, ..Default::default() }
}

fn traces(resource_attrs: Vec<KeyValue>, spans: Vec<Span>) -> ExportTraceServiceRequest {
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: resource(resource_attrs),
            scope_spans: vec![ScopeSpans { spans, ..Default::default() }],
            ..Default::default()
        }],
    }
}

fn api() -> Vec<KeyValue> {
    vec![s("service.name", "checkout-api"), s("service.instance.id", "api-1"), s("service.version", "7")]
}

fn mapping(otel: &str) -> Mapping {
    let text = format!(
        "[monitor]\nlayers = [\"frontend\", \"api\", \"worker\", \"analytics\"]\n[[feature]]\nkey = \"checkout_v2\"\nowner = \"o\"\nclass = \"decision\"\nexpect = [\"api\"]\n{otel}"
    );
    Mapping::new(&Catalog::parse(std::path::Path::new("t.toml"), &text).unwrap().otel)
}

fn default_mapping() -> Mapping {
    mapping("[otel.layers]\n\"checkout-api\" = \"api\"\n\"web-spa\" = \"frontend\"\n")
}

/// What a message decodes to, owned, for comparisons.
#[derive(Debug, PartialEq)]
struct Out {
    records: Vec<Result<Owned, Reject>>,
    ignored: u64,
}

#[derive(Debug, Clone, PartialEq)]
struct Owned {
    request_id: String,
    layer: String,
    feature: String,
    ts_ms: Option<i64>,
    flag_state: Option<FlagState<'static>>,
    api_capability: Option<String>,
    selected_flow: Option<String>,
    job_payload_version: Option<String>,
    flags_revision: Option<String>,
    service: Option<String>,
    instance: Option<String>,
    build: Option<String>,
}

fn own(r: Record<'_>) -> Owned {
    let o = |c: Option<Cow<'_, str>>| c.map(|c| c.into_owned());
    Owned {
        request_id: r.request_id.into_owned(),
        layer: r.layer.into_owned(),
        feature: r.feature.into_owned(),
        ts_ms: r.ts_ms,
        flag_state: r.flag_state.map(|f| match f {
            FlagState::Bool(b) => FlagState::Bool(b),
            FlagState::Variant(v) => FlagState::Variant(Cow::Owned(v.into_owned())),
        }),
        api_capability: o(r.api_capability),
        selected_flow: o(r.selected_flow),
        job_payload_version: o(r.job_payload_version),
        flags_revision: o(r.flags_revision),
        service: o(r.service),
        instance: o(r.instance),
        build: o(r.build),
    }
}

fn run(m: &Mapping, signal: Option<Signal>, bytes: &[u8]) -> Result<Out, Reject> {
    let d = m.decode(signal, bytes)?;
    Ok(Out { records: d.records().map(|r| r.map(own)).collect(), ignored: d.ignored })
}

/// Decodes a logs request as protobuf and as OTLP/JSON; both must agree.
fn decode_logs(m: &Mapping, req: &ExportLogsServiceRequest) -> Out {
    let proto = run(m, Some(Signal::Logs), &req.encode_to_vec()).unwrap();
    let json = run(m, None, &serde_json::to_vec(req).unwrap()).unwrap();
    assert_eq!(proto, json, "protobuf and OTLP/JSON disagree");
    proto
}

fn decode_traces(m: &Mapping, req: &ExportTraceServiceRequest) -> Out {
    let proto = run(m, Some(Signal::Traces), &req.encode_to_vec()).unwrap();
    let json = run(m, None, &serde_json::to_vec(req).unwrap()).unwrap();
    assert_eq!(proto, json, "protobuf and OTLP/JSON disagree");
    proto
}

fn one(out: &Out) -> &Owned {
    assert_eq!(out.records.len(), 1, "{out:?}");
    out.records[0].as_ref().unwrap()
}

#[test]
fn a_log_record_maps_every_field() {
    let req = logs(
        api(),
        vec![log(
            "feature_flag.evaluation",
            vec![
                s("feature_flag.key", "checkout_v2"),
                s("feature_flag.result.variant", "on"),
                s("feature_flag.version", "r42"),
                s("accord.selected_flow", "v2"),
                s("accord.api_capability", "v2"),
                int("accord.job_payload_version", 2),
                s("feature_flag.provider_name", "flagd"),
            ],
        )],
    );
    let out = decode_logs(&default_mapping(), &req);
    assert_eq!(out.ignored, 0);
    assert_eq!(
        *one(&out),
        Owned {
            request_id: TRACE_HEX.into(),
            layer: "api".into(),
            feature: "checkout_v2".into(),
            // nanoseconds truncated to milliseconds
            ts_ms: Some(1_795_168_800_123),
            flag_state: Some(FlagState::Variant("on".into())),
            api_capability: Some("v2".into()),
            selected_flow: Some("v2".into()),
            job_payload_version: Some("2".into()),
            flags_revision: Some("r42".into()),
            service: Some("checkout-api".into()),
            instance: Some("api-1".into()),
            build: Some("7".into()),
        }
    );
}

#[test]
fn which_log_records_are_evaluations() {
    let key = || s("feature_flag.key", "checkout_v2");
    let req = logs(
        api(),
        vec![
            log("feature_flag.evaluation", vec![key()]),
            log("feature_flag", vec![key()]),
            // without eventName: the event.name attribute
            log("", vec![key(), s("event.name", "feature_flag.evaluation")]),
            log("", vec![key(), s("event.name", "feature_flag")]),
            // no event name at all, but a flag key
            log("", vec![key()]),
            // not evaluations: another event, even with a flag key
            log("http.request", vec![key()]),
            log("", vec![key(), s("event.name", "exception")]),
            log("", vec![key(), int("event.name", 3)]),
            // a plain log line
            log("", vec![s("http.route", "/checkout")]),
            // eventName wins over the attribute
            log("feature_flag", vec![key(), s("event.name", "other")]),
        ],
    );
    let out = decode_logs(&default_mapping(), &req);
    assert_eq!(out.records.len(), 6);
    assert!(out.records.iter().all(|r| r.is_ok()));
    assert_eq!(out.ignored, 4);
}

#[test]
fn which_span_events_are_evaluations_and_span_attributes_fill_in() {
    let req = traces(
        api(),
        vec![
            span(
                vec![s("accord.selected_flow", "v2"), s("accord.api_capability", "v2")],
                vec![
                    event("feature_flag.evaluation", vec![s("feature_flag.key", "checkout_v2")]),
                    event("exception", vec![s("feature_flag.key", "checkout_v2")]),
                    event(
                        "feature_flag",
                        vec![
                            s("feature_flag.key", "checkout_v2"),
                            s("feature_flag.variant", "off"),
                            s("accord.selected_flow", "v1"),
                        ],
                    ),
                ],
            ),
            // A span without events holds no item.
            span(vec![s("feature_flag.key", "checkout_v2")], vec![]),
        ],
    );
    let out = decode_traces(&default_mapping(), &req);
    assert_eq!(out.ignored, 1);
    assert_eq!(out.records.len(), 2);
    let (a, b) = (out.records[0].as_ref().unwrap(), out.records[1].as_ref().unwrap());
    assert_eq!(a.selected_flow.as_deref(), Some("v2"), "from the span");
    assert_eq!(a.api_capability.as_deref(), Some("v2"));
    assert_eq!(a.request_id, TRACE_HEX, "the span's trace id");
    assert_eq!(b.selected_flow.as_deref(), Some("v1"), "the event's own attribute wins");
    assert_eq!(b.flag_state, Some(FlagState::Variant("off".into())));
}

#[test]
fn flag_state_sources_in_order_and_value_in_body() {
    let m = default_mapping();
    let key = || s("feature_flag.key", "checkout_v2");
    let with = |attrs: Vec<KeyValue>, body: Option<Value>| {
        let mut r = log("feature_flag.evaluation", attrs);
        r.body = body.map(|v| AnyValue { value: Some(v) });
        let out = decode_logs(&m, &logs(api(), vec![r]));
        one(&out).flag_state.clone()
    };
    let all = vec![
        key(),
        s("feature_flag.result.variant", "a"),
        s("feature_flag.variant", "b"),
        kv("feature_flag.result.value", Value::BoolValue(false)),
    ];
    assert_eq!(with(all.clone(), Some(Value::BoolValue(true))), Some(FlagState::Variant("a".into())));
    assert_eq!(with(all[..1].iter().chain(&all[2..]).cloned().collect(), None), Some(FlagState::Variant("b".into())));
    assert_eq!(with(vec![key(), all[3].clone()], Some(Value::StringValue("x".into()))), Some(FlagState::Bool(false)));
    // The JavaScript hook's value in the body.
    assert_eq!(with(vec![key()], Some(Value::BoolValue(true))), Some(FlagState::Bool(true)));
    assert_eq!(with(vec![key()], Some(Value::StringValue("v2".into()))), Some(FlagState::Variant("v2".into())));
    assert_eq!(with(vec![key()], Some(Value::IntValue(3))), Some(FlagState::Variant("3".into())));
    assert_eq!(with(vec![key()], None), None);
}

#[test]
fn request_id_from_trace_or_attribute_in_lookup_order() {
    // trace id: the log record's own; zero, empty or malformed ids are absent
    let m = default_mapping();
    let key = || s("feature_flag.key", "checkout_v2");
    let mut zero = log("feature_flag", vec![key()]);
    zero.trace_id = vec![0; 16];
    let mut empty = log("feature_flag", vec![key()]);
    empty.trace_id = vec![];
    let mut short = log("feature_flag", vec![key()]);
    short.trace_id = vec![1; 8];
    let out = decode_logs(&m, &logs(api(), vec![zero, empty, short]));
    assert_eq!(out.records, vec![Err(Reject::MissingField); 3]);

    // attribute: record, then span, then resource
    let m = mapping("[otel]\nrequest_id = \"attribute:app.request_id\"\n[otel.layers]\n\"checkout-api\" = \"api\"\n");
    let mut res = api();
    res.push(s("app.request_id", "from-resource"));
    let req = traces(
        res,
        vec![
            span(
                vec![s("app.request_id", "from-span")],
                vec![
                    event("feature_flag", vec![key(), s("app.request_id", "from-event")]),
                    event("feature_flag", vec![key()]),
                ],
            ),
            span(vec![], vec![event("feature_flag", vec![key()])]),
            span(vec![], vec![event("feature_flag", vec![key(), int("app.request_id", 17)])]),
            span(vec![], vec![event("feature_flag", vec![key(), kv("app.request_id", Value::BoolValue(true))])]),
        ],
    );
    let out = decode_traces(&m, &req);
    let ids: Vec<_> = out.records.iter().map(|r| r.as_ref().map(|r| r.request_id.as_str())).collect();
    assert_eq!(ids, vec![Ok("from-event"), Ok("from-span"), Ok("from-resource"), Ok("17"), Err(&Reject::InvalidField)]);
    // The trace id is not a fallback.
    let out = decode_logs(&m, &logs(api(), vec![log("feature_flag", vec![key()])]));
    assert_eq!(out.records, vec![Err(Reject::MissingField)]);
}

#[test]
fn layer_from_attribute_then_service_map_then_service_name() {
    let m = mapping("[otel.layers]\n\"checkout-api\" = \"api\"\n\"worker\" = \"analytics\"\n");
    let key = || s("feature_flag.key", "checkout_v2");
    let layer_of = |res: Vec<KeyValue>, attrs: Vec<KeyValue>| {
        let out = decode_logs(&m, &logs(res, vec![log("feature_flag", attrs)]));
        out.records[0].as_ref().map(|r| r.layer.clone()).map_err(|e| *e)
    };
    let svc = |n: &str| vec![s("service.name", n)];
    assert_eq!(layer_of(svc("checkout-api"), vec![key(), s("accord.layer", "worker")]), Ok("worker".into()));
    assert_eq!(layer_of(svc("checkout-api"), vec![key()]), Ok("api".into()));
    // a mapped name wins over a service named like a layer
    assert_eq!(layer_of(svc("worker"), vec![key()]), Ok("analytics".into()));
    assert_eq!(layer_of(svc("frontend"), vec![key()]), Ok("frontend".into()));
    // unmapped: the service name, which the catalog then rejects
    assert_eq!(layer_of(svc("mobile-app"), vec![key()]), Ok("mobile-app".into()));
    assert_eq!(layer_of(vec![], vec![key()]), Err(Reject::MissingField));
    assert_eq!(layer_of(svc("checkout-api"), vec![key(), int("accord.layer", 1)]), Err(Reject::InvalidField));
    assert_eq!(layer_of(vec![int("service.name", 1)], vec![key()]), Err(Reject::InvalidField));
}

#[test]
fn attribute_types_map_like_decision_record_fields() {
    let m = mapping("[otel.attributes]\nselected_flow = \"app.flow\"\n[otel.layers]\n\"checkout-api\" = \"api\"\n");
    let key = || s("feature_flag.key", "checkout_v2");
    let get = |attrs: Vec<KeyValue>| {
        let out = decode_logs(&m, &logs(api(), vec![log("feature_flag", attrs)]));
        out.records.into_iter().next().unwrap()
    };
    let r = get(vec![
        key(),
        kv("app.flow", Value::DoubleValue(2.5)),
        kv("accord.job_payload_version", Value::DoubleValue(2.0)),
        int("feature_flag.version", 42),
        kv("feature_flag.result.variant", Value::BoolValue(true)),
        // the default name is not read once it is renamed
        s("accord.selected_flow", "ignored"),
    ])
    .unwrap();
    assert_eq!(r.selected_flow.as_deref(), Some("2.5"));
    assert_eq!(r.job_payload_version.as_deref(), Some("2"));
    assert_eq!(r.flags_revision.as_deref(), Some("42"));
    assert_eq!(r.flag_state, Some(FlagState::Bool(true)));
    // feature keys and layers are names: only strings
    assert_eq!(get(vec![int("feature_flag.key", 7)]).unwrap_err(), Reject::InvalidField);
    assert_eq!(get(vec![s("feature_flag.key", "bad key")]).unwrap_err(), Reject::InvalidField);
    assert_eq!(get(vec![]).unwrap_err(), Reject::MissingField);
    for bad in [
        kv("app.flow", Value::BoolValue(true)),
        kv("accord.job_payload_version", Value::BoolValue(true)),
        kv("accord.api_capability", Value::BytesValue(vec![1])),
        kv("feature_flag.result.value", Value::KvlistValue(Default::default())),
    ] {
        assert_eq!(get(vec![key(), bad.clone()]).unwrap_err(), Reject::InvalidField, "{bad:?}");
    }
    // missing wins over invalid
    assert_eq!(get(vec![kv("app.flow", Value::BoolValue(true))]).unwrap_err(), Reject::MissingField);
}

#[test]
fn times_zero_is_absent_and_observed_time_fills_in() {
    let m = default_mapping();
    let key = || s("feature_flag.key", "checkout_v2");
    let mut a = log("feature_flag", vec![key()]);
    a.time_unix_nano = 0;
    a.observed_time_unix_nano = 1_000_000_999_999;
    let mut b = log("feature_flag", vec![key()]);
    b.time_unix_nano = 0;
    let out = decode_logs(&m, &logs(api(), vec![a, b]));
    assert_eq!(out.records[0].as_ref().unwrap().ts_ms, Some(1_000_000));
    assert_eq!(out.records[1].as_ref().unwrap().ts_ms, None);
}

#[test]
fn json_in_any_key_order_with_snake_case_numbers_and_nulls() {
    let m = default_mapping();
    // The resource after its logs, a value before its key, snake_case
    // names, a time as a number, nulls for defaults.
    let msg = br#"{"resource_logs":[{"scope_logs":[{"log_records":[{"attributes":[{"value":{"stringValue":"checkout_v2"},"key":"feature_flag.key"},{"key":"x","value":{"kvlistValue":{"values":[{"key":"a","value":{}}]}}},{"key":"accord.job_payload_version","value":{"intValue":2}}],"time_unix_nano":1795168800123456789,"trace_id":"ABABABABABABABABABABABABABABABAB","event_name":"feature_flag","body":null,"severityText":null}],"scope":null}],"resource":{"attributes":[{"key":"service.name","value":{"string_value":"checkout-api"}}]}}],"extra":{"ignored":[1,2]}}"#;
    let out = run(&m, None, msg).unwrap();
    let r = one(&out);
    assert_eq!(r.layer, "api");
    assert_eq!(r.request_id, TRACE_HEX);
    assert_eq!(r.ts_ms, Some(1_795_168_800_123));
    assert_eq!(r.job_payload_version.as_deref(), Some("2"));
    // escapes in strings
    let msg = br#"{"resourceLogs":[{"resource":{"attributes":[{"key":"service.name","value":{"stringValue":"checkout\u002dapi"}}]},"scopeLogs":[{"logRecords":[{"eventName":"feature_flag","traceId":"abababababababababababababababab","attributes":[{"key":"feature_flag.key","value":{"stringValue":"checkout_v2"}},{"key":"feature_flag.result.variant","value":{"stringValue":"o\"n"}}]}]}]}]}"#;
    let out = run(&m, None, msg).unwrap();
    assert_eq!(one(&out).layer, "api");
    assert_eq!(one(&out).flag_state, Some(FlagState::Variant("o\"n".into())));
    assert_eq!(one(&out).request_id, TRACE_HEX);
}

#[test]
fn malformed_messages_are_one_reject() {
    let m = default_mapping();
    for msg in [
        &b"{\"resourceLogs\": ["[..],
        b"[1, 2]",
        b"{\"somethingElse\": {}}",
        b"{}",
        b"",
        b"\"resourceLogs\"",
        b"{\"resourceLogs\": [], \"resourceSpans\": []}",
        b"{\"resourceLogs\": 5}",
        b"{\"resourceLogs\": [{\"scopeLogs\": [{\"logRecords\": [{\"timeUnixNano\": true}]}]}]}",
        b"{\"resourceLogs\": [{\"scopeLogs\": [{\"logRecords\": [{\"timeUnixNano\": \"-1\"}]}]}]}",
        b"{\"resourceLogs\": [{\"scopeLogs\": [{\"logRecords\": [{\"attributes\": {}}]}]}]}",
        b"{\"resourceLogs\": [{\"scopeLogs\": [{\"logRecords\": [{\"attributes\": [{\"key\": \"feature_flag.key\", \"value\": {\"intValue\": \"x\"}}]}]}]}]}",
        b"{\"resourceLogs\": [{\"scopeLogs\": [{\"logRecords\": [{\"traceId\": 7}]}]}]}",
        b"{\"resourceLogs\": []} trailing",
    ] {
        assert_eq!(
            run(&m, None, msg).unwrap_err(),
            Reject::MalformedOtlp,
            "{}",
            String::from_utf8_lossy(msg)
        );
    }
    assert_eq!(run(&m, None, b"{\"resourceLogs\": []}").unwrap(), Out { records: vec![], ignored: 0 });
    assert_eq!(run(&m, None, b"{\"resourceSpans\": null}").unwrap(), Out { records: vec![], ignored: 0 });

    // protobuf
    let good = logs(api(), vec![log("feature_flag", vec![s("feature_flag.key", "checkout_v2")])]).encode_to_vec();
    assert_eq!(run(&m, Some(Signal::Logs), &good).unwrap().records.len(), 1);
    for cut in 1..good.len() {
        assert_eq!(run(&m, Some(Signal::Logs), &good[..cut]).unwrap_err(), Reject::MalformedOtlp, "cut at {cut}");
    }
    for bad in [
        &[0x0f_u8][..],      // wire type 7
        &[0x00, 0x01],       // field 0
        &[0x0a, 0x05, 0x01], // length past the end
        &[0x09, 1, 2, 3],    // resource_logs as fixed64
        &[0x0c],             // an end group without a start
        &[0x0b, 0x0a, 0x00], // a group never ended
    ] {
        assert_eq!(run(&m, Some(Signal::Logs), bad).unwrap_err(), Reject::MalformedOtlp, "{bad:?}");
    }
    // An attribute value accord reads must be valid UTF-8.
    let mut bad_utf8 = logs(api(), vec![log("feature_flag", vec![s("feature_flag.key", "checkout_v2")])]);
    bad_utf8.resource_logs[0].scope_logs[0].log_records[0].attributes[0].value =
        Some(AnyValue { value: Some(Value::StringValue("checkout_v2".into())) });
    let mut bytes = bad_utf8.encode_to_vec();
    let at = bytes.windows(11).position(|w| w == b"checkout_v2").unwrap();
    bytes[at] = 0xff;
    assert_eq!(run(&m, Some(Signal::Logs), &bytes).unwrap_err(), Reject::MalformedOtlp);
    // An empty message is an empty export request; a group is skipped.
    assert_eq!(run(&m, Some(Signal::Traces), b"").unwrap(), Out { records: vec![], ignored: 0 });
    let mut grouped = vec![0x1b, 0x08, 0x01, 0x1c];
    grouped.extend_from_slice(&good);
    assert_eq!(run(&m, Some(Signal::Logs), &grouped).unwrap().records.len(), 1);
}

#[test]
fn messages_over_4_mib_are_too_large() {
    let m = default_mapping();
    let big = vec![b' '; MAX_MESSAGE_BYTES + 1];
    assert_eq!(run(&m, None, &big).unwrap_err(), Reject::TooLarge);
    assert_eq!(run(&m, Some(Signal::Logs), &big).unwrap_err(), Reject::TooLarge);
    let mut ok = br#"{"resourceLogs":[]}"#.to_vec();
    ok.resize(MAX_MESSAGE_BYTES, b' ');
    assert!(run(&m, None, &ok).is_ok());
}

#[test]
fn strings_are_borrowed_from_the_message() {
    let m = default_mapping();
    let req = logs(
        api(),
        vec![log("feature_flag", vec![s("feature_flag.key", "checkout_v2"), s("accord.selected_flow", "v2")])],
    );
    for (signal, bytes) in [(Some(Signal::Logs), req.encode_to_vec()), (None, serde_json::to_vec(&req).unwrap())] {
        let d = m.decode(signal, &bytes).unwrap();
        let r = d.records().next().unwrap().unwrap();
        assert!(matches!(r.feature, Cow::Borrowed(_)));
        assert!(matches!(r.selected_flow, Some(Cow::Borrowed(_))));
        assert!(matches!(r.layer, Cow::Borrowed("api")));
        assert!(matches!(r.request_id, Cow::Borrowed(_)));
    }
}

#[test]
fn rendered_records_decode_back_to_themselves() {
    let m = default_mapping();
    let req = logs(
        api(),
        vec![log(
            "feature_flag",
            vec![
                s("feature_flag.key", "checkout_v2"),
                kv("feature_flag.result.value", Value::BoolValue(true)),
                s("accord.selected_flow", "v\"2"),
                int("accord.job_payload_version", 2),
            ],
        )],
    );
    let bytes = req.encode_to_vec();
    let d = m.decode(Some(Signal::Logs), &bytes).unwrap();
    let r = d.records().next().unwrap().unwrap();
    let mut out = Vec::new();
    render_accord(&r, &mut out);
    assert_eq!(crate::decode::decode(&out).unwrap(), r, "{}", String::from_utf8_lossy(&out));
}

#[test]
fn the_default_mapping_reads_accord_attributes() {
    let m = Mapping::new(&OtelConfig::default());
    let req = logs(
        vec![s("service.name", "api")],
        vec![log("feature_flag", vec![s("feature_flag.key", "f"), s("accord.selected_flow", "v2")])],
    );
    let out = decode_logs(&m, &req);
    assert_eq!(one(&out).layer, "api");
    assert_eq!(one(&out).selected_flow.as_deref(), Some("v2"));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn never_panics_on_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let m = default_mapping();
        for signal in [None, Some(Signal::Logs), Some(Signal::Traces)] {
            if let Ok(d) = m.decode(signal, &bytes) {
                for r in d.records() {
                    let _ = r;
                }
            }
        }
    }

    /// A valid request with one byte changed never panics, and what still
    /// decodes still validates.
    #[test]
    fn never_panics_on_mutated_requests(at in any::<prop::sample::Index>(), byte in any::<u8>(), json in any::<bool>()) {
        let m = default_mapping();
        let req = traces(api(), vec![span(vec![s("accord.selected_flow", "v2")], vec![event("feature_flag", vec![s("feature_flag.key", "checkout_v2"), int("accord.job_payload_version", 2)])])]);
        let (signal, mut bytes) = if json { (None, serde_json::to_vec(&req).unwrap()) } else { (Some(Signal::Traces), req.encode_to_vec()) };
        let i = at.index(bytes.len());
        bytes[i] = byte;
        if let Ok(d) = m.decode(signal, &bytes) {
            for r in d.records().flatten() {
                prop_assert!(crate::decode::valid_feature_key(&r.feature));
            }
        }
    }
}

/// OTLP/JSON as encoders write it, and with what only serde_json reads.
fn json_variants() -> Vec<Vec<u8>> {
    let req = traces(
        api(),
        vec![span(
            vec![s("accord.selected_flow", "v2")],
            vec![event(
                "feature_flag",
                vec![s("feature_flag.key", "checkout_v2"), int("accord.job_payload_version", 2)],
            )],
        )],
    );
    let log_req = logs(
        vec![s("service.name", "web-spa")],
        vec![log(
            "feature_flag.evaluation",
            vec![s("feature_flag.key", "checkout_v2"), kv("feature_flag.result.value", Value::BoolValue(true))],
        )],
    );
    let mut out = vec![serde_json::to_vec(&req).unwrap(), serde_json::to_vec(&log_req).unwrap()];
    // The simulator's Collector-shaped batches: logs for the frontend,
    // spans for the other layers, a trace id per request.
    let lines: Vec<String> = ["frontend", "api", "worker", "analytics", "api"]
        .iter()
        .enumerate()
        .map(|(i, layer)| {
            format!(r#"{{"request_id":"req-{}","layer":"{layer}","feature":"checkout_v2","ts":"2026-03-01T10:00:0{i}Z","flag_state":{},"selected_flow":"v2","job_payload_version":3,"service":"svc-{layer}","build":"b7"}}"#, i % 2, i % 2 == 0)
        })
        .collect();
    let records: Vec<_> = lines.iter().map(|l| crate::decode::decode(l.as_bytes()).unwrap()).collect();
    let mut enc = crate::simulate::otlp::Encoder::new(crate::decode::InputFormat::OtlpJson, &OtelConfig::default(), 7);
    out.extend(enc.encode_batch(&records).into_iter().map(|e| e.payload));
    out
}

#[test]
fn hex_trace_ids() {
    use json::hex_trace_id;
    assert_eq!(hex_trace_id(TRACE_HEX.as_bytes()), Some((TRACE, true)));
    assert_eq!(hex_trace_id(TRACE_HEX.to_uppercase().as_bytes()), Some((TRACE, false)));
    let mut id = [0u8; 16];
    id[15] = 0x0f;
    assert_eq!(hex_trace_id(b"0000000000000000000000000000000F"), Some((id, false)));
    assert_eq!(hex_trace_id(b"0000000000000000000000000000000f"), Some((id, true)));
    for bad in [
        &b"00000000000000000000000000000000"[..],
        b"abababababababababababababababa",
        b"ababababababababababababababababab",
        b"abababababababababababababababag",
        b"ab:babababababababababababababab",
    ] {
        assert_eq!(hex_trace_id(bad), None, "{}", String::from_utf8_lossy(bad));
        assert!(!json::lower_hex_id(bad), "{}", String::from_utf8_lossy(bad));
    }
    assert!(json::lower_hex_id(TRACE_HEX.as_bytes()));
    assert!(json::lower_hex_id(b"0000000000000000000000000000000f"));
    assert!(!json::lower_hex_id(TRACE_HEX.to_uppercase().as_bytes()));
}

proptest! {
    /// The lowercase check answers as the full decode: ids from the hex
    /// digits of either case, sometimes with one byte of any value put in
    /// place of one.
    #[test]
    fn the_lowercase_check_agrees_with_the_decode(
        text in "[0-9a-fA-F]{31,33}|0{32}|[0-9a-f]{32}",
        put in proptest::option::of((any::<prop::sample::Index>(), any::<u8>())),
    ) {
        let mut s = text.into_bytes();
        if let Some((at, x)) = put {
            if !s.is_empty() {
                let at = at.index(s.len());
                s[at] = x;
            }
        }
        prop_assert_eq!(json::lower_hex_id(&s), matches!(json::hex_trace_id(&s), Some((_, true))));
    }
}

#[test]
fn the_json_fast_path_reads_what_encoders_write_and_agrees_with_serde() {
    let m = default_mapping();
    for msg in json_variants() {
        assert!(json::fast_path_agrees(&m, &msg), "fast path gave up on {}", String::from_utf8_lossy(&msg));
    }
    // What it leaves to serde_json, which decides.
    for msg in [
        &br#"{"resourceLogs":[{"resource":{"attributes":[{"key":"service.name","value":{"stringValue":"checkout\u002dapi"}}]}}]}"#[..],
        br#"{"resourceLogs":[{"scopeLogs":[{"logRecords":[{"timeUnixNano":1.5e3}]}]}]}"#,
        br#"{"resourceLogs":[{"scopeLogs":[{"logRecords":[{"attributes":[{"key":"feature_flag.result.value","value":{"doubleValue":0.1}}]}]}]}]}"#,
        br#"{"resourceLogs":[{"scopeLogs":[{"logRecords":[{"timeUnixNano":-1}]}]}]}"#,
        br#"{"resourceLogs":[,]}"#,
        br#"{"resourceLogs":[]} x"#,
    ] {
        assert!(!json::fast_path_agrees(&m, msg), "{}", String::from_utf8_lossy(msg));
    }
    // Non-ASCII text is read by the fast path: a message that is plain
    // (`decode::quotes`) is checked as UTF-8 as a whole, any other string
    // by string as it is scanned (here a line break between tokens, which
    // a plain message has none of). A string that is not UTF-8, or a stray
    // byte outside the strings, is left to serde_json, and the message is
    // one reject.
    let text = r#"{"resourceLogs":[{"resource":{"attributes":[{"key":"service.name","value":{"stringValue":"café-api ✓"}}]},"scopeLogs":[{"logRecords":[{"eventName":"feature_flag","traceId":"abababababababababababababababab","attributes":[{"key":"feature_flag.key","value":{"stringValue":"checkout_v2"}}]}]}]}]}"#;
    let spread = text.replacen("{", "{\n", 1);
    for text in [text, spread.as_str()] {
        assert!(json::fast_path_agrees(&m, text.as_bytes()), "{text}");
        assert_eq!(one(&run(&m, None, text.as_bytes()).unwrap()).service.as_deref(), Some("café-api ✓"));
    }
    let at = text.find('é').unwrap();
    for bad in [
        [&text.as_bytes()[..at + 1], b"x", &text.as_bytes()[at + 2..]].concat(),
        [&text.as_bytes()[..at], b"\xff", &text.as_bytes()[at + 2..]].concat(),
        [b"\xef\xbb\xbf", text.as_bytes()].concat(),
        [text.as_bytes(), "\u{a0}".as_bytes()].concat(),
    ] {
        assert!(!json::fast_path_agrees(&m, &bad), "{}", String::from_utf8_lossy(&bad));
        assert_eq!(run(&m, None, &bad).unwrap_err(), Reject::MalformedOtlp, "{}", String::from_utf8_lossy(&bad));
    }
    // Everything the hand-written messages above hold, in any shape
    // (attributes that start as encoders write them and then differ are
    // read member by member).
    let msg = br#"{"resource_logs":[null,{"scope_logs":[{"log_records":[{"attributes":[{"value":{"stringValue":"checkout_v2"},"key":"feature_flag.key"},{"key":"x","value":{"kvlistValue":{"values":[{"key":"a","value":{}}]}}},{"key":"accord.job_payload_version","value":{"intValue":"-2"}},{"key":"accord.selected_flow","value":{"stringValue":"v2"},"extra":1},{"key":"service.version","value":{"stringValue":"b7"} }],"time_unix_nano":1795168800123456789,"trace_id":"ABABABABABABABABABABABABABABABAB","event_name":"feature_flag","body":null,"severityText":null}],"scope":null}],"resource":{"attributes":[{"key":"service.name","value":{"string_value":"checkout-api"}}]}}],"extra":{"ignored":[1,-2.5e-3,true,false,null,"s"]}}"#;
    assert!(json::fast_path_agrees(&m, msg));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1024))]

    /// One byte changed, or one token inserted, anywhere in what encoders
    /// write: wherever the fast path still answers, serde_json agrees.
    #[test]
    fn the_json_fast_path_agrees_with_serde_on_mutations(
        which in any::<prop::sample::Index>(),
        at in any::<prop::sample::Index>(),
        byte in any::<u8>(),
        insert in prop_oneof![Just(""), Just("null"), Just(","), Just(" "), Just("-"), Just("0"), Just(".5"), Just("e3"), Just("\\"), Just("\"\""), Just("{}"), Just("[]"), Just("\"intValue\":1,"), Just("\"key\":null,")],
    ) {
        let m = default_mapping();
        let variants = json_variants();
        let mut msg = variants[which.index(variants.len())].clone();
        let i = at.index(msg.len());
        if insert.is_empty() {
            msg[i] = byte;
        } else {
            msg.splice(i..i, insert.bytes());
        }
        json::fast_path_agrees(&m, &msg);
    }
}

#[test]
fn scratch_buffers_are_reused_across_messages() {
    let v: Vec<AnyVal<'_>> = Vec::with_capacity(100);
    let at = v.as_ptr() as usize;
    let w = relifetime(v);
    assert!(w.capacity() >= 100);
    assert_eq!(w.as_ptr() as usize, at, "collected in place");

    let m = default_mapping();
    let mut scratch = Scratch::default();
    let req = logs(api(), vec![log("feature_flag", vec![s("feature_flag.key", "checkout_v2")]); 20]).encode_to_vec();
    for _ in 0..3 {
        let d = m.decode_in(Some(Signal::Logs), &req, &mut scratch).unwrap();
        assert_eq!(d.records().filter(|r| r.is_ok()).count(), 20);
        d.recycle(&mut scratch);
    }
    let bufs = scratch.0.as_ref().expect("the buffers came back");
    assert!(bufs.items.capacity() >= 20 && bufs.vals.capacity() >= 20 && bufs.hex.capacity() >= 640);
}

proptest! {
    /// The name table answers as a search of every name would: for the
    /// names themselves, for names with a byte changed, cut or extended,
    /// and for anything else.
    #[test]
    fn the_attribute_name_table_finds_exactly_the_names(
        catalog in 0..2usize,
        which in any::<prop::sample::Index>(),
        at in any::<prop::sample::Index>(),
        byte in any::<u8>(),
        edit in 0..4u8,
        other in "[a-z_.]{0,48}",
    ) {
        // Names of every length class: under 8 bytes, 8 and 9 (first and
        // last eight bytes overlap), up to 16, 17 to 32 (the middle words
        // overlap up to 24 and touch at 32), and longer (compared in full).
        let m = mapping(match catalog {
            0 => "[otel]\nrequest_id = \"attribute:app.request.id.as.set.by.the.edge.proxy\"\n[otel.attributes]\nselected_flow = \"flw\"\napi_capability = \"app.caps\"\njob_payload_version = \"app.pay.v\"\n",
            _ => "[otel]\nrequest_id = \"attribute:app.request.id.from.edge\"\n[otel.attributes]\nselected_flow = \"app.flow.selected\"\napi_capability = \"app.api.capabilities.shipped.now\"\njob_payload_version = \"app.job.payload.schema.version.no\"\n",
        });
        let search = |key: &[u8]| m.names.iter().find(|(n, _)| n.as_bytes() == key).map_or(0, |(_, mask)| *mask);
        let mut key = m.names[which.index(m.names.len())].0.as_bytes().to_vec();
        prop_assert_ne!(m.mask(&key), 0);
        let i = at.index(key.len());
        match edit {
            0 => key[i] = byte,
            1 => key.truncate(i),
            2 => key.push(byte),
            _ => key = other.into_bytes(),
        }
        prop_assert_eq!(m.mask(&key), search(&key));
    }
}
