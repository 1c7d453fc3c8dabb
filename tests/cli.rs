//! The `accord` binary as a user meets it: exit codes, one-line errors,
//! and `run` against bad configuration, a missing topic and an
//! unreachable broker.

mod common;

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::accord;

const CATALOG: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/accord.toml");

fn write_tmp(name: &str, text: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("accord-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

#[test]
fn check_config_ok_and_one_line_per_problem() {
    let (code, out, _) = accord(&["check-config", CATALOG], b"");
    assert_eq!(code, 0);
    assert!(out.contains("ok"));
    let bad = std::fs::read_to_string(CATALOG)
        .unwrap()
        .replace("window = \"10s\"", "window = \"soon\"")
        .replace("expect = [\"api\", \"analytics\"]", "expect = [\"api\", \"mobile\"]");
    let p = write_tmp("bad.toml", &bad);
    let (code, _, err) = accord(&["check-config", p.to_str().unwrap()], b"");
    assert_eq!(code, 2);
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(lines.len(), 2, "{err}");
    assert!(lines.iter().all(|l| l.starts_with(p.to_str().unwrap())), "{err}");
    assert!(err.contains("feature[1].expect: unknown layer \"mobile\""), "{err}");
    assert!(err.contains("feature[1].window: invalid duration"), "{err}");
}

#[test]
fn replay_and_run_refuse_a_bad_catalog_with_one_line() {
    let p = write_tmp("bad2.toml", "[monitor]\nwindow = \"-1s\"\n[[feature]]\nkey = \"a\"\n");
    for args in [
        vec!["replay", "-", "--config", p.to_str().unwrap()],
        vec!["run", "--config", p.to_str().unwrap(), "--brokers", "127.0.0.1:1", "--topic", "t"],
    ] {
        let (code, out, err) = accord(&args, b"");
        assert_eq!(code, 2, "{args:?}: {err}");
        assert!(out.is_empty());
        assert_eq!(err.trim().lines().count(), 1, "{err}");
        assert!(err.contains("bad2.toml:2: monitor.window"), "{err}");
    }
}

#[test]
fn usage_errors_exit_2() {
    assert_eq!(accord(&["replay"], b"").0, 2);
    assert_eq!(accord(&["replay", "/no/such/file", "--config", CATALOG], b"").0, 2);
    assert_eq!(accord(&["run", "--brokers", "x"], b"").0, 2);
    assert_eq!(accord(&["bogus"], b"").0, 2);
    // The sample budget (one per instance, shared by its partitions) is
    // bounded up front.
    let (code, _, err) =
        accord(&["run", "--brokers", "127.0.0.1:1", "--topic", "t", "--sample-buffer-bytes", "2000000000"], b"");
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("at most 1073741824 bytes"), "{err}");
}

#[test]
fn replay_formats_on_the_example_stream() {
    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/decisions.jsonl");
    let (code, summary, err) = accord(&["replay", example, "--config", CATALOG], b"");
    assert_eq!(code, 0, "{err}");
    let s: serde_json::Value = serde_json::from_str(&summary).unwrap();
    let checkout = &s["features"]["checkout_v2"];
    for v in ["agree", "degraded", "incomplete", "diverge"] {
        assert!(checkout["verdicts"][v].as_u64().unwrap() > 0, "no {v} in the example");
    }
    let (_, prom, _) = accord(&["replay", example, "--config", CATALOG, "--format", "prometheus"], b"");
    common::assert_summary_matches(&summary, &common::parse_prometheus(&prom), "example");
    let (_, verdicts, _) = accord(&["replay", example, "--config", CATALOG, "--format", "verdicts"], b"");
    let lines: Vec<serde_json::Value> = verdicts.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.len() as u64, s["requests"].as_u64().unwrap());
    let diverged = lines.iter().find(|l| l["verdict"] == "diverge").unwrap();
    assert!(!diverged["divergences"].as_array().unwrap().is_empty());
    assert!(diverged["start"].as_str().unwrap().ends_with('Z'));
}

