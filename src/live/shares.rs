//! Whose share the view holds, and how fresh it is.
//!
//! Every instance of a consumer group publishes what it judged, tied to its
//! offset commits, once per commit interval (an empty share too: it says
//! the instance is alive and which streams it owns). The view notes, per
//! stream (partition), which instance published last and when; per
//! instance, when it published last and what it has published in all
//! since it started (requests by feature, path and verdict), so an
//! instance's share can be compared with its own Prometheus counters.
//!
//! A stream whose share is missing or older than the freshness bound makes
//! the view incomplete: the gate then answers `inconclusive` rather than
//! decide on part of the traffic.

use std::collections::BTreeMap;

use serde::Serialize;

use super::Delta;
use crate::judge::{RequestPath, Verdict};

/// One published share, as the view notes it.
#[derive(Debug, Clone)]
pub struct ShareNote<'a> {
    pub instance: &'a str,
    /// When the instance published it (its wall clock).
    pub published_ms: i64,
    /// The streams (partitions) it owned then.
    pub streams: &'a [i32],
}

#[derive(Debug, Clone, Default)]
struct StreamShare {
    instance: String,
    published_ms: i64,
}

#[derive(Debug, Clone, Default)]
struct InstanceShare {
    published_ms: i64,
    shares: u64,
    streams: Vec<i32>,
    /// `feature -> [path][verdict]` of every share applied since the view
    /// started reading (the view reads an hour back after a restart).
    requests: BTreeMap<String, [[u64; 4]; 4]>,
}

/// The notes of every share the view applied.
#[derive(Debug, Default)]
pub struct Shares {
    /// Streams the group has (the topics' partition count), once known.
    expected: Option<usize>,
    streams: BTreeMap<i32, StreamShare>,
    instances: BTreeMap<String, InstanceShare>,
}

/// How complete and fresh the view is, for every answer built from it.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Freshness {
    /// The newest share's publication time (RFC 3339), if any.
    pub updated_at: Option<String>,
    /// Seconds since the oldest stream's newest share: every figure
    /// covers the traffic up to at least this long ago.
    pub age_seconds: Option<f64>,
    /// Streams (partitions) of the consumer group, once known.
    pub streams: Option<usize>,
    /// Streams no instance has published a share of.
    pub missing_streams: Vec<i32>,
    /// Streams whose newest share is older than the freshness bound.
    pub stale_streams: Vec<i32>,
    /// The instances that published those stale shares.
    pub stale_instances: Vec<String>,
    /// Instances that published within the last hour.
    pub instances: usize,
}

impl Freshness {
    /// The view covers every stream with a recent share.
    pub fn complete(&self) -> bool {
        self.missing_streams.is_empty() && self.stale_streams.is_empty() && self.streams.is_some()
    }

    /// Why it is not complete, in words a release manager acts on.
    pub fn problem(&self) -> Option<String> {
        let streams = self.streams?;
        let list = |v: &[i32]| v.iter().map(|p| p.to_string()).collect::<Vec<_>>().join(", ");
        if !self.missing_streams.is_empty() {
            return Some(format!(
                "no instance has published the statistics of partition(s) {} of {streams} yet: the view covers part of the traffic",
                list(&self.missing_streams)
            ));
        }
        if !self.stale_streams.is_empty() {
            return Some(format!(
                "the statistics of partition(s) {} are older than the freshness bound (instance {} may be down or stalled): the view may miss recent traffic",
                list(&self.stale_streams),
                self.stale_instances.join(", ")
            ));
        }
        None
    }
}

/// What one instance has published, for comparison with its counters.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct InstanceView {
    pub instance: String,
    pub published_at: String,
    pub shares: u64,
    pub streams: Vec<i32>,
    /// `feature -> path -> verdict -> requests` over everything it
    /// published that this view applied.
    pub requests: BTreeMap<String, BTreeMap<&'static str, BTreeMap<&'static str, u64>>>,
}

impl Shares {
    pub fn set_expected_streams(&mut self, n: usize) {
        self.expected = Some(n);
    }

