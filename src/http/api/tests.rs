//! The gate, features and divergences APIs through the router, over a live
//! view fed by a real pipeline.

use axum::body::Body;
use axum::http::{Request, StatusCode};
use serde_json::Value;

use crate::http::test_rig::{reasons, Rig, Story, T0};

#[tokio::test]
async fn gate_body_has_every_spec_field() {
    let mut r = Rig::new(1 << 20);
    r.feed(Story::AgreeNew, 3);
    let (g, _) = r.gate("min_samples=1").await;
    for f in [
        "feature",
        "decision",
        "exposed_agreement",
        "exposed_requests",
        "incomplete_ratio",
        "divergences",
        "reasons",
        "window_seconds",
    ] {
        assert!(g.get(f).is_some(), "{f} missing in {g}");
    }
    assert_eq!(g["feature"], "checkout_v2");
    assert_eq!(g["window_seconds"], 300);
    assert_eq!(g["exposed_requests"], 3);
    assert_eq!(g["exposed_agreement"], 1.0);
    assert_eq!(g["incomplete_ratio"], 0.0);
    let kinds = g["divergences"].as_object().unwrap();
    assert_eq!(kinds.len(), 4);
    assert!(kinds.values().all(|v| v == 0));
}

#[tokio::test]
async fn no_traffic_is_inconclusive_and_the_webhook_412() {
    let r = Rig::new(0);
    let (g, hook) = r.gate("").await;
    assert_eq!(g["decision"], "inconclusive");
    assert_eq!(hook, StatusCode::PRECONDITION_FAILED);
    assert_eq!(g["exposed_agreement"], Value::Null);
    assert_eq!(g["incomplete_ratio"], Value::Null);
    assert!(reasons(&g).contains("no request of checkout_v2 closed in the last 5m"), "{}", reasons(&g));
}

#[tokio::test]
async fn min_samples_edge_one_short_is_inconclusive_exactly_decides() {
    let mut r = Rig::new(0);
    r.feed(Story::AgreeNew, 9);
    r.feed(Story::AgreeOld, 20);
    let (g, hook) = r.gate("min_samples=10").await;
    assert_eq!(g["decision"], "inconclusive", "{g}");
    assert_eq!(hook, StatusCode::PRECONDITION_FAILED);
    let why = reasons(&g);
    assert!(why.contains("only 9 exposed requests"), "{why}");
    assert!(why.contains("20 requests took no new path"), "{why}");
    r.feed(Story::AgreeNew, 1);
    let (g, hook) = r.gate("min_samples=10").await;
    assert_eq!(g["decision"], "proceed", "{g}");
    assert_eq!(hook, StatusCode::OK);
    assert_eq!(g["exposed_requests"], 10);
    assert!(reasons(&g).contains("exposed agreement 100% ≥ 99.9% over 5m"), "{}", reasons(&g));
}

#[tokio::test]
async fn old_path_only_traffic_is_inconclusive() {
    let mut r = Rig::new(0);
    r.feed(Story::AgreeOld, 300);
    let (g, _) = r.gate("").await;
    assert_eq!(g["decision"], "inconclusive");
    assert_eq!(g["exposed_requests"], 0);
    assert_eq!(g["requests"], 300);
}

#[tokio::test]
async fn agreement_exactly_at_the_threshold_proceeds_just_below_holds() {
    let mut r = Rig::new(0);
    r.feed(Story::AgreeNew, 999);
    r.feed(Story::Fake, 1);
    let (g, hook) = r.gate("min_samples=1000&min_agreement=0.999").await;
    assert_eq!(g["exposed_agreement"], 0.999);
    assert_eq!(g["decision"], "proceed", "{g}");
    assert_eq!(hook, StatusCode::OK);
    assert!(reasons(&g).contains("within tolerance: 1 request where frontend took the new path"), "{}", reasons(&g));
    let (g, hook) = r.gate("min_samples=1000&min_agreement=0.9991").await;
    assert_eq!(g["decision"], "hold", "{g}");
    assert_eq!(hook, StatusCode::PRECONDITION_FAILED);
    // Enough decimals to tell value and threshold apart.
    assert!(reasons(&g).starts_with("exposed agreement 99.9% < 99.91% over 5m"), "{}", reasons(&g));
}

