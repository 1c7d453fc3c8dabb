//! OpenTelemetry input: one OTLP export request (`ExportLogsServiceRequest`
//! or `ExportTraceServiceRequest`, OTLP/JSON or protobuf) into the flag
//! evaluations it holds, each mapped onto a decision record the way the
//! OpenFeature semantic conventions for flag-evaluation events lay them
//! out, in message order.
//!
//! Decoding is two steps. [`json`] and [`proto`] walk the message once and
//! fill a [`Builder`]: one [`Ctx`] per resource and per span (the
//! attributes accord may read there, and the span's trace id) and one
//! [`Item`] per evaluation (its own attributes, body, time and trace id);
//! items that are not evaluations are only counted. Nothing borrowed from
//! the message is copied, and only the attributes accord reads are kept.
//! Only when the whole message parsed are items mapped onto records
//! ([`Decoded::records`]): a message that is not a valid export request is
//! one `malformed_otlp` reject and judges nothing. Mapping is separate
//! from parsing because a resource or span may come after its items (JSON
//! object keys and protobuf fields have no fixed order), and an item's
//! attributes fall back on its span's, then its resource's.
//!
//! Lenient where the OTLP specification asks receivers to be: unknown
//! fields are skipped, an invalid trace id (wrong length, not hex, all
//! zero) means "no trace", an absent or zero time means "no time". Bytes
//! accord skips (attributes it does not read, scopes, links, status) are
//! checked for framing only (JSON syntax; protobuf lengths and wire types).

use std::borrow::Cow;

use hashbrown::HashMap;

use super::{int_text, validate, RawRecord, Record, Reject, Val};
use crate::catalog::{OtelConfig, RequestIdSource};

pub mod json;
pub mod proto;

/// OTLP messages larger than this are rejected unparsed (`too_large`): the
/// Collector's Kafka exporter batches, so a message is bigger than a
/// record, but still bounded.
pub const MAX_MESSAGE_BYTES: usize = 4 * 1024 * 1024;

/// The event names of a flag evaluation: the current OpenTelemetry
/// semantic conventions, and the older name OpenFeature hooks still emit.
pub const EVALUATION_EVENT_NAMES: [&str; 2] = ["feature_flag.evaluation", "feature_flag"];

/// Which kind of export request a message is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    Logs,
    Traces,
}

/// An attribute value (OTLP `AnyValue`) as far as mapping needs it.
#[derive(Debug, Clone, PartialEq)]
pub enum AnyVal<'a> {
    Str(Cow<'a, str>),
    Bool(bool),
    Int(i64),
    Double(f64),
    /// An array, key-value list or bytes value: never a valid field.
    Other,
}

/// The attributes accord reads, as indexes into [`Slots`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
enum Slot {
    FeatureKey,
    Layer,
    Variant,
    VariantDeprecated,
    Value,
    Version,
    SelectedFlow,
    ApiCapability,
    JobPayloadVersion,
    RequestId,
    EventName,
    ServiceName,
    ServiceInstance,
    ServiceVersion,
}

const SLOTS: usize = Slot::ServiceVersion as usize + 1;

/// Per slot, the index of its value in the message's values ([`NONE`]:
/// absent): items stay small, so collecting them moves little.
type Slots = [u32; SLOTS];

const NONE: u32 = u32::MAX;

/// A trace id as the message gave it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) enum Trace {
    /// Absent or invalid.
    #[default]
    None,
    /// Bytes (protobuf, or hex text with capitals): the request id is
    /// their lowercase hex, rendered by [`Builder::finish`].
    Bytes([u8; 16]),
    /// Lowercase hex text, as OTLP/JSON encoders write it, kept among the
    /// values (its index): already the request id, so neither decoded nor
    /// rendered.
    Text(u32),
}

/// The attributes at one level of the lookup order (resource or span).
#[derive(Debug)]
pub(crate) struct Ctx {
    slots: Slots,
    /// A span's trace id.
    trace: Trace,
}

