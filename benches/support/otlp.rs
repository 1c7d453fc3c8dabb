//! The same decisions as accord records and as OpenTelemetry export
//! requests (OTLP protobuf logs and traces, OTLP/JSON), for the ratios of
//! OpenTelemetry input to native input per evaluation (the criterion
//! group `otlp` and the throughput example's phase (o)).

use std::sync::Arc;

use accord::decode::{decode, InputFormat};
use accord::features::FeatureId;
use accord::join::{Closed, Observer, Position};
use accord::judge::RecordPath;
use accord::pipeline::Pipeline;
use accord::Features;

/// The shared catalog (`accord.toml`, whose `[otel]` section names the
/// simulator's services).
pub fn features() -> Arc<Features> {
    Arc::new(Features::new(super::catalog(1_000_000)))
}

/// Counts what the join stage decides, so decode + join + judge is
/// measured without any exporter.
#[derive(Default)]
pub struct Count {
    pub records: u64,
    pub closed: u64,
}

impl Observer for Count {
    fn record(&mut self, _: FeatureId, _: accord::catalog::LayerId, _: RecordPath, _: bool) {
        self.records += 1;
    }
    fn closed(&mut self, c: &Closed<'_>) {
        self.closed += 1 + c.divergences.len() as u64;
    }
}

/// The same decisions as messages of each format: accord records in the
/// order the export requests hold them, and the export requests the
/// simulator's encoder makes of every Collector batch (one per trace id).
pub struct Streams {
    pub evaluations: u64,
    pub accord: Vec<Vec<u8>>,
    pub otlp: Vec<(InputFormat, Vec<Vec<u8>>)>,
    /// Protobuf logs, each message a whole Collector batch (the exporter
    /// without partitioning by trace id): the encoded requests of a batch
    /// concatenated, which protobuf reads as one request.
    pub logs_batches: Vec<Vec<u8>>,
}

pub fn streams(n: usize, features: &Arc<Features>) -> Streams {
    use accord::simulate::otlp::{Encoder, BATCH_MS};
    use accord::simulate::{Generator, Scenario, Timing};
    let timing = Timing { window_ms: 30_000, allowed_lateness_ms: 5_000 };
    let duration_ms = ((n as f64 / super::RATE) * 1000.0 * 1.05) as i64 + 60_000;
    let sim: Vec<_> =
        Generator::new(Scenario::Mixed, timing, super::RATE, duration_ms, super::BASE_MS, 7).take(n).collect();
    let mut batches: Vec<&[accord::simulate::SimRecord]> = Vec::new();
    let mut at = 0;
    while at < sim.len() {
        let end_ms = (sim[at].emit_ms.div_euclid(BATCH_MS) + 1) * BATCH_MS;
        let len = sim[at..].iter().take_while(|r| r.emit_ms < end_ms).count();
        batches.push(&sim[at..at + len]);
        at += len;
    }
    let otel = &features.catalog().otel;
    let mut out = Streams { evaluations: n as u64, accord: Vec::new(), otlp: Vec::new(), logs_batches: Vec::new() };
    for format in [InputFormat::OtlpProtoLogs, InputFormat::OtlpProtoTraces, InputFormat::OtlpJson] {
        let mut enc = Encoder::new(format, otel, 7);
        let mut msgs = Vec::new();
        for batch in &batches {
            let recs: Vec<_> = batch.iter().map(|r| decode(r.json.as_bytes()).unwrap()).collect();
            let mut whole = Vec::new();
            for e in enc.encode_batch(&recs) {
                if format == InputFormat::OtlpProtoLogs {
                    out.accord.extend(e.order.iter().map(|&i| batch[i].json.as_bytes().to_vec()));
                    whole.extend_from_slice(&e.payload);
                }
                msgs.push(e.payload);
            }
            if format == InputFormat::OtlpProtoLogs {
                out.logs_batches.push(whole);
            }
        }
        out.otlp.push((format, msgs));
    }
    out
}

/// Decode + judge every message of a stream; returns the records counted.
pub fn judge_stream(features: &Arc<Features>, format: InputFormat, msgs: &[Vec<u8>]) -> u64 {
    let mut p = Pipeline::new(features.clone(), 0);
    let mut obs = Count::default();
    for (i, m) in msgs.iter().enumerate() {
        p.ingest_message(format, m, Position::new(0, i as u64), super::BASE_MS + 3_600_000, &mut obs);
    }
    p.engine_mut().flush(&mut obs);
    obs.records
}
