//! `GET /`: the human status page, and `GET /status/content`: its content
//! as an HTML fragment. One self-contained document (`status_page.html`:
//! inline CSS and a small script, no external assets; charts are inline
//! SVG drawn here, readable without the script or the style sheet).
//!
//! The markup is produced here and nowhere else: the page is rendered on
//! the server, so it shows every feature without JavaScript (and in a
//! headless screenshot); the script refreshes it every 5 s by fetching the
//! same content as a fragment and swapping it in, keeping the divergent
//! requests a reader opened.

use std::fmt::Write;

use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use serde_json::Value;

use super::AppState;
use crate::decode::format_rfc3339_ms;
use crate::live::{LiveView, Point, DEFAULT_WINDOW_MS};
use crate::text::{dur, human_window, num, pct, pct1};
use crate::views::{feature_views, sample_views, FeatureView, LayerView, RecordView, SampleView};

/// Divergent requests shown per feature.
const PAGE_SAMPLES: usize = 5;

/// The charts: this many points of this many milliseconds (the last hour,
/// one point a minute).
pub(crate) const CHART_POINTS: usize = 60;
pub(crate) const CHART_STEP_MS: i64 = 60_000;

/// Colours of the layers' lines, by the layer's place in the catalog
/// (repeating beyond); exposed agreement is drawn in ink, thicker.
const LAYER_COLOURS: [&str; 6] = ["#0969da", "#8250df", "#bf8700", "#1a7f37", "#cf222e", "#57606a"];
const AGREEMENT_COLOUR: &str = "#1f2328";

const TEMPLATE: &str = include_str!("status_page.html");

/// The header that carries the time a fragment was rendered at.
const GENERATED: &str = "x-accord-generated";

/// Record fields whose disagreement explains a divergence; highlighted
/// when two records of a request carry different values.
const DECISION_FIELDS: &[&str] =
    &["flag_state", "api_capability", "selected_flow", "job_payload_version", "flags_revision"];

/// Display order of a record's fields (the rest follow alphabetically).
const FIELD_ORDER: &[&str] = &[
    "request_id",
    "layer",
    "feature",
    "ts",
    "flag_state",
    "api_capability",
    "selected_flow",
    "job_payload_version",
    "flags_revision",
    "service",
    "instance",
    "build",
];

pub(super) fn routes() -> Router<AppState> {
    Router::new().route("/", get(index)).route("/status/content", get(fragment))
}

async fn index(State(s): State<AppState>) -> Response {
    let now = s.live.now_ms();
    ([(header::CONTENT_TYPE, "text/html; charset=utf-8"), (header::CACHE_CONTROL, "no-store")], render(&s.live, now))
        .into_response()
}

async fn fragment(State(s): State<AppState>) -> Response {
    let now = s.live.now_ms();
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8".to_string()),
            (header::CACHE_CONTROL, "no-store".to_string()),
            (header::HeaderName::from_static(GENERATED), format_rfc3339_ms(now)),
        ],
        content(&s.live, now),
    )
        .into_response()
}

/// The whole page at `now_ms`.
pub(crate) fn render(live: &LiveView, now_ms: i64) -> String {
    let updated = format!("updated {} UTC", time_of(&format_rfc3339_ms(now_ms)));
    TEMPLATE.replace("<!--UPDATED-->", &updated).replace("<!--CONTENT-->", &content(live, now_ms))
}

/// The page's content at `now_ms`: every feature, the features × layers
/// grid and each feature's newest divergent requests.
pub(crate) fn content(live: &LiveView, now_ms: i64) -> String {
    let (ids, views): (Vec<_>, Vec<_>) = feature_views(live, now_ms, DEFAULT_WINDOW_MS).into_iter().unzip();
    let samples: Vec<Vec<SampleView>> = ids.iter().map(|id| sample_views(live, *id, PAGE_SAMPLES).0).collect();
    let charts: Vec<Vec<Point>> = ids.iter().map(|id| live.series(*id, now_ms, CHART_STEP_MS, CHART_POINTS)).collect();
    render_content(&views, &live.features().catalog().layers, &samples, &charts)
}

/// Text for HTML content and attribute values.
pub(crate) fn esc(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&#39;"),
            c => o.push(c),
        }
    }
    o
}

