//! The exit review computed from an [`ExitAgg`], the window's closed
//! requests and the catalog entry: the figures, the status and one
//! sentence per blocker.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::agg::{natural_cmp, ExitAgg, LayerAgg, RevAgg, UNKNOWN};
use super::record::RequestCounts;
use crate::catalog::{FeatureSpec, LayerId};
use crate::decode::format_rfc3339_ms;
use crate::judge::DivergenceKind;

/// Requests a window needs before a flag can be called ready.
pub const DEFAULT_MIN_SAMPLES: u64 = 200;
/// Old-path takers listed per layer; the rest are summed.
pub const TOP_TAKERS: usize = 20;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Ready,
    NotReady,
    InsufficientData,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Ready => "ready",
            Status::NotReady => "not_ready",
            Status::InsufficientData => "insufficient_data",
        }
    }
}

/// What the evidence covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReviewWindow {
    /// The live view's last `window_ms`.
    Last { window_ms: i64 },
    /// A whole archive: the window is the span of its event times.
    Archive,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReviewParams {
    pub window: ReviewWindow,
    /// Wall clock, epoch milliseconds: only for the days left.
    pub now_ms: i64,
    pub min_samples: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExitReview {
    pub feature: String,
    pub owner: String,
    pub class: String,
    /// Planned removal date.
    pub expires: Option<String>,
    /// Days from today (UTC) to the planned removal date; negative once past.
    pub days_left: Option<i64>,
    pub window_seconds: i64,
    /// Event times of the earliest and the latest record of the evidence.
    pub from: Option<String>,
    pub to: Option<String>,
    /// Closed requests in the window.
    pub requests: u64,
    pub min_samples: u64,
    pub status: Status,
    /// What to do next, most actionable first.
    pub blockers: Vec<String>,
    pub layers: Vec<LayerReview>,
    /// Requests with at least one divergence of each kind (kinds seen only).
    pub divergent_requests: BTreeMap<String, u64>,
    pub incomplete_requests: u64,
    /// In order of first seen.
    pub revisions: Vec<RevisionReview>,
    pub current_revision: Option<String>,
    /// How far to trust the figures, and what they cannot tell.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LayerReview {
    pub layer: String,
    /// Valid records, late ones included.
    pub records: u64,
    pub new_ratio: Option<f64>,
    pub old_ratio: Option<f64>,
    pub unknown_ratio: Option<f64>,
    /// The busiest old-path `(service, build)` pairs, at most 20.
    pub old_path_takers: Vec<Taker>,
    /// The old-path records of every other pair, summed.
    pub old_path_other: Option<OtherTakers>,
    pub stale_share: Option<f64>,
    /// `[lowest, highest]` possible stale share, present only when the
    /// evidence cannot tell it exactly (`stale_share` is then the highest).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stale_share_range: Option<(f64, f64)>,
    pub adoption_lag_seconds: Option<f64>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Taker {
    pub service: String,
    pub build: String,
    pub records: u64,
    pub last_seen: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OtherTakers {
    /// `(service, build)` pairs summed here (a lower bound when `more` is set).
    pub takers: u64,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub more: bool,
    pub records: u64,
    pub last_seen: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RevisionReview {
    pub revision: String,
    pub first_seen: String,
    pub last_seen: String,
    /// Records per layer (layers with records only).
    pub records: BTreeMap<String, u64>,
}

/// A layer's stale share before rounding into sentences.
struct Stale {
    share: Option<f64>,
    range: Option<(f64, f64)>,
    lag_ms: Option<i64>,
}

fn ratio(n: u64, d: u64) -> Option<f64> {
    (d > 0).then(|| n as f64 / d as f64)
}

/// The layers to show: the feature's expected and optional ones and every
/// layer with evidence, in pipeline order; layers the catalog does not
/// name (another instance's catalog) last, by name.
fn layer_names<'a>(agg: &'a ExitAgg, spec: &FeatureSpec, layers: &'a [String]) -> Vec<&'a str> {
    let mut out: Vec<&str> = layers
        .iter()
        .enumerate()
        .filter(|(i, n)| {
            u8::try_from(*i).is_ok_and(|i| spec.awaited().contains(LayerId::new(i))) || agg.layers().contains_key(*n)
        })
        .map(|(_, n)| n.as_str())
        .collect();
    out.extend(agg.layers().keys().map(String::as_str).filter(|n| !layers.iter().any(|l| l == n)));
    out
}

/// The revision first seen last; ties go to the one that sorts last in
/// natural order (`r10` after `r9`).
pub fn current_revision(agg: &ExitAgg) -> Option<&RevAgg> {
    agg.revisions()
        .iter()
        .filter(|r| r.span().records > 0)
        .max_by(|a, b| a.span().first_ms.cmp(&b.span().first_ms).then_with(|| natural_cmp(&a.name, &b.name)))
}

fn stale(agg: &ExitAgg, layer: &str, l: &LayerAgg, cur: &RevAgg) -> Stale {
    let t = cur.span().first_ms;
    let mine = cur.layers.get(layer);
    let current = mine.map_or(0, |rl| rl.span.records);
    let (mut other, mut unresolved) = (0u64, 0u64);
    for r in agg.revisions().iter().filter(|r| r.name != cur.name) {
        if let Some(rl) = r.layers.get(layer) {
            let (k, u) = rl.from_time(t, r.horizon);
            other = other.saturating_add(k);
            unresolved = unresolved.saturating_add(u);
        }
    }
    let (k, u) = l.dropped_revisions().from_time(t);
    other = other.saturating_add(k);
    unresolved = unresolved.saturating_add(u);
    let n = current.saturating_add(other);
    let lag_ms = mine.map(|rl| rl.span.first_ms.saturating_sub(t));
    if unresolved == 0 {
        return Stale { share: ratio(other, n), range: None, lag_ms };
    }
    // Unresolved records carry another revision: the share grows with how
    // many of them are at or after `t`.
    let high = ratio(other.saturating_add(unresolved), n.saturating_add(unresolved));
    let low = ratio(other, n).or(high);
    Stale { share: high, range: low.zip(high), lag_ms }
}

/// Groups digits by thousands: `1,204`.
pub(crate) fn count(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::with_capacity(s.len() + s.len() / 3);
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// `n thing` or `n things`.
pub(crate) fn plural(n: u64, one: &str, many: &str) -> String {
    format!("{} {}", count(n), if n == 1 { one } else { many })
}

/// A share as a percentage people read: `12%`, `12.5%`, `<0.1%`.
pub(crate) fn pct(x: f64) -> String {
    let p = x * 100.0;
    if p == 0.0 {
        "0%".into()
    } else if p < 0.1 {
        "<0.1%".into()
    } else {
        let s = format!("{p:.1}");
        format!("{}%", s.strip_suffix(".0").unwrap_or(&s))
    }
}

/// Seconds from milliseconds: `60 s`, `0.25 s`.
pub(crate) fn secs(ms: i64) -> String {
    let s = format!("{:.3}", ms as f64 / 1000.0);
    let s = s.trim_end_matches('0').trim_end_matches('.');
    format!("{s} s")
}

fn who(service: &str, build: &str) -> String {
    match (service == UNKNOWN, build == UNKNOWN) {
        (false, false) => format!("{service} build {build}"),
        (false, true) => format!("{service} (records without a build)"),
        (true, false) => format!("build {build} (records without a service)"),
        (true, true) => "records without a service or build".into(),
    }
}

fn divergence_sentence(kind: DivergenceKind, n: u64) -> String {
    let what = match kind {
        DivergenceKind::PathMismatch => "had layers take different paths",
        DivergenceKind::ExposureWithoutCapability => {
            "took the new path while the api advertised another capability than the one it needs"
        }
        DivergenceKind::PayloadVersionMismatch => "had layers carry different job payload versions",
        DivergenceKind::SnapshotSkew => "had layers evaluate different flag revisions",
    };
    format!("{} {what} ({})", plural(n, "request", "requests"), kind.as_str())
}

/// Computes the review of `spec` from its evidence and its closed requests
/// over the same window; `layers` are the catalog's layers in pipeline
/// order.
pub fn review(
    agg: &ExitAgg,
    requests: &RequestCounts,
    spec: &FeatureSpec,
    layers: &[String],
    p: &ReviewParams,
) -> ExitReview {
    let empty = LayerAgg::default();
    let cur = current_revision(agg);
    let (mut from, mut to) = (i64::MAX, i64::MIN);
    for l in agg.layers().values() {
        from = from.min(l.span.first_ms);
        to = to.max(l.span.last_ms);
    }
    let mut blockers = Vec::new();
    let mut stale_blockers = Vec::new();
    let mut notes = Vec::new();
    let mut any_old = false;
    let mut out_layers = Vec::new();
    for name in layer_names(agg, spec, layers) {
        let l = agg.layers().get(name).unwrap_or(&empty);
        let records = l.records();
        let old = l.paths[1];
        any_old |= old > 0;
        let mut takers: Vec<_> = l.takers().collect();
        takers.sort_by(|a, b| {
            b.2.records.cmp(&a.2.records).then(b.2.last_ms.cmp(&a.2.last_ms)).then(a.0.cmp(b.0)).then(a.1.cmp(b.1))
        });
        let rest = takers.split_off(takers.len().min(TOP_TAKERS));
        let spill = l.takers_spill();
        let other = (!rest.is_empty() || spill.records > 0).then(|| {
            let records = old.saturating_sub(takers.iter().map(|t| t.2.records).fold(0, u64::saturating_add));
            let last = rest.iter().map(|t| t.2.last_ms).fold(spill.last_ms, i64::max);
            OtherTakers {
                takers: rest.len() as u64,
                more: spill.records > 0,
                records,
                last_seen: format_rfc3339_ms(last),
            }
        });
        for (s, b, seen) in &takers {
            blockers.push(format!(
                "{name}: {} took the old path for {}, last at {}",
                who(s, b),
                plural(seen.records, "record", "records"),
                format_rfc3339_ms(seen.last_ms)
            ));
        }
        if let Some(o) = &other {
            blockers.push(format!(
                "{name}: {}{} other service builds took the old path for {}, last at {}",
                if o.more { "more than " } else { "" },
                count(o.takers),
                plural(o.records, "record", "records"),
                o.last_seen
            ));
        }
        if spill.records > 0 {
            notes.push(format!(
                "{name}: more than {} services and builds took the old path; the busiest are listed among the \
                 first {} by name",
                count(super::agg::MAX_TAKERS as u64),
                count(super::agg::MAX_TAKERS as u64)
            ));
        }
        if l.paths[2] > 0 {
            notes.push(format!(
                "{name}: {} named no path (no selected_flow, job_payload_version or flag_state): the review cannot \
                 tell which path they took",
                plural(l.paths[2], "record", "records")
            ));
        }
        let st = cur.map(|c| stale(agg, name, l, c));
        if let (Some(c), Some(st)) = (cur, &st) {
            let first = format_rfc3339_ms(c.span().first_ms);
            if st.share.is_some_and(|s| s > 0.0) {
                let share = match st.range {
                    Some((lo, hi)) => format!("between {} and {}", pct(lo), pct(hi)),
                    None => pct(st.share.unwrap_or(0.0)),
                };
                let adoption = match st.lag_ms {
                    Some(lag) => format!("it first evaluated {} {} later", c.name, secs(lag)),
                    None => format!("it never evaluated {}", c.name),
                };
                stale_blockers.push(format!(
                    "{name}: {share} of its records since revision {} was first seen at {first} carried another \
                     revision; {adoption}",
                    c.name
                ));
            }
            if let Some((lo, hi)) = st.range {
                notes.push(format!(
                    "{name}: the stale share is between {} and {}: some records of another revision fall in a second \
                     or period the evidence no longer resolves to the millisecond around {first}",
                    pct(lo),
                    pct(hi)
                ));
            }
        }
        out_layers.push(LayerReview {
            layer: name.to_string(),
            records,
            new_ratio: ratio(l.paths[0], records),
            old_ratio: ratio(old, records),
            unknown_ratio: ratio(l.paths[2], records),
            old_path_takers: takers
                .iter()
                .map(|(s, b, seen)| Taker {
                    service: s.to_string(),
                    build: b.to_string(),
                    records: seen.records,
                    last_seen: format_rfc3339_ms(seen.last_ms),
                })
                .collect(),
            old_path_other: other,
            stale_share: st.as_ref().and_then(|s| s.share),
            stale_share_range: st.as_ref().and_then(|s| s.range),
            adoption_lag_seconds: st.as_ref().and_then(|s| s.lag_ms).map(|ms| ms as f64 / 1000.0),
        });
    }
    let mut kinds: Vec<(DivergenceKind, u64)> =
        DivergenceKind::ALL.iter().map(|k| (*k, requests.by_kind[*k as usize])).filter(|(_, n)| *n > 0).collect();
    kinds.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    blockers.extend(kinds.iter().map(|(k, n)| divergence_sentence(*k, *n)));
    if requests.divergent > 0 && kinds.is_empty() {
        blockers.push(format!("{} diverged", plural(requests.divergent, "request", "requests")));
    }
    if requests.incomplete > 0 {
        blockers.push(format!(
            "{} incomplete: an expected layer never reported",
            plural(requests.incomplete, "request was", "requests were")
        ));
    }
    let problem = any_old || !blockers.is_empty();
    // A layer on a superseded snapshot is something to act on, but not by
    // itself a reason to keep the flag: the status is decided by paths,
    // divergences, incomplete requests and the sample alone. When nothing
    // else blocks, stale layers are notes (a window that holds a revision
    // change always shows some stale share while layers adopt it).
    let few = requests.requests < p.min_samples;
    if problem || few {
        blockers.extend(stale_blockers);
    } else {
        notes.splice(0..0, stale_blockers);
    }
    if few {
        blockers.push(match requests.requests {
            0 => format!("no request closed in the window; at least {} are needed", count(p.min_samples)),
            n => format!(
                "only {} closed in the window; at least {} are needed",
                plural(n, "request", "requests"),
                count(p.min_samples)
            ),
        });
    }
    if agg.revisions_dropped() {
        notes.push(format!(
            "more than {} flag revisions were seen: only the {} that sort last are kept apart, so the current \
             revision may be another one",
            super::agg::MAX_REVISIONS,
            super::agg::MAX_REVISIONS
        ));
    }
    if let Some(c) = cur {
        let cs = c.span();
        // "First seen last" within a window: an instance stuck on an old
        // snapshot that reappears after the window began makes its revision
        // look newest. Say so when another revision was busier, lasted as
        // long, and is numbered after it (`r42` after `r41`): with names
        // that are not numbered this says nothing either way.
        let rival = agg
            .revisions()
            .iter()
            .filter(|r| natural_cmp(&r.name, &c.name).is_gt())
            .map(|r| (r, r.span()))
            .filter(|(_, s)| s.records > cs.records && s.last_ms >= cs.last_ms)
            .max_by(|a, b| a.1.records.cmp(&b.1.records).then_with(|| natural_cmp(&a.0.name, &b.0.name)));
        if let Some((r, s)) = rival {
            notes.push(format!(
                "revision {} (first seen at {}) carried more records than the current revision {} ({} against {}) \
                 and was seen until the end: {} may come from instances stuck on an older snapshot that reappeared \
                 after the window began; stale shares and adoption lags are measured against {}",
                r.name,
                format_rfc3339_ms(s.first_ms),
                c.name,
                count(s.records),
                count(cs.records),
                c.name,
                c.name
            ));
        }
    }
    let status = if problem {
        Status::NotReady
    } else if few {
        Status::InsufficientData
    } else {
        Status::Ready
    };
    let today = p.now_ms.div_euclid(86_400_000);
    let mut revisions: Vec<&RevAgg> = agg.revisions().iter().filter(|r| r.span().records > 0).collect();
    revisions.sort_by(|a, b| a.span().first_ms.cmp(&b.span().first_ms).then_with(|| natural_cmp(&a.name, &b.name)));
    let has_evidence = from <= to;
    ExitReview {
        feature: spec.key.clone(),
        owner: spec.owner.clone(),
        class: spec.class.as_str().to_string(),
        expires: spec.expires_text.clone(),
        days_left: spec.expires.map(|e| e.div_euclid(86_400) - today),
        window_seconds: match p.window {
            ReviewWindow::Last { window_ms } => window_ms.div_euclid(1000),
            ReviewWindow::Archive if has_evidence => {
                let span = i128::from(to) - i128::from(from);
                i64::try_from((span + 999) / 1000).unwrap_or(i64::MAX)
            }
            ReviewWindow::Archive => 0,
        },
        from: has_evidence.then(|| format_rfc3339_ms(from)),
        to: has_evidence.then(|| format_rfc3339_ms(to)),
        requests: requests.requests,
        min_samples: p.min_samples,
        status,
        blockers,
        layers: out_layers,
        divergent_requests: kinds.iter().map(|(k, n)| (k.as_str().to_string(), *n)).collect(),
        incomplete_requests: requests.incomplete,
        revisions: revisions
            .iter()
            .map(|r| {
                let span = r.span();
                RevisionReview {
                    revision: r.name.clone(),
                    first_seen: format_rfc3339_ms(span.first_ms),
                    last_seen: format_rfc3339_ms(span.last_ms),
                    records: r.layers.iter().map(|(l, rl)| (l.clone(), rl.span.records)).collect(),
                }
            })
            .collect(),
        current_revision: cur.map(|c| c.name.clone()),
        notes,
    }
}

#[cfg(test)]
mod tests;
