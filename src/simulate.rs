//! The simulator: decision records of a realistic rollout with a known
//! mix of agreements and disagreements (`accord simulate`,
//! docs/reference.md#accord-simulate).
//!
//! [`Generator`] is a pure, seeded, event-time generator: each request is
//! drawn from a scenario's mix of [`Story`]s, expands into one record per
//! layer with realistic delays, and every record has an *emit time* (when
//! a producer would send it) and an event time `ts` (what it says). A late
//! analytics record is emitted after its join's window closed but carries
//! the early event time, like a lagging pipeline. Records come out in
//! emit order, so the same generator feeds a file (offline, as fast as it
//! can) or Kafka (paced to the wall clock).
//!
//! The stories target the example catalog (`accord.toml`): features
//! `checkout_v2` (frontend, api, worker, analytics; new flow `v2`,
//! capability `v2`, payload `2`) and `search.ranking` (api, analytics,
//! optional frontend; new flow `ltr`).

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, VecDeque};

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use serde::Serialize;

use crate::catalog::OtelConfig;
use crate::decode::{format_rfc3339_ms, InputFormat};

pub mod otlp;

/// Named traffic mixes (docs/reference.md#accord-simulate).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Scenario {
    /// Every layer agrees while exposure to v2 grows from 5% to 50%.
    HealthyRamp,
    /// A worker fleet on the old image processes new-flow jobs with old payloads.
    LaggingWorker,
    /// The frontend exposes v2 before the API advertises the capability.
    FakeAvailability,
    /// Layers evaluate different flag revisions.
    SnapshotSkew,
    /// Analytics arrives after the window, or never.
    SlowAnalytics,
    /// All of the above at once (the demo).
    Mixed,
}

impl Scenario {
    pub fn name(self) -> &'static str {
        match self {
            Scenario::HealthyRamp => "healthy-ramp",
            Scenario::LaggingWorker => "lagging-worker",
            Scenario::FakeAvailability => "fake-availability",
            Scenario::SnapshotSkew => "snapshot-skew",
            Scenario::SlowAnalytics => "slow-analytics",
            Scenario::Mixed => "mixed",
        }
    }
}

/// What happens to one request, and the verdict accord must give it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Story {
    AgreeNew,
    AgreeOld,
    /// Frontend saw the flag on but checked the capability and fell back.
    DegradedFallback,
    /// New-flow job run by a worker on the old image.
    OldWorker,
    /// Frontend exposes v2; the API does not advertise it.
    FakeAvailability,
    /// Frontend evaluated an older flag snapshot.
    SnapshotSkew,
    /// Analytics never reports.
    AnalyticsMissing,
    /// Analytics reports after the window closed.
    AnalyticsLate,
    /// search.ranking, every layer agrees.
    SearchAgree,
}

impl Story {
    /// `(feature, path, verdict)` accord gives the request.
    pub fn expected(self) -> (&'static str, &'static str, &'static str) {
        match self {
            Story::AgreeNew => ("checkout_v2", "new", "agree"),
            Story::AgreeOld => ("checkout_v2", "old", "agree"),
            Story::DegradedFallback => ("checkout_v2", "old", "degraded"),
            Story::OldWorker => ("checkout_v2", "mixed", "diverge"),
            Story::FakeAvailability => ("checkout_v2", "mixed", "diverge"),
            Story::SnapshotSkew => ("checkout_v2", "new", "diverge"),
            Story::AnalyticsMissing => ("checkout_v2", "new", "incomplete"),
            Story::AnalyticsLate => ("checkout_v2", "new", "incomplete"),
            Story::SearchAgree => ("search.ranking", "new", "agree"),
        }
    }
    /// Valid records of the request that accord counts as late.
    pub fn late_records(self) -> u64 {
        u64::from(self == Story::AnalyticsLate)
    }
}

/// Timing the generator needs from the catalog.
#[derive(Debug, Clone, Copy)]
pub struct Timing {
    /// Window of `checkout_v2`.
    pub window_ms: i64,
    pub allowed_lateness_ms: i64,
}

/// One generated record.
#[derive(Debug, Clone)]
pub struct SimRecord {
    /// When to send it (ms since the generator's start).
    pub emit_ms: i64,
    pub key: String,
    pub json: String,
}

