//! The serialised form of a [`Delta`]: JSON (the stats topic's producer
//! compresses it), with a format version, names for every enum value, and
//! lag histograms in hdrhistogram's own V2 encoding, base64.
//!
//! Compatibility: a reader rejects another format version
//! ([`DecodeError::Version`]); within a version, sections and fields are
//! only ever added, as optional ones (`#[serde(default)]`), and a reader
//! ignores fields it does not know, so an older instance keeps reading what
//! a newer one writes. Decoding untrusted bytes never panics and allocates
//! no more than the input warrants: every index, name, time and histogram
//! header is checked before it is used.
//!
//! The exit review's evidence (`exits`, added within version 1) embeds the
//! exit aggregate's own versioned form ([`ExitAgg`]'s serde), checked as
//! [`ExitAgg::decode`] checks it; an instance that predates it ignores the
//! section, and a share from one (no section) has no exit evidence.

use std::collections::BTreeMap;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use hdrhistogram::serialization::{Deserializer, Serializer as _, V2Serializer};
use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

use super::delta::{
    count, merge_exit, Bucket, FeatureDelta, LagSlice, LayerCounts, L_LATE, L_MISSING, L_NEW, L_OLD, L_UNKNOWN,
};
use super::{Delta, Sample, SampleRecord, BUCKET_MS, EXIT_SLICE_MS, LAG_HIGH_MS, LAG_SLICE_MS};
use crate::catalog::{LayerId, LayerSet, MAX_LAYERS};
use crate::exit::ExitAgg;
use crate::explain::{Cause, Direction, Pair};
use crate::join::{CloseCause, Position};
use crate::judge::{DivergenceKind, RecordPath, RequestPath, Verdict};

/// The format version this build writes and reads.
pub const VERSION: u32 = 1;

/// Seconds since the epoch beyond which a bucket cannot be meant (the
/// year 300,000): keeps every time computation far from overflow.
const MAX_ABS_SEC: i64 = 10_000_000_000_000;

/// Why bytes are not a delta this build can read.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("not a live-statistics delta: {0}")]
    Json(#[source] serde_json::Error),
    #[error("live-statistics delta format version {found}; this build reads version {VERSION}")]
    Version { found: u64 },
    #[error("live-statistics delta, {at}: {what}")]
    Invalid { at: String, what: String },
}

fn invalid(at: impl Into<String>, what: impl Into<String>) -> DecodeError {
    DecodeError::Invalid { at: at.into(), what: what.into() }
}

// ------------------------------------------------------------ the wire --

fn is_zero(n: &u32) -> bool {
    *n == 0
}

fn is_unknown(d: &String) -> bool {
    d == "unknown"
}

fn unknown() -> String {
    "unknown".into()
}

#[derive(Serialize, Deserialize)]
struct DeltaWire {
    v: u64,
    layers: Vec<String>,
    #[serde(default)]
    features: BTreeMap<String, FeatureWire>,
}

#[derive(Serialize, Deserialize, Default)]
struct FeatureWire {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    buckets: Vec<BucketWire>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    lags: Vec<LagWire>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    samples: Vec<SampleWire>,
    /// The exit review's evidence by 10-second slot.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    exits: Vec<ExitWire>,
}

#[derive(Serialize, Deserialize)]
struct ExitWire {
    /// Ten-second slots since the epoch.
    slot: i64,
    /// The exit aggregate in its own versioned form.
    agg: ExitAgg,
}

#[derive(Serialize, Deserialize)]
struct BucketWire {
    /// Seconds since the epoch.
    sec: i64,
    /// Closed joins by request path, then verdict.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    requests: BTreeMap<String, BTreeMap<String, u32>>,
    /// Requests with at least one divergence of each kind.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    kinds: BTreeMap<String, u32>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    layers: Vec<LayerWire>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pairs: Vec<PairCountWire>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    causes: Vec<CauseCountWire>,
}

/// Counters of one layer (an index into the layer table).
#[derive(Serialize, Deserialize)]
struct LayerWire {
    layer: usize,
    #[serde(default, skip_serializing_if = "is_zero")]
    new: u32,
    #[serde(default, skip_serializing_if = "is_zero")]
    old: u32,
    #[serde(default, skip_serializing_if = "is_zero")]
    unknown: u32,
    #[serde(default, skip_serializing_if = "is_zero")]
    late: u32,
    #[serde(default, skip_serializing_if = "is_zero")]
    missing: u32,
}

