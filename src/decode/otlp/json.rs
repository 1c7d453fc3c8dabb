//! OTLP/JSON (the OTLP specification's JSON Protobuf encoding): one
//! `ExportLogsServiceRequest` or `ExportTraceServiceRequest` per message,
//! told apart by `resourceLogs` / `resourceSpans`.
//!
//! `fast` reads the requests encoders write in one pass; anything it
//! leaves (escapes, floats, odd types, malformed input) is read here with
//! serde visitors straight into the [`Builder`]: strings are
//! borrowed from the message unless they hold escapes, values of
//! attributes accord does not read are skipped unparsed, and no
//! `serde_json::Value` is built. As the encoding rules ask of receivers,
//! field names are accepted in lowerCamelCase and in their original
//! snake_case, 64-bit integers as strings or numbers, `null` as the
//! default value, and unknown fields are skipped. Trace ids are hex
//! (invalid ones mean "no trace", as for protobuf).

use std::borrow::Cow;
use std::fmt;
use std::marker::PhantomData;

use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};

use super::{AnyVal, Builder, Signal, Target};

mod fast;

/// Parses one message into `b`: by the fast path where it answers, else
/// by serde_json.
pub(crate) fn parse<'a>(bytes: &'a [u8], b: &mut Builder<'a>) -> Result<(), serde_json::Error> {
    // The fast path checks UTF-8 as it reads the strings (see `Lex`), so
    // the usual message is read once; JSON text is UTF-8, and serde_json
    // is given it checked as a whole (simdutf8: 32 or 64 bytes per step).
    if fast::parse(bytes, b).is_some() {
        return Ok(());
    }
    b.reset();
    let text = simdutf8::basic::from_utf8(bytes).map_err(|_| <serde_json::Error as de::Error>::custom("not UTF-8"))?;
    parse_serde(text, b)
}

/// Checks the fast path against serde_json on one message: where the fast
/// path answers, serde_json must accept the message and collect the same
/// contexts, items and values (panics otherwise). Returns whether the fast
/// path answered. For the tests and the `otlp` fuzz target.
#[doc(hidden)]
pub fn fast_path_agrees(map: &super::Mapping, bytes: &[u8]) -> bool {
    let collected = |b: &Builder<'_>| format!("{:?}", (&b.bufs.ctxs, &b.bufs.items, &b.vals, b.ignored, b.signal));
    let mut fast_scratch = super::Scratch::default();
    let mut fast = Builder::new(map, bytes.len(), &mut fast_scratch);
    if fast::parse(bytes, &mut fast).is_none() {
        return false;
    }
    let Ok(text) = std::str::from_utf8(bytes) else {
        panic!("the fast path accepted a message that is not UTF-8: {}", String::from_utf8_lossy(bytes));
    };
    let mut serde_scratch = super::Scratch::default();
    let mut serde = Builder::new(map, bytes.len(), &mut serde_scratch);
    if let Err(e) = parse_serde(text, &mut serde) {
        panic!("the fast path accepted what serde_json rejects ({e}): {text}");
    }
    assert_eq!(collected(&fast), collected(&serde), "fast path and serde_json disagree on {text}");
    true
}

/// [`parse`] by serde_json alone.
fn parse_serde<'a>(text: &'a str, b: &mut Builder<'a>) -> Result<(), serde_json::Error> {
    let mut de = serde_json::Deserializer::from_str(text);
    Request { b: &mut *b }.deserialize(&mut de)?;
    de.end()?;
    if b.signal.is_none() {
        return Err(de::Error::custom("neither resourceLogs nor resourceSpans"));
    }
    Ok(())
}

/// A string borrowed from the message unless it holds escapes.
struct Text<'de>(Cow<'de, str>);

impl<'de> de::Deserialize<'de> for Text<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Text<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Text<'de>, E> {
                Ok(Text(Cow::Borrowed(v)))
            }
            fn visit_str<E>(self, v: &str) -> Result<Text<'de>, E> {
                Ok(Text(Cow::Owned(v.to_owned())))
            }
        }
        d.deserialize_str(V)
    }
}