/// What was sent, for comparison with accord's verdicts.
#[derive(Debug, Default, Clone, Serialize)]
pub struct Report {
    pub scenario: String,
    pub requests: u64,
    pub records: u64,
    pub late_records: u64,
    /// `feature -> "path/verdict" -> requests`.
    pub expected: BTreeMap<String, BTreeMap<String, u64>>,
    /// Requests per story.
    pub stories: BTreeMap<String, u64>,
    /// Messages sent (one per record for accord output; OpenTelemetry
    /// export requests hold several).
    pub messages: u64,
    /// OpenTelemetry log records and span events sent that are not flag
    /// evaluations (accord counts them in `accord_otlp_items_ignored_total`).
    pub otlp_items_ignored: u64,
}

impl Report {
    fn add(&mut self, story: Story, records: u64) {
        let (f, p, v) = story.expected();
        *self.expected.entry(f.into()).or_default().entry(format!("{p}/{v}")).or_default() += 1;
        *self.stories.entry(format!("{story:?}")).or_default() += 1;
        self.requests += 1;
        self.records += records;
        self.late_records += story.late_records();
    }
}

pub struct Generator {
    scenario: Scenario,
    timing: Timing,
    rng: SmallRng,
    /// Wall-clock epoch ms of emit time 0: event times are `base + emit`.
    base_ms: i64,
    rate: f64,
    duration_ms: i64,
    next_request_ms: f64,
    seq: u64,
    queue: BinaryHeap<Reverse<(i64, u64, usize)>>,
    slots: Vec<Option<SimRecord>>,
    free: Vec<usize>,
    pub report: Report,
}

/// Records per request, on average (for turning a record rate into a
/// request rate).
const RECORDS_PER_REQUEST: f64 = 3.8;

impl Generator {
    /// `rate` records per second for `duration_ms`; `base_ms` anchors event
    /// times (use the wall clock for live traffic, a fixed instant for
    /// reproducible files).
    pub fn new(scenario: Scenario, timing: Timing, rate: f64, duration_ms: i64, base_ms: i64, seed: u64) -> Self {
        Generator {
            scenario,
            timing,
            rng: SmallRng::seed_from_u64(seed),
            base_ms,
            rate: rate.max(0.001),
            duration_ms,
            next_request_ms: 0.0,
            seq: 0,
            queue: BinaryHeap::new(),
            slots: Vec::new(),
            free: Vec::new(),
            report: Report { scenario: scenario.name().into(), ..Report::default() },
        }
    }

    fn pick(&mut self, at_ms: i64) -> Story {
        let progress =
            if self.duration_ms > 0 { (at_ms as f64 / self.duration_ms as f64).clamp(0.0, 1.0) } else { 0.0 };
        let x: f64 = self.rng.gen();
        let exposure = |r: &mut SmallRng, p: f64| {
            if r.gen_bool(p) {
                Story::AgreeNew
            } else {
                Story::AgreeOld
            }
        };
        match self.scenario {
            Scenario::HealthyRamp => {
                if x < 0.15 {
                    Story::SearchAgree
                } else {
                    exposure(&mut self.rng, 0.05 + 0.45 * progress)
                }
            }
            Scenario::LaggingWorker => match x {
                x if x < 0.10 => Story::OldWorker,
                x if x < 0.40 => Story::AgreeNew,
                _ => Story::AgreeOld,
            },
            Scenario::FakeAvailability => match x {
                x if x < 0.15 => Story::FakeAvailability,
                x if x < 0.25 => Story::DegradedFallback,
                x if x < 0.45 => Story::AgreeNew,
                _ => Story::AgreeOld,
            },
            Scenario::SnapshotSkew => match x {
                x if x < 0.15 => Story::SnapshotSkew,
                x if x < 0.45 => Story::AgreeNew,
                _ => Story::AgreeOld,
            },
            Scenario::SlowAnalytics => match x {
                x if x < 0.12 => Story::AnalyticsMissing,
                x if x < 0.20 => Story::AnalyticsLate,
                x if x < 0.50 => Story::AgreeNew,
                _ => Story::AgreeOld,
            },
            Scenario::Mixed => match x {
                x if x < 0.04 => Story::OldWorker,
                x if x < 0.08 => Story::FakeAvailability,
                x if x < 0.12 => Story::DegradedFallback,
                x if x < 0.15 => Story::SnapshotSkew,
                x if x < 0.18 => Story::AnalyticsMissing,
                x if x < 0.20 => Story::AnalyticsLate,
                x if x < 0.30 => Story::SearchAgree,
                x if x < 0.60 => Story::AgreeNew,
                _ => Story::AgreeOld,
            },
        }
    }

