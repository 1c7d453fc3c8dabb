//! `accord replay` on a 1,000,000-record generated stream: it finishes,
//! and its summary equals its Prometheus output. Ignored by default (it is
//! a minute in a debug build); `.ci/run` runs it in release:
//! `cargo test --release --test large_replay -- --ignored --nocapture`.

mod common;

use std::io::Write;
use std::time::Instant;

use accord::simulate::{Generator, Scenario, Timing};

#[test]
#[ignore]
fn million_record_replay_summary_equals_prometheus() {
    let n: usize = std::env::var("ACCORD_LARGE_RECORDS").ok().and_then(|v| v.parse().ok()).unwrap_or(1_000_000);
    let dir = std::env::temp_dir().join(format!("accord-large-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("stream.jsonl");
    let mut f = std::io::BufWriter::new(std::fs::File::create(&path).unwrap());
    let t = Timing { window_ms: 30_000, allowed_lateness_ms: 5_000 };
    // 2,000 records/s of event time: 500 s of a rollout, every story.
    let gen = Generator::new(Scenario::Mixed, t, 2_000.0, (n as i64) / 2, 1_795_168_800_000, 11);
    let mut written = 0usize;
    for r in gen.take(n) {
        f.write_all(r.json.as_bytes()).unwrap();
        f.write_all(b"\n").unwrap();
        written += 1;
    }
    f.flush().unwrap();
    drop(f);
    let bytes = std::fs::metadata(&path).unwrap().len();
    let catalog = concat!(env!("CARGO_MANIFEST_DIR"), "/accord.toml");
    let p = path.to_str().unwrap();

    let t0 = Instant::now();
    let (code, summary, err) = common::accord(&["replay", p, "--config", catalog], b"");
    let secs = t0.elapsed().as_secs_f64();
    assert_eq!(code, 0, "{err}");
    let (code, prom, err) = common::accord(&["replay", p, "--config", catalog, "--format", "prometheus"], b"");
    assert_eq!(code, 0, "{err}");
    common::assert_summary_matches(&summary, &common::parse_prometheus(&prom), "1M replay");
    let s: serde_json::Value = serde_json::from_str(&summary).unwrap();
    assert_eq!(s["records"].as_u64().unwrap() as usize, written);
    for v in ["agree", "degraded", "incomplete", "diverge"] {
        assert!(s["features"]["checkout_v2"]["verdicts"][v].as_u64().unwrap() > 0, "{v}");
    }
    eprintln!(
        "replay of {written} records ({:.0} MB): {secs:.2} s wall including process start, {:.0} records/s; {} requests judged",
        bytes as f64 / 1e6,
        written as f64 / secs,
        s["requests"]
    );
    let _ = std::fs::remove_dir_all(&dir);
}
