//! A live view with a manual clock, fed through a real pipeline and a
//! recorder, behind the real router: what the HTTP tests drive.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use http_body_util::BodyExt;
use serde_json::Value;
use tower::ServiceExt;

use super::{router, AppState};
use crate::catalog::Catalog;
use crate::export::Metrics;
use crate::live::{LiveView, Recorder};
use crate::pipeline::Pipeline;
use crate::source::kafka::SourceStatus;
use crate::Features;

/// 2027-01-01T00:00:00Z
pub(crate) const T0: i64 = 1_798_761_600_000;

pub(crate) struct Rig {
    pub state: AppState,
    clock: Arc<AtomicI64>,
    pipe: Pipeline,
    rec: Recorder,
    pos: u64,
    seq: u64,
}

#[derive(Clone, Copy)]
pub(crate) enum Story {
    AgreeNew,
    AgreeOld,
    /// Frontend shows v2, api does not advertise it.
    Fake,
    /// Frontend saw the flag on and fell back.
    Degraded,
    /// New path, analytics never reports.
    NoAnalytics,
}

impl Rig {
    pub fn new(sample_bytes: usize) -> Rig {
        Rig::at(T0, sample_bytes)
    }

    /// A rig whose clock starts at `start_ms`.
    pub fn at(start_ms: i64, sample_bytes: usize) -> Rig {
        let cat = Catalog::parse(std::path::Path::new("c.toml"), include_str!("../../tests/conformance/catalog.toml"))
            .unwrap();
        let f = Arc::new(Features::new(Arc::new(cat)));
        let clock = Arc::new(AtomicI64::new(start_ms));
        let c = clock.clone();
        let live = LiveView::with_clock(f.clone(), Arc::new(move || c.load(Ordering::Relaxed)));
        Rig {
            rec: live.recorder(),
            pipe: Pipeline::new(f.clone(), sample_bytes),
            state: AppState { metrics: Metrics::new(f).unwrap(), status: Arc::new(SourceStatus::default()), live },
            clock,
            pos: 0,
            seq: 0,
        }
    }

    pub fn set_now(&self, ms: i64) {
        self.clock.store(ms, Ordering::Relaxed);
    }

    /// Judges `n` requests of a story with event times at the clock, then
    /// hands the recorder's delta to the view.
    pub fn feed(&mut self, story: Story, n: usize) {
        let ts = self.clock.load(Ordering::Relaxed);
        self.rec.set_now_ms(ts);
        for _ in 0..n {
            self.seq += 1;
            self.feed_one(story, &format!("req-{:04}", self.seq), &[]);
        }
        self.flush();
    }

    /// One record as given, arriving at the clock (its Kafka timestamp):
    /// judged, nothing handed to the view yet.
    pub fn ingest(&mut self, line: &str) {
        let now = self.clock.load(Ordering::Relaxed);
        self.rec.set_now_ms(now);
        self.pos += 1;
        let _ = self.pipe.ingest(line.as_bytes(), crate::join::Position::new(0, self.pos), now, &mut self.rec);
    }

    /// Hands the recorder's delta to the view (a commit round).
    pub fn flush_delta(&mut self) {
        self.state.live.apply(self.rec.take());
    }

    /// Closes what waits for a layer that never comes, and hands the
    /// recorder's delta to the view.
    pub fn flush(&mut self) {
        self.pipe.engine_mut().flush(&mut self.rec);
        self.state.live.apply(self.rec.take());
    }

    /// One request of a story with `extra` fields added to every record
    /// (raw JSON members, e.g. `"note":"x"`).
    pub fn feed_one(&mut self, story: Story, id: &str, extra: &[&str]) {
        let ts = self.clock.load(Ordering::Relaxed);
        let (front, api, worker, analytics) = match story {
            Story::AgreeNew => (
                r#""flag_state":true,"selected_flow":"v2""#,
                r#""api_capability":"v2","selected_flow":"v2","job_payload_version":2"#,
                Some(r#""job_payload_version":2"#),
                Some(r#""selected_flow":"v2""#),
            ),
            Story::AgreeOld => (
                r#""flag_state":false,"selected_flow":"v1""#,
                r#""api_capability":"v2","selected_flow":"v1","job_payload_version":1"#,
                Some(r#""job_payload_version":1"#),
                Some(r#""selected_flow":"v1""#),
            ),
            Story::Fake => (
                r#""flag_state":true,"selected_flow":"v2""#,
                r#""api_capability":"v1","selected_flow":"v1","job_payload_version":1"#,
                Some(r#""job_payload_version":1"#),
                Some(r#""selected_flow":"v1""#),
            ),
            Story::Degraded => (
                r#""flag_state":true,"selected_flow":"v1""#,
                r#""api_capability":"v2","selected_flow":"v1","job_payload_version":1"#,
                Some(r#""job_payload_version":1"#),
                Some(r#""selected_flow":"v1""#),
            ),
            Story::NoAnalytics => (
                r#""flag_state":true,"selected_flow":"v2""#,
                r#""api_capability":"v2","selected_flow":"v2","job_payload_version":2"#,
                Some(r#""job_payload_version":2"#),
                None,
            ),
        };
        let mut recs = vec![("frontend", front), ("api", api)];
        recs.extend(worker.map(|w| ("worker", w)));
        recs.extend(analytics.map(|a| ("analytics", a)));
        let extra: String = extra.iter().map(|e| format!(",{e}")).collect();
        for (i, (layer, fields)) in recs.into_iter().enumerate() {
            let id = serde_json::to_string(id).unwrap();
            let r = format!(
                r#"{{"request_id":{id},"layer":"{layer}","feature":"checkout_v2","ts":{},{fields}{extra}}}"#,
                ts + i as i64 * 10
            );
            self.pos += 1;
            self.pipe.ingest(r.as_bytes(), crate::join::Position::new(0, self.pos), ts, &mut self.rec).unwrap();
        }
    }

    pub async fn get(&self, path: &str) -> (StatusCode, Value) {
        let (code, body) = self.get_text(path).await;
        let v = serde_json::from_str(&body).unwrap_or_else(|e| panic!("{path}: not JSON ({e}): {body}"));
        (code, v)
    }

    pub async fn get_text(&self, path: &str) -> (StatusCode, String) {
        let (code, _, body) = self.request(Request::get(path).body(Body::empty()).unwrap()).await;
        (code, body)
    }

    pub async fn request(&self, req: Request<Body>) -> (StatusCode, axum::http::HeaderMap, String) {
        let r = router(self.state.clone()).oneshot(req).await.unwrap();
        let code = r.status();
        let headers = r.headers().clone();
        let body = r.into_body().collect().await.unwrap().to_bytes();
        (code, headers, String::from_utf8(body.to_vec()).unwrap())
    }

    /// The gate, and the webhook's status for the same query.
    pub async fn gate(&self, query: &str) -> (Value, StatusCode) {
        let (code, g) = self.get(&format!("/api/v1/gates/checkout_v2?{query}")).await;
        assert_eq!(code, StatusCode::OK, "{g}");
        let (hook, body) = self.get(&format!("/api/v1/gates/checkout_v2/webhook?{query}")).await;
        assert_eq!(body["decision"], g["decision"]);
        (g, hook)
    }
}

pub(crate) fn reasons(g: &Value) -> String {
    g["reasons"].as_array().unwrap().iter().map(|r| r.as_str().unwrap()).collect::<Vec<_>>().join(" | ")
}