impl Default for Ctx {
    fn default() -> Self {
        Ctx { slots: [NONE; SLOTS], trace: Trace::None }
    }
}

/// One evaluation: a log record or span event.
#[derive(Debug)]
pub(crate) struct Item {
    slots: Slots,
    /// A log record's body (index into the values, or [`NONE`]).
    body: u32,
    /// Log record `timeUnixNano` / span event `timeUnixNano` (0: absent).
    time_ns: u64,
    /// Log record `observedTimeUnixNano` (0: absent).
    observed_ns: u64,
    /// A log record's own trace id.
    trace: Trace,
    resource: u32,
    span: Option<u32>,
    /// Where its trace id's hex text starts in [`Decoded::hex`] (for
    /// [`Trace::Bytes`]).
    hex_at: u32,
}

impl Item {
    fn new(resource: u32, span: Option<u32>) -> Self {
        Item {
            slots: [NONE; SLOTS],
            body: NONE,
            time_ns: 0,
            observed_ns: 0,
            trace: Trace::None,
            resource,
            span,
            hex_at: u32::MAX,
        }
    }
}

/// Places in [`Mapping`]'s name table.
const TABLE: usize = 64;

/// An attribute name's length, its first and last eight bytes (zero
/// padded below eight) and, above 16 bytes, the two eight-byte words
/// after the first and before the last: for names up to 32 bytes (the
/// semantic conventions' `feature_flag.result.variant` is 27) that is the
/// whole name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Fingerprint {
    len: usize,
    head: u64,
    tail: u64,
    mid: [u64; 2],
}

#[inline]
fn fingerprint(key: &[u8]) -> Fingerprint {
    let word = |at: usize| key.get(at..at + 8).map_or(0, |w| u64::from_le_bytes(w.try_into().unwrap_or_default()));
    let (head, tail) = match (key.first_chunk::<8>(), key.last_chunk::<8>()) {
        (Some(h), Some(t)) => (u64::from_le_bytes(*h), u64::from_le_bytes(*t)),
        _ => {
            let w = key.iter().rev().fold(0u64, |w, &c| w << 8 | u64::from(c));
            (w, w)
        }
    };
    let mid = if key.len() > 16 { [word(8), word(key.len() - 16)] } else { [0, 0] };
    Fingerprint { len: key.len(), head, tail, mid }
}

impl Fingerprint {
    /// Whether the fingerprint alone tells the name.
    fn whole(&self) -> bool {
        self.len <= 32
    }
}

