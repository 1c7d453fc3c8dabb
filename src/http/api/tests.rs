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
    // Readiness is the exit review's status over the same window, with its
    // blockers and a link to the whole review.
    assert_eq!(c["exit_readiness"]["requests"], 8);
    assert_eq!(c["exit_readiness"]["review"], "/api/v1/features/checkout_v2/exit-review?window=5m");
    assert_eq!(c["links"]["exit_review"], c["exit_readiness"]["review"]);
    let (_, review) = r.get("/api/v1/features/checkout_v2/exit-review?window=5m").await;
    assert_eq!(review["status"], c["exit_readiness"]["status"]);
    let first: Vec<&Value> = review["blockers"].as_array().unwrap().iter().take(5).collect();
    assert_eq!(first, c["exit_readiness"]["blockers"].as_array().unwrap().iter().collect::<Vec<_>>());
    assert_eq!(c["revision_convergence"]["current_revision"], Value::Null);
    let s = &fs[1];
    assert_eq!(s["feature"], "search.ranking");
    // No traffic: the review cannot tell (formerly `no_traffic`).
    assert_eq!(s["exit_readiness"]["status"], "insufficient_data");
    assert!(s["exit_readiness"]["summary"].as_str().unwrap().contains("no request closed in the window"));
    assert_eq!(s["layers"][2]["role"], "unlisted");
    assert_eq!(s["layers"][0]["role"], "optional");
    assert_eq!(s["exposed_agreement"], Value::Null);

    // After the old path is gone for a whole window, with enough requests
    // (the review's min_samples, 200): ready to exit.
    r.set_now(T0 + 400_000);
    r.feed(Story::AgreeNew, 3);
    let (_, c) = r.get("/api/v1/features/checkout_v2").await;
    assert_eq!(c["exit_readiness"]["status"], "insufficient_data");
    r.feed(Story::AgreeNew, 197);
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

// ------------------------------------------------------------- the gate's
// webhook answer while inconclusive, and the noise floor ------------------

#[tokio::test]
async fn inconclusive_answers_412_by_default_and_200_when_told() {
    let mut r = Rig::new(0);
    r.feed(Story::AgreeNew, 3);
    for (q, code) in [
        ("", StatusCode::PRECONDITION_FAILED),
        ("inconclusive=hold", StatusCode::PRECONDITION_FAILED),
        ("inconclusive=proceed", StatusCode::OK),
    ] {
        let (g, hook) = r.gate(q).await;
        assert_eq!(g["decision"], "inconclusive", "{q}: {g}");
        assert_eq!(hook, code, "{q}");
        assert_eq!(g["webhook"]["status"], code.as_u16(), "{q}: {g}");
        let applied = g["webhook"]["applied"].as_str().unwrap();
        let mode = if code == StatusCode::OK { "proceed" } else { "hold" };
        assert!(applied.starts_with(&format!("inconclusive answered as {mode} (inconclusive={mode})")), "{applied}");
        assert_eq!(g["thresholds"]["inconclusive"], mode);
    }
    // A conclusive gate answers as it decides, whatever `inconclusive` says.
    let (g, hook) = r.gate("min_samples=3&inconclusive=proceed").await;
    assert_eq!((g["decision"].as_str(), hook), (Some("proceed"), StatusCode::OK));
    assert!(g["webhook"].get("applied").is_none(), "{g}");
    r.feed(Story::Fake, 1);
    let (g, hook) = r.gate("min_samples=3&inconclusive=proceed").await;
    assert_eq!((g["decision"].as_str(), hook), (Some("hold"), StatusCode::PRECONDITION_FAILED));
}

/// 99 old-path requests agree and 1 degrades (the noise floor: 99 %);
/// `agree` of `n` exposed requests agree and the rest diverge.
fn noise_floor_rig(agree: usize, diverge: usize) -> Rig {
    let mut r = Rig::new(0);
    r.feed(Story::AgreeOld, 99);
    r.feed(Story::Degraded, 1);
    r.feed(Story::AgreeNew, agree);
    r.feed(Story::Fake, diverge);
    r
}

