//! Decode stage: bytes of one Kafka message (or one line of a replay file)
//! into a validated [`Decision`], or a [`Reject`] reason (SPEC §2, §9).
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

/// Records larger than this are rejected unparsed (SPEC §9).
pub const MAX_RECORD_BYTES: usize = 64 * 1024;

/// Why a record was rejected; the order is the precedence of SPEC §9.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Reject {
    TooLarge,
    MalformedJson,
    MissingField,
    InvalidField,
    UnknownLayer,
    UnknownFeature,
}

impl Reject {
    pub const ALL: [Reject; 6] = [
        Reject::TooLarge,
        Reject::MalformedJson,
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

impl<'de> de::Deserialize<'de> for Val<'de> {
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
#[derive(Debug, Default)]
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
                    let slot = match k {
                        Key::RequestId => &mut r.request_id,
                        Key::Layer => &mut r.layer,
                        Key::Feature => &mut r.feature,
                        Key::Ts => &mut r.ts,
                        Key::FlagState => &mut r.flag_state,
                        Key::ApiCapability => &mut r.api_capability,
                        Key::SelectedFlow => &mut r.selected_flow,
                        Key::JobPayloadVersion => &mut r.job_payload_version,
                        Key::FlagsRevision => &mut r.flags_revision,
                        Key::Service => &mut r.service,
                        Key::Instance => &mut r.instance,
                        Key::Build => &mut r.build,
                        Key::Other => {
                            m.next_value::<IgnoredAny>()?;
                            continue;
                        }
                    };
                    *slot = Some(m.next_value::<Val<'de>>()?);
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
pub struct Decision<'a> {
    pub request_id: Cow<'a, str>,
    pub layer: Cow<'a, str>,
    pub feature: Cow<'a, str>,
    /// Event time, epoch milliseconds.
    pub ts_ms: Option<i64>,
    pub flag_state: Option<FlagState<'a>>,
    pub api_capability: Option<Cow<'a, str>>,
    pub selected_flow: Option<Cow<'a, str>>,
    /// Numbers are kept as their decimal text: `2` equals `"2"` (SPEC §2).
    pub job_payload_version: Option<Cow<'a, str>>,
    pub flags_revision: Option<Cow<'a, str>>,
    pub service: Option<Cow<'a, str>>,
    pub instance: Option<Cow<'a, str>>,
    pub build: Option<Cow<'a, str>>,
}

/// Decodes and validates one record's bytes. Never panics.
pub fn decode(bytes: &[u8]) -> Result<Decision<'_>, Reject> {
    if bytes.len() > MAX_RECORD_BYTES {
        return Err(Reject::TooLarge);
    }
    let raw: RawRecord<'_> = serde_json::from_slice(bytes).map_err(|_| Reject::MalformedJson)?;
    validate(raw)
}

fn present<'a>(v: Option<Val<'a>>) -> Option<Val<'a>> {
    match v {
        None | Some(Val::Null) => None,
        v => v,
    }
}

fn validate(raw: RawRecord<'_>) -> Result<Decision<'_>, Reject> {
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
        Some(Val::Int(n)) => Some(Cow::Owned(n.to_string())),
        Some(_) => return Err(Reject::InvalidField),
    };
    Ok(Decision {
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

/// `[A-Za-z0-9_.:-]`, 1..=128 bytes (SPEC §2).
pub fn valid_feature_key(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= MAX_KEY_BYTES
        && s.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b':' | b'-'))
}

/// RFC 3339 to epoch milliseconds (sub-millisecond digits are truncated).
pub fn parse_rfc3339_ms(s: &str) -> Option<i64> {
    chrono::DateTime::parse_from_rfc3339(s).ok().map(|t| t.timestamp_millis())
}

/// Formats epoch milliseconds as RFC 3339 UTC with milliseconds.
pub fn format_rfc3339_ms(ms: i64) -> String {
    match chrono::DateTime::from_timestamp_millis(ms) {
        Some(t) => t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        None => ms.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn ok(s: &str) -> Decision<'_> {
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
        let d = ok(
            r#"{"request_id":"a","layer":"api","feature":"f","ts":null,"flag_state":null,"job_payload_version":null}"#,
        );
        assert_eq!(d.ts_ms, None);
        assert_eq!(d.flag_state, None);
        assert_eq!(d.job_payload_version, None);
    }

    #[test]
    fn every_reject_reason_in_precedence() {
        let big =
            format!(r#"{{"request_id":"a","layer":"api","feature":"f","pad":"{}"}}"#, "p".repeat(MAX_RECORD_BYTES));
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
    fn exactly_64_kib_is_accepted() {
        let head = r#"{"request_id":"a","layer":"api","feature":"f","pad":""#;
        let s = format!("{head}{}\"}}", "p".repeat(MAX_RECORD_BYTES - head.len() - 2));
        assert_eq!(s.len(), MAX_RECORD_BYTES);
        assert!(decode(s.as_bytes()).is_ok());
    }

    proptest! {
        #[test]
        fn decode_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = decode(&bytes);
        }

        #[test]
        fn decode_never_panics_on_jsonish(s in r#"\{("[a-z_]{1,20}": ?(null|true|false|-?[0-9]{1,25}(\.[0-9]+)?|"[^"\\]{0,20}"|\[\]|\{\}),? ?){0,8}\}?"#) {
            let _ = decode(s.as_bytes());
        }
    }
}
