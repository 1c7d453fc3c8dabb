//! Throughput and memory of accord, measured in one run on one generated
//! stream (issue 7). Every figure is printed next to a baseline measured
//! in the same process, so ratios stay meaningful on a busy machine.
//! docs/performance.md explains the figures.
//!
//! ```text
//! cargo run --release --example throughput -- [--records 1000000] [--partitions 4]
//!     [--open-joins 1000000] [--repeat 4] [--only abcdlm] [--kafka-property K=V]...
//!     [--latency-secs 20] [--latency-load 0.5] [--max-rate R] [--scrape-ms 10] [--latency-bare]
//! ```
//!
//! (a) parse-only: typed borrowed serde decode of every record, nothing else;
//! (b) replay: `accord replay --format prometheus` on the in-memory lines
//!     (Pipeline + MetricsObserver + final render);
//! (c) bare consume: an rdkafka `StreamConsumer` recv loop on librdkafka's
//!     mock cluster, touching each payload;
//! (d) run: `accord run`'s service (`Service::run`) on the same records,
//!     until `SourceStatus.records` counts every one;
//! (l) verdict latency: `Service::run` under a paced live load of
//!     `--latency-load` × (d)'s records/s (the `mixed` scenario with
//!     wall-clock event times, plus probe requests whose every layer
//!     reports); from the moment a probe's last record is acknowledged by
//!     the broker to the first scrape of `/metrics` (over HTTP) that counts
//!     its verdict. With `--latency-bare`, the bare loop of (c) first gets
//!     the same load: the floor set by librdkafka, the mock and the machine;
//! (m) memory: a child process feeds never-completing requests and
//!     reports RSS growth per open join.
//!
//! (a) and (b) read the same contiguous lines and are timed on this
//! thread's CPU clock (and the wall clock). The mock cluster keeps only
//! 5 MiB per partition, so for (c) and (d) the whole stream is produced
//! to one topic with enough partitions (at least `--partitions`) before
//! the consumer starts; the consumer is timed from its first record to its
//! last (a backlog drained: no group join, never waiting for the producer).

#[path = "../benches/support/mod.rs"]
mod support;

use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use accord::catalog::Catalog;
use accord::export::Metrics;
use accord::pipeline::Pipeline;
use accord::replay::replay_stream;
use accord::service::{NoObserver, Service};
use accord::simulate::{Generator, Scenario, Timing};
use accord::source::kafka::KafkaConfig;
use accord::Features;
use clap::Parser;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::Message;
use rdkafka::mocking::MockCluster;
use rdkafka::producer::{BaseRecord, Producer, ThreadedProducer};
use tokio_util::sync::CancellationToken;

#[derive(Parser)]
#[command(about = "accord throughput and memory, against baselines measured in the same run")]
struct Args {
    /// Records in the generated stream (scenario `mixed`).
    #[arg(long, default_value_t = 1_000_000)]
    records: usize,
    /// Partitions of the mock cluster's topic.
    #[arg(long, default_value_t = 4)]
    partitions: i32,
    /// Open joins for the memory measurement (also reported at 200,000).
    #[arg(long, default_value_t = 1_000_000)]
    open_joins: usize,
    /// Runs of (a) and (b), interleaved; the best of each is reported.
    #[arg(long, default_value_t = 4)]
    repeat: usize,
    /// Generator seed.
    #[arg(long, default_value_t = 7)]
    seed: u64,
    /// Skip (c) and (d).
    #[arg(long)]
    skip_kafka: bool,
    /// Skip (m).
    #[arg(long)]
    skip_memory: bool,
    /// Phases to run, e.g. `ab` or `d` (for profilers): a and b (replay),
    /// c (bare consume), d (accord run), l (verdict latency), m (memory).
    /// `l` without `d` runs (d) first for the maximum load, unless
    /// `--max-rate` gives it.
    #[arg(long, default_value = "abcdlm")]
    only: String,
    /// (l): seconds of paced load (every probe request of that time is
    /// measured).
    #[arg(long, default_value_t = 20.0)]
    latency_secs: f64,
    /// (l): seconds of load before the measurement, so that the requests in
    /// flight (each spreads its layers over up to 10 s) reach their steady
    /// number; the load ramps up meanwhile.
    #[arg(long, default_value_t = 10.0)]
    latency_warmup: f64,
    /// (l): the load, as a fraction of the maximum.
    #[arg(long, default_value_t = 0.5)]
    latency_load: f64,
    /// (l): the maximum load in records/s, instead of measuring it with (d).
    #[arg(long)]
    max_rate: Option<f64>,
    /// (l): measured requests (4 records each, every layer reporting) per
    /// second, part of the load; the rest is the `mixed` scenario.
    #[arg(long, default_value_t = 1000.0)]
    probes_per_sec: f64,
    /// (l): interval between two scrapes of `/metrics`, in milliseconds:
    /// the resolution of the measurement, but each scrape renders ~84 KiB
    /// on accord's runtime (~0.5-2 ms), so at 5 ms scraping takes ~0.2
    /// core from accord.
    #[arg(long, default_value_t = 10.0)]
    scrape_ms: f64,
    /// (l): `fetch.wait.max.ms` of accord's consumer, unless
    /// `--kafka-property` sets it. The mock broker answers an empty fetch
    /// only after this wait even when records arrive meanwhile (a real
    /// broker answers as soon as `fetch.min.bytes` is there), so its
    /// librdkafka default of 500 ms measures the mock. 0: leave the default.
    #[arg(long, default_value_t = 1)]
    latency_fetch_wait_ms: u64,
    /// (l): first run the same load against the bare consume loop of (c)
    /// (same fetch settings), timing when each probe's last record is
    /// consumed: the floor set by librdkafka, the mock broker and the
    /// machine, without accord.
    #[arg(long)]
    latency_bare: bool,
    /// (l): `linger.ms` of the load's producer.
    #[arg(long, default_value_t = 5)]
    latency_linger_ms: u64,
    /// Only run (b) `repeat` times (for profilers).
    #[arg(long)]
    replay_only: bool,
    /// Extra librdkafka consumer property for (c) and (d), KEY=VALUE
    /// (repeatable), e.g. `fetch.queue.backoff.ms=10`.
    #[arg(long = "kafka-property", value_parser = parse_kv)]
    kafka_properties: Vec<(String, String)>,
    /// Busy work per record in the bare loop (c), in nanoseconds: shows
    /// how a consumer slower than the fetcher is paced by librdkafka.
    #[arg(long, default_value_t = 0)]
    bare_work_ns: u64,
    /// Print the service's Kafka counters after (d).
    #[arg(long)]
    verbose: bool,
    /// Internal: the memory measurement, run in a fresh child process.
    #[arg(long, hide = true)]
    memory_child: bool,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    VERBOSE.store(args.verbose, Ordering::Relaxed);
    BARE_WORK_NS.store(args.bare_work_ns, Ordering::Relaxed);
    let _ = KAFKA_PROPERTIES.set(args.kafka_properties.clone());
    if args.memory_child {
        return memory_child(args.open_joins);
    }
    println!("accord throughput ({} build)", build_kind());
    println!("machine: {} cores, {}", std::thread::available_parallelism().map_or(0, |n| n.get()), cpu_model());
    let t = Instant::now();
    let records = support::generate(args.records, args.seed);
    let buf = support::lines(&records);
    // Every measurement reads the same contiguous lines (as replay does).
    let slices: Vec<&[u8]> = buf.split(|&b| b == b'\n').filter(|l| !l.is_empty()).collect();
    println!(
        "stream: {} records of scenario mixed, {:.0} bytes average, generated in {:.1?}",
        records.len(),
        buf.len() as f64 / records.len().max(1) as f64 - 1.0,
        t.elapsed()
    );
    let catalog = support::catalog(1_000_000);
    let n = records.len() as f64;

    if args.replay_only {
        for _ in 0..args.repeat {
            let (t, _) = timed(|| replay(&catalog, &buf, true));
            println!("(b) replay: {:>12.0} records/s on-CPU, {:>12.0} wall", n / t.cpu, n / t.wall);
        }
        return Ok(());
    }

    let phase = |p: char| args.only.contains(p);
    if phase('a') || phase('b') {
        replay_phases(&args, &catalog, &buf, &slices);
    }
    // Only (d) needs the stream from here on, as records.
    drop(slices);
    drop(buf);
    if !args.skip_kafka && (phase('c') || phase('d') || phase('l')) {
        kafka(&args, records)?;
    }
    if !args.skip_memory && phase('m') {
        let exe = std::env::current_exe()?;
        let out = std::process::Command::new(exe)
            .args(["--memory-child", "--open-joins", &args.open_joins.to_string()])
            .output()?;
        std::io::stdout().write_all(&out.stdout)?;
        std::io::stderr().write_all(&out.stderr)?;
    }
    println!("peak RSS of this process: {} MiB", read_status("VmHWM:") / 1024);
    Ok(())
}