#[tokio::test]
async fn disagreement_holds_with_reasons_a_release_manager_reads() {
    let mut r = Rig::new(0);
    r.feed(Story::AgreeNew, 20);
    r.feed(Story::Fake, 5);
    r.feed(Story::Degraded, 2);
    let (g, hook) = r.gate("min_samples=20").await;
    assert_eq!(g["decision"], "hold", "{g}");
    assert_eq!(hook, StatusCode::PRECONDITION_FAILED);
    assert_eq!(g["exposed_requests"], 25);
    assert_eq!(g["exposed_agreement"], 0.8);
    assert_eq!(g["divergences"]["exposure_without_capability"], 5);
    assert_eq!(g["divergences"]["path_mismatch"], 5);
    let rs: Vec<&str> = g["reasons"].as_array().unwrap().iter().map(|v| v.as_str().unwrap()).collect();
    assert!(rs[0].starts_with("exposed agreement 80% < 99.9% over 5m: 5 requests where "), "{rs:?}");
    let all = rs.join(" | ");
    assert!(all.contains("frontend took the new path and api did not advertise v2"), "{all}");
    assert!(!all.contains("worker took the old"), "one explanation per request: {all}");
    assert!(all.contains("5 of 25 judged exposed requests did not agree"), "{all}");
    // Degraded requests took the old path only: not exposed.
    assert!(!all.contains("degraded"), "{all}");
}

#[tokio::test]
async fn incomplete_over_the_limit_holds_at_the_limit_proceeds() {
    let mut r = Rig::new(0);
    r.feed(Story::AgreeNew, 9);
    r.feed(Story::NoAnalytics, 1);
    let (g, hook) = r.gate("min_samples=5&max_incomplete=0.1").await;
    assert_eq!(g["incomplete_ratio"], 0.1);
    assert_eq!(g["decision"], "proceed", "{g}");
    assert_eq!(hook, StatusCode::OK);
    let (g, hook) = r.gate("min_samples=5&max_incomplete=0.05").await;
    assert_eq!(g["decision"], "hold", "{g}");
    assert_eq!(hook, StatusCode::PRECONDITION_FAILED);
    // Incomplete requests do not count against agreement.
    assert_eq!(g["exposed_agreement"], 1.0);
    assert_eq!(
        reasons(&g),
        "10% of requests incomplete > 5% allowed over 5m (1 of 10): analytics never reported for 1 request"
    );
}

#[tokio::test]
async fn every_exposed_request_incomplete_is_inconclusive_unless_incompleteness_holds() {
    let mut r = Rig::new(0);
    r.feed(Story::NoAnalytics, 10);
    let (g, _) = r.gate("min_samples=10&max_incomplete=1").await;
    assert_eq!(g["decision"], "inconclusive", "{g}");
    assert!(reasons(&g).contains("were incomplete: no agreement can be measured"));
    let (g, _) = r.gate("min_samples=10").await;
    assert_eq!(g["decision"], "hold", "{g}");
}

#[tokio::test]
async fn window_slides_past_old_disagreement() {
    let mut r = Rig::new(0);
    r.feed(Story::Fake, 10);
    r.set_now(T0 + 61_000);
    r.feed(Story::AgreeNew, 10);
    let (g, _) = r.gate("min_samples=10&window=2m").await;
    assert_eq!(g["decision"], "hold");
    assert_eq!(g["window_seconds"], 120);
    let (g, _) = r.gate("min_samples=10&window=1m").await;
    assert_eq!(g["decision"], "proceed", "{g}");
    r.set_now(T0 + 61_000 + 300_001);
    let (g, _) = r.gate("min_samples=10").await;
    assert_eq!(g["decision"], "inconclusive");
    assert_eq!(g["requests"], 0);
    let (g, _) = r.gate("min_samples=10&window=1h").await;
    assert_eq!(g["requests"], 20);
}

