//! The rollout gate: `proceed`, `hold` or `inconclusive` for one feature
//! over a window, with the figures and the reasons behind it (see
//! docs/gate.md). [`evaluate`] is pure: window statistics in, the answer
//! out.
//!
//! Over the closed joins of the feature whose close fell in the window:
//! - `exposed_requests`: joins on the `new` or `mixed` path, any verdict;
//! - `exposed_agreement`: `agree` / exposed joins whose verdict is not
//!   `incomplete`; `null` when there is none;
//! - `incomplete_ratio`: `incomplete` joins / all closed joins (any path);
//!   `null` when none closed;
//! - `inconclusive` when `exposed_requests < min_samples` (or every exposed
//!   join was incomplete and incompleteness alone does not hold); else
//!   `hold` when `exposed_agreement < min_agreement` or `incomplete_ratio >
//!   max_incomplete`, or, with `max_drop_vs_old`, when exposed agreement is
//!   more than that below the agreement of the window's old-path joins (the
//!   noise floor: disagreement that exists without the rollout); else
//!   `proceed`. Equal to a threshold passes; the noise-floor comparison is
//!   exact (counts and the decimal fraction as given, no float rounding).
//! - The webhook answers 200 for `proceed`, 412 for `hold`, and for
//!   `inconclusive` what `inconclusive=hold|proceed` says: Flagger has no
//!   inconclusive state, and its hook types want opposite answers (a
//!   `confirm-traffic-increase` hook pauses on a non-2xx, a `rollout` hook
//!   counts every non-2xx toward rollback).
//!
//! Parameters are validated strictly ([`ParamError`]): a typo must not
//! silently loosen a gate.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Serialize;

use crate::catalog::{FeatureSpec, LayerId};
use crate::decode::format_rfc3339_ms;
use crate::judge::{DivergenceKind, RequestPath, Verdict};
use crate::live::{Freshness, WindowStats, DEFAULT_WINDOW_MS, MAX_WINDOW_MS};
use crate::text::{human_window, pct_pair, plural};

/// Gate thresholds and window.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct GateParams {
    #[serde(skip)]
    pub window_ms: i64,
    pub min_samples: u64,
    pub min_agreement: f64,
    pub max_incomplete: f64,
    /// Hold when exposed agreement is more than this below the old path's.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_drop_vs_old: Option<Fraction>,
    /// What the webhook answers while the gate is inconclusive.
    pub inconclusive: Inconclusive,
}

impl Default for GateParams {
    fn default() -> Self {
        GateParams {
            window_ms: DEFAULT_WINDOW_MS,
            min_samples: 200,
            min_agreement: 0.999,
            max_incomplete: 0.01,
            max_drop_vs_old: None,
            inconclusive: Inconclusive::Hold,
        }
    }
}

/// What the webhook answers while the gate is `inconclusive`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Inconclusive {
    /// 412, as for `hold`: a Flagger `confirm-traffic-increase` hook pauses.
    #[default]
    Hold,
    /// 200, as for `proceed`: a Flagger `rollout` hook must not count
    /// missing data toward rollback.
    Proceed,
}

impl Inconclusive {
    pub fn as_str(self) -> &'static str {
        match self {
            Inconclusive::Hold => "hold",
            Inconclusive::Proceed => "proceed",
        }
    }
}

/// A fraction in `[0, 1]` given as a decimal, kept exactly: `0.01` is
/// 1/100, not the nearest binary float, so "exactly F below" compares
/// equal however F is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fraction {
    num: u64,
    /// A power of ten, at most 10^[`Fraction::MAX_DECIMALS`].
    den: u64,
}

impl Fraction {
    /// Decimals a fraction may have (beyond trailing zeros).
    pub const MAX_DECIMALS: usize = 9;

