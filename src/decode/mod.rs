//! Decode stage: bytes of one Kafka message (or one line of a replay file)
//! into a validated [`Record`], or a [`Reject`] reason
//! (docs/reference.md#the-decision-record, #reject-reasons).
//! [`otlp`] decodes OpenTelemetry export requests, which hold many records.
//!
//! Parsing is typed and borrowed: strings point into the input unless
//! they contain escapes, and no `serde_json::Value` is built. Every field
//! is first read as a loosely typed [`Val`] so that a wrong type becomes
//! `invalid_field` rather than a parse error (`malformed_json` is kept
//! for bytes that are not a JSON object at all).

use std::borrow::Cow;
use std::fmt;

use serde::de::{self, Deserializer, IgnoredAny, MapAccess, Visitor};

use crate::catalog::MAX_KEY_BYTES;

pub mod otlp;
pub(crate) mod quotes;

pub(crate) use fast::checked_string;

/// Records larger than this are rejected unparsed (docs/reference.md#limits).
pub const MAX_RECORD_BYTES: usize = 64 * 1024;

/// What the bytes of one message (or replay line) are.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, clap::ValueEnum)]
#[value(rename_all = "snake_case")]
pub enum InputFormat {
    /// One accord decision record (JSON).
    #[default]
    Accord,
    /// One OTLP/JSON `ExportLogsServiceRequest` or `ExportTraceServiceRequest`.
    OtlpJson,
    /// One protobuf `ExportLogsServiceRequest`.
    OtlpProtoLogs,
    /// One protobuf `ExportTraceServiceRequest`.
    OtlpProtoTraces,
}

impl InputFormat {
    pub const ALL: [InputFormat; 4] =
        [InputFormat::Accord, InputFormat::OtlpJson, InputFormat::OtlpProtoLogs, InputFormat::OtlpProtoTraces];

    /// The name used on the command line and in `--topic NAME:FORMAT`.
    pub fn as_str(self) -> &'static str {
        match self {
            InputFormat::Accord => "accord",
            InputFormat::OtlpJson => "otlp_json",
            InputFormat::OtlpProtoLogs => "otlp_proto_logs",
            InputFormat::OtlpProtoTraces => "otlp_proto_traces",
        }
    }

    /// Whether a message holds OpenTelemetry export requests.
    pub fn is_otlp(self) -> bool {
        self != InputFormat::Accord
    }

    /// Splits a `--topic NAME[:FORMAT]` argument. Kafka topic names never
    /// hold a `:` (they are `[A-Za-z0-9._-]`), so the last one separates
    /// the format.
    pub fn split_topic(arg: &str) -> Result<(&str, Option<InputFormat>), String> {
        match arg.rsplit_once(':') {
            None => Ok((arg, None)),
            Some((topic, format)) if !topic.is_empty() => Ok((topic, Some(format.parse()?))),
            Some(_) => Err(format!("expected TOPIC[:FORMAT], got {arg:?}")),
        }
    }

    /// Messages larger than this are rejected unparsed as `too_large`.
    pub fn max_message_bytes(self) -> usize {
        if self.is_otlp() {
            otlp::MAX_MESSAGE_BYTES
        } else {
            MAX_RECORD_BYTES
        }
    }
}

impl fmt::Display for InputFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for InputFormat {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        InputFormat::ALL.into_iter().find(|f| f.as_str() == s).ok_or_else(|| {
            format!("unknown input format {s:?} (accord | otlp_json | otlp_proto_logs | otlp_proto_traces)")
        })
    }
}

/// Why a record was rejected; the order is the precedence of
/// docs/reference.md#reject-reasons.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Reject {
    TooLarge,
    MalformedJson,
    /// With an OpenTelemetry input format: the whole message is not a
    /// valid OTLP export request.
    MalformedOtlp,
    MissingField,
    InvalidField,
    UnknownLayer,
    UnknownFeature,
}

impl Reject {
    pub const ALL: [Reject; 7] = [
        Reject::TooLarge,
        Reject::MalformedJson,
        Reject::MalformedOtlp,
        Reject::MissingField,
        Reject::InvalidField,
        Reject::UnknownLayer,
        Reject::UnknownFeature,
    ];
    /// The `reason` label value of `accord_records_rejected_total`.
    pub fn as_str(self) -> &'static str {
        match self {
            Reject::TooLarge => "too_large",
            Reject::MalformedJson => "malformed_json",
            Reject::MalformedOtlp => "malformed_otlp",
            Reject::MissingField => "missing_field",
            Reject::InvalidField => "invalid_field",
            Reject::UnknownLayer => "unknown_layer",
            Reject::UnknownFeature => "unknown_feature",
        }
    }
    pub fn index(self) -> usize {
        self as usize
    }
}

