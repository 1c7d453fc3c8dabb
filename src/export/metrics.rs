//! Prometheus metrics (docs/reference.md#metrics) in an explicit registry.
//!
//! The families the pipeline updates per record and per closed join (the
//! "hot" ones: records, decisions, requests, divergences, missing layers,
//! layer lag, rejects, evictions) are not prometheus `*Vec`s: every
//! [`MetricsObserver`] owns a shard of plain counters, indexed by feature
//! id and label ids, that only it writes — an increment is a load and a
//! store, no locked read-modify-write and no label hashing. A collector in
//! the registry sums the shards when `/metrics` is rendered, so a scrape
//! is exact up to the last event any observer has handled: nothing is
//! buffered and nothing needs flushing. A dropped observer's counts are
//! folded into a retired shard. The rest (source and catalog gauges,
//! `accord_open_joins`) are ordinary prometheus metrics.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, LazyLock, Mutex, MutexGuard};

use prometheus::core::{Collector, Desc};
use prometheus::proto::{self, MetricFamily, MetricType};
use prometheus::{
    Encoder, Gauge, GaugeVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry, TextEncoder,
};

use crate::catalog::LayerId;
use crate::decode::Reject;
use crate::features::{FeatureId, Features};
use crate::join::{CloseCause, Closed, Observer};
use crate::judge::{DivergenceKind, RecordPath, RequestPath, Verdict};

/// Buckets for `accord_layer_lag_seconds`: from a same-request frontend/api
/// hop (milliseconds) to a slow analytics pipeline (minutes).
pub const LAG_BUCKETS: &[f64] =
    &[0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0];

/// The metric contract, one family per line (`NAME TYPE LABELS FLAGS`, format
/// in the file's header). The CI checks of rules and dashboards read the same
/// file, so the list exists once.
pub const CONTRACT_FILE: &str = include_str!("contract_metrics.txt");

/// One family of [`CONTRACT_FILE`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ContractMetric {
    pub name: &'static str,
    /// `counter`, `gauge` or `histogram`.
    pub kind: &'static str,
    /// Comma-separated `label` or `label=value|value|...`, or `-`.
    pub labels: &'static str,
    /// Comma-separated among `compared`, `planned`, `extra`, or `-`.
    pub flags: &'static str,
}

impl ContractMetric {
    pub fn has_flag(&self, flag: &str) -> bool {
        self.flags.split(',').any(|f| f == flag)
    }
}

/// Every family of [`CONTRACT_FILE`]. The file is compiled in and parsed by
/// the unit tests, so a malformed line is a defect of the build, not of input.
pub fn contract_metrics() -> Vec<ContractMetric> {
    CONTRACT_FILE
        .lines()
        .map(|l| l.split('#').next().unwrap_or_default().trim())
        .filter(|l| !l.is_empty())
        .map(|l| match l.split_whitespace().collect::<Vec<_>>()[..] {
            [name, kind, labels, flags] => ContractMetric { name, kind, labels, flags },
            _ => panic!("contract_metrics.txt: want NAME TYPE LABELS FLAGS, got {l:?}"),
        })
        .collect()
}

/// The contract counters a conformance case compares, every series, zeros
/// included (those flagged `compared` in [`CONTRACT_FILE`]).
pub static CONTRACT_COUNTERS: LazyLock<Vec<&'static str>> =
    LazyLock::new(|| contract_metrics().into_iter().filter(|m| m.has_flag("compared")).map(|m| m.name).collect());