    /// `digits[.digits]` (or `.digits`) between 0 and 1.
    pub fn parse(s: &str) -> Option<Fraction> {
        let s = s.trim();
        let (int, frac) = s.split_once('.').unwrap_or((s, ""));
        let digits = |t: &str| t.bytes().all(|b| b.is_ascii_digit());
        if (int.is_empty() && frac.is_empty()) || !digits(int) || !digits(frac) {
            return None;
        }
        let frac = frac.trim_end_matches('0');
        if frac.len() > Self::MAX_DECIMALS {
            return None;
        }
        let den = 10u64.pow(frac.len() as u32);
        let int: u64 = if int.is_empty() { 0 } else { int.parse().ok()? };
        let frac: u64 = if frac.is_empty() { 0 } else { frac.parse().ok()? };
        let num = int.checked_mul(den)?.checked_add(frac)?;
        (num <= den).then_some(Fraction { num, den })
    }

    pub fn as_f64(self) -> f64 {
        self.num as f64 / self.den as f64
    }
}

impl Serialize for Fraction {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_f64(self.as_f64())
    }
}

/// Whether `old_agree / old_n − agree / n > f`, exactly (`n`, `old_n` > 0).
fn drops_more_than(agree: u64, n: u64, old_agree: u64, old_n: u64, f: Fraction) -> bool {
    let exact = || -> Option<bool> {
        let (a, n, b, m) = (i128::from(agree), i128::from(n), i128::from(old_agree), i128::from(old_n));
        let lhs = b.checked_mul(n)?.checked_sub(a.checked_mul(m)?)?.checked_mul(i128::from(f.den))?;
        let rhs = i128::from(f.num).checked_mul(m)?.checked_mul(n)?;
        Some(lhs > rhs)
    };
    // Beyond i128 (counts near 2^50 in one window) a float decides.
    exact().unwrap_or_else(|| old_agree as f64 / old_n as f64 - agree as f64 / n as f64 > f.as_f64())
}

/// What the webhook answers, and which rule gave it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct WebhookAnswer {
    /// 200 or 412.
    pub status: u16,
    /// The `inconclusive` parameter in force.
    pub inconclusive: Inconclusive,
    /// Present when the gate is inconclusive: which answer was applied.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub applied: Option<String>,
}

impl WebhookAnswer {
    pub fn of(decision: GateDecision, inconclusive: Inconclusive) -> Self {
        let (status, applied) = match (decision, inconclusive) {
            (GateDecision::Proceed, _) => (200, None),
            (GateDecision::Hold, _) => (412, None),
            (GateDecision::Inconclusive, Inconclusive::Hold) => (
                412,
                Some(
                    "inconclusive answered as hold (inconclusive=hold): 412, the rollout waits for enough data".into(),
                ),
            ),
            (GateDecision::Inconclusive, Inconclusive::Proceed) => (
                200,
                Some(
                    "inconclusive answered as proceed (inconclusive=proceed): 200, missing data does not count \
                     toward rollback"
                        .into(),
                ),
            ),
        };
        WebhookAnswer { status, inconclusive, applied }
    }
}

/// The gate's decision (not to be confused with a decision *record*).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum GateDecision {
    Proceed,
    Hold,
    Inconclusive,
}

impl GateDecision {
    pub fn as_str(self) -> &'static str {
        match self {
            GateDecision::Proceed => "proceed",
            GateDecision::Hold => "hold",
            GateDecision::Inconclusive => "inconclusive",
        }
    }
}

/// The gate's answer: the contract's fields first, then context.
#[derive(Debug, Clone, Serialize)]
pub struct GateView {
    pub feature: String,
    pub decision: GateDecision,
    pub exposed_agreement: Option<f64>,
    pub exposed_requests: u64,
    pub incomplete_ratio: Option<f64>,
    /// Requests (any path) with at least one divergence of each kind.
    pub divergences: BTreeMap<&'static str, u64>,
    pub reasons: Vec<String>,
    pub window_seconds: u64,
    /// All closed requests of the feature in the window.
    pub requests: u64,
    /// Exposed requests that count towards exposed agreement (not incomplete).
    pub exposed_judged: u64,
    /// The noise floor: of the old-path requests in the window that were
    /// not incomplete (`old_path_judged`), the share that agreed.
    pub old_path_agreement: Option<f64>,
    pub old_path_judged: u64,
    /// What `…/webhook` answers for this decision.
    pub webhook: WebhookAnswer,
    pub thresholds: GateParams,
    pub evaluated_at: String,
    /// How complete and fresh the consumer group's view is (`accord run`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub view: Option<Freshness>,
}