    /// Notes a share and what its delta holds.
    pub fn note(&mut self, note: &ShareNote<'_>, delta: &Delta) {
        let inst = self.instances.entry(note.instance.to_string()).or_default();
        inst.published_ms = inst.published_ms.max(note.published_ms);
        inst.shares += 1;
        inst.streams = note.streams.to_vec();
        for name in delta.features() {
            if let Some(w) = delta.totals(name) {
                let e = inst.requests.entry(name.to_string()).or_insert([[0; 4]; 4]);
                for (p, row) in w.requests.iter().enumerate() {
                    for (v, n) in row.iter().enumerate() {
                        e[p][v] += n;
                    }
                }
            }
        }
        for &p in note.streams {
            let s = self.streams.entry(p).or_default();
            if note.published_ms >= s.published_ms {
                *s = StreamShare { instance: note.instance.to_string(), published_ms: note.published_ms };
            }
        }
    }

    /// The view's freshness at `now_ms`, with shares older than `bound_ms`
    /// counted stale.
    pub fn freshness(&self, now_ms: i64, bound_ms: i64) -> Freshness {
        let mut missing = Vec::new();
        let mut stale = Vec::new();
        let mut stale_instances: Vec<String> = Vec::new();
        let mut oldest: Option<i64> = None;
        if let Some(n) = self.expected {
            for p in 0..n as i32 {
                match self.streams.get(&p) {
                    None => missing.push(p),
                    Some(s) => {
                        oldest = Some(oldest.map_or(s.published_ms, |o| o.min(s.published_ms)));
                        if now_ms - s.published_ms > bound_ms {
                            stale.push(p);
                            if !stale_instances.contains(&s.instance) {
                                stale_instances.push(s.instance.clone());
                            }
                        }
                    }
                }
            }
        }
        let newest = self.streams.values().map(|s| s.published_ms).max();
        Freshness {
            updated_at: newest.map(crate::decode::format_rfc3339_ms),
            age_seconds: oldest.map(|o| (now_ms - o).max(0) as f64 / 1000.0),
            streams: self.expected,
            missing_streams: missing,
            stale_streams: stale,
            stale_instances,
            instances: self.instances.values().filter(|i| now_ms - i.published_ms <= super::MAX_WINDOW_MS).count(),
        }
    }

    /// What each instance has published.
    pub fn instances(&self) -> Vec<InstanceView> {
        self.instances
            .iter()
            .map(|(name, i)| InstanceView {
                instance: name.clone(),
                published_at: crate::decode::format_rfc3339_ms(i.published_ms),
                shares: i.shares,
                streams: i.streams.clone(),
                requests: i
                    .requests
                    .iter()
                    .map(|(f, m)| {
                        let by_path = RequestPath::ALL
                            .iter()
                            .map(|p| {
                                let by_v =
                                    Verdict::ALL.iter().map(|v| (v.as_str(), m[*p as usize][*v as usize])).collect();
                                (p.as_str(), by_v)
                            })
                            .collect();
                        (f.clone(), by_path)
                    })
                    .collect(),
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn note(s: &mut Shares, instance: &str, at: i64, streams: &[i32]) {
        s.note(&ShareNote { instance, published_ms: at, streams }, &Delta::default());
    }

    #[test]
    fn every_stream_needs_a_recent_share() {
        let mut s = Shares::default();
        assert!(!s.freshness(0, 10_000).complete(), "the stream count is not known yet");
        s.set_expected_streams(4);
        note(&mut s, "a", 100_000, &[0, 1]);
        let f = s.freshness(105_000, 10_000);
        assert_eq!(f.missing_streams, [2, 3]);
        assert!(f.problem().unwrap().contains("partition(s) 2, 3 of 4"));
        note(&mut s, "b", 104_000, &[2, 3]);
        let f = s.freshness(105_000, 10_000);
        assert!(f.complete(), "{f:?}");
        assert_eq!(f.age_seconds, Some(5.0));
        assert_eq!(f.instances, 2);
        // b stops publishing.
        note(&mut s, "a", 120_000, &[0, 1]);
        let f = s.freshness(120_000, 10_000);
        assert_eq!(f.stale_streams, [2, 3]);
        assert!(f.problem().unwrap().contains("older than the freshness bound"));
        // a takes b's streams over.
        note(&mut s, "a", 121_000, &[0, 1, 2, 3]);
        assert!(s.freshness(121_000, 10_000).complete());
    }
}