#[derive(Debug, thiserror::Error)]
#[error("metrics registry: {0}")]
pub struct MetricsError(#[from] prometheus::Error);

/// Every accord metric family (the hot ones behind one collector).
#[derive(Clone)]
pub struct Metrics {
    pub registry: Registry,
    pub open_joins: IntGauge,
    // source stage
    pub watermark_delay: GaugeVec,
    pub consumer_lag: IntGaugeVec,
    pub rebalances: IntCounter,
    pub commits: IntCounterVec,
    pub replayed_suppressed: IntCounter,
    /// Per topic of a stream: how often the stream stopped waiting for it.
    pub topic_waits_expired: IntCounterVec,
    /// Bytes of live-view shares this instance published.
    pub stats_bytes: IntCounter,
    /// Seconds since the oldest stream's newest share in the global view.
    pub view_age: Gauge,
    /// Instances whose shares the global view holds.
    pub view_instances: IntGauge,
    pub ready: IntGauge,
    // catalog
    pub feature_info: IntGaugeVec,
    pub feature_expiry: GaugeVec,
    pub build_info: IntGaugeVec,
    hot: Arc<Hot>,
    features: Arc<Features>,
}

fn counter_vec(r: &Registry, name: &str, help: &str, labels: &[&str]) -> Result<IntCounterVec, MetricsError> {
    let c = IntCounterVec::new(Opts::new(name, help), labels)?;
    r.register(Box::new(c.clone()))?;
    Ok(c)
}

impl Metrics {
    pub fn new(features: Arc<Features>) -> Result<Metrics, MetricsError> {
        let r = Registry::new();
        let hot = Arc::new(Hot::new(features.clone())?);
        r.register(Box::new(HotCollector(hot.clone())))?;
        let m = Metrics {
            open_joins: {
                let g = IntGauge::new("accord_open_joins", "Requests whose join is open (in flight).")?;
                r.register(Box::new(g.clone()))?;
                g
            },
            watermark_delay: {
                let g = GaugeVec::new(
                    Opts::new("accord_watermark_delay_seconds", "Wall clock minus the partition's watermark."),
                    &["topic", "partition"],
                )?;
                r.register(Box::new(g.clone()))?;
                g
            },
            consumer_lag: {
                let g = IntGaugeVec::new(
                    Opts::new("accord_consumer_lag_messages", "High watermark minus the next offset to consume."),
                    &["topic", "partition"],
                )?;
                r.register(Box::new(g.clone()))?;
                g
            },
            rebalances: {
                let c = IntCounter::new(
                    "accord_kafka_rebalances_total",
                    "Consumer group rebalances seen (assign or revoke).",
                )?;
                r.register(Box::new(c.clone()))?;
                c
            },
            commits: counter_vec(&r, "accord_kafka_commits_total", "Offset commits by result.", &["result"])?,
            stats_bytes: {
                let c = IntCounter::new(
                    "accord_stats_published_bytes_total",
                    "Bytes of live-view statistics this instance published to the stats topic.",
                )?;
                r.register(Box::new(c.clone()))?;
                c
            },
            view_age: {
                let g = Gauge::new(
                    "accord_view_age_seconds",
                    "Seconds since the oldest partition's newest statistics in the global live view.",
                )?;
                r.register(Box::new(g.clone()))?;
                g
            },
            view_instances: {
                let g = IntGauge::new(
                    "accord_view_instances",
                    "Instances of the consumer group whose statistics the global live view holds.",
                )?;
                r.register(Box::new(g.clone()))?;
                g
            },
            topic_waits_expired: counter_vec(
                &r,
                "accord_stream_topic_waits_expired_total",
                "Times a stream of several topics stopped waiting for a topic with nothing fetched (max_topic_idle) and judged the others without it.",
                &["topic", "partition"],
            )?,
            replayed_suppressed: {
                let c = IntCounter::new("accord_records_replayed_suppressed_total", "Records re-read after a handover or crash whose effects were already counted by the previous owner.")?;
                r.register(Box::new(c.clone()))?;
                c
            },
            ready: {
                let g = IntGauge::new("accord_ready", "1 when the catalog is loaded and partitions are assigned.")?;
                r.register(Box::new(g.clone()))?;
                g
            },
            feature_info: {
                let g = IntGaugeVec::new(
                    Opts::new("accord_feature_info", "Catalog features (value 1)."),
                    &["feature", "owner", "class"],
                )?;
                r.register(Box::new(g.clone()))?;
                g
            },
            feature_expiry: {
                let g = GaugeVec::new(
                    Opts::new(
                        "accord_feature_expiry_timestamp_seconds",
                        "Planned removal date of the flag, as a Unix timestamp.",
                    ),
                    &["feature"],
                )?;
                r.register(Box::new(g.clone()))?;
                g
            },
            build_info: {
                let g = IntGaugeVec::new(Opts::new("accord_build_info", "accord build (value 1)."), &["version"])?;
                r.register(Box::new(g.clone()))?;
                g
            },
            registry: r,
            hot,
            features,
        };
        m.build_info.with_label_values(&[env!("CARGO_PKG_VERSION")]).set(1);
        for res in ["ok", "error"] {
            m.commits.with_label_values(&[res]);
        }
        let cat = m.features.catalog().clone();
        for f in &cat.features {
            m.feature_info.with_label_values(&[&f.key, &f.owner, f.class.as_str()]).set(1);
            if let Some(t) = f.expires {
                m.feature_expiry.with_label_values(&[&f.key]).set(t as f64);
            }
        }
        Ok(m)
    }

    pub fn features(&self) -> &Arc<Features> {
        &self.features
    }

    /// A per-task observer with its own shard of counters.
    pub fn observer(&self) -> MetricsObserver {
        let shard = Arc::new(Shard::default());
        self.hot.lock().push(shard.clone());
        MetricsObserver {
            hot: self.hot.clone(),
            shard,
            blocks: Vec::new(),
            layout: self.hot.layout,
            open_joins: self.open_joins.clone(),
        }
    }

    /// The registry in the classic text format (`promtool check metrics`
    /// lints only that one).
    pub fn render(&self) -> String {
        let mut buf = Vec::new();
        let enc = TextEncoder::new();
        // Encoding into a Vec cannot fail on I/O; a failure here would
        // be an inconsistent registry, which `new` rules out.
        if enc.encode(&self.registry.gather(), &mut buf).is_err() {
            return String::new();
        }
        String::from_utf8(buf).unwrap_or_default()
    }
}

/// A monotonic counter with one writer (its observer): an increment is a
/// relaxed load and a release store, which compile to plain moves.
/// Readers (the collector) load it with acquire.
#[derive(Default)]
struct Count(AtomicU64);

impl Count {
    #[inline]
    fn add(&self, n: u64) {
        self.0.store(self.0.load(Ordering::Relaxed).wrapping_add(n), Ordering::Release);
    }
    fn get(&self) -> u64 {
        self.0.load(Ordering::Acquire)
    }
    /// For the retired shard, written by several threads under a lock.
    fn fold(&self, n: u64) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }
}

