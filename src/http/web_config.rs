//! `--web-config-file`: the Prometheus exporters' web configuration format
//! (prometheus/exporter-toolkit `web-config.yml`), so SREs reuse the file
//! their node exporters already have.
//!
//! Semantics follow exporter-toolkit: unknown fields are errors (its strict
//! YAML decoding), relative file names are relative to the configuration
//! file's directory, TLS is on as soon as any `tls_server_config` field is
//! set and then needs both a certificate and a key, `client_auth_type`
//! defaults to `NoClientCert` (`RequireClientCert` is its old spelling of
//! `RequireAnyClientCert`), a client CA without a client-auth policy is an
//! error, `http2` defaults to true and only applies with TLS, only the
//! documented security headers may be set, and every `basic_auth_users`
//! value must be a bcrypt hash. Stricter where rustls cannot do what Go's
//! `crypto/tls` does: the verifying modes need a client CA (rustls has no
//! system pool for client certificates), TLS 1.0/1.1, the CBC and RSA-key
//! -exchange cipher suites and the P-521 curve are refused by name instead
//! of being ignored.
//!
//! Validation loads every certificate and key, so a bad file stops start-up
//! instead of failing the first handshake. Certificates are read once: a
//! rotated certificate needs a restart (exporter-toolkit re-reads them on
//! every handshake).
//!
//! YAML crate: `yaml-rust2`, a maintained YAML 1.2 parser (the successor of
//! the unmaintained `yaml-rust`; `serde_yaml` is archived and its forks are
//! young). It gives a plain document tree, which we walk by hand: that is
//! what lets every error name its exact field (`tls_server_config.cert_file`)
//! and reject unknown fields at any depth, and it reports duplicate keys.

use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use axum::http::{HeaderName, HeaderValue};
use rustls::client::danger::HandshakeSignatureValid;
use rustls::crypto::{CryptoProvider, SupportedKxGroup};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::WebPkiClientVerifier;
use rustls::{DigitallySignedStruct, DistinguishedName, RootCertStore, SignatureScheme, SupportedCipherSuite};
use yaml_rust2::yaml::Hash;
use yaml_rust2::{Yaml, YamlLoader};

/// A web configuration that failed to validate. Display is one line that
/// names the configuration file and the field (`web.yml:
/// tls_server_config.cert_file: cannot read /x/cert.pem: No such file or
/// directory`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WebConfigError {
    /// The configuration file itself cannot be read.
    #[error("{file}: cannot read: {reason}")]
    Unreadable { file: String, reason: String },
    /// Not YAML, or not a mapping at the top.
    #[error("{file}: {field}: {reason}")]
    Syntax { file: String, field: String, reason: String },
    /// A field the format does not have (exporter-toolkit decodes strictly).
    #[error("{file}: {field}: unknown field (expected one of: {expected})")]
    UnknownField { file: String, field: String, expected: String },
    /// A value of the wrong type or out of its set.
    #[error("{file}: {field}: {reason}")]
    Invalid { file: String, field: String, reason: String },
    /// A documented setting this server cannot honour.
    #[error("{file}: {field}: {reason}")]
    Unsupported { file: String, field: String, reason: String },
    /// A file named by a field cannot be read.
    #[error("{file}: {field}: cannot read {path}: {reason}")]
    FileUnreadable { file: String, field: String, path: String, reason: String },
    /// A certificate, key or CA (file or inline PEM) that does not load.
    #[error("{file}: {field}: {source_name}: {reason}")]
    BadPem { file: String, field: String, source_name: String, reason: String },
}

impl WebConfigError {
    /// The configuration file, as the user named it.
    pub fn file(&self) -> &str {
        match self {
            Self::Unreadable { file, .. }
            | Self::Syntax { file, .. }
            | Self::UnknownField { file, .. }
            | Self::Invalid { file, .. }
            | Self::Unsupported { file, .. }
            | Self::FileUnreadable { file, .. }
            | Self::BadPem { file, .. } => file,
        }
    }

    /// The dotted field path (`tls_server_config.cert_file`); empty when
    /// the file itself is unreadable.
    pub fn field(&self) -> &str {
        match self {
            Self::Unreadable { .. } => "",
            Self::Syntax { field, .. }
            | Self::UnknownField { field, .. }
            | Self::Invalid { field, .. }
            | Self::Unsupported { field, .. }
            | Self::FileUnreadable { field, .. }
            | Self::BadPem { field, .. } => field,
        }
    }
}

/// exporter-toolkit's `client_auth_type` values (Go's `tls.ClientAuthType`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientAuthType {
    NoClientCert,
    /// Asks for a certificate; accepts none and does not verify one given.
    RequestClientCert,
    /// Requires a certificate but does not verify it against a CA.
    RequireAnyClientCert,
    /// Verifies a certificate against the client CA when one is given.
    VerifyClientCertIfGiven,
    /// Requires a certificate signed by the client CA (mutual TLS).
    RequireAndVerifyClientCert,
}

impl ClientAuthType {
    fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "" | "NoClientCert" => Self::NoClientCert,
            "RequestClientCert" => Self::RequestClientCert,
            // exporter-toolkit keeps the old name for compatibility.
            "RequireAnyClientCert" | "RequireClientCert" => Self::RequireAnyClientCert,
            "VerifyClientCertIfGiven" => Self::VerifyClientCertIfGiven,
            "RequireAndVerifyClientCert" => Self::RequireAndVerifyClientCert,
            _ => return None,
        })
    }

    fn verifies(self) -> bool {
        matches!(self, Self::VerifyClientCertIfGiven | Self::RequireAndVerifyClientCert)
    }

    fn requires(self) -> bool {
        matches!(self, Self::RequireAnyClientCert | Self::RequireAndVerifyClientCert)
    }
}

/// A TLS protocol version as the format names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum TlsVersion {
    Tls12,
    Tls13,
}

/// The TLS side of a validated configuration.
#[derive(Clone)]
pub struct TlsSettings {
    /// Ready for `tokio_rustls::TlsAcceptor`; ALPN offers `h2` only when
    /// `http_server_config.http2` is on.
    pub server_config: Arc<rustls::ServerConfig>,
    pub client_auth: ClientAuthType,
    pub min_version: TlsVersion,
    pub max_version: TlsVersion,
}

impl fmt::Debug for TlsSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsSettings")
            .field("client_auth", &self.client_auth)
            .field("min_version", &self.min_version)
            .field("max_version", &self.max_version)
            .field("alpn", &self.server_config.alpn_protocols)
            .finish()
    }
}

/// exporter-toolkit's `rate_limit`: a token bucket over all requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimit {
    /// One token is added per interval.
    pub interval: Duration,
    pub burst: u32,
}

