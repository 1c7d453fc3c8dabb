use super::*;
use crate::catalog::Catalog;
use crate::exit::agg::tests::{add_all, all_names, ev, recs, Rec, DENSE, LAYERS, REVISIONS};
use crate::judge::RecordPath::{New, Old, Unknown};
use proptest::prelude::*;

const CATALOG: &str = r#"
[monitor]
layers = ["frontend", "api", "worker"]
[[feature]]
key = "checkout_v2"
owner = "payments"
class = "state-machine"
expires = "2027-01-31"
expect = ["frontend", "api", "worker"]
new_flow = "v2"
"#;

fn catalog() -> Catalog {
    Catalog::parse(std::path::Path::new("accord.toml"), CATALOG).unwrap()
}

/// 2026-11-20T10:00:00Z plus `s` seconds.
fn t(s: f64) -> i64 {
    1_795_168_800_000 + (s * 1000.0).round() as i64
}

fn run(agg: &ExitAgg, req: RequestCounts) -> ExitReview {
    let c = catalog();
    let p = ReviewParams {
        window: ReviewWindow::Last { window_ms: 3_600_000 },
        now_ms: t(3600.0),
        min_samples: DEFAULT_MIN_SAMPLES,
    };
    review(agg, &req, &c.features[0], &c.layers, &p)
}

fn enough() -> RequestCounts {
    RequestCounts { requests: 500, ..RequestCounts::default() }
}

fn layer<'a>(r: &'a ExitReview, name: &str) -> &'a LayerReview {
    r.layers.iter().find(|l| l.layer == name).unwrap()
}

fn new_everywhere(agg: &mut ExitAgg, n: usize) {
    for (i, l) in ["frontend", "api", "worker"].iter().enumerate() {
        for k in 0..n {
            agg.add(l, &ev(New, t(k as f64 + i as f64 / 10.0), Some("svc"), Some("b1"), Some("r1")));
        }
    }
}

#[test]
fn every_layer_new_and_enough_requests_is_ready_with_no_blockers() {
    let mut a = ExitAgg::new();
    new_everywhere(&mut a, 10);
    let r = run(&a, enough());
    assert_eq!(r.status, Status::Ready);
    assert!(r.blockers.is_empty(), "{:?}", r.blockers);
    assert!(r.notes.is_empty(), "{:?}", r.notes);
    assert_eq!(r.feature, "checkout_v2");
    assert_eq!(
        (r.owner.as_str(), r.class.as_str(), r.expires.as_deref()),
        ("payments", "state-machine", Some("2027-01-31"))
    );
    // 2026-11-20 to 2027-01-31.
    assert_eq!(r.days_left, Some(72));
    assert_eq!(r.window_seconds, 3600);
    assert_eq!(r.current_revision.as_deref(), Some("r1"));
    for l in &r.layers {
        assert_eq!((l.records, l.new_ratio, l.old_ratio, l.unknown_ratio), (10, Some(1.0), Some(0.0), Some(0.0)));
        assert_eq!(l.stale_share, Some(0.0));
        assert!(l.old_path_takers.is_empty() && l.old_path_other.is_none());
    }
    assert_eq!(l_lag(&r, "api"), Some(0.1));
}

fn l_lag(r: &ExitReview, name: &str) -> Option<f64> {
    layer(r, name).adoption_lag_seconds
}

#[test]
fn too_few_requests_is_insufficient_data_with_one_blocker() {
    let mut a = ExitAgg::new();
    new_everywhere(&mut a, 3);
    let r = run(&a, RequestCounts { requests: 150, ..RequestCounts::default() });
    assert_eq!(r.status, Status::InsufficientData);
    assert_eq!(r.blockers, ["only 150 requests closed in the window; at least 200 are needed"]);
    let r = run(&a, RequestCounts::default());
    assert_eq!(r.status, Status::InsufficientData);
    assert_eq!(r.blockers, ["no request closed in the window; at least 200 are needed"]);
    let r = run(&ExitAgg::new(), RequestCounts { requests: 1, ..RequestCounts::default() });
    assert_eq!(r.blockers, ["only 1 request closed in the window; at least 200 are needed"]);
    assert_eq!((r.from.as_deref(), r.current_revision.as_deref()), (None, None));
    // The expected layers are listed, without figures.
    assert_eq!(r.layers.len(), 3);
    assert_eq!((r.layers[0].records, r.layers[0].new_ratio, r.layers[0].stale_share), (0, None, None));
}

