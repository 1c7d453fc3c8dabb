//! Memory: (m) bytes per open join, and (i) an instance's RSS against its
//! partition count. Both run in a fresh child process (this program run
//! again with a hidden flag), so nothing else held by the parent (the
//! stream, the mock cluster's logs) is in the figure.

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use accord::export::Metrics;
use accord::pipeline::Pipeline;
use accord::service::Service;
use accord::simulate::SimRecord;
use accord::source::kafka::KafkaConfig;
use accord::Features;
use rdkafka::config::ClientConfig;
use rdkafka::mocking::MockCluster;
use rdkafka::producer::{DefaultProducerContext, Producer, ThreadedProducer};
use tokio_util::sync::CancellationToken;

use crate::args::Args;
use crate::backlog::{partition_of, send};
use crate::os::{peak_rss_kib, rss_kib};
use crate::support;

/// (m): runs `memory_child` in a fresh process and prints its lines.
pub fn memory_phase(args: &Args) -> anyhow::Result<()> {
    let exe = std::env::current_exe()?;
    let out = Command::new(exe).args(["--memory-child", "--open-joins", &args.open_joins.to_string()]).output()?;
    std::io::stdout().write_all(&out.stdout)?;
    std::io::stderr().write_all(&out.stderr)?;
    Ok(())
}

/// Memory per open join: requests that never complete (only their
/// frontend record arrives, every event time equal, so no window closes),
/// RSS before and after.
pub fn memory_child(open: usize) -> anyhow::Result<()> {
    let cap = open.max(200_000);
    let catalog = support::catalog(cap + 1);
    let features = Arc::new(Features::new(catalog));
    let metrics = Metrics::new(features.clone())?;
    let mut obs = metrics.observer();
    let mut pipeline = Pipeline::new(features, 0);
    let mut line = String::with_capacity(512);
    let rec = |line: &mut String, i: usize| {
        use std::fmt::Write;
        line.clear();
        // The simulator's id shape and a realistic frontend record.
        let _ = write!(
            line,
            r#"{{"request_id":"req-{:08x}-{:06x}","layer":"frontend","feature":"checkout_v2","ts":"2026-11-20T10:00:00.000Z","flag_state":true,"selected_flow":"v2","flags_revision":"r42","service":"web-spa","instance":"web-spa-1f2e","build":"2026.11.20-3f9c2a1"}}"#,
            (i as u32).wrapping_mul(2_654_435_761),
            i & 0xff_ffff
        );
    };
    // Warm up allocator and code paths on a few joins first.
    rec(&mut line, usize::MAX);
    pipeline
        .ingest(line.as_bytes(), accord::join::Position::new(0, 0), support::BASE_MS, &mut obs)
        .map_err(|r| anyhow::anyhow!("memory record rejected: {r}"))?;
    let rss0 = rss_kib();
    let mut at_200k = None;
    let t = Instant::now();
    for i in 0..cap {
        rec(&mut line, i);
        let _ =
            pipeline.ingest(line.as_bytes(), accord::join::Position::new(0, i as u64 + 1), support::BASE_MS, &mut obs);
        if i + 1 == 200_000 {
            at_200k = Some(rss_kib());
        }
    }
    let rss1 = rss_kib();
    let held = pipeline.engine().open_joins();
    anyhow::ensure!(held == cap + 1, "expected {} open joins, got {held}", cap + 1);
    if let Some(r) = at_200k.filter(|_| cap > 200_000) {
        println!(
            "memory: {:>7} open joins: RSS +{} MiB = {:.0} bytes/open join",
            200_000,
            (r - rss0) / 1024,
            (r - rss0) as f64 * 1024.0 / 200_000.0
        );
    }
    println!(
        "memory: {:>7} open joins: RSS +{} MiB = {:.0} bytes/open join   (fed in {:.1?})",
        cap,
        (rss1 - rss0) / 1024,
        (rss1 - rss0) as f64 * 1024.0 / cap as f64,
        t.elapsed()
    );
    Ok(())
}