#[derive(Serialize, Deserialize)]
struct PairWire {
    kind: String,
    upstream: usize,
    downstream: usize,
    #[serde(default = "unknown", skip_serializing_if = "is_unknown")]
    direction: String,
}

#[derive(Serialize, Deserialize)]
struct PairCountWire {
    kind: String,
    upstream: usize,
    downstream: usize,
    #[serde(default = "unknown", skip_serializing_if = "is_unknown")]
    direction: String,
    requests: u32,
    #[serde(default)]
    exposed: u32,
}

#[derive(Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum CauseWire {
    NoCapability { exposed: usize, api: usize },
    PathSplit { new: Vec<usize>, old: Vec<usize>, both: Vec<usize> },
    PayloadVersions { upstream: usize, downstream: usize },
    FlagRevisions { upstream: usize, downstream: usize },
}

#[derive(Serialize, Deserialize)]
struct CauseCountWire {
    cause: CauseWire,
    requests: u32,
    #[serde(default)]
    exposed: u32,
}

#[derive(Serialize, Deserialize)]
struct LagWire {
    /// Ten-second slots since the epoch.
    slot: i64,
    layers: Vec<HistogramWire>,
}

#[derive(Serialize, Deserialize)]
struct HistogramWire {
    layer: usize,
    /// hdrhistogram V2 encoding (uncompressed), base64.
    v2: String,
}

#[derive(Serialize, Deserialize)]
struct SampleWire {
    request_id: String,
    verdict: String,
    path: String,
    start_ms: i64,
    closed_ms: i64,
    /// Orders closes within a millisecond at the task that judged them.
    #[serde(default)]
    seq: u64,
    close_cause: String,
    #[serde(default)]
    pairs: Vec<PairWire>,
    #[serde(default)]
    cause: Option<CauseWire>,
    #[serde(default)]
    missing: Vec<usize>,
    #[serde(default)]
    records: Vec<RecordWire>,
}

#[derive(Serialize, Deserialize)]
struct RecordWire {
    layer: usize,
    #[serde(default)]
    source: u8,
    offset: u64,
    #[serde(default)]
    item: u16,
    ts_ms: i64,
    path: String,
    /// The record as received, base64; absent once it had left the sample
    /// buffer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    raw: Option<String>,
}

// ------------------------------------------------------------- encoding --

fn layer_indices(s: LayerSet) -> Vec<usize> {
    s.iter().map(LayerId::index).collect()
}

fn pair_wire(p: &Pair) -> PairWire {
    PairWire {
        kind: p.kind.as_str().into(),
        upstream: p.upstream.index(),
        downstream: p.downstream.index(),
        direction: p.direction.as_str().into(),
    }
}

fn cause_wire(c: &Cause) -> CauseWire {
    match *c {
        Cause::NoCapability { exposed, api } => CauseWire::NoCapability { exposed: exposed.index(), api: api.index() },
        Cause::PathSplit { new, old, both } => {
            CauseWire::PathSplit { new: layer_indices(new), old: layer_indices(old), both: layer_indices(both) }
        }
        Cause::PayloadVersions { upstream, downstream } => {
            CauseWire::PayloadVersions { upstream: upstream.index(), downstream: downstream.index() }
        }
        Cause::FlagRevisions { upstream, downstream } => {
            CauseWire::FlagRevisions { upstream: upstream.index(), downstream: downstream.index() }
        }
    }
}

fn bucket_wire(sec: i64, b: &Bucket) -> BucketWire {
    let mut requests: BTreeMap<String, BTreeMap<String, u32>> = BTreeMap::new();
    for p in RequestPath::ALL {
        for v in Verdict::ALL {
            let n = b.requests[p as usize][v as usize];
            if n > 0 {
                requests.entry(p.as_str().into()).or_default().insert(v.as_str().into(), n);
            }
        }
    }
    let kinds = DivergenceKind::ALL
        .iter()
        .filter(|k| b.kinds[**k as usize] > 0)
        .map(|k| (k.as_str().into(), b.kinds[*k as usize]))
        .collect();
    let layers = b
        .layers
        .iter()
        .enumerate()
        .filter(|(_, c)| c.iter().any(|n| *n > 0))
        .map(|(layer, c)| LayerWire {
            layer,
            new: c[L_NEW],
            old: c[L_OLD],
            unknown: c[L_UNKNOWN],
            late: c[L_LATE],
            missing: c[L_MISSING],
        })
        .collect();
    let mut pairs: Vec<&(Pair, u32, u32)> = b.pairs.iter().collect();
    pairs.sort_by_key(|e| e.0);
    let mut causes: Vec<&(Cause, u32, u32)> = b.causes.iter().collect();
    causes.sort_by_key(|e| e.0);
    BucketWire {
        sec,
        requests,
        kinds,
        layers,
        pairs: pairs
            .into_iter()
            .map(|(p, requests, exposed)| {
                let w = pair_wire(p);
                PairCountWire {
                    kind: w.kind,
                    upstream: w.upstream,
                    downstream: w.downstream,
                    direction: w.direction,
                    requests: *requests,
                    exposed: *exposed,
                }
            })
            .collect(),
        causes: causes
            .into_iter()
            .map(|(c, requests, exposed)| CauseCountWire {
                cause: cause_wire(c),
                requests: *requests,
                exposed: *exposed,
            })
            .collect(),
    }
}