#[tokio::test]
async fn max_drop_vs_old_holds_beyond_the_noise_floor_and_exactly_at_it_proceeds() {
    // Exposed agreement 97 %, old path 99 %: 2 points below.
    let r = noise_floor_rig(97, 3);
    let base = "min_samples=100&min_agreement=0.9";
    let (g, hook) = r.gate(base).await;
    assert_eq!(g["decision"], "proceed", "{g}");
    assert_eq!(hook, StatusCode::OK);
    assert_eq!(g["old_path_agreement"], 0.99);
    assert_eq!(g["old_path_judged"], 100);
    assert!(g["thresholds"].get("max_drop_vs_old").is_none(), "{g}");
    // Exactly F below passes (0.99 − 0.97 is 0.020000000000000018 in floats).
    let (g, hook) = r.gate(&format!("{base}&max_drop_vs_old=0.02")).await;
    assert_eq!(g["decision"], "proceed", "{g}");
    assert_eq!(hook, StatusCode::OK);
    assert_eq!(g["thresholds"]["max_drop_vs_old"], 0.02);
    assert!(
        reasons(&g).contains("exposed agreement 97% is within 2 percentage points of the old path's agreement 99%"),
        "{}",
        reasons(&g)
    );
    for f in ["0.020", "0.0200000", ".02"] {
        let (g, _) = r.gate(&format!("{base}&max_drop_vs_old={f}")).await;
        assert_eq!(g["decision"], "proceed", "{f}: {g}");
    }
    // More than F below holds, with a reason naming both figures.
    let (g, hook) = r.gate(&format!("{base}&max_drop_vs_old=0.0199")).await;
    assert_eq!(g["decision"], "hold", "{g}");
    assert_eq!(hook, StatusCode::PRECONDITION_FAILED);
    assert_eq!(
        reasons(&g),
        "exposed agreement 97% is 2 percentage points below the old path's agreement 99% over 5m, more than the \
         1.99 percentage points max_drop_vs_old allows: the rollout adds disagreement beyond the noise floor (100 \
         judged requests of the old path)"
    );
    let (g, _) = r.gate(&format!("{base}&max_drop_vs_old=0.019999999")).await;
    assert_eq!(g["decision"], "hold", "{g}");
    let (g, _) = r.gate(&format!("{base}&max_drop_vs_old=0")).await;
    assert_eq!(g["decision"], "hold", "{g}");
    let (g, _) = r.gate(&format!("{base}&max_drop_vs_old=1")).await;
    assert_eq!(g["decision"], "proceed", "{g}");
    // The agreement threshold still holds on its own; both reasons show.
    let (g, _) = r.gate("min_samples=100&max_drop_vs_old=0.01").await;
    assert_eq!(g["decision"], "hold");
    let why = reasons(&g);
    assert!(why.starts_with("exposed agreement 97% < 99.9% over 5m"), "{why}");
    assert!(why.contains("is 2 percentage points below the old path's agreement 99%"), "{why}");
}

#[tokio::test]
async fn max_drop_vs_old_without_old_path_traffic_says_so_and_decides_nothing() {
    let mut r = Rig::new(0);
    r.feed(Story::AgreeNew, 10);
    let (g, hook) = r.gate("min_samples=10&max_drop_vs_old=0.01").await;
    assert_eq!(g["decision"], "proceed", "{g}");
    assert_eq!(hook, StatusCode::OK);
    assert_eq!(g["old_path_agreement"], Value::Null);
    assert!(
        reasons(&g).contains("no old-path request was judged in the last 5m: max_drop_vs_old has no noise floor"),
        "{}",
        reasons(&g)
    );
    // Inconclusive stays inconclusive: the floor only ever adds a hold.
    let (g, _) = r.gate("min_samples=11&max_drop_vs_old=0").await;
    assert_eq!(g["decision"], "inconclusive");
}

