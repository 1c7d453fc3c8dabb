//! OTLP protobuf: one `ExportLogsServiceRequest` or
//! `ExportTraceServiceRequest` per message (the Collector's Kafka
//! exporter's default `otlp_proto` encoding).
//!
//! A small zero-copy walker over the protobuf wire format (prost's
//! varint and field-key primitives): a length-delimited field is a
//! subslice of the message, walked only when accord reads something in it,
//! so strings are borrowed and skipped content costs one length check.
//! Decoding into the generated `opentelemetry-proto` types instead would
//! allocate every string, attribute and item of the message (measured in
//! `benches/pipeline.rs`, group `otlp`).
//!
//! Field numbers follow `opentelemetry/proto/{collector/,}{logs,trace}/v1`
//! and `common/v1`, `resource/v1`.

use prost::encoding::{decode_varint, skip_field, DecodeContext, WireType};

use super::{AnyVal, Builder, Signal, Target, Trace};

/// Not a valid export request.
#[derive(Debug)]
pub(crate) struct Malformed;

impl From<prost::DecodeError> for Malformed {
    fn from(_: prost::DecodeError) -> Self {
        Malformed
    }
}

/// A field's value as it is on the wire.
#[derive(Debug, Clone, Copy)]
enum Wire<'a> {
    Varint(u64),
    Fixed64(u64),
    Bytes(&'a [u8]),
    Fixed32,
}

/// The fields of one message, in wire order; groups (a deprecated wire
/// type no OTLP field uses) are skipped like any unknown field.
struct Fields<'a> {
    buf: &'a [u8],
}

impl<'a> Fields<'a> {
    fn of(buf: &'a [u8]) -> Self {
        Fields { buf }
    }

    #[inline]
    fn next(&mut self) -> Result<Option<(u32, Wire<'a>)>, Malformed> {
        loop {
            if self.buf.is_empty() {
                return Ok(None);
            }
            let key = decode_varint(&mut self.buf)?;
            if key > u64::from(u32::MAX) || key >> 3 == 0 {
                return Err(Malformed);
            }
            let tag = (key >> 3) as u32;
            let wire = match key & 7 {
                0 => Wire::Varint(decode_varint(&mut self.buf)?),
                1 => {
                    let (v, rest) = self.buf.split_first_chunk::<8>().ok_or(Malformed)?;
                    self.buf = rest;
                    Wire::Fixed64(u64::from_le_bytes(*v))
                }
                2 => {
                    let len = decode_varint(&mut self.buf)?;
                    if len > self.buf.len() as u64 {
                        return Err(Malformed);
                    }
                    let (v, rest) = self.buf.split_at(len as usize);
                    self.buf = rest;
                    Wire::Bytes(v)
                }
                3 => {
                    skip_field(WireType::StartGroup, tag, &mut self.buf, DecodeContext::default())?;
                    continue;
                }
                5 => {
                    let (_, rest) = self.buf.split_first_chunk::<4>().ok_or(Malformed)?;
                    self.buf = rest;
                    Wire::Fixed32
                }
                _ => return Err(Malformed),
            };
            return Ok(Some((tag, wire)));
        }
    }
}

/// The field of a known number must have its declared wire type.
fn bytes(w: Wire<'_>) -> Result<&[u8], Malformed> {
    match w {
        Wire::Bytes(b) => Ok(b),
        _ => Err(Malformed),
    }
}

fn fixed64(w: Wire<'_>) -> Result<u64, Malformed> {
    match w {
        Wire::Fixed64(v) => Ok(v),
        _ => Err(Malformed),
    }
}

fn string(w: Wire<'_>) -> Result<&str, Malformed> {
    std::str::from_utf8(bytes(w)?).map_err(|_| Malformed)
}

/// A 16-byte trace id; any other length, or all zeros, is no trace (the
/// OTLP specification asks receivers to treat an invalid id as absent).
fn trace_id(w: Wire<'_>) -> Result<Trace, Malformed> {
    Ok(<[u8; 16]>::try_from(bytes(w)?).ok().filter(|t| *t != [0; 16]).map_or(Trace::None, Trace::Bytes))
}