impl fmt::Display for Reject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A JSON value as far as validation needs to know it.
#[derive(Debug, Clone, PartialEq)]
pub enum Val<'a> {
    Null,
    Bool(bool),
    Str(Cow<'a, str>),
    Int(i128),
    Float(f64),
    /// An array or object (skipped, never allocated).
    Compound,
}

impl<'de: 'a, 'a> de::Deserialize<'de> for Val<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Val<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_unit<E>(self) -> Result<Val<'de>, E> {
                Ok(Val::Null)
            }
            fn visit_none<E>(self) -> Result<Val<'de>, E> {
                Ok(Val::Null)
            }
            fn visit_bool<E>(self, v: bool) -> Result<Val<'de>, E> {
                Ok(Val::Bool(v))
            }
            fn visit_i64<E>(self, v: i64) -> Result<Val<'de>, E> {
                Ok(Val::Int(v as i128))
            }
            fn visit_u64<E>(self, v: u64) -> Result<Val<'de>, E> {
                Ok(Val::Int(v as i128))
            }
            fn visit_f64<E>(self, v: f64) -> Result<Val<'de>, E> {
                Ok(Val::Float(v))
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Val<'de>, E> {
                Ok(Val::Str(Cow::Borrowed(v)))
            }
            fn visit_str<E>(self, v: &str) -> Result<Val<'de>, E> {
                Ok(Val::Str(Cow::Owned(v.to_owned())))
            }
            fn visit_string<E>(self, v: String) -> Result<Val<'de>, E> {
                Ok(Val::Str(Cow::Owned(v)))
            }
            fn visit_seq<A: de::SeqAccess<'de>>(self, mut a: A) -> Result<Val<'de>, A::Error> {
                while a.next_element::<IgnoredAny>()?.is_some() {}
                Ok(Val::Compound)
            }
            fn visit_map<A: MapAccess<'de>>(self, mut a: A) -> Result<Val<'de>, A::Error> {
                while a.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
                Ok(Val::Compound)
            }
        }
        d.deserialize_any(V)
    }
}

/// The record's fields as found, before validation.
#[derive(Debug, Default, PartialEq)]
struct RawRecord<'a> {
    request_id: Option<Val<'a>>,
    layer: Option<Val<'a>>,
    feature: Option<Val<'a>>,
    ts: Option<Val<'a>>,
    flag_state: Option<Val<'a>>,
    api_capability: Option<Val<'a>>,
    selected_flow: Option<Val<'a>>,
    job_payload_version: Option<Val<'a>>,
    flags_revision: Option<Val<'a>>,
    service: Option<Val<'a>>,
    instance: Option<Val<'a>>,
    build: Option<Val<'a>>,
}

enum Key {
    RequestId,
    Layer,
    Feature,
    Ts,
    FlagState,
    ApiCapability,
    SelectedFlow,
    JobPayloadVersion,
    FlagsRevision,
    Service,
    Instance,
    Build,
    Other,
}

impl Key {
    fn of(s: &str) -> Key {
        match s {
            "request_id" => Key::RequestId,
            "layer" => Key::Layer,
            "feature" => Key::Feature,
            "ts" => Key::Ts,
            "flag_state" => Key::FlagState,
            "api_capability" => Key::ApiCapability,
            "selected_flow" => Key::SelectedFlow,
            "job_payload_version" => Key::JobPayloadVersion,
            "flags_revision" => Key::FlagsRevision,
            "service" => Key::Service,
            "instance" => Key::Instance,
            "build" => Key::Build,
            _ => Key::Other,
        }
    }
}

impl<'de> de::Deserialize<'de> for Key {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Key;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a field name")
            }
            fn visit_str<E>(self, v: &str) -> Result<Key, E> {
                Ok(Key::of(v))
            }
        }
        d.deserialize_identifier(V)
    }
}