/// A fingerprint's first place in the table: the top bits of a
/// multiplicative hash, which mixes every input bit into them.
#[inline]
fn home(fp: Fingerprint) -> usize {
    let h = (fp.head ^ fp.tail.rotate_left(29) ^ fp.len as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    (h >> (64 - TABLE.trailing_zeros())) as usize
}

/// The `[otel]` catalog section prepared for decoding: which attribute
/// names fill which slots, and the service → layer map. Built once per
/// stream.
#[derive(Debug, Clone)]
pub struct Mapping {
    /// Attribute name → the slots it fills (a bit per [`Slot`]; a name
    /// may fill several, e.g. a flow attribute that is also the variant).
    names: Vec<(Box<str>, u16)>,
    /// `names` by [`fingerprint`], open addressing with linear probing:
    /// the index into `names` plus one (0: empty). An attribute is looked
    /// up once per item on the hot path, and most of an evaluation's
    /// attribute names are ones accord reads.
    table: [u8; TABLE],
    /// `fingerprints[i]` is `names[i]`'s, computed once at start-up so a
    /// lookup compares five words instead of the name.
    fingerprints: Vec<Fingerprint>,
    request_id_attribute: bool,
    layers: HashMap<Box<str>, Box<str>>,
}

impl Mapping {
    pub fn new(cfg: &OtelConfig) -> Self {
        let mut names: Vec<(Box<str>, u16)> = Vec::new();
        let mut add = |name: &str, slot: Slot| match names.iter_mut().find(|(n, _)| &**n == name) {
            Some((_, mask)) => *mask |= 1 << slot as u16,
            None => names.push((name.into(), 1 << slot as u16)),
        };
        add("feature_flag.key", Slot::FeatureKey);
        add("accord.layer", Slot::Layer);
        add("feature_flag.result.variant", Slot::Variant);
        add("feature_flag.variant", Slot::VariantDeprecated);
        add("feature_flag.result.value", Slot::Value);
        add("feature_flag.version", Slot::Version);
        add("event.name", Slot::EventName);
        add("service.name", Slot::ServiceName);
        add("service.instance.id", Slot::ServiceInstance);
        add("service.version", Slot::ServiceVersion);
        add(&cfg.selected_flow, Slot::SelectedFlow);
        add(&cfg.api_capability, Slot::ApiCapability);
        add(&cfg.job_payload_version, Slot::JobPayloadVersion);
        let request_id_attribute = match &cfg.request_id {
            RequestIdSource::TraceId => false,
            RequestIdSource::Attribute(name) => {
                add(name, Slot::RequestId);
                true
            }
        };
        let layers = cfg.layers.iter().map(|(s, l)| (s.as_str().into(), l.as_str().into())).collect();
        // At most 14 names (13 fixed slots and the request id attribute)
        // in 64 places: the table stays under a quarter full.
        debug_assert!(names.len() < TABLE / 2);
        let fingerprints: Vec<Fingerprint> = names.iter().map(|(n, _)| fingerprint(n.as_bytes())).collect();
        let mut table = [0u8; TABLE];
        for (i, &fp) in fingerprints.iter().enumerate() {
            let mut at = home(fp);
            while table[at] != 0 {
                at = (at + 1) % TABLE;
            }
            table[at] = i as u8 + 1;
        }
        Mapping { names, table, fingerprints, request_id_attribute, layers }
    }

    /// The slots an attribute fills (0: accord does not read it).
    #[inline]
    fn mask(&self, key: &[u8]) -> u16 {
        let fp = fingerprint(key);
        let mut at = home(fp);
        loop {
            let Some(i) = usize::from(self.table[at]).checked_sub(1) else { return 0 };
            if self.fingerprints[i] == fp && (fp.whole() || self.names[i].0.as_bytes() == key) {
                return self.names[i].1;
            }
            at = (at + 1) % TABLE;
        }
    }

    /// Decodes one message of an OTLP format. `Err` is the message's one
    /// reject (`too_large`, `malformed_otlp`).
    pub fn decode<'a>(&'a self, signal: Option<Signal>, bytes: &'a [u8]) -> Result<Decoded<'a>, Reject> {
        self.decode_in(signal, bytes, &mut Scratch::default())
    }

    /// [`Mapping::decode`] into the buffers of `scratch` (give them back
    /// with [`Decoded::recycle`]): a stream decoding message after message
    /// then allocates nothing once its buffers have grown.
    pub fn decode_in<'a>(
        &'a self,
        signal: Option<Signal>,
        bytes: &'a [u8],
        scratch: &mut Scratch,
    ) -> Result<Decoded<'a>, Reject> {
        if bytes.len() > MAX_MESSAGE_BYTES {
            return Err(Reject::TooLarge);
        }
        let mut b = Builder::new(self, bytes.len(), scratch);
        match signal {
            None => json::parse(bytes, &mut b).map_err(|_| Reject::MalformedOtlp)?,
            Some(signal) => proto::parse(bytes, signal, &mut b).map_err(|_| Reject::MalformedOtlp)?,
        }
        Ok(b.finish())
    }
}

impl Default for Mapping {
    fn default() -> Self {
        Mapping::new(&OtelConfig::default())
    }
}