/// Parses one message of `signal` into `b`.
pub(crate) fn parse<'a>(buf: &'a [u8], signal: Signal, b: &mut Builder<'a>) -> Result<(), Malformed> {
    b.signal = Some(signal);
    let mut f = Fields::of(buf);
    while let Some((tag, w)) = f.next()? {
        // ExportLogsServiceRequest.resource_logs / ExportTraceServiceRequest.resource_spans
        if tag == 1 {
            resource_group(bytes(w)?, signal, b)?;
        }
    }
    Ok(())
}

/// `ResourceLogs` / `ResourceSpans`: 1 resource, 2 scope_logs / scope_spans.
fn resource_group<'a>(buf: &'a [u8], signal: Signal, b: &mut Builder<'a>) -> Result<(), Malformed> {
    let r = b.new_ctx();
    let mut f = Fields::of(buf);
    while let Some((tag, w)) = f.next()? {
        match tag {
            1 => resource(bytes(w)?, r, b)?,
            2 => scope_group(bytes(w)?, signal, r, b)?,
            _ => {}
        }
    }
    Ok(())
}

/// `Resource`: 1 attributes.
fn resource<'a>(buf: &'a [u8], r: u32, b: &mut Builder<'a>) -> Result<(), Malformed> {
    let mut f = Fields::of(buf);
    while let Some((tag, w)) = f.next()? {
        if tag == 1 {
            key_value(bytes(w)?, Target::Ctx(r), b)?;
        }
    }
    Ok(())
}

/// `ScopeLogs` / `ScopeSpans`: 2 log_records / spans.
fn scope_group<'a>(buf: &'a [u8], signal: Signal, r: u32, b: &mut Builder<'a>) -> Result<(), Malformed> {
    let mut f = Fields::of(buf);
    while let Some((tag, w)) = f.next()? {
        if tag == 2 {
            match signal {
                Signal::Logs => log_record(bytes(w)?, r, b)?,
                Signal::Traces => span(bytes(w)?, r, b)?,
            }
        }
    }
    Ok(())
}

/// `LogRecord`: 1 time_unix_nano, 5 body, 6 attributes, 9 trace_id,
/// 11 observed_time_unix_nano, 12 event_name.
fn log_record<'a>(buf: &'a [u8], r: u32, b: &mut Builder<'a>) -> Result<(), Malformed> {
    let i = b.start_item(r, None);
    let mut event_name = "";
    let mut f = Fields::of(buf);
    while let Some((tag, w)) = f.next()? {
        match tag {
            1 => b.item(i).time_ns = fixed64(w)?,
            5 => b.set_body(i, any_value(bytes(w)?)?),
            6 => key_value(bytes(w)?, Target::Item(i), b)?,
            9 => b.item(i).trace = trace_id(w)?,
            11 => b.item(i).observed_ns = fixed64(w)?,
            12 => event_name = string(w)?,
            _ => {}
        }
    }
    b.end_log(i, event_name);
    Ok(())
}

/// `Span`: 1 trace_id, 9 attributes, 11 events.
fn span<'a>(buf: &'a [u8], r: u32, b: &mut Builder<'a>) -> Result<(), Malformed> {
    let s = b.new_ctx();
    let mut f = Fields::of(buf);
    while let Some((tag, w)) = f.next()? {
        match tag {
            1 => b.bufs.ctxs[s as usize].trace = trace_id(w)?,
            9 => key_value(bytes(w)?, Target::Ctx(s), b)?,
            11 => event(bytes(w)?, r, s, b)?,
            _ => {}
        }
    }
    Ok(())
}

/// `Span.Event`: 1 time_unix_nano, 2 name, 3 attributes.
fn event<'a>(buf: &'a [u8], r: u32, s: u32, b: &mut Builder<'a>) -> Result<(), Malformed> {
    let i = b.start_item(r, Some(s));
    let mut name = "";
    let mut f = Fields::of(buf);
    while let Some((tag, w)) = f.next()? {
        match tag {
            1 => b.item(i).time_ns = fixed64(w)?,
            2 => name = string(w)?,
            3 => key_value(bytes(w)?, Target::Item(i), b)?,
            _ => {}
        }
    }
    b.end_event(i, name);
    Ok(())
}

/// `KeyValue`: 1 key, 2 value. The value of an attribute accord does not
/// read is not walked.
fn key_value<'a>(buf: &'a [u8], t: Target, b: &mut Builder<'a>) -> Result<(), Malformed> {
    let (key, value) = match short_pair(buf) {
        Some(kv) => kv,
        None => pair(buf)?,
    };
    let mask = b.map.mask(key);
    if mask != 0 {
        if let Some(v) = any_value(value.unwrap_or(&[]))? {
            b.set(t, mask, v);
        }
    }
    Ok(())
}

