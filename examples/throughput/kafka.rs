//! The phases on librdkafka's mock cluster that drain a backlog: (c) the
//! bare consume loop, (d) `accord run` at each `--judge-threads`, (s) the
//! statistics topic after each (d), (t) two co-partitioned topics against
//! one. Then (i) and (l), which bring their own load.
//!
//! The mock cluster keeps only 5 MiB per partition, so the whole stream is
//! produced before any consumer starts, to a topic with enough partitions
//! (at least `--partitions`); each consumer is timed from its first record
//! to its last (a backlog drained: no group join, never waiting for the
//! producer). Every consumer reads the same topic under its own group.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use accord::service::Service;
use accord::simulate::SimRecord;
use accord::source::kafka::KafkaConfig;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::Message;
use rdkafka::mocking::MockCluster;
use rdkafka::producer::{DefaultProducerContext, ThreadedProducer};
use tokio_util::sync::CancellationToken;

use crate::args::Args;
use crate::backlog::{backlog_partitions, layer_topic, produce_backlog, MOCK_PARTITION_BUDGET};
use crate::os::{peak_rss_kib, reset_peak_rss, Snapshot, Usage};
use crate::output::{print_cores_by_owner, print_cpu_per_record, print_machine};
use crate::{latency, memory, stats, support};

pub type Mock = MockCluster<'static, DefaultProducerContext>;

/// The mock cluster, the runtime and the backlog's topic, shared by the
/// phases of one run.
pub struct Bench<'a> {
    pub args: &'a Args,
    pub rt: tokio::runtime::Runtime,
    pub cluster: Mock,
    /// Partitions of every backlog topic.
    pub parts: i32,
}

/// A drained backlog: from the first record consumed to the last.
pub struct Drained {
    pub secs: f64,
    pub usage: Usage,
}

/// One run of the service over a backlog.
pub struct Run {
    pub drained: Drained,
    pub peak_kib: u64,
    pub open_joins: i64,
    /// Seconds from starting the service to its stop (group join included).
    pub lifetime: f64,
    /// The service's `/metrics` at the end.
    pub metrics: String,
}

pub fn kafka(args: &Args, records: Vec<SimRecord>) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    let cluster = MockCluster::new(1)?;
    let n = records.len();
    let parts = backlog_partitions(&records, args.partitions);
    let bench = Bench { args, rt, cluster, parts };
    let backlog = args.phase('c') || args.phase('d') || args.phase('s') || args.phase('t');
    let latency = args.phase('l');
    let mut max_rate = args.max_rate;
    if backlog || (latency && max_rate.is_none()) {
        println!(
            "kafka: librdkafka mock cluster, {n} records in one topic of {parts} partitions (at least --partitions {}; \
             <= {} MiB each), all produced before the consumer starts",
            args.partitions,
            MOCK_PARTITION_BUDGET >> 20
        );
        let producer = backlog_producer(&bench.cluster)?;
        produce_backlog(&bench.cluster, &producer, &["decisions"], &records, parts, |_| 0)?;
        let bare = if args.phase('c') { Some(bare_phase(&bench, "decisions", n)?) } else { None };
        if args.phase('d') || args.phase('s') || (latency && max_rate.is_none()) {
            if !args.phase('d') && !args.phase('s') {
                println!("(l) needs the maximum load: running (d) first (or pass --max-rate)");
            }
            for &threads in &args.judge_threads {
                let rate = run_phase(&bench, usize::from(threads), n, bare.as_ref())?;
                max_rate = Some(max_rate.map_or(rate, |m: f64| m.max(rate)));
            }
        }
        if args.phase('t') {
            let topics = ["decisions-web", "decisions-backend"];
            let tparts = args.topic_partitions.unwrap_or(parts);
            produce_backlog(&bench.cluster, &producer, &topics, &records, tparts, layer_topic)?;
            topics_phase(&bench, &topics, tparts, n)?;
        }
    }
    if args.phase('i') && !args.skip_memory {
        memory::instance_phase(args, &records)?;
    }
    // (l) generates its own load and holds it in memory.
    drop(records);
    if let (true, Some(max)) = (latency, max_rate) {
        if args.latency_bare {
            latency::bare_latency_phase(args, &bench.rt, &bench.cluster, max)?;
        }
        latency::latency_phase(args, &bench.rt, &bench.cluster, max)?;
    }
    Ok(())
}