fn histogram_wire(layer: usize, h: &Histogram<u32>) -> HistogramWire {
    let mut bytes = Vec::new();
    // Writing to a Vec fails only for counts beyond i64, which u32 counts
    // never reach.
    let _ = V2Serializer::new().serialize(h, &mut bytes);
    HistogramWire { layer, v2: BASE64.encode(bytes) }
}

fn sample_wire(s: &Sample) -> SampleWire {
    SampleWire {
        request_id: s.request_id.clone(),
        verdict: s.verdict.as_str().into(),
        path: s.path.as_str().into(),
        start_ms: s.start_ms,
        closed_ms: s.closed_ms,
        seq: s.seq,
        close_cause: s.close_cause.as_str().into(),
        pairs: s.pairs.iter().map(pair_wire).collect(),
        cause: s.cause.as_ref().map(cause_wire),
        missing: layer_indices(s.missing),
        records: s
            .records
            .iter()
            .map(|r| RecordWire {
                layer: r.layer.index(),
                source: r.pos.source,
                offset: r.pos.offset,
                item: r.pos.item,
                ts_ms: r.ts_ms,
                path: r.path.as_str().into(),
                raw: r.raw.as_ref().map(|b| BASE64.encode(b)),
            })
            .collect(),
    }
}

pub(crate) fn encode(d: &Delta) -> Vec<u8> {
    let features = d
        .features
        .iter()
        .filter(|(_, f)| !f.is_empty())
        .map(|(name, f)| {
            let w = FeatureWire {
                buckets: f.buckets.iter().map(|(sec, b)| bucket_wire(*sec, b)).collect(),
                lags: f
                    .lags
                    .iter()
                    .map(|(slot, s)| LagWire {
                        slot: *slot,
                        layers: s
                            .layers
                            .iter()
                            .enumerate()
                            .filter_map(|(l, h)| h.as_ref().map(|h| histogram_wire(l, h)))
                            .collect(),
                    })
                    .collect(),
                samples: f.samples.iter().map(sample_wire).collect(),
                exits: f.exits.iter().map(|(slot, a)| ExitWire { slot: *slot, agg: ExitAgg::clone(a) }).collect(),
            };
            (name.clone(), w)
        })
        .collect();
    let w = DeltaWire { v: u64::from(VERSION), layers: d.layers.clone(), features };
    // Strings, numbers, vectors and maps with string keys: cannot fail.
    serde_json::to_vec(&w).unwrap_or_default()
}

// ------------------------------------------------------------- decoding --

/// An enum value by its name.
fn named<T: Copy>(all: &[T], name: impl Fn(T) -> &'static str, s: &str, at: &str) -> Result<T, DecodeError> {
    all.iter().copied().find(|v| name(*v) == s).ok_or_else(|| invalid(at, format!("unknown value {s:?}")))
}

/// Checks references into one delta's layer table.
struct Layers(usize);

impl Layers {
    fn id(&self, i: usize, at: &str) -> Result<LayerId, DecodeError> {
        if i < self.0 {
            Ok(LayerId::new(i as u8))
        } else {
            Err(invalid(at, format!("layer {i} is not in the layer table of {} layers", self.0)))
        }
    }

    fn set(&self, ids: &[usize], at: &str) -> Result<LayerSet, DecodeError> {
        ids.iter().map(|i| self.id(*i, at)).collect()
    }

    fn pair(&self, kind: &str, up: usize, down: usize, dir: &str, at: &str) -> Result<Pair, DecodeError> {
        Ok(Pair {
            kind: named(&DivergenceKind::ALL, DivergenceKind::as_str, kind, at)?,
            upstream: self.id(up, at)?,
            downstream: self.id(down, at)?,
            direction: named(&Direction::ALL, Direction::as_str, dir, at)?,
        })
    }

