//! The hot path of OTLP/JSON decoding: the request as every encoder
//! writes it (strings without escapes, integers as numbers or decimal
//! strings) read in one pass by a small recursive-descent scanner, with
//! the visitors of `json.rs` written against it instead of serde's
//! `MapAccess`. serde_json spends most of its time per token (a key, a
//! `{"stringValue":…}` wrapper, a comma), and an evaluation is about sixty
//! of them.
//!
//! Anything else — an escape in a string, a float, a number out of range,
//! a value of an unexpected type, deep nesting, malformed input — returns
//! `None`, and the serde path decodes the message from the start. The fast
//! path therefore never decides an edge case: where it answers, the serde
//! path would build the same contexts, items and values (checked by a
//! differential property test and by the `otlp` fuzz target).

use super::super::{AnyVal, Builder, Signal, Target, Trace};
use super::{At, NO_SPAN};

/// Nesting the fast path follows before it gives up (serde_json's own
/// limit is 128; staying well below it keeps "too deep" serde's call).
const MAX_DEPTH: u32 = 64;

struct Lex<'a, 'q> {
    /// The message. If it is plain (`decode::quotes`: no escape, no
    /// control character, valid UTF-8), `quotes` holds its quote bitmap
    /// and a string ends at the next quote. Otherwise each string is
    /// checked as it is read; the grammar allows only ASCII outside them,
    /// so a message the fast path accepts is valid UTF-8 either way.
    b: &'a [u8],
    quotes: Option<&'q [u64]>,
    i: usize,
    depth: u32,
}

/// Parses one message into `b`; `None`: let the serde path decide (`b`
/// then holds a partial result and must be reset).
pub(super) fn parse<'a>(bytes: &'a [u8], b: &mut Builder<'a>) -> Option<()> {
    let mut quotes = std::mem::take(&mut b.bufs.quotes);
    let plain = crate::decode::quotes::plain_quotes(bytes, &mut quotes);
    let l = Lex { b: bytes, quotes: plain.then_some(&quotes[..]), i: 0, depth: 0 };
    let parsed = request(l, b);
    // Kept for the next message unless a rare large one grew it: a stream
    // should not hold half a megabyte for one 4 MiB request.
    if quotes.capacity() <= KEEP_QUOTE_WORDS {
        b.bufs.quotes = quotes;
    }
    parsed
}

/// The quote bitmap kept between messages: that of a 256 KiB message.
const KEEP_QUOTE_WORDS: usize = 4096;

fn request<'a>(mut l: Lex<'a, '_>, b: &mut Builder<'a>) -> Option<()> {
    l.object(|l, k| {
        let signal = match k {
            "resourceLogs" | "resource_logs" => Signal::Logs,
            "resourceSpans" | "resource_spans" => Signal::Traces,
            _ => return l.skip(),
        };
        if b.signal.is_some_and(|s| s != signal) {
            return None;
        }
        b.signal = Some(signal);
        match signal {
            Signal::Logs => l.list(|l| resource(l, b, "scopeLogs", "scope_logs", scope_logs)),
            Signal::Traces => l.list(|l| resource(l, b, "scopeSpans", "scope_spans", scope_spans)),
        }
    })?;
    l.ws();
    (l.i == l.b.len() && b.signal.is_some()).then_some(())
}

type Scope<'a> = fn(&mut Lex<'a, '_>, &mut Builder<'a>, At) -> Option<()>;

/// A `ResourceLogs` or `ResourceSpans`: its resource's attributes and its
/// scope groups (`scopes` / `snake`: the field's two names).
fn resource<'a>(l: &mut Lex<'a, '_>, b: &mut Builder<'a>, scopes: &str, snake: &str, scope: Scope<'a>) -> Option<()> {
    let r = b.new_ctx();
    let at = At { resource: r, span: NO_SPAN };
    l.object(|l, k| match k {
        "resource" => l.nullable_object(|l, k| match k {
            "attributes" => attributes(l, b, Target::Ctx(r)),
            _ => l.skip(),
        }),
        k if k == scopes || k == snake => l.list(|l| scope(l, b, at)),
        _ => l.skip(),
    })
}