/// One `basic_auth_users` entry.
#[derive(Clone, PartialEq, Eq)]
pub struct BasicAuthUser {
    pub name: String,
    /// The bcrypt hash, validated.
    pub hash: String,
}

impl fmt::Debug for BasicAuthUser {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BasicAuthUser").field("name", &self.name).field("hash", &"<bcrypt>").finish()
    }
}

/// A validated web configuration: certificates loaded, hashes checked.
#[derive(Debug, Clone)]
pub struct WebConfig {
    /// The file it came from, as given.
    pub file: PathBuf,
    /// `None`: plain HTTP.
    pub tls: Option<TlsSettings>,
    /// HTTP/2 (over TLS only, as in exporter-toolkit).
    pub http2: bool,
    /// `http_server_config.headers`, set on every response.
    pub headers: Vec<(HeaderName, HeaderValue)>,
    /// Empty: no basic authentication.
    pub users: Vec<BasicAuthUser>,
    pub rate_limit: Option<RateLimit>,
}

/// The security headers exporter-toolkit lets a configuration set, with
/// their allowed values (`None`: any value).
const HEADERS: &[(&str, Option<&[&str]>)] = &[
    ("Strict-Transport-Security", None),
    ("X-Content-Type-Options", Some(&["nosniff"])),
    ("X-Frame-Options", Some(&["deny", "sameorigin"])),
    ("X-XSS-Protection", None),
    ("Content-Security-Policy", None),
];

const TOP_FIELDS: &[&str] = &["tls_server_config", "http_server_config", "basic_auth_users", "rate_limit"];
const TLS_FIELDS: &[&str] = &[
    "cert",
    "key",
    "client_ca",
    "cert_file",
    "key_file",
    "client_auth_type",
    "client_ca_file",
    "client_allowed_sans",
    "min_version",
    "max_version",
    "cipher_suites",
    "prefer_server_cipher_suites",
    "curve_preferences",
];
const HTTP_FIELDS: &[&str] = &["http2", "headers"];
const RATE_FIELDS: &[&str] = &["interval", "burst"];

impl WebConfig {
    /// Reads and validates `path`, loading every certificate and key it
    /// names. Blocking (file reads): call it before serving, not on an
    /// async worker in the middle of traffic.
    pub fn load(path: &Path) -> Result<WebConfig, WebConfigError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| WebConfigError::Unreadable { file: path.display().to_string(), reason: io_reason(&e) })?;
        Self::parse(path, &text)
    }

    /// Validates `text` as if read from `path` (relative file names are
    /// resolved against `path`'s directory).
    pub fn parse(path: &Path, text: &str) -> Result<WebConfig, WebConfigError> {
        let cx = Cx { file: path.display().to_string(), dir: path.parent().map(Path::to_path_buf).unwrap_or_default() };
        let docs = YamlLoader::load_from_str(text).map_err(|e| {
            let m = e.marker();
            cx.syntax(&format!("line {}", m.line()), &format!("not valid YAML: {}", e.info()))
        })?;
        let root = match docs.as_slice() {
            [] => Hash::new(),
            [Yaml::Null] => Hash::new(),
            [Yaml::Hash(h)] => h.clone(),
            [_] => return Err(cx.syntax("(top level)", "expected a mapping of settings")),
            _ => return Err(cx.syntax("(top level)", "expected one YAML document, found several")),
        };
        let top = cx.fields("", &root, TOP_FIELDS)?;

        let http = match top.get("http_server_config") {
            Some(v) => cx.opt_map("http_server_config", v)?,
            None => None,
        };
        let (http2, headers) = cx.http_config(http.as_ref())?;
        let tls = match top.get("tls_server_config") {
            Some(v) => match cx.opt_map("tls_server_config", v)? {
                Some(h) => cx.tls_config(&h, http2)?,
                None => None,
            },
            None => None,
        };
        let users = match top.get("basic_auth_users") {
            Some(v) => cx.users(v)?,
            None => Vec::new(),
        };
        let rate_limit = match top.get("rate_limit") {
            Some(v) => match cx.opt_map("rate_limit", v)? {
                Some(h) => cx.rate_limit(&h)?,
                None => None,
            },
            None => None,
        };
        Ok(WebConfig { file: path.to_path_buf(), tls, http2, headers, users, rate_limit })
    }

    /// Whether requests need credentials.
    pub fn basic_auth(&self) -> bool {
        !self.users.is_empty()
    }
}

/// `std::io::Error`'s text without the `(os error N)` suffix.
fn io_reason(e: &std::io::Error) -> String {
    let s = e.to_string();
    match s.rfind(" (os error ") {
        Some(i) if s.ends_with(')') => s[..i].to_string(),
        _ => s,
    }
}

/// Validation context: the file name for messages and the directory
/// relative names resolve against.
struct Cx {
    file: String,
    dir: PathBuf,
}

fn join(prefix: &str, name: &str) -> String {
    if prefix.is_empty() {
        name.to_string()
    } else {
        format!("{prefix}.{name}")
    }
}

fn kind(v: &Yaml) -> &'static str {
    match v {
        Yaml::Real(_) => "a number",
        Yaml::Integer(_) => "an integer",
        Yaml::String(_) => "a string",
        Yaml::Boolean(_) => "a boolean",
        Yaml::Array(_) => "a list",
        Yaml::Hash(_) => "a mapping",
        Yaml::Alias(_) => "an alias",
        Yaml::Null => "null",
        Yaml::BadValue => "an invalid value",
    }
}

impl Cx {
    fn syntax(&self, field: &str, reason: &str) -> WebConfigError {
        WebConfigError::Syntax { file: self.file.clone(), field: field.into(), reason: reason.into() }
    }

    fn invalid(&self, field: &str, reason: impl Into<String>) -> WebConfigError {
        WebConfigError::Invalid { file: self.file.clone(), field: field.into(), reason: reason.into() }
    }

    fn unsupported(&self, field: &str, reason: impl Into<String>) -> WebConfigError {
        WebConfigError::Unsupported { file: self.file.clone(), field: field.into(), reason: reason.into() }
    }

    fn bad_pem(&self, field: &str, source_name: &str, reason: impl Into<String>) -> WebConfigError {
        WebConfigError::BadPem {
            file: self.file.clone(),
            field: field.into(),
            source_name: source_name.into(),
            reason: reason.into(),
        }
    }