impl<'a> RawRecord<'a> {
    /// Where the value of field `k` goes (`None`: an unknown field).
    fn slot(&mut self, k: Key) -> Option<&mut Option<Val<'a>>> {
        Some(match k {
            Key::RequestId => &mut self.request_id,
            Key::Layer => &mut self.layer,
            Key::Feature => &mut self.feature,
            Key::Ts => &mut self.ts,
            Key::FlagState => &mut self.flag_state,
            Key::ApiCapability => &mut self.api_capability,
            Key::SelectedFlow => &mut self.selected_flow,
            Key::JobPayloadVersion => &mut self.job_payload_version,
            Key::FlagsRevision => &mut self.flags_revision,
            Key::Service => &mut self.service,
            Key::Instance => &mut self.instance,
            Key::Build => &mut self.build,
            Key::Other => return None,
        })
    }
}

impl<'de> de::Deserialize<'de> for RawRecord<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = RawRecord<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut m: A) -> Result<RawRecord<'de>, A::Error> {
                let mut r = RawRecord::default();
                // Duplicate keys: the last one wins, like most JSON readers.
                while let Some(k) = m.next_key::<Key>()? {
                    match r.slot(k) {
                        Some(slot) => *slot = Some(m.next_value::<Val<'de>>()?),
                        None => {
                            m.next_value::<IgnoredAny>()?;
                        }
                    }
                }
                Ok(r)
            }
        }
        d.deserialize_map(V)
    }
}

/// A flag evaluation result: a bool or a string variant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FlagState<'a> {
    Bool(bool),
    Variant(Cow<'a, str>),
}

/// A validated decision record. `layer` and `feature` are still names:
/// the catalog lookup is the caller's (it may intern tracked features).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record<'a> {
    pub request_id: Cow<'a, str>,
    pub layer: Cow<'a, str>,
    pub feature: Cow<'a, str>,
    /// Event time, epoch milliseconds.
    pub ts_ms: Option<i64>,
    pub flag_state: Option<FlagState<'a>>,
    pub api_capability: Option<Cow<'a, str>>,
    pub selected_flow: Option<Cow<'a, str>>,
    /// Numbers are kept as their decimal text: `2` equals `"2"`
    /// (docs/reference.md#numbers-and-strings).
    pub job_payload_version: Option<Cow<'a, str>>,
    pub flags_revision: Option<Cow<'a, str>>,
    pub service: Option<Cow<'a, str>>,
    pub instance: Option<Cow<'a, str>>,
    pub build: Option<Cow<'a, str>>,
}

/// Decodes and validates one record's bytes. Never panics.
pub fn decode(bytes: &[u8]) -> Result<Record<'_>, Reject> {
    if bytes.len() > MAX_RECORD_BYTES {
        return Err(Reject::TooLarge);
    }
    let raw = match fast::parse(bytes) {
        Some(raw) => raw,
        None => serde_json::from_slice(bytes).map_err(|_| Reject::MalformedJson)?,
    };
    validate(raw)
}

/// The hot path of [`decode`]: a flat JSON object whose values are
/// strings without escapes, `true`/`false`/`null` or non-negative
/// integers — every record a producer normally sends — scanned in one
/// pass without serde or allocation. Anything else (escapes, nesting,
/// floats, negative or huge numbers, and every malformed input) returns
/// `None` and goes through `serde_json`, so the fast path never decides
/// an edge case: where it answers, `serde_json` would answer the same
/// (checked by a differential property test below).
mod fast {
    use std::borrow::Cow;

    use super::{Key, RawRecord, Val};