/// Requests with at least one divergence of each kind, by kind name.
pub fn divergence_counts(w: &WindowStats) -> BTreeMap<&'static str, u64> {
    DivergenceKind::ALL.iter().map(|k| (k.as_str(), w.kinds[*k as usize])).collect()
}

/// Decides the gate of one feature over a window.
pub fn evaluate(
    name: &str,
    spec: &FeatureSpec,
    w: &WindowStats,
    p: &GateParams,
    layer: &dyn Fn(LayerId) -> String,
    now_ms: i64,
) -> GateView {
    let win = human_window(p.window_ms);
    let total = w.total();
    let exposed = w.exposed();
    let judged = w.exposed_judged();
    let agreement = w.exposed_agreement();
    let incomplete = w.incomplete_ratio();
    // Divergent exposed requests by leading explanation: the counts add up.
    let mut exposed_causes: Vec<(u64, String)> =
        w.causes.iter().filter(|c| c.exposed > 0).map(|c| (c.exposed, c.cause.explain(layer, spec))).collect();
    exposed_causes.sort_by_key(|p| std::cmp::Reverse(p.0));
    let degraded = w.exposed_verdicts(Verdict::Degraded);
    let where_ = |n: u64, what: &str| format!("{} where {what}", plural(n, "request", "requests"));

    let old_agreement = w.old_path_agreement();
    let mut reasons = Vec::new();
    // Context that holds nothing, after the decision's reasons.
    let mut notes = Vec::new();
    let agreement_low = agreement.is_some_and(|a| a < p.min_agreement);
    let incomplete_high = incomplete.is_some_and(|r| r > p.max_incomplete);
    let decision = if exposed < p.min_samples {
        if total == 0 {
            reasons.push(format!(
                "no request of {name} closed in the last {win}: no traffic, or no layer logs decision records for it"
            ));
        } else {
            reasons.push(format!(
                "only {} (new or mixed path) closed in the last {win}; the gate needs at least {} (min_samples)",
                plural(exposed, "exposed request", "exposed requests"),
                p.min_samples
            ));
            let old = w.path(RequestPath::Old) + w.path(RequestPath::Unknown);
            if old > 0 {
                reasons.push(format!(
                    "{} took no new path; exposed agreement ignores them",
                    plural(old, "request", "requests")
                ));
            }
        }
        if let (true, Some(a)) = (agreement_low, agreement) {
            let (a, t) = pct_pair(a, p.min_agreement);
            let mut r = format!("early signal: exposed agreement so far {a} < {t}");
            if let Some((n, what)) = exposed_causes.first() {
                r.push_str(&format!(": {}", where_(*n, what)));
            }
            reasons.push(r);
        }
        GateDecision::Inconclusive
    } else {
        if let (true, Some(a)) = (agreement_low, agreement) {
            let (a_s, t_s) = pct_pair(a, p.min_agreement);
            let head = format!("exposed agreement {a_s} < {t_s} over {win}");
            match exposed_causes.first() {
                Some((n, what)) => reasons.push(format!("{head}: {}", where_(*n, what))),
                None if degraded > 0 => reasons.push(format!(
                    "{head}: {} degraded (a layer saw the flag on and fell back to the old path)",
                    plural(degraded, "exposed request", "exposed requests")
                )),
                None => reasons.push(head),
            }
            for (n, what) in exposed_causes.iter().skip(1).take(3) {
                reasons.push(format!("also {}", where_(*n, what)));
            }
            if degraded > 0 && !exposed_causes.is_empty() {
                reasons.push(format!(
                    "also {} degraded (a layer saw the flag on and fell back to the old path)",
                    plural(degraded, "exposed request", "exposed requests")
                ));
            }
            reasons.push(format!("{} of {judged} judged exposed requests did not agree", judged - w.exposed_agree()));
        }
        if let (true, Some(r)) = (incomplete_high, incomplete) {
            let (r_s, m_s) = pct_pair(r, p.max_incomplete);
            let mut missing: Vec<(u64, String)> = w
                .layers
                .iter()
                .enumerate()
                .filter(|(_, l)| l.missing > 0)
                .map(|(i, l)| (l.missing, layer(LayerId::new(i as u8))))
                .collect();
            missing.sort_by_key(|m| std::cmp::Reverse(m.0));
            let mut r = format!(
                "{r_s} of requests incomplete > {m_s} allowed over {win} ({} of {total})",
                w.verdict(Verdict::Incomplete)
            );
            if !missing.is_empty() {
                let list: Vec<String> = missing
                    .iter()
                    .map(|(n, l)| format!("{l} never reported for {}", plural(*n, "request", "requests")))
                    .collect();
                r.push_str(&format!(": {}", list.join(", ")));
            }
            reasons.push(r);
        }
        if let (Some(f), Some(a)) = (p.max_drop_vs_old, agreement) {
            match old_agreement {
                Some(o) if drops_more_than(w.exposed_agree(), judged, w.old_agree(), w.old_judged(), f) => {
                    let (a_s, o_s) = pct_pair(a, o);
                    let (d_s, f_s) = points_pair(o - a, f.as_f64());
                    reasons.push(format!(
                        "exposed agreement {a_s} is {d_s} below the old path's agreement {o_s} over {win}, more \
                         than the {f_s} max_drop_vs_old allows: the rollout adds disagreement beyond the noise floor \
                         ({} of the old path)",
                        plural(w.old_judged(), "judged request", "judged requests")
                    ));
                }
                Some(o) => {
                    let (a_s, o_s) = pct_pair(a, o);
                    let (_, f_s) = points_pair(o - a, f.as_f64());
                    notes.push(format!(
                        "exposed agreement {a_s} is within {f_s} of the old path's agreement {o_s} \
                         (max_drop_vs_old, {} of the old path)",
                        plural(w.old_judged(), "judged request", "judged requests")
                    ));
                }
                None => notes.push(format!(
                    "no old-path request was judged in the last {win}: max_drop_vs_old has no noise floor to compare \
                     with"
                )),
            }
        }
        if !reasons.is_empty() {
            GateDecision::Hold
        } else if let Some(a) = agreement {
            let (a_s, t_s) = pct_pair(a, p.min_agreement);
            reasons.push(format!("exposed agreement {a_s} ≥ {t_s} over {win} ({judged} judged exposed requests)"));
            let r = incomplete.unwrap_or(0.0);
            let (r_s, m_s) = pct_pair(r, p.max_incomplete);
            reasons.push(format!("incomplete requests {r_s} ≤ {m_s}"));
            if let Some((n, what)) = exposed_causes.first() {
                reasons.push(format!("within tolerance: {}", where_(*n, what)));
            }
            GateDecision::Proceed
        } else {
            reasons.push(format!(
                "all {exposed} exposed requests in the last {win} were incomplete: no agreement can be measured"
            ));
            GateDecision::Inconclusive
        }
    };
    reasons.extend(notes);
    GateView {
        feature: name.to_string(),
        decision,
        exposed_agreement: agreement,
        exposed_requests: exposed,
        incomplete_ratio: incomplete,
        divergences: divergence_counts(w),
        reasons,
        window_seconds: (p.window_ms / 1000) as u64,
        requests: total,
        exposed_judged: judged,
        old_path_agreement: old_agreement,
        old_path_judged: w.old_judged(),
        webhook: WebhookAnswer::of(decision, p.inconclusive),
        thresholds: *p,
        evaluated_at: format_rfc3339_ms(now_ms),
        view: None,
    }
}

