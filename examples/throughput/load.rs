//! (l)'s load: the simulator's `mixed` scenario, paced to the wall clock
//! (event times are the wall clock, so the watermark treats it as live),
//! plus *probe* requests whose four layers all report, so each closes the
//! moment its last record is consumed. Probe `k` goes to partition
//! `k % P` with feature `latency.p{k % P}` (a copy of `checkout_v2`):
//! within one partition records are judged in offset order, so the `j`-th
//! probe of partition `p` is judged exactly when
//! `accord_requests_total{feature="latency.p{p}"}` reaches `j` (plus what
//! was there before).
//!
//! The load is produced from memory (generated beforehand, ~310 bytes per
//! record for warm-up + measured seconds), so generating it costs no CPU
//! during the measurement; sending it, the mock broker and librdkafka's
//! threads do, on the same cores as accord (reported).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use accord::simulate::{Generator, Scenario};
use rdkafka::config::ClientConfig;
use rdkafka::producer::{BaseRecord, ThreadedProducer};

use crate::args::Args;
use crate::backlog::partition_of;
use crate::kafka::Mock;
use crate::os::{thread_cpu_ns, Snapshot, Usage};
use crate::output::{print_cores, print_cpu_per_record, print_machine};

/// What both (l) phases derive from the arguments.
pub struct LoadPlan {
    pub parts: i32,
    pub secs: f64,
    pub warmup: f64,
    pub probe_rate: f64,
    /// Records/s of the `mixed` scenario: the load minus the probes'.
    pub mixed_rate: f64,
    /// Probe slots: every probe that the measured seconds can send.
    pub cap: usize,
}