    fn cause(&self, c: &CauseWire, at: &str) -> Result<Cause, DecodeError> {
        Ok(match c {
            CauseWire::NoCapability { exposed, api } => {
                Cause::NoCapability { exposed: self.id(*exposed, at)?, api: self.id(*api, at)? }
            }
            CauseWire::PathSplit { new, old, both } => {
                Cause::PathSplit { new: self.set(new, at)?, old: self.set(old, at)?, both: self.set(both, at)? }
            }
            CauseWire::PayloadVersions { upstream, downstream } => {
                Cause::PayloadVersions { upstream: self.id(*upstream, at)?, downstream: self.id(*downstream, at)? }
            }
            CauseWire::FlagRevisions { upstream, downstream } => {
                Cause::FlagRevisions { upstream: self.id(*upstream, at)?, downstream: self.id(*downstream, at)? }
            }
        })
    }
}

/// A count of `secs_per_unit`-second units since the epoch, checked.
fn check_time(t: i64, secs_per_unit: i64, at: &str) -> Result<i64, DecodeError> {
    if (-MAX_ABS_SEC..=MAX_ABS_SEC).contains(&t.saturating_mul(secs_per_unit)) {
        Ok(t)
    } else {
        Err(invalid(at, format!("time {t} is out of range")))
    }
}

fn bucket(w: &BucketWire, layers: &Layers, at: &str) -> Result<Bucket, DecodeError> {
    let mut b = Bucket::new(layers.0);
    for (p, verdicts) in &w.requests {
        let p = named(&RequestPath::ALL, RequestPath::as_str, p, at)?;
        for (v, n) in verdicts {
            let v = named(&Verdict::ALL, Verdict::as_str, v, at)?;
            let r = &mut b.requests[p as usize][v as usize];
            *r = r.saturating_add(*n);
        }
    }
    for (k, n) in &w.kinds {
        let k = named(&DivergenceKind::ALL, DivergenceKind::as_str, k, at)?;
        b.kinds[k as usize] = b.kinds[k as usize].saturating_add(*n);
    }
    for l in &w.layers {
        let id = layers.id(l.layer, at)?;
        let c: &mut LayerCounts = &mut b.layers[id.index()];
        for (i, n) in [(L_NEW, l.new), (L_OLD, l.old), (L_UNKNOWN, l.unknown), (L_LATE, l.late), (L_MISSING, l.missing)]
        {
            c[i] = c[i].saturating_add(n);
        }
    }
    for p in &w.pairs {
        let pair = layers.pair(&p.kind, p.upstream, p.downstream, &p.direction, at)?;
        count(&mut b.pairs, pair, p.requests, p.exposed);
    }
    for c in &w.causes {
        count(&mut b.causes, layers.cause(&c.cause, at)?, c.requests, c.exposed);
    }
    Ok(b)
}

/// hdrhistogram's V2 cookie, uncompressed.
const V2_COOKIE: u32 = 0x1c84_9313;
const V2_HEADER: usize = 40;

/// Decodes a lag histogram, refusing anything but the bounds every
/// instance uses before hdrhistogram allocates for it, and any count that
/// hdrhistogram's decoder would overflow on.
fn histogram(s: &str, at: &str) -> Result<Histogram<u32>, DecodeError> {
    let bytes = BASE64.decode(s).map_err(|e| invalid(at, format!("histogram is not base64: {e}")))?;
    let be32 = |i: usize| bytes.get(i..i + 4).map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]));
    let be64 = |i: usize| bytes.get(i..i + 8).map(|b| u64::from_be_bytes(b.try_into().unwrap_or([0; 8])));
    let bad = |what: &str| invalid(at, format!("histogram {what}"));
    if bytes.len() < V2_HEADER || be32(0) != Some(V2_COOKIE) {
        return Err(bad("is not in the V2 encoding"));
    }
    if be32(4).map(|n| n as usize) != Some(bytes.len() - V2_HEADER) {
        return Err(bad("payload length does not match"));
    }
    if be32(8) != Some(0) || be32(12) != Some(1) || be64(16) != Some(1) || be64(24) != Some(LAG_HIGH_MS) {
        return Err(bad(&format!("bounds differ from 1 ms … {LAG_HIGH_MS} ms, 1 significant digit")));
    }
    // The counts: LEB128 (8 × 7 bits, then a whole 9th byte), zig-zag
    // encoded; a negative value is a run of zeros.
    let mut payload = &bytes[V2_HEADER..];
    while !payload.is_empty() {
        let mut v: u64 = 0;
        let mut used = 0;
        for (i, b) in payload.iter().enumerate().take(9) {
            used = i + 1;
            if i == 8 {
                v |= u64::from(*b) << 56;
                break;
            }
            v |= u64::from(b & 0x7f) << (7 * i);
            if b & 0x80 == 0 {
                break;
            }
        }
        let last = payload[used - 1];
        if used < 9 && last & 0x80 != 0 {
            return Err(bad("ends inside a number"));
        }
        let n = ((v >> 1) as i64) ^ -((v & 1) as i64);
        if n > i64::from(u32::MAX) || n < -(1 << 32) {
            return Err(bad("has a count out of range"));
        }
        payload = &payload[used..];
    }
    Deserializer::new().deserialize(&mut &bytes[..]).map_err(|e| invalid(at, format!("histogram: {e}")))
}