    fn schedule(&mut self, rec: SimRecord) {
        let emit = rec.emit_ms;
        let slot = match self.free.pop() {
            Some(i) => {
                self.slots[i] = Some(rec);
                i
            }
            None => {
                self.slots.push(Some(rec));
                self.slots.len() - 1
            }
        };
        self.seq += 1;
        self.queue.push(Reverse((emit, self.seq, slot)));
    }

    /// How long after its start a late analytics record is sent.
    fn late_emit_delay_ms(&self) -> i64 {
        let t = self.timing;
        t.window_ms + t.allowed_lateness_ms + (t.window_ms / 5).clamp(200, 2_000)
    }

    fn start_request(&mut self, at_ms: i64) {
        let mut story = self.pick(at_ms);
        // Near the end no later traffic would close the join before the
        // late record arrives, so it would join and agree: keep the
        // expectation exact by not starting such stories there.
        if story == Story::AnalyticsLate
            && at_ms + self.late_emit_delay_ms() + 2 * self.timing.window_ms > self.duration_ms
        {
            story = Story::AgreeNew;
        }
        let n = self.report.requests;
        let id = format!("req-{:08x}-{:06x}", self.rng.gen::<u32>(), n & 0xff_ffff);
        let late = self.late_emit_delay_ms();
        let recs = build(story, &id, at_ms, self.base_ms, self.timing, late, &mut self.rng);
        self.report.add(story, recs.len() as u64);
        for r in recs {
            self.schedule(r);
        }
    }

    /// Emit time of the next record, if any.
    pub fn peek_emit_ms(&mut self) -> Option<i64> {
        self.fill();
        self.queue.peek().map(|Reverse((t, _, _))| *t)
    }

    /// Starts every request due before the earliest queued record.
    fn fill(&mut self) {
        loop {
            let next_req = self.next_request_ms as i64;
            if next_req >= self.duration_ms {
                return;
            }
            if let Some(Reverse((t, _, _))) = self.queue.peek() {
                if *t < next_req {
                    return;
                }
            }
            self.start_request(next_req);
            self.next_request_ms += 1000.0 * RECORDS_PER_REQUEST / self.rate;
        }
    }
}

impl Iterator for Generator {
    type Item = SimRecord;
    fn next(&mut self) -> Option<SimRecord> {
        self.fill();
        let Reverse((_, _, slot)) = self.queue.pop()?;
        self.free.push(slot);
        self.slots[slot].take()
    }
}

/// One message to send: an accord record, or an OpenTelemetry export
/// request holding several evaluations.
#[derive(Debug, Clone)]
pub struct SimMessage {
    /// When to send it (ms since the generator's start).
    pub emit_ms: i64,
    /// The Kafka key: the request id, or the trace id for OpenTelemetry.
    pub key: String,
    pub payload: Vec<u8>,
}

/// The generator's records as the messages of an output format, in emit
/// order. For the OpenTelemetry formats, the records emitted within one
/// Collector batch ([`otlp::BATCH_MS`]) leave together at its end, one
/// export request per trace id.
pub struct Messages {
    gen: Generator,
    enc: Option<otlp::Encoder>,
    ready: VecDeque<SimMessage>,
    messages: u64,
}

impl Messages {
    /// `otel` is the catalog's `[otel]` section the output must satisfy
    /// (OpenTelemetry formats only).
    pub fn new(gen: Generator, format: InputFormat, otel: &OtelConfig, seed: u64) -> Self {
        let enc = format.is_otlp().then(|| otlp::Encoder::new(format, otel, seed));
        Messages { gen, enc, ready: VecDeque::new(), messages: 0 }
    }

    /// Accord records, one per message.
    pub fn accord(gen: Generator) -> Self {
        Messages::new(gen, InputFormat::Accord, &OtelConfig::default(), 0)
    }

    /// Emit time of the next message, if any.
    pub fn peek_emit_ms(&mut self) -> Option<i64> {
        self.fill();
        self.ready.front().map(|m| m.emit_ms)
    }

    /// What was sent.
    pub fn report(&self) -> Report {
        let mut r = self.gen.report.clone();
        r.messages = self.messages;
        r.otlp_items_ignored = self.enc.as_ref().map_or(0, |e| e.ignored);
        r
    }

