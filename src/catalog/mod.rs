//! The feature catalog (`accord.toml`, docs/reference.md#the-catalog): which layers exist in
//! which pipeline order, which features are monitored and what "the new
//! path" means for each.
//!
//! Validation collects every problem with the file, line and field it
//! concerns, so `accord check-config` can print one line per problem and
//! `accord run` can refuse to start with one line (never run half
//! configured).

use std::fmt;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use toml::Spanned;

mod layers;
mod otel;
pub use layers::{LayerId, LayerSet, Layers, MAX_LAYERS};
pub use otel::{OtelConfig, RequestIdSource};

/// Feature keys and request ids are limited to this many bytes
/// (docs/reference.md#record-fields).
pub const MAX_KEY_BYTES: usize = 128;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UnknownFeatures {
    Reject,
    Track,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FeatureClass {
    Interface,
    Decision,
    StateMachine,
    RecoverySurface,
}

impl FeatureClass {
    pub fn as_str(self) -> &'static str {
        match self {
            FeatureClass::Interface => "interface",
            FeatureClass::Decision => "decision",
            FeatureClass::StateMachine => "state-machine",
            FeatureClass::RecoverySurface => "recovery-surface",
        }
    }
    fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "interface" => FeatureClass::Interface,
            "decision" => FeatureClass::Decision,
            "state-machine" => FeatureClass::StateMachine,
            "recovery-surface" => FeatureClass::RecoverySurface,
            _ => return None,
        })
    }
}

/// One monitored feature flag.
#[derive(Debug, Clone)]
pub struct FeatureSpec {
    pub key: String,
    pub owner: String,
    pub class: FeatureClass,
    /// Planned removal date, as seconds since the epoch at 00:00 UTC.
    pub expires: Option<i64>,
    pub expires_text: Option<String>,
    /// Layers that must report.
    pub expect: LayerSet,
    /// Layers judged when they report, never required.
    pub optional: LayerSet,
    pub window_ms: i64,
    pub new_flow: Option<String>,
    pub new_capability: Option<String>,
    pub new_payload_version: Option<String>,
}

impl FeatureSpec {
    /// The spec used for features that are not in the catalog when
    /// `unknown_features = "track"`: nothing is required (we cannot know
    /// which layers should report), every layer is optional so a join
    /// closes early once all layers reported, else at its window.
    pub fn tracked(key: &str, catalog: &Catalog) -> Self {
        FeatureSpec {
            key: key.to_string(),
            owner: String::new(),
            class: FeatureClass::Decision,
            expires: None,
            expires_text: None,
            expect: LayerSet::EMPTY,
            optional: catalog.all_layers(),
            window_ms: catalog.window_ms,
            new_flow: None,
            new_capability: None,
            new_payload_version: None,
        }
    }

    /// Layers whose reports close a join early: `expect ∪ optional`.
    pub fn awaited(&self) -> LayerSet {
        self.expect.union(self.optional)
    }
}

/// The validated catalog.
#[derive(Debug, Clone)]
pub struct Catalog {
    pub path: PathBuf,
    pub layers: Vec<String>,
    pub window_ms: i64,
    pub allowed_lateness_ms: i64,
    pub max_open_joins: usize,
    /// Cap on remembered closed keys (tombstones). accord's own addition to
    /// the catalog (docs/reference.md#the-monitor-section): without
    /// it a flood of unique request ids would grow memory for
    /// `2 × window` after each forced close. Defaults to `max_open_joins`.
    pub max_closed_keys: usize,
    pub unknown_features: UnknownFeatures,
    pub max_tracked_features: usize,
    /// A `ts` further ahead of the record's reference time (the Kafka
    /// message timestamp live, the wall clock when a replay started) comes
    /// from a bad clock and counts as absent.
    pub max_clock_skew_ms: i64,
    /// With several topics, how long a stream waits for a topic that has
    /// nothing fetched before it judges the others' records.
    pub max_topic_idle_ms: i64,
    pub features: Vec<FeatureSpec>,
    /// Layer id of the layer named `api`, the one whose `api_capability`
    /// the exposure check reads (docs/reference.md#divergences names that
    /// layer).
    pub api_layer: Option<LayerId>,
    /// How OpenTelemetry flag-evaluation events map onto records (`[otel]`).
    pub otel: OtelConfig,
}