fn scope_logs<'a>(l: &mut Lex<'a, '_>, b: &mut Builder<'a>, at: At) -> Option<()> {
    l.object(|l, k| match k {
        "logRecords" | "log_records" => l.list(|l| log_record(l, b, at)),
        _ => l.skip(),
    })
}

fn scope_spans<'a>(l: &mut Lex<'a, '_>, b: &mut Builder<'a>, at: At) -> Option<()> {
    l.object(|l, k| match k {
        "spans" => l.list(|l| span(l, b, at)),
        _ => l.skip(),
    })
}

fn log_record<'a>(l: &mut Lex<'a, '_>, b: &mut Builder<'a>, at: At) -> Option<()> {
    let i = b.start_item(at.resource, None);
    let mut event_name: Option<&'a str> = None;
    l.object(|l, k| {
        match k {
            "timeUnixNano" | "time_unix_nano" => b.item(i).time_ns = l.u64()?,
            "observedTimeUnixNano" | "observed_time_unix_nano" => b.item(i).observed_ns = l.u64()?,
            "traceId" | "trace_id" => {
                let t = l.trace_id(b)?;
                b.item(i).trace = t;
            }
            "eventName" | "event_name" => event_name = l.opt_str()?,
            "body" => {
                let v = any(l)?;
                b.set_body(i, v);
            }
            "attributes" => attributes(l, b, Target::Item(i))?,
            _ => l.skip()?,
        }
        Some(())
    })?;
    b.end_log(i, event_name.unwrap_or(""));
    Some(())
}

fn span<'a>(l: &mut Lex<'a, '_>, b: &mut Builder<'a>, at: At) -> Option<()> {
    let s = b.new_ctx();
    let at = At { resource: at.resource, span: s };
    l.object(|l, k| match k {
        "traceId" | "trace_id" => {
            let t = l.trace_id(b)?;
            b.bufs.ctxs[s as usize].trace = t;
            Some(())
        }
        "attributes" => attributes(l, b, Target::Ctx(s)),
        "events" => l.list(|l| event(l, b, at)),
        _ => l.skip(),
    })
}

fn event<'a>(l: &mut Lex<'a, '_>, b: &mut Builder<'a>, at: At) -> Option<()> {
    let i = b.start_item(at.resource, Some(at.span));
    let mut name: Option<&'a str> = None;
    l.object(|l, k| {
        match k {
            "timeUnixNano" | "time_unix_nano" => b.item(i).time_ns = l.u64()?,
            "name" => name = l.opt_str()?,
            "attributes" => attributes(l, b, Target::Item(i))?,
            _ => l.skip()?,
        }
        Some(())
    })?;
    b.end_event(i, name.unwrap_or(""));
    Some(())
}

/// A `KeyValue` array (`null`: empty).
fn attributes<'a>(l: &mut Lex<'a, '_>, b: &mut Builder<'a>, t: Target) -> Option<()> {
    l.list(|l| {
        let (i, depth) = (l.i, l.depth);
        match compact_attribute(l, b) {
            Some((mask, v)) => {
                if let (true, Some(v)) = (mask != 0, v) {
                    b.set(t, mask, v);
                }
                return Some(());
            }
            None => (l.i, l.depth) = (i, depth),
        }
        let mut mask: Option<u16> = None;
        let mut value: Option<AnyVal<'a>> = None;
        l.object(|l, k| {
            match k {
                "key" => mask = Some(l.opt_str()?.map_or(0, |k| b.map.mask(k.as_bytes()))),
                // The key comes first in every encoder's output: the value
                // of an attribute accord does not read is skipped unparsed.
                "value" if mask == Some(0) => l.skip()?,
                "value" => value = any(l)?,
                _ => l.skip()?,
            }
            Some(())
        })?;
        if let (Some(mask), Some(v)) = (mask, value) {
            if mask != 0 {
                b.set(t, mask, v);
            }
        }
        Some(())
    })
}