    fn fill(&mut self) {
        if !self.ready.is_empty() {
            return;
        }
        let Some(enc) = &mut self.enc else {
            if let Some(r) = self.gen.next() {
                self.ready.push_back(SimMessage { emit_ms: r.emit_ms, key: r.key, payload: r.json.into_bytes() });
            }
            return;
        };
        let Some(first) = self.gen.peek_emit_ms() else { return };
        let end = (first.div_euclid(otlp::BATCH_MS) + 1) * otlp::BATCH_MS;
        let mut batch = Vec::new();
        while self.gen.peek_emit_ms().is_some_and(|t| t < end) {
            batch.extend(self.gen.next());
        }
        let records: Vec<_> = batch.iter().filter_map(|r| crate::decode::decode(r.json.as_bytes()).ok()).collect();
        for e in enc.encode_batch(&records) {
            self.ready.push_back(SimMessage { emit_ms: end, key: e.key, payload: e.payload });
        }
    }
}

impl Iterator for Messages {
    type Item = SimMessage;
    fn next(&mut self) -> Option<SimMessage> {
        self.fill();
        let m = self.ready.pop_front()?;
        self.messages += 1;
        Some(m)
    }
}

struct Fields<'a> {
    layer: &'a str,
    flag: Option<&'a str>,
    cap: Option<&'a str>,
    flow: Option<&'a str>,
    payload: Option<u32>,
    revision: &'a str,
}