/// Where an attribute list belongs.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Target {
    Ctx(u32),
    Item(u32),
}

/// Collects one message's contexts and evaluations while it is parsed.
pub(crate) struct Builder<'a> {
    map: &'a Mapping,
    bufs: Box<Bufs>,
    /// The values of the attributes accord reads (and bodies).
    vals: Vec<AnyVal<'a>>,
    ignored: u64,
    signal: Option<Signal>,
}

impl<'a> Builder<'a> {
    /// Takes the buffers of `scratch`, sized at least for a message of
    /// `len` bytes (a log record or span event takes a few hundred), so
    /// collecting rarely reallocates.
    fn new(map: &'a Mapping, len: usize, scratch: &mut Scratch) -> Self {
        let n = len / 256 + 1;
        let mut bufs = scratch.0.take().unwrap_or_default();
        let mut vals = relifetime(std::mem::take(&mut bufs.vals));
        bufs.ctxs.clear();
        bufs.items.clear();
        bufs.ctxs.reserve(4 + n / 4);
        bufs.items.reserve(n);
        vals.reserve(n * 6);
        Builder { map, bufs, vals, ignored: 0, signal: None }
    }

    /// Forgets what a parse that gave up collected.
    fn reset(&mut self) {
        self.bufs.ctxs.clear();
        self.bufs.items.clear();
        self.vals.clear();
        self.ignored = 0;
        self.signal = None;
    }

    fn new_ctx(&mut self) -> u32 {
        self.bufs.ctxs.push(Ctx::default());
        (self.bufs.ctxs.len() - 1) as u32
    }

    /// Starts an item; [`Builder::end_log`] or [`Builder::end_event`] keeps
    /// or drops it.
    fn start_item(&mut self, resource: u32, span: Option<u32>) -> u32 {
        self.bufs.items.push(Item::new(resource, span));
        (self.bufs.items.len() - 1) as u32
    }

    fn item(&mut self, i: u32) -> &mut Item {
        &mut self.bufs.items[i as usize]
    }

    fn push_val(&mut self, v: AnyVal<'a>) -> u32 {
        self.vals.push(v);
        (self.vals.len() - 1) as u32
    }

    /// Stores an attribute that fills `mask`'s slots.
    fn set(&mut self, t: Target, mask: u16, v: AnyVal<'a>) {
        let at = self.push_val(v);
        let slots = match t {
            Target::Ctx(c) => &mut self.bufs.ctxs[c as usize].slots,
            Target::Item(i) => &mut self.bufs.items[i as usize].slots,
        };
        let mut m = mask;
        while m != 0 {
            // Duplicate keys (not allowed by OTLP): the last one wins, as in
            // a protobuf map or the accord JSON decoder.
            slots[m.trailing_zeros() as usize] = at;
            m &= m - 1;
        }
    }

    fn set_body(&mut self, i: u32, v: Option<AnyVal<'a>>) {
        self.bufs.items[i as usize].body = match v {
            Some(v) => self.push_val(v),
            None => NONE,
        };
    }