fn sample(w: &SampleWire, layers: &Layers, at: &str) -> Result<Sample, DecodeError> {
    let records = w
        .records
        .iter()
        .map(|r| {
            Ok(SampleRecord {
                layer: layers.id(r.layer, at)?,
                pos: Position { source: r.source, offset: r.offset, item: r.item },
                ts_ms: r.ts_ms,
                path: named(&RecordPath::ALL, RecordPath::as_str, &r.path, at)?,
                raw: match &r.raw {
                    Some(s) => Some(
                        BASE64
                            .decode(s)
                            .map_err(|e| invalid(at, format!("record bytes are not base64: {e}")))?
                            .into_boxed_slice(),
                    ),
                    None => None,
                },
            })
        })
        .collect::<Result<Vec<_>, DecodeError>>()?;
    Ok(Sample {
        request_id: w.request_id.clone(),
        verdict: named(&Verdict::ALL, Verdict::as_str, &w.verdict, at)?,
        path: named(&RequestPath::ALL, RequestPath::as_str, &w.path, at)?,
        start_ms: w.start_ms,
        closed_ms: w.closed_ms,
        seq: w.seq,
        close_cause: named(&CloseCause::ALL, CloseCause::as_str, &w.close_cause, at)?,
        pairs: w
            .pairs
            .iter()
            .map(|p| layers.pair(&p.kind, p.upstream, p.downstream, &p.direction, at))
            .collect::<Result<_, _>>()?,
        cause: w.cause.as_ref().map(|c| layers.cause(c, at)).transpose()?,
        missing: layers.set(&w.missing, at)?,
        records,
    })
}

fn feature(name: &str, w: FeatureWire, layers: &Layers) -> Result<FeatureDelta, DecodeError> {
    let mut f = FeatureDelta::default();
    for b in &w.buckets {
        let at = format!("feature {name:?}, second {}", b.sec);
        let sec = check_time(b.sec, BUCKET_MS / 1000, &at)?;
        let b = bucket(b, layers, &at)?;
        match f.buckets.get_mut(&sec) {
            Some(a) => a.add(b),
            None => {
                f.buckets.insert(sec, b);
            }
        }
    }
    for s in &w.lags {
        let at = format!("feature {name:?}, lag slot {}", s.slot);
        let slot = check_time(s.slot, LAG_SLICE_MS / 1000, &at)?;
        let mut slice = LagSlice::new(layers.0);
        for h in &s.layers {
            let id = layers.id(h.layer, &at)?;
            let h = histogram(&h.v2, &at)?;
            let mut one = LagSlice::new(layers.0);
            one.layers[id.index()] = Some(h);
            slice.add(one);
        }
        match f.lags.get_mut(&slot) {
            Some(a) => a.add(slice),
            None => {
                f.lags.insert(slot, slice);
            }
        }
    }
    for (i, s) in w.samples.iter().enumerate() {
        f.samples.push(sample(s, layers, &format!("feature {name:?}, sample {i}"))?);
    }
    for e in w.exits {
        let at = format!("feature {name:?}, exit slot {}", e.slot);
        let slot = check_time(e.slot, EXIT_SLICE_MS / 1000, &at)?;
        if !e.agg.is_empty() {
            merge_exit(&mut f.exits, slot, std::sync::Arc::new(e.agg));
        }
    }
    f.normalize();
    Ok(f)
}

