//! The serialised form of an [`ExitAgg`]: JSON with a format version (the
//! stats topic's producer compresses it), names for layers, services,
//! builds and revisions, and times as epoch milliseconds.
//!
//! Compatibility follows the live-statistics delta: a reader rejects
//! another format version; within a version fields are only ever added, as
//! optional ones, and unknown fields are ignored. Decoding untrusted bytes
//! never panics: every cap and every invariant the merge relies on is
//! checked, so a decoded aggregate is one that adding records could have
//! built.

use std::collections::{BTreeMap, VecDeque};

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::agg::{
    natural_cmp, pack, ExitAgg, LayerAgg, RevAgg, RevLayer, Second, Seen, Span, ARCHIVE_SECONDS, MAX_NAME_BYTES,
    MAX_REVISIONS, MAX_TAKERS, MS_DETAIL,
};
use crate::catalog::MAX_LAYERS;

/// The format version this build writes and reads.
pub const VERSION: u64 = 1;

/// Why bytes are not an aggregate this build can read.
#[derive(Debug, thiserror::Error)]
pub enum ExitDecodeError {
    #[error("not an exit-review aggregate: {0}")]
    Json(#[source] serde_json::Error),
    #[error("exit-review aggregate format version {found}; this build reads version {VERSION}")]
    Version { found: u64 },
    #[error("exit-review aggregate, {at}: {what}")]
    Invalid { at: String, what: String },
}

fn invalid(at: impl Into<String>, what: impl Into<String>) -> ExitDecodeError {
    ExitDecodeError::Invalid { at: at.into(), what: what.into() }
}

/// `[records, first, last]`, absent when empty.
type SpanWire = Option<(u64, i64, i64)>;
/// `[records, last]`, absent when empty.
type SeenWire = Option<(u64, i64)>;
/// `[second, records, [[millisecond, records], ...]]`.
type SecondWire = (i64, u64, Vec<(u16, u64)>);

#[derive(Serialize, Deserialize)]
struct Head {
    v: u64,
}

#[derive(Serialize, Deserialize)]
struct AggWire {
    v: u64,
    budget: usize,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    layers: BTreeMap<String, LayerWire>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    revisions: Vec<RevWire>,
}

#[derive(Serialize, Deserialize)]
struct LayerWire {
    /// Records by path: new, old, unknown.
    paths: [u64; 3],
    #[serde(default, skip_serializing_if = "Option::is_none")]
    span: SpanWire,
    /// `[service, build, records, last]`, in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    takers: Vec<(String, String, u64, i64)>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    takers_spill: SeenWire,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    dropped: SpanWire,
}

#[derive(Serialize, Deserialize)]
struct RevWire {
    rev: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    horizon: Option<i64>,
    layers: BTreeMap<String, RevLayerWire>,
}

#[derive(Serialize, Deserialize)]
struct RevLayerWire {
    span: (u64, i64, i64),
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    seconds: Vec<SecondWire>,
}

fn span_wire(s: Span) -> SpanWire {
    (s.records > 0).then_some((s.records, s.first_ms, s.last_ms))
}

fn seen_wire(s: Seen) -> SeenWire {
    (s.records > 0).then_some((s.records, s.last_ms))
}

fn span_of(w: SpanWire, at: &str) -> Result<Span, ExitDecodeError> {
    match w {
        None => Ok(Span::default()),
        Some((0, _, _)) => Err(invalid(at, "an empty span is written as absent")),
        Some((records, first_ms, last_ms)) if first_ms <= last_ms => Ok(Span { records, first_ms, last_ms }),
        Some(_) => Err(invalid(at, "first time after last time")),
    }
}

fn seen_of(w: SeenWire, at: &str) -> Result<Seen, ExitDecodeError> {
    match w {
        None => Ok(Seen::default()),
        Some((0, _)) => Err(invalid(at, "an empty count is written as absent")),
        Some((records, last_ms)) => Ok(Seen { records, last_ms }),
    }
}

fn name(s: &str, at: &str) -> Result<(), ExitDecodeError> {
    if s.len() > MAX_NAME_BYTES {
        return Err(invalid(at, format!("name longer than {MAX_NAME_BYTES} bytes")));
    }
    Ok(())
}

fn sum(it: impl Iterator<Item = u64>) -> u64 {
    it.fold(0u64, u64::saturating_add)
}

impl ExitAgg {
    fn to_wire(&self) -> AggWire {
        AggWire {
            v: VERSION,
            budget: self.budget,
            layers: self
                .layers
                .iter()
                .map(|(n, l)| {
                    let w = LayerWire {
                        paths: l.paths,
                        span: span_wire(l.span),
                        takers: l
                            .takers()
                            .map(|(s, b, seen)| (s.to_string(), b.to_string(), seen.records, seen.last_ms))
                            .collect(),
                        takers_spill: seen_wire(l.takers_spill),
                        dropped: span_wire(l.dropped),
                    };
                    (n.clone(), w)
                })
                .collect(),
            revisions: self
                .revisions
                .iter()
                .map(|r| RevWire {
                    rev: r.name.clone(),
                    horizon: (r.horizon != i64::MIN).then_some(r.horizon),
                    layers: r
                        .layers
                        .iter()
                        .map(|(n, l)| {
                            let seconds = l.seconds.iter().map(|s| (s.sec, s.count, s.detail().collect())).collect();
                            (
                                n.clone(),
                                RevLayerWire { span: (l.span.records, l.span.first_ms, l.span.last_ms), seconds },
                            )
                        })
                        .collect(),
                })
                .collect(),
        }
    }