/// Starts `accord run` with `args`; returns the child and its listen port.
fn spawn_run(extra: &[&str]) -> (std::process::Child, u16) {
    let port = common::free_port();
    let listen = format!("127.0.0.1:{port}");
    let child = Command::new(env!("CARGO_BIN_EXE_accord"))
        .args(["run", "--config", CATALOG, "--listen", &listen])
        .args(extra)
        .env("ACCORD_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    (child, port)
}

fn http_status(port: u16, path: &str) -> Option<u16> {
    common::http_get(port, path).map(|r| r.0)
}

fn wait_exit(child: &mut std::process::Child, limit: Duration) -> Option<std::process::ExitStatus> {
    let t = Instant::now();
    while t.elapsed() < limit {
        if let Some(s) = child.try_wait().unwrap() {
            return Some(s);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    None
}

#[test]
fn unreachable_broker_keeps_retrying_and_is_not_ready() {
    let dead = common::free_port();
    let (mut child, port) = spawn_run(&["--brokers", &format!("127.0.0.1:{dead}"), "--topic", "decisions"]);
    let t = Instant::now();
    let mut seen = None;
    while t.elapsed() < Duration::from_secs(10) {
        seen = http_status(port, "/readyz");
        if seen.is_some() {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(seen, Some(503));
    std::thread::sleep(Duration::from_secs(3));
    assert!(child.try_wait().unwrap().is_none(), "accord run gave up on an unreachable broker");
    assert_eq!(http_status(port, "/healthz"), Some(200));
    assert_eq!(http_status(port, "/readyz"), Some(503));
    // SIGTERM drains and exits cleanly
    unsafe_kill(child.id(), 15);
    let status = wait_exit(&mut child, Duration::from_secs(15)).expect("exits after SIGTERM");
    assert!(status.success(), "{status:?}");
    let mut err = String::new();
    child.stderr.take().unwrap().read_to_string(&mut err).unwrap();
    assert!(err.contains("unreachable"), "{err}");
}

#[test]
fn missing_topic_is_a_one_line_configuration_error() {
    let cluster = rdkafka::mocking::MockCluster::new(1).unwrap();
    cluster.create_topic("present", 2, 1).unwrap();
    cluster.create_topic("other", 3, 1).unwrap();
    let brokers = cluster.bootstrap_servers();
    let (mut child, _) = spawn_run(&["--brokers", &brokers, "--topic", "absent"]);
    let status = wait_exit(&mut child, Duration::from_secs(30)).expect("exits");
    assert_eq!(status.code(), Some(2));
    let mut err = String::new();
    child.stderr.take().unwrap().read_to_string(&mut err).unwrap();
    let last = err.trim().lines().last().unwrap_or_default().to_string();
    assert!(last.contains("topic \"absent\" does not exist"), "{err}");

    let (mut child, _) = spawn_run(&["--brokers", &brokers, "--topic", "present", "--topic", "other"]);
    let status = wait_exit(&mut child, Duration::from_secs(30)).expect("exits");
    assert_eq!(status.code(), Some(2));
    let mut err = String::new();
    child.stderr.take().unwrap().read_to_string(&mut err).unwrap();
    assert!(err.contains("equal partition counts") && err.contains("present=2") && err.contains("other=3"), "{err}");
}

fn unsafe_kill(pid: u32, sig: i32) {
    let _ = Command::new("kill").arg(format!("-{sig}")).arg(pid.to_string()).status();
}

/// `accord simulate --output-format` writes the same stories as OpenFeature
/// events: replayed, the OTLP/JSON file judges exactly like the accord
/// file (every series; the ignored-items counter is what the report says
/// was sent), and the protobuf files hold length-delimited export requests.
#[test]
fn simulated_opentelemetry_output_judges_like_accord_output() {
    let dir = std::env::temp_dir().join(format!("accord-cli-sim-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let sim = |format: &str| {
        let out = dir.join(format!("sim.{format}"));
        let report = dir.join(format!("report.{format}.json"));
        let (code, _, err) = accord(
            &[
                "simulate",
                "--config",
                CATALOG,
                "--rate",
                "1500",
                "--duration",
                "20s",
                "--start",
                "2026-11-20T10:00:00Z",
                "--seed",
                "5",
                "--scenario",
                "mixed",
                "--output-format",
                format,
                "--output",
                out.to_str().unwrap(),
                "--report",
                report.to_str().unwrap(),
            ],
            b"",
        );
        assert_eq!(code, 0, "{format}: {err}");
        let report: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(report).unwrap()).unwrap();
        (out, report)
    };
    let judge = |file: &std::path::Path, format: &str| {
        let (code, out, err) = accord(
            &[
                "replay",
                file.to_str().unwrap(),
                "--config",
                CATALOG,
                "--input-format",
                format,
                "--format",
                "prometheus",
            ],
            b"",
        );
        assert_eq!(code, 0, "{format}: {err}");
        common::parse_prometheus(&out)
    };
    let (accord_file, accord_report) = sim("accord");
    let (json_file, json_report) = sim("otlp_json");
    assert_eq!(accord_report["expected"], json_report["expected"]);
    let mut want = judge(&accord_file, "accord");
    let mut got = judge(&json_file, "otlp_json");
    let ignored = got.remove("accord_otlp_items_ignored_total").unwrap();
    assert_eq!(want.remove("accord_otlp_items_ignored_total"), Some(0.0));
    assert!(ignored > 0.0);
    assert_eq!(ignored, json_report["otlp_items_ignored"].as_f64().unwrap());
    assert!(json_report["messages"].as_u64().unwrap() > 100);
    assert!(want[r#"accord_requests_total{feature="checkout_v2",path="mixed",verdict="diverge"}"#] > 0.0);
    assert_eq!(want, got);

    for format in ["otlp_proto_logs", "otlp_proto_traces"] {
        let (file, report) = sim(format);
        let bytes = std::fs::read(file).unwrap();
        let mut buf = &bytes[..];
        let mut messages = 0;
        while !buf.is_empty() {
            let len = prost::encoding::decode_varint(&mut buf).unwrap() as usize;
            assert!(len <= buf.len());
            buf = &buf[len..];
            messages += 1;
        }
        assert_eq!(messages, report["messages"].as_u64().unwrap(), "{format}");
        // Replay reads lines: protobuf is refused with one line.
        let (code, _, err) = accord(&["replay", "-", "--config", CATALOG, "--input-format", format], b"");
        assert_eq!(code, 2, "{err}");
        assert!(err.contains("replay reads JSON lines"), "{err}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}