fn backlog_producer(cluster: &Mock) -> anyhow::Result<ThreadedProducer<DefaultProducerContext>> {
    Ok(ClientConfig::new()
        .set("bootstrap.servers", cluster.bootstrap_servers())
        .set("linger.ms", "5")
        .set("queue.buffering.max.messages", "1000000")
        .set("queue.buffering.max.kbytes", "1048576")
        .create()?)
}

/// (d) accord run's service with `threads` judging threads; prints and
/// returns its records/s.
fn run_phase(bench: &Bench<'_>, threads: usize, n: usize, bare: Option<&Drained>) -> anyhow::Result<f64> {
    let group = format!("throughput-accord-{threads}t");
    let run = run_service(bench, &["decisions"], &group, threads, n)?;
    let d = &run.drained;
    println!(
        "(d) accord run pipeline   {:>12.0} records/s   (peak RSS {} MiB, {} joins open at the end)   [{threads} judging thread{}]",
        n as f64 / d.secs,
        run.peak_kib / 1024,
        run.open_joins,
        if threads == 1 { "" } else { "s" }
    );
    print_cpu_per_record(&d.usage.cpu, n);
    print_cores_by_owner(&d.usage.cpu, d.secs);
    print_machine(&d.usage, d.secs, "while consuming");
    println!("    judged: {}", judged(&run.metrics));
    if bench.args.verbose {
        for l in run.metrics.lines().filter(|l| l.starts_with("accord_kafka") || l.starts_with("accord_ready")) {
            eprintln!("{l}");
        }
    }
    if let Some(c) = bare {
        let ratio = c.secs / d.secs;
        println!("    d/c = {ratio:.2}");
        let accord = d.usage.cpu.of(&["accord-"]) * 1e9 / n as f64;
        let bare_task = c.usage.cpu.of(&["tokio-"]) * 1e9 / n as f64;
        println!(
            "    accord's threads {accord:.0} ns/record against the bare loop's consuming task {bare_task:.0}; goal d/c >= 0.8{}",
            if ratio >= 0.8 { " (met)" } else { "" }
        );
        if ratio < 0.8 {
            println!("    {}", bound(&d.usage, d.secs));
        }
    }
    if bench.args.phase('s') {
        stats::stats_topic(bench, &group, &run, n)?;
    }
    Ok(n as f64 / d.secs)
}

/// What kept a drain from going faster, from its CPU figures: a judging
/// thread that never waited, or a machine with no core to spare.
fn bound(u: &Usage, secs: f64) -> String {
    let busiest = u
        .cpu
        .0
        .iter()
        .filter(|(k, _)| k.starts_with("accord-judge-"))
        .map(|(k, v)| (k.as_str(), v / secs))
        .max_by(|a, b| a.1.total_cmp(&b.1));
    let machine = u.machine / secs;
    let cores = crate::os::cores() as f64;
    let others = u.cpu.of(&["rdk:"]) / secs;
    let what = match busiest {
        Some((_, b)) if b >= 0.9 => "a judging thread is saturated (it never waits for records)",
        _ if machine >= 0.9 * cores => "the machine's cores are saturated",
        _ => "neither a judging thread nor the machine is saturated (waiting for fetches?)",
    };
    format!(
        "what bounds it: {what}; busiest judging thread {} {:.2} cores, librdkafka's and the mock broker's threads {others:.2} cores, machine {machine:.2} of {cores} cores busy",
        busiest.map_or("-", |b| b.0),
        busiest.map_or(0.0, |b| b.1),
    )
}

