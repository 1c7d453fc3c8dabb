//! Criterion benchmarks of the stages on realistic records (the
//! simulator's `mixed` scenario, ~300 bytes each):
//! decode (against the parse-only baseline), join+judge, the full replay
//! pipeline with the Prometheus observer, and metric export (render).
//!
//! `cargo bench --bench pipeline` (add `-- decode` etc. to filter).

mod support;

use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;

use accord::decode::decode;
use accord::export::Metrics;
use accord::features::FeatureId;
use accord::join::{Closed, Observer};
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

criterion_group! {
    name = pipeline;
    config = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(4))
        .sample_size(20);
    targets = benches
}
criterion_main!(pipeline);
