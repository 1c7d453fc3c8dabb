//! One pass over a JSON message before it is read: where its quotes are,
//! and whether it is *plain*, so that every string in it ends at the next
//! quote and needs no check of its own.
//!
//! A message is plain when it holds no backslash, no control character
//! (below 0x20; RFC 8259 allows none inside strings, and compact encoders
//! write none outside them) and is valid UTF-8. Then a string's contents
//! run from its opening quote to the next quote, and are valid UTF-8 (they
//! lie between two ASCII bytes of valid UTF-8). A message with many short
//! strings (OTLP/JSON: about forty per evaluation) is then read with a
//! bitmap lookup per string instead of a scan per string.
//!
//! The pass is also where the message is first read from memory: it asks
//! for the message's cache lines ahead of itself, which the string scans,
//! one short stretch at a time, could not (docs/performance.md, the fifth
//! pass). It reads thirty-two bytes per step with AVX2 where the CPU has
//! it (asked at run time), sixteen with SSE2 (part of every x86-64 target)
//! otherwise, and byte by byte on other targets; the tests check the AVX2
//! pass against the SSE2 one.

/// The quote bitmap of `b` (bit `i % 64` of word `i / 64` is set where
/// `b[i]` is `"`) into `out`, if `b` is plain (see the module notes);
/// `false` (and `out` unspecified) otherwise.
pub(crate) fn plain_quotes(b: &[u8], out: &mut Vec<u64>) -> bool {
    #[cfg(target_arch = "x86_64")]
    if std::is_x86_feature_detected!("avx2") {
        // SAFETY: the CPU has AVX2, checked just above (std caches the
        // answer: one load per message).
        return unsafe { avx2::plain_quotes(b, out) };
    }
    baseline(b, out)
}

/// The pass over `$b` into `$out` with `$block` for each 64 bytes and
/// `$tail` for the padded rest: a macro rather than a generic function, so
/// that the AVX2 copy is compiled with AVX2 throughout (a closure or a
/// generic instance would not inherit the target feature, and its blocks
/// would be calls).
macro_rules! pass {
    ($b:expr, $out:expr, $block:expr, $tail:expr) => {{
        let (b, out): (&[u8], &mut Vec<u64>) = ($b, $out);
        out.clear();
        out.reserve(b.len().div_ceil(64));
        let (mut special, mut high) = (false, false);
        // The first lines all at once, so their misses overlap.
        for k in (0..b.len().min(PREFETCH_AHEAD)).step_by(64) {
            prefetch(b.as_ptr().wrapping_add(k));
        }
        let mut chunks = b.chunks_exact(64);
        for c in &mut chunks {
            prefetch(c.as_ptr().wrapping_add(PREFETCH_AHEAD));
            let (q, s, h) = $block(c.try_into().expect("chunks_exact(64) gives 64 bytes"));
            out.push(q);
            special |= s;
            high |= h;
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            // Padded with spaces: not quotes, not special.
            let mut c = [b' '; 64];
            c[..rest.len()].copy_from_slice(rest);
            let (q, s, h) = $tail(&c);
            out.push(q);
            special |= s;
            high |= h;
        }
        !special && (!high || simdutf8::basic::from_utf8(b).is_ok())
    }};
}

/// The pass on any CPU of the target (SSE2 on x86-64).
fn baseline(b: &[u8], out: &mut Vec<u64>) -> bool {
    pass!(b, out, block, tail_block)
}

/// The pass with AVX2: 32 bytes per step instead of 16 (most x86-64 CPUs
/// of the last ten years; the pass is then about half the instructions).
#[cfg(target_arch = "x86_64")]
mod avx2 {
    use std::arch::x86_64::{
        __m256i, _mm256_cmpeq_epi8, _mm256_loadu_si256, _mm256_min_epu8, _mm256_movemask_epi8, _mm256_or_si256,
        _mm256_set1_epi8, _mm256_setzero_si256,
    };

    use super::{prefetch, PREFETCH_AHEAD};

    /// # Safety
    /// The CPU must have AVX2.
    #[target_feature(enable = "avx2")]
    pub(super) unsafe fn plain_quotes(b: &[u8], out: &mut Vec<u64>) -> bool {
        pass!(b, out, block, tail_block)
    }