    struct Scan<'a> {
        /// The whole record, validated as UTF-8 once, so a string is a
        /// subslice between two ASCII quotes and needs no check of its own.
        s: &'a str,
        b: &'a [u8],
        i: usize,
    }

    const LO: u64 = 0x0101_0101_0101_0101;
    const HI: u64 = 0x8080_8080_8080_8080;

    /// The high bit of each byte of `x` that may be `"`, `\\` or a control
    /// character; the lowest one set is exact (the bit tricks only err
    /// above a true hit).
    #[inline]
    pub(super) fn specials(x: u64) -> u64 {
        let q = x ^ (LO * u64::from(b'"'));
        let e = x ^ (LO * u64::from(b'\\'));
        ((q.wrapping_sub(LO) & !q) | (e.wrapping_sub(LO) & !e) | (x.wrapping_sub(LO * 0x20) & !x)) & HI
    }

    /// From `i`, eight bytes at a time while `hits` finds nothing in a
    /// word: the index of the lowest byte it marks (exact when its lowest
    /// set bit is), or where fewer than eight bytes are left.
    #[inline(always)]
    fn skip_words(b: &[u8], mut i: usize, hits: impl Fn(u64) -> u64) -> usize {
        while let Some(&word) = b.get(i..).and_then(|rest| rest.first_chunk::<8>()) {
            let m = hits(u64::from_le_bytes(word));
            if m != 0 {
                return i + m.trailing_zeros() as usize / 8;
            }
            i += 8;
        }
        i
    }

    /// The index of the closing quote of the string whose contents start
    /// at `start` (after its opening quote), if it holds no escape and no
    /// control character: where a JSON reader may borrow it as it is.
    #[inline]
    pub(crate) fn plain_string_end(b: &[u8], start: usize) -> Option<usize> {
        // Eight bytes at a time to the first `"`, `\\` or control byte.
        let mut i = skip_words(b, start, specials);
        loop {
            match *b.get(i)? {
                b'"' => return Some(i),
                b'\\' | 0..=0x1f => return None,
                _ => i += 1,
            }
        }
    }

    /// [`plain_string_end`] for text not yet checked as UTF-8: the index of
    /// the closing quote and the string's contents, which are checked here
    /// (`None` also for invalid UTF-8). A reader that meets every
    /// non-ASCII byte of a message inside a string (as a JSON scanner does:
    /// outside strings the grammar allows ASCII only) thereby checks the
    /// whole message in the same pass, instead of reading it twice.
    #[inline]
    pub(crate) fn checked_string(b: &[u8], start: usize) -> Option<(usize, &str)> {
        // Eight bytes at a time to the first `"`, `\\`, control or
        // non-ASCII byte: the usual string is ASCII and needs no other check.
        // (SSE2 sixteen at a time measured slower on these short strings.)
        let mut i = skip_words(b, start, |x| specials(x) | (x & HI));
        loop {
            match *b.get(i)? {
                b'"' => {
                    let ascii = &b[start..i];
                    // SAFETY: every byte of `ascii` was seen above to be
                    // below 0x80, and ASCII is valid UTF-8.
                    return Some((i, unsafe { std::str::from_utf8_unchecked(ascii) }));
                }
                b'\\' | 0..=0x1f => return None,
                0x80.. => {
                    let end = plain_string_end(b, i)?;
                    return Some((end, std::str::from_utf8(&b[start..end]).ok()?));
                }
                _ => i += 1,
            }
        }
    }

    /// A non-negative integer of at most 18 digits starting at `start`
    /// (no sign, no fraction, no exponent, no leading zero), which
    /// serde_json reads as a `u64`: its value and where it ends.
    #[inline]
    pub(super) fn plain_integer(b: &[u8], start: usize) -> Option<(u64, usize)> {
        let digits = b.get(start..)?.iter().take_while(|c| c.is_ascii_digit()).count();
        if digits == 0 || digits > 18 || (digits > 1 && b[start] == b'0') {
            return None;
        }
        let end = start + digits;
        if matches!(b.get(end), Some(b'.' | b'e' | b'E')) {
            return None;
        }
        Some((b[start..end].iter().fold(0, |n, &c| n * 10 + u64::from(c - b'0')), end))
    }

    impl<'a> Scan<'a> {
        #[inline]
        fn ws(&mut self) {
            while let Some(b' ' | b'\n' | b'\t' | b'\r') = self.b.get(self.i) {
                self.i += 1;
            }
        }

        #[inline]
        fn peek(&self) -> Option<u8> {
            self.b.get(self.i).copied()
        }

        /// A string's contents after its opening quote, if it has no
        /// escape and no control character.
        #[inline]
        fn string(&mut self) -> Option<&'a str> {
            let start = self.i;
            let end = plain_string_end(self.b, start)?;
            self.i = end + 1;
            self.s.get(start..end)
        }

        #[inline]
        fn literal(&mut self, word: &[u8]) -> Option<()> {
            if self.b[self.i..].starts_with(word) {
                self.i += word.len();
                Some(())
            } else {
                None
            }
        }

        /// A non-negative integer of at most 18 digits (no sign, no
        /// fraction, no exponent, no leading zero), which serde_json reads
        /// as a `u64`.
        #[inline]
        fn integer(&mut self) -> Option<i128> {
            let (v, end) = plain_integer(self.b, self.i)?;
            self.i = end;
            Some(i128::from(v))
        }

        fn value(&mut self) -> Option<Val<'a>> {
            match self.peek()? {
                b'"' => {
                    self.i += 1;
                    Some(Val::Str(Cow::Borrowed(self.string()?)))
                }
                b't' => self.literal(b"true").map(|_| Val::Bool(true)),
                b'f' => self.literal(b"false").map(|_| Val::Bool(false)),
                b'n' => self.literal(b"null").map(|_| Val::Null),
                b'0'..=b'9' => self.integer().map(Val::Int),
                _ => None,
            }
        }
    }

    pub(super) fn parse(b: &[u8]) -> Option<RawRecord<'_>> {
        // Invalid UTF-8 is malformed JSON wherever it is; serde says so.
        let text = std::str::from_utf8(b).ok()?;
        let mut s = Scan { s: text, b, i: 0 };
        let mut r = RawRecord::default();
        s.ws();
        if s.peek()? != b'{' {
            return None;
        }
        s.i += 1;
        s.ws();
        if s.peek()? == b'}' {
            s.i += 1;
        } else {
            loop {
                if s.peek()? != b'"' {
                    return None;
                }
                s.i += 1;
                let key = Key::of(s.string()?);
                s.ws();
                if s.peek()? != b':' {
                    return None;
                }
                s.i += 1;
                s.ws();
                let v = s.value()?;
                if let Some(slot) = r.slot(key) {
                    *slot = Some(v);
                }
                s.ws();
                match s.peek()? {
                    b',' => {
                        s.i += 1;
                        s.ws();
                    }
                    b'}' => {
                        s.i += 1;
                        break;
                    }
                    _ => return None,
                }
            }
        }
        s.ws();
        (s.i == b.len()).then_some(r)
    }
}