const PATHS: usize = RecordPath::ALL.len();
const VERDICTS: usize = Verdict::ALL.len();
const REQUEST_PATHS: usize = RequestPath::ALL.len();
const KINDS: usize = DivergenceKind::ALL.len();
const BUCKETS: usize = LAG_BUCKETS.len();

/// Where each counter of one feature sits in its block, for `n` layers.
#[derive(Debug, Clone, Copy)]
struct Layout {
    n: usize,
    records: usize,
    late: usize,
    /// `[layer][path]`
    decisions: usize,
    /// `[path][verdict]`
    requests: usize,
    /// `[kind][upstream][downstream]`; only `upstream <= downstream` used.
    divergences: usize,
    missing: usize,
    skewed: usize,
    stale: usize,
    /// `[layer][bucket]`, not cumulative; `+Inf` is the count.
    lag_buckets: usize,
    lag_count: usize,
    /// Milliseconds, so the sum is exact whatever the order.
    lag_sum_ms: usize,
    len: usize,
}

impl Layout {
    fn new(n: usize) -> Self {
        let records = 0;
        let late = records + n;
        let decisions = late + n;
        let requests = decisions + n * PATHS;
        let divergences = requests + REQUEST_PATHS * VERDICTS;
        let missing = divergences + KINDS * n * n;
        let skewed = missing + n;
        let stale = skewed + n;
        let lag_buckets = stale + n;
        let lag_count = lag_buckets + n * BUCKETS;
        let lag_sum_ms = lag_count + n;
        let len = lag_sum_ms + n;
        Layout {
            n,
            records,
            late,
            decisions,
            requests,
            divergences,
            missing,
            skewed,
            stale,
            lag_buckets,
            lag_count,
            lag_sum_ms,
            len,
        }
    }
}

/// Counters not per feature: rejects by reason, evictions, ignored items.
const MISC: usize = Reject::ALL.len() + 2;
const EVICTED: usize = Reject::ALL.len();
const IGNORED: usize = Reject::ALL.len() + 1;

type Block = Arc<[Count]>;

fn block(len: usize) -> Block {
    (0..len).map(|_| Count::default()).collect()
}