fn record(feature: &str, id: &str, ts_ms: i64, f: &Fields<'_>, rng: &mut SmallRng) -> String {
    use std::fmt::Write;
    let mut s = String::with_capacity(320);
    let _ = write!(
        s,
        r#"{{"request_id":"{id}","layer":"{}","feature":"{feature}","ts":"{}""#,
        f.layer,
        format_rfc3339_ms(ts_ms)
    );
    if let Some(v) = f.flag {
        let _ = write!(s, r#","flag_state":{v}"#);
    }
    if let Some(v) = f.cap {
        let _ = write!(s, r#","api_capability":"{v}""#);
    }
    if let Some(v) = f.flow {
        let _ = write!(s, r#","selected_flow":"{v}""#);
    }
    if let Some(v) = f.payload {
        let _ = write!(s, r#","job_payload_version":{v}"#);
    }
    let (service, build) = match f.layer {
        "frontend" => ("web-spa", "2026.11.20-3f9c2a1"),
        "api" => ("checkout-api", "2026.11.19-88d01be"),
        "worker" => ("fulfilment-worker", "2026.11.12-1a2b3c4"),
        _ => ("events-pipeline", "2026.10.30-9e8d7c6"),
    };
    let _ = write!(
        s,
        r#","flags_revision":"{}","service":"{service}","instance":"{service}-{:x}","build":"{build}"}}"#,
        f.revision,
        rng.gen_range(0x1000u32..0xffff)
    );
    s
}

/// Expands one request into its records (emit time, event time).
fn build(
    story: Story,
    id: &str,
    at_ms: i64,
    base_ms: i64,
    t: Timing,
    late_delay: i64,
    rng: &mut SmallRng,
) -> Vec<SimRecord> {
    let mut out = Vec::with_capacity(4);
    let mut push = |emit: i64, ts: i64, feature: &str, f: Fields<'_>, rng: &mut SmallRng| {
        out.push(SimRecord { emit_ms: emit, key: id.to_string(), json: record(feature, id, base_ms + ts, &f, rng) });
    };
    if story == Story::SearchAgree {
        let a = at_ms + rng.gen_range(5..40);
        push(
            at_ms,
            at_ms,
            "search.ranking",
            Fields {
                layer: "frontend",
                flag: Some("\"on\""),
                cap: None,
                flow: Some("ltr"),
                payload: None,
                revision: "r42",
            },
            rng,
        );
        push(
            a,
            a,
            "search.ranking",
            Fields { layer: "api", flag: Some("true"), cap: None, flow: Some("ltr"), payload: None, revision: "r42" },
            rng,
        );
        let an = at_ms + rng.gen_range(200..1500);
        push(
            an,
            an,
            "search.ranking",
            Fields { layer: "analytics", flag: None, cap: None, flow: Some("ltr"), payload: None, revision: "r42" },
            rng,
        );
        return out;
    }
    let new = !matches!(story, Story::AgreeOld | Story::DegradedFallback);
    let (flow, payload) = if new { ("v2", 2) } else { ("v1", 1) };
    let rev_front = if story == Story::SnapshotSkew { "r41" } else { "r42" };
    // Analytics delays stay well inside the window so agreeing requests
    // close early; the late one arrives after window + lateness.
    let api_ts = at_ms + rng.gen_range(5..60);
    let worker_ts = at_ms + rng.gen_range(100..(t.window_ms / 4).max(101));
    let analytics_ts = at_ms + rng.gen_range(150..(t.window_ms / 3).max(151));
    match story {
        Story::FakeAvailability => {
            push(
                at_ms,
                at_ms,
                "checkout_v2",
                Fields {
                    layer: "frontend",
                    flag: Some("true"),
                    cap: None,
                    flow: Some("v2"),
                    payload: None,
                    revision: "r42",
                },
                rng,
            );
            push(
                api_ts,
                api_ts,
                "checkout_v2",
                Fields {
                    layer: "api",
                    flag: Some("true"),
                    cap: Some("v1"),
                    flow: Some("v1"),
                    payload: Some(1),
                    revision: "r42",
                },
                rng,
            );
            push(
                worker_ts,
                worker_ts,
                "checkout_v2",
                Fields { layer: "worker", flag: None, cap: None, flow: None, payload: Some(1), revision: "r42" },
                rng,
            );
            push(
                analytics_ts,
                analytics_ts,
                "checkout_v2",
                Fields { layer: "analytics", flag: None, cap: None, flow: Some("v1"), payload: None, revision: "r42" },
                rng,
            );
        }
        _ => {
            let front_flag = if story == Story::DegradedFallback || new { "true" } else { "false" };
            push(
                at_ms,
                at_ms,
                "checkout_v2",
                Fields {
                    layer: "frontend",
                    flag: Some(front_flag),
                    cap: None,
                    flow: Some(flow),
                    payload: None,
                    revision: rev_front,
                },
                rng,
            );
            push(
                api_ts,
                api_ts,
                "checkout_v2",
                Fields {
                    layer: "api",
                    flag: Some(if new { "true" } else { "false" }),
                    cap: Some("v2"),
                    flow: Some(flow),
                    payload: Some(payload),
                    revision: "r42",
                },
                rng,
            );
            let worker_payload = if story == Story::OldWorker { 1 } else { payload };
            push(
                worker_ts,
                worker_ts,
                "checkout_v2",
                Fields {
                    layer: "worker",
                    flag: None,
                    cap: None,
                    flow: None,
                    payload: Some(worker_payload),
                    revision: "r42",
                },
                rng,
            );
            match story {
                Story::AnalyticsMissing => {}
                Story::AnalyticsLate => {
                    // Sent once the join has surely closed (window +
                    // lateness + a margin), still remembered as closed
                    // (< 2 × window), carrying its early event time.
                    let emit = at_ms + late_delay;
                    push(
                        emit,
                        analytics_ts,
                        "checkout_v2",
                        Fields {
                            layer: "analytics",
                            flag: None,
                            cap: None,
                            flow: Some(flow),
                            payload: None,
                            revision: "r42",
                        },
                        rng,
                    );
                }
                _ => push(
                    analytics_ts,
                    analytics_ts,
                    "checkout_v2",
                    Fields {
                        layer: "analytics",
                        flag: None,
                        cap: None,
                        flow: Some(flow),
                        payload: None,
                        revision: "r42",
                    },
                    rng,
                ),
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_come_out_in_emit_order_and_are_valid() {
        let g = Generator::new(
            Scenario::Mixed,
            Timing { window_ms: 5_000, allowed_lateness_ms: 1_000 },
            2_000.0,
            20_000,
            0,
            7,
        );
        let mut last = i64::MIN;
        let mut n = 0;
        for r in g {
            assert!(r.emit_ms >= last);
            last = r.emit_ms;
            let d = crate::decode::decode(r.json.as_bytes()).unwrap();
            assert_eq!(d.request_id, r.key);
            n += 1;
        }
        assert!(n > 30_000, "{n}");
    }

    #[test]
    fn same_seed_same_stream() {
        let t = Timing { window_ms: 30_000, allowed_lateness_ms: 5_000 };
        let a: Vec<String> = Generator::new(Scenario::SlowAnalytics, t, 500.0, 5_000, 1, 3).map(|r| r.json).collect();
        let b: Vec<String> = Generator::new(Scenario::SlowAnalytics, t, 500.0, 5_000, 1, 3).map(|r| r.json).collect();
        assert_eq!(a, b);
    }
}
