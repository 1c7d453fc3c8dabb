//! `accord report`: the exit review of a designed archive, end to end
//! through the binary (replay's semantics, JSON and Markdown).

mod common;

use common::accord;
use serde_json::Value;

const CATALOG: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/accord.toml");
/// 2026-11-20T10:00:00Z.
const BASE: i64 = 1_795_168_800_000;
const LAYERS: [&str; 4] = ["frontend", "api", "worker", "analytics"];

fn dir() -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("accord-exit-report-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// One record of request `i` at layer `l` (10 ms apart per layer).
fn record(i: usize, l: usize, flow: &str, rev: &str, who: Option<(&str, &str)>) -> String {
    let layer = LAYERS[l];
    let ts = BASE + i as i64 * 1000 + l as i64 * 10;
    let extra = match layer {
        "api" => r#","api_capability":"v2""#,
        "worker" => r#","job_payload_version":2"#,
        _ => "",
    };
    let who = who.map_or(String::new(), |(s, b)| format!(r#","service":"{s}","build":"{b}""#));
    format!(
        r#"{{"request_id":"req-{i:04}","layer":"{layer}","feature":"checkout_v2","ts":{ts},"flag_state":true,"selected_flow":"{flow}","flags_revision":"{rev}"{extra}{who}}}"#
    )
}

/// 300 requests, one a second. Revision r42 replaces r41 at request 100
/// (first seen at its frontend record, 10:01:40.000Z); the worker adopts
/// it at request 150, analytics never does. Two worker builds and
/// analytics records without provenance take the old path now and then.
/// Written as two files, frontend + api and worker + analytics, and as
/// one.
fn rollout() -> (Vec<std::path::PathBuf>, std::path::PathBuf) {
    let (mut front, mut back, mut all) = (Vec::new(), Vec::new(), Vec::new());
    for i in 0..300 {
        for l in 0..4 {
            let rev = match l {
                0 | 1 if i >= 100 => "r42",
                2 if i >= 150 => "r42",
                _ => "r41",
            };
            let (flow, who) = match l {
                0 => ("v2", Some(("web-spa", "2026.11.20-3f9c2a1"))),
                1 => ("v2", Some(("checkout-api", "2026.11.19-88d01be"))),
                2 if i % 10 == 0 => ("v1", Some(("fulfilment-worker", "2026.11.12-1a2b3c4"))),
                2 if i % 25 == 3 => ("v1", Some(("fulfilment-worker", "2026.11.19-0ff1ce"))),
                2 => ("v2", Some(("fulfilment-worker", "2026.11.20-77aa001"))),
                _ if i == 7 || i == 207 => ("v1", None),
                _ => ("v2", Some(("events-pipeline", "2026.10.30-9e8d7c6"))),
            };
            let line = record(i, l, flow, rev, who);
            if l < 2 { &mut front } else { &mut back }.push(line.clone());
            all.push(line);
        }
    }
    let d = dir();
    let write = |name: &str, lines: &[String]| {
        let p = d.join(name);
        std::fs::write(&p, lines.join("\n") + "\n").unwrap();
        p
    };
    (vec![write("front.jsonl", &front), write("back.jsonl", &back)], write("all.jsonl", &all))
}

fn report(args: &[&str]) -> (i32, String, String) {
    let mut a = vec!["report"];
    a.extend_from_slice(args);
    a.extend_from_slice(&["--config", CATALOG]);
    accord(&a, b"")
}

fn json(args: &[&str]) -> Value {
    let mut a = args.to_vec();
    a.extend_from_slice(&["--format", "json"]);
    let (code, out, err) = report(&a);
    assert_eq!(code, 0, "{err}");
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"))
}

fn layer<'a>(r: &'a Value, name: &str) -> &'a Value {
    r["layers"].as_array().unwrap().iter().find(|l| l["layer"] == name).unwrap()
}

#[test]
fn a_rollout_archive_names_every_old_path_build_and_every_stale_layer() {
    let (files, one) = rollout();
    let f: Vec<&str> = files.iter().map(|p| p.to_str().unwrap()).collect();
    let r = json(&["checkout_v2", f[0], f[1], "--merge"]);
    assert_eq!(r["status"], "not_ready");
    assert_eq!(r["requests"], 300);
    assert_eq!(r["owner"], "payments");
    assert_eq!(r["expires"], "2027-01-31");
    assert_eq!(r["window_seconds"], 300);
    assert_eq!(r["current_revision"], "r42");

    let worker = layer(&r, "worker");
    assert_eq!(worker["records"], 300);
    assert_eq!(
        worker["old_path_takers"],
        serde_json::json!([
            {"service": "fulfilment-worker", "build": "2026.11.12-1a2b3c4", "records": 30,
             "last_seen": "2026-11-20T10:04:50.020Z"},
            {"service": "fulfilment-worker", "build": "2026.11.19-0ff1ce", "records": 12,
             "last_seen": "2026-11-20T10:04:38.020Z"},
        ])
    );
    assert_eq!(worker["old_ratio"], 42.0 / 300.0);
    let analytics = layer(&r, "analytics");
    assert_eq!(
        analytics["old_path_takers"],
        serde_json::json!([{"service": "unknown", "build": "unknown", "records": 2,
                            "last_seen": "2026-11-20T10:03:27.030Z"}])
    );
    for l in ["frontend", "api"] {
        assert_eq!(layer(&r, l)["old_path_takers"], serde_json::json!([]), "{l}");
        assert_eq!(layer(&r, l)["new_ratio"], 1.0, "{l}");
    }

    // Since 10:01:40.000Z: the worker carried r41 on requests 100..150 (50
    // of its 200 records), analytics on all 200.
    let stale: Vec<(Value, Value)> = LAYERS
        .iter()
        .map(|l| (layer(&r, l)["stale_share"].clone(), layer(&r, l)["adoption_lag_seconds"].clone()))
        .collect();
    assert_eq!(
        stale,
        [(0.0.into(), 0.0.into()), (0.0.into(), 0.01.into()), (0.25.into(), 50.02.into()), (1.0.into(), Value::Null),]
    );
    assert!(LAYERS.iter().all(|l| layer(&r, l).get("stale_share_range").is_none()));
    assert_eq!(
        r["revisions"],
        serde_json::json!([
            {"revision": "r41", "first_seen": "2026-11-20T10:00:00.000Z", "last_seen": "2026-11-20T10:04:59.030Z",
             "records": {"frontend": 100, "api": 100, "worker": 150, "analytics": 300}},
            {"revision": "r42", "first_seen": "2026-11-20T10:01:40.000Z", "last_seen": "2026-11-20T10:04:59.020Z",
             "records": {"frontend": 200, "api": 200, "worker": 150}},
        ])
    );

    let blockers: Vec<&str> = r["blockers"].as_array().unwrap().iter().map(|b| b.as_str().unwrap()).collect();
    for want in [
        "worker: fulfilment-worker build 2026.11.12-1a2b3c4 took the old path for 30 records, last at \
         2026-11-20T10:04:50.020Z",
        "worker: fulfilment-worker build 2026.11.19-0ff1ce took the old path for 12 records, last at \
         2026-11-20T10:04:38.020Z",
        "analytics: records without a service or build took the old path for 2 records, last at \
         2026-11-20T10:03:27.030Z",
        "worker: 25% of its records since revision r42 was first seen at 2026-11-20T10:01:40.000Z carried another \
         revision; it first evaluated r42 50.02 s later",
        "analytics: 100% of its records since revision r42 was first seen at 2026-11-20T10:01:40.000Z carried \
         another revision; it never evaluated r42",
    ] {
        assert!(blockers.contains(&want), "missing {want:?} in {blockers:#?}");
    }
    // The old-path requests diverged; the revisions skewed.
    assert_eq!(r["divergent_requests"]["path_mismatch"], 44);
    assert!(r["divergent_requests"]["snapshot_skew"].as_u64().unwrap() > 0);

    // The same records as one file judge the same.
    let mut single = json(&["checkout_v2", one.to_str().unwrap()]);
    let mut merged = r.clone();
    for v in [&mut single, &mut merged] {
        v.as_object_mut().unwrap().remove("days_left");
    }
    assert_eq!(single, merged);

    // Markdown: the verdict, then what to do, first.
    let (code, md, err) = report(&["checkout_v2", f[0], f[1], "--merge"]);
    assert_eq!(code, 0, "{err}");
    let mut lines = md.lines().filter(|l| !l.is_empty());
    assert_eq!(lines.next(), Some("# Exit review: checkout_v2 — not ready"));
    let todo = md.find("## What to do next").unwrap();
    assert!(todo < md.find("## Layers").unwrap());
    assert!(md[todo..].contains(
        "1. worker: fulfilment-worker build 2026.11.12-1a2b3c4 took the old path for 30 records, last at \
         2026-11-20T10:04:50.020Z"
    ));
    assert!(md.contains("| worker | 300 | 86% | 14% | 0% | 25% | 50.02 s |"), "{md}");
}

#[test]
fn an_archive_where_every_layer_agrees_is_ready() {
    let mut lines = Vec::new();
    for i in 0..250 {
        for l in 0..4 {
            lines.push(record(i, l, "v2", "r7", Some(("svc", "b1"))));
        }
    }
    let p = dir().join("agree.jsonl");
    std::fs::write(&p, lines.join("\n")).unwrap();
    let p = p.to_str().unwrap();
    let r = json(&["checkout_v2", p]);
    assert_eq!(r["status"], "ready");
    assert_eq!(r["blockers"], serde_json::json!([]));
    assert_eq!(r["requests"], 250);
    assert_eq!(r["incomplete_requests"], 0);
    assert_eq!(r["divergent_requests"], serde_json::json!({}));
    assert!(LAYERS.iter().all(|l| layer(&r, l)["stale_share"] == 0.0));
    let (code, md, _) = report(&["checkout_v2", p]);
    assert_eq!(code, 0);
    assert!(md.starts_with("# Exit review: checkout_v2 — ready to remove\n"), "{md}");
    assert!(md.contains("The flag can be deleted."));

    // The same archive with a higher bar has too few requests.
    let r = json(&["checkout_v2", p, "--min-samples", "300"]);
    assert_eq!(r["status"], "insufficient_data");
    assert_eq!(r["blockers"], serde_json::json!(["only 250 requests closed in the window; at least 300 are needed"]));
}

#[test]
fn an_unknown_feature_exits_2_with_one_line() {
    let p = dir().join("empty.jsonl");
    std::fs::write(&p, "").unwrap();
    let (code, out, err) = report(&["no_such_flag", p.to_str().unwrap()]);
    assert_eq!(code, 2);
    assert!(out.is_empty());
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(err.contains("\"no_such_flag\" is not in the catalog"), "{err}");
    // A missing file is bad usage too.
    let (code, _, err) = report(&["checkout_v2", "/no/such/file"]);
    assert_eq!(code, 2, "{err}");
}