    fn from_wire(w: AggWire) -> Result<ExitAgg, ExitDecodeError> {
        if w.v != VERSION {
            return Err(ExitDecodeError::Version { found: w.v });
        }
        if w.budget == 0 || w.budget > ARCHIVE_SECONDS {
            return Err(invalid("budget", format!("must be 1..={ARCHIVE_SECONDS}")));
        }
        if w.layers.len() > MAX_LAYERS {
            return Err(invalid("layers", format!("more than {MAX_LAYERS}")));
        }
        let mut layers = BTreeMap::new();
        for (n, lw) in w.layers {
            let at = format!("layer {n:?}");
            name(&n, &at)?;
            layers.insert(n, layer_of(lw, &at)?);
        }
        if w.revisions.len() > MAX_REVISIONS {
            return Err(invalid("revisions", format!("more than {MAX_REVISIONS}")));
        }
        let mut revisions: Vec<RevAgg> = Vec::with_capacity(w.revisions.len());
        for rw in w.revisions {
            let at = format!("revision {:?}", rw.rev);
            name(&rw.rev, &at)?;
            if revisions.last().is_some_and(|p| natural_cmp(&p.name, &rw.rev).is_ge()) {
                return Err(invalid(at, "revisions out of order"));
            }
            revisions.push(rev_of(rw, &layers, w.budget, &at)?);
        }
        for (n, l) in &layers {
            let carried = sum(revisions.iter().filter_map(|r| r.layers.get(n)).map(|rl| rl.span.records));
            if carried.saturating_add(l.dropped.records) > l.span.records {
                return Err(invalid(format!("layer {n:?}"), "more records by revision than records"));
            }
        }
        Ok(ExitAgg { budget: w.budget, layers, revisions })
    }

    /// The aggregate as bytes (versioned JSON).
    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(&self.to_wire()).unwrap_or_default()
    }

    /// An aggregate from bytes [`ExitAgg::encode`] wrote; never panics on
    /// other bytes.
    pub fn decode(bytes: &[u8]) -> Result<ExitAgg, ExitDecodeError> {
        let head: Head = serde_json::from_slice(bytes).map_err(ExitDecodeError::Json)?;
        if head.v != VERSION {
            return Err(ExitDecodeError::Version { found: head.v });
        }
        ExitAgg::from_wire(serde_json::from_slice(bytes).map_err(ExitDecodeError::Json)?)
    }
}

