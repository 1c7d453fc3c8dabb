//! Shared by the criterion benches and `examples/throughput/`: the
//! catalog, the generated stream and the parse-only baseline, so every
//! figure is measured on the same records.
#![allow(dead_code)]

use std::borrow::Cow;
use std::path::Path;
use std::sync::Arc;

use accord::catalog::Catalog;
use accord::decode::Val;
use accord::simulate::{Generator, Scenario, SimRecord, Timing};
use serde::Deserialize;

/// The example catalog (`accord.toml` at the root of the repository, the
/// one the README and the docs start from), with `max_open_joins` set to
/// what a measurement needs: every figure is taken on the catalog users
/// get, not on a copy that drifts from it.
pub fn catalog_text(max_open_joins: usize) -> String {
    with_max_open_joins(include_str!("../../accord.toml"), max_open_joins)
}

/// `text` with `[monitor] max_open_joins` set to `n` (the line replaced,
/// or added at the end of `[monitor]`). Without its own
/// `max_closed_keys`, the catalog remembers as many closed keys.
pub fn with_max_open_joins(text: &str, n: usize) -> String {
    let mut out = String::with_capacity(text.len() + 32);
    let (mut section, mut done) = (String::new(), false);
    for line in text.lines() {
        let t = line.trim_start();
        if t.starts_with('[') {
            if section == "[monitor]" && !done {
                out.push_str(&format!("max_open_joins = {n}\n"));
                done = true;
            }
            section = t.split('#').next().unwrap_or("").trim().to_string();
        }
        if section == "[monitor]" && t.starts_with("max_open_joins") && t[14..].trim_start().starts_with('=') {
            out.push_str(&format!("max_open_joins = {n}\n"));
            done = true;
            continue;
        }
        out.push_str(line);
        out.push('\n');
    }
    if !done {
        if section != "[monitor]" {
            out.push_str("\n[monitor]\n");
        }
        out.push_str(&format!("max_open_joins = {n}\n"));
    }
    out
}

/// The generator's timing, from the catalog (`checkout_v2` uses the
/// default window).
pub fn timing() -> Timing {
    let c = catalog(1);
    Timing { window_ms: c.window_ms, allowed_lateness_ms: c.allowed_lateness_ms }
}

pub fn catalog(max_open_joins: usize) -> Arc<Catalog> {
    Arc::new(Catalog::parse(Path::new("accord.toml"), &catalog_text(max_open_joins)).expect("the example catalog"))
}

/// Event time of the first record (2030-01-01): fixed, so runs are
/// reproducible, and ahead of the wall clock, so the live source never
/// advances an idle partition's watermark past the records (which would
/// turn them into cheaper late records).
pub const BASE_MS: i64 = 1_893_456_000_000;

/// Records per second of event time in the generated stream: a firehose
/// of ~5,300 requests/s, so with a 30 s window a few thousand joins are
/// open at any time (the analytics-missing ones wait for the window).
pub const RATE: f64 = 20_000.0;

/// `n` records of the `mixed` scenario (emit order, ~300 bytes each).
pub fn generate(n: usize, seed: u64) -> Vec<SimRecord> {
    let timing = timing();
    // A little longer than needed, then cut at `n`.
    let duration_ms = ((n as f64 / RATE) * 1000.0 * 1.05) as i64 + 60_000;
    Generator::new(Scenario::Mixed, timing, RATE, duration_ms, BASE_MS, seed).take(n).collect()
}

/// The same records as one JSON-lines buffer (what `accord replay` reads).
pub fn lines(records: &[SimRecord]) -> Vec<u8> {
    let mut buf = Vec::with_capacity(records.iter().map(|r| r.json.len() + 1).sum());
    for r in records {
        buf.extend_from_slice(r.json.as_bytes());
        buf.push(b'\n');
    }
    buf
}

/// The parse-only baseline: a typed, borrowed serde decode of every
/// field of the schema, and nothing else (no validation, no timestamp
/// parsing, no lookups). Polymorphic fields use accord's own borrowed
/// `Val`, strings borrow from the input unless escaped.
#[derive(Deserialize)]
pub struct Baseline<'a> {
    #[serde(borrow)]
    pub request_id: Cow<'a, str>,
    #[serde(borrow)]
    pub layer: Cow<'a, str>,
    #[serde(borrow)]
    pub feature: Cow<'a, str>,
    #[serde(borrow, default)]
    pub ts: Option<Val<'a>>,
    #[serde(borrow, default)]
    pub flag_state: Option<Val<'a>>,
    #[serde(borrow, default)]
    pub api_capability: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub selected_flow: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub job_payload_version: Option<Val<'a>>,
    #[serde(borrow, default)]
    pub flags_revision: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub service: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub instance: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub build: Option<Cow<'a, str>>,
}

/// Parses one record into the baseline struct; returns something that
/// depends on every field so the work cannot be optimised away.
#[inline]
pub fn parse_only(bytes: &[u8]) -> usize {
    match serde_json::from_slice::<Baseline<'_>>(bytes) {
        Ok(b) => {
            b.request_id.len()
                + b.layer.len()
                + b.feature.len()
                + usize::from(b.ts.is_some())
                + usize::from(b.flag_state.is_some())
                + b.api_capability.map_or(0, |s| s.len())
                + b.selected_flow.map_or(0, |s| s.len())
                + usize::from(b.job_payload_version.is_some())
                + b.flags_revision.map_or(0, |s| s.len())
                + b.service.map_or(0, |s| s.len())
                + b.instance.map_or(0, |s| s.len())
                + b.build.map_or(0, |s| s.len())
        }
        Err(_) => 0,
    }
}
