//! Properties of the live statistics as a whole: merging deltas is exact
//! and its order never changes an answer; serialising loses nothing.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

use proptest::prelude::*;

use super::recorder::CloseEvent;
use super::{Delta, LiveView, Recorder, Sample, WindowStats, MAX_SAMPLES};
use crate::catalog::{Catalog, LayerId, LayerSet};
use crate::exit::ExitAgg;
use crate::explain::{Cause, Direction, Pair};
use crate::features::{FeatureId, Features};
use crate::join::{CloseCause, Evidence, Observer, Position};
use crate::judge::{DivergenceKind, RecordPath, RequestPath, Verdict};

const NOW: i64 = 125_000;
const FEATURES: [&str; 2] = ["checkout_v2", "search.ranking"];

fn features() -> Arc<Features> {
    let cat =
        Catalog::parse(std::path::Path::new("c.toml"), include_str!("../../tests/conformance/catalog.toml")).unwrap();
    Arc::new(Features::new(Arc::new(cat)))
}

/// One event some instance judged.
#[derive(Debug, Clone)]
struct Ev {
    instance: usize,
    feature: u16,
    /// Wall-clock time, coarse so that many events share a millisecond.
    at_ms: i64,
    what: u8,
    layer: u8,
    lag: i64,
    /// The instance hands its delta over after this event.
    take: bool,
}

fn events() -> impl Strategy<Value = Vec<Ev>> {
    proptest::collection::vec(
        (0..3usize, 0..2u16, 0..250i64, 0..8u8, 0..4u8, 0..40_000i64, proptest::bool::weighted(0.1)).prop_map(
            |(instance, feature, t, what, layer, lag, take)| Ev {
                instance,
                feature,
                at_ms: t * 500,
                what,
                layer,
                lag,
                take,
            },
        ),
        0..400,
    )
    .prop_map(|mut v| {
        v.sort_by_key(|e| e.at_ms);
        v
    })
}

fn feed(r: &mut Recorder, i: usize, e: &Ev) {
    let f = FeatureId::new(e.feature);
    let l = LayerId::new(e.layer);
    let other = LayerId::new((e.layer + 1) % 4);
    let (up, down) = (l.min(other), l.max(other));
    r.set_now_ms(e.at_ms);
    // Exit evidence of a record (event times spread around the arrival,
    // revisions and builds from small tables so that they repeat).
    if e.lag % 3 != 1 {
        let revs = ["r1", "r2", "r10"];
        let builds = ["b1", "b2"];
        r.evidence(&Evidence {
            feature: f,
            layer: l,
            path: RecordPath::ALL[(e.lag % 3) as usize],
            ts_ms: e.at_ms - e.lag % 7_000,
            service: (e.lag % 5 != 0).then_some("svc"),
            build: Some(builds[(e.lag % 2) as usize]),
            revision: (e.lag % 4 != 0).then(|| revs[(e.lag % 3) as usize]),
        });
    }
    let verdict = [Verdict::Agree, Verdict::Degraded, Verdict::Incomplete, Verdict::Diverge][e.what as usize % 4];
    let path = RequestPath::ALL[(e.what as usize / 2) % 4];
    match e.what {
        0 => r.record(f, l, RecordPath::ALL[e.layer as usize % 3], e.lag % 2 == 0),
        1..=3 => {
            let missing = if verdict == Verdict::Incomplete { LayerSet::of(l) } else { LayerSet::EMPTY };
            let lags = [(l, e.lag), (other, e.lag / 3)];
            r.on_close(f, CloseEvent { verdict, path, missing, pairs: &[], cause: None, lags: &lags, sample: None });
        }
        _ => {
            let kind = DivergenceKind::ALL[e.what as usize % 4];
            let direction = Direction::ALL[e.layer as usize % 3];
            let pairs = [Pair { kind, upstream: up, downstream: down, direction }];
            let cause = match e.what {
                4 => Cause::NoCapability { exposed: up, api: down },
                5 => Cause::PathSplit { new: LayerSet::of(up), old: LayerSet::of(down), both: LayerSet::EMPTY },
                6 => Cause::PayloadVersions { upstream: up, downstream: down },
                _ => Cause::FlagRevisions { upstream: up, downstream: down },
            };
            let sample = Sample {
                request_id: format!("r{}", i % 37),
                verdict: Verdict::Diverge,
                path: RequestPath::Mixed,
                start_ms: e.at_ms - e.lag,
                closed_ms: e.at_ms,
                seq: 0,
                close_cause: CloseCause::Window,
                pairs: pairs.to_vec(),
                cause: Some(cause),
                missing: LayerSet::EMPTY,
                records: vec![super::SampleRecord {
                    layer: l,
                    pos: Position::new(0, i as u64),
                    ts_ms: e.at_ms - e.lag,
                    path: RecordPath::New,
                    raw: (e.lag % 3 != 0).then(|| format!("{{\"i\":{i}}}").into_bytes().into_boxed_slice()),
                }],
            };
            let lags = [(l, e.lag)];
            r.on_close(
                f,
                CloseEvent {
                    verdict: Verdict::Diverge,
                    path: RequestPath::Mixed,
                    missing: LayerSet::EMPTY,
                    pairs: &pairs,
                    cause: Some(cause),
                    lags: &lags,
                    sample: Some(sample),
                },
            );
        }
    }
}