fn present<'a>(v: Option<Val<'a>>) -> Option<Val<'a>> {
    match v {
        None | Some(Val::Null) => None,
        v => v,
    }
}

fn validate(raw: RawRecord<'_>) -> Result<Record<'_>, Reject> {
    let request_id = present(raw.request_id);
    let layer = present(raw.layer);
    let feature = present(raw.feature);
    let (Some(request_id), Some(layer), Some(feature)) = (request_id, layer, feature) else {
        return Err(Reject::MissingField);
    };
    let request_id = match request_id {
        Val::Str(s) if !s.is_empty() && s.len() <= MAX_KEY_BYTES => s,
        _ => return Err(Reject::InvalidField),
    };
    let layer = match layer {
        Val::Str(s) => s,
        _ => return Err(Reject::InvalidField),
    };
    let feature = match feature {
        Val::Str(s) if valid_feature_key(&s) => s,
        _ => return Err(Reject::InvalidField),
    };
    let ts_ms = match present(raw.ts) {
        None => None,
        Some(Val::Str(s)) => Some(parse_rfc3339_ms(&s).ok_or(Reject::InvalidField)?),
        Some(Val::Int(n)) => Some(i64::try_from(n).map_err(|_| Reject::InvalidField)?),
        Some(_) => return Err(Reject::InvalidField),
    };
    let flag_state = match present(raw.flag_state) {
        None => None,
        Some(Val::Bool(b)) => Some(FlagState::Bool(b)),
        Some(Val::Str(s)) => Some(FlagState::Variant(s)),
        Some(_) => return Err(Reject::InvalidField),
    };
    let job_payload_version = match present(raw.job_payload_version) {
        None => None,
        Some(Val::Str(s)) => Some(s),
        Some(Val::Int(n)) => Some(int_text(n)),
        Some(_) => return Err(Reject::InvalidField),
    };
    Ok(Record {
        request_id,
        layer,
        feature,
        ts_ms,
        flag_state,
        api_capability: string_field(raw.api_capability)?,
        selected_flow: string_field(raw.selected_flow)?,
        job_payload_version,
        flags_revision: string_field(raw.flags_revision)?,
        service: string_field(raw.service)?,
        instance: string_field(raw.instance)?,
        build: string_field(raw.build)?,
    })
}

fn string_field(v: Option<Val<'_>>) -> Result<Option<Cow<'_, str>>, Reject> {
    match present(v) {
        None => Ok(None),
        Some(Val::Str(s)) => Ok(Some(s)),
        Some(_) => Err(Reject::InvalidField),
    }
}

/// `[A-Za-z0-9_.:-]`, 1..=128 bytes (docs/reference.md#record-fields).
pub fn valid_feature_key(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= MAX_KEY_BYTES
        && s.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b':' | b'-'))
}