#[tokio::test]
async fn bad_parameters_are_400_json_never_500() {
    let r = Rig::new(0);
    for q in [
        "window=abc",
        "window=5",
        "window=0s",
        "window=2h",
        "window=61m",
        "window=1500ms",
        "window=",
        "min_samples=-1",
        "min_samples=1.5",
        "min_samples=ten",
        "min_samples=",
        "min_agreement=1.5",
        "min_agreement=-0.1",
        "min_agreement=NaN",
        "min_agreement=99.9",
        "max_incomplete=2",
        "max_incomplete=x",
        "min_sample=10",
        "window=5m&window=10m",
    ] {
        for path in ["/api/v1/gates/checkout_v2", "/api/v1/gates/checkout_v2/webhook"] {
            let (code, body) = r.get(&format!("{path}?{q}")).await;
            assert_eq!(code, StatusCode::BAD_REQUEST, "{path}?{q}: {body}");
            assert!(body["error"].as_str().is_some_and(|e| !e.is_empty()), "{q}: {body}");
            assert_eq!(body["status"], 400);
        }
    }
    // Accepted edge values.
    for q in ["window=1s", "window=1h", "window=60m", "min_samples=0", "min_agreement=0", "max_incomplete=1"] {
        let (code, body) = r.get(&format!("/api/v1/gates/checkout_v2?{q}")).await;
        assert_eq!(code, StatusCode::OK, "{q}: {body}");
    }
    for q in ["limit=0", "limit=101", "limit=x", "limit=-1", "limit=", "n=3"] {
        let (code, body) = r.get(&format!("/api/v1/features/checkout_v2/divergences?{q}")).await;
        assert_eq!(code, StatusCode::BAD_REQUEST, "{q}: {body}");
    }
    for q in ["window=0s", "window=3h", "feature=x"] {
        let (code, _) = r.get(&format!("/api/v1/features?{q}")).await;
        assert_eq!(code, StatusCode::BAD_REQUEST, "{q}");
    }
}

#[tokio::test]
async fn unknown_features_are_404_json() {
    let r = Rig::new(0);
    for path in [
        "/api/v1/gates/nope",
        "/api/v1/gates/nope/webhook",
        "/api/v1/gates/nope?window=abc",
        "/api/v1/features/nope",
        "/api/v1/features/nope/divergences",
    ] {
        let (code, body) = r.get(path).await;
        assert_eq!(code, StatusCode::NOT_FOUND, "{path}");
        assert_eq!(body["error"], "unknown feature \"nope\"");
        assert_eq!(body["known_features"], serde_json::json!(["checkout_v2", "search.ranking"]));
    }
}

