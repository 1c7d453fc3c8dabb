//! The exit review as Markdown, for people: the verdict and what to do
//! next first, the figures after. Names from records (services, builds,
//! revisions) are escaped, so a hostile name cannot break a table or
//! inject a link.

use std::fmt::Write as _;

use super::review::{count, pct, plural, secs, ExitReview, Status};

/// Escapes text for Markdown: the characters that could start emphasis,
/// code, a link, HTML, a heading or a table cell get a backslash (an `_`
/// inside a word cannot start emphasis and is left alone, so `checkout_v2`
/// stays readable as plain text); line breaks become spaces, so a table row
/// stays one line.
pub fn md(s: &str) -> String {
    let chars: Vec<char> = s.chars().collect();
    let mut out = String::with_capacity(s.len());
    for (i, &c) in chars.iter().enumerate() {
        let word = |j: Option<usize>| j.and_then(|j| chars.get(j)).is_some_and(|c| c.is_alphanumeric());
        match c {
            '\r' | '\n' => out.push(' '),
            '_' if word(i.checked_sub(1)) && word(Some(i + 1)) => out.push('_'),
            '\\' | '`' | '*' | '_' | '[' | ']' | '<' | '>' | '|' | '#' | '~' | '&' | '!' => {
                out.push('\\');
                out.push(c);
            }
            c => out.push(c),
        }
    }
    out
}

fn opt_pct(x: Option<f64>) -> String {
    x.map_or_else(|| "–".into(), pct)
}

