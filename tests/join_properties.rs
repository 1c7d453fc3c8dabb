//! Property tests of the join + judge core through the replay pipeline,
//! and the verdict paths of docs/reference.md#join-and-verdict-semantics that
//! the conformance cases do not
//! pin down (eviction, window close, tombstone expiry, tracked features).

use std::io::Cursor;
use std::path::Path;
use std::sync::Arc;

use accord::export::summary::{Summary, SummaryReport};
use accord::join::{CloseCause, Closed, Observer};
use accord::judge::RecordPath;
use accord::replay::replay_stream;
use accord::{Catalog, Features, Pipeline};
use proptest::prelude::*;

const CATALOG: &str = include_str!("conformance/catalog.toml");
const LAYERS: [&str; 4] = ["frontend", "api", "worker", "analytics"];
const T0: i64 = 1_795_168_800_000;

fn features(text: &str) -> Arc<Features> {
    Arc::new(Features::new(Arc::new(Catalog::parse(Path::new("t.toml"), text).unwrap())))
}

/// Counts what the properties need besides the summary.
#[derive(Default)]
struct Tally {
    rejected: u64,
    recorded: u64,
    late: u64,
    joined_at_arrival: u64,
    records_in_closed_joins: u64,
    closes: Vec<(String, CloseCause, &'static str)>,
}

impl Observer for Tally {
    fn rejected(&mut self, _: accord::decode::Reject) {
        self.rejected += 1;
    }
    fn record(&mut self, _: accord::features::FeatureId, _: accord::catalog::LayerId, _: RecordPath, late: bool) {
        self.recorded += 1;
        if late {
            self.late += 1;
        } else {
            self.joined_at_arrival += 1;
        }
    }
    fn closed(&mut self, c: &Closed<'_>) {
        self.records_in_closed_joins += c.records.len() as u64;
        self.closes.push((c.request_id.to_string(), c.cause, c.judgement.verdict.as_str()));
    }
}

fn run(features: &Arc<Features>, lines: &[String]) -> (SummaryReport, Tally) {
    let text = lines.join("\n");
    let mut summary = Summary::new(features.clone());
    let mut tally = Tally::default();
    let mut p = Pipeline::new(features.clone(), 0);
    replay_stream(Cursor::new(text.into_bytes()), &mut p, &mut (&mut summary, &mut tally), "test").unwrap();
    (summary.report(), tally)
}

#[derive(Debug, Clone)]
struct Rec {
    req: u32,
    layer: usize,
    ts: i64,
    flow: Option<&'static str>,
    payload: Option<u8>,
    revision: Option<u8>,
}

impl Rec {
    fn line(&self) -> String {
        let mut s = format!(
            r#"{{"request_id":"r{}","layer":"{}","feature":"checkout_v2","ts":{}"#,
            self.req, LAYERS[self.layer], self.ts
        );
        if let Some(f) = self.flow {
            s += &format!(r#","selected_flow":"{f}""#);
        }
        if let Some(p) = self.payload {
            s += &format!(r#","job_payload_version":{p}"#);
        }
        if let Some(r) = self.revision {
            s += &format!(r#","flags_revision":"r{r}""#);
        }
        s + "}"
    }
}

/// Requests with at most one record per layer, spread over less than
/// `window - 2 × lateness`, so that any reorder within the lateness keeps
/// every record of a request inside its join.
fn requests() -> impl Strategy<Value = Vec<Rec>> {
    let one = (0i64..120_000, proptest::collection::vec((any::<bool>(), 0i64..19_000, 0u8..4, 0u8..3, 0u8..3), 4));
    proptest::collection::vec(one, 1..40).prop_map(|reqs| {
        let mut out = Vec::new();
        for (i, (start, layers)) in reqs.into_iter().enumerate() {
            for (layer, (present, off, flow, payload, rev)) in layers.into_iter().enumerate() {
                if !present && layer != 0 {
                    continue;
                }
                out.push(Rec {
                    req: i as u32,
                    layer,
                    ts: T0 + start + off,
                    flow: [None, Some("v2"), Some("v1"), None][flow as usize],
                    payload: [None, Some(2), Some(1)][payload as usize],
                    revision: [None, Some(1), Some(2)][rev as usize],
                });
            }
        }
        out
    })
}

fn without_stale(mut s: accord::export::summary::SummaryReport) -> accord::export::summary::SummaryReport {
    for f in s.features.values_mut() {
        f.stale_revisions.clear();
    }
    s
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn verdicts_do_not_change_when_reordered_within_lateness(recs in requests(), jitter in proptest::collection::vec(0i64..5_000, 200)) {
        let f = features(CATALOG);
        let mut ordered = recs.clone();
        ordered.sort_by_key(|r| (r.ts, r.req, r.layer));
        let mut shuffled: Vec<(i64, Rec)> = recs.iter().enumerate().map(|(i, r)| (r.ts + jitter[i % jitter.len()], r.clone())).collect();
        shuffled.sort_by_key(|(k, r)| (*k, r.req, r.layer));
        let a = run(&f, &ordered.iter().map(Rec::line).collect::<Vec<_>>());
        let b = run(&f, &shuffled.iter().map(|(_, r)| r.line()).collect::<Vec<_>>());
        prop_assert_eq!(a.1.late, 0);
        prop_assert_eq!(b.1.late, 0);
        // Whether a record is stale depends on what its stream met before
        // it, by definition; everything else must not change.
        prop_assert_eq!(&without_stale(a.0), &without_stale(b.0));
    }

    /// Archives kept per layer and merged (`replay --merge`) judge like the
    /// unsplit stream whenever that stream is in event-time order (ties
    /// broken like the merge: the file named first).
    #[test]
    fn layers_split_into_files_and_merged_judge_like_the_unsplit_stream(recs in requests()) {
        let f = features(CATALOG);
        let mut ordered = recs;
        ordered.sort_by_key(|r| (r.ts, r.layer));
        let unsplit = run(&f, &ordered.iter().map(Rec::line).collect::<Vec<_>>()).0;
        let dir = std::env::temp_dir().join(format!("accord-merge-prop-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let files: Vec<accord::replay::Source> = (0..LAYERS.len())
            .map(|l| {
                let path = dir.join(format!("{l}.jsonl"));
                let text: Vec<String> = ordered.iter().filter(|r| r.layer == l).map(Rec::line).collect();
                std::fs::write(&path, text.join("\n")).unwrap();
                accord::replay::Source::File(path)
            })
            .collect();
        let mut summary = Summary::new(f.clone());
        accord::replay::replay(&files, &f, accord::replay::ReplayOptions { merge: true, ..Default::default() }, &mut summary).unwrap();
        prop_assert_eq!(summary.report(), unsplit);
    }

    #[test]
    fn every_valid_record_is_counted_once_as_joined_or_late(
        recs in proptest::collection::vec((0u32..6, 0usize..4, 0i64..200_000, 0u8..3, any::<bool>()), 0..150)
    ) {
        let f = features(CATALOG);
        let lines: Vec<String> = recs.iter().map(|&(req, layer, ts, flow, bad)| {
            if bad && ts % 7 == 0 {
                return format!(r#"{{"request_id":"r{req}","layer":"mobile","feature":"checkout_v2"}}"#);
            }
            Rec { req, layer, ts: T0 + ts, flow: [None, Some("v2"), Some("v1")][flow as usize], payload: None, revision: None }.line()
        }).collect();
        let (summary, t) = run(&f, &lines);
        prop_assert_eq!(t.recorded + t.rejected, lines.len() as u64);
        prop_assert_eq!(t.joined_at_arrival + t.late, t.recorded);
        // at end of stream every join closed: joined records all sit in closed joins
        prop_assert_eq!(t.records_in_closed_joins, t.joined_at_arrival);
        prop_assert_eq!(summary.records, t.recorded);
        prop_assert_eq!(summary.late, t.late);
        prop_assert_eq!(summary.requests, t.closes.len() as u64);
    }
}

fn line(req: &str, layer: &str, ts_s: i64, extra: &str) -> String {
    format!(r#"{{"request_id":"{req}","layer":"{layer}","feature":"checkout_v2","ts":{}{extra}}}"#, T0 + ts_s * 1000)
}

#[test]
fn max_open_joins_evicts_the_earliest_start_first() {
    let f = features(&CATALOG.replace("allowed_lateness = \"5s\"", "allowed_lateness = \"5s\"\nmax_open_joins = 2"));
    let lines = vec![
        line("b", "frontend", 2, ""),
        line("a", "frontend", 1, ""),
        line("c", "frontend", 3, ""),
        line("a", "api", 3, ""),
    ];
    let (s, t) = run(&f, &lines);
    assert_eq!(t.closes[0], ("a".to_string(), CloseCause::Evicted, "incomplete"));
    // a's later record finds a remembered closed key: late
    assert_eq!(t.late, 1);
    assert_eq!(s.features["checkout_v2"].paths["unknown"]["incomplete"], 3);
}

#[test]
fn eviction_is_counted_in_metrics() {
    let f = features(&CATALOG.replace("allowed_lateness = \"5s\"", "allowed_lateness = \"5s\"\nmax_open_joins = 1"));
    let m = accord::export::Metrics::new(f.clone()).unwrap();
    let mut obs = m.observer();
    let mut p = Pipeline::new(f, 0);
    let text = [line("a", "frontend", 1, ""), line("b", "frontend", 2, ""), line("c", "frontend", 3, "")].join("\n");
    replay_stream(Cursor::new(text), &mut p, &mut obs, "t").unwrap();
    let out = m.render();
    assert!(out.contains("accord_joins_evicted_total 2"), "{out}");
    assert!(out.contains("accord_open_joins 0"), "{out}");
}

#[test]
fn window_close_then_tombstone_forgotten_after_two_windows() {
    let f = features(CATALOG);
    let lines = vec![
        line("a", "frontend", 0, ""),
        line("x", "frontend", 36, ""), // wm 31 ≥ 0+30: a closes (window)
        line("a", "api", 40, ""),      // tombstone: late
        line("y", "frontend", 66, ""), // wm 61 > 0+60: tombstone forgotten
        line("a", "worker", 62, ""),   // a opens anew
    ];
    let (_, t) = run(&f, &lines);
    assert_eq!(t.late, 1);
    assert_eq!(t.closes[0], ("a".to_string(), CloseCause::Window, "incomplete"));
    assert_eq!(t.closes.iter().filter(|c| c.0 == "a").count(), 2);
}

#[test]
fn record_lowering_start_past_the_watermark_closes_at_once() {
    let f = features(CATALOG);
    let lines = vec![
        line("a", "frontend", 20, ""),
        line("x", "frontend", 40, ""), // wm 35 < 20+30
        line("a", "api", 4, ""),       // start 4: 4+30 ≤ 35 → closes right after joining
        line("a", "worker", 41, ""),   // late
    ];
    let (_, t) = run(&f, &lines);
    assert_eq!(t.closes[0], ("a".to_string(), CloseCause::Window, "incomplete"));
    assert_eq!(t.late, 1);
}

#[test]
fn untouched_request_beyond_the_watermark_is_late_without_a_join() {
    let f = features(CATALOG);
    let lines = vec![line("x", "frontend", 100, ""), line("old", "api", 60, "")]; // 60+30 < 95
    let (s, t) = run(&f, &lines);
    assert_eq!(t.late, 1);
    assert_eq!(s.features["checkout_v2"].late["api"], 1);
    assert_eq!(t.closes.len(), 1);
}

#[test]
fn tracked_unknown_features_are_labelled_then_other() {
    let cat = CATALOG.replace(
        "allowed_lateness = \"5s\"",
        "allowed_lateness = \"5s\"\nunknown_features = \"track\"\nmax_tracked_features = 1",
    );
    let f = features(&cat);
    let m = accord::export::Metrics::new(f.clone()).unwrap();
    let mut obs = m.observer();
    let mut p = Pipeline::new(f, 0);
    let text = [
        r#"{"request_id":"a","layer":"api","feature":"new_flag","ts":1,"flag_state":true}"#,
        r#"{"request_id":"a","layer":"api","feature":"second","ts":1,"flag_state":true}"#,
        r#"{"request_id":"a","layer":"api","feature":"third","ts":1,"flag_state":false}"#,
    ]
    .join("\n");
    replay_stream(Cursor::new(text), &mut p, &mut obs, "t").unwrap();
    let out = m.render();
    assert!(out.contains(r#"accord_records_total{feature="new_flag",layer="api"} 1"#), "{out}");
    assert!(out.contains(r#"accord_records_total{feature="other",layer="api"} 2"#), "{out}");
    // "second" and "third" share the label but not a join
    assert!(out.contains(r#"accord_requests_total{feature="other",path="new",verdict="agree"} 1"#), "{out}");
    assert!(out.contains(r#"accord_requests_total{feature="other",path="old",verdict="agree"} 1"#), "{out}");
}

#[test]
fn no_input_creates_series_beyond_the_catalog() {
    let cat = CATALOG.replace(
        "allowed_lateness = \"5s\"",
        "allowed_lateness = \"5s\"\nunknown_features = \"track\"\nmax_tracked_features = 5",
    );
    let f = features(&cat);
    let m = accord::export::Metrics::new(f.clone()).unwrap();
    let mut obs = m.observer();
    let mut p = Pipeline::new(f, 0);
    let mut text = String::new();
    for i in 0..2_000 {
        let layer = ["frontend", "api", "worker", "analytics", "mobile", "web"][i % 6];
        text += &format!(
            r#"{{"request_id":"r{i}","layer":"{layer}","feature":"flag_{}","ts":{},"flag_state":"variant-{i}","selected_flow":"x{i}","job_payload_version":{i},"flags_revision":"rev{i}","service":"svc{i}"}}"#,
            i % 500,
            T0 + i as i64
        );
        text.push('\n');
    }
    replay_stream(Cursor::new(text), &mut p, &mut obs, "t").unwrap();
    let out = m.render();
    let mut features = std::collections::BTreeSet::new();
    let mut series = 0;
    for line in out.lines().filter(|l| !l.starts_with('#')) {
        series += 1;
        if let Some(rest) = line.split("feature=\"").nth(1) {
            features.insert(rest.split('"').next().unwrap().to_string());
        }
        for bad in ["variant-", "\"rev", "svc", "\"x", "mobile", "web\""] {
            assert!(!line.contains(bad), "request data leaked into a label: {line}");
        }
    }
    // 2 catalog features, 5 tracked by name, and `other`
    assert_eq!(features.len(), 8, "{features:?}");
    assert!(features.contains("other"));
    // a fixed number of series: growing the input does not grow it
    assert!(series < 8 * 400, "{series} series");
}
