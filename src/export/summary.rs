//! The replay summary (`accord replay --format summary`,
//! docs/reference.md#accord-replay): counts per feature,
//! path, verdict, divergence kind, missing layer, rejects, late records,
//! and each feature's exposed agreement.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::Serialize;

use crate::catalog::LayerId;
use crate::decode::Reject;
use crate::features::{FeatureId, Features};
use crate::join::{Closed, Observer};
use crate::judge::{DivergenceKind, RecordPath, RequestPath, Verdict};

#[derive(Default, Clone)]
struct Counts {
    records: Vec<u64>,
    late: Vec<u64>,
    decisions: Vec<[u64; 3]>,
    requests: [[u64; 4]; 4],
    divergences: BTreeMap<(DivergenceKind, LayerId, LayerId), u64>,
    missing: Vec<u64>,
    clock_skewed: Vec<u64>,
    stale: Vec<u64>,
}

/// Accumulates the summary as an observer.
pub struct Summary {
    features: Arc<Features>,
    rejected: [u64; Reject::ALL.len()],
    otlp_items_ignored: u64,
    per_feature: Vec<Counts>,
}

#[derive(Serialize, Debug, Clone, PartialEq)]
pub struct SummaryReport {
    /// Valid records, late ones included.
    pub records: u64,
    pub late: u64,
    /// Closed joins.
    pub requests: u64,
    pub rejected: BTreeMap<String, u64>,
    /// OpenTelemetry log records and span events that were not flag
    /// evaluations.
    pub otlp_items_ignored: u64,
    pub features: BTreeMap<String, FeatureReport>,
}

#[derive(Serialize, Debug, Clone, PartialEq)]
pub struct FeatureReport {
    /// Among closed joins on the new or mixed path and not incomplete,
    /// the fraction that agreed; `null` when there were none.
    pub exposed_agreement: Option<f64>,
    pub exposed_requests: u64,
    pub exposed_agree: u64,
    pub requests: u64,
    pub verdicts: BTreeMap<String, u64>,
    /// `path -> verdict -> count`.
    pub paths: BTreeMap<String, BTreeMap<String, u64>>,
    /// `kind -> "upstream/downstream" -> count`, non-zero only.
    pub divergences: BTreeMap<String, BTreeMap<String, u64>>,
    pub missing_layers: BTreeMap<String, u64>,
    pub records: BTreeMap<String, u64>,
    pub late: BTreeMap<String, u64>,
    /// `layer -> path -> count` of non-late records.
    pub layer_decisions: BTreeMap<String, BTreeMap<String, u64>>,
    /// Records whose `ts` came from a clock too far ahead, by layer.
    pub clock_skewed: BTreeMap<String, u64>,
    /// Records that evaluated an already superseded flag revision, by layer.
    pub stale_revisions: BTreeMap<String, u64>,
}

impl Summary {
    pub fn new(features: Arc<Features>) -> Self {
        Summary { features, rejected: [0; Reject::ALL.len()], otlp_items_ignored: 0, per_feature: Vec::new() }
    }

    fn c(&mut self, id: FeatureId) -> &mut Counts {
        let n = self.features.catalog().layers.len();
        while self.per_feature.len() <= id.index() {
            self.per_feature.push(Counts {
                records: vec![0; n],
                late: vec![0; n],
                decisions: vec![[0; 3]; n],
                missing: vec![0; n],
                clock_skewed: vec![0; n],
                stale: vec![0; n],
                ..Counts::default()
            });
        }
        &mut self.per_feature[id.index()]
    }