/// (a) and (b), with the split of (b) by stage.
fn replay_phases(args: &Args, catalog: &Arc<Catalog>, buf: &[u8], slices: &[&[u8]]) {
    let n = slices.len() as f64;
    // (a) and (b), interleaved so drift on a shared machine hits both.
    // Each is timed on the wall clock and on this thread's CPU time (from
    // /proc/thread-self/schedstat): on a busy machine the CPU time is what
    // one core does, the wall time also counts waiting for a core.
    reset_peak_rss();
    let [mut a, mut b, mut v, mut j, mut l, mut r] = std::array::from_fn(|_| Best::default());
    let mut check = 0usize;
    let validator = Pipeline::new(Arc::new(Features::new(catalog.clone())), 0);
    for i in 0..args.repeat.max(1) {
        let (ta, x) = timed(|| slices.iter().fold(0usize, |acc, s| acc.wrapping_add(support::parse_only(s))));
        let (tb, rendered) = timed(|| replay(catalog, buf, true));
        // Stage split, for where the time goes: validation alone, and the
        // pipeline without an exporter.
        let (tv, y) = timed(|| {
            slices.iter().fold(0usize, |acc, s| acc.wrapping_add(validator.validate(s).map_or(0, |v| v.layer.index())))
        });
        let (tj, _) = timed(|| replay(catalog, buf, false));
        let (tl, _) = timed(|| replay_live(catalog, buf, 0));
        let (tr, _) = timed(|| replay_live(catalog, buf, 8 << 20));
        println!(
            "  run {}: (a) {:>9.0} records/s   (b) {:>9.0} records/s   on-CPU; wall {:.0} / {:.0}",
            i + 1,
            n / ta.cpu,
            n / tb.cpu,
            n / ta.wall,
            n / tb.wall
        );
        a.add(ta);
        b.add(tb);
        v.add(tv);
        j.add(tj);
        l.add(tl);
        r.add(tr);
        check = check.wrapping_add(x).wrapping_add(y).wrapping_add(rendered);
    }
    std::hint::black_box(check);
    let replay_peak = peak_rss_kib();
    let ns = |secs: f64| secs * 1e9 / n;
    println!("(a) parse-only baseline   {:>10.0} records/s on-CPU   ({:.0} wall)", n / a.cpu, n / a.wall);
    println!("(b) replay pipeline       {:>10.0} records/s on-CPU   ({:.0} wall)", n / b.cpu, n / b.wall);
    println!(
        "    b/a = {:.2} on-CPU   ({:.2} wall)   {:.0} ns/record vs {:.0} ns/record",
        a.cpu / b.cpu,
        a.wall / b.wall,
        ns(b.cpu),
        ns(a.cpu)
    );
    println!(
        "    split (on-CPU, best runs): decode+validate {:.0} ns, line split+join+judge {:.0} ns, metrics exporter {:.0} ns",
        ns(v.cpu),
        ns(j.cpu - v.cpu),
        ns(b.cpu - j.cpu)
    );
    println!(
        "    accord run's pipeline also feeds the live statistics (+{:.0} ns) and the 8 MiB sample ring (+{:.0} ns): {:.0} ns/record",
        ns(l.cpu - b.cpu),
        ns(r.cpu - l.cpu),
        ns(r.cpu)
    );
    println!("    peak RSS (a+b, stream held in memory): {} MiB", replay_peak / 1024);
}

/// (b): what `accord replay --format prometheus` does, on in-memory lines
/// (without `export`: the same pipeline with no observer, for the split).
/// Returns the rendered length.
fn replay(catalog: &Arc<Catalog>, buf: &[u8], export: bool) -> usize {
    let features = Arc::new(Features::new(catalog.clone()));
    // `replay_stream` reads in 1 MiB chunks and judges lines in place, as
    // `accord replay` does on a file: one copy per byte, like read(2).
    let reader = std::io::Cursor::new(buf);
    let mut pipeline = Pipeline::new(features.clone(), 0);
    if !export {
        replay_stream(reader, &mut pipeline, &mut NoObserver, "bench").expect("in-memory replay");
        return 0;
    }
    let metrics = Metrics::new(features).expect("metrics");
    let mut obs = metrics.observer();
    replay_stream(reader, &mut pipeline, &mut obs, "bench").expect("in-memory replay");
    metrics.render().len()
}

/// (b) plus what `accord run`'s pipeline adds per record: the live
/// statistics observer and (with `sample_bytes`) the divergence sample ring.
fn replay_live(catalog: &Arc<Catalog>, buf: &[u8], sample_bytes: usize) -> usize {
    let features = Arc::new(Features::new(catalog.clone()));
    // `replay_stream` reads in 1 MiB chunks and judges lines in place, as
    // `accord replay` does on a file: one copy per byte, like read(2).
    let reader = std::io::Cursor::new(buf);
    let mut pipeline = Pipeline::new(features.clone(), sample_bytes);
    let metrics = Metrics::new(features.clone()).expect("metrics");
    let live = accord::live::LiveView::new(features);
    let mut obs = (metrics.observer(), live.recorder());
    replay_stream(reader, &mut pipeline, &mut obs, "bench").expect("in-memory replay");
    live.apply(obs.1.take());
    metrics.render().len()
}

/// librdkafka's mock cluster keeps only the newest 5 MiB of each partition
/// (`rdkafka_mock.c`, `max_size`), so the backlog is spread over enough
/// partitions to stay under that.
const MOCK_PARTITION_BUDGET: usize = 4 << 20;

fn kafka(args: &Args, records: Vec<(String, String)>) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    let cluster = MockCluster::new(1)?;
    let n = records.len();
    let parts = backlog_partitions(&records, args.partitions);
    println!(
        "kafka: librdkafka mock cluster, {n} records in one topic of {parts} partitions (at least --partitions {}; \
         <= {} MiB each), all produced before the consumer starts",
        args.partitions,
        MOCK_PARTITION_BUDGET >> 20
    );
    let producer: ThreadedProducer<_> = ClientConfig::new()
        .set("bootstrap.servers", cluster.bootstrap_servers())
        .set("linger.ms", "5")
        .set("queue.buffering.max.messages", "1000000")
        .set("queue.buffering.max.kbytes", "1048576")
        .create()?;

    if args.only.contains('c') {
        bare_phase(&rt, &cluster, &producer, &records, parts)?;
    }
    let latency = args.only.contains('l');
    let mut max_rate = args.max_rate;
    if args.only.contains('d') || (latency && max_rate.is_none()) {
        if !args.only.contains('d') {
            println!("(l) needs the maximum load: running (d) first (or pass --max-rate)");
        }
        let rate = run_phase(&rt, &cluster, &producer, &records, parts)?;
        max_rate = max_rate.or(Some(rate));
    }
    drop(producer);
    // (l) generates its own load and holds it in memory.
    drop(records);
    if let (true, Some(max)) = (latency, max_rate) {
        if args.latency_bare {
            bare_latency_phase(args, &rt, &cluster, max)?;
        }
        latency_phase(args, &rt, &cluster, max)?;
    }
    drop(cluster);
    Ok(())
}

/// (d) accord run's service; prints and returns its records/s.
fn run_phase(
    rt: &tokio::runtime::Runtime,
    cluster: &MockCluster<'static, rdkafka::producer::DefaultProducerContext>,
    producer: &ThreadedProducer<rdkafka::producer::DefaultProducerContext>,
    records: &[(String, String)],
    parts: i32,
) -> anyhow::Result<f64> {
    let n = records.len();
    let topics = produce_backlog(cluster, producer, "decisions", records, parts)?;
    reset_peak_rss();
    let service = Service::new(support::catalog(1_000_000)).map_err(|e| anyhow::anyhow!("{e}"))?;
    let status = service.status.clone();
    let open_joins = service.metrics.open_joins.clone();
    let metrics_for_debug = service.metrics.clone();
    let cancel = CancellationToken::new();
    for t in accord::source::kafka::internal_topic_names("throughput-accord") {
        let _ = cluster.create_topic(&t, 1, 1);
    }
    let topic_names: Vec<&str> = topics.iter().map(String::as_str).collect();
    let kafka = KafkaConfig {
        properties: kafka_properties(),
        sample_bytes: 8 << 20,
        ..KafkaConfig::new(&cluster.bootstrap_servers(), &topic_names, "throughput-accord")
    };
    let run = rt.block_on(async {
        let listener = Service::bind("127.0.0.1:0".parse()?).await.map_err(|e| anyhow::anyhow!("{e}"))?;
        anyhow::Ok(tokio::spawn(service.run(kafka, listener, cancel.clone())))
    })?;
    let (d_secs, d_cpu) = rt.block_on(drain(n as u64, &|| status.records.load(Ordering::Relaxed)))?;
    let d_peak = peak_rss_kib();
    println!(
        "(d) accord run pipeline   {:>12.0} records/s   (peak RSS {} MiB, {} joins open at the end)",
        n as f64 / d_secs,
        d_peak / 1024,
        open_joins.get()
    );
    d_cpu.print(n);
    if VERBOSE.load(Ordering::Relaxed) {
        for l in metrics_for_debug
            .render()
            .lines()
            .filter(|l| l.starts_with("accord_kafka") || l.starts_with("accord_ready"))
        {
            eprintln!("{l}");
        }
    }
    let c_secs = f64::from_bits(BARE_SECS.load(Ordering::Relaxed));
    if c_secs > 0.0 {
        println!("    d/c = {:.2}", c_secs / d_secs);
    }
    cancel.cancel();
    rt.block_on(async { tokio::time::timeout(Duration::from_secs(30), run).await })
        .map_err(|_| anyhow::anyhow!("accord run did not stop"))???;
    Ok(n as f64 / d_secs)
}