fn opt_pct(x: Option<f64>) -> String {
    x.map_or_else(|| "–".to_string(), pct)
}

fn opt_pct1(x: Option<f64>) -> String {
    x.map_or_else(|| "–".to_string(), pct1)
}

fn expiry(v: &FeatureView) -> String {
    match (&v.expires, v.days_to_expiry) {
        (Some(e), Some(d)) if d < 0 => format!("<span class=\"expired\">expired {} ({} days ago)</span>", esc(e), -d),
        (Some(e), Some(0)) => format!("<span class=\"expiring\">expires today ({})</span>", esc(e)),
        (Some(e), Some(d)) => {
            let cls = if d <= 30 { " class=\"expiring\"" } else { "" };
            format!("<span{cls}>expires {} (in {} day{})</span>", esc(e), d, if d == 1 { "" } else { "s" })
        }
        _ => "no expiry date".to_string(),
    }
}

fn render_content(
    views: &[FeatureView],
    layers: &[String],
    samples: &[Vec<SampleView>],
    charts: &[Vec<Point>],
) -> String {
    let mut o = String::new();
    let win = human_window(DEFAULT_WINDOW_MS);
    o.push_str("<section class=\"cards\">");
    for (v, c) in views.iter().zip(charts) {
        o.push_str(&render_card(v, c, layers));
    }
    o.push_str("</section>");
    let _ = write!(
        o,
        "<section class=\"panel\"><h2>Features × layers <small>last {win} · new-path ratio, old-path share and lag p99 per layer</small></h2>"
    );
    o.push_str(&render_grid(views, layers));
    o.push_str("</section>");
    let _ = write!(
        o,
        "<section class=\"panel\"><h2>Latest divergent requests <small>newest first · click a request to see every layer's record as received</small></h2>"
    );
    for (v, s) in views.iter().zip(samples) {
        o.push_str(&render_samples(v, s));
    }
    o.push_str("</section>");
    o
}

fn render_card(v: &FeatureView, chart: &[Point], layers: &[String]) -> String {
    let g = &v.gate;
    let d = g.decision.as_str();
    let mut o = String::new();
    let _ = write!(
        o,
        "<article class=\"card {d}\" data-feature=\"{f}\"><div class=\"card-head\"><h3>{f}</h3><span class=\"pill {d}\">{d}</span></div>",
        f = esc(&v.feature)
    );
    let owner = if v.owner.is_empty() { "not in the catalog".to_string() } else { esc(&v.owner) };
    let _ = write!(o, "<div class=\"meta\">{owner} · {} · {}</div>", esc(v.class), expiry(v));
    let _ = write!(
        o,
        "<div class=\"headline\"><div class=\"big\">{}</div><div class=\"big-label\">exposed agreement<br><span>{} exposed · {} requests · last {}</span></div></div>",
        opt_pct(v.exposed_agreement),
        num(v.exposed_requests),
        num(v.requests),
        human_window(v.window_seconds as i64 * 1000)
    );
    o.push_str(&render_verdict_bar(v));
    o.push_str(&render_chart(&v.feature, chart, layers));
    o.push_str("<ul class=\"reasons\">");
    for r in &g.reasons {
        let _ = write!(o, "<li>{}</li>", esc(r));
    }
    o.push_str("</ul>");
    let e = &v.exit_readiness;
    let _ = write!(
        o,
        "<div class=\"exit {}\"><b>flag exit</b> {} <a href=\"{}\">exit review</a></div>",
        e.status,
        esc(&e.summary),
        esc(&e.review)
    );
    o.push_str(&render_convergence(v));
    let _ = write!(
        o,
        "<div class=\"links\"><a href=\"{g}\">gate JSON</a><a href=\"{w}\">webhook</a><a href=\"{d}\">divergences JSON</a><a href=\"{x}\">exit review (1h)</a><a href=\"/api/v1/features/{f}\">feature JSON</a></div></article>",
        g = esc(&v.links.gate),
        w = esc(&v.links.webhook),
        d = esc(&v.links.divergences),
        x = esc(&format!("/api/v1/features/{}/exit-review?format=markdown", crate::views::url_escape(&v.feature))),
        f = esc(&v.feature)
    );
    o
}