/// (i)'s consumer group.
const INSTANCE_GROUP: &str = "throughput-instance";
/// Records produced but not yet consumed, at most: the mock cluster keeps
/// 5 MiB per partition, so the records are fed as the instance takes them
/// (the same way at every partition count), never a backlog it could drop.
const INSTANCE_WINDOW: u64 = 20_000;

/// What the child of (i) reports.
struct InstanceFigures {
    /// KiB: at the start (runtime, catalog, metrics; nothing consumed),
    /// after the records, and the peak.
    start: u64,
    end: u64,
    peak: u64,
    open_joins: i64,
    sample_bytes: u64,
    threads: u64,
}

impl InstanceFigures {
    fn parse(line: &str) -> Option<InstanceFigures> {
        let v: Vec<i64> =
            line.strip_prefix("instance-rss ")?.split(' ').map(|x| x.parse().ok()).collect::<Option<_>>()?;
        let [start, end, peak, open_joins, sample_bytes, threads] = v[..] else { return None };
        let u = |x: i64| u64::try_from(x).ok();
        Some(InstanceFigures {
            start: u(start)?,
            end: u(end)?,
            peak: u(peak)?,
            open_joins,
            sample_bytes: u(sample_bytes)?,
            threads: u(threads)?,
        })
    }
}

/// (i): an instance's RSS at each `--instance-partitions`, fed the same
/// records.
pub fn instance_phase(args: &Args, records: &[SimRecord]) -> anyhow::Result<()> {
    println!(
        "(i) memory per instance: `accord run`'s service in a fresh child process (the defaults of accord run), fed the same {} records at each partition count ({} at most not yet consumed)",
        records.len(),
        INSTANCE_WINDOW
    );
    let mut figures: Vec<(i32, InstanceFigures)> = Vec::new();
    for &parts in &args.instance_partitions {
        let f = instance_at(args, records, parts)?;
        println!(
            "(i) {parts:>4} partitions: RSS {} MiB after the records, +{} MiB since the start (peak {} MiB), {} joins open; sample budget {} MiB per instance, {} judging threads",
            f.end / 1024,
            f.end.saturating_sub(f.start) / 1024,
            f.peak / 1024,
            f.open_joins,
            f.sample_bytes >> 20,
            f.threads
        );
        figures.push((parts, f));
    }
    if let (Some((p0, f0)), Some((p1, f1))) = (figures.first(), figures.last()) {
        if p0 != p1 {
            let g0 = f0.end.saturating_sub(f0.start) as f64;
            let g1 = f1.end.saturating_sub(f1.start) as f64;
            println!(
                "    {p1} against {p0} partitions: RSS growth x{:.2} ({:+.0} MiB), peak x{:.2} (goal: no growth with partitions)",
                g1 / g0.max(1.0),
                (g1 - g0) / 1024.0,
                f1.peak as f64 / f0.peak.max(1) as f64
            );
        }
    }
    Ok(())
}

