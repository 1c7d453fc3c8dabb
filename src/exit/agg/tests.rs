use super::*;
use crate::catalog::LayerId;
use crate::features::FeatureId;

pub(crate) fn ev<'a>(
    path: RecordPath,
    ts_ms: i64,
    service: Option<&'a str>,
    build: Option<&'a str>,
    revision: Option<&'a str>,
) -> Evidence<'a> {
    Evidence { feature: FeatureId::new(0), layer: LayerId::new(0), path, ts_ms, service, build, revision }
}

#[test]
fn natural_order() {
    let mut v = vec!["r10", "r9", "r01", "r1", "a", "r", "r2b", "r2a", "2026-11-20", "2026-11-3", "r100x"];
    v.sort_by(|a, b| natural_cmp(a, b));
    assert_eq!(v, ["2026-11-3", "2026-11-20", "a", "r", "r01", "r1", "r2a", "r2b", "r9", "r10", "r100x"]);
    assert_eq!(natural_cmp("r0042", "r42"), Ordering::Less);
    assert_eq!(natural_cmp("x", "x"), Ordering::Equal);
}

#[test]
fn clip_keeps_char_boundaries() {
    let long = "é".repeat(100);
    let c = clip(&long);
    assert!(c.len() <= MAX_NAME_BYTES && c.len() >= MAX_NAME_BYTES - 1);
    assert!(long.starts_with(c));
    assert_eq!(clip("short"), "short");
}

#[test]
fn second_detail_keeps_the_lowest_milliseconds() {
    let mut s = Second::new(0);
    for ms in (0..40u16).rev() {
        s.add(ms * 10, 1);
    }
    s.add(5, 3);
    assert_eq!(s.count, 43);
    assert_eq!(s.detail.len(), MS_DETAIL);
    let kept: Vec<_> = s.detail().collect();
    assert_eq!(kept[0], (0, 1));
    assert_eq!(kept[1], (5, 3));
    assert_eq!(kept.last().unwrap().0, 140);
    assert_eq!(s.spill(), 43 - 18);
    // At or before 141 every spilled record is known to be later.
    assert_eq!(s.from(141), (25, 0));
    assert_eq!(s.from(100), (5 + 25, 0));
    // Beyond, the spill may lie on either side.
    assert_eq!(s.from(200), (0, 25));
}

#[test]
fn takers_beyond_the_cap_are_summed_and_the_first_pairs_kept() {
    let mut a = ExitAgg::new();
    for i in (0..MAX_TAKERS + 10).rev() {
        let b = format!("b{i:04}");
        a.add("worker", &ev(RecordPath::Old, i as i64, Some("svc"), Some(&b), None));
    }
    let l = &a.layers["worker"];
    assert_eq!(l.n_takers, MAX_TAKERS);
    assert_eq!(l.takers().count(), MAX_TAKERS);
    assert_eq!(l.takers().last().unwrap().1, format!("b{:04}", MAX_TAKERS - 1));
    assert_eq!(l.takers_spill, Seen { records: 10, last_ms: (MAX_TAKERS + 9) as i64 });
    assert_eq!(l.paths, [0, (MAX_TAKERS + 10) as u64, 0]);
}

#[test]
fn revisions_beyond_the_cap_drop_the_lowest() {
    let mut a = ExitAgg::new();
    for i in 0..MAX_REVISIONS as i64 + 2 {
        a.add("api", &ev(RecordPath::New, 1000 * i, None, None, Some(&format!("r{i}"))));
    }
    assert_eq!(a.revisions.len(), MAX_REVISIONS);
    assert_eq!(a.revisions[0].name, "r2");
    assert_eq!(a.layers["api"].dropped, Span { records: 2, first_ms: 0, last_ms: 1000 });
    // A record of a dropped revision is dropped again.
    a.add("api", &ev(RecordPath::New, 50_000, None, None, Some("r0")));
    assert_eq!(a.layers["api"].dropped.records, 3);
    assert!(a.revisions_dropped());
}