/// Renders the review as a Markdown document.
pub fn render_markdown(r: &ExitReview) -> String {
    let mut o = String::new();
    let verdict = match r.status {
        Status::Ready => "ready to remove",
        Status::NotReady => "not ready",
        Status::InsufficientData => "not enough data",
    };
    let _ = writeln!(o, "# Exit review: {} — {verdict}\n", md(&r.feature));
    let mut who = format!("Owner **{}**, class {}", md(&r.owner), md(&r.class));
    match (&r.expires, r.days_left) {
        (Some(e), Some(d)) if d >= 0 => {
            let _ = write!(who, ", planned removal **{}** ({} left)", md(e), plural(d as u64, "day", "days"));
        }
        (Some(e), Some(d)) => {
            let _ =
                write!(who, ", planned removal **{}** (overdue by {})", md(e), plural(d.unsigned_abs(), "day", "days"));
        }
        _ => who.push_str(", no planned removal date"),
    }
    let _ = writeln!(o, "{who}.");
    let span = match (&r.from, &r.to) {
        (Some(f), Some(t)) => format!(", records from {f} to {t}"),
        _ => ", no records".into(),
    };
    let _ = writeln!(
        o,
        "Evidence: {} over {}{span} (event times).\n",
        plural(r.requests, "closed request", "closed requests"),
        secs(r.window_seconds.saturating_mul(1000))
    );

    let _ = writeln!(o, "## What to do next\n");
    match r.status {
        Status::Ready => {
            let _ = writeln!(
                o,
                "Nothing blocks the removal: every layer took the new path, no request diverged or was incomplete, \
                 and {} closed (at least {} needed). The flag can be deleted.\n",
                plural(r.requests, "request", "requests"),
                count(r.min_samples)
            );
        }
        Status::NotReady | Status::InsufficientData => {
            for (i, b) in r.blockers.iter().enumerate() {
                let _ = writeln!(o, "{}. {}", i + 1, md(b));
            }
            o.push('\n');
        }
    }

    let _ = writeln!(o, "## Layers\n");
    let _ = writeln!(o, "| layer | records | new | old | unknown | stale share | adoption lag |");
    let _ = writeln!(o, "|---|---:|---:|---:|---:|---:|---:|");
    for l in &r.layers {
        let stale = match l.stale_share_range {
            Some((lo, hi)) => format!("{}–{}", pct(lo), pct(hi)),
            None => opt_pct(l.stale_share),
        };
        let lag = l.adoption_lag_seconds.map_or_else(|| "–".into(), |s| secs((s * 1000.0).round() as i64));
        let _ = writeln!(
            o,
            "| {} | {} | {} | {} | {} | {stale} | {lag} |",
            md(&l.layer),
            count(l.records),
            opt_pct(l.new_ratio),
            opt_pct(l.old_ratio),
            opt_pct(l.unknown_ratio)
        );
    }
    o.push('\n');

    if r.layers.iter().any(|l| !l.old_path_takers.is_empty() || l.old_path_other.is_some()) {
        let _ = writeln!(o, "## Old path by service and build\n");
        for l in r.layers.iter().filter(|l| !l.old_path_takers.is_empty() || l.old_path_other.is_some()) {
            let _ = writeln!(o, "**{}**\n", md(&l.layer));
            let _ = writeln!(o, "| service | build | records | last seen |");
            let _ = writeln!(o, "|---|---|---:|---|");
            for t in &l.old_path_takers {
                let _ =
                    writeln!(o, "| {} | {} | {} | {} |", md(&t.service), md(&t.build), count(t.records), t.last_seen);
            }
            if let Some(other) = &l.old_path_other {
                let _ = writeln!(
                    o,
                    "| {}{} others | | {} | {} |",
                    if other.more { "more than " } else { "" },
                    count(other.takers),
                    count(other.records),
                    other.last_seen
                );
            }
            o.push('\n');
        }
    }

    let _ = writeln!(o, "## Requests\n");
    let _ = write!(
        o,
        "{}; incomplete: {}",
        plural(r.requests, "closed request", "closed requests"),
        count(r.incomplete_requests)
    );
    if r.divergent_requests.is_empty() {
        let _ = writeln!(o, "; no divergence.\n");
    } else {
        let kinds: Vec<String> = r.divergent_requests.iter().map(|(k, n)| format!("{} {}", md(k), count(*n))).collect();
        let _ = writeln!(o, "; divergent, by kind: {}.\n", kinds.join(", "));
    }

    let _ = writeln!(o, "## Revisions\n");
    match &r.current_revision {
        None => {
            let _ = writeln!(o, "No record carried a flags_revision.\n");
        }
        Some(c) => {
            let first = r.revisions.iter().find(|x| &x.revision == c).map_or("", |x| x.first_seen.as_str());
            let _ = writeln!(o, "Current revision: **{}**, first seen {first}.\n", md(c));
            let layers: Vec<&str> = r.layers.iter().map(|l| l.layer.as_str()).collect();
            let _ = write!(o, "| revision | first seen | last seen |");
            for l in &layers {
                let _ = write!(o, " {} |", md(l));
            }
            let _ = write!(o, "\n|---|---|---|");
            for _ in &layers {
                o.push_str("---:|");
            }
            o.push('\n');
            for rev in &r.revisions {
                let _ = write!(o, "| {} | {} | {} |", md(&rev.revision), rev.first_seen, rev.last_seen);
                for l in &layers {
                    let _ = write!(o, " {} |", count(rev.records.get(*l).copied().unwrap_or(0)));
                }
                o.push('\n');
            }
            o.push('\n');
        }
    }

    if !r.notes.is_empty() {
        let _ = writeln!(o, "## Notes\n");
        for n in &r.notes {
            let _ = writeln!(o, "- {}", md(n));
        }
        o.push('\n');
    }
    o
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::exit::review::{LayerReview, OtherTakers, RevisionReview, Taker};

    fn sample(status: Status) -> ExitReview {
        ExitReview {
            feature: "checkout_v2".into(),
            owner: "payments".into(),
            class: "state-machine".into(),
            expires: Some("2027-01-31".into()),
            days_left: Some(61),
            window_seconds: 3600,
            from: Some("2026-11-20T09:42:03.120Z".into()),
            to: Some("2026-11-20T10:42:03.120Z".into()),
            requests: 5210,
            min_samples: 200,
            status,
            blockers: vec![
                "worker: fulfilment-worker build 2026.11.12-1a2b3c4 took the old path for 1,204 records, last at \
                 2026-11-20T10:42:03.120Z"
                    .into(),
                "3 requests were incomplete: an expected layer never reported".into(),
            ],
            layers: vec![LayerReview {
                layer: "worker".into(),
                records: 1400,
                new_ratio: Some(0.91),
                old_ratio: Some(0.09),
                unknown_ratio: Some(0.0),
                old_path_takers: vec![Taker {
                    service: "evil|svc<script>*x*".into(),
                    build: "[link](http://x)\nnext".into(),
                    records: 1204,
                    last_seen: "2026-11-20T10:42:03.120Z".into(),
                }],
                old_path_other: Some(OtherTakers {
                    takers: 3,
                    more: false,
                    records: 12,
                    last_seen: "2026-11-20T10:00:00.000Z".into(),
                }),
                stale_share: Some(0.12),
                stale_share_range: None,
                adoption_lag_seconds: Some(60.0),
            }],
            divergent_requests: [("path_mismatch".to_string(), 118)].into(),
            incomplete_requests: 3,
            revisions: vec![RevisionReview {
                revision: "r42".into(),
                first_seen: "2026-11-20T09:41:03.120Z".into(),
                last_seen: "2026-11-20T10:42:03.120Z".into(),
                records: [("worker".to_string(), 700)].into(),
            }],
            current_revision: Some("r42".into()),
            notes: vec![],
        }
    }

    #[test]
    fn what_to_do_next_comes_first_then_the_figures() {
        let m = render_markdown(&sample(Status::NotReady));
        assert!(m.starts_with("# Exit review: checkout_v2 — not ready\n"), "{m}");
        let order: Vec<usize> =
            ["## What to do next", "## Layers", "## Old path by service and build", "## Requests", "## Revisions"]
                .iter()
                .map(|h| m.find(h).unwrap_or_else(|| panic!("{h} missing:\n{m}")))
                .collect();
        assert!(order.windows(2).all(|w| w[0] < w[1]), "{m}");
        assert!(m.contains("planned removal **2027-01-31** (61 days left)"));
        assert!(m.contains(
            "1. worker: fulfilment-worker build 2026.11.12-1a2b3c4 took the old path for 1,204 records, last at \
             2026-11-20T10:42:03.120Z\n2. 3 requests were incomplete"
        ));
        assert!(m.contains("| worker | 1,400 | 91% | 9% | 0% | 12% | 60 s |"), "{m}");
        assert!(m.contains("| 3 others | | 12 | 2026-11-20T10:00:00.000Z |"), "{m}");
        assert!(m.contains("divergent, by kind: path_mismatch 118."), "{m}");
        assert!(m.contains("| r42 | 2026-11-20T09:41:03.120Z | 2026-11-20T10:42:03.120Z | 700 |"), "{m}");
    }

    #[test]
    fn names_from_records_cannot_break_the_document() {
        let m = render_markdown(&sample(Status::NotReady));
        let row = m.lines().find(|l| l.contains("evil")).unwrap();
        assert_eq!(row, r"| evil\|svc\<script\>\*x\* | \[link\](http://x) next | 1,204 | 2026-11-20T10:42:03.120Z |");
        // Five unescaped cell separators: four cells.
        assert_eq!(row.replace(r"\|", "").matches('|').count(), 5);
        assert_eq!(md("checkout_v2 _x_ a\\b"), r"checkout_v2 \_x\_ a\\b");
    }

    #[test]
    fn ready_and_insufficient_say_so() {
        let mut r = sample(Status::Ready);
        r.blockers.clear();
        let m = render_markdown(&r);
        assert!(m.starts_with("# Exit review: checkout_v2 — ready to remove\n"));
        assert!(m.contains("The flag can be deleted."));
        let mut r = sample(Status::InsufficientData);
        r.blockers = vec!["only 150 requests closed in the window; at least 200 are needed".into()];
        r.days_left = Some(-3);
        let m = render_markdown(&r);
        assert!(m.starts_with("# Exit review: checkout_v2 — not enough data\n"));
        assert!(m.contains("1. only 150 requests closed in the window; at least 200 are needed"));
        assert!(m.contains("(overdue by 3 days)"));
    }
}
