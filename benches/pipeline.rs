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
use accord::join::Observer;
use accord::pipeline::Pipeline;
use accord::replay::replay_stream;
use accord::Features;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};

const RECORDS: usize = 50_000;

use support::otlp::Count;

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

fn otlp_benches(c: &mut Criterion) {
    let features = support::otlp::features();
    let s = support::otlp::streams(RECORDS, &features);
    let n = s.evaluations;
    for (format, msgs) in &s.otlp {
        assert_eq!(support::otlp::judge_stream(&features, *format, msgs), n, "{format} judged every evaluation");
    }
    let mut runs: Vec<(String, InputFormat, &[Vec<u8>])> =
        vec![("native_accord".into(), InputFormat::Accord, &s.accord)];
    runs.extend(s.otlp.iter().map(|(f, m)| (f.to_string(), *f, &m[..])));
    runs.push(("otlp_proto_logs_whole_batches".into(), InputFormat::OtlpProtoLogs, &s.logs_batches));

    let mut g = c.benchmark_group("otlp");
    g.throughput(Throughput::Elements(n));
    for (name, format, msgs) in &runs {
        g.bench_function(format!("decode_judge/{name}"), |b| {
            b.iter(|| black_box(support::otlp::judge_stream(&features, *format, msgs)))
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
            black_box(support::otlp::judge_stream(&features, format, msgs));
            return t.elapsed().as_secs_f64();
        };
        let mut runs = 0u32;
        loop {
            black_box(support::otlp::judge_stream(&features, format, msgs));
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