    fn val(&self, at: u32) -> Option<&AnyVal<'a>> {
        self.vals.get(at as usize)
    }

    /// Ends a log record: kept if it is a flag evaluation. `event_name` is
    /// the record's `eventName` field ("" when absent).
    fn end_log(&mut self, i: u32, event_name: &str) {
        let item = &self.bufs.items[i as usize];
        let evaluation = if !event_name.is_empty() {
            EVALUATION_EVENT_NAMES.contains(&event_name)
        } else {
            match self.val(item.slots[Slot::EventName as usize]) {
                Some(AnyVal::Str(n)) if !n.is_empty() => EVALUATION_EVENT_NAMES.contains(&&**n),
                // Only a string names an event; any other value is a name
                // that is not an evaluation's.
                Some(_) => false,
                None => item.slots[Slot::FeatureKey as usize] != NONE,
            }
        };
        self.keep_if(i, evaluation);
    }

    /// Ends a span event named `name`: kept if it is a flag evaluation.
    fn end_event(&mut self, i: u32, name: &str) {
        self.keep_if(i, EVALUATION_EVENT_NAMES.contains(&name));
    }

    fn keep_if(&mut self, i: u32, keep: bool) {
        if !keep {
            debug_assert_eq!(i as usize + 1, self.bufs.items.len());
            self.bufs.items.truncate(i as usize);
            self.ignored += 1;
        }
    }

    /// A trace id written as hex text (OTLP/JSON; `None`: `null`).
    fn hex_trace(&mut self, text: Option<Cow<'a, str>>) -> Trace {
        let Some(text) = text else { return Trace::None };
        // Lowercase hex (what encoders write) is already the request id's
        // text: kept, not decoded. Anything else is decoded, and rendered
        // in lowercase when the records are built (`lower_hex_id` answers
        // exactly where `hex_trace_id` would say "lowercase", so no id
        // falls between the two).
        if json::lower_hex_id(text.as_bytes()) {
            return Trace::Text(self.push_val(AnyVal::Str(text)));
        }
        match json::hex_trace_id(text.as_bytes()) {
            None => Trace::None,
            Some((bytes, _)) => Trace::Bytes(bytes),
        }
    }

    fn finish(self) -> Decoded<'a> {
        let Builder { map, mut bufs, vals, ignored, signal } = self;
        let Bufs { ctxs, items, hex, .. } = &mut *bufs;
        hex.clear();
        if !map.request_id_attribute {
            for it in items {
                if let Trace::Bytes(t) = trace_of(ctxs, it) {
                    it.hex_at = hex.len() as u32;
                    push_hex(hex, &t);
                }
            }
        }
        Decoded { map, bufs, vals, ignored, signal }
    }
}

/// An item's trace id: its span's, or a log record's own.
fn trace_of(ctxs: &[Ctx], it: &Item) -> Trace {
    match it.span {
        Some(s) => ctxs[s as usize].trace,
        None => it.trace,
    }
}

/// Appends the lowercase hex text of `bytes`.
fn push_hex(out: &mut String, bytes: &[u8; 16]) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut text = [0u8; 32];
    for (pair, &b) in text.chunks_exact_mut(2).zip(bytes) {
        pair[0] = DIGITS[usize::from(b >> 4)];
        pair[1] = DIGITS[usize::from(b & 15)];
    }
    // Pushed as one string: a `char` at a time costs a capacity check and
    // an encoding each, and this runs for every evaluation.
    out.push_str(std::str::from_utf8(&text).unwrap_or_default());
}

/// Buffers that decoding one message after another reuses (none before
/// the first message).
#[derive(Default)]
pub struct Scratch(Option<Box<Bufs>>);

/// Boxed, so that handing the buffers from the scratch to the builder, the
/// decoded message and back moves a pointer: moving the vectors
/// themselves cost tens of nanoseconds per message in stalled stores.
#[derive(Default)]
struct Bufs {
    ctxs: Vec<Ctx>,
    items: Vec<Item>,
    /// Always empty between messages (its values borrowed the last one).
    vals: Vec<AnyVal<'static>>,
    hex: String,
    /// The quote bitmap of the JSON message being read
    /// (`decode::quotes`).
    quotes: Vec<u64>,
}

/// An empty vector of values with another lifetime, keeping its
/// allocation: the standard library collects a vector's own iterator in
/// place when the element layout is the same, which it is here (only the
/// lifetime differs).
fn relifetime<'x>(mut v: Vec<AnyVal<'_>>) -> Vec<AnyVal<'x>> {
    v.clear();
    v.into_iter().map(|_| -> AnyVal<'x> { unreachable!("the vector is empty") }).collect()
}