/// Which flag revision is current and, per layer, how much of its work
/// since then still used another one and how long it took to adopt it.
fn render_convergence(v: &FeatureView) -> String {
    let c = &v.revision_convergence;
    let win = human_window(v.window_seconds as i64 * 1000);
    let Some(cur) = &c.current_revision else {
        return format!(
            "<div class=\"revs none\"><b>flag revision</b> no record carried a flags_revision in the last {win}</div>"
        );
    };
    let since = c.first_seen.as_deref().map(time_of).unwrap_or("–");
    let mut o = format!(
        "<div class=\"revs\"><b>flag revision</b> <code>{}</code> current since {since} UTC · {} seen in the last {win}<table class=\"conv\"><thead><tr><th>layer</th><th>stale share</th><th>adoption lag</th></tr></thead><tbody>",
        esc(cur),
        plural_n(c.revisions, "revision", "revisions")
    );
    for l in &c.layers {
        let stale = match (l.stale_share_range, l.stale_share) {
            (Some((lo, hi)), _) => format!("{}–{}", pct1(lo), pct1(hi)),
            (None, Some(s)) => pct1(s),
            (None, None) => "–".into(),
        };
        let lag = match l.adoption_lag_seconds {
            Some(s) => dur(s.max(0.0)),
            None => "not adopted".into(),
        };
        let cls = if l.stale_share.is_some_and(|s| s > 0.0) { " class=\"stale\"" } else { "" };
        let _ = write!(o, "<tr{cls}><td>{}</td><td>{stale}</td><td>{lag}</td></tr>", esc(&l.layer));
    }
    o.push_str("</tbody></table></div>");
    o
}