impl LoadPlan {
    pub fn new(args: &Args, max_rate: f64) -> Self {
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
pub fn load_producer(args: &Args, cluster: &Mock, acks: &Arc<Acks>) -> anyhow::Result<ThreadedProducer<AckClock>> {
    Ok(ClientConfig::new()
        .set("bootstrap.servers", cluster.bootstrap_servers())
        .set("linger.ms", args.latency_linger_ms.to_string())
        .set("queue.buffering.max.messages", "1000000")
        .set("queue.buffering.max.kbytes", "1048576")
        .create_with_context(AckClock(acks.clone()))?)
}

/// One untracked probe request per partition, before the load.
pub fn send_warmup_probes(producer: &ThreadedProducer<AckClock>, topic: &str, parts: i32) {
    let now_ms = chrono::Utc::now().timestamp_millis();
    for p in 0..parts {
        let k = u64::MAX - p as u64;
        for json in &probe_records(k, p, 0, now_ms) {
            send_paced(producer, topic, &format!("probe-{k:016x}"), json, p, 0);
        }
    }
}

/// The probe number `k` of a probe's last (analytics) record.
pub fn probe_last_record(payload: &[u8]) -> Option<usize> {
    let rest = payload.strip_prefix(br#"{"request_id":"probe-"#)?;
    let hex = std::str::from_utf8(rest.get(..16)?).ok()?;
    let tail = rest.get(16..)?;
    if !tail.starts_with(br#"","layer":"analytics""#) {
        return None;
    }
    usize::from_str_radix(hex, 16).ok()
}

/// The four records of probe `k` (frontend, api, worker, analytics, the
/// last one last), event time `ts_ms`. `kind` varies the verdict: agree on
/// the new path, agree on the old one, degraded, diverge (an old worker).
pub fn probe_records(k: u64, partition: i32, kind: u64, ts_ms: i64) -> [String; 4] {
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
pub struct Load {
    pub records: u64,
    pub probes: usize,
    /// Per probe: nanoseconds after `t0` when `send()` of its last record
    /// returned.
    pub sent: Vec<u64>,
    /// Nanoseconds after `t0` when the load started.
    pub start: u64,
    /// On-CPU time of the producer thread (generating and sending).
    cpu_ns: u64,
    /// How far event times trail the wall clock (negative: ahead).
    pub event_time_lag_ms: i64,
    /// How long the load ran (after the warm-up).
    pub secs: f64,
    /// At the end of the warm-up and at the end of the load.
    before: Option<Snapshot>,
    after: Option<Snapshot>,
}

/// The `mixed` records of the load, generated before it starts (so the
/// load's producer thread only sends), in one arena: per record its key
/// then its JSON.
pub struct Pregen {
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
pub fn mixed_load(secs: f64, mixed_rate: f64, parts: i32, seed: u64) -> (Pregen, i64) {
    let total_ms = (secs * 1000.0) as i64;
    let timing = crate::support::timing();
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

/// The arguments of one load run, for `run_load`.
pub struct LoadSpec<'a> {
    pub topic: &'a str,
    pub parts: i32,
    pub warmup: f64,
    pub secs: f64,
    pub probe_rate: f64,
    pub cap: usize,
    pub t0: Instant,
}

/// A load run and what the machine did meanwhile.
pub struct LoadRun {
    pub load: Load,
    usage: Usage,
}

/// Runs `produce_load` on its own thread, with CPU accounting over the
/// measured part.
pub fn run_load(
    producer: &ThreadedProducer<AckClock>,
    spec: &LoadSpec<'_>,
    mixed: (Pregen, i64),
) -> anyhow::Result<LoadRun> {
    let mut load = std::thread::scope(|s| {
        std::thread::Builder::new()
            .name("load".into())
            .spawn_scoped(s, || produce_load(producer, spec, mixed))?
            .join()
            .map_err(|_| anyhow::anyhow!("(l): producer thread panicked"))
    })?;
    let (Some(before), Some(after)) = (load.before.take(), load.after.take()) else {
        anyhow::bail!("(l): the load never got past its warm-up");
    };
    let mut usage = Usage::between(&before, &after);
    // Not the load thread's own share of the process total: its own clock.
    usage.cpu.0.retain(|k, _| k != "load");
    usage.cpu.0.insert("load producer".into(), load.cpu_ns as f64 / 1e9);
    Ok(LoadRun { load, usage })
}

impl LoadRun {
    pub fn print(&self) {
        let secs = self.load.secs;
        print_cores(&self.usage.cpu, secs);
        print_cpu_per_record(&self.usage.cpu, self.load.records as usize);
        print_machine(&self.usage, secs, "during the load");
    }
}

/// Produces the load for `warmup + secs`, paced every millisecond: the
/// `mixed` records whose emit time has come, and after the warm-up the
/// probes due by then. Counts and CPU cover the `secs` after the warm-up.
fn produce_load(producer: &ThreadedProducer<AckClock>, spec: &LoadSpec<'_>, (mixed, start_ms): (Pregen, i64)) -> Load {
    let LoadSpec { topic, parts, warmup, secs, probe_rate, cap, t0 } = *spec;
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

fn send_paced(producer: &ThreadedProducer<AckClock>, topic: &str, key: &str, json: &str, p: i32, opaque: usize) {
    let mut rec = BaseRecord::<str, str, usize>::with_opaque_to(topic, opaque).key(key).payload(json).partition(p);
    while let Err((_, back)) = producer.send(rec) {
        rec = back;
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// Delivery instants of the probes' last records, nanoseconds after `t0`
/// (0: none yet, `u64::MAX`: failed).
pub struct Acks {
    pub t0: Instant,
    pub at: Vec<AtomicU64>,
}

impl Acks {
    pub fn new(t0: Instant, cap: usize) -> Self {
        Acks { t0, at: (0..cap).map(|_| AtomicU64::new(0)).collect() }
    }
}

/// A producer context that timestamps the delivery report of every
/// record sent with a non-zero opaque.
pub struct AckClock(Arc<Acks>);

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_probe_is_found_by_its_last_record_only() {
        let recs = probe_records(0x2a, 1, 3, 1_893_456_000_000);
        assert_eq!(probe_last_record(recs[3].as_bytes()), Some(0x2a));
        assert!(recs[..3].iter().all(|r| probe_last_record(r.as_bytes()).is_none()));
        assert!(recs.iter().all(|r| r.contains("\"feature\":\"latency.p1\"")));
    }
}
