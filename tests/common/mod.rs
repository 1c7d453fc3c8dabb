//! Helpers shared by the integration tests.
#![allow(dead_code)]

use std::collections::BTreeMap;

/// The directory for the logs of the code under test, when
/// `ACCORD_TEST_LOG_DIR` is set (CI keeps it with its artifacts): a failure
/// of a timing-dependent test is then explained by what accord logged.
pub fn log_dir() -> Option<std::path::PathBuf> {
    let dir = std::path::PathBuf::from(std::env::var_os("ACCORD_TEST_LOG_DIR")?);
    std::fs::create_dir_all(&dir).ok()?;
    Some(dir)
}

/// A name for the next in-process instance of this test binary, for its
/// log lines (`i1`, `i2`, …).
pub fn next_instance_name() -> String {
    static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    format!("i{}", N.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1)
}

/// Runs `fut` (an instance) under an `instance` span naming it, so the log
/// lines of its threads say whose they are.
pub fn instrumented<F: std::future::Future>(name: &str, fut: F) -> tracing::instrument::Instrumented<F> {
    tracing::Instrument::instrument(fut, tracing::info_span!("instance", name = %name))
}

/// Sends this test binary's tracing output (every in-process instance,
/// each line under its `instance` span) to `<log dir>/<test>.log`, filtered
/// by `ACCORD_TEST_LOG` (default `accord=debug,info`; add
/// `librdkafka=debug` with `--kafka debug=cgrp` to see the group protocol).
pub fn init_log(test: &str) {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let Some(dir) = log_dir() else { return };
        let Ok(file) = std::fs::File::create(dir.join(format!("{test}.log"))) else { return };
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new(
                std::env::var("ACCORD_TEST_LOG").unwrap_or("accord=debug,info".into()),
            ))
            .with_thread_names(true)
            .with_ansi(false)
            .with_writer(std::sync::Mutex::new(file))
            .try_init();
    });
}

/// Parses classic Prometheus text into `series -> value`, with each
/// series' labels sorted by name (`name{a="1",b="2"}`).
pub fn parse_prometheus(text: &str) -> BTreeMap<String, f64> {
    let mut out = BTreeMap::new();
    for line in text.lines() {
        if line.starts_with('#') || line.trim().is_empty() {
            continue;
        }
        let (series, value) = line.rsplit_once(' ').expect("series and value");
        let value: f64 = value.parse().expect("numeric value");
        out.insert(canonical_series(series), value);
    }
    out
}

/// Sorts the labels of `name{...}` by name.
pub fn canonical_series(series: &str) -> String {
    let Some((name, rest)) = series.split_once('{') else {
        return series.to_string();
    };
    let body = rest.strip_suffix('}').expect("closing brace");
    let mut labels: Vec<(String, String)> = Vec::new();
    let mut chars = body.chars().peekable();
    while chars.peek().is_some() {
        let key: String = chars.by_ref().take_while(|&c| c != '=').collect();
        assert_eq!(chars.next(), Some('"'));
        let mut val = String::new();
        while let Some(c) = chars.next() {
            match c {
                '\\' => {
                    val.push('\\');
                    val.push(chars.next().expect("escape"));
                }
                '"' => break,
                c => val.push(c),
            }
        }
        labels.push((key.trim_start_matches(',').to_string(), val));
        if chars.peek() == Some(&',') {
            chars.next();
        }
    }
    labels.sort();
    let body: Vec<String> = labels.iter().map(|(k, v)| format!("{k}=\"{v}\"")).collect();
    format!("{name}{{{}}}", body.join(","))
}

/// The metric name of a series.
pub fn metric_name(series: &str) -> &str {
    series.split('{').next().unwrap_or(series)
}

/// The contract counters a conformance case compares (the library's list,
/// read from src/export/contract_metrics.txt).
#[allow(unused_imports)] // every test binary includes this module; not all compare counters
pub use accord::export::metrics::CONTRACT_COUNTERS;

