//! Judge stage: the release path of one record, and the verdict of one
//! closed join (docs/reference.md#join-and-verdict-semantics). Pure
//! functions over compact [`Facts`], so the
//! rules are tested without a join engine, a clock or a broker.

pub mod revisions;

use crate::catalog::{FeatureSpec, LayerId, LayerSet};
use crate::decode::{FlagState, Record};

/// The release state one record acted on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum RecordPath {
    New = 0,
    Old = 1,
    Unknown = 2,
}

impl RecordPath {
    pub const ALL: [RecordPath; 3] = [RecordPath::New, RecordPath::Old, RecordPath::Unknown];
    pub fn as_str(self) -> &'static str {
        match self {
            RecordPath::New => "new",
            RecordPath::Old => "old",
            RecordPath::Unknown => "unknown",
        }
    }
}

/// The path of a whole request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RequestPath {
    New = 0,
    Old = 1,
    Mixed = 2,
    Unknown = 3,
}

impl RequestPath {
    pub const ALL: [RequestPath; 4] = [RequestPath::New, RequestPath::Old, RequestPath::Mixed, RequestPath::Unknown];
    pub fn as_str(self) -> &'static str {
        match self {
            RequestPath::New => "new",
            RequestPath::Old => "old",
            RequestPath::Mixed => "mixed",
            RequestPath::Unknown => "unknown",
        }
    }
    /// Requests that touched the new path count towards exposed agreement.
    pub fn exposed(self) -> bool {
        matches!(self, RequestPath::New | RequestPath::Mixed)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Verdict {
    Agree = 0,
    Degraded = 1,
    Incomplete = 2,
    Diverge = 3,
}

impl Verdict {
    pub const ALL: [Verdict; 4] = [Verdict::Agree, Verdict::Degraded, Verdict::Incomplete, Verdict::Diverge];
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Agree => "agree",
            Verdict::Degraded => "degraded",
            Verdict::Incomplete => "incomplete",
            Verdict::Diverge => "diverge",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum DivergenceKind {
    PathMismatch = 0,
    ExposureWithoutCapability = 1,
    PayloadVersionMismatch = 2,
    SnapshotSkew = 3,
}

impl DivergenceKind {
    pub const ALL: [DivergenceKind; 4] = [
        DivergenceKind::PathMismatch,
        DivergenceKind::ExposureWithoutCapability,
        DivergenceKind::PayloadVersionMismatch,
        DivergenceKind::SnapshotSkew,
    ];
    pub fn as_str(self) -> &'static str {
        match self {
            DivergenceKind::PathMismatch => "path_mismatch",
            DivergenceKind::ExposureWithoutCapability => "exposure_without_capability",
            DivergenceKind::PayloadVersionMismatch => "payload_version_mismatch",
            DivergenceKind::SnapshotSkew => "snapshot_skew",
        }
    }
}

/// One divergence of a closed join: counted once per join, kind and pair.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Divergence {
    pub kind: DivergenceKind,
    /// The pair in pipeline order (`upstream <= downstream`).
    pub upstream: LayerId,
    pub downstream: LayerId,
}

/// What an `api` record said about the capability the new path needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Capability {
    /// Not an api record, no `api_capability`, or no `new_capability`.
    Unknown = 0,
    Matches = 1,
    Differs = 2,
}

/// Everything the judge needs of one record, in 40 bytes: values that
/// are only compared for equality are kept as 64-bit hashes of their
/// text (0 = absent), so a join holds no strings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Facts {
    /// Where the record came from: its offset in its source (Kafka
    /// offset; line of a file), see `source` and `item`.
    pub offset: u64,
    pub ts_ms: i64,
    pub payload: u64,
    pub revision: u64,
    pub layer: LayerId,
    pub path: RecordPath,
    pub degraded: bool,
    pub capability: Capability,
    /// The index of the record's source in its stream (a topic of the
    /// stream's topics; a file of a merged replay).
    pub source: u8,
    /// The record's index among the records of one message (an
    /// OpenTelemetry export request holds many).
    pub item: u16,
}

impl Facts {
    /// Where the record came from.
    pub fn position(&self) -> crate::position::Position {
        crate::position::Position { source: self.source, offset: self.offset, item: self.item }
    }
}

