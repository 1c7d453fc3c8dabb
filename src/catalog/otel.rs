//! The catalog's `[otel]` section: how OpenFeature flag-evaluation events
//! (OpenTelemetry log records and span events) map onto decision records.
//!
//! ```toml
//! [otel]
//! request_id = "trace_id"            # or "attribute:app.request_id"
//! [otel.layers]                      # service.name -> layer
//! "web-spa" = "frontend"
//! [otel.attributes]                  # where the accord-specific fields live
//! selected_flow = "app.checkout.flow"
//! ```
//!
//! Every key is optional; without the section the trace id is the request
//! id, a service is a layer only when its `service.name` is a layer's name,
//! and the accord-specific fields are the `accord.*` attributes.

use std::collections::BTreeMap;

use serde::Deserialize;
use toml::Spanned;

use super::{Catalog, Validator};

/// Where an evaluation's request id comes from.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum RequestIdSource {
    /// The W3C trace id (32 lowercase hex digits): what the Collector's
    /// Kafka exporter can partition by.
    #[default]
    TraceId,
    /// A string (or integer) attribute of the event, its span or its
    /// resource, for stacks whose request id is not the trace id.
    Attribute(String),
}

/// The validated `[otel]` section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OtelConfig {
    pub request_id: RequestIdSource,
    /// `service.name` → layer name (every layer is one of `monitor.layers`).
    pub layers: BTreeMap<String, String>,
    /// Attribute names of the fields only accord knows about.
    pub selected_flow: String,
    pub api_capability: String,
    pub job_payload_version: String,
}

