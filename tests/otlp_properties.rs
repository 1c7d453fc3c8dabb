//! The same decisions written as accord records and as OpenTelemetry
//! flag-evaluation events (OTLP/JSON, protobuf logs, protobuf traces) give
//! identical counters: every contract series of `/metrics`, and the
//! ignored-items counter equals the non-evaluation items the encoder
//! wrote.
//!
//! Decisions are random (requests, layers including an unknown one,
//! features including an unknown one, every path field, revisions, times
//! that jump and go back), batched at random; the simulator's encoder
//! turns each batch into export requests (one per trace id, random name
//! generations, attributes on events or spans, values in bodies). The
//! accord stream takes the records in the order the export requests hold
//! them, so both streams judge the same sequence.

use std::path::Path;
use std::sync::Arc;

use accord::catalog::Catalog;
use accord::decode::{decode, InputFormat};
use accord::export::Metrics;
use accord::join::Position;
use accord::pipeline::Pipeline;
use accord::simulate::otlp::Encoder;
use accord::Features;
use proptest::prelude::*;

const CATALOG: &str = r#"
[monitor]
layers = ["frontend", "api", "worker", "analytics"]
window = "10s"
allowed_lateness = "2s"
max_open_joins = 6

[[feature]]
key = "checkout_v2"
owner = "payments"
class = "state-machine"
expect = ["frontend", "api", "worker", "analytics"]
new_flow = "v2"
new_capability = "v2"
new_payload_version = "2"

[[feature]]
key = "search.ranking"
owner = "search"
class = "decision"
expect = ["api", "analytics"]
optional = ["frontend"]
window = "4s"
new_flow = "ltr"

[otel]
[otel.layers]
"web-spa" = "frontend"
"checkout-api" = "api"
"fulfilment-worker" = "worker"
"#;

fn features() -> Arc<Features> {
    Arc::new(Features::new(Arc::new(Catalog::parse(Path::new("p.toml"), CATALOG).unwrap())))
}

#[derive(Debug, Clone)]
struct Decision {
    request: u8,
    layer: u8,
    feature: u8,
    flow: Option<u8>,
    payload: Option<u8>,
    flag: Option<u8>,
    capability: Option<u8>,
    revision: Option<u8>,
    step_ms: i64,
    has_ts: bool,
}

fn decision() -> impl Strategy<Value = Decision> {
    (
        (0u8..10, 0u8..5, 0u8..3),
        (proptest::option::of(0u8..3), proptest::option::of(0u8..3), proptest::option::of(0u8..4)),
        (proptest::option::of(0u8..2), proptest::option::of(0u8..2)),
        (prop_oneof![8 => 0i64..800, 1 => -3_000i64..0, 1 => 5_000i64..20_000], prop::bool::weighted(0.95)),
    )
        .prop_map(
            |((request, layer, feature), (flow, payload, flag), (capability, revision), (step_ms, has_ts))| Decision {
                request,
                layer,
                feature,
                flow,
                payload,
                flag,
                capability,
                revision,
                step_ms,
                has_ts,
            },
        )
}

const LAYERS: [(&str, &str); 5] = [
    ("frontend", "web-spa"),
    ("api", "checkout-api"),
    ("worker", "fulfilment-worker"),
    ("analytics", "events-pipeline"),
    ("mobile", "mobile-app"),
];
const FEATURES: [&str; 3] = ["checkout_v2", "search.ranking", "unknown_flag"];

/// The decisions as accord JSON records.
fn records(ds: &[Decision]) -> Vec<String> {
    let mut ts = 1_795_168_800_000i64;
    ds.iter()
        .map(|d| {
            ts += d.step_ms;
            let (layer, service) = LAYERS[d.layer as usize];
            let mut r = format!(
                r#"{{"request_id":"req-{}","layer":"{layer}","feature":"{}","service":"{service}","instance":"{service}-1","build":"b7""#,
                d.request, FEATURES[d.feature as usize]
            );
            if d.has_ts {
                r += &format!(r#","ts":{ts}"#);
            }
            if let Some(f) = d.flow {
                r += &format!(r#","selected_flow":"{}""#, ["v1", "v2", "ltr"][f as usize]);
            }
            if let Some(p) = d.payload {
                r += [r#","job_payload_version":1"#, r#","job_payload_version":2"#, r#","job_payload_version":"v3""#]
                    [p as usize];
            }
            if let Some(f) = d.flag {
                r += [r#","flag_state":true"#, r#","flag_state":false"#, r#","flag_state":"on""#, r#","flag_state":"v2""#]
                    [f as usize];
            }
            if let Some(c) = d.capability {
                r += &format!(r#","api_capability":"{}""#, ["v1", "v2"][c as usize]);
            }
            if let Some(v) = d.revision {
                r += &format!(r#","flags_revision":"r{}""#, 41 + v);
            }
            r.push('}');
            r
        })
        .collect()
}

/// Judges messages of one format; returns `/metrics` without the
/// ignored-items line, and that counter.
fn judge(format: InputFormat, messages: &[Vec<u8>]) -> (String, f64) {
    let features = features();
    let metrics = Metrics::new(features.clone()).unwrap();
    let mut obs = metrics.observer();
    // Samples on, so OpenTelemetry evaluations are rendered for them too.
    let mut p = Pipeline::new(features, 1 << 16);
    let reference = 1_795_168_800_000;
    for (i, m) in messages.iter().enumerate() {
        p.ingest_message(format, m, Position::new(0, i as u64), reference, &mut obs);
    }
    p.engine_mut().flush(&mut obs);
    let text = metrics.render();
    let mut ignored = f64::NAN;
    let mut rest = String::new();
    for line in text.lines() {
        if let Some(v) = line.strip_prefix("accord_otlp_items_ignored_total ") {
            ignored = v.parse().unwrap();
        } else if !line.starts_with("accord_build_info") {
            rest.push_str(line);
            rest.push('\n');
        }
    }
    (rest, ignored)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn accord_and_opentelemetry_inputs_give_identical_counters(
        ds in proptest::collection::vec(decision(), 1..120),
        cuts in proptest::collection::vec(1usize..8, 1..40),
        seed in any::<u64>(),
    ) {
        let recs = records(&ds);
        let decoded: Vec<_> = recs.iter().map(|r| decode(r.as_bytes()).unwrap()).collect();
        for format in [InputFormat::OtlpJson, InputFormat::OtlpProtoLogs, InputFormat::OtlpProtoTraces] {
            let mut enc = Encoder::new(format, &features().catalog().otel, seed);
            let (mut otlp, mut accord) = (Vec::new(), Vec::new());
            let mut at = 0;
            for &n in cuts.iter().cycle() {
                if at >= decoded.len() {
                    break;
                }
                let batch = &decoded[at..(at + n).min(decoded.len())];
                for e in enc.encode_batch(batch) {
                    accord.extend(e.order.iter().map(|&i| recs[at + i].as_bytes().to_vec()));
                    otlp.push(e.payload);
                }
                at += n;
            }
            prop_assert_eq!(accord.len(), recs.len());
            let (want, none) = judge(InputFormat::Accord, &accord);
            let (got, ignored) = judge(format, &otlp);
            prop_assert_eq!(none, 0.0);
            prop_assert_eq!(ignored, enc.ignored as f64, "{}", format);
            prop_assert!(want == got, "{format}: counters differ\n--- accord\n{want}\n--- {format}\n{got}");
        }
    }
}