/// A whole message, parsed: its evaluations, ready to map onto records.
pub struct Decoded<'a> {
    map: &'a Mapping,
    /// Contexts, items and the hex text of the items' trace ids, which
    /// records borrow.
    bufs: Box<Bufs>,
    vals: Vec<AnyVal<'a>>,
    /// Log records and span events that are not flag evaluations.
    pub ignored: u64,
    /// Logs or traces (`None`: an OTLP/JSON message that named neither,
    /// which does not parse).
    pub signal: Option<Signal>,
}

impl<'a> Decoded<'a> {
    /// Evaluations in the message.
    pub fn len(&self) -> usize {
        self.bufs.items.len()
    }

    pub fn is_empty(&self) -> bool {
        self.bufs.items.is_empty()
    }

    /// Gives the buffers back for the next message.
    pub fn recycle(self, scratch: &mut Scratch) {
        let Decoded { mut bufs, vals, .. } = self;
        bufs.vals = relifetime(vals);
        scratch.0 = Some(bufs);
    }

    /// Every evaluation mapped onto a validated record (or its reject), in
    /// message order.
    pub fn records(&self) -> impl Iterator<Item = Result<Record<'_>, Reject>> + '_ {
        self.bufs.items.iter().map(move |it| self.record(it))
    }

    /// The mapping table of the OpenTelemetry input (see docs/otel.md):
    /// first source present wins; an attribute is looked up on the item,
    /// then its span, then its resource. Inlined into the loop over the
    /// records, so the record (about 300 bytes) is built where it is used
    /// instead of being returned and copied.
    #[inline(always)]
    fn record<'s>(&'s self, it: &'s Item) -> Result<Record<'s>, Reject> {
        let span = it.span.map(|s| &self.bufs.ctxs[s as usize]);
        let res = &self.bufs.ctxs[it.resource as usize];
        let val = |at: u32| self.vals.get(at as usize);
        let pick = |slot: Slot| -> Option<&'s AnyVal<'a>> {
            let s = slot as usize;
            val(it.slots[s]).or_else(|| span.and_then(|c| val(c.slots[s]))).or_else(|| val(res.slots[s]))
        };
        let request_id = if self.map.request_id_attribute {
            pick(Slot::RequestId).map(text_val)
        } else {
            match trace_of(&self.bufs.ctxs, it) {
                Trace::None => None,
                Trace::Text(at) => val(at).map(text_val),
                Trace::Bytes(_) => {
                    let at = it.hex_at as usize;
                    self.bufs.hex.get(at..at + 32).map(|h| Val::Str(Cow::Borrowed(h)))
                }
            }
        };
        let layer = match pick(Slot::Layer) {
            Some(v) => Some(name_val(v)),
            None => match val(res.slots[Slot::ServiceName as usize]) {
                Some(AnyVal::Str(s)) => Some(Val::Str(Cow::Borrowed(self.map.layers.get(&**s).map_or(&**s, |l| &**l)))),
                Some(v) => Some(name_val(v)),
                None => None,
            },
        };
        let ts_ns = if it.time_ns != 0 { it.time_ns } else { it.observed_ns };
        let raw = RawRecord {
            request_id,
            layer,
            feature: pick(Slot::FeatureKey).map(name_val),
            ts: (ts_ns != 0).then(|| Val::Int(i128::from(ts_ns / 1_000_000))),
            flag_state: pick(Slot::Variant)
                .or_else(|| pick(Slot::VariantDeprecated))
                .or_else(|| pick(Slot::Value))
                .or_else(|| val(it.body))
                .map(flag_val),
            api_capability: pick(Slot::ApiCapability).map(text_val),
            selected_flow: pick(Slot::SelectedFlow).map(text_val),
            job_payload_version: pick(Slot::JobPayloadVersion).map(text_val),
            flags_revision: pick(Slot::Version).map(text_val),
            service: val(res.slots[Slot::ServiceName as usize]).map(text_val),
            instance: val(res.slots[Slot::ServiceInstance as usize]).map(text_val),
            build: val(res.slots[Slot::ServiceVersion as usize]).map(text_val),
        };
        validate(raw)
    }
}