#[test]
fn old_path_takers_name_service_build_count_and_last_seen() {
    let mut a = ExitAgg::new();
    new_everywhere(&mut a, 5);
    let w = |a: &mut ExitAgg, s: Option<&str>, b: Option<&str>, at: f64| {
        a.add("worker", &ev(Old, t(at), s, b, Some("r1")));
    };
    for i in 0..1204 {
        w(&mut a, Some("fulfilment-worker"), Some("2026.11.12-1a2b3c4"), 2563.0 - i as f64);
    }
    a.add("worker", &ev(Old, t(2523.120), Some("fulfilment-worker"), Some("2026.11.12-1a2b3c4"), Some("r1")));
    w(&mut a, None, None, 5.0);
    w(&mut a, None, None, 7.25);
    w(&mut a, Some("billing"), None, 3.0);
    w(&mut a, None, Some("b9"), 4.0);
    let r = run(&a, enough());
    assert_eq!(r.status, Status::NotReady);
    assert_eq!(
        r.blockers,
        [
            "worker: fulfilment-worker build 2026.11.12-1a2b3c4 took the old path for 1,205 records, last at \
             2026-11-20T10:42:43.000Z",
            "worker: records without a service or build took the old path for 2 records, last at \
             2026-11-20T10:00:07.250Z",
            "worker: build b9 (records without a service) took the old path for 1 record, last at \
             2026-11-20T10:00:04.000Z",
            "worker: billing (records without a build) took the old path for 1 record, last at \
             2026-11-20T10:00:03.000Z",
        ]
    );
    let wl = layer(&r, "worker");
    assert_eq!(wl.records, 5 + 1209);
    assert_eq!(wl.old_ratio, Some(1209.0 / 1214.0));
    assert_eq!(
        wl.old_path_takers[1],
        Taker {
            service: "unknown".into(),
            build: "unknown".into(),
            records: 2,
            last_seen: "2026-11-20T10:00:07.250Z".into()
        }
    );
    assert!(wl.old_path_other.is_none());
}

#[test]
fn beyond_twenty_takers_the_rest_is_summed_exactly_as_other() {
    let mut a = ExitAgg::new();
    // Build k takes the old path k + 1 times, last at second 100 + k.
    for k in 0..30u32 {
        let b = format!("b{k:02}");
        for i in 0..=k {
            a.add("api", &ev(Old, t(f64::from(100 + k) - f64::from(i)), Some("api-svc"), Some(&b), None));
        }
    }
    // A tie with b29 on records: the later last seen comes first.
    for i in 0..30 {
        a.add("api", &ev(Old, t(500.0 - f64::from(i)), Some("api-svc"), Some("z-tie"), None));
    }
    let r = run(&a, enough());
    let l = layer(&r, "api");
    assert_eq!(l.old_path_takers.len(), TOP_TAKERS);
    assert_eq!(l.old_path_takers[0].build, "z-tie");
    assert_eq!(l.old_path_takers[1].build, "b29");
    assert_eq!(l.old_path_takers[19].build, "b11");
    // The rest: builds b00..=b10 with 1..=11 records, the last at 110.
    assert_eq!(
        l.old_path_other,
        Some(OtherTakers { takers: 11, more: false, records: 66, last_seen: "2026-11-20T10:01:50.000Z".into() })
    );
    let total: u64 = l.old_path_takers.iter().map(|t| t.records).sum::<u64>() + 66;
    assert_eq!(total, l.records);
    assert_eq!(
        r.blockers[TOP_TAKERS],
        "api: 11 other service builds took the old path for 66 records, last at 2026-11-20T10:01:50.000Z"
    );
}