pub(crate) fn decode(bytes: &[u8]) -> Result<Delta, DecodeError> {
    let w: DeltaWire = match serde_json::from_slice(bytes) {
        Ok(w) => w,
        Err(e) => {
            // Another version may not parse as this one: say so.
            #[derive(Deserialize)]
            struct Version {
                v: u64,
            }
            return Err(match serde_json::from_slice::<Version>(bytes) {
                Ok(Version { v }) if v != u64::from(VERSION) => DecodeError::Version { found: v },
                _ => DecodeError::Json(e),
            });
        }
    };
    if w.v != u64::from(VERSION) {
        return Err(DecodeError::Version { found: w.v });
    }
    if w.layers.len() > MAX_LAYERS {
        return Err(invalid("layer table", format!("{} layers, at most {MAX_LAYERS}", w.layers.len())));
    }
    for (i, l) in w.layers.iter().enumerate() {
        if w.layers[..i].contains(l) {
            return Err(invalid("layer table", format!("layer {l:?} is listed twice")));
        }
    }
    let layers = Layers(w.layers.len());
    let mut d = Delta::new(w.layers.clone());
    for (name, f) in w.features {
        let f = feature(&name, f, &layers)?;
        if !f.is_empty() {
            d.features.insert(name, f);
        }
    }
    Ok(d)
}

impl Delta {
    /// The delta as bytes (JSON, see the `wire` module header).
    pub fn encode(&self) -> Vec<u8> {
        encode(self)
    }

