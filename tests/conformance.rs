//! SPEC §4 conformance: every case of `tests/conformance/cases.json`
//! (a copy of `../shared/conformance/`) through `accord replay --format
//! prometheus`, comparing every contract counter, zeros included.

mod common;

use common::{accord, metric_name, parse_prometheus, CONTRACT_COUNTERS};
use serde_json::Value;

/// The repo's copy by default; `ACCORD_CONFORMANCE_DIR` points at another
/// (CI also runs `../shared/conformance` as it is today).
fn dir() -> String {
    std::env::var("ACCORD_CONFORMANCE_DIR")
        .unwrap_or_else(|_| concat!(env!("CARGO_MANIFEST_DIR"), "/tests/conformance").to_string())
}

fn catalog() -> String {
    format!("{}/catalog.toml", dir())
}

fn cases() -> Vec<Value> {
    let text = std::fs::read_to_string(format!("{}/cases.json", dir())).unwrap();
    let v: Value = serde_json::from_str(&text).unwrap();
    v["cases"].as_array().unwrap().clone()
}

#[test]
fn every_conformance_case_matches_exactly() {
    let cases = cases();
    assert!(cases.len() >= 17, "cases.json lost cases");
    let mut failures = Vec::new();
    for case in &cases {
        let name = case["name"].as_str().unwrap();
        let input: String =
            case["input"].as_array().unwrap().iter().map(|l| format!("{}\n", l.as_str().unwrap())).collect();
        let (code, out, err) =
            accord(&["replay", "-", "--config", &catalog(), "--format", "prometheus"], input.as_bytes());
        assert_eq!(code, 0, "{name}: {err}");
        let got = parse_prometheus(&out);
        let expect = case["expect"].as_object().unwrap();
        for (series, want) in expect {
            let series = common::canonical_series(series);
            let want = want.as_f64().unwrap();
            match got.get(&series) {
                Some(v) if *v == want => {}
                Some(v) => failures.push(format!("{name}: {series} = {v}, want {want}")),
                None => failures.push(format!("{name}: {series} missing, want {want}")),
            }
        }
        // every other contract series must be present and 0
        for (series, v) in &got {
            if CONTRACT_COUNTERS.contains(&metric_name(series))
                && !expect.keys().any(|k| common::canonical_series(k) == *series)
                && *v != 0.0
            {
                failures.push(format!("{name}: {series} = {v}, want 0"));
            }
        }
    }
    assert!(failures.is_empty(), "{} mismatches:\n{}", failures.len(), failures.join("\n"));
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
        r#"accord_missing_layers_total{feature="checkout_v2",layer="worker"}"#,
        r#"accord_layer_decisions_total{feature="checkout_v2",layer="api",path="unknown"}"#,
        r#"accord_records_late_total{feature="search.ranking",layer="frontend"}"#,
        r#"accord_feature_info{class="state-machine",feature="checkout_v2",owner="payments"}"#,
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
    for case in cases() {
        let name = case["name"].as_str().unwrap();
        let input: String =
            case["input"].as_array().unwrap().iter().map(|l| format!("{}\n", l.as_str().unwrap())).collect();
        let (_, prom, _) = accord(&["replay", "-", "--config", &catalog(), "--format", "prometheus"], input.as_bytes());
        let (_, summary, _) = accord(&["replay", "-", "--config", &catalog()], input.as_bytes());
        common::assert_summary_matches(&summary, &parse_prometheus(&prom), name);
    }
}