    /// The string keys of a mapping, each checked against `allowed`.
    fn fields<'h>(
        &self,
        prefix: &str,
        h: &'h Hash,
        allowed: &[&str],
    ) -> Result<BTreeMap<&'h str, &'h Yaml>, WebConfigError> {
        let mut out = BTreeMap::new();
        for (k, v) in h {
            let Some(k) = k.as_str() else {
                return Err(self.invalid(prefix, format!("keys must be strings, found {}", kind(k))));
            };
            if !allowed.contains(&k) {
                return Err(WebConfigError::UnknownField {
                    file: self.file.clone(),
                    field: join(prefix, k),
                    expected: allowed.join(", "),
                });
            }
            out.insert(k, v);
        }
        Ok(out)
    }

    /// A nested mapping; YAML null (an empty section) counts as absent.
    fn opt_map(&self, field: &str, v: &Yaml) -> Result<Option<Hash>, WebConfigError> {
        match v {
            Yaml::Null => Ok(None),
            Yaml::Hash(h) => Ok(Some(h.clone())),
            other => Err(self.invalid(field, format!("expected a mapping, found {}", kind(other)))),
        }
    }

    /// A string; null and "" count as unset, as in Go.
    fn opt_str(&self, field: &str, v: Option<&&Yaml>) -> Result<Option<String>, WebConfigError> {
        match v {
            None | Some(Yaml::Null) => Ok(None),
            Some(Yaml::String(s)) if s.is_empty() => Ok(None),
            Some(Yaml::String(s)) => Ok(Some(s.clone())),
            Some(other) => Err(self.invalid(field, format!("expected a string, found {}", kind(other)))),
        }
    }

    fn opt_bool(&self, field: &str, v: Option<&&Yaml>) -> Result<Option<bool>, WebConfigError> {
        match v {
            None | Some(Yaml::Null) => Ok(None),
            Some(Yaml::Boolean(b)) => Ok(Some(*b)),
            Some(other) => Err(self.invalid(field, format!("expected true or false, found {}", kind(other)))),
        }
    }

    fn str_list(&self, field: &str, v: Option<&&Yaml>) -> Result<Vec<String>, WebConfigError> {
        match v {
            None | Some(Yaml::Null) => Ok(Vec::new()),
            Some(Yaml::Array(items)) => items
                .iter()
                .enumerate()
                .map(|(i, item)| match item {
                    Yaml::String(s) => Ok(s.clone()),
                    other => {
                        Err(self.invalid(&format!("{field}[{i}]"), format!("expected a string, found {}", kind(other))))
                    }
                })
                .collect(),
            Some(other) => Err(self.invalid(field, format!("expected a list of strings, found {}", kind(other)))),
        }
    }

    /// A file name as exporter-toolkit resolves it: relative to the
    /// configuration file's directory.
    fn resolve(&self, name: &str) -> PathBuf {
        let p = Path::new(name);
        if p.is_absolute() {
            p.to_path_buf()
        } else {
            self.dir.join(p)
        }
    }

    /// The bytes of `field` (a file name) or of its inline twin.
    fn pem_source(
        &self,
        file_field: &str,
        file: Option<String>,
        inline_field: &str,
        inline: Option<String>,
    ) -> Result<Option<(String, String, Vec<u8>)>, WebConfigError> {
        match (file, inline) {
            (Some(_), Some(_)) => {
                Err(self.invalid(inline_field, format!("set either {inline_field} or {file_field}, not both")))
            }
            (Some(name), None) => {
                let path = self.resolve(&name);
                let bytes = std::fs::read(&path).map_err(|e| WebConfigError::FileUnreadable {
                    file: self.file.clone(),
                    field: file_field.into(),
                    path: path.display().to_string(),
                    reason: io_reason(&e),
                })?;
                Ok(Some((file_field.to_string(), path.display().to_string(), bytes)))
            }
            (None, Some(text)) => Ok(Some((inline_field.to_string(), "inline PEM".to_string(), text.into_bytes()))),
            (None, None) => Ok(None),
        }
    }

    fn http_config(&self, h: Option<&Hash>) -> Result<(bool, Vec<(HeaderName, HeaderValue)>), WebConfigError> {
        let Some(h) = h else { return Ok((true, Vec::new())) };
        let f = self.fields("http_server_config", h, HTTP_FIELDS)?;
        let http2 = self.opt_bool("http_server_config.http2", f.get("http2"))?.unwrap_or(true);
        let mut headers = Vec::new();
        if let Some(v) = f.get("headers") {
            if let Some(hh) = self.opt_map("http_server_config.headers", v)? {
                for (k, v) in &hh {
                    let Some(name) = k.as_str() else {
                        return Err(self.invalid("http_server_config.headers", "header names must be strings"));
                    };
                    let field = format!("http_server_config.headers.{name}");
                    let Some((_, allowed)) = HEADERS.iter().find(|(n, _)| *n == name) else {
                        let names: Vec<&str> = HEADERS.iter().map(|(n, _)| *n).collect();
                        return Err(WebConfigError::UnknownField {
                            file: self.file.clone(),
                            field,
                            expected: names.join(", "),
                        });
                    };
                    // "Unset if blank."
                    let Some(value) = self.opt_str(&field, Some(&v))? else { continue };
                    if let Some(allowed) = allowed {
                        if !allowed.contains(&value.as_str()) {
                            return Err(self.invalid(
                                &field,
                                format!("invalid value {value:?}, expected one of: {}", allowed.join(", ")),
                            ));
                        }
                    }
                    let value = HeaderValue::from_str(&value)
                        .map_err(|_| self.invalid(&field, "not a valid HTTP header value"))?;
                    let name = HeaderName::from_bytes(name.as_bytes())
                        .map_err(|_| self.invalid(&field, "not a valid HTTP header name"))?;
                    headers.push((name, value));
                }
            }
        }
        Ok((http2, headers))
    }

    fn users(&self, v: &Yaml) -> Result<Vec<BasicAuthUser>, WebConfigError> {
        let Some(h) = self.opt_map("basic_auth_users", v)? else { return Ok(Vec::new()) };
        let mut users = Vec::new();
        for (k, v) in &h {
            let name = match k {
                Yaml::String(s) => s.clone(),
                other => {
                    return Err(
                        self.invalid("basic_auth_users", format!("user names must be strings, found {}", kind(other)))
                    )
                }
            };
            let field = format!("basic_auth_users.{name}");
            let hash = match v {
                Yaml::String(s) => s.clone(),
                other => return Err(self.invalid(&field, format!("expected a bcrypt hash, found {}", kind(other)))),
            };
            check_bcrypt(&hash).map_err(|reason| self.invalid(&field, reason))?;
            users.push(BasicAuthUser { name, hash });
        }
        Ok(users)
    }

    fn rate_limit(&self, h: &Hash) -> Result<Option<RateLimit>, WebConfigError> {
        let f = self.fields("rate_limit", h, RATE_FIELDS)?;
        let interval = match f.get("interval") {
            None | Some(Yaml::Null) => Duration::ZERO,
            Some(Yaml::Integer(0)) => Duration::ZERO,
            Some(Yaml::String(s)) => parse_go_duration(s).ok_or_else(|| {
                self.invalid("rate_limit.interval", format!("invalid duration {s:?} (e.g. 100ms, 1s, 1m30s)"))
            })?,
            Some(other) => {
                return Err(self
                    .invalid("rate_limit.interval", format!("expected a duration such as 1s, found {}", kind(other))))
            }
        };
        let burst = match f.get("burst") {
            None | Some(Yaml::Null) => 0,
            Some(Yaml::Integer(n)) => u32::try_from(*n)
                .map_err(|_| self.invalid("rate_limit.burst", format!("expected a count of requests, found {n}")))?,
            Some(other) => {
                return Err(self.invalid("rate_limit.burst", format!("expected an integer, found {}", kind(other))))
            }
        };
        // exporter-toolkit: an interval of 0 disables the limiter.
        if interval.is_zero() {
            return Ok(None);
        }
        if burst == 0 {
            return Err(self.invalid(
                "rate_limit.burst",
                "must be at least 1 when rate_limit.interval is set (0 refuses every request)",
            ));
        }
        Ok(Some(RateLimit { interval, burst }))
    }

    fn tls_config(&self, h: &Hash, http2: bool) -> Result<Option<TlsSettings>, WebConfigError> {
        const P: &str = "tls_server_config";
        let f = self.fields(P, h, TLS_FIELDS)?;
        let s = |name: &str| self.opt_str(&join(P, name), f.get(name));
        let cert_file = s("cert_file")?;
        let cert_inline = s("cert")?;
        let key_file = s("key_file")?;
        let key_inline = s("key")?;
        let ca_file = s("client_ca_file")?;
        let ca_inline = s("client_ca")?;
        let auth_text = s("client_auth_type")?;
        let min_text = s("min_version")?;
        let max_text = s("max_version")?;
        let sans = self.str_list(&join(P, "client_allowed_sans"), f.get("client_allowed_sans"))?;
        let suites = self.str_list(&join(P, "cipher_suites"), f.get("cipher_suites"))?;
        let curves = self.str_list(&join(P, "curve_preferences"), f.get("curve_preferences"))?;
        let prefer_server =
            self.opt_bool(&join(P, "prefer_server_cipher_suites"), f.get("prefer_server_cipher_suites"))?;

        let anything = cert_file.is_some()
            || cert_inline.is_some()
            || key_file.is_some()
            || key_inline.is_some()
            || ca_file.is_some()
            || ca_inline.is_some()
            || auth_text.is_some()
            || min_text.is_some()
            || max_text.is_some()
            || !sans.is_empty()
            || !suites.is_empty()
            || !curves.is_empty()
            || prefer_server.is_some();
        if !anything {
            return Ok(None);
        }

        // Versions and the client-auth policy first: cheap checks before files.
        let version = |field: &str, text: Option<String>, default: TlsVersion| -> Result<TlsVersion, WebConfigError> {
            match text.as_deref() {
                None => Ok(default),
                Some("TLS12") => Ok(TlsVersion::Tls12),
                Some("TLS13") => Ok(TlsVersion::Tls13),
                Some(v @ ("TLS10" | "TLS11")) => {
                    Err(self
                        .unsupported(&join(P, field), format!("{v} is not supported (rustls speaks TLS12 and TLS13)")))
                }
                Some(v) => {
                    Err(self.invalid(&join(P, field), format!("unknown TLS version {v:?}, expected TLS12 or TLS13")))
                }
            }
        };
        let min_version = version("min_version", min_text, TlsVersion::Tls12)?;
        let max_version = version("max_version", max_text, TlsVersion::Tls13)?;
        if min_version > max_version {
            return Err(self.invalid(&join(P, "min_version"), "is above tls_server_config.max_version"));
        }
        let client_auth = match auth_text.as_deref() {
            None => ClientAuthType::NoClientCert,
            Some(t) => ClientAuthType::parse(t).ok_or_else(|| {
                self.invalid(
                    &join(P, "client_auth_type"),
                    format!(
                        "unknown value {t:?}, expected one of: NoClientCert, RequestClientCert, RequireAnyClientCert, \
                         VerifyClientCertIfGiven, RequireAndVerifyClientCert"
                    ),
                )
            })?,
        };
        let has_ca = ca_file.is_some() || ca_inline.is_some();
        if has_ca && client_auth == ClientAuthType::NoClientCert {
            return Err(self.invalid(
                &join(P, if ca_file.is_some() { "client_ca_file" } else { "client_ca" }),
                "a client CA is configured but client_auth_type is NoClientCert (set RequireAndVerifyClientCert)",
            ));
        }
        if client_auth.verifies() && !has_ca {
            return Err(self.invalid(
                &join(P, "client_ca_file"),
                format!("client_auth_type {client_auth:?} needs client_ca_file (or client_ca) to verify client certificates"),
            ));
        }
        if !sans.is_empty() && !client_auth.requires() {
            return Err(self.invalid(
                &join(P, "client_allowed_sans"),
                "needs client_auth_type RequireAnyClientCert or RequireAndVerifyClientCert (otherwise a client may send no certificate)",
            ));
        }
        let allowed_sans = sans
            .iter()
            .enumerate()
            .map(|(i, s)| {
                AllowedSan::parse(s).ok_or_else(|| {
                    self.unsupported(
                        &format!("{P}.client_allowed_sans[{i}]"),
                        format!("{s:?}: e-mail SANs are not supported (DNS names, IP addresses and URIs are)"),
                    )
                })
            })
            .collect::<Result<Vec<_>, _>>()?;

        // Both the certificate and the key, from a file or inline.
        let has_cert = cert_file.is_some() || cert_inline.is_some();
        let has_key = key_file.is_some() || key_inline.is_some();
        if !has_cert {
            let reason = if has_key {
                "missing while a key is set: TLS needs both cert_file (or cert) and key_file (or key)"
            } else {
                "missing: TLS settings are present, and TLS needs cert_file (or cert) and key_file (or key)"
            };
            return Err(self.invalid(&join(P, "cert_file"), reason));
        }
        if !has_key {
            return Err(self.invalid(
                &join(P, "key_file"),
                "missing while a certificate is set: TLS needs both cert_file (or cert) and key_file (or key)",
            ));
        }
        let Some((cert_field, cert_src, cert_pem)) =
            self.pem_source(&join(P, "cert_file"), cert_file, &join(P, "cert"), cert_inline)?
        else {
            return Err(self.invalid(&join(P, "cert_file"), "missing"));
        };
        let Some((key_field, key_src, key_pem)) =
            self.pem_source(&join(P, "key_file"), key_file, &join(P, "key"), key_inline)?
        else {
            return Err(self.invalid(&join(P, "key_file"), "missing"));
        };
        let chain: Vec<CertificateDer<'static>> =
            CertificateDer::pem_slice_iter(&cert_pem)
                .collect::<Result<_, _>>()
                .map_err(|e| self.bad_pem(&cert_field, &cert_src, format!("not a PEM certificate: {e}")))?;
        if chain.is_empty() {
            return Err(self.bad_pem(&cert_field, &cert_src, "no PEM certificate found"));
        }
        let key = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| {
            self.bad_pem(&key_field, &key_src, format!("no PEM private key found (PKCS#8, PKCS#1 or SEC1): {e}"))
        })?;

        // The cipher suites and curves, from the ring provider.
        let mut provider = rustls::crypto::ring::default_provider();
        if !suites.is_empty() {
            provider.cipher_suites = self.cipher_suites(&suites)?;
        }
        if !curves.is_empty() {
            provider.kx_groups = self.curves(&curves)?;
        }
        let provider = Arc::new(provider);

        let verifier: Arc<dyn ClientCertVerifier> = {
            let ca = self.pem_source(&join(P, "client_ca_file"), ca_file, &join(P, "client_ca"), ca_inline)?;
            let roots = match ca {
                Some((field, src, pem)) => {
                    let mut roots = RootCertStore::empty();
                    for c in CertificateDer::pem_slice_iter(&pem) {
                        let c = c.map_err(|e| self.bad_pem(&field, &src, format!("not a PEM certificate: {e}")))?;
                        roots
                            .add(c)
                            .map_err(|e| self.bad_pem(&field, &src, format!("not a usable CA certificate: {e}")))?;
                    }
                    if roots.is_empty() {
                        return Err(self.bad_pem(&field, &src, "no CA certificate found"));
                    }
                    Some((field, Arc::new(roots)))
                }
                None => None,
            };
            let base: Arc<dyn ClientCertVerifier> = match (client_auth, roots) {
                (ClientAuthType::NoClientCert, _) => WebPkiClientVerifier::no_client_auth(),
                (ClientAuthType::RequestClientCert, _) => {
                    Arc::new(AnyClientCert { mandatory: false, provider: provider.clone() })
                }
                (ClientAuthType::RequireAnyClientCert, _) => {
                    Arc::new(AnyClientCert { mandatory: true, provider: provider.clone() })
                }
                (mode, Some((field, roots))) => {
                    let b = WebPkiClientVerifier::builder_with_provider(roots, provider.clone());
                    let b = if mode == ClientAuthType::VerifyClientCertIfGiven { b.allow_unauthenticated() } else { b };
                    b.build().map_err(|e| self.invalid(&field, format!("cannot build the client verifier: {e}")))?
                }
                (_, None) => {
                    return Err(
                        self.invalid(&join(P, "client_ca_file"), "missing: the verifying modes need a client CA")
                    )
                }
            };
            if allowed_sans.is_empty() {
                base
            } else {
                Arc::new(SanVerifier { inner: base, allowed: allowed_sans })
            }
        };

        let versions: Vec<&'static rustls::SupportedProtocolVersion> =
            [(TlsVersion::Tls12, &rustls::version::TLS12), (TlsVersion::Tls13, &rustls::version::TLS13)]
                .into_iter()
                .filter(|(v, _)| (min_version..=max_version).contains(v))
                .map(|(_, p)| p)
                .collect();
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_protocol_versions(&versions)
            .map_err(|e| {
                self.invalid(&join(P, "cipher_suites"), format!("no usable cipher suite for the TLS versions: {e}"))
            })?
            .with_client_cert_verifier(verifier)
            .with_single_cert(chain, key)
            .map_err(|e| {
                self.bad_pem(&key_field, &key_src, format!("does not match the certificate or is unusable: {e}"))
            })?;
        config.ignore_client_order = prefer_server.unwrap_or(true);
        // As exporter-toolkit: HTTP/2 only over TLS, and only when enabled.
        config.alpn_protocols =
            if http2 { vec![b"h2".to_vec(), b"http/1.1".to_vec()] } else { vec![b"http/1.1".to_vec()] };
        Ok(Some(TlsSettings { server_config: Arc::new(config), client_auth, min_version, max_version }))
    }

    /// Go's cipher-suite names (`tls.CipherSuiteName`, the IANA names
    /// rustls also uses) → the ring provider's suites, in the given order; the TLS 1.3 suites are always kept (Go does not let them be
    /// configured either).
    fn cipher_suites(&self, names: &[String]) -> Result<Vec<SupportedCipherSuite>, WebConfigError> {
        let all = rustls::crypto::ring::ALL_CIPHER_SUITES;
        let mut out: Vec<SupportedCipherSuite> =
            all.iter().copied().filter(|s| matches!(s, SupportedCipherSuite::Tls13(_))).collect();
        for (i, name) in names.iter().enumerate() {
            let field = format!("tls_server_config.cipher_suites[{i}]");
            let found = all
                .iter()
                .copied()
                .find(|s| matches!(s, SupportedCipherSuite::Tls12(_)) && format!("{:?}", s.suite()) == *name);
            match found {
                Some(s) => out.push(s),
                None if name.starts_with("TLS_AES_") || name.starts_with("TLS_CHACHA20_") => {
                    return Err(self.unsupported(&field, format!("{name}: TLS 1.3 cipher suites are not configurable")))
                }
                None if name.starts_with("TLS_") => {
                    return Err(self.unsupported(
                        &field,
                        format!(
                            "{name}: not supported; rustls offers TLS_ECDHE_{{ECDSA,RSA}}_WITH_{{AES_128_GCM_SHA256,\
                             AES_256_GCM_SHA384,CHACHA20_POLY1305_SHA256}}"
                        ),
                    ))
                }
                None => return Err(self.invalid(&field, format!("unknown cipher suite {name:?}"))),
            }
        }
        Ok(out)
    }

    fn curves(&self, names: &[String]) -> Result<Vec<&'static dyn SupportedKxGroup>, WebConfigError> {
        use rustls::crypto::ring::kx_group;
        names
            .iter()
            .enumerate()
            .map(|(i, name)| {
                let field = format!("tls_server_config.curve_preferences[{i}]");
                match name.as_str() {
                    "X25519" => Ok(kx_group::X25519),
                    "CurveP256" => Ok(kx_group::SECP256R1),
                    "CurveP384" => Ok(kx_group::SECP384R1),
                    "CurveP521" => {
                        Err(self.unsupported(&field, "CurveP521 is not supported (X25519, CurveP256, CurveP384 are)"))
                    }
                    other => Err(self
                        .invalid(&field, format!("unknown curve {other:?}, expected X25519, CurveP256 or CurveP384"))),
                }
            })
            .collect()
    }
}