/// Where the lists below an item belong.
#[derive(Clone, Copy)]
struct At {
    resource: u32,
    span: u32,
}

const NO_SPAN: u32 = u32::MAX;

macro_rules! seed_by_map {
    ($t:ident) => {
        impl<'de> DeserializeSeed<'de> for $t<'_, 'de> {
            type Value = ();
            fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
                d.deserialize_any(self)
            }
        }
    };
}

struct Request<'b, 'a> {
    b: &'b mut Builder<'a>,
}
seed_by_map!(Request);

impl<'de> Visitor<'de> for Request<'_, 'de> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an OTLP export request object")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut m: A) -> Result<(), A::Error> {
        let b = self.b;
        while let Some(k) = m.next_key::<Text<'de>>()? {
            let signal = match &*k.0 {
                "resourceLogs" | "resource_logs" => Signal::Logs,
                "resourceSpans" | "resource_spans" => Signal::Traces,
                _ => {
                    m.next_value::<IgnoredAny>()?;
                    continue;
                }
            };
            if b.signal.is_some_and(|s| s != signal) {
                return Err(de::Error::custom("both resourceLogs and resourceSpans"));
            }
            b.signal = Some(signal);
            let at = At { resource: 0, span: NO_SPAN };
            match signal {
                Signal::Logs => m.next_value_seed(List::<ResourceLogs> { b: &mut *b, at, e: PhantomData })?,
                Signal::Traces => m.next_value_seed(List::<ResourceSpans> { b: &mut *b, at, e: PhantomData })?,
            }
        }
        Ok(())
    }
}

/// A JSON array of one kind of element (`null`: empty).
struct List<'b, 'a, E> {
    b: &'b mut Builder<'a>,
    at: At,
    e: PhantomData<E>,
}

trait Elem {
    fn next<'de, A: SeqAccess<'de>>(b: &mut Builder<'de>, at: At, seq: &mut A) -> Result<bool, A::Error>;
}

impl<'de, E: Elem> DeserializeSeed<'de> for List<'_, 'de, E> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de, E: Elem> Visitor<'de> for List<'_, 'de, E> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an array")
    }
    fn visit_unit<Er>(self) -> Result<(), Er> {
        Ok(())
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while E::next(&mut *self.b, self.at, &mut seq)? {}
        Ok(())
    }
}

/// Declares an element type read by a map visitor with `b` and `at`.
macro_rules! elem {
    ($t:ident) => {
        struct $t<'b, 'a> {
            b: &'b mut Builder<'a>,
            // Resource groups start a context of their own.
            #[allow(dead_code)]
            at: At,
        }
        seed_by_map!($t);
        impl Elem for $t<'_, '_> {
            fn next<'de, A: SeqAccess<'de>>(b: &mut Builder<'de>, at: At, seq: &mut A) -> Result<bool, A::Error> {
                Ok(seq.next_element_seed($t { b, at })?.is_some())
            }
        }
    };
}

elem!(ResourceLogs);
elem!(ResourceSpans);
elem!(ScopeLogs);
elem!(ScopeSpans);
elem!(LogRecord);
elem!(Span);
elem!(Event);

/// `expecting` and `null` handling shared by the element visitors.
macro_rules! object {
    () => {
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("an object")
        }
        fn visit_unit<Er>(self) -> Result<(), Er> {
            Ok(())
        }
    };
}