impl Default for OtelConfig {
    fn default() -> Self {
        OtelConfig {
            request_id: RequestIdSource::TraceId,
            layers: BTreeMap::new(),
            selected_flow: "accord.selected_flow".into(),
            api_capability: "accord.api_capability".into(),
            job_payload_version: "accord.job_payload_version".into(),
        }
    }
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawOtel {
    request_id: Option<Spanned<String>>,
    layers: Option<BTreeMap<String, Spanned<String>>>,
    attributes: Option<RawAttributes>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawAttributes {
    selected_flow: Option<Spanned<String>>,
    api_capability: Option<Spanned<String>>,
    job_payload_version: Option<Spanned<String>>,
}

/// OpenTelemetry attribute names are free-form, but a name with spaces or
/// control characters is a typo, never an attribute an SDK writes.
fn valid_attribute_name(s: &str) -> bool {
    !s.is_empty() && s.len() <= 255 && !s.chars().any(|c| c.is_whitespace() || c.is_control())
}

impl Validator<'_> {
    /// Validates `[otel]` against the layers of `cat` (already built).
    pub(super) fn otel(&mut self, raw: Option<RawOtel>, cat: &Catalog) -> OtelConfig {
        let mut out = OtelConfig::default();
        let Some(raw) = raw else { return out };
        if let Some(rid) = &raw.request_id {
            let v = rid.get_ref();
            match v.strip_prefix("attribute:") {
                _ if v == "trace_id" => out.request_id = RequestIdSource::TraceId,
                Some(name) if valid_attribute_name(name) => out.request_id = RequestIdSource::Attribute(name.into()),
                Some(name) => self.err(
                    rid.span(),
                    "otel.request_id",
                    format!("invalid attribute name {name:?} in {v:?} (no spaces, 1..=255 bytes)"),
                ),
                None => self.err(
                    rid.span(),
                    "otel.request_id",
                    format!("must be \"trace_id\" or \"attribute:NAME\", got {v:?}"),
                ),
            }
        }
        if let Some(layers) = &raw.layers {
            for (service, layer) in layers {
                let field = format!("otel.layers.{service:?}");
                if service.is_empty() {
                    self.err(layer.span(), field, "service name must not be empty");
                } else if cat.layer_id(layer.get_ref()).is_none() {
                    self.err(
                        layer.span(),
                        field,
                        format!("unknown layer {:?} (monitor.layers: {})", layer.get_ref(), cat.layers.join(", ")),
                    );
                } else {
                    out.layers.insert(service.clone(), layer.get_ref().clone());
                }
            }
        }
        if let Some(attrs) = raw.attributes {
            for (v, field, slot) in [
                (attrs.selected_flow, "otel.attributes.selected_flow", &mut out.selected_flow),
                (attrs.api_capability, "otel.attributes.api_capability", &mut out.api_capability),
                (attrs.job_payload_version, "otel.attributes.job_payload_version", &mut out.job_payload_version),
            ] {
                let Some(v) = v else { continue };
                if valid_attribute_name(v.get_ref()) {
                    *slot = v.get_ref().clone();
                } else {
                    self.err(
                        v.span(),
                        field,
                        format!("invalid attribute name {:?} (no spaces, 1..=255 bytes)", v.get_ref()),
                    );
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    const BASE: &str = "[monitor]\nlayers = [\"frontend\", \"api\", \"worker\"]\n\n[[feature]]\nkey = \"f\"\nowner = \"o\"\nclass = \"decision\"\nexpect = [\"api\"]\n\n";

    fn parse(otel: &str) -> Result<OtelConfig, Vec<String>> {
        Catalog::parse(Path::new("accord.toml"), &format!("{BASE}{otel}"))
            .map(|c| c.otel)
            .map_err(|e| e.0.iter().map(|e| e.to_string()).collect())
    }

    #[test]
    fn defaults_without_the_section() {
        let c = parse("").unwrap();
        assert_eq!(c, OtelConfig::default());
        assert_eq!(c.request_id, RequestIdSource::TraceId);
        assert_eq!(c.selected_flow, "accord.selected_flow");
    }

    #[test]
    fn full_section() {
        let c = parse(
            "[otel]\nrequest_id = \"attribute:app.request_id\"\n[otel.layers]\n\"web-spa\" = \"frontend\"\n\"checkout-api\" = \"api\"\n[otel.attributes]\nselected_flow = \"app.flow\"\njob_payload_version = \"app.payload\"\n",
        )
        .unwrap();
        assert_eq!(c.request_id, RequestIdSource::Attribute("app.request_id".into()));
        assert_eq!(c.layers.get("web-spa").map(String::as_str), Some("frontend"));
        assert_eq!(c.layers.len(), 2);
        assert_eq!(c.selected_flow, "app.flow");
        assert_eq!(c.api_capability, "accord.api_capability");
        assert_eq!(c.job_payload_version, "app.payload");
        assert_eq!(parse("[otel]\nrequest_id = \"trace_id\"\n").unwrap().request_id, RequestIdSource::TraceId);
    }

    #[test]
    fn errors_name_file_line_and_field() {
        let e = parse("[otel]\n[otel.layers]\n\"web-spa\" = \"frontend\"\n\"mobile\" = \"phone\"\n").unwrap_err();
        assert_eq!(e.len(), 1, "{e:?}");
        assert!(
            e[0].starts_with("accord.toml:13: otel.layers.\"mobile\": unknown layer \"phone\" (monitor.layers: frontend, api, worker)"),
            "{}",
            e[0]
        );
        let e = parse("[otel]\nrequest_id = \"span_id\"\n").unwrap_err();
        assert!(
            e[0].starts_with("accord.toml:11: otel.request_id: must be \"trace_id\" or \"attribute:NAME\""),
            "{}",
            e[0]
        );
        let e = parse("[otel]\nrequest_id = \"attribute:\"\n").unwrap_err();
        assert!(e[0].starts_with("accord.toml:11: otel.request_id: invalid attribute name \"\""), "{}", e[0]);
        let e = parse("[otel]\nrequest_id = \"attribute:app request\"\n").unwrap_err();
        assert!(e[0].contains("otel.request_id: invalid attribute name \"app request\""), "{}", e[0]);
        let e = parse("[otel.attributes]\nselected_flow = \"\"\n").unwrap_err();
        assert!(e[0].starts_with("accord.toml:11: otel.attributes.selected_flow: invalid attribute name"), "{}", e[0]);
    }

    #[test]
    fn unknown_keys_are_errors() {
        let e = parse("[otel]\nrequest_ids = \"trace_id\"\n").unwrap_err();
        assert_eq!(e.len(), 1, "{e:?}");
        assert!(e[0].contains("request_ids") && e[0].contains("unknown field"), "{}", e[0]);
        let e = parse("[otel.attributes]\nflags_revision = \"x\"\n").unwrap_err();
        assert!(e[0].contains("flags_revision") && e[0].contains("unknown field"), "{}", e[0]);
        let e = parse("[otel.layers]\n\"web\" = 3\n").unwrap_err();
        assert_eq!(e.len(), 1, "{e:?}");
        assert!(e[0].starts_with("accord.toml:"), "{}", e[0]);
    }
}
