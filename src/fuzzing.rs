//! Fuzz harnesses, shared by `fuzz/` (cargo fuzz) and the corpus replay
//! test (`tests/fuzz_corpus.rs`), so every committed seed also runs in
//! `cargo test`.

use std::path::Path;
use std::sync::{Arc, OnceLock};

use crate::catalog::{Catalog, LayerId};
use crate::decode::otlp::{Mapping, Signal};
use crate::decode::{decode, InputFormat, Reject};
use crate::features::{FeatureId, Features};
use crate::join::{Closed, Observer, Position};
use crate::judge::RecordPath;
use crate::pipeline::Pipeline;

fn features() -> Arc<Features> {
    static F: OnceLock<Arc<Features>> = OnceLock::new();
    F.get_or_init(|| {
        // The demo catalog with tiny caps, so eviction and forgotten
        // closed keys happen within a short input, and unknown features
        // are tracked (then counted as `other`).
        let text = crate::demo::DEMO_CATALOG.replace(
            "max_open_joins = 100000",
            "max_open_joins = 8\nmax_closed_keys = 8\nunknown_features = \"track\"\nmax_tracked_features = 2",
        );
        let c = Catalog::parse(Path::new("fuzz.toml"), &text).expect("fuzz catalog is valid");
        Arc::new(Features::new(Arc::new(c)))
    })
    .clone()
}

/// Decoding arbitrary bytes never panics, and what decodes re-encodes to
/// the same request id.
pub fn fuzz_decode(data: &[u8]) {
    if let Ok(d) = decode(data) {
        assert!(!d.request_id.is_empty() && d.request_id.len() <= 128);
        assert!(crate::decode::valid_feature_key(&d.feature));
    }
}

#[derive(Default)]
struct Count {
    valid: u64,
    late: u64,
    joined: u64,
    in_closed: u64,
    open: i64,
    rejected: u64,
}

impl Observer for Count {
    fn rejected(&mut self, _: Reject) {
        self.rejected += 1;
    }
    fn record(&mut self, _: FeatureId, _: LayerId, _: RecordPath, late: bool) {
        self.valid += 1;
        if late {
            self.late += 1
        } else {
            self.joined += 1
        }
    }
    fn closed(&mut self, c: &Closed<'_>) {
        self.in_closed += c.records.len() as u64;
        assert!(c.divergences.iter().all(|d| d.upstream <= d.downstream));
    }
    fn open_joins(&mut self, d: i64) {
        self.open += d;
        assert!(self.open >= 0);
    }
}