impl<'de> Visitor<'de> for ResourceLogs<'_, 'de> {
    type Value = ();
    object!();
    fn visit_map<A: MapAccess<'de>>(self, mut m: A) -> Result<(), A::Error> {
        let b = self.b;
        let r = b.new_ctx();
        let at = At { resource: r, span: NO_SPAN };
        while let Some(k) = m.next_key::<Text<'de>>()? {
            match &*k.0 {
                "resource" => m.next_value_seed(Resource { b: &mut *b, ctx: r })?,
                "scopeLogs" | "scope_logs" => {
                    m.next_value_seed(List::<ScopeLogs> { b: &mut *b, at, e: PhantomData })?
                }
                _ => {
                    m.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(())
    }
}

impl<'de> Visitor<'de> for ResourceSpans<'_, 'de> {
    type Value = ();
    object!();
    fn visit_map<A: MapAccess<'de>>(self, mut m: A) -> Result<(), A::Error> {
        let b = self.b;
        let r = b.new_ctx();
        let at = At { resource: r, span: NO_SPAN };
        while let Some(k) = m.next_key::<Text<'de>>()? {
            match &*k.0 {
                "resource" => m.next_value_seed(Resource { b: &mut *b, ctx: r })?,
                "scopeSpans" | "scope_spans" => {
                    m.next_value_seed(List::<ScopeSpans> { b: &mut *b, at, e: PhantomData })?
                }
                _ => {
                    m.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(())
    }
}

struct Resource<'b, 'a> {
    b: &'b mut Builder<'a>,
    ctx: u32,
}
seed_by_map!(Resource);

impl<'de> Visitor<'de> for Resource<'_, 'de> {
    type Value = ();
    object!();
    fn visit_map<A: MapAccess<'de>>(self, mut m: A) -> Result<(), A::Error> {
        while let Some(k) = m.next_key::<Text<'de>>()? {
            match &*k.0 {
                "attributes" => m.next_value_seed(Attributes { b: &mut *self.b, t: Target::Ctx(self.ctx) })?,
                _ => {
                    m.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(())
    }
}

impl<'de> Visitor<'de> for ScopeLogs<'_, 'de> {
    type Value = ();
    object!();
    fn visit_map<A: MapAccess<'de>>(self, mut m: A) -> Result<(), A::Error> {
        while let Some(k) = m.next_key::<Text<'de>>()? {
            match &*k.0 {
                "logRecords" | "log_records" => {
                    m.next_value_seed(List::<LogRecord> { b: &mut *self.b, at: self.at, e: PhantomData })?
                }
                _ => {
                    m.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(())
    }
}

impl<'de> Visitor<'de> for ScopeSpans<'_, 'de> {
    type Value = ();
    object!();
    fn visit_map<A: MapAccess<'de>>(self, mut m: A) -> Result<(), A::Error> {
        while let Some(k) = m.next_key::<Text<'de>>()? {
            match &*k.0 {
                "spans" => m.next_value_seed(List::<Span> { b: &mut *self.b, at: self.at, e: PhantomData })?,
                _ => {
                    m.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(())
    }
}

impl<'de> Visitor<'de> for LogRecord<'_, 'de> {
    type Value = ();
    object!();
    fn visit_map<A: MapAccess<'de>>(self, mut m: A) -> Result<(), A::Error> {
        let b = self.b;
        let i = b.start_item(self.at.resource, None);
        let mut event_name: Option<Text<'de>> = None;
        while let Some(k) = m.next_key::<Text<'de>>()? {
            match &*k.0 {
                "timeUnixNano" | "time_unix_nano" => b.item(i).time_ns = m.next_value_seed(U64)?,
                "observedTimeUnixNano" | "observed_time_unix_nano" => b.item(i).observed_ns = m.next_value_seed(U64)?,
                "traceId" | "trace_id" => {
                    let t = m.next_value_seed(TraceId)?;
                    b.item(i).trace = b.hex_trace(t);
                }
                "eventName" | "event_name" => event_name = m.next_value::<Option<Text<'de>>>()?,
                "body" => {
                    let v = m.next_value_seed(Any)?;
                    b.set_body(i, v);
                }
                "attributes" => m.next_value_seed(Attributes { b: &mut *b, t: Target::Item(i) })?,
                _ => {
                    m.next_value::<IgnoredAny>()?;
                }
            }
        }
        b.end_log(i, event_name.as_ref().map_or("", |n| &n.0));
        Ok(())
    }
}

impl<'de> Visitor<'de> for Span<'_, 'de> {
    type Value = ();
    object!();
    fn visit_map<A: MapAccess<'de>>(self, mut m: A) -> Result<(), A::Error> {
        let b = self.b;
        let s = b.new_ctx();
        let at = At { resource: self.at.resource, span: s };
        while let Some(k) = m.next_key::<Text<'de>>()? {
            match &*k.0 {
                "traceId" | "trace_id" => {
                    let t = m.next_value_seed(TraceId)?;
                    b.bufs.ctxs[s as usize].trace = b.hex_trace(t);
                }
                "attributes" => m.next_value_seed(Attributes { b: &mut *b, t: Target::Ctx(s) })?,
                "events" => m.next_value_seed(List::<Event> { b: &mut *b, at, e: PhantomData })?,
                _ => {
                    m.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(())
    }
}

impl<'de> Visitor<'de> for Event<'_, 'de> {
    type Value = ();
    object!();
    fn visit_map<A: MapAccess<'de>>(self, mut m: A) -> Result<(), A::Error> {
        let b = self.b;
        let i = b.start_item(self.at.resource, Some(self.at.span));
        let mut name: Option<Text<'de>> = None;
        while let Some(k) = m.next_key::<Text<'de>>()? {
            match &*k.0 {
                "timeUnixNano" | "time_unix_nano" => b.item(i).time_ns = m.next_value_seed(U64)?,
                "name" => name = m.next_value::<Option<Text<'de>>>()?,
                "attributes" => m.next_value_seed(Attributes { b: &mut *b, t: Target::Item(i) })?,
                _ => {
                    m.next_value::<IgnoredAny>()?;
                }
            }
        }
        b.end_event(i, name.as_ref().map_or("", |n| &n.0));
        Ok(())
    }
}

/// A `KeyValue` array: the attributes of a resource, span or item.
struct Attributes<'b, 'a> {
    b: &'b mut Builder<'a>,
    t: Target,
}
seed_by_map!(Attributes);

impl<'de> Visitor<'de> for Attributes<'_, 'de> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an array of key-value pairs")
    }
    fn visit_unit<Er>(self) -> Result<(), Er> {
        Ok(())
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while seq.next_element_seed(KeyValue { b: &mut *self.b, t: self.t })?.is_some() {}
        Ok(())
    }
}