/// The gate over the consumer group's view: when some partition's share is
/// missing or stale, the figures cover part of the traffic, so the gate is
/// `inconclusive` whatever they say, with the reason first.
pub fn with_freshness(mut g: GateView, view: Option<Freshness>) -> GateView {
    if let Some(problem) = view.as_ref().and_then(Freshness::problem) {
        g.decision = GateDecision::Inconclusive;
        g.reasons.insert(0, problem);
        g.webhook = WebhookAnswer::of(g.decision, g.thresholds.inconclusive);
    }
    g.view = view;
    g
}

/// A difference of ratios and a limit in percentage points, with enough
/// decimals to tell them apart: `2 percentage points`, `1.99 percentage
/// points`.
fn points_pair(x: f64, t: f64) -> (String, String) {
    let words = |p: String| {
        let p = p.trim_end_matches('%').to_string();
        let s = if p == "1" { "" } else { "s" };
        format!("{p} percentage point{s}")
    };
    let (a, b) = pct_pair(x, t);
    (words(a), words(b))
}

// ------------------------------------------------------------ parameters --

/// A gate or window parameter that does not parse or is out of range.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ParamError {
    #[error("window {value:?} is not a duration ({reason}); use e.g. 30s, 5m or 1h")]
    WindowSyntax { value: String, reason: String },
    #[error("window must be at least 1s")]
    WindowZero,
    #[error("window {0:?} is longer than 1h, the longest window live statistics keep")]
    WindowTooLong(String),
    #[error("window {0:?} must be a whole number of seconds")]
    WindowFraction(String),
    #[error("min_samples must be a non-negative integer, got {0:?}")]
    MinSamples(String),
    #[error("{name} must be between 0 and 1 (a fraction, e.g. 0.999), got {value:?}")]
    RatioRange { name: &'static str, value: String },
    #[error("{name} must be a number between 0 and 1, got {value:?}")]
    RatioSyntax { name: &'static str, value: String },
    #[error(
        "max_drop_vs_old must be a decimal fraction from 0 to 1 with at most {max} decimals (e.g. 0.01), got {0:?}",
        max = Fraction::MAX_DECIMALS
    )]
    MaxDrop(String),
    #[error("inconclusive must be hold or proceed, got {0:?}")]
    Inconclusive(String),
}