/// (c): the bare consume loop over the backlog; prints and returns
/// (records/s, CPU).
fn bare_phase(
    rt: &tokio::runtime::Runtime,
    cluster: &MockCluster<'static, rdkafka::producer::DefaultProducerContext>,
    producer: &ThreadedProducer<rdkafka::producer::DefaultProducerContext>,
    records: &[(String, String)],
    parts: i32,
) -> anyhow::Result<()> {
    let n = records.len();
    let topics = produce_backlog(cluster, producer, "bare", records, parts)?;
    reset_peak_rss();
    let counter = Arc::new(AtomicU64::new(0));
    let cancel = CancellationToken::new();
    let task = rt.spawn(bare_consume(cluster.bootstrap_servers(), topics, counter.clone(), cancel.clone()));
    let (secs, cpu) = rt.block_on(drain(n as u64, &|| counter.load(Ordering::Relaxed)))?;
    cancel.cancel();
    rt.block_on(task)??;
    println!(
        "(c) bare consume loop     {:>12.0} records/s   (peak RSS {} MiB)",
        n as f64 / secs,
        peak_rss_kib() / 1024
    );
    cpu.print(n);
    BARE_SECS.store(secs.to_bits(), Ordering::Relaxed);
    Ok(())
}

static VERBOSE: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
static BARE_WORK_NS: AtomicU64 = AtomicU64::new(0);
static KAFKA_PROPERTIES: std::sync::OnceLock<Vec<(String, String)>> = std::sync::OnceLock::new();

fn kafka_properties() -> Vec<(String, String)> {
    KAFKA_PROPERTIES.get().cloned().unwrap_or_default()
}

fn parse_kv(s: &str) -> Result<(String, String), String> {
    s.split_once('=').map(|(k, v)| (k.to_string(), v.to_string())).ok_or_else(|| format!("{s:?} is not KEY=VALUE"))
}

/// Seconds of (c), for d/c.
static BARE_SECS: AtomicU64 = AtomicU64::new(0);

/// The partition of a record: by key, so a request's records share one.
fn partition_of(key: &str, parts: i32) -> i32 {
    (accord::judge::text_hash(key) % parts as u64) as i32
}

/// The partitions the backlog needs (at least `min`) so that none holds
/// more than the mock cluster keeps.
fn backlog_partitions(records: &[(String, String)], min: i32) -> i32 {
    let mut parts = min.max(1);
    loop {
        let mut bytes = vec![0usize; parts as usize];
        for (key, json) in records {
            bytes[partition_of(key, parts) as usize] += json.len() + 70; // record overhead in a batch
        }
        if bytes.iter().all(|&b| b <= MOCK_PARTITION_BUDGET) {
            return parts;
        }
        parts = (parts * 5 / 4).max(parts + 1);
    }
}

/// Produces the whole stream to `topic` (`parts` partitions, keyed so a
/// request's records share one) before any consumer starts, so what (c)
/// and (d) time is draining a backlog: no consumer ever waits for the
/// producer. (Producing while consuming would time the producer, or, with
/// the clock started after the producer's flush, only the tail.)
fn produce_backlog(
    cluster: &MockCluster<'static, rdkafka::producer::DefaultProducerContext>,
    producer: &ThreadedProducer<rdkafka::producer::DefaultProducerContext>,
    topic: &str,
    records: &[(String, String)],
    parts: i32,
) -> anyhow::Result<Vec<String>> {
    cluster.create_topic(topic, parts, 1)?;
    for (key, json) in records {
        let mut rec = BaseRecord::<str, str>::to(topic).key(key).payload(json).partition(partition_of(key, parts));
        while let Err((_, back)) = producer.send(rec) {
            rec = back;
            std::thread::sleep(Duration::from_millis(2));
        }
    }
    producer.flush(Duration::from_secs(120))?;
    Ok(vec![topic.to_string()])
}

/// Waits until `consumed()` reaches `n`; returns the seconds from the first
/// record consumed to the last (group join and first fetch not counted)
/// and the threads' CPU time over the same interval.
async fn drain(n: u64, consumed: &(dyn Fn() -> u64 + Sync)) -> anyhow::Result<(f64, Threads)> {
    let deadline = Instant::now() + Duration::from_secs(300);
    let mut first = None;
    let mut before_cpu = None;
    let mut cpu = Threads::default();
    let mut last_seen = (0, Instant::now());
    loop {
        let c = consumed();
        if c > 0 && first.is_none() {
            first = Some(Instant::now());
            before_cpu = Some(thread_cpu());
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
    let took = first.map_or(0.0, |t| t.elapsed().as_secs_f64());
    if let Some(b) = before_cpu {
        cpu.add_delta(&b, &thread_cpu());
    }
    Ok((took, cpu))
}

/// The consumer settings `accord run` uses that bear on fetching.
fn consumer_config(brokers: &str, group: &str) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", brokers)
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", "earliest")
        .set("session.timeout.ms", "6000")
        .set("heartbeat.interval.ms", "1000")
        .set("queued.max.messages.kbytes", "16384")
        // As accord sets it (src/source/kafka.rs): no 1 s fetch pauses.
        .set("fetch.queue.backoff.ms", "10")
        .set("enable.partition.eof", "true")
        .set("statistics.interval.ms", "5000")
        .set("partition.assignment.strategy", "range,roundrobin");
    for (k, v) in kafka_properties() {
        c.set(k, v);
    }
    c
}

/// (c): `StreamConsumer::recv` in a loop, touching each payload.
async fn bare_consume(
    brokers: String,
    topics: Vec<String>,
    counter: Arc<AtomicU64>,
    cancel: CancellationToken,
) -> anyhow::Result<u64> {
    let consumer: StreamConsumer = consumer_config(&brokers, "throughput-bare").create()?;
    let topics: Vec<&str> = topics.iter().map(String::as_str).collect();
    consumer.subscribe(&topics)?;
    let mut touched = 0u64;
    let burn_ns = u128::from(BARE_WORK_NS.load(Ordering::Relaxed));
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

/// Memory per open join: requests that never complete (only their
/// frontend record arrives, every event time equal, so no window closes),
/// RSS before and after.
fn memory_child(open: usize) -> anyhow::Result<()> {
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
    let rss0 = read_status("VmRSS:");
    let mut at_200k = None;
    let t = Instant::now();
    for i in 0..cap {
        rec(&mut line, i);
        let _ =
            pipeline.ingest(line.as_bytes(), accord::join::Position::new(0, i as u64 + 1), support::BASE_MS, &mut obs);
        if i + 1 == 200_000 {
            at_200k = Some(read_status("VmRSS:"));
        }
    }
    let rss1 = read_status("VmRSS:");
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

/// On-CPU nanoseconds of this process's threads, by thread name (digits
/// dropped, so librdkafka's broker threads and tokio's workers group).
fn thread_cpu() -> std::collections::BTreeMap<(u64, String), u64> {
    thread_sched(0)
}

/// Nanoseconds each thread of this process spent runnable but waiting
/// for a core (the run queue), keyed like `thread_cpu`.
fn thread_waited() -> std::collections::BTreeMap<(u64, String), u64> {
    thread_sched(1)
}

/// Field `field` of each thread's `schedstat`: 0 on-CPU ns, 1 run-queue ns.
fn thread_sched(field: usize) -> std::collections::BTreeMap<(u64, String), u64> {
    let mut out = std::collections::BTreeMap::new();
    let Ok(dir) = std::fs::read_dir("/proc/self/task") else { return out };
    for e in dir.flatten() {
        let tid: u64 = e.file_name().to_string_lossy().parse().unwrap_or(0);
        let comm = std::fs::read_to_string(e.path().join("comm")).unwrap_or_default();
        let ns = std::fs::read_to_string(e.path().join("schedstat"))
            .ok()
            .and_then(|s| s.split_whitespace().nth(field).and_then(|v| v.parse().ok()))
            .unwrap_or(0);
        out.insert((tid, comm.trim().trim_end_matches(|c: char| c.is_ascii_digit()).to_string()), ns);
    }
    out
}

/// CPU seconds by thread group, summed over the consumption windows.
#[derive(Default)]
struct Threads(std::collections::BTreeMap<String, f64>);

impl Threads {
    fn add_delta(
        &mut self,
        before: &std::collections::BTreeMap<(u64, String), u64>,
        after: &std::collections::BTreeMap<(u64, String), u64>,
    ) {
        for (k, &ns) in after {
            let d = ns.saturating_sub(before.get(k).copied().unwrap_or(0));
            *self.0.entry(k.1.clone()).or_default() += d as f64 / 1e9;
        }
    }

    /// Cores used by each thread group over `secs` of wall time.
    fn print_cores(&self, secs: f64) {
        let total: f64 = self.0.values().sum();
        let mut by: Vec<_> = self.0.iter().filter(|(_, &v)| v >= total * 0.01).collect();
        by.sort_by(|a, b| b.1.total_cmp(a.1));
        let parts: Vec<String> = by.iter().map(|(k, v)| format!("{k} {:.2}", *v / secs)).collect();
        println!("    CPU during the load: {:.2} cores in all threads ({})", total / secs, parts.join(", "));
    }

    fn print(&self, n: usize) {
        let total: f64 = self.0.values().sum();
        let mut by: Vec<_> = self.0.iter().filter(|(_, &v)| v >= total * 0.01).collect();
        by.sort_by(|a, b| b.1.total_cmp(a.1));
        let parts: Vec<String> = by.iter().map(|(k, v)| format!("{k} {:.0}", *v * 1e9 / n as f64)).collect();
        println!(
            "    CPU while consuming: {:.0} ns/record in all threads ({})",
            total * 1e9 / n as f64,
            parts.join(", ")
        );
    }
}

/// Wall and on-CPU seconds of one measurement.
#[derive(Clone, Copy)]
struct Secs {
    wall: f64,
    cpu: f64,
}

/// The best (smallest) of several measurements, each clock on its own.
struct Best {
    wall: f64,
    cpu: f64,
}

impl Default for Best {
    fn default() -> Self {
        Best { wall: f64::MAX, cpu: f64::MAX }
    }
}

impl Best {
    fn add(&mut self, t: Secs) {
        self.wall = self.wall.min(t.wall);
        self.cpu = self.cpu.min(t.cpu);
    }
}

fn timed<T>(f: impl FnOnce() -> T) -> (Secs, T) {
    let (c0, t0) = (thread_cpu_ns(), Instant::now());
    let out = f();
    let wall = t0.elapsed().as_secs_f64();
    let cpu = thread_cpu_ns().saturating_sub(c0) as f64 / 1e9;
    // Without schedstat, fall back to the wall clock.
    (Secs { wall, cpu: if cpu > 0.0 { cpu } else { wall } }, out)
}

/// This thread's time on a CPU, in nanoseconds (0 if unavailable).
fn thread_cpu_ns() -> u64 {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()
        .and_then(|s| s.split_whitespace().next().and_then(|v| v.parse().ok()))
        .unwrap_or(0)
}

fn read_status(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(field))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

/// Resets VmHWM to the current RSS where the kernel allows it, so each
/// phase reports its own peak.
fn reset_peak_rss() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

fn peak_rss_kib() -> u64 {
    read_status("VmHWM:")
}

fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into())
}

fn build_kind() -> &'static str {
    if cfg!(debug_assertions) {
        "DEBUG: figures are meaningless, use --release"
    } else {
        "release"
    }
}