/// A catalog name (flag key, layer): only a string names one.
fn name_val<'s>(v: &'s AnyVal<'_>) -> Val<'s> {
    match v {
        AnyVal::Str(s) => Val::Str(Cow::Borrowed(s)),
        AnyVal::Bool(b) => Val::Bool(*b),
        AnyVal::Int(n) => Val::Int(i128::from(*n)),
        AnyVal::Double(d) => Val::Float(*d),
        AnyVal::Other => Val::Compound,
    }
}

/// A value compared as text: strings as they are, integers and doubles as
/// their text; a boolean stays a boolean (and is then the wrong type).
fn text_val<'s>(v: &'s AnyVal<'_>) -> Val<'s> {
    match v {
        AnyVal::Str(s) => Val::Str(Cow::Borrowed(s)),
        AnyVal::Bool(b) => Val::Bool(*b),
        AnyVal::Int(n) => Val::Str(int_text(i128::from(*n))),
        AnyVal::Double(d) => Val::Str(Cow::Owned(d.to_string())),
        AnyVal::Other => Val::Compound,
    }
}

/// A flag's value or variant: a boolean, or any other scalar as text.
fn flag_val<'s>(v: &'s AnyVal<'_>) -> Val<'s> {
    text_val(v)
}

/// Renders a validated record as one accord JSON line (without newline):
/// what divergence samples show for an OpenTelemetry evaluation, and what
/// replay keeps of records it must judge later. `ts_ms` is the record's
/// own time, if any.
pub fn render_accord(r: &Record<'_>, out: &mut Vec<u8>) {
    use serde::Serialize;
    #[derive(Serialize)]
    struct Out<'r> {
        request_id: &'r str,
        layer: &'r str,
        feature: &'r str,
        #[serde(skip_serializing_if = "Option::is_none")]
        ts: Option<i64>,
        #[serde(skip_serializing_if = "Option::is_none")]
        flag_state: Option<Flag<'r>>,
        #[serde(skip_serializing_if = "Option::is_none")]
        api_capability: Option<&'r str>,
        #[serde(skip_serializing_if = "Option::is_none")]
        selected_flow: Option<&'r str>,
        #[serde(skip_serializing_if = "Option::is_none")]
        job_payload_version: Option<&'r str>,
        #[serde(skip_serializing_if = "Option::is_none")]
        flags_revision: Option<&'r str>,
        #[serde(skip_serializing_if = "Option::is_none")]
        service: Option<&'r str>,
        #[serde(skip_serializing_if = "Option::is_none")]
        instance: Option<&'r str>,
        #[serde(skip_serializing_if = "Option::is_none")]
        build: Option<&'r str>,
    }
    #[derive(Serialize)]
    #[serde(untagged)]
    enum Flag<'r> {
        Bool(bool),
        Variant(&'r str),
    }
    let o = Out {
        request_id: &r.request_id,
        layer: &r.layer,
        feature: &r.feature,
        ts: r.ts_ms,
        flag_state: r.flag_state.as_ref().map(|f| match f {
            super::FlagState::Bool(b) => Flag::Bool(*b),
            super::FlagState::Variant(v) => Flag::Variant(v),
        }),
        api_capability: r.api_capability.as_deref(),
        selected_flow: r.selected_flow.as_deref(),
        job_payload_version: r.job_payload_version.as_deref(),
        flags_revision: r.flags_revision.as_deref(),
        service: r.service.as_deref(),
        instance: r.instance.as_deref(),
        build: r.build.as_deref(),
    };
    // Writing to a Vec cannot fail, and every field is a string, bool or int.
    let _ = o.serialize(&mut serde_json::Serializer::new(out));
}

#[cfg(test)]
mod tests;