fn plural_n(n: usize, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

/// A series as SVG polylines: consecutive points with a value form a line,
/// a lone point a dot; steps without data leave a gap.
fn polylines(o: &mut String, values: &[Option<f64>], x: impl Fn(usize) -> f64, y: impl Fn(f64) -> f64, style: &str) {
    let mut run: Vec<(f64, f64)> = Vec::new();
    let flush = |o: &mut String, run: &mut Vec<(f64, f64)>| {
        match run.as_slice() {
            [] => {}
            [(px, py)] => {
                let _ = write!(
                    o,
                    "<circle cx=\"{px:.1}\" cy=\"{py:.1}\" r=\"2\" {style} stroke=\"none\" fill=\"currentColor\"/>"
                );
            }
            pts => {
                let list: Vec<String> = pts.iter().map(|(px, py)| format!("{px:.1},{py:.1}")).collect();
                let _ = write!(o, "<polyline points=\"{}\" fill=\"none\" {style}/>", list.join(" "));
            }
        }
        run.clear();
    };
    for (i, v) in values.iter().enumerate() {
        match v {
            Some(v) => run.push((x(i), y(*v))),
            None => flush(o, &mut run),
        }
    }
    flush(o, &mut run);
}

/// A feature's chart over the last hour: exposed agreement and each
/// layer's new-path ratio, one point per step, 0–100 %.
pub(crate) fn render_chart(feature: &str, points: &[Point], layers: &[String]) -> String {
    const W: f64 = 360.0;
    const LEFT: f64 = 34.0;
    const RIGHT: f64 = 352.0;
    const TOP: f64 = 8.0;
    const BOTTOM: f64 = 88.0;
    let n = points.len().max(1) as f64;
    let x = |i: usize| LEFT + (i as f64 + 0.5) * (RIGHT - LEFT) / n;
    let y = |v: f64| BOTTOM - v.clamp(0.0, 1.0) * (BOTTOM - TOP);
    let span = human_window(points.len() as i64 * CHART_STEP_MS);
    let mut o = format!(
        "<figure class=\"chart-box\"><svg class=\"chart\" data-feature=\"{f}\" viewBox=\"0 0 {W} 104\" width=\"{W}\" height=\"104\" role=\"img\" aria-label=\"{f}: exposed agreement and new-path ratio per layer over the last {span}\" font-family=\"sans-serif\" font-size=\"9\"><title>{f}: exposed agreement and new-path ratio per layer, last {span}, one point a minute</title>",
        f = esc(feature)
    );
    for (v, label) in [(1.0, "100%"), (0.5, "50%"), (0.0, "0%")] {
        let _ = write!(
            o,
            "<line x1=\"{LEFT}\" x2=\"{RIGHT}\" y1=\"{yy:.1}\" y2=\"{yy:.1}\" stroke=\"#d8dee4\" stroke-width=\"1\"/><text x=\"{tx}\" y=\"{ty:.1}\" text-anchor=\"end\" fill=\"#656d76\">{label}</text>",
            yy = y(v),
            tx = LEFT - 4.0,
            ty = y(v) + 3.0
        );
    }
    let _ = write!(
        o,
        "<text x=\"{LEFT}\" y=\"100\" fill=\"#656d76\">−{span}</text><text x=\"{RIGHT}\" y=\"100\" text-anchor=\"end\" fill=\"#656d76\">now</text>"
    );
    let has_data = points.iter().any(|p| p.exposed_judged > 0 || p.layers.iter().any(|(a, b)| a + b > 0));
    if !has_data {
        let _ = write!(
            o,
            "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\" fill=\"#8c959f\">no decisions in the last {span}</text>",
            (LEFT + RIGHT) / 2.0,
            (TOP + BOTTOM) / 2.0 + 3.0
        );
    }
    for (l, _) in layers.iter().enumerate() {
        let values: Vec<Option<f64>> = points.iter().map(|p| p.new_path_ratio(l)).collect();
        let colour = LAYER_COLOURS[l % LAYER_COLOURS.len()];
        let style =
            format!("class=\"s-layer\" data-layer=\"{l}\" stroke=\"{colour}\" color=\"{colour}\" stroke-width=\"1.2\"");
        polylines(&mut o, &values, x, y, &style);
    }
    let values: Vec<Option<f64>> = points.iter().map(Point::exposed_agreement).collect();
    let style =
        format!("class=\"s-agree\" stroke=\"{AGREEMENT_COLOUR}\" color=\"{AGREEMENT_COLOUR}\" stroke-width=\"2.2\"");
    polylines(&mut o, &values, x, y, &style);
    o.push_str("</svg><figcaption class=\"chart-legend\">");
    let _ = write!(o, "<span><i style=\"background:{AGREEMENT_COLOUR}\"></i>exposed agreement</span>");
    for (l, name) in layers.iter().enumerate() {
        let colour = LAYER_COLOURS[l % LAYER_COLOURS.len()];
        let _ = write!(o, "<span><i style=\"background:{colour}\"></i>{} new path</span>", esc(name));
    }
    let _ = write!(o, "<span class=\"chart-span\">last {span}, per minute</span></figcaption></figure>");
    o
}

fn render_verdict_bar(v: &FeatureView) -> String {
    let total = v.requests.max(1) as f64;
    let mut bar = String::from("<div class=\"vbar\">");
    let mut legend = String::from("<div class=\"legend\">");
    for k in ["agree", "degraded", "incomplete", "diverge"] {
        let n = v.verdicts.get(k).copied().unwrap_or(0);
        if n > 0 {
            let _ = write!(
                bar,
                "<span class=\"v-{k}\" style=\"width:{:.2}%\" title=\"{k}: {}\"></span>",
                n as f64 * 100.0 / total,
                num(n)
            );
        }
        let _ = write!(legend, "<span><i class=\"v-{k}\"></i>{k} {}</span>", num(n));
    }
    bar.push_str("</div>");
    legend.push_str("</div>");
    bar + &legend
}

fn render_grid(views: &[FeatureView], layers: &[String]) -> String {
    let mut o = String::from("<div class=\"grid-wrap\"><table class=\"grid\"><thead><tr><th>feature</th><th>gate</th><th>exposed agreement</th>");
    for l in layers {
        let _ = write!(o, "<th>{}</th>", esc(l));
    }
    o.push_str("</tr></thead><tbody>");
    for v in views {
        let d = v.gate.decision.as_str();
        let _ = write!(
            o,
            "<tr><td class=\"fname\">{f}<small>{owner}</small></td><td><span class=\"pill {d}\">{d}</span></td><td class=\"agree {d}\"><b>{}</b><small>{} exposed</small></td>",
            opt_pct(v.exposed_agreement),
            num(v.exposed_requests),
            f = esc(&v.feature),
            owner = esc(&v.owner),
        );
        for l in &v.layers {
            o.push_str(&render_layer_cell(l));
        }
        o.push_str("</tr>");
    }
    o.push_str("</tbody></table></div>");
    o
}

fn render_layer_cell(l: &LayerView) -> String {
    if l.records == 0 && l.missing == 0 {
        let what = if l.role == "unlisted" { "not monitored" } else { "no records" };
        return format!("<td class=\"cell na\"><span>{what}</span></td>");
    }
    let ratio = l.new_path_ratio;
    let width = ratio.unwrap_or(0.0) * 100.0;
    let lag = |x: Option<f64>| x.map_or_else(|| "–".to_string(), dur);
    let title = format!(
        "{}: {} records in the window (new {}, old {}, unknown {}), {} late, missing in {} requests; lag p50 {}, p99 {}",
        l.layer,
        num(l.records),
        num(l.new),
        num(l.old),
        num(l.unknown),
        num(l.late),
        num(l.missing),
        lag(l.lag_p50_seconds),
        lag(l.lag_p99_seconds)
    );
    let mut o = format!(
        "<td class=\"cell {role}\" title=\"{title}\"><div class=\"ratio\"><div class=\"bar\"><span style=\"width:{width:.1}%\"></span></div><b>{}</b> new</div><div class=\"sub\">",
        opt_pct1(ratio),
        role = l.role,
        title = esc(&title)
    );
    match l.lag_p99_seconds {
        Some(s) => {
            let _ = write!(o, "lag p99 {}", dur(s));
        }
        None => o.push_str("lag –"),
    }
    let _ = write!(o, " · old {}", opt_pct1(l.old_path_share));
    o.push_str("</div>");
    let mut notes = Vec::new();
    if l.role == "optional" {
        notes.push("optional".to_string());
    }
    if l.missing > 0 {
        notes.push(format!("missing in {}", num(l.missing)));
    }
    if l.late > 0 {
        notes.push(format!("{} late", num(l.late)));
    }
    if !notes.is_empty() {
        let _ = write!(o, "<div class=\"note\">{}</div>", esc(&notes.join(" · ")));
    }
    o.push_str("</td>");
    o
}

fn render_samples(v: &FeatureView, samples: &[SampleView]) -> String {
    let mut o = format!(
        "<div class=\"feature-samples\" data-feature=\"{f}\"><h3>{f} <a href=\"{d}?limit=100\">JSON</a></h3>",
        f = esc(&v.feature),
        d = esc(&v.links.divergences)
    );
    if samples.is_empty() {
        o.push_str("<p class=\"empty\">No divergent request kept yet.</p>");
    }
    for (i, s) in samples.iter().enumerate() {
        o.push_str(&render_sample(&v.feature, s, i == 0));
    }
    o.push_str("</div>");
    o
}

fn time_of(rfc3339: &str) -> &str {
    rfc3339.get(11..19).unwrap_or(rfc3339)
}

/// One divergent request; `open` shows its records (the newest of each
/// feature starts open, marked `data-auto` so the script can tell it from
/// one a reader opened).
fn render_sample(feature: &str, s: &SampleView, open: bool) -> String {
    let why = &s.explanation;
    let more = format!(
        " <span class=\"more\">{} divergence{}</span>",
        s.kinds.len(),
        if s.kinds.len() == 1 { "" } else { "s" }
    );
    let mut o = format!(
        "<details class=\"req\" data-key=\"{key}\"{open}><summary><time>{t}</time><code class=\"rid\">{id}</code><span class=\"badge {p}\">{p}</span><span class=\"why\">{why}</span>{more}</summary><div class=\"req-body\"><ul class=\"kinds\">",
        key = esc(&format!("{feature}/{}", s.request_id)),
        t = esc(time_of(&s.closed_at)),
        id = esc(&s.request_id),
        p = esc(s.path),
        why = esc(why),
        open = if open { " open data-auto=\"1\"" } else { "" },
    );
    for k in &s.kinds {
        let pair = if k.upstream == k.downstream {
            esc(&k.upstream)
        } else {
            format!("{} → {}", esc(&k.upstream), esc(&k.downstream))
        };
        let _ = write!(
            o,
            "<li><span class=\"kind\">{}</span><span class=\"pair\">{pair}</span>{}</li>",
            esc(k.kind),
            esc(&k.explanation)
        );
    }
    o.push_str("</ul>");
    let _ = write!(
        o,
        "<div class=\"req-meta\">start {} · closed {} ({}) · verdict {}{}</div>",
        esc(&s.start),
        esc(&s.closed_at),
        esc(s.close_cause),
        esc(s.verdict),
        if s.missing.is_empty() { String::new() } else { format!(" · missing: {}", esc(&s.missing.join(", "))) }
    );
    let mut diff = differing_fields(&s.records);
    // The capability the api advertised is the culprit of this kind, even
    // though only one record carries it.
    if s.kinds.iter().any(|k| k.kind == "exposure_without_capability") && !diff.contains(&"api_capability") {
        diff.push("api_capability");
    }
    o.push_str("<div class=\"records\">");
    for r in &s.records {
        o.push_str(&render_record(r, &diff));
    }
    o.push_str("</div></div></details>");
    o
}

/// Text of a field for comparison: numbers and strings compare as text.
fn field_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn differing_fields(records: &[RecordView]) -> Vec<&'static str> {
    DECISION_FIELDS
        .iter()
        .copied()
        .filter(|f| {
            let mut seen: Vec<String> = Vec::new();
            for r in records {
                if let Some(v) = r.record.as_ref().and_then(|o| o.get(*f)) {
                    let t = field_text(v);
                    if !seen.contains(&t) {
                        seen.push(t);
                    }
                }
            }
            seen.len() > 1
        })
        .collect()
}

