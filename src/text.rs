//! How figures read in sentences (gate reasons, exit summaries) and on the
//! status page: percentages, windows, counts.

use std::time::Duration;

/// A ratio as a percentage with up to `decimals` decimals, trailing zeros
/// trimmed ("97.2%", "100%").
pub(crate) fn pct_with(x: f64, decimals: usize) -> String {
    let s = format!("{:.*}", decimals, x * 100.0);
    let s = if s.contains('.') { s.trim_end_matches('0').trim_end_matches('.').to_string() } else { s };
    format!("{s}%")
}

/// A ratio as a short percentage.
pub(crate) fn pct(x: f64) -> String {
    pct_with(x, 2)
}

/// A ratio as a percentage with at most one decimal.
pub(crate) fn pct1(x: f64) -> String {
    pct_with(x, 1)
}

/// A value and a threshold with just enough decimals to tell them apart.
pub(crate) fn pct_pair(x: f64, t: f64) -> (String, String) {
    let mut d = 1;
    loop {
        let (a, b) = (pct_with(x, d), pct_with(t, d));
        if a != b || x == t || d == 4 {
            return (a, b);
        }
        d += 1;
    }
}

/// `5m`, `1h`, `90s` → `1m 30s`.
pub(crate) fn human_window(ms: i64) -> String {
    humantime::format_duration(Duration::from_millis(ms.max(0) as u64)).to_string()
}

/// "1 request", "2 requests".
pub(crate) fn plural(n: u64, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

/// `1234567` → `1,234,567`.
pub(crate) fn num(n: u64) -> String {
    let s = n.to_string();
    let mut o = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i) % 3 == 0 {
            o.push(',');
        }
        o.push(c);
    }
    o
}

/// Seconds as `0 ms`, `85 ms`, `1.2 s`, `2m 5s`.
pub(crate) fn dur(s: f64) -> String {
    if s < 1.0 {
        format!("{} ms", (s * 1000.0).round() as i64)
    } else if s < 60.0 {
        format!("{:.1} s", s)
    } else {
        let t = s.round() as i64;
        format!("{}m {}s", t / 60, t % 60)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentages_are_short_but_tell_value_and_threshold_apart() {
        assert_eq!(pct(0.972), "97.2%");
        assert_eq!(pct(1.0), "100%");
        assert_eq!(pct(0.0), "0%");
        assert_eq!(pct1(0.25), "25%");
        assert_eq!(pct1(0.7142), "71.4%");
        assert_eq!(pct_pair(0.972, 0.999), ("97.2%".into(), "99.9%".into()));
        assert_eq!(pct_pair(0.99897, 0.999), ("99.897%".into(), "99.9%".into()));
        assert_eq!(pct_pair(0.999, 0.999), ("99.9%".into(), "99.9%".into()));
        assert_eq!(human_window(300_000), "5m");
        assert_eq!(human_window(90_000), "1m 30s");
        assert_eq!(plural(1, "request", "requests"), "1 request");
        assert_eq!(plural(2, "request", "requests"), "2 requests");
    }

    #[test]
    fn formatting() {
        assert_eq!(num(0), "0");
        assert_eq!(num(999), "999");
        assert_eq!(num(1000), "1,000");
        assert_eq!(num(1234567), "1,234,567");
        assert_eq!(dur(0.0), "0 ms");
        assert_eq!(dur(0.085), "85 ms");
        assert_eq!(dur(1.25), "1.2 s");
        assert_eq!(dur(125.0), "2m 5s");
    }
}