    /// A delta from bytes written by [`Delta::encode`] of this format
    /// version; anything else is an error, never a panic.
    pub fn decode(bytes: &[u8]) -> Result<Delta, DecodeError> {
        decode(bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::live::delta::lag_histogram;
    use proptest::prelude::*;

    fn valid() -> Vec<u8> {
        let mut h = lag_histogram();
        for v in [1, 5, 40, 300, 7_000, 3_600_000, 9_999_999] {
            h.saturating_record(v);
        }
        let hist = histogram_wire(2, &h).v2;
        format!(
            r#"{{"v":1,"layers":["frontend","api","worker","analytics"],"features":{{"checkout_v2":{{
              "buckets":[{{"sec":1800000000,"requests":{{"mixed":{{"diverge":2}},"new":{{"agree":5}}}},
                "kinds":{{"path_mismatch":2}},"layers":[{{"layer":0,"new":4,"late":1}},{{"layer":3,"missing":1}}],
                "pairs":[{{"kind":"path_mismatch","upstream":0,"downstream":1,"direction":"upstream_new","requests":2,"exposed":2}}],
                "causes":[{{"cause":{{"type":"path_split","new":[0],"old":[1,2],"both":[]}},"requests":2,"exposed":2}}]}}],
              "lags":[{{"slot":180000000,"layers":[{{"layer":2,"v2":"{hist}"}}]}}],
              "samples":[{{"request_id":"a","verdict":"diverge","path":"mixed","start_ms":1800000000000,
                "closed_ms":1800000000500,"close_cause":"window","pairs":[{{"kind":"snapshot_skew","upstream":1,"downstream":1}}],
                "cause":{{"type":"flag_revisions","upstream":1,"downstream":1}},"missing":[3],
                "records":[{{"layer":1,"offset":7,"ts_ms":1800000000000,"path":"old","raw":"eyJhIjoxfQ=="}}]}}]}}}}}}"#
        )
        .into_bytes()
    }

    #[test]
    fn reads_what_it_documents() {
        let d = Delta::decode(&valid()).unwrap();
        let w = d.window("checkout_v2", 1_800_000_000_999, 1_000).unwrap();
        assert_eq!((w.total(), w.exposed_agreement()), (7, Some(5.0 / 7.0)));
        assert_eq!((w.layers[0].new, w.layers[0].late, w.layers[3].missing), (4, 1, 1));
        assert_eq!(w.pairs[0].pair.direction, Direction::UpstreamNew);
        assert_eq!(
            w.causes[0].cause,
            Cause::PathSplit {
                new: LayerSet::of(LayerId::new(0)),
                old: [LayerId::new(1), LayerId::new(2)].into_iter().collect(),
                both: LayerSet::EMPTY
            }
        );
        let lags = &w.layers[2];
        assert_eq!(lags.lag_samples, 7);
        // 1 significant digit: within 6.25 %.
        assert!(lags.lag_p50_ms.is_some_and(|p| (300..=318).contains(&p)), "{:?}", lags.lag_p50_ms);
        let s = &d.samples("checkout_v2", 1)[0];
        assert_eq!(s.records[0].raw.as_deref(), Some(&br#"{"a":1}"#[..]));
        assert_eq!(s.records[0].pos, Position::new(0, 7));
        assert_eq!(s.missing, LayerSet::of(LayerId::new(3)));
        assert_eq!(Delta::decode(&d.encode()).unwrap(), d);
    }

    #[test]
    fn sections_and_fields_it_does_not_know_are_ignored() {
        let text = String::from_utf8(valid()).unwrap();
        let newer = text.replacen(r#""v":1,"#, r#""v":1,"instance":"accord-7","#, 1).replacen(
            r#""buckets":"#,
            r#""old_path_takers":[{"layer":2,"service":"w","build":"b1","records":3}],"buckets":"#,
            1,
        );
        assert_eq!(Delta::decode(newer.as_bytes()).unwrap(), Delta::decode(&valid()).unwrap());
        // Sections may be absent.
        let d = Delta::decode(br#"{"v":1,"layers":["a"],"features":{"f":{}}}"#).unwrap();
        assert!(d.is_empty());
    }

    #[test]
    fn another_version_or_broken_content_is_an_error() {
        let err = |b: &[u8]| Delta::decode(b).unwrap_err();
        assert!(matches!(err(br#"{"v":2,"layers":{},"features":7}"#), DecodeError::Version { found: 2 }));
        assert!(matches!(err(br#"{"v":2,"layers":[]}"#), DecodeError::Version { found: 2 }));
        assert!(matches!(err(b"\x28\xb5\x2f\xfd"), DecodeError::Json(_)));
        assert!(matches!(err(br#"{"layers":[]}"#), DecodeError::Json(_)));
        let text = String::from_utf8(valid()).unwrap();
        let bad = |from: &str, to: &str| {
            assert!(text.contains(from), "{from}");
            err(text.replacen(from, to, 1).as_bytes()).to_string()
        };
        assert!(bad(r#"{"layer":3,"missing":1}"#, r#"{"layer":4,"missing":1}"#)
            .contains("layer 4 is not in the layer table"));
        assert!(bad(r#""kind":"path_mismatch","upstream""#, r#""kind":"nope","upstream""#)
            .contains("unknown value \"nope\""));
        assert!(bad(r#""diverge":2"#, r#""maybe":2"#).contains("unknown value"));
        assert!(bad(r#""type":"path_split""#, r#""type":"sunspots""#).contains("not a live-statistics delta"));
        assert!(bad(r#""sec":1800000000"#, r#""sec":-9223372036854775808"#).contains("out of range"));
        assert!(bad(r#""slot":180000000"#, r#""slot":9223372036854775807"#).contains("out of range"));
        assert!(bad(r#""raw":"eyJhIjoxfQ==""#, r#""raw":"%%%""#).contains("not base64"));
        assert!(bad(r#""worker","analytics"]"#, r#""worker","api"]"#).contains("listed twice"));
        let many: Vec<String> = (0..65).map(|i| format!("\"l{i}\"")).collect();
        assert!(
            bad(r#"["frontend","api","worker","analytics"]"#, &format!("[{}]", many.join(","))).contains("at most 64")
        );
    }

    #[test]
    fn exit_evidence_travels_in_its_own_versioned_form() {
        use crate::join::{Evidence, Observer};
        let f = crate::live::recorder::tests::features();
        let mut r = crate::live::Recorder::new(f, 1_800_000_004_000);
        for (i, rev) in ["r41", "r42", "r42"].iter().enumerate() {
            r.evidence(&Evidence {
                feature: crate::features::FeatureId::new(0),
                layer: LayerId::new(2),
                path: RecordPath::ALL[i],
                ts_ms: 1_800_000_000_000 + i as i64 * 1_500,
                service: Some("fulfilment-worker"),
                build: (i == 1).then_some("2026.11.12-1a2b3c4"),
                revision: Some(rev),
            });
        }
        let d = r.take();
        let text = String::from_utf8(d.encode()).unwrap();
        assert!(text.contains(r#""exits":[{"slot":180000000,"agg":{"v":1,"budget":16384,"#), "{text}");
        let back = Delta::decode(text.as_bytes()).unwrap();
        assert_eq!(back, d);
        let agg = back.exit_evidence("checkout_v2", 1_800_000_004_000, 10_000).unwrap();
        assert_eq!(agg.layers()["worker"].paths, [1, 1, 1]);
        // A writer that predates exit evidence: none, and nothing else lost.
        let old = Delta::decode(&valid()).unwrap();
        assert!(old.exit_evidence("checkout_v2", 1_800_000_000_999, 10_000).unwrap().is_empty());
        // The aggregate's own version and checks apply inside the delta.
        let err = |from: &str, to: &str| {
            assert!(text.contains(from), "{from}");
            Delta::decode(text.replacen(from, to, 1).as_bytes()).unwrap_err().to_string()
        };
        assert!(err(r#""agg":{"v":1,"#, r#""agg":{"v":2,"#).contains("format version 2"));
        assert!(err(r#""slot":180000000"#, r#""slot":9223372036854775807"#).contains("out of range"));
        assert!(err(r#""paths":[1,1,1]"#, r#""paths":[1,1,2]"#).contains("do not add up"));
    }

    fn hist_error(bytes: &[u8]) -> String {
        histogram(&BASE64.encode(bytes), "test").unwrap_err().to_string()
    }

    #[test]
    fn hostile_histograms_are_refused_before_hdrhistogram_sees_them() {
        let mut h = lag_histogram();
        h.saturating_record(12);
        let good = BASE64.decode(histogram_wire(0, &h).v2).unwrap();
        assert_eq!(histogram(&BASE64.encode(&good), "test").unwrap(), h);
        let header = |payload: &[u8], high: u64| {
            let mut b = good[..V2_HEADER].to_vec();
            b[4..8].copy_from_slice(&(payload.len() as u32).to_be_bytes());
            b[24..32].copy_from_slice(&high.to_be_bytes());
            b.extend_from_slice(payload);
            b
        };
        // Bounds that would make hdrhistogram allocate for 2^63.
        assert!(hist_error(&header(&[2], u64::MAX)).contains("bounds"));
        // A payload length that would make it allocate 4 GiB.
        let mut long = good.clone();
        long[4..8].copy_from_slice(&u32::MAX.to_be_bytes());
        assert!(hist_error(&long).contains("payload length"));
        // A zig-zag value of i64::MIN: hdrhistogram negates it.
        assert!(hist_error(&header(&[0xff; 9], LAG_HIGH_MS)).contains("out of range"));
        // Counts beyond u32, a number cut short, a run past the end.
        assert!(hist_error(&header(&[0x80, 0x80, 0x80, 0x80, 0x20], LAG_HIGH_MS)).contains("out of range"));
        assert!(hist_error(&header(&[0x80], LAG_HIGH_MS)).contains("ends inside"));
        let past_end = [0x81, 0x40, 0x02];
        assert!(hist_error(&header(&past_end, LAG_HIGH_MS)).contains("histogram"));
        assert!(hist_error(&good[..V2_HEADER - 1]).contains("V2"));
        let mut compressed = good.clone();
        compressed[3] = 0x14;
        assert!(hist_error(&compressed).contains("V2"));
    }

    proptest! {
        /// Decoding arbitrary bytes never panics.
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = Delta::decode(&bytes);
        }

        /// Nor does decoding a valid delta with bytes changed, cut or
        /// inserted anywhere, nor a histogram with its bytes changed.
        #[test]
        fn mutated_deltas_never_panic(
            edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>(), 0..3u8), 1..8),
            cut in any::<prop::sample::Index>(),
        ) {
            let mut bytes = valid();
            for (at, b, how) in &edits {
                let i = at.index(bytes.len());
                match how {
                    0 => bytes[i] = *b,
                    1 => bytes.insert(i, *b),
                    _ => { bytes.remove(i); }
                }
            }
            let _ = Delta::decode(&bytes);
            bytes.truncate(cut.index(bytes.len() + 1));
            let _ = Delta::decode(&bytes);
        }

        #[test]
        fn mutated_histograms_never_panic(
            edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..6),
            tail in proptest::collection::vec(any::<u8>(), 0..24),
        ) {
            let mut h = lag_histogram();
            for v in [3, 70, 900, 12_000] {
                h.saturating_record(v);
            }
            let mut bytes = BASE64.decode(histogram_wire(0, &h).v2).unwrap();
            bytes.extend_from_slice(&tail);
            let n = bytes.len() - V2_HEADER;
            bytes[4..8].copy_from_slice(&(n as u32).to_be_bytes());
            // Edits in the payload keep the header valid, so hdrhistogram's
            // decoder runs on them.
            for (at, b) in &edits {
                let i = V2_HEADER + at.index(n.max(1)).min(n.saturating_sub(1));
                if i < bytes.len() {
                    bytes[i] = *b;
                }
            }
            let _ = histogram(&BASE64.encode(&bytes), "test");
        }
    }
}
