//! Conformance: every case of the suites in `tests/conformance/` (copies of
//! the product contract's executable cases) through `accord replay
//! --format prometheus`, comparing every contract counter, zeros included.
//!
//! - `cases.json`: join and verdict semantics;
//! - `clock.json`: records stamped by bad clocks;
//! - `revisions.json`: stale flag revisions;
//! - `multi.json`: several files merged into one stream (`--merge`);
//! - `otlp.json`: OpenTelemetry flag-evaluation events, each case with its
//!   own catalog and input format.

mod common;

use common::{accord, metric_name, parse_prometheus, CONTRACT_COUNTERS};
use serde_json::Value;

/// The repo's copy by default; `ACCORD_CONFORMANCE_DIR` points at another
/// (CI also runs the contract's own copy as it is today).
fn dir() -> String {
    std::env::var("ACCORD_CONFORMANCE_DIR")
        .unwrap_or_else(|_| concat!(env!("CARGO_MANIFEST_DIR"), "/tests/conformance").to_string())
}

fn catalog() -> String {
    format!("{}/catalog.toml", dir())
}

fn suite(file: &str) -> Vec<Value> {
    let text = std::fs::read_to_string(format!("{}/{file}", dir())).unwrap_or_else(|e| panic!("{file}: {e}"));
    let v: Value = serde_json::from_str(&text).unwrap();
    v["cases"].as_array().unwrap().clone()
}

fn lines(v: &Value) -> String {
    v.as_array().unwrap().iter().map(|l| format!("{}\n", l.as_str().unwrap())).collect()
}

/// Every expected series has its value and every other contract series
/// is 0; mismatches are appended to `failures`.
fn compare(name: &str, prometheus: &str, expect: &serde_json::Map<String, Value>, failures: &mut Vec<String>) {
    let got = parse_prometheus(prometheus);
    for (series, want) in expect {
        let series = common::canonical_series(series);
        let want = want.as_f64().unwrap();
        match got.get(&series) {
            Some(v) if *v == want => {}
            Some(v) => failures.push(format!("{name}: {series} = {v}, want {want}")),
            None => failures.push(format!("{name}: {series} missing, want {want}")),
        }
    }
    for (series, v) in &got {
        if CONTRACT_COUNTERS.contains(&metric_name(series))
            && !expect.keys().any(|k| common::canonical_series(k) == *series)
            && *v != 0.0
        {
            failures.push(format!("{name}: {series} = {v}, want 0"));
        }
    }
}

/// Runs every case of a single-stream suite (one `input` per case, the
/// suite's catalog) and checks it exactly.
fn run_single_stream_suite(file: &str, at_least: usize) {
    let cases = suite(file);
    assert!(cases.len() >= at_least, "{file} lost cases");
    let mut failures = Vec::new();
    for case in &cases {
        let name = case["name"].as_str().unwrap();
        let input = lines(&case["input"]);
        let (code, out, err) =
            accord(&["replay", "-", "--config", &catalog(), "--format", "prometheus"], input.as_bytes());
        assert_eq!(code, 0, "{name}: {err}");
        compare(name, &out, case["expect"].as_object().unwrap(), &mut failures);
    }
    assert!(failures.is_empty(), "{file}: {} mismatches:\n{}", failures.len(), failures.join("\n"));
}

#[test]
fn every_join_and_verdict_case_matches_exactly() {
    run_single_stream_suite("cases.json", 17);
}

#[test]
fn every_bad_clock_case_matches_exactly() {
    run_single_stream_suite("clock.json", 2);
}

#[test]
fn every_stale_revision_case_matches_exactly() {
    run_single_stream_suite("revisions.json", 4);
}