/// Drives join + judge with a record sequence decoded from `data`, 5 bytes
/// a record: request, layer, event-time step, path-ish fields, feature.
/// Checks the accounting invariants: every valid record is counted once
/// as joined or late, every joined record ends in exactly one closed join,
/// open joins never exceed the cap.
pub fn fuzz_join(data: &[u8]) {
    const LAYERS: [&str; 5] = ["frontend", "api", "worker", "analytics", "mobile"];
    const FEATURES: [&str; 4] = ["checkout_v2", "search.ranking", "new_flag", "another"];
    let f = features();
    let mut p = Pipeline::new(f, 0);
    let mut c = Count::default();
    let mut ts: i64 = 1_700_000_000_000;
    let mut n = 0u64;
    for chunk in data.chunks_exact(5) {
        let (req, layer, step, bits, feat) = (chunk[0] % 16, chunk[1] % 5, chunk[2], chunk[3], chunk[4] % 4);
        // steps mostly forward, sometimes back (out of order), sometimes far
        ts += match step {
            0..=199 => step as i64 * 100,
            200..=239 => -((step as i64 - 199) * 500),
            _ => (step as i64 - 239) * 20_000,
        };
        let mut rec = format!(
            r#"{{"request_id":"r{req}","layer":"{}","feature":"{}","ts":{ts}"#,
            LAYERS[layer as usize], FEATURES[feat as usize]
        );
        if bits & 1 != 0 {
            rec += if bits & 2 != 0 { r#","selected_flow":"v2""# } else { r#","selected_flow":"v1""# };
        }
        if bits & 4 != 0 {
            rec += if bits & 8 != 0 { r#","job_payload_version":2"# } else { r#","job_payload_version":"1""# };
        }
        if bits & 16 != 0 {
            rec += if bits & 32 != 0 { r#","flag_state":true"# } else { r#","api_capability":"v1""# };
        }
        if bits & 64 != 0 {
            rec += if bits & 128 != 0 { r#","flags_revision":"a""# } else { r#","flags_revision":"b""# };
        }
        rec.push('}');
        let _ = p.ingest(rec.as_bytes(), Position::new(0, n), ts, &mut c);
        n += 1;
        assert!(p.engine().open_joins() <= 8);
    }
    p.engine_mut().flush(&mut c);
    assert_eq!(c.valid + c.rejected, n);
    assert_eq!(c.joined + c.late, c.valid);
    assert_eq!(c.in_closed, c.joined);
    assert_eq!(c.open, 0);
}

/// OpenTelemetry input: the first byte picks the format (OTLP/JSON,
/// protobuf logs, protobuf traces), the rest is one message. Decoding
/// never panics; every evaluation is judged or rejected exactly once; what
/// validates is a valid record; and for protobuf, a message that the
/// generated `opentelemetry-proto` types decode also decodes here, holding
/// every log record or span event as an evaluation or an ignored item.
pub fn fuzz_otlp(data: &[u8]) {
    use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
    use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
    use prost::Message;

    let Some((&sel, msg)) = data.split_first() else { return };
    let format = [InputFormat::OtlpJson, InputFormat::OtlpProtoLogs, InputFormat::OtlpProtoTraces][sel as usize % 3];
    let f = features();
    let map = Mapping::new(&f.catalog().otel);
    let signal = match format {
        InputFormat::OtlpProtoLogs => Some(Signal::Logs),
        InputFormat::OtlpProtoTraces => Some(Signal::Traces),
        _ => None,
    };
    if signal.is_none() {
        crate::decode::otlp::json::fast_path_agrees(&map, msg);
    }
    let decoded = map.decode(signal, msg);
    if let Ok(d) = &decoded {
        for r in d.records().flatten() {
            assert!(!r.request_id.is_empty() && r.request_id.len() <= 128);
            assert!(crate::decode::valid_feature_key(&r.feature));
        }
    }
    let items = match format {
        InputFormat::OtlpProtoLogs => ExportLogsServiceRequest::decode(msg).ok().map(|r| {
            r.resource_logs.iter().flat_map(|g| &g.scope_logs).map(|s| s.log_records.len() as u64).sum::<u64>()
        }),
        InputFormat::OtlpProtoTraces => ExportTraceServiceRequest::decode(msg).ok().map(|r| {
            r.resource_spans
                .iter()
                .flat_map(|g| &g.scope_spans)
                .flat_map(|s| &s.spans)
                .map(|s| s.events.len() as u64)
                .sum::<u64>()
        }),
        _ => None,
    };
    if let Some(items) = items {
        let d = decoded.as_ref().expect("what the generated types decode decodes here");
        assert_eq!(d.len() as u64 + d.ignored, items);
    }
    let mut p = Pipeline::new(f, 1 << 12);
    let mut c = Count::default();
    let out = p.ingest_message(format, msg, Position::new(0, 0), 1_700_000_000_000, &mut c);
    p.engine_mut().flush(&mut c);
    assert_eq!(u64::from(out.records), c.valid);
    assert_eq!(u64::from(out.rejected), c.rejected);
    assert_eq!(c.joined + c.late, c.valid);
    assert_eq!(c.in_closed, c.joined);
    assert_eq!(c.open, 0);
    match &decoded {
        Ok(d) => assert_eq!(out.records + out.rejected, d.len() as u32),
        Err(_) => assert_eq!((out.records, out.rejected), (0, 1)),
    }
}