impl Catalog {
    pub fn layer_id(&self, name: &str) -> Option<LayerId> {
        self.layers.iter().position(|l| l == name).map(|i| LayerId::new(i as u8))
    }
    /// The name of a layer id of this catalog.
    pub fn layer_name(&self, id: LayerId) -> &str {
        self.layers.get(id.index()).map_or("?", String::as_str)
    }
    pub fn all_layers(&self) -> LayerSet {
        LayerSet::first(self.layers.len())
    }
    /// Every layer id, in pipeline order.
    pub fn layer_ids(&self) -> Layers {
        self.all_layers().iter()
    }
    pub fn feature(&self, key: &str) -> Option<&FeatureSpec> {
        self.features.iter().find(|f| f.key == key)
    }

    /// Reads and validates a catalog file.
    pub fn load(path: &Path) -> Result<Catalog, CatalogErrors> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            CatalogErrors(vec![CatalogError {
                file: path.to_path_buf(),
                line: None,
                field: String::new(),
                problem: format!("cannot read file: {e}"),
            }])
        })?;
        Catalog::parse(path, &text)
    }

    /// Validates catalog text; `path` only names the file in errors.
    pub fn parse(path: &Path, text: &str) -> Result<Catalog, CatalogErrors> {
        let mut v = Validator { file: path.to_path_buf(), text, errors: Vec::new() };
        let raw: RawCatalog = match toml::from_str(text) {
            Ok(r) => r,
            Err(e) => {
                let line = e.span().map(|s| line_of(text, s.start));
                let (field, problem) = split_toml_error(e.message());
                v.errors.push(CatalogError { file: v.file.clone(), line, field, problem });
                return Err(CatalogErrors(v.errors));
            }
        };
        let cat = v.build(raw);
        if v.errors.is_empty() {
            Ok(cat)
        } else {
            Err(CatalogErrors(v.errors))
        }
    }
}

/// One validation problem.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CatalogError {
    pub file: PathBuf,
    pub line: Option<usize>,
    pub field: String,
    pub problem: String,
}

impl fmt::Display for CatalogError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if let Some(l) = self.line {
            write!(f, ":{l}")?;
        }
        if self.field.is_empty() {
            write!(f, ": {}", self.problem)
        } else {
            write!(f, ": {}: {}", self.field, self.problem)
        }
    }
}

/// Every problem found in one catalog, in file order.
#[derive(Debug, Clone, thiserror::Error)]
pub struct CatalogErrors(pub Vec<CatalogError>);

impl fmt::Display for CatalogErrors {
    /// One line: the first problem, and how many more there are.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0.first() {
            None => write!(f, "invalid catalog"),
            Some(first) if self.0.len() == 1 => write!(f, "{first}"),
            Some(first) => {
                write!(f, "{first} (and {} more problems; `accord check-config` lists them)", self.0.len() - 1)
            }
        }
    }
}