/// FNV-1a: stable across runs and platforms, and 0 is reserved for
/// "absent".
pub fn text_hash(s: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in s.as_bytes() {
        h ^= *b as u64;
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h.max(1)
}

/// Rule 3's test: the flag evaluation says "new".
fn flag_says_new(flag: &FlagState<'_>, spec: &FeatureSpec) -> bool {
    match flag {
        FlagState::Bool(b) => *b,
        FlagState::Variant(v) => v == "on" || v == "true" || spec.new_flow.as_deref() == Some(v.as_ref()),
    }
}

/// The path of one record (docs/reference.md#path-of-a-record: the first
/// rule that applies).
pub fn record_path(d: &Record<'_>, spec: &FeatureSpec) -> RecordPath {
    let eq = |b: bool| if b { RecordPath::New } else { RecordPath::Old };
    if let (Some(flow), Some(new)) = (&d.selected_flow, &spec.new_flow) {
        return eq(flow == new);
    }
    if let (Some(v), Some(new)) = (&d.job_payload_version, &spec.new_payload_version) {
        return eq(v == new);
    }
    if let Some(flag) = &d.flag_state {
        return eq(flag_says_new(flag, spec));
    }
    RecordPath::Unknown
}

/// Reduces a validated record to the facts the judge compares.
pub fn facts(
    d: &Record<'_>,
    spec: &FeatureSpec,
    layer: LayerId,
    api_layer: Option<LayerId>,
    at: crate::position::Position,
    ts_ms: i64,
) -> Facts {
    let path = record_path(d, spec);
    let degraded = path == RecordPath::Old && d.flag_state.as_ref().is_some_and(|f| flag_says_new(f, spec));
    let capability = match (&spec.new_capability, &d.api_capability) {
        (Some(need), Some(cap)) if Some(layer) == api_layer => {
            if cap == need {
                Capability::Matches
            } else {
                Capability::Differs
            }
        }
        _ => Capability::Unknown,
    };
    Facts {
        offset: at.offset,
        source: at.source,
        item: at.item,
        ts_ms,
        payload: d.job_payload_version.as_deref().map_or(0, text_hash),
        revision: d.flags_revision.as_deref().map_or(0, text_hash),
        layer,
        path,
        degraded,
        capability,
    }
}

/// The judgement of one closed join.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Judgement {
    pub verdict: Verdict,
    pub path: RequestPath,
    /// Expected layers that never reported.
    pub missing: LayerSet,
    /// Layers that reported.
    pub reported: LayerSet,
}

fn pair(kind: DivergenceKind, a: LayerId, b: LayerId) -> Divergence {
    Divergence { kind, upstream: a.min(b), downstream: a.max(b) }
}

fn push_unique(out: &mut Vec<Divergence>, d: Divergence) {
    if !out.contains(&d) {
        out.push(d);
    }
}