// ---------------------------------------------------------------------------
// (l) verdict latency (issue 7: "a request whose last expected layer arrives
// is judged and visible in /metrics within 100 ms (p99) under 50% of the
// measured maximum load").

/// The load: the simulator's `mixed` scenario, paced to the wall clock
/// (event times are the wall clock, so the watermark treats it as live),
/// plus *probe* requests whose four layers all report, so each closes the
/// moment its last record is consumed (SPEC §4 close (a)). Probe `k` goes
/// to partition `k % P` with feature `latency.p{k % P}` (a copy of
/// `checkout_v2`): within one partition records are judged in offset
/// order, so the `j`-th probe of partition `p` is judged exactly when
/// `accord_requests_total{feature="latency.p{p}"}` (summed over path and
/// verdict) reaches `j` (plus what was there before). No approximation
/// across partitions is needed.
///
/// Start: the delivery report of the probe's last record (the broker has
/// it: "arrives"); also reported from the `send()` call (adds `linger.ms`).
/// End: the first `/metrics` scrape over HTTP that counts the verdict, at
/// the instant its response was read. That is an upper bound: the verdict
/// became visible after the previous scrape was sent, so the lower bound is
/// up to one scrape interval plus one scrape's duration smaller. The
/// delivery report comes back after the broker appended the record, so
/// the lower bound can be negative.
///
/// The load is produced from memory (generated beforehand, ~310 bytes per
/// record for warm-up + measured seconds), so generating it costs no CPU
/// during the measurement; sending it, the mock broker and librdkafka's
/// threads do, on the same cores as accord (reported). The first
/// `--latency-warmup` seconds are not measured: requests in flight reach
/// their steady number. Joins that wait for their window (30 s) and the
/// remembered closed keys (2 x window) keep growing through the whole run,
/// so accord's tables grow meanwhile (as after any start or rebalance).
///
/// The mock broker differs from Kafka in two ways that matter here: it
/// answers an empty fetch only after `fetch.wait.max.ms` (hence
/// `--latency-fetch-wait-ms`), and it keeps only 5 MiB per partition, so a
/// consumer that falls a few hundred milliseconds behind loses records
/// (detected and reported).
fn latency_phase(
    args: &Args,
    rt: &tokio::runtime::Runtime,
    cluster: &MockCluster<'static, rdkafka::producer::DefaultProducerContext>,
    max_rate: f64,
) -> anyhow::Result<()> {
    let LoadPlan { parts, secs, warmup, probe_rate, mixed_rate, cap } = LoadPlan::new(args, max_rate);
    let topic = "latency";
    cluster.create_topic(topic, parts, 1)?;

    let service = Service::new(latency_catalog(parts)?).map_err(|e| anyhow::anyhow!("{e}"))?;
    let status = service.status.clone();
    let (properties, fetch_wait) = latency_properties(args);
    let cancel = CancellationToken::new();
    for t in accord::source::kafka::internal_topic_names("throughput-latency") {
        let _ = cluster.create_topic(&t, 1, 1);
    }
    let kafka = KafkaConfig {
        properties,
        sample_bytes: 8 << 20,
        ..KafkaConfig::new(&cluster.bootstrap_servers(), &[topic], "throughput-latency")
    };
    let (run, addr) = rt.block_on(async {
        let listener = Service::bind("127.0.0.1:0".parse()?).await.map_err(|e| anyhow::anyhow!("{e}"))?;
        let addr = listener.local_addr()?;
        anyhow::Ok((tokio::spawn(service.run(kafka, listener, cancel.clone())), addr))
    })?;

    let t0 = Instant::now();
    let acks = Arc::new(Acks::new(t0, cap));
    let producer = load_producer(args, cluster, &acks)?;

    // Ready, and consuming: one untracked probe per partition, visible.
    let mut scraper = Scraper::new(addr, parts as usize);
    let deadline = Instant::now() + Duration::from_secs(60);
    while !status.ready() {
        anyhow::ensure!(Instant::now() < deadline, "(l): accord run did not get its partitions within 60 s");
        std::thread::sleep(Duration::from_millis(10));
    }
    send_warmup_probes(&producer, topic, parts);
    loop {
        let (counts, _) = scraper.scrape()?;
        if counts.iter().all(|&c| c >= 1) {
            break;
        }
        anyhow::ensure!(Instant::now() < deadline, "(l): warm-up requests not visible in /metrics within 60 s");
        std::thread::sleep(Duration::from_millis(10));
    }
    let (base, body_len) = scraper.scrape()?;
    let consumed_before = status.records.load(Ordering::Relaxed);
    // What one scrape costs with nothing else running.
    let idle_scrape = {
        let t = Instant::now();
        for _ in 0..50 {
            scraper.scrape()?;
        }
        t.elapsed().as_secs_f64() * 1000.0 / 50.0
    };

    // Load and scrapes.
    let mixed = mixed_load(warmup + secs, mixed_rate, parts, args.seed);
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let latest: Arc<Vec<AtomicU64>> = Arc::new(base.iter().map(|&c| AtomicU64::new(c)).collect());
    let interval = Duration::from_secs_f64(args.scrape_ms.max(0.05) / 1000.0);
    let scrape_thread = {
        let (stop, latest) = (stop.clone(), latest.clone());
        std::thread::Builder::new().name("scraper".into()).spawn(move || -> anyhow::Result<(Vec<Scrape>, i64)> {
            let mut out = Vec::with_capacity(1 << 16);
            let mut peak_open = 0i64;
            let mut next = Instant::now();
            while !stop.load(Ordering::Relaxed) {
                let sent = t0.elapsed().as_nanos() as u64;
                let (counts, open, _) = scraper.scrape_all()?;
                let got = t0.elapsed().as_nanos() as u64;
                peak_open = peak_open.max(open);
                for (l, &c) in latest.iter().zip(&counts) {
                    l.store(c, Ordering::Relaxed);
                }
                out.push(Scrape { sent, got, counts });
                next += interval;
                let now = Instant::now();
                if next > now {
                    std::thread::sleep(next - now);
                } else {
                    next = now;
                }
            }
            Ok((out, peak_open))
        })?
    };
    let run_l = run_load(&producer, topic, parts, (warmup, secs), mixed, probe_rate, cap, t0)?;
    let load = &run_l.load;
    let load_secs = load.secs;
    // Every probe visible, or 10 s.
    let _ = producer.flush(Duration::from_secs(10));
    let deadline = Instant::now() + Duration::from_secs(10);
    let expected: Vec<u64> = (0..parts as u64)
        .map(|p| base[p as usize] + (load.probes as u64 + parts as u64 - 1 - p) / parts as u64)
        .collect();
    while Instant::now() < deadline && latest.iter().zip(&expected).any(|(l, &e)| l.load(Ordering::Relaxed) < e) {
        std::thread::sleep(Duration::from_millis(5));
    }
    std::thread::sleep(interval * 2);
    let consumed = status.records.load(Ordering::Relaxed) - consumed_before;
    stop.store(true, Ordering::Relaxed);
    let (scrapes, peak_open) = scrape_thread.join().map_err(|_| anyhow::anyhow!("(l): scraper thread panicked"))??;
    cancel.cancel();
    rt.block_on(async { tokio::time::timeout(Duration::from_secs(30), run).await })
        .map_err(|_| anyhow::anyhow!("accord run did not stop"))???;

    // Latencies.
    let mut from_ack = Vec::with_capacity(load.probes);
    let mut from_send = Vec::with_capacity(load.probes);
    let mut lower = Vec::with_capacity(load.probes);
    let (mut unacked, mut invisible) = (0usize, 0usize);
    // (seconds into the load, latency) of every measured probe, in order.
    let mut series: Vec<(f64, f64)> = Vec::with_capacity(load.probes);
    let idx: Vec<Vec<u64>> = (0..parts as usize).map(|p| scrapes.iter().map(|s| s.counts[p]).collect()).collect();
    for k in 0..load.probes {
        let p = k % parts as usize;
        let need = base[p] + (k / parts as usize) as u64 + 1;
        let s = idx[p].partition_point(|&c| c < need);
        if s == scrapes.len() {
            invisible += 1;
            continue;
        }
        let acked = acks.at[k].load(Ordering::Relaxed);
        if acked == 0 || acked == u64::MAX {
            unacked += 1;
            continue;
        }
        let ms = |from: u64, to: u64| (to as f64 - from as f64) / 1e6;
        let l = ms(acked, scrapes[s].got);
        from_ack.push(l);
        from_send.push(ms(load.sent[k], scrapes[s].got));
        lower.push(ms(acked, if s > 0 { scrapes[s - 1].sent } else { scrapes[s].sent }));
        series.push((load.sent[k].saturating_sub(load.start) as f64 / 1e9, l));
    }
    let over = from_ack.iter().filter(|&&l| l > 100.0).count();
    let gaps: Vec<f64> = scrapes.windows(2).map(|w| (w[1].sent - w[0].sent) as f64 / 1e6).collect();
    let took: Vec<f64> = scrapes.iter().map(|s| (s.got - s.sent) as f64 / 1e6).collect();
    let achieved = load.records as f64 / load_secs;
    println!(
        "(l) verdict latency: load {:.0} records/s = {:.1}% of the maximum {:.0} records/s ({:.0}% asked), {:.1} s, {} partitions",
        achieved,
        100.0 * achieved / max_rate,
        max_rate,
        100.0 * args.latency_load,
        load_secs,
        parts
    );
    println!(
        "    {} records: {} of scenario mixed (wall-clock event times) + {} probe requests x 4 records (all layers report)",
        load.records,
        load.records - 4 * load.probes as u64,
        load.probes
    );
    println!(
        "    up to {peak_open} joins open (the requests in flight: each spreads its layers over up to 10 s of wall clock)"
    );
    println!(
        "    producer linger.ms={}; accord's consumer fetch.wait.max.ms={} (mock broker: see --latency-fetch-wait-ms); event times trail the wall clock by {} ms at the start",
        args.latency_linger_ms, fetch_wait, load.event_time_lag_ms
    );
    println!(
        "    /metrics over HTTP ({} KiB, {:.2} ms per scrape without load): {} scrapes, every {:.2} ms on average (asked {:.2}; p99 gap {:.2} ms, max {:.2}), one scrape takes {:.2} ms (p99 {:.2})",
        body_len / 1024,
        idle_scrape,
        scrapes.len(),
        mean(&gaps),
        args.scrape_ms,
        pct(&gaps, 99.0),
        pct(&gaps, 100.0),
        mean(&took),
        pct(&took, 99.0)
    );
    println!(
        "    latency in ms, last layer acknowledged by the broker -> first scrape counting the verdict (upper bound):"
    );
    print_latency("ack -> visible", &mut from_ack);
    print_latency("send() -> visible", &mut from_send);
    print_latency("lower bound", &mut lower);
    println!(
        "    {} requests > 100 ms ({:.3}%), {} never visible within 10 s of the end, {} without a delivery report",
        over,
        100.0 * over as f64 / from_ack.len().max(1) as f64,
        invisible,
        unacked
    );
    if consumed < load.records || invisible > 0 {
        println!(
            "    WARNING: accord consumed {} of the {} records produced: the mock broker keeps only the newest 5 MiB of \
             a partition (~{:.0} ms at this rate), and a consumer further behind loses records, so the figures above \
             are not meaningful (later probes of a partition with a lost one are matched to later verdicts)",
            consumed,
            load.records,
            (5u64 << 20) as f64 * parts as f64 / (achieved * 290.0) * 1e3
        );
    }
    println!(
        "    (lower bound: from the previous scrape's request, which did not count it: the verdict became visible in between)"
    );
    run_l.print();
    if VERBOSE.load(Ordering::Relaxed) {
        print_timeline(&series);
    }
    Ok(())
}