#[tokio::test]
async fn bad_gate_parameters_of_the_webhook_modes_are_400_json() {
    let r = Rig::new(0);
    for q in [
        "max_drop_vs_old=2",
        "max_drop_vs_old=1.5",
        "max_drop_vs_old=-0.1",
        "max_drop_vs_old=x",
        "max_drop_vs_old=NaN",
        "max_drop_vs_old=inf",
        "max_drop_vs_old=",
        "max_drop_vs_old=.",
        "max_drop_vs_old=1e-3",
        "max_drop_vs_old=0.0000000001",
        "max_drop_vs_old=0.01&max_drop_vs_old=0.02",
        "inconclusive=maybe",
        "inconclusive=HOLD",
        "inconclusive=",
        "inconclusive=200",
        "inconclusive=hold&inconclusive=proceed",
    ] {
        for path in ["/api/v1/gates/checkout_v2", "/api/v1/gates/checkout_v2/webhook"] {
            let (code, body) = r.get(&format!("{path}?{q}")).await;
            assert_eq!(code, StatusCode::BAD_REQUEST, "{path}?{q}: {body}");
            assert_eq!(body["status"], 400);
            assert!(body["error"].as_str().is_some_and(|e| !e.is_empty()), "{q}: {body}");
        }
    }
    let (_, body) = r.get("/api/v1/gates/checkout_v2?max_drop_vs_old=2").await;
    assert_eq!(
        body["error"],
        "max_drop_vs_old must be a decimal fraction from 0 to 1 with at most 9 decimals (e.g. 0.01), got \"2\""
    );
    let (_, body) = r.get("/api/v1/gates/checkout_v2/webhook?inconclusive=maybe").await;
    assert_eq!(body["error"], "inconclusive must be hold or proceed, got \"maybe\"");
    for q in ["max_drop_vs_old=0", "max_drop_vs_old=1", "max_drop_vs_old=1.0", "max_drop_vs_old=0.000000001"] {
        let (code, body) = r.get(&format!("/api/v1/gates/checkout_v2?{q}")).await;
        assert_eq!(code, StatusCode::OK, "{q}: {body}");
    }
}

// ------------------------------------------------------- the exit review --

/// 2026-11-20T10:00:00Z: in the past, so that `accord report` (whose
/// clock-skew reference is the wall clock) takes every `ts` as given.
const BASE: i64 = 1_795_168_800_000;