// ---- raw TOML shape -------------------------------------------------------

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCatalog {
    #[serde(default)]
    monitor: Option<Spanned<RawMonitor>>,
    #[serde(default)]
    feature: Vec<Spanned<RawFeature>>,
    #[serde(default)]
    otel: Option<otel::RawOtel>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawMonitor {
    layers: Option<Spanned<Vec<Spanned<String>>>>,
    window: Option<Spanned<String>>,
    allowed_lateness: Option<Spanned<String>>,
    max_open_joins: Option<Spanned<i64>>,
    max_closed_keys: Option<Spanned<i64>>,
    unknown_features: Option<Spanned<String>>,
    max_tracked_features: Option<Spanned<i64>>,
    max_clock_skew: Option<Spanned<String>>,
    max_topic_idle: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFeature {
    key: Option<Spanned<String>>,
    owner: Option<Spanned<String>>,
    class: Option<Spanned<String>>,
    expires: Option<Spanned<toml::Value>>,
    expect: Option<Spanned<Vec<Spanned<String>>>>,
    #[serde(default)]
    optional: Option<Spanned<Vec<Spanned<String>>>>,
    window: Option<Spanned<String>>,
    new_flow: Option<Spanned<String>>,
    new_capability: Option<Spanned<String>>,
    new_payload_version: Option<Spanned<toml::Value>>,
}

fn line_of(text: &str, offset: usize) -> usize {
    text.as_bytes()[..offset.min(text.len())].iter().filter(|&&b| b == b'\n').count() + 1
}

/// toml's messages read like "missing field `key`" or
/// "unknown field `windw`, expected one of ..."; pull the field name out so
/// the line reads `file:line: field: problem` like our own errors.
fn split_toml_error(msg: &str) -> (String, String) {
    let msg = msg.trim();
    if let Some(rest) = msg.strip_prefix("unknown field `") {
        if let Some(end) = rest.find('`') {
            return (rest[..end].to_string(), format!("unknown field{}", &rest[end + 1..]));
        }
    }
    if let Some(rest) = msg.strip_prefix("missing field `") {
        if let Some(end) = rest.find('`') {
            return (rest[..end].to_string(), "missing required field".to_string());
        }
    }
    (String::new(), msg.replace('\n', " "))
}

struct Validator<'t> {
    file: PathBuf,
    text: &'t str,
    errors: Vec<CatalogError>,
}

impl Validator<'_> {
    fn err(&mut self, span: std::ops::Range<usize>, field: impl Into<String>, problem: impl Into<String>) {
        self.errors.push(CatalogError {
            file: self.file.clone(),
            line: Some(line_of(self.text, span.start)),
            field: field.into(),
            problem: problem.into(),
        });
    }

    fn duration(&mut self, v: &Spanned<String>, field: &str, allow_zero: bool) -> Option<i64> {
        match humantime::parse_duration(v.get_ref()) {
            Ok(d) if d.is_zero() && !allow_zero => {
                self.err(v.span(), field, "must be greater than zero");
                None
            }
            Ok(d) if d.as_millis() > i64::MAX as u128 / 4 => {
                self.err(v.span(), field, "duration is too large");
                None
            }
            Ok(d) => Some(d.as_millis() as i64),
            Err(e) => {
                self.err(
                    v.span(),
                    field,
                    format!("invalid duration {:?}: {e} (use humantime syntax like \"30s\" or \"2m\")", v.get_ref()),
                );
                None
            }
        }
    }

    fn positive(&mut self, v: &Spanned<i64>, field: &str) -> Option<usize> {
        if *v.get_ref() < 1 {
            self.err(v.span(), field, format!("must be at least 1, got {}", v.get_ref()));
            None
        } else {
            Some(*v.get_ref() as usize)
        }
    }

    fn build(&mut self, raw: RawCatalog) -> Catalog {
        let mon = raw.monitor.map(|m| m.into_inner()).unwrap_or_default();
        let mut layers: Vec<String> = Vec::new();
        match &mon.layers {
            None => {
                layers = ["frontend", "api", "worker", "analytics"].map(String::from).to_vec();
            }
            Some(ls) => {
                if ls.get_ref().is_empty() {
                    self.err(ls.span(), "monitor.layers", "must name at least one layer");
                }
                if ls.get_ref().len() > MAX_LAYERS {
                    self.err(ls.span(), "monitor.layers", format!("at most {MAX_LAYERS} layers are supported"));
                }
                for l in ls.get_ref() {
                    let name = l.get_ref();
                    if name.is_empty()
                        || name.len() > 64
                        || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
                    {
                        self.err(
                            l.span(),
                            "monitor.layers",
                            format!("invalid layer name {name:?} (use [A-Za-z0-9_-], at most 64 bytes)"),
                        );
                    } else if layers.contains(name) {
                        self.err(l.span(), "monitor.layers", format!("layer {name:?} is listed twice"));
                    } else {
                        layers.push(name.clone());
                    }
                }
            }
        }
        let window_ms = mon.window.as_ref().and_then(|w| self.duration(w, "monitor.window", false)).unwrap_or(30_000);
        let allowed_lateness_ms = mon
            .allowed_lateness
            .as_ref()
            .and_then(|w| self.duration(w, "monitor.allowed_lateness", true))
            .unwrap_or(5_000);
        let max_open_joins =
            mon.max_open_joins.as_ref().and_then(|v| self.positive(v, "monitor.max_open_joins")).unwrap_or(1_000_000);
        let max_closed_keys = mon
            .max_closed_keys
            .as_ref()
            .and_then(|v| self.positive(v, "monitor.max_closed_keys"))
            .unwrap_or(max_open_joins);
        let unknown_features = match &mon.unknown_features {
            None => UnknownFeatures::Reject,
            Some(v) => match v.get_ref().as_str() {
                "reject" => UnknownFeatures::Reject,
                "track" => UnknownFeatures::Track,
                other => {
                    self.err(
                        v.span(),
                        "monitor.unknown_features",
                        format!("must be \"reject\" or \"track\", got {other:?}"),
                    );
                    UnknownFeatures::Reject
                }
            },
        };
        let max_clock_skew_ms = mon
            .max_clock_skew
            .as_ref()
            .and_then(|w| self.duration(w, "monitor.max_clock_skew", false))
            .unwrap_or(60_000);
        let max_topic_idle_ms =
            mon.max_topic_idle.as_ref().and_then(|w| self.duration(w, "monitor.max_topic_idle", true)).unwrap_or(1_000);
        let max_tracked_features = match &mon.max_tracked_features {
            None => 50,
            Some(v) if *v.get_ref() < 0 || *v.get_ref() > 10_000 => {
                self.err(v.span(), "monitor.max_tracked_features", "must be between 0 and 10000");
                50
            }
            Some(v) => *v.get_ref() as usize,
        };

        let mut cat = Catalog {
            path: self.file.clone(),
            api_layer: layers.iter().position(|l| l == "api").map(|i| LayerId::new(i as u8)),
            layers,
            window_ms,
            allowed_lateness_ms,
            max_open_joins,
            max_closed_keys,
            unknown_features,
            max_tracked_features,
            max_clock_skew_ms,
            max_topic_idle_ms,
            features: Vec::new(),
            otel: OtelConfig::default(),
        };
        cat.otel = self.otel(raw.otel, &cat);
        if raw.feature.is_empty() && unknown_features == UnknownFeatures::Reject {
            self.errors.push(CatalogError {
                file: self.file.clone(),
                line: None,
                field: "feature".into(),
                problem:
                    "the catalog lists no [[feature]] (and unknown_features = \"reject\" would reject every record)"
                        .into(),
            });
        }
        for (i, f) in raw.feature.into_iter().enumerate() {
            let span = f.span();
            if let Some(spec) = self.feature(i, span.clone(), f.into_inner(), &cat) {
                if cat.features.iter().any(|g| g.key == spec.key) {
                    let field = format!("feature[{i}].key");
                    self.err(0..0, field, format!("duplicate feature key {:?}", spec.key));
                    if let Some(e) = self.errors.last_mut() {
                        e.line = Some(line_of(self.text, span.start));
                    }
                } else {
                    cat.features.push(spec);
                }
            }
        }
        if cat.features.len() > u16::MAX as usize / 2 {
            self.errors.push(CatalogError {
                file: self.file.clone(),
                line: None,
                field: "feature".into(),
                problem: "too many features".into(),
            });
        }
        cat
    }

    fn layer_set(&mut self, list: &Spanned<Vec<Spanned<String>>>, field: &str, cat: &Catalog) -> LayerSet {
        let mut m = LayerSet::EMPTY;
        for l in list.get_ref() {
            match cat.layer_id(l.get_ref()) {
                Some(id) => m.insert(id),
                None => self.err(
                    l.span(),
                    field,
                    format!("unknown layer {:?} (monitor.layers: {})", l.get_ref(), cat.layers.join(", ")),
                ),
            }
        }
        m
    }

    fn text_value(&mut self, v: &Spanned<toml::Value>, field: &str) -> Option<String> {
        match v.get_ref() {
            toml::Value::String(s) if !s.is_empty() => Some(s.clone()),
            toml::Value::Integer(n) => Some(n.to_string()),
            _ => {
                self.err(v.span(), field, "must be a non-empty string or an integer");
                None
            }
        }
    }

    fn nonempty(&mut self, v: &Option<Spanned<String>>, field: &str) -> Option<String> {
        let v = v.as_ref()?;
        if v.get_ref().is_empty() {
            self.err(v.span(), field, "must not be empty");
            None
        } else {
            Some(v.get_ref().clone())
        }
    }

    fn feature(&mut self, i: usize, span: std::ops::Range<usize>, f: RawFeature, cat: &Catalog) -> Option<FeatureSpec> {
        let before = self.errors.len();
        let name = |field: &str| format!("feature[{i}].{field}");
        let missing = |v: &mut Self, field: &str| v.err(span.clone(), name(field), "missing required field");
        let key = match &f.key {
            None => {
                missing(self, "key");
                String::new()
            }
            Some(k) => {
                let s = k.get_ref();
                if s.is_empty()
                    || s.len() > MAX_KEY_BYTES
                    || !s.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b':' | b'-'))
                {
                    self.err(
                        k.span(),
                        name("key"),
                        format!("invalid feature key {s:?} (1..=128 bytes of [A-Za-z0-9_.:-])"),
                    );
                }
                if s == "other" {
                    self.err(k.span(), name("key"), "\"other\" is reserved for untracked features");
                }
                s.clone()
            }
        };
        let owner = match &f.owner {
            None => {
                missing(self, "owner");
                String::new()
            }
            Some(_) => self.nonempty(&f.owner, &name("owner")).unwrap_or_default(),
        };
        let class = match &f.class {
            None => {
                missing(self, "class");
                FeatureClass::Decision
            }
            Some(c) => FeatureClass::parse(c.get_ref()).unwrap_or_else(|| {
                self.err(
                    c.span(),
                    name("class"),
                    format!(
                        "unknown class {:?} (interface | decision | state-machine | recovery-surface)",
                        c.get_ref()
                    ),
                );
                FeatureClass::Decision
            }),
        };
        let (expires, expires_text) = match &f.expires {
            None => (None, None),
            Some(v) => {
                let text = match v.get_ref() {
                    toml::Value::String(s) => Some(s.clone()),
                    toml::Value::Datetime(d) => Some(d.to_string()),
                    _ => None,
                };
                match text.as_deref().and_then(|t| chrono::NaiveDate::parse_from_str(t, "%Y-%m-%d").ok()) {
                    Some(d) => (Some(d.and_hms_opt(0, 0, 0).map(|t| t.and_utc().timestamp()).unwrap_or(0)), text),
                    None => {
                        self.err(v.span(), name("expires"), "must be a date like \"2027-01-31\"");
                        (None, None)
                    }
                }
            }
        };
        let expect = match &f.expect {
            None => {
                missing(self, "expect");
                LayerSet::EMPTY
            }
            Some(list) => {
                if list.get_ref().is_empty() {
                    self.err(list.span(), name("expect"), "must name at least one layer");
                }
                self.layer_set(list, &name("expect"), cat)
            }
        };
        let optional =
            f.optional.as_ref().map(|l| self.layer_set(l, &name("optional"), cat)).unwrap_or(LayerSet::EMPTY);
        let both = expect.intersection(optional);
        if !both.is_empty() {
            let both: Vec<&str> = both.iter().map(|l| cat.layer_name(l)).collect();
            let sp = f.optional.as_ref().map(|o| o.span()).unwrap_or(span.clone());
            self.err(sp, name("optional"), format!("layers in both expect and optional: {}", both.join(", ")));
        }
        let window_ms =
            f.window.as_ref().and_then(|w| self.duration(w, &name("window"), false)).unwrap_or(cat.window_ms);
        let new_flow = self.nonempty(&f.new_flow, &name("new_flow"));
        let new_capability = self.nonempty(&f.new_capability, &name("new_capability"));
        let new_payload_version =
            f.new_payload_version.as_ref().and_then(|v| self.text_value(v, &name("new_payload_version")));
        if self.errors.len() > before {
            return None;
        }
        Some(FeatureSpec {
            key,
            owner,
            class,
            expires,
            expires_text,
            expect,
            optional,
            window_ms,
            new_flow,
            new_capability,
            new_payload_version,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = include_str!("../../tests/conformance/catalog.toml");

    fn errs(text: &str) -> Vec<String> {
        match Catalog::parse(Path::new("accord.toml"), text) {
            Ok(_) => vec![],
            Err(e) => e.0.iter().map(|e| e.to_string()).collect(),
        }
    }

    #[test]
    fn conformance_catalog_parses() {
        let c = Catalog::parse(Path::new("c.toml"), GOOD).unwrap();
        assert_eq!(c.layers, ["frontend", "api", "worker", "analytics"]);
        assert_eq!(c.window_ms, 30_000);
        assert_eq!(c.allowed_lateness_ms, 5_000);
        let s = c.feature("search.ranking").unwrap();
        assert_eq!(s.window_ms, 10_000);
        assert_eq!(s.expect, LayerSet::from_bits(0b1010));
        assert_eq!(s.optional, LayerSet::from_bits(0b0001));
        let k = c.feature("checkout_v2").unwrap();
        assert_eq!(k.new_payload_version.as_deref(), Some("2"));
        assert_eq!(k.expires, Some(1_801_353_600));
        assert_eq!(c.api_layer, Some(LayerId::new(1)));
    }

    #[test]
    fn errors_name_file_line_and_field() {
        let bad = GOOD.replace("expect = [\"api\", \"analytics\"]", "expect = [\"api\", \"mobile\"]");
        let e = errs(&bad);
        assert_eq!(e.len(), 1, "{e:?}");
        assert!(e[0].starts_with("accord.toml:21: feature[1].expect: unknown layer \"mobile\""), "{}", e[0]);
    }

    #[test]
    fn every_problem_is_reported() {
        let bad = GOOD
            .replace("window = \"10s\"", "window = \"ten seconds\"")
            .replace("class = \"state-machine\"", "class = \"machine\"")
            .replace("allowed_lateness = \"5s\"", "allowed_lateness = \"5x\"");
        let e = errs(&bad);
        assert_eq!(e.len(), 3, "{e:?}");
        assert!(e.iter().any(|l| l.contains("monitor.allowed_lateness")));
        assert!(e.iter().any(|l| l.contains("feature[0].class")));
        assert!(e.iter().any(|l| l.contains("feature[1].window")));
    }

    #[test]
    fn unknown_fields_and_syntax_errors_are_one_line() {
        let e = errs(&GOOD.replace("owner = \"search\"", "ownr = \"search\""));
        assert_eq!(e.len(), 1);
        assert!(e[0].starts_with("accord.toml:1"), "{}", e[0]);
        assert!(e[0].contains("ownr"), "{}", e[0]);
        let e = errs("[monitor\nlayers = 3");
        assert_eq!(e.len(), 1);
        assert!(!e[0].contains('\n'));
        assert!(e[0].starts_with("accord.toml:1"), "{}", e[0]);
    }

    #[test]
    fn missing_required_fields_and_duplicates() {
        let e = errs("[[feature]]\nkey = \"a\"\n\n[[feature]]\nkey = \"a\"\nowner = \"x\"\nclass = \"decision\"\nexpect = [\"api\"]\n[[feature]]\nkey = \"a\"\nowner = \"x\"\nclass = \"decision\"\nexpect = [\"api\"]\n");
        assert!(e.iter().any(|l| l.contains("feature[0].owner: missing required field")), "{e:?}");
        assert!(e.iter().any(|l| l.contains("feature[2].key: duplicate feature key")), "{e:?}");
    }

    #[test]
    fn expect_and_optional_must_be_disjoint() {
        let e = errs(&GOOD.replace("optional = [\"frontend\"]", "optional = [\"api\"]"));
        assert_eq!(e.len(), 1);
        assert!(e[0].contains("layers in both expect and optional: api"), "{}", e[0]);
    }
}