fn layer_of(lw: LayerWire, at: &str) -> Result<LayerAgg, ExitDecodeError> {
    let span = span_of(lw.span, at)?;
    if span.records != sum(lw.paths.iter().copied()) {
        return Err(invalid(at, "records by path do not add up to the records"));
    }
    if lw.takers.len() > MAX_TAKERS {
        return Err(invalid(at, format!("more than {MAX_TAKERS} old-path takers")));
    }
    let takers_spill = seen_of(lw.takers_spill, at)?;
    if takers_spill.records > 0 && lw.takers.len() < MAX_TAKERS {
        return Err(invalid(at, "old-path takers summed while fewer than the cap are kept"));
    }
    let mut l =
        LayerAgg { paths: lw.paths, span, takers_spill, dropped: span_of(lw.dropped, at)?, ..LayerAgg::default() };
    let mut prev: Option<(String, String)> = None;
    for (s, b, records, last_ms) in lw.takers {
        name(&s, at)?;
        name(&b, at)?;
        if records == 0 {
            return Err(invalid(at, "an old-path taker without records"));
        }
        if prev.as_ref().is_some_and(|p| (p.0.as_str(), p.1.as_str()) >= (s.as_str(), b.as_str())) {
            return Err(invalid(at, "old-path takers out of order"));
        }
        prev = Some((s.clone(), b.clone()));
        l.takers.entry(s).or_default().insert(b, Seen { records, last_ms });
        l.n_takers += 1;
    }
    let old = sum(l.takers().map(|t| t.2.records)).saturating_add(l.takers_spill.records);
    if old != l.paths[1] {
        return Err(invalid(at, "old-path takers do not add up to the old-path records"));
    }
    Ok(l)
}

fn rev_of(
    rw: RevWire,
    layers: &BTreeMap<String, LayerAgg>,
    budget: usize,
    at: &str,
) -> Result<RevAgg, ExitDecodeError> {
    let horizon = rw.horizon.unwrap_or(i64::MIN);
    let mut r = RevAgg { name: rw.rev, horizon, layers: BTreeMap::new(), entries: 0 };
    for (n, lw) in rw.layers {
        let at = format!("{at}, layer {n:?}");
        if !layers.contains_key(&n) {
            return Err(invalid(at, "a layer without records"));
        }
        let span = span_of(Some(lw.span), &at)?;
        let mut seconds = VecDeque::with_capacity(lw.seconds.len());
        let mut kept = 0u64;
        for (sec, count, detail) in lw.seconds {
            if seconds.back().is_some_and(|p: &Second| p.sec >= sec) || sec < horizon {
                return Err(invalid(at, "seconds out of order or below the horizon"));
            }
            if sec < span.first_ms.div_euclid(1000) || sec > span.last_ms.div_euclid(1000) || count == 0 {
                return Err(invalid(at, "a second outside the records' span, or empty"));
            }
            if detail.is_empty() || detail.len() > MS_DETAIL {
                return Err(invalid(at, format!("millisecond detail must hold 1..={MS_DETAIL} entries")));
            }
            let mut prev: Option<u16> = None;
            for &(ms, n) in &detail {
                if ms >= 1000 || n == 0 || prev.is_some_and(|p| p >= ms) || n >= 1 << 54 {
                    return Err(invalid(at, "millisecond detail out of order, out of range or empty"));
                }
                prev = Some(ms);
            }
            let detailed = sum(detail.iter().map(|d| d.1));
            if detailed > count || (detail.len() < MS_DETAIL && detailed != count) {
                return Err(invalid(at, "millisecond detail does not add up to the second"));
            }
            kept = kept.saturating_add(count);
            seconds.push_back(Second { sec, count, detail: detail.into_iter().map(|(ms, n)| pack(ms, n)).collect() });
        }
        if kept > span.records || (horizon == i64::MIN && kept != span.records) {
            return Err(invalid(at, "seconds do not add up to the records"));
        }
        r.entries = r.entries.saturating_add(seconds.len());
        r.layers.insert(n, RevLayer { span, seconds });
    }
    if r.entries > budget {
        return Err(invalid(at.to_string(), "more seconds than the budget"));
    }
    Ok(r)
}

impl Serialize for ExitAgg {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.to_wire().serialize(s)
    }
}

/// Embeds in other serde documents (the live-statistics delta) with the
/// same checks as [`ExitAgg::decode`].
impl<'de> Deserialize<'de> for ExitAgg {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        ExitAgg::from_wire(AggWire::deserialize(d)?).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::exit::agg::tests::ev;
    use crate::judge::RecordPath;
    use proptest::prelude::*;