fn render_record(r: &RecordView, diff: &[&str]) -> String {
    let mut o = format!(
        "<div class=\"rec\"><div class=\"rec-head\"><b>{l}</b><span class=\"badge {p}\">{p}</span><span class=\"pos\">offset {pos}</span></div>",
        l = esc(&r.layer),
        p = esc(r.path),
        pos = r.position
    );
    match &r.record {
        Some(Value::Object(m)) => {
            let mut keys: Vec<&String> = m.keys().collect();
            keys.sort_by_key(|k| (FIELD_ORDER.iter().position(|f| f == k).unwrap_or(FIELD_ORDER.len()), k.to_string()));
            o.push_str("<pre>{\n");
            for (i, k) in keys.iter().enumerate() {
                let comma = if i + 1 < keys.len() { "," } else { "" };
                let line = format!(
                    "  {}: {}{comma}",
                    serde_json::to_string(k).unwrap_or_default(),
                    serde_json::to_string(&m[*k]).unwrap_or_default()
                );
                if diff.contains(&k.as_str()) {
                    let _ = writeln!(o, "<mark>{}</mark>", esc(&line));
                } else {
                    let _ = writeln!(o, "{}", esc(&line));
                }
            }
            o.push_str("}</pre>");
        }
        Some(other) => {
            let _ = write!(o, "<pre>{}</pre>", esc(&other.to_string()));
        }
        None => {
            let _ =
                write!(o, "<p class=\"gone\">{}</p>", esc(r.unavailable.as_deref().unwrap_or("record unavailable")));
        }
    }
    o.push_str("</div>");
    o
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::test_rig::{Rig, Story};
    use axum::http::StatusCode;

    const EXTERNAL: [&str; 6] = ["src=\"http", "href=\"http", "src=\"//", "<link", "@import", "url("];

    #[tokio::test]
    async fn status_page_renders_every_feature_and_divergent_request_without_external_assets() {
        let mut r = Rig::new(1 << 20);
        r.feed(Story::AgreeNew, 5);
        r.feed(Story::Fake, 2);
        let (code, html) = r.get_text("/").await;
        assert_eq!(code, StatusCode::OK);
        assert!(html.starts_with("<!doctype html>"));
        for needle in [
            "checkout_v2",
            "search.ranking",
            "req-0007",
            "frontend took the new path and api did not advertise v2",
            "<mark>  &quot;api_capability&quot;: &quot;v1&quot;,</mark>",
            "pill inconclusive",
            "early signal: exposed agreement so far 71.4% &lt; 99.9%",
            "/api/v1/gates/checkout_v2",
            "/api/v1/features/checkout_v2/divergences",
            // What the browser test looks for.
            "<h3>checkout_v2</h3>",
            "<h3>search.ranking</h3>",
            "<details class=\"req\" data-key=\"checkout_v2/req-0007\" open data-auto=\"1\">",
            "<code class=\"rid\">req-0007</code>",
            "<div class=\"rec\">",
            "updated 00:00:00 UTC",
        ] {
            assert!(html.contains(needle), "status page lacks {needle}");
        }
        // Newest first; the older divergent request is listed, closed.
        assert!(html.contains("<details class=\"req\" data-key=\"checkout_v2/req-0006\"><summary>"));
        assert!(html.contains("No divergent request kept yet."), "search.ranking has none");
        assert!(!html.contains("<!--CONTENT-->") && !html.contains("<!--UPDATED-->"));
        for external in EXTERNAL {
            assert!(!html.contains(external), "external asset: {external}");
        }
    }

    #[tokio::test]
    async fn the_refresh_fragment_is_the_pages_content() {
        let mut r = Rig::new(1 << 20);
        r.feed(Story::Fake, 3);
        let (code, page) = r.get_text("/").await;
        assert_eq!(code, StatusCode::OK);
        let req = axum::http::Request::get("/status/content").body(axum::body::Body::empty()).unwrap();
        let (code, headers, fragment) = r.request(req).await;
        assert_eq!(code, StatusCode::OK);
        assert_eq!(headers["content-type"], "text/html; charset=utf-8");
        assert_eq!(headers["cache-control"], "no-store");
        assert_eq!(headers[GENERATED], "2027-01-01T00:00:00.000Z");
        assert!(fragment.starts_with("<section class=\"cards\">"), "{fragment}");
        assert!(!fragment.contains("<html") && !fragment.contains("<script"));
        assert!(page.contains(&format!("<main id=\"content\">{fragment}</main>")), "one renderer for both");
        // The script renders nothing itself: it fetches the fragment.
        let script = &page[page.find("<script>").unwrap()..];
        assert!(script.contains("fetch(\"/status/content\""));
        assert!(script.contains("every \" + (REFRESH_MS / 1000) + \" s") && script.contains("REFRESH_MS = 5000"));
        for markup in ["class=\\\"card", "<details", "<td", "rec-head"] {
            assert!(!script.contains(markup), "the script renders {markup}");
        }
    }

    #[tokio::test]
    async fn hostile_record_content_is_escaped() {
        let mut r = Rig::new(1 << 20);
        let id = "<script>alert('id')</script>&amp;\"";
        r.feed_one(Story::Fake, id, &[r#""note":"</pre><img src=x onerror=alert(1)>""#, r#""<x-evil>":"x""#]);
        r.flush();
        let (_, html) = r.get_text("/").await;
        let body = &html[..html.find("<script>\n\"use strict\"").unwrap()];
        for raw in ["<script>alert", "<img src=x", "</pre><img", "<x-evil>"] {
            assert!(!body.contains(raw), "unescaped {raw}");
        }
        let id_esc = "&lt;script&gt;alert(&#39;id&#39;)&lt;/script&gt;&amp;amp;&quot;";
        assert!(body.contains(&format!("<code class=\"rid\">{id_esc}</code>")), "request id shown escaped");
        assert!(body.contains(&format!("data-key=\"checkout_v2/{id_esc}\"")));
        assert!(body.contains("&quot;note&quot;: &quot;&lt;/pre&gt;&lt;img src=x onerror=alert(1)&gt;&quot;"));
        assert!(body.contains("&quot;&lt;x-evil&gt;&quot;: &quot;x&quot;"));
        for external in EXTERNAL {
            assert!(!html.contains(external), "external asset: {external}");
        }
    }

    fn point(exposed: (u64, u64), layers: &[(u64, u64)]) -> Point {
        Point { exposed_judged: exposed.0, exposed_agree: exposed.1, layers: layers.to_vec() }
    }

    #[test]
    fn charts_draw_lines_dots_and_gaps_from_the_points() {
        let layers = ["frontend".to_string(), "api".to_string()];
        let pts =
            [point((2, 2), &[(1, 1), (0, 0)]), point((2, 1), &[(2, 0), (0, 0)]), point((0, 0), &[(0, 2), (1, 0)])];
        let svg = render_chart("checkout_v2", &pts, &layers);
        assert!(svg.starts_with("<figure class=\"chart-box\"><svg class=\"chart\" data-feature=\"checkout_v2\""));
        // 0 % at y 88, 100 % at y 8; three steps centred at x 87, 193, 299.
        assert!(
            svg.contains("<polyline points=\"87.0,8.0 193.0,48.0\" fill=\"none\" class=\"s-agree\""),
            "exposed agreement: {svg}"
        );
        assert!(
            svg.contains(
                "<polyline points=\"87.0,48.0 193.0,8.0 299.0,88.0\" fill=\"none\" class=\"s-layer\" data-layer=\"0\" stroke=\"#0969da\""
            ),
            "frontend: {svg}"
        );
        // A lone point is a dot; steps without records leave gaps.
        assert!(
            svg.contains(
                "<circle cx=\"299.0\" cy=\"8.0\" r=\"2\" class=\"s-layer\" data-layer=\"1\" stroke=\"#8250df\""
            ),
            "api: {svg}"
        );
        assert_eq!(svg.matches("<polyline").count() + svg.matches("<circle").count(), 3, "{svg}");
        assert!(svg.contains("<title>checkout_v2: exposed agreement and new-path ratio per layer, last 3m"));
        assert!(svg.contains("api new path") && svg.contains("exposed agreement</span>"));
        assert!(!svg.contains("no decisions"));
        let empty = render_chart("x<y", &[point((0, 0), &[(0, 0), (0, 0)])], &layers);
        assert!(empty.contains("data-feature=\"x&lt;y\""), "{empty}");
        assert!(empty.contains(">no decisions in the last 1m</text>"), "{empty}");
        assert!(!empty.contains("<polyline") && !empty.contains("<circle"));
    }

    #[tokio::test]
    async fn the_page_charts_the_last_hour_and_shows_exit_and_revision_convergence() {
        let mut r = Rig::new(1 << 20);
        r.feed(Story::AgreeNew, 3);
        r.set_now(crate::http::test_rig::T0 + 1_800_000);
        r.feed(Story::AgreeNew, 1);
        r.feed(Story::Fake, 1);
        r.feed_one(Story::AgreeNew, "rev-1", &[r#""flags_revision":"r7""#]);
        r.flush();
        let (code, html) = r.get_text("/").await;
        assert_eq!(code, StatusCode::OK);
        for f in ["checkout_v2", "search.ranking"] {
            assert_eq!(html.matches(&format!("<svg class=\"chart\" data-feature=\"{f}\"")).count(), 1, "{f}");
        }
        let chart = &html[html.find("data-feature=\"checkout_v2\" viewBox").unwrap()..];
        let chart = &chart[..chart.find("</svg>").unwrap()];
        // Half an hour ago everything agreed; in the newest minute 2 of 3.
        assert!(chart.contains("cy=\"8.0\" r=\"2\" class=\"s-agree\""), "{chart}");
        assert!(chart.contains("cy=\"34.7\" r=\"2\" class=\"s-agree\""), "{chart}");
        assert!(html.contains(">no decisions in the last 1h</text>"), "search.ranking has none");
        for needle in [
            "<div class=\"exit not_ready\"><b>flag exit</b> still taking the old path in the last 5m: api (",
            "<a href=\"/api/v1/features/checkout_v2/exit-review?window=5m\">exit review</a>",
            "<a href=\"/api/v1/features/checkout_v2/exit-review?format=markdown\">exit review (1h)</a>",
            "<b>flag revision</b> <code>r7</code> current since 00:30:00 UTC · 1 revision seen in the last 5m",
            "<tr><td>frontend</td><td>0%</td><td>0 ms</td></tr>",
            "<div class=\"exit insufficient_data\"><b>flag exit</b> in the last 5m: no request closed in the window",
            "no record carried a flags_revision in the last 5m",
        ] {
            assert!(html.contains(needle), "status page lacks {needle}");
        }
        for external in EXTERNAL {
            assert!(!html.contains(external), "external asset: {external}");
        }
    }

    #[test]
    fn escaping() {
        assert_eq!(esc("<a href=\"x\">'&'</a>"), "&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;");
    }
}