#[test]
fn every_merged_stream_case_matches_exactly() {
    let cases = suite("multi.json");
    assert!(cases.len() >= 3, "multi.json lost cases");
    let dir = tempdir();
    let mut failures = Vec::new();
    for case in &cases {
        let name = case["name"].as_str().unwrap();
        let mut args: Vec<String> = vec!["replay".into()];
        for (i, input) in case["inputs"].as_array().unwrap().iter().enumerate() {
            let path = format!("{dir}/{name}-{i}.jsonl");
            std::fs::write(&path, lines(input)).unwrap();
            args.push(path);
        }
        args.extend(["--config".into(), catalog(), "--format".into(), "prometheus".into()]);
        if case["merge"].as_bool().unwrap_or(true) {
            args.push("--merge".into());
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let (code, out, err) = accord(&args, b"");
        assert_eq!(code, 0, "{name}: {err}");
        compare(name, &out, case["expect"].as_object().unwrap(), &mut failures);
    }
    assert!(failures.is_empty(), "multi.json: {} mismatches:\n{}", failures.len(), failures.join("\n"));
}

#[test]
fn every_opentelemetry_case_matches_exactly() {
    let cases = suite("otlp.json");
    assert!(cases.len() >= 8, "otlp.json lost cases");
    let dir = tempdir();
    let mut failures = Vec::new();
    for case in &cases {
        let name = case["name"].as_str().unwrap();
        let catalog = format!("{dir}/{name}.toml");
        std::fs::write(&catalog, case["catalog"].as_str().unwrap()).unwrap();
        let format = case["input_format"].as_str().unwrap();
        let input = lines(&case["input"]);
        let (code, out, err) = accord(
            &["replay", "-", "--config", &catalog, "--input-format", format, "--format", "prometheus"],
            input.as_bytes(),
        );
        assert_eq!(code, 0, "{name}: {err}");
        compare(name, &out, case["expect"].as_object().unwrap(), &mut failures);
    }
    assert!(failures.is_empty(), "otlp.json: {} mismatches:\n{}", failures.len(), failures.join("\n"));
}

fn tempdir() -> String {
    let d = std::env::temp_dir().join(format!("accord-conformance-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d.display().to_string()
}

#[test]
fn known_series_start_at_zero() {
    let (code, out, _) = accord(&["replay", "-", "--config", &catalog(), "--format", "prometheus"], b"");
    assert_eq!(code, 0);
    let got = parse_prometheus(&out);
    for s in [
        r#"accord_requests_total{feature="search.ranking",path="mixed",verdict="diverge"}"#,
        r#"accord_divergences_total{downstream="analytics",feature="checkout_v2",kind="snapshot_skew",upstream="frontend"}"#,
        r#"accord_records_rejected_total{reason="too_large"}"#,
        r#"accord_records_rejected_total{reason="malformed_otlp"}"#,
        r#"accord_missing_layers_total{feature="checkout_v2",layer="worker"}"#,
        r#"accord_layer_decisions_total{feature="checkout_v2",layer="api",path="unknown"}"#,
        r#"accord_records_late_total{feature="search.ranking",layer="frontend"}"#,
        r#"accord_records_clock_skewed_total{feature="checkout_v2",layer="api"}"#,
        r#"accord_stale_revision_records_total{feature="search.ranking",layer="worker"}"#,
        r#"accord_feature_info{class="state-machine",feature="checkout_v2",owner="payments"}"#,
        r#"accord_otlp_items_ignored_total"#,
        r#"accord_joins_evicted_total"#,
        r#"accord_open_joins"#,
    ] {
        assert!(got.contains_key(s), "{s} not initialised");
    }
    assert_eq!(got[r#"accord_feature_expiry_timestamp_seconds{feature="checkout_v2"}"#], 1_801_353_600.0);
    // HELP on every family
    for line in out.lines().filter(|l| l.starts_with("# TYPE ")) {
        let name = line.split(' ').nth(2).unwrap();
        assert!(out.contains(&format!("# HELP {name} ")), "no HELP for {name}");
    }
}

#[test]
fn summary_matches_prometheus_for_every_case() {
    for file in ["cases.json", "clock.json", "revisions.json"] {
        for case in suite(file) {
            let name = case["name"].as_str().unwrap();
            let input = lines(&case["input"]);
            let (_, prom, _) =
                accord(&["replay", "-", "--config", &catalog(), "--format", "prometheus"], input.as_bytes());
            let (_, summary, _) = accord(&["replay", "-", "--config", &catalog()], input.as_bytes());
            common::assert_summary_matches(&summary, &parse_prometheus(&prom), name);
        }
    }
}