#[test]
fn divergences_and_incomplete_requests_block_with_one_sentence_each() {
    let mut a = ExitAgg::new();
    new_everywhere(&mut a, 5);
    let req = RequestCounts { requests: 5210, divergent: 121, incomplete: 3, by_kind: [118, 1, 2, 2] };
    let r = run(&a, req);
    assert_eq!(r.status, Status::NotReady);
    assert_eq!(
        r.blockers,
        [
            "118 requests had layers take different paths (path_mismatch)",
            "2 requests had layers carry different job payload versions (payload_version_mismatch)",
            "2 requests had layers evaluate different flag revisions (snapshot_skew)",
            "1 request took the new path while the api advertised another capability than the one it needs \
             (exposure_without_capability)",
            "3 requests were incomplete: an expected layer never reported",
        ]
    );
    assert_eq!(r.divergent_requests.len(), 4);
    assert_eq!(r.divergent_requests["path_mismatch"], 118);
    assert_eq!(r.incomplete_requests, 3);
    let one = run(&a, RequestCounts { requests: 500, incomplete: 1, ..RequestCounts::default() });
    assert_eq!(one.blockers, ["1 request was incomplete: an expected layer never reported"]);
    assert!(one.divergent_requests.is_empty());
    // Problems make the status not_ready even with too few requests;
    // the shortage is still said.
    let few = run(&a, RequestCounts { requests: 10, incomplete: 1, ..RequestCounts::default() });
    assert_eq!(few.status, Status::NotReady);
    assert_eq!(few.blockers.len(), 2);
}

/// The worked example of docs/exit-review.md, records added out of
/// event-time order: r42 is first seen at 10.5 s by the api, after the
/// frontend's r42 records at 11 s and 12 s were counted.
fn revisions_example() -> ExitAgg {
    let mut a = ExitAgg::new();
    let add = |a: &mut ExitAgg, l: &str, at: f64, rev: Option<&str>| {
        a.add(l, &ev(New, t(at), Some("s"), Some("b"), rev));
    };
    add(&mut a, "frontend", 0.0, Some("r41"));
    add(&mut a, "frontend", 5.0, Some("r41"));
    add(&mut a, "frontend", 11.0, Some("r42"));
    add(&mut a, "frontend", 12.0, Some("r42"));
    add(&mut a, "frontend", 10.6, Some("r41"));
    add(&mut a, "api", 10.499, Some("r41"));
    add(&mut a, "api", 20.0, Some("r42"));
    add(&mut a, "worker", 9.0, Some("r41"));
    add(&mut a, "worker", 30.0, Some("r41"));
    add(&mut a, "worker", 31.0, Some("r41"));
    add(&mut a, "worker", 40.0, None);
    add(&mut a, "api", 10.5, Some("r42"));
    a
}

#[test]
fn stale_shares_and_adoption_lags_by_hand() {
    let r = run(&revisions_example(), enough());
    assert_eq!(r.current_revision.as_deref(), Some("r42"));
    // frontend: since 10.5 s, r42 at 11 and 12, r41 at 10.6: 1 of 3.
    let f = layer(&r, "frontend");
    assert_eq!((f.stale_share, f.stale_share_range, f.adoption_lag_seconds), (Some(1.0 / 3.0), None, Some(0.5)));
    // api: r41 at 10.499 is before; r42 at 10.5 and 20.
    let a = layer(&r, "api");
    assert_eq!((a.stale_share, a.adoption_lag_seconds), (Some(0.0), Some(0.0)));
    // worker: r41 at 30 and 31; the record at 40 carries none.
    let w = layer(&r, "worker");
    assert_eq!((w.stale_share, w.adoption_lag_seconds), (Some(1.0), None));
    assert_eq!(
        r.revisions,
        [
            RevisionReview {
                revision: "r41".into(),
                first_seen: "2026-11-20T10:00:00.000Z".into(),
                last_seen: "2026-11-20T10:00:31.000Z".into(),
                records: [("api".into(), 1), ("frontend".into(), 3), ("worker".into(), 3)].into(),
            },
            RevisionReview {
                revision: "r42".into(),
                first_seen: "2026-11-20T10:00:10.500Z".into(),
                last_seen: "2026-11-20T10:00:20.000Z".into(),
                records: [("api".into(), 2), ("frontend".into(), 2)].into(),
            },
        ]
    );
    let stale = [
        "frontend: 33.3% of its records since revision r42 was first seen at 2026-11-20T10:00:10.500Z carried \
         another revision; it first evaluated r42 0.5 s later",
        "worker: 100% of its records since revision r42 was first seen at 2026-11-20T10:00:10.500Z carried \
         another revision; it never evaluated r42",
    ];
    // Stale layers alone do not keep the flag: they are notes.
    assert_eq!(r.status, Status::Ready);
    assert!(r.blockers.is_empty());
    assert_eq!(r.notes, stale);
    // With another blocker they are blockers too, after it.
    let r = run(&revisions_example(), RequestCounts { incomplete: 1, ..enough() });
    assert_eq!(r.status, Status::NotReady);
    assert_eq!(r.blockers[1..], stale);
    assert!(r.notes.is_empty());
    let r = run(&revisions_example(), RequestCounts { requests: 20, ..RequestCounts::default() });
    assert_eq!(r.status, Status::InsufficientData);
    assert_eq!(r.blockers[..2], stale);
}