/// (t): the same records in two co-partitioned topics, judged as one set
/// of streams, against the one topic that carries them all; interleaved
/// `--kafka-repeat` times, the best of each kept.
fn topics_phase(bench: &Bench<'_>, topics: &[&str], tparts: i32, n: usize) -> anyhow::Result<()> {
    let threads = usize::from(bench.args.judge_threads.iter().copied().max().unwrap_or(1));
    println!(
        "(t) several topics: the same records split by layer into {} co-partitioned topics (frontend+api / worker+analytics, {tparts} partitions each, keyed by request id), judged as one set of streams, against the one topic of {} partitions; {threads} judging thread{}",
        topics.len(),
        bench.parts,
        if threads == 1 { "" } else { "s" }
    );
    let (mut one, mut two): (Option<Run>, Option<Run>) = (None, None);
    let best = |slot: &mut Option<Run>, r: Run| {
        if slot.as_ref().is_none_or(|b| r.drained.secs < b.drained.secs) {
            *slot = Some(r);
        }
    };
    let accord_ns = |r: &Run| r.drained.usage.cpu.of(&["accord-"]) * 1e9 / n as f64;
    // The mock cluster's broker runs in this process and serves twice the
    // partitions for two topics; a real broker runs elsewhere.
    let client_ns = |r: &Run| (r.drained.usage.cpu.total() - r.drained.usage.cpu.of(&["rdk:mock"])) * 1e9 / n as f64;
    // Each pair of runs back to back: the machine's speed drifts (a shared
    // KVM guest) more between runs than within a pair, so the pairs'
    // ratios say more than two bests taken apart.
    let mut pairs = Vec::new();
    for i in 0..bench.args.kafka_repeat.max(1) {
        let a = run_service(bench, &["decisions"], &format!("throughput-one-{i}"), threads, n)?;
        let b = run_service(bench, topics, &format!("throughput-two-{i}"), threads, n)?;
        pairs.push([(a.drained.secs, b.drained.secs), (accord_ns(&a), accord_ns(&b)), (client_ns(&a), client_ns(&b))]);
        best(&mut one, a);
        best(&mut two, b);
    }
    let (one, two) = (one.expect("ran once"), two.expect("ran once"));
    for (what, r) in [("one topic", &one), ("two topics", &two)] {
        println!(
            "(t) {what:<22} {:>12.0} records/s   (peak RSS {} MiB, accord's threads {:.0} ns/record)",
            n as f64 / r.drained.secs,
            r.peak_kib / 1024,
            accord_ns(r)
        );
        print_cpu_per_record(&r.drained.usage.cpu, n);
        print_machine(&r.drained.usage, r.drained.secs, "while consuming");
        println!("    judged: {}", judged(&r.metrics));
    }
    let pct = |a: f64, b: f64| 100.0 * (b / a - 1.0);
    println!(
        "    best of each: two/one = {:.2}, {:+.1}% time, {:+.1}% CPU per record in accord's threads, {:+.1}% in this process without the mock broker",
        one.drained.secs / two.drained.secs,
        pct(one.drained.secs, two.drained.secs),
        pct(accord_ns(&one), accord_ns(&two)),
        pct(client_ns(&one), client_ns(&two)),
    );
    let each = pairs.iter().map(|p| format!("{:.0}/{:.0}", p[1].0, p[1].1)).collect::<Vec<_>>().join(", ");
    println!("    run by run (one/two topics, accord's threads ns/record): {each}");
    let mut medians = [0.0; 3];
    for (i, what) in
        ["time", "CPU per record in accord's threads", "CPU per record without the mock broker"].iter().enumerate()
    {
        let mut costs: Vec<f64> = pairs.iter().map(|p| pct(p[i].0, p[i].1)).collect();
        costs.sort_by(f64::total_cmp);
        medians[i] = costs[costs.len() / 2];
        println!(
            "    {what}, cost per pair: {}; median {:+.1}%",
            costs.iter().map(|c| format!("{c:+.1}%")).collect::<Vec<_>>().join(" "),
            medians[i]
        );
    }
    // The pairs' medians: a pair runs back to back, so the machine's drift
    // between runs mostly cancels out, and one lucky run moves no median.
    println!(
        "    the merge costs (median of {} pairs) {:+.1}% time, {:+.1}% CPU per record in accord's threads, {:+.1}% in this process without the mock broker (goal <= 10%)",
        pairs.len(),
        medians[0],
        medians[1],
        medians[2]
    );
    Ok(())
}

