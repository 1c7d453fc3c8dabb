//! (o) OpenTelemetry input against native input: decode + join + judge
//! per evaluation of the same decisions, as accord records, as OTLP
//! protobuf logs and traces (one export request per trace id and
//! Collector batch, as the Collector's Kafka exporter writes them keyed by
//! trace id), as whole Collector batches of logs, and as OTLP/JSON.

use accord::decode::InputFormat;

use crate::args::Args;
use crate::os::{timed, Best};
use crate::support::otlp::{features, judge_stream, streams};

pub fn otlp_phase(args: &Args) {
    let features = features();
    let s = streams(args.otlp_evaluations, &features);
    let n = s.evaluations as f64;
    let mut runs: Vec<(String, InputFormat, &[Vec<u8>])> =
        vec![("accord records (native)".into(), InputFormat::Accord, &s.accord)];
    runs.extend(s.otlp.iter().map(|(f, m)| (f.to_string(), *f, &m[..])));
    runs.push(("otlp_proto_logs, whole batches".into(), InputFormat::OtlpProtoLogs, &s.logs_batches));
    // Every format judges every evaluation, or the ratios compare
    // different work.
    for (name, format, msgs) in &runs {
        let judged = judge_stream(&features, *format, msgs);
        assert_eq!(judged, s.evaluations, "(o) {name}: {judged} of {} evaluations judged", s.evaluations);
    }
    // Interleaved rounds so drift on a shared machine hits every format;
    // the best round of each counts.
    let mut best: Vec<Best> = runs.iter().map(|_| Best::default()).collect();
    for _ in 0..args.repeat.max(2) {
        for (i, (_, format, msgs)) in runs.iter().enumerate() {
            let (t, judged) = timed(|| judge_stream(&features, *format, msgs));
            std::hint::black_box(judged);
            best[i].add(t);
        }
    }
    let native = best[0].cpu;
    println!(
        "(o) OpenTelemetry input: {} evaluations of scenario mixed, decode + join + judge, best of {} rounds, on-CPU",
        s.evaluations,
        args.repeat.max(2)
    );
    for ((name, _, msgs), b) in runs.iter().zip(&best) {
        println!(
            "    {name:<32} {:>6.0} ns/evaluation  {:>5.2}x native  ({:.1} evaluations/message, {:.0} bytes/evaluation)",
            b.cpu * 1e9 / n,
            native / b.cpu,
            n / msgs.len() as f64,
            msgs.iter().map(Vec::len).sum::<usize>() as f64 / n,
        );
    }
}