/// One observer's counters: a block per feature id it has seen.
struct Shard {
    blocks: Mutex<Vec<Block>>,
    misc: [Count; MISC],
}

impl Default for Shard {
    fn default() -> Self {
        Shard { blocks: Mutex::new(Vec::new()), misc: std::array::from_fn(|_| Count::default()) }
    }
}

impl Shard {
    fn blocks(&self) -> MutexGuard<'_, Vec<Block>> {
        self.blocks.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The hot families: live shards plus the counts of dropped observers.
struct Hot {
    layout: Layout,
    features: Arc<Features>,
    /// Feature ids whose series exist from the start (catalog + `other`).
    initial: usize,
    shards: Mutex<Vec<Arc<Shard>>>,
    retired: Shard,
    descs: Vec<Desc>,
}

const F_REJECTED: usize = 0;
const F_RECORDS: usize = 1;
const F_LATE: usize = 2;
const F_DECISIONS: usize = 3;
const F_REQUESTS: usize = 4;
const F_DIVERGENCES: usize = 5;
const F_MISSING: usize = 6;
const F_LAG: usize = 7;
const F_EVICTED: usize = 8;
const F_SKEWED: usize = 9;
const F_STALE: usize = 10;
const F_IGNORED: usize = 11;

/// Name, help and labels of each hot family, in `F_*` order.
const FAMILIES: [(&str, &str, &[&str]); 12] = [
    ("accord_records_rejected_total", "Records rejected and skipped, by reason.", &["reason"]),
    ("accord_records_total", "Valid decision records, late ones included.", &["feature", "layer"]),
    (
        "accord_records_late_total",
        "Valid records that arrived after their join closed or beyond the watermark; they change no verdict.",
        &["feature", "layer"],
    ),
    (
        "accord_layer_decisions_total",
        "Valid, non-late records by the release path the layer acted on, at arrival.",
        &["feature", "layer", "path"],
    ),
    (
        "accord_requests_total",
        "Closed joins (judged requests) by request path and verdict.",
        &["feature", "path", "verdict"],
    ),
    (
        "accord_divergences_total",
        "Divergences found in closed joins, once per join, kind and layer pair (upstream/downstream in pipeline order).",
        &["feature", "kind", "upstream", "downstream"],
    ),
    ("accord_missing_layers_total", "Expected layers that never reported for a closed join.", &["feature", "layer"]),
    (
        "accord_layer_lag_seconds",
        "At close: event time of the layer's first record minus the join start.",
        &["feature", "layer"],
    ),
    ("accord_joins_evicted_total", "Joins closed early by max_open_joins (oldest start first).", &[]),
    (
        "accord_records_clock_skewed_total",
        "Valid records whose ts was further ahead of their reference time than max_clock_skew; they took the time of a record without ts.",
        &["feature", "layer"],
    ),
    (
        "accord_stale_revision_records_total",
        "Valid records that evaluated a flag revision the stream had already seen superseded at their event time.",
        &["feature", "layer"],
    ),
    (
        "accord_otlp_items_ignored_total",
        "OpenTelemetry log records and span events that are not flag evaluations.",
        &[],
    ),
];

impl Hot {
    fn new(features: Arc<Features>) -> Result<Self, MetricsError> {
        let cat = features.catalog().clone();
        let descs = FAMILIES
            .iter()
            .map(|(name, help, labels)| {
                Desc::new(
                    name.to_string(),
                    help.to_string(),
                    labels.iter().map(|l| l.to_string()).collect(),
                    Default::default(),
                )
            })
            .collect::<Result<_, _>>()?;
        let track = cat.unknown_features == crate::catalog::UnknownFeatures::Track;
        Ok(Hot {
            layout: Layout::new(cat.layers.len()),
            initial: cat.features.len() + usize::from(track),
            features,
            shards: Mutex::new(Vec::new()),
            retired: Shard::default(),
            descs,
        })
    }