/// What a run judged, from its `/metrics`: so runs that must judge alike
/// (one topic and two) can be compared.
pub fn judged(metrics: &str) -> String {
    let sum = |name: &str| -> f64 {
        metrics
            .lines()
            .filter(|l| l.strip_prefix(name).is_some_and(|r| r.starts_with('{') || r.starts_with(' ')))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    };
    format!(
        "{:.0} valid records, {:.0} requests, {:.0} divergences, {:.0} late records, {:.0} clock-skewed, {:.0} rejected",
        sum("accord_records_total"),
        sum("accord_requests_total"),
        sum("accord_divergences_total"),
        sum("accord_records_late_total"),
        sum("accord_records_clock_skewed_total"),
        sum("accord_records_rejected_total")
    )
}

/// Starts `accord run`'s service on `topics` under `group`, waits until it
/// has handled `n` records, stops it.
fn run_service(bench: &Bench<'_>, topics: &[&str], group: &str, threads: usize, n: usize) -> anyhow::Result<Run> {
    reset_peak_rss();
    let service = Service::new(support::catalog(1_000_000)).map_err(|e| anyhow::anyhow!("{e}"))?;
    let status = service.status.clone();
    let open_joins = service.metrics.open_joins.clone();
    let metrics = service.metrics.clone();
    let cancel = CancellationToken::new();
    // The mock cluster does not serve CreateTopics.
    for t in accord::source::kafka::internal_topic_names(group) {
        let _ = bench.cluster.create_topic(&t, 1, 1);
    }
    let kafka = KafkaConfig {
        properties: bench.args.kafka_properties.clone(),
        judge_threads: threads,
        ..KafkaConfig::new(&bench.cluster.bootstrap_servers(), topics, group)
    };
    let started = Instant::now();
    let run = bench.rt.block_on(async {
        let listener = Service::bind("127.0.0.1:0".parse()?).await.map_err(|e| anyhow::anyhow!("{e}"))?;
        anyhow::Ok(tokio::spawn(service.run(kafka, listener, cancel.clone())))
    })?;
    let drained = bench.rt.block_on(drain(n as u64, &|| status.records.load(Ordering::Relaxed)))?;
    let peak_kib = peak_rss_kib();
    let open_joins = open_joins.get();
    cancel.cancel();
    bench
        .rt
        .block_on(async { tokio::time::timeout(Duration::from_secs(30), run).await })
        .map_err(|_| anyhow::anyhow!("accord run did not stop"))???;
    Ok(Run { drained, peak_kib, open_joins, lifetime: started.elapsed().as_secs_f64(), metrics: metrics.render() })
}

/// (c): the bare consume loop over the backlog; prints and returns its
/// drain.
fn bare_phase(bench: &Bench<'_>, topic: &str, n: usize) -> anyhow::Result<Drained> {
    reset_peak_rss();
    let counter = Arc::new(AtomicU64::new(0));
    let cancel = CancellationToken::new();
    let config = consumer_config(&bench.cluster.bootstrap_servers(), "throughput-bare", bench.args);
    let task = bench.rt.spawn(bare_consume(
        config,
        topic.to_string(),
        bench.args.bare_work_ns,
        counter.clone(),
        cancel.clone(),
    ));
    let drained = bench.rt.block_on(drain(n as u64, &|| counter.load(Ordering::Relaxed)))?;
    cancel.cancel();
    bench.rt.block_on(task)??;
    println!(
        "(c) bare consume loop     {:>12.0} records/s   (peak RSS {} MiB)",
        n as f64 / drained.secs,
        peak_rss_kib() / 1024
    );
    print_cpu_per_record(&drained.usage.cpu, n);
    print_cores_by_owner(&drained.usage.cpu, drained.secs);
    print_machine(&drained.usage, drained.secs, "while consuming");
    Ok(drained)
}