/// A window: humantime, whole seconds, from 1s to 1h.
pub fn parse_window(s: &str) -> Result<i64, ParamError> {
    let d = humantime::parse_duration(s.trim())
        .map_err(|e| ParamError::WindowSyntax { value: s.to_string(), reason: e.to_string() })?;
    if d.is_zero() {
        return Err(ParamError::WindowZero);
    }
    if d > Duration::from_millis(MAX_WINDOW_MS as u64) {
        return Err(ParamError::WindowTooLong(s.to_string()));
    }
    if d.subsec_nanos() != 0 {
        return Err(ParamError::WindowFraction(s.to_string()));
    }
    Ok(d.as_millis() as i64)
}

fn parse_ratio(name: &'static str, s: &str) -> Result<f64, ParamError> {
    match s.trim().parse::<f64>() {
        Ok(x) if (0.0..=1.0).contains(&x) => Ok(x),
        Ok(_) => Err(ParamError::RatioRange { name, value: s.to_string() }),
        Err(_) => Err(ParamError::RatioSyntax { name, value: s.to_string() }),
    }
}

/// The gate's query parameters, by name.
pub const PARAMS: [&str; 6] =
    ["window", "min_samples", "min_agreement", "max_incomplete", "max_drop_vs_old", "inconclusive"];