/// Judges a closed join. `divergences` is cleared and filled (a buffer
/// the caller reuses, so closing a join allocates nothing).
pub fn judge(expect: LayerSet, recs: &[Facts], divergences: &mut Vec<Divergence>) -> Judgement {
    divergences.clear();
    let mut reported = LayerSet::EMPTY;
    let (mut any_new, mut any_old, mut any_degraded) = (false, false, false);
    for (i, a) in recs.iter().enumerate() {
        reported.insert(a.layer);
        any_new |= a.path == RecordPath::New;
        any_old |= a.path == RecordPath::Old;
        any_degraded |= a.degraded;
        for b in &recs[i + 1..] {
            if a.path != RecordPath::Unknown && b.path != RecordPath::Unknown && a.path != b.path {
                push_unique(divergences, pair(DivergenceKind::PathMismatch, a.layer, b.layer));
            }
            if a.payload != 0 && b.payload != 0 && a.payload != b.payload {
                push_unique(divergences, pair(DivergenceKind::PayloadVersionMismatch, a.layer, b.layer));
            }
            if a.revision != 0 && b.revision != 0 && a.revision != b.revision {
                push_unique(divergences, pair(DivergenceKind::SnapshotSkew, a.layer, b.layer));
            }
        }
    }
    if any_new {
        for api in recs.iter().filter(|r| r.capability == Capability::Differs) {
            for exposed in recs.iter().filter(|r| r.path == RecordPath::New) {
                push_unique(divergences, pair(DivergenceKind::ExposureWithoutCapability, exposed.layer, api.layer));
            }
        }
    }
    let missing = expect.minus(reported);
    let verdict = if !divergences.is_empty() {
        Verdict::Diverge
    } else if !missing.is_empty() {
        Verdict::Incomplete
    } else if any_degraded {
        Verdict::Degraded
    } else {
        Verdict::Agree
    };
    let path = match (any_new, any_old) {
        (true, true) => RequestPath::Mixed,
        (true, false) => RequestPath::New,
        (false, true) => RequestPath::Old,
        (false, false) => RequestPath::Unknown,
    };
    Judgement { verdict, path, missing, reported }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::Catalog;
    use crate::decode::decode;
    use proptest::prelude::*;

    const L0: LayerId = LayerId::new(0);
    const L1: LayerId = LayerId::new(1);
    const L2: LayerId = LayerId::new(2);
    const L3: LayerId = LayerId::new(3);

    fn catalog() -> Catalog {
        Catalog::parse(std::path::Path::new("c.toml"), include_str!("../../tests/conformance/catalog.toml")).unwrap()
    }

    fn fact(json: &str) -> Facts {
        let c = catalog();
        let d = decode(json.as_bytes()).unwrap();
        let spec = c.feature(&d.feature).unwrap();
        facts(&d, spec, c.layer_id(&d.layer).unwrap(), c.api_layer, crate::position::Position::default(), 0)
    }

    fn rec(layer: &str, extra: &str) -> Facts {
        fact(&format!(r#"{{"request_id":"a","layer":"{layer}","feature":"checkout_v2"{extra}}}"#))
    }

    #[test]
    fn path_rules_in_order() {
        assert_eq!(rec("api", r#","selected_flow":"v2","job_payload_version":1"#).path, RecordPath::New);
        assert_eq!(rec("api", r#","selected_flow":"v1","flag_state":true"#).path, RecordPath::Old);
        assert_eq!(rec("worker", r#","job_payload_version":2,"flag_state":false"#).path, RecordPath::New);
        assert_eq!(rec("worker", r#","job_payload_version":"1""#).path, RecordPath::Old);
        for on in [r#"true"#, r#""on""#, r#""true""#, r#""v2""#] {
            assert_eq!(rec("frontend", &format!(r#","flag_state":{on}"#)).path, RecordPath::New, "{on}");
        }
        for off in [r#"false"#, r#""off""#, r#""v1""#, r#""ON""#] {
            assert_eq!(rec("frontend", &format!(r#","flag_state":{off}"#)).path, RecordPath::Old, "{off}");
        }
        assert_eq!(rec("frontend", r#","service":"web""#).path, RecordPath::Unknown);
        // selected_flow without new_flow in the catalog falls through
        let r = fact(
            r#"{"request_id":"a","layer":"api","feature":"search.ranking","job_payload_version":3,"flag_state":"on"}"#,
        );
        assert_eq!(r.path, RecordPath::New);
    }

    #[test]
    fn degraded_means_flag_on_but_old_path() {
        assert!(rec("frontend", r#","flag_state":true,"selected_flow":"v1""#).degraded);
        assert!(!rec("frontend", r#","flag_state":false,"selected_flow":"v1""#).degraded);
        assert!(!rec("frontend", r#","flag_state":true,"selected_flow":"v2""#).degraded);
    }

    #[test]
    fn capability_only_from_api_records() {
        assert_eq!(rec("api", r#","api_capability":"v1""#).capability, Capability::Differs);
        assert_eq!(rec("api", r#","api_capability":"v2""#).capability, Capability::Matches);
        assert_eq!(rec("frontend", r#","api_capability":"v1""#).capability, Capability::Unknown);
    }

    fn run(recs: &[Facts]) -> (Judgement, Vec<Divergence>) {
        let mut d = Vec::new();
        let j = judge(LayerSet::from_bits(0b1111), recs, &mut d);
        d.sort();
        (j, d)
    }

    #[test]
    fn verdict_order() {
        let agree = [
            rec("frontend", r#","selected_flow":"v2""#),
            rec("api", r#","selected_flow":"v2""#),
            rec("worker", r#","job_payload_version":2"#),
            rec("analytics", ""),
        ];
        assert_eq!(run(&agree).0.verdict, Verdict::Agree);
        assert_eq!(run(&agree).0.path, RequestPath::New);
        assert_eq!(run(&agree[..3]).0.verdict, Verdict::Incomplete);
        assert_eq!(run(&agree[..3]).0.missing, LayerSet::from_bits(0b1000));
        let mut degraded = agree;
        degraded[0] = rec("frontend", r#","flag_state":true,"selected_flow":"v1""#);
        // frontend old vs api new: diverge beats degraded
        assert_eq!(run(&degraded).0.verdict, Verdict::Diverge);
        assert_eq!(run(&degraded).0.path, RequestPath::Mixed);
        let only_degraded =
            [rec("frontend", r#","flag_state":true,"selected_flow":"v1""#), rec("api", r#","selected_flow":"v1""#)];
        assert_eq!(run(&only_degraded).0.verdict, Verdict::Incomplete, "incomplete beats degraded");
        let mut d = Vec::new();
        assert_eq!(judge(LayerSet::from_bits(0b0011), &only_degraded, &mut d).verdict, Verdict::Degraded);
        assert_eq!(
            run(&[rec("frontend", ""), rec("api", ""), rec("worker", ""), rec("analytics", "")]).0.path,
            RequestPath::Unknown
        );
    }

    #[test]
    fn each_divergence_kind_with_its_pair() {
        let (_, d) = run(&[rec("frontend", r#","selected_flow":"v2""#), rec("analytics", r#","selected_flow":"v1""#)]);
        assert_eq!(d, [Divergence { kind: DivergenceKind::PathMismatch, upstream: L0, downstream: L3 }]);
        // listed downstream-first still yields upstream <= downstream
        let (_, d) = run(&[rec("worker", r#","job_payload_version":1"#), rec("api", r#","job_payload_version":2"#)]);
        assert!(d.contains(&Divergence { kind: DivergenceKind::PayloadVersionMismatch, upstream: L1, downstream: L2 }));
        let (_, d) = run(&[rec("worker", r#","flags_revision":"r1""#), rec("worker", r#","flags_revision":"r2""#)]);
        assert_eq!(d, [Divergence { kind: DivergenceKind::SnapshotSkew, upstream: L2, downstream: L2 }]);
        let (_, d) = run(&[rec("worker", r#","job_payload_version":2"#), rec("api", r#","api_capability":"v1""#)]);
        assert_eq!(d, [Divergence { kind: DivergenceKind::ExposureWithoutCapability, upstream: L1, downstream: L2 }]);
        // the api record itself on the new path without the capability
        let (_, d) = run(&[rec("api", r#","api_capability":"v1","selected_flow":"v2""#)]);
        assert_eq!(d, [Divergence { kind: DivergenceKind::ExposureWithoutCapability, upstream: L1, downstream: L1 }]);
        // no new path, no exposure divergence
        let (_, d) = run(&[rec("frontend", r#","selected_flow":"v1""#), rec("api", r#","api_capability":"v1""#)]);
        assert!(d.is_empty());
    }

    #[test]
    fn counted_once_per_kind_and_pair() {
        let recs = [
            rec("frontend", r#","selected_flow":"v2""#),
            rec("worker", r#","job_payload_version":1"#),
            rec("worker", r#","job_payload_version":1"#),
        ];
        let (_, d) = run(&recs);
        assert_eq!(
            d.iter()
                .filter(|d| d.kind == DivergenceKind::PathMismatch && d.upstream == L0 && d.downstream == L2)
                .count(),
            1
        );
    }

    fn arb_facts() -> impl Strategy<Value = Facts> {
        (0u8..4, 0u8..3, any::<bool>(), 0u64..3, 0u64..3, 0u8..3).prop_map(
            |(layer, p, degraded, payload, revision, cap)| Facts {
                offset: 0,
                source: 0,
                item: 0,
                ts_ms: 0,
                payload,
                revision,
                layer: LayerId::new(layer),
                path: RecordPath::ALL[p as usize],
                degraded,
                capability: [Capability::Unknown, Capability::Matches, Capability::Differs][cap as usize],
            },
        )
    }

    proptest! {
        #[test]
        fn judgement_does_not_depend_on_record_order(mut recs in proptest::collection::vec(arb_facts(), 0..8), seed in any::<u64>()) {
            let (a, da) = run(&recs);
            // a deterministic shuffle
            let n = recs.len();
            let mut s = seed;
            for i in (1..n).rev() {
                s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                recs.swap(i, (s >> 33) as usize % (i + 1));
            }
            let (b, db) = run(&recs);
            prop_assert_eq!(a, b);
            prop_assert_eq!(da, db);
        }

        #[test]
        fn verdict_consistent_with_parts(recs in proptest::collection::vec(arb_facts(), 0..8)) {
            let (j, d) = run(&recs);
            prop_assert_eq!(j.verdict == Verdict::Diverge, !d.is_empty());
            for x in &d { prop_assert!(x.upstream <= x.downstream); }
            if j.path == RequestPath::Mixed { prop_assert_eq!(j.verdict, Verdict::Diverge); }
            prop_assert!(j.missing.intersection(j.reported).is_empty());
        }
    }
}
