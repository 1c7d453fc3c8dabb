use super::*;
use proptest::prelude::*;

fn ok(s: &str) -> Record<'_> {
    decode(s.as_bytes()).unwrap()
}
fn rej(s: &str) -> Reject {
    decode(s.as_bytes()).unwrap_err()
}

#[test]
fn decodes_the_spec_example_borrowed() {
    let d = ok(
        r#"{"request_id":"req-8f2c","layer":"api","feature":"checkout_v2","ts":"2026-11-20T10:00:00.120Z","flag_state":true,"api_capability":"v2","selected_flow":"v2","job_payload_version":2,"flags_revision":"r42","extra":{"a":[1,2]}}"#,
    );
    assert!(matches!(d.request_id, Cow::Borrowed("req-8f2c")));
    assert_eq!(d.ts_ms, Some(1_795_168_800_120));
    assert_eq!(d.flag_state, Some(FlagState::Bool(true)));
    assert_eq!(d.job_payload_version.as_deref(), Some("2"));
    assert_eq!(d.flags_revision.as_deref(), Some("r42"));
}

#[test]
fn ts_as_epoch_millis_and_offsets() {
    assert_eq!(
        ok(r#"{"request_id":"a","layer":"api","feature":"f","ts":1795168800120}"#).ts_ms,
        Some(1_795_168_800_120)
    );
    assert_eq!(
        ok(r#"{"request_id":"a","layer":"api","feature":"f","ts":"2026-11-20T11:00:00.120+01:00"}"#).ts_ms,
        Some(1_795_168_800_120)
    );
}

#[test]
fn escaped_strings_are_owned_and_correct() {
    let d = ok(r#"{"request_id":"a\"b","layer":"api","feature":"f","selected_flow":"v\u0032"}"#);
    assert_eq!(d.request_id, "a\"b");
    assert_eq!(d.selected_flow.as_deref(), Some("v2"));
}

#[test]
fn null_optional_fields_are_absent() {
    let d =
        ok(r#"{"request_id":"a","layer":"api","feature":"f","ts":null,"flag_state":null,"job_payload_version":null}"#);
    assert_eq!(d.ts_ms, None);
    assert_eq!(d.flag_state, None);
    assert_eq!(d.job_payload_version, None);
}

#[test]
fn every_reject_reason_in_precedence() {
    let big = format!(r#"{{"request_id":"a","layer":"api","feature":"f","pad":"{}"}}"#, "p".repeat(MAX_RECORD_BYTES));
    assert_eq!(rej(&big), Reject::TooLarge);
    assert_eq!(rej(r#"{"request_id": "x""#), Reject::MalformedJson);
    assert_eq!(rej("[1,2,3]"), Reject::MalformedJson);
    assert_eq!(rej("\"str\""), Reject::MalformedJson);
    assert_eq!(rej(""), Reject::MalformedJson);
    assert_eq!(decode(b"{\"request_id\":\"\xff\"}").unwrap_err(), Reject::MalformedJson);
    assert_eq!(rej(r#"{"layer":"api","feature":"f"}"#), Reject::MissingField);
    assert_eq!(rej(r#"{"request_id":null,"layer":"api","feature":"f"}"#), Reject::MissingField);
    // missing wins over invalid
    assert_eq!(rej(r#"{"request_id":5,"feature":"f"}"#), Reject::MissingField);
    assert_eq!(rej(r#"{"request_id":"","layer":"api","feature":"f"}"#), Reject::InvalidField);
    assert_eq!(
        rej(&format!(r#"{{"request_id":"{}","layer":"api","feature":"f"}}"#, "x".repeat(129))),
        Reject::InvalidField
    );
    assert_eq!(rej(r#"{"request_id":"a","layer":"api","feature":"checkout v2"}"#), Reject::InvalidField);
    assert_eq!(rej(r#"{"request_id":"a","layer":"api","feature":"f","ts":"soon"}"#), Reject::InvalidField);
    assert_eq!(rej(r#"{"request_id":"a","layer":"api","feature":"f","ts":1.5}"#), Reject::InvalidField);
    assert_eq!(
        rej(r#"{"request_id":"a","layer":"api","feature":"f","job_payload_version":[2]}"#),
        Reject::InvalidField
    );
    assert_eq!(rej(r#"{"request_id":"a","layer":"api","feature":"f","flag_state":1}"#), Reject::InvalidField);
    assert_eq!(rej(r#"{"request_id":"a","layer":7,"feature":"f"}"#), Reject::InvalidField);
    assert_eq!(rej(r#"{"request_id":"a","layer":"api","feature":"f","service":{}}"#), Reject::InvalidField);
}

#[test]
fn input_formats_parse_by_name_and_per_topic() {
    for f in InputFormat::ALL {
        assert_eq!(f.as_str().parse::<InputFormat>(), Ok(f));
        assert_eq!(<InputFormat as clap::ValueEnum>::from_str(f.as_str(), false), Ok(f));
    }
    assert!("otlp".parse::<InputFormat>().unwrap_err().contains("otlp_proto_logs"));
    assert_eq!(InputFormat::split_topic("decisions"), Ok(("decisions", None)));
    assert_eq!(
        InputFormat::split_topic("otlp_spans:otlp_proto_traces"),
        Ok(("otlp_spans", Some(InputFormat::OtlpProtoTraces)))
    );
    assert!(InputFormat::split_topic("otlp_spans:proto").is_err());
    assert!(InputFormat::split_topic(":accord").is_err());
    assert_eq!(InputFormat::OtlpJson.max_message_bytes(), 4 << 20);
    assert_eq!(InputFormat::Accord.max_message_bytes(), 64 << 10);
}

#[test]
fn exactly_64_kib_is_accepted() {
    let head = r#"{"request_id":"a","layer":"api","feature":"f","pad":""#;
    let s = format!("{head}{}\"}}", "p".repeat(MAX_RECORD_BYTES - head.len() - 2));
    assert_eq!(s.len(), MAX_RECORD_BYTES);
    assert!(decode(s.as_bytes()).is_ok());
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2048))]

    #[test]
    fn decode_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let _ = decode(&bytes);
    }

    #[test]
    fn decode_never_panics_on_jsonish(s in r#"\{("[a-z_]{1,20}": ?(null|true|false|-?[0-9]{1,25}(\.[0-9]+)?|"[^"\\]{0,20}"|\[\]|\{\}),? ?){0,8}\}?"#) {
        let _ = decode(s.as_bytes());
    }

    /// The word-at-a-time scan finds the first special byte exactly.
    #[test]
    fn first_special_byte_is_exact(bytes in proptest::collection::vec(
        prop_oneof![Just(b'"'), Just(b'\\'), 0u8..0x20, 0x20u8..=0xff, Just(0x21u8), Just(0x5du8), Just(0xa2u8)], 8)
    ) {
        let x = u64::from_le_bytes(bytes.clone().try_into().unwrap());
        let m = fast::specials(x);
        let naive = bytes.iter().position(|&c| c == b'"' || c == b'\\' || c < 0x20);
        prop_assert_eq!((m != 0).then(|| m.trailing_zeros() as usize / 8), naive);
    }

    /// Where the fast path answers, serde_json answers the same.
    #[test]
    fn fast_path_agrees_with_serde(s in JSONISH) {
        fast_agrees(s.as_bytes());
    }

    #[test]
    fn fast_path_agrees_with_serde_on_bytes(
        s in JSONISH,
        at in any::<prop::sample::Index>(),
        byte in any::<u8>(),
    ) {
        let mut b = s.into_bytes();
        if !b.is_empty() {
            let i = at.index(b.len());
            b[i] = byte;
        }
        fast_agrees(&b);
    }

    /// Where the RFC 3339 fast path answers, chrono answers the same.
    #[test]
    fn rfc3339_fast_agrees_with_chrono(s in rfc3339ish()) {
        let chrono = chrono::DateTime::parse_from_rfc3339(&s).ok().map(|t| t.timestamp_millis());
        if let Some(ms) = rfc3339_fast(s.as_bytes()) {
            prop_assert_eq!(Some(ms), chrono, "{}", s);
        }
        prop_assert_eq!(parse_rfc3339_ms(&s), chrono, "{}", s);
    }
}

/// Timestamps mostly of the fast path's shape, with every field
/// sometimes just out of range and the shapes it leaves to chrono.
fn rfc3339ish() -> impl Strategy<Value = String> {
    let sep = prop_oneof![8 => Just("T"), 1 => Just("t"), 1 => Just(" ")];
    let frac = prop_oneof![2 => Just(String::new()), 3 => "\\.[0-9]{1,9}", 1 => "\\.[0-9]{0,12}"];
    let off = prop_oneof![
        4 => Just("Z".to_string()),
        1 => Just("z".to_string()),
        4 => (any::<bool>(), 0u32..=24, 0u32..=60)
            .prop_map(|(neg, h, m)| format!("{}{h:02}:{m:02}", if neg { '-' } else { '+' })),
        1 => "[+-][0-9]{4}|[+-][0-9]{2}:[0-9]|",
    ];
    (
        (0u32..=9999, 0u32..=13, 0u32..=32),
        (0u32..=24, 0u32..=60, prop_oneof![9 => 0u32..=59, 1 => Just(60u32)]),
        (sep, frac, off),
        prop_oneof![9 => Just(""), 1 => Just("x")],
    )
        .prop_map(|((y, mo, d), (h, mi, se), (sep, frac, off), tail)| {
            format!("{y:04}-{mo:02}-{d:02}{sep}{h:02}:{mi:02}:{se:02}{frac}{off}{tail}")
        })
}

/// Records with the schema's keys and values of every kind the fast
/// path must either decode exactly or hand to serde_json.
const JSONISH: &str = concat!(
    r#"[ \t\n]?\{[ \r]?("(request_id|layer|feature|ts|flag_state|job_payload_version|flags_revision|service|x|r\\u0065q|t\\u0073)"[ ]?:[ \n]?"#,
    r#"(null|true|false|nul|truex|-?(0|[1-9][0-9]{0,19}|0[0-9])(\.[0-9]+|[eE][0-9])?|"([a-z0-9:. -]|\\n|\\"|é|\t){0,12}"|\[1,\{\}\]|\{"a":1\}),?[ ]?){0,8}\}[ \n]?x?"#
);

fn fast_agrees(b: &[u8]) {
    if let Some(fast) = fast::parse(b) {
        let slow: RawRecord<'_> = serde_json::from_slice(b).unwrap_or_else(|e| {
            panic!("fast path accepted what serde rejects ({e}): {:?}", String::from_utf8_lossy(b))
        });
        assert_eq!(fast, slow, "{:?}", String::from_utf8_lossy(b));
    }
}

#[test]
fn fast_path_takes_real_records() {
    let spec = br#"{"request_id":"req-8f2c","layer":"api","feature":"checkout_v2","ts":"2026-11-20T10:00:00.120Z","flag_state":true,"api_capability":"v2","selected_flow":"v2","job_payload_version":2,"flags_revision":"r42"}"#;
    assert!(fast::parse(spec).is_some());
    assert!(fast::parse(b" { } ").is_some());
    for r in crate::simulate::Generator::new(
        crate::simulate::Scenario::Mixed,
        crate::simulate::Timing { window_ms: 5_000, allowed_lateness_ms: 1_000 },
        1_000.0,
        5_000,
        1_795_168_800_000,
        3,
    ) {
        assert!(fast::parse(r.json.as_bytes()).is_some(), "{}", r.json);
        assert!(rfc3339_fast(&r.json.as_bytes()[r.json.find("\"ts\":\"").unwrap() + 6..][..24]).is_some());
    }
    // Edge cases serde decides.
    for s in [
        r#"{"ts":-0}"#,
        r#"{"ts":1.0}"#,
        r#"{"ts":18446744073709551616}"#,
        r#"{"a":"\u0041"}"#,
        r#"{"a":[1]}"#,
        r#"{"a":1,}"#,
        r#"{"a":01}"#,
        r#"{"a":1} x"#,
    ] {
        assert!(fast::parse(s.as_bytes()).is_none(), "{s}");
    }
    assert_eq!(int_text(0), "0");
    assert_eq!(int_text(7), "7");
    assert_eq!(int_text(10), "10");
    assert_eq!(int_text(99), "99");
    assert_eq!(int_text(100), "100");
}

#[test]
fn rfc3339_fast_edges() {
    for s in [
        "1970-01-01T00:00:00Z",
        "1969-12-31T23:59:59.999Z",
        "0000-03-01T00:00:00Z",
        "2000-02-29T12:00:00.5+05:30",
        "2100-02-28T23:59:59.123456789-23:59",
        "2026-11-20T11:00:00.120+01:00",
        "9999-12-31T23:59:59.999+00:00",
    ] {
        let chrono = chrono::DateTime::parse_from_rfc3339(s).unwrap().timestamp_millis();
        assert_eq!(rfc3339_fast(s.as_bytes()), Some(chrono), "{s}");
    }
    for s in ["2100-02-29T00:00:00Z", "2026-11-20T10:00:60Z", "2026-11-20t10:00:00z", "2026-11-20T10:00:00.1234567891Z"]
    {
        assert_eq!(rfc3339_fast(s.as_bytes()), None, "{s}");
    }
}