/// A load run and what the machine did meanwhile.
struct LoadRun {
    load: Load,
    /// On-CPU and run-queue seconds per thread group of this process.
    cpu: Threads,
    waited: Threads,
    /// Busy CPU seconds of the whole machine.
    machine: f64,
}

/// Runs `produce_load` on its own thread, with CPU accounting over the
/// measured part.
#[allow(clippy::too_many_arguments)]
fn run_load(
    producer: &ThreadedProducer<AckClock>,
    topic: &str,
    parts: i32,
    times: (f64, f64),
    mixed: (Pregen, i64),
    probe_rate: f64,
    cap: usize,
    t0: Instant,
) -> anyhow::Result<LoadRun> {
    let mut load = std::thread::scope(|s| {
        std::thread::Builder::new()
            .name("load".into())
            .spawn_scoped(s, || produce_load(producer, topic, parts, times, mixed, probe_rate, cap, t0))?
            .join()
            .map_err(|_| anyhow::anyhow!("(l): producer thread panicked"))
    })?;
    let (Some(before), Some(after)) = (load.before.take(), load.after.take()) else {
        anyhow::bail!("(l): the load never got past its warm-up");
    };
    let mut cpu = Threads::default();
    cpu.add_delta(&before.cpu, &after.cpu);
    // Not the load thread's own share of the process total: its own clock.
    cpu.0.retain(|k, _| k != "load");
    cpu.0.insert("load producer".into(), load.cpu_ns as f64 / 1e9);
    let mut waited = Threads::default();
    waited.add_delta(&before.waited, &after.waited);
    Ok(LoadRun { load, cpu, waited, machine: after.machine - before.machine })
}

impl LoadRun {
    fn print(&self) {
        let secs = self.load.secs;
        self.cpu.print_cores(secs);
        self.cpu.print(self.load.records as usize);
        let mut w: Vec<_> = self.waited.0.iter().filter(|(_, &v)| v / secs >= 0.01).collect();
        w.sort_by(|a, b| b.1.total_cmp(a.1));
        let w: Vec<String> = w.iter().map(|(k, v)| format!("{k} {:.2}", *v / secs)).collect();
        println!(
            "    runnable but waiting for a core (s per s): {}",
            if w.is_empty() { "-".into() } else { w.join(", ") }
        );
        let ours: f64 = self.cpu.0.values().sum::<f64>() / secs;
        let busy = self.machine / secs;
        println!(
            "    machine during the load: {:.2} of {} cores busy, {:.2} of them by other processes{}",
            busy,
            std::thread::available_parallelism().map_or(0, |n| n.get()),
            (busy - ours).max(0.0),
            if busy - ours > 0.2 {
                " (or kernel work not charged to a thread; above 0.2: not a quiet machine)"
            } else {
                ""
            }
        );
    }
}