/// Waits until `consumed()` reaches `n`; returns the seconds from the first
/// record consumed to the last (group join and first fetch not counted)
/// and the threads' CPU time over the same interval.
pub async fn drain(n: u64, consumed: &(dyn Fn() -> u64 + Sync)) -> anyhow::Result<Drained> {
    let deadline = Instant::now() + Duration::from_secs(300);
    let mut first: Option<(Instant, Snapshot)> = None;
    let mut last_seen = (0, Instant::now());
    loop {
        let c = consumed();
        if c > 0 && first.is_none() {
            first = Some((Instant::now(), Snapshot::take()));
        }
        if c >= n {
            break;
        }
        if c != last_seen.0 {
            last_seen = (c, Instant::now());
        }
        anyhow::ensure!(
            Instant::now() < deadline && last_seen.1.elapsed() < Duration::from_secs(60),
            "consumer stalled at {c}/{n} records"
        );
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let Some((t, before)) = first else { return Ok(Drained { secs: 0.0, usage: Usage::default() }) };
    let secs = t.elapsed().as_secs_f64();
    Ok(Drained { secs, usage: Usage::between(&before, &Snapshot::take()) })
}

/// The consumer settings `accord run` uses that bear on fetching, plus
/// `--kafka-property`.
pub fn consumer_config(brokers: &str, group: &str, args: &Args) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", brokers)
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", "earliest")
        .set("session.timeout.ms", "6000")
        .set("heartbeat.interval.ms", "1000")
        .set("queued.max.messages.kbytes", "16384")
        // As accord sets it (src/source/kafka/consumer.rs): no 1 s fetch pauses.
        .set("fetch.queue.backoff.ms", "10")
        .set("enable.partition.eof", "true")
        .set("statistics.interval.ms", "5000")
        .set("partition.assignment.strategy", "range,roundrobin");
    for (k, v) in &args.kafka_properties {
        c.set(k, v);
    }
    c
}

/// (c): `StreamConsumer::recv` in a loop, touching each payload.
async fn bare_consume(
    config: ClientConfig,
    topic: String,
    burn_ns: u64,
    counter: Arc<AtomicU64>,
    cancel: CancellationToken,
) -> anyhow::Result<u64> {
    let consumer: StreamConsumer = config.create()?;
    consumer.subscribe(&[&topic])?;
    let mut touched = 0u64;
    let burn_ns = u128::from(burn_ns);
    loop {
        tokio::select! {
            biased;
            _ = cancel.cancelled() => break,
            m = consumer.recv() => {
                let m = match m {
                    Ok(m) => m,
                    Err(rdkafka::error::KafkaError::PartitionEOF(_)) => continue,
                    Err(e) => return Err(e.into()),
                };
                let p = m.payload().unwrap_or(&[]);
                touched = touched.wrapping_add(p.len() as u64 + u64::from(p.first().copied().unwrap_or(0)));
                if burn_ns > 0 {
                    // Simulated per-record work (`--bare-work-ns`).
                    let t = Instant::now();
                    while t.elapsed().as_nanos() < burn_ns {}
                }
                counter.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
    consumer.unsubscribe();
    Ok(std::hint::black_box(touched))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn judged_sums_series_of_one_family_only() {
        let text = "accord_requests_total{feature=\"a\"} 3\naccord_requests_total{feature=\"b\"} 4\naccord_requests_totally 9\naccord_records_total 10\n";
        let j = judged(text);
        assert!(j.starts_with("10 valid records, 7 requests,"), "{j}");
    }
}