    pub fn report(&mut self) -> SummaryReport {
        let cat = self.features.catalog().clone();
        // Every catalog feature appears, with zeros if it saw no traffic.
        if let Some(last) = FeatureId::all(cat.features.len()).last() {
            self.c(last);
        }
        let layer = |l: usize| cat.layers[l].clone();
        let mut features = BTreeMap::new();
        let (mut records, mut late, mut requests) = (0, 0, 0);
        for (id, c) in self.per_feature.iter().enumerate() {
            let mut verdicts: BTreeMap<String, u64> = BTreeMap::new();
            let mut paths = BTreeMap::new();
            for p in RequestPath::ALL {
                let mut by_v = BTreeMap::new();
                for v in Verdict::ALL {
                    let n = c.requests[p as usize][v as usize];
                    by_v.insert(v.as_str().to_string(), n);
                    *verdicts.entry(v.as_str().to_string()).or_default() += n;
                }
                paths.insert(p.as_str().to_string(), by_v);
            }
            let exposed = |v: Verdict| {
                c.requests[RequestPath::New as usize][v as usize] + c.requests[RequestPath::Mixed as usize][v as usize]
            };
            let exposed_agree = exposed(Verdict::Agree);
            let exposed_requests = exposed(Verdict::Agree) + exposed(Verdict::Degraded) + exposed(Verdict::Diverge);
            let mut divergences: BTreeMap<String, BTreeMap<String, u64>> = BTreeMap::new();
            for (&(k, u, d), &n) in &c.divergences {
                divergences
                    .entry(k.as_str().to_string())
                    .or_default()
                    .insert(format!("{}/{}", layer(u.index()), layer(d.index())), n);
            }
            let per_layer =
                |v: &Vec<u64>| v.iter().enumerate().map(|(l, n)| (layer(l), *n)).collect::<BTreeMap<_, _>>();
            let fr = FeatureReport {
                exposed_agreement: (exposed_requests > 0).then(|| exposed_agree as f64 / exposed_requests as f64),
                exposed_requests,
                exposed_agree,
                requests: verdicts.values().sum(),
                verdicts,
                paths,
                divergences,
                missing_layers: per_layer(&c.missing),
                records: per_layer(&c.records),
                late: per_layer(&c.late),
                clock_skewed: per_layer(&c.clock_skewed),
                stale_revisions: per_layer(&c.stale),
                layer_decisions: c
                    .decisions
                    .iter()
                    .enumerate()
                    .map(|(l, d)| {
                        (layer(l), RecordPath::ALL.iter().map(|p| (p.as_str().to_string(), d[*p as usize])).collect())
                    })
                    .collect(),
            };
            records += c.records.iter().sum::<u64>();
            late += c.late.iter().sum::<u64>();
            requests += fr.requests;
            features.insert(self.features.name(FeatureId::new(id as u16)), fr);
        }
        SummaryReport {
            records,
            late,
            requests,
            rejected: Reject::ALL.iter().map(|r| (r.as_str().to_string(), self.rejected[r.index()])).collect(),
            otlp_items_ignored: self.otlp_items_ignored,
            features,
        }
    }
}

impl Observer for Summary {
    fn rejected(&mut self, r: Reject) {
        self.rejected[r.index()] += 1;
    }
    fn record(&mut self, feature: FeatureId, layer: LayerId, path: RecordPath, late: bool) {
        let c = self.c(feature);
        let l = layer.index();
        c.records[l] += 1;
        if late {
            c.late[l] += 1;
        } else {
            c.decisions[l][path as usize] += 1;
        }
    }
    fn closed(&mut self, cl: &Closed<'_>) {
        let c = self.c(cl.feature);
        let j = cl.judgement;
        c.requests[j.path as usize][j.verdict as usize] += 1;
        for d in cl.divergences {
            *c.divergences.entry((d.kind, d.upstream, d.downstream)).or_default() += 1;
        }
        for l in j.missing {
            c.missing[l.index()] += 1;
        }
    }
    fn clock_skewed(&mut self, feature: FeatureId, layer: LayerId) {
        self.c(feature).clock_skewed[layer.index()] += 1;
    }
    fn stale_revision(&mut self, feature: FeatureId, layer: LayerId) {
        self.c(feature).stale[layer.index()] += 1;
    }
    fn ignored(&mut self, items: u64) {
        self.otlp_items_ignored += items;
    }
}
