//! Criterion benchmarks of the stages on realistic records (the
//! simulator's `mixed` scenario, ~300 bytes each):
//! decode (against the parse-only baseline), join+judge, the full replay
//! pipeline with the Prometheus observer, metric export (render), and
//! OpenTelemetry input (group `otlp`: decode + judge per evaluation of the
//! same decisions as accord records, OTLP/JSON and OTLP protobuf, with the
//! ratios to native printed at the end).
//!
//! `cargo bench --bench pipeline` (add `-- decode` etc. to filter).

mod support;

use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;

use accord::decode::otlp::{Mapping, Signal};
use accord::decode::{decode, InputFormat};
use accord::export::Metrics;
use accord::features::FeatureId;
use accord::join::{Closed, Observer, Position};
use accord::judge::RecordPath;
use accord::pipeline::Pipeline;
use accord::replay::replay_stream;
use accord::Features;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};

const RECORDS: usize = 50_000;

/// Counts what the join stage decides, so join+judge is measured without
/// any exporter.
#[derive(Default)]
struct Count {
    records: u64,
    closed: u64,
}

impl Observer for Count {
    fn record(&mut self, _: FeatureId, _: accord::catalog::LayerId, _: RecordPath, _: bool) {
        self.records += 1;
    }
    fn closed(&mut self, c: &Closed<'_>) {
        self.closed += 1 + c.divergences.len() as u64;
    }
}

fn replay_into(features: &Arc<Features>, buf: &[u8], obs: &mut impl Observer) {
    let mut p = Pipeline::new(features.clone(), 0);
    replay_stream(std::io::Cursor::new(buf), &mut p, obs, "bench").unwrap();
}

fn benches(c: &mut Criterion) {
    let records = support::generate(RECORDS, 7);
    let buf = support::lines(&records);
    let features = Arc::new(Features::new(support::catalog(1_000_000)));
    let n = records.len() as u64;

    let mut g = c.benchmark_group("decode");
    g.throughput(Throughput::Elements(n));
    g.bench_function("parse_only_baseline", |b| {
        b.iter(|| {
            let mut x = 0usize;
            for r in &records {
                x = x.wrapping_add(support::parse_only(r.json.as_bytes()));
            }
            black_box(x)
        })
    });
    g.bench_function("decode", |b| {
        b.iter(|| {
            let mut x = 0usize;
            for r in &records {
                if let Ok(d) = decode(r.json.as_bytes()) {
                    x = x.wrapping_add(d.request_id.len());
                }
            }
            black_box(x)
        })
    });
    let p = Pipeline::new(features.clone(), 0);
    g.bench_function("validate", |b| {
        b.iter(|| {
            let mut x = 0usize;
            for r in &records {
                if let Ok(v) = p.validate(r.json.as_bytes()) {
                    x = x.wrapping_add(v.layer.index());
                }
            }
            black_box(x)
        })
    });
    g.finish();

    let mut g = c.benchmark_group("pipeline");
    g.throughput(Throughput::Elements(n));
    g.bench_function("join_judge", |b| {
        b.iter(|| {
            let mut obs = Count::default();
            replay_into(&features, &buf, &mut obs);
            black_box((obs.records, obs.closed))
        })
    });
    let metrics = Metrics::new(features.clone()).unwrap();
    g.bench_function("replay_prometheus", |b| {
        b.iter(|| {
            let mut obs = metrics.observer();
            replay_into(&features, &buf, &mut obs);
        })
    });
    g.finish();

    let mut g = c.benchmark_group("export");
    g.bench_function("render", |b| b.iter(|| black_box(metrics.render().len())));
    g.finish();
}

/// The same decisions as messages of each format: accord records in the
/// order the export requests hold them, and the export requests the
/// simulator's encoder makes of every Collector batch (one per trace id).
struct Streams {
    evaluations: u64,
    accord: Vec<Vec<u8>>,
    otlp: Vec<(InputFormat, Vec<Vec<u8>>)>,
    /// Protobuf logs, each message a whole Collector batch (the exporter
    /// without partitioning by trace id): the encoded requests of a batch
    /// concatenated, which protobuf reads as one request.
    logs_batches: Vec<Vec<u8>>,
}