    fn lock(&self) -> MutexGuard<'_, Vec<Arc<Shard>>> {
        self.shards.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Sums of every counter over the retired and live shards:
    /// `(per feature block, flattened; misc)`.
    fn totals(&self) -> (usize, Vec<u64>, [u64; MISC]) {
        let len = self.layout.len;
        let shards = self.lock();
        let mut sums: Vec<u64> = Vec::new();
        let mut misc = [0u64; MISC];
        for shard in std::iter::once(&self.retired).chain(shards.iter().map(|s| &**s)) {
            for (m, c) in misc.iter_mut().zip(&shard.misc) {
                *m = m.wrapping_add(c.get());
            }
            let blocks = shard.blocks();
            if sums.len() < blocks.len() * len {
                sums.resize(blocks.len() * len, 0);
            }
            for (i, b) in blocks.iter().enumerate() {
                for (s, c) in sums[i * len..(i + 1) * len].iter_mut().zip(b.iter()) {
                    *s = s.wrapping_add(c.get());
                }
            }
        }
        drop(shards);
        let nf = (sums.len() / len.max(1)).max(self.initial).min(self.features.len().max(self.initial));
        sums.resize(nf * len, 0);
        (nf, sums, misc)
    }

    /// A dropped observer's counts move to the retired shard.
    fn retire(&self, shard: &Arc<Shard>) {
        let mut shards = self.lock();
        shards.retain(|s| !Arc::ptr_eq(s, shard));
        for (r, c) in self.retired.misc.iter().zip(&shard.misc) {
            r.fold(c.get());
        }
        let mut retired = self.retired.blocks();
        for (i, b) in shard.blocks().iter().enumerate() {
            while retired.len() <= i {
                retired.push(block(self.layout.len));
            }
            for (r, c) in retired[i].iter().zip(b.iter()) {
                r.fold(c.get());
            }
        }
    }
}

fn label(name: &str, value: &str) -> proto::LabelPair {
    let mut l = proto::LabelPair::default();
    l.set_name(name.to_string());
    l.set_value(value.to_string());
    l
}

/// A metric with its labels in name order (as prometheus' own vectors).
fn labelled(pairs: &[(&str, &str)]) -> proto::Metric {
    let mut labels: Vec<proto::LabelPair> = pairs.iter().map(|(n, v)| label(n, v)).collect();
    labels.sort_by(|a, b| a.name().cmp(b.name()));
    proto::Metric::from_label(labels)
}

fn counter(pairs: &[(&str, &str)], v: u64) -> proto::Metric {
    let mut m = labelled(pairs);
    let mut c = proto::Counter::default();
    c.set_value(v as f64);
    m.set_counter(c);
    m
}

struct HotCollector(Arc<Hot>);

impl Collector for HotCollector {
    fn desc(&self) -> Vec<&Desc> {
        self.0.descs.iter().collect()
    }