/// Checks a `basic_auth_users` value the way bcrypt will read it.
fn check_bcrypt(hash: &str) -> Result<(), String> {
    let parts: bcrypt::HashParts = hash.parse().map_err(|e: bcrypt::BcryptError| {
        format!("not a bcrypt hash ({e}); generate one with `htpasswd -nBC 10 \"\" | tr -d ':\\n'`")
    })?;
    let cost = parts.get_cost();
    if !(4..=31).contains(&cost) {
        return Err(format!("bcrypt cost {cost} is outside 4..=31"));
    }
    Ok(())
}

/// Go's `time.ParseDuration` subset that configurations use: a sequence
/// of number+unit pairs (`1m30s`, `250ms`, `1.5h`).
fn parse_go_duration(s: &str) -> Option<Duration> {
    let s = s.trim();
    if s == "0" {
        return Some(Duration::ZERO);
    }
    let mut rest = s;
    let mut total = 0f64;
    if rest.is_empty() {
        return None;
    }
    while !rest.is_empty() {
        let num_end = rest.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(rest.len());
        if num_end == 0 {
            return None;
        }
        let n: f64 = rest[..num_end].parse().ok()?;
        rest = &rest[num_end..];
        let unit_end = rest.find(|c: char| c.is_ascii_digit() || c == '.').unwrap_or(rest.len());
        let unit = match &rest[..unit_end] {
            "ns" => 1e-9,
            "us" | "µs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return None,
        };
        rest = &rest[unit_end..];
        total += n * unit;
    }
    if !total.is_finite() || total > 1e9 {
        return None;
    }
    Some(Duration::from_secs_f64(total))
}