/// An attribute as every encoder writes it, `{"key":"K","value":V}`
/// without whitespace, matched by its literal bytes rather than member by
/// member: about three quarters of an evaluation's tokens are attributes.
/// `None`: another shape (whitespace, `value` first, a `null` or escaped
/// key, …) or something wrong; the caller rewinds and reads the attribute
/// member by member, which decides.
#[inline]
fn compact_attribute<'a>(l: &mut Lex<'a, '_>, b: &Builder<'a>) -> Option<(u16, Option<AnyVal<'a>>)> {
    // The key's opening quote with the literal: no `peek` of its own.
    l.literal(b"{\"key\":\"").then_some(())?;
    l.enter()?;
    let mask = b.map.mask(l.string_body()?.as_bytes());
    l.literal(b",\"value\":").then_some(())?;
    // Not read: skipped unparsed, as the member-by-member path does.
    let v = if mask != 0 {
        any(l)?
    } else {
        if l.compact_string_value().is_none() {
            l.skip()?;
        }
        None
    };
    l.literal(b"}").then_some(())?;
    l.depth -= 1;
    Some((mask, v))
}

/// An `AnyValue` (`Some(None)`: empty or null).
fn any<'a>(l: &mut Lex<'a, '_>) -> Option<Option<AnyVal<'a>>> {
    if let Some(s) = l.compact_string_value() {
        return Some(Some(AnyVal::Str(s.into())));
    }
    let mut v = None;
    l.nullable_object(|l, k| {
        match k {
            "stringValue" | "string_value" => {
                if let Some(s) = l.opt_str()? {
                    v = Some(AnyVal::Str(s.into()));
                }
            }
            "boolValue" | "bool_value" => {
                if let Some(x) = l.opt_bool()? {
                    v = Some(AnyVal::Bool(x));
                }
            }
            "intValue" | "int_value" => {
                if let Some(n) = l.opt_i64()? {
                    v = Some(AnyVal::Int(n));
                }
            }
            "arrayValue" | "array_value" | "kvlistValue" | "kvlist_value" | "bytesValue" | "bytes_value" => {
                if !l.null() {
                    l.skip()?;
                    v = Some(AnyVal::Other);
                }
            }
            // Doubles (rare in flag evaluations) are left to serde_json,
            // whose float parsing may round differently from the standard
            // library's.
            "doubleValue" | "double_value" => return None,
            _ => l.skip()?,
        }
        Some(())
    })?;
    Some(v)
}