/// Busy CPU seconds of the whole machine so far (`/proc/stat`), or 0.
fn machine_busy_secs() -> f64 {
    let Ok(stat) = std::fs::read_to_string("/proc/stat") else { return 0.0 };
    let Some(cpu) = stat.lines().next() else { return 0.0 };
    let v: Vec<u64> = cpu.split_whitespace().skip(1).filter_map(|x| x.parse().ok()).collect();
    // user nice system idle iowait irq softirq steal guest...: guest
    // time is already in user, steal is not this guest's.
    let busy: u64 = [0, 1, 2, 5, 6].iter().filter_map(|&i| v.get(i)).sum();
    // USER_HZ is 100 on Linux.
    busy as f64 / 100.0
}

/// Per second of the load, the probes' worst latency, and the stretches
/// of probes over 50 ms.
fn print_timeline(series: &[(f64, f64)]) {
    let secs = series.last().map_or(0, |s| s.0 as usize + 1);
    let mut worst = vec![(0.0f64, 0usize); secs];
    for &(t, l) in series {
        let w = &mut worst[t as usize];
        w.0 = w.0.max(l);
        w.1 += 1;
    }
    let line: Vec<String> = worst.iter().map(|w| format!("{:.0}", w.0)).collect();
    eprintln!("    worst latency (ms) per second of the load: {}", line.join(" "));
    // Stretches of probes over 50 ms, merged while less than 200 ms apart.
    let mut stretches: Vec<(f64, f64, f64, usize)> = Vec::new();
    for &(t, l) in series.iter().filter(|s| s.1 > 50.0) {
        match stretches.last_mut() {
            Some(s) if t - s.1 < 0.2 => {
                s.1 = t;
                s.2 = s.2.max(l);
                s.3 += 1;
            }
            _ => stretches.push((t, t, l, 1)),
        }
    }
    for (from, to, worst, n) in stretches {
        eprintln!("    over 50 ms: {n:>5} probes sent from {from:>7.3} s to {to:>7.3} s, worst {worst:>6.1} ms");
    }
}

/// The consumer properties of (l): `--kafka-property`, plus
/// `fetch.wait.max.ms` from `--latency-fetch-wait-ms` unless set there.
/// Also returns the effective `fetch.wait.max.ms`, for the report.
fn latency_properties(args: &Args) -> (Vec<(String, String)>, String) {
    let mut properties = kafka_properties();
    if args.latency_fetch_wait_ms > 0 && !properties.iter().any(|(k, _)| k == "fetch.wait.max.ms") {
        properties.push(("fetch.wait.max.ms".into(), args.latency_fetch_wait_ms.to_string()));
    }
    let fetch_wait = properties
        .iter()
        .rev()
        .find(|(k, _)| k == "fetch.wait.max.ms")
        .map_or_else(|| "500 (librdkafka default)".to_string(), |(_, v)| v.clone());
    (properties, fetch_wait)
}

/// What both (l) phases derive from the arguments.
struct LoadPlan {
    parts: i32,
    secs: f64,
    warmup: f64,
    probe_rate: f64,
    /// Records/s of the `mixed` scenario: the load minus the probes'.
    mixed_rate: f64,
    /// Probe slots: every probe that the measured seconds can send.
    cap: usize,
}

impl LoadPlan {
    fn new(args: &Args, max_rate: f64) -> Self {
        let secs = args.latency_secs.max(1.0);
        let probe_rate = args.probes_per_sec.max(1.0);
        LoadPlan {
            parts: args.partitions.max(1),
            secs,
            warmup: args.latency_warmup.max(0.0),
            probe_rate,
            mixed_rate: (max_rate * args.latency_load - probe_rate * 4.0).max(0.0),
            cap: (probe_rate * secs).ceil() as usize + 16,
        }
    }
}

/// The load's producer; its delivery reports stamp `acks`.
fn load_producer(
    args: &Args,
    cluster: &MockCluster<'static, rdkafka::producer::DefaultProducerContext>,
    acks: &Arc<Acks>,
) -> anyhow::Result<ThreadedProducer<AckClock>> {
    Ok(ClientConfig::new()
        .set("bootstrap.servers", cluster.bootstrap_servers())
        .set("linger.ms", args.latency_linger_ms.to_string())
        .set("queue.buffering.max.messages", "1000000")
        .set("queue.buffering.max.kbytes", "1048576")
        .create_with_context(AckClock(acks.clone()))?)
}

/// One untracked probe request per partition, before the load.
fn send_warmup_probes(producer: &ThreadedProducer<AckClock>, topic: &str, parts: i32) {
    let now_ms = chrono::Utc::now().timestamp_millis();
    for p in 0..parts {
        let k = u64::MAX - p as u64;
        for json in &probe_records(k, p, 0, now_ms) {
            send_paced(producer, topic, &format!("probe-{k:016x}"), json, p, 0);
        }
    }
}