/// The decimal text of an integer; versions 0..=99 (all real ones) are
/// borrowed from a static table instead of allocated.
fn int_text(n: i128) -> Cow<'static, str> {
    const DIGITS: &str = "00010203040506070809101112131415161718192021222324252627282930313233343536373839404142434445464748495051525354555657585960616263646566676869707172737475767778798081828384858687888990919293949596979899";
    match n {
        0..=9 => Cow::Borrowed(&DIGITS[2 * n as usize + 1..2 * n as usize + 2]),
        10..=99 => Cow::Borrowed(&DIGITS[2 * n as usize..2 * n as usize + 2]),
        _ => Cow::Owned(n.to_string()),
    }
}

/// RFC 3339 to epoch milliseconds (sub-millisecond digits are truncated).
pub fn parse_rfc3339_ms(s: &str) -> Option<i64> {
    rfc3339_fast(s.as_bytes()).or_else(|| chrono::DateTime::parse_from_rfc3339(s).ok().map(|t| t.timestamp_millis()))
}

/// The common shape `YYYY-MM-DDTHH:MM:SS[.f{1,9}](Z|±HH:MM)` with valid
/// fields, computed without chrono. Anything else (lowercase or space
/// separators, leap seconds, more than 9 fraction digits, invalid dates)
/// returns `None` and is left to chrono, so both always agree.
fn rfc3339_fast(b: &[u8]) -> Option<i64> {
    if b.len() < 20 {
        return None;
    }
    let d = |i: usize| -> Option<i64> {
        let c = b[i].wrapping_sub(b'0');
        (c < 10).then_some(i64::from(c))
    };
    let two = |i: usize| -> Option<i64> { Some(d(i)? * 10 + d(i + 1)?) };
    let year = two(0)? * 100 + two(2)?;
    let (month, day) = (two(5)?, two(8)?);
    let (hour, min, sec) = (two(11)?, two(14)?, two(17)?);
    if b[4] != b'-' || b[7] != b'-' || b[10] != b'T' || b[13] != b':' || b[16] != b':' {
        return None;
    }
    let leap = year % 4 == 0 && (year % 100 != 0 || year % 400 == 0);
    let month_days = match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if leap => 29,
        2 => 28,
        _ => return None,
    };
    if day == 0 || day > month_days || hour > 23 || min > 59 || sec > 59 {
        return None;
    }
    let mut i = 19;
    let mut ms = 0;
    if b[i] == b'.' {
        i += 1;
        let start = i;
        while i < b.len() && b[i].is_ascii_digit() {
            if i - start < 3 {
                ms = ms * 10 + i64::from(b[i] - b'0');
            }
            i += 1;
        }
        let n = i - start;
        if n == 0 || n > 9 {
            return None;
        }
        for _ in n..3 {
            ms *= 10;
        }
    }
    let offset = match *b.get(i)? {
        b'Z' => {
            i += 1;
            0
        }
        sign @ (b'+' | b'-') => {
            if b.len() != i + 6 || b[i + 3] != b':' {
                return None;
            }
            let (oh, om) = (two(i + 1)?, two(i + 4)?);
            if oh > 23 || om > 59 {
                return None;
            }
            i += 6;
            let off = oh * 3600 + om * 60;
            if sign == b'-' {
                -off
            } else {
                off
            }
        }
        _ => return None,
    };
    if i != b.len() {
        return None;
    }
    // Days since 1970-01-01 of the civil date (H. Hinnant's algorithm).
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some((days * 86_400 + hour * 3600 + min * 60 + sec - offset) * 1000 + ms)
}

/// Formats epoch milliseconds as RFC 3339 UTC with milliseconds.
pub fn format_rfc3339_ms(ms: i64) -> String {
    match chrono::DateTime::from_timestamp_millis(ms) {
        Some(t) => t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        None => ms.to_string(),
    }
}

#[cfg(test)]
mod tests;