    /// [`super::block`] with AVX2.
    ///
    /// # Safety
    /// The CPU must have AVX2. (Not a safe `#[target_feature]` function:
    /// those need Rust 1.86, above this crate's `rust-version`.)
    #[target_feature(enable = "avx2")]
    #[inline]
    unsafe fn block(c: &[u8; 64]) -> (u64, bool, bool) {
        // Each load reads 32 bytes inside the 64 of `c` (unaligned loads
        // allow any address).
        let quote = _mm256_set1_epi8(b'"' as i8);
        let backslash = _mm256_set1_epi8(b'\\' as i8);
        let last_control = _mm256_set1_epi8(0x1f);
        let (mut q, mut special, mut high) = (0u64, _mm256_setzero_si256(), _mm256_setzero_si256());
        for k in 0..2 {
            let x = _mm256_loadu_si256(c.as_ptr().add(32 * k).cast::<__m256i>());
            q |= u64::from(_mm256_movemask_epi8(_mm256_cmpeq_epi8(x, quote)) as u32) << (32 * k);
            // Unsigned `x <= 0x1f`: the control characters.
            let control = _mm256_cmpeq_epi8(_mm256_min_epu8(x, last_control), x);
            special = _mm256_or_si256(special, _mm256_or_si256(control, _mm256_cmpeq_epi8(x, backslash)));
            high = _mm256_or_si256(high, x);
        }
        (q, _mm256_movemask_epi8(special) != 0, _mm256_movemask_epi8(high) != 0)
    }

    /// As [`super::tail_block`].
    ///
    /// # Safety
    /// The CPU must have AVX2.
    #[target_feature(enable = "avx2")]
    #[inline(never)]
    unsafe fn tail_block(c: &[u8; 64]) -> (u64, bool, bool) {
        block(c)
    }

    #[cfg(test)]
    pub(super) fn available() -> bool {
        std::is_x86_feature_detected!("avx2")
    }
}

/// How far ahead of the block being read its cache lines are asked for:
/// a message is usually read for the first time here, from memory, and
/// the hardware prefetcher needs a few misses of a stream before it helps.
const PREFETCH_AHEAD: usize = 512;

#[cfg(target_arch = "x86_64")]
#[inline(always)]
fn prefetch(p: *const u8) {
    use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
    // SAFETY: SSE is part of the x86-64 baseline; a prefetch is a hint
    // that never faults, whatever the address.
    unsafe { _mm_prefetch(p.cast::<i8>(), _MM_HINT_T0) }
}

#[cfg(not(target_arch = "x86_64"))]
#[inline(always)]
fn prefetch(_: *const u8) {}

/// The next quote at or after `i`, by `quotes` (of [`plain_quotes`]).
#[inline(always)]
pub(crate) fn next_quote(quotes: &[u64], i: usize) -> Option<usize> {
    let mut w = i / 64;
    let bits = *quotes.get(w)? >> (i % 64);
    if bits != 0 {
        return Some(i + bits.trailing_zeros() as usize);
    }
    loop {
        w += 1;
        let bits = *quotes.get(w)?;
        if bits != 0 {
            return Some(w * 64 + bits.trailing_zeros() as usize);
        }
    }
}

/// A block's quote bits, whether it holds a backslash or a control
/// character, and whether it holds a byte above 0x7f.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
fn block(c: &[u8; 64]) -> (u64, bool, bool) {
    use std::arch::x86_64::{
        __m128i, _mm_cmpeq_epi8, _mm_loadu_si128, _mm_min_epu8, _mm_movemask_epi8, _mm_or_si128, _mm_set1_epi8,
        _mm_setzero_si128,
    };
    // SAFETY: SSE2 is part of the x86-64 baseline (every x86_64 target
    // enables it), and each load reads 16 bytes inside the 64 of `c`
    // (unaligned loads allow any address).
    unsafe {
        let quote = _mm_set1_epi8(b'"' as i8);
        let backslash = _mm_set1_epi8(b'\\' as i8);
        let last_control = _mm_set1_epi8(0x1f);
        let (mut q, mut special, mut high) = (0u64, _mm_setzero_si128(), _mm_setzero_si128());
        for k in 0..4 {
            let x = _mm_loadu_si128(c.as_ptr().add(16 * k).cast::<__m128i>());
            q |= u64::from(_mm_movemask_epi8(_mm_cmpeq_epi8(x, quote)) as u16) << (16 * k);
            // Unsigned `x <= 0x1f`: the control characters.
            let control = _mm_cmpeq_epi8(_mm_min_epu8(x, last_control), x);
            special = _mm_or_si128(special, _mm_or_si128(control, _mm_cmpeq_epi8(x, backslash)));
            // The top bit of any byte above 0x7f.
            high = _mm_or_si128(high, x);
        }
        (q, _mm_movemask_epi8(special) != 0, _mm_movemask_epi8(high) != 0)
    }
}