#[tokio::test]
async fn webhook_accepts_flaggers_post() {
    let mut r = Rig::new(0);
    r.feed(Story::AgreeNew, 5);
    let req = Request::post("/api/v1/gates/checkout_v2/webhook?min_samples=5")
        .header("content-type", "application/json")
        .body(Body::from(r#"{"name":"podinfo","namespace":"test","phase":"Progressing","metadata":{}}"#))
        .unwrap();
    let (code, _, body) = r.request(req).await;
    assert_eq!(code, StatusCode::OK, "{body}");
}

#[tokio::test]
async fn features_api_shows_catalog_live_figures_and_exit_readiness() {
    let mut r = Rig::new(0);
    r.feed(Story::AgreeNew, 6);
    r.feed(Story::AgreeOld, 2);
    let (code, body) = r.get("/api/v1/features").await;
    assert_eq!(code, StatusCode::OK);
    assert_eq!(body["window_seconds"], 300);
    let fs = body["features"].as_array().unwrap();
    assert_eq!(fs.len(), 2);
    let c = &fs[0];
    assert_eq!(c["feature"], "checkout_v2");
    assert_eq!(c["owner"], "payments");
    assert_eq!(c["class"], "state-machine");
    assert_eq!(c["expires"], "2027-01-31");
    assert_eq!(c["days_to_expiry"], 30);
    assert_eq!(c["expired"], false);
    assert_eq!(c["exposed_agreement"], 1.0);
    assert_eq!(c["verdicts"]["agree"], 8);
    assert_eq!(c["requests_by_path"]["old"]["agree"], 2);
    let front = &c["layers"][0];
    assert_eq!(front["layer"], "frontend");
    assert_eq!(front["role"], "expected");
    assert_eq!(front["new_path_ratio"], 0.75);
    assert_eq!(front["old_path_share"], 0.25);
    assert!(front["lag_p50_seconds"].is_number());
    assert!(c["layers"][3]["lag_p99_seconds"].as_f64().unwrap() > 0.0);
    assert_eq!(c["exit_readiness"]["status"], "not_ready");
    assert_eq!(
        c["exit_readiness"]["layers_on_old_path"],
        serde_json::json!(["frontend", "api", "worker", "analytics"])
    );
    assert!(c["exit_readiness"]["summary"].as_str().unwrap().contains("frontend (25% of its records)"));
    assert_eq!(c["gate"]["decision"], "inconclusive");
    assert_eq!(c["divergence_causes"], serde_json::json!([]));
    let s = &fs[1];
    assert_eq!(s["feature"], "search.ranking");
    assert_eq!(s["exit_readiness"]["status"], "no_traffic");
    assert_eq!(s["layers"][2]["role"], "unlisted");
    assert_eq!(s["layers"][0]["role"], "optional");
    assert_eq!(s["exposed_agreement"], Value::Null);

    // After the old path is gone for a whole window: ready to exit.
    r.set_now(T0 + 400_000);
    r.feed(Story::AgreeNew, 3);
    let (_, c) = r.get("/api/v1/features/checkout_v2").await;
    assert_eq!(c["exit_readiness"]["status"], "ready");
    assert!(c["exit_readiness"]["summary"].as_str().unwrap().starts_with("no layer took the old path"));
    let (_, c) = r.get("/api/v1/features/checkout_v2?window=1h").await;
    assert_eq!(c["exit_readiness"]["status"], "not_ready");
    assert_eq!(c["window_seconds"], 3600);
    // Expiry after the date.
    r.set_now(1_801_526_400_000); // 2027-02-02
    let (_, c) = r.get("/api/v1/features/checkout_v2").await;
    assert_eq!(c["days_to_expiry"], -2);
    assert_eq!(c["expired"], true);
}

#[tokio::test]
async fn divergences_show_every_layers_record_as_received() {
    let mut r = Rig::new(1 << 20);
    r.feed(Story::Fake, 25);
    r.feed(Story::AgreeNew, 5);
    let (code, d) = r.get("/api/v1/features/checkout_v2/divergences").await;
    assert_eq!(code, StatusCode::OK);
    assert_eq!(d["limit"], 20);
    assert_eq!(d["kept"], 25);
    let list = d["divergent_requests"].as_array().unwrap();
    assert_eq!(list.len(), 20);
    let s = &list[0];
    assert_eq!(s["request_id"], "req-0025", "newest first");
    assert_eq!(s["verdict"], "diverge");
    assert_eq!(s["path"], "mixed");
    assert_eq!(s["explanation"], "frontend took the new path and api did not advertise v2");
    let kinds: Vec<&str> = s["kinds"].as_array().unwrap().iter().map(|k| k["kind"].as_str().unwrap()).collect();
    assert!(kinds.contains(&"exposure_without_capability"), "{kinds:?}");
    let ewc = s["kinds"].as_array().unwrap().iter().find(|k| k["kind"] == "exposure_without_capability").unwrap();
    assert_eq!(ewc["upstream"], "frontend");
    assert_eq!(ewc["downstream"], "api");
    assert_eq!(ewc["explanation"], "frontend took the new path and api did not advertise v2");
    let recs = s["records"].as_array().unwrap();
    assert_eq!(recs.len(), 4);
    assert_eq!(recs[1]["layer"], "api");
    assert_eq!(recs[1]["record"]["api_capability"], "v1");
    assert_eq!(recs[1]["record"]["request_id"], "req-0025");
    assert!(recs[1].get("unavailable").is_none());
    let (_, d) = r.get("/api/v1/features/checkout_v2/divergences?limit=100").await;
    assert_eq!(d["divergent_requests"].as_array().unwrap().len(), 25);
    let (_, d) = r.get("/api/v1/features/search.ranking/divergences?limit=1").await;
    assert_eq!(d["divergent_requests"], serde_json::json!([]));
}

#[tokio::test]
async fn records_that_left_the_sample_buffer_are_named() {
    let mut r = Rig::new(0);
    r.feed(Story::Fake, 1);
    let (_, d) = r.get("/api/v1/features/checkout_v2/divergences?limit=1").await;
    let rec = &d["divergent_requests"][0]["records"][2];
    assert_eq!(rec["record"], Value::Null);
    assert_eq!(rec["layer"], "worker");
    assert_eq!(rec["position"], 3);
    assert_eq!(
        rec["unavailable"],
        "the worker record at position 3 is no longer in the sample buffer (--sample-buffer-bytes)"
    );
}