struct KeyValue<'b, 'a> {
    b: &'b mut Builder<'a>,
    t: Target,
}
seed_by_map!(KeyValue);

impl<'de> Visitor<'de> for KeyValue<'_, 'de> {
    type Value = ();
    object!();
    fn visit_map<A: MapAccess<'de>>(self, mut m: A) -> Result<(), A::Error> {
        let mut mask: Option<u16> = None;
        let mut value: Option<AnyVal<'de>> = None;
        while let Some(k) = m.next_key::<Text<'de>>()? {
            match &*k.0 {
                "key" => {
                    let key = m.next_value::<Option<Text<'de>>>()?;
                    mask = Some(key.map_or(0, |k| self.b.map.mask(k.0.as_bytes())));
                }
                // The key comes first in every encoder's output: the value
                // of an attribute accord does not read is skipped unparsed.
                "value" if mask == Some(0) => {
                    m.next_value::<IgnoredAny>()?;
                }
                "value" => value = m.next_value_seed(Any)?,
                _ => {
                    m.next_value::<IgnoredAny>()?;
                }
            }
        }
        if let (Some(mask), Some(v)) = (mask, value) {
            if mask != 0 {
                self.b.set(self.t, mask, v);
            }
        }
        Ok(())
    }
}

/// An `AnyValue` (`None`: empty or null).
struct Any;