    fn sample() -> ExitAgg {
        let mut a = ExitAgg::with_budget(4);
        for i in 0..40i64 {
            let path = [RecordPath::New, RecordPath::Old, RecordPath::Unknown][(i % 3) as usize];
            let svc = ["a", "b"][(i % 2) as usize];
            let rev = ["r1", "r2", "r10"][(i % 3) as usize];
            a.add(["api", "worker"][(i % 2) as usize], &ev(path, i * 137, Some(svc), None, Some(rev)));
        }
        a
    }

    #[test]
    fn round_trips() {
        let a = sample();
        let bytes = a.encode();
        assert_eq!(ExitAgg::decode(&bytes).unwrap(), a);
        assert!(a.revisions.iter().any(|r| r.horizon != i64::MIN), "the sample exercises the horizon");
        // Embedded in another document.
        let doc = serde_json::json!({"exit": a});
        let back: BTreeMap<String, ExitAgg> = serde_json::from_value(doc).unwrap();
        assert_eq!(back["exit"], a);
    }

    #[test]
    fn rejects_other_versions_and_broken_invariants() {
        assert!(matches!(ExitAgg::decode(br#"{"v":2,"budget":1}"#), Err(ExitDecodeError::Version { found: 2 })));
        assert!(matches!(ExitAgg::decode(b"[]"), Err(ExitDecodeError::Json(_))));
        assert!(matches!(ExitAgg::decode(br#"{"v":1,"budget":0}"#), Err(ExitDecodeError::Invalid { .. })));
        let bad = [
            // Paths do not add up.
            r#"{"v":1,"budget":9,"layers":{"api":{"paths":[1,0,0],"span":[2,0,0]}}}"#,
            // Old records without a taker.
            r#"{"v":1,"budget":9,"layers":{"api":{"paths":[0,1,0],"span":[1,0,0]}}}"#,
            // A revision layer the aggregate has no records for.
            r#"{"v":1,"budget":9,"revisions":[{"rev":"r","layers":{"api":{"span":[1,0,0],"seconds":[[0,1,[[0,1]]]]}}}]}"#,
            // Detail beyond a second's count.
            r#"{"v":1,"budget":9,"layers":{"api":{"paths":[1,0,0],"span":[1,0,0]}},"revisions":[{"rev":"r","layers":{"api":{"span":[1,0,0],"seconds":[[0,1,[[0,2]]]]}}}]}"#,
            // A millisecond out of range.
            r#"{"v":1,"budget":9,"layers":{"api":{"paths":[1,0,0],"span":[1,0,0]}},"revisions":[{"rev":"r","layers":{"api":{"span":[1,0,0],"seconds":[[0,1,[[1000,1]]]]}}}]}"#,
        ];
        for b in bad {
            assert!(matches!(ExitAgg::decode(b.as_bytes()), Err(ExitDecodeError::Invalid { .. })), "{b}");
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

        /// Whatever records built it, an aggregate decodes to itself.
        #[test]
        fn every_aggregate_round_trips(
            recs in prop_oneof![
                crate::exit::agg::tests::recs(crate::exit::agg::tests::DENSE, 300),
                crate::exit::agg::tests::recs(crate::exit::agg::tests::REVISIONS, 300),
                crate::exit::agg::tests::recs(crate::exit::agg::tests::TAKERS, 600),
            ],
            budget in prop_oneof![1usize..20, 100usize..200],
        ) {
            let n = crate::exit::agg::tests::all_names();
            let mut a = ExitAgg::with_budget(budget);
            crate::exit::agg::tests::add_all(&mut a, recs.iter(), &n);
            prop_assert_eq!(ExitAgg::decode(&a.encode()).unwrap(), a);
        }

        /// Arbitrary bytes, and valid encodings with bytes flipped, never
        /// panic; what decodes merges and encodes without panicking.
        #[test]
        fn decoding_untrusted_bytes_never_panics(
            noise in prop::collection::vec(any::<u8>(), 0..400),
            flips in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..8),
        ) {
            let _ = ExitAgg::decode(&noise);
            let mut bytes = sample().encode();
            for (i, b) in flips {
                let i = i.index(bytes.len());
                bytes[i] = b;
            }
            if let Ok(mut a) = ExitAgg::decode(&bytes) {
                a.merge(sample());
                let _ = a.encode();
            }
        }
    }
}