/// One `client_allowed_sans` entry, matched exactly as exporter-toolkit
/// does against the client certificate's DNS, IP and URI SANs.
#[derive(Debug, Clone)]
enum AllowedSan {
    Dns(String),
    Ip(IpAddr),
    Uri(String),
}

impl AllowedSan {
    fn parse(s: &str) -> Option<Self> {
        if let Ok(ip) = s.parse::<IpAddr>() {
            Some(Self::Ip(ip))
        } else if s.contains("://") || (s.contains(':') && !s.contains('@')) {
            Some(Self::Uri(s.to_string()))
        } else if s.contains('@') {
            None
        } else {
            Some(Self::Dns(s.to_string()))
        }
    }

    fn matches(&self, cert: &webpki::EndEntityCert<'_>) -> bool {
        match self {
            Self::Dns(name) => cert.valid_dns_names().any(|n| n == name),
            Self::Uri(uri) => cert.valid_uri_names().any(|n| n == uri),
            Self::Ip(ip) => cert.verify_is_valid_for_subject_name(&ServerName::IpAddress((*ip).into())).is_ok(),
        }
    }
}

/// `RequestClientCert` / `RequireAnyClientCert`: take any certificate
/// without chain verification (Go's semantics), but still check the
/// handshake signature so the client proves it holds the key.
#[derive(Debug)]
struct AnyClientCert {
    mandatory: bool,
    provider: Arc<CryptoProvider>,
}

