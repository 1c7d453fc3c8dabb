//! Prometheus metrics (SPEC §5) in an explicit registry.
//!
//! `Metrics` owns the families; each partition task gets a
//! [`MetricsObserver`] whose label handles are resolved once per feature
//! and then indexed by id, so the hot path does no label hashing.

use std::sync::Arc;

use prometheus::{
    Encoder, Gauge, GaugeVec, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec,
    Opts, Registry, TextEncoder,
};

use crate::catalog::{Catalog, LayerId};
use crate::decode::Reject;
use crate::features::{FeatureId, Features};
use crate::join::{Closed, Observer};
use crate::judge::{DivergenceKind, Path, RequestPath, Verdict};

/// Buckets for `accord_layer_lag_seconds`: from a same-request frontend/api
/// hop (milliseconds) to a slow analytics pipeline (minutes).
pub const LAG_BUCKETS: &[f64] =
    &[0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0];

/// The contract counters a conformance case compares (SPEC §5).
pub const CONTRACT_COUNTERS: &[&str] = &[
    "accord_records_total",
    "accord_records_rejected_total",
    "accord_records_late_total",
    "accord_layer_decisions_total",
    "accord_requests_total",
    "accord_divergences_total",
    "accord_missing_layers_total",
];

#[derive(Debug, thiserror::Error)]
#[error("metrics registry: {0}")]
pub struct MetricsError(#[from] prometheus::Error);

/// Every accord metric family.
#[derive(Clone)]
pub struct Metrics {
    pub registry: Registry,
    // decode stage
    pub records_rejected: IntCounterVec,
    // join stage
    pub records: IntCounterVec,
    pub records_late: IntCounterVec,
    pub layer_decisions: IntCounterVec,
    pub open_joins: IntGauge,
    pub joins_evicted: IntCounter,
    // judge stage
    pub requests: IntCounterVec,
    pub divergences: IntCounterVec,
    pub missing_layers: IntCounterVec,
    pub layer_lag: HistogramVec,
    // source stage
    pub watermark_delay: GaugeVec,
    pub consumer_lag: IntGaugeVec,
    pub rebalances: IntCounter,
    pub commits: IntCounterVec,
    pub replayed_suppressed: IntCounter,
    pub ready: IntGauge,
    // catalog
    pub feature_info: IntGaugeVec,
    pub feature_expiry: GaugeVec,
    pub build_info: IntGaugeVec,
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
        let ff = ["feature", "layer"];
        let m = Metrics {
            records_rejected: counter_vec(&r, "accord_records_rejected_total", "Records rejected and skipped, by reason (SPEC §9).", &["reason"])?,
            records: counter_vec(&r, "accord_records_total", "Valid decision records, late ones included.", &ff)?,
            records_late: counter_vec(&r, "accord_records_late_total", "Valid records that arrived after their join closed or beyond the watermark; they change no verdict.", &ff)?,
            layer_decisions: counter_vec(&r, "accord_layer_decisions_total", "Valid, non-late records by the release path the layer acted on, at arrival.", &["feature", "layer", "path"])?,
            open_joins: {
                let g = IntGauge::new("accord_open_joins", "Requests whose join is open (in flight).")?;
                r.register(Box::new(g.clone()))?;
                g
            },
            joins_evicted: {
                let c = IntCounter::new("accord_joins_evicted_total", "Joins closed early by max_open_joins (oldest start first).")?;
                r.register(Box::new(c.clone()))?;
                c
            },
            requests: counter_vec(&r, "accord_requests_total", "Closed joins (judged requests) by request path and verdict.", &["feature", "path", "verdict"])?,
            divergences: counter_vec(&r, "accord_divergences_total", "Divergences found in closed joins, once per join, kind and layer pair (upstream/downstream in pipeline order).", &["feature", "kind", "upstream", "downstream"])?,
            missing_layers: counter_vec(&r, "accord_missing_layers_total", "Expected layers that never reported for a closed join.", &ff)?,
            layer_lag: {
                let h = HistogramVec::new(
                    HistogramOpts::new("accord_layer_lag_seconds", "At close: event time of the layer's first record minus the join start.").buckets(LAG_BUCKETS.to_vec()),
                    &ff,
                )?;
                r.register(Box::new(h.clone()))?;
                h
            },
            watermark_delay: {
                let g = GaugeVec::new(Opts::new("accord_watermark_delay_seconds", "Wall clock minus the partition's watermark."), &["topic", "partition"])?;
                r.register(Box::new(g.clone()))?;
                g
            },
            consumer_lag: {
                let g = IntGaugeVec::new(Opts::new("accord_consumer_lag_messages", "High watermark minus the next offset to consume."), &["topic", "partition"])?;
                r.register(Box::new(g.clone()))?;
                g
            },
            rebalances: {
                let c = IntCounter::new("accord_kafka_rebalances_total", "Consumer group rebalances seen (assign or revoke).")?;
                r.register(Box::new(c.clone()))?;
                c
            },
            commits: counter_vec(&r, "accord_kafka_commits_total", "Offset commits by result.", &["result"])?,
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
                let g = IntGaugeVec::new(Opts::new("accord_feature_info", "Catalog features (value 1)."), &["feature", "owner", "class"])?;
                r.register(Box::new(g.clone()))?;
                g
            },
            feature_expiry: {
                let g = GaugeVec::new(Opts::new("accord_feature_expiry_timestamp_seconds", "Planned removal date of the flag, as a Unix timestamp."), &["feature"])?;
                r.register(Box::new(g.clone()))?;
                g
            },
            build_info: {
                let g = IntGaugeVec::new(Opts::new("accord_build_info", "accord build (value 1)."), &["version"])?;
                r.register(Box::new(g.clone()))?;
                g
            },
            registry: r,
            features,
        };
        m.build_info.with_label_values(&[env!("CARGO_PKG_VERSION")]).set(1);
        for r in Reject::ALL {
            m.records_rejected.with_label_values(&[r.as_str()]);
        }
        for res in ["ok", "error"] {
            m.commits.with_label_values(&[res]);
        }
        let cat = m.features.catalog().clone();
        for (i, f) in cat.features.iter().enumerate() {
            m.feature_info.with_label_values(&[&f.key, &f.owner, f.class.as_str()]).set(1);
            if let Some(t) = f.expires {
                m.feature_expiry.with_label_values(&[&f.key]).set(t as f64);
            }
            m.init_feature(i as FeatureId);
        }
        if cat.unknown_features == crate::catalog::UnknownFeatures::Track {
            m.init_feature(cat.features.len() as FeatureId);
        }
        Ok(m)
    }

    /// Starts every series the feature makes known at 0 (SPEC §5).
    fn init_feature(&self, id: FeatureId) {
        drop(FeatureHandles::new(self, id));
    }

    pub fn features(&self) -> &Arc<Features> {
        &self.features
    }

    /// A per-task observer with its own handle cache.
    pub fn observer(&self) -> MetricsObserver {
        MetricsObserver {
            m: self.clone(),
            catalog: self.features.catalog().clone(),
            handles: Vec::new(),
            rejected: Reject::ALL.iter().map(|r| self.records_rejected.with_label_values(&[r.as_str()])).collect(),
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

/// Label handles of one feature, indexed by layer / path / verdict ids.
struct FeatureHandles {
    records: Vec<IntCounter>,
    late: Vec<IntCounter>,
    decisions: Vec<[IntCounter; 3]>,
    requests: Vec<IntCounter>,
    /// `[kind][upstream][downstream]`, flattened; only `u <= d` are set.
    divergences: Vec<Option<IntCounter>>,
    missing: Vec<IntCounter>,
    lag: Vec<Histogram>,
}

impl FeatureHandles {
    fn new(m: &Metrics, id: FeatureId) -> Self {
        let cat = m.features.catalog();
        let name = m.features.name(id);
        let f = name.as_str();
        let layers: Vec<&str> = cat.layers.iter().map(|s| s.as_str()).collect();
        let n = layers.len();
        let mut divergences = vec![None; DivergenceKind::ALL.len() * n * n];
        for k in DivergenceKind::ALL {
            for u in 0..n {
                for d in u..n {
                    divergences[(k as usize * n + u) * n + d] =
                        Some(m.divergences.with_label_values(&[f, k.as_str(), layers[u], layers[d]]));
                }
            }
        }
        let mut requests = Vec::with_capacity(16);
        for p in RequestPath::ALL {
            for v in Verdict::ALL {
                requests.push(m.requests.with_label_values(&[f, p.as_str(), v.as_str()]));
            }
        }
        FeatureHandles {
            records: layers.iter().map(|l| m.records.with_label_values(&[f, l])).collect(),
            late: layers.iter().map(|l| m.records_late.with_label_values(&[f, l])).collect(),
            decisions: layers
                .iter()
                .map(|l| Path::ALL.map(|p| m.layer_decisions.with_label_values(&[f, l, p.as_str()])))
                .collect(),
            requests,
            divergences,
            missing: layers.iter().map(|l| m.missing_layers.with_label_values(&[f, l])).collect(),
            lag: layers.iter().map(|l| m.layer_lag.with_label_values(&[f, l])).collect(),
        }
    }
}

/// Updates the registry from one task's pipeline.
pub struct MetricsObserver {
    m: Metrics,
    catalog: Arc<Catalog>,
    handles: Vec<FeatureHandles>,
    rejected: Vec<IntCounter>,
}

impl MetricsObserver {
    fn h(&mut self, id: FeatureId) -> &FeatureHandles {
        while self.handles.len() <= id as usize {
            let next = self.handles.len() as FeatureId;
            self.handles.push(FeatureHandles::new(&self.m, next));
        }
        &self.handles[id as usize]
    }
}

impl Observer for MetricsObserver {
    fn rejected(&mut self, r: Reject) {
        self.rejected[r.index()].inc();
    }

    fn record(&mut self, feature: FeatureId, layer: LayerId, path: Path, late: bool) {
        let h = self.h(feature);
        h.records[layer as usize].inc();
        if late {
            h.late[layer as usize].inc();
        } else {
            h.decisions[layer as usize][path as usize].inc();
        }
    }

    fn closed(&mut self, c: &Closed<'_>) {
        let n = self.catalog.layers.len();
        if c.cause == crate::join::CloseCause::Evicted {
            self.m.joins_evicted.inc();
        }
        let h = self.h(c.feature);
        let j = c.judgement;
        h.requests[j.path as usize * 4 + j.verdict as usize].inc();
        for d in c.divergences {
            if let Some(ctr) = &h.divergences[(d.kind as usize * n + d.upstream as usize) * n + d.downstream as usize] {
                ctr.inc();
            }
        }
        let mut missing = j.missing;
        while missing != 0 {
            let l = missing.trailing_zeros() as usize;
            h.missing[l].inc();
            missing &= missing - 1;
        }
        // First record of each layer, in event time.
        let mut first = [i64::MAX; crate::catalog::MAX_LAYERS];
        for r in c.records {
            let f = &mut first[r.layer as usize];
            *f = (*f).min(r.ts_ms);
        }
        for (l, &t) in first.iter().enumerate().take(n) {
            if t != i64::MAX {
                h.lag[l].observe((t - c.start_ms) as f64 / 1000.0);
            }
        }
    }

    fn open_joins(&mut self, delta: i64) {
        self.m.open_joins.add(delta);
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