/// Each instance's deltas in the order they were handed over, and what one
/// recorder that saw every event accumulated.
fn judge(evs: &[Ev]) -> (Vec<Delta>, Delta) {
    let f = features();
    let mut instances: Vec<Recorder> = (0..3).map(|_| Recorder::new(f.clone(), 0)).collect();
    let mut all = Recorder::new(f.clone(), 0);
    let mut deltas = Vec::new();
    for (i, e) in evs.iter().enumerate() {
        feed(&mut instances[e.instance], i, e);
        feed(&mut all, i, e);
        if e.take {
            deltas.push(instances[e.instance].take());
        }
    }
    deltas.extend(instances.iter_mut().map(Recorder::take));
    (deltas, all.take())
}

const WINDOWS: [(i64, i64); 6] =
    [(NOW, 1_000), (NOW, 10_000), (NOW, 60_000), (NOW, 3_600_000), (60_250, 30_000), (0, 1_000)];

/// One answer: window figures, samples or exit evidence.
type Answer = (Option<WindowStats>, Vec<Sample>, Option<ExitAgg>);

/// Every answer a reader can get of a delta.
fn answers_of(d: &Delta) -> Vec<Answer> {
    let mut out = Vec::new();
    for f in FEATURES {
        for (now, w) in WINDOWS {
            out.push((d.window(f, now, w), Vec::new(), None));
            out.push((None, Vec::new(), d.exit_evidence(f, now, w).filter(|a| !a.is_empty())));
        }
        out.push((None, d.samples(f, MAX_SAMPLES), None));
    }
    out
}

/// Every answer a reader can get of a view.
fn answers_of_view(v: &LiveView) -> Vec<Answer> {
    let mut out = Vec::new();
    for id in [FeatureId::new(0), FeatureId::new(1)] {
        for (now, w) in WINDOWS {
            out.push((Some(v.window(id, now, w)), Vec::new(), None));
            out.push((None, Vec::new(), Some(v.exit_evidence(id, now, w).agg).filter(|a| !a.is_empty())));
        }
        out.push((None, v.samples(id, MAX_SAMPLES).0, None));
    }
    out
}

fn merged(deltas: impl IntoIterator<Item = Delta>) -> Delta {
    deltas.into_iter().fold(Delta::default(), |mut acc, d| {
        acc.merge(d);
        acc
    })
}

/// Merges halves first, then the halves' results.
fn tree_merged(mut deltas: Vec<Delta>) -> Delta {
    if deltas.len() <= 1 {
        return merged(deltas);
    }
    let right = deltas.split_off(deltas.len() / 2);
    let mut left = tree_merged(deltas);
    left.merge(tree_merged(right));
    left
}

/// Window figures and exit evidence only (samples carry each recorder's
/// own close order).
fn counts(a: Vec<Answer>) -> Vec<(Option<WindowStats>, Option<ExitAgg>)> {
    a.into_iter()
        .map(|(w, _, e)| (w.filter(|w| w.total() + w.layers.iter().map(|l| l.records() + l.late).sum::<u64>() > 0), e))
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    /// Merge order never changes any window answer, the samples kept or
    /// the exit evidence, whether deltas are merged with each other
    /// (linearly, or pairwise as a tree), applied to a view, or sent
    /// through the wire format first; and counts, lags and exit evidence
    /// equal what one recorder that saw everything holds.
    #[test]
    fn merge_order_never_changes_an_answer(evs in events(), keys in proptest::collection::vec(any::<u64>(), 64)) {
        let (deltas, all) = judge(&evs);
        let mut shuffled: Vec<(u64, Delta)> =
            deltas.iter().cloned().enumerate().map(|(i, d)| (keys[i % keys.len()] ^ i as u64, d)).collect();
        shuffled.sort_by_key(|(k, _)| *k);
        let shuffled: Vec<Delta> = shuffled.into_iter().map(|(_, d)| d).collect();

        let linear = merged(deltas.iter().cloned());
        let reverse = merged(deltas.iter().rev().cloned());
        let tree = tree_merged(shuffled.clone());
        let wired = merged(deltas.iter().map(|d| Delta::decode(&d.encode()).unwrap()));

        let want = answers_of(&linear);
        prop_assert_eq!(&answers_of(&reverse), &want);
        prop_assert_eq!(&answers_of(&tree), &want);
        prop_assert_eq!(&answers_of(&wired), &want);
        prop_assert_eq!(counts(answers_of(&all)), counts(want.clone()));

        let clock = Arc::new(AtomicI64::new(NOW));
        let view = |order: &[Delta]| {
            let c = clock.clone();
            let v = LiveView::with_clock(features(), Arc::new(move || c.load(Ordering::Relaxed)));
            for d in order {
                v.apply(d.clone());
            }
            answers_of_view(&v)
        };
        let in_order = view(&deltas);
        prop_assert_eq!(&view(&shuffled), &in_order);
        prop_assert_eq!(counts(in_order), counts(want));
    }

    /// What is encoded decodes to the same delta, and encoding is
    /// deterministic.
    #[test]
    fn the_wire_format_loses_nothing(evs in events()) {
        let (deltas, all) = judge(&evs);
        for d in deltas.iter().chain([&all]) {
            let bytes = d.encode();
            let back = Delta::decode(&bytes).unwrap();
            prop_assert_eq!(&back, d);
            prop_assert_eq!(back.encode(), bytes);
        }
    }
}
