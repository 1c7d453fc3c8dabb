//! (l) verdict latency: a request whose last expected layer arrives is
//! judged and visible in `/metrics` within 100 ms (p99) under 50% of the
//! measured maximum load (the target of docs/performance.md).
//!
//! Start: the delivery report of the probe's last record (the broker has
//! it: "arrives"); also reported from the `send()` call (adds `linger.ms`).
//! End: the first `/metrics` scrape over HTTP that counts the verdict, at
//! the instant its response was read. That is an upper bound: the verdict
//! became visible after the previous scrape was sent, so the lower bound is
//! up to one scrape interval plus one scrape's duration smaller. The
//! delivery report comes back after the broker appended the record, so
//! the lower bound can be negative.
//!
//! The first `--latency-warmup` seconds are not measured: requests in
//! flight reach their steady number. Joins that wait for their window
//! (30 s) and the remembered closed keys (2 x window) keep growing through
//! the whole run, so accord's tables grow meanwhile (as after any start or
//! rebalance).
//!
//! The mock broker differs from Kafka in two ways that matter here: it
//! answers an empty fetch only after `fetch.wait.max.ms` (hence
//! `--latency-fetch-wait-ms`), and it keeps only 5 MiB per partition, so a
//! consumer that falls a few hundred milliseconds behind loses records
//! (detected and reported).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use accord::catalog::Catalog;
use accord::service::Service;
use accord::source::kafka::KafkaConfig;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::Message;
use tokio_util::sync::CancellationToken;

use crate::args::Args;
use crate::kafka::{consumer_config, Mock};
use crate::load::{
    load_producer, mixed_load, probe_last_record, run_load, send_warmup_probes, Acks, LoadPlan, LoadSpec,
};
use crate::output::{mean, pct, print_latency, print_timeline};
use crate::scrape::{Scrape, Scraper};
use crate::support;

/// (l) against `accord run`'s service.
pub fn latency_phase(args: &Args, rt: &tokio::runtime::Runtime, cluster: &Mock, max_rate: f64) -> anyhow::Result<()> {
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
    let kafka =
        KafkaConfig { properties, ..KafkaConfig::new(&cluster.bootstrap_servers(), &[topic], "throughput-latency") };
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
    let stop = Arc::new(AtomicBool::new(false));
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
    let spec = LoadSpec { topic, parts, warmup, secs, probe_rate, cap, t0 };
    let run_l = run_load(&producer, &spec, mixed)?;
    let load = &run_l.load;
    let load_secs = load.secs;
    // Every probe visible, or 10 s.
    let _ = rdkafka::producer::Producer::flush(&producer, Duration::from_secs(10));
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
    if args.verbose {
        print_timeline(&series);
    }
    Ok(())
}

/// The consumer properties of (l): `--kafka-property`, plus
/// `fetch.wait.max.ms` from `--latency-fetch-wait-ms` unless set there.
/// Also returns the effective `fetch.wait.max.ms`, for the report.
fn latency_properties(args: &Args) -> (Vec<(String, String)>, String) {
    let mut properties = args.kafka_properties.clone();
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

/// (l) without accord: the bare consume loop of (c), with the same fetch
/// settings, under the same load; each probe is timed from its last
/// record's delivery report to that record leaving `recv()`.
pub fn bare_latency_phase(
    args: &Args,
    rt: &tokio::runtime::Runtime,
    cluster: &Mock,
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
    let mut config = consumer_config(&cluster.bootstrap_servers(), "throughput-bare-latency", args);
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
    let spec = LoadSpec { topic, parts, warmup, secs, probe_rate, cap, t0 };
    let run_l = run_load(&producer, &spec, mixed)?;
    let load = &run_l.load;
    let _ = rdkafka::producer::Producer::flush(&producer, Duration::from_secs(10));
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