impl<'de> DeserializeSeed<'de> for Any {
    type Value = Option<AnyVal<'de>>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Any {
    type Value = Option<AnyVal<'de>>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an AnyValue object")
    }
    fn visit_unit<E>(self) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_map<A: MapAccess<'de>>(self, mut m: A) -> Result<Self::Value, A::Error> {
        // A oneof: the last field set wins.
        let mut v = None;
        while let Some(k) = m.next_key::<Text<'de>>()? {
            match &*k.0 {
                "stringValue" | "string_value" => {
                    if let Some(s) = m.next_value::<Option<Text<'de>>>()? {
                        v = Some(AnyVal::Str(s.0));
                    }
                }
                "boolValue" | "bool_value" => {
                    if let Some(b) = m.next_value::<Option<bool>>()? {
                        v = Some(AnyVal::Bool(b));
                    }
                }
                "intValue" | "int_value" => {
                    if let Some(n) = m.next_value_seed(I64)? {
                        v = Some(AnyVal::Int(n));
                    }
                }
                "doubleValue" | "double_value" => {
                    if let Some(x) = m.next_value_seed(F64)? {
                        v = Some(AnyVal::Double(x));
                    }
                }
                "arrayValue" | "array_value" | "kvlistValue" | "kvlist_value" | "bytesValue" | "bytes_value" => {
                    if m.next_value::<Option<IgnoredAny>>()?.is_some() {
                        v = Some(AnyVal::Other);
                    }
                }
                _ => {
                    m.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(v)
    }
}

/// A `fixed64` time: a decimal string or a number (`null`: 0).
struct U64;

impl<'de> DeserializeSeed<'de> for U64 {
    type Value = u64;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<u64, D::Error> {
        d.deserialize_any(self)
    }
}