/// A rollout of 240 requests, one a second, as decision records in arrival
/// order: r42 replaces r41 at request 80 (frontend and api), the worker
/// adopts it at request 120, analytics never does; two worker builds take
/// the old path now and then (path mismatches), analytics skips some
/// requests (incomplete) and names no path for others, two analytics
/// records carry no provenance; a retried job of request 5 arrives late
/// (its request long judged); records of another feature, a reject.
fn rollout_records() -> Vec<(i64, String)> {
    let rec = |i: i64, layer: &str, ts: i64, fields: String| {
        format!(
            r#"{{"request_id":"req-{i:04}","layer":"{layer}","feature":"checkout_v2","ts":{ts},"flag_state":true{fields}}}"#
        )
    };
    let mut out = Vec::new();
    for i in 0..240i64 {
        let t = BASE + i * 1000;
        let rev = |adopted: bool| if adopted { "r42" } else { "r41" };
        out.push((
            t,
            rec(
                i,
                "frontend",
                t,
                format!(
                    r#","selected_flow":"v2","flags_revision":"{}","service":"web-spa","build":"2026.11.20-3f9c2a1""#,
                    rev(i >= 80)
                ),
            ),
        ));
        out.push((
            t + 10,
            rec(i, "api", t + 10, format!(r#","selected_flow":"v2","api_capability":"v2","flags_revision":"{}","service":"checkout-api","build":"2026.11.19-88d01be""#, rev(i >= 80))),
        ));
        let (version, build) = match i {
            i if i % 10 == 0 => (1, "2026.11.12-1a2b3c4"),
            i if i % 25 == 3 => (1, "2026.11.19-0ff1ce"),
            _ => (2, "2026.11.20-77aa001"),
        };
        out.push((
            t + 300,
            rec(i, "worker", t + 300, format!(r#","job_payload_version":{version},"flags_revision":"{}","service":"fulfilment-worker","build":"{build}""#, rev(i >= 120))),
        ));
        let analytics = match i {
            i if i % 50 == 5 => None,
            7 | 207 => Some(r#","selected_flow":"v1","flags_revision":"r41""#.to_string()),
            i if i % 60 == 30 => Some(r#","flag_state":null,"flags_revision":"r41","service":"events-pipeline","build":"2026.10.30-9e8d7c6""#.to_string()),
            _ => Some(r#","selected_flow":"v2","flags_revision":"r41","service":"events-pipeline","build":"2026.10.30-9e8d7c6""#.to_string()),
        };
        if let Some(a) = analytics {
            out.push((t + 900, rec(i, "analytics", t + 900, a)));
        }
        if i == 150 {
            // A retried job of request 5, run by an old worker much later.
            out.push((
                t + 400,
                rec(5, "worker", BASE + 5_500, r#","job_payload_version":1,"flags_revision":"r41","service":"fulfilment-worker","build":"2026.11.01-retry""#.into()),
            ));
            out.push((t + 500, "not json".into()));
        }
        if i % 40 == 0 {
            out.push((
                t + 20,
                format!(r#"{{"request_id":"s-{i}","layer":"api","feature":"search.ranking","ts":{},"selected_flow":"ltr"}}"#, t + 20),
            ));
        }
    }
    out
}

/// The review as `accord report` gives it for these records.
fn report_of(lines: &[(i64, String)], now_ms: i64) -> Value {
    use crate::exit::{ReviewParams, ReviewWindow};
    use crate::replay::{exit_review, ReplayOptions, Source};
    let dir = std::env::temp_dir().join(format!("accord-live-vs-report-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("rollout.jsonl");
    let text: String = lines.iter().map(|(_, l)| format!("{l}\n")).collect();
    std::fs::write(&path, text).unwrap();
    let cat =
        crate::Catalog::parse(std::path::Path::new("c.toml"), include_str!("../../../tests/conformance/catalog.toml"))
            .unwrap();
    let features = std::sync::Arc::new(crate::Features::new(std::sync::Arc::new(cat)));
    let id = features.lookup("checkout_v2").unwrap();
    let params = ReviewParams { window: ReviewWindow::Archive, now_ms, min_samples: 200 };
    let review = exit_review(&[Source::File(path)], &features, id, ReplayOptions::default(), &params).unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    // As `accord report --format json` prints it, read back as the API's
    // answer is (JSON text both ways, so floats parse alike).
    serde_json::from_str(&serde_json::to_string_pretty(&review).unwrap()).unwrap()
}

/// The live exit review equals `accord report` over the same records: the
/// same judging (a pipeline), the same evidence (the live recorder's exit
/// slices, merged by the view, against the archive's one aggregate) and the
/// same review code. What legitimately differs: `window_seconds` (the live
/// window, an hour, against the archive's span of event times) and `view`
/// (the live view's freshness; an archive has none).
#[tokio::test]
async fn the_live_exit_review_equals_accord_report_over_the_same_records() {
    let lines = rollout_records();
    let mut r = Rig::at(BASE, 0);
    for (i, (arrival, line)) in lines.iter().enumerate() {
        r.set_now(*arrival.max(&BASE));
        r.ingest(line);
        // Shares reach the view now and then, as commit rounds do.
        if i % 97 == 0 {
            r.flush_delta();
        }
    }
    let now = BASE + 241_000;
    r.set_now(now);
    r.flush();
    let (code, mut live) = r.get("/api/v1/features/checkout_v2/exit-review?window=1h").await;
    assert_eq!(code, StatusCode::OK, "{live}");
    let mut archive = report_of(&lines, now);
    // The scenario exercises what the review reports.
    assert_eq!(archive["status"], "not_ready");
    assert_eq!(archive["current_revision"], "r42");
    assert_eq!(archive["requests"], 240);
    assert!(archive["incomplete_requests"].as_u64().unwrap() > 0);
    assert!(archive["divergent_requests"]["path_mismatch"].as_u64().unwrap() > 0);
    let worker = archive["layers"].as_array().unwrap().iter().find(|l| l["layer"] == "worker").unwrap();
    assert!(worker["old_path_takers"].as_array().unwrap().iter().any(|t| t["build"] == "2026.11.01-retry"));
    assert!(worker["stale_share"].as_f64().unwrap() > 0.0);
    assert!(worker["adoption_lag_seconds"].as_f64().unwrap() > 0.0);
    assert!(archive["notes"].as_array().is_some_and(|n| !n.is_empty()), "{archive}");

    assert_eq!(live["window_seconds"], 3600);
    assert_eq!(live["view"], Value::Null);
    assert_eq!(archive["window_seconds"], 240);
    for v in [&mut live, &mut archive] {
        let o = v.as_object_mut().unwrap();
        o.remove("window_seconds");
        o.remove("view");
    }
    assert_eq!(live, archive);
}

#[tokio::test]
async fn the_exit_review_answers_markdown_when_asked_and_400_or_404_json_otherwise() {
    let mut r = Rig::new(0);
    r.feed(Story::AgreeNew, 3);
    let (code, j) = r.get("/api/v1/features/checkout_v2/exit-review").await;
    assert_eq!(code, StatusCode::OK);
    assert_eq!(j["window_seconds"], 3600);
    assert_eq!(j["status"], "insufficient_data");
    assert_eq!(j["min_samples"], 200);
    let (_, j) = r.get("/api/v1/features/checkout_v2/exit-review?min_samples=3&window=10m").await;
    assert_eq!((j["status"].as_str(), j["window_seconds"].as_u64()), (Some("ready"), Some(600)));
    let md = |accept: Option<&str>, q: &str| {
        let mut req = Request::get(format!("/api/v1/features/checkout_v2/exit-review{q}"));
        if let Some(a) = accept {
            req = req.header("accept", a);
        }
        req.body(Body::empty()).unwrap()
    };
    for (accept, q, markdown) in [
        (None, "?format=markdown", true),
        (Some("text/markdown"), "", true),
        (Some("text/markdown;q=0.9, application/json;q=0.5"), "", true),
        (Some("application/json, text/markdown;q=0.5"), "", false),
        (Some("*/*"), "", false),
        (Some("text/markdown"), "?format=json", false),
        (None, "", false),
    ] {
        let (code, headers, body) = r.request(md(accept, q)).await;
        assert_eq!(code, StatusCode::OK, "{accept:?} {q}");
        let ct = headers["content-type"].to_str().unwrap();
        if markdown {
            assert_eq!(ct, "text/markdown; charset=utf-8", "{accept:?} {q}");
            assert!(body.starts_with("# Exit review: checkout_v2 — not enough data"), "{body}");
        } else {
            assert_eq!(ct, "application/json", "{accept:?} {q}");
            assert!(body.starts_with('{'), "{body}");
        }
    }
    for q in [
        "window=2h",
        "window=0s",
        "window=x",
        "format=xml",
        "format=",
        "min_samples=-1",
        "limit=3",
        "window=1h&window=1h",
    ] {
        let (code, body) = r.get(&format!("/api/v1/features/checkout_v2/exit-review?{q}")).await;
        assert_eq!(code, StatusCode::BAD_REQUEST, "{q}: {body}");
        assert_eq!(body["status"], 400);
        assert!(body["error"].as_str().is_some_and(|e| !e.is_empty()), "{q}: {body}");
    }
    for path in ["/api/v1/features/nope/exit-review", "/api/v1/features/nope/exit-review?format=markdown&window=x"] {
        let (code, body) = r.get(path).await;
        assert_eq!(code, StatusCode::NOT_FOUND, "{path}");
        assert_eq!(body["error"], "unknown feature \"nope\"");
    }
}

#[tokio::test]
async fn an_incomplete_view_never_calls_a_flag_ready() {
    let mut r = Rig::new(0);
    r.feed(Story::AgreeNew, 5);
    let (_, j) = r.get("/api/v1/features/checkout_v2/exit-review?min_samples=5").await;
    assert_eq!(j["status"], "ready");
    // The group has two streams and no instance published either: the
    // view covers part of the traffic at best.
    r.state.live.expect_streams(2, 10_000);
    let (_, j) = r.get("/api/v1/features/checkout_v2/exit-review?min_samples=5").await;
    assert_eq!(j["status"], "insufficient_data", "{j}");
    let blockers = j["blockers"].as_array().unwrap();
    assert!(blockers[0].as_str().unwrap().contains("no instance has published the statistics of partition(s) 0, 1"));
    assert_eq!(j["view"]["missing_streams"], serde_json::json!([0, 1]));
}