/// Parses the gate's parameters (missing ones take defaults); `get` looks
/// one up by name.
pub fn parse_params<'a>(get: impl Fn(&str) -> Option<&'a str>) -> Result<GateParams, ParamError> {
    let mut p = GateParams::default();
    if let Some(w) = get("window") {
        p.window_ms = parse_window(w)?;
    }
    if let Some(n) = get("min_samples") {
        p.min_samples = n.trim().parse::<u64>().map_err(|_| ParamError::MinSamples(n.to_string()))?;
    }
    if let Some(a) = get("min_agreement") {
        p.min_agreement = parse_ratio("min_agreement", a)?;
    }
    if let Some(m) = get("max_incomplete") {
        p.max_incomplete = parse_ratio("max_incomplete", m)?;
    }
    if let Some(f) = get("max_drop_vs_old") {
        p.max_drop_vs_old = Some(Fraction::parse(f).ok_or_else(|| ParamError::MaxDrop(f.to_string()))?);
    }
    if let Some(i) = get("inconclusive") {
        p.inconclusive = match i {
            "hold" => Inconclusive::Hold,
            "proceed" => Inconclusive::Proceed,
            _ => return Err(ParamError::Inconclusive(i.to_string())),
        };
    }
    Ok(p)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::live::LayerStats;

    fn spec() -> FeatureSpec {
        let cat =
            crate::Catalog::parse(std::path::Path::new("c.toml"), include_str!("../tests/conformance/catalog.toml"))
                .unwrap();
        cat.features[0].clone()
    }

    fn stats(agree_new: u64, diverge_mixed: u64, incomplete_new: u64) -> WindowStats {
        let mut w = WindowStats::empty(DEFAULT_WINDOW_MS, 4);
        w.requests[RequestPath::New as usize][Verdict::Agree as usize] = agree_new;
        w.requests[RequestPath::Mixed as usize][Verdict::Diverge as usize] = diverge_mixed;
        w.requests[RequestPath::New as usize][Verdict::Incomplete as usize] = incomplete_new;
        w.layers[3] = LayerStats { missing: incomplete_new, ..LayerStats::default() };
        w
    }

    fn gate(w: &WindowStats, p: GateParams) -> GateView {
        let layer = |l: LayerId| ["frontend", "api", "worker", "analytics"][l.index()].to_string();
        evaluate("checkout_v2", &spec(), w, &p, &layer, 0)
    }

    #[test]
    fn thresholds_pass_when_equal() {
        let p = GateParams { min_samples: 1000, ..GateParams::default() };
        assert_eq!(gate(&stats(999, 1, 0), p).decision, GateDecision::Proceed);
        assert_eq!(gate(&stats(998, 1, 0), p).decision, GateDecision::Inconclusive);
        let p = GateParams { min_samples: 10, max_incomplete: 0.1, ..GateParams::default() };
        assert_eq!(gate(&stats(9, 0, 1), p).decision, GateDecision::Proceed);
        let g = gate(&stats(8, 0, 2), p);
        assert_eq!(g.decision, GateDecision::Hold);
        assert_eq!(
            g.reasons,
            ["20% of requests incomplete > 10% allowed over 5m (2 of 10): analytics never reported for 2 requests"]
        );
    }

    #[test]
    fn fractions_are_exact_decimals_from_0_to_1() {
        let f = |s: &str| Fraction::parse(s).map(|f| (f.num, f.den));
        assert_eq!(f("0.01"), Some((1, 100)));
        assert_eq!(f(" 0.0100 "), Some((1, 100)));
        assert_eq!(f(".5"), Some((5, 10)));
        assert_eq!(f("1"), Some((1, 1)));
        assert_eq!(f("1."), Some((1, 1)));
        assert_eq!(f("1.000"), Some((1, 1)));
        assert_eq!(f("0"), Some((0, 1)));
        assert_eq!(f("0.000000001"), Some((1, 1_000_000_000)));
        for bad in [
            "",
            ".",
            "1.01",
            "2",
            "-0.1",
            "+0.1",
            "1e-3",
            "NaN",
            "inf",
            "0.0000000001",
            "0,1",
            "0.1.2",
            "99999999999999999999999",
        ] {
            assert_eq!(f(bad), None, "{bad}");
        }
    }

    #[test]
    fn the_noise_floor_comparison_is_exact() {
        let f = |s: &str| Fraction::parse(s).unwrap();
        // 99/100 − 97/100 is 0.020000000000000018 in floats.
        assert!(!drops_more_than(97, 100, 99, 100, f("0.02")));
        assert!(drops_more_than(97, 100, 99, 100, f("0.019999999")));
        // 1/3 − 0 against 0.333333333 and 0.333333334.
        assert!(drops_more_than(0, 5, 1, 3, f("0.333333333")));
        assert!(!drops_more_than(0, 5, 1, 3, f("0.333333334")));
        // Exposed above the floor never drops.
        assert!(!drops_more_than(100, 100, 90, 100, f("0")));
        assert!(drops_more_than(89, 100, 90, 100, f("0")));
        // Counts too large for exact arithmetic fall back to floats.
        assert!(drops_more_than(u64::MAX / 2, u64::MAX, u64::MAX, u64::MAX, f("0.1")));
    }

    #[test]
    fn the_webhook_answers_inconclusive_as_told() {
        assert_eq!(WebhookAnswer::of(GateDecision::Proceed, Inconclusive::Hold).status, 200);
        assert_eq!(WebhookAnswer::of(GateDecision::Hold, Inconclusive::Proceed).status, 412);
        assert_eq!(WebhookAnswer::of(GateDecision::Inconclusive, Inconclusive::Hold).status, 412);
        let a = WebhookAnswer::of(GateDecision::Inconclusive, Inconclusive::Proceed);
        assert_eq!(a.status, 200);
        assert!(a.applied.unwrap().contains("missing data does not count toward rollback"));
        // A view missing a partition makes the gate inconclusive: the
        // webhook answer follows.
        let p = GateParams { min_samples: 1, inconclusive: Inconclusive::Proceed, ..GateParams::default() };
        let g = gate(&stats(10, 0, 0), GateParams { inconclusive: Inconclusive::Hold, ..p });
        assert_eq!(g.webhook.status, 200);
        let view = Freshness {
            updated_at: None,
            age_seconds: None,
            streams: Some(1),
            missing_streams: vec![0],
            stale_streams: vec![],
            stale_instances: vec![],
            instances: 0,
        };
        let g = with_freshness(
            gate(&stats(10, 0, 0), GateParams { inconclusive: Inconclusive::Hold, ..p }),
            Some(view.clone()),
        );
        assert_eq!((g.decision, g.webhook.status), (GateDecision::Inconclusive, 412));
        let g = with_freshness(gate(&stats(10, 0, 0), p), Some(view));
        assert_eq!((g.decision, g.webhook.status), (GateDecision::Inconclusive, 200));
    }

    #[test]
    fn parameters_parse_strictly_with_typed_errors() {
        let q = |pairs: &'static [(&'static str, &'static str)]| {
            parse_params(move |k| pairs.iter().find(|(n, _)| *n == k).map(|(_, v)| *v))
        };
        assert_eq!(q(&[]), Ok(GateParams::default()));
        let p = q(&[("window", "1m"), ("min_samples", "5"), ("min_agreement", "0"), ("max_incomplete", "1")]).unwrap();
        assert_eq!((p.window_ms, p.min_samples, p.min_agreement, p.max_incomplete), (60_000, 5, 0.0, 1.0));
        assert_eq!(q(&[("window", "0s")]), Err(ParamError::WindowZero));
        assert_eq!(q(&[("window", "61m")]), Err(ParamError::WindowTooLong("61m".into())));
        assert_eq!(q(&[("window", "1500ms")]), Err(ParamError::WindowFraction("1500ms".into())));
        assert!(matches!(q(&[("window", "abc")]), Err(ParamError::WindowSyntax { .. })));
        assert_eq!(q(&[("min_samples", "-1")]), Err(ParamError::MinSamples("-1".into())));
        assert_eq!(
            q(&[("min_agreement", "NaN")]),
            Err(ParamError::RatioRange { name: "min_agreement", value: "NaN".into() })
        );
        assert_eq!(
            q(&[("max_incomplete", "x")]).unwrap_err().to_string(),
            "max_incomplete must be a number between 0 and 1, got \"x\""
        );
    }
}