#[test]
fn budgets_follow_the_layers_and_merged_keeps_the_smallest() {
    assert_eq!(ExitAgg::for_live(6).budget(), 6 * LIVE_SECONDS_PER_LAYER);
    assert_eq!(ExitAgg::new().budget(), 4 * LIVE_SECONDS_PER_LAYER);
    let mut a = ExitAgg::for_live(6);
    a.add("api", &ev(RecordPath::New, 1, None, None, Some("r")));
    let m = ExitAgg::merged([a.clone(), ExitAgg::for_archive()]);
    assert_eq!(m, a);
    assert_eq!(ExitAgg::merged([]), ExitAgg::new());
}

#[test]
fn the_horizon_keeps_the_latest_seconds() {
    let mut a = ExitAgg::with_budget(3);
    for s in [5i64, 1, 3, 2, 4] {
        a.add("api", &ev(RecordPath::New, s * 1000 + 7, None, None, Some("r1")));
    }
    let r = &a.revisions[0];
    assert_eq!(r.horizon, 3);
    let l = &r.layers["api"];
    assert_eq!(l.seconds.iter().map(|s| s.sec).collect::<Vec<_>>(), [3, 4, 5]);
    assert_eq!(l.span, Span { records: 5, first_ms: 1007, last_ms: 5007 });
    // Exact at or above the horizon, unresolved below it.
    assert_eq!(l.from_time(3007, r.horizon), (3, 0));
    assert_eq!(l.from_time(3008, r.horizon), (2, 0));
    assert_eq!(l.from_time(2500, r.horizon), (3, 2));
    assert_eq!(l.from_time(1007, r.horizon), (5, 0));
    assert_eq!(l.from_time(5008, r.horizon), (0, 0));
    // A record below the horizon is counted, not kept apart.
    a.add("api", &ev(RecordPath::New, 500, None, None, Some("r1")));
    assert_eq!(a.revisions[0].layers["api"].seconds.len(), 3);
    assert_eq!(a.revisions[0].layers["api"].span.records, 6);
}

/// A record of the property tests, by indices into small name tables.
#[derive(Debug, Clone)]
pub(crate) struct Rec {
    pub layer: usize,
    pub path: usize,
    pub ts_ms: i64,
    pub service: Option<usize>,
    pub build: Option<usize>,
    pub rev: Option<usize>,
}

pub(crate) const LAYERS: [&str; 3] = ["frontend", "api", "worker"];

pub(crate) fn names(prefix: &str, n: usize) -> Vec<String> {
    (0..n).map(|i| format!("{prefix}{i}")).collect()
}

/// How the property tests' records are drawn.
#[derive(Debug, Clone)]
pub(crate) struct Shape {
    pub revs: usize,
    pub builds: usize,
    pub layers: usize,
    /// Paths are drawn from `RecordPath::ALL[paths]`.
    pub paths: std::ops::Range<usize>,
    /// Event times are drawn from `0..span_ms` (and sometimes a wider
    /// range, negative times included).
    pub span_ms: i64,
}

/// Dense: seconds overflow their millisecond detail.
pub(crate) const DENSE: Shape = Shape { revs: 2, builds: 4, layers: 2, paths: 0..3, span_ms: 1_000 };
/// Many revisions: the revision cap drops some.
pub(crate) const REVISIONS: Shape = Shape { revs: 20, builds: 4, layers: 3, paths: 0..3, span_ms: 6_000 };
/// Many builds on one layer: the taker cap sums some.
pub(crate) const TAKERS: Shape = Shape { revs: 2, builds: 2_000, layers: 1, paths: 1..2, span_ms: 3_000 };

pub(crate) fn recs(shape: Shape, max: usize) -> impl Strategy<Value = Vec<Rec>> {
    let rec = (
        0..shape.layers,
        shape.paths,
        prop_oneof![4 => 0i64..shape.span_ms, 1 => -2_000i64..40_000],
        prop::option::of(0usize..3),
        prop::option::weighted(0.95, 0..shape.builds),
        prop::option::weighted(0.8, 0..shape.revs),
    )
        .prop_map(|(layer, path, ts_ms, service, build, rev)| Rec { layer, path, ts_ms, service, build, rev });
    prop::collection::vec(rec, 0..max)
}