    fn collect(&self) -> Vec<MetricFamily> {
        let hot = &self.0;
        let Layout { n, .. } = hot.layout;
        let lay = hot.layout;
        let (nf, sums, misc) = hot.totals();
        let cat = hot.features.catalog();
        let layers: Vec<&str> = cat.layers.iter().map(String::as_str).collect();
        let mut fams: Vec<Vec<proto::Metric>> = (0..FAMILIES.len()).map(|_| Vec::new()).collect();
        for r in Reject::ALL {
            fams[F_REJECTED].push(counter(&[("reason", r.as_str())], misc[r.index()]));
        }
        fams[F_EVICTED].push(counter(&[], misc[EVICTED]));
        fams[F_IGNORED].push(counter(&[], misc[IGNORED]));
        for f in 0..nf {
            let name = hot.features.name(FeatureId::new(f as u16));
            let fname = name.as_str();
            let c = &sums[f * lay.len..(f + 1) * lay.len];
            for (l, layer) in layers.iter().enumerate() {
                let fl = [("feature", fname), ("layer", *layer)];
                fams[F_RECORDS].push(counter(&fl, c[lay.records + l]));
                fams[F_LATE].push(counter(&fl, c[lay.late + l]));
                fams[F_MISSING].push(counter(&fl, c[lay.missing + l]));
                fams[F_SKEWED].push(counter(&fl, c[lay.skewed + l]));
                fams[F_STALE].push(counter(&fl, c[lay.stale + l]));
                for p in RecordPath::ALL {
                    fams[F_DECISIONS].push(counter(
                        &[("feature", fname), ("layer", layer), ("path", p.as_str())],
                        c[lay.decisions + l * PATHS + p as usize],
                    ));
                }
                let mut h = proto::Histogram::default();
                let mut cumulative = 0;
                let buckets = LAG_BUCKETS
                    .iter()
                    .enumerate()
                    .map(|(b, &bound)| {
                        cumulative += c[lay.lag_buckets + l * BUCKETS + b];
                        let mut bk = proto::Bucket::default();
                        bk.set_cumulative_count(cumulative);
                        bk.set_upper_bound(bound);
                        bk
                    })
                    .collect();
                h.set_bucket(buckets);
                h.set_sample_count(c[lay.lag_count + l]);
                h.set_sample_sum(c[lay.lag_sum_ms + l] as i64 as f64 / 1000.0);
                let mut m = labelled(&fl);
                m.set_histogram(h);
                fams[F_LAG].push(m);
            }
            for p in RequestPath::ALL {
                for v in Verdict::ALL {
                    fams[F_REQUESTS].push(counter(
                        &[("feature", fname), ("path", p.as_str()), ("verdict", v.as_str())],
                        c[lay.requests + p as usize * VERDICTS + v as usize],
                    ));
                }
            }
            for k in DivergenceKind::ALL {
                for u in 0..n {
                    for d in u..n {
                        fams[F_DIVERGENCES].push(counter(
                            &[
                                ("feature", fname),
                                ("kind", k.as_str()),
                                ("upstream", layers[u]),
                                ("downstream", layers[d]),
                            ],
                            c[lay.divergences + (k as usize * n + u) * n + d],
                        ));
                    }
                }
            }
        }
        FAMILIES
            .iter()
            .zip(fams)
            .enumerate()
            .map(|(i, ((name, help, _), metrics))| {
                let mut mf = MetricFamily::default();
                mf.set_name(name.to_string());
                mf.set_help(help.to_string());
                mf.set_field_type(if i == F_LAG { MetricType::HISTOGRAM } else { MetricType::COUNTER });
                mf.set_metric(metrics);
                mf
            })
            .collect()
    }
}

/// The bucket of a lag of `ms` milliseconds: the one prometheus' own
/// histogram picks for `ms / 1000` seconds (`None`: only `+Inf`).
fn lag_bucket(ms: i64) -> Option<usize> {
    let secs = ms as f64 / 1000.0;
    LAG_BUCKETS.iter().position(|&bound| secs <= bound)
}

/// Counts one task's pipeline events into its own shard.
pub struct MetricsObserver {
    hot: Arc<Hot>,
    shard: Arc<Shard>,
    /// This shard's blocks, by feature id (also listed in the shard).
    blocks: Vec<Block>,
    layout: Layout,
    open_joins: IntGauge,
}

impl MetricsObserver {
    #[inline]
    fn block(&mut self, id: FeatureId) -> &[Count] {
        let i = id.index();
        if i >= self.blocks.len() {
            self.grow(i);
        }
        &self.blocks[i]
    }

    #[cold]
    fn grow(&mut self, i: usize) {
        let mut listed = self.shard.blocks();
        while self.blocks.len() <= i {
            let b = block(self.layout.len);
            listed.push(b.clone());
            self.blocks.push(b);
        }
    }
}

impl Drop for MetricsObserver {
    fn drop(&mut self) {
        self.hot.retire(&self.shard);
    }
}

impl Observer for MetricsObserver {
    fn rejected(&mut self, r: Reject) {
        self.shard.misc[r.index()].add(1);
    }

    #[inline]
    fn record(&mut self, feature: FeatureId, layer: LayerId, path: RecordPath, late: bool) {
        let lay = self.layout;
        let c = self.block(feature);
        let l = layer.index();
        c[lay.records + l].add(1);
        if late {
            c[lay.late + l].add(1);
        } else {
            c[lay.decisions + l * PATHS + path as usize].add(1);
        }
    }