#[test]
fn the_current_revision_is_first_seen_last_ties_to_natural_order() {
    let mut a = ExitAgg::new();
    for rev in ["r7", "r10", "r9"] {
        let at = if rev == "r9" { 1.0 } else { 2.0 };
        a.add("api", &ev(New, t(at), None, None, Some(rev)));
    }
    assert_eq!(current_revision(&a).map(|r| r.name.as_str()), Some("r10"));
    let r = run(&a, enough());
    // r7 at the same millisecond as r10 counts as another revision.
    assert_eq!(layer(&r, "api").stale_share, Some(0.5));
    assert_eq!(r.revisions.iter().map(|x| x.revision.as_str()).collect::<Vec<_>>(), ["r9", "r7", "r10"]);
}

#[test]
fn a_stuck_old_revision_that_looks_current_is_noted() {
    let mut a = ExitAgg::new();
    for i in 0..10 {
        a.add("api", &ev(New, t(f64::from(i)), None, None, Some("r42")));
    }
    // One frontend instance still on r41, first met 4 ms into the window.
    a.add("frontend", &ev(New, t(0.004), None, None, Some("r41")));
    a.add("frontend", &ev(New, t(5.0), None, None, Some("r41")));
    let r = run(&a, enough());
    assert_eq!(r.current_revision.as_deref(), Some("r41"));
    assert_eq!(r.notes.len(), 2, "{:?}", r.notes);
    assert!(r.notes[0].starts_with("api: 100% of its records since revision r41"), "{:?}", r.notes);
    assert!(r.notes[1].starts_with(
        "revision r42 (first seen at 2026-11-20T10:00:00.000Z) carried more records than the current revision \
         r41 (10 against 2)"
    ));
    // Once r42 stops, nothing is said.
    a.add("frontend", &ev(New, t(20.0), None, None, Some("r41")));
    assert_eq!(run(&a, enough()).notes.len(), 1);
}

#[test]
fn an_overflowed_second_gives_a_range_and_a_note() {
    let mk = |first_cur: f64| {
        let mut a = ExitAgg::new();
        // 20 worker records of r1 at 5.000 .. 5.019: the detail keeps
        // 5.000 .. 5.015, four are spilled.
        for ms in 0..20 {
            a.add("worker", &ev(New, t(5.0 + f64::from(ms) / 1000.0), None, None, Some("r1")));
        }
        a.add("worker", &ev(New, t(6.0), None, None, Some("r2")));
        a.add("worker", &ev(New, t(6.5), None, None, Some("r2")));
        a.add("api", &ev(New, t(first_cur), None, None, Some("r2")));
        a
    };
    // r2 first seen at 5.016: every spilled record is at or after it.
    let exact = run(&mk(5.016), enough());
    let w = layer(&exact, "worker");
    assert_eq!((w.stale_share, w.stale_share_range), (Some(4.0 / 6.0), None));
    assert_eq!(exact.notes.len(), 1, "only the stale layer: {:?}", exact.notes);
    // At 5.018 the four spilled records may lie on either side (truly
    // two are after): the share lies in [0/2, 4/6].
    let inexact = run(&mk(5.018), enough());
    let w = layer(&inexact, "worker");
    assert_eq!((w.stale_share, w.stale_share_range), (Some(4.0 / 6.0), Some((0.0, 4.0 / 6.0))));
    assert!(inexact.notes[0].starts_with("worker: between 0% and 66.7% of its records"), "{:?}", inexact.notes);
    assert!(inexact.notes[1].starts_with("worker: the stale share is between 0% and 66.7%"), "{:?}", inexact.notes);
    assert_eq!(w.adoption_lag_seconds, Some(0.982));
}