pub(crate) fn all_names() -> (Vec<String>, Vec<String>, Vec<String>) {
    (names("svc", 3), names("b", 2_000), names("r", 20))
}

pub(crate) fn add_all<'a>(
    a: &mut ExitAgg,
    recs: impl Iterator<Item = &'a Rec>,
    n: &(Vec<String>, Vec<String>, Vec<String>),
) {
    for r in recs {
        let e = ev(
            RecordPath::ALL[r.path],
            r.ts_ms,
            r.service.map(|i| n.0[i].as_str()),
            r.build.map(|i| n.1[i].as_str()),
            r.rev.map(|i| n.2[i].as_str()),
        );
        a.add(LAYERS[r.layer], &e);
    }
}

use proptest::prelude::*;

/// Split into parts, each filled in its own order, merged in any order
/// and grouping: always the aggregate of all the records.
fn check_merge(
    recs: &[Rec],
    parts: &[usize],
    budget: usize,
    seed: u64,
    lower_budget: bool,
) -> Result<(), TestCaseError> {
    let n = all_names();
    let mut whole = ExitAgg::with_budget(budget);
    add_all(&mut whole, recs.iter(), &n);
    let mut reversed = ExitAgg::with_budget(budget);
    add_all(&mut reversed, recs.iter().rev(), &n);
    prop_assert_eq!(&reversed, &whole);
    // A part with a larger budget merges down to the smaller one.
    let mut aggs: Vec<ExitAgg> =
        (0..4).map(|i| ExitAgg::with_budget(if lower_budget && i == 2 { budget + 5 } else { budget })).collect();
    for (r, p) in recs.iter().zip(parts) {
        add_all(&mut aggs[*p], std::iter::once(r), &n);
    }
    let mut rng = seed;
    let mut next = |k: usize| {
        rng = rng.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        (rng >> 33) as usize % k
    };
    while aggs.len() > 1 {
        let a = aggs.swap_remove(next(aggs.len()));
        let j = next(aggs.len());
        aggs[j].merge(a);
    }
    prop_assert_eq!(aggs.pop().unwrap(), whole);
    Ok(())
}

proptest! {
    /// A total order that agrees with equality, so revisions have one
    /// canonical order.
    #[test]
    fn natural_order_is_total(a in "[r0-9.-]{0,6}", b in "[r0-9.-]{0,6}", c in "[r0-9.-]{0,6}") {
        prop_assert_eq!(natural_cmp(&a, &b), natural_cmp(&b, &a).reverse());
        prop_assert_eq!(natural_cmp(&a, &b) == Ordering::Equal, a == b);
        if natural_cmp(&a, &b).is_le() && natural_cmp(&b, &c).is_le() {
            prop_assert!(natural_cmp(&a, &c).is_le());
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn merge_order_never_changes_the_result_dense(
        recs in recs(DENSE, 500), parts in prop::collection::vec(0usize..4, 500),
        budget in prop_oneof![1usize..12, 60usize..200], seed in any::<u64>(), lower in any::<bool>(),
    ) {
        check_merge(&recs, &parts, budget, seed, lower)?;
    }

    #[test]
    fn merge_order_never_changes_the_result_many_revisions(
        recs in recs(REVISIONS, 500), parts in prop::collection::vec(0usize..4, 500),
        budget in 1usize..12, seed in any::<u64>(), lower in any::<bool>(),
    ) {
        check_merge(&recs, &parts, budget, seed, lower)?;
    }

    #[test]
    fn merge_order_never_changes_the_result_many_takers(
        recs in recs(TAKERS, 900), parts in prop::collection::vec(0usize..4, 900),
        budget in 1usize..12, seed in any::<u64>(), lower in any::<bool>(),
    ) {
        check_merge(&recs, &parts, budget, seed, lower)?;
    }
}