    fn closed(&mut self, cl: &Closed<'_>) {
        let lay = self.layout;
        let n = lay.n;
        if cl.cause == CloseCause::Evicted {
            self.shard.misc[EVICTED].add(1);
        }
        let c = self.block(cl.feature);
        let j = cl.judgement;
        c[lay.requests + j.path as usize * VERDICTS + j.verdict as usize].add(1);
        for d in cl.divergences {
            let (u, dn) = (d.upstream.index(), d.downstream.index());
            if u <= dn && dn < n {
                c[lay.divergences + (d.kind as usize * n + u) * n + dn].add(1);
            }
        }
        for l in j.missing.iter().map(LayerId::index).filter(|&l| l < n) {
            c[lay.missing + l].add(1);
        }
        // First record of each layer, in event time.
        let mut first = [i64::MAX; crate::catalog::MAX_LAYERS];
        for r in cl.records {
            let f = &mut first[r.layer.index()];
            *f = (*f).min(r.ts_ms);
        }
        for (l, &t) in first.iter().enumerate().take(n) {
            if t != i64::MAX {
                let ms = t - cl.start_ms;
                if let Some(b) = lag_bucket(ms) {
                    c[lay.lag_buckets + l * BUCKETS + b].add(1);
                }
                c[lay.lag_count + l].add(1);
                c[lay.lag_sum_ms + l].add(ms as u64);
            }
        }
    }

    fn open_joins(&mut self, delta: i64) {
        self.open_joins.add(delta);
    }

    fn clock_skewed(&mut self, feature: FeatureId, layer: LayerId) {
        let at = self.layout.skewed + layer.index();
        self.block(feature)[at].add(1);
    }

    fn stale_revision(&mut self, feature: FeatureId, layer: LayerId) {
        let at = self.layout.stale + layer.index();
        self.block(feature)[at].add(1);
    }