#[test]
fn records_without_a_path_are_noted_not_blocking() {
    let mut a = ExitAgg::new();
    new_everywhere(&mut a, 3);
    a.add("api", &ev(Unknown, t(1.0), None, None, None));
    let r = run(&a, enough());
    assert_eq!(r.status, Status::Ready);
    assert_eq!(layer(&r, "api").unknown_ratio, Some(0.25));
    assert_eq!(r.notes.len(), 1, "{:?}", r.notes);
    assert!(r.notes[0].starts_with("api: 1 record named no path"));
}

#[test]
fn the_archive_window_is_the_span_of_event_times_and_json_has_the_documented_shape() {
    let a = revisions_example();
    let c = catalog();
    let p = ReviewParams { window: ReviewWindow::Archive, now_ms: t(86_400.0 * 80.0), min_samples: 5 };
    let r = review(&a, &enough(), &c.features[0], &c.layers, &p);
    assert_eq!(r.window_seconds, 40);
    assert_eq!(
        (r.from.as_deref(), r.to.as_deref()),
        (Some("2026-11-20T10:00:00.000Z"), Some("2026-11-20T10:00:40.000Z"))
    );
    assert_eq!(r.days_left, Some(-8));
    let v = serde_json::to_value(&r).unwrap();
    for key in [
        "feature",
        "owner",
        "class",
        "expires",
        "days_left",
        "window_seconds",
        "requests",
        "status",
        "blockers",
        "layers",
        "divergent_requests",
        "incomplete_requests",
        "revisions",
        "current_revision",
    ] {
        assert!(v.get(key).is_some(), "{key}");
    }
    assert_eq!(v["status"], "ready");
    let l = &v["layers"][0];
    for key in [
        "layer",
        "records",
        "new_ratio",
        "old_ratio",
        "unknown_ratio",
        "old_path_takers",
        "stale_share",
        "adoption_lag_seconds",
    ] {
        assert!(l.get(key).is_some(), "{key}");
    }
    assert!(l.get("stale_share_range").is_none());
    let back: ExitReview = serde_json::from_value(v).unwrap();
    assert_eq!(back, r);
}

/// The stale share and adoption lag by brute force over the records.
fn brute(recs: &[Rec], layer: usize, revs: &[String]) -> (Option<f64>, Option<i64>) {
    let mut first: BTreeMap<usize, i64> = BTreeMap::new();
    for r in recs {
        if let Some(v) = r.rev {
            let f = first.entry(v).or_insert(r.ts_ms);
            *f = (*f).min(r.ts_ms);
        }
    }
    let Some((&cur, &t)) = first.iter().max_by(|a, b| a.1.cmp(b.1).then_with(|| natural_cmp(&revs[*a.0], &revs[*b.0])))
    else {
        return (None, None);
    };
    let mine = recs.iter().filter(|r| r.layer == layer && r.rev.is_some() && r.ts_ms >= t);
    let (n, other) = mine.fold((0u64, 0u64), |(n, o), r| (n + 1, o + u64::from(r.rev != Some(cur))));
    let lag = recs.iter().filter(|r| r.layer == layer && r.rev == Some(cur)).map(|r| r.ts_ms - t).min();
    (ratio(other, n), lag)
}