/// One child at `parts` partitions, on a mock cluster of its own.
fn instance_at(args: &Args, records: &[SimRecord], parts: i32) -> anyhow::Result<InstanceFigures> {
    let cluster: MockCluster<'static, DefaultProducerContext> = MockCluster::new(1)?;
    let topic = "instance";
    cluster.create_topic(topic, parts, 1)?;
    for t in accord::source::kafka::internal_topic_names(INSTANCE_GROUP) {
        let _ = cluster.create_topic(&t, 1, 1);
    }
    let mut cmd = Command::new(std::env::current_exe()?);
    cmd.args(["--instance-child", &cluster.bootstrap_servers(), "--instance-topic", topic])
        .args(["--records", &records.len().to_string()]);
    for (k, v) in &args.kafka_properties {
        cmd.arg("--kafka-property").arg(format!("{k}={v}"));
    }
    let mut child = cmd.stdout(Stdio::piped()).spawn()?;
    let stdout = child.stdout.take().ok_or_else(|| anyhow::anyhow!("(i): no stdout of the child"))?;
    let consumed = Arc::new(AtomicU64::new(0));
    let result = Arc::new(Mutex::new(None));
    let reader = {
        let (consumed, result) = (consumed.clone(), result.clone());
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(c) = line.strip_prefix("progress ").and_then(|c| c.parse().ok()) {
                    consumed.store(c, Ordering::Relaxed);
                } else if let Some(f) = InstanceFigures::parse(&line) {
                    *result.lock().unwrap_or_else(|e| e.into_inner()) = Some(f);
                } else {
                    println!("{line}");
                }
            }
        })
    };
    let producer: ThreadedProducer<DefaultProducerContext> =
        ClientConfig::new().set("bootstrap.servers", cluster.bootstrap_servers()).set("linger.ms", "5").create()?;
    'feed: for (i, r) in records.iter().enumerate() {
        while i as u64 >= consumed.load(Ordering::Relaxed) + INSTANCE_WINDOW {
            if child.try_wait()?.is_some() {
                break 'feed;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        send(&producer, topic, r, partition_of(&r.key, parts));
    }
    producer.flush(Duration::from_secs(60))?;
    let status = child.wait()?;
    let _ = reader.join();
    anyhow::ensure!(status.success(), "(i): the instance at {parts} partitions failed ({status})");
    let f = result.lock().unwrap_or_else(|e| e.into_inner()).take();
    f.ok_or_else(|| anyhow::anyhow!("(i): the instance at {parts} partitions reported no figures"))
}

/// (i)'s child: `accord run`'s service with its defaults on the parent's
/// mock cluster, until it has handled `--records` records; prints its
/// progress, then its RSS.
pub fn instance_child(args: &Args, brokers: &str) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    let service = Service::new(support::catalog(1_000_000)).map_err(|e| anyhow::anyhow!("{e}"))?;
    let status = service.status.clone();
    let open_joins = service.metrics.open_joins.clone();
    let kafka = KafkaConfig {
        properties: args.kafka_properties.clone(),
        ..KafkaConfig::new(brokers, &[&args.instance_topic], INSTANCE_GROUP)
    };
    let (sample_bytes, threads) = (kafka.sample_bytes, kafka.judge_threads);
    let cancel = CancellationToken::new();
    let start = rss_kib();
    let run = rt.block_on(async {
        let listener = Service::bind("127.0.0.1:0".parse()?).await.map_err(|e| anyhow::anyhow!("{e}"))?;
        anyhow::Ok(tokio::spawn(service.run(kafka, listener, cancel.clone())))
    })?;
    let n = args.records as u64;
    let mut last = (0, Instant::now());
    loop {
        let c = status.records.load(Ordering::Relaxed);
        println!("progress {c}");
        if c >= n {
            break;
        }
        if c != last.0 {
            last = (c, Instant::now());
        }
        anyhow::ensure!(last.1.elapsed() < Duration::from_secs(60), "(i) instance stalled at {c}/{n} records");
        std::thread::sleep(Duration::from_millis(20));
    }
    let (end, peak) = (rss_kib(), peak_rss_kib());
    println!("instance-rss {start} {end} {peak} {} {sample_bytes} {threads}", open_joins.get());
    cancel.cancel();
    rt.block_on(async { tokio::time::timeout(Duration::from_secs(30), run).await })
        .map_err(|_| anyhow::anyhow!("accord run did not stop"))???;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn figures_line_round_trips() {
        let f = InstanceFigures::parse("instance-rss 1024 4096 5000 33 67108864 2").unwrap();
        assert_eq!(
            (f.start, f.end, f.peak, f.open_joins, f.sample_bytes, f.threads),
            (1024, 4096, 5000, 33, 64 << 20, 2)
        );
        assert!(InstanceFigures::parse("instance-rss 1 2").is_none());
        assert!(InstanceFigures::parse("progress 5").is_none());
    }
}