    fn ignored(&mut self, items: u64) {
        self.shard.misc[IGNORED].add(items);
    }
}

/// Gauge for a stream's watermark delay; kept here so the source does not
/// need to know label order.
pub fn watermark_gauge(m: &Metrics, topic: &str, partition: i32) -> Gauge {
    m.watermark_delay.with_label_values(&[topic, &partition.to_string()])
}

/// Handle for `accord_consumer_lag_messages`.
pub fn lag_gauge(m: &Metrics, topic: &str, partition: i32) -> IntGauge {
    m.consumer_lag.with_label_values(&[topic, &partition.to_string()])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::Catalog;

    const F0: FeatureId = FeatureId::new(0);

    fn features(track: bool) -> Arc<Features> {
        let mut text = include_str!("../../tests/conformance/catalog.toml").to_string();
        if track {
            text = text.replace("[monitor]", "[monitor]\nunknown_features = \"track\"");
        }
        Arc::new(Features::new(Arc::new(Catalog::parse(std::path::Path::new("c.toml"), &text).unwrap())))
    }

    fn value(text: &str, series: &str) -> Option<f64> {
        text.lines().find_map(|l| l.strip_prefix(series).and_then(|v| v.strip_prefix(' ')).map(|v| v.parse().unwrap()))
    }

    #[test]
    fn shards_sum_and_survive_their_observer() {
        let f = features(false);
        let m = Metrics::new(f.clone()).unwrap();
        let api = f.catalog().layer_id("api").unwrap();
        let mut a = m.observer();
        let mut b = m.observer();
        for _ in 0..3 {
            a.record(F0, api, RecordPath::New, false);
        }
        b.record(F0, api, RecordPath::New, false);
        b.record(F0, api, RecordPath::Old, true);
        b.rejected(Reject::TooLarge);
        let series = format!(r#"accord_records_total{{feature="{}",layer="api"}}"#, f.name(F0));
        assert_eq!(value(&m.render(), &series), Some(5.0));
        drop(b);
        let text = m.render();
        assert_eq!(value(&text, &series), Some(5.0), "a dropped observer's counts stay");
        assert_eq!(value(&text, r#"accord_records_rejected_total{reason="too_large"}"#), Some(1.0));
        a.record(F0, api, RecordPath::Old, false);
        assert_eq!(value(&m.render(), &series), Some(6.0));
        assert_eq!(m.hot.lock().len(), 1);
    }

    #[test]
    fn lag_buckets_like_prometheus() {
        let reference =
            prometheus::Histogram::with_opts(prometheus::HistogramOpts::new("x", "x").buckets(LAG_BUCKETS.to_vec()))
                .unwrap();
        let mut mine = [0u64; BUCKETS];
        let mut values: Vec<i64> = vec![0, 1, 1_000_000_000];
        for &b in LAG_BUCKETS {
            let ms = (b * 1000.0).round() as i64;
            values.extend([ms - 1, ms, ms + 1]);
        }
        for ms in values {
            reference.observe(ms as f64 / 1000.0);
            if let Some(b) = lag_bucket(ms) {
                mine[b] += 1;
            }
        }
        let mut cumulative = 0;
        let buckets = prometheus::core::Metric::metric(&reference).get_histogram().get_bucket().to_vec();
        for (b, r) in mine.iter().zip(buckets) {
            cumulative += b;
            assert_eq!(cumulative, r.cumulative_count(), "le={}", r.upper_bound());
        }
    }

    /// Every family the registry renders is in contract_metrics.txt with the
    /// same type, label names and (for enumerated labels) values; every
    /// family of the file not flagged `planned` is rendered, and none flagged
    /// `planned` is. So the file the CI checks read cannot drift from the code.
    #[test]
    fn contract_file_matches_the_registry() {
        use std::collections::{BTreeMap, BTreeSet};
        let m = Metrics::new(features(true)).unwrap();
        // Per-partition gauges have series only once a partition is assigned.
        watermark_gauge(&m, "decisions", 0).set(1.0);
        lag_gauge(&m, "decisions", 0).set(1);
        m.topic_waits_expired.with_label_values(&["decisions", "0"]).inc();
        let text = m.render();
        // family -> (type, label -> values)
        let mut rendered: BTreeMap<&str, (&str, BTreeMap<&str, BTreeSet<&str>>)> = BTreeMap::new();
        for line in text.lines() {
            if let Some((name, kind)) = line.strip_prefix("# TYPE ").and_then(|t| t.split_once(' ')) {
                rendered.insert(name, (kind, BTreeMap::new()));
                continue;
            }
            if line.starts_with('#') {
                continue;
            }
            let series = line.rsplit_once(' ').unwrap().0;
            let (name, labels) = series.split_once('{').unwrap_or((series, ""));
            let family = ["_bucket", "_sum", "_count"]
                .iter()
                .filter_map(|s| name.strip_suffix(s))
                .find(|f| rendered.get(f).is_some_and(|(k, _)| *k == "histogram"))
                .unwrap_or(name);
            let entry = &mut rendered.get_mut(family).unwrap_or_else(|| panic!("{name}: no TYPE line")).1;
            for pair in labels.trim_end_matches('}').split("\",").filter(|p| !p.is_empty()) {
                let (k, v) = pair.split_once("=\"").unwrap();
                if k != "le" {
                    entry.entry(k).or_default().insert(v.trim_end_matches('"'));
                }
            }
        }
        let contract = contract_metrics();
        assert_eq!(CONTRACT_COUNTERS.len(), contract.iter().filter(|c| c.has_flag("compared")).count());
        for c in &contract {
            assert!(["counter", "gauge", "histogram"].contains(&c.kind), "{}: type {}", c.name, c.kind);
            assert!(!c.has_flag("compared") || c.kind == "counter", "{}: only counters are compared", c.name);
            if c.has_flag("planned") {
                assert!(!rendered.contains_key(c.name), "{} is exported now: drop its `planned` flag", c.name);
                continue;
            }
            let (kind, labels) = rendered
                .get(c.name)
                .unwrap_or_else(|| panic!("{} is in contract_metrics.txt but not exported", c.name));
            assert_eq!(*kind, c.kind, "{}: type", c.name);
            let want: BTreeMap<&str, Option<BTreeSet<&str>>> = c
                .labels
                .split(',')
                .filter(|l| *l != "-")
                .map(|l| match l.split_once('=') {
                    Some((k, vs)) => (k, Some(vs.split('|').collect())),
                    None => (l, None),
                })
                .collect();
            assert_eq!(labels.keys().collect::<Vec<_>>(), want.keys().collect::<Vec<_>>(), "{}: labels", c.name);
            for (label, values) in labels {
                if let Some(Some(allowed)) = want.get(label) {
                    let extra: Vec<_> = values.difference(allowed).collect();
                    assert!(extra.is_empty(), "{}: {label} values {extra:?} not in contract_metrics.txt", c.name);
                }
            }
        }
        for name in rendered.keys() {
            assert!(contract.iter().any(|c| c.name == *name), "{name} is exported but not in contract_metrics.txt");
        }
    }
}