impl Visitor<'_> for U64 {
    type Value = u64;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an unsigned 64-bit integer (number or decimal string)")
    }
    fn visit_unit<E>(self) -> Result<u64, E> {
        Ok(0)
    }
    fn visit_u64<E>(self, v: u64) -> Result<u64, E> {
        Ok(v)
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<u64, E> {
        u64::try_from(v).map_err(|_| E::custom("negative time"))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<u64, E> {
        v.parse().map_err(|_| E::custom("not an unsigned 64-bit integer"))
    }
}

/// An `int64` value: a decimal string or a number (`null`: unset).
struct I64;

impl<'de> DeserializeSeed<'de> for I64 {
    type Value = Option<i64>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Option<i64>, D::Error> {
        d.deserialize_any(self)
    }
}

impl Visitor<'_> for I64 {
    type Value = Option<i64>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a 64-bit integer (number or decimal string)")
    }
    fn visit_unit<E>(self) -> Result<Option<i64>, E> {
        Ok(None)
    }
    fn visit_i64<E>(self, v: i64) -> Result<Option<i64>, E> {
        Ok(Some(v))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Option<i64>, E> {
        i64::try_from(v).map(Some).map_err(|_| E::custom("integer out of range"))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Option<i64>, E> {
        v.parse().map(Some).map_err(|_| E::custom("not a 64-bit integer"))
    }
}

/// A `double` value: a number, a numeric string, or `"NaN"`,
/// `"Infinity"`, `"-Infinity"` (`null`: unset).
struct F64;

impl<'de> DeserializeSeed<'de> for F64 {
    type Value = Option<f64>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Option<f64>, D::Error> {
        d.deserialize_any(self)
    }
}

impl Visitor<'_> for F64 {
    type Value = Option<f64>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a double")
    }
    fn visit_unit<E>(self) -> Result<Option<f64>, E> {
        Ok(None)
    }
    fn visit_f64<E>(self, v: f64) -> Result<Option<f64>, E> {
        Ok(Some(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Option<f64>, E> {
        Ok(Some(v as f64))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Option<f64>, E> {
        Ok(Some(v as f64))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Option<f64>, E> {
        match v {
            "NaN" => Ok(Some(f64::NAN)),
            "Infinity" => Ok(Some(f64::INFINITY)),
            "-Infinity" => Ok(Some(f64::NEG_INFINITY)),
            _ => v.parse().map(Some).map_err(|_| E::custom("not a double")),
        }
    }
}

/// A trace id's text (`null`: none), for [`Builder::hex_trace`]: anything
/// but 32 hex digits, or all zeros, is no trace.
struct TraceId;

impl<'de> DeserializeSeed<'de> for TraceId {
    type Value = Option<Cow<'de, str>>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for TraceId {
    type Value = Option<Cow<'de, str>>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a hex trace id")
    }
    fn visit_unit<E>(self) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Self::Value, E> {
        Ok(Some(Cow::Borrowed(v)))
    }
    fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
        // An escaped id: copied only if it can be one.
        Ok((v.len() == 32).then(|| Cow::Owned(v.to_owned())))
    }
}

/// Whether `s` is a valid trace id in lowercase hex (32 digits `0-9a-f`,
/// not all zero): what [`hex_trace_id`] answers `Some((_, true))` for,
/// without the id's bytes, which such a text never needs (it is already
/// the request id). Eight bytes at a time: encoders write every trace id
/// this way, one or two per evaluation.
#[inline]
pub(crate) fn lower_hex_id(s: &[u8]) -> bool {
    /// Bytes of `w` strictly between `lo` and `hi` (both below 0x80): their
    /// high bit set in the result (Sean Anderson's "Bit Twiddling Hacks",
    /// "Determine if a word has a byte between m and n"; bytes above 0x7f
    /// are never between).
    #[inline(always)]
    fn between(w: u64, lo: u8, hi: u8) -> u64 {
        const ONES: u64 = 0x0101_0101_0101_0101;
        let low7 = w & (ONES * 0x7F);
        (ONES * (127 + u64::from(hi)) - low7) & !w & (low7 + ONES * (127 - u64::from(lo))) & (ONES * 0x80)
    }
    if s.len() != 32 {
        return false;
    }
    let mut zero = true;
    for word in s.chunks_exact(8) {
        // `chunks_exact(8)` gives eight bytes: the default is never taken.
        let w = u64::from_le_bytes(word.try_into().unwrap_or_default());
        if between(w, b'0' - 1, b'9' + 1) | between(w, b'a' - 1, b'f' + 1) != 0x8080_8080_8080_8080 {
            return false;
        }
        zero &= w == 0x3030_3030_3030_3030;
    }
    !zero
}

/// 32 hex digits (either case) to a valid (non-zero) trace id, and whether
/// the digits were all lower case (the text is then the id's canonical
/// form, the one the request id takes).
pub(crate) fn hex_trace_id(s: &[u8]) -> Option<([u8; 16], bool)> {
    if s.len() != 32 {
        return None;
    }
    // Each byte's digit value, 0xff for a byte that is not a hex digit,
    // with `CAPITAL` set for A-F.
    const CAPITAL: u8 = 0x40;
    const DIGIT: [u8; 256] = {
        let mut t = [0xff; 256];
        let mut c = 0;
        while c < 256 {
            t[c] = match c as u8 {
                b @ b'0'..=b'9' => b - b'0',
                b @ b'a'..=b'f' => b - b'a' + 10,
                b @ b'A'..=b'F' => (b - b'A' + 10) | CAPITAL,
                _ => 0xff,
            };
            c += 1;
        }
        t
    };
    let mut out = [0u8; 16];
    let mut seen = 0;
    for (o, pair) in out.iter_mut().zip(s.chunks_exact(2)) {
        let (hi, lo) = (DIGIT[usize::from(pair[0])], DIGIT[usize::from(pair[1])]);
        seen |= hi | lo;
        *o = (hi & 15) << 4 | (lo & 15);
    }
    (seen & 0x80 == 0 && out != [0; 16]).then_some((out, seen & CAPITAL == 0))
}