impl<'a> Lex<'a, '_> {
    #[inline]
    fn ws(&mut self) {
        while let Some(b' ' | b'\n' | b'\t' | b'\r') = self.b.get(self.i) {
            self.i += 1;
        }
    }

    /// The next byte past whitespace. Encoders write none, so the first
    /// byte is checked before the loop.
    #[inline]
    fn peek(&mut self) -> Option<u8> {
        match self.b.get(self.i) {
            Some(&c) if c > b' ' => Some(c),
            _ => {
                self.ws();
                self.b.get(self.i).copied()
            }
        }
    }

    /// `lit` (consumed), or anything else (left).
    #[inline]
    fn literal<const N: usize>(&mut self, lit: &[u8; N]) -> bool {
        // An array compare of a constant length: a few loads, no call.
        let hit = self.b.get(self.i..).and_then(<[u8]>::first_chunk::<N>) == Some(lit);
        if hit {
            self.i += lit.len();
        }
        hit
    }

    /// The usual `AnyValue`, `{"stringValue":"…"}` as encoders write it,
    /// by its literal bytes (consumed), or `None` (nothing consumed).
    #[inline]
    fn compact_string_value(&mut self) -> Option<&'a str> {
        let at = self.i;
        // The member-by-member path would enter the object: same limit.
        if self.depth >= MAX_DEPTH || !self.literal(b"{\"stringValue\":\"") {
            return None;
        }
        match self.string_body() {
            Some(s) if self.literal(b"}") => Some(s),
            _ => {
                self.i = at;
                None
            }
        }
    }

    /// `null` (consumed), or anything else (left).
    #[inline]
    fn null(&mut self) -> bool {
        self.peek() == Some(b'n') && self.literal(b"null")
    }

    /// An object, handing `f` each key to read its value with.
    #[inline]
    fn object(&mut self, mut f: impl FnMut(&mut Self, &'a str) -> Option<()>) -> Option<()> {
        self.seq(b'{', b'}', |l| {
            let k = l.string()?;
            if l.peek()? != b':' {
                return None;
            }
            l.i += 1;
            f(l, k)
        })
    }

    /// An object or `null`.
    #[inline]
    fn nullable_object(&mut self, f: impl FnMut(&mut Self, &'a str) -> Option<()>) -> Option<()> {
        if self.null() {
            return Some(());
        }
        self.object(f)
    }

    /// An array of `f`'s elements, where a `null` element is nothing, or
    /// `null` for an empty array.
    #[inline]
    fn list(&mut self, mut f: impl FnMut(&mut Self) -> Option<()>) -> Option<()> {
        if self.null() {
            return Some(());
        }
        self.array(|l| if l.null() { Some(()) } else { f(l) })
    }

    #[inline]
    fn array(&mut self, f: impl FnMut(&mut Self) -> Option<()>) -> Option<()> {
        self.seq(b'[', b']', f)
    }

    /// An object or array from `open` to `close`, each member or element
    /// read by `item`, separated by commas (none trailing, as in JSON).
    #[inline]
    fn seq(&mut self, open: u8, close: u8, mut item: impl FnMut(&mut Self) -> Option<()>) -> Option<()> {
        if self.peek()? != open {
            return None;
        }
        self.i += 1;
        self.enter()?;
        if self.peek()? == close {
            self.i += 1;
        } else {
            loop {
                item(self)?;
                match self.peek()? {
                    b',' => self.i += 1,
                    c if c == close => {
                        self.i += 1;
                        break;
                    }
                    _ => return None,
                }
            }
        }
        self.depth -= 1;
        Some(())
    }

    #[inline]
    fn enter(&mut self) -> Option<()> {
        self.depth += 1;
        (self.depth <= MAX_DEPTH).then_some(())
    }

    /// A string without escapes or control characters, in valid UTF-8.
    #[inline(always)]
    fn string(&mut self) -> Option<&'a str> {
        if self.peek()? != b'"' {
            return None;
        }
        self.i += 1;
        self.string_body()
    }

    /// [`Lex::string`] past its opening quote.
    #[inline(always)]
    fn string_body(&mut self) -> Option<&'a str> {
        let start = self.i;
        let (end, s) = match self.quotes {
            Some(quotes) => {
                let end = crate::decode::quotes::next_quote(quotes, start)?;
                // SAFETY: the message is plain: valid UTF-8 as a whole,
                // and `start..end` lies between two ASCII quotes, so on
                // character boundaries.
                (end, unsafe { std::str::from_utf8_unchecked(self.b.get(start..end)?) })
            }
            None => crate::decode::checked_string(self.b, start)?,
        };
        self.i = end + 1;
        Some(s)
    }

    /// A string or `null`.
    #[inline]
    fn opt_str(&mut self) -> Option<Option<&'a str>> {
        if self.null() {
            return Some(None);
        }
        self.string().map(Some)
    }

    fn opt_bool(&mut self) -> Option<Option<bool>> {
        match self.peek()? {
            b'n' if self.null() => Some(None),
            b't' if self.literal(b"true") => Some(Some(true)),
            b'f' if self.literal(b"false") => Some(Some(false)),
            _ => None,
        }
    }

    /// A `fixed64` time: an integer or a decimal string (`null`: 0), as
    /// `json.rs`'s `U64` reads it.
    fn u64(&mut self) -> Option<u64> {
        match self.peek()? {
            b'n' if self.null() => Some(0),
            b'"' => {
                let s = self.string()?;
                // Decimal digits (the usual encoding), else as `json.rs`
                // reads it (`str::parse`, which also takes a `+`).
                match decimal_u64(s.as_bytes()) {
                    Some(n) => n,
                    None => s.parse().ok(),
                }
            }
            _ => {
                let (negative, digits) = self.integer()?;
                (!negative).then(|| digits_u64(digits))?
            }
        }
    }

    /// An `int64`: an integer or a decimal string (`null`: unset), as
    /// `json.rs`'s `I64` reads it.
    fn opt_i64(&mut self) -> Option<Option<i64>> {
        match self.peek()? {
            b'n' if self.null() => Some(None),
            b'"' => self.string()?.parse().ok().map(Some),
            _ => {
                let (negative, digits) = self.integer()?;
                let n = i64::try_from(digits_u64(digits)?).ok()?;
                // serde_json reads `-0` as a float: its call.
                if negative && n == 0 {
                    return None;
                }
                Some(Some(if negative { -n } else { n }))
            }
        }
    }

    /// A JSON number without fraction or exponent: its sign and digits.
    fn integer(&mut self) -> Option<(bool, &'a [u8])> {
        let negative = self.peek()? == b'-';
        if negative {
            self.i += 1;
        }
        let start = self.i;
        while let Some(b'0'..=b'9') = self.b.get(self.i) {
            self.i += 1;
        }
        let digits = &self.b[start..self.i];
        if digits.is_empty() || (digits.len() > 1 && digits[0] == b'0') {
            return None;
        }
        if matches!(self.b.get(self.i), Some(b'.' | b'e' | b'E')) {
            return None;
        }
        Some((negative, digits))
    }

    fn trace_id(&mut self, b: &mut Builder<'a>) -> Option<Trace> {
        Some(b.hex_trace(self.opt_str()?.map(Into::into)))
    }

    /// Skips any value, checking it as serde_json would.
    fn skip(&mut self) -> Option<()> {
        match self.peek()? {
            b'{' => self.object(|l, _| l.skip()),
            b'[' => self.array(Self::skip),
            b'"' => self.string().map(drop),
            b't' if self.literal(b"true") => Some(()),
            b'f' if self.literal(b"false") => Some(()),
            b'n' if self.null() => Some(()),
            b'-' | b'0'..=b'9' => self.number(),
            _ => None,
        }
    }

    /// Any JSON number (RFC 8259 grammar).
    fn number(&mut self) -> Option<()> {
        let digits = |l: &mut Self| {
            let start = l.i;
            while let Some(b'0'..=b'9') = l.b.get(l.i) {
                l.i += 1;
            }
            l.i > start
        };
        if self.b.get(self.i) == Some(&b'-') {
            self.i += 1;
        }
        match self.b.get(self.i)? {
            b'0' => self.i += 1,
            b'1'..=b'9' => {
                digits(self);
            }
            _ => return None,
        }
        if self.b.get(self.i) == Some(&b'.') {
            self.i += 1;
            if !digits(self) {
                return None;
            }
        }
        if let Some(b'e' | b'E') = self.b.get(self.i) {
            self.i += 1;
            if let Some(b'+' | b'-') = self.b.get(self.i) {
                self.i += 1;
            }
            if !digits(self) {
                return None;
            }
        }
        Some(())
    }
}