impl ClientCertVerifier for AnyClientCert {
    fn client_auth_mandatory(&self) -> bool {
        self.mandatory
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider.signature_verification_algorithms.supported_schemes()
    }
}

/// `client_allowed_sans`: the inner policy, then an exact SAN match.
#[derive(Debug)]
struct SanVerifier {
    inner: Arc<dyn ClientCertVerifier>,
    allowed: Vec<AllowedSan>,
}

impl ClientCertVerifier for SanVerifier {
    fn offer_client_auth(&self) -> bool {
        self.inner.offer_client_auth()
    }

    fn client_auth_mandatory(&self) -> bool {
        self.inner.client_auth_mandatory()
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        self.inner.root_hint_subjects()
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        let verified = self.inner.verify_client_cert(end_entity, intermediates, now)?;
        let cert = webpki::EndEntityCert::try_from(end_entity)
            .map_err(|_| rustls::Error::InvalidCertificate(rustls::CertificateError::BadEncoding))?;
        if self.allowed.iter().any(|a| a.matches(&cert)) {
            Ok(verified)
        } else {
            Err(rustls::Error::InvalidCertificate(rustls::CertificateError::ApplicationVerificationFailure))
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A directory of its own per test, with a self-signed certificate,
    /// its key and a CA file, generated once per run (no keys committed).
    fn fixture(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("accord-webcfg-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec!["localhost".to_string()]).unwrap().self_signed(&key).unwrap();
        std::fs::write(dir.join("cert.pem"), cert.pem()).unwrap();
        std::fs::write(dir.join("key.pem"), key.serialize_pem()).unwrap();
        std::fs::write(dir.join("ca.pem"), cert.pem()).unwrap();
        dir
    }

    fn parse_in(dir: &Path, yaml: &str) -> Result<WebConfig, WebConfigError> {
        WebConfig::parse(&dir.join("web.yml"), yaml)
    }

    /// The error's one line starts with the file and names the field.
    fn err_in(dir: &Path, yaml: &str, field: &str) -> String {
        let e = parse_in(dir, yaml).expect_err("should be refused");
        let line = e.to_string();
        assert_eq!(line.lines().count(), 1, "{line}");
        let file = dir.join("web.yml").display().to_string();
        assert_eq!(e.file(), file);
        assert!(line.starts_with(&format!("{file}: {field}")), "expected {field}: {line}");
        assert_eq!(e.field(), field, "{line}");
        line
    }

    const TLS: &str = "tls_server_config:\n  cert_file: cert.pem\n  key_file: key.pem\n";

    fn hash() -> String {
        bcrypt::hash("secret", 4).unwrap()
    }

    #[test]
    fn empty_and_minimal_files_mean_plain_http_without_auth() {
        let dir = Path::new("/nonexistent");
        for yaml in ["", "---\n", "# nothing\n", "tls_server_config:\nbasic_auth_users:\n"] {
            let c = parse_in(dir, yaml).unwrap();
            assert!(c.tls.is_none() && c.users.is_empty() && c.headers.is_empty() && c.http2, "{yaml:?}");
        }
    }

    #[test]
    fn a_full_file_loads_certificates_users_and_headers() {
        let dir = fixture("full");
        let yaml = format!(
            "{TLS}  client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: ca.pem\n  min_version: TLS13\n  \
             client_allowed_sans: [prometheus.example, 10.0.0.1, 'spiffe://example/prom']\n  \
             cipher_suites: [TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256]\n  curve_preferences: [X25519, CurveP256]\n  \
             prefer_server_cipher_suites: false\n\
             http_server_config:\n  http2: false\n  headers:\n    X-Frame-Options: sameorigin\n    \
             Content-Security-Policy: \"default-src 'self'\"\n    X-XSS-Protection: ''\n\
             basic_auth_users:\n  alice: {h}\n  bob: {h}\n\
             rate_limit:\n  interval: 1m30s\n  burst: 5\n",
            h = hash()
        );
        let c = parse_in(&dir, &yaml).unwrap();
        let tls = c.tls.as_ref().unwrap();
        assert_eq!(tls.client_auth, ClientAuthType::RequireAndVerifyClientCert);
        assert_eq!((tls.min_version, tls.max_version), (TlsVersion::Tls13, TlsVersion::Tls13));
        assert_eq!(tls.server_config.alpn_protocols, vec![b"http/1.1".to_vec()]);
        assert!(!tls.server_config.ignore_client_order);
        assert!(!c.http2);
        let names: Vec<&str> = c.headers.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["x-frame-options", "content-security-policy"], "blank values are unset");
        assert_eq!(c.users.iter().map(|u| u.name.as_str()).collect::<Vec<_>>(), ["alice", "bob"]);
        assert!(c.basic_auth());
        assert_eq!(c.rate_limit, Some(RateLimit { interval: Duration::from_secs(90), burst: 5 }));
        // Inline PEM works as well as files; absolute paths are kept.
        let cert = std::fs::read_to_string(dir.join("cert.pem")).unwrap();
        let yaml = format!(
            "tls_server_config:\n  cert: |\n{}  key_file: {}\n",
            cert.lines().map(|l| format!("    {l}\n")).collect::<String>(),
            dir.join("key.pem").display()
        );
        let c = parse_in(Path::new("/elsewhere"), &yaml).unwrap();
        assert_eq!(c.tls.unwrap().server_config.alpn_protocols, vec![b"h2".to_vec(), b"http/1.1".to_vec()]);
    }

    #[test]
    fn unknown_fields_are_refused_at_every_depth() {
        let dir = fixture("unknown");
        let line = err_in(&dir, "basic_auth_user:\n  alice: x\n", "basic_auth_user");
        assert!(line.contains("unknown field (expected one of: tls_server_config,"), "{line}");
        let line = err_in(&dir, &format!("{TLS}  certfile: x\n"), "tls_server_config.certfile");
        assert!(line.contains("unknown field"), "{line}");
        err_in(&dir, "http_server_config:\n  http3: true\n", "http_server_config.http3");
        err_in(
            &dir,
            "http_server_config:\n  headers:\n    X-Powered-By: me\n",
            "http_server_config.headers.X-Powered-By",
        );
        err_in(&dir, "rate_limit:\n  bursts: 1\n", "rate_limit.bursts");
    }

    #[test]
    fn malformed_bcrypt_hashes_are_refused() {
        let dir = Path::new("/nonexistent");
        let line = err_in(dir, "basic_auth_users:\n  alice: plaintext\n", "basic_auth_users.alice");
        assert!(line.contains("not a bcrypt hash"), "{line}");
        // Right length and shape, wrong cost.
        let h = hash().replacen("$04$", "$99$", 1);
        let line = err_in(dir, &format!("basic_auth_users:\n  bob: '{h}'\n"), "basic_auth_users.bob");
        assert!(line.contains("cost"), "{line}");
        err_in(dir, "basic_auth_users:\n  carol: 12\n", "basic_auth_users.carol");
        err_in(dir, "basic_auth_users: [alice]\n", "basic_auth_users");
    }

    #[test]
    fn missing_or_unreadable_certificates_name_file_and_field() {
        let dir = fixture("missing");
        let line = err_in(
            &dir,
            "tls_server_config:\n  cert_file: nope.pem\n  key_file: key.pem\n",
            "tls_server_config.cert_file",
        );
        let missing = dir.join("nope.pem").display().to_string();
        assert!(line.ends_with(&format!("cannot read {missing}: No such file or directory")), "{line}");
        let line = err_in(
            &dir,
            "tls_server_config:\n  cert_file: cert.pem\n  key_file: gone.pem\n",
            "tls_server_config.key_file",
        );
        assert!(line.contains("cannot read"), "{line}");
        // Not PEM at all.
        std::fs::write(dir.join("junk.pem"), "hello\n").unwrap();
        let line = err_in(
            &dir,
            "tls_server_config:\n  cert_file: junk.pem\n  key_file: key.pem\n",
            "tls_server_config.cert_file",
        );
        assert!(line.contains("no PEM certificate"), "{line}");
        let line = err_in(
            &dir,
            "tls_server_config:\n  cert_file: cert.pem\n  key_file: junk.pem\n",
            "tls_server_config.key_file",
        );
        assert!(line.contains("no PEM private key"), "{line}");
        // A key that is not the certificate's.
        let other = rcgen::KeyPair::generate().unwrap();
        std::fs::write(dir.join("other.key"), other.serialize_pem()).unwrap();
        let line = err_in(
            &dir,
            "tls_server_config:\n  cert_file: cert.pem\n  key_file: other.key\n",
            "tls_server_config.key_file",
        );
        assert!(line.contains("does not match"), "{line}");
    }

    #[test]
    fn cert_and_key_come_together() {
        let dir = fixture("pair");
        let line = err_in(&dir, "tls_server_config:\n  key_file: key.pem\n", "tls_server_config.cert_file");
        assert!(line.contains("missing while a key is set"), "{line}");
        let line = err_in(&dir, "tls_server_config:\n  cert_file: cert.pem\n", "tls_server_config.key_file");
        assert!(line.contains("missing while a certificate is set"), "{line}");
        // Any TLS setting turns TLS on, and then both are needed.
        err_in(&dir, "tls_server_config:\n  min_version: TLS13\n", "tls_server_config.cert_file");
        err_in(&dir, &format!("{TLS}  cert: inline\n"), "tls_server_config.cert");
    }

    #[test]
    fn client_auth_policies_and_their_ca() {
        let dir = fixture("ca");
        for mode in ["VerifyClientCertIfGiven", "RequireAndVerifyClientCert"] {
            let line = err_in(&dir, &format!("{TLS}  client_auth_type: {mode}\n"), "tls_server_config.client_ca_file");
            assert!(line.contains("needs client_ca_file"), "{line}");
        }
        let line = err_in(&dir, &format!("{TLS}  client_ca_file: ca.pem\n"), "tls_server_config.client_ca_file");
        assert!(line.contains("NoClientCert"), "{line}");
        err_in(&dir, &format!("{TLS}  client_auth_type: Always\n"), "tls_server_config.client_auth_type");
        // A CA file without a certificate in it.
        std::fs::write(dir.join("empty-ca.pem"), "# no certificates here\n").unwrap();
        let line = err_in(
            &dir,
            &format!("{TLS}  client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: empty-ca.pem\n"),
            "tls_server_config.client_ca_file",
        );
        assert!(line.contains("no CA certificate found"), "{line}");
        // Every mode with what it needs loads; the old spelling too.
        for (mode, want) in [
            ("NoClientCert", ClientAuthType::NoClientCert),
            ("RequestClientCert", ClientAuthType::RequestClientCert),
            ("RequireAnyClientCert", ClientAuthType::RequireAnyClientCert),
            ("RequireClientCert", ClientAuthType::RequireAnyClientCert),
            ("VerifyClientCertIfGiven", ClientAuthType::VerifyClientCertIfGiven),
            ("RequireAndVerifyClientCert", ClientAuthType::RequireAndVerifyClientCert),
        ] {
            let ca = if want.verifies() { "  client_ca_file: ca.pem\n" } else { "" };
            let c = parse_in(&dir, &format!("{TLS}  client_auth_type: {mode}\n{ca}")).unwrap();
            assert_eq!(c.tls.unwrap().client_auth, want, "{mode}");
        }
        // Allowed SANs need a policy that requires a certificate.
        err_in(&dir, &format!("{TLS}  client_allowed_sans: [a.example]\n"), "tls_server_config.client_allowed_sans");
        err_in(
            &dir,
            &format!("{TLS}  client_auth_type: RequireAnyClientCert\n  client_allowed_sans: [ops@example.com]\n"),
            "tls_server_config.client_allowed_sans[0]",
        );
    }

    #[test]
    fn tls_versions_ciphers_and_curves() {
        let dir = fixture("versions");
        let line = err_in(&dir, &format!("{TLS}  min_version: TLS14\n"), "tls_server_config.min_version");
        assert!(line.contains("unknown TLS version"), "{line}");
        let line = err_in(&dir, &format!("{TLS}  min_version: TLS10\n"), "tls_server_config.min_version");
        assert!(line.contains("not supported"), "{line}");
        err_in(&dir, &format!("{TLS}  max_version: 1.2\n"), "tls_server_config.max_version");
        err_in(&dir, &format!("{TLS}  min_version: TLS13\n  max_version: TLS12\n"), "tls_server_config.min_version");
        let c = parse_in(&dir, &format!("{TLS}  max_version: TLS12\n")).unwrap();
        assert_eq!(c.tls.unwrap().max_version, TlsVersion::Tls12);
        let line = err_in(
            &dir,
            &format!("{TLS}  cipher_suites: [TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256, TLS_RSA_WITH_AES_128_CBC_SHA]\n"),
            "tls_server_config.cipher_suites[1]",
        );
        assert!(line.contains("not supported"), "{line}");
        err_in(&dir, &format!("{TLS}  cipher_suites: [rot13]\n"), "tls_server_config.cipher_suites[0]");
        err_in(&dir, &format!("{TLS}  curve_preferences: [CurveP521]\n"), "tls_server_config.curve_preferences[0]");
        err_in(&dir, &format!("{TLS}  curve_preferences: [Curve25519]\n"), "tls_server_config.curve_preferences[0]");
    }

    #[test]
    fn headers_http2_and_rate_limit_values() {
        let dir = Path::new("/nonexistent");
        let line = err_in(
            dir,
            "http_server_config:\n  headers:\n    X-Content-Type-Options: sniff\n",
            "http_server_config.headers.X-Content-Type-Options",
        );
        assert!(line.contains("expected one of: nosniff"), "{line}");
        err_in(
            dir,
            "http_server_config:\n  headers:\n    X-Frame-Options: DENY\n",
            "http_server_config.headers.X-Frame-Options",
        );
        err_in(dir, "http_server_config:\n  http2: yes\n", "http_server_config.http2");
        err_in(dir, "rate_limit:\n  interval: soon\n  burst: 1\n", "rate_limit.interval");
        err_in(dir, "rate_limit:\n  interval: 1s\n", "rate_limit.burst");
        err_in(dir, "rate_limit:\n  interval: 1s\n  burst: -1\n", "rate_limit.burst");
        assert_eq!(parse_in(dir, "rate_limit:\n  interval: 0\n  burst: 0\n").unwrap().rate_limit, None);
    }

    #[test]
    fn yaml_errors_and_unreadable_files() {
        let dir = Path::new("/nonexistent");
        let e = parse_in(dir, "tls_server_config: [\n").unwrap_err();
        assert!(matches!(e, WebConfigError::Syntax { .. }), "{e}");
        assert_eq!(e.to_string().lines().count(), 1);
        let e = parse_in(dir, "basic_auth_users:\n  a: x\n  a: y\n").unwrap_err();
        assert!(e.to_string().contains("duplicated key"), "{e}");
        err_in(dir, "- a\n- b\n", "(top level)");
        let e = WebConfig::load(Path::new("/nonexistent/web.yml")).unwrap_err();
        assert_eq!(e.to_string(), "/nonexistent/web.yml: cannot read: No such file or directory");
    }

    /// deploy/web-config.example.yml validates once its certificates exist.
    #[test]
    fn the_example_file_validates() {
        let dir = fixture("example");
        std::fs::create_dir_all(dir.join("tls")).unwrap();
        std::fs::copy(dir.join("cert.pem"), dir.join("tls/server.crt")).unwrap();
        std::fs::copy(dir.join("key.pem"), dir.join("tls/server.key")).unwrap();
        let c = parse_in(&dir, include_str!("../../deploy/web-config.example.yml")).unwrap();
        assert!(c.tls.is_some());
        assert_eq!(c.users.len(), 1);
        assert!(bcrypt::verify("change-me", &c.users[0].hash).unwrap());
        assert_eq!(c.headers.len(), 3);
    }

    #[test]
    fn go_durations() {
        assert_eq!(parse_go_duration("1m30s"), Some(Duration::from_secs(90)));
        assert_eq!(parse_go_duration("250ms"), Some(Duration::from_millis(250)));
        assert_eq!(parse_go_duration("1.5h"), Some(Duration::from_secs(5400)));
        assert_eq!(parse_go_duration("0"), Some(Duration::ZERO));
        for bad in ["", "s", "1", "1d", "-1s", "1s2"] {
            assert_eq!(parse_go_duration(bad), None, "{bad:?}");
        }
    }
}