/// A `KeyValue`'s key and value, walked field by field.
fn pair(buf: &[u8]) -> Result<(&[u8], Option<&[u8]>), Malformed> {
    let (mut key, mut value): (&[u8], Option<&[u8]>) = (&[], None);
    let mut f = Fields::of(buf);
    while let Some((tag, w)) = f.next()? {
        match tag {
            1 => key = bytes(w)?,
            2 => value = Some(bytes(w)?),
            _ => {}
        }
    }
    Ok((key, value))
}

/// The shape every encoder writes for an attribute, read without the
/// general walker: field 1 then field 2, each shorter than 128 bytes (a
/// one-byte length), and nothing else. `None`: any other shape, left to
/// the walker (which decides it the same way).
#[inline]
fn short_pair(buf: &[u8]) -> Option<(&[u8], Option<&[u8]>)> {
    let [0x0a, klen, rest @ ..] = buf else { return None };
    let klen = usize::from(*klen);
    if klen >= 0x80 || rest.len() < klen {
        return None;
    }
    let (key, rest) = rest.split_at(klen);
    match rest {
        [] => Some((key, None)),
        [0x12, vlen, value @ ..] if usize::from(*vlen) == value.len() && *vlen < 0x80 => Some((key, Some(value))),
        _ => None,
    }
}

/// `AnyValue` (a oneof: the last field wins; `None` when empty):
/// 1 string, 2 bool, 3 int, 4 double, 5 array, 6 kvlist, 7 bytes.
fn any_value(buf: &[u8]) -> Result<Option<AnyVal<'_>>, Malformed> {
    // The usual shapes (one short string, a small int, a bool) first.
    match buf {
        [0x0a, len, s @ ..] if usize::from(*len) == s.len() && *len < 0x80 => {
            return std::str::from_utf8(s).map(|s| Some(AnyVal::Str(s.into()))).map_err(|_| Malformed);
        }
        [0x10, n] if *n < 0x80 => return Ok(Some(AnyVal::Bool(*n != 0))),
        [0x18, n] if *n < 0x80 => return Ok(Some(AnyVal::Int(i64::from(*n)))),
        _ => {}
    }
    any_value_walk(buf)
}

/// [`any_value`] field by field.
fn any_value_walk(buf: &[u8]) -> Result<Option<AnyVal<'_>>, Malformed> {
    let mut v = None;
    let mut f = Fields::of(buf);
    while let Some((tag, w)) = f.next()? {
        v = Some(match (tag, w) {
            (1, w) => AnyVal::Str(string(w)?.into()),
            (2, Wire::Varint(n)) => AnyVal::Bool(n != 0),
            (3, Wire::Varint(n)) => AnyVal::Int(n as i64),
            (4, Wire::Fixed64(n)) => AnyVal::Double(f64::from_bits(n)),
            (5..=7, Wire::Bytes(_)) => AnyVal::Other,
            (1..=7, _) => return Err(Malformed),
            _ => continue,
        });
    }
    Ok(v)
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    /// Attribute-like messages: mostly the usual shape, sometimes not.
    fn attribute() -> impl Strategy<Value = Vec<u8>> {
        let field =
            (0u8..4, proptest::collection::vec(any::<u8>(), 0..6), 0u8..200).prop_map(|(kind, body, n)| match kind {
                0 => [vec![0x0a, body.len() as u8], body].concat(),
                1 => [vec![0x12, body.len() as u8], body].concat(),
                2 => vec![0x10, n],
                _ => body,
            });
        proptest::collection::vec(field, 0..4).prop_map(|f| f.concat())
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(4096))]

        /// Where the shortcuts answer, the walker answers the same.
        #[test]
        fn shortcuts_agree_with_the_walker(buf in prop_oneof![attribute(), proptest::collection::vec(any::<u8>(), 0..12)]) {
            if let Some(kv) = short_pair(&buf) {
                prop_assert_eq!(Some(kv), pair(&buf).ok());
            }
            match (any_value(&buf), any_value_walk(&buf)) {
                (Ok(a), Ok(b)) => prop_assert_eq!(a, b),
                (Err(_), Err(_)) => {}
                (a, b) => prop_assert!(false, "{:?} vs {:?} on {:?}", a, b, buf),
            }
        }
    }
}