/// Decimal digits to a `u64` (`None`: out of range, where serde_json would
/// read a float).
fn digits_u64(digits: &[u8]) -> Option<u64> {
    decimal_u64(digits).flatten()
}

/// `s` read as decimal digits: `None` if it is empty or holds anything but
/// the digits 0-9; `Some(None)` if its value is out of range.
///
/// Eight digits at a time (an OTLP time has nineteen, and an evaluation
/// carries one or two): each word is checked to hold only digits, then
/// folded by three multiplications instead of eight.
#[inline]
fn decimal_u64(s: &[u8]) -> Option<Option<u64>> {
    if s.is_empty() {
        return None;
    }
    let mut n: Option<u64> = Some(0);
    let mut rest = s;
    while let Some((word, tail)) = rest.split_first_chunk::<8>() {
        let w = u64::from_le_bytes(*word);
        if !eight_digits(w) {
            return None;
        }
        n = n.and_then(|n| n.checked_mul(100_000_000)?.checked_add(eight_digits_value(w)));
        rest = tail;
    }
    for &c in rest {
        if !c.is_ascii_digit() {
            return None;
        }
        n = n.and_then(|n| n.checked_mul(10)?.checked_add(u64::from(c - b'0')));
    }
    Some(n)
}

/// Whether the eight bytes of `w` are all ASCII digits: the high nibble of
/// each is 3, and adding 6 to each leaves it 3 (no byte above `9`).
#[inline(always)]
fn eight_digits(w: u64) -> bool {
    const HIGH: u64 = 0xF0F0_F0F0_F0F0_F0F0;
    const THREES: u64 = 0x3030_3030_3030_3030;
    w & HIGH == THREES && (w.wrapping_add(0x0606_0606_0606_0606) & HIGH) == THREES
}