fn check_stale(recs: &[Rec], budget: usize) -> Result<(), TestCaseError> {
    let n = all_names();
    let mut a = ExitAgg::with_budget(budget);
    add_all(&mut a, recs.iter(), &n);
    let r = run(&a, enough());
    for (i, name) in LAYERS.iter().enumerate() {
        let Some(l) = r.layers.iter().find(|l| l.layer == *name) else { continue };
        let (share, lag) = brute(recs, i, &n.2);
        prop_assert_eq!(l.adoption_lag_seconds, lag.map(|ms| ms as f64 / 1000.0));
        match (l.stale_share_range, share) {
            (None, _) => prop_assert_eq!(l.stale_share, share),
            (Some((lo, hi)), Some(s)) => {
                prop_assert!(lo <= s && s <= hi, "{} not in [{}, {}]", s, lo, hi);
                prop_assert_eq!(l.stale_share, Some(hi));
            }
            (Some(_), None) => prop_assert_eq!(l.stale_share, Some(1.0)),
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    /// Exact where the review says so, and within its range elsewhere.
    #[test]
    fn stale_share_matches_the_records(recs in recs(DENSE, 300), budget in prop_oneof![1usize..8, 100usize..200]) {
        check_stale(&recs, budget)?;
    }

    /// A flip in the middle of a busy second: revision 1 from `flip`
    /// on, revision 0 before and (stale) after.
    #[test]
    fn stale_share_matches_the_records_flip_mid_second(
        flip in 0i64..1000,
        draws in prop::collection::vec((0..LAYERS.len(), 0i64..1000, any::<bool>(), prop::option::weighted(0.9, Just(()))), 0..300),
        budget in prop_oneof![1usize..3, 100usize..200],
    ) {
        let recs: Vec<Rec> = draws
            .into_iter()
            .map(|(layer, ts_ms, adopt, has)| Rec {
                layer,
                path: 0,
                ts_ms,
                service: None,
                build: None,
                rev: has.map(|_| usize::from(ts_ms >= flip && adopt)),
            })
            .collect();
        check_stale(&recs, budget)?;
    }

    #[test]
    fn stale_share_matches_the_records_many_revisions(recs in recs(REVISIONS, 300)) {
        // At most 16 revisions are drawn here: the cap is tested apart.
        let recs: Vec<Rec> = recs.into_iter().map(|mut r| { r.rev = r.rev.map(|v| v % MAX_REVS); r }).collect();
        check_stale(&recs, LIVE_BUDGET)?;
    }

    /// Top 20 and `other` against a plain count per `(service, build)`.
    #[test]
    fn takers_match_the_records(recs in recs(crate::exit::agg::tests::TAKERS, 400)) {
        let n = all_names();
        let mut a = ExitAgg::new();
        add_all(&mut a, recs.iter(), &n);
        let r = run(&a, enough());
        let mut by: BTreeMap<(String, String), (u64, i64)> = BTreeMap::new();
        for x in recs.iter().filter(|x| x.path == 1) {
            let s = x.service.map_or("unknown".to_string(), |i| n.0[i].clone());
            let b = x.build.map_or("unknown".to_string(), |i| n.1[i].clone());
            let e = by.entry((s, b)).or_insert((0, i64::MIN));
            e.0 += 1;
            e.1 = e.1.max(x.ts_ms);
        }
        let l = layer(&r, "frontend");
        let listed: u64 = l.old_path_takers.iter().map(|t| t.records).sum();
        let old: u64 = by.values().map(|v| v.0).sum();
        prop_assert_eq!(listed + l.old_path_other.as_ref().map_or(0, |o| o.records), old);
        for tk in &l.old_path_takers {
            let want = by[&(tk.service.clone(), tk.build.clone())];
            prop_assert_eq!((tk.records, tk.last_seen.clone()), (want.0, format_rfc3339_ms(want.1)));
        }
        if by.len() <= crate::exit::MAX_TAKERS {
            // Every listed taker is at least as busy as any other.
            let least = l.old_path_takers.iter().map(|t| t.records).min().unwrap_or(0);
            let listed: std::collections::BTreeSet<_> =
                l.old_path_takers.iter().map(|t| (t.service.clone(), t.build.clone())).collect();
            for (k, v) in &by {
                prop_assert!(listed.contains(k) || v.0 <= least);
            }
        }
    }
}

const MAX_REVS: usize = crate::exit::MAX_REVISIONS;
const LIVE_BUDGET: usize = 4 * crate::exit::LIVE_SECONDS_PER_LAYER;