/// [`block`] for the padded last block, not inlined: kept apart from the
/// loop over the message's own blocks, which otherwise copies each block
/// to the stack as it does this one.
#[inline(never)]
fn tail_block(c: &[u8; 64]) -> (u64, bool, bool) {
    block(c)
}

#[cfg(not(target_arch = "x86_64"))]
#[inline(always)]
fn block(c: &[u8; 64]) -> (u64, bool, bool) {
    let (mut q, mut special, mut high) = (0u64, false, false);
    for (k, &x) in c.iter().enumerate() {
        q |= u64::from(x == b'"') << k;
        special |= x == b'\\' || x < 0x20;
        high |= x > 0x7f;
    }
    (q, special, high)
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    /// Byte by byte, as the module notes define it.
    fn reference(b: &[u8]) -> Option<Vec<usize>> {
        let plain = !b.iter().any(|&x| x == b'\\' || x < 0x20) && std::str::from_utf8(b).is_ok();
        plain.then(|| b.iter().enumerate().filter(|(_, &x)| x == b'"').map(|(i, _)| i).collect())
    }

    /// The quotes `plain_quotes` finds, checked against the baseline pass
    /// where the CPU has AVX2 (the dispatch then takes the AVX2 pass).
    fn quotes_of(b: &[u8]) -> Option<Vec<usize>> {
        let mut bits = Vec::new();
        let plain = plain_quotes(b, &mut bits);
        #[cfg(target_arch = "x86_64")]
        if avx2::available() {
            let mut base = Vec::new();
            assert_eq!(baseline(b, &mut base), plain, "{b:?}");
            if plain {
                assert_eq!(base, bits, "{b:?}");
            }
        }
        if !plain {
            return None;
        }
        let mut found = Vec::new();
        let mut i = 0;
        while let Some(q) = next_quote(&bits, i) {
            found.push(q);
            i = q + 1;
        }
        Some(found)
    }

    #[test]
    fn a_compact_message_is_plain_and_its_strings_end_at_the_next_quote() {
        let m = b"{\"key\":\"service.name\",\"value\":{\"stringValue\":\"caf\xc3\xa9\"}}";
        assert_eq!(quotes_of(m), reference(m));
        assert!(quotes_of(m).is_some());
    }

    #[test]
    fn escapes_control_characters_and_invalid_utf8_are_not_plain() {
        for m in [&br#"{"a":"b\"c"}"#[..], b"{\"a\":\n1}", b"{\"a\":\"\x01\"}", b"{\"a\":\"\xff\"}", b"\"\xc3\""] {
            assert_eq!(quotes_of(m), None, "{m:?}");
        }
    }

    proptest! {
        /// Lengths around the 16- and 64-byte steps: a plain message of
        /// quotes, ASCII and two-byte characters, and sometimes one byte
        /// of any value put in at any place.
        #[test]
        fn agrees_with_the_byte_by_byte_definition(
            parts in proptest::collection::vec(prop_oneof![Just("\""), Just("a"), Just("é")], 0..200),
            put in proptest::option::of((any::<prop::sample::Index>(), any::<u8>())),
        ) {
            let mut b: Vec<u8> = parts.concat().into_bytes();
            if let Some((at, x)) = put {
                let at = at.index(b.len() + 1);
                b.insert(at, x);
            }
            prop_assert_eq!(quotes_of(&b), reference(&b));
        }
    }
}