/// Runs the accord binary with `args` and `stdin`, returning (status, stdout, stderr).
pub fn accord(args: &[&str], stdin: &[u8]) -> (i32, String, String) {
    use std::io::Write;
    use std::process::{Command, Stdio};
    let mut child = Command::new(env!("CARGO_BIN_EXE_accord"))
        .args(args)
        .env("ACCORD_LOG", "warn")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn accord");
    let mut sin = child.stdin.take().expect("stdin");
    let data = stdin.to_vec();
    let writer = std::thread::spawn(move || {
        let _ = sin.write_all(&data);
    });
    let out = child.wait_with_output().expect("wait");
    writer.join().expect("stdin writer");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Asserts that a replay `summary` JSON and a `/metrics` scrape agree on
/// every count the summary reports.
pub fn assert_summary_matches(summary: &str, prom: &BTreeMap<String, f64>, ctx: &str) {
    let s: serde_json::Value =
        serde_json::from_str(summary).unwrap_or_else(|e| panic!("{ctx}: summary is not JSON: {e}"));
    let get = |series: String| -> f64 { *prom.get(&canonical_series(&series)).unwrap_or(&0.0) };
    for (reason, n) in s["rejected"].as_object().unwrap() {
        assert_eq!(
            n.as_f64().unwrap(),
            get(format!(r#"accord_records_rejected_total{{reason="{reason}"}}"#)),
            "{ctx}: rejected {reason}"
        );
    }
    let mut total_records = 0.0;
    for (f, fr) in s["features"].as_object().unwrap() {
        for (path, by_v) in fr["paths"].as_object().unwrap() {
            for (v, n) in by_v.as_object().unwrap() {
                assert_eq!(
                    n.as_f64().unwrap(),
                    get(format!(r#"accord_requests_total{{feature="{f}",path="{path}",verdict="{v}"}}"#)),
                    "{ctx}: {f} {path} {v}"
                );
            }
        }
        for (layer, n) in fr["records"].as_object().unwrap() {
            total_records += n.as_f64().unwrap();
            assert_eq!(
                n.as_f64().unwrap(),
                get(format!(r#"accord_records_total{{feature="{f}",layer="{layer}"}}"#)),
                "{ctx}: records {f} {layer}"
            );
        }
        for (layer, n) in fr["late"].as_object().unwrap() {
            assert_eq!(
                n.as_f64().unwrap(),
                get(format!(r#"accord_records_late_total{{feature="{f}",layer="{layer}"}}"#)),
                "{ctx}: late {f} {layer}"
            );
        }
        for (layer, n) in fr["missing_layers"].as_object().unwrap() {
            assert_eq!(
                n.as_f64().unwrap(),
                get(format!(r#"accord_missing_layers_total{{feature="{f}",layer="{layer}"}}"#)),
                "{ctx}: missing {f} {layer}"
            );
        }
        for (key, metric) in [
            ("clock_skewed", "accord_records_clock_skewed_total"),
            ("stale_revisions", "accord_stale_revision_records_total"),
        ] {
            for (layer, n) in fr[key].as_object().unwrap() {
                assert_eq!(
                    n.as_f64().unwrap(),
                    get(format!(r#"{metric}{{feature="{f}",layer="{layer}"}}"#)),
                    "{ctx}: {key} {f} {layer}"
                );
            }
        }
        for (layer, by_p) in fr["layer_decisions"].as_object().unwrap() {
            for (p, n) in by_p.as_object().unwrap() {
                assert_eq!(
                    n.as_f64().unwrap(),
                    get(format!(r#"accord_layer_decisions_total{{feature="{f}",layer="{layer}",path="{p}"}}"#)),
                    "{ctx}: decisions"
                );
            }
        }
        let mut divs = 0.0;
        for (kind, pairs) in fr["divergences"].as_object().unwrap() {
            for (pair, n) in pairs.as_object().unwrap() {
                let (u, d) = pair.split_once('/').unwrap();
                divs += n.as_f64().unwrap();
                assert_eq!(
                    n.as_f64().unwrap(),
                    get(format!(
                        r#"accord_divergences_total{{downstream="{d}",feature="{f}",kind="{kind}",upstream="{u}"}}"#
                    )),
                    "{ctx}: {kind} {pair}"
                );
            }
        }
        let prom_divs: f64 = prom
            .iter()
            .filter(|(k, _)| k.starts_with("accord_divergences_total{") && k.contains(&format!(r#"feature="{f}""#)))
            .map(|(_, v)| v)
            .sum();
        assert_eq!(divs, prom_divs, "{ctx}: divergences of {f}");
    }
    assert_eq!(s["records"].as_f64().unwrap(), total_records, "{ctx}: total records");
    assert_eq!(
        s["otlp_items_ignored"].as_f64().unwrap(),
        get("accord_otlp_items_ignored_total".to_string()),
        "{ctx}: ignored OTLP items"
    );
}

/// The shipped catalog (`accord.toml`) with other windows: tests keep the
/// example's features and change only timing.
pub fn catalog_with(window: &str, allowed_lateness: &str, search_window: &str) -> String {
    let text = include_str!("../../accord.toml");
    // Some tests put event times minutes ahead of the wall clock on purpose
    // (so no watermark moves by idleness): within the bad-clock limit.
    let out = text
        .replace("window = \"30s\"", &format!("window = \"{window}\""))
        .replace("allowed_lateness = \"5s\"", &format!("allowed_lateness = \"{allowed_lateness}\""))
        .replace("max_clock_skew = \"1m\"", "max_clock_skew = \"1h\"")
        .replace("window = \"10s\"", &format!("window = \"{search_window}\""));
    assert_ne!(out, text, "accord.toml changed shape; update catalog_with");
    out
}

/// A free loopback port.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// `GET path` over HTTP/1.0 (no chunking to undo): `(status, body)`.
pub fn http_get(port: u16, path: &str) -> Option<(u16, String)> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(std::time::Duration::from_secs(5))).ok()?;
    s.write_all(format!("GET {path} HTTP/1.0\r\n\r\n").as_bytes()).ok()?;
    let mut buf = String::new();
    s.read_to_string(&mut buf).ok()?;
    let code = buf.get(9..12)?.parse().ok()?;
    Some((code, buf.split_once("\r\n\r\n").map(|x| x.1.to_string()).unwrap_or_default()))
}

/// The mock cluster cannot create topics through the admin API, so tests
/// create the internal topics accord would create for `group`.
pub fn mock_internal_topics(
    cluster: &rdkafka::mocking::MockCluster<'_, rdkafka::producer::DefaultProducerContext>,
    group: &str,
) {
    for t in accord::source::kafka::internal_topic_names(group) {
        let _ = cluster.create_topic(&t, 1, 1);
    }
}

/// For a failed exactness check: the requests the verdicts topic holds
/// more or less than once, or with a layer missing that replay never
/// misses, each with where its records sit (`partition`, offsets) and what
/// was said about it, so the failure shows which handover went wrong.
pub fn explain_verdicts(
    brokers: &str,
    verdicts_topic: &str,
    produced: &[(i32, i64, Vec<u8>)],
    replay_missing: &[&str],
) -> String {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    use rdkafka::message::Message;
    use std::time::{Duration, Instant};
    let c: BaseConsumer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", format!("explain-{}", std::process::id()))
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    let mut tpl = rdkafka::TopicPartitionList::new();
    tpl.add_partition_offset(verdicts_topic, 0, rdkafka::Offset::Beginning).unwrap();
    c.assign(&tpl).unwrap();
    let mut said: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let (t, mut quiet) = (Instant::now(), Instant::now());
    while t.elapsed() < Duration::from_secs(30) && quiet.elapsed() < Duration::from_secs(3) {
        if let Some(Ok(m)) = c.poll(Duration::from_millis(200)) {
            let v: serde_json::Value = serde_json::from_slice(m.payload().unwrap_or(&[])).unwrap_or_default();
            let id = v["request_id"].as_str().unwrap_or("?").to_string();
            said.entry(id).or_default().push(format!(
                "@{} {} {} missing={}",
                m.offset(),
                v["verdict"],
                v["path"],
                v["missing"]
            ));
            quiet = Instant::now();
        }
    }
    let mut records: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (p, o, b) in produced {
        let v: serde_json::Value = serde_json::from_slice(b).unwrap_or_default();
        let id = v["request_id"].as_str().unwrap_or("?").to_string();
        records.entry(id).or_default().push(format!("p{p}@{o} {}", v["layer"].as_str().unwrap_or("?")));
    }
    let odd: Vec<&String> = records
        .keys()
        .filter(|id| {
            let lines = said.get(*id).map_or(&[][..], |v| v.as_slice());
            lines.len() != 1
                || lines.iter().any(|l| {
                    let missing = l.split("missing=").nth(1).unwrap_or("");
                    ["frontend", "api", "worker", "analytics"]
                        .iter()
                        .any(|x| missing.contains(x) && !replay_missing.contains(x))
                })
        })
        .collect();
    let mut out = format!("{} requests judged other than once or with an unexpected missing layer", odd.len());
    for id in odd.iter().take(12) {
        out.push_str(&format!(
            "\n  {id}: records [{}], verdicts [{}]",
            records[*id].join(", "),
            said.get(*id).map(|v| v.join("; ")).unwrap_or_default()
        ));
    }
    out
}