/// (l) without accord: the bare consume loop of (c), with the same fetch
/// settings, under the same load; each probe is timed from its last
/// record's delivery report to that record leaving `recv()`.
fn bare_latency_phase(
    args: &Args,
    rt: &tokio::runtime::Runtime,
    cluster: &MockCluster<'static, rdkafka::producer::DefaultProducerContext>,
    max_rate: f64,
) -> anyhow::Result<()> {
    let LoadPlan { parts, secs, warmup, probe_rate, mixed_rate, cap } = LoadPlan::new(args, max_rate);
    let topic = "latency-bare";
    cluster.create_topic(topic, parts, 1)?;
    let t0 = Instant::now();
    let acks = Arc::new(Acks::new(t0, cap));
    let seen = Arc::new(Acks::new(t0, cap));
    let producer = load_producer(args, cluster, &acks)?;
    let (properties, _) = latency_properties(args);
    let mut config = consumer_config(&cluster.bootstrap_servers(), "throughput-bare-latency");
    for (k, v) in &properties {
        config.set(k, v);
    }
    // A StreamConsumer must be created inside the runtime.
    let consumer: StreamConsumer = {
        let _guard = rt.enter();
        config.create()?
    };
    consumer.subscribe(&[topic])?;
    let count = Arc::new(AtomicU64::new(0));
    let cancel = CancellationToken::new();
    let task = {
        let (seen, count, cancel) = (seen.clone(), count.clone(), cancel.clone());
        rt.spawn(async move {
            loop {
                tokio::select! {
                    biased;
                    _ = cancel.cancelled() => break,
                    m = consumer.recv() => {
                        let m = match m {
                            Ok(m) => m,
                            Err(rdkafka::error::KafkaError::PartitionEOF(_)) => continue,
                            Err(e) => return Err(anyhow::Error::from(e)),
                        };
                        let p = m.payload().unwrap_or(&[]);
                        if let Some(k) = probe_last_record(p) {
                            if let Some(slot) = seen.at.get(k) {
                                slot.store(seen.t0.elapsed().as_nanos() as u64, Ordering::Relaxed);
                            }
                        }
                        count.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
            consumer.unsubscribe();
            anyhow::Ok(())
        })
    };
    // Warm-up: one untracked probe per partition, consumed.
    send_warmup_probes(&producer, topic, parts);
    let deadline = Instant::now() + Duration::from_secs(60);
    while count.load(Ordering::Relaxed) < 4 * parts as u64 {
        anyhow::ensure!(Instant::now() < deadline, "(l) bare: warm-up records not consumed within 60 s");
        std::thread::sleep(Duration::from_millis(10));
    }
    let mixed = mixed_load(warmup + secs, mixed_rate, parts, args.seed);
    let run_l = run_load(&producer, topic, parts, (warmup, secs), mixed, probe_rate, cap, t0)?;
    let load = &run_l.load;
    let _ = producer.flush(Duration::from_secs(10));
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline && (0..load.probes).any(|k| seen.at[k].load(Ordering::Relaxed) == 0) {
        std::thread::sleep(Duration::from_millis(5));
    }
    cancel.cancel();
    rt.block_on(task)??;
    let mut lat = Vec::with_capacity(load.probes);
    let mut lost = 0usize;
    for k in 0..load.probes {
        let (a, s) = (acks.at[k].load(Ordering::Relaxed), seen.at[k].load(Ordering::Relaxed));
        if a == 0 || a == u64::MAX || s == 0 {
            lost += 1;
            continue;
        }
        lat.push((s as f64 - a as f64) / 1e6);
    }
    let achieved = load.records as f64 / load.secs;
    println!(
        "(l) baseline: bare consume loop under the same load: {:.0} records/s ({:.1}% of {:.0}), {:.1} s",
        achieved,
        100.0 * achieved / max_rate,
        max_rate,
        load.secs
    );
    println!("    latency in ms, last layer acknowledged by the broker -> consumed by the bare loop:");
    print_latency("ack -> consumed", &mut lat);
    println!("    {lost} requests never consumed (or not acknowledged) within 10 s of the end");
    run_l.print();
    Ok(())
}

/// The probe number `k` of a probe's last (analytics) record.
fn probe_last_record(payload: &[u8]) -> Option<usize> {
    let rest = payload.strip_prefix(br#"{"request_id":"probe-"#)?;
    let hex = std::str::from_utf8(rest.get(..16)?).ok()?;
    let tail = rest.get(16..)?;
    if !tail.starts_with(br#"","layer":"analytics""#) {
        return None;
    }
    usize::from_str_radix(hex, 16).ok()
}

/// The bench catalog plus one probe feature per partition (a copy of
/// `checkout_v2`).
fn latency_catalog(parts: i32) -> anyhow::Result<Arc<Catalog>> {
    let mut text = support::catalog_text(1_000_000);
    for p in 0..parts {
        text.push_str(&format!(
            r#"
[[feature]]
key = "latency.p{p}"
owner = "bench"
class = "state-machine"
expires = "2027-01-31"
expect = ["frontend", "api", "worker", "analytics"]
new_flow = "v2"
new_capability = "v2"
new_payload_version = "2"
"#
        ));
    }
    Ok(Arc::new(Catalog::parse(std::path::Path::new("latency.toml"), &text).map_err(|e| anyhow::anyhow!("{e}"))?))
}

/// The four records of probe `k` (frontend, api, worker, analytics, the
/// last one last), event time `ts_ms`. `kind` varies the verdict: agree on
/// the new path, agree on the old one, degraded, diverge (an old worker).
fn probe_records(k: u64, partition: i32, kind: u64, ts_ms: i64) -> [String; 4] {
    let ts = accord::decode::format_rfc3339_ms(ts_ms);
    let id = format!("probe-{k:016x}");
    let f = format!("latency.p{partition}");
    let (front, rest, worker) = match kind % 4 {
        0 => (("true", "v2"), ("true", "v2", 2), ("v2", 2)),
        1 => (("false", "v1"), ("false", "v1", 1), ("v1", 1)),
        2 => (("true", "v1"), ("false", "v1", 1), ("v1", 1)),
        _ => (("true", "v2"), ("true", "v2", 2), ("v1", 1)),
    };
    [
        format!(
            r#"{{"request_id":"{id}","layer":"frontend","feature":"{f}","ts":"{ts}","flag_state":{},"selected_flow":"{}","flags_revision":"r42","service":"web-spa","instance":"web-spa-1f2e","build":"2026.11.20-3f9c2a1"}}"#,
            front.0, front.1
        ),
        format!(
            r#"{{"request_id":"{id}","layer":"api","feature":"{f}","ts":"{ts}","flag_state":{},"api_capability":"v2","selected_flow":"{}","job_payload_version":{},"flags_revision":"r42","service":"checkout-api","instance":"checkout-api-7a1b","build":"2026.11.19-88d01be"}}"#,
            rest.0, rest.1, rest.2
        ),
        format!(
            r#"{{"request_id":"{id}","layer":"worker","feature":"{f}","ts":"{ts}","selected_flow":"{}","job_payload_version":{},"flags_revision":"r42","service":"fulfilment-worker","instance":"fulfilment-worker-3c4d","build":"2026.11.12-1a2b3c4"}}"#,
            worker.0, worker.1
        ),
        format!(
            r#"{{"request_id":"{id}","layer":"analytics","feature":"{f}","ts":"{ts}","selected_flow":"{}","flags_revision":"r42","service":"events-pipeline","instance":"events-pipeline-9e8d","build":"2026.10.30-9e8d7c6"}}"#,
            rest.1
        ),
    ]
}

/// What the load's producer thread did.
struct Load {
    records: u64,
    probes: usize,
    /// Per probe: nanoseconds after `t0` when `send()` of its last record
    /// returned.
    sent: Vec<u64>,
    /// Nanoseconds after `t0` when the load started.
    start: u64,
    /// On-CPU time of the producer thread (generating and sending).
    cpu_ns: u64,
    /// How far event times trail the wall clock (negative: ahead).
    event_time_lag_ms: i64,
    /// How long the load ran (after the warm-up).
    secs: f64,
    /// At the end of the warm-up and at the end of the load.
    before: Option<Snapshot>,
    after: Option<Snapshot>,
}

/// The `mixed` records of the load, generated before it starts (so the
/// load's producer thread only sends), in one arena: per record its key
/// then its JSON.
struct Pregen {
    bytes: Vec<u8>,
    recs: Vec<PreRec>,
}

struct PreRec {
    /// Milliseconds after the load's start.
    emit_ms: u32,
    key_len: u16,
    partition: i16,
    start: usize,
    json_len: u32,
}

impl Pregen {
    fn get(&self, i: usize) -> (&str, &str) {
        let r = &self.recs[i];
        let key_end = r.start + r.key_len as usize;
        let text = |a: usize, b: usize| std::str::from_utf8(&self.bytes[a..b]).unwrap_or("");
        (text(r.start, key_end), text(key_end, key_end + r.json_len as usize))
    }
}

/// Generates `secs` of the `mixed` scenario at `mixed_rate`, whole
/// requests from the first (the load ramps up over the first ~10 s, as a
/// request spreads its layers over up to 10 s: `--latency-warmup`). Event
/// times are anchored so that they match the wall clock when this
/// returns (the generation time is estimated from a calibration run,
/// generously, and the rest waited out; the residual offset is
/// reported). Returns the records and the epoch ms of the load's start on
/// the event-time clock.
fn mixed_load(secs: f64, mixed_rate: f64, parts: i32, seed: u64) -> (Pregen, i64) {
    let total_ms = (secs * 1000.0) as i64;
    let timing = Timing { window_ms: 30_000, allowed_lateness_ms: 5_000 };
    let new = |base_ms: i64| Generator::new(Scenario::Mixed, timing, mixed_rate.max(0.001), total_ms, base_ms, seed);
    let mut out = Pregen { bytes: Vec::new(), recs: Vec::new() };
    if mixed_rate <= 0.0 {
        return (out, chrono::Utc::now().timestamp_millis());
    }
    let n_est = (mixed_rate * total_ms as f64 / 1000.0) as usize;
    println!(
        "    (l) generating {n_est} records of load in memory (~{} MiB) before it starts",
        (n_est * (290 + std::mem::size_of::<PreRec>())) >> 20
    );
    let per_record = {
        let t = Instant::now();
        let n = new(0).take(20_000).map(|r| r.json.len() + r.key.len()).fold(0usize, usize::wrapping_add);
        std::hint::black_box(n);
        t.elapsed().as_secs_f64() / 20_000.0
    };
    // Generously: the load then waits for the wall clock to catch up.
    let lead_ms = (per_record * n_est as f64 * 1500.0) as i64 + 500;
    let base_ms = chrono::Utc::now().timestamp_millis() + lead_ms;
    out.bytes.reserve(n_est * 290);
    out.recs.reserve(n_est + 1024);
    for r in new(base_ms) {
        if r.emit_ms >= total_ms {
            break;
        }
        out.recs.push(PreRec {
            emit_ms: r.emit_ms as u32,
            key_len: r.key.len() as u16,
            partition: partition_of(&r.key, parts) as i16,
            start: out.bytes.len(),
            json_len: r.json.len() as u32,
        });
        out.bytes.extend_from_slice(r.key.as_bytes());
        out.bytes.extend_from_slice(r.json.as_bytes());
    }
    let wait = base_ms - chrono::Utc::now().timestamp_millis();
    if wait > 0 {
        std::thread::sleep(Duration::from_millis(wait as u64));
    }
    (out, base_ms)
}

/// Produces the load for `warmup + secs`, paced every millisecond: the
/// `mixed` records whose emit time has come, and after the warm-up the
/// probes due by then. Counts and CPU cover the `secs` after the warm-up.
#[allow(clippy::too_many_arguments)]
fn produce_load(
    producer: &ThreadedProducer<AckClock>,
    topic: &str,
    parts: i32,
    (warmup, secs): (f64, f64),
    (mixed, start_ms): (Pregen, i64),
    probe_rate: f64,
    cap: usize,
    t0: Instant,
) -> Load {
    let start = Instant::now();
    let lag_ms = chrono::Utc::now().timestamp_millis() - start_ms;
    let mut load = Load {
        records: 0,
        probes: 0,
        sent: Vec::with_capacity(cap),
        start: 0,
        cpu_ns: 0,
        event_time_lag_ms: lag_ms,
        secs: 0.0,
        before: None,
        after: None,
    };
    let mut measuring: Option<(Instant, u64)> = None;
    let mut tick = 0u64;
    let mut next_mixed = 0usize;
    loop {
        let elapsed = start.elapsed();
        if elapsed.as_secs_f64() >= warmup + secs {
            break;
        }
        if measuring.is_none() && elapsed.as_secs_f64() >= warmup {
            load.before = Some(Snapshot::take());
            load.start = t0.elapsed().as_nanos() as u64;
            measuring = Some((Instant::now(), thread_cpu_ns()));
        }
        let el_ms = elapsed.as_millis() as u32;
        while next_mixed < mixed.recs.len() && mixed.recs[next_mixed].emit_ms <= el_ms {
            let (key, json) = mixed.get(next_mixed);
            send_paced(producer, topic, key, json, i32::from(mixed.recs[next_mixed].partition), 0);
            next_mixed += 1;
            load.records += u64::from(measuring.is_some());
        }
        if let Some((since, _)) = measuring {
            let due = ((since.elapsed().as_secs_f64() * probe_rate) as usize).min(cap);
            while load.probes < due {
                let k = load.probes;
                let p = (k % parts as usize) as i32;
                let ts_ms = start_ms + start.elapsed().as_millis() as i64;
                let recs = probe_records(k as u64, p, (k / parts as usize) as u64, ts_ms);
                let key = format!("probe-{k:016x}");
                for (i, json) in recs.iter().enumerate() {
                    // The opaque of the last record names the probe (k + 1).
                    send_paced(producer, topic, &key, json, p, if i == 3 { k + 1 } else { 0 });
                }
                load.sent.push(t0.elapsed().as_nanos() as u64);
                load.records += 4;
                load.probes += 1;
            }
        }
        tick += 1;
        let next = start + Duration::from_millis(tick);
        let now = Instant::now();
        if next > now {
            std::thread::sleep(next - now);
        } else {
            tick = now.duration_since(start).as_millis() as u64;
        }
    }
    if let Some((since, cpu0)) = measuring {
        load.after = Some(Snapshot::take());
        load.cpu_ns = thread_cpu_ns().saturating_sub(cpu0);
        load.secs = since.elapsed().as_secs_f64();
    }
    load
}

/// On-CPU and run-queue time of this process's threads, and the
/// machine's busy time, at one instant.
struct Snapshot {
    cpu: std::collections::BTreeMap<(u64, String), u64>,
    waited: std::collections::BTreeMap<(u64, String), u64>,
    machine: f64,
}

impl Snapshot {
    fn take() -> Snapshot {
        Snapshot { cpu: thread_cpu(), waited: thread_waited(), machine: machine_busy_secs() }
    }
}

fn send_paced(producer: &ThreadedProducer<AckClock>, topic: &str, key: &str, json: &str, p: i32, opaque: usize) {
    let mut rec = BaseRecord::<str, str, usize>::with_opaque_to(topic, opaque).key(key).payload(json).partition(p);
    while let Err((_, back)) = producer.send(rec) {
        rec = back;
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// Delivery instants of the probes' last records, nanoseconds after `t0`
/// (0: none yet, `u64::MAX`: failed).
struct Acks {
    t0: Instant,
    at: Vec<AtomicU64>,
}

impl Acks {
    fn new(t0: Instant, cap: usize) -> Self {
        Acks { t0, at: (0..cap).map(|_| AtomicU64::new(0)).collect() }
    }
}

/// A producer context that timestamps the delivery report of every
/// record sent with a non-zero opaque.
struct AckClock(Arc<Acks>);

impl rdkafka::ClientContext for AckClock {}

impl rdkafka::producer::ProducerContext for AckClock {
    type DeliveryOpaque = usize;
    fn delivery(&self, result: &rdkafka::producer::DeliveryResult<'_>, k: usize) {
        if k == 0 {
            return;
        }
        let at = if result.is_ok() { self.0.t0.elapsed().as_nanos() as u64 } else { u64::MAX };
        if let Some(slot) = self.0.at.get(k - 1) {
            slot.store(at, Ordering::Relaxed);
        }
    }
}

/// One scrape: when its request was written and its response read
/// (nanoseconds after `t0`), and the probe features' judged requests.
struct Scrape {
    sent: u64,
    got: u64,
    counts: Vec<u64>,
}

/// A minimal keep-alive HTTP/1.1 client for `GET /metrics`.
struct Scraper {
    addr: std::net::SocketAddr,
    parts: usize,
    conn: Option<std::net::TcpStream>,
    buf: Vec<u8>,
}

impl Scraper {
    fn new(addr: std::net::SocketAddr, parts: usize) -> Self {
        Scraper { addr, parts, conn: None, buf: Vec::with_capacity(1 << 20) }
    }

    /// `accord_requests_total` of each probe feature, summed over path and
    /// verdict, and the body's length.
    fn scrape(&mut self) -> anyhow::Result<(Vec<u64>, usize)> {
        let (counts, _, len) = self.scrape_all()?;
        Ok((counts, len))
    }

    /// Also `accord_open_joins`.
    fn scrape_all(&mut self) -> anyhow::Result<(Vec<u64>, i64, usize)> {
        let body = match self.get() {
            Ok(b) => b,
            Err(_) => {
                // The server may have closed an idle keep-alive connection.
                self.conn = None;
                self.get()?
            }
        };
        let text = std::str::from_utf8(&body)?;
        let mut counts = vec![0u64; self.parts];
        let mut open = 0i64;
        for line in text.lines() {
            if let Some(v) = line.strip_prefix("accord_open_joins ") {
                open = v.trim().parse::<f64>().map_or(0, |v| v as i64);
                continue;
            }
            let Some(rest) = line.strip_prefix("accord_requests_total{") else { continue };
            let Some(i) = rest.find("feature=\"latency.p") else { continue };
            let after = &rest[i + "feature=\"latency.p".len()..];
            let Some(p) = after.split('"').next().and_then(|d| d.parse::<usize>().ok()) else { continue };
            let v: f64 = line.rsplit(' ').next().and_then(|v| v.parse().ok()).unwrap_or(0.0);
            if let Some(c) = counts.get_mut(p) {
                *c += v as u64;
            }
        }
        Ok((counts, open, body.len()))
    }

    fn get(&mut self) -> anyhow::Result<Vec<u8>> {
        use std::io::Read;
        if self.conn.is_none() {
            let s = std::net::TcpStream::connect(self.addr)?;
            s.set_nodelay(true)?;
            s.set_read_timeout(Some(Duration::from_secs(10)))?;
            self.conn = Some(s);
            self.buf.clear();
        }
        let conn = self.conn.as_mut().expect("connected above");
        conn.write_all(b"GET /metrics HTTP/1.1\r\nHost: accord\r\n\r\n")?;
        let mut chunk = [0u8; 64 << 10];
        let (head_end, len) = loop {
            if let Some(i) = self.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = std::str::from_utf8(&self.buf[..i])?;
                anyhow::ensure!(
                    head.starts_with("HTTP/1.1 200"),
                    "GET /metrics: {}",
                    head.lines().next().unwrap_or("")
                );
                let len = head
                    .lines()
                    .find_map(|l| {
                        let (k, v) = l.split_once(':')?;
                        k.eq_ignore_ascii_case("content-length").then(|| v.trim().parse::<usize>().ok())?
                    })
                    .ok_or_else(|| anyhow::anyhow!("GET /metrics: no content-length"))?;
                break (i + 4, len);
            }
            let n = conn.read(&mut chunk)?;
            anyhow::ensure!(n > 0, "GET /metrics: connection closed");
            self.buf.extend_from_slice(&chunk[..n]);
        };
        while self.buf.len() < head_end + len {
            let n = conn.read(&mut chunk)?;
            anyhow::ensure!(n > 0, "GET /metrics: connection closed");
            self.buf.extend_from_slice(&chunk[..n]);
        }
        let body = self.buf[head_end..head_end + len].to_vec();
        self.buf.drain(..head_end + len);
        Ok(body)
    }
}

fn mean(v: &[f64]) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    v.iter().sum::<f64>() / v.len() as f64
}

/// Nearest-rank percentile of unsorted values (100: the maximum).
fn pct(v: &[f64], p: f64) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    percentile_sorted(&s, p)
}

fn percentile_sorted(s: &[f64], p: f64) -> f64 {
    let rank = ((p / 100.0) * s.len() as f64).ceil() as usize;
    s[rank.clamp(1, s.len()) - 1]
}

fn print_latency(what: &str, v: &mut [f64]) {
    if v.is_empty() {
        println!("      {what:<18} no requests measured");
        return;
    }
    v.sort_by(f64::total_cmp);
    println!(
        "      {what:<18} p50 {:>7.2}   p90 {:>7.2}   p99 {:>7.2}   p99.9 {:>7.2}   max {:>7.2}   ({} requests)",
        percentile_sorted(v, 50.0),
        percentile_sorted(v, 90.0),
        percentile_sorted(v, 99.0),
        percentile_sorted(v, 99.9),
        percentile_sorted(v, 100.0),
        v.len()
    );
}