/// The value of eight ASCII digits, the first in the lowest byte (a
/// little-endian load): each byte times ten plus the next gives the pairs,
/// then each pair times a hundred plus the next the fours, then the two
/// fours. No lane carries into the next (99, 9,999 at most).
#[inline(always)]
fn eight_digits_value(w: u64) -> u64 {
    let d = w - 0x3030_3030_3030_3030;
    let pairs = (d.wrapping_mul(10) + (d >> 8)) & 0x00FF_00FF_00FF_00FF;
    let fours = (pairs.wrapping_mul((100 << 16) + 1) >> 16) & 0x0000_FFFF_0000_FFFF;
    fours.wrapping_mul((10_000 << 32) + 1) >> 32
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::decimal_u64;

    /// What `decimal_u64` must answer, digit by digit.
    fn reference(s: &[u8]) -> Option<Option<u64>> {
        if s.is_empty() || !s.iter().all(u8::is_ascii_digit) {
            return None;
        }
        Some(s.iter().try_fold(0u64, |n, &d| n.checked_mul(10)?.checked_add(u64::from(d - b'0'))))
    }

    #[test]
    fn times_and_edges() {
        for s in ["1893456000000688678", "0", "00000000", "99999999", "18446744073709551615", "0018446744073709551615"]
        {
            assert_eq!(decimal_u64(s.as_bytes()), Some(s.parse().ok()), "{s}");
        }
        for s in ["18446744073709551616", "99999999999999999999"] {
            assert_eq!(decimal_u64(s.as_bytes()), Some(None), "{s}");
        }
        for s in ["", "+1", "-1", "1.5", "1234567a", "12345678 ", "/", ":", "123456789012345678:"] {
            assert_eq!(decimal_u64(s.as_bytes()), None, "{s}");
        }
    }

    proptest! {
        /// Digit strings of every length around the eight-byte steps, and
        /// sometimes one byte of any value put in at any place.
        #[test]
        fn agrees_with_reading_digit_by_digit(
            digits in "[0-9]{0,24}",
            put in proptest::option::of((any::<prop::sample::Index>(), any::<u8>())),
        ) {
            let mut s = digits.into_bytes();
            if let Some((at, x)) = put {
                let at = at.index(s.len() + 1);
                s.insert(at, x);
            }
            prop_assert_eq!(decimal_u64(&s), reference(&s));
        }
    }
}