fn streams(n: usize, features: &Arc<Features>) -> Streams {
    use accord::simulate::otlp::{Encoder, BATCH_MS};
    use accord::simulate::{Generator, Scenario, Timing};
    let timing = Timing { window_ms: 30_000, allowed_lateness_ms: 5_000 };
    let duration_ms = ((n as f64 / support::RATE) * 1000.0 * 1.05) as i64 + 60_000;
    let sim: Vec<_> =
        Generator::new(Scenario::Mixed, timing, support::RATE, duration_ms, support::BASE_MS, 7).take(n).collect();
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
fn judge_stream(features: &Arc<Features>, format: InputFormat, msgs: &[Vec<u8>]) -> u64 {
    let mut p = Pipeline::new(features.clone(), 0);
    let mut obs = Count::default();
    for (i, m) in msgs.iter().enumerate() {
        p.ingest_message(format, m, Position::new(0, i as u64), support::BASE_MS + 3_600_000, &mut obs);
    }
    p.engine_mut().flush(&mut obs);
    obs.records
}

fn otlp_benches(c: &mut Criterion) {
    let text = support::catalog_text(1_000_000)
        + "\n[otel]\n[otel.layers]\n\"web-spa\" = \"frontend\"\n\"checkout-api\" = \"api\"\n\"fulfilment-worker\" = \"worker\"\n";
    let catalog = accord::Catalog::parse(std::path::Path::new("bench.toml"), &text).unwrap();
    let features = Arc::new(Features::new(Arc::new(catalog)));
    let s = streams(RECORDS, &features);
    let n = s.evaluations;
    for (format, msgs) in &s.otlp {
        assert_eq!(judge_stream(&features, *format, msgs), n, "{format} judged every evaluation");
    }
    let mut runs: Vec<(String, InputFormat, &[Vec<u8>])> =
        vec![("native_accord".into(), InputFormat::Accord, &s.accord)];
    runs.extend(s.otlp.iter().map(|(f, m)| (f.to_string(), *f, &m[..])));
    runs.push(("otlp_proto_logs_whole_batches".into(), InputFormat::OtlpProtoLogs, &s.logs_batches));

    let mut g = c.benchmark_group("otlp");
    g.throughput(Throughput::Elements(n));
    for (name, format, msgs) in &runs {
        g.bench_function(format!("decode_judge/{name}"), |b| {
            b.iter(|| black_box(judge_stream(&features, *format, msgs)))
        });
    }
    // Decoding alone: the zero-copy walker against prost-generated types.
    let logs = &s.otlp[0].1;
    let map = Mapping::new(&features.catalog().otel);
    g.bench_function("decode_only/otlp_proto_logs_walker", |b| {
        b.iter(|| {
            let mut x = 0usize;
            for m in logs {
                let d = map.decode(Some(Signal::Logs), m).unwrap();
                x += d.records().filter(|r| r.is_ok()).count();
            }
            black_box(x)
        })
    });
    g.bench_function("decode_only/otlp_proto_logs_generated_types", |b| {
        use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
        use prost::Message;
        b.iter(|| {
            let mut x = 0usize;
            for m in logs {
                let r = ExportLogsServiceRequest::decode(&m[..]).unwrap();
                x += r.resource_logs.len();
            }
            black_box(x)
        })
    });
    g.finish();

    // The ratios to native, measured back to back in this process, in CPU
    // time: on a shared machine the wall clock also counts other
    // processes' turns. Each variant runs for at least a second of CPU,
    // twice, interleaved; the better round counts.
    let measure = |format: InputFormat, msgs: &[Vec<u8>]| {
        let Some(start) = thread_cpu() else {
            let t = std::time::Instant::now();
            black_box(judge_stream(&features, format, msgs));
            return t.elapsed().as_secs_f64();
        };
        let mut runs = 0u32;
        loop {
            black_box(judge_stream(&features, format, msgs));
            runs += 1;
            let spent = thread_cpu().unwrap_or(start) - start;
            if runs >= 2 && spent >= Duration::from_secs(1) {
                return spent.as_secs_f64() / f64::from(runs);
            }
        }
    };
    let mut best = vec![f64::INFINITY; runs.len()];
    for _ in 0..2 {
        for (i, (_, format, msgs)) in runs.iter().enumerate() {
            best[i] = best[i].min(measure(*format, msgs));
        }
    }
    let native = best[0];
    eprintln!("\notlp: decode + judge per evaluation, CPU time ({n} evaluations, {} accord messages)", s.accord.len());
    for ((name, _, msgs), t) in runs.iter().zip(&best) {
        eprintln!(
            "  {name:<32} {:>6.0} ns/evaluation  {:>5.2}x native throughput  ({:.1} evaluations/message, {:.0} bytes/evaluation)",
            t * 1e9 / n as f64,
            native / t,
            n as f64 / msgs.len() as f64,
            msgs.iter().map(Vec::len).sum::<usize>() as f64 / n as f64,
        );
    }
}

/// This thread's CPU time (user + system) on Linux, in clock ticks of
/// 10 ms (`USER_HZ`), from `/proc/thread-self/stat`.
fn thread_cpu() -> Option<Duration> {
    let stat = std::fs::read_to_string("/proc/thread-self/stat").ok()?;
    // Fields after the command name: state is field 3, utime 14, stime 15.
    let fields: Vec<&str> = stat.get(stat.rfind(')')? + 2..)?.split(' ').collect();
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    Some(Duration::from_millis(ticks * 10))
}

criterion_group! {
    name = otlp;
    config = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(4))
        .sample_size(20);
    targets = otlp_benches
}

criterion_group! {
    name = pipeline;
    config = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(4))
        .sample_size(20);
    targets = benches
}
criterion_main!(pipeline, otlp);
